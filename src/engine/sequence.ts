/**
 * Search as per-sequence state machines. Each object owns one source sentence's decoding: its tokens, scores,
 * beam hypotheses, stopping rule and the decoder slots it was given. A scheduler asks every live sequence for
 * its rows, runs one model step for all of them, and hands each sequence its rows' outputs back.
 *
 * Nothing here knows the model: a row is (token, slot, position, source) and the output is logits or the
 * top-k of them. Results depend only on the sequence's own source and options, never on what it shared a
 * step with (each sequence has its own random stream; rows are independent in the model).
 */
import { ChimeraError } from '../errors';
import { mulberry32 } from '../util/rng';

/** Row buffers of one step; row r feeds tokens[r] at positions[r] into slot slots[r], attending to sources[r]. */
export interface StepRows {
  tokens: Int32Array;
  slots: Int32Array;
  positions: Int32Array;
  sources: Int32Array;
  count: number;
}

export interface SearchSpec {
  startId: number;
  eosId: number;
  /** Token ids never generated (pad). */
  banned: number[];
  /** Force eos at the last slot (transformers' forced_eos_token_id). */
  forceEosAtMax: boolean;
}

export interface SearchOptions {
  /** Beam width; 1 (default) is greedy or sampling. */
  beam?: number;
  /** Hugging Face semantics: counts the decoder start token, so at most maxLength - 1 tokens are generated. */
  maxLength: number;
  /** Exponent on the length in beam scoring (score = sum log p / length ** lengthPenalty). Default 1. */
  lengthPenalty?: number;
  /** Beam stopping: true = when `beam` hypotheses are finished; false (default) = when no running beam can beat them. */
  earlyStopping?: boolean;
  /** eos is banned until this many tokens were generated (transformers' min_new_tokens). */
  minNewTokens?: number;
  /** Sampling instead of argmax (beam must be 1). */
  sample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
}

/**
 * One step's outputs as a sequence sees them: the raw logits of every row (after `prepare`), and for
 * sequences that asked for it, the top-k of their rows (row j of the sequence at topAt + j * k).
 */
export interface StepOutput {
  vocab: number;
  logits: Float32Array;
  topIdx: Int32Array;
  topVal: Float32Array;
}

/** Copies the first `len` positions of one slot's decoder memory to another (beam reordering). */
export type CopySlot = (from: number, to: number, len: number) => void;

export interface Sequence {
  /** Top-k the scheduler computes for each of this sequence's rows; 0 = the sequence reads the full logits. */
  readonly topK: number;
  /** Whether those top-k values are log-probabilities (log-softmax of the row) rather than logits. */
  readonly logSoftmax: boolean;
  /** Decoder slots this sequence needs while it lives. */
  readonly slotsNeeded: number;
  /** The largest position its rows may use (the decoder memory each slot must hold, minus one). */
  readonly maxPosition: number;
  readonly done: boolean;
  /** Gives the sequence its slots and its encoded source. */
  attach(slots: number[], source: number): void;
  /**
   * Restricts the sequence to a candidate set (the vocabulary shortlist), before its first step: its rows then
   * hold the logits of these tokens only (ascending, eos among them), column c being token ids[c], in rows
   * `stride` apart; bans, the forced eos, top-k and sampling all work on those columns.
   */
  useVocabulary(ids: Int32Array): void;
  readonly slots: readonly number[];
  readonly source: number;
  /** Rows this step (0 once done). */
  rowCount(): number;
  /** The position the next step writes (the decoder memory a slot needs is this + 1). */
  nextPosition(): number;
  fillRows(rows: StepRows, at: number): void;
  /** Bans, minimum length and the forced eos, in place on its rows of `logits` (before any top-k). */
  prepare(logits: Float32Array, at: number, vocab: number): void;
  /** Consumes its rows' outputs; returns the tokens decided this step (greedy and sampling only). */
  advance(out: StepOutput, at: number, topAt: number, copySlot: CopySlot): number;
  /** The generated ids (no start token; ends with eos when one was produced). Valid once done. */
  result(): number[];
}

