/**
 * Kernel benchmark: chimera vs onnxruntime-node single-op graphs, same weights, inputs and thread count.
 *
 *   npm run bench:kernels -- [--threads N] [--quick] [--filter REGEX] [--json FILE]
 *   CHIMERA_ISA=avx2 npm run bench:kernels        # force a kernel path (read by the addon at load)
 *
 * Each row warms both sides up, then runs R rounds; a round is one tinybench run of each side, the order
 * alternating between rounds so that drift on this shared machine hits both (bench/stats.ts, shared with
 * bench:e2e and bench:ttft). Samples are pooled over the rounds; each side is reported as p50, mean, p99,
 * relative margin of error and sample count, and the ratio is of the medians. ORT is called as a user would:
 * `await session.run(feeds)`, which includes the binding's setImmediate hop and a fresh output tensor per call.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import {
  addLayerNorm, getIsa, getThreads, layerNorm, linear, linearInt8, packFp32Weights, packInt8Weights, setThreads,
} from '../src/index';
import { native } from '../src/native';
import { GraphBuilder } from '../src/onnx/writer';
import { Rng } from './rng';
import { interleaveStats, STAT_HEADER, statCells, type Stats } from './stats';

/** How long each peak probe spins: long enough for the clock to settle, short beside the benchmark. */
const PROBE_MS = 300;

/** Per-core ceilings of this machine, measured at start-up by the native peak probe (never hard-coded). */
interface Ceilings {
  /** the int8 instruction sequence of the ISA in use: 'vnni', 'avxvnni', 'avx2-int8' */
  int8Kind: string;
  int8: number;
  fp32: number;
}

function int8ProbeKind(isa: string): 'vnni' | 'avxvnni' | 'avx2-int8' | null {
  if (isa === 'avx512vnni' || isa === 'amx') return 'vnni';
  if (isa === 'avxvnni') return 'avxvnni';
  if (isa === 'avx2') return 'avx2-int8';
  return null;
}

function measureCeilings(isa: string): Ceilings {
  const nb = native();
  const kind = int8ProbeKind(isa);
  return {
    int8Kind: kind ?? 'none',
    int8: kind ? nb.peakProbe(kind, PROBE_MS) : NaN,
    fp32: isa === 'scalar' ? NaN : nb.peakProbe('fma', PROBE_MS),
  };
}

interface Args {
  json: string | null;
  threads: number;
  quick: boolean;
  filter: RegExp | null;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { json: null, threads: 1, quick: false, filter: null };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === '--json') a.json = value();
    else if (flag === '--threads') a.threads = Number(value());
    else if (flag === '--quick') a.quick = true;
    else if (flag === '--filter') a.filter = new RegExp(value());
    else throw new Error(`unknown flag ${flag} (flags: --json FILE, --threads N, --quick, --filter REGEX)`);
  }
  if (!Number.isInteger(a.threads) || a.threads < 1) throw new Error('--threads must be a positive integer');
  return a;
}

interface Row {
  name: string;
  m: number;
  k: number;
  n: number;
  ours_ms: number;
  ort_ms: number;
  ours: Stats;
  ort: Stats;
  ratio: number;
  /** ours; null for the norms, which do no multiply-accumulates */
  gmacs: number | null;
}

/** One benchmark row: both sides prepared, plus outputs to sanity-check that they compute the same thing. */
interface Pair {
  ours: () => void;
  ort: () => Promise<unknown>;
  oursOut: Float32Array;
  ortOut: () => Promise<Float32Array>;
  /** relative L2 difference above which the two sides are reported as disagreeing */
  maxRelErr: number;
}

interface Budget {
  rounds: number;
  /** tinybench time budget per side per round, ms */
  timeMs: number;
  /** minimum iterations per side per round */
  iterations: number;
  warmups: number;
}

function budgetFor(quick: boolean, heavy: boolean): Budget {
  if (quick) return { rounds: 2, timeMs: 10, iterations: 2, warmups: 1 };
  return heavy ? { rounds: 5, timeMs: 300, iterations: 3, warmups: 2 } : { rounds: 5, timeMs: 400, iterations: 10, warmups: 5 };
}

