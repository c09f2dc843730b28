/**
 * Independent fp64 / exact-integer references for the chimera kernels, plus small test utilities.
 *
 * Everything here is written as plainly as possible: straight loops, float64 accumulation, and explicit
 * float32 rounding (Math.fround) only where the specification being matched says "float32". Nothing here
 * calls the addon or imports vitest (so benches and scripts may use it too); the assertion and dispatch
 * helpers (forEachIsa, expectKernelRan, ...) live in ./harness.ts.
 */
import type { Activation } from '../../src/index';

const f32 = Math.fround;

// ------------------------------------------------------------------------------------------------ RNG

/**
 * Seeded generator: a 32-bit xorshift state scrambled with a multiply (a small xorshift-star), enough for
 * reproducible test data. uniform() is in [0, 1) with 53 random bits. The library, the benches and make-model
 * share src/util/rng.ts; the kernel tests keep this stream because their fp32 tolerances (some within 5% of the
 * observed error, e.g. decode attention's 2e-6) were fitted on its data, and re-fitting them would only hide
 * changes in the kernels.
 */
export class TestRng {
  private state: number;
  private cached: number | null = null;

  constructor(seed: number) {
    // Spread the seed so that small consecutive seeds give unrelated streams; the state must be non-zero.
    let s = (seed ^ 0x9e3779b9) >>> 0;
    s = Math.imul(s ^ (s >>> 16), 0x85ebca6b) >>> 0;
    s = Math.imul(s ^ (s >>> 13), 0xc2b2ae35) >>> 0;
    s = (s ^ (s >>> 16)) >>> 0;
    this.state = s === 0 ? 0x12345678 : s;
  }

  private nextU32(): number {
    let x = this.state;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.state = x;
    return Math.imul(x, 0x2545f491) >>> 0;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform in [lo, hi). */
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.uniform();
  }

  /** Integer in [lo, hi], inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.uniform() * (hi - lo + 1));
  }

  /** Standard normal draw (Marsaglia polar method). */
  normal(): number {
    if (this.cached !== null) {
      const v = this.cached;
      this.cached = null;
      return v;
    }
    for (;;) {
      const u = 2 * this.uniform() - 1;
      const v = 2 * this.uniform() - 1;
      const s = u * u + v * v;
      if (s > 0 && s < 1) {
        const m = Math.sqrt((-2 * Math.log(s)) / s);
        this.cached = v * m;
        return u * m;
      }
    }
  }

  normalArray(n: number, mean = 0, std = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = mean + std * this.normal();
    return a;
  }

  uniformArray(n: number, lo = -1, hi = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.range(lo, hi);
    return a;
  }

  u8Array(n: number, lo = 0, hi = 255): Uint8Array {
    const a = new Uint8Array(n);
    for (let i = 0; i < n; i++) a[i] = this.int(lo, hi);
    return a;
  }

  s8Array(n: number, lo = -128, hi = 127): Int8Array {
    const a = new Int8Array(n);
    for (let i = 0; i < n; i++) a[i] = this.int(lo, hi);
    return a;
  }
}

// ------------------------------------------------------------------------------------------------ rounding

