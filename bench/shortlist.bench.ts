/**
 * npm run bench:shortlist — the vocabulary shortlist: what it costs in quality and what it gains in speed.
 *
 *   npm run bench:shortlist -- [--shortlist FILE] [--models m30k,opus] [--threads N] [--rounds N] [--quick] [--no-quality] [--no-ort]
 *
 * Quality (the shared m30k model, ../shared/models/marian-m30k-en-de): a shortlist built from m30k val
 * (`chimera shortlist build` defaults, or --shortlist FILE) and scored on test_2016_flickr, a different set:
 * sacreBLEU-exact BLEU (src/bleu.ts) with and without it, the delta, % of outputs identical, and the mean candidate
 * set per sentence; greedy and beam 4, int8.
 *
 * Speed, int8, one sentence at a time, 1 thread unless --threads: TTFT and greedy decode tokens/s with and without
 * the shortlist, on the demo model (m30k, with the shortlist above; test sentences as sources) and on the OPUS-MT
 * geometry (d 512, 6+6 layers, vocab 58101, random weights generated into .tmp/models). Random weights have no
 * meaningful shortlist, so the OPUS-geometry one is synthetic, of a realistic size: every source token gets 20
 * candidates and 1000 tokens are frequent (deterministic picks), so a 32-token source has a candidate set of
 * about 1.6k tokens (printed), 2.8 % of the vocabulary; the real m30k sets are 8k-vocabulary-relative and larger.
 * Beside them the onnxruntime int8 graphs of `export-onnx --int8` (per-channel and per-tensor weight scales), and
 * each ratio is ours / the faster of the two.
 *
 * Timing (bench/stats.ts, as bench:e2e and bench:ttft): every contender runs once per round in an order rotated
 * each round, after warm-up; figures are medians over the rounds, with the best round beside them (`best vs ORT`:
 * against the best round of the faster ORT variant). The machine is shared: read the ratios of one run, not
 * absolute figures across runs.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { corpusBleu } from '../src/bleu';
import { getIsa, setThreads } from '../src/kernels';
import { MarianModel } from '../src/marian';
import { makeModel } from '../src/model/make-model';
import { buildShortlistFromModel, selectShortlist, writeShortlistBytes, type Cooccurrence } from '../src/model/shortlist';
import { exportMarianOnnx } from '../src/onnx/export-marian';
import { OrtMarian } from './ort-marian';
import { interleave as interleaveSamples, summarize, type Contender } from './stats';

const ROOT = path.resolve(__dirname, '..');
const SHARED = path.resolve(ROOT, '..', 'shared');
const M30K = path.join(SHARED, 'models', 'marian-m30k-en-de');
const DATA = path.join(SHARED, 'data', 'multi30k');

const flag = (n: string) => process.argv.includes(`--${n}`);
const arg = (n: string): string | undefined => {
  const i = process.argv.indexOf(`--${n}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const KNOWN = { value: ['shortlist', 'threads', 'rounds', 'models'], bool: ['quick', 'no-quality', 'no-ort'] };
for (let i = 2; i < process.argv.length; i++) {
  const f = process.argv[i].replace(/^--/, '');
  if (KNOWN.value.includes(f)) i++;
  else if (!KNOWN.bool.includes(f)) throw new Error(`unknown flag ${process.argv[i]} (flags: ${[...KNOWN.value, ...KNOWN.bool].map((x) => `--${x}`).join(' ')})`);
}
const quick = flag('quick');
const MODELS = (arg('models') ?? 'm30k,opus').split(',');
const THREADS = Number(arg('threads') ?? 1);
const ROUNDS = Number(arg('rounds') ?? (quick ? 5 : 15));
const WARM = 2;
/** Tokens forced per decode measurement (eos banned until then), so both sides decode the same number. */
const DECODE_TOKENS = quick ? 16 : 32;
/** Source length of the TTFT rows on the OPUS geometry (the issue's S = 32). */
const S = 32;
/** Synthetic OPUS-geometry shortlist: candidates per source token and frequent tokens (see the header). */
const SYN_PER_TOKEN = 20, SYN_FREQUENT = 1000;

function table(head: string[], rows: (string | number)[][]): string {
  const cells = [head, ...rows.map((r) => r.map((c) => (typeof c === 'number' ? (Number.isInteger(c) ? String(c) : c.toFixed(2)) : c)))];
  const w = head.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  return cells.map((r, j) => r.map((c, i) => c.padEnd(w[i])).join('  ') + (j === 0 ? `\n${w.map((x) => '-'.repeat(x)).join('  ')}` : '')).join('\n');
}

