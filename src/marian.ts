/**
 * The Marian / OPUS-MT runtime: loads a Hugging Face model directory, packs its weights at the chosen
 * precision per group (encoder, decoder, LM head), and runs encode + decoder steps natively while the search
 * loop (src/engine/search.ts) stays in TypeScript.
 */
import { ChimeraError } from './errors';
import { PackedFp32Weights, PackedInt8Weights, packFp32Weights, packInt8Weights, setThreads, type Activation } from './kernels';
import { native } from './native';
import { beamSearch, greedySearch, type SearchOptions, type SearchSpec, type StepRows } from './engine/search';
import { readMarianConfig, type MarianConfig } from './model/config';
import { loadMarianWeights, type MarianWeights, type Linear as LinearTensor } from './model/weights';
import { MarianTokenizer } from './model/tokenizer';

export type Precision = 'fp32' | 'fp16' | 'int8';
export interface PrecisionPlan {
  encoder: Precision;
  decoder: Precision;
  lmHead: Precision;
}

export interface MarianLoadOptions {
  /** One tier for everything, or one per group. Default fp32. */
  precision?: Precision | Partial<PrecisionPlan>;
  /** Intra-op threads for this process (see setThreads). */
  threads?: number;
}

export interface GenerateOptions extends Partial<Omit<SearchOptions, 'maxLength'>> {
  /** Generated tokens at most (the decoder start token not counted). */
  maxNewTokens?: number;
}

export interface GenerateResult {
  /** Generated ids per input (no start token; ends with eos when one was produced). */
  ids: number[][];
  /** Encoder plus first decoder step, in milliseconds. */
  ttftMs: number;
  totalMs: number;
}

const ACT: Record<string, number> = { relu: 1, swish: 2, silu: 2, gelu: 3, gelu_new: 4 };

function plan(p: MarianLoadOptions['precision']): PrecisionPlan {
  const tiers = ['fp32', 'fp16', 'int8'];
  const one = (v: unknown, what: string): Precision => {
    if (v === undefined) return 'fp32';
    if (typeof v !== 'string' || !tiers.includes(v)) throw new ChimeraError('E_ARG', `${what} must be one of ${tiers.join(', ')}, got ${String(v)}`);
    return v as Precision;
  };
  if (typeof p === 'string' || p === undefined) {
    const t = one(p, 'precision');
    return { encoder: t, decoder: t, lmHead: t };
  }
  return { encoder: one(p.encoder, 'precision.encoder'), decoder: one(p.decoder, 'precision.decoder'), lmHead: one(p.lmHead, 'precision.lmHead') };
}

type Packed = PackedInt8Weights | PackedFp32Weights;