/** Applies bans, min length and the forced eos to one row of logits in place. */
export function processLogits(logits: Float32Array, off: number, vocab: number, spec: SearchSpec, forceEos: boolean, banEos = false): void {
  if (forceEos) {
    const keep = logits[off + spec.eosId];
    logits.fill(-Infinity, off, off + vocab);
    logits[off + spec.eosId] = Number.isFinite(keep) ? keep : 0;
    return;
  }
  for (const b of spec.banned) logits[off + b] = -Infinity;
  if (banEos) logits[off + spec.eosId] = -Infinity;
}

/**
 * The k best indices of a row, best first (ties: lower index first), in one pass: a token must beat the current
 * k-th best to be inserted, so most cost one comparison.
 */
function topIndices(a: Float32Array, off: number, n: number, k: number): number[] {
  const idx: number[] = [];
  for (let i = 0; i < n; i++) {
    const v = a[off + i];
    if (!(v > -Infinity)) continue;
    if (idx.length === k && !(v > a[off + idx[k - 1]])) continue;
    let p = idx.length < k ? idx.length : k - 1;
    if (idx.length < k) idx.push(i);
    while (p > 0 && a[off + idx[p - 1]] < v) {
      idx[p] = idx[p - 1];
      p--;
    }
    idx[p] = i;
  }
  return idx;
}

/**
 * Draws a token from softmax(logits / temperature), restricted to the top-k and then to the top-p nucleus when
 * asked. Plain sampling needs no ordering and is one pass over the row; top-k selects in one pass; only top-p
 * without top-k sorts the row.
 */
export function sampleToken(a: Float32Array, off: number, n: number, o: SearchOptions, rnd: () => number): number {
  const t = o.temperature ?? 1;
  const k = o.topK && o.topK > 0 ? Math.min(o.topK, n) : 0;
  const nucleus = o.topP !== undefined && o.topP < 1;
  if (k === 0 && !nucleus) {
    let mx = -Infinity, last = 0;
    for (let i = 0; i < n; i++) if (a[off + i] > mx) mx = a[off + i];
    let total = 0;
    for (let i = 0; i < n; i++) if (a[off + i] > -Infinity) total += Math.exp((a[off + i] - mx) / t);
    let r = rnd() * total;
    for (let i = 0; i < n; i++) {
      if (!(a[off + i] > -Infinity)) continue;
      last = i;
      r -= Math.exp((a[off + i] - mx) / t);
      if (r <= 0) return i;
    }
    return last;
  }
  let cand: number[];
  if (k > 0) cand = topIndices(a, off, n, k);
  else {
    cand = [];
    for (let i = 0; i < n; i++) if (a[off + i] > -Infinity) cand.push(i);
    cand.sort((x, y) => a[off + y] - a[off + x] || x - y);
  }
  const mx = a[off + cand[0]];
  let probs = cand.map((i) => Math.exp((a[off + i] - mx) / t));
  let total = probs.reduce((s, p) => s + p, 0);
  if (nucleus) {
    let acc = 0, cut = cand.length;
    for (let i = 0; i < cand.length; i++) {
      acc += probs[i] / total;
      if (acc >= o.topP!) { cut = i + 1; break; }
    }
    cand = cand.slice(0, cut);
    probs = probs.slice(0, cut);
    total = probs.reduce((s, p) => s + p, 0);
  }
  let r = rnd() * total;
  for (let i = 0; i < cand.length; i++) {
    r -= probs[i];
    if (r <= 0) return cand[i];
  }
  return cand[cand.length - 1];
}

/** Largest beam accepted: 2 x beam slots per sentence, and a top-2B per row. */
export const MAX_BEAM = 64;