/** One generation's figures, for the source of round r. */
type Run = (r: number) => Promise<{ ttftMs: number; decodeMsPerToken: number }>;

/**
 * Interleaved rounds on the shared timing library (bench/stats.ts: tinybench, one fixed iteration per task per round,
 * order rotated each round, WARM warm-up generations first); medians (p50) of TTFT and of decode ms/token per contender,
 * with the best round beside them. Each contender counts its own calls, so round r gives every contender source r.
 */
async function interleave(contenders: [string, Run][]): Promise<Map<string, { ttft: number; tokS: number; ttftBest: number; tokSBest: number }>> {
  const tasks: Contender[] = contenders.map(([name, run]) => {
    let call = 0;
    return { name, async: true, reports: true, fn: async () => {
      const x = await run(call++);
      return { ttft: x.ttftMs, decode: x.decodeMsPerToken };
    } };
  });
  const samples = await interleaveSamples(tasks, { rounds: ROUNDS, iterations: 1, timeMs: 0, warmup: WARM, primary: 'ttft' });
  return new Map([...samples].map(([n, f]) => {
    const ttft = summarize(f.get('ttft') ?? []), dec = summarize(f.get('decode') ?? []);
    return [n, { ttft: ttft.p50, tokS: 1000 / dec.p50, ttftBest: Math.min(...(f.get('ttft') ?? [])), tokSBest: 1000 / Math.min(...(f.get('decode') ?? [])) }];
  }));
}

function ours(m: MarianModel, srcs: number[][]): Run {
  return async (r) => {
    setThreads(THREADS);
    const ids = srcs[r % srcs.length];
    const t = m.generate([ids], { maxLength: 1 });
    const d = m.generate([srcs[(r + 1) % srcs.length]], { maxLength: DECODE_TOKENS, minNewTokens: DECODE_TOKENS - 1 });
    return { ttftMs: t.ttftMs, decodeMsPerToken: (d.totalMs - d.ttftMs) / (d.ids[0].length - 1) };
  };
}

function ort(o: OrtMarian, srcs: number[][]): Run {
  return async (r) => {
    const t = await o.generate([srcs[r % srcs.length]], { maxLength: 1 });
    const d = await o.generate([srcs[(r + 1) % srcs.length]], { maxLength: DECODE_TOKENS, minNewTokens: DECODE_TOKENS - 1 });
    return { ttftMs: t.ttftMs, decodeMsPerToken: (d.totalMs - d.ttftMs) / (d.ids[0].length - 1) };
  };
}

/** The int8 ONNX export of a model directory: an existing bench:e2e export when there is one, else our own. */
function onnxInt8(dir: string, e2eName: string, perTensor: boolean): string {
  const tier = perTensor ? 'int8-per-tensor' : 'int8-per-channel';
  const shared = path.join(ROOT, '.tmp', 'onnx', `${e2eName}-${tier}`);
  if (fs.existsSync(path.join(shared, 'config.json'))) return shared;
  const own = path.join(ROOT, '.tmp', 'onnx', `shortlist-${path.basename(dir)}-${tier}`);
  if (!fs.existsSync(path.join(own, 'config.json'))) {
    console.log(`exporting ${dir} to ${own} ...`);
    exportMarianOnnx(dir, own, { int8: true, perTensor });
  }
  return own;
}

const lines = (f: string) => fs.readFileSync(path.join(DATA, f), 'utf8').split('\n').filter((l) => l.trim() !== '');

