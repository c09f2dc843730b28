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
 * Engines: chimera fp32, fp16, int8; ORT fp32 and both ORT int8 variants (quantize_dynamic's DynamicQuantizeLinear +
 * MatMulInteger pattern with per-channel weight scales, and with one scale per tensor, quantize_dynamic's
 * default); greedy only, transformers.js (@huggingface/transformers, when installed) fp32 and q8 over the same
 * export's onnx/ layout (merged decoder; q8 = the per-tensor int8 export), loaded from the local directory with
 * remote loading off, one sentence at a time, TTFT at its streamer's first generated token.
 * Every int8 ratio is against the faster of the two ORT int8 variants at that row, named in `ort_tier`
 * ('int8-per-channel' or 'int8-per-tensor'); fp32 and fp16 against ORT fp32. transformers.js rows have
 * `ort_tier` 'tjs-fp32' / 'tjs-q8' (ours int8 against tjs q8, ours fp32 against tjs fp32).
 * Roofline (bench/roofline.ts): at start-up the int8 and FMA peaks and the read bandwidth are measured; every greedy
 * TTFT and decode figure is printed beside its floor (MACs / peak + weight bytes / bandwidth, for the geometry,
 * the engine's tier and the thread count) and as a % of it.
 * Metrics (greedy and beam 4):
 * - ttft_ms: encoder + first decoder step + choosing the token, for source lengths S ∈ {8, 32, 128};
 * - decode_ms_per_token: (total − ttft) / (steps − 1) for S = 32 with exactly N new tokens (eos banned until N);
 *   for beam 4 this is one step of the 4 live beams;
 * - sentence_ms: a whole translation. OPUS geometry: S = 32 and exactly N = 32 new tokens (random weights never
 *   stop on their own). m30k: mean over the first validation sentences with natural stopping (src_len = their
 *   mean length).
 * Protocol (../shared/REFERENCE.md §2): same weights, inputs, thread count (chimera setThreads(T); ORT
 * intraOpNumThreads T, interOpNumThreads 1, sequential, graphOptimizationLevel 'all'); warm-up generations; the
 * engines interleaved on tinybench (bench/stats.ts, shared with bench:kernels and bench:ttft): each round is one
 * tinybench run of every engine, one whole generation each (an async task with a fixed iteration count, the figure
 * the engine timed itself as its sample), the order rotating each round. Every figure is reported as p50, mean,
 * p99, relative margin of error and sample count; ratio = ours_ms / ort_ms of the medians (< 1: we are faster).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { getIsa, setThreads } from '../src/kernels';
import { MarianModel, type Precision } from '../src/marian';
import { arg, checkFlags, onnxDir, opusDir, ORT_TIERS, type OrtTier, ROOT, source } from './fixtures';
import { OrtMarian } from './ort-marian';
import { decodeWork, Roofline, ttftWork, type Tier } from './roofline';
import { type Contender, formatTable, interleave, STAT_HEADER, statCells, type Stats, summarize } from './stats';

checkFlags({ value: ['json', 'threads', 'models', 'runs'], bool: ['quick'] });
const quick = process.argv.includes('--quick');
const threadList = (arg('threads') ?? (quick ? '1' : '1,2')).split(',').map(Number);
const modelList = (arg('models') ?? 'opus,m30k').split(',');
const jsonOut = arg('json');
const SHARED_MODEL = path.resolve(ROOT, '..', 'shared', 'models', 'marian-m30k-en-de');
const VAL_EN = path.resolve(ROOT, '..', 'shared', 'data', 'multi30k', 'val.en');

const TIERS: Precision[] = ['fp32', 'fp16', 'int8'];
type PeerTier = OrtTier | 'tjs-fp32' | 'tjs-q8';
const TJS_TIERS = ['tjs-fp32', 'tjs-q8'] as const;
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
  /** The peer: ORT fp32, the faster ORT int8 variant of the row, or transformers.js. */
  ort_tier: PeerTier;
  search: Search;
  src_len: number;
  metric: Metric;
  threads: number;
  /** the medians (p50) of ours and the peer's figure */
  ours_ms: number;
  ort_ms: number;
  ratio: number;
  /** the full statistics of both sides (ms) */
  ours: Stats;
  ort: Stats;
  /** The roofline floor of ours_ms (greedy TTFT and decode rows) and ours' % of it (floor / ours). */
  floor_ms?: number;
  pct_of_floor?: number;
}

interface Engine {
  name: string;
  kind: 'ours' | 'ort' | 'tjs';
  tier: string;
  /** The roofline tier its floor is computed at. */
  floorTier: Tier;
  /** Runs one generation; returns its timings. */
  run(ids: number[], opts: { beam: number; maxLength: number; minNewTokens?: number }): Promise<{ ttftMs: number; totalMs: number; tokens: number }>;
}

