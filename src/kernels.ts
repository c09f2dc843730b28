/**
 * The kernel API: thin, validating wrappers over the addon. Every function checks dtypes, lengths and shapes
 * before native code runs and throws a ChimeraError with a stable code. Arrays are used in place, never copied.
 */
import { types } from 'node:util';
import { ChimeraError, rethrowNative } from './errors';
import { native } from './native';
import { checkDevice } from './cuda';
import { checkKeys } from './util/options';

/**
 * Kernel paths, in increasing order of preference. 'avxvnni' is the AVX2 path with VEX vpdpbusd in the int8 GEMM
 * (CPUs with AVX-VNNI but no AVX-512); 'amx' is the AVX-512 path plus AMX-INT8 tiles in the int8 GEMM.
 */
export type Isa = 'scalar' | 'avx2' | 'avxvnni' | 'avx512vnni' | 'amx';
import { ACTIVATION_CODES as ACTIVATIONS, type Activation } from './activation';
import { MAX_THREADS } from './limits';
export type { Activation };

// ---------------------------------------------------------------------------------------------- validation

function fail(code: ConstructorParameters<typeof ChimeraError>[0], msg: string): never {
  throw new ChimeraError(code, msg);
}

// Real typed arrays only: `instanceof` also accepts Object.create(Float32Array.prototype) and a Proxy around
// a typed array, whose `length` getter then throws a TypeError (or lies). util.types checks the internal slot.
function checkF32(name: string, v: unknown): Float32Array {
  if (!types.isFloat32Array(v)) fail('E_DTYPE', `${name} must be a Float32Array, got ${describe(v)}`);
  return v;
}

function checkOptF32(name: string, v: unknown, len: number): Float32Array | null {
  if (v === undefined || v === null) return null;
  const a = checkF32(name, v);
  if (a.length !== len) fail('E_SHAPE', `${name} has length ${a.length}, expected ${len}`);
  return a;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (types.isProxy(v)) return 'a Proxy';
  if (types.isTypedArray(v) || types.isDataView(v)) return Object.prototype.toString.call(v).slice(8, -1);
  return typeof v === 'object' ? 'an object that is not a typed array' : typeof v;
}

function checkDim(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || v > 0x7fffffff)
    fail('E_ARG', `${name} must be a positive integer, got ${String(v)}`);
  return v;
}

function checkEps(v: unknown): number {
  if (v === undefined) return 1e-5;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) fail('E_ARG', `eps must be a finite number >= 0, got ${String(v)}`);
  return v;
}

function rowsOf(name: string, x: Float32Array, cols: number): number {
  if (x.length === 0 || x.length % cols !== 0)
    fail('E_SHAPE', `${name} has length ${x.length}, which is not a positive multiple of cols = ${cols}`);
  return x.length / cols;
}

function outF32(name: string, v: unknown, len: number): Float32Array {
  if (v === undefined || v === null) return new Float32Array(len);
  const a = checkF32(name, v);
  if (a.length !== len) fail('E_SHAPE', `${name} has length ${a.length}, expected ${len}`);
  return a;
}

function checkActivation(v: unknown): number {
  if (v === undefined) return 0;
  if (typeof v !== 'string' || !(v in ACTIVATIONS))
    fail('E_ARG', `activation must be one of ${Object.keys(ACTIVATIONS).join(', ')}, got ${String(v)}`);
  return ACTIVATIONS[v as Activation];
}

function call<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    rethrowNative(e);
  }
}

async function callAsync<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    rethrowNative(e);
  }
}

// ---------------------------------------------------------------------------------------------- CPU, threads

export interface CpuInfo {
  /** The ISA the dispatch table currently uses. */
  isa: Isa;
  /** CPU features as detected from CPUID and XGETBV (OS support for the register state). */
  features: Record<string, boolean>;
  /** ISAs this CPU can run, best last. */
  supported: Isa[];
}

export function cpuInfo(): CpuInfo {
  const i = native().cpuInfo();
  return { isa: i.isa as Isa, features: i.features, supported: i.supported as Isa[] };
}

/**
 * Forces a kernel path ('auto' restores the best one this CPU supports). The environment variable
 * CHIMERA_ISA does the same at load time. Forcing an ISA this CPU lacks throws E_ISA.
 */
export function setIsa(isa: Isa | 'auto'): Isa {
  if (typeof isa !== 'string') fail('E_ARG', `isa must be a string, got ${describe(isa)}`);
  return call(() => native().setIsa(isa)) as Isa;
}

export function getIsa(): Isa {
  return native().getIsa() as Isa;
}

/**
 * How many times each kernel variant has run, keyed `op:isa` (e.g. `gemm_s8:avx512vnni`). Tests read it to
 * assert that the fast path they forced really ran.
 */
export function kernelCounters(): Record<string, number> {
  return native().kernelCounters();
}

