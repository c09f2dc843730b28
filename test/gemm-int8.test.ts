/**
 * Integer GEMM: matmulInteger bit-exact against a naive int32 loop, the int8 core of linearInt8
 * (int8GemmAccumulators) bit-exact against a naive loop over the unpacked weights, the AVX2 int16 saturation
 * trap, the weight packer, linearInt8's float output, async variants and thread-count invariance.
 */
import { describe, expect, it } from 'vitest';
import {
  PackedInt8Weights, QuantizedRows, getIsa, getThreads, int8GemmAccumulators, kernelCounters, linearInt8, linearInt8Async, matmulInteger,
  matmulIntegerAsync, packInt8Weights, quantizeRows, setIsa, setThreads,
} from '../src/index';
import type { Activation, Isa } from '../src/index';
import {
  expectExactlyEqual, expectKernelRan, expectKernelRanAsync, expectNormClose, expectSameFloats, forEachIsa, forEachThreads,
  getGc, withThreads,
} from './helpers/harness';
import {
  ACTIVATIONS, TestRng, int8AccumulatorsRef, linearInt8FromQuantRef, linearRef, matmulIntegerRef, quantizeRowsRef,
  quantizeWeightsRef, silu64,
} from './helpers/reference';

type IntArray = Uint8Array | Int8Array;
type Zp = number | IntArray | undefined;
type Combo = 'u8u8' | 'u8s8' | 's8s8' | 's8u8';
const COMBOS: Combo[] = ['u8u8', 'u8s8', 's8s8', 's8u8'];

/** [M, K, N]: every size in {1, 3, 7, 15, 17, 63, 65, 300, 2048} appears in every role at least once. */
const SHAPES: [number, number, number][] = [
  [1, 1, 1], [1, 7, 3], [3, 15, 17], [7, 3, 65], [15, 17, 7], [17, 63, 1], [63, 65, 15], [65, 1, 63],
  [1, 2048, 300], [3, 2048, 17], [17, 300, 65], [300, 17, 300], [7, 65, 2048], [65, 2048, 63], [15, 300, 300],
  [300, 63, 7], [2048, 3, 15],
  // K a multiple of 64 with >= 32 rows: whole 32-row blocks run on AMX tiles where present, the rest on VNNI.
  [32, 64, 1], [64, 512, 130], [100, 128, 64], [33, 2048, 17],
];

function zpDescr(z: Zp): string {
  if (z === undefined) return 'none';
  if (typeof z === 'number') return String(z);
  return `${z.constructor.name}[${z.length}]`;
}

/** Zero-point variants, chosen round-robin so that every variant meets several shapes. */
function zpVariant(rng: TestRng, signed: boolean, len: number, i: number): Zp {
  const u: Zp[] = [undefined, 0, 1, 127, 128, 255];
  const s: Zp[] = [undefined, -128, -1, 0, 127];
  const list = signed ? s : u;
  const j = i % (list.length + 2);
  if (j < list.length) return list[j];
  if (j === list.length) return signed ? Int8Array.of(rng.int(-128, 127)) : Uint8Array.of(rng.int(0, 255)); // length 1
  return signed ? rng.s8Array(len) : rng.u8Array(len); // per row / per column
}

interface MmCase {
  label: string;
  a: IntArray;
  b: IntArray;
  m: number;
  k: number;
  n: number;
  az: Zp;
  bz: Zp;
  ref?: Int32Array;
}

function operand(rng: TestRng, signed: boolean, len: number): IntArray {
  return signed ? rng.s8Array(len) : rng.u8Array(len);
}

function makeMmCases(): MmCase[] {
  const rng = new TestRng(101);
  const cases: MmCase[] = [];
  let v = 0;
  for (const [m, k, n] of SHAPES) {
    for (const combo of COMBOS) {
      const aS = combo[0] === 's';
      const bS = combo.endsWith('s8');
      const az = zpVariant(rng, aS, m, v);
      const bz = zpVariant(rng, bS, n, v + 3);
      v++;
      cases.push({ label: `${m}x${k}x${n} ${combo} aZp ${zpDescr(az)} bZp ${zpDescr(bz)}`, a: operand(rng, aS, m * k), b: operand(rng, bS, k * n), m, k, n, az, bz });
    }
  }
  return cases;
}

