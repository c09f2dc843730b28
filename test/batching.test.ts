/**
 * Continuous batching (src/engine/scheduler.ts, src/translator.ts): a request's output must not depend on what it
 * was batched with. Every request of a mixed schedule (greedy, beam 2/4, seeded sampling; different lengths;
 * joining at different steps) is compared with the same request run alone through MarianModel.generate. Slots
 * and sources must return to the free lists, state growth must keep live sequences intact, aborts must free
 * what they held, a full queue answers E_BUSY at once, the sentence cache must respect its bound and its keys,
 * and two Translators keep independent thread settings.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbortError, ChimeraError } from '../src/errors';
import { getThreads, setThreads } from '../src/kernels';
import { MarianModel, type GenerateOptions, type Precision } from '../src/marian';
import { Scheduler, type BatchModel, type SentenceResult } from '../src/engine/scheduler';
import { joinSentences, splitSentences } from '../src/translator/sentences';
import { Translator, type CachedSentence, type SentenceCacheTier } from '../src/translator';

const MODEL_DIR = join(__dirname, '..', 'models', 'marian-m30k-en-de');
const SHARED = process.env.CHIMERA_SHARED ?? join(__dirname, '..', '..', 'shared');
const VAL_EN = join(SHARED, 'data', 'multi30k', 'val.en');

const FALLBACK = [
  'A dog runs across the grass.', 'Two men are playing soccer in the park.', 'A woman in a red dress is singing on a stage.',
  'A little girl climbs into a wooden playhouse.', 'A man rides a bike down the street.', 'Three children play in the snow.',
  'An old man is sitting on a bench near the water.', 'A group of people stand in front of a large building.',
];
/** 48 varied sentences without the shared data: the fallback's 8, then combinations of their parts. */
function synthetic(): string[] {
  const who = ['A man', 'A young girl', 'Two dogs', 'An old woman', 'A group of children', 'A boy in a red shirt'];
  const what = ['is running across the grass', 'are playing in the snow', 'is riding a bike down the street', 'are sitting on a bench'];
  const where = ['near the water.', 'in front of a large building.', 'on a sunny day.', 'next to a white car.'];
  const out = [...FALLBACK];
  for (let i = 0; out.length < 48; i++) out.push(`${who[i % 6]} ${what[(i >> 1) % 4]} ${where[(i * 3) % 4]}`);
  return out;
}
const SENTENCES = existsSync(VAL_EN) ? readFileSync(VAL_EN, 'utf8').split('\n').filter((l) => l.trim() !== '').slice(0, 48) : synthetic();

/** Fails (instead of hanging until the test timeout) when `p` has not settled after `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

/** A batch model that records every step's rows and every memory shape it was asked for. */
function recording(inner: BatchModel) {
  const steps: { rows: number; slots: number[]; positions: number[] }[] = [];
  const shapes: number[][] = [];
  const m: BatchModel = {
    ...inner,
    reserve: (a, b, c, d) => {
      shapes.push([a, b, c, d]);
      inner.reserve(a, b, c, d);
    },
    step: (rows) => {
      steps.push({ rows: rows.count, slots: [...rows.slots], positions: [...rows.positions] });
      return inner.step(rows);
    },
  };
  return { m, steps, shapes };
}

interface Plan {
  src: string;
  opts: GenerateOptions;
  /** The tick after which the request is submitted. */
  at: number;
}

const MIXED: Omit<Plan, 'src'>[] = [
  { opts: {}, at: 0 },
  { opts: { beam: 4 }, at: 0 },
  { opts: { sample: true, temperature: 0.9, seed: 3 }, at: 1 },
  { opts: { beam: 2, maxLength: 6 }, at: 2 },
  { opts: { maxLength: 3 }, at: 2 },
  { opts: { sample: true, topK: 20, topP: 0.9, seed: 17 }, at: 3 },
  { opts: { beam: 4, lengthPenalty: 0.6, earlyStopping: true }, at: 5 },
  { opts: { minNewTokens: 12 }, at: 6 },
  { opts: {}, at: 9 },
  { opts: { beam: 3 }, at: 9 },
  { opts: { sample: true, seed: 99 }, at: 14 },
  { opts: { beam: 2 }, at: 20 },
];