/** Sets the intra-op thread count (1..MAX_THREADS, 256). Integer results are identical for every count. */
export function setThreads(n: number): void {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_THREADS)
    fail('E_ARG', `threads must be an integer in 1..${MAX_THREADS}, got ${String(n)}`);
  native().setThreads(n);
}

export function getThreads(): number {
  return native().getThreads();
}

// ---------------------------------------------------------------------------------------------- norms

/**
 * Live gamma/beta of one layer norm. The arrays are the ones the kernels read, so an in-place edit, a
 * replacement, or scale/shift takes effect on the next call with no reload.
 */
export class LayerNormParams {
  readonly cols: number;
  private g: Float32Array;
  private b: Float32Array;

  /**
   * New parameters (gamma 1, beta 0, or copies of `init`). With `live: true`, `init.gamma` and `init.beta`
   * themselves become the storage: a model's own layer norms are exposed this way.
   */
  constructor(cols: number, init?: { gamma?: Float32Array; beta?: Float32Array; live?: boolean }) {
    this.cols = checkDim('cols', cols);
    if (init?.live) {
      if (!init.gamma || !init.beta) fail('E_ARG', 'live LayerNormParams need both gamma and beta arrays');
      this.g = this.checked('gamma', init.gamma);
      this.b = this.checked('beta', init.beta);
      return;
    }
    this.g = new Float32Array(cols).fill(1);
    this.b = new Float32Array(cols);
    if (init?.gamma) this.gamma = init.gamma;
    if (init?.beta) this.beta = init.beta;
  }

  get gamma(): Float32Array {
    return this.g;
  }
  /** Copies `v` into the live gamma (length must be cols; values must be finite). */
  set gamma(v: Float32Array) {
    this.g.set(this.checked('gamma', v));
  }
  get beta(): Float32Array {
    return this.b;
  }
  set beta(v: Float32Array) {
    this.b.set(this.checked('beta', v));
  }

  /** gamma *= s (a scalar, or one factor per channel). */
  scaleGamma(s: number | Float32Array): this {
    return this.apply(this.g, s, (a, v) => a * v);
  }
  /** gamma += d. */
  shiftGamma(d: number | Float32Array): this {
    return this.apply(this.g, d, (a, v) => a + v);
  }
  /** beta *= s. */
  scaleBeta(s: number | Float32Array): this {
    return this.apply(this.b, s, (a, v) => a * v);
  }
  /** beta += d. */
  shiftBeta(d: number | Float32Array): this {
    return this.apply(this.b, d, (a, v) => a + v);
  }
  /** Independent copies of the current values. */
  snapshot(): { gamma: Float32Array; beta: Float32Array } {
    return { gamma: this.g.slice(), beta: this.b.slice() };
  }

  private checked(name: string, v: Float32Array): Float32Array {
    checkF32(name, v);
    if (v.length !== this.cols) fail('E_SHAPE', `${name} has length ${v.length}, expected cols = ${this.cols}`);
    for (let i = 0; i < v.length; i++)
      if (!Number.isFinite(v[i])) fail('E_RANGE', `${name}[${i}] is ${v[i]}; gamma and beta must be finite`);
    return v;
  }

  private apply(t: Float32Array, v: number | Float32Array, op: (a: number, v: number) => number): this {
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) fail('E_RANGE', `the factor must be finite, got ${v}`);
      for (let i = 0; i < t.length; i++) t[i] = op(t[i], v);
    } else {
      this.checked('factor', v);
      for (let i = 0; i < t.length; i++) t[i] = op(t[i], v[i]);
    }
    return this;
  }
}

/**
 * Int8 rows quantised symmetrically per row (scale = max|x| / 127, round half to even), ready for
 * linearInt8. `data` has `stride` bytes per row (cols rounded up to 4, zero padded); `sums` holds each row's
 * sum of quantised values, which the VNNI kernel needs for its unsigned-operand correction.
 */
export class QuantizedRows {
  readonly rows: number;
  readonly cols: number;
  readonly stride: number;
  readonly data: Int8Array;
  readonly scales: Float32Array;
  readonly sums: Int32Array;
  constructor(rows: number, cols: number) {
    this.rows = checkDim('rows', rows);
    this.cols = checkDim('cols', cols);
    this.stride = (cols + 3) & ~3;
    this.data = new Int8Array(rows * this.stride);
    this.scales = new Float32Array(rows);
    this.sums = new Int32Array(rows);
  }
}

/**
 * Where a kernel call runs: 'cpu' (default), or 'cuda' (the arrays are copied to the GPU and back; E_DEVICE where
 * CUDA is unavailable). `reference: true` (cuda only) runs the simplest-correct CUDA kernel the fast one is
 * tested against.
 */
export interface DeviceOptions {
  device?: 'cpu' | 'cuda';
  reference?: boolean;
}
const DEVICE_KEYS = ['device', 'reference'] as const;

