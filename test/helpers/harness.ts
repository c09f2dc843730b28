/**
 * Test harness: assertion helpers with precise failure messages, and the dispatch helpers that run a block
 * on every ISA (forEachIsa) and check that the forced kernel path really ran (expectKernelRan).
 */
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { ChimeraError, cpuInfo, getThreads, kernelCounters, setIsa, setThreads } from '../../src/index';
import type { Isa } from '../../src/index';
import { normalisedError } from './reference';

function worstElement(got: ArrayLike<number>, ref: ArrayLike<number>): string {
  let wi = -1;
  let wd = -1;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i] - ref[i]);
    const dd = Number.isNaN(d) ? Infinity : d;
    if (dd > wd) {
      wd = dd;
      wi = i;
    }
  }
  return wi < 0 ? 'empty' : `worst at [${wi}]: got ${got[wi]}, expected ${ref[wi]}`;
}

/** Asserts normalisedError(got, ref) <= tol, with a message naming the worst element. */
export function expectNormClose(got: ArrayLike<number>, ref: ArrayLike<number>, tol: number, label = ''): void {
  expect(got.length, `${label}: length`).toBe(ref.length);
  const e = normalisedError(got, ref);
  expect(e, `${label}: normalised error ${e} > ${tol}; ${worstElement(got, ref)}`).toBeLessThanOrEqual(tol);
}

/**
 * Row-wise check for norms: for every element, |got - ref| <= rel * max(floor, max |ref| over the row).
 * NaN is expected exactly where ref is NaN.
 */
export function expectRowsClose(got: Float32Array, ref: Float64Array, cols: number, rel: number, label = '', floor = 1): void {
  expect(got.length, `${label}: length`).toBe(ref.length);
  const rows = ref.length / cols;
  for (let r = 0; r < rows; r++) {
    let scale = 0;
    for (let c = 0; c < cols; c++) {
      const a = Math.abs(ref[r * cols + c]);
      if (a > scale) scale = a;
    }
    const tol = rel * Math.max(floor, scale);
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      const g = got[i];
      const e = ref[i];
      if (Number.isNaN(e)) {
        if (!Number.isNaN(g)) expect.fail(`${label}: row ${r} col ${c}: expected NaN, got ${g}`);
        continue;
      }
      if (!(Math.abs(g - e) <= tol)) {
        expect.fail(`${label}: row ${r} col ${c} (rows ${rows}, cols ${cols}): got ${g}, expected ${e}, |diff| ${Math.abs(g - e)} > tol ${tol}`);
      }
    }
  }
}

/** Exact element-wise equality with a message naming the first mismatch and the mismatch count. */
export function expectExactlyEqual(got: ArrayLike<number>, ref: ArrayLike<number>, label = ''): void {
  expect(got.length, `${label}: length`).toBe(ref.length);
  let first = -1;
  let count = 0;
  for (let i = 0; i < ref.length; i++) {
    if (!Object.is(got[i], ref[i]) && !(got[i] === ref[i])) {
      if (first < 0) first = i;
      count++;
    }
  }
  if (count > 0) {
    expect.fail(`${label}: ${count} of ${ref.length} elements differ; first at [${first}]: got ${got[first]}, expected ${ref[first]}`);
  }
}

/** Bitwise equality of two float arrays (NaN payloads aside): used for determinism checks. */
export function expectSameFloats(a: Float32Array, b: Float32Array, label = ''): void {
  expect(a.length, `${label}: length`).toBe(b.length);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) {
    if (ua[i] !== ub[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) {
      expect.fail(`${label}: differ at [${i}]: ${a[i]} vs ${b[i]}`);
    }
  }
}

/** Runs fn and asserts it throws a ChimeraError with the given code (returns the error). */
export function expectChimeraError(fn: () => unknown, code: string, label = ''): ChimeraError {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  if (thrown === undefined) expect.fail(`${label}: expected a ChimeraError ${code}, but nothing was thrown`);
  if (!(thrown instanceof ChimeraError)) {
    expect.fail(`${label}: expected a ChimeraError ${code}, got ${String((thrown as Error)?.name)}: ${String((thrown as Error)?.message)}`);
  }
  expect((thrown as ChimeraError).code, `${label}: ${(thrown as Error).message}`).toBe(code);
  return thrown as ChimeraError;
}

export async function expectChimeraErrorAsync(fn: () => Promise<unknown>, code: string, label = ''): Promise<ChimeraError> {
  let thrown: unknown;
  try {
    await fn();
  } catch (e) {
    thrown = e;
  }
  if (thrown === undefined) expect.fail(`${label}: expected a rejection with ChimeraError ${code}, but it resolved`);
  if (!(thrown instanceof ChimeraError)) expect.fail(`${label}: expected a ChimeraError ${code}, got ${String(thrown)}`);
  expect((thrown as ChimeraError).code, `${label}: ${(thrown as Error).message}`).toBe(code);
  return thrown as ChimeraError;
}

// ------------------------------------------------------------------------------------------------ dispatch helpers

/** describe.each over every ISA this CPU supports, forcing it for the block and restoring 'auto' after. */
export function forEachIsa(fn: (isa: Isa) => void): void {
  describe.each(cpuInfo().supported)('isa %s', (isa) => {
    beforeAll(() => {
      setIsa(isa);
    });
    afterAll(() => {
      setIsa('auto');
    });
    fn(isa);
  });
}

/** describe.each over thread counts, restoring the previous count after each block. */
export function forEachThreads(counts: number[], fn: (threads: number) => void): void {
  describe.each(counts)('threads %i', (t) => {
    let prev = 1;
    beforeAll(() => {
      prev = getThreads();
      setThreads(t);
    });
    afterAll(() => {
      setThreads(prev);
    });
    fn(t);
  });
}

/** Runs fn with the thread count set to n, restoring the previous count afterwards. */
export function withThreads<T>(n: number, fn: () => T): T {
  const prev = getThreads();
  setThreads(n);
  try {
    return fn();
  } finally {
    setThreads(prev);
  }
}

/** Runs fn and asserts the kernel counter `${op}:${isa}` increased, i.e. the forced path really ran. */
export function expectKernelRan<T>(op: string, isa: Isa, fn: () => T): T {
  const key = `${op}:${isa}`;
  const before = kernelCounters()[key] ?? 0;
  const result = fn();
  const counters = kernelCounters();
  const after = counters[key] ?? 0;
  const ran = Object.keys(counters).filter((k) => k.startsWith(`${op}:`)).map((k) => `${k}=${counters[k]}`).join(', ');
  expect(after, `counter ${key} did not increase (before ${before}, after ${after}; ${op} counters: ${ran || 'none'})`).toBeGreaterThan(before);
  return result;
}

export async function expectKernelRanAsync<T>(op: string, isa: Isa, fn: () => Promise<T>): Promise<T> {
  const key = `${op}:${isa}`;
  const before = kernelCounters()[key] ?? 0;
  const result = await fn();
  const after = kernelCounters()[key] ?? 0;
  expect(after, `counter ${key} did not increase (before ${before}, after ${after})`).toBeGreaterThan(before);
  return result;
}

/** Exposes the garbage collector when the process was not started with --expose-gc. */
export function getGc(): (() => void) | null {
  const g = (globalThis as { gc?: () => void }).gc;
  if (typeof g === 'function') return g;
  try {
    v8.setFlagsFromString('--expose-gc');
    const fn = vm.runInNewContext('gc') as unknown;
    return typeof fn === 'function' ? (fn as () => void) : null;
  } catch {
    return null;
  }
}

