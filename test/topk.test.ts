/**
 * Native top-k over rows of logits (greedy argmax and beam's top-2B without a JS pass over the vocabulary): exact
 * indices against a JS sort reference (ties to the lower index, NaN as -Infinity), values bit-identical to x or
 * to what the native logSoftmax writes, on every ISA; typed errors for bad arguments.
 */
import { describe, expect, it } from 'vitest';
import { logSoftmax, topk } from '../src/index';
import { expectChimeraError, expectExactlyEqual, expectKernelRan, forEachIsa } from './helpers/harness';
import { TestRng } from './helpers/reference';

/** Reference: stable sort of indices by value descending (NaN as -Infinity), ties to the lower index. */
function refTopk(x: Float32Array, rows: number, cols: number, k: number): { idx: number[]; val: number[] } {
  const idx: number[] = [];
  const val: number[] = [];
  for (let r = 0; r < rows; r++) {
    const v = (j: number) => (Number.isNaN(x[r * cols + j]) ? -Infinity : x[r * cols + j]);
    const order = Array.from({ length: cols }, (_, j) => j).sort((a, b) => (v(b) - v(a)) || (v(a) === v(b) ? a - b : 0));
    for (let i = 0; i < k; i++) {
      idx.push(order[i]);
      val.push(v(order[i]));
    }
  }
  return { idx, val };
}

/** Rows with ties (values drawn from a small set), -Infinity, NaN, an all -Infinity row and a one-NaN row. */
function data(rng: TestRng, rows: number, cols: number): Float32Array {
  const x = new Float32Array(rows * cols);
  for (let i = 0; i < x.length; i++) {
    const u = rng.uniform();
    x[i] = u < 0.05 ? -Infinity : u < 0.08 ? NaN : Math.round(rng.normal() * 4) / 2; // few distinct values: ties
  }
  for (let j = 0; j < cols; j++) x[(rows - 1) * cols + j] = -Infinity;
  if (rows > 2) x[(rows - 2) * cols + (cols >> 1)] = NaN;
  return x;
}

describe('topk', () => {
  forEachIsa((isa) => {
    for (const [rows, cols] of [
      [5, 1],
      [7, 37],
      [4, 100],
      [3, 1031],
    ]) {
      for (const k of [1, 8, cols]) {
        if (k > cols) continue;
        it(`rows ${rows} cols ${cols} k ${k}: indices and values match the sort reference`, () => {
          const rng = new TestRng(rows * 1000 + cols * 10 + k);
          const x = data(rng, rows, cols);
          const copy = x.slice();
          const { idx, val } = expectKernelRan('topk', isa, () => topk(x, rows, cols, k));
          const ref = refTopk(x, rows, cols, k);
          const lastRow = (rows - 1) * k;
          // the all -Infinity row: any valid indices, -Infinity values
          for (let i = 0; i < k; i++) {
            expect(val[lastRow + i]).toBe(-Infinity);
            expect(idx[lastRow + i] >= 0 && idx[lastRow + i] < cols).toBe(true);
          }
          expectExactlyEqual(idx.subarray(0, lastRow), ref.idx.slice(0, lastRow), 'indices');
          expectExactlyEqual(val, ref.val, 'values');
          expectExactlyEqual(x, copy, 'x untouched');
        });

        it(`rows ${rows} cols ${cols} k ${k}: logSoftmax values are exactly logSoftmax's`, () => {
          const rng = new TestRng(rows * 7 + cols + k);
          const x = data(rng, rows, cols);
          const { idx, val } = topk(x, rows, cols, k, { logSoftmax: true });
          // logSoftmax of the same rows with NaN read as -Infinity, as topk reads them
          const ls = logSoftmax(x.map((v) => (Number.isNaN(v) ? -Infinity : v)), cols);
          for (let r = 0; r < rows; r++)
            for (let i = 0; i < k; i++) {
              const got = val[r * k + i];
              const want = r === rows - 1 ? -Infinity : ls[r * cols + idx[r * k + i]];
              if (!Object.is(got, want)) expect.fail(`row ${r} entry ${i} (index ${idx[r * k + i]}): got ${got}, logSoftmax wrote ${want}`);
            }
        });
      }
    }

    it('k = 1 equals a JS argmax keeping the first maximum, on logits-sized rows', () => {
      const rng = new TestRng(99);
      const rows = 4;
      const cols = 58101;
      const x = rng.normalArray(rows * cols);
      x[1 * cols + 100] = 50;
      x[1 * cols + 40000] = 50; // a tie: the lower index wins
      const { idx } = topk(x, rows, cols, 1);
      for (let r = 0; r < rows; r++) {
        let best = 0;
        for (let j = 1; j < cols; j++) if (x[r * cols + j] > x[r * cols + best]) best = j;
        expect(idx[r]).toBe(best);
      }
      expect(idx[1]).toBe(100);
    });
  });

  it('rejects bad arguments with typed errors', () => {
    const x = new Float32Array(12);
    expectChimeraError(() => topk(x, 3, 4, 0), 'E_ARG', 'k = 0');
    expectChimeraError(() => topk(x, 3, 4, 5), 'E_RANGE', 'k > cols');
    expectChimeraError(() => topk(x, 4, 4, 1), 'E_SHAPE', 'rows * cols');
    expectChimeraError(() => topk(new Float64Array(12) as unknown as Float32Array, 3, 4, 1), 'E_DTYPE', 'x dtype');
    expectChimeraError(() => topk(x, 3, 4, 2, { outIdx: new Int32Array(5) }), 'E_SHAPE', 'outIdx length');
    expectChimeraError(() => topk(x, 3, 4, 2, { outVal: new Float32Array(7) }), 'E_SHAPE', 'outVal length');
    expectChimeraError(() => topk(x, 3, 4, 2, { outIdx: new Uint32Array(6) as unknown as Int32Array }), 'E_DTYPE', 'outIdx dtype');
  });
});
