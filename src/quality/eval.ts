/**
 * Translation quality with a control group: translate a source set with a model, score it with sacreBLEU-exact
 * BLEU, and always do the same with the fp32 model, so every cheaper tier is judged against the model it
 * approximates on the same sentences, the same search and the same machine.
 */
import * as fs from 'node:fs';
import { corpusBleu, type BleuOptions, type BleuScore } from '../bleu';
import { generateBatched, longestFirst } from './batch';
import { ChimeraError } from '../errors';
import { MarianModel, noTokenizerError, type Precision, type PrecisionPlan } from '../marian';

export interface EvalOptions {
  /** Beam size; 1 (default) is greedy. */
  beam?: number;
  /** Sentences per generate() call. Default 32. */
  batchSize?: number;
  /** Generated tokens at most per sentence; default the model's max_length - 1. */
  maxLength?: number;
  /** How BLEU is computed (sacreBLEU's defaults when omitted). */
  bleu?: BleuOptions;
  /** Translate the first batch once, untimed, before the timed run. Default true. */
  warmup?: boolean;
  /** Called after each batch: (sentences done, sentences in all). */
  onProgress?: (done: number, total: number) => void;
}

export interface EvalResult {
  bleu: BleuScore;
  /** One translation per source line ('' for blank source lines, which are not sent to the model). */
  hyps: string[];
  /** Generated ids per source line (empty for blank lines). */
  ids: number[][];
  /** Sentences translated (blank lines excluded). */
  sentences: number;
  /** Generated tokens, eos included. */
  tokens: number;
  /** Wall time of the generate() calls and detokenisation, in seconds (tokenisation excluded). */
  seconds: number;
  sentencesPerSec: number;
  /** Wall milliseconds per generated token (encoder included): lower is faster. */
  msPerToken: number;
}

function refStreams(refs: string[] | string[][]): string[][] {
  if (!Array.isArray(refs) || refs.length === 0) throw new ChimeraError('E_ARG', 'refs must be a non-empty array');
  return typeof refs[0] === 'string' ? [refs as string[]] : (refs as string[][]);
}

/** Source ids for each line (null for blank lines). */
export function encodeSources(model: MarianModel, src: string[]): (number[] | null)[] {
  const tok = model.tokenizer;
  if (!tok) throw noTokenizerError(model.source);
  return src.map((line, i) => {
    if (line.trim() === '') return null;
    try {
      return tok.encode(line);
    } catch (e) {
      if (e instanceof ChimeraError) throw new ChimeraError(e.code, `source line ${i + 1}: ${e.message}`);
      throw e;
    }
  });
}

/**
 * Translates `src` with `model` (batched, longest sources first so batches pad little; greedy output does not
 * depend on the batching) and scores it against `refs` (one stream, or several: refs[stream][line]).
 * Synchronous, like generate(): run it off a server's main thread.
 */
export function evaluate(model: MarianModel, src: string[], refs: string[] | string[][], opts: EvalOptions = {}): EvalResult {
  if (!Array.isArray(src) || src.length === 0) throw new ChimeraError('E_ARG', 'src must be a non-empty array of lines');
  const streams = refStreams(refs);
  streams.forEach((s, k) => {
    if (!Array.isArray(s) || s.length !== src.length)
      throw new ChimeraError('E_INPUT', `reference stream ${k} has ${Array.isArray(s) ? s.length : 0} lines, the source has ${src.length}`);
  });
  const batch = opts.batchSize ?? 32;
  if (!Number.isInteger(batch) || batch < 1) throw new ChimeraError('E_ARG', `batchSize must be a positive integer, got ${batch}`);
  const tok = model.tokenizer;
  const srcIds = encodeSources(model, src);
  const order = longestFirst(srcIds);
  const hyps: string[] = src.map(() => '');
  let tokens = 0;
  // Untimed warm-up on the first (longest) batch: the decoder state, the thread pool and the weights' pages
  // are then ready, so the timing measures steady-state translation.
  if (opts.warmup !== false && order.length > 0) model.generate(order.slice(0, batch).map((i) => srcIds[i]!), { beam: opts.beam, maxLength: opts.maxLength });
  const t0 = performance.now();
  const ids = generateBatched(model, srcIds, {
    beam: opts.beam, maxLength: opts.maxLength, batch,
    onBatch: (idx, out, done, total) => {
      idx.forEach((i, k) => {
        tokens += out[k].length;
        hyps[i] = tok!.decode(out[k]);
      });
      opts.onProgress?.(done, total);
    },
  });
  const seconds = (performance.now() - t0) / 1000;
  const bleu = corpusBleu(hyps, streams, opts.bleu);
  return {
    bleu, hyps, ids, sentences: order.length, tokens, seconds,
    sentencesPerSec: seconds > 0 ? order.length / seconds : 0,
    msPerToken: tokens > 0 ? (seconds * 1000) / tokens : 0,
  };
}

