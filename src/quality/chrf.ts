/**
 * chrF (Popović 2015) and chrF++ (Popović 2017) as sacreBLEU 2.4.2 computes them: `CHRF(char_order, word_order,
 * beta, lowercase, whitespace, eps_smoothing)`, its `corpus_score` and `sentence_score`, its signature and its
 * text line.
 *
 * The definition, as sacreBLEU applies it:
 * - Character n-grams of orders 1..charOrder, counted over the sentence with all (Python `str.isspace()`)
 *   whitespace removed, unless `whitespace` keeps it. Characters are code points.
 * - For chrF++ (wordOrder > 0), word n-grams of orders 1..wordOrder over a light tokenisation: the sentence is
 *   split on whitespace, and a word longer than one character loses one ASCII punctuation character from its end
 *   or, failing that, from its start, which becomes a word of its own (so `(hi)` gives `(hi` and `)`).
 * - Per order: the hypothesis count, the reference count and the clipped matches. The hypothesis count is 0 when
 *   the reference has no n-gram of that order.
 * - The score (default, `eff:yes`): precision and recall are averaged over the orders where both the hypothesis and
 *   the reference have n-grams (the "effective order"), and chrF is the F-beta of the two averages, times 100; 0
 *   when no order counts or both averages are 0. With `epsSmoothing` (`eff:no`, chrF++.py / NLTK / Moses style),
 *   each order's F-beta is taken with 1e-16 standing in for an undefined precision, recall or F, and the F
 *   scores are averaged over all orders.
 * - Several references: each sentence uses the statistics of the reference with the highest sentence-level score
 *   (the first one on a tie). The corpus score is the score of the statistics summed over sentences.
 *
 * As in sacreBLEU 2.4.2, an empty-string reference is a real (empty) reference; only a `null` reference means "no
 * reference in this stream for this sentence", and a varying count makes the signature say `nrefs:var`.
 */
import { SACREBLEU_VERSION, pyFixed, pySplit } from '../bleu';
import { ChimeraError } from '../errors';

export interface ChrfOptions {
  /** Character n-gram order. Default 6. */
  charOrder?: number;
  /** Word n-gram order: 0 (default) is chrF, 2 is chrF++. */
  wordOrder?: number;
  /** Recall is weighted beta times as much as precision. Default 2. */
  beta?: number;
  /** Lowercase hypotheses and references first. Default false. */
  lowercase?: boolean;
  /** Keep whitespace in character n-grams. Default false. */
  whitespace?: boolean;
  /** chrF++.py-style epsilon smoothing instead of the effective-order average. Default false. */
  epsSmoothing?: boolean;
}

/**
 * Sufficient statistics: for each order (character orders 1..charOrder, then word orders 1..wordOrder), the
 * hypothesis n-gram count, the reference n-gram count and the clipped matches. They add up field by field over
 * sentences; {@link chrfFromStats} of the sum is the corpus score.
 */
export interface ChrfStats {
  hyp: number[];
  ref: number[];
  match: number[];
}

export interface ChrfScore {
  /** chrF in [0, 100], full precision. */
  score: number;
  /** `chrF2`, `chrF2++`: `chrF<beta>` and one `+` per word order, as sacreBLEU names it. */
  name: string;
  charOrder: number;
  wordOrder: number;
  beta: number;
  /** The statistics the score was computed from (summed over sentences for a corpus). */
  stats: ChrfStats;
  /** e.g. `nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.4.2`. */
  signature: string;
  /** What Python's `str(score)` prints: `chrF2 = 59.73` (`width` decimals, default 2). */
  toString(width?: number): string;
  /** The sacreBLEU command line's line: `chrF2|<signature> = 59.7` (`width` decimals, default 1 as `-w`). */
  format(width?: number): string;
}

interface Resolved {
  charOrder: number;
  wordOrder: number;
  beta: number;
  lowercase: boolean;
  whitespace: boolean;
  epsSmoothing: boolean;
}

/** Python's string.punctuation: the characters chrF++'s word splitting separates. */
const PUNCTS = new Set(Array.from('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'));
const EPS = 1e-16;