/** Every scalar zero point with every other, plus per-row / per-column arrays, on a shape past the vector width. */
function makeZpCases(): MmCase[] {
  const rng = new TestRng(102);
  const [m, k, n] = [7, 67, 19];
  const uz = [0, 1, 127, 128, 255];
  const sz = [-128, -1, 0, 127];
  const cases: MmCase[] = [];
  for (const combo of COMBOS) {
    const aS = combo[0] === 's';
    const bS = combo.endsWith('s8');
    const a = operand(rng, aS, m * k);
    const b = operand(rng, bS, k * n);
    for (const az of aS ? sz : uz) for (const bz of bS ? sz : uz) cases.push({ label: `${combo} aZp ${az} bZp ${bz}`, a, b, m, k, n, az, bz });
    const azArr = aS ? Int8Array.from([-128, 127, -1, 0, 5, -77, 100]) : Uint8Array.from([0, 255, 128, 127, 1, 200, 33]);
    const bzArr = operand(rng, bS, n);
    if (bS) bzArr.set([-128, 127, -1, 0]);
    else bzArr.set([0, 255, 128, 127]);
    cases.push({ label: `${combo} per-row aZp, per-column bZp`, a, b, m, k, n, az: azArr, bz: bzArr });
    cases.push({ label: `${combo} per-row aZp, scalar bZp`, a, b, m, k, n, az: azArr, bz: bS ? 3 : 250 });
    cases.push({ label: `${combo} length-1 arrays`, a, b, m, k, n, az: aS ? Int8Array.of(-5) : Uint8Array.of(9), bz: bS ? Int8Array.of(7) : Uint8Array.of(129) });
  }
  return cases;
}

/** Constant and alternating extremes with K = 2048: products at the edges of the int16 / int32 ranges. */
function makeExtremeCases(): MmCase[] {
  const m = 3, k = 2048, n = 17;
  const fill = (signed: boolean, len: number, f: (i: number) => number): IntArray => {
    const arr = signed ? new Int8Array(len) : new Uint8Array(len);
    for (let i = 0; i < len; i++) arr[i] = f(i);
    return arr;
  };
  const cases: MmCase[] = [];
  const add = (label: string, aS: boolean, af: (i: number) => number, bS: boolean, bf: (i: number) => number, az?: number, bz?: number) =>
    cases.push({ label, a: fill(aS, m * k, af), b: fill(bS, k * n, bf), m, k, n, az, bz });
  add('u8 255 x s8 -128', false, () => 255, true, () => -128);
  add('u8 255 x s8 127', false, () => 255, true, () => 127);
  add('u8 255 x u8 255', false, () => 255, false, () => 255);
  add('s8 -128 x s8 -128', true, () => -128, true, () => -128);
  add('s8 127 x s8 -128', true, () => 127, true, () => -128);
  add('s8 -128 x u8 255', true, () => -128, false, () => 255);
  add('u8 0 (zp 255) x s8 127 (zp -128)', false, () => 0, true, () => 127, 255, -128);
  add('u8 255 (zp 0) x u8 0 (zp 255)', false, () => 255, false, () => 0, 0, 255);
  add('s8 -128 (zp 127) x s8 -128 (zp 127)', true, () => -128, true, () => -128, 127, 127);
  add('u8 255/0 alternating x s8 127/-128 alternating', false, (i) => (i % 2 ? 0 : 255), true, (i) => (Math.floor(i / 17) % 2 ? -128 : 127));
  add('u8 pairs of 255 x s8 pairs of 127', false, (i) => ((i >> 1) % 2 ? 255 : 254), true, (i) => (Math.floor(i / 17) % 4 < 2 ? 127 : 126));
  return cases;
}

let mmCases: MmCase[] | undefined;
let zpCases: MmCase[] | undefined;
let extremeCases: MmCase[] | undefined;

function withRef(c: MmCase): MmCase {
  if (!c.ref) c.ref = matmulIntegerRef(c.a, c.m, c.k, c.b, c.n, c.az, c.bz);
  return c;
}

function runMm(c: MmCase): Int32Array {
  return matmulInteger(c.a, [c.m, c.k], c.b, [c.k, c.n], c.az as never, c.bz as never);
}

