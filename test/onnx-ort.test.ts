/**
 * Cross-checks chimera's kernels against onnxruntime-node running single-op ONNX graphs (built with
 * src/onnx/writer.ts), an independent reference for ONNX semantics. Every ISA this CPU supports is forced in
 * turn, and the kernel counters must show that the forced path really ran.
 */
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GraphBuilder, type ElemType } from '../src/onnx/writer';
import { Rng } from '../bench/rng';
import {
  addLayerNorm, cpuInfo, dynamicQuantizeLinear, kernelCounters, layerNorm, matmulInteger, setIsa, setThreads,
  type Isa,
} from '../src/index';

const ISAS: Isa[] = cpuInfo().supported;

// ------------------------------------------------------------------------------------------------ helpers

const sessions = new Map<string, Promise<ort.InferenceSession>>();

/** One session per distinct graph, shared by all ISAs. */
function session(key: string, build: () => GraphBuilder): Promise<ort.InferenceSession> {
  let s = sessions.get(key);
  if (!s) {
    s = ort.InferenceSession.create(build().toBytes(), { graphOptimizationLevel: 'all', intraOpNumThreads: 1 });
    sessions.set(key, s);
  }
  return s;
}

function f32(data: Float32Array, dims: number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims);
}

/** First element where |got - want| > rtol * |want| + atol, or null. */
function firstMismatch(got: ArrayLike<number>, want: ArrayLike<number>, rtol: number, atol: number): string | null {
  if (got.length !== want.length) return `length ${got.length}, expected ${want.length}`;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= rtol * Math.abs(want[i]) + atol)) return `[${i}]: got ${got[i]}, ORT ${want[i]} (|diff| ${d})`;
  }
  return null;
}

function firstIntMismatch(got: ArrayLike<number>, want: ArrayLike<number>): string | null {
  if (got.length !== want.length) return `length ${got.length}, expected ${want.length}`;
  for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) return `[${i}]: got ${got[i]}, ORT ${want[i]}`;
  return null;
}

/** Asserts that some counter `<prefix>...:<isa>` grew while `f` ran. */
function expectKernelRan<T>(prefixes: string[], isa: Isa, f: () => T): T {
  const before = kernelCounters();
  const r = f();
  const after = kernelCounters();
  const grown = Object.keys(after).filter(
    (k) => prefixes.some((p) => k.startsWith(p)) && k.endsWith(`:${isa}`) && after[k] > (before[k] ?? 0),
  );
  expect(grown, `no ${prefixes.join('|')}*:${isa} counter increased; counters: ${JSON.stringify(after)}`).not.toEqual([]);
  return r;
}

const RTOL = 1e-5;
const ATOL = 1e-5;

// ------------------------------------------------------------------------------------------------ LayerNormalization

interface LnCase {
  dims: [number, number, number];
  axis: number;
  eps: number;
}

const LN_CASES: LnCase[] = [
  { dims: [2, 7, 512], axis: -1, eps: 1e-5 },
  { dims: [2, 7, 512], axis: 1, eps: 1e-5 },
  { dims: [3, 5, 37], axis: -1, eps: 1e-3 },
  { dims: [3, 5, 37], axis: 1, eps: 1e-3 },
  { dims: [1, 4, 3], axis: -1, eps: 1e-5 },
];

function lnGraph(c: LnCase): GraphBuilder {
  const axis = c.axis < 0 ? c.axis + 3 : c.axis;
  const normShape = c.dims.slice(axis);
  return new GraphBuilder()
    .input('x', 'float32', c.dims)
    .input('gamma', 'float32', normShape)
    .input('beta', 'float32', normShape)
    .node('LayerNormalization', ['x', 'gamma', 'beta'], ['y'], { axis: c.axis, epsilon: { float: c.eps } })
    .output('y', 'float32', c.dims);
}

function lnData(rng: Rng, rows: number, cols: number) {
  // An offset mean exercises the variance computation; one constant row checks var = 0 (output = beta).
  const x = rng.normals(rows * cols, 2, 1.5);
  if (rows > 1) x.fill(0.75, 0, cols);
  return { x, gamma: rng.normals(cols, 1, 1), beta: rng.normals(cols, 0.5) };
}