async function quality(slBytes: Uint8Array): Promise<void> {
  const full = await MarianModel.load(M30K, { precision: 'int8', shortlist: false });
  const sl = await MarianModel.load(M30K, { precision: 'int8', shortlist: false });
  sl.useShortlist(slBytes, 'm30k shortlist');
  const tok = full.requireTokenizer();
  const src = lines('test_2016_flickr.en'), ref = lines('test_2016_flickr.de');
  const ids = src.map((s) => tok.encode(s));
  const sizes = ids.map((x) => sl.shortlist!.sets.candidates(x).length);
  const V = full.config.vocabSize;
  const rows: (string | number)[][] = [];
  for (const beam of [1, 4]) {
    const dec = (m: MarianModel) => {
      const out: string[] = [];
      for (let i = 0; i < ids.length; i += 100) out.push(...m.generate(ids.slice(i, i + 100), { beam }).ids.map((x) => tok.decode(x)));
      return out;
    };
    const a = dec(full), b = dec(sl);
    const ba = corpusBleu(a, [ref]).score, bb = corpusBleu(b, [ref]).score;
    const same = a.filter((x, i) => x === b[i]).length;
    rows.push([beam === 1 ? 'greedy' : 'beam 4', ba.toFixed(2), bb.toFixed(2), (bb - ba >= 0 ? '+' : '') + (bb - ba).toFixed(2), `${((100 * same) / a.length).toFixed(1)}%`]);
  }
  const mean = sizes.reduce((s, x) => s + x, 0) / sizes.length;
  console.log(`\nquality: m30k int8, shortlist from val (${slBytes.length >> 10} KiB), scored on test_2016_flickr (${src.length} sentences); ` +
    `candidate set per sentence: mean ${mean.toFixed(0)} (${((100 * mean) / V).toFixed(1)} % of ${V}), min ${Math.min(...sizes)}, max ${Math.max(...sizes)}`);
  console.log(table(['search', 'BLEU full', 'BLEU shortlist', 'delta', 'identical'], rows));
}

async function speed(name: string, dirOrFile: string, slBytes: Uint8Array, sources: number[][], ortDirs: [string, string][]): Promise<void> {
  const full = await MarianModel.load(dirOrFile, { precision: 'int8', shortlist: false });
  const sl = await MarianModel.load(dirOrFile, { precision: 'int8', shortlist: false });
  sl.useShortlist(slBytes, `${name} shortlist`);
  const orts: [string, OrtMarian][] = [];
  for (const [n, d] of ortDirs) orts.push([n, await OrtMarian.create(d, { threads: THREADS })]);
  // A new source every round (the same for every contender of the round): each shortlist generation then meets a
  // union it has not seen, so its TTFT includes gathering the sub-LM-head, as a new sentence's does.
  const sizes = sources.map((x) => sl.shortlist!.sets.candidates(x).length);
  const setSize = Math.round(sizes.reduce((a, b) => a + b, 0) / sizes.length);
  const contenders: [string, Run][] = [['chimera int8', ours(full, sources)], ['chimera int8 + shortlist', ours(sl, sources)], ...orts.map(([n, o]): [string, Run] => [n, ort(o, sources)])];
  const r = await interleave(contenders);
  const base = r.get('chimera int8')!;
  const ortBest = orts.length ? orts.map(([n]) => [n, r.get(n)!] as const).sort((a, b) => a[1].ttft - b[1].ttft)[0] : null;
  const ortDec = orts.length ? orts.map(([n]) => [n, r.get(n)!] as const).sort((a, b) => b[1].tokS - a[1].tokS)[0] : null;
  const lens = sources.map((x) => x.length);
  console.log(`\nspeed: ${name}, int8, ${THREADS} thread(s), ${sources.length} sources of ${Math.min(...lens)}-${Math.max(...lens)} tokens (a new one each round), ${DECODE_TOKENS} decoded tokens; ` +
    `mean candidate set ${setSize} of ${full.config.vocabSize}; ${ROUNDS} interleaved rounds (medians)`);
  // best samples beside the medians: on a shared machine the fastest round is the closest to an idle one
  const bestOrt = orts.length ? Math.min(...orts.map(([n]) => r.get(n)!.ttftBest)) : NaN;
  const bestOrtDec = orts.length ? Math.max(...orts.map(([n]) => r.get(n)!.tokSBest)) : NaN;
  console.log(table(['engine', 'TTFT ms', 'vs full', ortBest ? `vs ${ortBest[0]}` : '', 'best', 'best vs ORT', 'decode tok/s', 'vs full', ortDec ? `vs ${ortDec[0]}` : '', 'best', 'best vs ORT'],
    [...r].map(([n, x]) => [n, x.ttft.toFixed(3), `${(x.ttft / base.ttft).toFixed(2)}x`, ortBest ? `${(x.ttft / ortBest[1].ttft).toFixed(2)}x` : '',
      x.ttftBest.toFixed(3), orts.length ? `${(x.ttftBest / bestOrt).toFixed(2)}x` : '',
      x.tokS.toFixed(0), `${(x.tokS / base.tokS).toFixed(2)}x`, ortDec ? `${(x.tokS / ortDec[1].tokS).toFixed(2)}x` : '',
      x.tokSBest.toFixed(0), orts.length ? `${(x.tokSBest / bestOrtDec).toFixed(2)}x` : ''])));
}

