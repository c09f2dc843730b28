/**
 * Splitting texts into sentences, so that a known sentence comes from the cache and only unknown ones are
 * decoded, and putting translations back with the input's own whitespace between them.
 *
 * Rule: Intl.Segmenter's sentence boundaries (Unicode UAX #29, from the ICU that Node ships), then a segment that
 * ends in a common abbreviation or a single-letter initial ("Mr. ", "e.g. ", "J. ") is joined to the next one,
 * because UAX #29 alone breaks after them and a translation model then sees half a sentence.
 */

export interface Segment {
  /** Whitespace before the sentence, kept verbatim. */
  lead: string;
  /** The sentence to translate (empty for a whitespace-only segment, which is kept as is). */
  core: string;
  /** Whitespace after the sentence, kept verbatim. */
  trail: string;
}

/** Abbreviations after which a full stop does not end an English sentence (lower-case, without the dot). */
const ABBREVIATIONS = new Set([
  'mr', 'mrs', 'ms', 'dr', 'prof', 'sr', 'jr', 'st', 'mt', 'vs', 'etc', 'e.g', 'i.e', 'cf', 'vol', 'fig', 'approx',
  'inc', 'ltd', 'corp', 'dept', 'jan', 'feb', 'mar', 'apr', 'jun', 'jul', 'aug', 'sep', 'sept', 'oct', 'nov', 'dec',
]);

function endsWithAbbreviation(s: string): boolean {
  const m = /(?:^|[\s(])([A-Za-z](?:[A-Za-z.]*[A-Za-z])?)\.\s*$/.exec(s);
  if (!m) return false;
  const w = m[1];
  return w.length === 1 || ABBREVIATIONS.has(w.toLowerCase());
}

let segmenter: Intl.Segmenter | undefined;

/** The sentences of `text` with the whitespace around each; joining lead + core + trail gives `text` back. */
export function splitSentences(text: string): Segment[] {
  segmenter ??= new Intl.Segmenter('en', { granularity: 'sentence' });
  const raw: string[] = [];
  for (const { segment } of segmenter.segment(text)) {
    if (raw.length > 0 && endsWithAbbreviation(raw[raw.length - 1]) && /^\s*\S/.test(segment)) raw[raw.length - 1] += segment;
    else raw.push(segment);
  }
  return raw.map((s) => {
    const lead = /^\s*/.exec(s)![0];
    if (lead.length === s.length) return { lead: s, core: '', trail: '' };
    const trail = /\s*$/.exec(s)![0];
    return { lead, core: s.slice(lead.length, s.length - trail.length), trail };
  });
}

/** Puts translated cores back between the original whitespace. */
export function joinSentences(segments: readonly Segment[], translated: readonly string[]): string {
  let out = '';
  segments.forEach((s, i) => (out += s.lead + (s.core === '' ? '' : translated[i]) + s.trail));
  return out;
}
