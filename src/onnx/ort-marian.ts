/**
 * The reference decoder loop on stock onnxruntime-node (a devDependency: load this module lazily, only where
 * onnxruntime-node is installed; bench/ort-marian.ts re-exports it), over the graphs `chimera export-onnx` writes
 * (Optimum's layout): the encoder once, decoder_model for the first step (it also returns the cross-attention
 * K/V), then decoder_with_past_model with the past K/V fed back each step. Beams are reordered by gathering
 * the past rows of their parents, as transformers' `_reorder_cache` does.
 *
 * Search follows src/engine/search.ts rule for rule (Hugging Face semantics): start = decoder_start_token_id,
 * banned ids (pad) never generated, eos forced at the last slot, `minNewTokens` bans eos until then; beam search
 * keeps 2 × beam candidates per step, scores finished hypotheses sum log p / length ** lengthPenalty (length
 * counting the start token), early stopping false by default. Sessions run at graphOptimizationLevel 'all',
 * intraOpNumThreads = T, interOpNumThreads 1, sequential execution.
 */
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { readMarianConfig, type MarianConfig } from '../model/config';
import { ONNX_FILES, type MarianOnnxGraphs } from './export-marian';
import { makeTopk, searchMaxLength, searchSequences, searchSpecOf, StepAssembler, type SearchSpec } from '../engine/search';

export interface OrtGenerateOptions {
  beam?: number;
  /** Generated tokens at most (the decoder start token not counted), as MarianModel.generate. */
  maxLength?: number;
  minNewTokens?: number;
  lengthPenalty?: number;
  earlyStopping?: boolean;
}

export interface OrtGenerateResult {
  ids: number[][];
  /** Encoder + first decoder step (+ picking the token for greedy), ms. */
  ttftMs: number;
  totalMs: number;
  /** Decoder steps run (one per generated position). */
  steps: number;
}

export function ortSessionOptions(threads: number): ort.InferenceSession.SessionOptions {
  return {
    graphOptimizationLevel: 'all',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
  };
}

function i64(values: ArrayLike<number>, dims: number[]): ort.Tensor {
  const a = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) a[i] = BigInt(values[i]);
  return new ort.Tensor('int64', a, dims);
}

/** Rows `idx` of a tensor whose first axis is the batch: a new tensor [idx.length, ...rest]. */
function gatherRows(t: ort.Tensor, idx: ArrayLike<number>): ort.Tensor {
  const rows = t.dims[0];
  const data = t.data as Float32Array | BigInt64Array;
  const per = data.length / rows;
  const out = data instanceof Float32Array ? new Float32Array(idx.length * per) : new BigInt64Array(idx.length * per);
  for (let r = 0; r < idx.length; r++) (out as Float32Array).set((data as Float32Array).subarray(idx[r] * per, (idx[r] + 1) * per), r * per);
  return new ort.Tensor(t.type as 'float32', out as Float32Array, [idx.length, ...t.dims.slice(1)]);
}

function isIdentity(idx: ArrayLike<number>, n: number): boolean {
  if (idx.length !== n) return false;
  for (let i = 0; i < n; i++) if (idx[i] !== i) return false;
  return true;
}

// ---------------------------------------------------------------------------------- logits processing

// Logits processing, argmax and finished-hypothesis bookkeeping are shared with chimera's own search
// (src/engine/search.ts), and so is the native row-wise log-softmax: both engines run the same search.
type Spec = SearchSpec;

// ------------------------------------------------------------------------------------------- the model

export class OrtMarian {
  private constructor(
    readonly config: MarianConfig,
    readonly encoder: ort.InferenceSession,
    readonly decoder: ort.InferenceSession,
    readonly decoderWithPast: ort.InferenceSession,
    readonly threads: number,
  ) {}

  /** Sessions over a directory written by `chimera export-onnx` (its config.json is read) or graphs in memory. */
  static async create(source: string | MarianOnnxGraphs, opts: { threads?: number; config?: MarianConfig } = {}): Promise<OrtMarian> {
    const threads = opts.threads ?? 1;
    const so = ortSessionOptions(threads);
    const config = opts.config ?? (typeof source === 'string' ? readMarianConfig(source) : undefined);
    if (!config) throw new Error('OrtMarian.create: pass opts.config with in-memory graphs');
    const load = (bytes: Uint8Array | undefined, file: string) =>
      bytes ? ort.InferenceSession.create(bytes, so) : ort.InferenceSession.create(path.join(source as string, file), so);
    const g = typeof source === 'string' ? undefined : source;
    const encoder = await load(g?.encoder, ONNX_FILES.encoder);
    const decoder = await load(g?.decoder, ONNX_FILES.decoder);
    const decoderWithPast = await load(g?.decoderWithPast, ONNX_FILES.decoderWithPast);
    return new OrtMarian(config, encoder, decoder, decoderWithPast, threads);
  }

  async release(): Promise<void> {
    await Promise.all([this.encoder.release(), this.decoder.release(), this.decoderWithPast.release()]);
  }

  get spec(): Spec {
    return searchSpecOf(this.config);
  }

