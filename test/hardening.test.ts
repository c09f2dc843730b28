// Issue 13: no input, file or lifecycle misuse may kill the host process. Each defect found by the hostile
// review has its reproduction here; every one must end in a ChimeraError with a code, never a signal.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChimeraError } from '../src/errors';
import { MarianModel } from '../src/marian';
import { Translator } from '../src/translator';
import { readSafetensorsHeader } from '../src/model/safetensors';
import { addonPath, ROOT } from './helpers/addon-path';

const modelDir = path.join(ROOT, 'models', 'marian-m30k-en-de');
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'chimera-hard-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A copy of the demo model directory (weights copied, so they can be patched) with config edits. */
function modelCopy(name: string, edit: (cfg: Record<string, unknown>) => void = () => {}): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  for (const f of fs.readdirSync(modelDir)) fs.copyFileSync(path.join(modelDir, f), path.join(dir, f));
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  edit(cfg);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  return dir;
}

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<{ code: string; message: string; reason?: string }> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e, String(e)).toBeInstanceOf(ChimeraError);
    return { code: (e as ChimeraError).code, message: (e as Error).message, reason: (e as ChimeraError).reason };
  }
  throw new Error('expected a ChimeraError, but the call succeeded');
}

describe('1. close() while a translation runs', () => {
  it('never aborts the process (8 runs in child processes), and rejects the pending call with E_CLOSED', () => {
    const script = `
      const { Translator } = require(${JSON.stringify(path.join(ROOT, 'dist', 'index.js'))});
      (async () => {
        const t = await Translator.load(${JSON.stringify(modelDir)}, { threads: 1 });
        let code = 'none';
        const p = t.translate(Array(3000).fill('A dog runs across the grass.'), { maxLength: 64 }).catch((e) => (code = e.code));
        await new Promise((r) => setTimeout(r, 300));
        await t.close();
        await p;
        process.stdout.write('code=' + code + '\\n');
      })().catch((e) => { console.error(e); process.exit(3); });`;
    for (let run = 0; run < 8; run++) {
      const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, CHIMERA_ADDON: addonPath() }, encoding: 'utf8', timeout: 120_000 });
      expect(r.signal, `run ${run}: killed by ${r.signal}\n${r.stderr}`).toBeNull();
      expect(r.status, `run ${run}: ${r.stderr}`).toBe(0);
      // the translation either finished before close() or was rejected with E_CLOSED
      expect(r.stdout).toMatch(/code=(E_CLOSED|none)/);
    }
  }, 600_000);
});