/** Round half to even of a double (the IEEE default rounding mode; what ONNX's Round specifies). */
export function roundHalfEven(v: number): number {
  if (!Number.isFinite(v)) return v;
  const fl = Math.floor(v);
  const frac = v - fl; // exact for any float32-representable v
  if (frac > 0.5) return fl + 1;
  if (frac < 0.5) return fl;
  return fl % 2 === 0 ? fl : fl + 1;
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

// ------------------------------------------------------------------------------------------------ activations

/**
 * erf in float64 from the everywhere-convergent series with positive terms
 *   erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_{n>=0} 2^n x^(2n+1) / (1*3*...*(2n+1)),
 * which has no cancellation. For |x| >= 6, 1 - |erf(x)| < 3e-17 so the result is +-1 in double.
 */
export function erf64(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  if (ax >= 6) return x > 0 ? 1 : -1;
  const x2 = ax * ax;
  let term = ax;
  let sum = ax;
  for (let n = 1; n < 1000; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
    if (term <= sum * 1e-17) break;
  }
  const r = (2 / Math.sqrt(Math.PI)) * Math.exp(-x2) * sum;
  return x < 0 ? -r : r;
}

export function relu64(x: number): number {
  return x > 0 ? x : 0;
}

export function silu64(x: number): number {
  return x / (1 + Math.exp(-x));
}

export function gelu64(x: number): number {
  return 0.5 * x * (1 + erf64(x / Math.SQRT2));
}

export function geluTanh64(x: number): number {
  const c = Math.sqrt(2 / Math.PI);
  return 0.5 * x * (1 + Math.tanh(c * (x + 0.044715 * x * x * x)));
}

export function activation64(act: Activation | undefined): (x: number) => number {
  switch (act ?? 'none') {
    case 'none':
      return (x) => x;
    case 'relu':
      return relu64;
    case 'silu':
      return silu64;
    case 'gelu':
      return gelu64;
    case 'gelu_tanh':
      return geluTanh64;
    default:
      throw new Error(`unknown activation ${String(act)}`);
  }
}

export const ACTIVATIONS: Activation[] = ['none', 'relu', 'silu', 'gelu', 'gelu_tanh'];

// ------------------------------------------------------------------------------------------------ norms

export interface RefNormArgs {
  x: Float32Array;
  cols: number;
  gamma: Float32Array;
  beta?: Float32Array | null;
  eps?: number;
  residual?: Float32Array | null;
  bias?: Float32Array | null;
}

/** The pre-normalisation input x + residual + bias, in float64 (no float32 rounding). */
export function addInputs64(x: Float32Array, residual: Float32Array | null | undefined, bias: Float32Array | null | undefined, cols: number): Float64Array {
  const s = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    let v = x[i];
    if (residual) v += residual[i];
    if (bias) v += bias[i % cols];
    s[i] = v;
  }
  return s;
}

/** ONNX LayerNormalization over the last axis, computed in float64. */
export function layerNormRef(a: RefNormArgs): Float64Array {
  const { cols, gamma } = a;
  const eps = a.eps ?? 1e-5;
  const x = addInputs64(a.x, a.residual, a.bias, cols);
  const rows = x.length / cols;
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += x[o + c];
    const mean = sum / cols;
    let sq = 0;
    for (let c = 0; c < cols; c++) {
      const d = x[o + c] - mean;
      sq += d * d;
    }
    const variance = sq / cols;
    const inv = 1 / Math.sqrt(variance + eps);
    for (let c = 0; c < cols; c++) {
      y[o + c] = (x[o + c] - mean) * inv * gamma[c] + (a.beta ? a.beta[c] : 0);
    }
  }
  return y;
}

/** RMSNorm: x / sqrt(mean(x^2) + eps) * gamma (+ beta), in float64. */
export function rmsNormRef(a: RefNormArgs): Float64Array {
  const { cols, gamma } = a;
  const eps = a.eps ?? 1e-5;
  const x = addInputs64(a.x, a.residual, a.bias, cols);
  const rows = x.length / cols;
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let sq = 0;
    for (let c = 0; c < cols; c++) sq += x[o + c] * x[o + c];
    const inv = 1 / Math.sqrt(sq / cols + eps);
    for (let c = 0; c < cols; c++) y[o + c] = x[o + c] * inv * gamma[c] + (a.beta ? a.beta[c] : 0);
  }
  return y;
}

// ------------------------------------------------------------------------------------------------ fp64 GEMM

/** y[rows, N] = act(x[rows, K] . W[N, K]^T + bias) in float64. */
export function linearRef(x: ArrayLike<number>, rows: number, w: ArrayLike<number>, n: number, k: number, bias?: ArrayLike<number> | null, act?: Activation): Float64Array {
  const f = activation64(act);
  const y = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      const xo = r * k;
      const wo = j * k;
      for (let p = 0; p < k; p++) s += x[xo + p] * w[wo + p];
      if (bias) s += bias[j];
      y[r * n + j] = f(s);
    }
  }
  return y;
}

export interface SgemmRefOpts {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  beta?: number;
  c?: ArrayLike<number>;
}

