/**
 * chrF / chrF++ against sacreBLEU's published values and against cases worked out by hand from its definition.
 *
 * Sources of the expected values:
 * - [T] sacreBLEU v2.4.2, test/test_chrf.py (github.com/mjpost/sacrebleu, tag v2.4.2): `test_cases` (corpus_chrf,
 *   beta=3, eps_smoothing=True), `test_cases_effective_order` (beta=3, eps_smoothing=False),
 *   `test_cases_keep_whitespace` (beta=3, remove_whitespace=False) and `test_sentence_level_chrf` (sentence_chrf,
 *   eps_smoothing=True). That file checks them to within EPSILON = 1e-4, and so does this one.
 * - [R] sacreBLEU v2.4.2, README.md, "Using SacreBLEU from Python": `CHRF().corpus_score(sys, refs)` prints
 *   `chrF2 = 59.73` for the two-reference dog/man example; the command-line examples there show the signature
 *   layout `chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:...` and `chrF2++|...|nw:2|...`.
 * - [H] worked by hand below from the definition.
 */
import { describe, expect, it } from 'vitest';
import { SACREBLEU_VERSION } from '../src/bleu';
import { ChimeraError } from '../src/errors';
import { chrfFromStats, chrfStats, corpusChrf, sentenceChrf, type ChrfStats } from '../src/quality/chrf';

const EPSILON = 1e-4; // sacreBLEU's own tolerance in test_chrf.py

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

const near = (actual: number, expected: number, tol = EPSILON) => expect(Math.abs(actual - expected)).toBeLessThan(tol);

// [T] test_cases: corpus_chrf(hyps, [refs], char_order=6, word_order=0, beta=3, eps_smoothing=True)
const EPS_CASES: Array<[string[], string[], number]> = [
  [['abcdefg'], ['hijklmnop'], 0.0],
  [['a'], ['b'], 0.0],
  [[''], ['b'], 0.0],
  [[''], ['ref'], 0.0],
  [[''], ['reference'], 0.0],
  [['aa'], ['ab'], 8.3333],
  [['a', 'b'], ['a', 'c'], 8.3333],
  [['a'], ['a'], 16.6667],
  [['a b c'], ['a b c'], 50.0],
  [['a b c'], ['abc'], 50.0],
  [
    [' risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists .'],
    ['risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists .'],
    63.36173,
  ],
  [
    [' Die    Beziehung zwischen  Obama und Netanjahu ist nicht gerade  freundlich. '],
    ['Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich.'],
    64.1302698, // sacreBLEU 2.4.2 itself computes 64.13022156: within its 1e-4, not closer
  ],
  [['Niemand hat die Absicht, eine Mauer zu errichten'], ['Niemand hat die Absicht, eine Mauer zu errichten'], 100.0],
];

// [T] test_cases_effective_order: the same with eps_smoothing=False (sacreBLEU's default, eff:yes)
const EFF_CASES: Array<[string[], string[], number]> = [
  [['a'], ['a'], 100.0],
  [[''], ['reference'], 0.0],
  [['a b c'], ['a b c'], 100.0],
  [['a b c'], ['abc'], 100.0],
  [[''], ['c'], 0.0],
  [['a', 'b'], ['a', 'c'], 50.0],
  [['aa'], ['ab'], 25.0],
];

// [T] test_cases_keep_whitespace: beta=3, remove_whitespace=False (whitespace kept), effective order
const WS_CASES: Array<[string[], string[], number]> = [
  [
    ['Die Beziehung zwischen Obama und Netanjahu ist nicht gerade freundlich.'],
    ['Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich.'],
    67.3481606,
  ],
  [
    ['risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists .'],
    ['risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists .'],
    65.2414427,
  ],
];

// [T] test_sentence_level_chrf: sentence_chrf(hyp, refs, eps_smoothing=True), beta=2
const SENTENCE_CASES: Array<[string, string[], number]> = [
  [
    'Co nás nejvíc trápí, protože lékaři si vybírají, kdo bude žít a kdo zemře.',
    ['Nejvíce smutní jsme z toho, že musíme rozhodovat o tom, kdo bude žít a kdo zemře.'],
    39.14078509,
  ],
  [
    'Nebo prostě nemají vybavení, které by jim pomohlo, uvedli lékaři.',
    ['A někdy nemáme ani potřebný materiál, abychom jim pomohli, popsali lékaři.'],
    31.22557079,
  ],
  [
    'Lapali po dechu, jejich životy skončily dřív, než skutečně začaly.',
    ['Lapali po dechu a pak jejich život skončil - dřív, než skutečně mohl začít, připomněli.'],
    57.15704367,
  ],
];