/** The device of a kernel call, and whether it asks for the reference kernel (which only 'cuda' has). */
function deviceOf(opts: DeviceOptions | undefined): { cuda: boolean; reference: boolean } {
  const cuda = checkDevice(opts?.device) === 'cuda';
  const r = opts?.reference;
  if (r !== undefined && typeof r !== 'boolean') fail('E_ARG', `reference must be a boolean, got ${String(r)}`);
  if (r && !cuda) fail('E_ARG', "reference: true selects the CUDA reference kernel; it needs device: 'cuda'");
  return { cuda, reference: r === true };
}

export interface NormOptions extends DeviceOptions {
  eps?: number;
  out?: Float32Array;
  /** Also writes the normalised output quantised to int8 per row, to feed linearInt8 directly. */
  quantizeTo?: QuantizedRows;
}

export interface AddNormOptions extends NormOptions {
  /** A bias added with the residual, length cols (SkipLayerNormalization's `bias`). */
  bias?: Float32Array;
  /** Receives x + residual + bias, before normalisation. */
  sumOut?: Float32Array;
}

type GammaArg = Float32Array | LayerNormParams;

function gammaBeta(cols: number, g: GammaArg, beta: Float32Array | null | undefined): [Float32Array, Float32Array | null] {
  if (g instanceof LayerNormParams) {
    if (g.cols !== cols) fail('E_SHAPE', `LayerNormParams has cols = ${g.cols}, expected ${cols}`);
    return [g.gamma, g.beta];
  }
  checkF32('gamma', g);
  if (g.length !== cols) fail('E_SHAPE', `gamma has length ${g.length}, expected cols = ${cols}`);
  return [g, checkOptF32('beta', beta, cols)];
}

const NORM_KEYS = ['eps', 'out', 'quantizeTo', ...DEVICE_KEYS] as const;
const ADD_NORM_KEYS = [...NORM_KEYS, 'bias', 'sumOut'] as const;

function runNorm(
  kind: number, x: Float32Array, residual: Float32Array | null, cols: number, g: GammaArg,
  beta: Float32Array | null | undefined, opts: AddNormOptions | undefined, keys: readonly string[], what: string,
): Float32Array {
  checkKeys(opts, keys, `${what} option`);
  const dev = deviceOf(opts);
  checkF32('x', x);
  checkDim('cols', cols);
  const rows = rowsOf('x', x, cols);
  if (residual && residual.length !== x.length)
    fail('E_SHAPE', `residual has length ${residual.length}, expected ${x.length} (same as x)`);
  const [gamma, b] = gammaBeta(cols, g, beta);
  const eps = checkEps(opts?.eps);
  const out = outF32('out', opts?.out, x.length);
  const bias = checkOptF32('bias', opts?.bias, cols);
  const sumOut = opts?.sumOut === undefined ? null : outF32('sumOut', opts.sumOut, x.length);
  const q = opts?.quantizeTo;
  if (q !== undefined) {
    if (!(q instanceof QuantizedRows)) fail('E_ARG', 'quantizeTo must be a QuantizedRows');
    if (q.rows !== rows || q.cols !== cols)
      fail('E_SHAPE', `quantizeTo is ${q.rows}x${q.cols}, expected ${rows}x${cols}`);
  }
  if (dev.cuda) {
    call(() =>
      native().cudaNorm(kind, x, residual, bias, gamma, b, cols, eps, out, sumOut,
        q ? q.data : null, q ? q.scales : null, q ? q.sums : null, q ? q.stride : 0, dev.reference),
    );
    return out;
  }
  call(() =>
    native().norm(kind, x, residual, bias, gamma, b, cols, eps, out, sumOut,
      q ? q.data : null, q ? q.scales : null, q ? q.sums : null, q ? q.stride : 0),
  );
  return out;
}

/**
 * LayerNormalization over the last `cols` values of each row: (x - mean) / sqrt(var + eps) * gamma + beta.
 * NaN or Inf in a row yields NaN for that row (IEEE propagation); other rows are unaffected.
 */
export function layerNorm(x: Float32Array, cols: number, gamma: GammaArg, beta?: Float32Array | null, opts?: NormOptions): Float32Array {
  return runNorm(0, x, null, cols, gamma, beta, opts, NORM_KEYS, 'layerNorm');
}

/** out = LayerNorm(x + residual + bias): onnxruntime's SkipLayerNormalization. */
export function addLayerNorm(
  x: Float32Array, residual: Float32Array, cols: number, gamma: GammaArg, beta?: Float32Array | null, opts?: AddNormOptions,
): Float32Array {
  checkF32('residual', residual);
  return runNorm(0, x, residual, cols, gamma, beta, opts, ADD_NORM_KEYS, 'addLayerNorm');
}

