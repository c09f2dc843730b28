/**
 * fp32 GEMM: sgemm (transA / transB / alpha / beta) and packFp32Weights + linear (bias, activations) against
 * float64 references on odd shapes, for threads 1 and 2 on every ISA, plus the async variants.
 */
import { describe, expect, it } from 'vitest';
import { getThreads, linear, linearAsync, packFp32Weights, setThreads, sgemm, sgemmAsync } from '../src/index';
import type { SgemmOptions } from '../src/index';
import {
  expectExactlyEqual, expectKernelRan, expectKernelRanAsync, expectNormClose, expectSameFloats, forEachIsa, forEachThreads,
  getGc,
} from './helpers/harness';
import { ACTIVATIONS, TestRng, linearRef, sgemmRef } from './helpers/reference';

/** Normalised-error tolerance; fp32 accumulation error grows at most like sqrt(K) for these random inputs. */
function tolFor(k: number): number {
  return 1e-5 * Math.max(1, Math.sqrt(k / 256));
}

/** [M, K, N] */
const SHAPES: [number, number, number][] = [
  [1, 1, 1], [3, 7, 17], [7, 17, 3], [17, 63, 65], [63, 65, 7], [65, 3, 63], [300, 17, 65], [1, 2048, 300],
  [17, 2048, 63], [65, 300, 300], [7, 2048, 7], [300, 65, 1],
];
const TRANS: [boolean, boolean][] = [[false, false], [true, false], [false, true], [true, true]];

interface GemmCase {
  label: string;
  m: number;
  k: number;
  n: number;
  transA: boolean;
  transB: boolean;
  a: Float32Array;
  b: Float32Array;
  aShape: [number, number];
  bShape: [number, number];
  c: Float32Array;
  product?: Float64Array; // op(a) . op(b) in fp64
}

let cases: GemmCase[] | undefined;

function makeCases(): GemmCase[] {
  const rng = new TestRng(701);
  const list: GemmCase[] = [];
  for (const [m, k, n] of SHAPES) {
    for (const [transA, transB] of TRANS) {
      const aShape: [number, number] = transA ? [k, m] : [m, k];
      const bShape: [number, number] = transB ? [n, k] : [k, n];
      list.push({
        label: `${m}x${k}x${n} transA=${transA} transB=${transB}`, m, k, n, transA, transB, aShape, bShape,
        a: rng.uniformArray(m * k, -1, 1), b: rng.uniformArray(k * n, -1, 1), c: rng.uniformArray(m * n, -2, 2),
      });
    }
  }
  return list;
}

function product(g: GemmCase): Float64Array {
  g.product ??= sgemmRef(g.a, g.aShape, g.b, g.bShape, { transA: g.transA, transB: g.transB });
  return g.product;
}

interface Variant {
  name: string;
  alpha?: number;
  beta?: number;
  /** How `out` starts: absent, garbage that must be overwritten, or C. */
  out: 'none' | 'garbage' | 'c';
}
const VARIANTS: Variant[] = [
  { name: 'plain', out: 'none' },
  { name: 'alpha -0.5, out overwritten', alpha: -0.5, beta: 0, out: 'garbage' },
  { name: 'alpha 2, beta 0.75', alpha: 2, beta: 0.75, out: 'c' },
  { name: 'beta 1', beta: 1, out: 'c' },
];

interface VariantResult {
  got: Float32Array;
  ref: Float64Array;
  out?: Float32Array;
}

function prepareVariant(g: GemmCase, v: Variant): { opts: SgemmOptions; ref: Float64Array; out?: Float32Array } {
  const out = v.out === 'none' ? undefined : v.out === 'c' ? g.c.slice() : new Float32Array(g.m * g.n).fill(12345);
  const opts: SgemmOptions = { transA: g.transA, transB: g.transB, alpha: v.alpha, beta: v.beta, out };
  const p = product(g);
  const alpha = v.alpha ?? 1;
  const beta = v.beta ?? 0;
  const ref = new Float64Array(p.length);
  for (let i = 0; i < p.length; i++) ref[i] = alpha * p[i] + (beta !== 0 ? beta * g.c[i] : 0);
  return { opts, ref, out };
}

function runVariant(g: GemmCase, v: Variant): VariantResult {
  const { opts, ref, out } = prepareVariant(g, v);
  return { got: sgemm(g.a, g.aShape, g.b, g.bShape, opts), ref, out };
}

async function runVariantAsync(g: GemmCase, v: Variant): Promise<VariantResult> {
  const { opts, ref, out } = prepareVariant(g, v);
  return { got: await sgemmAsync(g.a, g.aShape, g.b, g.bShape, opts), ref, out };
}

interface LinCase {
  rows: number;
  k: number;
  n: number;
  x: Float32Array;
  w: Float32Array;
  bias: Float32Array;
}
const LIN_SHAPES: [number, number, number][] = [[1, 1, 1], [3, 7, 17], [17, 63, 65], [65, 300, 7], [1, 2048, 300], [7, 2048, 63], [300, 17, 65]];
let linCases: LinCase[] | undefined;
function makeLinCases(): LinCase[] {
  const rng = new TestRng(702);
  return LIN_SHAPES.map(([rows, k, n]) => ({
    rows, k, n, x: rng.normalArray(rows * k), w: rng.normalArray(n * k, 0, 1 / Math.sqrt(k)), bias: rng.normalArray(n, 0, 0.2),
  }));
}

