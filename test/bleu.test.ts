/**
 * BLEU against cases worked out by hand from sacreBLEU's definition (shared/REFERENCE.md §5), and against the
 * figures published with the shared reference translations.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SACREBLEU_VERSION, bleuTokenize, corpusBleu, pyFixed, sentenceBleu, type BleuScore } from '../src/bleu';
import { ChimeraError } from '../src/errors';

const SHARED = process.env.CHIMERA_SHARED ?? join(__dirname, '..', '..', 'shared');
const GREEDY = join(SHARED, 'models', 'marian-m30k-en-de', 'reference', 'val200.greedy.de');
const VAL_DE = join(SHARED, 'data', 'multi30k', 'val.de');

/** BP · geometric mean of the given precisions (percent). */
const geo = (bp: number, ps: number[]) => bp * Math.exp(ps.reduce((s, p) => s + Math.log(p), 0) / ps.length);

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

function expectStats(s: BleuScore, counts: number[], totals: number[], sysLen: number, refLen: number): void {
  expect(s.counts).toEqual(counts);
  expect(s.totals).toEqual(totals);
  expect(s.sysLen).toBe(sysLen);
  expect(s.refLen).toBe(refLen);
}

describe('13a tokenizer', () => {
  it('splits punctuation and symbols, keeps numbers and apostrophes, unescapes entities', () => {
    expect(bleuTokenize('Hello, world!')).toBe('Hello , world !');
    expect(bleuTokenize('pi is 3.14, not 1,000.')).toBe('pi is 3.14 , not 1,000 .');
    expect(bleuTokenize("it's a-b 5-6 x/y")).toBe("it's a-b 5 - 6 x / y");
    expect(bleuTokenize('&quot;a&quot; &amp; &lt;b&gt;')).toBe('" a " & < b >');
    expect(bleuTokenize('a<skipped>b end-\nline\nnext')).toBe('ab endline next');
    expect(bleuTokenize('  spaced\tout  \n')).toBe('spaced out');
    expect(bleuTokenize('(x)[y]{z}~^_`@#$%')).toBe('( x ) [ y ] { z } ~ ^ _ ` @ # $ %');
    expect(bleuTokenize('a.b,c')).toBe('a . b , c');
  });

  it('other tokenizers', () => {
    expect(bleuTokenize('Hello, world!', 'none')).toBe('Hello, world!');
    expect(bleuTokenize("it's a-b 5-6 3.14 1,000 €5 x+y.", 'intl')).toBe("it ' s a - b 5-6 3.14 1,000 € 5 x + y .");
    expect(bleuTokenize('ab c', 'char')).toBe('a b c');
    expect(bleuTokenize('Ä😀b', 'char')).toBe('Ä 😀 b'); // code points, not UTF-16 units
    expect(bleuTokenize('The CAT', '13a', true)).toBe('the cat');
  });
});

describe('number formatting as Python prints it', () => {
  it('rounds the exact binary value, ties to even', () => {
    expect(pyFixed(6.25, 1)).toBe('6.2'); // exact tie: to even (toFixed gives 6.3)
    expect(pyFixed(6.75, 1)).toBe('6.8');
    expect(pyFixed(0.125, 2)).toBe('0.12');
    expect(pyFixed(2.5, 0)).toBe('2');
    expect(pyFixed(1.005, 2)).toBe('1.00'); // 1.005 is stored below the tie
    expect(pyFixed(0.05, 1)).toBe('0.1'); // 0.05 is stored above the tie
    expect(pyFixed(99.96, 1)).toBe('100.0');
    expect(pyFixed(0, 3)).toBe('0.000');
    expect(pyFixed(36.50535, 2)).toBe('36.51');
  });
});

