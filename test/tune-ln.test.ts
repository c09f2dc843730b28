/**
 * Layer-norm gamma/beta tuning (src/quality/tune-ln.ts) on the int8 tier of the Multi30k model: tuning on some
 * validation sentences must lower the post-LN activation error on other validation sentences; the tuned model,
 * saved and reloaded, must give the same logits; and tuning an fp32 model against an fp32 control must leave
 * gamma/beta where they were (the closed-form fit recovers the exact parameters when inputs match).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { heldoutVerdict } from '../src/commands/tune-ln';
import { MarianModel } from '../src/marian';
import { chimera } from './helpers/cli';
import { activationMse, controlDecoderInputs, restoreLayerNorms, tuneLayerNorms, type TuneLnResult } from '../src/quality/tune-ln';

const MODEL_DIR = join(__dirname, '..', 'models', 'marian-m30k-en-de');
const SHARED = process.env.CHIMERA_SHARED ?? join(__dirname, '..', '..', 'shared');
const SHARED_MODEL = join(SHARED, 'models', 'marian-m30k-en-de');
const MODEL = existsSync(join(SHARED_MODEL, 'model.safetensors')) ? SHARED_MODEL : MODEL_DIR;
const VAL_EN = join(SHARED, 'data', 'multi30k', 'val.en');

/** Validation sentences when the shared data is here, else varied synthetic ones (disjoint halves either way). */
function sentences(): string[] {
  if (existsSync(VAL_EN)) return readFileSync(VAL_EN, 'utf8').split('\n').filter((l) => l.trim() !== '');
  const who = ['A man', 'A young girl', 'Two dogs', 'An old woman', 'A group of children', 'A boy in a red shirt', 'Three people', 'A brown dog'];
  const what = ['is running across the grass', 'are playing in the snow', 'is riding a bike down the street', 'are sitting on a bench near the water', 'is climbing a rock'];
  const where = ['while people watch.', 'in front of a large building.', 'on a sunny day.', 'next to a white car.', 'at night.'];
  return Array.from({ length: 200 }, (_, i) => `${who[i % 8]} ${what[(i >> 3) % 5]} ${where[(i * 3 + (i >> 4)) % 5]}`);
}

