/**
 * The live quality guard through the server (issue 15): `createServer({ qualityGuard })` on the m30k model at int8,
 * driven over real HTTP. The served model is degraded at run time through its live layer-norm gamma; the guard must
 * catch it within one window and escalate, and /metrics must show the score, samples, tier and change. The
 * `chimera serve` flags map onto the guard options.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseServeArgs } from '../src/commands/serve';
import { createServer, type ChimeraServer } from '../src/server';
import type { Translator } from '../src/translator';
import { parsePrometheus, postJson } from './helpers/server-http';

const MODEL_DIR = join(__dirname, '..', 'models', 'marian-m30k-en-de');
const VAL_EN = join(process.env.CHIMERA_SHARED ?? join(__dirname, '..', '..', 'shared'), 'data', 'multi30k', 'val.en');
const HAVE_VAL = existsSync(VAL_EN);
const SENTENCES = HAVE_VAL ? readFileSync(VAL_EN, 'utf8').split('\n').filter((l) => l.trim() !== '').slice(300, 400) : [];
const WINDOW = 12;

let app: ChimeraServer | undefined;
afterAll(async () => {
  await app?.close();
});

async function metrics(base: string): Promise<Map<string, number>> {
  const r = await fetch(base + '/metrics');
  return parsePrometheus(await r.text());
}

describe('serve flags', () => {
  it('--quality-* flags turn the guard on and set its options; without --quality-min-score it stays off', () => {
    const c = parseServeArgs(['--quality-min-score', '55', '--quality-action', 'escalate', '--quality-metric', 'chrf', '--quality-sample-rate', '0.1', '--quality-window', '200', '--quality-recover-score', '70', '--quality-cooldown-s', '5', '--quality-shadow-budget', '0.1'], {});
    expect(c).toMatchObject({ qualityMinScore: 55, qualityAction: 'escalate', qualityMetric: 'chrf', qualitySampleRate: 0.1, qualityWindow: 200, qualityRecoverScore: 70, qualityCooldownS: 5, qualityShadowBudget: 0.1 });
    expect(parseServeArgs([], {}).qualityShadowBudget).toBe(0.03);
    expect(parseServeArgs([], {}).qualityMinScore).toBeUndefined();
    expect(parseServeArgs([], { CHIMERA_QUALITY_MIN_SCORE: '40' }).qualityMinScore).toBe(40);
    expect(() => parseServeArgs(['--quality-action', 'panic'], {})).toThrow(/alert, escalate/);
  });
});

describe.skipIf(!HAVE_VAL)('the quality guard behind HTTP', () => {
  it('a degraded served model is caught within one window and escalated; /metrics shows it', async () => {
    app = createServer({
      model: MODEL_DIR, precision: 'int8', threads: 1, cacheMb: 0, logger: false,
      qualityGuard: { sampleRate: 1, window: WINDOW, minScore: 75, action: 'escalate', cooldownMs: 0, maxShadowInflight: 64, shadowBudget: 1, sensitiveGroups: ['decoder.0', 'lmHead'] },
    });
    const base = await app.listen({ host: '127.0.0.1', port: 0 });
    const t = app.chimera.translator as unknown as Translator;
    const served = async (from: number, n: number) => {
      const before = t.stats().quality!.samples;
      for (let i = 0; i < n; i++) expect((await postJson(base, '/v1/translate', { text: SENTENCES[from + i] })).status).toBe(200);
      for (let i = 0; i < 20_000 && t.stats().quality!.samples < before + n; i++) await new Promise((r) => setTimeout(r, 5));
    };
    await served(0, WINDOW);
    let m = await metrics(base);
    expect(m.get('chimera_quality_score{metric="bleu"}')).toBeGreaterThanOrEqual(75);
    expect(m.get('chimera_precision_tier{tier="int8"}')).toBe(1);
    expect(m.get('chimera_quality_samples_total')).toBe(WINDOW);
    await t.adjustLayerNorm('model.decoder.layers.0.final_layer_norm', { scaleGamma: 0.2 });
    await served(WINDOW, WINDOW);
    for (let i = 0; i < 2000 && t.stats().quality!.changes.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    m = await metrics(base);
    expect(m.get('chimera_tier_changes_total')).toBe(1);
    expect(m.get('chimera_precision_tier{tier="int8+fp16"}')).toBe(1);
    expect(m.get('chimera_precision_tier{tier="int8"}')).toBe(0);
    expect(m.get('chimera_quality_shadow_dropped_total')).toBe(0);
    // requests keep being answered by the new tier
    expect((await postJson(base, '/v1/translate', { text: SENTENCES[60] })).status).toBe(200);
  });
});