// ------------------------------------------------------------------------------------------------ int8 core

interface S8Case {
  label: string;
  rows: number;
  k: number;
  n: number;
  x: Float32Array;
  w: Float32Array;
  q?: QuantizedRows;
  packedAuto?: PackedInt8Weights;
  ref?: Int32Array;
}

function makeS8Cases(): S8Case[] {
  const rng = new TestRng(201);
  return SHAPES.map(([rows, k, n]) => ({
    label: `${rows}x${k}x${n}`, rows, k, n,
    x: rng.normalArray(rows * k, 0.1, 1),
    w: rng.normalArray(n * k, 0, 1 / Math.sqrt(k)),
  }));
}

/** Every activation quantises to +-127 and every weight to +-127, in sign patterns that make every product
 *  pair 2 * 127 * 127 (or, with an unsigned +128 offset, 2 * 255 * 127) in magnitude. */
function makeSaturationCase(k: number): S8Case {
  const rows = 40, n = 10; // 40 rows: one AMX block (where present) plus a VNNI/AVX2 tail
  const rng = new TestRng(301);
  const signs: ((i: number) => number)[] = [
    () => 1, () => -1, (i) => (i % 2 ? -1 : 1), (i) => ((i >> 1) % 2 ? -1 : 1), (i) => ((i >> 2) % 2 ? -1 : 1),
  ];
  const randomSigns = Array.from({ length: 4 }, () => Array.from({ length: k }, () => (rng.uniform() < 0.5 ? -1 : 1)));
  const x = new Float32Array(rows * k);
  for (let r = 0; r < rows; r++) {
    const f = r < signs.length ? signs[r] : (i: number) => randomSigns[0][i];
    for (let i = 0; i < k; i++) x[r * k + i] = 0.75 * f(i);
  }
  const w = new Float32Array(n * k);
  for (let j = 0; j < n; j++) {
    let f: (i: number) => number;
    if (j < signs.length) f = signs[j];
    else if (j === 5) f = (i) => -signs[2](i);
    else if (j === 6) f = (i) => randomSigns[0][i]; // equal to row 5's pattern: all products +127*127
    else if (j === 7) f = (i) => -randomSigns[0][i]; // opposite: all products -127*127
    else f = (i) => randomSigns[j - 7][i];
    for (let i = 0; i < k; i++) w[j * k + i] = 0.03125 * f(i);
  }
  return { label: `saturation trap K=${k}`, rows, k, n, x, w };
}

let s8Cases: S8Case[] | undefined;
let satCases: S8Case[] | undefined;

/** Quantises and packs once, under the 'auto' ISA, so every forced ISA also runs on weights packed elsewhere. */
function prepS8(c: S8Case): S8Case {
  if (!c.q || !c.packedAuto) {
    const current = getIsa();
    setIsa('auto');
    try {
      c.q = quantizeRows(c.x, c.k);
      c.packedAuto = packInt8Weights(c.w, c.n, c.k);
    } finally {
      setIsa(current);
    }
  }
  if (!c.ref) {
    // Integers from the library's own quantised forms (their correctness is checked separately against the
    // reference quantisers), accumulated by a naive loop.
    c.ref = int8AccumulatorsRef(c.q.data, c.q.stride, c.rows, c.packedAuto.unpack(), c.n, c.k);
  }
  return c;
}

/**
 * The addon packs int8 weights with one ISA-independent routine (same layout for every ISA), so it may keep
 * no pack_s8 counter; when it does report pack_s8 counters, the forced ISA's must increase.
 */
function packWithCounter<T>(isa: Isa, fn: () => T): T {
  if (!Object.keys(kernelCounters()).some((k) => k.startsWith('pack_s8:'))) return fn();
  return expectKernelRan('pack_s8', isa, fn);
}

// ------------------------------------------------------------------------------------------------ tests

