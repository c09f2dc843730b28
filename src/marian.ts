/**
 * The Marian / OPUS-MT runtime: loads a Hugging Face model directory, packs its weights at the chosen
 * precision per group (encoder, decoder, LM head), and runs encode + decoder steps natively while the search
 * loop (src/engine/search.ts) stays in TypeScript.
 */
import * as fs from 'node:fs';
import { ChimeraError, rethrowNative } from './errors';
import { LayerNormParams, PackedFp32Weights, PackedInt8Weights, packFp32Weights, packInt8Weights, setThreads } from './kernels';
import { native } from './native';
import { checkDevice, type Device } from './cuda';
import { checkSearchOptions, searchMaxLength, searchSpecOf, type SearchOptions, type SearchSpec, type StepRows, type TopkFn } from './engine/search';
import { checkKeys } from './util/options';
import { DEFAULT_MAX_STATE_BYTES } from './limits';
import { Scheduler, type BatchModel } from './engine/scheduler';
import { readMarianConfig, type MarianConfig } from './model/config';
import { loadMarianWeights, type MarianWeights, type Linear as LinearTensor } from './model/weights';
import { MarianTokenizer, readTokenizerFiles } from './model/tokenizer';
import { ACTIVATION_CODES, isPackedModelFile, readPackedModel, writePackedModel, type MarianDesc } from './model/packed-file';
import { resolveModelSource } from './model/hub-cache';
import * as path from 'node:path';
import {
  checkShortlistFor, readShortlistBytes, SHORTLIST_FILE, shortlistFingerprint, ShortlistSets, vocabularyHash, type Shortlist,
} from './model/shortlist';
import type { ShortlistModel } from './engine/scheduler';

/** Sub-LM-heads kept per model (one per union of candidate sets): a few, since the union changes only as sentences join and leave. */
const SUB_HEAD_CACHE = 4;

export type Precision = 'fp32' | 'fp16' | 'int8';
export interface PrecisionPlan {
  encoder: Precision;
  decoder: Precision;
  lmHead: Precision;
  /** Per-layer overrides (index = layer); a missing entry takes `encoder` / `decoder`. */
  encoderLayers?: Precision[];
  decoderLayers?: Precision[];
}

export interface MarianLoadOptions {
  /** One tier for everything, or one per group. Default fp32. */
  precision?: Precision | Partial<PrecisionPlan>;
  /** Intra-op threads for this process (see setThreads). */
  threads?: number;
  /** Called while weights are packed: (layers done, layers in all). Translator.load calls it across the worker boundary. */
  onProgress?: (done: number, total: number) => void;
  /**
   * The vocabulary shortlist (README, Vocabulary shortlist). Default: used when the model has one (shortlist.bin
   * in its directory, or the section of a packed file); false: never (the full vocabulary); a path: that file;
   * true: the model's own, E_MODEL when it has none. A shortlist built for another vocabulary is refused (E_MODEL).
   */
  shortlist?: boolean | string;
  /**
   * Where encode and the decoder steps run: 'cpu' (default) or 'cuda' (weights, KV cache and the forward pass on
   * the GPU; logits come back once per step). 'cuda' where CUDA is unavailable throws E_DEVICE with the reason
   * (cudaInfo()); nothing falls back to the CPU.
   */
  device?: Device;
}
export const MARIAN_LOAD_KEYS = ['precision', 'threads', 'onProgress', 'shortlist', 'device'] as const;

/**
 * generate()'s options. The same names, with the same meaning, as Translator.translate() and stream() take
 * (less `signal`, plus `onToken`); unknown keys are refused with E_ARG and the nearest known one.
 */
export interface GenerateOptions extends Partial<Omit<SearchOptions, 'maxLength'>> {
  /** Generated tokens at most (the decoder start token not counted); default the model's max_length - 1. */
  maxLength?: number;
  /** Called with (source index, token id) as soon as a token is decided (greedy and sampling). */
  onToken?: (source: number, token: number) => void;
}

