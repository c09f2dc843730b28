/**
 * A request's output must not depend on what it is batched with: every kernel on the decoder-step path gives
 * bit-identical per-row results for 1, 32 and 33 rows; the encoder gives bit-identical output and cross K/V for a
 * source alone and padded into a batch of longer sources; a step row's logits are the same alone and among 32
 * others. On every ISA this CPU has, for fp32, fp16 and int8 models. Also: the decoder state grows in place
 * without losing live sequences.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MarianModel, type Precision } from '../src/marian';
import { makeModel } from '../src/model/make-model';
import { native } from '../src/native';
import { expectSameFloats, forEachIsa } from './helpers/harness';
import { TestRng } from './helpers/reference';

const ROW_COUNTS = [1, 32, 33];
const handle = (m: MarianModel): object => (m as unknown as { handle: object }).handle;

describe('linear kernels: per-row results independent of the row count', () => {
  const rng = new TestRng(3);
  const n = 200;
  const k = 300;
  const w = rng.normalArray(n * k, 0, 0.05);
  const bias = rng.normalArray(n);
  const x = rng.normalArray(33 * k);
  const packs = () => ({ fp32: native().packF32(w, n, k), fp16: native().packF16(w, n, k), int8: native().packS8(w, n, k) });
  forEachIsa(() => {
    for (const kind of ['fp32', 'fp16', 'int8'] as const) {
      it(`${kind}: rows 1, 32, 33 agree bit for bit on every shared row`, () => {
        const h = packs()[kind];
        const outs = ROW_COUNTS.map((rows) => {
          const out = new Float32Array(rows * n);
          const xs = x.subarray(0, rows * k);
          if (kind === 'int8') native().linearS8(h, xs, null, null, null, 0, rows, bias, 0, out, false);
          else native().linearF32(h, xs, rows, bias, 0, out, false);
          return out;
        });
        for (let r = 0; r < 33; r++)
          for (let i = 0; i < ROW_COUNTS.length; i++) {
            if (r >= ROW_COUNTS[i]) continue;
            expectSameFloats(outs[i].subarray(r * n, (r + 1) * n), outs[2].subarray(r * n, (r + 1) * n), `${kind} row ${r} with ${ROW_COUNTS[i]} rows`);
          }
      });
    }
  });
});

describe('Marian engine: a row is computed the same whatever it is batched with', () => {
  let dir = '';
  const models = new Map<Precision, MarianModel>();
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'chimera-batch-'));
    await makeModel({ preset: 'tiny', seed: 5, out: dir });
    for (const p of ['fp32', 'fp16', 'int8'] as Precision[]) models.set(p, await MarianModel.load(dir, { precision: p }));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** `n` ids in [3, vocab), then eos. */
  const source = (rng: TestRng, n: number, m: MarianModel): number[] => [
    ...Array.from({ length: n }, () => rng.int(3, m.config.vocabSize - 1)),
    m.config.eosId,
  ];

  forEachIsa(() => {
    for (const p of ['fp32', 'fp16', 'int8'] as Precision[]) {
      it(`${p}: encoder output and cross K/V of a source alone equal those in a padded batch`, () => {
        const m = models.get(p)!;
        const nb = native();
        const d = m.config.dModel;
        const V = m.config.vocabSize;
        const rng = new TestRng(11);
        const a = source(rng, 2, m); // 3 tokens: fewer than the batch's padded length
        const others = [source(rng, 12, m), source(rng, 6, m)];
        const st = nb.marianState(handle(m), 2, 4, 4, 16);
        const alone = new Float32Array(a.length * d);
        nb.marianEncode(handle(m), st, Int32Array.from(a), Int32Array.of(a.length), a.length, Int32Array.of(0), alone);
        const s = 13;
        const batch = [a, ...others];
        const ids = new Int32Array(batch.length * s).fill(m.config.padId);
        batch.forEach((src, b) => ids.set(src, b * s));
        const enc = new Float32Array(batch.length * s * d);
        nb.marianEncode(handle(m), st, ids, Int32Array.from(batch, (x) => x.length), s, Int32Array.of(1, 2, 3), enc);
        expectSameFloats(enc.subarray(0, a.length * d), alone, 'encoder output');
        // Cross K/V: a step attending to source 0 (alone) and to source 1 (batched) gives the same logits.
        const logits = new Float32Array(2 * V);
        nb.marianStep(handle(m), st, Int32Array.of(5, 5), Int32Array.of(0, 1), Int32Array.of(0, 0), Int32Array.of(0, 1), logits);
        expectSameFloats(logits.subarray(0, V), logits.subarray(V), 'step logits over the two copies of the source');
      });

      it(`${p}: sources on either side of the blocked-attention threshold (32 keys) encode alone as in a batch padded to 64`, () => {
        const m = models.get(p)!;
        const nb = native();
        const d = m.config.dModel;
        const rng = new TestRng(14);
        const s = m.config.maxPositions; // 64: past the threshold; the last source's own length is not
        const batch = [source(rng, s - 1, m), source(rng, 40, m), source(rng, 20, m)];
        const ids = new Int32Array(batch.length * s).fill(m.config.padId);
        batch.forEach((src, b) => ids.set(src, b * s));
        const st = nb.marianState(handle(m), 1, 4, 6, s);
        const enc = new Float32Array(batch.length * s * d);
        nb.marianEncode(handle(m), st, ids, Int32Array.from(batch, (x) => x.length), s, Int32Array.of(0, 1, 2), enc);
        batch.forEach((src, b) => {
          const alone = new Float32Array(src.length * d);
          nb.marianEncode(handle(m), st, Int32Array.from(src), Int32Array.of(src.length), src.length, Int32Array.of(3 + b), alone);
          expectSameFloats(enc.subarray(b * s * d, (b * s + src.length) * d), alone, `source ${b} (${src.length} tokens)`);
        });
      });

      it(`${p}: a step row's logits are the same alone, among 32 and among 33 rows`, () => {
        const m = models.get(p)!;
        const nb = native();
        const V = m.config.vocabSize;
        const rng = new TestRng(12);
        const R = 33;
        const st = nb.marianState(handle(m), R, 8, R, 12);
        const srcs = Array.from({ length: R }, (_, i) => source(rng, 3 + (i % 8), m));
        const s = Math.max(...srcs.map((x) => x.length));
        const ids = new Int32Array(R * s).fill(m.config.padId);
        srcs.forEach((x, b) => ids.set(x, b * s));
        nb.marianEncode(handle(m), st, ids, Int32Array.from(srcs, (x) => x.length), s, Int32Array.from({ length: R }, (_, i) => i), null);
        const all = Int32Array.from({ length: R }, (_, i) => i);
        const tok = Int32Array.from({ length: R }, () => rng.int(3, V - 1));
        const logits = new Float32Array(R * V);
        // Rows at different positions: slot i has i % 5 + 1 positions of history.
        for (let p2 = 0; p2 < 5; p2++) {
          const rows = all.filter((i) => p2 <= i % 5);
          nb.marianStep(handle(m), st, tok.subarray(0, rows.length), rows, new Int32Array(rows.length).fill(p2), rows, new Float32Array(rows.length * V));
        }
        const pos = Int32Array.from(all, (i) => (i % 5) + 1);
        const stepRows = (rows: Int32Array): Float32Array => {
          const out = new Float32Array(rows.length * V);
          nb.marianStep(handle(m), st, Int32Array.from(rows, (i) => tok[i]), rows, Int32Array.from(rows, (i) => pos[i]), rows, out);
          return out;
        };
        const full = stepRows(all);
        logits.set(full);
        const first32 = stepRows(all.subarray(0, 32));
        for (const r of [0, 7, 31, 32]) {
          const one = stepRows(Int32Array.of(r));
          expectSameFloats(one, full.subarray(r * V, (r + 1) * V), `row ${r}: alone vs 33 rows`);
          if (r < 32) expectSameFloats(first32.subarray(r * V, (r + 1) * V), one, `row ${r}: 32 rows vs alone`);
        }
      });
    }
  });

  it('marianStateResize grows the state in place; stepping on gives the logits of a state that never resized', () => {
    const m = models.get('int8')!;
    const nb = native();
    const V = m.config.vocabSize;
    const rng = new TestRng(13);
    const src = [source(rng, 6, m), source(rng, 9, m)];
    const s = 10;
    const ids = new Int32Array(2 * s).fill(m.config.padId);
    src.forEach((x, b) => ids.set(x, b * s));
    const lens = Int32Array.from(src, (x) => x.length);
    const small = nb.marianState(handle(m), 2, 6, 2, 10);
    const big = nb.marianState(handle(m), 5, 20, 4, 16);
    for (const st of [small, big]) nb.marianEncode(handle(m), st, ids, lens, s, Int32Array.of(0, 1), null);
    const step = (st: object, slots: number[], p: number, tok: number[], srcs: number[]): Float32Array => {
      const out = new Float32Array(slots.length * V);
      nb.marianStep(handle(m), st, Int32Array.from(tok), Int32Array.from(slots), new Int32Array(slots.length).fill(p), Int32Array.from(srcs), out);
      return out;
    };
    const toks = Array.from({ length: 12 }, () => [rng.int(3, V - 1), rng.int(3, V - 1)]);
    for (let p = 0; p < 6; p++) expectSameFloats(step(small, [0, 1], p, toks[p], [0, 1]), step(big, [0, 1], p, toks[p], [0, 1]), `pos ${p}`);
    const bytesBefore = nb.marianStateInfo(small).bytes;
    nb.marianStateResize(small, 5, 20, 4, 16);
    const info = nb.marianStateInfo(small);
    expect(info).toMatchObject({ slots: 5, maxLen: 20, sources: 4, maxSrc: 16 });
    expect(info.bytes).toBe(nb.marianStateInfo(big).bytes);
    expect(info.bytes).toBeGreaterThan(bytesBefore);
    for (let p = 6; p < 12; p++) expectSameFloats(step(small, [0, 1], p, toks[p], [0, 1]), step(big, [0, 1], p, toks[p], [0, 1]), `pos ${p} after the resize`);
    // New slots and sources are empty: a new source must be encoded before a step may attend to it.
    const codeOf = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        return (e as { code?: string }).code ?? 'no code';
      }
      return 'no error';
    };
    expect(codeOf(() => step(small, [3], 0, [5], [3]))).toBe('E_RANGE');
    // Too big (past max_position_embeddings) or too small for a live source: E_RANGE, the state unchanged.
    expect(codeOf(() => nb.marianStateResize(small, 5, m.config.maxPositions + 1, 4, 16))).toBe('E_RANGE');
    expect(codeOf(() => nb.marianStateResize(small, 5, 20, 4, 5))).toBe('E_RANGE');
    expect(nb.marianStateInfo(small)).toEqual(info);
    expectSameFloats(step(small, [0, 1], 12, toks[0], [0, 1]), step(big, [0, 1], 12, toks[0], [0, 1]), 'after refused resizes');
    // A released source can no longer be attended.
    nb.marianReleaseSource(small, 1);
    expect(codeOf(() => step(small, [1], 13, [5], [1]))).toBe('E_RANGE');
    expect(codeOf(() => nb.marianReleaseSource(small, 4))).toBe('E_RANGE');
    // Shrinking keeps the first positions of every kept slot: slot 0 steps on as before.
    nb.marianStateResize(small, 1, 16, 1, 10);
    expectSameFloats(step(small, [0], 13, [7], [0]), step(big, [0], 13, [7], [0]), 'after shrinking');
  });
});
