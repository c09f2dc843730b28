/**
 * The quantisation quality gate: measure fp32 BLEU (the control), then climb from the cheapest configuration
 * until one keeps BLEU within the budget:
 *
 *   1. int8 everywhere;
 *   2. int8 with the k most sensitive layer groups at fp16, k = 1, 2, ... (a group is one encoder layer, one
 *      decoder layer, or the LM head). Sensitivity is measured per group with only that group at int8 and the
 *      rest at fp32, as the teacher-forced KL divergence from fp32's next-token distribution along fp32's own
 *      greedy translations (cheaper and far less noisy than a BLEU run per group); top-1 disagreement is
 *      reported too;
 *   3. fp16 everywhere;
 *   4. fp32 (the control itself, which always passes a non-negative budget).
 *
 * The configurations are ordered by cost, so the first one that passes is the cheapest within budget; with
 * `tryAll` every configuration is measured and the fastest passing one (by measured sentences/s) is kept.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pyFixed, type BleuOptions } from '../bleu';
import { ChimeraError } from '../errors';
import { MarianModel, type Precision, type PrecisionPlan } from '../marian';
import { requireModelDirectory, type MarianConfig } from '../model/config';
import { evaluate, planName, type EvalResult } from './eval';

// ------------------------------------------------------------------------------------------------ precision groups

/** The groups whose precision the gate chooses, in forward order: encoder.0.., decoder.0.., lmHead. */
export function precisionGroups(config: Pick<MarianConfig, 'encoderLayers' | 'decoderLayers'>): string[] {
  return [
    ...Array.from({ length: config.encoderLayers }, (_, i) => `encoder.${i}`),
    ...Array.from({ length: config.decoderLayers }, (_, i) => `decoder.${i}`),
    'lmHead',
  ];
}

/** A plan with every group at `base` except the named ones. */
export function planWith(
  config: Pick<MarianConfig, 'encoderLayers' | 'decoderLayers'>, base: Precision, overrides: Record<string, Precision> = {},
): PrecisionPlan {
  for (const g of Object.keys(overrides))
    if (!precisionGroups(config).includes(g)) throw new ChimeraError('E_ARG', `unknown precision group '${g}'`);
  const plan: PrecisionPlan = { encoder: base, decoder: base, lmHead: overrides.lmHead ?? base };
  const layers = (kind: string, n: number) => Array.from({ length: n }, (_, i) => overrides[`${kind}.${i}`] ?? base);
  const enc = layers('encoder', config.encoderLayers);
  const dec = layers('decoder', config.decoderLayers);
  if (enc.some((p) => p !== base)) plan.encoderLayers = enc;
  if (dec.some((p) => p !== base)) plan.decoderLayers = dec;
  return plan;
}

// ------------------------------------------------------------------------------------------------ sensitivity

export interface SensitivityEntry {
  group: string;
  /** Mean KL(fp32 || this configuration) of the next-token distribution, in nats per position. */
  kl: number;
  /** Fraction of positions whose top-1 token differs from fp32's. */
  top1Disagreement: number;
}

export interface SensitivityResult {
  method: string;
  sentences: number;
  positions: number;
  /** Most sensitive first. */
  ranking: SensitivityEntry[];
}

function logSoftmaxRow(x: Float32Array, out: Float64Array): void {
  let max = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i] > max) max = x[i];
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += Math.exp(x[i] - max);
  const lse = max + Math.log(sum);
  for (let i = 0; i < x.length; i++) out[i] = x[i] - lse;
}

function argmax(x: Float32Array, banned: Set<number>): number {
  let best = -1;
  let bv = -Infinity;
  for (let i = 0; i < x.length; i++) if (!banned.has(i) && x[i] > bv) { bv = x[i]; best = i; }
  return best;
}

/**
 * Per-group sensitivity of `dir`'s model to int8: for each group, a model with only that group at int8 is
 * run teacher-forced along `targets` (the fp32 greedy ids for `sources`, eos included) and compared with the
 * fp32 `control`. Returns the groups most sensitive first (by KL, then top-1 disagreement).
 */