forEachIsa((isa) => {
  forEachThreads([1, 2], () => {
    describe('sgemm', () => {
      it('all transposes, shapes and alpha/beta variants match fp64', () => {
        cases ??= makeCases();
        expectKernelRan('sgemm', isa, () => sgemm(cases![0].a, cases![0].aShape, cases![0].b, cases![0].bShape));
        cases.forEach((g, i) => {
          // Every case runs plain; the alpha/beta variants rotate over the cases.
          for (const v of [VARIANTS[0], VARIANTS[1 + (i % 3)]]) {
            const a0 = g.a.slice();
            const { got, ref, out } = runVariant(g, v);
            if (out) expect(got).toBe(out);
            expectNormClose(got, ref, tolFor(g.k), `${g.label} ${v.name}`);
            expectExactlyEqual(g.a, a0, `${g.label}: a modified`);
          }
        });
      });

      it('sgemmAsync equals sgemm', async () => {
        cases ??= makeCases();
        const picked = cases.filter((_, i) => i % 3 === 0);
        const sync = picked.map((g, i) => runVariant(g, VARIANTS[i % 4]).got);
        const res = await expectKernelRanAsync('sgemm', isa, () => Promise.all(picked.map((g, i) => runVariantAsync(g, VARIANTS[i % 4]))));
        picked.forEach((g, i) => expectSameFloats(res[i].got, sync[i], `async ${g.label}`));
      });
    });

    describe('linear (packFp32Weights)', () => {
      it('bias / no bias and every activation match fp64', () => {
        linCases ??= makeLinCases();
        for (const c of linCases) {
          const packed = packFp32Weights(c.w, c.n, c.k);
          expect(packed.outFeatures).toBe(c.n);
          expect(packed.inFeatures).toBe(c.k);
          for (const activation of ACTIVATIONS) {
            for (const bias of [c.bias, undefined]) {
              const label = `${c.rows}x${c.k}x${c.n} ${activation} ${bias ? 'bias' : 'no bias'}`;
              const y = expectKernelRan('gemm_f32', isa, () => linear(c.x, c.rows, packed, { bias, activation }));
              expectNormClose(y, linearRef(c.x, c.rows, c.w, c.n, c.k, bias, activation), tolFor(c.k), label);
            }
          }
          const out = new Float32Array(c.rows * c.n).fill(NaN);
          expect(linear(c.x, c.rows, packed, { bias: c.bias, out })).toBe(out);
          expectNormClose(out, linearRef(c.x, c.rows, c.w, c.n, c.k, c.bias), tolFor(c.k), 'linear with out');
        }
      });

      it('linearAsync equals linear', async () => {
        linCases ??= makeLinCases();
        const packs = linCases.map((c) => packFp32Weights(c.w, c.n, c.k));
        const sync = linCases.map((c, i) => linear(c.x, c.rows, packs[i], { bias: c.bias, activation: ACTIVATIONS[i % 5] }));
        const res = await expectKernelRanAsync('gemm_f32', isa, () =>
          Promise.all(linCases!.map((c, i) => linearAsync(c.x, c.rows, packs[i], { bias: c.bias, activation: ACTIVATIONS[i % 5] }))),
        );
        res.forEach((y, i) => expectSameFloats(y, sync[i], `linearAsync case ${i}`));
      });
    });
  });
});

describe('async fp32 lifetime', () => {
  it('sgemmAsync and linearAsync keep their inputs alive after the caller drops them', async () => {
    const gc = getGc();
    const rng = new TestRng(703);
    const prev = getThreads();
    setThreads(2);
    try {
      const launch = (i: number) => {
        const m = 1 + (i % 9), k = 17 + 50 * (i % 4), n = 9 + 31 * (i % 3);
        const a = rng.uniformArray(m * k);
        const b = rng.uniformArray(n * k);
        const sExpected = sgemm(a, [m, k], b, [n, k], { transB: true });
        const sPromise = sgemmAsync(a, [m, k], b, [n, k], { transB: true });
        const packed = packFp32Weights(b, n, k);
        const bias = rng.normalArray(n);
        const lExpected = linear(a, m, packed, { bias, activation: 'gelu' });
        const lPromise = linearAsync(a, m, packed, { bias, activation: 'gelu' });
        return { sExpected, sPromise, lExpected, lPromise };
      };
      const jobs = Array.from({ length: 40 }, (_, i) => launch(i));
      if (gc) {
        for (let i = 0; i < 3; i++) {
          const junk = Array.from({ length: 200 }, () => new Float32Array(4096));
          expect(junk.length).toBe(200);
          gc();
          await new Promise((r) => setImmediate(r));
        }
      }
      for (const [i, j] of jobs.entries()) {
        expectSameFloats(await j.sPromise, j.sExpected, `sgemmAsync job ${i}`);
        expectSameFloats(await j.lPromise, j.lExpected, `linearAsync job ${i}`);
      }
    } finally {
      setThreads(prev);
    }
  });
});
