/**
 * Search over decoder steps: greedy, beam (Hugging Face semantics) and sampling, for a batch of sources.
 * The loop owns tokens, scores, cache bookkeeping (which slot each row uses) and stopping; the step
 * function it is given runs the model for any set of rows.
 */
import { ChimeraError } from '../errors';
import { logSoftmax } from '../kernels';
import { mulberry32 } from '../util/rng';

export interface StepRows {
  tokens: Int32Array;
  slots: Int32Array;
  positions: Int32Array;
  sources: Int32Array;
  count: number;
}

/** What the search needs from a model: one step for `rows`, logits [count, vocab] back. */
export interface Stepper {
  vocab: number;
  step(rows: StepRows): Float32Array;
  copySlot(from: number, to: number, len: number): void;
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
  /** Called with (source index, token id) as soon as a token is decided (greedy and sampling). */
  onToken?: (source: number, token: number) => void;
}

export interface SearchSpec {
  startId: number;
  eosId: number;
  /** Token ids never generated (pad). */
  banned: number[];
  /** Force eos at the last slot (transformers' forced_eos_token_id). */
  forceEosAtMax: boolean;
}

export interface SearchResult {
  /** Generated ids per source, without the start token, ending with eos when one was produced. */
  ids: number[][];
  /** Milliseconds from the start of search until every source had its first token. */
  firstTokenMs: number;
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

export function argmax(a: Float32Array, off: number, n: number): number {
  let best = 0, bv = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = a[off + i];
    if (v > bv) { bv = v; best = i; }
  }
  return best;
}

