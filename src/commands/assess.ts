/**
 * `chimera assess --model DIR [--src F --ref F] [--out DIR]`: the assessment a performance engineer hands over.
 * Every chimera tier (fp32, fp16, int8) and stock onnxruntime-node on the same weights (fp32, and int8 as
 * quantize_dynamic emits it with per-channel and with per-tensor weight scales, each with its BLEU; exported by src/onnx/export-marian.ts, run by src/onnx/ort-marian.ts with the same
 * search) translate the same sentences one at a time, interleaved sentence by sentence, at the same thread count.
 * Reported per engine: TTFT p50/p95, sentence latency p50/p95, sequential and concurrent QPS, BLEU (with --ref) beside the fp32
 * control, agreement with the fp32 control, load time and peak memory (each engine alone in a child process);
 * every chimera figure beside onnxruntime's. Writes report.md, report.json and ttft.svg into --out.
 *
 * onnxruntime-node must be installed (it is a devDependency of chimera-infer): `npm install onnxruntime-node
 * --onnxruntime-node-install=skip` (its CPU build; without the flag its install step downloads CUDA libraries).
 */
import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { corpusBleu } from '../bleu';
import { ChimeraError } from '../errors';
import { getIsa, getThreads } from '../kernels';
import { MarianModel, type Precision } from '../marian';
import { exportMarianOnnx } from '../onnx/export-marian';
import { demoModelPath } from '../demo';
import { StagedProgress } from '../progress';
import { num, str, type CommandArgs, type CommandSpec } from './args';
import { checkAligned, readLines } from '../quality/io';
import type { ProbeJob, ProbeResult } from './assess-probe';
import { requireModelDirectory } from '../model/config';

export const ASSESS: CommandSpec = {
  name: 'assess',
  summary: 'chimera\'s tiers against onnxruntime on the same weights: TTFT, QPS, BLEU, peak memory; writes a report',
  description: 'Writes report.md, report.json and ttft.svg into --out. Needs onnxruntime-node (npm install onnxruntime-node\n' +
    '--onnxruntime-node-install=skip: its CPU build, without the CUDA download).',
  options: [
    { flag: 'model', kind: 'string', arg: 'DIR', help: 'a Hugging Face Marian directory (exported to ONNX for onnxruntime)', def: '(the built-in demo model)' },
    { flag: 'src', kind: 'string', arg: 'FILE', help: 'source sentences', def: '(a dozen built-in sentences)' },
    { flag: 'ref', kind: 'string', arg: 'FILE', help: 'references for BLEU (needs --src)' },
    { flag: 'out', kind: 'string', arg: 'DIR', help: 'report directory', def: 'assess-report' },
    { flag: 'beam', kind: 'int', arg: 'N', min: 1, help: 'beam width', def: '(the model\'s num_beams)' },
    { flag: 'limit', kind: 'int', arg: 'N', min: 1, help: 'sentences at most', def: '100' },
    { flag: 'max-length', kind: 'int', arg: 'N', min: 1, help: 'generated tokens at most per sentence', def: '(min(max_length - 1, 128))' },
  ],
  run: assessCommand,
};

/**
 * The message when onnxruntime-node cannot be loaded: how to install it offline-safe, without Node's require stack.
 */
export function onnxruntimeMissing(e: unknown): ChimeraError {
  const first = String((e as Error)?.message ?? e).split('\n')[0];
  return new ChimeraError('E_ARG',
    `assess compares with onnxruntime-node, which could not be loaded (${first}). Install its CPU build with ` +
    '`npm install onnxruntime-node --onnxruntime-node-install=skip` (or put `onnxruntime-node-install=skip` in .npmrc, or set ' +
    'ONNXRUNTIME_NODE_INSTALL=skip): without it, its install step downloads CUDA libraries and fails offline');
}

