/** Option-object checks shared by the public entry points: unknown keys are refused with a suggestion. */
import { ChimeraError } from '../errors';

/**
 * Edit distance with adjacent transpositions counted as one edit (optimal string alignment), case-insensitive:
 * `cdua` is one edit from `cuda`, as a typist would count it. Small strings only (option names).
 */
export function editDistance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.length][b.length];
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
