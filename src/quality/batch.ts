/** Batched generation over a list of sources, shared by eval, tune-ln and the quality gate. */
import type { MarianModel } from '../marian';

/** Indices of the sources (null = a blank line, skipped), longest first, so that batches pad little. */
export function longestFirst(srcIds: readonly (number[] | null)[]): number[] {
  const order = srcIds.map((_, i) => i).filter((i) => srcIds[i] !== null);
  return order.sort((a, b) => srcIds[b]!.length - srcIds[a]!.length || a - b);
}

export interface BatchedOptions {
  beam?: number;
  maxLength?: number;
  /** Sources per generate() call; default 32 (8 for beam search). */
  batch?: number;
  /** After each call: the source indices of the batch, their generated ids, sources done and in all. */
  onBatch?: (indices: number[], ids: number[][], done: number, total: number) => void;
}

/**
 * Generated ids for every source ([] for null ones), generated `batch` at a time, longest first. A source's
 * output does not depend on its batch (greedy, beam and seeded sampling alike), so the order is only for speed.
 */
export function generateBatched(model: MarianModel, srcIds: readonly (number[] | null)[], opts: BatchedOptions = {}): number[][] {
  const batch = opts.batch ?? ((opts.beam ?? 1) > 1 ? 8 : 32);
  const order = longestFirst(srcIds);
  const out: number[][] = srcIds.map(() => []);
  for (let b = 0; b < order.length; b += batch) {
    const idx = order.slice(b, b + batch);
    const r = model.generate(idx.map((i) => srcIds[i]!), { beam: opts.beam, maxLength: opts.maxLength });
    idx.forEach((i, k) => (out[i] = r.ids[k]));
    opts.onBatch?.(idx, r.ids, Math.min(b + batch, order.length), order.length);
  }
  return out;
}
