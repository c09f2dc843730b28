/**
 * The sliding quality window: its incrementally kept score must be exactly corpusBleu / corpusChrf (sacreBLEU's
 * corpus defaults) over the pairs it holds, at every step.
 */
import { describe, expect, it } from 'vitest';
import { bleuFromStats, bleuStats, corpusBleu, type BleuStats } from '../src/bleu';
import { ChimeraError } from '../src/errors';
import { corpusChrf } from '../src/quality/chrf';
import { ScoreWindow, type WindowMetric } from '../src/quality/score-window';

function expectArgError(f: () => unknown): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ChimeraError);
  expect((err as ChimeraError).code).toBe('E_ARG');
}

/** A small deterministic generator (LCG), so a failure replays. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

const WORDS = ['the', 'a', 'cat', 'dog', 'sat', 'on', 'mat', 'Haus', 'über', 'ist', 'klein', ',', '.', '!', "it's", '(x)', '3.5', 'Straße', '😀'];

function sentence(r: () => number, minWords = 0): string {
  const n = minWords + Math.floor(r() * 12);
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(WORDS[Math.floor(r() * WORDS.length)]);
  return out.join(r() < 0.2 ? '  ' : ' ');
}

/** A hypothesis near the reference: some words dropped, swapped or replaced. */
function perturb(r: () => number, ref: string): string {
  const w = ref.split(' ').filter((x) => x);
  const out = w.filter(() => r() > 0.15).map((x) => (r() < 0.15 ? WORDS[Math.floor(r() * WORDS.length)] : x));
  if (out.length > 1 && r() < 0.3) [out[0], out[1]] = [out[1], out[0]];
  return out.join(' ');
}

const reference = (metric: WindowMetric, hyps: string[], refs: string[]) =>
  metric === 'bleu' ? corpusBleu(hyps, [refs]).score : corpusChrf(hyps, [refs]).score;

describe('ScoreWindow', () => {
  for (const metric of ['bleu', 'chrf'] as const) {
    for (const size of [1, 7, 50]) {
      it(`${metric}, size ${size}: equals the corpus score of exactly the pairs held, at every step`, () => {
        const r = rng(1000 + size + (metric === 'bleu' ? 0 : 7));
        const w = new ScoreWindow(metric, size);
        const hyps: string[] = [];
        const refs: string[] = [];
        const steps = size * 3 + 40;
        for (let i = 0; i < steps; i++) {
          // BLEU needs a non-empty reference; chrF also gets empty hypotheses and, now and then, empty references.
          const ref = metric === 'chrf' && r() < 0.03 ? '' : sentence(r, metric === 'bleu' ? 1 : 0);
          const hyp = r() < 0.05 ? '' : perturb(r, ref);
          w.add(hyp, ref);
          hyps.push(hyp);
          refs.push(ref);
          expect(w.samples).toBe(i + 1);
          expect(w.count).toBe(Math.min(i + 1, size));
          expect(w.full).toBe(i + 1 >= size);
          const got = w.score();
          if (i + 1 < size) {
            expect(got).toBeNull();
          } else {
            // The statistics are integers, so the sums are exact and the score is the very same double.
            expect(got).toBe(reference(metric, hyps.slice(-size), refs.slice(-size)));
          }
        }
      });
    }
  }

  it('evicts the oldest pair first', () => {
    const w = new ScoreWindow('bleu', 2);
    w.add('the cat sat on the mat', 'the cat sat on the mat'); // 100 on its own
    w.add('x y z', 'a b c'); // 0 on its own
    const both = w.score();
    expect(both).toBe(corpusBleu(['the cat sat on the mat', 'x y z'], [['the cat sat on the mat', 'a b c']]).score);
    w.add('x y z', 'a b c'); // the perfect pair leaves, not the newer one
    expect(w.score()).toBe(0);
    w.add('the dog ran', 'the dog ran');
    expect(w.score()).toBe(corpusBleu(['x y z', 'the dog ran'], [['a b c', 'the dog ran']]).score);
    expect(w.count).toBe(2);
    expect(w.samples).toBe(4);
  });

  it('size 1: the score is the last pair alone', () => {
    for (const metric of ['bleu', 'chrf'] as const) {
      const w = new ScoreWindow(metric, 1);
      expect(w.score()).toBeNull();
      expect(w.full).toBe(false);
      w.add('the cat sat on the mat', 'the cat sat on the mat');
      expect(w.full).toBe(true);
      expect(w.score()).toBeCloseTo(100, 10);
      w.add('das Haus ist klein', 'the house is small');
      expect(w.score()).toBe(reference(metric, ['das Haus ist klein'], ['the house is small']));
      expect(w.count).toBe(1);
    }
  });

  it('clear() empties the window: null until it fills again; samples keep counting', () => {
    const w = new ScoreWindow('chrf', 3);
    for (let i = 0; i < 5; i++) w.add(`sentence number ${i}`, `sentence no ${i}`);
    expect(w.score()).not.toBeNull();
    w.clear();
    expect(w.count).toBe(0);
    expect(w.full).toBe(false);
    expect(w.score()).toBeNull();
    expect(w.samples).toBe(5);
    w.add('a', 'a');
    w.add('b', 'c');
    expect(w.score()).toBeNull();
    w.add('the cat', 'the hat');
    expect(w.samples).toBe(8);
    // Nothing from before the clear is left in the sums.
    expect(w.score()).toBe(corpusChrf(['a', 'b', 'the cat'], [['a', 'c', 'the hat']]).score);
  });

  it('size and metric are read-only facts; bad arguments are E_ARG and leave the window as it was', () => {
    const w = new ScoreWindow('bleu', 4);
    expect(w.size).toBe(4);
    expect(w.metric).toBe('bleu');
    for (const bad of [0, -1, 1.5, NaN, Infinity, '3' as unknown as number]) expectArgError(() => new ScoreWindow('bleu', bad));
    expectArgError(() => new ScoreWindow('ter' as WindowMetric, 3));
    w.add('a b', 'a b');
    expectArgError(() => w.add(null as unknown as string, 'a'));
    expectArgError(() => w.add('a', 3 as unknown as string));
    expectArgError(() => w.add('a', '')); // BLEU, like corpusBleu, has no use for an empty reference
    expect(w.count).toBe(1);
    expect(w.samples).toBe(1);
    // chrF takes an empty reference as sacreBLEU does: a reference with no n-grams.
    const c = new ScoreWindow('chrf', 1);
    c.add('a', '');
    expect(c.score()).toBe(0);
  });
});

