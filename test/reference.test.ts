/**
 * Self-checks of the references in helpers/reference.ts (no addon needed): hand-worked cases and
 * mathematical identities, so a kernel test never compares against a wrong reference.
 */
import { describe, expect, it } from 'vitest';
import {
  TestRng, dynamicQuantizeLinearRef, erf64, f32, gelu64, geluTanh64, int8AccumulatorsRef, layerNormRef, linearRef,
  matmulIntegerRef, normalisedError, quantizeRowsRef, quantizeWeightsRef, rmsNormRef, roundHalfEven, sgemmRef, silu64,
} from './helpers/reference';

describe('reference helpers', () => {
  it('erf64 matches tabulated values and its derivative 2/sqrt(pi) exp(-x^2)', () => {
    const table: [number, number][] = [
      [0, 0],
      [0.1, 0.1124629160182849],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [2, 0.9953222650189527],
      [3, 0.9999779095030014],
    ];
    for (const [x, v] of table) {
      expect(Math.abs(erf64(x) - v)).toBeLessThan(1e-15);
      expect(Math.abs(erf64(-x) + v)).toBeLessThan(1e-15);
    }
    for (let x = -5.5; x <= 5.5; x += 0.37) {
      const h = 1e-5;
      const d = (erf64(x + h) - erf64(x - h)) / (2 * h);
      expect(Math.abs(d - (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x))).toBeLessThan(1e-9);
    }
    expect(erf64(7)).toBe(1);
    expect(Math.abs(erf64(5.99) - 1)).toBeLessThan(1e-15);
  });

  it('activations have their defining values', () => {
    expect(silu64(0)).toBe(0);
    expect(Math.abs(silu64(2) - 2 / (1 + Math.exp(-2)))).toBeLessThan(1e-15);
    expect(Math.abs(gelu64(1) - 0.5 * (1 + 0.6826894921370859))).toBeLessThan(1e-14);
    expect(Math.abs(gelu64(-3) + 3 * 0.5 * (1 - 0.9973002039367398))).toBeLessThan(1e-14);
    // The tanh form approximates the erf form to ~1e-3 absolute.
    for (let x = -6; x <= 6; x += 0.25) expect(Math.abs(geluTanh64(x) - gelu64(x))).toBeLessThan(2e-3);
  });

  it('roundHalfEven', () => {
    const cases: [number, number][] = [
      [0.5, 0], [1.5, 2], [2.5, 2], [-0.5, -0], [-1.5, -2], [-2.5, -2], [2.4999, 2], [2.5001, 3], [-2.5001, -3], [126.5, 126], [127.5, 128],
    ];
    for (const [v, r] of cases) expect(roundHalfEven(v) === r, `${v}`).toBe(true);
  });

  it('DynamicQuantizeLinear reference on hand-worked inputs', () => {
    // Range [0, 255] -> scale 1, zero point 0.
    let r = dynamicQuantizeLinearRef(Float32Array.of(0, 255, 0.5, 1.5, 2.5, 254.5));
    expect(r.scale).toBe(1);
    expect(r.zeroPoint).toBe(0);
    expect(Array.from(r.y)).toEqual([0, 255, 0, 2, 2, 254]);
    // Range [-100, 155] -> scale 1, zero point 100; halves round to even before the shift.
    r = dynamicQuantizeLinearRef(Float32Array.of(-100, 155, -2.5, -3.5, 0.5, 1.5, 2.5));
    expect(r.scale).toBe(1);
    expect(r.zeroPoint).toBe(100);
    expect(Array.from(r.y)).toEqual([0, 255, 98, 96, 100, 102, 102]);
    // Zero point itself half-way: -xmin/scale = 100.5 -> 100, 101.5 -> 102.
    expect(dynamicQuantizeLinearRef(Float32Array.of(-100.5, 154.5)).zeroPoint).toBe(100);
    expect(dynamicQuantizeLinearRef(Float32Array.of(-101.5, 153.5)).zeroPoint).toBe(102);
    // All positive: the range includes 0, zero point 0; all negative: zero point 255.
    r = dynamicQuantizeLinearRef(Float32Array.of(1, 2, 51));
    expect(r.scale).toBe(f32(51 / 255));
    expect(r.zeroPoint).toBe(0);
    expect(r.y[2]).toBe(255);
    r = dynamicQuantizeLinearRef(Float32Array.of(-1, -2, -51));
    expect(r.zeroPoint).toBe(255);
    expect(r.y[2]).toBe(0);
  });

  it('symmetric quantisers on hand-worked rows', () => {
    const q = quantizeRowsRef(Float32Array.of(127, 0.5, 1.5, 2.5, -2.5, -127, 0, 0, 0, 0, 0, 0), 6);
    expect(q.stride).toBe(8);
    expect(Array.from(q.data)).toEqual([127, 0, 2, 2, -2, -127, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(Array.from(q.scales)).toEqual([1, 0]);
    expect(Array.from(q.sums)).toEqual([2, 0]);
    const w = quantizeWeightsRef(Float32Array.of(-2, 1, 0.5, 0.25), 2, 2);
    expect(Array.from(w.scales)).toEqual([f32(2 / 127), f32(0.5 / 127)]);
    expect(Array.from(w.q)).toEqual([-127, 64, 127, 64]); // 63.5 -> 64 (even)
  });

  it('integer references on a hand-worked product', () => {
    // (a - 1) = [[0, 1], [2, 3]], (b - 5) = [[0, 1], [2, 3]] -> [[2, 3], [6, 11]]
    expect(Array.from(matmulIntegerRef([1, 2, 3, 4], 2, 2, [5, 6, 7, 8], 2, 1, 5))).toEqual([2, 3, 6, 11]);
    // Per-row / per-column zero points: (a - [1, 2]) = [[0, 1], [1, 2]], (b - [5, 7]) = [[0, -1], [2, 1]].
    expect(Array.from(matmulIntegerRef([1, 2, 3, 4], 2, 2, [5, 6, 7, 8], 2, [1, 2], [5, 7]))).toEqual([2, 1, 4, 1]);
    const acc = int8AccumulatorsRef(Int8Array.of(1, 2, 3, 0, -1, -2, -3, 0), 4, 2, Int8Array.of(1, 1, 1, 2, 0, -1), 2, 3);
    expect(Array.from(acc)).toEqual([6, -1, -6, 1]);
  });

  it('sgemmRef transposes agree with explicit transposes and with linearRef', () => {
    const rng = new TestRng(1);
    const m = 3, k = 5, n = 4;
    const a = rng.normalArray(m * k);
    const b = rng.normalArray(k * n);
    const at = new Float32Array(k * m);
    for (let i = 0; i < m; i++) for (let p = 0; p < k; p++) at[p * m + i] = a[i * k + p];
    const bt = new Float32Array(n * k);
    for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) bt[j * k + p] = b[p * n + j];
    const c0 = sgemmRef(a, [m, k], b, [k, n]);
    expect(normalisedError(sgemmRef(at, [k, m], b, [k, n], { transA: true }), c0)).toBeLessThan(1e-15);
    expect(normalisedError(sgemmRef(a, [m, k], bt, [n, k], { transB: true }), c0)).toBeLessThan(1e-15);
    expect(normalisedError(sgemmRef(at, [k, m], bt, [n, k], { transA: true, transB: true }), c0)).toBeLessThan(1e-15);
    expect(normalisedError(linearRef(a, m, bt, n, k), c0)).toBeLessThan(1e-15);
    const c = rng.normalArray(m * n);
    const d = sgemmRef(a, [m, k], b, [k, n], { alpha: 2, beta: -0.5, c });
    for (let i = 0; i < m * n; i++) expect(Math.abs(d[i] - (2 * c0[i] - 0.5 * c[i]))).toBeLessThan(1e-12);
  });

  it('norm references: zero mean, unit variance, unit rms', () => {
    const rng = new TestRng(2);
    const cols = 37;
    const x = rng.normalArray(cols * 3, 5, 3);
    const g = new Float32Array(cols).fill(1);
    const y = layerNormRef({ x, cols, gamma: g, eps: 0 });
    const z = rmsNormRef({ x, cols, gamma: g, eps: 0 });
    for (let r = 0; r < 3; r++) {
      let s = 0, s2 = 0, q2 = 0;
      for (let c = 0; c < cols; c++) {
        s += y[r * cols + c];
        s2 += y[r * cols + c] ** 2;
        q2 += z[r * cols + c] ** 2;
      }
      expect(Math.abs(s / cols)).toBeLessThan(1e-12);
      expect(Math.abs(s2 / cols - 1)).toBeLessThan(1e-12);
      expect(Math.abs(q2 / cols - 1)).toBeLessThan(1e-12);
    }
  });

  it('TestRng is deterministic and roughly standard normal', () => {
    const a = new TestRng(7).normalArray(20000);
    const b = new TestRng(7).normalArray(20000);
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(new TestRng(8).normalArray(10))).not.toEqual(Array.from(a.subarray(0, 10)));
    let s = 0, s2 = 0;
    for (const v of a) {
      s += v;
      s2 += v * v;
    }
    expect(Math.abs(s / a.length)).toBeLessThan(0.03);
    expect(Math.abs(s2 / a.length - 1)).toBeLessThan(0.05);
    const u = new TestRng(9);
    for (let i = 0; i < 1000; i++) {
      const v = u.int(-3, 3);
      expect(v >= -3 && v <= 3 && Number.isInteger(v)).toBe(true);
    }
  });

  it('normalisedError flags NaN and scales by the reference', () => {
    expect(normalisedError([1, 2], [1, 2])).toBe(0);
    expect(normalisedError([1, 2.5], [1, 2])).toBe(0.25);
    expect(normalisedError([NaN, 2], [1, 2])).toBe(Infinity);
    expect(normalisedError([Infinity, 2], [Infinity, 2])).toBe(Infinity);
  });
});
