// logSoftmax (used by beam search every step) against an fp64 reference, on every ISA.
import { describe, expect, it } from 'vitest';
import { logSoftmax } from '../src/index';
import { expectChimeraError, expectKernelRan, forEachIsa } from './helpers/harness';
import { TestRng } from './helpers/reference';

function ref(x: Float32Array, cols: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / cols; r++) {
    let mx = -Infinity;
    for (let j = 0; j < cols; j++) mx = Math.max(mx, x[r * cols + j]);
    let s = 0;
    for (let j = 0; j < cols; j++) s += Math.exp(x[r * cols + j] - mx);
    const lse = mx + Math.log(s);
    for (let j = 0; j < cols; j++) out[r * cols + j] = x[r * cols + j] - lse;
  }
  return out;
}

forEachIsa((isa) => {
  it.each([1, 7, 16, 17, 100, 8001, 58101])('cols %i matches fp64 (abs error < 2e-5 + 1e-6 |y|)', (cols) => {
    const rng = new TestRng(cols);
    const rows = cols > 1000 ? 3 : 5;
    const x = Float32Array.from({ length: rows * cols }, () => 4 * rng.normal());
    const want = ref(x, cols);
    const got = expectKernelRan('log_softmax', isa, () => logSoftmax(x.slice(), cols));
    for (let i = 0; i < got.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThan(2e-5 + 1e-6 * Math.abs(want[i]));
  });

  it('banned entries (-Infinity) stay -Infinity and the rest normalise; an all -Infinity row stays so', () => {
    const cols = 40;
    const x = new Float32Array(2 * cols).fill(-Infinity);
    x[3] = 1.5;
    x[10] = -0.5;
    logSoftmax(x, cols);
    expect(Math.exp(x[3]) + Math.exp(x[10])).toBeCloseTo(1, 6);
    expect(x[4]).toBe(-Infinity);
    for (let j = cols; j < 2 * cols; j++) expect(x[j]).toBe(-Infinity);
  });
});

describe('logSoftmax input checks', () => {
  it('wrong dtype, cols and lengths are typed errors', () => {
    expectChimeraError(() => logSoftmax(new Float64Array(4) as unknown as Float32Array, 2), 'E_DTYPE');
    expectChimeraError(() => logSoftmax(new Float32Array(5), 2), 'E_SHAPE');
    expectChimeraError(() => logSoftmax(new Float32Array(4), 0), 'E_ARG');
  });
});