forEachIsa((isa) => {
  forEachThreads([1, 2], () => {
    describe('matmulInteger', () => {
      it('random shapes, all type combinations and zero-point variants: bit-exact', () => {
        mmCases ??= makeMmCases();
        expectKernelRan('matmul_integer', isa, () => runMm(withRef(mmCases![0])));
        for (const c of mmCases) expectExactlyEqual(runMm(withRef(c)), c.ref!, c.label);
      });

      it('every scalar zero point against every other, per-row and per-column arrays: bit-exact', () => {
        zpCases ??= makeZpCases();
        for (const c of zpCases) expectExactlyEqual(runMm(withRef(c)), c.ref!, c.label);
      });

      it('extreme values with K = 2048: bit-exact', () => {
        extremeCases ??= makeExtremeCases();
        for (const c of extremeCases) expectExactlyEqual(runMm(withRef(c)), c.ref!, c.label);
      });

      it('matmulIntegerAsync equals matmulInteger', async () => {
        mmCases ??= makeMmCases();
        const picked = mmCases.filter((_, i) => i % 5 === 0).map(withRef);
        const results = await expectKernelRanAsync('matmul_integer', isa, () =>
          Promise.all(picked.map((c) => matmulIntegerAsync(c.a, [c.m, c.k], c.b, [c.k, c.n], c.az as never, c.bz as never))),
        );
        picked.forEach((c, i) => expectExactlyEqual(results[i], c.ref!, `async ${c.label}`));
      });
    });

    describe('int8GemmAccumulators (the integer core of linearInt8)', () => {
      it('bit-exact against a naive loop over unpack() and q.data (weights packed under auto)', () => {
        s8Cases ??= makeS8Cases();
        for (const c of s8Cases.map(prepS8)) {
          const acc = expectKernelRan('gemm_s8', isa, () => int8GemmAccumulators(c.q!, c.packedAuto!));
          expectExactlyEqual(acc, c.ref!, c.label);
        }
      });

      it('bit-exact with weights packed under this ISA', () => {
        s8Cases ??= makeS8Cases();
        for (const c of s8Cases.map(prepS8)) {
          const packed = packWithCounter(isa, () => packInt8Weights(c.w, c.n, c.k));
          expectExactlyEqual(packed.unpack(), c.packedAuto!.unpack(), `${c.label}: unpack differs between ISAs`);
          expectExactlyEqual(int8GemmAccumulators(c.q!, packed), c.ref!, c.label);
        }
      });

      it('saturation trap: +-127 x +-127 with K = 2048 (and 2047, 2049) is exact', () => {
        satCases ??= [makeSaturationCase(2048), makeSaturationCase(2047), makeSaturationCase(2049)];
        for (const c of satCases) {
          const q = quantizeRows(c.x, c.k);
          const packed = packInt8Weights(c.w, c.n, c.k);
          // The construction really produces +-127 everywhere.
          for (let r = 0; r < c.rows; r++) for (let i = 0; i < c.k; i++) expect(Math.abs(q.data[r * q.stride + i])).toBe(127);
          const wq = packed.unpack();
          for (let i = 0; i < wq.length; i++) if (Math.abs(wq[i]) !== 127) expect.fail(`weight ${i} quantised to ${wq[i]}`);
          const ref = int8AccumulatorsRef(q.data, q.stride, c.rows, wq, c.n, c.k);
          expect(Math.max(...Array.from(ref, Math.abs))).toBe(127 * 127 * c.k); // the extreme sums really occur
          expectExactlyEqual(int8GemmAccumulators(q, packed), ref, c.label);
          // And through linearInt8: the same integers, dequantised.
          const y = linearInt8(q, c.rows, packed);
          expectNormClose(y, linearInt8FromQuantRef(q, wq, packed.scales, c.n, c.k), 1e-6, `${c.label} linearInt8`);
        }
      });
    });

    describe('linearInt8', () => {
      const shapes: [number, number, number][] = [[1, 512, 300], [7, 65, 63], [17, 2048, 65], [65, 17, 3], [3, 3, 7], [1, 1, 5]];

      it.each(shapes)('rows %i, K %i, N %i: matches fp64 on the quantised integers (tight) and on the floats (loose)', (rows, k, n) => {
        const rng = new TestRng(rows * 7 + k * 13 + n);
        const x = rng.normalArray(rows * k);
        const w = rng.normalArray(n * k, 0, 1 / Math.sqrt(k));
        const bias = rng.normalArray(n, 0, 0.1);
        const packed = packInt8Weights(w, n, k);
        const qRef = quantizeRowsRef(x, k);
        const wRef = quantizeWeightsRef(w, n, k);
        for (const act of ACTIVATIONS) {
          for (const b of [bias, undefined]) {
            const label = `${rows}x${k}x${n} ${act} ${b ? 'bias' : 'no bias'}`;
            const y = expectKernelRan('gemm_s8', isa, () => linearInt8(x, rows, packed, { bias: b, activation: act }));
            expectNormClose(y, linearInt8FromQuantRef(qRef, wRef.q, wRef.scales, n, k, b, act), 1e-5, `${label} vs quantised fp64`);
            expectNormClose(y, linearRef(x, rows, w, n, k, b, act), 2e-2, `${label} vs float fp64`);
          }
        }
      });

      it('QuantizedRows input gives the same floats as Float32Array input; out is filled and returned', () => {
        const rng = new TestRng(401);
        for (const [rows, k, n] of [[5, 300, 65], [1, 2048, 17], [17, 63, 300]] as const) {
          const x = rng.normalArray(rows * k);
          const packed = packInt8Weights(rng.normalArray(n * k), n, k);
          const bias = rng.normalArray(n);
          for (const activation of ['none', 'gelu'] as Activation[]) {
            const y1 = linearInt8(x, rows, packed, { bias, activation });
            const out = new Float32Array(rows * n).fill(NaN);
            const y2 = linearInt8(quantizeRows(x, k), rows, packed, { bias, activation, out });
            expect(y2).toBe(out);
            expectSameFloats(y2, y1, `${rows}x${k}x${n} ${activation}`);
          }
        }
      });

      it('a zero input row or a zero weight channel gives act(bias)', () => {
        const rng = new TestRng(402);
        const rows = 3, k = 70, n = 9;
        const x = rng.normalArray(rows * k);
        x.fill(0, k, 2 * k);
        const w = rng.normalArray(n * k);
        w.fill(0, 4 * k, 5 * k);
        const bias = rng.normalArray(n);
        const packed = packInt8Weights(w, n, k);
        for (let i = 4 * k; i < 5 * k; i++) expect(packed.unpack()[i]).toBe(0);
        expect(Number.isFinite(packed.scales[4])).toBe(true);
        const y = linearInt8(x, rows, packed, { bias, activation: 'silu' });
        for (const v of y) expect(Number.isFinite(v)).toBe(true);
        const close = (got: number, b: number, label: string) =>
          expect(Math.abs(got - silu64(b)), `${label}: got ${got}, expected silu(${b}) = ${silu64(b)}`).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(b)));
        for (let j = 0; j < n; j++) close(y[1 * n + j], bias[j], `zero row, column ${j}`);
        for (let r = 0; r < rows; r++) close(y[r * n + 4], bias[4], `zero channel, row ${r}`);
      });

      it('linearInt8Async equals linearInt8', async () => {
        const rng = new TestRng(403);
        const rows = 9, k = 300, n = 65;
        const x = rng.normalArray(rows * k);
        const packed = packInt8Weights(rng.normalArray(n * k), n, k);
        const bias = rng.normalArray(n);
        const sync = linearInt8(x, rows, packed, { bias, activation: 'gelu_tanh' });
        const a = await expectKernelRanAsync('gemm_s8', isa, () => linearInt8Async(x, rows, packed, { bias, activation: 'gelu_tanh' }));
        expectSameFloats(a, sync, 'async Float32Array input');
        const b = await linearInt8Async(quantizeRows(x, k), rows, packed, { bias, activation: 'gelu_tanh' });
        expectSameFloats(b, sync, 'async QuantizedRows input');
      });
    });
  });

  describe('packInt8Weights', () => {
    it('unpack() and scales equal the reference per-channel quantiser', () => {
      const rng = new TestRng(501);
      for (const [n, k] of [[1, 1], [3, 7], [17, 63], [65, 300], [300, 65], [7, 2048]] as const) {
        const w = rng.normalArray(n * k, 0.05, 0.5);
        if (n > 2) w.fill(0, 2 * k, 3 * k); // an all-zero channel
        const packed = packWithCounter(isa, () => packInt8Weights(w, n, k));
        const ref = quantizeWeightsRef(w, n, k);
        expect(packed.outFeatures).toBe(n);
        expect(packed.inFeatures).toBe(k);
        expect(packed.bytes).toBeGreaterThanOrEqual(n * k);
        const un = packed.unpack();
        expectExactlyEqual(un, ref.q, `unpack ${n}x${k}`);
        for (let j = 0; j < n; j++) {
          if (n > 2 && j === 2) {
            expect(Number.isFinite(packed.scales[j]) && packed.scales[j] >= 0, 'zero channel scale').toBe(true);
            continue;
          }
          expect(packed.scales[j], `scale ${j} of ${n}x${k}`).toBe(ref.scales[j]);
        }
      }
    });

    it('halves round to even, like the activation quantiser', () => {
      // max |w| = 127 -> scale 1, so w / scale is exact and the halves are real ties.
      const row = Float32Array.of(127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5, 3.5, -3.5, 64.5);
      const packed = packInt8Weights(row, 1, row.length);
      expect(packed.scales[0]).toBe(1);
      expect(Array.from(packed.unpack())).toEqual(Array.from(quantizeWeightsRef(row, 1, row.length).q));
    });
  });
});

