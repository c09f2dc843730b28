/**
 * npm run bench:batch — continuous batching in the Translator, against the one-request-at-a-time way a Node user
 * would otherwise run onnxruntime (the reference decoder loop in src/onnx/ort-marian.ts on the same weights).
 *
 *   npm run bench:batch -- [--json FILE] [--quick] [--threads N] [--seconds S]
 *
 * Model: the OPUS-MT geometry (d 512, 6+6 layers, vocab 58101; deterministic random weights generated into
 * .tmp/models, never committed), chimera int8, 2 threads by default; onnxruntime int8 (quantize_dynamic's
 * pattern, per-channel) with the same intra-op threads.
 * Sentences: Multi30k validation lines whose source (this model's tokenizer) and reference translation (the demo
 * model's tokenizer) both have 10-30 tokens. Random weights never choose eos on their own, so each request
 * decodes exactly its reference's length (minNewTokens = maxLength = that length): real lengths, real mix.
 * The sentence cache is off for the load runs, so every request decodes.
 *
 * Reports:
 * - closed loop at concurrency 1, 2, 4, 8, 16, 32, 64 (each client sends its next request when the last is
 *   answered): sentences/s, target tokens/s, TTFT p50/p95 (from the call, queue included), mean rows per step;
 * - an open loop (Poisson arrivals) at 50 % of the saturated rate: TTFT p50/p95/p99;
 * - onnxruntime one request at a time: sentences/s (the same at any concurrency; waiting adds to TTFT only);
 * - a cache hit's latency p50/p99 (a Translator with its cache on, 2,000 calls);
 * - two 1-thread Translators side by side against one alone (the per-engine thread budget);
 * - the quality guard's cost (issue 15): closed loop at concurrency 32 with the guard off, at sampleRate 0.02 and at
 *   0.1 (fp32 control), rounds interleaved, medians: sentences/s and TTFT p95 (--no-guard skips it).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Translator, type TranslationResult } from '../src/translator';
import { MarianModel } from '../src/marian';
import { makeModel } from '../src/model/make-model';
import { Rng } from './rng';

const ROOT = path.resolve(__dirname, '..');
const VAL_EN = path.resolve(ROOT, '..', 'shared', 'data', 'multi30k', 'val.en');
const VAL_DE = path.resolve(ROOT, '..', 'shared', 'data', 'multi30k', 'val.de');
const DEMO = path.join(ROOT, 'models', 'marian-m30k-en-de');

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}
const quick = process.argv.includes('--quick');
const THREADS = Number(arg('threads') ?? 2);
/** Seconds each closed-loop level runs (after its warm-up): long enough for dozens of completions at c = 64. */
const SECONDS = Number(arg('seconds') ?? (quick ? 2 : 5));
const LEVELS = quick ? [1, 8, 64] : [1, 2, 4, 8, 16, 32, 64];
const ORT_SENTENCES = quick ? 6 : 24;
const jsonOut = arg('json');

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

interface Work {
  text: string;
  len: number;
}

async function workload(opusDir: string): Promise<Work[]> {
  const en = fs.existsSync(VAL_EN) ? fs.readFileSync(VAL_EN, 'utf8').split('\n') : [];
  const de = fs.existsSync(VAL_DE) ? fs.readFileSync(VAL_DE, 'utf8').split('\n') : [];
  if (en.length === 0) throw new Error(`${VAL_EN} is missing: bench:batch needs the Multi30k validation set`);
  const opus = await MarianModel.load(opusDir, { precision: 'int8' });
  const demo = await MarianModel.load(DEMO, { precision: 'int8' });
  const out: Work[] = [];
  for (let i = 0; i < en.length && out.length < 400; i++) {
    if (!en[i]?.trim() || !de[i]?.trim()) continue;
    const s = opus.tokenizer!.encode(en[i]).length, t = demo.tokenizer!.encode(de[i]).length;
    if (s >= 10 && s <= 30 && t >= 10 && t <= 30) out.push({ text: en[i].trim(), len: t });
  }
  return out;
}

interface Level {
  concurrency: number;
  sentences_per_s: number;
  tokens_per_s: number;
  ttft_p50_ms: number;
  ttft_p95_ms: number;
  rows_per_step: number;
  completed: number;
}

function stepTotals(t: Translator): { steps: number; rows: number } {
  const s = t.stats();
  return { steps: s.steps, rows: s.stepRowsMean * s.steps };
}

