/**
 * The roofline of bench:ttft and bench:e2e: this machine's ceilings, measured at start-up, and the floor of a
 * TTFT or decode step for an exact geometry, tier and thread count.
 *
 * - MAC peaks per core: the native peak probe (`peakProbe`): the int8 sequence of the ISA in use ('vnni' on
 *   AVX-512 VNNI and AMX, 'avxvnni', 'avx2-int8') and fp32 FMA.
 * - Streaming read bandwidth (`bandwidthProbe`, native/src/probe.cpp) at the thread count: from a cache-sized
 *   buffer (8 MiB: past any L2, inside the L3 a core reaches on current servers) and a DRAM-sized one (256 MiB),
 *   printed as the machine's figures; a floor uses the bandwidth measured on a buffer of its own weight bytes, so
 *   weights that fit in the cache are charged cache bandwidth and the rest DRAM's.
 *
 * floor = int8 MACs / (int8 peak × T) + fp32 MACs / (FMA peak × T) + weight bytes / bandwidth(weight bytes, T).
 * Linear layers count at the tier's peak (int8: the int8 peak; fp32 and fp16: FMA); attention (QKᵀ, PV) at FMA.
 * Weight bytes: every Linear weight the pass reads once (1 byte per weight for int8, 2 for fp16, 4 for fp32);
 * embeddings, biases, norms, scales and activations are not counted. TTFT: the encoder over S tokens, the
 * cross-attention K/V of S tokens, and the first decoder step (one row) with the LM head. A decode step: one
 * row through the decoder (self-attention over `past` keys, cross-attention over S) and the LM head.
 * Compute and memory are added, not overlapped, so the floor is a lower bound only where neither hides the other;
 * `% of floor` = floor / measured (100% = at the floor).
 */
import * as os from 'node:os';
import { getIsa } from '../src/kernels';
import { native } from '../src/native';

export interface Geometry {
  dModel: number;
  encoderLayers: number;
  decoderLayers: number;
  encoderFfn: number;
  decoderFfn: number;
  vocabSize: number;
}
export type Tier = 'fp32' | 'fp16' | 'int8';

export interface Work {
  /** Linear MACs at the tier's peak. */
  linearMacs: number;
  /** Attention MACs (fp32 FMA). */
  attnMacs: number;
  weightBytes: number;
}

const BYTES: Record<Tier, number> = { fp32: 4, fp16: 2, int8: 1 };

export function ttftWork(g: Geometry, tier: Tier, S: number): Work {
  const d = g.dModel;
  const enc = g.encoderLayers * (4 * d * d + 2 * d * g.encoderFfn);
  const crossKv = g.decoderLayers * 2 * d * d;
  const step = g.decoderLayers * (6 * d * d + 2 * d * g.decoderFfn) + g.vocabSize * d;
  return {
    linearMacs: S * enc + S * crossKv + step,
    attnMacs: g.encoderLayers * 2 * S * S * d + g.decoderLayers * 2 * (1 + S) * d,
    weightBytes: (enc + crossKv + step) * BYTES[tier],
  };
}

export function decodeWork(g: Geometry, tier: Tier, S: number, past: number): Work {
  const d = g.dModel;
  const step = g.decoderLayers * (6 * d * d + 2 * d * g.decoderFfn) + g.vocabSize * d;
  return { linearMacs: step, attnMacs: g.decoderLayers * 2 * (past + 1 + S) * d, weightBytes: step * BYTES[tier] };
}

export interface Machine {
  int8Kind: string;
  /** GMAC/s per core. */
  int8: number;
  fp32: number;
  /** GB/s at each thread count: the cache-sized and DRAM-sized buffers. */
  cacheGBs: Map<number, number>;
  dramGBs: Map<number, number>;
  /**
   * The share of one core this process got while the single-thread peaks were probed (its CPU time / wall time):
   * well below 1 on a machine other work shares, where the probes' best runs were preempted too and every ceiling
   * and floor is unreliable.
   */
  cpuShare: number;
}