describe('BLEU sufficient statistics', () => {
  it('bleuStats summed and bleuFromStats give corpusBleu, for any options', () => {
    const r = rng(42);
    const hyps: string[] = [];
    const refs: string[][] = [[], []];
    for (let i = 0; i < 60; i++) {
      const ref = sentence(r, 1);
      hyps.push(perturb(r, ref));
      refs[0].push(ref);
      refs[1].push(perturb(r, ref) || ref);
    }
    for (const opts of [{}, { tokenize: 'intl' as const, smooth: 'floor' as const }, { smooth: 'add-k' as const, lowercase: true }, { effectiveOrder: true, smooth: 'none' as const }]) {
      const sum: BleuStats = { sysLen: 0, refLen: 0, correct: [0, 0, 0, 0], total: [0, 0, 0, 0] };
      hyps.forEach((h, i) => {
        const s = bleuStats(h, [refs[0][i], refs[1][i]], opts);
        sum.sysLen += s.sysLen;
        sum.refLen += s.refLen;
        s.correct.forEach((v, n) => (sum.correct[n] += v));
        s.total.forEach((v, n) => (sum.total[n] += v));
      });
      const want = corpusBleu(hyps, refs, opts);
      const got = bleuFromStats(sum, opts, 2);
      expect(got.score).toBe(want.score);
      expect(got.signature).toBe(want.signature);
      expect(got.toString()).toBe(want.toString());
      expect(sum.correct).toEqual([0, 0, 0, 0].map((_, n) => (opts.smooth === 'add-k' && n > 0 ? want.counts[n] - 1 : want.counts[n])));
    }
  });

  it('bleuStats of one sentence', () => {
    expect(bleuStats('a b c d', ['a b d c'])).toEqual({ sysLen: 4, refLen: 4, correct: [4, 1, 0, 0], total: [4, 3, 2, 1] });
    expect(bleuStats('a b', ['a b c', 'a'])).toEqual({ sysLen: 2, refLen: 1, correct: [2, 1, 0, 0], total: [2, 1, 0, 0] }); // tie: shorter
    expectArgError(() => bleuStats('a', ['']));
    expectArgError(() => bleuStats('a', []));
    expectArgError(() => bleuFromStats({ sysLen: 1, refLen: 1, correct: [1], total: [1] }));
    expectArgError(() => bleuFromStats({ sysLen: 1, refLen: 1, correct: [1, 0, 0, 0], total: [1, 0, 0, 0] }, {}, 0));
  });
});
