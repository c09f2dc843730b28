/**
 * dynamicQuantizeLinear (ONNX DynamicQuantizeLinear) and quantizeRows (symmetric per-row int8) against the
 * float32-exact references, on every ISA.
 */
import { describe, expect, it } from 'vitest';
import { QuantizedRows, dynamicQuantizeLinear, quantizeRows } from '../src/index';
import { expectChimeraError, expectExactlyEqual, expectKernelRan, forEachIsa } from './helpers/harness';
import { TestRng, dynamicQuantizeLinearRef, f32, quantizeRowsRef, roundHalfEven } from './helpers/reference';

function expectDql(x: Float32Array, label: string): void {
  const got = dynamicQuantizeLinear(x);
  const ref = dynamicQuantizeLinearRef(x);
  expect(got.scale, `${label}: scale`).toBe(ref.scale);
  expect(got.zeroPoint, `${label}: zero point`).toBe(ref.zeroPoint);
  expectExactlyEqual(got.y, ref.y, `${label}: y`);
}

function expectRows(q: QuantizedRows, x: Float32Array, cols: number, label: string): void {
  const ref = quantizeRowsRef(x, cols);
  expect(q.rows, `${label}: rows`).toBe(ref.rows);
  expect(q.cols, `${label}: cols`).toBe(cols);
  expect(q.stride, `${label}: stride`).toBe(ref.stride);
  expectExactlyEqual(q.scales, ref.scales, `${label}: scales`);
  expectExactlyEqual(q.data, ref.data, `${label}: data (with padding)`);
  expectExactlyEqual(q.sums, ref.sums, `${label}: sums`);
}

/**
 * Values x in one row with max |x| = m where round(x / scale) differs from round(x * (1 / scale)) or from
 * round(x * (127 / m)): they pin down that the quantiser divides by the float32 scale, as ONNX QuantizeLinear
 * does, rather than multiplying by a reciprocal.
 */
function divisionSensitiveRow(rng: TestRng, cols: number): Float32Array {
  const found: number[] = [];
  for (let attempt = 0; attempt < 20000 && found.length < 2 * 24; attempt++) {
    const m = f32(rng.range(0.5, 4));
    const s = f32(m / 127);
    const inv1 = f32(1 / s);
    const inv2 = f32(127 / m);
    const k = rng.int(0, 125);
    const mid = f32((k + 0.5) * s);
    const bits = new Float32Array(1);
    const u = new Uint32Array(bits.buffer);
    for (let d = -3; d <= 3; d++) {
      bits[0] = mid;
      u[0] += d;
      const x = bits[0];
      if (!(x > 0 && x < m)) continue;
      const byDiv = roundHalfEven(f32(x / s));
      if (roundHalfEven(f32(x * inv1)) !== byDiv || roundHalfEven(f32(x * inv2)) !== byDiv) {
        found.push(x, m);
        break;
      }
    }
  }
  // Each candidate needs its own max; build one row per (x, m) pair instead of mixing them.
  const rows = found.length / 2;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const x = found[2 * r];
    const m = found[2 * r + 1];
    for (let c = 0; c < cols; c++) out[r * cols + c] = f32(rng.range(-m, m));
    out[r * cols] = m;
    out[r * cols + 1 + (r % (cols - 1))] = r % 2 ? -x : x;
  }
  return out;
}