describe('4-6. config values are capped and checked against the tensors before anything is allocated', () => {
  const cases: [string, (c: Record<string, unknown>) => void, RegExp][] = [
    ['max_position_embeddings 1e9', (c) => (c.max_position_embeddings = 1e9), /max_position_embeddings/],
    ['max_position_embeddings 1e7', (c) => (c.max_position_embeddings = 1e7), /max_position_embeddings/],
    ['layers 1e6', (c) => ((c.encoder_layers = 1e6), (c.decoder_layers = 1e6)), /encoder_layers/],
    ['layers above the checkpoint', (c) => ((c.encoder_layers = 40), (c.decoder_layers = 40)), /missing tensor 'model\.encoder\.layers\.\d+/],
    ['d_model 1e6', (c) => (c.d_model = 1e6), /d_model/],
    ['vocab_size 2^40', (c) => (c.vocab_size = 2 ** 40), /vocab_size/],
  ];
  it.each(cases)('%s: E_MODEL at once, through MarianModel.load and Translator.load', async (name, edit, re) => {
    const dir = modelCopy(`cap-${name.replace(/\W+/g, '-')}`, edit);
    const a = await codeOf(MarianModel.load(dir));
    expect(a.code).toBe('E_MODEL');
    expect(a.message).toMatch(re);
    const b = await codeOf(Translator.load(dir, { threads: 1 }));
    expect(b.code).toBe('E_MODEL');
  });
});

describe('8. packed headers are validated against the schema', () => {
  let good: Buffer;
  beforeAll(async () => {
    const f = path.join(tmp, 'good.chimera');
    (await MarianModel.load(modelDir, { precision: 'int8' })).save(f);
    good = fs.readFileSync(f);
  });
  /** Rewrites the header (padded in place, so offsets stay valid) after `edit`. */
  const withHeader = (name: string, edit: (h: Record<string, any>) => void, raw?: (json: string) => string) => {
    const hlen = Number(good.readBigUInt64LE(8));
    const h = JSON.parse(good.toString('utf8', 16, 16 + hlen));
    h.source = '';
    edit(h);
    let json = JSON.stringify(h);
    if (raw) json = raw(json);
    if (json.length > hlen) {
      h.files = {}; // room for edits that lengthen the header (the tokenizer is not needed to fail)
      json = JSON.stringify(h);
    }
    const hb = Buffer.from(json);
    if (hb.length > hlen) throw new Error('edited header too long');
    const out = Buffer.from(good);
    out.fill(0x20, 16, 16 + hlen);
    hb.copy(out, 16);
    const f = path.join(tmp, name);
    fs.writeFileSync(f, out);
    return f;
  };
  const firstBlobOf = (h: Record<string, any>, kind: string) => (h.blobs as { kind: string }[]).findIndex((b) => b.kind === kind);
  const cases: [string, (h: Record<string, any>) => void, RegExp][] = [
    ['missing config', (h) => delete h.config, /config/],
    ['null config', (h) => (h.config = null), /config/],
    ['badWordsIds: 5', (h) => (h.config.badWordsIds = 5), /badWordsIds/],
    ['a lying vocabSize', (h) => (h.config.vocabSize = 7000), /vocab/],
    ['embedScale "x"', (h) => (h.desc.embedScale = 'x'), /embedScale/],
    ['heads 4.5', (h) => ((h.desc.heads = 4.5), (h.config.decoderHeads = 4.5)), /Heads|heads/],
    ['precision "zzz"', (h) => (h.precision.encoder = 'zzz'), /precision/],
    ['overlapping blobs', (h) => { const i = firstBlobOf(h, 'f32'); const j = h.blobs.findIndex((b: any, k: number) => k > i && b.kind === 'f32'); h.blobs[j].offset = h.blobs[i].offset; }, /overlaps|expected/],
    ['format version 2', (h) => (h.format = 2), /format version/],
    ['maxPos 1e9 (config and desc)', (h) => ((h.config.maxPositions = 1e9), (h.desc.maxPos = 1e9)), /maxPositions/],
    ['dModel 1 (the state-size bypass)', (h) => (h.config.dModel = 1), /dModel|config says/],
    ['a blob referenced twice', (h) => (h.desc.encoder[0].lnAttn.beta = h.desc.encoder[0].lnAttn.gamma), /twice/],
    ['an unknown desc field', (h) => (h.desc.extra = 1), /unknown field/],
    ['a layer missing', (h) => h.desc.decoder.pop(), /decoder/],
  ];
  it.each(cases)('%s -> E_MODEL', async (name, edit, re) => {
    const f = withHeader(`${name.replace(/\W+/g, '-')}.chimera`, edit);
    const e = await codeOf(MarianModel.load(f));
    expect(e.code).toBe('E_MODEL');
    expect(e.message).toMatch(re);
  });
  it('20,000 nested [ in the header -> E_MODEL, no stack overflow', async () => {
    const hlen = Number(good.readBigUInt64LE(8));
    const h = JSON.parse(good.toString('utf8', 16, 16 + hlen));
    for (const [where, put] of [['desc', (x: string) => (h.desc.encoder = x)], ['config', (x: string) => (h.config.badWordsIds = x)]] as const) {
      put('NEST');
      const json = Buffer.from(JSON.stringify(h).replace('"NEST"', '['.repeat(20000) + ']'.repeat(20000)));
      const head = Buffer.alloc(16);
      head.write('CHMRPK01', 0, 'latin1');
      head.writeBigUInt64LE(BigInt(json.length), 8);
      const f = path.join(tmp, `nested-${where}.chimera`);
      fs.writeFileSync(f, Buffer.concat([head, json, Buffer.alloc(64)]));
      expect((await codeOf(MarianModel.load(f))).code).toBe('E_MODEL');
    }
  });
  it('maxPos 1e9 in a packed file does not kill the host through Translator.load', async () => {
    const f = withHeader('maxpos.chimera', (h) => ((h.config.maxPositions = 1e9), (h.desc.maxPos = 1e9)));
    expect((await codeOf(Translator.load(f, { threads: 1 }))).code).toBe('E_MODEL');
  });
});

describe('9. non-finite weights are E_MODEL naming the file and the tensor', () => {
  const patch = (dir: string, tensor: string, value: number) => {
    const file = path.join(dir, 'model.safetensors');
    const info = readSafetensorsHeader(file).tensors.get(tensor)!;
    const buf = fs.readFileSync(file);
    buf.writeFloatLE(value, info.begin + 4 * 3); // begin: the tensor's absolute offset in the file
    fs.writeFileSync(file, buf);
  };
  it.each([
    ['model.shared.weight', NaN], ['model.shared.weight', Infinity],
    ['model.encoder.layers.0.self_attn_layer_norm.weight', NaN], ['model.decoder.layers.1.fc2.bias', -Infinity],
  ])('%s = %s', async (tensor, value) => {
    const dir = modelCopy(`nan-${tensor}-${value}`.replace(/\W+/g, '-'));
    patch(dir, tensor, value);
    for (const precision of ['fp32', 'int8'] as const) {
      const e = await codeOf(MarianModel.load(dir, { precision }));
      expect(e.code).toBe('E_MODEL');
      expect(e.message).toContain('model.safetensors');
      expect(e.message).toContain(tensor);
    }
  });
  it('in a packed file: a layer-norm gamma and an fp32 weight', async () => {
    const m = await MarianModel.load(modelDir, { precision: 'fp32' });
    m.layerNorms()[0].params.gamma[5] = 1; // (live arrays are checked on assignment; poke the file instead)
    const f = path.join(tmp, 'nan.chimera');
    m.save(f);
    const buf = fs.readFileSync(f);
    const h = JSON.parse(buf.toString('utf8', 16, 16 + Number(buf.readBigUInt64LE(8))));
    const gi = h.desc.encoder[0].lnAttn.gamma.$blob;
    buf.writeFloatLE(NaN, h.blobs[gi].offset + 8);
    fs.writeFileSync(f, buf);
    const e = await codeOf(MarianModel.load(f));
    expect(e.code).toBe('E_MODEL');
    expect(e.message).toMatch(/nan\.chimera: tensor desc\.encoder\[0\]\.lnAttn\.gamma holds NaN/);
  });
});

describe('10-11. options are checked before anything is sent to the worker', () => {
  let t: Translator;
  beforeAll(async () => {
    t = await Translator.load(modelDir, { threads: 1, cacheBytes: 0 });
  });
  afterAll(() => t.close());
  const bad: [string, Record<string, unknown>][] = [
    ['temperature Infinity', { sample: true, temperature: Infinity }],
    ['temperature 1e30', { sample: true, temperature: 1e30 }],
    ['seed NaN', { sample: true, seed: NaN }],
    ['seed "abc"', { sample: true, seed: 'abc' }],
    ['lengthPenalty NaN', { beam: 2, lengthPenalty: NaN }],
    ['minNewTokens above maxLength', { maxLength: 5, minNewTokens: 10 }],
    ['a function', { beam: () => 1 }],
    ['a Symbol', { seed: Symbol('s') }],
    ['an unknown key', { beams: 2 }],
    ['topP 2', { sample: true, topP: 2 }],
    ['topK -1', { sample: true, topK: -1 }],
    ['beam 1.5', { beam: 1.5 }],
  ];
  it.each(bad)('%s -> E_ARG, and nothing is left pending', async (_n, o) => {
    const e = await codeOf(() => t.translate(['A dog runs.'], o as never));
    expect(e.code).toBe('E_ARG');
    expect(t.stats().active + t.stats().queued).toBe(0);
  });
  it('still translates afterwards', async () => {
    const [r] = await t.translate(['A dog runs.'], { maxLength: 8 });
    expect(r.text.length).toBeGreaterThan(0);
  });

  it('12. text with nothing translatable is E_INPUT with reason "empty"', async () => {
    for (const text of ['\u200b\u200b\u200b', '\ud800', '\udfff\ud800', '😀😀']) {
      const e = await codeOf(() => t.translate([text]));
      expect(e.code, JSON.stringify(text)).toBe('E_INPUT');
      expect(e.reason, JSON.stringify(text)).toBe('empty');
    }
  });
});

describe('10. kernel misuse gives ChimeraErrors', () => {
  it('foreign handles, fake arrays', async () => {
    const k = await import('../src/kernels');
    const w = new Float32Array(16 * 8).fill(0.5);
    const p8 = k.packInt8Weights(w, 16, 8);
    const p32 = k.packFp32Weights(w, 16, 8);
    expect((await codeOf(() => new k.PackedInt8Weights(p32.handle, 16, 8))).code).toBe('E_ARG');
    expect((await codeOf(() => new k.PackedFp32Weights(p8.handle, 16, 8))).code).toBe('E_ARG');
    expect((await codeOf(() => k.linearInt8(new Float32Array(8), 1, p32 as never))).code).toBe('E_ARG');
    expect((await codeOf(() => k.linear(new Float32Array(8), 1, Object.setPrototypeOf({ ...p8 }, k.PackedFp32Weights.prototype)))).code).toBe('E_ARG');
    expect((await codeOf(() => k.layerNorm(Object.create(Float32Array.prototype), 4, new Float32Array(4)))).code).toBe('E_DTYPE');
    expect((await codeOf(() => k.layerNorm(new Proxy(new Float32Array(8), {}), 4, new Float32Array(4)))).code).toBe('E_DTYPE');
  });
});