// [R] README.md (v2.4.2): the object-oriented API example
const README_SYS = ['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.'];
const README_REFS = [
  ['The dog bit the man.', 'It was not unexpected.', 'The man bit him first.'],
  ['The dog had bit the man.', 'No one was surprised.', 'The man had bitten the dog.'],
];

describe("sacreBLEU's published chrF values", () => {
  it.each(EPS_CASES)('eps smoothing, beta 3: %j vs %j = %d', (hyps, refs, expected) => {
    const s = corpusChrf(hyps, [refs], { beta: 3, epsSmoothing: true });
    near(s.score, expected);
    expect(s.signature).toBe(`nrefs:1|case:mixed|eff:no|nc:6|nw:0|space:no|version:${SACREBLEU_VERSION}`);
    expect(s.name).toBe('chrF3');
  });

  it.each(EFF_CASES)('effective order, beta 3: %j vs %j = %d', (hyps, refs, expected) => {
    near(corpusChrf(hyps, [refs], { beta: 3 }).score, expected);
  });

  it.each(WS_CASES)('whitespace kept, beta 3: %j vs %j = %d', (hyps, refs, expected) => {
    const s = corpusChrf(hyps, [refs], { beta: 3, whitespace: true });
    near(s.score, expected);
    expect(s.signature).toContain('|space:yes|');
  });

  it.each(SENTENCE_CASES)('sentence level, eps smoothing: %s = %d', (hyp, refs, expected) => {
    // Published with 8 decimals: check to that precision, tighter than sacreBLEU's own 1e-4.
    near(sentenceChrf(hyp, refs, { epsSmoothing: true }).score, expected, 1e-8);
  });

  it('README: two references, chrF2 = 59.73, its signature and its lines', () => {
    const s = corpusChrf(README_SYS, README_REFS);
    expect(String(s)).toBe('chrF2 = 59.73');
    expect(s.toString(2)).toBe('chrF2 = 59.73');
    expect(s.signature).toBe(`nrefs:2|case:mixed|eff:yes|nc:6|nw:0|space:no|version:${SACREBLEU_VERSION}`);
    expect(s.format()).toBe(`chrF2|nrefs:2|case:mixed|eff:yes|nc:6|nw:0|space:no|version:${SACREBLEU_VERSION} = 59.7`);
    expect(s.name).toBe('chrF2');
    const pp = corpusChrf(README_SYS, README_REFS, { wordOrder: 2 });
    expect(pp.name).toBe('chrF2++');
    expect(pp.signature).toBe(`nrefs:2|case:mixed|eff:yes|nc:6|nw:2|space:no|version:${SACREBLEU_VERSION}`);
    expect(pp.toString()).toMatch(/^chrF2\+\+ = \d+\.\d\d$/);
  });
});

describe('chrF by hand', () => {
  it('the effective-order average: hyp "aa" vs ref "ab" [H]', () => {
    // order 1: hyp {a:2}, ref {a,b}: P = 1/2, R = 1/2; order 2: {aa} vs {ab}: P = R = 0; orders 3..6: the reference
    // has none, so they do not count. avgP = avgR = 1/4, and F2 = 5·(1/16)/(4/4 + 1/4) = 1/4.
    const s = sentenceChrf('aa', ['ab']);
    expect(s.stats).toEqual({ hyp: [2, 1, 0, 0, 0, 0], ref: [2, 1, 0, 0, 0, 0], match: [1, 0, 0, 0, 0, 0] });
    expect(s.score).toBeCloseTo(25, 12);
    expect(s.toString()).toBe('chrF2 = 25.00');
  });

  it('chrF++ adds word orders: "a b" vs "a c" [H]', () => {
    // chars "ab" vs "ac": order 1 P = R = 1/2, order 2 P = R = 0; words {a,b} vs {a,c}: 1/2, {a b} vs {a c}: 0.
    // Four effective orders, avgP = avgR = 1/4 → 25.
    const s = sentenceChrf('a b', ['a c'], { wordOrder: 2 });
    expect(s.stats.hyp).toEqual([2, 1, 0, 0, 0, 0, 2, 1]);
    expect(s.stats.match).toEqual([1, 0, 0, 0, 0, 0, 1, 0]);
    expect(s.score).toBeCloseTo(25, 12);
    expect(String(s)).toBe('chrF2++ = 25.00');
    expect(s.signature).toBe(`nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:${SACREBLEU_VERSION}`);
  });

  it("chrF++'s word splitting: one punctuation mark off the end, else off the start", () => {
    const words = (s: string) => chrfStats(s, ['zzz'], { charOrder: 1, wordOrder: 1 }).hyp[1];
    // Word unigram totals are only counted when the reference has words: it does ('zzz').
    expect(words('(hi)')).toBe(2); // "(hi" ")"
    expect(words('hello, world!')).toBe(4); // "hello" "," "world" "!"
    expect(words('"quoted')).toBe(2); // '"' 'quoted'
    expect(words('a.b . x')).toBe(3); // "a.b" stays whole, "." is one character, "x"
    expect(words('...')).toBe(2); // ".." "."
    expect(words('«hi»')).toBe(1); // only ASCII punctuation is split off
    // So "(hi)" gives "(hi" ")", while "(hi )" gives "(" "hi" ")": only ")" matches (sacreBLEU issue #124).
    const s = sentenceChrf('(hi)', ['(hi )'], { charOrder: 1, wordOrder: 1 });
    expect(s.stats).toEqual({ hyp: [4, 2], ref: [4, 3], match: [4, 1] });
  });

  it('lowercase', () => {
    expect(sentenceChrf('The CAT', ['the cat']).score).toBeLessThan(100);
    const s = sentenceChrf('The CAT', ['the cat'], { lowercase: true });
    expect(s.score).toBeCloseTo(100, 12);
    expect(s.signature).toContain('|case:lc|');
  });
});