// ------------------------------------------------------------------------------------------------ SkipLayerNorm

const SKIP_CASES = [
  { rows: 4, cols: 512, bias: true },
  { rows: 3, cols: 37, bias: true },
  { rows: 5, cols: 96, bias: false },
];

/** Add(x, skip) -> Add(bias) -> LayerNormalization, with the pre-norm sum as a second output. */
function skipGraph(cols: number, bias: boolean): GraphBuilder {
  const g = new GraphBuilder()
    .input('x', 'float32', ['R', cols])
    .input('skip', 'float32', ['R', cols])
    .input('gamma', 'float32', [cols])
    .input('beta', 'float32', [cols])
    .output('y', 'float32', ['R', cols])
    .output('sum', 'float32', ['R', cols]);
  if (bias) {
    g.input('bias', 'float32', [cols]).node('Add', ['x', 'skip'], ['xs']).node('Add', ['xs', 'bias'], ['sum']);
  } else {
    g.node('Add', ['x', 'skip'], ['sum']);
  }
  return g.node('LayerNormalization', ['sum', 'gamma', 'beta'], ['y'], { axis: -1, epsilon: { float: 1e-5 } });
}

/** onnxruntime's own contrib op, as a second reference (outputs: y, mean, inv_std_var, input_skip_bias_sum). */
function msSkipGraph(cols: number): GraphBuilder {
  return new GraphBuilder()
    .input('x', 'float32', [1, 'R', cols])
    .input('skip', 'float32', [1, 'R', cols])
    .input('gamma', 'float32', [cols])
    .input('beta', 'float32', [cols])
    .input('bias', 'float32', [cols])
    .node('SkipLayerNormalization', ['x', 'skip', 'gamma', 'beta', 'bias'], ['y', '', '', 'sum'], { epsilon: { float: 1e-5 } }, 'com.microsoft')
    .output('y', 'float32', [1, 'R', cols])
    .output('sum', 'float32', [1, 'R', cols]);
}

// ------------------------------------------------------------------------------------------------ DynamicQuantizeLinear

function dqlCases(): [string, Float32Array][] {
  const rng = new Rng(0xd01);
  const ramp = (n: number, f: (i: number) => number) => Float32Array.from({ length: n }, (_, i) => f(i));
  return [
    ['random normal, odd length', rng.normals(1037, 3)],
    ['random, large', rng.normals(100_003, 0.7, 0.2)],
    ['all positive', rng.uniforms(515, 0.1, 5)],
    ['all negative', rng.uniforms(515, -7, -0.01)],
    ['all zero', new Float32Array(300)],
    ['single positive', Float32Array.of(3.7)],
    ['single negative', Float32Array.of(-2)],
    // scale = 255 / 255 = 1 and zero point 100: x = k + 0.5 lands exactly on .5 ties.
    ['ties, scale 1', Float32Array.from([-100, 155, ...ramp(200, (i) => (i % 2 ? -1 : 1) * (((i * 7) % 99) + 0.5))])],
    // -min / scale = 2.5: the zero point itself is a tie (rounds to 2).
    ['zero-point tie 2.5', Float32Array.from([-2.5, 252.5, ...ramp(100, (i) => i - 2.5)])],
    ['zero-point tie 3.5', Float32Array.from([-3.5, 251.5, ...ramp(100, (i) => i * 1.5 - 3.5)])],
    // scale = 1/16: x = k/32 gives x/scale = k/2.
    ['ties, scale 1/16', Float32Array.from([-255 / 16, ...ramp(300, (i) => -(i % 256) / 32)])],
    // scale = 0.5: quarters are ties.
    ['ties, scale 0.5', Float32Array.from([-64, 63.5, ...ramp(257, (i) => (i - 128) * 0.25)])],
    ['tiny magnitudes', rng.normals(1000, 1e-30)],
    ['huge magnitudes', rng.normals(1000, 1e30)],
  ];
}

// ------------------------------------------------------------------------------------------------ MatMulInteger