describe('layer-norm tuning, int8 against fp32', () => {
  let f: MarianModel, q: MarianModel;
  let calib: number[][], held: number[][], heldDec: number[][];
  let before: ReturnType<typeof activationMse>;
  let res: TuneLnResult;
  let dir: string;

  beforeAll(async () => {
    f = await MarianModel.load(MODEL, { precision: 'fp32' });
    q = await MarianModel.load(MODEL, { precision: 'int8' });
    const tok = f.tokenizer!;
    const lines = sentences();
    calib = lines.slice(0, 60).map((l) => tok.encode(l));
    held = lines.slice(100, 140).map((l) => tok.encode(l));
    heldDec = controlDecoderInputs(f, held);
    before = activationMse(q, f, held, { decoderInputs: heldDec });
    res = tuneLayerNorms(q, f, calib);
    dir = mkdtempSync(join(tmpdir(), 'chimera-tune-ln-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('fits every norm, lowers the calibration error, and changes gamma/beta', () => {
    expect(res.perNorm.map((r) => r.name)).toEqual(q.layerNorms().map((n) => n.name));
    for (const r of res.perNorm) {
      expect(r.rows).toBeGreaterThan(0);
      expect(r.mseBefore).toBeGreaterThan(0);
      // At fitting time, least squares (with a small ridge) cannot do worse than the old parameters.
      expect(r.fitAfter).toBeLessThanOrEqual(r.fitBefore * (1 + 1e-6));
      expect(r.maxGammaChange + r.maxBetaChange).toBeGreaterThan(0);
    }
    expect(res.meanMseAfter).toBeLessThan(res.meanMseBefore);
  });

  it('lowers the held-out activation error', () => {
    const after = activationMse(q, f, held, { decoderInputs: heldDec });
    expect(after.mean).toBeLessThan(before.mean);
    const better = after.perNorm.filter((r, k) => r.mse < before.perNorm[k].mse).length;
    expect(better).toBeGreaterThanOrEqual(Math.ceil(0.8 * after.perNorm.length));
  });

  it('saves the corrections: the reloaded model gives identical logits to the tuned one, and different from untuned', async () => {
    const file = join(dir, 'tuned.chimera');
    q.save(file);
    const back = await MarianModel.load(file);
    const untuned = await MarianModel.load(MODEL, { precision: 'int8' });
    back.layerNorms().forEach((n, k) => {
      expect(n.name).toBe(q.layerNorms()[k].name);
      expect(Array.from(n.params.gamma)).toEqual(Array.from(q.layerNorms()[k].params.gamma));
      expect(Array.from(n.params.beta)).toEqual(Array.from(q.layerNorms()[k].params.beta));
    });
    for (let i = 0; i < 4; i++) {
      const a = q.teacherForcedLogits(held[i], heldDec[i]);
      const b = back.teacherForcedLogits(held[i], heldDec[i]);
      expect(b).toEqual(a);
      const u = untuned.teacherForcedLogits(held[i], heldDec[i]);
      expect(u).not.toEqual(a);
    }
    // restoreLayerNorms puts the untuned parameters back: logits match a freshly loaded int8 model again.
    const tunedNorms = q.layerNorms().map((n) => n.params.snapshot());
    restoreLayerNorms(q, res.original);
    expect(q.teacherForcedLogits(held[0], heldDec[0])).toEqual(untuned.teacherForcedLogits(held[0], heldDec[0]));
    q.layerNorms().forEach((n, k) => {
      n.params.gamma = tunedNorms[k].gamma;
      n.params.beta = tunedNorms[k].beta;
    });
  });
});

describe('layer-norm tuning, sanity checks', () => {
  it('an fp32 model tuned against an fp32 control keeps its gamma/beta', async () => {
    const f = await MarianModel.load(MODEL, { precision: 'fp32' });
    const q = await MarianModel.load(MODEL, { precision: 'fp32' });
    const tok = f.tokenizer!;
    const calib = sentences().slice(0, 15).map((l) => tok.encode(l));
    const res = tuneLayerNorms(q, f, calib, { recapture: 'layer' });
    for (const r of res.perNorm) {
      expect(r.mseBefore).toBeLessThan(1e-12);
      expect(r.maxGammaChange).toBeLessThan(1e-4);
      expect(r.maxBetaChange).toBeLessThan(1e-4);
    }
    q.layerNorms().forEach((n, k) => {
      const o = res.original[k];
      for (let c = 0; c < o.gamma.length; c++) {
        expect(Math.abs(n.params.gamma[c] - o.gamma[c])).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(o.gamma[c])));
        expect(Math.abs(n.params.beta[c] - o.beta[c])).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(o.beta[c])));
      }
    });
  });

  it('refuses a model tuned against itself and bad options', async () => {
    const f = await MarianModel.load(MODEL, { precision: 'fp32' });
    const ids = [f.tokenizer!.encode('A dog runs.')];
    expect(() => tuneLayerNorms(f, f, ids)).toThrow(expect.objectContaining({ code: 'E_ARG' }));
    const q = await MarianModel.load(MODEL, { precision: 'int8' });
    expect(() => tuneLayerNorms(q, f, [])).toThrow(expect.objectContaining({ code: 'E_INPUT' }));
    expect(() => tuneLayerNorms(q, f, ids, { ridge: -1 })).toThrow(expect.objectContaining({ code: 'E_ARG' }));
    expect(() => tuneLayerNorms(q, f, ids, { decoderInputs: [] })).toThrow(expect.objectContaining({ code: 'E_SHAPE' }));
  });
});

