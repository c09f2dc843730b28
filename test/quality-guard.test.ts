/**
 * The live quality guard (src/translator/quality-guard.ts) on the m30k model with Multi30k sentences: served int8
 * output is scored against the fp32 control over a sliding window. An untouched model stays on its tier over
 * several windows; a model degraded at run time through its live layer-norm gamma is caught within one window
 * and moved up the ladder by a hot swap, and steps back down once quality holds (hysteresis). The hot swap loses
 * and duplicates nothing under load; shadow work is dropped under pressure, never queued; the guard is off by
 * default.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { corpusBleu } from '../src/bleu';
import { ChimeraError } from '../src/errors';
import { MarianModel } from '../src/marian';
import { LADDER, mixedPlan, rungOf } from '../src/translator/quality-guard';
import { Translator, type TranslatorLoadOptions } from '../src/translator';

const MODEL_DIR = join(__dirname, '..', 'models', 'marian-m30k-en-de');
const SHARED = process.env.CHIMERA_SHARED ?? join(__dirname, '..', '..', 'shared');
const VAL_EN = join(SHARED, 'data', 'multi30k', 'val.en');
const HAVE_VAL = existsSync(VAL_EN);
const SENTENCES = HAVE_VAL ? readFileSync(VAL_EN, 'utf8').split('\n').filter((l) => l.trim() !== '').slice(0, 240) : [];
/** A decoder norm whose gamma, scaled down, costs this model about 40 BLEU against fp32 (measured: 92 → 55). */
const DEGRADE = { name: 'model.decoder.layers.0.final_layer_norm', scaleGamma: 0.2 };
const WINDOW = 20;
/** Between the untouched int8 model (~92 BLEU against fp32 on these sentences) and the degraded one (~55). */
const MIN_SCORE = 75;

const open: Translator[] = [];
afterAll(async () => {
  await Promise.all(open.map((t) => t.close()));
});

async function load(opts: TranslatorLoadOptions): Promise<Translator> {
  const t = await Translator.load(MODEL_DIR, { threads: 1, cacheBytes: 0, ...opts });
  open.push(t);
  return t;
}

