// The statistics and the interleaving every bench suite shares (bench/stats.ts): figures against values computed
// by hand, and the round structure (sample counts, warm-up excluded, the order rotating) on counting tasks.
import { describe, expect, it } from 'vitest';
import { interleave, ratioOf, summarize } from '../bench/stats';

describe('bench statistics', () => {
  it('p50, mean, p99 and the relative margin of error match hand-computed values', () => {
    const xs = [7, 1, 10, 4, 2, 9, 3, 6, 5, 8]; // 1..10, unsorted
    const s = summarize(xs);
    expect(s.samples).toBe(10);
    expect(s.mean).toBe(5.5);
    expect(s.p50).toBe(5.5);
    expect(s.p99).toBeCloseTo(9 + 0.91, 12); // position 9 * 0.99 = 8.91 between 9 and 10
    // sd of 1..10 = sqrt(82.5 / 9); t(0.975, 9) = 2.262157 (tables)
    const sd = Math.sqrt(82.5 / 9);
    expect(s.rme).toBeCloseTo((100 * 2.262157 * sd) / Math.sqrt(10) / 5.5, 3);
  });

  it('Student t critical values from tables: df 1, 4, 30, 40, 60', () => {
    // with two samples a, b: moe = t(1) * |a - b| / 2; with n samples the ratio to the normal z shows t(n - 1)
    const tOf = (n: number) => {
      const xs = Array.from({ length: n }, (_, i) => (i % 2 ? 1 : -1) + 100);
      const s = summarize(xs);
      const sd = Math.sqrt(xs.reduce((a, x) => a + (x - s.mean) ** 2, 0) / (n - 1));
      return (s.rme * s.mean) / 100 / (sd / Math.sqrt(n));
    };
    expect(tOf(5)).toBeCloseTo(2.776445, 3);
    expect(tOf(31)).toBeCloseTo(2.042272, 5);
    expect(tOf(41)).toBeCloseTo(2.021075, 4); // df 40: past the table, the series
    expect(tOf(61)).toBeCloseTo(2.000298, 4); // df 60
    expect(tOf(2)).toBeCloseTo(12.706, 3);
  });

  it('one sample: no margin; ratio of medians', () => {
    expect(summarize([3]).rme).toBe(0);
    expect(ratioOf(summarize([1, 2, 100]), summarize([4, 4, 4]))).toBe(0.5);
  });

  it('interleave: fixed iterations per round, warm-up not kept, the order rotating each round', async () => {
    const order: string[] = [];
    let calls = 0;
    const mk = (name: string, figure: number) => ({
      name, async: true, reports: true,
      fn: async () => {
        calls++;
        order.push(name);
        return { ms: figure, other: figure * 2 };
      },
    });
    const out = await interleave([mk('a', 1), mk('b', 2), mk('c', 3)], { rounds: 3, iterations: 2, timeMs: 0, warmup: 1 });
    expect(calls).toBe(3 * (3 * 2) + 3); // rounds x contenders x iterations, plus one warm-up call each
    expect(out.get('a')!.get('ms')).toEqual([1, 1, 1, 1, 1, 1]);
    expect(out.get('b')!.get('other')).toEqual([4, 4, 4, 4, 4, 4]);
    // the task order of each round: a b c, then b c a, then c a b (consecutive calls of one task collapsed)
    order.length = 0;
    await interleave([mk('a', 1), mk('b', 2), mk('c', 3)], { rounds: 3, iterations: 2, timeMs: 0, warmup: 0 });
    expect(order.filter((n, i) => i === 0 || order[i - 1] !== n)).toEqual(['a', 'b', 'c', 'b', 'c', 'a', 'c', 'a', 'b']);
  });

  it('interleave: a task without `reports` is timed by tinybench, whatever it returns', async () => {
    const out = await interleave([{ name: 'spin', fn: () => ({ ms: -1 }) }], { rounds: 2, iterations: 5, timeMs: 0, warmup: 0 });
    const xs = out.get('spin')!.get('ms')!;
    expect(xs.length).toBe(10);
    for (const x of xs) expect(x).toBeGreaterThanOrEqual(0);
  });
});
