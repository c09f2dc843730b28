/**
 * The API as a Node user meets it: one spelling per option across generate / translate / stream (unknown keys
 * and other libraries' spellings refused with E_ARG and the right name), onProgress across the worker boundary,
 * an idle Translator that does not hold the process open, and the exported demo model path.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChimeraError } from '../src/errors';
import { editDistance, suggest } from '../src/util/options';
import { demoModelPath, MarianModel, Translator } from '../src/index';
import { DEMO_MODEL, nodeScript, ROOT } from './helpers/cli';

function argError(fn: () => unknown, msg: RegExp): void {
  let err: unknown = null;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ChimeraError);
  expect((err as ChimeraError).code).toBe('E_ARG');
  expect((err as ChimeraError).message).toMatch(msg);
}

let model: MarianModel;
let t: Translator;
const src = () => model.requireTokenizer().encode('A man rides a bike through the old town.');

beforeAll(async () => {
  model = await MarianModel.load(demoModelPath);
  t = await Translator.load(demoModelPath, { cacheBytes: 0 });
});

afterAll(async () => {
  await t?.close();
});

describe('one spelling per option', () => {
  it('generate: maxLength counts generated tokens; misspelt and foreign keys are E_ARG naming ours', () => {
    const full = model.generate([src()]).ids[0];
    expect(full.length).toBeGreaterThan(3);
    // at most 2 generated tokens; the model's config forces eos into the last one
    expect(model.generate([src()], { maxLength: 2 }).ids[0]).toEqual([full[0], model.config.eosId]);
    argError(() => model.generate([src()], { maxNewTokens: 2 } as never), /unknown generate option key 'maxNewTokens' \(did you mean 'maxLength'\?\)/);
    argError(() => model.generate([src()], { beams: 4 } as never), /'beams' \(did you mean 'beam'\?\)/);
    argError(() => model.generate([src()], { max_length: 5 } as never), /'max_length' \(did you mean 'maxLength'\?\)/);
    argError(() => model.generate([src()], { top_k: 5 } as never), /did you mean 'topK'/);
    argError(() => model.generate([src()], { zzzzzzzzzz: 1 } as never), /unknown generate option key 'zzzzzzzzzz'; known keys: beam, maxLength/);
  });

  it('translate and stream take the same names (plus signal) and refuse the same way', async () => {
    const [r] = await t.translate('A man rides a bike through the old town.', { maxLength: 2 });
    expect(r.tokens).toEqual(model.generate([src()], { maxLength: 2 }).ids[0]);
    await expect(t.translate('A dog.', { maxNewTokens: 2 } as never)).rejects.toThrow(/did you mean 'maxLength'/);
    await expect(t.translate('A dog.', { beams: 2 } as never)).rejects.toThrow(/did you mean 'beam'/);
    const it = t.stream('A dog.', { max_length: 3 } as never);
    await expect(it.next()).rejects.toThrow(/did you mean 'maxLength'/);
  });

  it('MarianModel.load refuses unknown options', async () => {
    await expect(MarianModel.load(demoModelPath, { precison: 'int8' } as never)).rejects.toThrow(/did you mean 'precision'/);
  });
});

describe('Translator.load onProgress', () => {
  it('is called on the caller\'s thread while the worker packs the weights', async () => {
    const seen: [number, number][] = [];
    const p = await Translator.load(demoModelPath, { precision: 'int8', onProgress: (d, n) => seen.push([d, n]) });
    try {
      expect(seen.length).toBeGreaterThan(1);
      const total = seen[0][1];
      expect(seen.every(([, n]) => n === total)).toBe(true);
      expect(seen.map(([d]) => d)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
      expect((await p.translate('A dog runs.'))[0].text.length).toBeGreaterThan(0);
    } finally {
      await p.close();
    }
    await expect(Translator.load(demoModelPath, { onProgress: 5 } as never)).rejects.toThrow(/onProgress must be a function/);
  });
});

describe('an idle Translator does not hold the process open', () => {
  it('a script that forgets close() exits once its work is done', () => {
    const r = nodeScript(`
      const { Translator } = require('./dist/index.js');
      (async () => {
        const t = await Translator.load(${JSON.stringify(DEMO_MODEL)}, { cacheBytes: 0 });
        const [a, b] = await Promise.all([t.translate('A dog runs.'), t.translate('Two cats sleep.')]);
        console.log(a[0].text + '|' + b[0].text);
        // no close()
      })();
    `, { timeout: 30_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Ein Hund rennt\.\|.+\n$/);
  });

  it('work in flight keeps it alive: a translate nobody awaits still finishes before exit', () => {
    const r = nodeScript(`
      const { Translator } = require('./dist/index.js');
      Translator.load(${JSON.stringify(DEMO_MODEL)}).then((t) => { t.translate('A dog runs.').then((x) => console.log(x[0].text)); });
    `, { timeout: 30_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe('Ein Hund rennt.\n');
  });
});

describe('demoModelPath', () => {
  it('is exported (CommonJS and ESM) and is the built-in model', async () => {
    expect(demoModelPath).toBe(join(ROOT, 'models', 'marian-m30k-en-de'));
    expect(existsSync(join(demoModelPath, 'config.json'))).toBe(true);
    const esm = nodeScript(`import('./dist/index.mjs').then((m) => console.log(m.demoModelPath))`);
    expect(esm.stdout.trim()).toBe(demoModelPath);
  });
});

describe('option-name suggestions', () => {
  it('count an adjacent transposition as one edit, case-insensitively', () => {
    expect(editDistance('cdua', 'cuda')).toBe(1);
    expect(editDistance('maxLegnth', 'maxLength')).toBe(1);
    expect(editDistance('BEAM', 'beam')).toBe(0);
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('', 'abc')).toBe(3);
    expect(suggest('cdua', ['cpu', 'cuda'])).toBe('cuda');
    expect(suggest('zzzz', ['cpu', 'cuda'])).toBeUndefined();
  });
});