/** RMSNorm: x / sqrt(mean(x^2) + eps) * gamma (+ beta when given). */
export function rmsNorm(x: Float32Array, cols: number, gamma: GammaArg, opts?: NormOptions & { beta?: Float32Array }): Float32Array {
  return runNorm(1, x, null, cols, gamma, opts?.beta, opts, [...NORM_KEYS, 'beta'], 'rmsNorm');
}

/** out = RMSNorm(x + residual + bias). */
export function addRmsNorm(
  x: Float32Array, residual: Float32Array, cols: number, gamma: GammaArg, opts?: AddNormOptions & { beta?: Float32Array },
): Float32Array {
  checkF32('residual', residual);
  return runNorm(1, x, residual, cols, gamma, opts?.beta, opts, [...ADD_NORM_KEYS, 'beta'], 'addRmsNorm');
}

/** log_softmax over each row of x ([rows, cols]) in place; a row of all -Infinity stays so. */
export function logSoftmax(x: Float32Array, cols: number): Float32Array {
  checkF32('x', x);
  checkDim('cols', cols);
  rowsOf('x', x, cols);
  call(() => native().logSoftmax(x, cols));
  return x;
}

export interface TopkOptions {
  /** Return log_softmax values (exactly what logSoftmax() would write for those entries) instead of x's. */
  logSoftmax?: boolean;
  outIdx?: Int32Array;
  outVal?: Float32Array;
}

/**
 * Per row of x ([rows, cols]): the k largest entries in descending order, ties broken by the lower index (so k = 1
 * is an argmax keeping the first maximum), NaN counted as -Infinity. x is not modified. A row of all -Infinity gives
 * -Infinity values.
 */
export function topk(x: Float32Array, rows: number, cols: number, k: number, opts: TopkOptions = {}): { idx: Int32Array; val: Float32Array } {
  checkF32('x', x);
  checkDim('rows', rows);
  checkDim('cols', cols);
  checkDim('k', k);
  if (k > cols) fail('E_RANGE', `k must be in 1..cols (${cols}), got ${k}`);
  if (x.length !== rows * cols) fail('E_SHAPE', `x has length ${x.length}, expected rows * cols = ${rows * cols}`);
  const idx = opts.outIdx ?? new Int32Array(rows * k);
  const val = opts.outVal ?? new Float32Array(rows * k);
  if (!types.isInt32Array(idx)) fail('E_DTYPE', `outIdx must be an Int32Array, got ${describe(idx)}`);
  checkF32('outVal', val);
  if (idx.length !== rows * k) fail('E_SHAPE', `outIdx has length ${idx.length}, expected rows * k = ${rows * k}`);
  if (val.length !== rows * k) fail('E_SHAPE', `outVal has length ${val.length}, expected rows * k = ${rows * k}`);
  call(() => native().topkRows(x, rows, cols, k, opts.logSoftmax === true, idx, val));
  return { idx, val };
}

// ---------------------------------------------------------------------------------------------- quantisation

/**
 * ONNX DynamicQuantizeLinear: uint8 output, scale = (max(0,x) - min(0,x)) / 255, round half to even. An all-zero
 * input gives scale 1 and zero point 0, as onnxruntime does (the formula alone would divide by zero).
 */
export function dynamicQuantizeLinear(x: Float32Array): { y: Uint8Array; scale: number; zeroPoint: number } {
  checkF32('x', x);
  const y = new Uint8Array(x.length);
  const [scale, zeroPoint] = call(() => native().dynamicQuantizeLinear(x, y));
  return { y, scale, zeroPoint };
}

/**
 * Quantises rows of x symmetrically to int8 (the activation side of linearInt8). NaN or Inf throws E_RANGE. With
 * device 'cuda' the result is bit for bit the CPU's.
 */
export function quantizeRows(x: Float32Array, cols: number, into?: QuantizedRows, opts?: DeviceOptions): QuantizedRows {
  checkKeys(opts, DEVICE_KEYS, 'quantizeRows option');
  const dev = deviceOf(opts);
  checkF32('x', x);
  checkDim('cols', cols);
  const rows = rowsOf('x', x, cols);
  const q = into ?? new QuantizedRows(rows, cols);
  if (!(q instanceof QuantizedRows) || q.rows !== rows || q.cols !== cols)
    fail('E_SHAPE', `into must be a QuantizedRows of ${rows}x${cols}`);
  if (dev.cuda) call(() => native().cudaQuantizeRows(x, rows, cols, q.data, q.scales, q.sums, q.stride, dev.reference));
  else call(() => native().quantizeRows(x, rows, cols, q.data, q.scales, q.sums, q.stride));
  return q;
}

type IntArray = Uint8Array | Int8Array;
type ZeroPoint = number | IntArray | undefined;

function checkInt8Operand(name: string, v: unknown): IntArray {
  if (!types.isUint8Array(v) && !types.isInt8Array(v))
    fail('E_DTYPE', `${name} must be a Uint8Array or Int8Array, got ${describe(v)}`);
  return v as IntArray;
}