describe('edge cases', () => {
  it('identical strings score 100 (chrF and chrF++)', () => {
    for (const t of ['the cat sat on the mat.', 'a', 'Grüße, 世界! 😀', 'x'.repeat(500)]) {
      expect(sentenceChrf(t, [t]).score).toBeCloseTo(100, 12);
      expect(sentenceChrf(t, [t], { wordOrder: 2 }).score).toBeCloseTo(100, 12);
      expect(corpusChrf([t, t], [[t, t]]).score).toBeCloseTo(100, 12);
    }
  });

  it('empty hypothesis: 0, with the reference counted', () => {
    const s = sentenceChrf('', ['reference']);
    expect(s.score).toBe(0);
    expect(s.stats.hyp).toEqual([0, 0, 0, 0, 0, 0]);
    expect(s.stats.ref).toEqual([9, 8, 7, 6, 5, 4]);
  });

  it('empty reference: a real reference with no n-grams (sacreBLEU >= 2.2), so 0 and no hypothesis counts', () => {
    const s = sentenceChrf('hypothesis', ['']);
    expect(s.score).toBe(0);
    expect(s.stats).toEqual({ hyp: [0, 0, 0, 0, 0, 0], ref: [0, 0, 0, 0, 0, 0], match: [0, 0, 0, 0, 0, 0] });
    expect(s.signature).toContain('nrefs:1|');
    // Both empty: no order has counts, so 0 (not 100), as in sacreBLEU.
    expect(sentenceChrf('', ['']).score).toBe(0);
    // Whitespace-only is empty once whitespace is removed.
    expect(sentenceChrf(' \t ', ['  ']).score).toBe(0);
  });

  it('Unicode: code points, and Python whitespace removed', () => {
    const s = sentenceChrf('😀b', ['😀c']);
    expect(s.stats.hyp.slice(0, 2)).toEqual([2, 1]); // two code points, not three UTF-16 units
    expect(s.stats.match[0]).toBe(1);
    // U+3000 (ideographic space), U+00A0 and U+2028 are Python whitespace: removed like ' '.
    expect(sentenceChrf('a\u3000b\u00a0c\u2028d', ['abcd']).score).toBeCloseTo(100, 12);
    // U+200B (zero-width space) is not Python whitespace: it stays a character.
    expect(sentenceChrf('a\u200bb', ['ab']).score).toBeLessThan(100);
    // Precomposed and decomposed é are different characters (no normalisation, as in sacreBLEU).
    expect(sentenceChrf('\u00e9', ['e\u0301']).score).toBe(0);
  });

  it('corpus statistics are the sum of the sentences', () => {
    const hyps = ['the cat sat', 'on a mat', ''];
    const refs = ['the cat sat down', 'on the mat', 'empty'];
    const sum: ChrfStats = { hyp: new Array(8).fill(0), ref: new Array(8).fill(0), match: new Array(8).fill(0) };
    hyps.forEach((h, i) => {
      const st = chrfStats(h, [refs[i]], { wordOrder: 2 });
      for (const k of ['hyp', 'ref', 'match'] as const) st[k].forEach((v, j) => (sum[k][j] += v));
    });
    const corpus = corpusChrf(hyps, [refs], { wordOrder: 2 });
    expect(corpus.stats).toEqual(sum);
    expect(chrfFromStats(sum, { wordOrder: 2 }).score).toBe(corpus.score);
    expect(chrfFromStats(sum, { wordOrder: 2 }, 3).signature).toContain('nrefs:3|');
  });
});