/** Every option generate() takes; translate() and stream() take the same less onToken, plus signal. */
export const SEARCH_OPTION_KEYS = ['beam', 'maxLength', 'lengthPenalty', 'earlyStopping', 'minNewTokens', 'sample', 'temperature', 'topK', 'topP', 'seed'] as const;
const GENERATE_KEYS = [...SEARCH_OPTION_KEYS, 'onToken'] as const;
/** Spellings other libraries use, answered with ours. */
export const OPTION_ALIASES: Record<string, string> = {
  maxNewTokens: 'maxLength', max_new_tokens: 'maxLength', max_length: 'maxLength', maxTokens: 'maxLength',
  beams: 'beam', numBeams: 'beam', num_beams: 'beam', top_k: 'topK', top_p: 'topP', doSample: 'sample', do_sample: 'sample',
  length_penalty: 'lengthPenalty', early_stopping: 'earlyStopping', min_new_tokens: 'minNewTokens',
};

/** The one message for a model that cannot turn text into ids (translate, eval, tune-ln, assess, the Translator). */
export function noTokenizerError(source: string): ChimeraError {
  return new ChimeraError('E_MODEL', `${source} has no usable tokenizer: a model directory needs tokenizer.json, or source.spm + vocab.json; ` +
    'a packed file needs to have been converted from such a directory');
}

export interface GenerateResult {
  /** Generated ids per input (no start token; ends with eos when one was produced). */
  ids: number[][];
  /** Encoder plus first decoder step, in milliseconds. */
  ttftMs: number;
  totalMs: number;
}

const ACT = ACTIVATION_CODES;

function planOf(p: MarianLoadOptions['precision']): PrecisionPlan {
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
  const plan: PrecisionPlan = { encoder: one(p.encoder, 'precision.encoder'), decoder: one(p.decoder, 'precision.decoder'), lmHead: one(p.lmHead, 'precision.lmHead') };
  const layers = (v: unknown, what: string): Precision[] | undefined => {
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) throw new ChimeraError('E_ARG', `${what} must be an array of precisions`);
    return v.map((x, i) => one(x, `${what}[${i}]`));
  };
  const el = layers(p.encoderLayers, 'precision.encoderLayers');
  const dl = layers(p.decoderLayers, 'precision.decoderLayers');
  if (el) plan.encoderLayers = el;
  if (dl) plan.decoderLayers = dl;
  return plan;
}

type Packed = PackedInt8Weights | PackedFp32Weights;

function pack(w: Float32Array, out: number, inF: number, p: Precision): Packed {
  if (p === 'int8') return packInt8Weights(w, out, inF);
  if (p === 'fp16') return new PackedFp32Weights(native().packF16(w, out, inF), out, inF);
  return packFp32Weights(w, out, inF);
}