function checkShape2(name: string, v: unknown): [number, number] {
  if (!Array.isArray(v) || v.length !== 2) fail('E_SHAPE', `${name} must be a [rows, cols] pair`);
  return [checkDim(`${name}[0]`, v[0]), checkDim(`${name}[1]`, v[1])];
}

function zeroPoints(name: string, zp: ZeroPoint, signed: boolean, perLen: number): Int32Array {
  const lo = signed ? -128 : 0;
  const hi = signed ? 127 : 255;
  if (zp === undefined) return new Int32Array(1);
  if (typeof zp === 'number') {
    if (!Number.isInteger(zp) || zp < lo || zp > hi) fail('E_RANGE', `${name} must be an integer in [${lo}, ${hi}], got ${zp}`);
    return Int32Array.of(zp);
  }
  checkInt8Operand(name, zp);
  if (types.isInt8Array(zp) !== signed) fail('E_DTYPE', `${name} must have the same element type as its matrix`);
  if (zp.length !== 1 && zp.length !== perLen) fail('E_SHAPE', `${name} has length ${zp.length}, expected 1 or ${perLen}`);
  return Int32Array.from(zp);
}

function prepMatmulInteger(a: unknown, aShape: unknown, b: unknown, bShape: unknown, aZp: ZeroPoint, bZp: ZeroPoint) {
  const A = checkInt8Operand('a', a);
  const B = checkInt8Operand('b', b);
  const [m, k] = checkShape2('aShape', aShape);
  const [k2, n] = checkShape2('bShape', bShape);
  if (k !== k2) fail('E_SHAPE', `inner dimensions differ: a is ${m}x${k}, b is ${k2}x${n}`);
  if (A.length !== m * k) fail('E_SHAPE', `a has length ${A.length}, expected ${m}x${k} = ${m * k}`);
  if (B.length !== k * n) fail('E_SHAPE', `b has length ${B.length}, expected ${k}x${n} = ${k * n}`);
  const aS = types.isInt8Array(A);
  const bS = types.isInt8Array(B);
  return { A, B, m, k, n, aS, bS, az: zeroPoints('aZeroPoint', aZp, aS, m), bz: zeroPoints('bZeroPoint', bZp, bS, n) };
}

/**
 * ONNX MatMulInteger: int32 (a - aZeroPoint) x (b - bZeroPoint) for uint8/int8 operands, exact. A zero point
 * is a scalar, or per row of a (length M) / per column of b (length N).
 */
export function matmulInteger(a: IntArray, aShape: [number, number], b: IntArray, bShape: [number, number], aZeroPoint?: ZeroPoint, bZeroPoint?: ZeroPoint): Int32Array {
  const p = prepMatmulInteger(a, aShape, b, bShape, aZeroPoint, bZeroPoint);
  const out = new Int32Array(p.m * p.n);
  call(() => native().matmulInteger(p.A, p.aS, p.m, p.k, p.B, p.bS, p.n, p.az, p.bz, out, false));
  return out;
}

export async function matmulIntegerAsync(a: IntArray, aShape: [number, number], b: IntArray, bShape: [number, number], aZeroPoint?: ZeroPoint, bZeroPoint?: ZeroPoint): Promise<Int32Array> {
  const p = prepMatmulInteger(a, aShape, b, bShape, aZeroPoint, bZeroPoint);
  const out = new Int32Array(p.m * p.n);
  await callAsync(() => native().matmulInteger(p.A, p.aS, p.m, p.k, p.B, p.bS, p.n, p.az, p.bz, out, true) as Promise<void>);
  return out;
}

// ---------------------------------------------------------------------------------------------- linear layers

function checkWeights(w: unknown, outFeatures: number, inFeatures: number): Float32Array {
  const W = checkF32('w', w);
  checkDim('outFeatures', outFeatures);
  checkDim('inFeatures', inFeatures);
  if (W.length !== outFeatures * inFeatures)
    fail('E_SHAPE', `w has length ${W.length}, expected outFeatures x inFeatures = ${outFeatures * inFeatures}`);
  for (let i = 0; i < W.length; i++)
    if (!Number.isFinite(W[i])) fail('E_RANGE', `w[${i}] is ${W[i]}; weights must be finite`);
  return W;
}

/**
 * Int8 weights packed for the GEMM microkernels: each output channel quantised symmetrically to
 * [-127, 127] with scale = max|w| / 127. Opaque; `scales` are the per-channel dequantisation factors.
 */