export async function measureSensitivity(
  dir: string, control: MarianModel, sources: number[][], targets: number[][],
  opts: { onProgress?: (done: number, total: number) => void; cacheBytes?: number } = {},
): Promise<SensitivityResult> {
  const cfg = control.config;
  const V = cfg.vocabSize;
  const banned = new Set(control.searchSpec.banned);
  const pairs = sources.map((s, i) => ({ src: s, dec: [cfg.decoderStartId, ...targets[i].slice(0, -1)] })).filter((_, i) => targets[i].length > 0);
  if (pairs.length === 0) throw new ChimeraError('E_INPUT', 'no sentences to measure sensitivity on');
  const positions = pairs.reduce((s, p) => s + p.dec.length, 0);
  const groups = precisionGroups(cfg);
  // fp32 logits are reused for every group when they fit in memory, else recomputed.
  const cache = positions * V * 4 <= (opts.cacheBytes ?? 256 * 2 ** 20) ? new Map<number, Float32Array>() : null;
  const ref = (i: number): Float32Array => {
    const hit = cache?.get(i);
    if (hit) return hit;
    const l = control.teacherForcedLogits(pairs[i].src, pairs[i].dec);
    cache?.set(i, l);
    return l;
  };
  const lp = new Float64Array(V);
  const lq = new Float64Array(V);
  const out: SensitivityEntry[] = [];
  const total = groups.length * pairs.length;
  for (const [gi, group] of groups.entries()) {
    const m = await MarianModel.load(dir, { precision: planWith(cfg, 'fp32', { [group]: 'int8' }) });
    let kl = 0;
    let differ = 0;
    for (let i = 0; i < pairs.length; i++) {
      const p = ref(i);
      const q = m.teacherForcedLogits(pairs[i].src, pairs[i].dec);
      for (let t = 0; t < pairs[i].dec.length; t++) {
        const pr = p.subarray(t * V, (t + 1) * V);
        const qr = q.subarray(t * V, (t + 1) * V);
        logSoftmaxRow(pr, lp);
        logSoftmaxRow(qr, lq);
        let k = 0;
        for (let v = 0; v < V; v++) k += Math.exp(lp[v]) * (lp[v] - lq[v]);
        kl += Math.max(0, k);
        if (argmax(pr, banned) !== argmax(qr, banned)) differ++;
      }
      opts.onProgress?.(gi * pairs.length + i + 1, total);
    }
    out.push({ group, kl: kl / positions, top1Disagreement: differ / positions });
  }
  const ranking = [...out].sort((a, b) => b.kl - a.kl || b.top1Disagreement - a.top1Disagreement || groups.indexOf(a.group) - groups.indexOf(b.group));
  return { method: 'teacher-forced KL(fp32 || group at int8, rest fp32) along fp32 greedy output', sentences: pairs.length, positions, ranking };
}

// ------------------------------------------------------------------------------------------------ the gate

export interface GateOptions {
  /** The largest BLEU loss against fp32 that is accepted (>= 0). */
  maxBleuDrop: number;
  beam?: number;
  batchSize?: number;
  maxLength?: number;
  bleu?: BleuOptions;
  /** Sentences (the first non-blank source lines) for the sensitivity pass. Default 200. */
  sensitivitySentences?: number;
  /** Measure every configuration and keep the fastest passing one by measured speed. Default false. */
  tryAll?: boolean;
  /** Write the chosen model here (MarianModel.save). */
  out?: string;
  /** Progress of the current stage. */
  onProgress?: (stage: string, done: number, total: number) => void;
  /** Called when a configuration has been measured. */
  onResult?: (row: GateRow) => void;
}

export interface GateRow {
  /** 1 int8, 2 int8 with fp16 groups, 3 fp16, 4 fp32. */
  tier: 1 | 2 | 3 | 4;
  name: string;
  plan: PrecisionPlan;
  /** Groups kept at fp16 (tier 2), most sensitive first. */
  fp16Groups?: string[];
  bleu: number;
  /** bleu - fp32 bleu (negative: a loss). */
  delta: number;
  sentencesPerSec: number;
  msPerToken: number;
  seconds: number;
  passed: boolean;
  chosen: boolean;
  /** The fp32 control row. */
  control?: boolean;
  /** sacreBLEU's output line for this configuration. */
  line: string;
}

export interface GateReport {
  model: string;
  sentences: number;
  beam: number;
  maxBleuDrop: number;
  bleuSignature: string;
  rule: string;
  sensitivity: SensitivityResult | null;
  /** In the order tried; the fp32 control last. */
  rows: GateRow[];
  chosen: { name: string; tier: number; plan: PrecisionPlan; bleu: number; delta: number; sentencesPerSec: number };
  out?: string;
  outBytes?: number;
  seconds: number;
  date: string;
}