/** out = alpha * op(a) . op(b) + beta * c, shapes given as stored (BLAS semantics), float64. */
export function sgemmRef(a: ArrayLike<number>, aShape: [number, number], b: ArrayLike<number>, bShape: [number, number], o: SgemmRefOpts = {}): Float64Array {
  const transA = !!o.transA;
  const transB = !!o.transB;
  const m = transA ? aShape[1] : aShape[0];
  const k = transA ? aShape[0] : aShape[1];
  const n = transB ? bShape[0] : bShape[1];
  const kb = transB ? bShape[1] : bShape[0];
  if (k !== kb) throw new Error('sgemmRef: inner dimensions differ');
  const alpha = o.alpha ?? 1;
  const beta = o.beta ?? 0;
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) {
        const av = transA ? a[p * m + i] : a[i * k + p];
        const bv = transB ? b[j * k + p] : b[p * n + j];
        s += av * bv;
      }
      let v = alpha * s;
      if (beta !== 0) v += beta * (o.c as ArrayLike<number>)[i * n + j];
      out[i * n + j] = v;
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------------ integer GEMM

export type ZeroPointRef = number | ArrayLike<number> | undefined;

function zpAt(zp: ZeroPointRef, i: number): number {
  if (zp === undefined) return 0;
  if (typeof zp === 'number') return zp;
  return zp.length === 1 ? zp[0] : zp[i];
}

/**
 * ONNX MatMulInteger: out[m, n] = sum_k (a[m, k] - aZp) * (b[k, n] - bZp) in exact integers. aZp is a scalar
 * or one per row of a; bZp a scalar or one per column of b.
 */
export function matmulIntegerRef(a: ArrayLike<number>, m: number, k: number, b: ArrayLike<number>, n: number, aZp?: ZeroPointRef, bZp?: ZeroPointRef): Int32Array {
  // Shift by the zero points once, and lay b out by column so the inner loop reads memory in order.
  const as = new Int32Array(m * k);
  for (let i = 0; i < m; i++) {
    const z = zpAt(aZp, i);
    for (let p = 0; p < k; p++) as[i * k + p] = a[i * k + p] - z;
  }
  const bt = new Int32Array(n * k);
  for (let j = 0; j < n; j++) {
    const z = zpAt(bZp, j);
    for (let p = 0; p < k; p++) bt[j * k + p] = b[p * n + j] - z;
  }
  const out = new Int32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0; // |s| <= 2048 * 255 * 255 in every test: exact in a double, and within int32
      const ao = i * k;
      const bo = j * k;
      for (let p = 0; p < k; p++) s += as[ao + p] * bt[bo + p];
      if (s > 2147483647 || s < -2147483648) throw new Error('matmulIntegerRef: int32 overflow');
      out[i * n + j] = s;
    }
  }
  return out;
}