/** Closed loop: `c` clients, each sending its next sentence when the last is answered, for `seconds`. */
async function closedLoop(t: Translator, work: Work[], c: number, seconds: number, offset = 0): Promise<Level> {
  let next = offset;
  const run = async (until: number, rec: TranslationResult[] | null) => {
    await Promise.all(Array.from({ length: c }, async () => {
      while (performance.now() < until) {
        const w = work[next++ % work.length];
        const [r] = await t.translate(w.text, { maxLength: w.len, minNewTokens: w.len });
        rec?.push(r);
      }
    }));
  };
  await run(performance.now() + Math.min(1000, seconds * 250), null); // warm-up: the batch reaches its steady size
  await new Promise((r) => setTimeout(r, 30)); // let the worker's idle stats arrive
  const s0 = stepTotals(t);
  const rec: TranslationResult[] = [];
  const t0 = performance.now();
  await run(t0 + seconds * 1000, rec);
  const el = (performance.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 30));
  const s1 = stepTotals(t);
  return {
    concurrency: c,
    sentences_per_s: rec.length / el,
    tokens_per_s: rec.reduce((a, r) => a + r.tokens.length, 0) / el,
    ttft_p50_ms: pct(rec.map((r) => r.ttftMs), 50),
    ttft_p95_ms: pct(rec.map((r) => r.ttftMs), 95),
    rows_per_step: (s1.rows - s0.rows) / Math.max(1, s1.steps - s0.steps),
    completed: rec.length,
  };
}

/** Open loop: Poisson arrivals at `rate` per second for `seconds`; TTFT percentiles. */
async function openLoop(t: Translator, work: Work[], rate: number, seconds: number) {
  const rng = new Rng(7);
  const calls: Promise<TranslationResult[]>[] = [];
  const t0 = performance.now();
  let at = t0, i = 0;
  while (at - t0 < seconds * 1000) {
    at += (-Math.log(1 - rng.next()) / rate) * 1000;
    const wait = at - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const w = work[i++ % work.length];
    calls.push(t.translate(w.text, { maxLength: w.len, minNewTokens: w.len }));
  }
  const res = (await Promise.all(calls)).map((r) => r[0]);
  const ttft = res.map((r) => r.ttftMs);
  return { rate, sent: res.length, ttft_p50_ms: pct(ttft, 50), ttft_p95_ms: pct(ttft, 95), ttft_p99_ms: pct(ttft, 99), total_p95_ms: pct(res.map((r) => r.totalMs), 95) };
}

async function ortBaseline(dir: string, work: Work[]) {
  let OrtMarian: typeof import('../src/onnx/ort-marian').OrtMarian;
  try {
    ({ OrtMarian } = await import('../src/onnx/ort-marian'));
  } catch {
    console.log('onnxruntime-node is not installed: no baseline');
    return null;
  }
  const { exportMarianOnnx } = await import('../src/onnx/export-marian');
  const out = path.join(ROOT, '.tmp', 'onnx', `${path.basename(dir)}-int8`);
  const stamp = path.join(out, '.chimera-export.json');
  const want = JSON.stringify({ dir, size: fs.statSync(path.join(dir, 'model.safetensors')).size, exporter: fs.statSync(path.join(ROOT, 'src', 'onnx', 'export-marian.ts')).mtimeMs });
  if (!fs.existsSync(stamp) || fs.readFileSync(stamp, 'utf8') !== want) {
    console.log(`exporting ${dir} as int8 ONNX to ${out}...`);
    fs.mkdirSync(out, { recursive: true });
    exportMarianOnnx(dir, out, { int8: true });
    fs.writeFileSync(stamp, want);
  }
  const ort = await OrtMarian.create(out, { threads: THREADS });
  const model = await MarianModel.load(dir, { precision: 'int8' }); // its tokenizer only
  const tok = model.tokenizer!;
  const ids = work.map((w) => tok.encode(w.text));
  await ort.generate([ids[0]], { maxLength: work[0].len, minNewTokens: work[0].len }); // warm-up
  const ttft: number[] = [];
  let tokens = 0;
  const t0 = performance.now();
  for (let i = 0; i < ORT_SENTENCES; i++) {
    const w = work[i % work.length];
    const r = await ort.generate([ids[i % work.length]], { maxLength: w.len, minNewTokens: w.len });
    ttft.push(r.ttftMs);
    tokens += r.ids[0].length;
  }
  const el = (performance.now() - t0) / 1000;
  await ort.release();
  return { sentences_per_s: ORT_SENTENCES / el, tokens_per_s: tokens / el, ttft_p50_ms: pct(ttft, 50), sentences: ORT_SENTENCES };
}

