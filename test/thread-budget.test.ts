/**
 * Thread pools are per JS thread: setThreads in a worker_thread leaves the main thread's count alone and vice
 * versa, two workers running GEMMs at once keep their own settings, results equal the single-threaded ones, and
 * pools of exited workers are freed (their OS threads joined).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { getThreads, setThreads } from '../src/index';
import { native } from '../src/native';
import { expectSameFloats } from './helpers/harness';
import { TestRng } from './helpers/reference';

const ADDON = process.env.CHIMERA_ADDON ? path.resolve(process.env.CHIMERA_ADDON) : path.resolve(__dirname, '..', 'build', 'Release', 'chimera.node');
const M = 96;
const N = 256;
const K = 384;

// Worker body: sets its thread count, then on each message runs `reps` GEMMs and reports its count after each.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const nb = require(workerData.addon);
const before = nb.getThreads();
if (workerData.threads) nb.setThreads(workerData.threads);
parentPort.postMessage({ type: 'ready', before, after: nb.getThreads() });
parentPort.on('message', (m) => {
  if (m.type === 'get') return parentPort.postMessage({ type: 'threads', threads: nb.getThreads() });
  const a = new Float32Array(m.a), b = new Float32Array(m.b);
  const c = new Float32Array(${M * N});
  const seen = [];
  for (let i = 0; i < m.reps; i++) {
    nb.sgemm(a, b, ${M}, ${N}, ${K}, false, false, 1, 0, c, false);
    seen.push(nb.getThreads());
  }
  parentPort.postMessage({ type: 'done', seen, c: Array.from(c) });
});
`;

interface Msg {
  type: string;
  [k: string]: unknown;
}

function start(threads: number | null): { w: Worker; next: () => Promise<Msg> } {
  const w = new Worker(WORKER, { eval: true, workerData: { addon: ADDON, threads } });
  const queue: Msg[] = [];
  const waiters: ((m: Msg) => void)[] = [];
  w.on('message', (m: Msg) => (waiters.length ? waiters.shift()!(m) : queue.push(m)));
  w.on('error', (e) => {
    throw e;
  });
  return { w, next: () => (queue.length ? Promise.resolve(queue.shift()!) : new Promise((res) => waiters.push(res))) };
}

function osThreads(): number {
  return fs.readdirSync('/proc/self/task').length;
}

describe('per-thread pools', () => {
  const rng = new TestRng(7);
  const a = rng.normalArray(M * K);
  const b = rng.normalArray(K * N);
  const prev = getThreads();
  afterAll(() => setThreads(prev));

  /** The single-threaded result on the main thread. */
  const reference = (): Float32Array => {
    const keep = getThreads();
    setThreads(1);
    const c = new Float32Array(M * N);
    native().sgemm(a, b, M, N, K, false, false, 1, 0, c, false);
    setThreads(keep);
    return c;
  };

  it('setThreads in a worker does not change the main thread, nor the other way round', async () => {
    setThreads(2);
    const x = start(1);
    const ready = await x.next();
    expect(ready.after).toBe(1);
    expect(getThreads()).toBe(2);
    setThreads(3);
    x.w.postMessage({ type: 'get' });
    expect((await x.next()).threads).toBe(1);
    await x.w.terminate();
    // a fresh worker starts from the default, whatever the main thread set
    const y = start(null);
    const r = await y.next();
    expect(r.before).toBe(r.after);
    expect(r.before).not.toBe(3);
    await y.w.terminate();
  });

  it('two workers running GEMMs at once keep their own counts; results equal the single-threaded result', async () => {
    const ref = reference();
    setThreads(2);
    const w1 = start(1);
    const w2 = start(2);
    await Promise.all([w1.next(), w2.next()]);
    const reps = 40;
    w1.w.postMessage({ type: 'gemm', a: Array.from(a), b: Array.from(b), reps });
    w2.w.postMessage({ type: 'gemm', a: Array.from(a), b: Array.from(b), reps });
    // the main thread changes its own count meanwhile
    setThreads(1);
    const [d1, d2] = await Promise.all([w1.next(), w2.next()]);
    expect(new Set(d1.seen as number[])).toEqual(new Set([1]));
    expect(new Set(d2.seen as number[])).toEqual(new Set([2]));
    expectSameFloats(Float32Array.from(d1.c as number[]), ref, 'worker with 1 thread');
    expectSameFloats(Float32Array.from(d2.c as number[]), ref, 'worker with 2 threads');
    expect(getThreads()).toBe(1);
    await Promise.all([w1.w.terminate(), w2.w.terminate()]);
  });

  it('async GEMMs run on the issuing thread and give the single-threaded result', async () => {
    const ref = reference();
    setThreads(2);
    const c = new Float32Array(M * N);
    await native().sgemm(a, b, M, N, K, false, false, 1, 0, c, true);
    expectSameFloats(c, ref, 'async with 2 threads');
    expect(getThreads()).toBe(2);
  });

  it("exited workers' pools are freed: no OS threads left behind", async () => {
    const cycle = async () => {
      const x = start(3); // two pool workers per Translator-like thread
      await x.next();
      x.w.postMessage({ type: 'gemm', a: Array.from(a), b: Array.from(b), reps: 2 });
      await x.next();
      await x.w.terminate();
    };
    await cycle(); // warm: lazily started runtime threads exist from here on
    const base = osThreads();
    for (let i = 0; i < 12; i++) await cycle();
    // Thread exit is asynchronous after terminate(); allow a moment, then expect the baseline (+1 for a straggler).
    for (let i = 0; i < 50 && osThreads() > base; i++) await new Promise((r) => setTimeout(r, 20));
    expect(osThreads()).toBeLessThanOrEqual(base + 1);
  });
});