describe('corpus BLEU by hand', () => {
  it('identical hypothesis and reference: 100', () => {
    const s = corpusBleu(['the cat sat on the mat'], [['the cat sat on the mat']]);
    expect(s.score).toBeCloseTo(100, 12);
    expect(s.bp).toBe(1);
    expectStats(s, [6, 5, 4, 3], [6, 5, 4, 3], 6, 6);
    expect(s.signature).toBe(`nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:${SACREBLEU_VERSION}`);
  });

  // hyp "a b c d" vs ref "a b d c": unigrams 4/4, bigrams 1/3 (a b), trigrams 0/2, 4-grams 0/1.
  const hyp = ['a b c d'];
  const ref = [['a b d c']];

  it('exp smoothing: each zero-match order halves again (p3 = 100/(2·2), p4 = 100/(4·1))', () => {
    const s = corpusBleu(hyp, ref);
    expectStats(s, [4, 1, 0, 0], [4, 3, 2, 1], 4, 4);
    const ps = [100, 100 / 3, 25, 25];
    s.precisions.forEach((p, i) => expect(p).toBeCloseTo(ps[i], 12));
    expect(s.score).toBeCloseTo(geo(1, ps), 12);
  });

  it('floor smoothing: p_n = 100 · value / total_n for zero-match orders', () => {
    const s = corpusBleu(hyp, ref, { smooth: 'floor' });
    expect(s.precisions[2]).toBeCloseTo(5, 12);
    expect(s.precisions[3]).toBeCloseTo(10, 12);
    expect(s.score).toBeCloseTo(geo(1, [100, 100 / 3, 5, 10]), 12);
    expect(s.signature).toContain('|smooth:floor[0.10]|');
    const s2 = corpusBleu(hyp, ref, { smooth: 'floor', smoothValue: 0.5 });
    expect(s2.score).toBeCloseTo(geo(1, [100, 100 / 3, 25, 50]), 12);
    expect(s2.signature).toContain('|smooth:floor[0.50]|');
  });

  it('add-k smoothing: k added to matches and totals of orders 2..4', () => {
    const s = corpusBleu(hyp, ref, { smooth: 'add-k' });
    expectStats(s, [4, 2, 1, 1], [4, 4, 3, 2], 4, 4);
    expect(s.score).toBeCloseTo(geo(1, [100, 50, 100 / 3, 50]), 12);
    expect(s.signature).toContain('|smooth:add-k[1.00]|');
    const s2 = corpusBleu(hyp, ref, { smooth: 'add-k', smoothValue: 2 });
    expect(s2.score).toBeCloseTo(geo(1, [100, 60, 50, 200 / 3]), 12);
  });

  it('no smoothing: any zero-match order gives 0', () => {
    const s = corpusBleu(hyp, ref, { smooth: 'none' });
    expect(s.score).toBe(0);
    expect(s.precisions).toEqual([100, 100 / 3, 0, 0]);
    expect(s.signature).toContain('|smooth:none|');
  });

  it('no unigram matches: 0 whatever the smoothing', () => {
    for (const smooth of ['exp', 'floor', 'add-k', 'none'] as const) {
      const s = corpusBleu(['x y z w'], [['a b c d']], { smooth });
      expect(s.score).toBe(0);
      expect(s.precisions).toEqual([0, 0, 0, 0]);
    }
  });

  it('empty hypothesis: BP 0, score 0', () => {
    const s = corpusBleu([''], [['a b c']]);
    expect(s.score).toBe(0);
    expect(s.bp).toBe(0);
    expectStats(s, [0, 0, 0, 0], [0, 0, 0, 0], 0, 3);
    expect(s.toString()).toMatch(/= 0\.0 0\.0\/0\.0\/0\.0\/0\.0 \(BP = 0\.000 ratio = 0\.000 hyp_len = 0 ref_len = 3\)$/);
  });

  it('brevity penalty exp(1 − r/c) when the hypothesis is shorter', () => {
    // 5 of 6 tokens, every n-gram matches: p = 100 at every order, BP = exp(1 - 6/5).
    const s = corpusBleu(['the cat sat on the'], [['the cat sat on the mat']]);
    expect(s.bp).toBeCloseTo(Math.exp(1 - 6 / 5), 14);
    expect(s.score).toBeCloseTo(100 * Math.exp(1 - 6 / 5), 10);
    expect(s.ratio).toBeCloseTo(5 / 6, 14);
    // Longer than the reference: no penalty.
    expect(corpusBleu(['the cat sat on the mat mat'], [['the cat sat on the mat']]).bp).toBe(1);
  });

  it('a sentence too short for 4-grams zeroes corpus BLEU without effective order', () => {
    const s = corpusBleu(['the cat sat'], [['the cat sat']]);
    expectStats(s, [3, 2, 1, 0], [3, 2, 1, 0], 3, 3);
    expect(s.score).toBe(0);
    const e = corpusBleu(['the cat sat'], [['the cat sat']], { effectiveOrder: true });
    expect(e.score).toBeCloseTo(100, 12);
    expect(e.signature).toContain('|eff:yes|');
  });

  it('several references: clipping by the max count over references, closest length (ties: shorter)', () => {
    // 'the' appears at most twice in one reference: 2 of 4 unigrams match; bigram 'the the' once at most.
    const s = corpusBleu(['the the the the'], [['the cat'], ['the the mat']]);
    expectStats(s, [2, 1, 0, 0], [4, 3, 2, 1], 4, 3);
    expect(s.signature.startsWith('nrefs:2|')).toBe(true);
    // hyp length 5; refs of length 4 and 6 are equally close: the shorter counts.
    const t = corpusBleu(['a b c d e'], [['a b c d e f'], ['a b c d']]);
    expect(t.refLen).toBe(4);
    const u = corpusBleu(['a b c d e'], [['a b c d e f'], ['a b c']]);
    expect(u.refLen).toBe(6);
  });

  it('empty-string references are missing references; a varying count gives nrefs:var', () => {
    // Sentence 2 has only stream 0's reference: the empty one neither counts for length nor for n-grams.
    const s = corpusBleu(['a b c d', 'e f g h'], [['a b c d', 'e f g h'], ['x y', '']]);
    expect(s.refLen).toBe(8);
    expect(s.score).toBeCloseTo(100, 12);
    expect(s.signature.startsWith('nrefs:var|')).toBe(true);
    const t = corpusBleu(['a b c d', 'e f g h'], [['a b c d', ''], ['', 'e f g h']]);
    expect(t.signature.startsWith('nrefs:1|')).toBe(true);
    expect(t.score).toBeCloseTo(100, 12);
    // A whitespace-only reference is a real, empty one.
    expect(corpusBleu(['a'], [[' ']]).refLen).toBe(0);
  });

  it('corpus statistics are summed over sentences before the score', () => {
    const hyps = ['the cat sat on the mat', 'a b c d'];
    const refs = [['the cat sat on the mat', 'a b d c']];
    const s = corpusBleu(hyps, refs);
    expectStats(s, [10, 6, 4, 3], [10, 8, 6, 4], 10, 10);
    expect(s.score).toBeCloseTo(geo(1, [100, 75, 400 / 6, 75]), 12);
  });

  it('tokenizer choice changes the n-grams', () => {
    const h = ['Hello, world.'];
    const r = [['Hello , world .']];
    expect(corpusBleu(h, r).score).toBeCloseTo(100, 12);
    const none = corpusBleu(h, r, { tokenize: 'none' });
    expect(none.score).toBe(0);
    expect(none.sysLen).toBe(2);
    expect(none.signature).toContain('|tok:none|');
    const intl = corpusBleu(['well-known € x'], [['well - known €x']], { tokenize: 'intl' });
    expect(intl.score).toBeCloseTo(100, 12);
    expect(intl.signature).toContain('|tok:intl|');
    const chr = corpusBleu(['abcd'], [['abdc']], { tokenize: 'char' });
    expectStats(chr, [4, 1, 0, 0], [4, 3, 2, 1], 4, 4);
    expect(chr.signature).toContain('|tok:char|');
  });

  it('lowercase', () => {
    expect(corpusBleu(['The Cat Sat On'], [['the cat sat on']]).score).toBe(0);
    const s = corpusBleu(['The Cat Sat On'], [['the cat sat on']], { lowercase: true });
    expect(s.score).toBeCloseTo(100, 12);
    expect(s.signature).toContain('|case:lc|');
  });

  it('trailing whitespace is stripped (Python rstrip), including Python-only spaces', () => {
    expect(corpusBleu(['a b c d \n\x1c\x85'], [['a b c d']]).sysLen).toBe(4);
  });
});