export class PackedInt8Weights {
  readonly outFeatures: number;
  readonly inFeatures: number;
  readonly scales: Float32Array;
  /** Bytes of native memory the packed form holds. */
  readonly bytes: number;
  /** @internal */ readonly handle: object;
  /** @internal */
  constructor(handle: object, outFeatures: number, inFeatures: number) {
    this.handle = handle;
    this.outFeatures = outFeatures;
    this.inFeatures = inFeatures;
    this.scales = new Float32Array(outFeatures);
    this.bytes = native().packedS8Info(handle, this.scales);
    if (new.target === PackedInt8Weights) Object.freeze(this); // a handle cannot be swapped after the fact
  }
  /** The quantised weights as int8 [outFeatures, inFeatures] (a copy, for inspection and tests). */
  unpack(): Int8Array {
    const out = new Int8Array(this.outFeatures * this.inFeatures);
    native().unpackS8(this.handle, out);
    return out;
  }
}

/** fp32 weights packed in column panels for the sgemm microkernel. Opaque. */
export class PackedFp32Weights {
  readonly outFeatures: number;
  readonly inFeatures: number;
  /** @internal */ readonly handle: object;
  /** @internal */
  constructor(handle: object, outFeatures: number, inFeatures: number) {
    this.handle = handle;
    this.outFeatures = outFeatures;
    this.inFeatures = inFeatures;
    const info = native().packedInfo(handle); // refuses anything but an fp32 / fp16 packed handle
    if (info.kind === 's8') throw new ChimeraError('E_ARG', 'PackedFp32Weights needs an fp32 or fp16 packed handle, got an int8 one');
    if (info.n !== outFeatures || info.k !== inFeatures)
      throw new ChimeraError('E_SHAPE', `the handle is ${info.n}x${info.k}, not ${outFeatures}x${inFeatures}`);
    if (new.target === PackedFp32Weights) Object.freeze(this);
  }
}

/** Quantises and packs an fp32 [outFeatures, inFeatures] matrix (PyTorch Linear layout). */
export function packInt8Weights(w: Float32Array, outFeatures: number, inFeatures: number): PackedInt8Weights {
  const W = checkWeights(w, outFeatures, inFeatures);
  return new PackedInt8Weights(call(() => native().packS8(W, outFeatures, inFeatures)), outFeatures, inFeatures);
}

/** Packs an fp32 [outFeatures, inFeatures] matrix for linear(). */
export function packFp32Weights(w: Float32Array, outFeatures: number, inFeatures: number): PackedFp32Weights {
  const W = checkWeights(w, outFeatures, inFeatures);
  return new PackedFp32Weights(call(() => native().packF32(W, outFeatures, inFeatures)), outFeatures, inFeatures);
}

export interface LinearOptions extends DeviceOptions {
  bias?: Float32Array;
  activation?: Activation;
  out?: Float32Array;
}
const LINEAR_KEYS = ['bias', 'activation', 'out', ...DEVICE_KEYS] as const;

export interface LinearInt8Options extends LinearOptions {
  /** Also receives the exact int32 accumulators sum_k q[m,k] * w_q[n,k] ([rows, outFeatures]). */
  raw?: Int32Array;
}
const LINEAR_INT8_KEYS = [...LINEAR_KEYS, 'raw'] as const;

function prepLinearInt8(x: Float32Array | QuantizedRows, rows: number, packed: PackedInt8Weights, opts?: LinearInt8Options) {
  checkKeys(opts, LINEAR_INT8_KEYS, 'linearInt8 option');
  const dev = deviceOf(opts);
  if (!(packed instanceof PackedInt8Weights)) fail('E_ARG', 'packed must come from packInt8Weights()');
  checkDim('rows', rows);
  const K = packed.inFeatures;
  const N = packed.outFeatures;
  let xf: Float32Array | null = null;
  let q: QuantizedRows | null = null;
  if (x instanceof QuantizedRows) {
    if (x.rows !== rows || x.cols !== K) fail('E_SHAPE', `x is ${x.rows}x${x.cols}, expected ${rows}x${K}`);
    q = x;
  } else {
    xf = checkF32('x', x);
    if (xf.length !== rows * K) fail('E_SHAPE', `x has length ${xf.length}, expected rows x inFeatures = ${rows * K}`);
  }
  const bias = checkOptF32('bias', opts?.bias, N);
  const act = checkActivation(opts?.activation);
  const out = outF32('out', opts?.out, rows * N);
  let raw: Int32Array | null = null;
  if (opts?.raw !== undefined) {
    if (!types.isInt32Array(opts.raw)) fail('E_DTYPE', `raw must be an Int32Array, got ${describe(opts.raw)}`);
    if (opts.raw.length !== rows * N) fail('E_SHAPE', `raw has length ${opts.raw.length}, expected rows x outFeatures = ${rows * N}`);
    raw = opts.raw;
  }
  if (dev.cuda && q) fail('E_ARG', "device 'cuda' takes x as a Float32Array (it quantises the rows on the device), not QuantizedRows");
  return { xf, q, bias, act, out, raw, dev };
}

