/**
 * The decoder step's attention kernel (one query row per row against that row's own keys, every head) against an
 * fp64 reference on every ISA, with strided K|V rows as the decoder state lays them out, and its argument checks.
 */
import { describe, expect, it } from 'vitest';
import { native } from '../src/native';
import { expectKernelRan, forEachIsa } from './helpers/harness';
import { TestRng } from './helpers/reference';

interface Case {
  rows: number;
  heads: number;
  hd: number;
  lens: number[];
}

/** fp64 softmax(q . k^T) v per row and head, reading K at kv[off + j*ldkv + h*hd] and V vOff further. */
function reference(q: Float32Array, kv: Float32Array, offs: Int32Array, ldkv: number, vOff: number, c: Case): Float64Array {
  const width = c.heads * c.hd;
  const out = new Float64Array(c.rows * width);
  for (let r = 0; r < c.rows; r++)
    for (let h = 0; h < c.heads; h++) {
      const n = c.lens[r];
      const s = new Float64Array(n);
      let mx = -Infinity;
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let t = 0; t < c.hd; t++) acc += q[r * width + h * c.hd + t] * kv[offs[r] + j * ldkv + h * c.hd + t];
        s[j] = acc;
        mx = Math.max(mx, acc);
      }
      let sum = 0;
      for (let j = 0; j < n; j++) sum += (s[j] = Math.exp(s[j] - mx));
      for (let t = 0; t < c.hd; t++) {
        let acc = 0;
        for (let j = 0; j < n; j++) acc += s[j] * kv[offs[r] + vOff + j * ldkv + h * c.hd + t];
        out[r * width + h * c.hd + t] = acc / sum;
      }
    }
  return out;
}

function run(c: Case, seed: number): { got: Float32Array; ref: Float64Array } {
  const rng = new TestRng(seed);
  const width = c.heads * c.hd;
  const ldkv = 2 * width + 3; // K|V rows plus slack, as a state row is wider than one head's slice
  const vOff = width;
  const maxLen = Math.max(...c.lens);
  const kv = rng.normalArray(c.rows * maxLen * ldkv + 7);
  const offs = Int32Array.from({ length: c.rows }, (_, r) => r * maxLen * ldkv + (r % 3));
  const q = rng.normalArray(c.rows * width, 0, 0.5);
  const out = new Float32Array(c.rows * width);
  native().decodeAttention(q, kv, offs, ldkv, vOff, Int32Array.from(c.lens), c.heads, c.hd, out);
  return { got: out, ref: reference(q, kv, offs, ldkv, vOff, c) };
}

describe('decode attention', () => {
  const cases: Case[] = [
    { rows: 1, heads: 1, hd: 8, lens: [1] },
    { rows: 3, heads: 4, hd: 8, lens: [1, 5, 17] },
    { rows: 4, heads: 8, hd: 64, lens: [1, 16, 24, 33] },
    { rows: 2, heads: 2, hd: 72, lens: [7, 130] }, // hd with a vector tail, keys past a few vectors
    { rows: 2, heads: 3, hd: 5, lens: [3, 4] },
  ];
  forEachIsa((isa) => {
    cases.forEach((c, i) => {
      it(`rows ${c.rows} heads ${c.heads} hd ${c.hd} lens ${c.lens.join(',')}: within 2e-6 of fp64`, () => {
        const { got, ref } = expectKernelRan('decode_attention', isa, () => run(c, 1000 + i));
        let worst = 0;
        for (let e = 0; e < ref.length; e++) worst = Math.max(worst, Math.abs(got[e] - ref[e]) / Math.max(1, Math.abs(ref[e])));
        expect(worst).toBeLessThanOrEqual(2e-6);
      });
    });
  });

  it('refuses rows that would read past kv, and empty rows, with E_RANGE', () => {
    const q = new Float32Array(8);
    const out = new Float32Array(8);
    const kv = new Float32Array(40);
    const call = (offs: number[], lens: number[]) => () =>
      native().decodeAttention(q, kv, Int32Array.from(offs), 16, 8, Int32Array.from(lens), 1, 8, out);
    expect(call([0], [2])).not.toThrow();
    for (const [offs, lens] of [
      [[0], [3]],
      [[30], [1]],
      [[0], [0]],
      [[-1], [1]],
    ]) {
      let code = '';
      try {
        call(offs, lens)();
      } catch (e) {
        code = (e as { code?: string }).code ?? '';
      }
      expect(code, `offsets ${offs} lens ${lens}`).toBe('E_RANGE');
    }
  });
});