export interface GateResult {
  chosen: PrecisionPlan;
  model: MarianModel;
  report: GateReport;
}

const EPS = 1e-9;

/**
 * Chooses the cheapest precision plan for the model in `dir` whose BLEU on `src` / `refs` is at most
 * `maxBleuDrop` below fp32's, and (with `out`) writes that model packed.
 */
export async function quantizeWithGate(dir: string, src: string[], refs: string[] | string[][], opts: GateOptions): Promise<GateResult> {
  const t0 = performance.now();
  const budget = opts?.maxBleuDrop;
  if (typeof budget !== 'number' || !Number.isFinite(budget) || budget < 0)
    throw new ChimeraError('E_ARG', `maxBleuDrop must be a finite number >= 0 (BLEU points), got ${String(budget)}`);
  requireModelDirectory(dir, 'the gate re-quantises from the original weights, so the model must be a Hugging Face model directory, not a packed file');
  const nSens = opts.sensitivitySentences ?? 200;
  if (!Number.isInteger(nSens) || nSens < 1) throw new ChimeraError('E_ARG', `sensitivitySentences must be a positive integer, got ${nSens}`);

  const evalOpts = (stage: string) => ({
    beam: opts.beam, batchSize: opts.batchSize, maxLength: opts.maxLength, bleu: opts.bleu,
    onProgress: (d: number, t: number) => opts.onProgress?.(stage, d, t),
  });
  const control = await MarianModel.load(dir, { precision: 'fp32' });
  const cfg = control.config;
  const layers = { encoder: cfg.encoderLayers, decoder: cfg.decoderLayers };
  const c = evaluate(control, src, refs, evalOpts('fp32 control'));
  const rowOf = (tier: GateRow['tier'], plan: PrecisionPlan, r: EvalResult, extra: Partial<GateRow> = {}): GateRow => {
    const delta = r.bleu.score - c.bleu.score;
    return {
      tier, name: planName(plan, layers), plan, bleu: r.bleu.score, delta,
      sentencesPerSec: r.sentencesPerSec, msPerToken: r.msPerToken, seconds: r.seconds,
      passed: -delta <= budget + EPS, chosen: false, line: r.bleu.toString(), ...extra,
    };
  };
  const controlRow = rowOf(4, control.precision, c, { name: 'fp32 (control)', control: true });
  opts.onResult?.(controlRow);

  const rows: GateRow[] = [];
  const models = new Map<GateRow, MarianModel>();
  let sensitivity: SensitivityResult | null = null;
  const tryPlan = async (tier: GateRow['tier'], plan: PrecisionPlan, extra: Partial<GateRow> = {}): Promise<boolean> => {
    const name = extra.name ?? planName(plan, layers);
    opts.onProgress?.(`loading ${name}`, 0, 1);
    const m = await MarianModel.load(dir, { precision: plan });
    const row = rowOf(tier, plan, evaluate(m, src, refs, evalOpts(name)), extra);
    rows.push(row);
    opts.onResult?.(row);
    if (row.passed) models.set(row, m);
    return row.passed && !opts.tryAll;
  };

  let done = await tryPlan(1, planWith(cfg, 'int8'));
  if (!done) {
    const srcIds: number[][] = [];
    const tgtIds: number[][] = [];
    const tok = control.tokenizer!;
    for (let i = 0; i < src.length && srcIds.length < nSens; i++) {
      if (src[i].trim() === '' || c.ids[i].length === 0) continue;
      srcIds.push(tok.encode(src[i]));
      tgtIds.push(c.ids[i]);
    }
    sensitivity = await measureSensitivity(dir, control, srcIds, tgtIds, { onProgress: (d, t) => opts.onProgress?.('sensitivity', d, t) });
    const ranked = sensitivity.ranking.map((e) => e.group);
    for (let k = 1; k < ranked.length && !done; k++) {
      const keep = ranked.slice(0, k);
      const inOrder = precisionGroups(cfg).filter((g) => keep.includes(g));
      const plan = planWith(cfg, 'int8', Object.fromEntries(keep.map((g) => [g, 'fp16' as Precision])));
      done = await tryPlan(2, plan, { fp16Groups: keep, name: `int8 + fp16 at ${inOrder.join(', ')}` });
    }
  }
  if (!done) done = await tryPlan(3, planWith(cfg, 'fp16'));
  rows.push(controlRow);
  models.set(controlRow, control);

  // Without tryAll the only passing rows are the first pass and the control: keep the first. With tryAll,
  // the fastest measured passing row.
  const passing = rows.filter((r) => r.passed);
  const best = opts.tryAll ? passing.reduce((a, b) => (b.sentencesPerSec > a.sentencesPerSec ? b : a)) : passing[0];
  best.chosen = true;
  const model = models.get(best)!;
  const report: GateReport = {
    model: path.resolve(dir), sentences: c.sentences, beam: opts.beam ?? 1, maxBleuDrop: budget, bleuSignature: c.bleu.signature,
    rule: opts.tryAll
      ? 'every configuration measured; the fastest (sentences/s) whose BLEU drop against fp32 is within budget is kept'
      : 'configurations tried cheapest first; the first whose BLEU drop against fp32 is within budget is kept',
    sensitivity, rows,
    chosen: { name: best.name, tier: best.tier, plan: best.plan, bleu: best.bleu, delta: best.delta, sentencesPerSec: best.sentencesPerSec },
    seconds: 0, date: new Date().toISOString(),
  };
  if (opts.out !== undefined) {
    report.out = path.resolve(opts.out);
    report.outBytes = model.save(opts.out);
  }
  report.seconds = (performance.now() - t0) / 1000;
  return { chosen: best.plan, model, report };
}

