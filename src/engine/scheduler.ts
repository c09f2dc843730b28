/**
 * Continuous batching: one decoder step at a time for every live sequence of every request, whatever their
 * search mode, beam width or length. At each step boundary the scheduler admits queued sentences (first in,
 * first out) while slots, source tokens and the state's byte budget allow, encodes the newly admitted
 * sources together (in chunks, so running sequences never stall for long), steps all rows in one model call,
 * picks tokens (native top-k per group of rows that share a k), and hands each sequence its rows back.
 *
 * Model-neutral: a model "prefills" sources into source slots and "steps" rows (token, slot, position,
 * source); a decoder-only model would prefill its prompts the same way.
 */
import { AbortError, ChimeraError } from '../errors';
import { groupKey, StepAssembler, type TopkFn } from './search';
import { createSequence, type CopySlot, type SearchSpec, type SearchOptions, type Sequence, type StepRows } from './sequence';

export interface BatchModel {
  readonly vocab: number;
  readonly spec: SearchSpec;
  /** The longest source and the most positions one slot can hold. */
  readonly maxPositions: number;
  /** Bytes of decoder memory for `slots` x `positions` plus `sources` x `sourceLen`. */
  stateBytes(slots: number, positions: number, sources: number, sourceLen: number): number;
  /** Grows the memory to at least this shape, keeping every live slot's and source's contents. */
  reserve(slots: number, positions: number, sources: number, sourceLen: number): void;
  /** Encodes `ids[i]` into source slot `slots[i]`, all in one call. */
  prefill(ids: number[][], slots: number[]): void;
  /** One decoder step for `rows`; logits [rows.count, vocab], valid until the next call. */
  step(rows: StepRows): Float32Array;
  /** Per row r in [row0, row0 + rows): the k best of logits (log-probabilities when logSoftmax), best first. */
  topk: TopkFn;
  copySlot: CopySlot;
  releaseSource(slot: number): void;
  /** Present when a vocabulary shortlist is in use (src/model/shortlist.ts). */
  readonly shortlist?: ShortlistModel;
}

/**
 * A model's side of the vocabulary shortlist. The scheduler gives each sentence its candidate set, selects the
 * union of the live sets before a step (only when a sentence joined or left), and hands every row its own set's
 * columns: each row is cut down to its own candidates, in ascending id order, so its values, its top-k and its
 * log-softmax are what it would get alone (batch companions only change which columns the LM head computes).
 */
export interface ShortlistModel {
  /** The candidate set of one source, ascending ids (eos and pad included). */
  candidates(source: readonly number[]): Int32Array;
  /** The LM head of the following steps: these tokens (ascending); step() then writes [rows, union.length]. */
  select(union: Int32Array): void;
  /** Top-k per row over rows of different lengths: row r is its first lens[r] values at r * stride. */
  topkRagged(x: Float32Array, rows: number, stride: number, lens: Int32Array, k: number, logSoftmax: boolean, idx: Int32Array, val: Float32Array): void;
}

export interface SchedulerOptions {
  /** Decoder slots live at once (greedy uses 1 per sentence, beam B uses 2B). */
  maxSlots: number;
  /** Source tokens admitted (encoded and still in use) at once. */
  maxSourceTokens: number;
  /** Byte budget of the decoder memory, worst case (every live sequence at its longest). */
  maxStateBytes: number;
  /**
   * Padded source tokens encoded at one step boundary while other sequences are running. An encode of T tokens
   * costs about as much as a decoder step of T rows, so this bounds how long running sequences stall.
   */
  encodeChunkTokens: number;
}

/** One request: sentences decoded with the same options; replied to when all are done. */
export interface SchedRequest {
  sources: number[][];
  options: SearchOptions;
  /** How errors name sentence i (default: 'input i'). */
  label?(sentence: number): string;
  /** Called once, when its first sentence is admitted (ms on performance.now()). */
  onAdmit?(at: number): void;
  /** Called for every token decided by greedy or sampling (sentence index, token). */
  onToken?(sentence: number, token: number): void;
  /** Called as each sentence finishes, in the order they finish. */
  onSentence?(sentence: number, r: SentenceResult): void;
  onDone(results: SentenceResult[]): void;
  onError(e: Error): void;
}

