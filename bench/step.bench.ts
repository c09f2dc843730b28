/**
 * npm run bench:step — one decoder step (all layers + LM head) of the OPUS-MT geometry (d 512, 6 + 6 layers,
 * 8 heads, ffn 2048, vocab 58101; deterministic random weights generated into .tmp/models, never committed) for
 * a batch of rows, each at a realistic position (16) against its own source of 24 tokens: what continuous
 * batching runs every tick. Reports ms per step (median of interleaved repetitions), the GEMM multiply-adds per
 * step counted from the geometry, GMAC/s, and the share of the machine's int8 ceiling (measured at run time by
 * the native peak probe, times the thread count: the int8 ceiling for int8, the fp32 FMA ceiling otherwise).
 *
 *   npm run bench:step -- [--json FILE] [--threads 1,2] [--rows 1,8,32,64] [--tiers int8,fp32] [--reps N] [--model DIR]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MarianModel, type Precision } from '../src/marian';
import { getIsa, getThreads, setThreads } from '../src/kernels';
import { makeModel } from '../src/model/make-model';
import { native } from '../src/native';

/** Where each row sits: a decode position typical of a sentence in progress, and a typical source length. */
const STEP_POS = 16;
const SRC_LEN = 24;
/** How long the peak probe runs, per probe (long enough for the clock to settle, short enough to repeat). */
const PROBE_MS = 300;

export interface StepRow {
  tier: Precision;
  threads: number;
  rows: number;
  ms: number;
  gemm_macs: number;
  attn_macs: number;
  gmacs: number;
  ceiling_gmacs: number | null;
  pct_of_ceiling: number | null;
}

export interface StepReport {
  isa: string;
  /** int8 ceiling (VNNI, else AVX2 int8) and fp32 FMA ceiling, GMAC/s of one core */
  probe: { kind: string; gmacs_per_core: number; fma_gmacs_per_core: number } | null;
  rows: StepRow[];
}

