/**
 * The encoder's self-attention (native encoderAttention: the same entry point marian_encode calls) against an fp64
 * softmax(q k^T) v on every ISA: the blocked kernel (Q K^T and P V as GEMMs over query blocks) from
 * kBlockedAttentionMinKeys = 32 valid keys, the per-query kernel below, padded batches with masked lengths, and the
 * bit-for-bit independence of a source's result from the batch it is padded into.
 */
import { describe, expect, it } from 'vitest';
import { native } from '../src/native';
import { expectKernelRan, expectSameFloats, forEachIsa } from './helpers/harness';
import { TestRng } from './helpers/reference';

/** The engine's threshold (native/include/chimera/kernels.h kBlockedAttentionMinKeys). */
const MIN_KEYS = 32;
/** fp32 unit roundoff. */
const U = 2 ** -24;

interface Case {
  s: number; // padded length
  lens: number[]; // valid keys per source
  heads: number;
  hd: number;
}

interface Data {
  qkv: Float32Array;
  ld: number;
  ref: Float64Array;
  /** Per source and head: the error bound of the fp32 result (see bound()). */
  tol: Float64Array;
}

/**
 * Error bound for one (source, head), from the data: every output is a convex combination of V rows, so with
 * u = 2^-24
 * - each score is an fp32 dot product over hd terms: |error| <= hd u sum_t |q_t k_t| (the classic gamma_n bound),
 *   and a score error e moves the softmax weights by a relative 2 max|e| at most;
 * - exp (a ~2 ulp polynomial), the sum over nk keys, 1/sum and the P.V sum over nk terms add (2 nk + 8) u relative;
 * so |out - ref| <= max|v| (2 hd u max_j sum_t |q_t k_jt| + (2 nk + 8) u). That worst case is ~1e-3 at hd 64,
 * nk 512 (|v| up to ~4.5) while the observed error is 2.6e-6 on every ISA, but a wrong key, a missed mask or a lost
 * 1/sum is off by 1e-2 or more, so the bound still separates them.
 */
function bound(maxAbsV: number, maxAbsDot: number, hd: number, nk: number): number {
  return maxAbsV * (2 * hd * U * maxAbsDot + (2 * nk + 8) * U);
}

function makeData(c: Case, seed: number): Data {
  const rng = new TestRng(seed);
  const width = c.heads * c.hd;
  const ld = 3 * width + 5; // a fused projection row, plus slack so ld is not the packed width
  const batch = c.lens.length;
  const qkv = new Float32Array(batch * c.s * ld);
  for (let i = 0; i < qkv.length; i++) qkv[i] = rng.normal();
  // q carries the model's 1/sqrt(hd) scale; 2/sqrt(hd) gives scores of std ~2 (peaked softmax rows)
  const qs = 2 / Math.sqrt(c.hd);
  for (let r = 0; r < batch * c.s; r++) for (let t = 0; t < width; t++) qkv[r * ld + t] *= qs;
  const ref = new Float64Array(batch * c.s * width);
  const tol = new Float64Array(batch * c.heads);
  for (let b = 0; b < batch; b++)
    for (let h = 0; h < c.heads; h++) {
      const n = c.lens[b];
      const row = (r: number) => (b * c.s + r) * ld;
      const kOff = width + h * c.hd;
      const vOff = 2 * width + h * c.hd;
      let maxV = 0;
      for (let j = 0; j < n; j++) for (let t = 0; t < c.hd; t++) maxV = Math.max(maxV, Math.abs(qkv[row(j) + vOff + t]));
      let maxDot = 0;
      const sc = new Float64Array(n);
      for (let i = 0; i < c.s; i++) {
        let mx = -Infinity;
        for (let j = 0; j < n; j++) {
          let acc = 0;
          let abs = 0;
          for (let t = 0; t < c.hd; t++) {
            const p = qkv[row(i) + h * c.hd + t] * qkv[row(j) + kOff + t];
            acc += p;
            abs += Math.abs(p);
          }
          sc[j] = acc;
          mx = Math.max(mx, acc);
          maxDot = Math.max(maxDot, abs);
        }
        let sum = 0;
        for (let j = 0; j < n; j++) sum += sc[j] = Math.exp(sc[j] - mx);
        for (let t = 0; t < c.hd; t++) {
          let acc = 0;
          for (let j = 0; j < n; j++) acc += sc[j] * qkv[row(j) + vOff + t];
          ref[(b * c.s + i) * width + h * c.hd + t] = acc / sum;
        }
      }
      tol[b * c.heads + h] = bound(maxV, maxDot, c.hd, n);
    }
  return { qkv, ld, ref, tol };
}

function attend(c: Case, d: Data, path: 'auto' | 'rows' | 'blocked' = 'auto'): Float32Array {
  const out = new Float32Array(c.lens.length * c.s * c.heads * c.hd);
  native().encoderAttention(d.qkv, d.ld, Int32Array.from(c.lens), c.s, c.heads, c.hd, out, path);
  return out;
}