/** One sentence's output and when it was admitted, got its first token and finished (performance.now()). */
export interface SentenceResult {
  ids: number[];
  admitAt: number;
  firstAt: number;
  doneAt: number;
}

interface Job {
  /** Its candidate set under a shortlist (ascending token ids), and where each one sits in the current union. */
  cand: Int32Array | null;
  cols: Int32Array | null;
  req: ReqState;
  index: number;
  ids: number[];
  seq: Sequence;
  slots: number[];
  source: number;
  admitAt: number;
  firstAt: number;
}

interface ReqState {
  r: SchedRequest;
  results: (SentenceResult | null)[];
  left: number;
  admitted: boolean;
  dead: boolean;
}

export interface SchedulerStats {
  queued: number;
  queuedSentences: number;
  active: number;
  activeSequences: number;
  slotsInUse: number;
  slotsTotal: number;
  sourceTokensInUse: number;
  steps: number;
  stepRows: number;
  stepMs: number;
  stepMsLast: number;
  encodes: number;
  encodeMs: number;
  tokensGenerated: number;
}

/** Smallest memory shape the scheduler allocates (positions / source tokens): avoids growing every few steps. */
const MIN_SPAN = 32;

function pow2AtLeast(n: number, cap: number): number {
  let v = MIN_SPAN;
  while (v < n) v *= 2;
  return Math.min(v, cap);
}

export class Scheduler {
  private readonly queue: Job[] = [];
  private qHead = 0;
  private readonly running: Job[] = [];
  private readonly freeSlots: number[] = [];
  private readonly freeSources: number[] = [];
  private slotCap = 0;
  private sourceCap = 0;
  private posCap = 0;
  private srcLenCap = 0;
  private sourceTokens = 0;
  private readonly requests = new Set<ReqState>();
  private readonly asm = new StepAssembler();
  private seqs: Sequence[] = [];
  private readonly counters = { steps: 0, stepRows: 0, stepMs: 0, stepMsLast: 0, encodes: 0, encodeMs: 0, tokensGenerated: 0 };
  /** Shortlist state: the union changed (a sentence joined or left); buffers reused across steps. */
  private unionDirty = true;
  private unionMark: Uint8Array | null = null;
  private unionPos = new Int32Array(0);
  private unionSize = 0;
  /** Every live set equals the union: rows need no cutting. */
  private unionShared = false;
  private slStride = 0;
  private slRows = new Float32Array(0);
  private slLens = new Int32Array(0);
  private readonly slTopk: TopkFn = (x, row0, rows, k, ls, idx, val) =>
    this.model.shortlist!.topkRagged(x.subarray(row0 * this.slStride), rows, this.slStride, this.slLens.subarray(row0, row0 + rows), k, ls, idx, val);
  /** Per-step records since the last drain (rows, ms), for histograms. */
  readonly stepLog: { rows: number; ms: number }[] = [];

  constructor(private readonly model: BatchModel, private readonly o: SchedulerOptions) {
    if (!(Number.isInteger(o.maxSlots) && o.maxSlots >= 1)) throw new ChimeraError('E_ARG', `maxSlots must be a positive integer, got ${o.maxSlots}`);
    if (!(Number.isInteger(o.maxSourceTokens) && o.maxSourceTokens >= 1))
      throw new ChimeraError('E_ARG', `maxSourceTokens must be a positive integer, got ${o.maxSourceTokens}`);
  }

  /** Queues a request; its sentences' options are checked here, so a bad request fails before it waits. */
  submit(r: SchedRequest): () => void {
    if (!Array.isArray(r.sources) || r.sources.length === 0) throw new ChimeraError('E_INPUT', 'a request needs at least one source', { reason: 'empty' });
    const st: ReqState = { r, results: r.sources.map(() => null), left: r.sources.length, admitted: false, dead: false };
    const jobs = r.sources.map((ids, index): Job => ({
      req: st, index, ids, seq: createSequence(this.model.spec, r.options), slots: [], source: -1, admitAt: 0, firstAt: 0, cand: null, cols: null,
    }));
    for (const j of jobs) this.checkFits(j, r.label ? r.label(j.index) : `input ${j.index}`);
    this.requests.add(st);
    this.queue.push(...jobs);
    return () => this.cancel(st, new AbortError());
  }