function oursEngine(m: MarianModel, tier: Precision): Engine {
  return {
    name: `chimera ${tier}`, kind: 'ours', tier, floorTier: tier,
    run: async (ids, o) => {
      const r = m.generate([ids], o);
      return { ttftMs: r.ttftMs, totalMs: r.totalMs, tokens: r.ids[0].length };
    },
  };
}

function ortEngine(m: OrtMarian, tier: OrtTier): Engine {
  return {
    name: `ORT ${tier}`, kind: 'ort', tier, floorTier: tier === 'fp32' ? 'fp32' : 'int8',
    run: async (ids, o) => {
      const r = await m.generate([ids], o);
      return { ttftMs: r.ttftMs, totalMs: r.totalMs, tokens: r.ids[0].length };
    },
  };
}

/** The machine's ceilings, measured once at start-up (main). */
let roof: Roofline;

type Tjs = typeof import('@huggingface/transformers');
let tjsModule: Tjs | null | undefined;
/** @huggingface/transformers when installed (a devDependency), else null (its rows are skipped, with the reason). */
async function loadTjs(): Promise<Tjs | null> {
  if (tjsModule === undefined) {
    try {
      tjsModule = await import('@huggingface/transformers');
      tjsModule.env.allowRemoteModels = false;
    } catch (e) {
      console.log(`transformers.js rows skipped: @huggingface/transformers is not installed (${(e as Error).message.split('\n')[0]})`);
      tjsModule = null;
    }
  }
  return tjsModule;
}

type TjsModel = { generate(o: unknown): Promise<unknown>; dispose(): Promise<unknown> };

/** transformers.js over an export directory's onnx/ layout: greedy, one sentence; TTFT at the first generated token. */
async function tjsEngine(tjs: Tjs, dir: string, tier: 'tjs-fp32' | 'tjs-q8', threads: number): Promise<Engine & { model: TjsModel }> {
  tjs.env.localModelPath = path.dirname(dir);
  const model = (await tjs.AutoModelForSeq2SeqLM.from_pretrained(path.basename(dir), {
    dtype: tier === 'tjs-q8' ? 'q8' : 'fp32', local_files_only: true,
    session_options: { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential' },
  } as Parameters<Tjs['AutoModelForSeq2SeqLM']['from_pretrained']>[1])) as unknown as TjsModel;
  return {
    name: tier === 'tjs-q8' ? 'tjs q8' : 'tjs fp32', kind: 'tjs', tier, floorTier: tier === 'tjs-q8' ? 'int8' : 'fp32', model,
    run: async (ids, o) => {
      if (o.beam !== 1) throw new Error('transformers.js rows are greedy only (its num_beams does nothing)');
      const t0 = performance.now();
      let puts = 0, ttftMs = NaN;
      // put() is called with the start token before the first step, then once per generated token
      const streamer = { put: () => { if (++puts === 2) ttftMs = performance.now() - t0; }, end: () => undefined };
      const input_ids = new tjs.Tensor('int64', BigInt64Array.from(ids, (v) => BigInt(v)), [1, ids.length]);
      const attention_mask = new tjs.Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]);
      const r = (await model.generate({
        input_ids, attention_mask, max_new_tokens: o.maxLength, do_sample: false, num_beams: 1, streamer,
        ...(o.minNewTokens ? { min_new_tokens: o.minNewTokens } : {}),
      })) as { dims: number[] };
      return { ttftMs, totalMs: performance.now() - t0, tokens: r.dims[1] - 1 };
    },
  };
}

/**
 * Interleaved measurement (bench/stats.ts): `warm` warm-up generations of every engine, then `runs` rounds; each
 * round is one tinybench run of every engine, one generation each, in an order rotated by the round number.
 * `once` returns the figures of one generation, `primary` first; returns each engine's statistics per figure.
 */
async function measure(engines: Engine[], warm: number, runs: number, once: (e: Engine) => Promise<Record<string, number>>): Promise<Map<string, Map<Engine, Stats>>> {
  const byName = new Map(engines.map((e) => [e.name, e]));
  const contenders: Contender[] = engines.map((e) => ({ name: e.name, async: true, reports: true, fn: () => once(e) }));
  const primary = 'ms';
  const samples = await interleave(contenders, { rounds: runs, iterations: 1, timeMs: 0, warmup: warm, primary });
  const out = new Map<string, Map<Engine, Stats>>();
  for (const [name, figs] of samples)
    for (const [fig, xs] of figs) {
      if (!out.has(fig)) out.set(fig, new Map());
      out.get(fig)!.set(byName.get(name)!, summarize(xs));
    }
  return out;
}

