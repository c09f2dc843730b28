/**
 * layerNorm / addLayerNorm / rmsNorm / addRmsNorm against float64 references on every ISA this CPU supports,
 * plus the documented edge-case policy, live LayerNormParams, and the fused int8 quantisation output.
 */
import { describe, expect, it } from 'vitest';
import {
  LayerNormParams, QuantizedRows, addLayerNorm, addRmsNorm, layerNorm, quantizeRows, rmsNorm,
} from '../src/index';
import { expectChimeraError, expectExactlyEqual, expectKernelRan, expectRowsClose, forEachIsa } from './helpers/harness';
import { TestRng, layerNormRef, quantizeRowsRef, rmsNormRef } from './helpers/reference';

const REL = 1e-5;
const COLS = [1, 3, 16, 17, 64, 100, 512, 513, 1024, 4096];

interface Case {
  cols: number;
  rows: number;
  x: Float32Array;
  residual: Float32Array;
  bias: Float32Array;
  gamma: Float32Array;
  beta: Float32Array;
}

function makeCase(cols: number, seed: number, rows = cols >= 1024 ? 3 : cols >= 100 ? 5 : 9): Case {
  const rng = new TestRng(seed * 7919 + cols);
  return {
    cols,
    rows,
    x: rng.normalArray(rows * cols, 0.5, 2),
    residual: rng.normalArray(rows * cols, -0.25, 1),
    bias: rng.normalArray(cols, 0, 0.3),
    gamma: rng.normalArray(cols, 1, 0.3),
    beta: rng.normalArray(cols, 0, 0.5),
  };
}

const CASES = new Map(COLS.map((c) => [c, makeCase(c, 1)]));

function garbage(n: number): Float32Array {
  return new Float32Array(n).fill(NaN);
}

/** The float32 error bound for x + residual + bias, summed in any order. */
function expectSumOut(sumOut: Float32Array, c: Case): void {
  for (let i = 0; i < sumOut.length; i++) {
    const x = c.x[i];
    const r = c.residual[i];
    const b = c.bias[i % c.cols];
    const exact = x + r + b;
    const tol = 2 ** -23 * (Math.abs(x) + Math.abs(r) + Math.abs(b));
    if (!(Math.abs(sumOut[i] - exact) <= tol)) {
      expect.fail(`sumOut[${i}] = ${sumOut[i]}, expected ${exact} (x ${x} + residual ${r} + bias ${b}) within ${tol}`);
    }
  }
}