function sampleToken(a: Float32Array, off: number, n: number, o: SearchOptions, rnd: () => number): number {
  const t = o.temperature ?? 1;
  const idx: number[] = [];
  for (let i = 0; i < n; i++) if (a[off + i] > -Infinity) idx.push(i);
  idx.sort((x, y) => a[off + y] - a[off + x]);
  let cand = o.topK && o.topK > 0 ? idx.slice(0, o.topK) : idx;
  const mx = a[off + cand[0]];
  let probs = cand.map((i) => Math.exp((a[off + i] - mx) / t));
  let total = probs.reduce((s, p) => s + p, 0);
  if (o.topP !== undefined && o.topP < 1) {
    let acc = 0, cut = cand.length;
    for (let i = 0; i < cand.length; i++) {
      acc += probs[i] / total;
      if (acc >= o.topP) { cut = i + 1; break; }
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

function checkOptions(o: SearchOptions): number {
  const beam = o.beam ?? 1;
  if (!Number.isInteger(beam) || beam < 1 || beam > 64) throw new ChimeraError('E_ARG', `beam must be an integer in 1..64, got ${beam}`);
  if (!Number.isInteger(o.maxLength) || o.maxLength < 2) throw new ChimeraError('E_ARG', `maxLength must be an integer >= 2, got ${o.maxLength}`);
  if (o.sample && beam > 1) throw new ChimeraError('E_ARG', 'sampling with beam > 1 is not supported');
  if (o.temperature !== undefined && !(o.temperature > 0)) throw new ChimeraError('E_ARG', 'temperature must be > 0');
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw new ChimeraError('E_ARG', 'topP must be in (0, 1]');
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) throw new ChimeraError('E_ARG', 'topK must be an integer >= 0');
  return beam;
}

/**
 * Greedy or sampled decoding of `n` sources (source slot i = i). Slot i holds source i's only hypothesis.
 */
export function greedySearch(st: Stepper, n: number, spec: SearchSpec, o: SearchOptions): SearchResult {
  checkOptions(o);
  const t0 = performance.now();
  const rnd = mulberry32(o.seed ?? 0);
  const out: number[][] = Array.from({ length: n }, () => []);
  const last = new Int32Array(n).fill(spec.startId);
  // Row r of a step is source active[r]; buffers are allocated once and views are re-cut only when the
  // number of live sources changes (a source finishing), never per step.
  let active = Int32Array.from({ length: n }, (_, i) => i);
  let next = new Int32Array(n);
  const buf = { tokens: new Int32Array(n), slots: new Int32Array(n), positions: new Int32Array(n), sources: new Int32Array(n) };
  let rows: StepRows | null = null;
  let count = n;
  let firstTokenMs = 0;
  for (let pos = 0; count > 0; pos++) {
    if (!rows || rows.count !== count)
      rows = {
        tokens: buf.tokens.subarray(0, count), slots: buf.slots.subarray(0, count),
        positions: buf.positions.subarray(0, count), sources: buf.sources.subarray(0, count), count,
      };
    for (let r = 0; r < count; r++) {
      const s = active[r];
      buf.tokens[r] = last[s];
      buf.slots[r] = s;
      buf.positions[r] = pos;
      buf.sources[r] = s;
    }
    const logits = st.step(rows);
    const forceEos = spec.forceEosAtMax && pos + 2 >= o.maxLength;
    const banEos = pos < (o.minNewTokens ?? 0);
    let live = 0;
    for (let r = 0; r < count; r++) {
      const s = active[r];
      const off = r * st.vocab;
      processLogits(logits, off, st.vocab, spec, forceEos, banEos);
      const tok = o.sample ? sampleToken(logits, off, st.vocab, o, rnd) : argmax(logits, off, st.vocab);
      out[s].push(tok);
      last[s] = tok;
      o.onToken?.(s, tok);
      if (tok !== spec.eosId && pos + 2 < o.maxLength) next[live++] = s;
    }
    if (pos === 0) firstTokenMs = performance.now() - t0;
    [active, next] = [next, active];
    count = live;
  }
  return { ids: out, firstTokenMs };
}

export interface Hyp {
  tokens: number[];
  score: number;
  eos?: boolean; // finished by eos (which is not in tokens)
}

/**
 * Beam search with transformers' semantics: 2 x beam candidates per step, finished hypotheses scored
 * sum log p / length ** lengthPenalty (length counts the start token), the earlyStopping rules of
 * BeamHypotheses. Source i uses slots [2 i beam, 2 (i + 1) beam): two banks of `beam`, swapped each step
 * so that reordering never overwrites a parent before it is copied.
 */
export function beamSearch(st: Stepper, n: number, spec: SearchSpec, o: SearchOptions): SearchResult {
  const B = checkOptions(o);
  const lp = o.lengthPenalty ?? 1;
  const early = o.earlyStopping ?? false;
  const t0 = performance.now();
  const V = st.vocab;
  const beams: Hyp[][] = Array.from({ length: n }, () => [{ tokens: [spec.startId], score: 0 }]);
  const finished: Hyp[][] = Array.from({ length: n }, () => []);
  const done = new Array<boolean>(n).fill(false);
  const bank = new Array<number>(n).fill(0);
  const slotOf = (s: number, bk: number, j: number) => s * 2 * B + bk * B + j;
  const cap = n * B;
  const rows: StepRows = {
    tokens: new Int32Array(cap), slots: new Int32Array(cap), positions: new Int32Array(cap), sources: new Int32Array(cap), count: 0,
  };
  let firstTokenMs = 0;
  const worst = (f: Hyp[]) => Math.min(...f.map((h) => h.score));
  for (let cur = 1; ; cur++) {
    // rows: every live beam of every unfinished source
    const owners: [number, number][] = [];
    for (let s = 0; s < n; s++) {
      if (done[s]) continue;
      beams[s].forEach((h, j) => {
        const r = owners.length;
        rows.tokens[r] = h.tokens[h.tokens.length - 1];
        rows.slots[r] = slotOf(s, bank[s], j);
        rows.positions[r] = cur - 1;
        rows.sources[r] = s;
        owners.push([s, j]);
      });
    }
    if (owners.length === 0) break;
    const c = owners.length;
    const logits = st.step({ tokens: rows.tokens.subarray(0, c), slots: rows.slots.subarray(0, c), positions: rows.positions.subarray(0, c), sources: rows.sources.subarray(0, c), count: c });
    if (cur === 1) firstTokenMs = performance.now() - t0;
    const forceEos = spec.forceEosAtMax && cur + 1 >= o.maxLength;
    const banEos = cur - 1 < (o.minNewTokens ?? 0);
    for (let r = 0; r < c; r++) processLogits(logits, r * V, V, spec, forceEos, banEos);
    logSoftmax(logits.subarray(0, c * V), V); // natively, all rows at once: this is most of a beam step's work
    let r0 = 0;
    for (let s = 0; s < n; s++) {
      if (done[s]) continue;
      const live = beams[s];
      // top 2B of (beam score + log p) over this source's rows
      const cand: Candidate[] = [];
      for (let j = 0; j < live.length; j++) {
        const off = (r0 + j) * V;
        collectTop(logits, off, V, live[j].score, j, cand, 2 * B);
      }
      if (cand.length < 2 * B) cand.sort((a, b) => b.score - a.score);
      r0 += live.length;
      const next: Hyp[] = [];
      const parents: number[] = [];
      for (let rank = 0; rank < cand.length && next.length < B; rank++) {
        const cnd = cand[rank];
        if (!Number.isFinite(cnd.score)) break;
        if (cnd.token === spec.eosId) {
          if (rank >= B) continue; // an eos outside the top `beam` candidates is not a hypothesis
          const toks = live[cnd.beam].tokens;
          addFinished(finished[s], { tokens: toks.slice(), score: cnd.score / toks.length ** lp, eos: true }, B);
        } else {
          next.push({ tokens: [...live[cnd.beam].tokens, cnd.token], score: cnd.score });
          parents.push(cnd.beam);
        }
      }
      // stopping, as BeamHypotheses.is_done
      const f = finished[s];
      let isDone = next.length === 0 || cur + 1 >= o.maxLength;
      if (!isDone && f.length >= B) {
        if (early) isDone = true;
        else isDone = worst(f) >= cand[0].score / cur ** lp; // the best candidate score at the current length
      }
      if (isDone) {
        if (cur + 1 >= o.maxLength)
          for (const h of next) addFinished(f, { tokens: h.tokens, score: h.score / h.tokens.length ** lp }, B);
        done[s] = true;
        continue;
      }
      // move each new beam's cache into the other bank
      const nb = 1 - bank[s];
      parents.forEach((p, j) => st.copySlot(slotOf(s, bank[s], p), slotOf(s, nb, j), cur));
      bank[s] = nb;
      beams[s] = next;
    }
  }
  const ids: number[][] = [];
  for (let s = 0; s < n; s++) {
    const best = finished[s].reduce((a, b) => (b.score > a.score ? b : a), finished[s][0] ?? { tokens: [spec.startId], score: -Infinity });
    // the eos that ended a hypothesis is not in its tokens; report it as greedy does
    const toks = best.tokens.slice(1);
    ids.push(best.eos ? [...toks, spec.eosId] : toks);
  }
  return { ids, firstTokenMs };
}

export interface Candidate {
  score: number;
  beam: number;
  token: number;
}

/**
 * Merges row `beam`'s tokens (log-probs at logits[off, off + V) plus the beam's score) into `cand`, which keeps
 * the `keep` best, best first. A token must beat the current floor (the keep-th best), so almost every token
 * costs one addition and one comparison.
 */
export function collectTop(logits: Float32Array, off: number, V: number, base: number, beam: number, cand: Candidate[], keep: number): void {
  let floor = cand.length === keep ? cand[keep - 1].score : -Infinity;
  for (let t = 0; t < V; t++) {
    const sc = logits[off + t] + base;
    if (sc <= floor) continue;
    if (cand.length < keep) {
      cand.push({ score: sc, beam, token: t });
      if (cand.length === keep) {
        cand.sort((a, b) => b.score - a.score);
        floor = cand[keep - 1].score;
      }
    } else {
      let k = keep - 1;
      while (k > 0 && cand[k - 1].score < sc) k--;
      cand.splice(k, 0, { score: sc, beam, token: t });
      cand.pop();
      floor = cand[keep - 1].score;
    }
  }
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