  /** True while anything is queued or running. */
  get busy(): boolean {
    return this.running.length > 0 || this.qHead < this.queue.length;
  }

  /** Rejects every request (close). */
  failAll(e: Error): void {
    for (const st of [...this.requests]) this.cancel(st, e);
  }

  stats(): SchedulerStats {
    let queued = 0;
    for (const st of this.requests) if (!st.admitted) queued++;
    const c = this.counters;
    return {
      queued,
      queuedSentences: this.queue.length - this.qHead,
      active: this.requests.size - queued,
      activeSequences: this.running.length,
      slotsInUse: this.slotCap - this.freeSlots.length,
      slotsTotal: this.o.maxSlots,
      sourceTokensInUse: this.sourceTokens,
      steps: c.steps,
      stepRows: c.stepRows,
      stepMs: c.stepMs,
      stepMsLast: c.stepMsLast,
      encodes: c.encodes,
      encodeMs: c.encodeMs,
      tokensGenerated: c.tokensGenerated,
    };
  }

  /**
   * One step boundary: drop cancelled work, admit and encode what fits, then one decoder step for every live
   * row. Returns whether work remains.
   */
  tick(): boolean {
    this.admit();
    if (this.running.length > 0) this.step();
    return this.busy;
  }

  /** Runs until nothing is left (generate(), benchmarks). */
  drain(): void {
    while (this.tick());
  }

  // ---- admission

  /** Worst-case bytes if every live sequence (plus `extra`) reaches its longest. */
  private worstBytes(extra?: Job): number {
    let pos = 0, srcLen = 0, slots = this.slotCap - this.freeSlots.length, sources = this.sourceCap - this.freeSources.length;
    for (const j of this.running) {
      pos = Math.max(pos, j.seq.maxPosition + 1);
      srcLen = Math.max(srcLen, j.ids.length);
    }
    if (extra) {
      pos = Math.max(pos, extra.seq.maxPosition + 1);
      srcLen = Math.max(srcLen, extra.ids.length);
      slots += extra.seq.slotsNeeded;
      sources += 1;
    }
    return this.model.stateBytes(slots, pos, sources, srcLen);
  }

  private checkFits(j: Job, label: string): void {
    if (j.ids.length > this.model.maxPositions)
      throw new ChimeraError('E_INPUT', `${label} has ${j.ids.length} tokens (eos included); the model takes at most ${this.model.maxPositions}: shorten or split it`, { reason: 'too_long' });
    if (j.seq.slotsNeeded > this.o.maxSlots)
      throw new ChimeraError('E_ARG', `this search needs ${j.seq.slotsNeeded} decoder slots per sentence; the Translator has ${this.o.maxSlots} (maxSlots)`);
    if (j.ids.length > this.o.maxSourceTokens)
      throw new ChimeraError('E_INPUT', `${label} has ${j.ids.length} tokens; at most ${this.o.maxSourceTokens} source tokens are admitted at once (maxSourceTokens)`, { reason: 'too_long' });
    const alone = this.model.stateBytes(j.seq.slotsNeeded, j.seq.maxPosition + 1, 1, j.ids.length);
    if (alone > this.o.maxStateBytes)
      throw new ChimeraError('E_INPUT', `request too large: its decoder state needs ${(alone / 2 ** 30).toFixed(2)} GiB (beam x length); ` +
        `the limit is ${(this.o.maxStateBytes / 2 ** 30).toFixed(2)} GiB (maxStateBytes)`, { reason: 'too_long' });
  }

  private fits(j: Job): boolean {
    const usedSlots = this.slotCap - this.freeSlots.length;
    if (usedSlots + j.seq.slotsNeeded > this.o.maxSlots) return false;
    if (this.sourceTokens + j.ids.length > this.o.maxSourceTokens) return false;
    return this.worstBytes(j) <= this.o.maxStateBytes;
  }

  private takeSlots(n: number): number[] {
    if (this.freeSlots.length < n) {
      const want = Math.min(this.o.maxSlots, Math.max(this.slotCap * 2, this.slotCap + n - this.freeSlots.length, 8));
      for (let s = want - 1; s >= this.slotCap; s--) this.freeSlots.push(s);
      this.slotCap = want;
    }
    // lowest numbers first: keeps the live slots dense at the front of the memory
    this.freeSlots.sort((a, b) => b - a);
    return this.freeSlots.splice(this.freeSlots.length - n, n).reverse();
  }