describe('chimera tune-ln', () => {
  it('tunes, reports held-out BLEU and activation error, and writes a packed model that reloads identically', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'chimera-tune-ln-cli-'));
    try {
      const lines = sentences();
      const calib = join(dir, 'calib.en'), src = join(dir, 'held.en'), ref = join(dir, 'held.de'), out = join(dir, 'tuned.chimera');
      writeFileSync(calib, lines.slice(0, 8).join('\n') + '\n');
      writeFileSync(src, lines.slice(50, 58).join('\n') + '\n');
      // References: the fp32 model's own translations are enough to exercise the BLEU report.
      const f = await MarianModel.load(MODEL, { precision: 'fp32' });
      const tok = f.tokenizer!;
      writeFileSync(ref, lines.slice(50, 58).map((l) => tok.decode(f.generate([tok.encode(l)]).ids[0])).join('\n') + '\n');
      // --force: this test is about the report, the write and the reload; whether 8 calibration sentences help on
      // 8 held-out ones moves with any change of encoder numerics (the next test covers the refusal).
      const args = ['tune-ln', '--model', MODEL, '--calib', calib, '--heldout-src', src, '--heldout-ref', ref, '--out', out, '--report', join(dir, 'r.json'), '--force'];
      const r = chimera(args);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/held-out BLEU on 8 sentences/);
      expect(r.stdout).toMatch(/reloaded: identical logits/);
      const rep = JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8'));
      expect(rep.bleu.fp32).toBeCloseTo(100, 6);
      expect(rep.perNorm).toHaveLength(f.layerNorms().length);
      const back = await MarianModel.load(out);
      expect(back.precision.encoder).toBe('int8');
      expect(rep.written).toBe(true);
      // Misaligned held-out files are refused.
      writeFileSync(ref, 'nur eine Zeile\n');
      const bad = chimera(args);
      expect(bad.status).toBe(1);
      expect(bad.stderr).toMatch(/E_INPUT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('tuning that lowers held-out BLEU is said loudly and not written without --force', async (ctx) => {
    const dir = mkdtempSync(join(tmpdir(), 'chimera-tune-ln-worse-'));
    try {
      const lines = sentences();
      const calib = join(dir, 'calib.en'), src = join(dir, 'held.en'), ref = join(dir, 'held.de'), out = join(dir, 'tuned.chimera');
      writeFileSync(calib, lines.slice(0, 8).join('\n') + '\n');
      writeFileSync(src, lines.slice(50, 90).join('\n') + '\n');
      // The untuned int8 model's own output as the references: it scores 100, so any change tuning makes costs BLEU.
      const q = await MarianModel.load(MODEL, { precision: 'int8' });
      const tok = q.requireTokenizer();
      writeFileSync(ref, lines.slice(50, 90).map((l) => tok.decode(q.generate([tok.encode(l)]).ids[0])).join('\n') + '\n');
      const args = ['tune-ln', '--model', MODEL, '--calib', calib, '--heldout-src', src, '--heldout-ref', ref, '--out', out, '--report', join(dir, 'r.json')];
      const r = chimera(args);
      const rep = JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8'));
      if (rep.worse === null) ctx.skip(); // tuning changed none of the 40 translations: nothing to refuse
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/WARNING: layer-norm tuning made int8 WORSE on the held-out set \(held-out BLEU went down: 100\.00 -> /);
      expect(r.stderr).toContain('was NOT written');
      expect(rep.written).toBe(false);
      expect(existsSync(out)).toBe(false);
      const forced = chimera([...args, '--force']);
      expect(forced.status, forced.stderr).toBe(0);
      expect(forced.stderr).toContain('writing');
      expect(existsSync(out)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('heldoutVerdict', () => {
  it('BLEU decides when there are references, else the held-out activation error', () => {
    expect(heldoutVerdict({ bleuBefore: 30.83, bleuAfter: 30.28, mseBefore: 2, mseAfter: 1 })).toBe('held-out BLEU went down: 30.83 -> 30.28');
    expect(heldoutVerdict({ bleuBefore: 30.28, bleuAfter: 30.28, mseBefore: 1, mseAfter: 2 })).toBeNull();
    expect(heldoutVerdict({ mseBefore: 1e-3, mseAfter: 2e-3 })).toMatch(/activation error went up: 1\.000e-3 -> 2\.000e-3/);
    expect(heldoutVerdict({ mseBefore: 2e-3, mseAfter: 1e-3 })).toBeNull();
    expect(heldoutVerdict({})).toBeNull();
  });
});
