/**
 * Sampling (src/engine/sequence.ts sampleToken) against the distribution it must draw from: softmax(logits / T),
 * restricted to the top-k and the top-p nucleus. Frequencies over many seeded draws are compared with the exact
 * probabilities (20,000 draws: one standard deviation of a frequency is at most 0.0036; the bound is 0.02).
 */
import { describe, expect, it } from 'vitest';
import { sampleToken, type SearchOptions } from '../src/engine/sequence';
import { mulberry32 } from '../src/util/rng';

const DRAWS = 20_000;
const TOL = 0.02;

function freqs(logits: number[], o: Partial<SearchOptions>, seed = 1): number[] {
  const a = Float32Array.from(logits);
  const rnd = mulberry32(seed);
  const c = new Array(logits.length).fill(0);
  for (let i = 0; i < DRAWS; i++) c[sampleToken(a, 0, a.length, { maxLength: 8, ...o }, rnd)]++;
  return c.map((x) => x / DRAWS);
}

function softmax(x: number[], t = 1): number[] {
  const m = Math.max(...x.filter((v) => v > -Infinity));
  const e = x.map((v) => (v > -Infinity ? Math.exp((v - m) / t) : 0));
  const s = e.reduce((p, q) => p + q, 0);
  return e.map((v) => v / s);
}

describe('sampleToken draws from the right distribution', () => {
  const L = [0, Math.log(2), Math.log(4), -Infinity, Math.log(0.5)];
  it('plain sampling: softmax of the logits, never a banned (-Infinity) token', () => {
    const f = freqs(L, { sample: true });
    softmax(L).forEach((p, i) => expect(Math.abs(f[i] - p), `token ${i}`).toBeLessThan(TOL));
    expect(f[3]).toBe(0);
  });
  it('temperature flattens or sharpens', () => {
    for (const t of [0.5, 2]) {
      const f = freqs(L, { sample: true, temperature: t });
      softmax(L, t).forEach((p, i) => expect(Math.abs(f[i] - p), `T ${t} token ${i}`).toBeLessThan(TOL));
    }
  });
  it('top-k keeps the k best (renormalised)', () => {
    const f = freqs(L, { sample: true, topK: 2 });
    expect(f[0] + f[3] + f[4]).toBe(0);
    expect(Math.abs(f[1] - 1 / 3)).toBeLessThan(TOL);
    expect(Math.abs(f[2] - 2 / 3)).toBeLessThan(TOL);
  });
  it('top-p keeps the smallest set of best tokens whose mass reaches p', () => {
    // probabilities 1/7.5, 2/7.5, 4/7.5, 0, 0.5/7.5: the best alone has 0.533
    expect(freqs(L, { sample: true, topP: 0.5 })).toEqual([0, 0, 1, 0, 0]);
    const f = freqs(L, { sample: true, topP: 0.7 });
    expect(f[0] + f[3] + f[4]).toBe(0);
    expect(Math.abs(f[1] - 1 / 3)).toBeLessThan(TOL);
    const g = freqs(L, { sample: true, topK: 3, topP: 0.9 });
    expect(f[3] + g[3] + g[4]).toBe(0);
  });
  it('ties in top-k go to the lower index, and the same seed gives the same draws', () => {
    const T = [1, 1, 1, 1];
    const f = freqs(T, { sample: true, topK: 2 });
    expect(f[2] + f[3]).toBe(0);
    expect(freqs(L, { sample: true }, 9)).toEqual(freqs(L, { sample: true }, 9));
  });
});
