/**
 * BLEU as sacreBLEU 2.x computes it: corpus BLEU (`corpus_bleu` / `BLEU().corpus_score`) and sentence BLEU
 * (`sentence_bleu`, effective order on), with the 13a / none / intl / char tokenizers, the exp / floor / add-k /
 * none smoothings, any number of reference streams, and sacreBLEU's signature and text output line.
 *
 * Where Python and JavaScript differ, the Python behaviour is reproduced: whitespace for `rstrip()` and
 * `split()` is Python's `str.isspace()` set, characters are code points, and numbers are formatted with
 * Python's `format(x, '.Nf')` (round half to even on the exact binary value, where `toFixed` rounds half up).
 */
import { ChimeraError } from './errors';

/** The sacreBLEU release whose definition and output format this module reproduces (its signature's `version`). */
export const SACREBLEU_VERSION = '2.4.2';

export type BleuTokenizer = '13a' | 'none' | 'intl' | 'char';
export type BleuSmoothing = 'exp' | 'floor' | 'add-k' | 'none';

export interface BleuOptions {
  /** Default '13a'. */
  tokenize?: BleuTokenizer;
  /** Default 'exp'. */
  smooth?: BleuSmoothing;
  /** For 'floor' (default 0.1) and 'add-k' (default 1); ignored by the others, as in sacreBLEU. */
  smoothValue?: number;
  /** Lowercase hypotheses and references first. Default false. */
  lowercase?: boolean;
  /** Average only over the orders that have hypothesis n-grams. Default false for corpus BLEU, true for sentence BLEU. */
  effectiveOrder?: boolean;
}

export interface BleuScore {
  /** BLEU in [0, 100], full precision. */
  score: number;
  /** Matched (clipped) n-gram counts for orders 1..4. With 'add-k', orders 2..4 include the added k, as sacreBLEU's do. */
  counts: number[];
  /** Hypothesis n-gram counts for orders 1..4 (with 'add-k', orders 2..4 include k). */
  totals: number[];
  /** Modified n-gram precisions in percent, orders 1..4 (smoothed where the method says so). */
  precisions: number[];
  /** Brevity penalty. */
  bp: number;
  sysLen: number;
  refLen: number;
  /** sysLen / refLen (0 when refLen is 0). */
  ratio: number;
  /** e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.4.2`. */
  signature: string;
  /**
   * sacreBLEU's text line: `BLEU|<signature> = 36.5 64.8/42.4/29.8/21.8 (BP = 1.000 ratio = 1.034 hyp_len = 2540
   * ref_len = 2457)`. `width` is the score's decimals: 1 as the sacreBLEU command line prints (its `-w` default);
   * Python's `str(score)` uses 2. Precisions always have 1 decimal, BP and ratio 3.
   */
  toString(width?: number): string;
}

const MAX_ORDER = 4;
const SMOOTH_DEFAULTS: Record<BleuSmoothing, number | null> = { exp: null, floor: 0.1, 'add-k': 1, none: null };
const TOKENIZERS: readonly BleuTokenizer[] = ['13a', 'none', 'intl', 'char'];

// ------------------------------------------------------------------------------------------ Python string semantics

/** Python's str.isspace() characters. */
const PY_WS = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_WS_RUN = new RegExp(`[${PY_WS}]+`, 'u');
const PY_TRAILING_WS = new RegExp(`[${PY_WS}]+$`, 'u');

/** Python's str.split() with no arguments. */
export function pySplit(s: string): string[] {
  return s.split(PY_WS_RUN).filter((t) => t.length > 0);
}

function pyRstrip(s: string): string {
  return s.replace(PY_TRAILING_WS, '');
}

/**
 * Python's `format(x, f'.{digits}f')` for finite x: the exact binary value rounded to `digits` decimals, ties to
 * even. A tie needs x to sit exactly half-way, which puts x above 10^-(digits+1); such doubles have at most ~60
 * significant fraction digits, so toFixed(100) shows their exact expansion.
 */