/** Waits (by state, not by time) until the guard has scored `n` pairs in all. */
async function samples(t: Translator, n: number): Promise<void> {
  const t0 = Date.now();
  while ((t.stats().quality?.samples ?? 0) < n) {
    if (Date.now() - t0 > 120_000) throw new Error(`the guard scored ${t.stats().quality?.samples} pairs, waited for ${n}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Serves sentences [from, from + n) one request at a time and waits until each was shadowed. */
async function serve(t: Translator, from: number, n: number): Promise<void> {
  const before = t.stats().quality!.samples;
  for (let i = 0; i < n; i++) await t.translate(SENTENCES[(from + i) % SENTENCES.length]);
  await samples(t, before + n);
}

const guard = (extra: object = {}) => ({ sampleRate: 1, window: WINDOW, minScore: MIN_SCORE, maxShadowInflight: 64, shadowBudget: 1, cooldownMs: 0, ...extra });

describe('the quality guard: options and ladder', () => {
  it('is off by default', async () => {
    const t = await load({});
    expect(t.stats().quality).toBeNull();
  });

  it('rejects bad options with E_ARG, naming the key', async () => {
    const bad = async (g: unknown, re: RegExp) => {
      const e = await Translator.load(MODEL_DIR, { qualityGuard: g as never }).then(() => null, (x: unknown) => x);
      expect(e).toBeInstanceOf(ChimeraError);
      expect((e as ChimeraError).code).toBe('E_ARG');
      expect((e as ChimeraError).message).toMatch(re);
    };
    await bad({ minScore: 50, sampleRat: 0.1 }, /did you mean 'sampleRate'/);
    await bad({ sampleRate: 0.1 }, /minScore is required/);
    await bad({ minScore: 50, sampleRate: 2 }, /sampleRate/);
    await bad({ minScore: 50, metric: 'ter' }, /metric/);
    await bad({ minScore: 50, recoverScore: 40 }, /recoverScore/);
    await bad({ minScore: 50, action: 'escalate', sensitiveGroups: ['decoder.x'] }, /sensitiveGroups/);
  });

  it('names rungs as the quantize ladder does, and builds the mixed plan from groups', () => {
    expect(LADDER).toEqual(['int8', 'int8+fp16', 'fp16', 'fp32']);
    const layers = { encoder: 3, decoder: 2 };
    const mixed = mixedPlan(layers, ['decoder.1', 'lmHead']);
    expect(mixed).toEqual({ encoder: 'int8', decoder: 'int8', lmHead: 'fp16', decoderLayers: ['int8', 'fp16'] });
    expect(rungOf(mixed)).toBe('int8+fp16');
    expect(rungOf({ encoder: 'int8', decoder: 'int8', lmHead: 'int8' })).toBe('int8');
    expect(rungOf({ encoder: 'fp16', decoder: 'fp16', lmHead: 'fp16' })).toBe('fp16');
    expect(rungOf({ encoder: 'fp32', decoder: 'fp32', lmHead: 'fp32' })).toBe('fp32');
  });
});

describe.skipIf(!HAVE_VAL)('the quality guard on the m30k model', () => {
  it('an untouched int8 model stays on its tier over several windows', async () => {
    const t = await load({ precision: 'int8', qualityGuard: guard({ action: 'escalate' }) });
    for (let w = 0; w < 3; w++) {
      await serve(t, w * WINDOW, WINDOW);
      const q = t.stats().quality!;
      expect(q.score, `window ${w}`).not.toBeNull();
      expect(q.score!, `window ${w}`).toBeGreaterThanOrEqual(MIN_SCORE);
    }
    const q = t.stats().quality!;
    expect(q.tier).toBe('int8');
    expect(q.changes).toEqual([]);
    expect(q.samples).toBe(3 * WINDOW);
    expect(q.controlLoaded).toBe(true);
    expect(t.modelInfo.precision).toEqual({ encoder: 'int8', decoder: 'int8', lmHead: 'int8' });
  });

  it('a model degraded at run time (live layer-norm gamma) is caught within one window and escalated; with hysteresis it steps back down', async () => {
    const t = await load({ precision: 'int8', qualityGuard: guard({ action: 'escalate', recoverScore: 85, metric: 'bleu' }) });
    const events: { from: string; to: string; score: number }[] = [];
    t.on('tierChange', (e) => events.push(e));
    await serve(t, 0, WINDOW);
    expect(t.stats().quality!.score!).toBeGreaterThanOrEqual(MIN_SCORE);
    await t.adjustLayerNorm(DEGRADE.name, { scaleGamma: DEGRADE.scaleGamma });
    // one window of degraded output: the window slides, its score falls under minScore, the guard escalates
    await serve(t, 100, WINDOW);
    for (let i = 0; i < 2000 && t.stats().quality!.changes.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    const q = t.stats().quality!;
    expect(q.changes.length, JSON.stringify(q)).toBeGreaterThanOrEqual(1);
    expect(q.changes[0].from).toBe('int8');
    expect(q.changes[0].to).toBe('int8+fp16');
    expect(q.changes[0].score).toBeLessThan(MIN_SCORE);
    expect(events[0]).toMatchObject({ event: 'chimera.tier_change', from: 'int8', to: 'int8+fp16' });
    // the new rung is a fresh model at the mixed plan (the degradation lived in the old one)
    expect(rungOf(t.modelInfo.precision)).toBe('int8+fp16');
    // recovery: a full window at or above recoverScore steps back down to int8
    await serve(t, 140, WINDOW + 2);
    for (let i = 0; i < 2000 && t.stats().quality!.changes.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    const r = t.stats().quality!;
    expect(r.changes.length).toBe(2);
    expect(r.changes[1]).toMatchObject({ from: 'int8+fp16', to: 'int8' });
    expect(r.changes[1].score).toBeGreaterThanOrEqual(85);
    expect(r.tier).toBe('int8');
  });

  it("'alert' only reports: the tier stays, a qualityAlert event fires", async () => {
    const t = await load({ precision: 'int8', qualityGuard: guard({ action: 'alert', metric: 'chrf', minScore: 99.9 }) });
    const alerts: { score: number }[] = [];
    t.on('qualityAlert', (e) => alerts.push(e));
    await serve(t, 0, WINDOW);
    expect(alerts.length).toBe(1);
    expect(alerts[0]).toMatchObject({ metric: 'chrf', minScore: 99.9, tier: 'int8' });
    expect(t.stats().quality!.changes).toEqual([]);
    expect(t.stats().quality!.metric).toBe('chrf');
  });

  it('shadow work is dropped, and counted, under pressure: never queued', async () => {
    const t = await load({ precision: 'int8', qualityGuard: guard({ maxShadowInflight: 1 }) });
    await t.translate(SENTENCES.slice(0, 12));
    const q = t.stats().quality!;
    expect(q.shadowDropped).toBe(11); // one shadow in flight, the other eleven dropped at once
    await samples(t, 1);
    expect(t.stats().quality!.samples).toBe(1);
  });

  it("the control's duty cycle is bounded: past shadowBudget, samples are dropped", async () => {
    const t = await load({ precision: 'int8', qualityGuard: guard({ shadowBudget: 0.00001 }) });
    // sentence by sentence: the first shadow is sent (nothing busy yet); while the control works on it, the busy
    // share of the last 10 s (0.1 ms of it) is used up at once, so the next ones are dropped
    for (let i = 0; i < 6; i++) await t.translate(SENTENCES[i]);
    await samples(t, 1);
    const q = t.stats().quality!;
    expect(q.samples + q.shadowDropped).toBe(6);
    expect(q.shadowDropped).toBeGreaterThanOrEqual(4);
  });

  it('a hot swap under load loses and duplicates nothing', async () => {
    const t = await load({ precision: 'int8' });
    const m8 = await MarianModel.load(MODEL_DIR, { precision: 'int8' });
    const m16 = await MarianModel.load(MODEL_DIR, { precision: 'fp16' });
    const tok = m8.tokenizer!;
    const alone = (m: MarianModel, s: string) => tok.decode(m.generate([tok.encode(s)]).ids[0]);
    const settled = new Map<number, number>();
    const calls = SENTENCES.slice(0, 120).map((s, i) =>
      t.translate(s).then((r) => {
        settled.set(i, (settled.get(i) ?? 0) + 1);
        return r[0].text;
      }),
    );
    const swap = t.swapPrecision('fp16');
    const later = SENTENCES.slice(120, 160).map((s) => swap.then(() => t.translate(s)));
    const texts = await Promise.all(calls);
    await swap;
    const after = (await Promise.all(later)).map((r) => r[0].text);
    expect(settled.size).toBe(120);
    expect([...settled.values()].every((c) => c === 1)).toBe(true);
    // each request ran whole on one tier or the other
    texts.forEach((x, i) => expect([alone(m8, SENTENCES[i]), alone(m16, SENTENCES[i])], `sentence ${i}`).toContain(x));
    // requests sent after the swap ran on fp16
    after.forEach((x, i) => expect(x).toBe(alone(m16, SENTENCES[120 + i])));
    expect(t.modelInfo.precision).toEqual({ encoder: 'fp16', decoder: 'fp16', lmHead: 'fp16' });
    const st = t.stats();
    expect(st.queued + st.active).toBe(0);
  });

  it('the guard score is the corpus score of the window (served against control output)', async () => {
    const t = await load({ precision: 'int8', qualityGuard: guard({ window: 10 }) });
    const control = await load({ precision: 'fp32' });
    const src = SENTENCES.slice(200, 210);
    const served = [];
    for (const s of src) served.push((await t.translate(s))[0].text);
    await samples(t, 10);
    const ref = (await control.translate(src)).map((r) => r.text);
    expect(t.stats().quality!.score).toBeCloseTo(corpusBleu(served, [ref]).score, 10);
  });
});