/** The quality guard's cost: closed loop with the guard off and at two sample rates, rounds interleaved, medians. */
async function guardCost(dir: string, work: Work[]) {
  const rates = [0, 0.02, 0.1];
  const C = 16;
  const ts = await Promise.all(rates.map((r) => Translator.load(dir, {
    precision: 'int8', threads: THREADS, cacheBytes: 0,
    ...(r > 0 ? { qualityGuard: { sampleRate: r, minScore: 0, action: 'alert' as const, window: 50 } } : {}),
  })));
  const runs: Level[][] = rates.map(() => []);
  for (let round = 0; round < (quick ? 1 : 3); round++)
    for (let i = 0; i < rates.length; i++) runs[i].push(await closedLoop(ts[i], work, C, SECONDS, 101 * round + i));
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  const base = med(runs[0].map((l) => l.sentences_per_s));
  const guard = rates.map((r, i) => {
    const q = ts[i].stats().quality;
    const sps = med(runs[i].map((l) => l.sentences_per_s));
    return { sample_rate: r, sentences_per_s: sps, ttft_p95_ms: med(runs[i].map((l) => l.ttft_p95_ms)), loss_pct: 100 * (1 - sps / base), shadow_samples: q?.samples ?? 0, shadow_dropped: q?.shadowDropped ?? 0, control_memory_mb: (q?.controlMemoryBytes ?? 0) / 2 ** 20 };
  });
  await Promise.all(ts.map((t) => t.close()));
  console.log(`\nquality guard cost (closed loop, concurrency ${C}, fp32 control at low priority, ${quick ? 1 : 3} interleaved rounds)`);
  for (const g of guard)
    console.log(`  sampleRate ${String(g.sample_rate).padEnd(5)} ${g.sentences_per_s.toFixed(1)} sentences/s  TTFT p95 ${g.ttft_p95_ms.toFixed(1)} ms  loss ${g.loss_pct.toFixed(1)} %  (scored ${g.shadow_samples}, dropped ${g.shadow_dropped}, control +${g.control_memory_mb.toFixed(0)} MiB RSS)`);
  return guard;
}