/** Used when no --src is given: everyday English sentences of assorted lengths. */
const BUILTIN_SOURCES = [
  'A dog runs across the grass.',
  'Two children are playing in the snow near a red house.',
  'A man in a blue shirt is riding a bicycle down a busy street.',
  'The woman is reading a book on a bench in the park.',
  'Several people are waiting for the bus in the rain.',
  'A little girl in a pink dress is climbing the stairs of a wooden playhouse.',
  'Three men are working on a roof.',
  'A group of musicians performs on a stage in front of a large crowd while the sun sets behind them.',
  'A cat sleeps on the windowsill.',
  'An older man sells fruit and vegetables at a market stall.',
  'The boy throws a ball to his brother.',
  'Two women are talking at a table outside a small cafe.',
];

const TIERS: Precision[] = ['fp32', 'fp16', 'int8'];
/** onnxruntime int8 both ways quantize_dynamic writes it: per-channel and per-tensor weight scales (its default). */
const ORT_TIERS = ['fp32', 'int8', 'int8-per-tensor'] as const;
/** The ORT tier each chimera tier is compared with (ORT has no fp16 tier on CPU: fp16 weights are compared with fp32). */
const ORT_PEER: Record<Precision, (typeof ORT_TIERS)[number]> = { fp32: 'fp32', fp16: 'fp32', int8: 'int8' };

interface EngineStats {
  engine: 'chimera' | 'onnxruntime';
  tier: string;
  ttft_p50_ms: number;
  ttft_p95_ms: number;
  latency_p50_ms: number;
  latency_p95_ms: number;
  /** Sentences per second, one at a time (1000 / mean latency). */
  sequential_qps: number;
  /**
   * Sentences per second with every sentence submitted at once as its own request: chimera through a Translator
   * (continuous batching, cache off), as `chimera serve` runs it; onnxruntime one request at a time, as a plain
   * server awaiting its loop runs it (so equal to its sequential QPS).
   */
  concurrent_qps: number | null;
  tokens_per_s: number;
  load_ms: number;
  peak_rss_mb: number | null;
  /** Resident set right after loading (the engine alone, before translating). */
  rss_after_load_mb: number | null;
  bleu: number | null;
  bleu_delta_vs_fp32: number | null;
  /** Share of sentences whose output equals chimera fp32's. */
  same_as_fp32: number;
}

/**
 * Sentences per second through a Translator (the worker `chimera serve` runs) with every sentence submitted at
 * once as its own request, after a warm-up; the sentence cache is off so every sentence is decoded.
 */
async function concurrentQps(modelDir: string, tier: Precision, texts: string[], threads: number, beam: number, maxLength: number): Promise<number> {
  const { Translator } = await import('../translator');
  const load = Translator.load as (dir: string, o: Record<string, unknown>) => ReturnType<typeof Translator.load>;
  const t = await load(modelDir, { precision: tier, threads, cacheBytes: 0 });
  try {
    await Promise.all(texts.slice(0, 4).map((x) => t.translate(x, { beam, maxLength })));
    const t0 = performance.now();
    await Promise.all(texts.map((x) => t.translate(x, { beam, maxLength })));
    return (1000 * texts.length) / (performance.now() - t0);
  } finally {
    await t.close();
  }
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}


/** Runs one memory probe in a child process (the engine alone). */
function probe(job: ProbeJob): Promise<ProbeResult> {
  const ext = path.extname(__filename);
  const file = path.join(__dirname, `assess-probe${ext}`);
  return new Promise((resolve) => {
    const child = fork(file, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], env: { ...process.env } });
    let got: ProbeResult | null = null;
    let err = '';
    child.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('message', (m) => { got = m as ProbeResult; });
    child.on('exit', () => resolve(got ?? { peakRssMb: NaN, rssAfterLoadMb: NaN, loadMs: NaN, error: err.trim().split('\n').pop() || 'the probe exited without a result' }));
    child.send(job);
  });
}

const f = (x: number | null, d = 1) => (x === null || !Number.isFinite(x) ? '–' : x.toFixed(d));