  private takeSource(): number {
    if (this.freeSources.length === 0) {
      const want = Math.min(this.o.maxSlots, Math.max(this.sourceCap * 2, 8));
      for (let s = want - 1; s >= this.sourceCap; s--) this.freeSources.push(s);
      this.sourceCap = want;
    }
    return this.freeSources.pop()!;
  }

  private admit(): void {
    this.compactQueue();
    const fresh: Job[] = [];
    let maxLen = 0;
    while (this.qHead < this.queue.length) {
      const j = this.queue[this.qHead];
      if (j.req.dead) {
        this.qHead++;
        continue;
      }
      // padded tokens of the encode this sentence would join; the first sentence always goes
      const padded = (fresh.length + 1) * Math.max(maxLen, j.ids.length);
      if (fresh.length > 0 && padded > this.o.encodeChunkTokens) break;
      if (!this.fits(j)) break; // first in, first out: nothing overtakes the head of the queue
      this.qHead++;
      j.slots = this.takeSlots(j.seq.slotsNeeded);
      j.source = this.takeSource();
      j.seq.attach(j.slots, j.source);
      if (this.model.shortlist) {
        j.cand = this.model.shortlist.candidates(j.ids);
        j.seq.useVocabulary(j.cand);
        this.unionDirty = true;
      }
      this.sourceTokens += j.ids.length;
      maxLen = Math.max(maxLen, j.ids.length);
      j.admitAt = performance.now();
      fresh.push(j);
      this.running.push(j);
      if (!j.req.admitted) {
        j.req.admitted = true;
        j.req.r.onAdmit?.(performance.now());
      }
    }
    if (fresh.length === 0) return;
    this.model.reserve(this.slotCap, this.posCap, this.sourceCap, (this.srcLenCap = Math.max(this.srcLenCap, pow2AtLeast(maxLen, this.model.maxPositions))));
    const t0 = performance.now();
    try {
      this.model.prefill(fresh.map((j) => j.ids), fresh.map((j) => j.source));
    } catch (e) {
      for (const j of fresh) this.cancel(j.req, e as Error);
      return;
    }
    this.counters.encodes++;
    this.counters.encodeMs += performance.now() - t0;
  }

  private compactQueue(): void {
    if (this.qHead > 1024 && this.qHead * 2 > this.queue.length) {
      this.queue.splice(0, this.qHead);
      this.qHead = 0;
    }
  }

  // ---- stepping

  private step(): void {
    const t0 = performance.now();
    // rows grouped by what token selection they need, so each group is one native top-k call
    const live = this.running;
    live.sort((a, b) => groupKey(a.seq) - groupKey(b.seq));
    const seqs = this.seqs;
    seqs.length = live.length;
    for (let i = 0; i < live.length; i++) seqs[i] = live[i].seq;
    const rows = this.asm.assemble(seqs);
    if (!rows) return;
    if (this.asm.maxPosition > this.posCap) {
      this.posCap = pow2AtLeast(this.asm.maxPosition, this.model.maxPositions);
      this.model.reserve(this.slotCap, this.posCap, this.sourceCap, this.srcLenCap);
    }
    const finished: Job[] = [];
    try {
      const sl = this.model.shortlist;
      if (sl && this.unionDirty) this.selectUnion(sl);
      let logits = this.model.step(rows);
      let stride = this.model.vocab, topk = this.model.topk;
      if (sl) {
        logits = this.cutRows(live, logits);
        stride = this.slStride;
        topk = this.slTopk;
      }
      const now = performance.now();
      this.asm.consume(seqs, logits, stride, topk, this.model.copySlot, (i, tok) => {
        const j = live[i];
        if (j.firstAt === 0) j.firstAt = now;
        if (j.seq.topK <= 1) {
          this.counters.tokensGenerated++;
          j.req.r.onToken?.(j.index, tok);
        }
        if (j.seq.done) finished.push(j);
      });
    } catch (e) {
      // a failed step leaves every live sequence in an unknown state: fail them all, keep the scheduler
      for (const j of [...live]) this.cancel(j.req, e as Error);
      return;
    }
    const ms = performance.now() - t0;
    const c = this.counters;
    c.steps++;
    c.stepRows += rows.count;
    c.stepMs += ms;
    c.stepMsLast = ms;
    if (this.stepLog.length < 4096) this.stepLog.push({ rows: rows.count, ms });
    for (const j of finished) this.finish(j);
  }