describe('sentence BLEU', () => {
  it('uses effective order', () => {
    const s = sentenceBleu('the cat sat', ['the cat sat on the mat']);
    expect(s.bp).toBeCloseTo(Math.exp(-1), 14);
    expect(s.score).toBeCloseTo(100 * Math.exp(-1), 10);
    expect(s.signature).toBe(`nrefs:1|case:mixed|eff:yes|tok:13a|smooth:exp|version:${SACREBLEU_VERSION}`);
  });

  it('several references and smoothing', () => {
    const s = sentenceBleu('a b c d', ['x y', 'a b d c']);
    expect(s.refLen).toBe(4);
    expect(s.score).toBeCloseTo(geo(1, [100, 100 / 3, 25, 25]), 12);
    expect(s.signature.startsWith('nrefs:2|')).toBe(true);
    expect(sentenceBleu('a b c d', ['a b d c'], { smooth: 'floor' }).score).toBeCloseTo(geo(1, [100, 100 / 3, 5, 10]), 12);
  });

  it('single-token hypothesis that matches: 100 with effective order', () => {
    expect(sentenceBleu('yes', ['yes']).score).toBeCloseTo(100, 12);
    expect(sentenceBleu('yes', ['yes'], { effectiveOrder: false }).score).toBe(0);
  });
});