const MMI_SHAPES: [number, number, number][] = [
  [7, 65, 17],
  [1, 1, 1],
  [1, 512, 33],
  [33, 128, 31],
  [5, 2048, 9],
  [64, 256, 64],
];
const U8_ZPS = [0, 1, 127, 128, 255];
const S8_ZPS = [-128, -1, 0, 1, 127];

function mmiGraph(bType: ElemType, perColumnBzp: boolean): GraphBuilder {
  return new GraphBuilder()
    .input('a', 'uint8', ['M', 'K'])
    .input('b', bType, ['K', 'N'])
    .input('az', 'uint8', [])
    .input('bz', bType, perColumnBzp ? ['N'] : [])
    .node('MatMulInteger', ['a', 'b', 'az', 'bz'], ['y'])
    .output('y', 'int32', ['M', 'N']);
}

function zpTensor(type: 'uint8' | 'int8', values: number[], dims: number[]): ort.Tensor {
  return new ort.Tensor(type, type === 'uint8' ? Uint8Array.from(values) : Int8Array.from(values), dims);
}

/** 'random' covers the whole byte range; 'extreme' sits at the corners where 16-bit pair sums would saturate. */
function mmiOperands(rng: Rng, m: number, k: number, n: number, signed: boolean, fill: 'random' | 'extreme') {
  const a = rng.bytes(m * k, false) as Uint8Array;
  const b = rng.bytes(k * n, signed);
  if (fill === 'extreme') {
    a.fill(255);
    for (let i = 0; i < b.length; i++) b[i] = signed ? (i % 3 === 2 ? 127 : -128) : (i % 3 === 2 ? 0 : 255);
  }
  return { a, b };
}

// ------------------------------------------------------------------------------------------------ tests

beforeAll(() => setThreads(1));
afterAll(() => {
  setIsa('auto');
  setThreads(1);
});