export interface StepOptions {
  modelDir?: string;
  threads?: number[];
  rows?: number[];
  tiers?: Precision[];
  /** interleaved repetitions per configuration (the median is reported) */
  reps?: number;
  log?: (line: string) => void;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function defaultModelDir(): Promise<string> {
  const dir = path.resolve(__dirname, '..', '.tmp', 'models', 'opus-mt-en-de-seed1');
  if (!fs.existsSync(path.join(dir, 'model.safetensors'))) {
    console.log(`generating the OPUS-MT-geometry model in ${dir} (once)...`);
    await makeModel({ preset: 'opus-mt-en-de', seed: 1, out: dir });
  }
  return dir;
}

/** GEMM multiply-adds of one step for one row: per decoder layer qkv (3d²), out, cross-q, cross-out (d² each),
 * fc1 and fc2 (d·ffn each); then the LM head (d·vocab). The cross K/V projection runs at encode time, not here. */
function gemmMacsPerRow(d: number, ffn: number, layers: number, vocab: number): number {
  return layers * (6 * d * d + 2 * d * ffn) + d * vocab;
}
/** Attention multiply-adds of one row: q·k and p·v over every key, self (pos + 1 keys) and cross (source). */
function attnMacsPerRow(d: number, layers: number, pos: number, src: number): number {
  return layers * 2 * d * (pos + 1 + src);
}

interface Handles {
  model: object;
  state: object;
  vocab: number;
  d: number;
  ffn: number;
  layers: number;
}

function prepare(m: MarianModel, maxRows: number): Handles {
  const nb = native();
  const model = (m as unknown as { handle: object }).handle;
  const cfg = m.config;
  const state = nb.marianState(model, maxRows, STEP_POS + 1, maxRows, SRC_LEN);
  // Sources: deterministic ids, each row its own.
  const ids = new Int32Array(maxRows * SRC_LEN);
  let s = 12345;
  for (let i = 0; i < ids.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    ids[i] = (i + 1) % SRC_LEN === 0 ? cfg.eosId : 3 + (s % (cfg.vocabSize - 4));
  }
  nb.marianEncode(model, state, ids, new Int32Array(maxRows).fill(SRC_LEN), SRC_LEN, Int32Array.from({ length: maxRows }, (_, i) => i), null);
  // Fill positions 0..STEP_POS-1 of every slot with real steps, so the timed step attends to real history.
  const logits = new Float32Array(maxRows * cfg.vocabSize);
  const slots = Int32Array.from({ length: maxRows }, (_, i) => i);
  for (let p = 0; p < STEP_POS; p++) {
    const tok = Int32Array.from({ length: maxRows }, (_, i) => 3 + ((i * 7919 + p * 104729) % (cfg.vocabSize - 4)));
    nb.marianStep(model, state, tok, slots, new Int32Array(maxRows).fill(p), slots, logits);
  }
  return { model, state, vocab: cfg.vocabSize, d: cfg.dModel, ffn: cfg.decoderFfn, layers: cfg.decoderLayers };
}

/** Measures every (tier, threads, rows) configuration; rows interleaved within each repetition. */
export async function stepReport(opts: StepOptions = {}): Promise<StepReport> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const dir = opts.modelDir ?? (await defaultModelDir());
  const threadList = opts.threads ?? [1, 2];
  const rowList = opts.rows ?? [1, 8, 32, 64];
  const tiers = opts.tiers ?? ['int8', 'fp32'];
  const nb = native() as ReturnType<typeof native> & { peakProbe?: (kind: string, ms: number) => number };
  const isa = getIsa();
  let probe: StepReport['probe'] = null;
  if (typeof nb.peakProbe === 'function') {
    const kind = isa === 'avx512vnni' || isa === 'amx' ? 'vnni' : isa === 'avxvnni' ? 'avxvnni' : isa === 'avx2' ? 'avx2-int8' : 'fma';
    probe = { kind, gmacs_per_core: nb.peakProbe(kind, PROBE_MS), fma_gmacs_per_core: nb.peakProbe('fma', PROBE_MS) };
    log(`peak probe (one core): ${kind} ${probe.gmacs_per_core.toFixed(1)} GMAC/s, fma ${probe.fma_gmacs_per_core.toFixed(1)} GFMA/s`);
  } else {
    log('peak probe: not in this build');
  }
  const prevThreads = getThreads();
  const out: StepRow[] = [];
  const maxRows = Math.max(...rowList);
  for (const tier of tiers) {
    const m = await MarianModel.load(dir, { precision: tier });
    const h = prepare(m, maxRows);
    const reps = opts.reps ?? (tier === 'int8' ? 21 : 9);
    const gemmRow = gemmMacsPerRow(h.d, h.ffn, h.layers, h.vocab);
    const attnRow = attnMacsPerRow(h.d, h.layers, STEP_POS, SRC_LEN);
    const bufs = rowList.map((r) => ({
      rows: r,
      tok: Int32Array.from({ length: r }, (_, i) => 3 + ((i * 31) % (h.vocab - 4))),
      slots: Int32Array.from({ length: r }, (_, i) => i),
      pos: new Int32Array(r).fill(STEP_POS),
      logits: new Float32Array(r * h.vocab),
    }));
    for (const t of threadList) {
      setThreads(t);
      const times = bufs.map(() => [] as number[]);
      const step = (b: (typeof bufs)[number]) =>
        nb.marianStep(h.model, h.state, b.tok, b.slots, b.pos, b.slots, b.logits);
      for (const b of bufs) for (let w = 0; w < 3; w++) step(b); // warm-up: scratch grows, workers start
      for (let rep = 0; rep < reps; rep++) {
        bufs.forEach((b, i) => {
          const t0 = process.hrtime.bigint();
          step(b);
          times[i].push(Number(process.hrtime.bigint() - t0) / 1e6);
        });
      }
      bufs.forEach((b, i) => {
        const ms = median(times[i]);
        const gemm = gemmRow * b.rows;
        const gmacs = gemm / (ms * 1e6);
        // int8 against the int8 ceiling; fp32 / fp16 (computed in fp32) against the FMA ceiling
        const ceiling = probe ? (tier === 'int8' ? probe.gmacs_per_core : probe.fma_gmacs_per_core) * t : null;
        const row: StepRow = {
          tier, threads: t, rows: b.rows, ms, gemm_macs: gemm, attn_macs: attnRow * b.rows, gmacs,
          ceiling_gmacs: ceiling, pct_of_ceiling: ceiling ? (100 * gmacs) / ceiling : null,
        };
        out.push(row);
        log(
          `${tier.padEnd(5)} threads ${t} rows ${String(b.rows).padStart(3)}: ${ms.toFixed(3).padStart(8)} ms/step  ` +
            `${(gemm / 1e9).toFixed(3)} GMAC  ${gmacs.toFixed(1).padStart(6)} GMAC/s` +
            (ceiling ? `  ${row.pct_of_ceiling!.toFixed(1)} % of ${ceiling.toFixed(0)} GMAC/s` : ''),
        );
      });
    }
  }
  setThreads(prevThreads);
  return { isa, probe, rows: out };
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const list = (s: string | undefined) => s?.split(',').map(Number);
  const report = await stepReport({
    modelDir: arg('model'),
    threads: list(arg('threads')),
    rows: list(arg('rows')),
    tiers: arg('tiers')?.split(',') as Precision[] | undefined,
    reps: arg('reps') ? Number(arg('reps')) : undefined,
  });
  const json = arg('json');
  if (json) {
    fs.mkdirSync(path.dirname(path.resolve(json)), { recursive: true });
    fs.writeFileSync(json, JSON.stringify(report, null, 2));
    console.log(`wrote ${json}`);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(__filename)) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