forEachIsa((isa) => {
  describe.each(COLS)('cols %i', (cols) => {
    const c = CASES.get(cols)!;

    it('layerNorm matches fp64 (with and without beta), leaves x untouched', () => {
      const x0 = c.x.slice();
      const y = expectKernelRan('layer_norm', isa, () => layerNorm(c.x, cols, c.gamma, c.beta));
      expectRowsClose(y, layerNormRef({ x: c.x, cols, gamma: c.gamma, beta: c.beta }), cols, REL, 'layerNorm');
      const y2 = layerNorm(c.x, cols, c.gamma);
      expectRowsClose(y2, layerNormRef({ x: c.x, cols, gamma: c.gamma }), cols, REL, 'layerNorm no beta');
      const y3 = layerNorm(c.x, cols, c.gamma, null);
      expectRowsClose(y3, layerNormRef({ x: c.x, cols, gamma: c.gamma }), cols, REL, 'layerNorm beta null');
      expectExactlyEqual(c.x, x0, 'x modified');
    });

    it('addLayerNorm with bias, sumOut and out matches fp64', () => {
      const out = garbage(c.x.length);
      const sumOut = garbage(c.x.length);
      const y = expectKernelRan('layer_norm', isa, () =>
        addLayerNorm(c.x, c.residual, cols, c.gamma, c.beta, { bias: c.bias, sumOut, out }),
      );
      expect(y).toBe(out);
      const ref = layerNormRef({ x: c.x, residual: c.residual, bias: c.bias, cols, gamma: c.gamma, beta: c.beta });
      expectRowsClose(y, ref, cols, REL, 'addLayerNorm');
      expectSumOut(sumOut, c);
    });

    it('addLayerNorm without bias: sumOut is the float32 sum x + residual exactly', () => {
      const sumOut = new Float32Array(c.x.length);
      const y = addLayerNorm(c.x, c.residual, cols, c.gamma, c.beta, { sumOut });
      expectRowsClose(y, layerNormRef({ x: c.x, residual: c.residual, cols, gamma: c.gamma, beta: c.beta }), cols, REL, 'addLayerNorm no bias');
      const expected = new Float32Array(c.x.length);
      for (let i = 0; i < expected.length; i++) expected[i] = c.x[i] + c.residual[i];
      expectExactlyEqual(sumOut, expected, 'sumOut');
    });

    it('rmsNorm matches fp64 (with and without beta)', () => {
      const y = expectKernelRan('rms_norm', isa, () => rmsNorm(c.x, cols, c.gamma));
      expectRowsClose(y, rmsNormRef({ x: c.x, cols, gamma: c.gamma }), cols, REL, 'rmsNorm');
      const out = garbage(c.x.length);
      const y2 = rmsNorm(c.x, cols, c.gamma, { beta: c.beta, out });
      expect(y2).toBe(out);
      expectRowsClose(y2, rmsNormRef({ x: c.x, cols, gamma: c.gamma, beta: c.beta }), cols, REL, 'rmsNorm beta');
    });

    it('addRmsNorm with bias and sumOut matches fp64', () => {
      const sumOut = garbage(c.x.length);
      const y = expectKernelRan('rms_norm', isa, () =>
        addRmsNorm(c.x, c.residual, cols, c.gamma, { bias: c.bias, sumOut, beta: c.beta }),
      );
      const ref = rmsNormRef({ x: c.x, residual: c.residual, bias: c.bias, cols, gamma: c.gamma, beta: c.beta });
      expectRowsClose(y, ref, cols, REL, 'addRmsNorm');
      expectSumOut(sumOut, c);
    });
  });

  describe('options and edge cases', () => {
    it('eps is honoured (large, zero)', () => {
      const rng = new TestRng(11);
      for (const cols of [17, 512]) {
        const x = rng.normalArray(4 * cols, 0, 0.5);
        const g = rng.normalArray(cols, 1, 0.2);
        const b = rng.normalArray(cols, 0, 0.2);
        for (const eps of [0.25, 1e-3, 0]) {
          expectRowsClose(layerNorm(x, cols, g, b, { eps }), layerNormRef({ x, cols, gamma: g, beta: b, eps }), cols, REL, `layerNorm eps ${eps}`);
          expectRowsClose(rmsNorm(x, cols, g, { eps }), rmsNormRef({ x, cols, gamma: g, eps }), cols, REL, `rmsNorm eps ${eps}`);
        }
      }
    });

    it('the default eps is 1e-5 (rows whose variance is comparable to it)', () => {
      const rng = new TestRng(17);
      for (const cols of [64, 100]) {
        const x = rng.normalArray(4 * cols, 1e-3, 3e-3); // variance ~1e-5, small mean (no cancellation)
        const g = rng.normalArray(cols, 1, 0.2);
        const b = rng.normalArray(cols, 0, 0.2);
        expectRowsClose(layerNorm(x, cols, g, b), layerNormRef({ x, cols, gamma: g, beta: b, eps: 1e-5 }), cols, REL, `layerNorm default eps cols ${cols}`);
        expectRowsClose(rmsNorm(x, cols, g), rmsNormRef({ x, cols, gamma: g, eps: 1e-5 }), cols, REL, `rmsNorm default eps cols ${cols}`);
      }
    });

    it('rows with a large common offset (mean 30, std 1) stay accurate', () => {
      const rng = new TestRng(12);
      for (const cols of [64, 1024]) {
        const x = rng.normalArray(3 * cols, 30, 1);
        const g = rng.normalArray(cols, 1, 0.2);
        const b = rng.normalArray(cols, 0, 0.2);
        expectRowsClose(layerNorm(x, cols, g, b), layerNormRef({ x, cols, gamma: g, beta: b }), cols, REL, `offset cols ${cols}`);
      }
    });

    it('cols = 1: the output is beta', () => {
      const rng = new TestRng(13);
      const x = Float32Array.of(5, -3.25, 1e6, 0, 123.456, -7e-3, 1e30, -1e-30);
      const g = Float32Array.of(1.7);
      const b = Float32Array.of(-0.625);
      const y = layerNorm(x, 1, g, b);
      expectRowsClose(y, new Float64Array(x.length).fill(b[0]), 1, REL, 'cols=1');
      const y2 = addLayerNorm(x, rng.normalArray(x.length), 1, g, b);
      expectRowsClose(y2, new Float64Array(x.length).fill(b[0]), 1, REL, 'cols=1 add');
    });

    it('zero-variance rows: the output is beta', () => {
      const rng = new TestRng(14);
      for (const cols of [3, 16, 64, 512]) {
        // Constants whose float32 sums and means are exact, whatever the summation order.
        const consts = [0, 2, -0.75, 1024];
        const x = new Float32Array(consts.length * cols);
        consts.forEach((v, r) => x.fill(v, r * cols, (r + 1) * cols));
        const g = rng.normalArray(cols, 1, 0.3);
        const b = rng.normalArray(cols, 0, 1);
        const y = layerNorm(x, cols, g, b);
        const ref = new Float64Array(x.length);
        for (let i = 0; i < ref.length; i++) ref[i] = b[i % cols];
        expectRowsClose(y, ref, cols, REL, `constant rows cols ${cols}`);
        // rmsNorm of an all-zero row is beta as well.
        const z = rmsNorm(new Float32Array(2 * cols), cols, g, { beta: b });
        expectRowsClose(z, ref.subarray(0, 2 * cols), cols, REL, `rmsNorm zero rows cols ${cols}`);
      }
    });

    it('values of magnitude 1e30 give finite results matching fp64', () => {
      const rng = new TestRng(15);
      for (const cols of [17, 64, 100, 513]) {
        const rows = 4;
        const x = new Float32Array(rows * cols);
        for (let i = 0; i < cols; i++) {
          x[i] = rng.normal() * 1e30; // row 0: everything huge
          x[cols + i] = i % 2 === 0 ? 1e30 : -1e30; // row 1: alternating +-1e30
          x[2 * cols + i] = rng.normal(); // row 2: one huge spike among small values
          x[3 * cols + i] = rng.normal() * 1e-3; // row 3: huge pair + small values
        }
        x[2 * cols + (cols >> 1)] = 1e30;
        x[3 * cols] = -1e30;
        x[3 * cols + cols - 1] = 1e30;
        const g = rng.normalArray(cols, 1, 0.3);
        const b = rng.normalArray(cols, 0, 0.5);
        const y = layerNorm(x, cols, g, b);
        for (let i = 0; i < y.length; i++) if (!Number.isFinite(y[i])) expect.fail(`layerNorm cols ${cols}: y[${i}] = ${y[i]} for x = ${x[i]}`);
        expectRowsClose(y, layerNormRef({ x, cols, gamma: g, beta: b }), cols, REL, `layerNorm 1e30 cols ${cols}`);
        const z = rmsNorm(x, cols, g, { beta: b });
        for (let i = 0; i < z.length; i++) if (!Number.isFinite(z[i])) expect.fail(`rmsNorm cols ${cols}: z[${i}] = ${z[i]} for x = ${x[i]}`);
        expectRowsClose(z, rmsNormRef({ x, cols, gamma: g, beta: b }), cols, REL, `rmsNorm 1e30 cols ${cols}`);
      }
    });

    it('a row with NaN or +-Inf becomes all NaN; other rows are unaffected', () => {
      const rng = new TestRng(16);
      for (const cols of [3, 17, 64, 513]) {
        const rows = 6;
        const x = rng.normalArray(rows * cols);
        x[1 * cols + 0] = NaN;
        x[2 * cols + cols - 1] = NaN; // in the vector tail
        x[3 * cols + (cols >> 1)] = Infinity;
        x[4 * cols + cols - 1] = -Infinity;
        const g = rng.normalArray(cols, 1, 0.3);
        const b = rng.normalArray(cols, 0, 0.5);
        const ref = layerNormRef({ x, cols, gamma: g, beta: b });
        for (let r = 1; r <= 4; r++) ref.fill(NaN, r * cols, (r + 1) * cols);
        expectRowsClose(layerNorm(x, cols, g, b), ref, cols, REL, `layerNorm NaN/Inf cols ${cols}`);

        // addLayerNorm: the non-finite value arrives through the residual.
        const res = rng.normalArray(rows * cols);
        res[5 * cols + 1] = NaN;
        const x2 = rng.normalArray(rows * cols);
        const ref2 = layerNormRef({ x: x2, residual: res, cols, gamma: g, beta: b });
        ref2.fill(NaN, 5 * cols, 6 * cols);
        expectRowsClose(addLayerNorm(x2, res, cols, g, b), ref2, cols, REL, `addLayerNorm NaN residual cols ${cols}`);

        // rmsNorm: a NaN anywhere in a row makes the row NaN.
        const x3 = rng.normalArray(rows * cols);
        x3[2 * cols + cols - 1] = NaN;
        x3[4 * cols] = NaN;
        const ref3 = rmsNormRef({ x: x3, cols, gamma: g });
        ref3.fill(NaN, 2 * cols, 3 * cols);
        ref3.fill(NaN, 4 * cols, 5 * cols);
        expectRowsClose(rmsNorm(x3, cols, g), ref3, cols, REL, `rmsNorm NaN cols ${cols}`);
      }
    });
  });

  describe('fused quantizeTo', () => {
    it.each([3, 17, 64, 513, 4096])('cols %i: equals quantizeRows(output) and the reference quantiser', (cols) => {
      const c = makeCase(cols, 3, cols >= 1024 ? 3 : 7);
      const check = (y: Float32Array, q: QuantizedRows, label: string) => {
        const again = quantizeRows(y, cols);
        expectExactlyEqual(q.data, again.data, `${label}: data vs quantizeRows`);
        expectExactlyEqual(q.scales, again.scales, `${label}: scales vs quantizeRows`);
        expectExactlyEqual(q.sums, again.sums, `${label}: sums vs quantizeRows`);
        const ref = quantizeRowsRef(y, cols);
        expect(q.stride).toBe(ref.stride);
        expectExactlyEqual(q.data, ref.data, `${label}: data vs reference`);
        expectExactlyEqual(q.scales, ref.scales, `${label}: scales vs reference`);
        expectExactlyEqual(q.sums, ref.sums, `${label}: sums vs reference`);
      };
      let q = new QuantizedRows(c.rows, cols);
      let y = layerNorm(c.x, cols, c.gamma, c.beta, { quantizeTo: q });
      expectRowsClose(y, layerNormRef({ x: c.x, cols, gamma: c.gamma, beta: c.beta }), cols, REL, 'layerNorm+q output');
      check(y, q, 'layerNorm');

      q = new QuantizedRows(c.rows, cols);
      const out = garbage(c.x.length);
      y = addLayerNorm(c.x, c.residual, cols, c.gamma, c.beta, { bias: c.bias, quantizeTo: q, out });
      expect(y).toBe(out);
      check(y, q, 'addLayerNorm');

      q = new QuantizedRows(c.rows, cols);
      y = rmsNorm(c.x, cols, c.gamma, { quantizeTo: q });
      check(y, q, 'rmsNorm');

      q = new QuantizedRows(c.rows, cols);
      y = addRmsNorm(c.x, c.residual, cols, c.gamma, { quantizeTo: q, beta: c.beta });
      check(y, q, 'addRmsNorm');
    });
  });
});

