/**
 * npm run bench:ttft — our engine alone (the side-by-side with onnxruntime is bench:e2e): time to first token
 * (encoder + first decoder step + choosing the token) and decode tokens/s, per precision tier, thread count
 * and source length, on the OPUS-MT geometry (d 512, 6+6 layers, vocab 58101) with deterministic random
 * weights generated on demand (never committed), plus the cold load time of each tier.
 *
 *   npm run bench:ttft -- [--json FILE] [--threads 1,2] [--quick] [--model DIR]
 *
 * Each TTFT and decode figure is printed beside its roofline floor for the exact geometry, tier and thread count
 * (bench/roofline.ts: MACs / peak + weight bytes / bandwidth, the peaks and bandwidths measured at start-up) and
 * as a % of that floor (floor / measured: 100% = at the floor).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MarianModel, type Precision } from '../src/marian';
import { getIsa, setThreads } from '../src/kernels';
import { makeModel } from '../src/model/make-model';
import { decodeWork, Roofline, ttftWork } from './roofline';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}
const quick = process.argv.includes('--quick');
const threadList = (arg('threads') ?? '1,2').split(',').map(Number);
const jsonOut = arg('json');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function modelDir(): Promise<string> {
  const given = arg('model');
  if (given) return given;
  const dir = path.resolve(__dirname, '..', '.tmp', 'models', 'opus-mt-en-de-seed1');
  if (!fs.existsSync(path.join(dir, 'model.safetensors'))) {
    console.log(`generating the OPUS-MT-geometry model in ${dir} (once)...`);
    await makeModel({ preset: 'opus-mt-en-de', seed: 1, out: dir });
  }
  return dir;
}

function source(len: number, vocab: number, eos: number, seed: number): number[] {
  let s = seed;
  const ids: number[] = [];
  for (let i = 0; i < len - 1; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    ids.push(2 + (s % (vocab - 3)));
  }
  ids.push(eos);
  return ids;
}

interface Row {
  tier: Precision;
  threads: number;
  src_len: number;
  metric: 'ttft_ms' | 'decode_tokens_per_s' | 'load_dir_ms' | 'load_packed_ms';
  value: number;
  /** The roofline floor of this figure (ms for ttft_ms, tokens/s for decode_tokens_per_s) and value's % of it. */
  floor?: number;
  pct_of_floor?: number;
}

async function main(): Promise<void> {
  const dir = await modelDir();
  const rows: Row[] = [];
  const tiers: Precision[] = ['fp32', 'fp16', 'int8'];
  const lens = quick ? [32] : [8, 32, 128];
  const runs = quick ? 5 : 15;
  console.log(`isa ${getIsa()}, cpu ${os.cpus()[0]?.model}, model ${dir}`);
  const roof = Roofline.measure(threadList);
  console.log(roof.describe());
  console.log('tier  threads  src_len  ttft_ms  floor_ms  %floor  decode_tok/s  floor_tok/s  %floor');
  for (const tier of tiers) {
    const fromDir = await MarianModel.load(dir, { precision: tier });
    rows.push({ tier, threads: 0, src_len: 0, metric: 'load_dir_ms', value: fromDir.loadMs });
    // The packed file (chimera convert), loaded the way a server starts: memory-mapped, nothing re-packed.
    const packed = path.join(path.dirname(dir), `${path.basename(dir)}-${tier}.chimera`);
    fromDir.save(packed);
    const model = await MarianModel.load(packed);
    rows.push({ tier, threads: 0, src_len: 0, metric: 'load_packed_ms', value: model.loadMs });
    const V = model.config.vocabSize, eos = model.config.eosId;
    for (const threads of threadList) {
      setThreads(threads);
      for (const S of lens) {
        const ids = [source(S, V, eos, S)];
        for (let i = 0; i < 3; i++) model.generate(ids, { maxLength: 1 });
        const ttft: number[] = [];
        for (let i = 0; i < runs; i++) ttft.push(model.generate(ids, { maxLength: 1 }).ttftMs);
        const t = median(ttft);
        const tf = roof.floorMs(ttftWork(model.config, tier, S), tier, threads);
        rows.push({ tier, threads, src_len: S, metric: 'ttft_ms', value: t, floor: tf, pct_of_floor: (100 * tf) / t });
        let tps = NaN, ftps = NaN;
        if (S === 32) {
          const n = quick ? 8 : 24;
          const per: number[] = [];
          for (let i = 0; i < (quick ? 2 : 5); i++) {
            const r = model.generate(ids, { maxLength: n, minNewTokens: n });
            per.push((r.totalMs - r.ttftMs) / (n - 1));
          }
          tps = 1000 / median(per);
          // the mean step of the n - 1 timed ones sees about n / 2 past tokens
          ftps = 1000 / roof.floorMs(decodeWork(model.config, tier, S, n / 2), tier, threads);
          rows.push({ tier, threads, src_len: S, metric: 'decode_tokens_per_s', value: tps, floor: ftps, pct_of_floor: (100 * tps) / ftps });
        }
        const dec = Number.isNaN(tps) ? '' : `${tps.toFixed(0).padStart(13)} ${ftps.toFixed(0).padStart(12)} ${((100 * tps) / ftps).toFixed(0).padStart(6)}%`;
        console.log(`${tier.padEnd(5)} ${String(threads).padStart(7)} ${String(S).padStart(8)} ${t.toFixed(2).padStart(8)} ${tf.toFixed(2).padStart(9)} ${((100 * tf) / t).toFixed(0).padStart(6)}% ${dec}`);
      }
    }
  }
  for (const r of rows.filter((x) => x.metric.startsWith('load')))
    console.log(`${r.metric === 'load_dir_ms' ? 'load from the HF directory (packing included)' : 'load of the packed file'} (${r.tier}): ${r.value.toFixed(1)} ms`);
  if (jsonOut) {
    fs.mkdirSync(path.dirname(path.resolve(jsonOut)), { recursive: true });
    const m = roof.machine;
    fs.writeFileSync(jsonOut, JSON.stringify({
      isa: getIsa(), model: dir,
      roofline: { int8_kind: m.int8Kind, int8_gmacs_per_core: m.int8, fp32_gflops_per_core: m.fp32, cache_gbs: Object.fromEntries(m.cacheGBs), dram_gbs: Object.fromEntries(m.dramGBs) },
      rows,
    }, null, 2));
    console.log(`wrote ${jsonOut}`);
  }
}

void main();