describe('output line', () => {
  it('formats as sacreBLEU prints it', () => {
    const s = corpusBleu(['a b c d'], [['a b d c']]);
    const sig = `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:${SACREBLEU_VERSION}`;
    expect(s.toString()).toBe(`BLEU|${sig} = 38.0 100.0/33.3/25.0/25.0 (BP = 1.000 ratio = 1.000 hyp_len = 4 ref_len = 4)`);
    expect(s.toString(2)).toBe(`BLEU|${sig} = 37.99 100.0/33.3/25.0/25.0 (BP = 1.000 ratio = 1.000 hyp_len = 4 ref_len = 4)`);
    expect(String(s)).toBe(s.toString());
  });
});

describe('bad input', () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const bad = (v: unknown) => v as any;
  it('throws E_ARG', () => {
    expectArgError(() => corpusBleu(['a', 'b'], [['a']]));
    expectArgError(() => corpusBleu(['a'], [['a'], ['a', 'b']]));
    expectArgError(() => corpusBleu(['a'], []));
    expectArgError(() => corpusBleu([], [[]]));
    expectArgError(() => corpusBleu(['a', 'b'], [['a', '']])); // a sentence with no reference at all
    expectArgError(() => sentenceBleu('a', ['']));
    expectArgError(() => corpusBleu(bad('a'), [['a']]));
    expectArgError(() => corpusBleu([bad(1)], [['a']]));
    expectArgError(() => corpusBleu(['a'], [[bad(null)]]));
    expectArgError(() => corpusBleu(['a'], bad(['a'])));
    expectArgError(() => corpusBleu(['a'], [['a']], { tokenize: bad('moses') }));
    expectArgError(() => corpusBleu(['a'], [['a']], { smooth: bad('linear') }));
    expectArgError(() => corpusBleu(['a'], [['a']], { smoothValue: -1 }));
    expectArgError(() => sentenceBleu(bad(undefined), ['a']));
    expectArgError(() => sentenceBleu('a', []));
    expectArgError(() => sentenceBleu('a', bad('a')));
    expectArgError(() => corpusBleu(['a'], [['a']]).toString(-1));
  });
});

describe.skipIf(!existsSync(GREEDY) || !existsSync(VAL_DE))('the shared reference translations', () => {
  it('val200.greedy.de against val.de: 36.51 64.8/42.4/29.8/21.8, hyp_len 2540, ref_len 2457', () => {
    const hyps = readFileSync(GREEDY, 'utf8').split('\n').slice(0, 200);
    const refs = readFileSync(VAL_DE, 'utf8').split('\n').slice(0, 200);
    expect(hyps.length).toBe(200);
    const s = corpusBleu(hyps, [refs]);
    expect(pyFixed(s.score, 2)).toBe('36.51');
    expect(s.precisions.map((p) => pyFixed(p, 1))).toEqual(['64.8', '42.4', '29.8', '21.8']);
    expect(s.sysLen).toBe(2540);
    expect(s.refLen).toBe(2457);
    expect(s.toString()).toBe(
      `BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:${SACREBLEU_VERSION} = 36.5 64.8/42.4/29.8/21.8 ` +
        '(BP = 1.000 ratio = 1.034 hyp_len = 2540 ref_len = 2457)',
    );
  });
});
