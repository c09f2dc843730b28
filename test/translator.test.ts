/**
 * The Translator (src/translator.ts): text in, text out through a worker thread. Its outputs are compared with
 * MarianModel.generate run in this process on the same inputs; the event loop is measured while the worker
 * translates (and, as a control, while the same work runs on the main thread); streaming, input validation,
 * load failures, close() and request ordering are checked. MarianModel.generate's own input checks are here too.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChimeraError } from '../src/errors';
import { MarianModel, type GenerateOptions } from '../src/marian';
import { Translator, type TranslationResult } from '../src/translator';

const MODEL_DIR = join(__dirname, '..', 'models', 'marian-m30k-en-de');
const SHARED = process.env.CHIMERA_SHARED ?? join(__dirname, '..', '..', 'shared');
const VAL_EN = join(SHARED, 'data', 'multi30k', 'val.en');
const SHARED_MODEL = join(SHARED, 'models', 'marian-m30k-en-de');
const HAVE_VAL = existsSync(VAL_EN);
/** The shared copy when it exists (the brief's reference), else the built-in copy of the same model. */
const SAMPLE_MODEL = existsSync(join(SHARED_MODEL, 'model.safetensors')) ? SHARED_MODEL : MODEL_DIR;

const TEXTS = ['A dog runs.', 'Two men are playing soccer in the park.', 'A woman in a red dress is singing on a stage.'];

/** 32 sentences: Multi30k validation lines when the shared data is here, else varied synthetic ones. */
function longBatch(): string[] {
  if (HAVE_VAL) return readFileSync(VAL_EN, 'utf8').split('\n').filter((l) => l.trim() !== '').slice(0, 32);
  const who = ['A man', 'A young girl', 'Two dogs', 'An old woman', 'A group of children', 'A boy in a red shirt', 'Three people', 'A brown dog'];
  const what = ['is running across the grass', 'are playing in the snow', 'is riding a bike down the street', 'are sitting on a bench near the water'];
  const where = ['while people watch.', 'in front of a large building.', 'on a sunny day.', 'next to a white car.'];
  return Array.from({ length: 32 }, (_, i) => `${who[i % 8]} ${what[(i >> 3) % 4]} ${where[(i * 3) % 4]}`);
}

/** Fails (instead of hanging until the test timeout) when `p` has not settled after `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

/** The promise rejects with a ChimeraError of `code` whose message matches `msg`. */
async function rejectsWith(p: Promise<unknown>, code: string, msg?: RegExp): Promise<ChimeraError> {
  const e = await within(p.then(() => null, (err: unknown) => err), 20_000, 'the call');
  expect(e, 'expected a rejection').toBeInstanceOf(ChimeraError);
  expect((e as ChimeraError).code).toBe(code);
  if (msg) expect((e as ChimeraError).message).toMatch(msg);
  return e as ChimeraError;
}

function throwsWith(fn: () => unknown, code: string, msg?: RegExp): void {
  let err: unknown = null;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a throw').toBeInstanceOf(ChimeraError);
  expect((err as ChimeraError).code).toBe(code);
  if (msg) expect((err as ChimeraError).message).toMatch(msg);
}

interface LoopStats<T> {
  value: T;
  elapsedMs: number;
  p99Ms: number;
  maxMs: number;
  /** Longest gap between two ticks of a 5 ms interval. */
  maxGapMs: number;
  ticks: number;
}

/** Runs `work` while recording event-loop delay (perf_hooks histogram and a 5 ms interval's drift). */
async function measureLoop<T>(work: () => Promise<T>): Promise<LoopStats<T>> {
  const h = monitorEventLoopDelay({ resolution: 10 });
  let last = performance.now();
  let maxGapMs = 0;
  let ticks = 0;
  const iv = setInterval(() => {
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
    ticks++;
  }, 5);
  h.enable();
  // The histogram's first timer tick only sets its baseline: let it (and the interval) start before the work.
  await new Promise((r) => setTimeout(r, 50));
  last = performance.now();
  const t0 = performance.now();
  const value = await work();
  const elapsedMs = performance.now() - t0;
  // Give the histogram and the interval one more turn, so a loop that was blocked records that delay.
  await new Promise((r) => setTimeout(r, 40));
  h.disable();
  clearInterval(iv);
  return { value, elapsedMs, p99Ms: h.percentile(99) / 1e6, maxMs: h.max / 1e6, maxGapMs, ticks };
}

let model: MarianModel;
let t: Translator;
const tmpDirs: string[] = [];