/** Validates search options; returns the beam width. Every value a caller can pass is checked here once. */
export function checkSearchOptions(o: SearchOptions): number {
  const beam = o.beam ?? 1;
  if (!Number.isInteger(beam) || beam < 1 || beam > MAX_BEAM) throw new ChimeraError('E_ARG', `beam must be an integer in 1..${MAX_BEAM}, got ${beam}`);
  if (!Number.isInteger(o.maxLength) || o.maxLength < 2) throw new ChimeraError('E_ARG', `maxLength must be an integer >= 2, got ${o.maxLength}`);
  if (o.sample !== undefined && typeof o.sample !== 'boolean') throw new ChimeraError('E_ARG', `sample must be a boolean, got ${String(o.sample)}`);
  if (o.sample && beam > 1) throw new ChimeraError('E_ARG', 'sampling with beam > 1 is not supported');
  if (o.temperature !== undefined && !(typeof o.temperature === 'number' && o.temperature > 0 && Number.isFinite(o.temperature) && o.temperature <= 1e4))
    throw new ChimeraError('E_ARG', `temperature must be a finite number in (0, 1e4], got ${String(o.temperature)}`);
  if (o.topP !== undefined && !(typeof o.topP === 'number' && o.topP > 0 && o.topP <= 1)) throw new ChimeraError('E_ARG', `topP must be in (0, 1], got ${String(o.topP)}`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) throw new ChimeraError('E_ARG', `topK must be an integer >= 0, got ${String(o.topK)}`);
  if (o.seed !== undefined && !(Number.isInteger(o.seed) && Math.abs(o.seed) <= 2 ** 53)) throw new ChimeraError('E_ARG', `seed must be an integer, got ${String(o.seed)}`);
  if (o.lengthPenalty !== undefined && !(typeof o.lengthPenalty === 'number' && Number.isFinite(o.lengthPenalty)))
    throw new ChimeraError('E_ARG', `lengthPenalty must be a finite number, got ${String(o.lengthPenalty)}`);
  if (o.earlyStopping !== undefined && typeof o.earlyStopping !== 'boolean') throw new ChimeraError('E_ARG', `earlyStopping must be a boolean, got ${String(o.earlyStopping)}`);
  if (o.minNewTokens !== undefined && !(Number.isInteger(o.minNewTokens) && o.minNewTokens >= 0 && o.minNewTokens < o.maxLength))
    throw new ChimeraError('E_ARG', `minNewTokens must be an integer in 0..${o.maxLength - 1} (below the maximum length), got ${String(o.minNewTokens)}`);
  return beam;
}