/** The device path of linearInt8 / linear: the weights are uploaded for the call (bench/cuda keeps them resident). */
function cudaLinear(packed: PackedInt8Weights | PackedFp32Weights, x: Float32Array, rows: number, bias: Float32Array | null, act: number, out: Float32Array, raw: Int32Array | null, reference: boolean): void {
  call(() => native().cudaLinear(packed.handle, x, rows, bias, act, out, raw, reference));
}

/** linearInt8's raw accumulators on the CPU: the same quantisation, then the exact integer GEMM. */
function cpuRaw(x: Float32Array | QuantizedRows, rows: number, packed: PackedInt8Weights, raw: Int32Array): void {
  const q = x instanceof QuantizedRows ? x : quantizeRows(x, packed.inFeatures);
  raw.set(int8GemmAccumulators(q, packed));
}

/**
 * y = dequant(quant(x) . W^T) + bias, then the activation. Each row of x is quantised to int8 on the fly
 * (or pass QuantizedRows from a fused norm); accumulation is exact int32.
 */
export function linearInt8(x: Float32Array | QuantizedRows, rows: number, packed: PackedInt8Weights, opts?: LinearInt8Options): Float32Array {
  const p = prepLinearInt8(x, rows, packed, opts);
  if (p.dev.cuda) {
    cudaLinear(packed, p.xf!, rows, p.bias, p.act, p.out, p.raw, p.dev.reference);
    return p.out;
  }
  if (p.raw) cpuRaw(x, rows, packed, p.raw);
  call(() => native().linearS8(packed.handle, p.xf, p.q?.data ?? null, p.q?.scales ?? null, p.q?.sums ?? null,
    p.q?.stride ?? 0, rows, p.bias, p.act, p.out, false));
  return p.out;
}

export async function linearInt8Async(x: Float32Array | QuantizedRows, rows: number, packed: PackedInt8Weights, opts?: LinearInt8Options): Promise<Float32Array> {
  const p = prepLinearInt8(x, rows, packed, opts);
  if (p.dev.cuda) {
    // the device call synchronises inside; it does not run on the libuv pool
    cudaLinear(packed, p.xf!, rows, p.bias, p.act, p.out, p.raw, p.dev.reference);
    return p.out;
  }
  if (p.raw) cpuRaw(x, rows, packed, p.raw);
  await callAsync(() => native().linearS8(packed.handle, p.xf, p.q?.data ?? null, p.q?.scales ?? null, p.q?.sums ?? null,
    p.q?.stride ?? 0, rows, p.bias, p.act, p.out, true) as Promise<void>);
  return p.out;
}

/**
 * The exact int32 accumulators sum_k q[m,k] * w_q[n,k] of the int8 GEMM, before dequantisation: the
 * integer core of linearInt8, exposed so tests can compare it bit for bit with a naive loop.
 */
export function int8GemmAccumulators(q: QuantizedRows, packed: PackedInt8Weights): Int32Array {
  if (!(q instanceof QuantizedRows)) fail('E_ARG', 'q must be a QuantizedRows');
  if (!(packed instanceof PackedInt8Weights)) fail('E_ARG', 'packed must come from packInt8Weights()');
  if (q.cols !== packed.inFeatures) fail('E_SHAPE', `q has ${q.cols} cols, expected inFeatures = ${packed.inFeatures}`);
  const out = new Int32Array(q.rows * packed.outFeatures);
  call(() => native().gemmS8Raw(packed.handle, q.data, q.sums, q.stride, q.rows, out));
  return out;
}

function prepLinear(x: Float32Array, rows: number, packed: PackedFp32Weights, opts?: LinearOptions) {
  checkKeys(opts, LINEAR_KEYS, 'linear option');
  const dev = deviceOf(opts);
  if (!(packed instanceof PackedFp32Weights)) fail('E_ARG', 'packed must come from packFp32Weights()');
  checkDim('rows', rows);
  checkF32('x', x);
  if (x.length !== rows * packed.inFeatures)
    fail('E_SHAPE', `x has length ${x.length}, expected rows x inFeatures = ${rows * packed.inFeatures}`);
  const bias = checkOptF32('bias', opts?.bias, packed.outFeatures);
  const act = checkActivation(opts?.activation);
  const out = outF32('out', opts?.out, rows * packed.outFeatures);
  return { bias, act, out, dev };
}

/** fp32 y = x . W^T + bias, then the activation. */
export function linear(x: Float32Array, rows: number, packed: PackedFp32Weights, opts?: LinearOptions): Float32Array {
  const p = prepLinear(x, rows, packed, opts);
  if (p.dev.cuda) {
    cudaLinear(packed, x, rows, p.bias, p.act, p.out, null, p.dev.reference);
    return p.out;
  }
  call(() => native().linearF32(packed.handle, x, rows, p.bias, p.act, p.out, false));
  return p.out;
}