function expectWithinBound(c: Case, d: Data, got: Float32Array, label: string): void {
  const width = c.heads * c.hd;
  for (let b = 0; b < c.lens.length; b++)
    for (let h = 0; h < c.heads; h++) {
      const tol = d.tol[b * c.heads + h];
      let worst = 0;
      let at = -1;
      for (let i = 0; i < c.s; i++)
        for (let t = 0; t < c.hd; t++) {
          const e = (b * c.s + i) * width + h * c.hd + t;
          const diff = Math.abs(got[e] - d.ref[e]);
          if (!(diff <= worst)) {
            worst = Number.isNaN(diff) ? Infinity : diff;
            at = e;
          }
        }
      expect(worst, `${label} source ${b} head ${h}: |error| ${worst} > bound ${tol} at [${at}] (got ${got[at]}, expected ${d.ref[at]})`).toBeLessThanOrEqual(tol);
    }
}

describe('encoder attention', () => {
  // Masked lengths: every batch of two pads its second source; s > lens[0] pads the first too.
  const cases: Case[] = [
    { s: 32, lens: [32], heads: 2, hd: 64 },
    { s: 50, lens: [40, 33], heads: 2, hd: 64 },
    { s: 64, lens: [64], heads: 2, hd: 64 },
    { s: 70, lens: [65, 64], heads: 2, hd: 64 },
    { s: 127, lens: [127, 100], heads: 2, hd: 64 },
    { s: 130, lens: [128, 77], heads: 2, hd: 64 },
    { s: 300, lens: [300, 190], heads: 1, hd: 64 },
    { s: 512, lens: [512], heads: 1, hd: 64 },
    { s: 128, lens: [128, 65], heads: 3, hd: 32 },
    { s: 300, lens: [300], heads: 1, hd: 32 },
    { s: 81, lens: [81, 66], heads: 2, hd: 40 }, // hd with a partial 16-column panel
  ];
  const data = new Map<Case, Data>();
  const dataOf = (c: Case, i: number): Data => {
    if (!data.has(c)) data.set(c, makeData(c, 500 + i));
    return data.get(c)!;
  };
  forEachIsa((isa) => {
    cases.forEach((c, i) => {
      it(`s ${c.s} lens ${c.lens.join(',')} heads ${c.heads} hd ${c.hd}: the blocked kernel, within the fp32 bound of fp64`, () => {
        const d = dataOf(c, i);
        const got = expectKernelRan('attention_blocked', isa, () => attend(c, d));
        expectWithinBound(c, d, got, isa);
      });
    });

    it(`below ${MIN_KEYS} keys the per-query kernel runs, also inside a batch padded past ${MIN_KEYS}`, () => {
      const c: Case = { s: 100, lens: [MIN_KEYS - 1, 100, 5], heads: 2, hd: 64 };
      const d = dataOf(c, 90);
      const got = expectKernelRan('attention', isa, () => attend(c, d));
      expectWithinBound(c, d, got, isa);
      // the rows path forced everywhere agrees with auto on the short sources, bit for bit
      const rows = attend(c, d, 'rows');
      const w = c.heads * c.hd;
      for (const b of [0, 2]) expectSameFloats(got.subarray(b * c.s * w, (b + 1) * c.s * w), rows.subarray(b * c.s * w, (b + 1) * c.s * w), `source ${b}`);
    });

    it('a source gives the same bits alone and padded into a batch, on either side of the threshold', () => {
      const rng = new TestRng(77);
      const heads = 2;
      const hd = 64;
      const width = heads * hd;
      const ld = 3 * width;
      for (const len of [MIN_KEYS - 1, MIN_KEYS, 64, 97, 200]) {
        const s = len + 37;
        const lens = [s, len, 5];
        const qkv = new Float32Array(lens.length * s * ld);
        const vals = rng.normalArray(qkv.length, 0, 0.5);
        qkv.set(vals);
        const padded = new Float32Array(lens.length * s * width);
        native().encoderAttention(qkv, ld, Int32Array.from(lens), s, heads, hd, padded, 'auto');
        // source 1 alone: its len rows of q|k|v, s = len
        const alone = new Float32Array(len * width);
        native().encoderAttention(qkv.slice(s * ld, (s + len) * ld), ld, Int32Array.of(len), len, heads, hd, alone, 'auto');
        expectSameFloats(padded.subarray(s * width, (s + len) * width), alone, `len ${len}`);
      }
    });
  });

  it('refuses lengths outside 1..s, a short ld and an unknown path', () => {
    const qkv = new Float32Array(4 * 24);
    const out = new Float32Array(4 * 8);
    const codeOf = (f: () => void): string => {
      try {
        f();
      } catch (e) {
        return (e as { code?: string }).code ?? 'no code';
      }
      return 'no error';
    };
    const call = (lens: number[], ld: number, path = 'auto') => () =>
      native().encoderAttention(qkv, ld, Int32Array.from(lens), 4, 2, 4, out, path as 'auto');
    expect(codeOf(call([4], 24))).toBe('no error');
    expect(codeOf(call([5], 24))).toBe('E_RANGE');
    expect(codeOf(call([0], 24))).toBe('E_RANGE');
    expect(codeOf(call([4], 23))).toBe('E_RANGE');
    expect(codeOf(call([4], 24, 'flash'))).toBe('E_ARG');
  });
});
