/**
 * Every entry point rejects bad input with a ChimeraError carrying the documented code, before native code
 * runs; and the addon itself refuses inconsistent raw calls instead of crashing (checked in a child process).
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  ChimeraError, LayerNormParams, QuantizedRows, addLayerNorm, addRmsNorm, cpuInfo,
  dynamicQuantizeLinear, getIsa, getThreads, int8GemmAccumulators, layerNorm, linear, linearAsync, linearInt8,
  linearInt8Async, matmulInteger, matmulIntegerAsync, packFp32Weights, packInt8Weights, quantizeRows, rmsNorm, setIsa,
  setThreads, sgemm, sgemmAsync,
} from '../src/index';
import { addonPath } from './helpers/addon-path';
import { expectChimeraError, expectChimeraErrorAsync } from './helpers/harness';
import { TestRng, layerNormRef } from './helpers/reference';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const bad = (v: unknown) => v as any;

const rng = new TestRng(901);
const cols = 8;
const rows = 3;
const x = rng.normalArray(rows * cols);
const res = rng.normalArray(rows * cols);
const g = rng.normalArray(cols, 1, 0.1);
const b = rng.normalArray(cols);
const K = 12, N = 5;
const wf = rng.normalArray(N * K);
const p8 = packInt8Weights(wf, N, K);
const p32 = packFp32Weights(wf, N, K);
const xl = rng.normalArray(rows * K);

describe('norms', () => {
  it('wrong dtypes -> E_DTYPE', () => {
    expectChimeraError(() => layerNorm(bad(new Float64Array(x)), cols, g, b), 'E_DTYPE', 'x Float64Array');
    expectChimeraError(() => layerNorm(bad(Array.from(x)), cols, g, b), 'E_DTYPE', 'x plain array');
    expectChimeraError(() => layerNorm(bad(new Uint8Array(24)), cols, g, b), 'E_DTYPE', 'x Uint8Array');
    expectChimeraError(() => layerNorm(x, cols, bad(new Float64Array(g)), b), 'E_DTYPE', 'gamma Float64Array');
    expectChimeraError(() => layerNorm(x, cols, bad(Array.from(g)), b), 'E_DTYPE', 'gamma plain array');
    expectChimeraError(() => layerNorm(x, cols, g, bad(Array.from(b))), 'E_DTYPE', 'beta plain array');
    expectChimeraError(() => addLayerNorm(x, bad(new Float64Array(res)), cols, g, b), 'E_DTYPE', 'residual Float64Array');
    expectChimeraError(() => addLayerNorm(x, res, cols, g, b, { bias: bad(new Float64Array(cols)) }), 'E_DTYPE', 'bias Float64Array');
    expectChimeraError(() => layerNorm(x, cols, g, b, { out: bad(new Float64Array(x.length)) }), 'E_DTYPE', 'out Float64Array');
    expectChimeraError(() => addLayerNorm(x, res, cols, g, b, { sumOut: bad(Array.from(x)) }), 'E_DTYPE', 'sumOut plain array');
    expectChimeraError(() => rmsNorm(bad(new Int32Array(24)), cols, g), 'E_DTYPE', 'rms x Int32Array');
    expectChimeraError(() => addRmsNorm(x, bad(null), cols, g), 'E_DTYPE', 'rms residual null');
  });

  it('bad cols -> E_ARG; inconsistent lengths -> E_SHAPE', () => {
    for (const c of [0, -8, 1.5, NaN, Infinity, '8', undefined]) {
      expectChimeraError(() => layerNorm(x, bad(c), g, b), 'E_ARG', `cols ${String(c)}`);
      expectChimeraError(() => rmsNorm(x, bad(c), g), 'E_ARG', `rms cols ${String(c)}`);
    }
    expectChimeraError(() => layerNorm(x, 7, rng.normalArray(7)), 'E_SHAPE', 'length not a multiple of cols');
    expectChimeraError(() => layerNorm(new Float32Array(0), cols, g, b), 'E_SHAPE', 'empty x');
    expectChimeraError(() => layerNorm(x, cols, g.subarray(1), b), 'E_SHAPE', 'short gamma');
    expectChimeraError(() => layerNorm(x, cols, g, new Float32Array(cols + 1)), 'E_SHAPE', 'long beta');
    expectChimeraError(() => addLayerNorm(x, res.subarray(cols), cols, g, b), 'E_SHAPE', 'short residual');
    expectChimeraError(() => addLayerNorm(x, res, cols, g, b, { bias: new Float32Array(cols - 1) }), 'E_SHAPE', 'short bias');
    expectChimeraError(() => layerNorm(x, cols, g, b, { out: new Float32Array(x.length - 1) }), 'E_SHAPE', 'short out');
    expectChimeraError(() => addLayerNorm(x, res, cols, g, b, { sumOut: new Float32Array(x.length + 1) }), 'E_SHAPE', 'long sumOut');
    expectChimeraError(() => layerNorm(x, cols, g, b, { quantizeTo: new QuantizedRows(rows + 1, cols) }), 'E_SHAPE', 'quantizeTo rows');
    expectChimeraError(() => layerNorm(x, cols, g, b, { quantizeTo: new QuantizedRows(rows, cols + 4) }), 'E_SHAPE', 'quantizeTo cols');
    expectChimeraError(() => layerNorm(x, cols, g, b, { quantizeTo: bad({ rows, cols, data: new Int8Array(24) }) }), 'E_ARG', 'quantizeTo plain object');
    expectChimeraError(() => layerNorm(x, cols, new LayerNormParams(cols + 1)), 'E_SHAPE', 'params of other width');
  });

  it('bad eps -> E_ARG', () => {
    for (const eps of [-1e-5, NaN, Infinity, '1e-5']) expectChimeraError(() => layerNorm(x, cols, g, b, { eps: bad(eps) }), 'E_ARG', `eps ${String(eps)}`);
  });

  it('a failed call leaves the output untouched and the next valid call works', () => {
    const out = new Float32Array(x.length).fill(7);
    expectChimeraError(() => layerNorm(x, cols, g, new Float32Array(3), { out }), 'E_SHAPE', 'bad beta');
    expect(Array.from(out)).toEqual(new Array(x.length).fill(7));
    const y = layerNorm(x, cols, g, b, { out });
    const ref = layerNormRef({ x, cols, gamma: g, beta: b });
    for (let i = 0; i < y.length; i++) expect(Math.abs(y[i] - ref[i])).toBeLessThan(1e-4);
  });
});

describe('quantisers', () => {
  it('dynamicQuantizeLinear', () => {
    expectChimeraError(() => dynamicQuantizeLinear(bad(new Float64Array(4))), 'E_DTYPE', 'Float64Array');
    expectChimeraError(() => dynamicQuantizeLinear(bad([1, 2, 3])), 'E_DTYPE', 'plain array');
    expectChimeraError(() => dynamicQuantizeLinear(bad(undefined)), 'E_DTYPE', 'undefined');
    expectChimeraError(() => dynamicQuantizeLinear(Float32Array.of(1, NaN)), 'E_RANGE', 'NaN');
  });

  it('dynamicQuantizeLinear of an empty array returns or throws a ChimeraError, never crashes', () => {
    let r: unknown;
    try {
      r = dynamicQuantizeLinear(new Float32Array(0));
    } catch (e) {
      expect(e).toBeInstanceOf(ChimeraError);
      return;
    }
    expect((r as { y: Uint8Array }).y.length).toBe(0);
  });

  it('quantizeRows', () => {
    expectChimeraError(() => quantizeRows(bad(new Float64Array(x)), cols), 'E_DTYPE', 'Float64Array');
    expectChimeraError(() => quantizeRows(bad(Array.from(x)), cols), 'E_DTYPE', 'plain array');
    for (const c of [0, -1, 2.5, NaN]) expectChimeraError(() => quantizeRows(x, bad(c)), 'E_ARG', `cols ${c}`);
    expectChimeraError(() => quantizeRows(x, 5), 'E_SHAPE', 'not a multiple');
    expectChimeraError(() => quantizeRows(x, cols, new QuantizedRows(rows, cols * 2)), 'E_SHAPE', 'into cols');
    expectChimeraError(() => quantizeRows(x, cols, new QuantizedRows(rows - 1, cols)), 'E_SHAPE', 'into rows');
    expectChimeraError(() => quantizeRows(x, cols, bad({ rows, cols, stride: 8, data: new Int8Array(24), scales: new Float32Array(3), sums: new Int32Array(3) })), 'E_SHAPE', 'into plain object');
    const xn = x.slice();
    xn[5] = NaN;
    expectChimeraError(() => quantizeRows(xn, cols), 'E_RANGE', 'NaN');
    xn[5] = -Infinity;
    expectChimeraError(() => quantizeRows(xn, cols), 'E_RANGE', '-Inf');
  });

  it('QuantizedRows constructor', () => {
    for (const [r, c] of [[0, 4], [4, 0], [-1, 4], [1.5, 4], [4, NaN]]) expectChimeraError(() => new QuantizedRows(r, c), 'E_ARG', `${r}x${c}`);
  });
});

describe('matmulInteger', () => {
  const a = rng.u8Array(3 * 4);
  const bb = rng.s8Array(4 * 5);
  const mm = (...args: unknown[]) => (matmulInteger as (...a: unknown[]) => Int32Array)(...args);

  it('wrong dtypes -> E_DTYPE', () => {
    expectChimeraError(() => mm(new Uint8ClampedArray(12), [3, 4], bb, [4, 5]), 'E_DTYPE', 'a Uint8ClampedArray');
    expectChimeraError(() => mm(a, [3, 4], new Uint8ClampedArray(20), [4, 5]), 'E_DTYPE', 'b Uint8ClampedArray');
    expectChimeraError(() => mm(new Int16Array(12), [3, 4], bb, [4, 5]), 'E_DTYPE', 'a Int16Array');
    expectChimeraError(() => mm(new Float32Array(12), [3, 4], bb, [4, 5]), 'E_DTYPE', 'a Float32Array');
    expectChimeraError(() => mm(Array.from(a), [3, 4], bb, [4, 5]), 'E_DTYPE', 'a plain array');
    expectChimeraError(() => mm(a, [3, 4], new Float64Array(20), [4, 5]), 'E_DTYPE', 'b Float64Array');
    expectChimeraError(() => mm(a, [3, 4], bb, [4, 5], new Int8Array(3)), 'E_DTYPE', 'aZp Int8Array for uint8 a');
    expectChimeraError(() => mm(a, [3, 4], bb, [4, 5], 0, new Uint8Array(5)), 'E_DTYPE', 'bZp Uint8Array for int8 b');
    expectChimeraError(() => mm(a, [3, 4], bb, [4, 5], new Uint8ClampedArray(3)), 'E_DTYPE', 'aZp Uint8ClampedArray');
    expectChimeraError(() => mm(a, [3, 4], bb, [4, 5], new Int32Array(3)), 'E_DTYPE', 'aZp Int32Array');
  });

  it('bad shapes -> E_SHAPE / E_ARG', () => {
    expectChimeraError(() => mm(a, [3, 4], bb, [5, 4]), 'E_SHAPE', 'inner dimension');
    expectChimeraError(() => mm(a, [4, 3], bb, [4, 5]), 'E_SHAPE', 'a shape vs inner');
    expectChimeraError(() => mm(a, [2, 4], bb, [4, 5]), 'E_SHAPE', 'a length');
    expectChimeraError(() => mm(a, [3, 4], bb.subarray(1), [4, 5]), 'E_SHAPE', 'b length');
    expectChimeraError(() => mm(a, [12], bb, [4, 5]), 'E_SHAPE', 'aShape of one number');
    expectChimeraError(() => mm(a, [3, 4, 1], bb, [4, 5]), 'E_SHAPE', 'aShape of three numbers');
    expectChimeraError(() => mm(a, 'x', bb, [4, 5]), 'E_SHAPE', 'aShape string');
    expectChimeraError(() => mm(new Uint8Array(0), [0, 4], bb, [4, 5]), 'E_ARG', 'M = 0');
    expectChimeraError(() => mm(a, [3, 4], bb, [4, -5]), 'E_ARG', 'N negative');
    expectChimeraError(() => mm(a, [1.5, 8], bb, [8, 2.5]), 'E_ARG', 'non-integer dims');
    expectChimeraError(() => mm(a, [3, 4], bb, [4, 5], new Uint8Array(2)), 'E_SHAPE', 'aZp length');
    expectChimeraError(() => mm(a, [3, 4], bb, [4, 5], 0, new Int8Array(4)), 'E_SHAPE', 'bZp length');
  });

  it('zero points out of range -> E_RANGE', () => {
    for (const z of [-1, 256, 1.5, NaN, 1e9]) expectChimeraError(() => mm(a, [3, 4], bb, [4, 5], z), 'E_RANGE', `uint8 aZp ${z}`);
    for (const z of [-129, 128, -0.5]) expectChimeraError(() => mm(a, [3, 4], bb, [4, 5], 0, z), 'E_RANGE', `int8 bZp ${z}`);
  });

  it('async variant rejects with the same codes', async () => {
    await expectChimeraErrorAsync(() => matmulIntegerAsync(a, [3, 4], bb, [5, 4]), 'E_SHAPE', 'async inner');
    await expectChimeraErrorAsync(() => matmulIntegerAsync(bad(new Uint8ClampedArray(12)), [3, 4], bb, [4, 5]), 'E_DTYPE', 'async dtype');
    await expectChimeraErrorAsync(() => matmulIntegerAsync(a, [3, 4], bb, [4, 5], 300), 'E_RANGE', 'async zp');
  });
});

describe('weights and linear layers', () => {
  it('packers', () => {
    for (const pack of [packInt8Weights, packFp32Weights] as ((w: Float32Array, n: number, k: number) => unknown)[]) {
      expectChimeraError(() => pack(bad(new Float64Array(wf)), N, K), 'E_DTYPE', 'Float64Array');
      expectChimeraError(() => pack(bad(Array.from(wf)), N, K), 'E_DTYPE', 'plain array');
      expectChimeraError(() => pack(wf, N + 1, K), 'E_SHAPE', 'length');
      expectChimeraError(() => pack(wf, 0, K), 'E_ARG', 'outFeatures 0');
      expectChimeraError(() => pack(wf, N, -K), 'E_ARG', 'inFeatures negative');
      expectChimeraError(() => pack(wf, 2.5, 24), 'E_ARG', 'outFeatures 2.5');
      const wn = wf.slice();
      wn[7] = NaN;
      expectChimeraError(() => pack(wn, N, K), 'E_RANGE', 'NaN weight');
      wn[7] = Infinity;
      expectChimeraError(() => pack(wn, N, K), 'E_RANGE', 'Inf weight');
    }
  });

  it('linearInt8', () => {
    expectChimeraError(() => linearInt8(bad(new Float64Array(xl)), rows, p8), 'E_DTYPE', 'x Float64Array');
    expectChimeraError(() => linearInt8(bad(Array.from(xl)), rows, p8), 'E_DTYPE', 'x plain array');
    expectChimeraError(() => linearInt8(xl, rows + 1, p8), 'E_SHAPE', 'rows vs length');
    for (const r of [0, -1, 1.5]) expectChimeraError(() => linearInt8(xl, r, p8), 'E_ARG', `rows ${r}`);
    expectChimeraError(() => linearInt8(xl, rows, p8, { bias: new Float32Array(N + 1) }), 'E_SHAPE', 'bias length');
    expectChimeraError(() => linearInt8(xl, rows, p8, { bias: bad(new Float64Array(N)) }), 'E_DTYPE', 'bias dtype');
    expectChimeraError(() => linearInt8(xl, rows, p8, { out: new Float32Array(rows * N - 1) }), 'E_SHAPE', 'out length');
    for (const act of ['tanh', 'GELU', '', 3, null]) expectChimeraError(() => linearInt8(xl, rows, p8, { activation: bad(act) }), 'E_ARG', `activation ${String(act)}`);
    expectChimeraError(() => linearInt8(new QuantizedRows(rows + 1, K), rows, p8), 'E_SHAPE', 'QuantizedRows rows');
    expectChimeraError(() => linearInt8(new QuantizedRows(rows, K + 1), rows, p8), 'E_SHAPE', 'QuantizedRows cols');
    expectChimeraError(() => linearInt8(xl, rows, bad(p32)), 'E_ARG', 'fp32-packed weights');
    expectChimeraError(() => linearInt8(xl, rows, bad({ handle: {}, outFeatures: N, inFeatures: K })), 'E_ARG', 'plain object weights');
  });

  it('linear', () => {
    expectChimeraError(() => linear(bad(new Float64Array(xl)), rows, p32), 'E_DTYPE', 'x Float64Array');
    expectChimeraError(() => linear(xl, rows - 1, p32), 'E_SHAPE', 'rows vs length');
    expectChimeraError(() => linear(xl, 0, p32), 'E_ARG', 'rows 0');
    expectChimeraError(() => linear(xl, rows, p32, { bias: new Float32Array(1) }), 'E_SHAPE', 'bias length');
    expectChimeraError(() => linear(xl, rows, p32, { out: new Float32Array(1) }), 'E_SHAPE', 'out length');
    expectChimeraError(() => linear(xl, rows, p32, { activation: bad('swish') }), 'E_ARG', 'activation swish');
    expectChimeraError(() => linear(xl, rows, bad(p8)), 'E_ARG', 'int8-packed weights');
  });

  it('int8GemmAccumulators', () => {
    const q = quantizeRows(xl, K);
    expectChimeraError(() => int8GemmAccumulators(bad({ ...q }), p8), 'E_ARG', 'q plain object');
    expectChimeraError(() => int8GemmAccumulators(q, bad(p32)), 'E_ARG', 'fp32-packed weights');
    expectChimeraError(() => int8GemmAccumulators(new QuantizedRows(rows, K + 4), p8), 'E_SHAPE', 'q cols');
  });

  it('async variants reject with the same codes', async () => {
    await expectChimeraErrorAsync(() => linearInt8Async(xl, rows + 1, p8), 'E_SHAPE', 'linearInt8Async rows');
    await expectChimeraErrorAsync(() => linearInt8Async(xl, rows, p8, { activation: bad('x') }), 'E_ARG', 'linearInt8Async activation');
    await expectChimeraErrorAsync(() => linearAsync(xl, rows, bad(p8)), 'E_ARG', 'linearAsync packed');
    await expectChimeraErrorAsync(() => sgemmAsync(xl, [rows, K], wf, [N, K]), 'E_SHAPE', 'sgemmAsync inner');
  });
});

describe('sgemm', () => {
  const a = rng.normalArray(3 * 4);
  const bm = rng.normalArray(4 * 5);
  it('bad arguments', () => {
    expectChimeraError(() => sgemm(bad(new Float64Array(a)), [3, 4], bm, [4, 5]), 'E_DTYPE', 'a Float64Array');
    expectChimeraError(() => sgemm(a, [3, 4], bad(Array.from(bm)), [4, 5]), 'E_DTYPE', 'b plain array');
    expectChimeraError(() => sgemm(a, [3, 4], bm, [5, 4]), 'E_SHAPE', 'inner');
    expectChimeraError(() => sgemm(a, [3, 4], bm, [4, 5], { transA: true }), 'E_SHAPE', 'transA inner');
    expectChimeraError(() => sgemm(a, [3, 4], bm, [4, 5], { transB: true }), 'E_SHAPE', 'transB inner');
    expectChimeraError(() => sgemm(a, [2, 4], bm, [4, 5]), 'E_SHAPE', 'a length');
    expectChimeraError(() => sgemm(a, [3, 0], bm, [0, 5]), 'E_ARG', 'K = 0');
    expectChimeraError(() => sgemm(a, bad([3]), bm, [4, 5]), 'E_SHAPE', 'aShape');
    expectChimeraError(() => sgemm(a, [3, 4], bm, [4, 5], { alpha: NaN }), 'E_ARG', 'alpha NaN');
    expectChimeraError(() => sgemm(a, [3, 4], bm, [4, 5], { beta: Infinity, out: new Float32Array(15) }), 'E_ARG', 'beta Inf');
    expectChimeraError(() => sgemm(a, [3, 4], bm, [4, 5], { beta: 0.5 }), 'E_ARG', 'beta without out');
    expectChimeraError(() => sgemm(a, [3, 4], bm, [4, 5], { out: new Float32Array(14) }), 'E_SHAPE', 'out length');
    expectChimeraError(() => sgemm(a, [3, 4], bm, [4, 5], { out: bad(new Float64Array(15)) }), 'E_DTYPE', 'out dtype');
  });
});

describe('threads and ISA', () => {
  it('bad thread counts -> E_ARG, count unchanged', () => {
    const before = getThreads();
    for (const t of [0, -1, 1.5, 1000, 257, NaN, Infinity, '2', undefined]) expectChimeraError(() => setThreads(bad(t)), 'E_ARG', `threads ${String(t)}`);
    expect(getThreads()).toBe(before);
  });

  it("setIsa('bogus') -> E_ISA, ISA unchanged; non-string -> E_ARG", () => {
    const before = getIsa();
    for (const name of ['bogus', 'avx512', 'sse2', 'neon']) expectChimeraError(() => setIsa(bad(name)), 'E_ISA', `isa ${JSON.stringify(name)}`);
    expectChimeraError(() => setIsa(bad(2)), 'E_ARG', 'isa number');
    expectChimeraError(() => setIsa(bad(undefined)), 'E_ARG', 'isa undefined');
    expect(getIsa()).toBe(before);
  });

  const unsupported = (['avx2', 'avxvnni', 'avx512vnni', 'amx'] as const).filter((i) => !cpuInfo().supported.includes(i));
  it.skipIf(unsupported.length === 0)('forcing an ISA this CPU lacks -> E_ISA', () => {
    for (const isa of unsupported) expectChimeraError(() => setIsa(isa), 'E_ISA', isa);
  });
});

describe('the addon re-checks raw calls (child process, so a crash cannot take the suite down)', () => {
  it('inconsistent sizes and foreign handles throw instead of crashing', () => {
    const script = `
      const n = require(${JSON.stringify(addonPath())});
      const results = {};
      const tryIt = (name, f) => {
        try { f(); results[name] = 'returned'; }
        catch (e) { results[name] = 'threw ' + (e && e.code); }
      };
      const f32 = (k) => new Float32Array(k);
      // Positive control: a consistent raw call must succeed, or the raw signatures below are stale.
      tryIt('control quantizeRows', () => n.quantizeRows(f32(8).fill(1), 2, 4, new Int8Array(8), f32(2), new Int32Array(2), 4));
      tryIt('quantizeRows rows x cols > x', () => n.quantizeRows(f32(8), 4, 4, new Int8Array(16), f32(4), new Int32Array(4), 4));
      tryIt('quantizeRows data too short', () => n.quantizeRows(f32(16), 4, 4, new Int8Array(3), f32(4), new Int32Array(4), 4));
      tryIt('quantizeRows stride < cols', () => n.quantizeRows(f32(16), 2, 8, new Int8Array(16), f32(2), new Int32Array(2), 4));
      tryIt('norm out too short', () => n.norm(0, f32(64), null, null, f32(16).fill(1), null, 16, 1e-5, f32(8), null, null, null, null, 0));
      tryIt('norm gamma too short', () => n.norm(0, f32(64), null, null, f32(4), null, 16, 1e-5, f32(64), null, null, null, null, 0));
      tryIt('norm residual too short', () => n.norm(0, f32(64), f32(16), null, f32(16), null, 16, 1e-5, f32(64), null, null, null, null, 0));
      tryIt('matmulInteger a too short', () => n.matmulInteger(new Uint8Array(4), false, 64, 64, new Int8Array(64 * 64), true, 64, new Int32Array(1), new Int32Array(1), new Int32Array(64 * 64), false));
      tryIt('matmulInteger out too short', () => n.matmulInteger(new Uint8Array(64 * 64), false, 64, 64, new Int8Array(64 * 64), true, 64, new Int32Array(1), new Int32Array(1), new Int32Array(4), false));
      tryIt('matmulInteger zp array too short', () => n.matmulInteger(new Uint8Array(64 * 64), false, 64, 64, new Int8Array(64 * 64), true, 64, new Int32Array(2), new Int32Array(1), new Int32Array(64 * 64), false));
      const p8 = n.packS8(f32(64 * 32).fill(0.5), 64, 32);
      const p32 = n.packF32(f32(64 * 32).fill(0.5), 64, 32);
      tryIt('unpackS8 out too short', () => n.unpackS8(p8, new Int8Array(10)));
      tryIt('packedS8Info on an fp32 handle', () => n.packedS8Info(p32, f32(64)));
      tryIt('gemmS8Raw on an fp32 handle', () => n.gemmS8Raw(p32, new Int8Array(32), new Int32Array(1), 32, 1, new Int32Array(64)));
      tryIt('gemmS8Raw on a plain object', () => n.gemmS8Raw({}, new Int8Array(32), new Int32Array(1), 32, 1, new Int32Array(64)));
      tryIt('gemmS8Raw data too short', () => n.gemmS8Raw(p8, new Int8Array(8), new Int32Array(4), 32, 4, new Int32Array(256)));
      tryIt('gemmS8Raw out too short', () => n.gemmS8Raw(p8, new Int8Array(128), new Int32Array(4), 32, 4, new Int32Array(10)));
      tryIt('linearS8 on an fp32 handle', () => n.linearS8(p32, f32(32), null, null, null, 0, 1, null, 0, f32(64), false));
      tryIt('linearS8 x too short', () => n.linearS8(p8, f32(3), null, null, null, 0, 4, null, 0, f32(256), false));
      tryIt('linearF32 on a plain object', () => n.linearF32({}, f32(32), 1, null, 0, f32(64), false));
      tryIt('packedS8Info on a plain object', () => n.packedS8Info({}, f32(64)));
      tryIt('linearF32 on an int8 handle', () => n.linearF32(p8, f32(32), 1, null, 0, f32(64), false));
      tryIt('linearF32 out too short', () => n.linearF32(p32, f32(32 * 8), 8, null, 0, f32(3), false));
      tryIt('sgemm a too short', () => n.sgemm(f32(4), f32(64 * 64), 64, 64, 64, false, false, 1, 0, f32(64 * 64), false));
      tryIt('sgemm out too short', () => n.sgemm(f32(64 * 64), f32(64 * 64), 64, 64, 64, false, false, 1, 0, f32(5), false));
      tryIt('dynamicQuantizeLinear y too short', () => n.dynamicQuantizeLinear(f32(64).fill(1), new Uint8Array(3)));
      process.stdout.write(JSON.stringify(results));
    `;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect(r.signal, `child died with ${r.signal}; stderr: ${r.stderr}`).toBeNull();
    expect(r.status, `child exit ${r.status}; stderr: ${r.stderr}`).toBe(0);
    const results = JSON.parse(r.stdout) as Record<string, string>;
    expect(results['control quantizeRows'], 'positive control (raw signature)').toBe('returned');
    const notThrown = Object.entries(results).filter(([k, v]) => k !== 'control quantizeRows' && !v.startsWith('threw'));
    expect(notThrown, 'raw calls with inconsistent arguments that did not throw').toEqual([]);
  });
});