async function measure(p: Pair, b: Budget): Promise<{ ours: Stats; ort: Stats }> {
  const s = await interleaveStats(
    [
      { name: 'ours', fn: p.ours },
      { name: 'ort', fn: p.ort, async: true },
    ],
    { rounds: b.rounds, iterations: b.iterations, timeMs: b.timeMs, warmup: b.warmups },
  );
  return { ours: s.get('ours')!, ort: s.get('ort')! };
}

function relErr(got: Float32Array, want: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

// ------------------------------------------------------------------------------------------------ graphs

function sessionOptions(threads: number): ort.InferenceSession.SessionOptions {
  return { graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential' };
}

function lnGraph(cols: number, gamma: Float32Array, beta: Float32Array, withAdd: boolean): Uint8Array {
  const g = new GraphBuilder()
    .input('x', 'float32', ['M', cols])
    .initializer('gamma', gamma, [cols])
    .initializer('beta', beta, [cols])
    .output('y', 'float32', ['M', cols]);
  if (withAdd) g.input('skip', 'float32', ['M', cols]).node('Add', ['x', 'skip'], ['sum']);
  return g.node('LayerNormalization', [withAdd ? 'sum' : 'x', 'gamma', 'beta'], ['y'], { axis: -1, epsilon: { float: 1e-5 } }).toBytes();
}

/** W is [N, K] (PyTorch layout); ONNX MatMul wants [K, N]. */
function transpose<T extends Float32Array | Int8Array>(w: T, n: number, k: number, make: (len: number) => T): T {
  const t = make(w.length);
  for (let r = 0; r < n; r++) for (let c = 0; c < k; c++) t[c * n + r] = w[r * k + c];
  return t;
}

function fp32LinearGraph(w: Float32Array, bias: Float32Array, n: number, k: number): Uint8Array {
  return new GraphBuilder()
    .input('x', 'float32', ['M', k])
    .initializer('W', transpose(w, n, k, (l) => new Float32Array(l)), [k, n])
    .initializer('bias', bias, [n])
    .node('MatMul', ['x', 'W'], ['xw'])
    .node('Add', ['xw', 'bias'], ['y'])
    .output('y', 'float32', ['M', n])
    .toBytes();
}

/** What onnxruntime's quantize_dynamic emits for MatMul + Add, with a per-tensor symmetric int8 weight. */
function int8LinearGraph(w: Float32Array, bias: Float32Array, n: number, k: number): Uint8Array {
  let absMax = 0;
  for (let i = 0; i < w.length; i++) absMax = Math.max(absMax, Math.abs(w[i]));
  const scale = Math.fround(absMax / 127);
  const q = new Int8Array(w.length);
  for (let i = 0; i < w.length; i++) q[i] = Math.max(-127, Math.min(127, roundHalfEven(w[i] / scale)));
  return new GraphBuilder()
    .input('x', 'float32', ['M', k])
    .initializer('W_q', transpose(q, n, k, (l) => new Int8Array(l)), [k, n])
    .initializer('W_scale', Float32Array.of(scale), [])
    .initializer('W_zp', Int8Array.of(0), [])
    .initializer('bias', bias, [n])
    .node('DynamicQuantizeLinear', ['x'], ['x_q', 'x_scale', 'x_zp'])
    .node('MatMulInteger', ['x_q', 'W_q', 'x_zp', 'W_zp'], ['acc'])
    .node('Cast', ['acc'], ['acc_f'], { to: 1 })
    .node('Mul', ['x_scale', 'W_scale'], ['scale'])
    .node('Mul', ['acc_f', 'scale'], ['xw'])
    .node('Add', ['xw', 'bias'], ['y'])
    .output('y', 'float32', ['M', n])
    .toBytes();
}

function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

// ------------------------------------------------------------------------------------------------ row groups

/** Rows sharing weights and ORT sessions; `rows` yields the per-M pairs. */
interface Group {
  name: string;
  k: number;
  n: number;
  ms: number[];
  heavy: boolean;
  macs: boolean;
  prepare(threads: number): Promise<{ pair(m: number): Pair; release(): Promise<void> }>;
}

const LN_ROWS = [1, 32, 128];
const LINEAR_ROWS = [1, 32, 128];
const LINEAR_SHAPES: [number, number][] = [
  [512, 512],
  [512, 2048],
  [2048, 512],
  [512, 58101],
];

function normGroup(withAdd: boolean): Group {
  const cols = 512;
  return {
    name: withAdd ? 'add_layer_norm' : 'layer_norm',
    k: cols,
    n: cols,
    ms: LN_ROWS,
    heavy: false,
    macs: false,
    async prepare(threads) {
      const rng = new Rng(withAdd ? 12 : 11);
      const gamma = rng.normals(cols, 0.2, 1);
      const beta = rng.normals(cols, 0.2);
      const session = await ort.InferenceSession.create(lnGraph(cols, gamma, beta, withAdd), sessionOptions(threads));
      return {
        pair(m) {
          const x = rng.normals(m * cols);
          const skip = rng.normals(m * cols);
          const out = new Float32Array(m * cols);
          const feeds: Record<string, ort.Tensor> = { x: new ort.Tensor('float32', x, [m, cols]) };
          if (withAdd) feeds.skip = new ort.Tensor('float32', skip, [m, cols]);
          const ours = withAdd
            ? () => void addLayerNorm(x, skip, cols, gamma, beta, { out })
            : () => void layerNorm(x, cols, gamma, beta, { out });
          return {
            ours,
            ort: () => session.run(feeds),
            oursOut: out,
            ortOut: async () => (await session.run(feeds)).y.data as Float32Array,
            maxRelErr: 1e-5,
          };
        },
        release: () => session.release(),
      };
    },
  };
}

function linearGroup(int8: boolean, k: number, n: number): Group {
  return {
    name: int8 ? 'linear_int8' : 'linear_fp32',
    k,
    n,
    ms: LINEAR_ROWS,
    heavy: n > 10_000,
    macs: true,
    async prepare(threads) {
      // Same seed for the int8 and fp32 groups of a shape: both see identical weights and inputs.
      const rng = new Rng(k * 100_003 + n);
      const w = rng.normals(n * k, 1 / Math.sqrt(k));
      const bias = rng.normals(n, 0.1);
      const graph = int8 ? int8LinearGraph(w, bias, n, k) : fp32LinearGraph(w, bias, n, k);
      const session = await ort.InferenceSession.create(graph, sessionOptions(threads));
      const packedI8 = int8 ? packInt8Weights(w, n, k) : null;
      const packedF32 = int8 ? null : packFp32Weights(w, n, k);
      return {
        pair(m) {
          const x = rng.normals(m * k);
          const out = new Float32Array(m * n);
          const feeds = { x: new ort.Tensor('float32', x, [m, k]) };
          const ours = packedI8
            ? () => void linearInt8(x, m, packedI8, { bias, out })
            : () => void linear(x, m, packedF32!, { bias, out });
          return {
            ours,
            ort: () => session.run(feeds),
            oursOut: out,
            ortOut: async () => (await session.run(feeds)).y.data as Float32Array,
            // The two int8 schemes differ (ours: symmetric per-row activations, per-channel weights; ORT:
            // asymmetric per-tensor activations, per-tensor weights), so only gross disagreement is flagged.
            maxRelErr: int8 ? 0.05 : 1e-4,
          };
        },
        release: () => session.release(),
      };
    },
  };
}

function allGroups(): Group[] {
  return [
    normGroup(false),
    normGroup(true),
    ...LINEAR_SHAPES.map(([k, n]) => linearGroup(true, k, n)),
    ...LINEAR_SHAPES.map(([k, n]) => linearGroup(false, k, n)),
  ];
}

// ------------------------------------------------------------------------------------------------ output

/** Widths of the p50, mean, p99, rme and n cells. */
const STAT_W = [9, 9, 9, 7, 5];

function printRow(r: Row, threads: number, c: Ceilings): void {
  const ceiling = (r.name === 'linear_fp32' ? c.fp32 : c.int8) * threads;
  const cells = [
    r.name.padEnd(15),
    String(r.m).padStart(4),
    String(r.k).padStart(5),
    String(r.n).padStart(6),
    ...statCells(r.ours).map((c, i) => c.padStart(STAT_W[i])),
    ...statCells(r.ort).map((c, i) => c.padStart(STAT_W[i])),
    r.ratio.toFixed(2).padStart(6),
    (r.gmacs === null ? '-' : r.gmacs.toFixed(1)).padStart(7),
    (r.gmacs === null || !(ceiling > 0) ? '-' : `${((100 * r.gmacs) / ceiling).toFixed(1)}%`).padStart(8),
  ];
  console.log(cells.join('  '));
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  setThreads(args.threads);
  const ortVersion = ort.env.versions.node ?? ort.env.versions.common;
  const isa = getIsa();

  console.log(`ort version: onnxruntime-node ${ortVersion}`);
  console.log(`threads: ${getThreads()} (ORT intraOp ${args.threads}, interOp 1, sequential, graphOptimizationLevel all)`);
  console.log(`isa: ${isa}`);
  console.log(`cpu: ${os.cpus()[0]?.model ?? 'unknown'} (${os.cpus().length} logical CPUs)`);
  const ceilings = measureCeilings(isa);
  console.log(
    `ceilings (peak probe, one core x ${args.threads}): int8 ${(ceilings.int8 * args.threads).toFixed(1)} GMAC/s (${ceilings.int8Kind}), ` +
      `fp32 ${(ceilings.fp32 * args.threads).toFixed(1)} GFMA/s; ratio = ort_ms / ours_ms`,
  );
  if (args.quick) console.log('quick mode: few iterations, figures are indicative only');
  console.log('');
  const side = (who: string) => STAT_HEADER.map((h, i) => `${who}_${h}`.padStart(STAT_W[i]));
  console.log('(ms; p50 = median, rme = relative margin of error of the mean at 95 %, n = samples; ratio of the medians)');
  console.log(['name'.padEnd(15), '   m', '    k', '     n', ...side('ours'), ...side('ort'), ' ratio', ' GMAC/s', '%ceiling'].join('  '));

  const rows: Row[] = [];
  const warnings: string[] = [];
  for (const g of allGroups()) {
    const ms = g.ms.filter((m) => !args.filter || args.filter.test(`${g.name}:${m}x${g.k}x${g.n}`));
    if (ms.length === 0) continue;
    const prepared = await g.prepare(args.threads);
    for (const m of ms) {
      const p = prepared.pair(m);
      p.ours();
      const err = relErr(p.oursOut, await p.ortOut());
      if (!(err <= p.maxRelErr))
        warnings.push(`${g.name} ${m}x${g.k}x${g.n}: ours and ORT differ, relative L2 error ${err.toExponential(2)}`);
      const t = await measure(p, budgetFor(args.quick, g.heavy));
      const row: Row = {
        name: g.name, m, k: g.k, n: g.n,
        ours_ms: t.ours.p50, ort_ms: t.ort.p50, ours: t.ours, ort: t.ort, ratio: t.ort.p50 / t.ours.p50,
        gmacs: g.macs ? (m * g.k * g.n) / (t.ours.p50 * 1e-3) / 1e9 : null,
      };
      rows.push(row);
      printRow(row, args.threads, ceilings);
    }
    await prepared.release();
  }
  for (const w of warnings) console.log(`WARNING: ${w}`);

  if (args.json) {
    fs.mkdirSync(path.dirname(path.resolve(args.json)), { recursive: true });
    fs.writeFileSync(args.json, JSON.stringify({ ort_version: ortVersion, threads: args.threads, isa, ceilings, rows }, null, 2) + '\n');
    console.log(`wrote ${args.json}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