  /** Runs the encoder on a padded batch; returns last_hidden_state and the mask. */
  async encode(inputIds: number[][]): Promise<{ hidden: ort.Tensor; mask: ort.Tensor }> {
    const n = inputIds.length;
    const S = Math.max(...inputIds.map((x) => x.length));
    const ids = new Array<number>(n * S).fill(this.config.padId);
    const mask = new Array<number>(n * S).fill(0);
    inputIds.forEach((x, i) => x.forEach((t, j) => { ids[i * S + j] = t; mask[i * S + j] = 1; }));
    const m = i64(mask, [n, S]);
    const r = await this.encoder.run({ input_ids: i64(ids, [n, S]), attention_mask: m });
    return { hidden: r.last_hidden_state, mask: m };
  }

  /** Decoder state over steps: tracks which source each row of the past belongs to. */
  private stepper(hidden: ort.Tensor, mask: ort.Tensor) {
    const L = this.config.decoderLayers;
    const V = this.config.vocabSize;
    let past: Record<string, ort.Tensor> | null = null; // decoder K/V, rows as in the last step
    let encKv: Record<string, ort.Tensor> = {}; // cross K/V per source
    let crossKey = ''; // the row → source arrangement of `cross`
    let cross: Record<string, ort.Tensor> = {};
    return {
      /**
       * One decoder step for rows with `tokens`; row r continues row parents[r] of the previous step and reads
       * source srcOf[r]. Returns logits [rows, V] (the step's own buffer).
       */
      step: async (tokens: number[], parents: number[] | null, srcOf: number[]): Promise<Float32Array> => {
        const rows = tokens.length;
        const ids = i64(tokens, [rows, 1]);
        const srcKey = srcOf.join(',');
        if (past === null) {
          if (!isIdentity(srcOf, hidden.dims[0])) throw new Error('the first step must have one row per source, in order');
          const r = await this.decoder.run({ input_ids: ids, encoder_attention_mask: mask, encoder_hidden_states: hidden });
          past = {};
          encKv = {};
          for (let i = 0; i < L; i++) {
            past[`past_key_values.${i}.decoder.key`] = r[`present.${i}.decoder.key`];
            past[`past_key_values.${i}.decoder.value`] = r[`present.${i}.decoder.value`];
            encKv[`past_key_values.${i}.encoder.key`] = r[`present.${i}.encoder.key`];
            encKv[`past_key_values.${i}.encoder.value`] = r[`present.${i}.encoder.value`];
          }
          cross = { ...encKv, encoder_attention_mask: mask };
          crossKey = srcKey;
          return r.logits.data as Float32Array;
        }
        const prevRows = past['past_key_values.0.decoder.key'].dims[0];
        if (parents && !isIdentity(parents, prevRows)) {
          const next: Record<string, ort.Tensor> = {};
          for (const [k, t] of Object.entries(past)) next[k] = gatherRows(t, parents);
          past = next;
        }
        if (srcKey !== crossKey) {
          cross = { encoder_attention_mask: gatherRows(mask, srcOf) };
          for (const [k, t] of Object.entries(encKv)) cross[k] = gatherRows(t, srcOf);
          crossKey = srcKey;
        }
        const r = await this.decoderWithPast.run({ input_ids: ids, ...cross, ...past });
        const np: Record<string, ort.Tensor> = {};
        for (let i = 0; i < L; i++) {
          np[`past_key_values.${i}.decoder.key`] = r[`present.${i}.decoder.key`];
          np[`past_key_values.${i}.decoder.value`] = r[`present.${i}.decoder.value`];
        }
        past = np;
        const logits = r.logits.data as Float32Array;
        if (logits.length !== rows * V) throw new Error(`logits has ${logits.length} values, expected ${rows * V}`);
        return logits;
      },
    };
  }

  /**
   * Same contract as MarianModel.generate: ids per source (each with its eos) → generated ids. Search runs through
   * chimera's own per-sequence objects (src/engine/sequence.ts) and step assembler, so both engines share one
   * search; only the memory differs: ORT's past K/V rows follow the step's row order, so a slot is mapped to the
   * row its memory sits in, and a beam's slot copy becomes a row gather before the next step.
   */
  async generate(inputIds: number[][], opts: OrtGenerateOptions = {}): Promise<OrtGenerateResult> {
    const t0 = performance.now();
    const beam = opts.beam ?? 1;
    const maxLength = searchMaxLength(opts.maxLength, this.config);
    const { hidden, mask } = await this.encode(inputIds);
    const st = this.stepper(hidden, mask);
    const V = this.config.vocabSize;
    const { seqs } = searchSequences(inputIds.length, this.spec, {
      beam, maxLength, minNewTokens: opts.minNewTokens, lengthPenalty: opts.lengthPenalty, earlyStopping: opts.earlyStopping,
    });
    const asm = new StepAssembler();
    const topk = makeTopk(V);
    const rowOfSlot = new Map<number, number>(); // slot -> row of the last step's past that holds its memory
    const copied = new Map<number, number>(); // slot -> the slot whose memory it took since the last step
    let ttftMs = 0, steps = 0;
    for (let rows; (rows = asm.assemble(seqs)); ) {
      const parents = steps === 0 ? null : Array.from(rows.slots, (s) => rowOfSlot.get(copied.get(s) ?? s)!);
      const logits = await st.step(Array.from(rows.tokens), parents, Array.from(rows.sources));
      rowOfSlot.clear();
      copied.clear();
      rows.slots.forEach((s, r) => rowOfSlot.set(s, r));
      asm.consume(seqs, logits, V, topk, (from, to) => copied.set(to, from));
      if (steps++ === 0) ttftMs = performance.now() - t0; // the first token picked
    }
    return { ids: seqs.map((s) => s.result()), ttftMs, steps, totalMs: performance.now() - t0 };
  }
}
