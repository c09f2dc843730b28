/**
 * The addon's binding. Finding and loading the file (CHIMERA_NATIVE, the local build, the matching prebuild, the
 * CPU baseline check, the error that lists what was tried) is src/native-loader.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadAddonOnce } from './native-loader';
import { ChimeraError, rethrowNative } from './errors';

/** The raw binding. Argument checks happen in TypeScript first; the addon re-checks sizes defensively. */
export interface NativeBinding {
  cpuInfo(): { isa: string; features: Record<string, boolean>; supported: string[]; compiled: string[] };
  setIsa(name: string): string;
  getIsa(): string;
  kernelCounters(): Record<string, number>;
  setThreads(n: number): void;
  getThreads(): number;
  norm(
    kind: number,
    x: Float32Array,
    residual: Float32Array | null,
    bias: Float32Array | null,
    gamma: Float32Array,
    beta: Float32Array | null,
    cols: number,
    eps: number,
    out: Float32Array,
    sumOut: Float32Array | null,
    qData: Int8Array | null,
    qScales: Float32Array | null,
    qSums: Int32Array | null,
    qStride: number,
  ): void;
  dynamicQuantizeLinear(x: Float32Array, y: Uint8Array): [number, number];
  quantizeRows(x: Float32Array, rows: number, cols: number, data: Int8Array, scales: Float32Array, sums: Int32Array, stride: number): void;
  matmulInteger(
    a: Uint8Array | Int8Array, aSigned: boolean, m: number, k: number,
    b: Uint8Array | Int8Array, bSigned: boolean, n: number,
    aZp: Int32Array, bZp: Int32Array, out: Int32Array, async: boolean,
  ): void | Promise<void>;
  packS8(w: Float32Array, n: number, k: number): object;
  packedS8Info(h: object, scales: Float32Array): number;
  unpackS8(h: object, out: Int8Array): void;
  linearS8(
    h: object, x: Float32Array | null, qData: Int8Array | null, qScales: Float32Array | null, qSums: Int32Array | null,
    qStride: number, rows: number, bias: Float32Array | null, act: number, out: Float32Array, async: boolean,
  ): void | Promise<void>;
  gemmS8Raw(h: object, qData: Int8Array, qSums: Int32Array, qStride: number, rows: number, out: Int32Array): void;
  packF32(w: Float32Array, n: number, k: number): object;
  linearF32(h: object, x: Float32Array, rows: number, bias: Float32Array | null, act: number, out: Float32Array, async: boolean): void | Promise<void>;
  sgemm(
    a: Float32Array, b: Float32Array, m: number, n: number, k: number, transA: boolean, transB: boolean,
    alpha: number, beta: number, out: Float32Array, async: boolean,
  ): void | Promise<void>;
  packF16(w: Float32Array, n: number, k: number): object;
  /** opts.device 'cuda' also uploads the model to the GPU (E_DEVICE where CUDA is unavailable). */
  marianCreate(desc: object, opts?: { device?: 'cpu' | 'cuda' }): object;
  /** A cuda model re-reads its layer norms' live gamma/beta (the device keeps copies); a no-op on the CPU. */
  marianSyncNorms(model: object): void;
  marianDevice(model: object): 'cpu' | 'cuda';
  marianState(model: object, slots: number, maxLen: number, sources: number, maxSrc: number): object;
  marianEncode(model: object, state: object, ids: Int32Array, lens: Int32Array, s: number, srcSlots: Int32Array, encOut: Float32Array | null, taps?: Float32Array | null): void;
  marianStep(
    model: object, state: object, tokens: Int32Array, slots: Int32Array, positions: Int32Array, sources: Int32Array,
    logits: Float32Array, taps?: Float32Array | null, subHead?: object | null,
  ): void;
  /** A sub-LM-head of the rows `ids` of the model's LM head (the vocabulary shortlist); marianStep then writes [rows, ids.length]. */
  marianSubHead(model: object, ids: Int32Array): object;
  marianCopySlot(state: object, from: number, to: number, len: number): void;
  /** Reshapes a decoder state in place (the handle stays valid); kept slots and sources keep their contents. */
  marianStateResize(state: object, slots: number, maxLen: number, sources: number, maxSrc: number): void;
  marianStateInfo(state: object): { slots: number; maxLen: number; sources: number; maxSrc: number; bytes: number; device: 'cpu' | 'cuda' };
  /** Marks a source slot as not encoded: no step can attend to it until it is encoded again. */
  marianReleaseSource(state: object, src: number): void;
  /** Per row: the k largest values, descending, ties to the lower index, NaN as -Infinity; x is not modified. */
  topkRows(x: Float32Array, rows: number, cols: number, k: number, logSoftmax: boolean, outIdx: Int32Array, outVal: Float32Array): void;
  /** topkRows over rows of their own lengths: row r is its first lens[r] values at x + r * stride. */
  topkRowsRagged(x: Float32Array, rows: number, stride: number, lens: Int32Array, k: number, logSoftmax: boolean, outIdx: Int32Array, outVal: Float32Array): void;
  /** One query row per row against its own keys (kv + rowOffsets[r], rows ldkv apart, values vOff further). */
  decodeAttention(
    q: Float32Array, kv: Float32Array, rowOffsets: Int32Array, ldkv: number, vOff: number, lens: Int32Array,
    heads: number, hd: number, out: Float32Array,
  ): void;
  /**
   * The encoder's self-attention over q|k|v rows [batch*s, ld] (q of head h at column h*hd, k heads*hd further, v
   * 2*heads*hd further), each source against its lens[b] valid keys; 'rows' / 'blocked' force a kernel, 'auto' takes
   * the blocked one from kBlockedAttentionMinKeys keys, as the engine does.
   */
  encoderAttention(
    qkv: Float32Array, ld: number, lens: Int32Array, s: number, heads: number, hd: number, out: Float32Array,
    path: 'auto' | 'rows' | 'blocked',
  ): void;
  /** The CUDA backend (native/binding/cuda_api.cpp): its probe, and the kernels on host arrays (`reference`: the simplest kernel). */
  cudaInfo(): { compiled: boolean; available: boolean; devices: { name: string; computeCapability: string; memoryBytes: number }[]; reason: string };
  cudaNorm(
    kind: number, x: Float32Array, residual: Float32Array | null, bias: Float32Array | null, gamma: Float32Array,
    beta: Float32Array | null, cols: number, eps: number, out: Float32Array, sumOut: Float32Array | null,
    qData: Int8Array | null, qScales: Float32Array | null, qSums: Int32Array | null, qStride: number, reference: boolean,
  ): void;
  cudaQuantizeRows(x: Float32Array, rows: number, cols: number, data: Int8Array, scales: Float32Array, sums: Int32Array, stride: number, reference: boolean): void;
  cudaGemmS8(a: Int8Array, b: Int8Array, m: number, n: number, k: number, out: Int32Array, reference: boolean): void;
  cudaLinear(h: object, x: Float32Array, rows: number, bias: Float32Array | null, act: number, out: Float32Array | null, raw: Int32Array | null, reference: boolean): void;
  cudaDecodeAttention(
    q: Float32Array, kv: Float32Array, rowOffsets: Int32Array, ldkv: number, vOff: number, lens: Int32Array,
    heads: number, hd: number, out: Float32Array, reference: boolean,
  ): void;
  /** Multiply-adds per second / 1e9 of one core on independent chains of the given kind. */
  peakProbe(kind: 'vnni' | 'avx2-int8' | 'fma' | 'avxvnni', ms: number): number;
  /** Streaming read bandwidth, GB/s (1e9 bytes/s), of `threads` threads (default 1) over a buffer of `bytes`, for about `ms`. */
  bandwidthProbe(bytes: number, ms: number, threads?: number): number;
  /** The calling thread's nice value (Linux: per thread; threads it starts inherit it). False where unsupported. */
  setThreadNice(nice: number): boolean;
  allocArena(bytes: number): ArrayBuffer;
  mapFile(path: string): ArrayBuffer | null;
  toHalf(src: Float32Array, dst: Uint16Array): void;
  logSoftmax(x: Float32Array, cols: number): void;
  /** A new packed weight of h's kind holding the channels `cols` of h, in that order. */
  packedGather(h: object, cols: Int32Array): object;
  packedInfo(h: object): { kind: 's8' | 'f32' | 'f16'; n: number; k: number; bytes: number };
  packedCopy(h: object, dst: Uint8Array, scales: Float32Array | null): void;
  packedView(kind: string, n: number, k: number, src: Uint8Array, scales: Float32Array | null): object;
}

let cached: NativeBinding | undefined;

/**
 * The one wrapper every TypeScript call into the addon goes through: each function of the binding, called
 * through native(), maps what it throws (and what its promise rejects with) to a ChimeraError keeping the
 * addon's code (E_NATIVE when it has none). Nothing else in the package holds the raw binding.
 */
export function guardBinding(raw: NativeBinding): NativeBinding {
  const out: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(raw as unknown as Record<string, unknown>)) {
    if (typeof f !== 'function') {
      out[name] = f;
      continue;
    }
    out[name] = function guardedNative(...args: unknown[]): unknown {
      let r: unknown;
      try {
        r = (f as (...a: unknown[]) => unknown)(...args);
      } catch (e) {
        rethrowNative(e);
      }
      return r instanceof Promise ? r.catch(rethrowNative) : r;
    };
  }
  return Object.freeze(out) as unknown as NativeBinding;
}

export function native(): NativeBinding {
  if (cached) return cached;
  cached = guardBinding(loadAddonOnce().binding as NativeBinding);
  return cached;
}