export async function linearAsync(x: Float32Array, rows: number, packed: PackedFp32Weights, opts?: LinearOptions): Promise<Float32Array> {
  const p = prepLinear(x, rows, packed, opts);
  if (p.dev.cuda) {
    cudaLinear(packed, x, rows, p.bias, p.act, p.out, null, p.dev.reference);
    return p.out;
  }
  await callAsync(() => native().linearF32(packed.handle, x, rows, p.bias, p.act, p.out, true) as Promise<void>);
  return p.out;
}

export interface SgemmOptions {
  /** a is stored [K, M] and used transposed. */
  transA?: boolean;
  /** b is stored [N, K] and used transposed (as for attention scores Q.K^T). */
  transB?: boolean;
  alpha?: number;
  /** out = alpha * op(a) op(b) + beta * out; beta != 0 needs `out`. */
  beta?: number;
  out?: Float32Array;
}

function prepSgemm(a: Float32Array, aShape: [number, number], b: Float32Array, bShape: [number, number], opts?: SgemmOptions) {
  checkF32('a', a);
  checkF32('b', b);
  const [ar, ac] = checkShape2('aShape', aShape);
  const [br, bc] = checkShape2('bShape', bShape);
  const transA = !!opts?.transA;
  const transB = !!opts?.transB;
  const [m, k] = transA ? [ac, ar] : [ar, ac];
  const [k2, n] = transB ? [bc, br] : [br, bc];
  if (k !== k2) fail('E_SHAPE', `inner dimensions differ: op(a) is ${m}x${k}, op(b) is ${k2}x${n}`);
  if (a.length !== ar * ac) fail('E_SHAPE', `a has length ${a.length}, expected ${ar}x${ac}`);
  if (b.length !== br * bc) fail('E_SHAPE', `b has length ${b.length}, expected ${br}x${bc}`);
  const alpha = opts?.alpha ?? 1;
  const beta = opts?.beta ?? 0;
  if (!Number.isFinite(alpha) || !Number.isFinite(beta)) fail('E_ARG', 'alpha and beta must be finite numbers');
  if (beta !== 0 && !opts?.out) fail('E_ARG', 'beta != 0 needs an out array holding C');
  const out = outF32('out', opts?.out, m * n);
  return { m, n, k, transA, transB, alpha, beta, out };
}

/** fp32 GEMM: out = alpha * op(a) . op(b) + beta * out, with a shape given as stored. */
export function sgemm(a: Float32Array, aShape: [number, number], b: Float32Array, bShape: [number, number], opts?: SgemmOptions): Float32Array {
  const p = prepSgemm(a, aShape, b, bShape, opts);
  call(() => native().sgemm(a, b, p.m, p.n, p.k, p.transA, p.transB, p.alpha, p.beta, p.out, false));
  return p.out;
}

export async function sgemmAsync(a: Float32Array, aShape: [number, number], b: Float32Array, bShape: [number, number], opts?: SgemmOptions): Promise<Float32Array> {
  const p = prepSgemm(a, aShape, b, bShape, opts);
  await callAsync(() => native().sgemm(a, b, p.m, p.n, p.k, p.transA, p.transB, p.alpha, p.beta, p.out, true) as Promise<void>);
  return p.out;
}

// ---------------------------------------------------------------------------------------------- exact int8 GEMM

/**
 * c[m, n] = a[m, k] . b[n, k]^T for signed int8 operands, exact in int32 (both row-major, b in Linear layout). On
 * 'cuda' this is the tensor-core GEMM (mma.sync s8), or with `reference: true` the dp4a reference kernel; on the
 * CPU, matmulInteger.
 */
export function gemmInt8(a: Int8Array, b: Int8Array, m: number, n: number, k: number, opts?: DeviceOptions): Int32Array {
  checkKeys(opts, DEVICE_KEYS, 'gemmInt8 option');
  const dev = deviceOf(opts);
  if (!types.isInt8Array(a)) fail('E_DTYPE', `a must be an Int8Array, got ${describe(a)}`);
  if (!types.isInt8Array(b)) fail('E_DTYPE', `b must be an Int8Array, got ${describe(b)}`);
  checkDim('m', m);
  checkDim('n', n);
  checkDim('k', k);
  if (a.length !== m * k) fail('E_SHAPE', `a has length ${a.length}, expected m x k = ${m * k}`);
  if (b.length !== n * k) fail('E_SHAPE', `b has length ${b.length}, expected n x k = ${n * k}`);
  const out = new Int32Array(m * n);
  if (dev.cuda) {
    call(() => native().cudaGemmS8(a, b, m, n, k, out, dev.reference));
    return out;
  }
  const bt = new Int8Array(k * n);
  for (let j = 0; j < n; j++) for (let i = 0; i < k; i++) bt[i * n + j] = b[j * k + i];
  call(() => native().matmulInteger(a, true, m, k, bt, true, n, new Int32Array(1), new Int32Array(1), out, false));
  return out;
}