const PEAK_MS = 250;
/** Below this share of a core during the probes, another process was running on ours: say so. */
const SHARED_CPU_SHARE = 0.9;
const BW_MS = 120;
export const CACHE_PROBE_BYTES = 8 << 20;
export const DRAM_PROBE_BYTES = 256 << 20;

function int8ProbeKind(isa: string): 'vnni' | 'avxvnni' | 'avx2-int8' | null {
  if (isa === 'avx512vnni' || isa === 'amx') return 'vnni';
  if (isa === 'avxvnni') return 'avxvnni';
  if (isa === 'avx2') return 'avx2-int8';
  return null;
}

export class Roofline {
  private readonly bw = new Map<string, number>();
  private constructor(readonly machine: Machine) {}

  /** Measures the peaks and the cache / DRAM bandwidth at each thread count (about 1 s + 0.25 s per count). */
  static measure(threadList: number[]): Roofline {
    const nb = native();
    const isa = getIsa();
    const kind = int8ProbeKind(isa);
    const t0 = performance.now();
    const u0 = process.cpuUsage();
    const int8 = kind ? nb.peakProbe(kind, PEAK_MS) : NaN;
    const fp32 = isa === 'scalar' ? NaN : nb.peakProbe('fma', PEAK_MS);
    const u = process.cpuUsage(u0);
    const m: Machine = {
      int8Kind: kind ?? 'none', int8, fp32,
      cacheGBs: new Map(), dramGBs: new Map(),
      cpuShare: (u.user + u.system) / 1000 / (performance.now() - t0),
    };
    const r = new Roofline(m);
    for (const T of threadList) {
      m.cacheGBs.set(T, r.bandwidth(CACHE_PROBE_BYTES, T));
      m.dramGBs.set(T, r.bandwidth(DRAM_PROBE_BYTES, T));
    }
    return r;
  }

  /** Read bandwidth, GB/s, over `bytes` (rounded up to 1 MiB steps, measured once) with T threads. */
  bandwidth(bytes: number, T: number): number {
    const b = Math.max(1 << 20, Math.ceil(bytes / (1 << 20)) * (1 << 20));
    const key = `${b}:${T}`;
    let v = this.bw.get(key);
    if (v === undefined) this.bw.set(key, (v = native().bandwidthProbe(b, BW_MS, T)));
    return v;
  }

  /** The floor in ms for `w` on tier `tier` at T threads. */
  floorMs(w: Work, tier: Tier, T: number): number {
    const m = this.machine;
    const linPeak = (tier === 'int8' ? m.int8 : m.fp32) * T;
    return (w.linearMacs / linPeak + w.attnMacs / (m.fp32 * T) + w.weightBytes / this.bandwidth(w.weightBytes, T)) / 1e6;
  }

  describe(): string {
    const m = this.machine;
    const bw = [...m.cacheGBs.keys()].map((T) => `T=${T}: cache (${CACHE_PROBE_BYTES >> 20} MiB) ${m.cacheGBs.get(T)!.toFixed(1)} GB/s, DRAM (${DRAM_PROBE_BYTES >> 20} MiB) ${m.dramGBs.get(T)!.toFixed(1)} GB/s`).join('; ');
    const shared = m.cpuShare < SHARED_CPU_SHARE
      ? `\nWARNING: this process got ${(100 * m.cpuShare).toFixed(0)}% of a core while probing (load average ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} CPUs): the machine is shared, so the ceilings, floors and %floor are unreliable, and so is any thread scaling`
      : '';
    return `roofline: int8 peak ${m.int8.toFixed(1)} GMAC/s/core (${m.int8Kind}), fp32 FMA ${m.fp32.toFixed(1)} GFMA/s/core; read bandwidth ${bw}; CPU share while probing ${(100 * m.cpuShare).toFixed(0)}%${shared}`;
  }
}

/** "measured (floor F ms, P% of floor)". */
export function vsFloor(measuredMs: number, floorMs: number): string {
  return `floor ${floorMs.toFixed(2)} ms, ${((100 * floorMs) / measuredMs).toFixed(0)}% of floor`;
}
