/**
 * Checks the fp64 Marian reference (test/helpers/marian-ref.ts) against the outputs of an independent PyTorch
 * implementation shipped in shared/models/marian-m30k-en-de/reference/, so that engine tests can trust it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  decoderLogits,
  encoderForward,
  greedy,
  loadRefTokenizer,
  marianRefLoad,
  sinusoidalPositions,
  type MarianRefModel,
} from './helpers/marian-ref';
import { getF32, getInts, readSafetensors } from './helpers/safetensors-mini';

const SHARED = process.env.CHIMERA_SHARED ?? join(__dirname, '..', '..', 'shared');
const MODEL_DIR = join(SHARED, 'models', 'marian-m30k-en-de');
const HAVE = existsSync(join(MODEL_DIR, 'model.safetensors')) && existsSync(join(MODEL_DIR, 'reference', 'logits.safetensors'));

/** max |a - ref| / max |ref|. */
function relErr(a: Float64Array, ref: Float32Array): number {
  expect(a.length).toBe(ref.length);
  let err = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    err = Math.max(err, Math.abs(a[i] - ref[i]));
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  return err / scale;
}

describe('sinusoidal positions', () => {
  it('sin in the first half, cos in the second, one angle per column pair', () => {
    const d = 8;
    const t = sinusoidalPositions(3, d);
    for (let k = 0; k < d / 2; k++) {
      expect(t[k]).toBe(0); // pos 0: sin 0
      expect(t[d / 2 + k]).toBe(1); // pos 0: cos 0
      const angle = 2 / Math.pow(10000, (2 * k) / d);
      expect(t[2 * d + k]).toBeCloseTo(Math.sin(angle), 15);
      expect(t[2 * d + d / 2 + k]).toBeCloseTo(Math.cos(angle), 15);
    }
  });
});

describe.skipIf(!HAVE)('fp64 Marian reference vs the shared PyTorch reference', () => {
  let model: MarianRefModel;
  const ref = () => readSafetensors(join(MODEL_DIR, 'reference', 'logits.safetensors'));
  const greedyRef = () => readFileSync(join(MODEL_DIR, 'reference', 'val200.greedy.de'), 'utf8').split('\n');
  const valEn = () => readFileSync(join(SHARED, 'data', 'multi30k', 'val.en'), 'utf8').split('\n');

  beforeAll(() => {
    model = marianRefLoad(MODEL_DIR);
  });

  it('reads the config', () => {
    expect(model.config.dModel).toBe(128);
    expect(model.config.vocabSize).toBe(8001);
    expect(model.config.padId).toBe(8000);
    expect(model.config.badWordIds).toEqual([8000]);
  });

  for (let n = 0; n < 4; n++) {
    it(`s${n}: encoder output and teacher-forced logits within 1e-4 relative`, () => {
      const t = ref();
      const src = getInts(t, `s${n}.input_ids`);
      const dec = getInts(t, `s${n}.decoder_input_ids`);
      expect(src[src.length - 1]).toBe(0); // eos appended
      expect(dec[0]).toBe(8000); // decoder starts from pad
      const encErr = relErr(encoderForward(model, src), getF32(t, `s${n}.encoder_output`));
      const logitErr = relErr(decoderLogits(model, src, dec), getF32(t, `s${n}.logits`));
      expect(encErr).toBeLessThanOrEqual(1e-4);
      expect(logitErr).toBeLessThanOrEqual(1e-4);
    });
  }

  it('greedy on the 4 reference sentences gives their decoder inputs, then eos, and the reference text', async () => {
    const t = ref();
    const tok = await loadRefTokenizer(MODEL_DIR);
    const lines = greedyRef();
    for (let n = 0; n < 4; n++) {
      const out = greedy(model, getInts(t, `s${n}.input_ids`), 128);
      expect(out).toEqual([...getInts(t, `s${n}.decoder_input_ids`), 0]);
      expect(tok.decode(out)).toBe(lines[n]);
    }
  });

  it('greedy on val lines 0..11 reproduces val200.greedy.de (needs @huggingface/tokenizers)', async (ctx) => {
    const tok = await loadRefTokenizer(MODEL_DIR);
    if (!tok.encode) ctx.skip();
    const en = valEn();
    const lines = greedyRef();
    const t = ref();
    for (let i = 0; i < 12; i++) {
      const ids = tok.encode!(en[i]);
      if (i < 4) expect(ids).toEqual(getInts(t, `s${i}.input_ids`));
      expect(tok.decode(greedy(model, ids, 128)), `line ${i}`).toBe(lines[i]);
    }
  });

  it('max_length counts the start token and forces eos in the last slot', () => {
    const src = getInts(ref(), 's3.input_ids');
    const full = greedy(model, src, 128);
    const short = greedy(model, src, 6);
    expect(short.length).toBe(6);
    expect(short.slice(0, 5)).toEqual(full.slice(0, 5));
    expect(short[5]).toBe(0);
  });
});