/** Runs `plans` through one scheduler, submitting each at its tick; returns each request's ids. */
function runSchedule(model: MarianModel, batch: BatchModel, plans: Plan[], sched = { maxSlots: 64, maxSourceTokens: 4096, encodeChunkTokens: 256 }) {
  const s = new Scheduler(batch, { ...sched, maxStateBytes: 2 ** 30 });
  const tok = model.tokenizer!;
  const out: (number[] | null)[] = plans.map(() => null);
  let tick = 0;
  const pending = [...plans.keys()];
  while (pending.length > 0 || s.busy) {
    for (let k = pending.length - 1; k >= 0; k--) {
      const i = pending[k];
      if (plans[i].at > tick) continue;
      pending.splice(k, 1);
      s.submit({
        sources: [tok.encode(plans[i].src)],
        options: model.searchOptions(plans[i].opts),
        onDone: (r: SentenceResult[]) => (out[i] = r[0].ids),
        onError: (e) => {
          throw e;
        },
      });
    }
    s.tick();
    tick++;
  }
  return { out, stats: s.stats() };
}

describe.each<Precision>(['fp32', 'int8'])('scheduler, %s: batched equals alone', (precision) => {
  let model: MarianModel;
  beforeAll(async () => {
    model = await MarianModel.load(MODEL_DIR, { precision });
  });

  it('every search mode, different lengths, joining at different steps: each equals the same request alone', () => {
    const plans = MIXED.map((p, i) => ({ ...p, src: SENTENCES[(i * 5) % SENTENCES.length] }));
    const rec = recording(model.createBatch());
    const { out, stats } = runSchedule(model, rec.m, plans);
    const tok = model.tokenizer!;
    plans.forEach((p, i) => {
      const alone = model.generate([tok.encode(p.src)], p.opts).ids[0];
      expect(out[i], `request ${i} ${JSON.stringify(p.opts)}`).toEqual(alone);
    });
    // it really was one batch: greedy, beam and sampling rows shared steps, and late requests joined running ones
    expect(Math.max(...rec.steps.map((s) => s.rows))).toBeGreaterThan(8);
    const mixedStep = rec.steps.find((s) => new Set(s.positions).size > 3);
    expect(mixedStep, 'a step whose rows were at different positions (requests that joined mid-flight)').toBeDefined();
    expect(stats.slotsInUse).toBe(0);
    expect(stats.sourceTokensInUse).toBe(0);
  });

  it('beam and greedy rows in one step give the same tokens as alone, for a batch of many sentences', () => {
    const plans: Plan[] = SENTENCES.slice(0, 24).map((src, i) => ({ src, opts: i % 3 === 0 ? { beam: 4 } : {}, at: i % 4 }));
    const { out } = runSchedule(model, model.createBatch(), plans);
    const tok = model.tokenizer!;
    plans.forEach((p, i) => expect(out[i], `sentence ${i}`).toEqual(model.generate([tok.encode(p.src)], p.opts).ids[0]));
  });
});