export function pyFixed(x: number, digits: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  const neg = x < 0 || Object.is(x, -0);
  const ax = Math.abs(x);
  if (ax >= 1e21) return (neg ? '-' : '') + BigInt(ax).toString() + (digits > 0 ? '.' + '0'.repeat(digits) : '');
  const full = ax.toFixed(100);
  const dot = full.indexOf('.');
  const intPart = full.slice(0, dot);
  const frac = full.slice(dot + 1);
  const kept = intPart + frac.slice(0, digits);
  const rest = frac.slice(digits);
  let up: boolean;
  if (rest[0] > '5') up = true;
  else if (rest[0] < '5') up = false;
  else if (/[1-9]/.test(rest.slice(1))) up = true;
  else up = (Number(kept[kept.length - 1]) & 1) === 1; // exact tie: to even
  let n = BigInt(kept);
  if (up) n += 1n;
  let s = n.toString().padStart(digits + 1, '0');
  if (digits > 0) s = s.slice(0, s.length - digits) + '.' + s.slice(s.length - digits);
  return (neg ? '-' : '') + s;
}

// ------------------------------------------------------------------------------------------------ tokenizers

// mteval-v13a: the character class is sacreBLEU's [\{-\~\[-\` -\&\(-\+\:-\@\/] written as code-point ranges.
const RE_13A: ReadonlyArray<[RegExp, string]> = [
  [/([\x7B-\x7E\x5B-\x60\x20-\x26\x28-\x2B\x3A-\x40\x2F])/gu, ' $1 '],
  [/([^0-9])([.,])/gu, '$1 $2 '], // period and comma unless preceded by a digit
  [/([.,])([^0-9])/gu, ' $1 $2'], // period and comma unless followed by a digit
  [/([0-9])(-)/gu, '$1 $2 '], // dash after a digit
];

// mteval-v14 international: punctuation unless between digits, every symbol.
const RE_INTL: ReadonlyArray<[RegExp, string]> = [
  [/(\P{N})(\p{P})/gu, '$1 $2 '],
  [/(\p{P})(\P{N})/gu, ' $1 $2'],
  [/(\p{S})/gu, ' $1 '],
];

function applyRules(line: string, rules: ReadonlyArray<[RegExp, string]>): string {
  for (const [re, repl] of rules) line = line.replace(re, repl);
  return pySplit(line).join(' ');
}

function tokenize13a(line: string): string {
  line = line.split('<skipped>').join('').split('-\n').join('').split('\n').join(' ');
  if (line.includes('&')) {
    line = line.split('&quot;').join('"').split('&amp;').join('&').split('&lt;').join('<').split('&gt;').join('>');
  }
  return applyRules(` ${line} `, RE_13A);
}

function tokenizeLine(line: string, tok: BleuTokenizer): string {
  switch (tok) {
    case '13a':
      return tokenize13a(line);
    case 'intl':
      return applyRules(line, RE_INTL);
    case 'char':
      return Array.from(line).join(' ');
    case 'none':
      return line;
  }
}

// ------------------------------------------------------------------------------------------------ statistics

interface Resolved {
  tokenize: BleuTokenizer;
  smooth: BleuSmoothing;
  smoothValue: number | null;
  lowercase: boolean;
  effectiveOrder: boolean;
}