/** In-process reference: MarianModel.generate + decode on the same inputs. */
function reference(texts: string[], opts: GenerateOptions = {}): { text: string; tokens: number[] }[] {
  const tok = model.tokenizer!;
  return model.generate(texts.map((x) => tok.encode(x)), opts).ids.map((ids) => ({ text: tok.decode(ids), tokens: ids }));
}

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'chimera-translator-'));
  tmpDirs.push(d);
  return d;
}

/** A Translator without a sentence cache: streams and repeated work always decode. */
let tNoCache: Translator;

beforeAll(async () => {
  model = await MarianModel.load(MODEL_DIR);
  t = await within(Translator.load(MODEL_DIR), 30_000, 'Translator.load');
  tNoCache = await within(Translator.load(MODEL_DIR, { cacheBytes: 0 }), 30_000, 'Translator.load');
});

afterAll(async () => {
  await t?.close();
  await tNoCache?.close();
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

describe('translate()', () => {
  it('returns one result per text with the same text and tokens as MarianModel.generate (greedy)', async () => {
    const got = await t.translate(TEXTS);
    const want = reference(TEXTS);
    expect(got).toHaveLength(TEXTS.length);
    got.forEach((r, i) => {
      expect(Object.keys(r).sort()).toEqual(['cached', 'queueMs', 'text', 'tokens', 'totalMs', 'ttftMs']);
      expect(r.cached).toBe(false);
      expect(r.queueMs).toBeGreaterThanOrEqual(0);
      expect(r.ttftMs).toBeGreaterThanOrEqual(r.queueMs);
      expect(r.text).toBe(want[i].text);
      expect(r.tokens).toEqual(want[i].tokens);
      expect(r.text.length).toBeGreaterThan(0);
      expect(r.tokens[r.tokens.length - 1]).toBe(model.config.eosId);
      expect(r.ttftMs).toBeGreaterThan(0);
      expect(r.totalMs).toBeGreaterThanOrEqual(r.ttftMs);
    });
    expect(got[0].text).toBe('Ein Hund rennt.');
    // a single string gives a one-element list, with the same result as inside the batch
    const one = await t.translate(TEXTS[1]);
    expect(one).toHaveLength(1);
    expect(one[0].text).toBe(want[1].text);
  });

  it('beam 4 matches MarianModel.generate with beam 4', async () => {
    const got = await t.translate(TEXTS, { beam: 4 });
    const want = reference(TEXTS, { beam: 4 });
    expect(got.map((r) => r.text)).toEqual(want.map((r) => r.text));
    expect(got.map((r) => r.tokens)).toEqual(want.map((r) => r.tokens));
  });

  it('maxLength caps the generated tokens; seeded sampling in the worker equals sampling in-process', async () => {
    const [capped] = await t.translate(TEXTS[2], { maxLength: 3 });
    expect(capped.tokens.length).toBeLessThanOrEqual(3);
    expect(capped.tokens).toEqual(reference([TEXTS[2]], { maxLength: 3 })[0].tokens);
    const opts = { sample: true, temperature: 1.5, seed: 11 };
    const [s] = await t.translate(TEXTS[2], opts);
    expect(s.tokens).toEqual(reference([TEXTS[2]], opts)[0].tokens);
  });

  it('concurrent calls each resolve with their own result, and a failing one does not disturb the rest', async () => {
    const texts = [...TEXTS, 'A little girl climbs into a wooden playhouse.', 'A cat sleeps on the sofa.'];
    const opts = texts.map((_, i) => (i % 2 ? { beam: 4 } : {}));
    const order: number[] = [];
    const calls = texts.map((x, i) => t.translate(x, opts[i]).then((r) => (order.push(i), r)));
    const tooLong = Array(300).fill('dog').join(' ');
    const bad = t.translate(tooLong).then(
      () => (order.push(-1), null),
      (e: unknown) => (order.push(-1), e),
    );
    const after = t.translate(TEXTS[0]).then((r) => (order.push(99), r));
    const results: TranslationResult[][] = await within(Promise.all(calls), 30_000, 'concurrent translate');
    const badErr = await bad;
    await after;
    // batched: calls finish as their sentences do, not in submission order; every one settles exactly once
    expect([...order].sort((a, b) => a - b)).toEqual([-1, 0, 1, 2, 3, 4, 99]);
    results.forEach((r, i) => expect(r[0].text).toBe(reference([texts[i]], opts[i])[0].text));
    expect(badErr).toBeInstanceOf(ChimeraError);
    expect((badErr as ChimeraError).code).toBe('E_INPUT');
  });
});

describe('the event loop stays free while the worker translates', () => {
  const batch = longBatch();

  it('worker: loop delay stays small; control: the same work on the main thread blocks it', async () => {
    const tok = model.tokenizer!;
    const ids = batch.map((x) => tok.encode(x));
    // Workloads are sized by elapsed time, not fixed: repeat until MIN_MS has passed, so the measurement means the
    // same on a fast machine as on a slow one. The cache is off, so every repetition decodes.
    const MIN_MS = 300;
    const w = await measureLoop(async () => {
      const t0 = performance.now();
      let first: TranslationResult[] | undefined;
      do first ??= await tNoCache.translate(batch, { beam: 4 });
      while (performance.now() - t0 < MIN_MS && (await tNoCache.translate(batch, { beam: 4 })));
      return first;
    });
    // control: the same batch and search, synchronously on this thread, repeated for as long
    const c = await measureLoop(async () => {
      const t0 = performance.now();
      let first: ReturnType<MarianModel['generate']> | undefined;
      do first ??= model.generate(ids, { beam: 4 });
      while (performance.now() - t0 < MIN_MS && model.generate(ids, { beam: 4 }));
      return first;
    });

    const info = `worker ${JSON.stringify({ ...w, value: undefined })} main ${JSON.stringify({ ...c, value: undefined })}`;
    // the same translations either way
    expect(w.value.map((r) => r.tokens), info).toEqual(c.value.ids);
    // worker: the loop kept turning, with small delays throughout
    expect(w.p99Ms, info).toBeLessThan(50);
    expect(w.maxMs, info).toBeLessThan(w.elapsedMs / 4);
    expect(w.maxGapMs, info).toBeLessThan(w.elapsedMs / 4);
    expect(w.ticks, info).toBeGreaterThan(w.elapsedMs / 50);
    // control: one delay as long as most of the generation
    expect(c.maxMs, info).toBeGreaterThan(c.elapsedMs / 2);
    expect(c.maxGapMs, info).toBeGreaterThan(c.elapsedMs / 2);
    expect(c.ticks, info).toBeLessThan(w.ticks);
  });
});

describe('stream()', () => {
  it('yields the tokens one by one; they equal translate(), and text only grows', async () => {
    const text = 'A man in a blue shirt is riding a bike down the street.';
    const [want] = await t.translate(text);
    const iter = tNoCache.stream(text);
    const tokens: number[] = [];
    let prev = '';
    let r = await iter.next();
    for (; !r.done; r = await iter.next()) {
      const ev = r.value;
      tokens.push(ev.token);
      expect(ev.text.startsWith(prev), `'${ev.text}' extends '${prev}'`).toBe(true);
      expect(ev.delta).toBe(ev.text.slice(prev.length));
      prev = ev.text;
    }
    expect(tokens).toEqual(want.tokens);
    expect(tokens.length).toBeGreaterThan(3);
    expect(prev).toBe(want.text);
    // the iterator's return value is the full result
    expect(r.value.tokens).toEqual(want.tokens);
    expect(r.value.text).toBe(want.text);
  });

  it('for await works and seeded sampling streams the same tokens as translate()', async () => {
    const opts = { sample: true, temperature: 0.8, seed: 5 };
    const [want] = await t.translate(TEXTS[1], opts);
    const tokens: number[] = [];
    for await (const ev of tNoCache.stream(TEXTS[1], opts)) tokens.push(ev.token);
    expect(tokens).toEqual(want.tokens);
  });

  it('refuses beam > 1 (E_ARG) and empty text (E_INPUT), and the translator still works afterwards', async () => {
    const drain = async (text: unknown, opts?: object) => {
      for await (const ev of tNoCache.stream(text as string, opts)) void ev;
    };
    await rejectsWith(drain(TEXTS[0], { beam: 4 }), 'E_ARG', /beam/);
    await rejectsWith(drain(''), 'E_INPUT');
    await rejectsWith(drain('  \t '), 'E_INPUT');
    await rejectsWith(drain(42), 'E_INPUT');
    expect((await t.translate(TEXTS[0]))[0].text).toBe('Ein Hund rennt.');
  });
});

describe('translate() input validation', () => {
  it('empty, whitespace-only, non-string and empty-array inputs are E_INPUT', async () => {
    await rejectsWith(t.translate(''), 'E_INPUT');
    await rejectsWith(t.translate('   \n\t  '), 'E_INPUT');
    await rejectsWith(t.translate(['A dog runs.', ' ']), 'E_INPUT');
    await rejectsWith(t.translate([]), 'E_INPUT');
    await rejectsWith(t.translate(42 as unknown as string), 'E_INPUT');
    await rejectsWith(t.translate(null as unknown as string), 'E_INPUT');
    await rejectsWith(t.translate(['A dog runs.', 7] as unknown as string[]), 'E_INPUT');
  });

  it('a text longer than the position table is E_INPUT with the limit in the message', async () => {
    const max = model.config.maxPositions;
    expect(max).toBe(256);
    const long = Array(300).fill('dog').join(' ');
    await rejectsWith(t.translate(long), 'E_INPUT', new RegExp(`at most ${max}`));
    const e = await rejectsWith(t.translate(['A dog runs.', long]), 'E_INPUT', /input 1 has \d+ tokens/);
    expect(e.reason).toBe('too_long');
    // just under the limit is fine: 255 words of 'dog' + eos
    const ok = Array(255).fill('dog').join(' ');
    expect(model.tokenizer!.encode(ok).length).toBeLessThanOrEqual(max);
    const [r] = await t.translate(ok, { maxLength: 4 });
    expect(r.tokens.length).toBeGreaterThan(0);
  });

  it('bad options are E_ARG, and an absurd beam does not break later requests', async () => {
    await rejectsWith(t.translate(TEXTS[0], { beam: 0 }), 'E_ARG', /beam/);
    await rejectsWith(t.translate(TEXTS[0], { beam: 1e6 }), 'E_ARG', /beam/);
    await rejectsWith(t.translate(TEXTS[0], { maxLength: 0 }), 'E_ARG');
    await rejectsWith(t.translate(TEXTS[0], { sample: true, temperature: 0 }), 'E_ARG', /temperature/);
    const got = await t.translate(TEXTS, { beam: 4 });
    expect(got.map((r) => r.text)).toEqual(reference(TEXTS, { beam: 4 }).map((r) => r.text));
  });
});

describe('Translator.load failures and close()', () => {
  it('a missing directory is E_MODEL', async () => {
    await rejectsWith(Translator.load('/nonexistent/model-dir'), 'E_MODEL', /\/nonexistent\/model-dir.*does not exist/);
  });

  it('directories that are not models are E_MODEL naming the problem, without hanging', async () => {
    const empty = tmp();
    await rejectsWith(Translator.load(empty), 'E_MODEL', /config\.json.*cannot read/);

    const broken = tmp();
    writeFileSync(join(broken, 'config.json'), '{ "model_type": "marian", ');
    await rejectsWith(Translator.load(broken), 'E_MODEL', /config\.json.*not valid JSON/);

    const noWeights = tmp();
    copyFileSync(join(MODEL_DIR, 'config.json'), join(noWeights, 'config.json'));
    await rejectsWith(Translator.load(noWeights), 'E_MODEL', /model\.safetensors/);

    const noTokenizer = tmp();
    for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(MODEL_DIR, f), join(noTokenizer, f));
    await rejectsWith(Translator.load(noTokenizer), 'E_MODEL', /tokenizer/);

    // a plain file (not a packed model) is refused too
    await rejectsWith(Translator.load(join(MODEL_DIR, 'config.json')), 'E_MODEL', /config\.json/);
  });

  it('bad load options are rejected (not thrown) with E_ARG', async () => {
    await rejectsWith(Translator.load(MODEL_DIR, { precision: 'int4' as 'int8' }), 'E_ARG', /precision/);
    let p: Promise<unknown> | undefined;
    expect(() => {
      p = Translator.load(MODEL_DIR, { precision: (() => 'fp32') as unknown as 'fp32' });
    }).not.toThrow();
    await rejectsWith(p!, 'E_ARG');
  });

  it('close() rejects pending requests, later calls are rejected, and close is idempotent', async () => {
    const t2 = await within(Translator.load(MODEL_DIR), 30_000, 'Translator.load');
    expect(t2.loadMs).toBeGreaterThan(0);
    expect((await t2.translate(TEXTS[0]))[0].text).toBe('Ein Hund rennt.');
    const pending = t2.translate(longBatch(), { beam: 4 });
    const settled = pending.then(() => null, (e: unknown) => Promise.reject(e));
    settled.catch(() => undefined); // handled below, after close()
    await within(t2.close(), 10_000, 'close()');
    await rejectsWith(settled, 'E_CLOSED', /closed/);
    await rejectsWith(t2.translate(TEXTS[0]), 'E_CLOSED', /closed/);
    const drain = async () => {
      for await (const ev of t2.stream(TEXTS[0])) void ev;
    };
    await rejectsWith(drain(), 'E_CLOSED', /closed/);
    await within(t2.close(), 5_000, 'second close()');
  });
});

describe('MarianModel.generate input checks', () => {
  it('ids out of range, non-integer ids and empty lists are E_INPUT', () => {
    const V = model.config.vocabSize;
    throwsWith(() => model.generate([[-1, 0]]), 'E_INPUT', /-1/);
    throwsWith(() => model.generate([[V, 0]]), 'E_INPUT', new RegExp(`${V}`));
    throwsWith(() => model.generate([[3.5, 0]]), 'E_INPUT');
    throwsWith(() => model.generate([[NaN]]), 'E_INPUT');
    throwsWith(() => model.generate([['5' as unknown as number, 0]]), 'E_INPUT');
    throwsWith(() => model.generate([[]]), 'E_INPUT');
    throwsWith(() => model.generate([]), 'E_INPUT');
    throwsWith(() => model.generate([[5, 0], []]), 'E_INPUT');
    throwsWith(() => model.generate([new Array(model.config.maxPositions + 1).fill(5)]), 'E_INPUT', /at most 256/);
  });

  it('bad options are E_ARG', () => {
    const src = model.tokenizer!.encode('A dog runs.');
    throwsWith(() => model.generate([src], { beam: 0 }), 'E_ARG', /beam/);
    throwsWith(() => model.generate([src], { beam: 1.5 }), 'E_ARG', /beam/);
    throwsWith(() => model.generate([src], { beam: 1e6 }), 'E_ARG', /beam/);
    throwsWith(() => model.generate([src], { maxLength: 0 }), 'E_ARG', /maxLength/);
    throwsWith(() => model.generate([src], { maxLength: 2.5 }), 'E_ARG', /maxLength/);
    throwsWith(() => model.generate([src], { sample: true, temperature: 0 }), 'E_ARG', /temperature/);
    throwsWith(() => model.generate([src], { temperature: -1 }), 'E_ARG', /temperature/);
    throwsWith(() => model.generate([src], { sample: true, topP: 0 }), 'E_ARG', /topP/);
    throwsWith(() => model.generate([src], { sample: true, beam: 2 }), 'E_ARG', /sampl/);
  });

  it('a refused oversized request leaves the model usable', async () => {
    // a fresh model whose decoder state holds one slot
    const m = await MarianModel.load(MODEL_DIR);
    const src = m.tokenizer!.encode(TEXTS[1]);
    const greedy = m.generate([src]).ids[0];
    // 20000 sources x beam 64 would need terabytes of decoder state: refused
    let err: unknown = null;
    try {
      m.generate(new Array(20_000).fill(src), { beam: 64 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ChimeraError);
    // the next requests, bigger than the state that exists but far smaller than the refused one, still run
    expect(m.generate([src], { beam: 4 }).ids[0]).toEqual(model.generate([src], { beam: 4 }).ids[0]);
    expect(m.generate([src, src]).ids).toEqual([greedy, greedy]);
  });

  it('teacherForcedLogits refuses decoder inputs it cannot take with E_INPUT', () => {
    const src = model.tokenizer!.encode(TEXTS[0]);
    const start = model.config.decoderStartId;
    throwsWith(() => model.teacherForcedLogits(src, []), 'E_INPUT');
    throwsWith(() => model.teacherForcedLogits(src, [start, -3]), 'E_INPUT', /-3/);
    throwsWith(() => model.teacherForcedLogits(src, new Array(model.config.maxPositions + 1).fill(start)), 'E_INPUT', /at most 256/);
    expect(model.teacherForcedLogits(src, [start, 9]).length).toBe(2 * model.config.vocabSize);
  });

  it('seeded sampling is reproducible and differs between seeds', async () => {
    const m = SAMPLE_MODEL === MODEL_DIR ? model : await MarianModel.load(SAMPLE_MODEL);
    const tok = m.tokenizer!;
    const src = [tok.encode('A man in a blue shirt is riding a bike.'), tok.encode(TEXTS[2])];
    const run = (seed: number) => m.generate(src, { sample: true, temperature: 1.5, seed, maxLength: 40 }).ids;
    const a = run(1);
    expect(run(1)).toEqual(a);
    const outs = [2, 3, 4].map(run);
    for (const o of outs) expect(o).not.toEqual(a);
    expect(new Set([a, ...outs].map((o) => JSON.stringify(o))).size).toBe(4);
    // and sampling is not greedy in disguise
    expect(a).not.toEqual(m.generate(src, { maxLength: 40 }).ids);
  });
});