// ------------------------------------------------------------------------------------------------ report

const signed = (x: number, d = 2) => (x >= 0 ? '+' : '') + pyFixed(x, d);

/** The report as markdown: the configurations tried (BLEU, delta, speed, gate, chosen) and the sensitivity ranking. */
export function gateReportMarkdown(r: GateReport): string {
  const L: string[] = [];
  L.push('# chimera quantize: quality gate report', '');
  L.push(`- model: \`${r.model}\``);
  L.push(`- sentences: ${r.sentences}, search: ${r.beam > 1 ? `beam ${r.beam}` : 'greedy'}`);
  L.push(`- budget: BLEU drop against fp32 <= ${r.maxBleuDrop}`);
  L.push(`- BLEU: sacreBLEU \`${r.bleuSignature}\``);
  L.push(`- rule: ${r.rule}`);
  L.push(`- chosen: **${r.chosen.name}** (BLEU ${pyFixed(r.chosen.bleu, 2)}, ${signed(r.chosen.delta)} vs fp32)`);
  if (r.out) L.push(`- written: \`${r.out}\` (${((r.outBytes ?? 0) / 1048576).toFixed(2)} MiB)`);
  L.push(`- time: ${r.seconds.toFixed(1)} s`, '');
  L.push('| tier | configuration | BLEU | delta | sent/s | ms/token | gate | chosen |');
  L.push('|---:|---|---:|---:|---:|---:|---|:---:|');
  for (const row of r.rows) {
    const gate = row.control ? 'control' : row.passed ? 'pass' : 'fail';
    L.push(`| ${row.tier} | ${row.name} | ${pyFixed(row.bleu, 2)} | ${signed(row.delta)} | ${row.sentencesPerSec.toFixed(1)} | ${row.msPerToken.toFixed(3)} | ${gate} | ${row.chosen ? 'yes' : ''} |`);
  }
  if (r.sensitivity) {
    const s = r.sensitivity;
    L.push('', `Sensitivity (${s.method}; ${s.sentences} sentences, ${s.positions} positions), most sensitive first:`, '');
    L.push('| rank | group | KL (nats/position) | top-1 disagreement |');
    L.push('|---:|---|---:|---:|');
    s.ranking.forEach((e, i) => L.push(`| ${i + 1} | ${e.group} | ${e.kl.toExponential(3)} | ${(100 * e.top1Disagreement).toFixed(2)}% |`));
  }
  return L.join('\n') + '\n';
}

/** Writes `base`.md and `base`.json (a trailing .md or .json on `base` is dropped first). Returns both paths. */
export function writeGateReport(report: GateReport, base: string): { md: string; json: string } {
  const b = base.replace(/\.(md|json)$/i, '');
  const md = `${b}.md`;
  const json = `${b}.json`;
  fs.writeFileSync(md, gateReportMarkdown(report));
  fs.writeFileSync(json, JSON.stringify(report, null, 2) + '\n');
  return { md, json };
}
