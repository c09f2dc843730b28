/**
 * The decoder loop around per-sequence state machines (src/engine/sequence.ts). A step is assembled from every
 * live sequence's rows, the model runs it, and the outputs are handed back: bans and forced eos first, then one
 * top-k call per group of rows that share a k (greedy: 1; beam B: 2B log-probabilities), then each sequence
 * advances. The scheduler (continuous batching, which MarianModel.generate also runs) and the onnxruntime
 * reference loop both run their steps through StepAssembler, so search has one implementation.
 */
import { ChimeraError } from '../errors';
import { topk as topkKernel } from '../kernels';
import type { CopySlot, SearchSpec, Sequence, StepOutput, StepRows } from './sequence';
import { createSequence, type SearchOptions } from './sequence';

export * from './sequence';

/** Per row r in [row0, row0 + rows): the k best of `logits` (log-probabilities when logSoftmax), best first. */
export type TopkFn = (logits: Float32Array, row0: number, rows: number, k: number, logSoftmax: boolean, outIdx: Int32Array, outVal: Float32Array) => void;

/** Top-k through the native kernel (validated wrapper): rows of `vocab` logits, x itself left unchanged. */
export function makeTopk(vocab: number): TopkFn {
  return (logits, row0, rows, k, ls, outIdx, outVal) => {
    topkKernel(logits.subarray(row0 * vocab, (row0 + rows) * vocab), rows, vocab, k, { logSoftmax: ls, outIdx, outVal });
  };
}

/** Row groups in a step: greedy first, then beams by width, then sampling (which reads whole rows). */
export function groupKey(s: Sequence): number {
  return s.topK === 0 ? 1e9 : s.topK * 2 + (s.logSoftmax ? 1 : 0);
}

/** Builds a step's rows from sequences and hands the outputs back; buffers are reused across steps. */
export class StepAssembler {
  private buf: StepRows = { tokens: new Int32Array(0), slots: new Int32Array(0), positions: new Int32Array(0), sources: new Int32Array(0), count: 0 };
  private topIdx = new Int32Array(0);
  private topVal = new Float32Array(0);
  private at: number[] = [];
  private topAt: number[] = [];
  /** The views handed out last: cut again only when the row count changes (a sequence joins or leaves). */
  private view: StepRows | null = null;
  private readonly out: StepOutput = { vocab: 0, logits: new Float32Array(0), topIdx: new Int32Array(0), topVal: new Float32Array(0) };
  /** Largest position + 1 any row of the last assembled step writes. */
  maxPosition = 0;

  /**
   * The rows of `seqs` (which must be ordered by groupKey), or null when none has a row left. The returned
   * arrays are views into buffers reused by the next call.
   */
  assemble(seqs: readonly Sequence[]): StepRows | null {
    let count = 0, topNeed = 0, maxPos = 0;
    for (const s of seqs) {
      const n = s.rowCount();
      count += n;
      topNeed += n * s.topK;
      if (n > 0) maxPos = Math.max(maxPos, s.nextPosition() + 1);
    }
    this.maxPosition = maxPos;
    if (count === 0) return null;
    if (this.buf.tokens.length < count) {
      const cap = Math.max(count, this.buf.tokens.length * 2);
      this.buf = { tokens: new Int32Array(cap), slots: new Int32Array(cap), positions: new Int32Array(cap), sources: new Int32Array(cap), count: 0 };
      this.view = null;
    }
    if (this.topIdx.length < topNeed) {
      const cap = Math.max(topNeed, this.topIdx.length * 2);
      this.topIdx = new Int32Array(cap);
      this.topVal = new Float32Array(cap);
    }
    this.at.length = seqs.length;
    let r = 0;
    for (let i = 0; i < seqs.length; i++) {
      this.at[i] = r;
      seqs[i].fillRows(this.buf, r);
      r += seqs[i].rowCount();
    }
    if (this.view?.count !== count) {
      const b = this.buf;
      this.view = { tokens: b.tokens.subarray(0, count), slots: b.slots.subarray(0, count), positions: b.positions.subarray(0, count), sources: b.sources.subarray(0, count), count };
    }
    return this.view;
  }