function resolve(opts: ChrfOptions | undefined): Resolved {
  if (opts !== undefined && (opts === null || typeof opts !== 'object')) {
    throw new ChimeraError('E_ARG', 'chrF options must be an object');
  }
  const o = opts ?? {};
  const charOrder = o.charOrder ?? 6;
  const wordOrder = o.wordOrder ?? 0;
  const beta = o.beta ?? 2;
  if (!Number.isInteger(charOrder) || charOrder < 1 || charOrder > 100) {
    throw new ChimeraError('E_ARG', `charOrder must be an integer in [1, 100], got ${String(charOrder)}`);
  }
  if (!Number.isInteger(wordOrder) || wordOrder < 0 || wordOrder > 100) {
    throw new ChimeraError('E_ARG', `wordOrder must be an integer in [0, 100], got ${String(wordOrder)}`);
  }
  if (!Number.isInteger(beta) || beta < 0 || beta > 1000) {
    throw new ChimeraError('E_ARG', `beta must be an integer in [0, 1000], got ${String(beta)}`);
  }
  for (const k of ['lowercase', 'whitespace', 'epsSmoothing'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw new ChimeraError('E_ARG', `${k} must be a boolean`);
  }
  return {
    charOrder,
    wordOrder,
    beta,
    lowercase: o.lowercase ?? false,
    whitespace: o.whitespace ?? false,
    epsSmoothing: o.epsSmoothing ?? false,
  };
}

// ------------------------------------------------------------------------------------------------ n-grams

type Counts = Map<string, number>;

function count(items: string[], n: number): Counts {
  const m: Counts = new Map();
  for (let i = 0; i + n <= items.length; i++) {
    const key = n === 1 ? items[i] : items.slice(i, i + n).join(' '); // words hold no whitespace
    m.set(key, (m.get(key) ?? 0) + 1);
  }
  return m;
}

/** chrF++'s word splitting (see the module comment). Lengths are in code points, as Python's. */
function splitWords(sent: string): string[] {
  const out: string[] = [];
  for (const w of pySplit(sent)) {
    const cps = Array.from(w);
    if (cps.length === 1) {
      out.push(w);
    } else if (PUNCTS.has(cps[cps.length - 1])) {
      out.push(cps.slice(0, -1).join(''), cps[cps.length - 1]);
    } else if (PUNCTS.has(cps[0])) {
      out.push(cps[0], cps.slice(1).join(''));
    } else {
      out.push(w);
    }
  }
  return out;
}

/** The n-gram counts of every order: character orders first, then word orders. */
function extract(sent: string, r: Resolved): Counts[] {
  if (r.lowercase) sent = sent.toLowerCase();
  const chars = Array.from(r.whitespace ? sent : pySplit(sent).join(''));
  const all: Counts[] = [];
  // Character n-grams are joined without a separator: within one order, equal keys are equal n-grams.
  for (let n = 1; n <= r.charOrder; n++) {
    const m: Counts = new Map();
    for (let i = 0; i + n <= chars.length; i++) {
      const key = n === 1 ? chars[i] : chars.slice(i, i + n).join('');
      m.set(key, (m.get(key) ?? 0) + 1);
    }
    all.push(m);
  }
  if (r.wordOrder > 0) {
    const words = splitWords(sent);
    for (let n = 1; n <= r.wordOrder; n++) all.push(count(words, n));
  }
  return all;
}

function emptyStats(order: number): ChrfStats {
  return { hyp: new Array<number>(order).fill(0), ref: new Array<number>(order).fill(0), match: new Array<number>(order).fill(0) };
}

function matchStats(hyp: Counts[], ref: Counts[]): ChrfStats {
  const st = emptyStats(hyp.length);
  for (let i = 0; i < hyp.length; i++) {
    let hypCount = 0;
    let matches = 0;
    const rm = ref[i];
    for (const [k, c] of hyp[i]) {
      hypCount += c;
      const rc = rm.get(k);
      if (rc !== undefined) matches += Math.min(c, rc);
    }
    let refCount = 0;
    for (const c of rm.values()) refCount += c;
    // No hypothesis n-grams are counted for an order the reference has none of.
    st.hyp[i] = rm.size > 0 ? hypCount : 0;
    st.ref[i] = refCount;
    st.match[i] = matches;
  }
  return st;
}

/** The chrF score (0..100) of statistics; the operations are in sacreBLEU's order, so the doubles agree. */
function fScore(st: ChrfStats, r: Resolved): number {
  const order = r.charOrder + r.wordOrder;
  const factor = r.beta ** 2;
  let score = 0;
  let avgPrec = 0;
  let avgRec = 0;
  let effective = 0;
  for (let i = 0; i < order; i++) {
    const nHyp = st.hyp[i];
    const nRef = st.ref[i];
    const nMatch = st.match[i];
    const prec = nHyp > 0 ? nMatch / nHyp : EPS;
    const rec = nRef > 0 ? nMatch / nRef : EPS;
    const denom = factor * prec + rec;
    score += denom > 0 ? ((1 + factor) * prec * rec) / denom : EPS;
    if (nHyp > 0 && nRef > 0) {
      avgPrec += prec;
      avgRec += rec;
      effective += 1;
    }
  }
  if (r.epsSmoothing) return (100 * score) / order;
  if (effective === 0) {
    avgPrec = 0;
    avgRec = 0;
  } else {
    avgPrec /= effective;
    avgRec /= effective;
  }
  if (avgPrec + avgRec === 0) return 0;
  return 100 * (((1 + factor) * avgPrec * avgRec) / (factor * avgPrec + avgRec));
}

function checkString(name: string, v: unknown): string {
  if (typeof v !== 'string') throw new ChimeraError('E_ARG', `${name} must be a string, got ${v === null ? 'null' : typeof v}`);
  return v;
}

/** Statistics of one (pre-extracted) hypothesis against its references: the best-scoring reference's. */
function bestStats(hypNgrams: Counts[], refs: Counts[][], r: Resolved): ChrfStats {
  let best: ChrfStats | null = null;
  let bestF = -1;
  for (const ref of refs) {
    const st = matchStats(hypNgrams, ref);
    const f = fScore(st, r);
    if (f > bestF) {
      bestF = f;
      best = st;
    }
  }
  return best as ChrfStats;
}

function presentRefs(name: string, refs: ReadonlyArray<string | null>): string[] {
  const out: string[] = [];
  refs.forEach((x, i) => {
    if (x === null) return;
    out.push(checkString(`${name}[${i}]`, x));
  });
  if (out.length === 0) throw new ChimeraError('E_ARG', `${name} has no reference (all are null)`);
  return out;
}

function makeScore(stats: ChrfStats, r: Resolved, nrefs: number | 'var'): ChrfScore {
  const score = fScore(stats, r);
  const name = `chrF${r.beta}` + '+'.repeat(r.wordOrder);
  const signature =
    `nrefs:${nrefs}|case:${r.lowercase ? 'lc' : 'mixed'}|eff:${r.epsSmoothing ? 'no' : 'yes'}` +
    `|nc:${r.charOrder}|nw:${r.wordOrder}|space:${r.whitespace ? 'yes' : 'no'}|version:${SACREBLEU_VERSION}`;
  const checkWidth = (width: number) => {
    if (!Number.isInteger(width) || width < 0 || width > 20) {
      throw new ChimeraError('E_ARG', `width must be an integer in [0, 20], got ${String(width)}`);
    }
  };
  return {
    score,
    name,
    charOrder: r.charOrder,
    wordOrder: r.wordOrder,
    beta: r.beta,
    stats: { hyp: stats.hyp.slice(), ref: stats.ref.slice(), match: stats.match.slice() },
    signature,
    toString(width = 2): string {
      checkWidth(width);
      return `${name} = ${pyFixed(score, width)}`;
    },
    format(width = 1): string {
      checkWidth(width);
      return `${name}|${signature} = ${pyFixed(score, width)}`;
    },
  };
}

// ------------------------------------------------------------------------------------------------ API

/**
 * The chrF statistics of one hypothesis against its references (those of the reference that scores best; `null`
 * entries are absent references). Sum them over sentences and pass the sum to {@link chrfFromStats}.
 */
export function chrfStats(hyp: string, refs: ReadonlyArray<string | null>, opts?: ChrfOptions): ChrfStats {
  const r = resolve(opts);
  checkString('hyp', hyp);
  if (!Array.isArray(refs)) throw new ChimeraError('E_ARG', 'refs must be an array of strings');
  const present = presentRefs('refs', refs);
  return bestStats(
    extract(hyp, r),
    present.map((x) => extract(x, r)),
    r,
  );
}

/** chrF of (summed) statistics. `nrefs` only fills the signature: references per sentence, or 'var'. */
export function chrfFromStats(stats: ChrfStats, opts?: ChrfOptions, nrefs: number | 'var' = 1): ChrfScore {
  const r = resolve(opts);
  const order = r.charOrder + r.wordOrder;
  const ok = (a: unknown) =>
    Array.isArray(a) && a.length === order && a.every((x) => typeof x === 'number' && Number.isFinite(x) && x >= 0);
  if (!stats || typeof stats !== 'object' || !ok(stats.hyp) || !ok(stats.ref) || !ok(stats.match)) {
    throw new ChimeraError('E_ARG', `stats must be { hyp, ref, match }, each ${order} non-negative numbers (char orders, then word orders)`);
  }
  if (nrefs !== 'var' && !(Number.isInteger(nrefs) && nrefs >= 1)) {
    throw new ChimeraError('E_ARG', `nrefs must be a positive integer or 'var', got ${String(nrefs)}`);
  }
  return makeScore(stats, r, nrefs);
}

/**
 * Corpus chrF of `hyps` against reference streams: `refs[stream][i]` is stream `stream`'s reference for `hyps[i]`
 * (`null`: none in this stream for that sentence). Every stream must have one entry per hypothesis.
 */
export function corpusChrf(hyps: string[], refs: ReadonlyArray<ReadonlyArray<string | null>>, opts?: ChrfOptions): ChrfScore {
  const r = resolve(opts);
  if (!Array.isArray(hyps)) throw new ChimeraError('E_ARG', 'hyps must be an array of strings');
  hyps.forEach((h, i) => checkString(`hyps[${i}]`, h));
  if (hyps.length === 0) throw new ChimeraError('E_ARG', 'hyps is empty: chrF needs at least one sentence');
  if (!Array.isArray(refs) || refs.length === 0) {
    throw new ChimeraError('E_ARG', 'refs must be a non-empty array of reference streams (refs[stream][sentence])');
  }
  refs.forEach((stream, s) => {
    if (!Array.isArray(stream)) throw new ChimeraError('E_ARG', `refs[${s}] must be an array of strings`);
    if (stream.length !== hyps.length) {
      throw new ChimeraError('E_ARG', `reference stream ${s} has ${stream.length} lines, the hypotheses have ${hyps.length}`);
    }
  });
  const order = r.charOrder + r.wordOrder;
  const sum = emptyStats(order);
  const nrefs = new Set<number>();
  for (let i = 0; i < hyps.length; i++) {
    const present = presentRefs(`sentence ${i}'s refs`, refs.map((stream) => stream[i]));
    nrefs.add(present.length);
    const st = bestStats(
      extract(hyps[i], r),
      present.map((x) => extract(x, r)),
      r,
    );
    for (let k = 0; k < order; k++) {
      sum.hyp[k] += st.hyp[k];
      sum.ref[k] += st.ref[k];
      sum.match[k] += st.match[k];
    }
  }
  return makeScore(sum, r, nrefs.size === 1 ? [...nrefs][0] : 'var');
}

/** Sentence chrF of one hypothesis against its references (sacreBLEU's `sentence_chrf` / `sentence_score`). */
export function sentenceChrf(hyp: string, refs: ReadonlyArray<string | null>, opts?: ChrfOptions): ChrfScore {
  const r = resolve(opts);
  checkString('hyp', hyp);
  if (!Array.isArray(refs) || refs.length === 0) throw new ChimeraError('E_ARG', 'refs must hold at least one reference');
  const present = presentRefs('refs', refs);
  const st = bestStats(
    extract(hyp, r),
    present.map((x) => extract(x, r)),
    r,
  );
  return makeScore(st, r, present.length);
}
