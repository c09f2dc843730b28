/**
 * The timing and statistics every bench suite shares (bench:kernels, bench:e2e, bench:ttft): tasks run on tinybench
 * in interleaved rounds, samples are pooled over the rounds, and each figure is reported with the same statistics:
 * p50 (the figure ratios are taken of), mean, p99, relative margin of error and the sample count.
 *
 * Interleaving: a round is one tinybench run of every task, in an order rotated by the round number, so drift on
 * a shared machine (another process, the clock) hits every side alike; ratios are ratios of the pooled medians.
 * A task either is timed by tinybench (a kernel call) or reports the figure it measured itself (`reports`: it returns
 * a number, or a record of named figures such as { ms, decode } from one generation, the primary one passed to
 * tinybench as `overriddenDuration`): whole translations, whose TTFT is taken inside the engine.
 */
import { Bench } from 'tinybench';

export interface Stats {
  p50: number;
  mean: number;
  p99: number;
  /** relative margin of error of the mean, %: the half-width of its two-sided 95 % Student t interval */
  rme: number;
  samples: number;
  /** the best sample: on a shared machine, the closest to an uncontended run (not in the standard cells) */
  min: number;
}

/** Linear interpolation between order statistics (tinybench's definition), on sorted xs. */
function quantile(sorted: number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  return lo + 1 < sorted.length ? sorted[lo] + (pos - lo) * (sorted[lo + 1] - sorted[lo]) : sorted[lo];
}

/** Two-sided 95 % Student t critical values for df 1..30 (the standard table). */
const T95 = [
  12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
  2.200985, 2.178813, 2.160369, 2.144787, 2.13145, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
  2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.04523, 2.042272,
];

/** The table up to df 30; beyond, a fourth-order Cornish-Fisher series in 1/df (error < 1e-5 there). */
function tCritical95(df: number): number {
  if (df <= T95.length) return T95[Math.max(1, df) - 1];
  const z = 1.959964;
  const z3 = z ** 3, z5 = z ** 5, z7 = z ** 7, z9 = z ** 9;
  return (
    z + (z3 + z) / (4 * df) + (5 * z5 + 16 * z3 + 3 * z) / (96 * df ** 2) +
    (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * df ** 3) +
    (79 * z9 + 776 * z7 + 1482 * z5 - 1920 * z3 - 945 * z) / (92160 * df ** 4)
  );
}

export function summarize(xs: readonly number[]): Stats {
  const n = xs.length;
  if (n === 0) return { p50: NaN, mean: NaN, p99: NaN, rme: NaN, samples: 0, min: NaN };
  const s = [...xs].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / n;
  const variance = n > 1 ? s.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1) : 0;
  const moe = n > 1 ? (Math.sqrt(variance / n) * tCritical95(n - 1)) : 0;
  return { p50: quantile(s, 0.5), mean, p99: quantile(s, 0.99), rme: mean === 0 ? Infinity : (100 * moe) / Math.abs(mean), samples: n, min: s[0] };
}

/** Ratio of the medians. */
export function ratioOf(a: Stats, b: Stats): number {
  return a.p50 / b.p50;
}

export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return '-';
  return ms < 0.1 ? ms.toFixed(4) : ms < 10 ? ms.toFixed(3) : ms < 1000 ? ms.toFixed(1) : ms.toFixed(0);
}

/** The five statistics as table cells (ms), in the order of STAT_HEADER. */
export const STAT_HEADER = ['p50', 'mean', 'p99', 'rme', 'n'];
export function statCells(s: Stats): string[] {
  return [fmtMs(s.p50), fmtMs(s.mean), fmtMs(s.p99), Number.isFinite(s.rme) ? `±${s.rme.toFixed(1)}%` : '-', String(s.samples)];
}

/** Left-aligned first column, the rest right-aligned, each as wide as its widest cell. */
export function formatTable(header: string[], rows: string[][], indent = '  '): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => indent + r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

export type Figures = Record<string, number>;

export interface Contender {
  name: string;
  /** Timed by tinybench (figure 'ms', whatever it returns) unless `reports` is set. */
  fn: () => unknown;
  async?: boolean;
  /**
   * fn returns the figure it measured itself (a number: figure 'ms'), or several named figures from one call, of
   * which the plan's `primary` is tinybench's sample.
   */
  reports?: boolean;
}

export interface Plan {
  rounds: number;
  /** iterations of each task per round: exactly this many when timeMs is 0 (whole translations), else the minimum */
  iterations: number;
  /** tinybench's time budget per task per round, ms (0: a fixed iteration count) */
  timeMs: number;
  /** tinybench warm-up iterations of each task, before the first round only */
  warmup: number;
  /** the figure a record-returning task hands tinybench as its sample */
  primary?: string;
}

/** Runs the contenders in interleaved rounds; returns each one's pooled samples per figure. */
export async function interleave(contenders: readonly Contender[], plan: Plan): Promise<Map<string, Map<string, number[]>>> {
  const out = new Map<string, Map<string, number[]>>(contenders.map((c) => [c.name, new Map()]));
  const push = (name: string, fig: string, v: number) => {
    const m = out.get(name)!;
    let a = m.get(fig);
    if (!a) m.set(fig, (a = []));
    a.push(v);
  };
  const primary = plan.primary ?? 'ms';
  for (let r = 0; r < plan.rounds; r++) {
    const warm = r === 0 && plan.warmup > 0;
    const bench = new Bench({
      time: plan.timeMs, iterations: plan.iterations, retainSamples: true, throws: true,
      warmup: warm, warmupIterations: plan.warmup, warmupTime: 0,
    });
    /** whether samples are being kept (tinybench's run phase, not its warm-up) */
    let keeping = false;
    const selfTimed = new Set<string>();
    for (let k = 0; k < contenders.length; k++) {
      const c = contenders[(k + r) % contenders.length];
      const toSample = (v: unknown): unknown => {
        if (!c.reports) return undefined;
        selfTimed.add(c.name);
        const figs: Figures = typeof v === 'number' ? { ms: v } : (v as Figures);
        if (keeping) for (const [f, x] of Object.entries(figs)) push(c.name, f, x);
        const d = figs[primary] ?? figs.ms;
        if (!(d >= 0)) throw new Error(`${c.name}: figure '${primary}' missing or negative (${d})`);
        return { overriddenDuration: d };
      };
      const hooks = { beforeAll: (mode?: string) => void (keeping = mode === 'run'), async: c.async ?? false };
      if (c.async) bench.add(c.name, async () => toSample(await c.fn()), hooks);
      else bench.add(c.name, () => toSample(c.fn()), hooks);
    }
    await bench.run();
    for (const t of bench.tasks) {
      const res = t.result;
      if (res.state !== 'completed' || !res.latency.samples) throw new Error(`${t.name}: benchmark ${res.state}`);
      if (!selfTimed.has(t.name)) for (const v of res.latency.samples) push(t.name, 'ms', v);
    }
  }
  return out;
}

/** interleave, then the statistics of one figure per contender. */
export async function interleaveStats(contenders: readonly Contender[], plan: Plan, figure = plan.primary ?? 'ms'): Promise<Map<string, Stats>> {
  const s = await interleave(contenders, plan);
  return new Map([...s].map(([name, figs]) => [name, summarize(figs.get(figure) ?? [])]));
}