async function main(): Promise<void> {
  console.log(`bench:shortlist — isa ${getIsa()}, cpu ${os.cpus()[0]?.model} x${os.cpus().length}, threads ${THREADS}; onnxruntime ${flag('no-ort') ? 'off' : 'int8 per-channel and per-tensor'}`);
  const m30kOk = MODELS.includes('m30k') && fs.existsSync(path.join(M30K, 'config.json'));
  let m30kSl: Uint8Array | null = null;
  if (m30kOk) {
    const file = arg('shortlist');
    if (file) m30kSl = fs.readFileSync(file);
    else {
      console.log('building the m30k shortlist from val with the defaults (pass --shortlist FILE to reuse one) ...');
      const t0 = performance.now();
      const model = await MarianModel.load(M30K, { shortlist: false });
      m30kSl = writeShortlistBytes(buildShortlistFromModel(model, lines('val.en')).shortlist);
      console.log(`built in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    }
    if (!flag('no-quality')) await quality(m30kSl);
  } else if (MODELS.includes('m30k')) console.log(`${M30K} is absent: the m30k rows are skipped`);
  setThreads(THREADS);
  const withOrt = !flag('no-ort');
  if (m30kOk && m30kSl) {
    const tok = (await MarianModel.load(M30K, { shortlist: false })).requireTokenizer();
    // test sentences of 12-16 tokens: TTFT comparable from round to round
    const src = lines('test_2016_flickr.en').map((s) => tok.encode(s)).filter((x) => x.length >= 12 && x.length <= 16).slice(0, ROUNDS + WARM + 1);
    const ortDirs: [string, string][] = withOrt ? [['ORT int8 per-channel', onnxInt8(M30K, 'marian-m30k-en-de', false)], ['ORT int8 per-tensor', onnxInt8(M30K, 'marian-m30k-en-de', true)]] : [];
    await speed('m30k (demo model)', M30K, m30kSl, src, ortDirs);
  }
  if (!MODELS.includes('opus')) return;
  // the OPUS-MT geometry with a synthetic shortlist
  const opus = path.join(ROOT, '.tmp', 'models', 'opus-mt-en-de-seed1');
  if (!fs.existsSync(path.join(opus, 'model.safetensors'))) {
    console.log(`generating the OPUS-MT-geometry model in ${opus} (once) ...`);
    await makeModel({ preset: 'opus-mt-en-de', seed: 1, out: opus });
  }
  const probe = await MarianModel.load(opus, { precision: 'int8', shortlist: false });
  const V = probe.config.vocabSize, eos = probe.config.eosId;
  let s = 12345;
  const rnd = (n: number) => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) % n);
  const c: Cooccurrence = { pair: new Map(), sourceDocs: new Map(), targetDocs: new Map(), targetTokens: new Map() };
  for (let t = 0; t < V; t++) {
    const m = new Map<number, number>();
    for (let j = 0; j < SYN_PER_TOKEN; j++) m.set(2 + rnd(V - 3), 1);
    c.pair.set(t, m);
    c.sourceDocs.set(t, 1);
  }
  for (let j = 0; j < SYN_FREQUENT * 2; j++) c.targetTokens.set(2 + rnd(V - 3), 1 + rnd(1000));
  for (const m of c.pair.values()) for (const t of m.keys()) c.targetDocs.set(t, 1);
  const syn = writeShortlistBytes(selectShortlist(c, V, SYN_PER_TOKEN, SYN_FREQUENT, probe.vocabularyHash()));
  const srcs = Array.from({ length: ROUNDS + WARM + 1 }, () => [...Array.from({ length: S - 1 }, () => 2 + rnd(V - 3)), eos]);
  const ortDirs: [string, string][] = withOrt ? [['ORT int8 per-channel', onnxInt8(opus, 'opus-mt-en-de-geometry', false)], ['ORT int8 per-tensor', onnxInt8(opus, 'opus-mt-en-de-geometry', true)]] : [];
  await speed('OPUS-MT geometry (synthetic shortlist)', opus, syn, srcs, ortDirs);
  console.log('\n(the machine is shared with other jobs: figures are medians of interleaved rounds; compare ratios within this run)');
}

void main();