describe('scheduler: slots, state growth, aborts', () => {
  let model: MarianModel;
  beforeAll(async () => {
    model = await MarianModel.load(MODEL_DIR, { precision: 'int8' });
  });

  it('slots and sources return to the free lists: no leak after 10,000 requests', () => {
    const batch = model.createBatch();
    const s = new Scheduler(batch, { maxSlots: 64, maxSourceTokens: 2048, maxStateBytes: 2 ** 30, encodeChunkTokens: 512 });
    const tok = model.tokenizer!;
    const ids = SENTENCES.map((x) => tok.encode(x));
    let done = 0, failed = 0, maxSlots = 0;
    for (let i = 0; i < 10_000; i++) {
      s.submit({
        sources: [ids[i % ids.length]],
        options: model.searchOptions({ maxLength: 1 + (i % 3), beam: i % 7 === 0 ? 2 : 1 }),
        onDone: () => done++,
        onError: () => failed++,
      });
      if (i % 64 === 63) {
        s.tick();
        maxSlots = Math.max(maxSlots, s.stats().slotsInUse);
      }
    }
    s.drain();
    const st = s.stats();
    expect(done).toBe(10_000);
    expect(failed).toBe(0);
    expect(st.slotsInUse).toBe(0);
    expect(st.sourceTokensInUse).toBe(0);
    expect(st.queued + st.active + st.activeSequences).toBe(0);
    expect(maxSlots).toBeGreaterThan(1);
    expect(maxSlots).toBeLessThanOrEqual(64);
  });

  it('growing the state (slots, positions, source length) mid-flight keeps live sequences correct', () => {
    const tok = model.tokenizer!;
    const long = `${SENTENCES[0]} ${SENTENCES[1]} ${SENTENCES[2]} ${SENTENCES[3]}`; // a source past the first 32-token span
    expect(tok.encode(long).length).toBeGreaterThan(32);
    // a long-running request first (its positions grow past 32 and 64), then a crowd that forces more slots, then
    // a long source that forces a longer source span, all while the first is running
    const plans: Plan[] = [
      { src: SENTENCES[5], opts: { maxLength: 90, minNewTokens: 80 }, at: 0 },
      { src: SENTENCES[6], opts: { beam: 4, minNewTokens: 40, maxLength: 45 }, at: 1 },
      ...SENTENCES.slice(8, 30).map((src, i) => ({ src, opts: i % 2 ? { beam: 2 } : {}, at: 3 + i })),
      { src: long, opts: {}, at: 40 },
    ];
    const rec = recording(model.createBatch());
    const { out } = runSchedule(model, rec.m, plans);
    plans.forEach((p, i) => expect(out[i], `request ${i}`).toEqual(model.generate([tok.encode(p.src)], p.opts).ids[0]));
    // the memory really grew in every dimension while sequences were live
    const first = rec.shapes[0], last = rec.shapes[rec.shapes.length - 1];
    expect(last[0], 'slots grew').toBeGreaterThan(first[0]);
    expect(last[1], 'positions grew').toBeGreaterThan(Math.max(first[1], 32));
    expect(last[3], 'source span grew').toBeGreaterThan(first[3]);
  });

  it('abort before admission, while running and after completion frees what it held and leaves the rest intact', () => {
    const batch = model.createBatch();
    // four slots: two greedy requests run, a beam-2 request (4 slots) waits
    const s = new Scheduler(batch, { maxSlots: 4, maxSourceTokens: 4096, maxStateBytes: 2 ** 30, encodeChunkTokens: 256 });
    const tok = model.tokenizer!;
    const got: Record<string, unknown> = {};
    const submit = (name: string, src: string, opts: GenerateOptions) =>
      s.submit({
        sources: [tok.encode(src)],
        options: model.searchOptions(opts),
        onDone: (r) => (got[name] = r[0].ids),
        onError: (e) => (got[name] = e),
      });
    const a = submit('running', SENTENCES[0], { minNewTokens: 20, maxLength: 25 });
    submit('other', SENTENCES[1], {});
    const q = submit('queued', SENTENCES[2], { beam: 2 }); // needs 4 slots: waits while the two others run
    s.tick();
    s.tick();
    expect(s.stats().activeSequences).toBe(2);
    expect(s.stats().queued).toBe(1);
    q(); // before admission
    expect(got.queued).toBeInstanceOf(AbortError);
    expect(s.stats().queued).toBe(0);
    s.tick();
    a(); // while running: its slot and source are free at once
    expect(got.running).toBeInstanceOf(AbortError);
    expect(s.stats().slotsInUse).toBe(1);
    expect(s.stats().queued).toBe(0);
    s.drain();
    expect(got.other).toEqual(model.generate([tok.encode(SENTENCES[1])]).ids[0]);
    a(); // after completion: nothing happens
    expect(s.stats().slotsInUse).toBe(0);
    expect(s.stats().sourceTokensInUse).toBe(0);
  });

  it('a request that can never fit is refused at submit (E_ARG / E_INPUT), not queued forever', () => {
    const s = new Scheduler(model.createBatch(), { maxSlots: 4, maxSourceTokens: 16, maxStateBytes: 2 ** 30, encodeChunkTokens: 256 });
    const tok = model.tokenizer!;
    const sub = (src: string, opts: GenerateOptions) => () => s.submit({ sources: [tok.encode(src)], options: model.searchOptions(opts), onDone: () => {}, onError: () => {} });
    expect(sub(SENTENCES[0], { beam: 4 })).toThrow(/maxSlots/);
    const long = SENTENCES.slice(0, 6).join(' ');
    try {
      sub(long, {})();
      expect.fail('expected a refusal');
    } catch (e) {
      expect((e as ChimeraError).code).toBe('E_INPUT');
      expect((e as ChimeraError).reason).toBe('too_long');
    }
    expect(s.busy).toBe(false);
  });
});