function resolve(opts: BleuOptions | undefined, effectiveDefault: boolean): Resolved {
  if (opts !== undefined && (opts === null || typeof opts !== 'object')) {
    throw new ChimeraError('E_ARG', 'BLEU options must be an object');
  }
  const o = opts ?? {};
  const tokenize = o.tokenize ?? '13a';
  if (!TOKENIZERS.includes(tokenize)) {
    throw new ChimeraError('E_ARG', `tokenize must be one of ${TOKENIZERS.join(', ')}, got ${String(tokenize)}`);
  }
  const smooth = o.smooth ?? 'exp';
  if (!Object.prototype.hasOwnProperty.call(SMOOTH_DEFAULTS, smooth)) {
    throw new ChimeraError('E_ARG', `smooth must be one of exp, floor, add-k, none, got ${String(smooth)}`);
  }
  if (o.smoothValue !== undefined && (typeof o.smoothValue !== 'number' || !Number.isFinite(o.smoothValue) || o.smoothValue < 0)) {
    throw new ChimeraError('E_ARG', `smoothValue must be a finite non-negative number, got ${String(o.smoothValue)}`);
  }
  for (const k of ['lowercase', 'effectiveOrder'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw new ChimeraError('E_ARG', `${k} must be a boolean`);
  }
  return {
    tokenize,
    smooth,
    smoothValue: o.smoothValue ?? SMOOTH_DEFAULTS[smooth],
    lowercase: o.lowercase ?? false,
    effectiveOrder: o.effectiveOrder ?? effectiveDefault,
  };
}

function preprocess(line: string, r: Resolved): string[] {
  if (r.lowercase) line = line.toLowerCase();
  return pySplit(tokenizeLine(pyRstrip(line), r.tokenize));
}

/** n-gram counts of orders 1..4; a key is the n tokens joined by spaces (tokens hold no whitespace). */
function ngramCounts(tokens: string[]): Map<string, number>[] {
  const maps: Map<string, number>[] = [];
  for (let n = 1; n <= MAX_ORDER; n++) {
    const m = new Map<string, number>();
    for (let i = 0; i + n <= tokens.length; i++) {
      const key = tokens.slice(i, i + n).join(' ');
      m.set(key, (m.get(key) ?? 0) + 1);
    }
    maps.push(m);
  }
  return maps;
}

interface Stats {
  sysLen: number;
  refLen: number;
  correct: number[];
  total: number[];
}

/** Closest reference length to the hypothesis length; ties go to the shorter reference. */
function closestRefLen(hypLen: number, refLens: number[]): number {
  let bestDiff = -1;
  let best = -1;
  for (const len of refLens) {
    const diff = Math.abs(hypLen - len);
    if (bestDiff === -1 || diff < bestDiff) {
      bestDiff = diff;
      best = len;
    } else if (diff === bestDiff && len < best) {
      best = len;
    }
  }
  return best;
}

/**
 * Adds one sentence's statistics to `acc` and returns how many references it had. As in sacreBLEU, empty-string
 * references are left out (a stream may lack a reference for some sentences), but every sentence needs one.
 */
function segmentStats(hyp: string, allRefs: string[], r: Resolved, acc: Stats, index: number): number {
  const refs = allRefs.filter((x) => x !== '');
  if (refs.length === 0) throw new ChimeraError('E_ARG', `sentence ${index} has only empty references`);
  // Clip against the maximum count of each n-gram over the references.
  const refMax: Map<string, number>[] = [];
  for (let n = 0; n < MAX_ORDER; n++) refMax.push(new Map());
  const refLens: number[] = [];
  for (const ref of refs) {
    const toks = preprocess(ref, r);
    refLens.push(toks.length);
    ngramCounts(toks).forEach((m, n) => {
      for (const [k, c] of m) if (c > (refMax[n].get(k) ?? 0)) refMax[n].set(k, c);
    });
  }
  const hypToks = preprocess(hyp, r);
  acc.sysLen += hypToks.length;
  acc.refLen += closestRefLen(hypToks.length, refLens);
  ngramCounts(hypToks).forEach((m, n) => {
    for (const [k, c] of m) {
      acc.total[n] += c;
      const rc = refMax[n].get(k);
      if (rc !== undefined) acc.correct[n] += Math.min(c, rc);
    }
  });
  return refs.length;
}

/** sacreBLEU's my_log: a huge negative number stands in for log(0). */
function myLog(x: number): number {
  return x === 0 ? -9999999999 : Math.log(x);
}

function computeBleu(st: Stats, r: Resolved, nrefs: string): BleuScore {
  const correct = st.correct.slice();
  const total = st.total.slice();
  const { sysLen, refLen } = st;
  const bp = sysLen < refLen ? (sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0) : 1;
  const precisions = new Array<number>(MAX_ORDER).fill(0);
  let score = 0;
  if (correct.some((c) => c !== 0)) {
    let smoothMteval = 1;
    let effOrder = MAX_ORDER;
    const k = r.smoothValue ?? 0;
    for (let n = 1; n <= MAX_ORDER; n++) {
      if (r.smooth === 'add-k' && n > 1) {
        correct[n - 1] += k;
        total[n - 1] += k;
      }
      if (total[n - 1] === 0) break;
      if (r.effectiveOrder) effOrder = n;
      if (correct[n - 1] === 0) {
        if (r.smooth === 'exp') {
          smoothMteval *= 2;
          precisions[n - 1] = 100 / (smoothMteval * total[n - 1]);
        } else if (r.smooth === 'floor') {
          precisions[n - 1] = (100 * k) / total[n - 1];
        }
      } else {
        precisions[n - 1] = (100 * correct[n - 1]) / total[n - 1];
      }
    }
    let logSum = 0;
    for (let n = 0; n < effOrder; n++) logSum += myLog(precisions[n]);
    score = bp * Math.exp(logSum / effOrder);
  }
  const ratio = refLen ? sysLen / refLen : 0;
  let smoothStr: string = r.smooth;
  if (SMOOTH_DEFAULTS[r.smooth] !== null) smoothStr += `[${pyFixed(r.smoothValue as number, 2)}]`;
  const signature =
    `nrefs:${nrefs}|case:${r.lowercase ? 'lc' : 'mixed'}|eff:${r.effectiveOrder ? 'yes' : 'no'}` +
    `|tok:${r.tokenize}|smooth:${smoothStr}|version:${SACREBLEU_VERSION}`;
  return {
    score,
    counts: correct,
    totals: total,
    precisions,
    bp,
    sysLen,
    refLen,
    ratio,
    signature,
    toString(width = 1): string {
      if (!Number.isInteger(width) || width < 0 || width > 20) {
        throw new ChimeraError('E_ARG', `width must be an integer in [0, 20], got ${String(width)}`);
      }
      const prec = precisions.map((p) => pyFixed(p, 1)).join('/');
      return (
        `BLEU|${signature} = ${pyFixed(score, width)} ${prec} (BP = ${pyFixed(bp, 3)} ` +
        `ratio = ${pyFixed(ratio, 3)} hyp_len = ${sysLen} ref_len = ${refLen})`
      );
    },
  };
}

function checkStrings(name: string, v: unknown): string[] {
  if (!Array.isArray(v)) throw new ChimeraError('E_ARG', `${name} must be an array of strings`);
  v.forEach((s, i) => {
    if (typeof s !== 'string') throw new ChimeraError('E_ARG', `${name}[${i}] must be a string, got ${s === null ? 'null' : typeof s}`);
  });
  return v as string[];
}

// ------------------------------------------------------------------------------------------------ API

/**
 * Corpus BLEU of `hyps` against reference streams: `refs[stream][i]` is stream `stream`'s reference for
 * `hyps[i]`; every stream must have one string per hypothesis. An empty string means "no reference in this
 * stream for this sentence" (sacreBLEU's rule); when sentences end up with different numbers of references the
 * signature says `nrefs:var`.
 */
export function corpusBleu(hyps: string[], refs: string[][], opts?: BleuOptions): BleuScore {
  const r = resolve(opts, false);
  checkStrings('hyps', hyps);
  if (hyps.length === 0) throw new ChimeraError('E_ARG', 'hyps is empty: BLEU needs at least one sentence');
  if (!Array.isArray(refs) || refs.length === 0) {
    throw new ChimeraError('E_ARG', 'refs must be a non-empty array of reference streams (refs[stream][sentence])');
  }
  refs.forEach((stream, s) => {
    checkStrings(`refs[${s}]`, stream);
    if (stream.length !== hyps.length) {
      throw new ChimeraError('E_ARG', `reference stream ${s} has ${stream.length} lines, the hypotheses have ${hyps.length}`);
    }
  });
  const st: Stats = { sysLen: 0, refLen: 0, correct: [0, 0, 0, 0], total: [0, 0, 0, 0] };
  const nrefs = new Set<number>();
  for (let i = 0; i < hyps.length; i++) {
    nrefs.add(
      segmentStats(
        hyps[i],
        refs.map((stream) => stream[i]),
        r,
        st,
        i,
      ),
    );
  }
  return computeBleu(st, r, nrefs.size === 1 ? String([...nrefs][0]) : 'var');
}

/** Sentence BLEU of one hypothesis against its references (sacreBLEU's `sentence_bleu`: effective order on). */
export function sentenceBleu(hyp: string, refs: string[], opts?: BleuOptions): BleuScore {
  const r = resolve(opts, true);
  if (typeof hyp !== 'string') throw new ChimeraError('E_ARG', `hyp must be a string, got ${hyp === null ? 'null' : typeof hyp}`);
  checkStrings('refs', refs);
  if (refs.length === 0) throw new ChimeraError('E_ARG', 'refs must hold at least one reference');
  const st: Stats = { sysLen: 0, refLen: 0, correct: [0, 0, 0, 0], total: [0, 0, 0, 0] };
  const n = segmentStats(hyp, refs, r, st, 0);
  return computeBleu(st, r, String(n));
}

/**
 * One sentence's sufficient statistics for corpus BLEU: summing them over sentences (field by field) and passing
 * the sum to {@link bleuFromStats} gives exactly what {@link corpusBleu} gives for those sentences.
 */
export interface BleuStats {
  /** Hypothesis length in tokens. */
  sysLen: number;
  /** The closest reference length (ties to the shorter). */
  refLen: number;
  /** Clipped n-gram matches, orders 1..4. */
  correct: number[];
  /** Hypothesis n-gram counts, orders 1..4. */
  total: number[];
}

/**
 * The BLEU statistics of one hypothesis against its references, tokenised and cased as `opts` says (the smoothing
 * and effective-order options do not enter the statistics). Empty-string references are left out, as in
 * {@link corpusBleu}; a sentence with no other reference is an E_ARG error.
 */
export function bleuStats(hyp: string, refs: string[], opts?: BleuOptions): BleuStats {
  const r = resolve(opts, false);
  if (typeof hyp !== 'string') throw new ChimeraError('E_ARG', `hyp must be a string, got ${hyp === null ? 'null' : typeof hyp}`);
  checkStrings('refs', refs);
  if (refs.length === 0) throw new ChimeraError('E_ARG', 'refs must hold at least one reference');
  const st: Stats = { sysLen: 0, refLen: 0, correct: [0, 0, 0, 0], total: [0, 0, 0, 0] };
  segmentStats(hyp, refs, r, st, 0);
  return st;
}

/**
 * BLEU from (summed) statistics with `opts`, corpus defaults (effective order off unless asked for). `nrefs` only
 * fills the signature: the references per sentence, or 'var' when that varied.
 */
export function bleuFromStats(stats: BleuStats, opts?: BleuOptions, nrefs: number | 'var' = 1): BleuScore {
  const r = resolve(opts, false);
  const okCount = (x: unknown) => typeof x === 'number' && Number.isFinite(x) && x >= 0;
  const okArray = (a: unknown) => Array.isArray(a) && a.length === MAX_ORDER && a.every(okCount);
  if (!stats || typeof stats !== 'object' || !okCount(stats.sysLen) || !okCount(stats.refLen) || !okArray(stats.correct) || !okArray(stats.total)) {
    throw new ChimeraError('E_ARG', 'stats must be { sysLen, refLen, correct[4], total[4] } of non-negative numbers');
  }
  if (nrefs !== 'var' && !(Number.isInteger(nrefs) && nrefs >= 1)) {
    throw new ChimeraError('E_ARG', `nrefs must be a positive integer or 'var', got ${String(nrefs)}`);
  }
  const st: Stats = { sysLen: stats.sysLen, refLen: stats.refLen, correct: stats.correct.slice(), total: stats.total.slice() };
  return computeBleu(st, r, String(nrefs));
}

/** The tokenizer alone (after the optional lowercasing and sacreBLEU's rstrip), for inspection and tests. */
export function bleuTokenize(line: string, tokenize: BleuTokenizer = '13a', lowercase = false): string {
  const r = resolve({ tokenize, lowercase }, false);
  if (typeof line !== 'string') throw new ChimeraError('E_ARG', 'line must be a string');
  return preprocess(line, r).join(' ');
}