async function benchModel(name: string, dir: string, rows: Row[], sentences: number[][] | null): Promise<void> {
  const onnx = Object.fromEntries(ORT_TIERS.map((t) => [t, onnxDir(dir, name, t)])) as Record<OrtTier, string>;
  const tjs = await loadTjs();
  const ours = new Map<Precision, MarianModel>();
  // the full vocabulary, even where a shortlist.bin lies beside the model: the shortlist has its own bench (bench:shortlist)
  for (const tier of TIERS) ours.set(tier, await MarianModel.load(dir, { precision: tier, shortlist: false }));
  const cfg = ours.get('fp32')!.config;
  for (const T of threadList) {
    setThreads(T);
    const ort = new Map<OrtTier, OrtMarian>();
    for (const t of ORT_TIERS) ort.set(t, await OrtMarian.create(onnx[t], { threads: T }));
    const base: Engine[] = [
      ...TIERS.map((t) => oursEngine(ours.get(t)!, t)),
      ...ORT_TIERS.map((t) => ortEngine(ort.get(t)!, t)),
    ];
    const tjsEngines: (Engine & { model: TjsModel })[] = [];
    if (tjs) {
      tjsEngines.push(await tjsEngine(tjs, onnx.fp32, 'tjs-fp32', T));
      tjsEngines.push(await tjsEngine(tjs, onnx['int8-per-tensor'], 'tjs-q8', T));
    }
    const enginesFor = (search: Search): Engine[] => (search === 'greedy' ? [...base, ...tjsEngines] : base);
    const table: { metric: Metric; search: Search; S: number; med: Map<Engine, number>; engines: Engine[]; floors: Map<Engine, number> | null }[] = [];
    /** The floor of each engine's figure (greedy TTFT and decode only). */
    const floorsOf = (metric: Metric, search: Search, S: number, engines: Engine[]): Map<Engine, number> | null => {
      if (search !== 'greedy' || metric === 'sentence_ms') return null;
      return new Map(engines.map((e) => [e, roof.floorMs(metric === 'ttft_ms' ? ttftWork(cfg, e.floorTier, S) : decodeWork(cfg, e.floorTier, S, NEW_TOKENS / 2), e.floorTier, T)]));
    };
    const record = (metric: Metric, search: Search, S: number, stats: Map<Engine, Stats>) => {
      const engines = [...stats.keys()];
      const med = new Map(engines.map((e) => [e, stats.get(e)!.p50]));
      const floors = floorsOf(metric, search, S, engines);
      table.push({ metric, search, S, med, engines, floors });
      const ort = (t: OrtTier) => engines.find((e) => e.kind === 'ort' && e.tier === t)!;
      const fasterInt8 = [ort('int8-per-channel'), ort('int8-per-tensor')].sort((a, b) => med.get(a)! - med.get(b)!)[0];
      for (const o of engines.filter((e) => e.kind === 'ours')) {
        const peers: Engine[] = [o.tier === 'int8' ? fasterInt8 : ort('fp32')];
        const tj = engines.find((e) => e.kind === 'tjs' && e.tier === (o.tier === 'int8' ? 'tjs-q8' : 'tjs-fp32'));
        if (tj && o.tier !== 'fp16') peers.push(tj);
        if (o.tier === 'int8') peers.push(ort('fp32')); // int8 against ORT fp32 as well
        for (const r of peers) {
          const a = med.get(o)!, b = med.get(r)!;
          const fl = floors?.get(o);
          rows.push({
            model: name, tier: o.tier as Precision, ort_tier: r.tier as PeerTier, search, src_len: S, metric, threads: T, ours_ms: a, ort_ms: b, ratio: a / b,
            ours: stats.get(o)!, ort: stats.get(r)!,
            ...(fl !== undefined ? { floor_ms: fl, pct_of_floor: (100 * fl) / a } : {}),
          });
        }
      }
      const cells = engines.map((e) => [
        e.name, ...statCells(stats.get(e)!),
        ...(floors ? [floors.get(e)!.toFixed(2), `${((100 * floors.get(e)!) / med.get(e)!).toFixed(0)}%`] : []),
      ]);
      console.log(`  ${metric} ${search} S=${S}:`);
      console.log(formatTable(['engine', ...STAT_HEADER, ...(floors ? ['floor', '%floor'] : [])], cells, '    '));
    };
    console.log(`\n${name}, ${T} thread${T > 1 ? 's' : ''} (ms; p50 = median, rme = relative margin of error of the mean at 95 %, n = samples; floor = roofline floor, %floor = floor / p50):`);
    for (const search of ['greedy', 'beam4'] as Search[]) {
      const beam = search === 'greedy' ? 1 : 4;
      const engines = enginesFor(search);
      for (const S of SRC_LENS) {
        const ids = source(S, cfg.vocabSize, cfg.eosId, 1000 + S);
        record('ttft_ms', search, S, (await measure(engines, WARM, TTFT_RUNS, async (e) => ({ ms: (await e.run(ids, { beam, maxLength: 1 })).ttftMs }))).get('ms')!);
      }
      // decode: S = 32, exactly NEW_TOKENS tokens
      const ids = source(32, cfg.vocabSize, cfg.eosId, 77);
      const dec = await measure(engines, 1, DECODE_RUNS, async (e) => {
        const r = await e.run(ids, { beam, maxLength: NEW_TOKENS, minNewTokens: NEW_TOKENS });
        if (r.tokens !== NEW_TOKENS) throw new Error(`${e.name} generated ${r.tokens} tokens, expected ${NEW_TOKENS}`);
        return { ms: r.totalMs, decode: (r.totalMs - r.ttftMs) / (NEW_TOKENS - 1) };
      });
      record('decode_ms_per_token', search, 32, dec.get('decode')!);
      if (!sentences) record('sentence_ms', search, 32, dec.get('ms')!);
      else {
        const meanLen = Math.round(sentences.reduce((s, x) => s + x.length, 0) / sentences.length);
        const sent = await measure(engines, 1, DECODE_RUNS, async (e) => {
          let sum = 0;
          for (const s of sentences) sum += (await e.run(s, { beam, maxLength: cfg.maxLength - 1 })).totalMs;
          return { ms: sum / sentences.length };
        });
        record('sentence_ms', search, meanLen, sent.get('ms')!);
      }
    }
    // the ratio table for this thread count: ours / peer; int8 against the faster ORT int8 variant, named
    console.log(`  ratio ours/peer (< 1: chimera faster):`);
    for (const r of table) {
      const e = (kind: string, tier: string) => r.engines.find((x) => x.kind === kind && x.tier === tier);
      const q = (a: string, kind: string, b: string) => {
        const x = e('ours', a), y = e(kind, b);
        return x && y ? (r.med.get(x)! / r.med.get(y)!).toFixed(2) : '-';
      };
      const pc = r.med.get(e('ort', 'int8-per-channel')!)!, pt = r.med.get(e('ort', 'int8-per-tensor')!)!;
      const best = pt < pc ? 'int8-per-tensor' : 'int8-per-channel';
      const tj = e('tjs', 'tjs-q8') ? `  int8/tjs-q8 ${q('int8', 'tjs', 'tjs-q8')}  fp32/tjs-fp32 ${q('fp32', 'tjs', 'tjs-fp32')}` : '';
      console.log(`    ${r.metric.padEnd(19)} ${r.search.padEnd(6)} S=${String(r.S).padEnd(4)} int8/ORT-${best} ${q('int8', 'ort', best)}  int8/ORT-fp32 ${q('int8', 'ort', 'fp32')}  fp32/ORT-fp32 ${q('fp32', 'ort', 'fp32')}  fp16/ORT-fp32 ${q('fp16', 'ort', 'fp32')}${tj}`);
    }
    for (const o of ort.values()) await o.release();
    for (const t of tjsEngines) await t.model.dispose();
  }
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const ortVersion = (JSON.parse(fs.readFileSync(require.resolve('onnxruntime-node/package.json'), 'utf8')) as { version: string }).version;
  console.log(`chimera isa ${getIsa()}, onnxruntime-node ${ortVersion}, node ${process.version}, cpu ${os.cpus()[0]?.model} x${os.cpus().length}`);
  console.log(`threads ${threadList.join(',')}; ${TTFT_RUNS} TTFT rounds, ${DECODE_RUNS} decode rounds after warm-up; ${NEW_TOKENS} new tokens; ratio = ours / ORT`);
  roof = Roofline.measure(threadList);
  console.log(roof.describe());
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
      new_tokens: NEW_TOKENS, ratio: 'ours_ms / ort_ms', int8_peer: 'the faster ORT int8 variant of each row (ort_tier)',
      roofline: {
        int8_kind: roof.machine.int8Kind, int8_gmacs_per_core: roof.machine.int8, fp32_gflops_per_core: roof.machine.fp32,
        cache_gbs: Object.fromEntries(roof.machine.cacheGBs), dram_gbs: Object.fromEntries(roof.machine.dramGBs),
        cpu_share: roof.machine.cpuShare, load_average: os.loadavg()[0],
      },
      rows,
    }, null, 2));
    console.log(`wrote ${jsonOut}`);
  }
}

void main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
