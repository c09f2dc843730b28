/**
 * A sliding window of (hypothesis, reference) pairs with an incrementally kept corpus score: BLEU as sacreBLEU's
 * `corpus_bleu` defaults compute it (13a tokenisation, exp smoothing, no effective order) or chrF as its `CHRF()`
 * defaults do (chrF2: 6 character orders, no word orders, whitespace removed, effective-order averaging).
 *
 * Each pair's sufficient statistics are kept in a ring, and their sums are updated as pairs enter and leave, so
 * `score()` costs the same whatever the window's size. The statistics are integers, so the sums are exact and the
 * score is the very double that `corpusBleu` / `corpusChrf` give for the pairs held.
 */
import { bleuFromStats, bleuStats } from '../bleu';
import { ChimeraError } from '../errors';
import { chrfFromStats, chrfStats } from './chrf';

export type WindowMetric = 'bleu' | 'chrf';

const CHRF_ORDER = 6; // chrF2's character orders, no word orders
const BLEU_ORDER = 4;

/** A pair's statistics as one flat vector: BLEU [sysLen, refLen, correct 1..4, total 1..4]; chrF [hyp 1..6, ref 1..6, match 1..6]. */
type Vec = Float64Array;

function vecLength(metric: WindowMetric): number {
  return metric === 'bleu' ? 2 + 2 * BLEU_ORDER : 3 * CHRF_ORDER;
}

function pairStats(metric: WindowMetric, hyp: string, ref: string): Vec {
  const v = new Float64Array(vecLength(metric));
  if (metric === 'bleu') {
    const s = bleuStats(hyp, [ref]);
    v[0] = s.sysLen;
    v[1] = s.refLen;
    for (let n = 0; n < BLEU_ORDER; n++) {
      v[2 + n] = s.correct[n];
      v[2 + BLEU_ORDER + n] = s.total[n];
    }
  } else {
    const s = chrfStats(hyp, [ref]);
    for (let n = 0; n < CHRF_ORDER; n++) {
      v[n] = s.hyp[n];
      v[CHRF_ORDER + n] = s.ref[n];
      v[2 * CHRF_ORDER + n] = s.match[n];
    }
  }
  return v;
}

function scoreOf(metric: WindowMetric, v: Vec): number {
  if (metric === 'bleu') {
    const a = Array.from(v);
    return bleuFromStats({
      sysLen: a[0],
      refLen: a[1],
      correct: a.slice(2, 2 + BLEU_ORDER),
      total: a.slice(2 + BLEU_ORDER, 2 + 2 * BLEU_ORDER),
    }).score;
  }
  const a = Array.from(v);
  return chrfFromStats({
    hyp: a.slice(0, CHRF_ORDER),
    ref: a.slice(CHRF_ORDER, 2 * CHRF_ORDER),
    match: a.slice(2 * CHRF_ORDER),
  }).score;
}

export class ScoreWindow {
  /** The most pairs held at once. */
  readonly size: number;
  readonly metric: WindowMetric;
  private readonly ring: (Vec | undefined)[];
  /** Index of the oldest pair held. */
  private head = 0;
  private held = 0;
  private added = 0;
  private readonly sum: Vec;
  private cached: number | null = null;

  /** `size` >= 1 pairs; `metric` 'bleu' or 'chrf' (E_ARG otherwise). */
  constructor(metric: WindowMetric, size: number) {
    if (metric !== 'bleu' && metric !== 'chrf') {
      throw new ChimeraError('E_ARG', `metric must be 'bleu' or 'chrf', got ${String(metric)}`);
    }
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 1 || size > 1e7) {
      throw new ChimeraError('E_ARG', `size must be an integer in [1, 10000000], got ${String(size)}`);
    }
    this.metric = metric;
    this.size = size;
    this.ring = new Array<Vec | undefined>(size);
    this.sum = new Float64Array(vecLength(metric));
  }

  /**
   * Adds a pair, evicting the oldest one when `size` pairs are held. `ref` is the reference (for the guard, the
   * control's translation). Invalid input is an E_ARG error that leaves the window unchanged; with BLEU, as in
   * `corpusBleu`, an empty-string reference is such an error.
   */
  add(hyp: string, ref: string): void {
    if (typeof hyp !== 'string') throw new ChimeraError('E_ARG', `hyp must be a string, got ${hyp === null ? 'null' : typeof hyp}`);
    if (typeof ref !== 'string') throw new ChimeraError('E_ARG', `ref must be a string, got ${ref === null ? 'null' : typeof ref}`);
    const v = pairStats(this.metric, hyp, ref);
    const sum = this.sum;
    if (this.held === this.size) {
      const old = this.ring[this.head] as Vec;
      for (let i = 0; i < sum.length; i++) sum[i] -= old[i];
      this.ring[this.head] = v;
      this.head = (this.head + 1) % this.size;
    } else {
      this.ring[(this.head + this.held) % this.size] = v;
      this.held++;
    }
    for (let i = 0; i < sum.length; i++) sum[i] += v[i];
    this.added++;
    this.cached = null;
  }

  /** Pairs held now (at most `size`). */
  get count(): number {
    return this.held;
  }

  /** Pairs ever added (clear() does not reset it, so it can back a monotonic counter). */
  get samples(): number {
    return this.added;
  }

  /** Whether `size` pairs are held. */
  get full(): boolean {
    return this.held === this.size;
  }

  /**
   * The corpus score (0..100) of the pairs held, exactly `corpusBleu` / `corpusChrf` over them in their order;
   * null until the window is full (first, or again after clear()). Once full it stays full.
   */
  score(): number | null {
    if (this.held < this.size) return null;
    if (this.cached === null) this.cached = scoreOf(this.metric, this.sum);
    return this.cached;
  }

  /** Drops every pair held: count 0 and score() null until the window fills again. `samples` is kept. */
  clear(): void {
    this.ring.fill(undefined);
    this.head = 0;
    this.held = 0;
    this.sum.fill(0);
    this.cached = null;
  }
}