describe('sentences', () => {
  it('splitting keeps every character: joining the parts gives the input back', () => {
    const texts = [
      'A dog runs.  Two cats sleep.\nA man walks!',
      '  Leading and trailing space.   ',
      'Mr. Smith went to Washington. He saw e.g. a dog.',
      'No punctuation at all',
      'Question? Answer! Done.\n\n\nNew paragraph.',
      '3.5 apples cost $2.50. That is cheap.',
    ];
    for (const t of texts) {
      const segs = splitSentences(t);
      expect(joinSentences(segs, segs.map((s) => s.core)), JSON.stringify(t)).toBe(t);
      for (const s of segs) if (s.core !== '') expect(s.core).toBe(s.core.trim());
    }
    expect(splitSentences('A dog runs.  Two cats sleep.\nA man walks!').map((s) => s.core)).toEqual(['A dog runs.', 'Two cats sleep.', 'A man walks!']);
    // an abbreviation or an initial does not end a sentence
    expect(splitSentences('Mr. Smith went home. He slept.').map((s) => s.core)).toEqual(['Mr. Smith went home.', 'He slept.']);
    expect(splitSentences('We saw e.g. a dog. Then a cat.').map((s) => s.core)).toEqual(['We saw e.g. a dog.', 'Then a cat.']);
  });
});