function half(a: Float32Array): Uint16Array {
  const h = new Uint16Array(a.length);
  native().toHalf(a, h);
  return h;
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
  private tok: MarianTokenizer | null | undefined;
  /** Upper bound on one model's decoder state (KV cache) in bytes; larger requests fail with E_INPUT (see DEFAULT_MAX_STATE_BYTES). */
  static maxStateBytes = DEFAULT_MAX_STATE_BYTES;
  /** Load time in milliseconds: reading, packing (directories only), building the native model and tokenizer. */
  readonly loadMs: number;
  private readonly handle: object;
  /** The native description (kept for save(): packed handles, biases, live LN parameters). */
  private readonly desc: MarianDesc;
  private readonly tokenizerFiles: Map<string, Uint8Array>;
  private state: object | null = null;
  /** The path it was loaded from ('(weights)' for fromWeights), for messages. */
  source = '(weights)';
  private stateShape = { slots: 0, maxLen: 0, sources: 0, maxSrc: 0 };
  /** The vocabulary shortlist in use, or null (the full vocabulary). */
  shortlist: { data: Shortlist; bytes: Uint8Array; fingerprint: string; sets: ShortlistSets } | null = null;

  /** Where encode and the decoder steps run (MarianLoadOptions.device). */
  readonly device: Device;

  private constructor(
    config: MarianConfig, desc: MarianDesc, precision: PrecisionPlan, tokenizerFiles: Map<string, Uint8Array>, t0: number,
    device: Device = 'cpu',
  ) {
    this.config = config;
    this.desc = desc;
    this.device = device;
    try {
      this.handle = native().marianCreate(desc, device === 'cuda' ? { device } : undefined);
    } catch (e) {
      const err = e as { code?: string; message?: string };
      if (err.code === 'E_DEVICE') throw new ChimeraError('E_DEVICE', `could not put the model on the GPU: ${err.message}`, { cause: e });
      throw new ChimeraError('E_MODEL', `could not build the model: ${err.message}`, { cause: e });
    }
    const sl = tokenizerFiles.get(SHORTLIST_FILE);
    if (sl) {
      this.packedShortlist = sl;
      tokenizerFiles = new Map([...tokenizerFiles].filter(([k]) => k !== SHORTLIST_FILE));
    }
    this.tokenizerFiles = tokenizerFiles;
    this.precision = precision;
    this.loadMs = performance.now() - t0;
  }

  /**
   * The model's tokenizer, or null when it has none. Built on first use (about 0.1 s for a 58k vocabulary), so
   * callers that bring their own ids never pay for it; loadMs does not include it.
   */
  get tokenizer(): MarianTokenizer | null {
    if (this.tok === undefined) {
      this.tok = null;
      if (this.tokenizerFiles.size > 0) {
        try {
          this.tok = MarianTokenizer.fromFiles(this.tokenizerFiles, '(model)');
        } catch (e) {
          if (!(e instanceof ChimeraError)) throw e;
        }
      }
    }
    return this.tok;
  }

  /** The tokenizer, or E_MODEL with the one message every command and the Translator give. */
  requireTokenizer(): MarianTokenizer {
    const t = this.tokenizer;
    if (!t) throw noTokenizerError(this.source);
    return t;
  }

  /**
   * Loads a Hugging Face Marian directory (config.json, model.safetensors, tokenizer.json), packing the
   * weights at the requested precision, or a packed file written by save() / `chimera convert`, which is
   * read in one piece with nothing re-packed (its precision was fixed when it was written).
   */
  static async load(source: string, opts: MarianLoadOptions = {}): Promise<MarianModel> {
    const m = await MarianModel.loadFrom(source, opts);
    m.source = source;
    const sl = opts.shortlist;
    if (sl !== undefined && typeof sl !== 'boolean' && (typeof sl !== 'string' || sl === ''))
      throw new ChimeraError('E_ARG', `shortlist must be a boolean or a file path, got ${typeof sl}`);
    if (m.device === 'cuda' && sl !== undefined && sl !== false)
      throw new ChimeraError('E_DEVICE', "the vocabulary shortlist is not available on device 'cuda' (the GPU step computes every logit)");
    if (sl !== false && m.device === 'cpu') {
      let bytes: Uint8Array | undefined, what = '';
      if (typeof sl === 'string') {
        try {
          bytes = fs.readFileSync(sl);
        } catch (e) {
          throw new ChimeraError('E_MODEL', `cannot read shortlist ${sl} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { cause: e });
        }
        what = sl;
      } else if (m.packedShortlist) {
        bytes = m.packedShortlist;
        what = `${resolveModelSource(source)} (shortlist section)`;
      } else {
        const file = path.join(resolveModelSource(source), SHORTLIST_FILE);
        if (fs.existsSync(file) && fs.statSync(file).isFile()) {
          bytes = fs.readFileSync(file);
          what = file;
        }
      }
      if (bytes) m.useShortlist(bytes, what);
      else if (sl === true) throw new ChimeraError('E_MODEL', `${source} has no shortlist (${SHORTLIST_FILE}); build one with \`chimera shortlist build\``);
    }
    return m;
  }

  /** The shortlist section of a packed file, until load() decides on it. */
  private packedShortlist: Uint8Array | undefined;

  /** This model's vocabulary identity, which a shortlist must carry (src/model/shortlist.ts). */
  vocabularyHash(): Uint8Array {
    const t = this.tokenizer;
    return vocabularyHash(this.config.vocabSize, t ? (id) => t.idToToken(id) : null);
  }

  /** Uses the shortlist in `bytes` (validated, and refused with E_MODEL when built for another vocabulary); null: none. */
  useShortlist(bytes: Uint8Array | null, what = '(shortlist)'): void {
    if (bytes && this.device === 'cuda') throw new ChimeraError('E_DEVICE', "the vocabulary shortlist is not available on device 'cuda'");
    if (!bytes) {
      this.shortlist = null;
    } else {
      const data = readShortlistBytes(bytes, what);
      checkShortlistFor(data, this.config.vocabSize, this.vocabularyHash(), what);
      this.shortlist = { data, bytes, fingerprint: shortlistFingerprint(bytes), sets: new ShortlistSets(data, [this.config.eosId, this.config.padId]) };
    }
    this.genBatch = undefined; // the next generate() builds its batch with (or without) it
  }

  private static async loadFrom(source: string, opts: MarianLoadOptions): Promise<MarianModel> {
    checkKeys(opts, MARIAN_LOAD_KEYS, 'MarianModel.load option');
    const device = checkDevice(opts.device, 'MarianModel.load device'); // E_DEVICE before any reading or packing
    const t0 = performance.now();
    if (typeof source !== 'string' || source === '')
      throw new ChimeraError('E_MODEL', `the model must be a directory or packed file path, got ${String(source)}`);
    source = resolveModelSource(source); // a Hugging Face repo id -> its snapshot in the local cache (offline)
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(source);
    } catch {
      throw new ChimeraError('E_MODEL', `model path ${source} does not exist`);
    }
    if (opts.threads !== undefined) setThreads(opts.threads);
    if (st.isFile()) {
      if (!isPackedModelFile(source))
        throw new ChimeraError('E_MODEL', `${source} is a file but not a chimera packed model; pass a Hugging Face model directory or a file from \`chimera convert\``);
      const p = readPackedModel(source);
      const plan: PrecisionPlan = p.header.precision;
      if (opts.precision !== undefined && JSON.stringify(planOf(opts.precision)) !== JSON.stringify(plan))
        throw new ChimeraError('E_ARG', `${source} was packed at ${JSON.stringify(plan)}; convert again for another precision`);
      return new MarianModel(p.header.config, p.desc, plan, p.tokenizerFiles, t0, device);
    }
    if (!st.isDirectory()) throw new ChimeraError('E_MODEL', `model path ${source} is neither a directory nor a file`);
    const config = readMarianConfig(source);
    const weights = loadMarianWeights(source, config);
    let files = new Map<string, Uint8Array>();
    try {
      files = readTokenizerFiles(source);
    } catch (e) {
      if (!(e instanceof ChimeraError)) throw e;
    }
    return MarianModel.fromWeights(config, weights, opts, files, t0);
  }

  /** Writes this model, packed as loaded, to one file that load() reads back fast. Returns its size in bytes. */
  save(file: string): number {
    // the shortlist in use travels as a section of the file (the files table), which load() picks up
    const files = this.shortlist ? new Map([...this.tokenizerFiles, [SHORTLIST_FILE, this.shortlist.bytes]]) : this.tokenizerFiles;
    return writePackedModel(file, { config: this.config, precision: this.precision, source: 'chimera' }, this.desc, files);
  }

  static fromWeights(
    config: MarianConfig, w: MarianWeights, opts: MarianLoadOptions = {}, tokenizerFiles = new Map<string, Uint8Array>(), t0 = performance.now(),
  ): MarianModel {
    const p = planOf(opts.precision);
    const device = checkDevice(opts.device, 'MarianModel device');
    const pe = (i: number) => p.encoderLayers?.[i] ?? p.encoder;
    const pd = (i: number) => p.decoderLayers?.[i] ?? p.decoder;
    const total = w.encoder.length + w.decoder.length + 1;
    let done = 0;
    const tick = <T>(x: T): T => {
      opts.onProgress?.(++done, total);
      return x;
    };
    const d = config.dModel;
    const act = ACT[config.activation];
    if (act === undefined) throw new ChimeraError('E_MODEL', `activation_function '${config.activation}' is not supported`);
    const qs = (d / config.encoderHeads) ** -0.5;
    const qsDec = (d / config.decoderHeads) ** -0.5;
    const norm = (n: { gamma: Float32Array; beta: Float32Array }) => ({ gamma: n.gamma, beta: n.beta });
    const desc: MarianDesc = {
      d,
      heads: config.decoderHeads,
      vocab: config.vocabSize,
      maxPos: config.maxPositions,
      embedScale: config.scaleEmbedding ? Math.sqrt(d) : 1,
      act,
      // The cheaper tiers look tokens up in an fp16 copy of the embedding: half the bytes, same top-1.
      ...(p.lmHead === 'fp32' ? { embed: w.embed } : { embedHalf: half(w.embed) }),
      lmHead: tick({ w: pack(w.embed, config.vocabSize, d, p.lmHead).handle, bias: w.finalLogitsBias }),
      encoder: w.encoder.map((l, i) => tick({
        qkv: fuse([l.selfAttn.q, l.selfAttn.k, l.selfAttn.v], qs, pe(i), d),
        out: lin(l.selfAttn.out, pe(i)),
        lnAttn: norm(l.selfAttnLayerNorm),
        fc1: lin(l.fc1, pe(i)),
        fc2: lin(l.fc2, pe(i)),
        lnFfn: norm(l.finalLayerNorm),
      })),
      decoder: w.decoder.map((l, i) => tick({
        qkv: fuse([l.selfAttn.q, l.selfAttn.k, l.selfAttn.v], qsDec, pd(i), d),
        out: lin(l.selfAttn.out, pd(i)),
        lnSelf: norm(l.selfAttnLayerNorm),
        crossQ: fuse([l.encoderAttn.q], qsDec, pd(i), d),
        crossKv: fuse([l.encoderAttn.k, l.encoderAttn.v], 1, pd(i), d),
        crossOut: lin(l.encoderAttn.out, pd(i)),
        lnCross: norm(l.encoderAttnLayerNorm),
        fc1: lin(l.fc1, pd(i)),
        fc2: lin(l.fc2, pd(i)),
        lnFfn: norm(l.finalLayerNorm),
      })),
    };
    if (config.encoderHeads !== config.decoderHeads)
      throw new ChimeraError('E_MODEL', 'encoder_attention_heads and decoder_attention_heads must be equal');
    return new MarianModel(config, desc, p, tokenizerFiles, t0, device);
  }

  /**
   * After editing layerNorms() in place: a 'cuda' model copies the live gamma/beta to the GPU again (the CPU reads
   * them live; the device keeps copies). A no-op on the CPU. Translator.adjustLayerNorm calls it.
   */
  syncNorms(): void {
    if (this.device === 'cuda') native().marianSyncNorms(this.handle);
  }

  /** Makes sure the decoder state holds `slots` hypotheses of `maxLen` and `sources` sources of `maxSrc`. */
  private ensureState(slots: number, maxLen: number, sources: number, maxSrc: number): object {
    const s = this.stateShape;
    if (!this.state || slots > s.slots || maxLen > s.maxLen || sources > s.sources || maxSrc > s.maxSrc) {
      const n = {
        slots: Math.max(slots, s.slots), maxLen: Math.max(maxLen, s.maxLen),
        sources: Math.max(sources, s.sources), maxSrc: Math.max(maxSrc, s.maxSrc),
      };
      const bytes = 8 * this.config.dModel * this.config.decoderLayers * (n.slots * n.maxLen + n.sources * n.maxSrc);
      if (bytes > MarianModel.maxStateBytes)
        throw new ChimeraError('E_INPUT', `request too large: its decoder state needs ${(bytes / 2 ** 30).toFixed(2)} GiB ` +
          `(batch x beam x length); the limit is ${(MarianModel.maxStateBytes / 2 ** 30).toFixed(2)} GiB (MarianModel.maxStateBytes)`);
      // Record the new shape only once the state exists: a refused allocation (E_RANGE) must leave the old,
      // still valid state and its shape in place, or later calls would run on a state smaller than recorded.
      try {
        this.state = native().marianState(this.handle, n.slots, n.maxLen, n.sources, n.maxSrc);
      } catch (e) {
        rethrowNative(e); // the addon's E_RANGE ("would need more than ... GiB") as a ChimeraError
      }
      this.stateShape = n;
    }
    return this.state as object;
  }

  private checkIds(inputIds: number[][]): void {
    if (!Array.isArray(inputIds) || inputIds.length === 0) throw new ChimeraError('E_INPUT', 'inputIds must be a non-empty array of id arrays');
    for (const [i, ids] of inputIds.entries()) {
      if (!Array.isArray(ids) || ids.length === 0) throw new ChimeraError('E_INPUT', 'each input must be a non-empty array of token ids');
      if (ids.length > this.config.maxPositions)
        throw new ChimeraError('E_INPUT', `input ${i} has ${ids.length} tokens (eos included); the model takes at most ${this.config.maxPositions}: shorten or split it`);
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

  get searchSpec(): SearchSpec {
    return searchSpecOf(this.config);
  }

  /** Translates token ids (each source with its eos) into target ids. Synchronous: run it off the main thread. */
  generate(inputIds: number[][], opts: GenerateOptions = {}): GenerateResult {
    this.checkIds(inputIds);
    const t0 = performance.now();
    const o = this.searchOptions(opts);
    checkSearchOptions(o);
    const batch = (this.genBatch ??= this.createBatch());
    const n = inputIds.length;
    const perSeq = (o.beam ?? 1) > 1 ? 2 * (o.beam ?? 1) : 1;
    // generate() runs the whole batch at once: refuse up front what its decoder state could never hold
    const bytes = batch.stateBytes(n * perSeq, o.maxLength, n, Math.max(...inputIds.map((x) => x.length)));
    if (bytes > MarianModel.maxStateBytes)
      throw new ChimeraError('E_INPUT', `request too large: its decoder state needs ${(bytes / 2 ** 30).toFixed(2)} GiB ` +
        `(batch x beam x length); the limit is ${(MarianModel.maxStateBytes / 2 ** 30).toFixed(2)} GiB (MarianModel.maxStateBytes)`, { reason: 'too_long' });
    const sched = new Scheduler(batch, {
      maxSlots: n * perSeq,
      maxSourceTokens: inputIds.reduce((s, x) => s + x.length, 0),
      maxStateBytes: MarianModel.maxStateBytes,
      encodeChunkTokens: Infinity, // one encode for the whole batch: ttftMs is encoder + first step, as documented
    });
    let ids: number[][] = [];
    let firstAt = 0;
    let err: Error | null = null;
    const onToken = opts.onToken;
    sched.submit({
      sources: inputIds,
      options: o,
      onToken: onToken ? (s, t) => onToken(s, t) : undefined,
      onDone: (r) => {
        ids = r.map((x) => x.ids);
        firstAt = Math.max(...r.map((x) => x.firstAt));
      },
      onError: (e) => (err = e),
    });
    sched.drain();
    if (err) throw err;
    return { ids, ttftMs: firstAt - t0, totalMs: performance.now() - t0 };
  }

  /**
   * Search options from generate()'s: unknown keys are refused (E_ARG, with the nearest known one), and
   * maxLength (generated tokens) becomes the Hugging Face maxLength (start token counted).
   */
  searchOptions(opts: GenerateOptions): SearchOptions {
    checkKeys(opts, GENERATE_KEYS, 'generate option', OPTION_ALIASES);
    const { maxLength, onToken: _onToken, ...rest } = opts;
    return { ...rest, beam: rest.beam ?? 1, maxLength: searchMaxLength(maxLength, this.config) };
  }

  private genBatch: BatchModel | undefined;

  /**
   * A decoder memory of its own (grown on demand, never dropping live sequences) with the batch interface the
   * scheduler drives: prefill sources into source slots, step any rows, top-k, slot copies.
   */
  createBatch(): BatchModel {
    const c = this.config;
    const V = c.vocabSize;
    const perPos = 8 * c.dModel * c.decoderLayers; // K and V, fp32, every decoder layer
    let state: object | null = null;
    let shape = { slots: 0, positions: 0, sources: 0, sourceLen: 0 };
    let logits = new Float32Array(0);
    const nat = native();
    // the scheduler hands in views it sized itself: the raw binding, without re-validating every step
    const topk: TopkFn = (x, row0, rows, k, ls, idx, val) => nat.topkRows(x.subarray(row0 * V, (row0 + rows) * V), rows, V, k, ls, idx, val);
    const handle = this.handle;
    // Vocabulary shortlist: the sub-LM-head of the selected union (cached per union) and the width it writes.
    let head: object | null = null;
    let width = V;
    let shortlist: ShortlistModel | undefined;
    const sl = this.shortlist;
    if (sl) {
      const heads: { ids: Int32Array; h: object }[] = [];
      const same = (a: Int32Array, b: Int32Array) => a.length === b.length && a.every((x, i) => x === b[i]);
      shortlist = {
        candidates: (src) => sl.sets.candidates(src),
        select: (union) => {
          let e = heads.find((x) => same(x.ids, union));
          if (!e) {
            e = { ids: union, h: nat.marianSubHead(handle, union) };
            heads.push(e);
            if (heads.length > SUB_HEAD_CACHE) heads.shift();
          }
          head = e.h;
          width = union.length;
        },
        topkRagged: (x, rows, stride, lens, k, ls, idx, val) => nat.topkRowsRagged(x, rows, stride, lens, k, ls, idx, val),
      };
    }
    return {
      shortlist,
      vocab: V,
      spec: this.searchSpec,
      maxPositions: c.maxPositions,
      stateBytes: (slots, positions, sources, sourceLen) => perPos * (slots * positions + sources * sourceLen),
      reserve: (slots, positions, sources, sourceLen) => {
        const n = {
          slots: Math.max(1, slots, shape.slots), positions: Math.max(1, positions, shape.positions),
          sources: Math.max(1, sources, shape.sources), sourceLen: Math.max(1, sourceLen, shape.sourceLen),
        };
        if (state && n.slots === shape.slots && n.positions === shape.positions && n.sources === shape.sources && n.sourceLen === shape.sourceLen) return;
        try {
          if (!state) state = nat.marianState(handle, n.slots, n.positions, n.sources, n.sourceLen);
          else nat.marianStateResize(state, n.slots, n.positions, n.sources, n.sourceLen);
        } catch (e) {
          rethrowNative(e);
        }
        shape = n;
      },
      prefill: (ids, slots) => {
        const s = Math.max(...ids.map((x) => x.length));
        const flat = new Int32Array(ids.length * s).fill(c.padId);
        ids.forEach((x, i) => flat.set(x, i * s));
        nat.marianEncode(handle, state!, flat, Int32Array.from(ids, (x) => x.length), s, Int32Array.from(slots), null);
      },
      step: (rows: StepRows) => {
        const W = head ? width : V;
        if (logits.length < rows.count * W) logits = new Float32Array(Math.max(rows.count * W, 2 * logits.length));
        const out = logits.subarray(0, rows.count * W);
        if (head) nat.marianStep(handle, state!, rows.tokens, rows.slots, rows.positions, rows.sources, out, null, head);
        else nat.marianStep(handle, state!, rows.tokens, rows.slots, rows.positions, rows.sources, out);
        return out;
      },
      topk,
      copySlot: (from, to, len) => nat.marianCopySlot(state!, from, to, len),
      releaseSource: (slot) => nat.marianReleaseSource(state!, slot),
    };
  }

  /**
   * The model's layer norms, in forward order, with live gamma/beta: edits (in place, by assignment, or
   * scale/shift) take effect on the next call, and save() writes them. Names follow the checkpoint's.
   */
  layerNorms(): { name: string; params: LayerNormParams }[] {
    if (!this.norms) {
      const d = this.config.dModel;
      const wrap = (n: { gamma: Float32Array; beta: Float32Array }) => new LayerNormParams(d, { gamma: n.gamma, beta: n.beta, live: true });
      type N = { gamma: Float32Array; beta: Float32Array };
      const enc: { lnAttn: N; lnFfn: N }[] = this.desc.encoder;
      const dec: { lnSelf: N; lnCross: N; lnFfn: N }[] = this.desc.decoder;
      this.norms = [
        ...enc.flatMap((l, i) => [
          { name: `model.encoder.layers.${i}.self_attn_layer_norm`, params: wrap(l.lnAttn) },
          { name: `model.encoder.layers.${i}.final_layer_norm`, params: wrap(l.lnFfn) },
        ]),
        ...dec.flatMap((l, i) => [
          { name: `model.decoder.layers.${i}.self_attn_layer_norm`, params: wrap(l.lnSelf) },
          { name: `model.decoder.layers.${i}.encoder_attn_layer_norm`, params: wrap(l.lnCross) },
          { name: `model.decoder.layers.${i}.final_layer_norm`, params: wrap(l.lnFfn) },
        ]),
      ];
    }
    return this.norms;
  }
  private norms: { name: string; params: LayerNormParams }[] | null = null;

  /**
   * Teacher-forced pass that records, for every layer norm in layerNorms() order, its normalised input
   * before gamma/beta: rows are the source positions (encoder norms) or the decoder positions (decoder
   * norms). Calibration (gamma/beta tuning) fits against these.
   */
  captureNormInputs(srcIds: number[], decoderInputIds: number[]): Float32Array[] {
    this.checkIds([srcIds]);
    const d = this.config.dModel, S = srcIds.length, T = decoderInputIds.length;
    const Le = this.config.encoderLayers, Ld = this.config.decoderLayers;
    const state = this.ensureState(1, T, 1, S);
    const encTaps = new Float32Array(Le * 2 * S * d);
    native().marianEncode(this.handle, state, Int32Array.from(srcIds), Int32Array.of(S), S, Int32Array.of(0), null, encTaps);
    const V = this.config.vocabSize;
    const logits = new Float32Array(V);
    const stepTaps = new Float32Array(Ld * 3 * d);
    const dec = Array.from({ length: Ld * 3 }, () => new Float32Array(T * d));
    for (let t = 0; t < T; t++) {
      const tok = decoderInputIds[t];
      if (!Number.isInteger(tok) || tok < 0 || tok >= V) throw new ChimeraError('E_INPUT', `decoder id ${tok} is outside the vocabulary`);
      native().marianStep(this.handle, state, Int32Array.of(tok), Int32Array.of(0), Int32Array.of(t), Int32Array.of(0), logits, stepTaps);
      for (let k = 0; k < Ld * 3; k++) dec[k].set(stepTaps.subarray(k * d, (k + 1) * d), t * d);
    }
    const enc = Array.from({ length: Le * 2 }, (_, k) => encTaps.slice(k * S * d, (k + 1) * S * d));
    return [...enc, ...dec];
  }

  /** Teacher-forced logits [T, vocab] for one source and decoder input ids (start token first). */
  teacherForcedLogits(srcIds: number[], decoderInputIds: number[]): Float32Array {
    this.checkIds([srcIds]);
    if (!Array.isArray(decoderInputIds) || decoderInputIds.length === 0)
      throw new ChimeraError('E_INPUT', 'decoderInputIds must be a non-empty array (the decoder start token first)');
    const T = decoderInputIds.length;
    if (T > this.config.maxPositions)
      throw new ChimeraError('E_INPUT', `decoderInputIds has ${T} tokens; the model takes at most ${this.config.maxPositions}`);
    const V0 = this.config.vocabSize;
    for (const tok of decoderInputIds)
      if (!Number.isInteger(tok) || tok < 0 || tok >= V0) throw new ChimeraError('E_INPUT', `decoder id ${tok} is outside the vocabulary (0..${V0 - 1})`);
    const state = this.ensureState(1, T, 1, srcIds.length);
    this.encode([srcIds], state);
    const V = this.config.vocabSize;
    const out = new Float32Array(T * V);
    const one = (v: number) => Int32Array.of(v);
    for (let t = 0; t < T; t++) {
      const tok = decoderInputIds[t];
      native().marianStep(this.handle, state, one(tok), one(0), one(t), one(0), out.subarray(t * V, (t + 1) * V));
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