/** A grouped bar chart: per tier, chimera's TTFT p50 beside its ORT peer's, p95 as a whisker. */
export function ttftSvg(stats: EngineStats[], title: string): string {
  const groups = TIERS.map((t) => ({
    label: t === 'fp16' ? 'fp16 (ORT: fp32)' : t,
    bars: [stats.find((s) => s.engine === 'chimera' && s.tier === t)!, stats.find((s) => s.engine === 'onnxruntime' && s.tier === ORT_PEER[t])!],
  }));
  const W = 640, H = 360, left = 60, bottom = 50, top = 50, plotH = H - top - bottom, plotW = W - left - 20;
  const max = Math.max(...stats.map((s) => (Number.isFinite(s.ttft_p95_ms) ? s.ttft_p95_ms : 0)), 1e-3) * 1.1;
  const y = (v: number) => top + plotH - (v / max) * plotH;
  const gw = plotW / groups.length, bw = gw / 3.2;
  const colors = ['#2b6cb0', '#a0aec0'];
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${esc(title)}</text>`,
    `<line x1="${left}" y1="${top + plotH}" x2="${W - 20}" y2="${top + plotH}" stroke="black"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="black"/>`,
    `<text x="16" y="${top + plotH / 2}" transform="rotate(-90 16 ${top + plotH / 2})" text-anchor="middle">TTFT (ms)</text>`,
  ];
  for (let k = 0; k <= 4; k++) {
    const v = (max / 4) * k;
    parts.push(`<line x1="${left - 4}" y1="${y(v)}" x2="${left}" y2="${y(v)}" stroke="black"/>`,
      `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(v < 10 ? 1 : 0)}</text>`);
  }
  groups.forEach((g, gi) => {
    const x0 = left + gi * gw + (gw - 2 * bw) / 2;
    g.bars.forEach((s, bi) => {
      const x = x0 + bi * bw;
      const v = Number.isFinite(s.ttft_p50_ms) ? s.ttft_p50_ms : 0;
      parts.push(`<rect x="${x}" y="${y(v)}" width="${bw - 4}" height="${top + plotH - y(v)}" fill="${colors[bi]}"/>`,
        `<text x="${x + (bw - 4) / 2}" y="${y(v) - 4}" text-anchor="middle">${v.toFixed(1)}</text>`);
      if (Number.isFinite(s.ttft_p95_ms))
        parts.push(`<line x1="${x + (bw - 4) / 2}" y1="${y(v)}" x2="${x + (bw - 4) / 2}" y2="${y(s.ttft_p95_ms)}" stroke="black" stroke-dasharray="2,2"/>`,
          `<line x1="${x + (bw - 4) / 2 - 5}" y1="${y(s.ttft_p95_ms)}" x2="${x + (bw - 4) / 2 + 5}" y2="${y(s.ttft_p95_ms)}" stroke="black"/>`);
    });
    parts.push(`<text x="${left + gi * gw + gw / 2}" y="${top + plotH + 18}" text-anchor="middle">${esc(g.label)}</text>`);
  });
  const ly = H - 14;
  parts.push(`<rect x="${left}" y="${ly - 10}" width="12" height="12" fill="${colors[0]}"/><text x="${left + 16}" y="${ly}">chimera (p50; dashed: p95)</text>`,
    `<rect x="${left + 220}" y="${ly - 10}" width="12" height="12" fill="${colors[1]}"/><text x="${left + 236}" y="${ly}">onnxruntime, same weights</text>`,
    '</svg>');
  return parts.join('\n') + '\n';
}

export async function assessCommand(a: CommandArgs): Promise<number> {
  const modelDir = str(a, 'model') ?? demoModelPath;
  requireModelDirectory(modelDir, 'assess exports the weights to ONNX, so it needs the Hugging Face directory');
  const outDir = str(a, 'out')!;
  const srcFile = str(a, 'src'), refFile = str(a, 'ref');
  if (refFile && !srcFile) throw new ChimeraError('E_ARG', '--ref needs --src');
  let ort: typeof import('../onnx/ort-marian');
  try {
    ort = await import('../onnx/ort-marian');
  } catch (e) {
    throw onnxruntimeMissing(e);
  }
  const threads = getThreads();
  const limit = num(a, 'limit')!;
  let src = srcFile ? readLines(srcFile, { role: 'source' }) : BUILTIN_SOURCES;
  let ref = refFile ? readLines(refFile, { role: 'reference' }) : null;
  if (ref) checkAligned([{ name: srcFile!, lines: src }, { name: refFile!, lines: ref }]);
  const keep = src.map((l, i) => i).filter((i) => src[i].trim() !== '').slice(0, limit);
  src = keep.map((i) => src[i]);
  ref = ref ? keep.map((i) => ref![i]) : null;
  if (src.length === 0) throw new ChimeraError('E_ARG', 'no non-empty source lines');

  const ui = new StagedProgress();
  const t0 = performance.now();
  // 1. chimera tiers
  const ours = new Map<Precision, MarianModel>();
  const loadMs = new Map<string, number>();
  for (const [i, tier] of TIERS.entries()) {
    ui.update('loading chimera tiers', i, TIERS.length);
    const m = await MarianModel.load(modelDir, { precision: tier });
    ours.set(tier, m);
    loadMs.set(`chimera:${tier}`, m.loadMs);
  }
  const fp32 = ours.get('fp32')!;
  const tok = fp32.requireTokenizer();
  const cfg = fp32.config;
  const beam = num(a, 'beam') ?? cfg.numBeams;
  // Capped by default: a model that never emits eos (random weights) would otherwise run to max_length.
  const maxLength = num(a, 'max-length') ?? Math.min(cfg.maxLength - 1, 128);
  const ids = src.map((l) => tok.encode(l));

  // 2. the same weights as ONNX, in a scratch directory
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'chimera-assess-'));
  const onnxDirs: Record<string, string> = {};
  const orts = new Map<string, import('../onnx/ort-marian').OrtMarian>();
  try {
    for (const [i, tier] of ORT_TIERS.entries()) {
      ui.update('exporting ONNX', i, ORT_TIERS.length);
      onnxDirs[tier] = path.join(scratch, tier);
      exportMarianOnnx(modelDir, onnxDirs[tier], { int8: tier !== 'fp32', perTensor: tier === 'int8-per-tensor', merged: false });
      const tl = performance.now();
      orts.set(tier, await ort.OrtMarian.create(onnxDirs[tier], { threads }));
      loadMs.set(`onnxruntime:${tier}`, performance.now() - tl);
    }

    // 3. interleaved translation of every sentence by every engine
    type Eng = { engine: 'chimera' | 'onnxruntime'; tier: string; run: (x: number[]) => Promise<{ ids: number[]; ttftMs: number; totalMs: number }> };
    const engines: Eng[] = [
      ...TIERS.map((t): Eng => ({ engine: 'chimera', tier: t, run: async (x) => { const r = ours.get(t)!.generate([x], { beam, maxLength }); return { ids: r.ids[0], ttftMs: r.ttftMs, totalMs: r.totalMs }; } })),
      ...ORT_TIERS.map((t): Eng => ({ engine: 'onnxruntime', tier: t, run: async (x) => { const r = await orts.get(t)!.generate([x], { beam, maxLength }); return { ids: r.ids[0], ttftMs: r.ttftMs, totalMs: r.totalMs }; } })),
    ];
    const warm = ids.slice(0, Math.min(3, ids.length));
    for (const [i, e] of engines.entries()) {
      ui.update('warming up', i, engines.length);
      for (const x of warm) await e.run(x);
    }
    const res = engines.map(() => ({ ttft: [] as number[], total: [] as number[], tokens: 0, out: [] as number[][] }));
    for (let s = 0; s < ids.length; s++) {
      ui.update(`translating ${ids.length} sentences x ${engines.length} engines`, s, ids.length);
      for (let k = 0; k < engines.length; k++) {
        const j = (k + s) % engines.length;
        const r = await engines[j].run(ids[s]);
        res[j].ttft.push(r.ttftMs);
        res[j].total.push(r.totalMs);
        res[j].tokens += r.ids.length;
        res[j].out[s] = r.ids;
      }
    }
    for (const o of orts.values()) await o.release();
    orts.clear();

    // 3b. concurrent QPS: every sentence at once, each its own request, through a Translator per chimera tier
    const concurrent = new Map<string, number>();
    for (const [i, tier] of TIERS.entries()) {
      ui.update('concurrent QPS (all sentences at once through a Translator)', i, TIERS.length);
      concurrent.set(tier, await concurrentQps(modelDir, tier, src.filter((l) => l.trim() !== ''), threads, beam, maxLength));
    }

    // 4. peak memory, each engine alone in a child process
    const probeSrc = ids.slice(0, Math.min(20, ids.length));
    const baseJob = { model: path.resolve(modelDir), threads, sources: probeSrc, beam, maxLength };
    const jobs: ProbeJob[] = [
      { ...baseJob, engine: 'none', tier: '' },
      ...TIERS.map((t): ProbeJob => ({ ...baseJob, engine: 'chimera', tier: t })),
      ...ORT_TIERS.map((t): ProbeJob => ({ ...baseJob, engine: 'ort', tier: t, onnxDir: onnxDirs[t] })),
    ];
    const mem: ProbeResult[] = [];
    for (const [i, j] of jobs.entries()) {
      ui.update('measuring peak memory (one process per engine)', i, jobs.length);
      mem.push(await probe(j));
    }
    ui.done();

    // 5. figures
    const texts = res.map((r) => r.out.map((x) => tok.decode(x)));
    const bleus = ref ? texts.map((h) => corpusBleu(h, [ref!]).score) : null;
    const fp32Out = res[0].out.map((x) => x.join(','));
    const stats: EngineStats[] = engines.map((e, j) => {
      const r = res[j];
      const sum = r.total.reduce((x, y) => x + y, 0);
      const same = r.out.filter((x, s) => x.join(',') === fp32Out[s]).length / r.out.length;
      const m = mem[1 + j];
      return {
        engine: e.engine, tier: e.tier,
        ttft_p50_ms: quantile(r.ttft, 0.5), ttft_p95_ms: quantile(r.ttft, 0.95),
        latency_p50_ms: quantile(r.total, 0.5), latency_p95_ms: quantile(r.total, 0.95),
        sequential_qps: (1000 * r.total.length) / sum, tokens_per_s: (1000 * r.tokens) / sum,
        concurrent_qps: e.engine === 'chimera' ? concurrent.get(e.tier) ?? null : (1000 * r.total.length) / sum,
        load_ms: loadMs.get(`${e.engine}:${e.tier}`) ?? NaN,
        peak_rss_mb: Number.isFinite(m.peakRssMb) ? m.peakRssMb : null,
        rss_after_load_mb: Number.isFinite(m.rssAfterLoadMb) ? m.rssAfterLoadMb : null,
        bleu: bleus ? bleus[j] : null, bleu_delta_vs_fp32: bleus ? bleus[j] - bleus[0] : null,
        same_as_fp32: same,
      };
    });
    const st = (engine: string, tier: string) => stats.find((s) => s.engine === engine && s.tier === tier)!;
    const comparisons = TIERS.flatMap((t) => ORT_TIERS.map((o) => {
      const a1 = st('chimera', t), b = st('onnxruntime', o);
      return {
        tier: t, ort_tier: o,
        ttft_p50_ratio: a1.ttft_p50_ms / b.ttft_p50_ms, ttft_p95_ratio: a1.ttft_p95_ms / b.ttft_p95_ms,
        latency_p50_ratio: a1.latency_p50_ms / b.latency_p50_ms, qps_speedup: a1.sequential_qps / b.sequential_qps,
        concurrent_qps_speedup: a1.concurrent_qps !== null && b.concurrent_qps !== null ? a1.concurrent_qps / b.concurrent_qps : null,
        peak_rss_ratio: a1.peak_rss_mb !== null && b.peak_rss_mb !== null ? a1.peak_rss_mb / b.peak_rss_mb : null,
        bleu_delta: a1.bleu !== null && b.bleu !== null ? a1.bleu - b.bleu : null,
      };
    }));
    const ortVersion = (() => {
      try {
        return (JSON.parse(fs.readFileSync(require.resolve('onnxruntime-node/package.json'), 'utf8')) as { version: string }).version;
      } catch {
        return 'unknown';
      }
    })();
    const report = {
      model: path.resolve(modelDir),
      geometry: { d_model: cfg.dModel, encoder_layers: cfg.encoderLayers, decoder_layers: cfg.decoderLayers, heads: cfg.decoderHeads, ffn: cfg.encoderFfn, vocab: cfg.vocabSize },
      machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cpus: os.cpus().length, isa: getIsa(), node: process.version, ort_version: ortVersion },
      threads,
      search: { beam, max_new_tokens: maxLength },
      sentences: src.length,
      src: srcFile ? path.resolve(srcFile) : '(built-in sentences)',
      ref: refFile ? path.resolve(refFile) : null,
      protocol: 'same weights (exported to ONNX opset 17), same sentences, same thread count (ORT intraOpNumThreads, interOpNumThreads 1, sequential, graphOptimizationLevel all); one sentence at a time, engines interleaved sentence by sentence after a warm-up; peak memory: each engine alone in a child process',
      concurrent_qps_note: 'every sentence submitted at once, each as its own request; chimera through a Translator (continuous batching, sentence cache off, as chimera serve runs it), onnxruntime one request at a time as a plain server awaiting its loop serves it (equal to its sequential QPS)',
      baseline_rss_mb: Number.isFinite(mem[0].peakRssMb) ? mem[0].peakRssMb : null,
      engines: stats,
      comparisons,
      elapsed_s: (performance.now() - t0) / 1000,
    };
    fs.mkdirSync(outDir, { recursive: true });
    fs.writeFileSync(path.join(outDir, 'report.json'), JSON.stringify(report, null, 2) + '\n');
    const title = `TTFT per tier, ${path.basename(path.resolve(modelDir))}, ${threads} thread${threads > 1 ? 's' : ''}, beam ${beam}`;
    fs.writeFileSync(path.join(outDir, 'ttft.svg'), ttftSvg(stats, title));
    fs.writeFileSync(path.join(outDir, 'report.md'), markdown(report, stats, comparisons));
    console.log(`wrote ${path.join(outDir, 'report.md')}, report.json, ttft.svg (${report.elapsed_s.toFixed(0)} s)`);
    for (const s of stats)
      console.log(`${(s.engine + ' ' + s.tier).padEnd(17)} TTFT p50 ${f(s.ttft_p50_ms, 2).padStart(8)} ms  p95 ${f(s.ttft_p95_ms, 2).padStart(8)} ms  QPS ${f(s.sequential_qps, 1).padStart(7)}` +
        `  peak ${f(s.peak_rss_mb, 0).padStart(5)} MB${s.bleu !== null ? `  BLEU ${f(s.bleu, 2)}` : ''}  same as fp32 ${(100 * s.same_as_fp32).toFixed(0)}%`);
    return 0;
  } finally {
    for (const o of orts.values()) await o.release();
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

function markdown(
  r: { model: string; geometry: Record<string, number>; machine: Record<string, string | number>; threads: number; search: { beam: number; max_new_tokens: number }; sentences: number; src: string; ref: string | null; protocol: string; baseline_rss_mb: number | null; concurrent_qps_note: string },
  stats: EngineStats[],
  comparisons: { tier: string; ort_tier: string; ttft_p50_ratio: number; ttft_p95_ratio: number; latency_p50_ratio: number; qps_speedup: number; concurrent_qps_speedup: number | null; peak_rss_ratio: number | null; bleu_delta: number | null }[],
): string {
  const g = r.geometry;
  const L: string[] = [
    `# chimera assessment: ${path.basename(r.model)}`,
    '',
    `- model: \`${r.model}\` (d ${g.d_model}, ${g.encoder_layers}+${g.decoder_layers} layers, ${g.heads} heads, ffn ${g.ffn}, vocab ${g.vocab})`,
    `- machine: ${r.machine.cpu} × ${r.machine.cpus}, chimera ISA ${r.machine.isa}, node ${r.machine.node}, onnxruntime-node ${r.machine.ort_version}`,
    `- threads: ${r.threads} (both engines); search: ${r.search.beam === 1 ? 'greedy' : `beam ${r.search.beam}`}, at most ${r.search.max_new_tokens} new tokens`,
    `- sentences: ${r.sentences} from ${r.src}${r.ref ? `, references ${r.ref}` : ' (no references: no BLEU)'}`,
    `- protocol: ${r.protocol}`,
    '',
    '![TTFT per tier](ttft.svg)',
    '',
    '## Latency, throughput, memory',
    '',
    '| engine | tier | TTFT p50 (ms) | TTFT p95 (ms) | sentence p50 (ms) | sentence p95 (ms) | sequential QPS | concurrent QPS | tokens/s | load (ms) | RSS after load (MB) | peak RSS (MB) |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...stats.map((s) => `| ${s.engine} | ${s.tier} | ${f(s.ttft_p50_ms, 2)} | ${f(s.ttft_p95_ms, 2)} | ${f(s.latency_p50_ms, 1)} | ${f(s.latency_p95_ms, 1)} | ${f(s.sequential_qps, 1)} | ${f(s.concurrent_qps, 1)} | ${f(s.tokens_per_s, 0)} | ${f(s.load_ms, 0)} | ${f(s.rss_after_load_mb, 0)} | ${f(s.peak_rss_mb, 0)} |`),
    '',
    `RSS and peak RSS are each engine alone in a fresh process (Node.js with both runtimes loaded and no model: ${f(r.baseline_rss_mb, 0)} MB); the peak includes loading (chimera reads the fp32 checkpoint, then packs it). Concurrent QPS: ${r.concurrent_qps_note}.`,
    '',
    '## chimera against onnxruntime (same weights)',
    '',
    'Ratios are chimera / onnxruntime: below 1 is better for TTFT, latency and memory; QPS speed-up above 1 is better.',
    '',
    '| chimera tier | onnxruntime tier | TTFT p50 | TTFT p95 | sentence p50 | QPS speed-up | concurrent QPS speed-up | peak RSS | BLEU Δ |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ...comparisons.map((c) => `| ${c.tier} | ${c.ort_tier} | ${f(c.ttft_p50_ratio, 2)} | ${f(c.ttft_p95_ratio, 2)} | ${f(c.latency_p50_ratio, 2)} | ${f(c.qps_speedup, 2)} | ${f(c.concurrent_qps_speedup, 2)} | ${f(c.peak_rss_ratio, 2)} | ${c.bleu_delta === null ? '–' : (c.bleu_delta >= 0 ? '+' : '') + c.bleu_delta.toFixed(2)} |`),
    '',
    '## Quality',
    '',
    '| engine | tier | BLEU | Δ vs chimera fp32 | output identical to chimera fp32 |',
    '|---|---|---:|---:|---:|',
    ...stats.map((s) => `| ${s.engine} | ${s.tier} | ${f(s.bleu, 2)} | ${s.bleu_delta_vs_fp32 === null ? '–' : (s.bleu_delta_vs_fp32 >= 0 ? '+' : '') + s.bleu_delta_vs_fp32.toFixed(2)} | ${(100 * s.same_as_fp32).toFixed(1)}% |`),
    '',
    'BLEU is sacreBLEU-exact corpus BLEU (13a, exp smoothing). The fp32 control is chimera fp32; onnxruntime fp32 runs the same',
    'function and should match it; int8 rows show what each engine\'s quantisation costs.',
    '',
  ];
  return L.join('\n');
}
