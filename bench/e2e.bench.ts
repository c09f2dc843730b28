/**
 * npm run bench:e2e — whole translations, chimera against stock onnxruntime-node running the same weights
 * (exported by `chimera export-onnx` in Optimum's layout) with the same search (bench/ort-marian.ts).
 *
 *   npm run bench:e2e -- [--json FILE] [--quick] [--threads 1,2] [--models opus,m30k] [--runs N]
 *
 * --quick: S = 32 only, fewer rounds, 16 new tokens, 1 thread unless --threads is given (about a minute).
 *
 * Models: the OPUS-MT geometry (d 512, 6+6 layers, vocab 58101; deterministic random weights generated on demand
 * into .tmp/models, never committed) and ../shared/models/marian-m30k-en-de (skipped when absent).
 * Engines: chimera fp32, fp16, int8 and ORT fp32, ORT int8 (quantize_dynamic's DynamicQuantizeLinear +
 * MatMulInteger pattern, per-channel weight scales).
 * Metrics (greedy and beam 4):
 * - ttft_ms: encoder + first decoder step + choosing the token, for source lengths S ∈ {8, 32, 128};
 * - decode_ms_per_token: (total − ttft) / (steps − 1) for S = 32 with exactly N new tokens (eos banned until N);
 *   for beam 4 this is one step of the 4 live beams;
 * - sentence_ms: a whole translation. OPUS geometry: S = 32 and exactly N = 32 new tokens (random weights never
 *   stop on their own). m30k: mean over the first validation sentences with natural stopping (src_len = their
 *   mean length).
 * Protocol (../shared/REFERENCE.md §2): same weights, inputs, thread count (chimera setThreads(T); ORT
 * intraOpNumThreads T, interOpNumThreads 1, sequential, graphOptimizationLevel 'all'); warm-up rounds; the five
 * engines interleaved round-robin (the order rotates each round); medians. ratio = ours_ms / ort_ms (< 1: we are
 * faster).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { getIsa, setThreads } from '../src/kernels';
import { MarianModel, type Precision } from '../src/marian';
import { makeModel } from '../src/model/make-model';
import { exportMarianOnnx } from '../src/onnx/export-marian';
import { OrtMarian } from './ort-marian';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}
const quick = process.argv.includes('--quick');
const threadList = (arg('threads') ?? (quick ? '1' : '1,2')).split(',').map(Number);
const modelList = (arg('models') ?? 'opus,m30k').split(',');
const jsonOut = arg('json');
const ROOT = path.resolve(__dirname, '..');
const SHARED_MODEL = path.resolve(ROOT, '..', 'shared', 'models', 'marian-m30k-en-de');
const VAL_EN = path.resolve(ROOT, '..', 'shared', 'data', 'multi30k', 'val.en');

const TIERS: Precision[] = ['fp32', 'fp16', 'int8'];
const ORT_TIERS = ['fp32', 'int8'] as const;
type OrtTier = (typeof ORT_TIERS)[number];
type Search = 'greedy' | 'beam4';
type Metric = 'ttft_ms' | 'decode_ms_per_token' | 'sentence_ms';

const SRC_LENS = quick ? [32] : [8, 32, 128];
const TTFT_RUNS = Number(arg('runs') ?? (quick ? 7 : 15));
const DECODE_RUNS = quick ? 3 : 7;
const WARM = quick ? 1 : 3;
const NEW_TOKENS = quick ? 16 : 32;
const M30K_SENTENCES = quick ? 4 : 8;

export interface Row {
  model: string;
  tier: Precision;
  ort_tier: OrtTier;
  search: Search;
  src_len: number;
  metric: Metric;
  threads: number;
  ours_ms: number;
  ort_ms: number;
  ratio: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** A deterministic source of `len` ids (eos last) that avoids eos, unk and pad. */
function source(len: number, vocab: number, eos: number, seed: number): number[] {
  let s = seed >>> 0;
  const ids: number[] = [];
  for (let i = 0; i < len - 1; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    ids.push(2 + (s % (vocab - 3)));
  }
  ids.push(eos);
  return ids;
}

async function opusDir(): Promise<string> {
  const dir = path.join(ROOT, '.tmp', 'models', 'opus-mt-en-de-seed1');
  if (!fs.existsSync(path.join(dir, 'model.safetensors'))) {
    console.log(`generating the OPUS-MT-geometry model in ${dir} (once)...`);
    makeModel({ preset: 'opus-mt-en-de', seed: 1, out: dir });
  }
  return dir;
}