function pack(w: Float32Array, out: number, inF: number, p: Precision): Packed {
  if (p === 'int8') return packInt8Weights(w, out, inF);
  if (p === 'fp16') return new PackedFp32Weights(native().packF16(w, out, inF), out, inF);
  return packFp32Weights(w, out, inF);
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function scaled(a: Float32Array, s: number): Float32Array {
  return a.map((v) => v * s);
}

/** Fuses [q; k; v] (q pre-scaled by head_dim^-0.5, folding the attention scale into the projection). */
function fuse(parts: LinearTensor[], qScale: number, p: Precision, d: number) {
  const ws = parts.map((l, i) => (i === 0 && qScale !== 1 ? scaled(l.weight, qScale) : l.weight));
  const bs = parts.map((l, i) => (i === 0 && qScale !== 1 ? scaled(l.bias, qScale) : l.bias));
  return { w: pack(concat(ws), parts.length * d, d, p).handle, bias: concat(bs) };
}

function lin(l: LinearTensor, p: Precision) {
  return { w: pack(l.weight, l.out, l.in, p).handle, bias: l.bias };
}

export class MarianModel {
  readonly config: MarianConfig;
  readonly precision: PrecisionPlan;
  readonly tokenizer: MarianTokenizer | null;
  /** Load time in milliseconds (reading, packing, building the native model). */
  readonly loadMs: number;
  private readonly handle: object;
  private state: object | null = null;
  private stateShape = { slots: 0, maxLen: 0, sources: 0, maxSrc: 0 };
  private logits = new Float32Array(0);

  private constructor(config: MarianConfig, handle: object, precision: PrecisionPlan, tokenizer: MarianTokenizer | null, loadMs: number) {
    this.config = config;
    this.handle = handle;
    this.precision = precision;
    this.tokenizer = tokenizer;
    this.loadMs = loadMs;
  }

  /** Loads a Hugging Face Marian directory (config.json, model.safetensors, tokenizer.json). */
  static async load(dir: string, opts: MarianLoadOptions = {}): Promise<MarianModel> {
    const t0 = performance.now();
    if (opts.threads !== undefined) setThreads(opts.threads);
    const config = readMarianConfig(dir);
    const weights = loadMarianWeights(dir, config);
    let tokenizer: MarianTokenizer | null = null;
    try {
      tokenizer = await MarianTokenizer.load(dir);
    } catch (e) {
      if (!(e instanceof ChimeraError)) throw e;
    }
    return MarianModel.fromWeights(config, weights, opts, tokenizer, t0);
  }

  static fromWeights(config: MarianConfig, w: MarianWeights, opts: MarianLoadOptions = {}, tokenizer: MarianTokenizer | null = null, t0 = performance.now()): MarianModel {
    const p = plan(opts.precision);
    const d = config.dModel;
    const act = ACT[config.activation];
    if (act === undefined) throw new ChimeraError('E_MODEL', `activation_function '${config.activation}' is not supported`);
    const qs = (d / config.encoderHeads) ** -0.5;
    const qsDec = (d / config.decoderHeads) ** -0.5;
    const norm = (n: { gamma: Float32Array; beta: Float32Array }) => ({ gamma: n.gamma, beta: n.beta });
    const desc = {
      d,
      heads: config.decoderHeads,
      vocab: config.vocabSize,
      maxPos: config.maxPositions,
      embedScale: config.scaleEmbedding ? Math.sqrt(d) : 1,
      act,
      embed: w.embed,
      lmHead: { w: pack(w.embed, config.vocabSize, d, p.lmHead).handle, bias: w.finalLogitsBias },
      encoder: w.encoder.map((l) => ({
        qkv: fuse([l.selfAttn.q, l.selfAttn.k, l.selfAttn.v], qs, p.encoder, d),
        out: lin(l.selfAttn.out, p.encoder),
        lnAttn: norm(l.selfAttnLayerNorm),
        fc1: lin(l.fc1, p.encoder),
        fc2: lin(l.fc2, p.encoder),
        lnFfn: norm(l.finalLayerNorm),
      })),
      decoder: w.decoder.map((l) => ({
        qkv: fuse([l.selfAttn.q, l.selfAttn.k, l.selfAttn.v], qsDec, p.decoder, d),
        out: lin(l.selfAttn.out, p.decoder),
        lnSelf: norm(l.selfAttnLayerNorm),
        crossQ: fuse([l.encoderAttn.q], qsDec, p.decoder, d),
        crossKv: fuse([l.encoderAttn.k, l.encoderAttn.v], 1, p.decoder, d),
        crossOut: lin(l.encoderAttn.out, p.decoder),
        lnCross: norm(l.encoderAttnLayerNorm),
        fc1: lin(l.fc1, p.decoder),
        fc2: lin(l.fc2, p.decoder),
        lnFfn: norm(l.finalLayerNorm),
      })),
    };
    if (config.encoderHeads !== config.decoderHeads)
      throw new ChimeraError('E_MODEL', 'encoder_attention_heads and decoder_attention_heads must be equal');
    let handle: object;
    try {
      handle = native().marianCreate(desc);
    } catch (e) {
      const err = e as { code?: string; message?: string };
      throw new ChimeraError('E_MODEL', `could not build the model: ${err.message}`, { cause: e });
    }
    return new MarianModel(config, handle, p, tokenizer, performance.now() - t0);
  }

  /** Makes sure the decoder state holds `slots` hypotheses of `maxLen` and `sources` sources of `maxSrc`. */
  private ensureState(slots: number, maxLen: number, sources: number, maxSrc: number): object {
    const s = this.stateShape;
    if (!this.state || slots > s.slots || maxLen > s.maxLen || sources > s.sources || maxSrc > s.maxSrc) {
      this.stateShape = {
        slots: Math.max(slots, s.slots), maxLen: Math.max(maxLen, s.maxLen),
        sources: Math.max(sources, s.sources), maxSrc: Math.max(maxSrc, s.maxSrc),
      };
      const n = this.stateShape;
      this.state = native().marianState(this.handle, n.slots, n.maxLen, n.sources, n.maxSrc);
    }
    return this.state as object;
  }

  private checkIds(inputIds: number[][]): void {
    if (!Array.isArray(inputIds) || inputIds.length === 0) throw new ChimeraError('E_INPUT', 'inputIds must be a non-empty array of id arrays');
    for (const ids of inputIds) {
      if (!Array.isArray(ids) || ids.length === 0) throw new ChimeraError('E_INPUT', 'each input must be a non-empty array of token ids');
      if (ids.length > this.config.maxPositions)
        throw new ChimeraError('E_INPUT', `an input has ${ids.length} tokens; the model takes at most ${this.config.maxPositions}`);
      for (const t of ids)
        if (!Number.isInteger(t) || t < 0 || t >= this.config.vocabSize)
          throw new ChimeraError('E_INPUT', `token id ${t} is outside the vocabulary (0..${this.config.vocabSize - 1})`);
    }
  }

  /** Encodes sources into source slots [0, n) of the state; returns the padded length. */
  private encode(inputIds: number[][], state: object, encOut?: Float32Array): number {
    const n = inputIds.length;
    const s = Math.max(...inputIds.map((x) => x.length));
    const ids = new Int32Array(n * s).fill(this.config.padId);
    inputIds.forEach((x, i) => ids.set(x, i * s));
    const lens = Int32Array.from(inputIds, (x) => x.length);
    native().marianEncode(this.handle, state, ids, lens, s, Int32Array.from(inputIds, (_, i) => i), encOut ?? null);
    return s;
  }

  private stepper(state: object) {
    const V = this.config.vocabSize;
    return {
      vocab: V,
      step: (rows: StepRows): Float32Array => {
        if (this.logits.length < rows.count * V) this.logits = new Float32Array(rows.count * V);
        const logits = this.logits.subarray(0, rows.count * V);
        native().marianStep(this.handle, state, rows.tokens, rows.slots, rows.positions, rows.sources, logits, null);
        return logits;
      },
      copySlot: (from: number, to: number, len: number) => native().marianCopySlot(state, from, to, len),
    };
  }

  get searchSpec(): SearchSpec {
    const c = this.config;
    return { startId: c.decoderStartId, eosId: c.eosId, banned: [c.padId, ...c.badWordsIds.flat()].filter((v, i, a) => a.indexOf(v) === i), forceEosAtMax: c.forcedEosId !== null && c.forcedEosId === c.eosId };
  }

  /** Translates token ids (each source with its eos) into target ids. Synchronous: run it off the main thread. */
  generate(inputIds: number[][], opts: GenerateOptions = {}): GenerateResult {
    this.checkIds(inputIds);
    const t0 = performance.now();
    const beam = opts.beam ?? 1;
    const maxNew = opts.maxNewTokens ?? this.config.maxLength - 1;
    if (!Number.isInteger(maxNew) || maxNew < 1) throw new ChimeraError('E_ARG', `maxNewTokens must be a positive integer, got ${maxNew}`);
    const maxLength = Math.min(maxNew + 1, this.config.maxPositions);
    const n = inputIds.length;
    const maxSrc = Math.max(...inputIds.map((x) => x.length));
    const state = this.ensureState(beam > 1 ? 2 * beam * n : n, maxLength, n, maxSrc);
    this.encode(inputIds, state);
    const encodedMs = performance.now() - t0;
    const st = this.stepper(state);
    const o: SearchOptions = { ...opts, beam, maxLength };
    const r = beam > 1 ? beamSearch(st, n, this.searchSpec, o) : greedySearch(st, n, this.searchSpec, o);
    return { ids: r.ids, ttftMs: encodedMs + r.firstTokenMs, totalMs: performance.now() - t0 };
  }

  /** Teacher-forced logits [T, vocab] for one source and decoder input ids (start token first). */
  teacherForcedLogits(srcIds: number[], decoderInputIds: number[]): Float32Array {
    this.checkIds([srcIds]);
    const T = decoderInputIds.length;
    const state = this.ensureState(1, T, 1, srcIds.length);
    this.encode([srcIds], state);
    const V = this.config.vocabSize;
    const out = new Float32Array(T * V);
    const one = (v: number) => Int32Array.of(v);
    for (let t = 0; t < T; t++) {
      const tok = decoderInputIds[t];
      if (!Number.isInteger(tok) || tok < 0 || tok >= V) throw new ChimeraError('E_INPUT', `decoder id ${tok} is outside the vocabulary`);
      native().marianStep(this.handle, state, one(tok), one(0), one(t), one(0), out.subarray(t * V, (t + 1) * V), null);
    }
    return out;
  }

  /** Encoder output [S, d] for one source (tests compare it with a reference). */
  encoderOutput(srcIds: number[]): Float32Array {
    this.checkIds([srcIds]);
    const state = this.ensureState(1, 1, 1, srcIds.length);
    const out = new Float32Array(srcIds.length * this.config.dModel);
    this.encode([srcIds], state, out);
    return out;
  }
}