  // ---- vocabulary shortlist

  /** The union of the live candidate sets to the model, and each live job's columns in it. */
  private selectUnion(sl: ShortlistModel): void {
    const live = this.running;
    const mark = (this.unionMark ??= new Uint8Array(this.model.vocab));
    let maxOwn = 0;
    if (this.unionPos.length < mark.length) this.unionPos = new Int32Array(mark.length);
    let union: Int32Array;
    if (live.every((j) => j.cand === live[0].cand)) union = live[0].cand!; // one sentence (or beams of one): its own set
    else {
      for (const j of live) for (const t of j.cand!) mark[t] = 1;
      const u: number[] = [];
      for (let t = 0; t < mark.length; t++) if (mark[t]) {
        u.push(t);
        mark[t] = 0;
      }
      union = Int32Array.from(u);
    }
    for (let i = 0; i < union.length; i++) this.unionPos[union[i]] = i;
    sl.select(union);
    this.unionSize = union.length;
    this.unionShared = true;
    for (const j of live) {
      const c = j.cand!;
      if (!j.cols || j.cols.length !== c.length) j.cols = new Int32Array(c.length);
      for (let i = 0; i < c.length; i++) j.cols[i] = this.unionPos[c[i]];
      maxOwn = Math.max(maxOwn, c.length);
      if (c.length !== union.length) this.unionShared = false;
    }
    this.slStride = maxOwn;
    this.unionDirty = false;
  }

  /** Each row cut down to its own candidates (in rows slStride apart); the union's logits as they are when shared. */
  private cutRows(live: readonly Job[], logits: Float32Array): Float32Array {
    const U = this.unionSize;
    let rows = 0;
    for (const j of live) rows += j.seq.rowCount();
    if (this.slLens.length < rows) this.slLens = new Int32Array(Math.max(rows, 2 * this.slLens.length));
    if (this.unionShared) {
      this.slLens.fill(U, 0, rows);
      return logits;
    }
    const W = this.slStride;
    if (this.slRows.length < rows * W) this.slRows = new Float32Array(Math.max(rows * W, 2 * this.slRows.length));
    const out = this.slRows;
    let r = 0;
    for (const j of live) {
      const cols = j.cols!, n = cols.length;
      for (let e = r + j.seq.rowCount(); r < e; r++) {
        const src = r * U, dst = r * W;
        for (let c = 0; c < n; c++) out[dst + c] = logits[src + cols[c]];
        this.slLens[r] = n;
      }
    }
    return out;
  }

  private release(j: Job): void {
    if (this.model.shortlist && j.source >= 0) this.unionDirty = true;
    const k = this.running.indexOf(j);
    if (k >= 0) this.running.splice(k, 1);
    if (j.source >= 0) {
      this.model.releaseSource(j.source);
      this.freeSources.push(j.source);
      this.sourceTokens -= j.ids.length;
      for (const s of j.slots) this.freeSlots.push(s);
      j.source = -1;
      j.slots = [];
    }
  }

  private finish(j: Job): void {
    const ids = j.seq.result();
    if (j.seq.topK > 1) this.counters.tokensGenerated += ids.length; // beam tokens count when decided
    this.release(j);
    const st = j.req;
    const res: SentenceResult = { ids, admitAt: j.admitAt, firstAt: j.firstAt, doneAt: performance.now() };
    st.results[j.index] = res;
    st.r.onSentence?.(j.index, res);
    if (--st.left === 0) {
      this.requests.delete(st);
      st.dead = true;
      st.r.onDone(st.results as SentenceResult[]);
    }
  }

  private cancel(st: ReqState, e: Error): void {
    if (st.dead) return;
    st.dead = true;
    this.requests.delete(st);
    for (const j of [...this.running]) if (j.req === st) this.release(j);
    st.r.onError(e);
  }
}