/** Exports (once per source model version) the fp32 and int8 ONNX graphs into .tmp/onnx/<name>-<tier>. */
function onnxDir(modelDir: string, name: string, tier: OrtTier): string {
  const out = path.join(ROOT, '.tmp', 'onnx', `${name}-${tier}`);
  const st = fs.statSync(path.join(modelDir, 'model.safetensors'));
  const exporter = fs.statSync(path.join(ROOT, 'src', 'onnx', 'export-marian.ts'));
  const stamp = JSON.stringify({ modelDir, size: st.size, mtime: st.mtimeMs, exporter: exporter.mtimeMs });
  const stampFile = path.join(out, '.chimera-export.json');
  if (!fs.existsSync(stampFile) || fs.readFileSync(stampFile, 'utf8') !== stamp) {
    const t0 = performance.now();
    exportMarianOnnx(modelDir, out, { int8: tier === 'int8' });
    fs.writeFileSync(stampFile, stamp);
    console.log(`exported ${name} ${tier} ONNX to ${out} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  return out;
}

interface Engine {
  name: string;
  kind: 'ours' | 'ort';
  tier: string;
  /** Runs one generation; returns its timings. */
  run(ids: number[], opts: { beam: number; maxLength: number; minNewTokens?: number }): Promise<{ ttftMs: number; totalMs: number; tokens: number }>;
}

function oursEngine(m: MarianModel, tier: Precision): Engine {
  return {
    name: `chimera ${tier}`, kind: 'ours', tier,
    run: async (ids, o) => {
      const r = m.generate([ids], o);
      return { ttftMs: r.ttftMs, totalMs: r.totalMs, tokens: r.ids[0].length };
    },
  };
}

function ortEngine(m: OrtMarian, tier: OrtTier): Engine {
  return {
    name: `ORT ${tier}`, kind: 'ort', tier,
    run: async (ids, o) => {
      const r = await m.generate([ids], o);
      return { ttftMs: r.ttftMs, totalMs: r.totalMs, tokens: r.ids[0].length };
    },
  };
}

/**
 * Interleaved measurement: `warm` discarded rounds, then `runs` rounds; each round runs every engine once, in an
 * order rotated by the round number. Returns the median of `pick` per engine.
 */
async function measure(engines: Engine[], warm: number, runs: number, once: (e: Engine) => Promise<number>): Promise<Map<Engine, number>> {
  const samples = new Map<Engine, number[]>(engines.map((e) => [e, []]));
  for (let r = 0; r < warm + runs; r++) {
    for (let k = 0; k < engines.length; k++) {
      const e = engines[(k + r) % engines.length];
      const v = await once(e);
      if (r >= warm) samples.get(e)!.push(v);
    }
  }
  return new Map(engines.map((e) => [e, median(samples.get(e)!)]));
}

async function benchModel(name: string, dir: string, rows: Row[], sentences: number[][] | null): Promise<void> {
  const onnx = { fp32: onnxDir(dir, name, 'fp32'), int8: onnxDir(dir, name, 'int8') };
  const ours = new Map<Precision, MarianModel>();
  for (const tier of TIERS) ours.set(tier, await MarianModel.load(dir, { precision: tier }));
  const cfg = ours.get('fp32')!.config;
  for (const T of threadList) {
    setThreads(T);
    const ort = new Map<OrtTier, OrtMarian>();
    for (const t of ORT_TIERS) ort.set(t, await OrtMarian.create(onnx[t], { threads: T }));
    const engines: Engine[] = [
      ...TIERS.map((t) => oursEngine(ours.get(t)!, t)),
      ...ORT_TIERS.map((t) => ortEngine(ort.get(t)!, t)),
    ];
    const table: { metric: Metric; search: Search; S: number; med: Map<Engine, number> }[] = [];
    const record = (metric: Metric, search: Search, S: number, med: Map<Engine, number>) => {
      table.push({ metric, search, S, med });
      for (const o of engines.filter((e) => e.kind === 'ours'))
        for (const r of engines.filter((e) => e.kind === 'ort')) {
          const a = med.get(o)!, b = med.get(r)!;
          rows.push({ model: name, tier: o.tier as Precision, ort_tier: r.tier as OrtTier, search, src_len: S, metric, threads: T, ours_ms: a, ort_ms: b, ratio: a / b });
        }
      const cells = engines.map((e) => `${e.name} ${med.get(e)!.toFixed(2)}`).join(' | ');
      console.log(`  ${metric.padEnd(19)} ${search.padEnd(6)} S=${String(S).padEnd(4)} ${cells}`);
    };
    console.log(`\n${name}, ${T} thread${T > 1 ? 's' : ''} (medians, ms):`);
    for (const search of ['greedy', 'beam4'] as Search[]) {
      const beam = search === 'greedy' ? 1 : 4;
      for (const S of SRC_LENS) {
        const ids = source(S, cfg.vocabSize, cfg.eosId, 1000 + S);
        record('ttft_ms', search, S, await measure(engines, WARM, TTFT_RUNS, async (e) => (await e.run(ids, { beam, maxLength: 1 })).ttftMs));
      }
      // decode: S = 32, exactly NEW_TOKENS tokens
      const ids = source(32, cfg.vocabSize, cfg.eosId, 77);
      const dec = new Map<Engine, number[]>(engines.map((e) => [e, []]));
      const tot = new Map<Engine, number[]>(engines.map((e) => [e, []]));
      await measure(engines, 1, DECODE_RUNS, async (e) => {
        const r = await e.run(ids, { beam, maxLength: NEW_TOKENS, minNewTokens: NEW_TOKENS });
        if (r.tokens !== NEW_TOKENS) throw new Error(`${e.name} generated ${r.tokens} tokens, expected ${NEW_TOKENS}`);
        dec.get(e)!.push((r.totalMs - r.ttftMs) / (NEW_TOKENS - 1));
        tot.get(e)!.push(r.totalMs);
        return r.totalMs;
      });
      // the warm-up round's samples are the first of each list: drop them
      const med = (m: Map<Engine, number[]>) => new Map(engines.map((e) => [e, median(m.get(e)!.slice(1))]));
      record('decode_ms_per_token', search, 32, med(dec));
      if (!sentences) record('sentence_ms', search, 32, med(tot));
      else {
        const meanLen = Math.round(sentences.reduce((s, x) => s + x.length, 0) / sentences.length);
        record('sentence_ms', search, meanLen, await measure(engines, 1, DECODE_RUNS, async (e) => {
          let sum = 0;
          for (const s of sentences) sum += (await e.run(s, { beam, maxLength: cfg.maxLength - 1 })).totalMs;
          return sum / sentences.length;
        }));
      }
    }
    // the ratio table for this thread count: ours / ORT, same-tier and int8 vs fp32
    console.log(`  ratio ours/ORT (< 1: chimera faster):`);
    for (const r of table) {
      const e = (kind: string, tier: string) => engines.find((x) => x.kind === kind && x.tier === tier)!;
      const q = (a: string, b: string) => (r.med.get(e('ours', a))! / r.med.get(e('ort', b))!).toFixed(2);
      console.log(`    ${r.metric.padEnd(19)} ${r.search.padEnd(6)} S=${String(r.S).padEnd(4)} int8/ORT-int8 ${q('int8', 'int8')}  int8/ORT-fp32 ${q('int8', 'fp32')}  fp32/ORT-fp32 ${q('fp32', 'fp32')}  fp16/ORT-fp32 ${q('fp16', 'fp32')}`);
    }
    for (const o of ort.values()) await o.release();
  }
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const ortVersion = (JSON.parse(fs.readFileSync(require.resolve('onnxruntime-node/package.json'), 'utf8')) as { version: string }).version;
  console.log(`chimera isa ${getIsa()}, onnxruntime-node ${ortVersion}, node ${process.version}, cpu ${os.cpus()[0]?.model} x${os.cpus().length}`);
  console.log(`threads ${threadList.join(',')}; ${TTFT_RUNS} TTFT rounds, ${DECODE_RUNS} decode rounds after warm-up; ${NEW_TOKENS} new tokens; ratio = ours / ORT`);
  const rows: Row[] = [];
  if (modelList.includes('opus')) await benchModel('opus-mt-en-de-geometry', await opusDir(), rows, null);
  if (modelList.includes('m30k')) {
    if (!fs.existsSync(path.join(SHARED_MODEL, 'model.safetensors'))) console.log(`\n${SHARED_MODEL} not found: skipped`);
    else {
      const m = await MarianModel.load(SHARED_MODEL);
      const lines = fs.existsSync(VAL_EN)
        ? fs.readFileSync(VAL_EN, 'utf8').split('\n').filter((l) => l.trim() !== '').slice(0, M30K_SENTENCES)
        : ['A man in a blue shirt is riding a bike.', 'Two dogs play in the snow.'];
      await benchModel('marian-m30k-en-de', SHARED_MODEL, rows, lines.map((l) => m.tokenizer!.encode(l)));
    }
  }
  console.log(`\ndone in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  if (jsonOut) {
    fs.mkdirSync(path.dirname(path.resolve(jsonOut)), { recursive: true });
    fs.writeFileSync(jsonOut, JSON.stringify({
      ort_version: ortVersion, threads: threadList, isa: getIsa(), cpu: os.cpus()[0]?.model, node: process.version,
      new_tokens: NEW_TOKENS, ratio: 'ours_ms / ort_ms', rows,
    }, null, 2));
    console.log(`wrote ${jsonOut}`);
  }
}

void main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