  /**
   * Hands the logits of the step assembled last back to the same `seqs`: processing, grouped top-k, advance.
   * `onAdvance(i, token)` is called per sequence after it advanced (token: greedy/sampling's decided token).
   */
  consume(seqs: readonly Sequence[], logits: Float32Array, vocab: number, topk: TopkFn, copySlot: CopySlot, onAdvance?: (i: number, token: number, rows: number) => void): void {
    const at = this.at;
    for (let i = 0; i < seqs.length; i++) if (seqs[i].rowCount() > 0) seqs[i].prepare(logits, at[i], vocab);
    const topAt = this.topAt;
    topAt.length = seqs.length;
    let t = 0;
    for (let i = 0; i < seqs.length;) {
      const k = seqs[i].topK, ls = seqs[i].logSoftmax;
      let e = i, n = 0;
      while (e < seqs.length && seqs[e].topK === k && seqs[e].logSoftmax === ls) {
        topAt[e] = t + n * k;
        n += seqs[e].rowCount();
        e++;
      }
      if (k > 0 && n > 0) topk(logits, at[i], n, k, ls, this.topIdx.subarray(t, t + n * k), this.topVal.subarray(t, t + n * k));
      t += n * k;
      i = e;
    }
    const out = this.out;
    out.vocab = vocab;
    out.logits = logits;
    out.topIdx = this.topIdx;
    out.topVal = this.topVal;
    for (let i = 0; i < seqs.length; i++) {
      const rows = seqs[i].rowCount();
      if (rows === 0) continue;
      const tok = seqs[i].advance(out, at[i], topAt[i], copySlot);
      onAdvance?.(i, tok, rows);
    }
  }
}

/** One sequence per source (source i in source slot i, slots handed out in order), for a plain search loop. */
export function searchSequences(n: number, spec: SearchSpec, o: SearchOptions): { seqs: Sequence[]; slotsUsed: number } {
  const seqs: Sequence[] = [];
  let next = 0;
  for (let i = 0; i < n; i++) {
    const s = createSequence(spec, o);
    s.attach(Array.from({ length: s.slotsNeeded }, () => next++), i);
    seqs.push(s);
  }
  return { seqs, slotsUsed: next };
}

export interface SearchConfig {
  decoderStartId: number;
  eosId: number;
  padId: number;
  badWordsIds: number[][];
  forcedEosId: number | null;
  /** generation max_length (start token counted). */
  maxLength: number;
  maxPositions: number;
}

/**
 * The search spec of a model config, shared by MarianModel and the onnxruntime reference loop: pad and
 * bad_words_ids are never generated, eos is forced at the last slot when forced_eos_token_id is eos.
 */
export function searchSpecOf(c: SearchConfig): SearchSpec {
  return {
    startId: c.decoderStartId,
    eosId: c.eosId,
    banned: [c.padId, ...c.badWordsIds.flat()].filter((v, i, a) => a.indexOf(v) === i),
    forceEosAtMax: c.forcedEosId !== null && c.forcedEosId === c.eosId,
  };
}

/**
 * The public `maxLength` (generated tokens at most, the start token not counted; default the model's
 * max_length - 1) as the search's Hugging Face maxLength (start token counted), capped by the positions.
 */
export function searchMaxLength(maxLength: number | undefined, c: SearchConfig): number {
  const maxNew = maxLength ?? c.maxLength - 1;
  if (!Number.isInteger(maxNew) || maxNew < 1) throw new ChimeraError('E_ARG', `maxLength must be a positive integer (generated tokens at most), got ${maxNew}`);
  return Math.min(maxNew + 1, c.maxPositions);
}