describe('thread-count invariance and async lifetime', () => {
  it('matmulInteger, int8GemmAccumulators and linearInt8 are identical for threads 1 and 2', () => {
    const rng = new TestRng(601);
    const m = 65, k = 2048, n = 300;
    const a = rng.u8Array(m * k);
    const b = rng.s8Array(k * n);
    const r1 = withThreads(1, () => matmulInteger(a, [m, k], b, [k, n], 131, -3));
    const r2 = withThreads(2, () => matmulInteger(a, [m, k], b, [k, n], 131, -3));
    expectExactlyEqual(r2, r1, 'matmulInteger threads');
    const x = rng.normalArray(m * k);
    const packed = packInt8Weights(rng.normalArray(n * k), n, k);
    const q = quantizeRows(x, k);
    expectExactlyEqual(withThreads(2, () => int8GemmAccumulators(q, packed)), withThreads(1, () => int8GemmAccumulators(q, packed)), 'accumulators threads');
    const bias = rng.normalArray(n);
    const y1 = withThreads(1, () => linearInt8(x, m, packed, { bias, activation: 'silu' }));
    const y2 = withThreads(2, () => linearInt8(x, m, packed, { bias, activation: 'silu' }));
    expectSameFloats(y2, y1, 'linearInt8 threads');
  });

  it('async calls keep their inputs alive after the caller drops them', async () => {
    const gc = getGc();
    const rng = new TestRng(602);
    const prev = getThreads();
    setThreads(2);
    try {
      // Each job builds its inputs in a closure and returns only the promise and the expected result.
      const launch = (i: number) => {
        const rows = 1 + (i % 7), k = 64 + 61 * (i % 5), n = 33 + 17 * (i % 3);
        const x = rng.normalArray(rows * k);
        const packed = packInt8Weights(rng.normalArray(n * k), n, k);
        const bias = rng.normalArray(n);
        const expected = linearInt8(x, rows, packed, { bias, activation: 'relu' });
        const promise = i % 2 === 0
          ? linearInt8Async(x, rows, packed, { bias, activation: 'relu' })
          : linearInt8Async(quantizeRows(x, k), rows, packed, { bias, activation: 'relu' });
        const a = rng.u8Array(rows * k);
        const b = rng.s8Array(k * n);
        const mmExpected = matmulIntegerRef(a, rows, k, b, n, 7, -2);
        const mmPromise = matmulIntegerAsync(a, [rows, k], b, [k, n], 7, -2);
        return { promise, expected, mmPromise, mmExpected };
      };
      const jobs = Array.from({ length: 48 }, (_, i) => launch(i));
      if (gc) {
        for (let i = 0; i < 3; i++) {
          // Churn the heap so that anything left unreferenced really is collected.
          const junk = Array.from({ length: 200 }, () => new Float32Array(4096));
          expect(junk.length).toBe(200);
          gc();
          await new Promise((r) => setImmediate(r));
        }
      }
      for (const [i, j] of jobs.entries()) {
        expectSameFloats(await j.promise, j.expected, `linearInt8Async job ${i}`);
        expectExactlyEqual(await j.mmPromise, j.mmExpected, `matmulIntegerAsync job ${i}`);
      }
    } finally {
      setThreads(prev);
    }
  });
});