async function main(): Promise<void> {
  const dir = path.join(ROOT, '.tmp', 'models', 'opus-mt-en-de-seed1'); // shared with bench:e2e, bench:serve, bench:step
  if (!fs.existsSync(path.join(dir, 'model.safetensors'))) {
    console.log(`generating the OPUS-MT-geometry model in ${dir} (once)...`);
    await makeModel({ preset: 'opus-mt-en-de', seed: 1, out: dir });
  }
  const work = await workload(dir);
  const guardOnly = process.argv.includes('--guard-only');
  const meanLen = work.reduce((a, w) => a + w.len, 0) / work.length;
  console.log(`bench:batch — OPUS-MT geometry, chimera int8, ${THREADS} threads; ${work.length} val sentences (10-30 tokens, mean target ${meanLen.toFixed(1)} tokens)`);

  if (guardOnly) {
    await guardCost(dir, work);
    return;
  }
  const t = await Translator.load(dir, { precision: 'int8', threads: THREADS, cacheBytes: 0, maxSlots: 64 });
  const levels: Level[] = [];
  console.log('\nclosed loop');
  console.log(['conc', 'sent/s', 'tok/s', 'ttft p50', 'ttft p95', 'rows/step', 'n'].map((h) => h.padStart(9)).join(' '));
  for (const c of LEVELS) {
    const l = await closedLoop(t, work, c, SECONDS, c * 13);
    levels.push(l);
    console.log([c, l.sentences_per_s.toFixed(1), l.tokens_per_s.toFixed(0), l.ttft_p50_ms.toFixed(1), l.ttft_p95_ms.toFixed(1), l.rows_per_step.toFixed(1), l.completed].map((v) => String(v).padStart(9)).join(' '));
  }
  const sat = Math.max(...levels.map((l) => l.sentences_per_s));
  const c1 = levels[0].sentences_per_s;
  console.log(`\nopen loop at 50 % of the saturated rate (${(sat / 2).toFixed(1)} sentences/s, Poisson arrivals, ${SECONDS * 2} s)`);
  const open = await openLoop(t, work, sat / 2, SECONDS * 2);
  console.log(`  TTFT p50 ${open.ttft_p50_ms.toFixed(1)} ms  p95 ${open.ttft_p95_ms.toFixed(1)} ms  p99 ${open.ttft_p99_ms.toFixed(1)} ms  (sentence p95 ${open.total_p95_ms.toFixed(1)} ms, ${open.sent} requests)`);
  await t.close();

  // cache hits: answered on the caller's thread, never queued
  const tc = await Translator.load(dir, { precision: 'int8', threads: THREADS });
  const hitTexts = work.slice(0, 50);
  for (const w of hitTexts) await tc.translate(w.text, { maxLength: w.len, minNewTokens: w.len });
  const hit: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const w = hitTexts[i % hitTexts.length];
    const t0 = performance.now();
    const [r] = await tc.translate(w.text, { maxLength: w.len, minNewTokens: w.len });
    hit.push(performance.now() - t0);
    if (!r.cached) throw new Error('expected a cache hit');
  }
  await tc.close();
  const cache = { p50_ms: pct(hit, 50), p99_ms: pct(hit, 99), calls: hit.length };
  console.log(`\ncache hit latency (2,000 calls): p50 ${cache.p50_ms.toFixed(3)} ms  p99 ${cache.p99_ms.toFixed(3)} ms`);

  // thread budgets: two 1-thread Translators at once against one alone, the same closed loop each
  const sideC = 16;
  const alone = await Translator.load(dir, { precision: 'int8', threads: 1, cacheBytes: 0 });
  const one = await closedLoop(alone, work, sideC, SECONDS);
  const other = await Translator.load(dir, { precision: 'int8', threads: 1, cacheBytes: 0 });
  const [a, b] = await Promise.all([closedLoop(alone, work, sideC, SECONDS), closedLoop(other, work, sideC, SECONDS, 7)]);
  await Promise.all([alone.close(), other.close()]);
  const side = { alone_sentences_per_s: one.sentences_per_s, pair_sentences_per_s: a.sentences_per_s + b.sentences_per_s, speedup: (a.sentences_per_s + b.sentences_per_s) / one.sentences_per_s };
  console.log(`\ntwo 1-thread Translators side by side (concurrency ${sideC} each): ${side.pair_sentences_per_s.toFixed(1)} sentences/s vs ${side.alone_sentences_per_s.toFixed(1)} alone: ${side.speedup.toFixed(2)}x`);

  const guard = process.argv.includes('--no-guard') ? null : await guardCost(dir, work);

  console.log(`\nonnxruntime int8, one request at a time, ${THREADS} threads (${ORT_SENTENCES} sentences)...`);
  const ort = await ortBaseline(dir, work);
  if (ort) console.log(`  ${ort.sentences_per_s.toFixed(1)} sentences/s, ${ort.tokens_per_s.toFixed(0)} tokens/s, TTFT p50 ${ort.ttft_p50_ms.toFixed(1)} ms`);

  console.log('\nsummary (targets from issue 8)');
  console.log(`  saturated throughput      ${sat.toFixed(1)} sentences/s (target >= 250)`);
  if (ort) console.log(`  vs onnxruntime one-at-a-time  ${(sat / ort.sentences_per_s).toFixed(1)}x (target >= 8x)`);
  console.log(`  vs chimera at concurrency 1   ${(sat / c1).toFixed(1)}x (target >= 5x)`);
  console.log(`  TTFT p95 at half saturation   ${open.ttft_p95_ms.toFixed(1)} ms (target <= 50)`);
  console.log(`  cache hit p99                 ${cache.p99_ms.toFixed(3)} ms (target <= 1)`);

  if (jsonOut) {
    fs.mkdirSync(path.dirname(path.resolve(jsonOut)), { recursive: true });
    fs.writeFileSync(jsonOut, JSON.stringify({ threads: THREADS, sentences: work.length, mean_target_tokens: meanLen, closed_loop: levels, open_loop: open, ort, cache_hit: cache, side_by_side: side, quality_guard: guard }, null, 2));
    console.log(`\nwrote ${jsonOut}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