describe('several references', () => {
  it('each sentence uses the best-scoring reference, and its statistics', () => {
    const s = sentenceChrf('the cat', ['a dog', 'the cat']);
    expect(s.score).toBeCloseTo(100, 12);
    expect(s.stats).toEqual(sentenceChrf('the cat', ['the cat']).stats);
    expect(s.signature).toContain('nrefs:2|');
    // The corpus sums the chosen references' statistics, sentence by sentence.
    const hyps = ['the cat', 'a dog'];
    const c = corpusChrf(hyps, [
      ['the cat', 'a doge'], // stream 0
      ['the dog', 'a dog'], // stream 1: the better reference for sentence 1
    ]);
    const st = [chrfStats('the cat', ['the cat']), chrfStats('a dog', ['a dog'])];
    expect(c.stats.ref).toEqual(st[0].ref.map((v, i) => v + st[1].ref[i]));
    expect(c.score).toBeCloseTo(100, 12);
  });

  it('a tie keeps the first reference', () => {
    // Both references score 0 against "xyz"; the first one's statistics (4 reference characters) are kept.
    const s = sentenceChrf('xyz', ['abcd', 'ab']);
    expect(s.score).toBe(0);
    expect(s.stats.ref[0]).toBe(4);
  });

  it('null means no reference in that stream: nrefs:var', () => {
    const refs = [[null, ...README_REFS[0].slice(1)], README_REFS[1]];
    const s = corpusChrf(README_SYS, refs);
    expect(s.signature).toBe(`nrefs:var|case:mixed|eff:yes|nc:6|nw:0|space:no|version:${SACREBLEU_VERSION}`);
    // An empty string is a (poor) reference, not a missing one: nrefs stays 2.
    const e = corpusChrf(README_SYS, [['', ...README_REFS[0].slice(1)], README_REFS[1]]);
    expect(e.signature).toContain('nrefs:2|');
    expect(e.score).toBe(s.score); // the other reference is the better one for sentence 0 either way
    expect(sentenceChrf('a', [null, 'a']).signature).toContain('nrefs:1|');
  });
});

describe('output formatting as Python prints it', () => {
  it('rounds half to even on the exact binary value', () => {
    // One order with P = R = 1/2 gives exactly 50; with P = R = 1/8, exactly 12.5, a tie at 0 decimals.
    expect(chrfFromStats({ hyp: [2, 0, 0, 0, 0, 0], ref: [2, 0, 0, 0, 0, 0], match: [1, 0, 0, 0, 0, 0] }).toString(0)).toBe('chrF2 = 50');
    const s = chrfFromStats({ hyp: [8, 0, 0, 0, 0, 0], ref: [8, 0, 0, 0, 0, 0], match: [1, 0, 0, 0, 0, 0] });
    expect(s.score).toBe(12.5);
    expect(s.toString(0)).toBe('chrF2 = 12'); // Python: format(12.5, '.0f') == '12'
    expect(s.toString(1)).toBe('chrF2 = 12.5');
    expect(s.format(3)).toBe(`chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:${SACREBLEU_VERSION} = 12.500`);
  });
});

describe('argument checks', () => {
  it('rejects malformed input with E_ARG', () => {
    expectArgError(() => corpusChrf([], [[]]));
    expectArgError(() => corpusChrf(['a'], []));
    expectArgError(() => corpusChrf(['a', 'b'], [['a']]));
    expectArgError(() => corpusChrf(['a'], [[null]]));
    expectArgError(() => corpusChrf([1 as unknown as string], [['a']]));
    expectArgError(() => sentenceChrf('a', []));
    expectArgError(() => sentenceChrf('a', [null]));
    expectArgError(() => sentenceChrf(null as unknown as string, ['a']));
    expectArgError(() => sentenceChrf('a', ['a'], { charOrder: 0 }));
    expectArgError(() => sentenceChrf('a', ['a'], { wordOrder: -1 }));
    expectArgError(() => sentenceChrf('a', ['a'], { beta: 1.5 }));
    expectArgError(() => sentenceChrf('a', ['a'], { lowercase: 'yes' as unknown as boolean }));
    expectArgError(() => chrfFromStats({ hyp: [1], ref: [1], match: [1] }));
    expectArgError(() => chrfFromStats({ hyp: [0, 0, 0, 0, 0, 0], ref: [0, 0, 0, 0, 0, 0], match: [0, 0, 0, 0, 0, 0] }, {}, 0));
    expectArgError(() => sentenceChrf('a', ['a']).toString(-1));
  });
});