forEachIsa((isa) => {
  describe('dynamicQuantizeLinear', () => {
    it('random inputs of many lengths: y, scale and zero point exact', () => {
      const rng = new TestRng(801);
      for (const len of [1, 2, 7, 15, 16, 17, 31, 64, 100, 1023, 4096, 65537]) {
        expectKernelRan('dql', isa, () => dynamicQuantizeLinear(new Float32Array(len).fill(1)));
        expectDql(rng.normalArray(len, 0.3, 2), `normal len ${len}`);
        expectDql(rng.uniformArray(len, -7, 3), `uniform len ${len}`);
      }
    });

    it('all zeros: y = 0, zero point 0, finite scale', () => {
      for (const len of [1, 16, 33]) {
        const r = dynamicQuantizeLinear(new Float32Array(len));
        expect(Array.from(r.y)).toEqual(new Array(len).fill(0));
        expect(r.zeroPoint).toBe(0);
        expect(Number.isFinite(r.scale) && r.scale >= 0, `scale ${r.scale}`).toBe(true);
      }
    });

    it('all positive (zero point 0) and all negative (zero point 255)', () => {
      const rng = new TestRng(802);
      for (const len of [3, 17, 500]) {
        const pos = rng.uniformArray(len, 0.1, 5);
        expectDql(pos, `positive len ${len}`);
        expect(dynamicQuantizeLinear(pos).zeroPoint).toBe(0);
        const neg = rng.uniformArray(len, -5, -0.1);
        expectDql(neg, `negative len ${len}`);
        expect(dynamicQuantizeLinear(neg).zeroPoint).toBe(255);
      }
    });

    it('half-way cases round to even (values and zero point)', () => {
      // Range 255 -> scale 1: x / scale is exact, and the .5 values are true ties.
      const x = Float32Array.of(-100, 155, -2.5, -3.5, -0.5, 0.5, 1.5, 2.5, 3.5, 54.5, -99.5, 154.5);
      expectDql(x, 'scale 1');
      const r = dynamicQuantizeLinear(x);
      expect(r.zeroPoint).toBe(100);
      expect(Array.from(r.y.subarray(2))).toEqual([98, 96, 100, 100, 102, 102, 104, 154, 0, 254]);
      // Range 127.5 -> scale 0.5: multiples of 0.25 give x / scale on halves.
      const rng = new TestRng(803);
      const h = new Float32Array(300);
      for (let i = 0; i < h.length; i++) h[i] = rng.int(-200, 310) * 0.25;
      h[0] = -50;
      h[1] = 77.5;
      expectDql(h, 'scale 0.5');
      // The zero point itself on a tie: -xmin / scale = 100.5 -> 100, 101.5 -> 102.
      expect(dynamicQuantizeLinear(Float32Array.of(-100.5, 154.5, 0)).zeroPoint).toBe(100);
      expect(dynamicQuantizeLinear(Float32Array.of(-101.5, 153.5, 0)).zeroPoint).toBe(102);
    });

    it('large ranges', () => {
      const rng = new TestRng(804);
      expectDql(Float32Array.of(1e38, -1e38, 3e37, -5e36, 0, 1), '+-1e38');
      const x = rng.normalArray(1000, 0, 1);
      x[17] = 1e30;
      x[999] = -3e29;
      expectDql(x, 'huge outliers among small values');
      const tiny = rng.normalArray(257, 0, 1e-30);
      expectDql(tiny, 'tiny values');
      const wide = rng.normalArray(100, 0, 1e20);
      expectDql(wide, 'wide');
    });

    it('NaN input throws E_RANGE', () => {
      for (const [len, pos] of [[1, 0], [16, 3], [17, 16], [1000, 999]]) {
        const x = new Float32Array(len).fill(0.5);
        x[pos] = NaN;
        expectChimeraError(() => dynamicQuantizeLinear(x), 'E_RANGE', `NaN at ${pos} of ${len}`);
      }
    });
  });

  describe('quantizeRows', () => {
    it('random rows over many widths: data (with zero padding), scales and sums exact', () => {
      const rng = new TestRng(811);
      for (const cols of [1, 2, 3, 4, 5, 15, 16, 17, 63, 64, 65, 100, 513, 2048]) {
        for (const rows of [1, 3, 8]) {
          const x = rng.normalArray(rows * cols, 0.2, 1.5);
          const q = expectKernelRan('quantize_rows', isa, () => quantizeRows(x, cols));
          expectRows(q, x, cols, `${rows}x${cols}`);
        }
      }
    });

    it('reusing `into` returns it and overwrites everything', () => {
      const rng = new TestRng(812);
      const cols = 70, rows = 5;
      const q = new QuantizedRows(rows, cols);
      quantizeRows(rng.normalArray(rows * cols, 0, 10), cols, q);
      const x = rng.normalArray(rows * cols, 1, 0.1);
      expect(quantizeRows(x, cols, q)).toBe(q);
      expectRows(q, x, cols, 'reused');
    });

    it('zero rows: data 0, sums 0, finite scale; other rows unaffected', () => {
      const rng = new TestRng(813);
      for (const cols of [3, 16, 100]) {
        const x = rng.normalArray(4 * cols);
        x.fill(0, cols, 2 * cols);
        x.fill(0, 3 * cols, 4 * cols);
        const q = quantizeRows(x, cols);
        for (const r of [1, 3]) {
          expect(Number.isFinite(q.scales[r]) && q.scales[r] >= 0, `scale ${q.scales[r]}`).toBe(true);
          expect(q.sums[r]).toBe(0);
          for (let i = 0; i < q.stride; i++) expect(q.data[r * q.stride + i]).toBe(0);
        }
        const ref = quantizeRowsRef(x, cols);
        for (const r of [0, 2]) {
          expect(q.scales[r]).toBe(ref.scales[r]);
          expect(q.sums[r]).toBe(ref.sums[r]);
          expectExactlyEqual(q.data.subarray(r * q.stride, (r + 1) * q.stride), ref.data.subarray(r * q.stride, (r + 1) * q.stride), `row ${r}`);
        }
      }
    });

    it('half-way values round to even; extremes map to +-127', () => {
      // max |x| = 127 -> scale 1.
      const row = Float32Array.of(127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5, -127, 64.5, 3.5, -3.5);
      const q = quantizeRows(row, row.length);
      expect(q.scales[0]).toBe(1);
      expect(Array.from(q.data.subarray(0, row.length))).toEqual([127, 0, 2, 2, 0, -2, -2, 126, -126, -127, 64, 4, -4]);
      expectRows(q, row, row.length, 'halves');
    });

    it('quantises by dividing by the float32 scale (values where a reciprocal multiply would differ)', () => {
      const rng = new TestRng(814);
      for (const cols of [17, 64]) {
        const x = divisionSensitiveRow(rng, cols);
        expect(x.length, 'constructed some sensitive rows').toBeGreaterThan(cols * 8);
        expectRows(quantizeRows(x, cols), x, cols, `division-sensitive cols ${cols}`);
      }
    });

    it('very large and very small magnitudes', () => {
      const rng = new TestRng(815);
      const cols = 40;
      const x = new Float32Array(3 * cols);
      for (let i = 0; i < cols; i++) {
        x[i] = rng.normal() * 1e30;
        x[cols + i] = rng.normal() * 1e-20;
        x[2 * cols + i] = rng.normal();
      }
      x[2 * cols + 7] = 3e38;
      expectRows(quantizeRows(x, cols), x, cols, 'magnitudes');
    });

    it('NaN or Inf throws E_RANGE', () => {
      for (const cols of [3, 16, 17, 100]) {
        for (const bad of [NaN, Infinity, -Infinity]) {
          for (const pos of [0, cols - 1, 2 * cols + (cols >> 1)]) {
            const x = new Float32Array(3 * cols).fill(0.25);
            x[pos] = bad;
            expectChimeraError(() => quantizeRows(x, cols), 'E_RANGE', `${bad} at ${pos}, cols ${cols}`);
          }
        }
      }
    });
  });
});