/** sum_k q[m, k] * w[n, k] with q rows stored at `stride` and w as [N, K]; exact int32. */
export function int8AccumulatorsRef(q: Int8Array, stride: number, rows: number, w: Int8Array, n: number, k: number): Int32Array {
  const out = new Int32Array(rows * n);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      const qo = r * stride;
      const wo = j * k;
      for (let p = 0; p < k; p++) s += q[qo + p] * w[wo + p];
      out[r * n + j] = s;
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------------ quantisers

export interface DqlRef {
  y: Uint8Array;
  scale: number;
  zeroPoint: number;
}

/**
 * ONNX DynamicQuantizeLinear (uint8), with the float32 arithmetic the spec implies:
 *   scale = float32((max(0, xmax) - min(0, xmin)) / 255)
 *   zp = saturate(round_half_even(float32(0 - xmin / scale)))
 *   y  = saturate(round_half_even(float32(x / scale)) + zp)
 * An all-zero input has scale 0 here; the test decides what it accepts for that case.
 */
export function dynamicQuantizeLinearRef(x: Float32Array): DqlRef {
  let xmin = 0;
  let xmax = 0;
  for (let i = 0; i < x.length; i++) {
    if (x[i] < xmin) xmin = x[i];
    if (x[i] > xmax) xmax = x[i];
  }
  const scale = f32(f32(xmax - xmin) / 255);
  const y = new Uint8Array(x.length);
  if (scale === 0) return { y, scale, zeroPoint: 0 };
  const zeroPoint = clamp(roundHalfEven(f32(0 - f32(xmin / scale))), 0, 255);
  for (let i = 0; i < x.length; i++) {
    y[i] = clamp(roundHalfEven(f32(x[i] / scale)) + zeroPoint, 0, 255);
  }
  return { y, scale, zeroPoint };
}

export interface QuantRowsRef {
  rows: number;
  cols: number;
  stride: number;
  data: Int8Array;
  scales: Float32Array;
  sums: Int32Array;
}

/** Symmetric int8 quantisation of one row: scale = float32(max|x| / 127), q = rhe(float32(x / scale)) in [-127, 127]. */
export function quantizeSymmetric(x: ArrayLike<number>, offset: number, len: number, out: Int8Array, outOffset: number): { scale: number; sum: number } {
  let amax = 0;
  for (let c = 0; c < len; c++) {
    const a = Math.abs(x[offset + c]);
    if (a > amax) amax = a;
  }
  const scale = f32(amax / 127);
  let sum = 0;
  for (let c = 0; c < len; c++) {
    const q = scale === 0 ? 0 : clamp(roundHalfEven(f32(x[offset + c] / scale)), -127, 127);
    out[outOffset + c] = q;
    sum += q;
  }
  return { scale, sum };
}

/** The per-row activation quantiser of QuantizedRows, with rows padded with zeros to a stride of 4. */
export function quantizeRowsRef(x: Float32Array, cols: number): QuantRowsRef {
  const rows = x.length / cols;
  const stride = Math.ceil(cols / 4) * 4;
  const data = new Int8Array(rows * stride);
  const scales = new Float32Array(rows);
  const sums = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const { scale, sum } = quantizeSymmetric(x, r * cols, cols, data, r * stride);
    scales[r] = scale;
    sums[r] = sum;
  }
  return { rows, cols, stride, data, scales, sums };
}

/** Per-output-channel weight quantiser: w [N, K] -> int8 [N, K] and N scales (max|w[n]| / 127). */
export function quantizeWeightsRef(w: Float32Array, n: number, k: number): { q: Int8Array; scales: Float32Array } {
  const q = new Int8Array(n * k);
  const scales = new Float32Array(n);
  for (let j = 0; j < n; j++) scales[j] = quantizeSymmetric(w, j * k, k, q, j * k).scale;
  return { q, scales };
}

/**
 * What linearInt8 should compute from its own integers: act(acc[m, n] * xScale[m] * wScale[n] + bias[n]),
 * with the integer accumulators recomputed here and everything else in float64.
 */
export function linearInt8FromQuantRef(q: QuantRowsRef | { data: Int8Array; stride: number; rows: number; scales: Float32Array }, wq: Int8Array, wScales: Float32Array, n: number, k: number, bias?: Float32Array | null, act?: Activation): Float64Array {
  const acc = int8AccumulatorsRef(q.data, q.stride, q.rows, wq, n, k);
  const f = activation64(act);
  const y = new Float64Array(q.rows * n);
  for (let r = 0; r < q.rows; r++) {
    for (let j = 0; j < n; j++) {
      const v = acc[r * n + j] * q.scales[r] * wScales[j] + (bias ? bias[j] : 0);
      y[r * n + j] = f(v);
    }
  }
  return y;
}

// ------------------------------------------------------------------------------------------------ comparisons

/** max |got - ref| / max(max |ref|, tiny): the normalised error. NaN anywhere gives Infinity. */
export function normalisedError(got: ArrayLike<number>, ref: ArrayLike<number>, tiny = 1e-30): number {
  if (got.length !== ref.length) return Infinity;
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < ref.length; i++) {
    const g = got[i];
    const r = ref[i];
    if (Number.isNaN(g) || Number.isNaN(r)) return Infinity;
    const d = Math.abs(g - r);
    if (!Number.isFinite(d)) return Infinity; // Infinity - Infinity, or one side infinite
    if (d > maxDiff) maxDiff = d;
    const a = Math.abs(r);
    if (a > maxRef) maxRef = a;
  }
  return maxDiff / Math.max(maxRef, tiny);
}

export { f32 };