/** The column of token t in an ascending id list, or -1. */
function columnOf(ids: Int32Array, t: number): number {
  let lo = 0, hi = ids.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (ids[mid] === t) return mid;
    if (ids[mid] < t) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

abstract class BaseSequence {
  slots: number[] = [];
  source = -1;
  done = false;
  /** The token of each logit column under a shortlist; null: column = token id. */
  protected cols: Int32Array | null = null;
  /** The spec with eos and the bans as columns (the spec itself without a shortlist). */
  protected cspec: SearchSpec;
  constructor(protected readonly spec: SearchSpec, protected readonly o: SearchOptions) {
    this.cspec = spec;
  }
  useVocabulary(ids: Int32Array): void {
    const eos = columnOf(ids, this.spec.eosId);
    if (eos < 0) throw new ChimeraError('E_ARG', 'a candidate set must hold eos');
    this.cols = ids;
    this.cspec = { ...this.spec, eosId: eos, banned: this.spec.banned.map((b) => columnOf(ids, b)).filter((c) => c >= 0) };
  }
  /** Columns of this sequence's rows in a step whose rows are `stride` apart. */
  protected width(stride: number): number {
    return this.cols ? this.cols.length : stride;
  }
  protected token(col: number): number {
    return this.cols ? this.cols[col] : col;
  }
  get maxPosition(): number {
    return this.o.maxLength - 2; // positions 0 .. maxLength - 2: the start token is position 0
  }
  attach(slots: number[], source: number): void {
    this.slots = slots;
    this.source = source;
  }
}

/** Greedy or sampled decoding of one source: one slot, one row per step. */
export class GreedySequence extends BaseSequence implements Sequence {
  readonly topK: number;
  readonly logSoftmax = false;
  readonly slotsNeeded = 1;
  private pos = 0;
  private last: number;
  private readonly out: number[] = [];
  private readonly rnd: (() => number) | null;

  constructor(spec: SearchSpec, o: SearchOptions) {
    super(spec, o);
    checkSearchOptions(o);
    this.last = spec.startId;
    // Sampling reads the whole row; greedy only needs the best token, picked natively.
    this.topK = o.sample ? 0 : 1;
    // Each sequence has its own stream, so a seeded sample does not depend on its batch neighbours.
    this.rnd = o.sample ? mulberry32(o.seed ?? 0) : null;
  }

  rowCount(): number {
    return this.done ? 0 : 1;
  }
  nextPosition(): number {
    return this.pos;
  }
  fillRows(rows: StepRows, at: number): void {
    rows.tokens[at] = this.last;
    rows.slots[at] = this.slots[0];
    rows.positions[at] = this.pos;
    rows.sources[at] = this.source;
  }
  prepare(logits: Float32Array, at: number, V: number): void {
    const forceEos = this.spec.forceEosAtMax && this.pos + 2 >= this.o.maxLength;
    processLogits(logits, at * V, this.width(V), this.cspec, forceEos, this.pos < (this.o.minNewTokens ?? 0));
  }
  advance(out: StepOutput, at: number, topAt: number): number {
    const tok = this.token(this.rnd ? sampleToken(out.logits, at * out.vocab, this.width(out.vocab), this.o, this.rnd) : out.topIdx[topAt]);
    this.out.push(tok);
    this.last = tok;
    if (tok === this.spec.eosId || this.pos + 2 >= this.o.maxLength) this.done = true;
    this.pos++;
    return tok;
  }
  result(): number[] {
    return this.out;
  }
}

export interface Hyp {
  tokens: number[];
  score: number;
  eos?: boolean; // finished by eos (which is not in tokens)
}

export interface Candidate {
  score: number;
  beam: number;
  token: number;
}

/** Keeps the `B` best finished hypotheses (transformers' BeamHypotheses.add). */
export function addFinished(f: Hyp[], h: Hyp, B: number): void {
  if (f.length < B) {
    f.push(h);
  } else {
    let wi = 0;
    for (let i = 1; i < f.length; i++) if (f[i].score < f[wi].score) wi = i;
    if (h.score > f[wi].score) f[wi] = h;
  }
}

/** Inserts `c` into `cand` (best first, at most `keep`), after any equal scores already there. */
function insertCandidate(cand: Candidate[], c: Candidate, keep: number): void {
  if (cand.length === keep && !(c.score > cand[keep - 1].score)) return;
  let k = cand.length;
  while (k > 0 && cand[k - 1].score < c.score) k--;
  cand.splice(k, 0, c);
  if (cand.length > keep) cand.pop();
}

/**
 * Beam search over one source with transformers' semantics: 2 x beam candidates per step, finished hypotheses
 * scored sum log p / length ** lengthPenalty (length counts the start token), the earlyStopping rules of
 * BeamHypotheses. Its 2 x beam slots form two banks of `beam`, swapped each step so that reordering never
 * overwrites a parent before it is copied.
 */
export class BeamSequence extends BaseSequence implements Sequence {
  readonly topK: number;
  readonly logSoftmax = true;
  readonly slotsNeeded: number;
  private readonly B: number;
  private readonly lp: number;
  private readonly early: boolean;
  private beams: Hyp[];
  private readonly finished: Hyp[] = [];
  private bank = 0;
  private cur = 1; // tokens in each live hypothesis (the start token included)
  private readonly cand: Candidate[] = [];

  constructor(spec: SearchSpec, o: SearchOptions) {
    super(spec, o);
    this.B = checkSearchOptions(o);
    this.topK = 2 * this.B;
    this.slotsNeeded = 2 * this.B;
    this.lp = o.lengthPenalty ?? 1;
    this.early = o.earlyStopping ?? false;
    this.beams = [{ tokens: [spec.startId], score: 0 }];
  }

  private slotOf(bank: number, j: number): number {
    return this.slots[bank * this.B + j];
  }
  rowCount(): number {
    return this.done ? 0 : this.beams.length;
  }
  nextPosition(): number {
    return this.cur - 1;
  }
  fillRows(rows: StepRows, at: number): void {
    this.beams.forEach((h, j) => {
      rows.tokens[at + j] = h.tokens[h.tokens.length - 1];
      rows.slots[at + j] = this.slotOf(this.bank, j);
      rows.positions[at + j] = this.cur - 1;
      rows.sources[at + j] = this.source;
    });
  }
  prepare(logits: Float32Array, at: number, V: number): void {
    const forceEos = this.spec.forceEosAtMax && this.cur + 1 >= this.o.maxLength;
    const banEos = this.cur - 1 < (this.o.minNewTokens ?? 0);
    for (let j = 0; j < this.beams.length; j++) processLogits(logits, (at + j) * V, this.width(V), this.cspec, forceEos, banEos);
  }
  advance(out: StepOutput, _at: number, topAt: number, copySlot: CopySlot): number {
    const { B, lp, spec } = this;
    const K = this.topK;
    const live = this.beams;
    // top 2B of (beam score + log p) over this source's rows; each row's own top 2B holds every candidate
    // that can make the overall top 2B
    const cand = this.cand;
    cand.length = 0;
    for (let j = 0; j < live.length; j++) {
      const base = live[j].score;
      for (let i = 0; i < K; i++) {
        const v = out.topVal[topAt + j * K + i];
        if (v === -Infinity) break;
        insertCandidate(cand, { score: v + base, beam: j, token: this.token(out.topIdx[topAt + j * K + i]) }, K);
      }
    }
    const next: Hyp[] = [];
    const parents: number[] = [];
    for (let rank = 0; rank < cand.length && next.length < B; rank++) {
      const c = cand[rank];
      if (!Number.isFinite(c.score)) break;
      if (c.token === spec.eosId) {
        if (rank >= B) continue; // an eos outside the top `beam` candidates is not a hypothesis
        const toks = live[c.beam].tokens;
        addFinished(this.finished, { tokens: toks.slice(), score: c.score / toks.length ** lp, eos: true }, B);
      } else {
        next.push({ tokens: [...live[c.beam].tokens, c.token], score: c.score });
        parents.push(c.beam);
      }
    }
    // stopping, as BeamHypotheses.is_done
    const f = this.finished;
    const cur = this.cur;
    let isDone = next.length === 0 || cur + 1 >= this.o.maxLength;
    if (!isDone && f.length >= B) {
      if (this.early) isDone = true;
      else isDone = Math.min(...f.map((h) => h.score)) >= cand[0].score / cur ** lp; // the best candidate at the current length
    }
    if (isDone) {
      if (cur + 1 >= this.o.maxLength) for (const h of next) addFinished(f, { tokens: h.tokens, score: h.score / h.tokens.length ** lp }, B);
      this.done = true;
      return 0;
    }
    // move each new beam's memory into the other bank
    const nb = 1 - this.bank;
    parents.forEach((p, j) => copySlot(this.slotOf(this.bank, p), this.slotOf(nb, j), cur));
    this.bank = nb;
    this.beams = next;
    this.cur++;
    return 0;
  }
  result(): number[] {
    const best = this.finished.reduce((a, b) => (b.score > a.score ? b : a), this.finished[0] ?? { tokens: [this.spec.startId], score: -Infinity });
    // the eos that ended a hypothesis is not in its tokens; report it as greedy does
    const toks = best.tokens.slice(1);
    return best.eos ? [...toks, this.spec.eosId] : toks;
  }
}

/** The sequence object for one source and these options. */
export function createSequence(spec: SearchSpec, o: SearchOptions): Sequence {
  return (o.beam ?? 1) > 1 ? new BeamSequence(spec, o) : new GreedySequence(spec, o);
}