describe.each(ISAS)('ORT cross-check, isa %s', (isa) => {
  beforeAll(() => {
    expect(setIsa(isa)).toBe(isa);
  });

  it.each(LN_CASES)('LayerNormalization $dims axis $axis eps $eps', async (c) => {
    const axis = c.axis < 0 ? c.axis + 3 : c.axis;
    const cols = c.dims.slice(axis).reduce((a, b) => a * b, 1);
    const rows = c.dims.slice(0, axis).reduce((a, b) => a * b, 1);
    const { x, gamma, beta } = lnData(new Rng(rows * 1000 + cols), rows, cols);
    const normShape = c.dims.slice(axis);
    const s = await session(`ln:${c.dims}:${c.axis}:${c.eps}`, () => lnGraph(c));
    const want = (await s.run({ x: f32(x, c.dims), gamma: f32(gamma, normShape), beta: f32(beta, normShape) })).y
      .data as Float32Array;
    const got = expectKernelRan(['layer_norm'], isa, () => layerNorm(x, cols, gamma, beta, { eps: c.eps }));
    expect(firstMismatch(got, want, RTOL, ATOL)).toBeNull();
  });

  it.each(SKIP_CASES)('SkipLayerNormalization semantics, $rows x $cols, bias $bias', async ({ rows, cols, bias }) => {
    const rng = new Rng(rows * 77 + cols);
    const x = rng.normals(rows * cols, 1.5, 0.3);
    const skip = rng.normals(rows * cols, 1, -0.2);
    const gamma = rng.normals(cols, 0.5, 1);
    const beta = rng.normals(cols, 0.5);
    const b = rng.normals(cols, 0.3);
    const dims = [rows, cols];
    const feeds: Record<string, ort.Tensor> = {
      x: f32(x, dims), skip: f32(skip, dims), gamma: f32(gamma, [cols]), beta: f32(beta, [cols]),
    };
    if (bias) feeds.bias = f32(b, [cols]);
    const ref = await (await session(`skip:${cols}:${bias}`, () => skipGraph(cols, bias))).run(feeds);

    const sumOut = new Float32Array(rows * cols);
    const got = expectKernelRan(['layer_norm', 'add_layer_norm', 'skip_layer_norm'], isa, () =>
      addLayerNorm(x, skip, cols, gamma, beta, { bias: bias ? b : undefined, sumOut }),
    );
    expect(firstMismatch(got, ref.y.data as Float32Array, RTOL, ATOL)).toBeNull();
    expect(firstMismatch(sumOut, ref.sum.data as Float32Array, 1e-6, 1e-6)).toBeNull();

    if (bias) {
      const d3 = [1, rows, cols];
      const ms = await (await session(`msskip:${cols}`, () => msSkipGraph(cols))).run({
        x: f32(x, d3), skip: f32(skip, d3), gamma: f32(gamma, [cols]), beta: f32(beta, [cols]), bias: f32(b, [cols]),
      });
      expect(firstMismatch(got, ms.y.data as Float32Array, RTOL, ATOL)).toBeNull();
      expect(firstMismatch(sumOut, ms.sum.data as Float32Array, 1e-6, 1e-6)).toBeNull();
    }
  });

  it.each(dqlCases())('DynamicQuantizeLinear: %s', async (_name, x) => {
    const s = await session('dql', () =>
      new GraphBuilder()
        .input('x', 'float32', ['N'])
        .node('DynamicQuantizeLinear', ['x'], ['y', 'scale', 'zp'])
        .output('y', 'uint8', ['N'])
        .output('scale', 'float32', [])
        .output('zp', 'uint8', []),
    );
    const ref = await s.run({ x: f32(x, [x.length]) });
    const got = expectKernelRan(['dql', 'dynamic_quantize'], isa, () => dynamicQuantizeLinear(x));
    expect({ scale: Math.fround(got.scale), zeroPoint: got.zeroPoint }).toEqual({
      scale: (ref.scale.data as Float32Array)[0],
      zeroPoint: (ref.zp.data as Uint8Array)[0],
    });
    const bad = firstIntMismatch(got.y, ref.y.data as Uint8Array);
    expect(bad === null ? null : `${bad} for x = ${x[Number(/\d+/.exec(bad)![0])]}`).toBeNull();
  });

  describe.each(['uint8', 'int8'] as const)('MatMulInteger u8 x %s', (bType) => {
    const signed = bType === 'int8';
    const bZps = signed ? S8_ZPS : U8_ZPS;

    it.each(MMI_SHAPES.flatMap((s) => (['random', 'extreme'] as const).map((fill) => [...s, fill] as const)))(
      '%i x %i x %i, %s data, all zero-point pairs',
      async (m, k, n, fill) => {
        const { a, b } = mmiOperands(new Rng(m * 31 + k * 7 + n + (signed ? 1 : 0)), m, k, n, signed, fill);
        const s = await session(`mmi:${bType}`, () => mmiGraph(bType, false));
        const failures: string[] = [];
        for (const az of U8_ZPS) {
          for (const bz of bZps) {
            const ref = await s.run({
              a: new ort.Tensor('uint8', a, [m, k]), b: new ort.Tensor(bType, b, [k, n]),
              az: zpTensor('uint8', [az], []), bz: zpTensor(bType, [bz], []),
            });
            const got = expectKernelRan(['matmul_integer'], isa, () => matmulInteger(a, [m, k], b, [k, n], az, bz));
            const bad = firstIntMismatch(got, ref.y.data as Int32Array);
            if (bad) failures.push(`aZp ${az}, bZp ${bz}: ${bad}`);
          }
        }
        expect(failures).toEqual([]);
      },
    );

    it('per-column b zero points, 2 threads', async () => {
      const [m, k, n] = [9, 300, 23];
      const rng = new Rng(4242 + (signed ? 1 : 0));
      const { a, b } = mmiOperands(rng, m, k, n, signed, 'random');
      const bz = rng.bytes(n, signed);
      const s = await session(`mmi-col:${bType}`, () => mmiGraph(bType, true));
      const ref = await s.run({
        a: new ort.Tensor('uint8', a, [m, k]), b: new ort.Tensor(bType, b, [k, n]),
        az: zpTensor('uint8', [3], []), bz: new ort.Tensor(bType, bz, [n]),
      });
      setThreads(2);
      try {
        const got = expectKernelRan(['matmul_integer'], isa, () => matmulInteger(a, [m, k], b, [k, n], 3, bz));
        expect(firstIntMismatch(got, ref.y.data as Int32Array)).toBeNull();
      } finally {
        setThreads(1);
      }
    });
  });
});
