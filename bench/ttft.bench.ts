/**
 * npm run bench:ttft — the translation engine at each thread count: time to first token (encoder + first decoder
 * step + choosing the token) and decode tokens/s, per precision tier and source length, on the OPUS-MT geometry
 * (d 512, 6+6 layers, vocab 58101) with deterministic random weights generated on demand (never committed), plus
 * the cold load time of each tier. onnxruntime (the same weights, exported by `export-onnx`) runs beside it for
 * context: fp32 and both int8 variants at the same thread counts (the full comparison is bench:e2e).
 *
 *   npm run bench:ttft -- [--json FILE] [--threads 1,2] [--quick] [--model DIR] [--runs N] [--no-ort]
 *
 * --quick: S = 32 only, 5 rounds, 8 decode tokens (a smoke test, figures indicative only).
 *
 * Timing (bench/stats.ts, as bench:kernels and bench:e2e): every thread count of a tier and source length, ours and
 * onnxruntime's, is one contender in the same interleaved run (one tinybench task each, one generation per round,
 * the order rotating each round); each figure is reported as p50, mean, p99, relative margin of error and sample
 * count, and ratios are of the medians: `scaling` = TTFT at the first thread count / TTFT at each other one (the
 * target at 2 threads is 1.7x), `vs ORT` = ours / the faster onnxruntime variant of the same precision at the same
 * thread count (int8: the faster of per-channel and per-tensor, named).
 *
 * Each TTFT and decode figure is printed beside its roofline floor for the exact geometry, tier and thread count
 * (bench/roofline.ts: MACs / peak + weight bytes / bandwidth, the peaks and bandwidths measured at start-up) and
 * as a % of that floor (floor / measured: 100% = at the floor).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { getIsa, setThreads } from '../src/kernels';
import { MarianModel, type Precision } from '../src/marian';
import { arg, checkFlags, onnxDir, opusDir, type OrtTier, source } from './fixtures';
import { OrtMarian } from './ort-marian';
import { decodeWork, Roofline, ttftWork } from './roofline';
import { type Contender, formatTable, interleave, STAT_HEADER, statCells, type Stats, summarize } from './stats';

checkFlags({ value: ['json', 'threads', 'model', 'runs'], bool: ['quick', 'no-ort'] });
const quick = process.argv.includes('--quick');
const withOrt = !process.argv.includes('--no-ort');
const threadList = (arg('threads') ?? '1,2').split(',').map(Number);
if (threadList.some((t) => !Number.isInteger(t) || t < 1)) throw new Error('--threads takes positive integers, e.g. 1,2');
const jsonOut = arg('json');
const TIERS: Precision[] = ['fp32', 'fp16', 'int8'];
const LENS = quick ? [32] : [8, 32, 128];
/** Interleaved rounds (one generation of every contender each) for TTFT, after WARM warm-up generations. */
const RUNS = Number(arg('runs') ?? (quick ? 5 : 15));
const WARM = quick ? 1 : 3;
const DECODE_TOKENS = quick ? 8 : 24;
const DECODE_RUNS = quick ? 2 : 5;

interface Row {
  tier: Precision;
  /** 'chimera', or the onnxruntime variant */
  engine: 'chimera' | `ort-${OrtTier}`;
  threads: number;
  src_len: number;
  metric: 'ttft_ms' | 'decode_tokens_per_s' | 'load_dir_ms' | 'load_packed_ms';
  /** ttft_ms: the median; decode_tokens_per_s: 1000 / the median ms per token; load: one cold load */
  value: number;
  /** ms: TTFT, or ms per decoded token */
  stats?: Stats;
  /** The roofline floor of this figure (ms for ttft_ms, tokens/s for decode_tokens_per_s) and value's % of it. */
  floor?: number;
  pct_of_floor?: number;
  /** ttft_ms at the first thread count / this one's (same engine) */
  scaling?: number;
}

/** onnxruntime's peers of a tier: ORT fp32 for fp32 and fp16, both int8 variants for int8. */
function ortPeers(tier: Precision): OrtTier[] {
  return tier === 'int8' ? ['int8-per-channel', 'int8-per-tensor'] : tier === 'fp32' ? ['fp32'] : [];
}

