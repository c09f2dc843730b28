/** Option-object checks shared by the public entry points: unknown keys are refused with a suggestion. */
import { ChimeraError } from '../errors';

/** Levenshtein distance (small strings: option names). */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length];
}

/** The closest of `names` to `name`, when it is close enough to be a likely typo. */
export function suggest(name: string, names: readonly string[]): string | undefined {
  let best: string | undefined, bd = Infinity;
  for (const n of names) {
    const d = editDistance(name, n);
    if (d < bd) [best, bd] = [n, d];
  }
  // a third of the name (at least 2 edits) covers transpositions and a missing letter, not unrelated words
  return bd <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

/**
 * Throws E_ARG for a non-object or any key outside `allowed`, naming the nearest allowed key, or the one that
 * `aliases` maps it to (another library's spelling: max_new_tokens -> maxLength).
 */
export function checkKeys(o: unknown, allowed: readonly string[], what: string, aliases: Record<string, string> = {}): void {
  if (o === undefined) return;
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new ChimeraError('E_ARG', `${what} must be an object, got ${o === null ? 'null' : typeof o}`);
  for (const k of Object.keys(o)) {
    if (allowed.includes(k)) continue;
    const s = Object.prototype.hasOwnProperty.call(aliases, k) && allowed.includes(aliases[k]) ? aliases[k] : suggest(k, allowed);
    throw new ChimeraError('E_ARG', `unknown ${what} key '${k}'${s ? ` (did you mean '${s}'?)` : ''}; known keys: ${allowed.join(', ')}`);
  }
}