describe('LayerNormParams (live gamma/beta)', () => {
  const rng = new TestRng(21);
  const cols = 100;
  const rows = 3;
  const x = rng.normalArray(rows * cols, 0, 1.5);
  const g0 = rng.normalArray(cols, 1, 0.3);
  const b0 = rng.normalArray(cols, 0, 0.5);

  const refFor = (p: { gamma: Float32Array; beta: Float32Array }) =>
    layerNormRef({ x, cols, gamma: p.gamma.slice(), beta: p.beta.slice() });

  it('constructs with defaults gamma = 1, beta = 0, and with initial values (copied)', () => {
    const p = new LayerNormParams(cols);
    expect(Array.from(p.gamma)).toEqual(new Array(cols).fill(1));
    expect(Array.from(p.beta)).toEqual(new Array(cols).fill(0));
    expectRowsClose(layerNorm(x, cols, p), layerNormRef({ x, cols, gamma: new Float32Array(cols).fill(1) }), cols, REL, 'default params');
    const gInit = g0.slice();
    const q = new LayerNormParams(cols, { gamma: gInit, beta: b0 });
    gInit[0] = 1000; // the constructor copied it
    expect(q.gamma[0]).toBe(g0[0]);
    expectRowsClose(layerNorm(x, cols, q), layerNormRef({ x, cols, gamma: g0, beta: b0 }), cols, REL, 'initial params');
  });

  it('in-place edits of params.gamma / params.beta take effect on the next call', () => {
    const p = new LayerNormParams(cols, { gamma: g0, beta: b0 });
    const gRef = p.gamma;
    layerNorm(x, cols, p);
    p.gamma[5] = -3;
    p.gamma[cols - 1] = 2.5;
    p.beta[7] = 4;
    expect(p.gamma).toBe(gRef); // the same live array
    const y = layerNorm(x, cols, p);
    expect(y[5]).not.toBeCloseTo(layerNorm(x, cols, g0, b0)[5], 3);
    expectRowsClose(y, refFor(p), cols, REL, 'after in-place edit');
    expectRowsClose(rmsNorm(x, cols, p), rmsNormRef({ x, cols, gamma: p.gamma.slice(), beta: p.beta.slice() }), cols, REL, 'rmsNorm with params');
  });

  it('the setters copy the new values into the live arrays', () => {
    const p = new LayerNormParams(cols, { gamma: g0, beta: b0 });
    const live = p.gamma;
    const g1 = rng.normalArray(cols, 0.5, 0.1);
    const b1 = rng.normalArray(cols, 1, 0.1);
    p.gamma = g1;
    p.beta = b1;
    expect(p.gamma).toBe(live);
    expectExactlyEqual(p.gamma, g1, 'gamma after set');
    g1[0] = 99; // the setter copied: later edits of the source do not leak in
    expect(p.gamma[0]).not.toBe(99);
    expectRowsClose(layerNorm(x, cols, p), refFor(p), cols, REL, 'after setter');
  });

  it('scaleGamma / shiftGamma / scaleBeta / shiftBeta with scalars and per-channel arrays', () => {
    const p = new LayerNormParams(cols, { gamma: g0, beta: b0 });
    const perCh = rng.normalArray(cols, 1, 0.5);
    const shift = rng.normalArray(cols, 0, 0.5);
    expect(p.scaleGamma(2)).toBe(p);
    p.shiftBeta(0.5).scaleGamma(perCh).shiftBeta(shift).scaleBeta(-1.5).shiftGamma(0.25).scaleBeta(perCh).shiftGamma(shift);
    const eg = new Float32Array(cols);
    const eb = new Float32Array(cols);
    for (let i = 0; i < cols; i++) {
      let g = g0[i];
      let b = b0[i];
      g = Math.fround(g * 2);
      b = Math.fround(b + 0.5);
      g = Math.fround(g * perCh[i]);
      b = Math.fround(b + shift[i]);
      b = Math.fround(b * -1.5);
      g = Math.fround(g + 0.25);
      b = Math.fround(b * perCh[i]);
      g = Math.fround(g + shift[i]);
      eg[i] = g;
      eb[i] = b;
    }
    expectExactlyEqual(p.gamma, eg, 'gamma after ops');
    expectExactlyEqual(p.beta, eb, 'beta after ops');
    expectRowsClose(layerNorm(x, cols, p), layerNormRef({ x, cols, gamma: eg, beta: eb }), cols, REL, 'after ops');
    const snap = p.snapshot();
    p.scaleGamma(0);
    expectExactlyEqual(snap.gamma, eg, 'snapshot is a copy');
    // gamma = 0: the output is beta.
    const ref = new Float64Array(rows * cols);
    for (let i = 0; i < ref.length; i++) ref[i] = eb[i % cols];
    expectRowsClose(layerNorm(x, cols, p), ref, cols, REL, 'gamma zero');
  });

  it('bad values are rejected and leave the params unchanged', () => {
    const p = new LayerNormParams(cols, { gamma: g0, beta: b0 });
    expectChimeraError(() => { p.gamma = new Float32Array(cols - 1); }, 'E_SHAPE', 'short gamma');
    expectChimeraError(() => { p.beta = new Float32Array(cols + 1); }, 'E_SHAPE', 'long beta');
    const bad = g0.slice();
    bad[3] = NaN;
    expectChimeraError(() => { p.gamma = bad; }, 'E_RANGE', 'NaN gamma');
    bad[3] = Infinity;
    expectChimeraError(() => { p.beta = bad; }, 'E_RANGE', 'Inf beta');
    expectChimeraError(() => p.scaleGamma(NaN), 'E_RANGE', 'NaN factor');
    expectChimeraError(() => p.shiftBeta(Infinity), 'E_RANGE', 'Inf shift');
    expectChimeraError(() => p.scaleGamma(new Float32Array(3)), 'E_SHAPE', 'short factor array');
    expectChimeraError(() => { p.gamma = new Float64Array(cols) as unknown as Float32Array; }, 'E_DTYPE', 'Float64Array gamma');
    expectExactlyEqual(p.gamma, g0, 'gamma unchanged');
    expectExactlyEqual(p.beta, b0, 'beta unchanged');
    expectChimeraError(() => layerNorm(x, 50, p), 'E_SHAPE', 'params of other width');
    expectChimeraError(() => new LayerNormParams(0), 'E_ARG', 'cols 0');
  });
});