/** A short human name for a precision plan: 'int8', 'fp16', or e.g. 'int8 + fp16 at decoder.2, lmHead'. */
export function planName(plan: PrecisionPlan, layers?: { encoder: number; decoder: number }): string {
  const ne = layers?.encoder ?? plan.encoderLayers?.length ?? 0;
  const nd = layers?.decoder ?? plan.decoderLayers?.length ?? 0;
  const groups: [string, Precision][] = [
    ...Array.from({ length: ne }, (_, i): [string, Precision] => [`encoder.${i}`, plan.encoderLayers?.[i] ?? plan.encoder]),
    ...Array.from({ length: nd }, (_, i): [string, Precision] => [`decoder.${i}`, plan.decoderLayers?.[i] ?? plan.decoder]),
    ['lmHead', plan.lmHead],
  ];
  if (ne === 0) groups.unshift(['encoder', plan.encoder]);
  if (nd === 0) groups.splice(groups.length - 1, 0, ['decoder', plan.decoder]);
  const count = new Map<Precision, number>();
  for (const [, p] of groups) count.set(p, (count.get(p) ?? 0) + 1);
  const tiers: Precision[] = ['int8', 'fp16', 'fp32'];
  const base = tiers.reduce((a, b) => ((count.get(b) ?? 0) > (count.get(a) ?? 0) ? b : a));
  const rest = tiers
    .filter((t) => t !== base && count.has(t))
    .map((t) => `${t} at ${groups.filter(([, p]) => p === t).map(([g]) => g).join(', ')}`);
  return [base, ...rest].join(' + ');
}

export interface ControlledEvalOptions extends EvalOptions {
  /** Tier for a model directory (default fp32, as everywhere; pass int8 or fp16 to measure a cheaper tier); must match a packed file's if given for one. */
  precision?: Precision | Partial<PrecisionPlan>;
  /** The Hugging Face directory for the fp32 control; default the model directory itself. Required for a packed file. */
  control?: string;
  /** Called when a run starts: 'tier' or 'control'. */
  onRun?: (which: 'tier' | 'control', name: string) => void;
  onRunProgress?: (which: 'tier' | 'control', done: number, total: number) => void;
}

export interface ControlledEval {
  /** The evaluated configuration. */
  tier: EvalResult & { name: string; plan: PrecisionPlan };
  /** fp32, same sentences and search. */
  control: EvalResult & { name: 'fp32'; plan: PrecisionPlan };
  /** tier BLEU - fp32 BLEU (negative: the tier loses quality). */
  delta: number;
  /** tier sentences/s divided by fp32 sentences/s. */
  speedup: number;
}

/**
 * Loads `model` (a Hugging Face directory at `opts.precision`, or a packed file) and the fp32 control, and
 * evaluates both on the same lines: the control first, then the tier.
 */
export async function evaluateWithControl(
  model: string, src: string[], refs: string[] | string[][], opts: ControlledEvalOptions = {},
): Promise<ControlledEval> {
  let isFile: boolean;
  try {
    isFile = fs.statSync(model).isFile();
  } catch {
    throw new ChimeraError('E_MODEL', `model path ${model} does not exist`);
  }
  const controlDir = opts.control ?? (isFile ? undefined : model);
  if (controlDir === undefined)
    throw new ChimeraError('E_ARG', `${model} is a packed file: the fp32 control needs the Hugging Face model directory it came from; pass it with --control DIR (API: opts.control)`);
  const control = await MarianModel.load(controlDir, { precision: 'fp32' });
  const tierModel = isFile
    ? await MarianModel.load(model, opts.precision === undefined ? {} : { precision: opts.precision })
    : await MarianModel.load(model, { precision: opts.precision ?? 'fp32' });
  const layers = { encoder: tierModel.config.encoderLayers, decoder: tierModel.config.decoderLayers };
  const name = planName(tierModel.precision, layers);
  const run = (which: 'tier' | 'control', m: MarianModel): EvalResult => {
    opts.onRun?.(which, which === 'tier' ? name : 'fp32');
    return evaluate(m, src, refs, { ...opts, onProgress: (d, t) => { opts.onProgress?.(d, t); opts.onRunProgress?.(which, d, t); } });
  };
  const c = run('control', control);
  const t = run('tier', tierModel);
  return {
    tier: { ...t, name, plan: tierModel.precision },
    control: { ...c, name: 'fp32', plan: control.precision },
    delta: t.bleu.score - c.bleu.score,
    speedup: c.sentencesPerSec > 0 ? t.sentencesPerSec / c.sentencesPerSec : 0,
  };
}