describe('Translator: batching, cache, abort, back-pressure, threads', () => {
  let t: Translator;
  let model: MarianModel;
  beforeAll(async () => {
    model = await MarianModel.load(MODEL_DIR);
    t = await within(Translator.load(MODEL_DIR, { cacheBytes: 64 * 1024 }), 30_000, 'Translator.load');
  });
  afterAll(async () => {
    await t?.close();
  });
  const alone = (text: string, opts: GenerateOptions = {}) => {
    const tok = model.tokenizer!;
    return tok.decode(model.generate([tok.encode(text)], opts).ids[0]);
  };

  it('concurrent calls of every mode are batched and each equals the same text alone', async () => {
    const calls = SENTENCES.slice(0, 16).map((src, i) => {
      const opts = [{}, { beam: 4 }, { sample: true, seed: i, temperature: 0.7 }, { maxLength: 5 }][i % 4];
      return { src, opts, p: t.translate(src, opts) };
    });
    const res = await within(Promise.all(calls.map((c) => c.p)), 60_000, 'concurrent translate');
    calls.forEach((c, i) => {
      const { maxLength, ...rest } = c.opts as { maxLength?: number };
      expect(res[i][0].text, `call ${i}`).toBe(alone(c.src, { ...rest, ...(maxLength ? { maxLength: maxLength } : {}) }));
      expect(res[i][0].ttftMs).toBeGreaterThanOrEqual(res[i][0].queueMs);
      expect(res[i][0].totalMs).toBeGreaterThanOrEqual(res[i][0].ttftMs);
    });
    const st = t.stats();
    expect(st.stepRowsMean, 'more than one row per step on average').toBeGreaterThan(1);
    expect(st.slotsInUse).toBe(0);
    expect(st.active + st.queued).toBe(0);
  });

  it('multi-sentence texts: each sentence is translated as alone, the input whitespace is kept, known sentences come from the cache', async () => {
    const [a, b, c] = [SENTENCES[20], SENTENCES[21], SENTENCES[22]];
    const text = `${a}  ${b}\n${c} `;
    const [r] = await t.translate(text);
    expect(r.text).toBe(`${alone(a)}  ${alone(b)}\n${alone(c)} `);
    expect(r.cached).toBe(false);
    const before = t.stats().cache.hits;
    const [again] = await t.translate(`${c} ${a}`);
    expect(again.text).toBe(`${alone(c)} ${alone(a)}`);
    expect(again.cached).toBe(true);
    expect(again.queueMs).toBe(0);
    expect(t.stats().cache.hits - before).toBe(2);
    // options that change output are part of the key; unseeded sampling is never cached
    const [beam] = await t.translate(a, { beam: 4 });
    expect(beam.cached).toBe(false);
    expect((await t.translate(a, { beam: 4 }))[0].cached).toBe(true);
    expect((await t.translate(a, { sample: true }))[0].cached).toBe(false);
    expect((await t.translate(a, { sample: true }))[0].cached).toBe(false);
    expect((await t.translate(a, { sample: true, seed: 4 }))[0].cached).toBe(false);
    expect((await t.translate(a, { sample: true, seed: 4 }))[0].cached).toBe(true);
  });

  it('the cache stays within its byte bound', async () => {
    const small = await Translator.load(MODEL_DIR, { cacheBytes: 4096 });
    try {
      for (let i = 0; i < 40; i += 8) await small.translate(SENTENCES.slice(i, i + 8));
      const c = small.stats().cache;
      expect(c.bytes).toBeGreaterThan(0);
      expect(c.bytes).toBeLessThanOrEqual(4096);
      expect(c.entries).toBeLessThan(40);
    } finally {
      await small.close();
    }
  });

  it('keys distinguish precision: two tiers of one model sharing a cache tier never answer for each other', async () => {
    const store = new Map<string, CachedSentence>();
    const tier: SentenceCacheTier = {
      name: 'shared',
      get: async (keys) => keys.map((k) => store.get(k)),
      set: (entries) => entries.forEach(([k, v]) => store.set(k, v)),
    };
    const fp32 = await Translator.load(MODEL_DIR, { cacheBytes: 0, cacheTiers: [tier] });
    const int8 = await Translator.load(MODEL_DIR, { precision: 'int8', cacheBytes: 0, cacheTiers: [tier] });
    const fp32b = await Translator.load(MODEL_DIR, { cacheBytes: 0, cacheTiers: [tier] });
    try {
      const [x] = await fp32.translate(SENTENCES[30]);
      expect(x.cached).toBe(false);
      const [y] = await int8.translate(SENTENCES[30]);
      expect(y.cached, 'int8 must not read fp32 entries').toBe(false);
      const [z] = await fp32b.translate(SENTENCES[30]);
      expect(z.cached, 'a replica with the same model reads the tier').toBe(true);
      expect(z.text).toBe(x.text);
      expect(fp32b.stats().cache.tiers.shared.hits).toBe(1);
      expect(store.size).toBe(2);
    } finally {
      await Promise.all([fp32.close(), int8.close(), fp32b.close()]);
    }
  });

  it('a failing cache tier counts errors and misses but never fails a request', async () => {
    const broken: SentenceCacheTier = { name: 'down', get: () => Promise.reject(new Error('connection refused')), set: () => Promise.reject(new Error('down')) };
    const tb = await Translator.load(MODEL_DIR, { cacheTiers: [broken] });
    try {
      const [r] = await tb.translate(SENTENCES[31]);
      expect(r.text).toBe(alone(SENTENCES[31]));
      await new Promise((res) => setTimeout(res, 10));
      expect(tb.stats().cache.tiers.down.errors).toBeGreaterThanOrEqual(1);
    } finally {
      await tb.close();
    }
  });

  it('abort: before the call, while queued and while running rejects with AbortError and frees the slots', async () => {
    const tn = await Translator.load(MODEL_DIR, { cacheBytes: 0, maxSlots: 2 });
    try {
      const pre = new AbortController();
      pre.abort();
      await expect(tn.translate(SENTENCES[0], { signal: pre.signal })).rejects.toBeInstanceOf(AbortError);
      // long-running requests fill the two slots; a third waits in the queue
      const run1 = new AbortController(), run2 = new AbortController(), queued = new AbortController();
      const p1 = tn.translate(SENTENCES[1], { maxLength: 250, minNewTokens: 240, signal: run1.signal });
      const p2 = tn.translate(SENTENCES[2], { maxLength: 250, minNewTokens: 240, signal: run2.signal });
      const p3 = tn.translate(SENTENCES[3], { signal: queued.signal });
      const settled = Promise.allSettled([p1, p2, p3]);
      // wait (by state, not by time) until both long requests run and the third waits
      for (let i = 0; i < 2000 && !(tn.stats().activeSequences === 2 && tn.stats().queued === 1); i++) await new Promise((r) => setTimeout(r, 5));
      expect(tn.stats().queued).toBe(1);
      queued.abort();
      run2.abort();
      const [s1, s2, s3] = await within(settled, 60_000, 'aborts');
      expect(s2.status).toBe('rejected');
      expect((s2 as PromiseRejectedResult).reason).toBeInstanceOf(AbortError);
      expect((s3 as PromiseRejectedResult).reason).toBeInstanceOf(AbortError);
      expect(s1.status).toBe('fulfilled');
      run1.abort(); // after completion: no effect
      // the worker frees the slots at its next step boundary; stats arrive with its idle report
      await new Promise((r) => setTimeout(r, 50));
      const st = tn.stats();
      expect(st.slotsInUse).toBe(0);
      expect(st.queued + st.active).toBe(0);
      expect(st.requests.aborted).toBe(3);
      expect((await tn.translate(SENTENCES[3]))[0].text).toBe(alone(SENTENCES[3]));
    } finally {
      await tn.close();
    }
  });

  it('a full queue rejects at once with E_BUSY, and the Translator keeps working', async () => {
    const tq = await Translator.load(MODEL_DIR, { cacheBytes: 0, maxQueue: 2 });
    try {
      const a = tq.translate(SENTENCES[4]);
      const b = tq.translate(SENTENCES[5]);
      const t0 = performance.now();
      const c = tq.translate(SENTENCES[6]).then(() => null, (e: unknown) => e);
      const err = await c;
      expect(err).toBeInstanceOf(ChimeraError);
      expect((err as ChimeraError).code).toBe('E_BUSY');
      // "at once": before either queued request could have been answered
      expect(performance.now() - t0).toBeLessThan((await Promise.all([a, b]))[0][0].totalMs + 1);
      expect(tq.stats().requests.busy).toBe(1);
      expect((await tq.translate(SENTENCES[6]))[0].text).toBe(alone(SENTENCES[6]));
    } finally {
      await tq.close();
    }
  });

  it('two Translators in one process keep their own thread settings and work side by side', async () => {
    setThreads(2);
    const one = await Translator.load(MODEL_DIR, { threads: 1, cacheBytes: 0 });
    const two = await Translator.load(MODEL_DIR, { threads: 2, cacheBytes: 0 });
    try {
      expect(one.modelInfo.threads).toBe(1);
      expect(two.modelInfo.threads).toBe(2);
      expect(getThreads(), "the caller's setting is untouched").toBe(2);
      const [x, y] = await Promise.all([one.translate(SENTENCES.slice(0, 8)), two.translate(SENTENCES.slice(0, 8))]);
      expect(x.map((r) => r.text)).toEqual(y.map((r) => r.text));
      expect(x.map((r) => r.text)).toEqual(SENTENCES.slice(0, 8).map((s) => alone(s)));
    } finally {
      await Promise.all([one.close(), two.close()]);
    }
  });
});

describe.skipIf(process.platform !== 'linux')('lowPriority', () => {
  /** Nice values of this process's threads, from /proc (field 19 of each task's stat). */
  const nices = (): number[] => {
    const { readdirSync, readFileSync: read } = require('node:fs') as typeof import('node:fs');
    return readdirSync('/proc/self/task').flatMap((tid) => {
      try {
        const stat = read(`/proc/self/task/${tid}/stat`, 'utf8');
        return [Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])];
      } catch {
        return [];
      }
    });
  };
  it("runs a Translator's worker and pool threads at nice 19, and leaves the others alone", async () => {
    const before = nices().filter((n) => n === 19).length;
    const t = await Translator.load(MODEL_DIR, { lowPriority: true, threads: 2, cacheBytes: 0 });
    try {
      await t.translate(SENTENCES.slice(0, 4)); // starts the pool
      const low = nices().filter((n) => n === 19).length - before;
      expect(low, 'the worker thread and its pool thread').toBeGreaterThanOrEqual(2);
      expect(nices().filter((n) => n === 0).length, 'the main thread keeps its priority').toBeGreaterThan(0);
    } finally {
      await t.close();
    }
  });
});