async function main(): Promise<void> {
  const dir = arg('model') ?? (await opusDir());
  const name = path.basename(dir);
  // the ONNX exports' name: bench:e2e's for the default model, so that both benches share one export
  const onnxName = arg('model') ? name : 'opus-mt-en-de-geometry';
  const rows: Row[] = [];
  const T0 = threadList[0];
  console.log(`isa ${getIsa()}, cpu ${os.cpus()[0]?.model} x${os.cpus().length}, model ${dir}`);
  console.log(`threads ${threadList.join(',')} (interleaved in one run); ${RUNS} TTFT rounds after ${WARM} warm-up, ${DECODE_RUNS} decode rounds of ${DECODE_TOKENS} tokens; onnxruntime ${withOrt ? 'beside ours' : 'off (--no-ort)'}`);
  const roof = Roofline.measure(threadList);
  console.log(roof.describe());
  console.log('(ms; p50 = median, rme = relative margin of error of the mean at 95 %, n = samples; floor = roofline floor, %floor = floor / p50)');
  const scalingLines: string[] = [];
  for (const tier of TIERS) {
    // the full vocabulary, even where a shortlist lies beside the model (the shortlist has bench:shortlist)
    const fromDir = await MarianModel.load(dir, { precision: tier, shortlist: false });
    rows.push({ tier, engine: 'chimera', threads: 0, src_len: 0, metric: 'load_dir_ms', value: fromDir.loadMs });
    // The packed file (chimera convert), loaded the way a server starts: memory-mapped, nothing re-packed.
    const packed = path.join(path.dirname(dir), `${name}-${tier}.chimera`);
    fromDir.save(packed);
    const model = await MarianModel.load(packed, { shortlist: false });
    rows.push({ tier, engine: 'chimera', threads: 0, src_len: 0, metric: 'load_packed_ms', value: model.loadMs });
    const cfg = model.config;
    const V = cfg.vocabSize, eos = cfg.eosId;
    const ort = new Map<string, OrtMarian>();
    if (withOrt)
      for (const t of ortPeers(tier)) {
        const od = onnxDir(dir, onnxName, t);
        for (const T of threadList) ort.set(`ort-${t} T=${T}`, await OrtMarian.create(od, { threads: T }));
      }
    const ours = (T: number) => `chimera ${tier} T=${T}`;

    for (const S of LENS) {
      const ids = source(S, V, eos, 1000 + S);
      const contenders: Contender[] = [
        ...threadList.map((T): Contender => ({
          name: ours(T), async: true, reports: true,
          // setThreads restarts the pool's workers when the count changes: done here, outside the TTFT the engine times
          fn: async () => (setThreads(T), model.generate([ids], { maxLength: 1 }).ttftMs),
        })),
        ...[...ort].map(([n, o]): Contender => ({ name: n, async: true, reports: true, fn: async () => (await o.generate([ids], { maxLength: 1 })).ttftMs })),
      ];
      const samples = await interleave(contenders, { rounds: RUNS, iterations: 1, timeMs: 0, warmup: WARM });
      const st = new Map([...samples].map(([n, f]) => [n, summarize(f.get('ms')!)]));
      const table: string[][] = [];
      for (const T of threadList) {
        const tf = roof.floorMs(ttftWork(cfg, tier, S), tier, T);
        const engines: [Row['engine'], string][] = [['chimera', ours(T)], ...ortPeers(tier).filter(() => withOrt).map((t): [Row['engine'], string] => [`ort-${t}`, `ort-${t} T=${T}`])];
        for (const [engine, key] of engines) {
          const s = st.get(key)!;
          const base = st.get(engine === 'chimera' ? ours(T0) : key.replace(/T=\d+$/, `T=${T0}`))!;
          const scaling = base.p50 / s.p50;
          rows.push({ tier, engine, threads: T, src_len: S, metric: 'ttft_ms', value: s.p50, stats: s, floor: tf, pct_of_floor: (100 * tf) / s.p50, scaling });
          table.push([key, ...statCells(s), tf.toFixed(2), `${((100 * tf) / s.p50).toFixed(0)}%`, T === T0 ? '' : `${scaling.toFixed(2)}x`]);
        }
      }
      console.log(`\nTTFT ${tier} S=${S} (${name}):`);
      console.log(formatTable(['contender', ...STAT_HEADER, 'floor', '%floor', 'scaling'], table));
      // ours against the faster onnxruntime variant of the precision, at each thread count
      if (withOrt && ortPeers(tier).length) {
        const vs = threadList.map((T) => {
          const best = ortPeers(tier).map((t) => ({ t, s: st.get(`ort-${t} T=${T}`)! })).sort((a, b) => a.s.p50 - b.s.p50)[0];
          return `T=${T}: ${(st.get(ours(T))!.p50 / best.s.p50).toFixed(2)}x ORT ${best.t}`;
        });
        console.log(`  ours / the faster ORT (medians): ${vs.join(', ')}`);
      }
      for (const T of threadList.slice(1)) {
        // medians, and in brackets the best samples' ratio (on a shared machine the closer to an idle one)
        const sc = (a: Stats, b: Stats) => `${(a.p50 / b.p50).toFixed(2)}x [best ${(a.min / b.min).toFixed(2)}x]`;
        const line = [`${tier} S=${String(S).padEnd(4)} T=${T0}->${T}: chimera ${sc(st.get(ours(T0))!, st.get(ours(T))!)}`];
        for (const t of withOrt ? ortPeers(tier) : []) line.push(`ORT ${t} ${sc(st.get(`ort-${t} T=${T0}`)!, st.get(`ort-${t} T=${T}`)!)}`);
        scalingLines.push(line.join(', '));
      }
    }

    // decode tokens/s at S = 32: exactly DECODE_TOKENS new tokens, (total - ttft) / (tokens - 1) per token
    const ids = source(32, V, eos, 77);
    const dec = await interleave(
      threadList.map((T): Contender => ({
        name: ours(T), async: true, reports: true,
        fn: async () => {
          setThreads(T);
          const r = model.generate([ids], { maxLength: DECODE_TOKENS, minNewTokens: DECODE_TOKENS });
          return (r.totalMs - r.ttftMs) / (DECODE_TOKENS - 1);
        },
      })),
      { rounds: DECODE_RUNS, iterations: 1, timeMs: 0, warmup: 1 },
    );
    const table: string[][] = [];
    for (const T of threadList) {
      const s = summarize(dec.get(ours(T))!.get('ms')!);
      const tps = 1000 / s.p50;
      // the mean step of the DECODE_TOKENS - 1 timed ones sees about DECODE_TOKENS / 2 past tokens
      const ftps = 1000 / roof.floorMs(decodeWork(cfg, tier, 32, DECODE_TOKENS / 2), tier, T);
      rows.push({ tier, engine: 'chimera', threads: T, src_len: 32, metric: 'decode_tokens_per_s', value: tps, stats: s, floor: ftps, pct_of_floor: (100 * tps) / ftps });
      table.push([ours(T), ...statCells(s), tps.toFixed(0), ftps.toFixed(0), `${((100 * tps) / ftps).toFixed(0)}%`]);
    }
    console.log(`\ndecode ${tier} S=32, ms per token (${DECODE_TOKENS} tokens):`);
    console.log(formatTable(['contender', ...STAT_HEADER, 'tok/s', 'floor tok/s', '%floor'], table));
    for (const o of ort.values()) await o.release();
  }
  console.log('');
  for (const r of rows.filter((x) => x.metric.startsWith('load')))
    console.log(`${r.metric === 'load_dir_ms' ? 'load from the HF directory (packing included)' : 'load of the packed file'} (${r.tier}): ${r.value.toFixed(1)} ms`);
  if (scalingLines.length) {
    console.log(`\nTTFT thread scaling (ratio of medians, same run; [best: ratio of the fastest samples]; target >= 1.7x at 2 threads):`);
    for (const l of scalingLines) console.log(`  ${l}`);
  }
  if (jsonOut) {
    fs.mkdirSync(path.dirname(path.resolve(jsonOut)), { recursive: true });
    const m = roof.machine;
    fs.writeFileSync(jsonOut, JSON.stringify({
      isa: getIsa(), cpu: os.cpus()[0]?.model, model: dir, threads: threadList,
      roofline: { int8_kind: m.int8Kind, int8_gmacs_per_core: m.int8, fp32_gflops_per_core: m.fp32, cache_gbs: Object.fromEntries(m.cacheGBs), dram_gbs: Object.fromEntries(m.dramGBs), cpu_share: m.cpuShare, load_average: os.loadavg()[0] },
      rows,
    }, null, 2) + '\n');
    console.log(`wrote ${jsonOut}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
