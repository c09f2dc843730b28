// The hostile-input matrix: every public kernel function x every way an argument can be wrong, generated from
// the tables below (not written case by case). Each case must return normally or throw a ChimeraError with a
// code; anything else (a TypeError, a signal, a use-after-free under ASan) fails. Async entry points are also
// called with their buffers resized, transferred and collected while the promise is pending.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as k from '../src/kernels';
import { ChimeraError } from '../src/errors';
import { MarianModel } from '../src/marian';
import { ROOT } from './helpers/addon-path';

type Kind = 'f32' | 'i8' | 'u8' | 'i32' | 'dim' | 's8handle' | 'f32handle' | 'rows' | 'shape';
interface Slot { name: string; kind: Kind; make: () => unknown }
interface Fn { name: string; slots: Slot[]; call: (a: unknown[]) => unknown; async?: boolean }

const R = 4, N = 8, K = 16;
const f32 = (n: number, v = 0.25) => () => new Float32Array(n).map((_, i) => v * ((i % 7) - 3));
const i8 = (n: number) => () => new Int8Array(n).map((_, i) => (i % 5) - 2);
const u8 = (n: number) => () => new Uint8Array(n).map((_, i) => i % 200);
const dim = (v: number) => () => v;
const W = new Float32Array(N * K).map((_, i) => Math.sin(i));
const P8 = k.packInt8Weights(W, N, K);
const P32 = k.packFp32Weights(W, N, K);

const FNS: Fn[] = [
  { name: 'layerNorm', slots: [{ name: 'x', kind: 'f32', make: f32(R * K) }, { name: 'cols', kind: 'dim', make: dim(K) }, { name: 'gamma', kind: 'f32', make: f32(K, 1) }, { name: 'beta', kind: 'f32', make: f32(K) }],
    call: (a) => k.layerNorm(a[0] as never, a[1] as never, a[2] as never, a[3] as never) },
  { name: 'addLayerNorm', slots: [{ name: 'x', kind: 'f32', make: f32(R * K) }, { name: 'residual', kind: 'f32', make: f32(R * K) }, { name: 'cols', kind: 'dim', make: dim(K) }, { name: 'gamma', kind: 'f32', make: f32(K, 1) }],
    call: (a) => k.addLayerNorm(a[0] as never, a[1] as never, a[2] as never, a[3] as never) },
  { name: 'rmsNorm', slots: [{ name: 'x', kind: 'f32', make: f32(R * K) }, { name: 'cols', kind: 'dim', make: dim(K) }, { name: 'gamma', kind: 'f32', make: f32(K, 1) }],
    call: (a) => k.rmsNorm(a[0] as never, a[1] as never, a[2] as never) },
  { name: 'addRmsNorm', slots: [{ name: 'x', kind: 'f32', make: f32(R * K) }, { name: 'residual', kind: 'f32', make: f32(R * K) }, { name: 'cols', kind: 'dim', make: dim(K) }, { name: 'gamma', kind: 'f32', make: f32(K, 1) }],
    call: (a) => k.addRmsNorm(a[0] as never, a[1] as never, a[2] as never, a[3] as never) },
  { name: 'logSoftmax', slots: [{ name: 'x', kind: 'f32', make: f32(R * K) }, { name: 'cols', kind: 'dim', make: dim(K) }], call: (a) => k.logSoftmax(a[0] as never, a[1] as never) },
  { name: 'topk', slots: [{ name: 'x', kind: 'f32', make: f32(R * K) }, { name: 'rows', kind: 'dim', make: dim(R) }, { name: 'cols', kind: 'dim', make: dim(K) }, { name: 'k', kind: 'dim', make: dim(3) }],
    call: (a) => k.topk(a[0] as never, a[1] as never, a[2] as never, a[3] as never) },
  { name: 'dynamicQuantizeLinear', slots: [{ name: 'x', kind: 'f32', make: f32(R * K) }], call: (a) => k.dynamicQuantizeLinear(a[0] as never) },
  { name: 'quantizeRows', slots: [{ name: 'x', kind: 'f32', make: f32(R * K) }, { name: 'cols', kind: 'dim', make: dim(K) }], call: (a) => k.quantizeRows(a[0] as never, a[1] as never) },
  { name: 'packInt8Weights', slots: [{ name: 'w', kind: 'f32', make: f32(N * K) }, { name: 'out', kind: 'dim', make: dim(N) }, { name: 'in', kind: 'dim', make: dim(K) }],
    call: (a) => k.packInt8Weights(a[0] as never, a[1] as never, a[2] as never) },
  { name: 'packFp32Weights', slots: [{ name: 'w', kind: 'f32', make: f32(N * K) }, { name: 'out', kind: 'dim', make: dim(N) }, { name: 'in', kind: 'dim', make: dim(K) }],
    call: (a) => k.packFp32Weights(a[0] as never, a[1] as never, a[2] as never) },
  ...[false, true].flatMap((async): Fn[] => [
    { name: `linearInt8${async ? 'Async' : ''}`, async, slots: [{ name: 'x', kind: 'f32', make: f32(R * K) }, { name: 'rows', kind: 'dim', make: dim(R) }, { name: 'packed', kind: 's8handle', make: () => P8 }, { name: 'out', kind: 'f32', make: f32(R * N) }],
      call: (a) => (async ? k.linearInt8Async : k.linearInt8)(a[0] as never, a[1] as never, a[2] as never, { out: a[3] as never }) },
    { name: `linear${async ? 'Async' : ''}`, async, slots: [{ name: 'x', kind: 'f32', make: f32(R * K) }, { name: 'rows', kind: 'dim', make: dim(R) }, { name: 'packed', kind: 'f32handle', make: () => P32 }, { name: 'out', kind: 'f32', make: f32(R * N) }],
      call: (a) => (async ? k.linearAsync : k.linear)(a[0] as never, a[1] as never, a[2] as never, { out: a[3] as never }) },
    { name: `sgemm${async ? 'Async' : ''}`, async, slots: [{ name: 'a', kind: 'f32', make: f32(R * K) }, { name: 'aShape', kind: 'shape', make: () => [R, K] }, { name: 'b', kind: 'f32', make: f32(K * N) }, { name: 'bShape', kind: 'shape', make: () => [K, N] }, { name: 'out', kind: 'f32', make: f32(R * N) }],
      call: (a) => (async ? k.sgemmAsync : k.sgemm)(a[0] as never, a[1] as never, a[2] as never, a[3] as never, { out: a[4] as never }) },
    { name: `matmulInteger${async ? 'Async' : ''}`, async, slots: [{ name: 'a', kind: 'u8', make: u8(R * K) }, { name: 'aShape', kind: 'shape', make: () => [R, K] }, { name: 'b', kind: 'i8', make: i8(K * N) }, { name: 'bShape', kind: 'shape', make: () => [K, N] }],
      call: (a) => (async ? k.matmulIntegerAsync : k.matmulInteger)(a[0] as never, a[1] as never, a[2] as never, a[3] as never) },
  ]),
  { name: 'int8GemmAccumulators', slots: [{ name: 'q', kind: 'rows', make: () => k.quantizeRows(f32(R * K)(), K) }, { name: 'packed', kind: 's8handle', make: () => P8 }],
    call: (a) => k.int8GemmAccumulators(a[0] as never, a[1] as never) },
];

/** Ways an argument of each kind can be wrong (or merely unusual). */
function variants(slot: Slot): [string, () => unknown][] {
  const v = slot.make();
  const arrayLike = (a: ArrayBufferView & { length: number }) => {
    const C = a.constructor as new (x: ArrayBufferLike | number) => typeof a;
    const detached = () => { const c = new C(a.length); structuredClone(c.buffer, { transfer: [c.buffer] }); return c; };
    const resizable = () => { const ab = new (ArrayBuffer as any)(a.byteLength, { maxByteLength: a.byteLength * 2 }); const c = new C(ab); (c as any).set(a); return c; };
    const shared = () => { const c = new C(new SharedArrayBuffer(a.byteLength)); (c as any).set(a); return c; };
    const growShared = () => { const c = new C(new (SharedArrayBuffer as any)(a.byteLength, { maxByteLength: a.byteLength * 2 })); (c as any).set(a); return c; };
    const other: [string, () => unknown][] = [
      ['wrong dtype Float64Array', () => new Float64Array(a.length)], ['wrong dtype Int32Array', () => new Int32Array(a.length)],
      ['wrong dtype Uint8ClampedArray', () => new Uint8ClampedArray(a.length)], ['plain array', () => Array.from(a as any)],
      ['length + 1', () => new C(a.length + 1)], ['length - 1', () => new C(Math.max(0, a.length - 1))], ['empty', () => new C(0)],
      ['detached', detached], ['resizable', resizable], ['resizable shrunk to 0', () => { const c = resizable(); (c.buffer as any).resize(0); return c; }],
      ['shared', shared], ['growable shared', growShared],
      ['Object.create(prototype)', () => Object.create(Object.getPrototypeOf(a))], ['Proxy', () => new Proxy(new C(a.length), {})],
      ['null', () => null], ['string', () => 'x'], ['subarray view at an odd offset', () => new C(a.length + 1).subarray(1)],
    ];
    if (a instanceof Float32Array)
      other.push(['NaN', () => new Float32Array(a.length).fill(NaN)], ['Infinity', () => new Float32Array(a.length).fill(Infinity)], ['-Infinity mixed', () => (a as Float32Array).map((x, i) => (i % 3 ? x : -Infinity))]);
    return other;
  };
  switch (slot.kind) {
    case 'f32': case 'i8': case 'u8': case 'i32': return arrayLike(v as never);
    case 'dim': return [['negative', () => -1], ['zero', () => 0], ['huge', () => 2 ** 40], ['fractional', () => 1.5], ['NaN', () => NaN], ['Infinity', () => Infinity], ['string', () => '4'], ['off by one', () => (v as number) + 1], ['object with valueOf', () => ({ valueOf: () => v })]];
    case 'shape': return [['negative', () => [-1, (v as number[])[1]]], ['huge', () => [2 ** 31, 2 ** 31]], ['fractional', () => [1.5, (v as number[])[1]]], ['three dims', () => [...(v as number[]), 1]], ['not an array', () => 4], ['NaN', () => [NaN, NaN]]];
    case 's8handle': case 'f32handle': {
      const foreign = slot.kind === 's8handle' ? P32 : P8;
      return [
        ['foreign handle kind', () => foreign], ['plain object', () => ({})], ['null', () => null],
        ['mutated (prototype copy)', () => Object.setPrototypeOf({ ...(v as object), outFeatures: 99999 }, Object.getPrototypeOf(v))],
        ['mutated (fake handle)', () => Object.setPrototypeOf({ handle: {}, outFeatures: N, inFeatures: K, scales: new Float32Array(N), bytes: 0 }, Object.getPrototypeOf(v))],
      ];
    }
    case 'rows': return [['plain object', () => ({})], ['mutated rows', () => Object.setPrototypeOf({ ...(v as object), rows: 1000 }, Object.getPrototypeOf(v))], ['null', () => null]];
  }
}

interface Case { fn: Fn; slot: number; variant: string; make: () => unknown }
const CASES: Case[] = FNS.flatMap((fn) => fn.slots.flatMap((s, slot) => variants(s).map(([variant, make]) => ({ fn, slot, variant, make }))));

async function outcome(c: Case): Promise<string> {
  const args = c.fn.slots.map((s, i) => (i === c.slot ? c.make() : s.make()));
  try {
    await c.fn.call(args);
    return 'ok';
  } catch (e) {
    if (e instanceof ChimeraError && typeof e.code === 'string') return e.code;
    return `NOT A CHIMERA ERROR: ${(e as Error)?.name}: ${(e as Error)?.message}`;
  }
}

describe(`hostile-input matrix (${CASES.length} generated cases)`, () => {
  it('every case returns or throws a ChimeraError with a code', async () => {
    const bad: string[] = [];
    const tally: Record<string, number> = {};
    for (const c of CASES) {
      const o = await outcome(c);
      tally[o.startsWith('NOT') ? 'bad' : o] = (tally[o.startsWith('NOT') ? 'bad' : o] ?? 0) + 1;
      if (o.startsWith('NOT')) bad.push(`${c.fn.name}(${c.fn.slots[c.slot].name}: ${c.variant}) -> ${o}`);
    }
    expect(bad).toEqual([]);
    expect(CASES.length).toBeGreaterThan(300);
    console.log(`hostile matrix: ${CASES.length} cases`, tally);
  });

  // While an async call is pending: every input and the output resized, transferred and collected.
  const ASYNC = FNS.filter((f) => f.async);
  const DURING: [string, (a: ArrayBufferView) => void][] = [
    ['resized to 0', (a) => (a.buffer as any).resizable && (a.buffer as any).resize(0)],
    ['transferred and collected', (a) => { try { structuredClone(a.buffer, { transfer: [a.buffer as ArrayBuffer] }); } catch { /* shared */ } (globalThis as any).gc?.(); }],
    ['overwritten', (a) => (a as Float32Array).fill?.(NaN as never)],
  ];
  const asyncCases = ASYNC.flatMap((fn) => fn.slots.flatMap((s, slot) => (['f32', 'i8', 'u8'].includes(s.kind) ? DURING.map(([what, act]) => ({ fn, slot, what, act })) : [])));
  it(`async calls survive their buffers being changed while pending (${asyncCases.length} cases x 2 sizes)`, async () => {
    const bad: string[] = [];
    for (const { fn, slot, what, act } of asyncCases) {
      for (const big of [false, true]) {
        const args = fn.slots.map((s) => {
          const v = s.make() as ArrayBufferView & { length?: number };
          if (!ArrayBuffer.isView(v)) return v;
          const C = v.constructor as new (b: ArrayBuffer) => ArrayBufferView;
          const ab = new (ArrayBuffer as any)(v.byteLength, { maxByteLength: v.byteLength });
          const c = new C(ab) as any;
          c.set(v as any);
          return c;
        });
        if (big && fn.name === 'sgemmAsync') {
          // large enough that the work is surely still running when the buffers change
          const M = 512, KK = 512, NN = 512;
          args[0] = new Float32Array(new (ArrayBuffer as any)(M * KK * 4, { maxByteLength: M * KK * 4 })).fill(1);
          args[1] = [M, KK];
          args[2] = new Float32Array(new (ArrayBuffer as any)(KK * NN * 4, { maxByteLength: KK * NN * 4 })).fill(1);
          args[3] = [KK, NN];
          args[4] = new Float32Array(new (ArrayBuffer as any)(M * NN * 4, { maxByteLength: M * NN * 4 }));
        }
        let p: Promise<unknown>;
        try {
          p = Promise.resolve(fn.call(args));
        } catch (e) {
          bad.push(`${fn.name}: threw synchronously ${(e as Error).message}`);
          continue;
        }
        act(args[slot] as ArrayBufferView);
        try {
          await p;
        } catch (e) {
          if (!(e instanceof ChimeraError)) bad.push(`${fn.name}(${fn.slots[slot].name} ${what}) -> ${(e as Error)?.name}: ${(e as Error)?.message}`);
        }
      }
    }
    expect(bad).toEqual([]);
  });

  it('an out array transferred while pending: E_ARG, nothing written (the issue\'s repro)', async () => {
    const a = new Float32Array(512 * 512).fill(1), b = new Float32Array(512 * 512).fill(1);
    const out = new Float32Array(512 * 512);
    const p = k.sgemmAsync(a, [512, 512], b, [512, 512], { out });
    structuredClone(out.buffer, { transfer: [out.buffer] });
    (globalThis as any).gc?.();
    await expect(p).rejects.toMatchObject({ code: 'E_ARG' });
    const ab = new (ArrayBuffer as any)(512 * 512 * 4, { maxByteLength: 512 * 512 * 4 });
    const out2 = new Float32Array(ab);
    const p2 = k.linearInt8Async(new Float32Array(512 * K), 512, P8, { out: new Float32Array(512 * N) });
    const p3 = k.sgemmAsync(a, [512, 512], b, [512, 512], { out: out2 });
    ab.resize(0);
    await expect(p3).rejects.toMatchObject({ code: 'E_ARG' });
    await p2;
  });
});

describe('concurrent use from two workers', () => {
  let model: MarianModel;
  beforeAll(async () => {
    model = await MarianModel.load(path.join(ROOT, 'models', 'marian-m30k-en-de'), { precision: 'int8' });
  });
  afterAll(() => undefined);
  it('two workers hammer the same kernels (sync and async) on shared buffers, with hostile calls mixed in', async () => {
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const k = require(${JSON.stringify(path.join(ROOT, 'dist', 'kernels.js'))});
      (async () => {
        const x = new Float32Array(workerData.sab);
        const w = new Float32Array(64 * 32).map((_, i) => Math.cos(i));
        const p8 = k.packInt8Weights(w, 64, 32);
        let errors = 0, nonChimera = 0;
        for (let i = 0; i < 200; i++) {
          k.linearInt8(x.subarray(0, 8 * 32), 8, p8);
          await k.sgemmAsync(x.subarray(0, 32 * 32), [32, 32], x.subarray(0, 32 * 32), [32, 32]);
          for (const bad of [() => k.linearInt8(x, 3, p8), () => k.sgemm(x, [-1, 2], x, [2, 2]), () => k.topk(x, 1, x.length, 0)])
            try { bad(); } catch (e) { if (e.name === 'ChimeraError') errors++; else nonChimera++; }
        }
        parentPort.postMessage({ errors, nonChimera });
      })();`;
    const sab = new SharedArrayBuffer(32 * 32 * 4);
    new Float32Array(sab).fill(0.5);
    const run = () => new Promise<{ errors: number; nonChimera: number }>((resolve, reject) => {
      const wk = new Worker(code, { eval: true, workerData: { sab }, env: process.env });
      wk.once('message', resolve);
      wk.once('error', reject);
      wk.once('exit', (c) => c !== 0 && reject(new Error(`worker exited ${c}`)));
    });
    // the main thread keeps translating meanwhile
    const tok = model.tokenizer!;
    const both = Promise.all([run(), run()]);
    for (let i = 0; i < 5; i++) model.generate([tok.encode('A dog runs.')]);
    const res = await both;
    for (const r of res) {
      expect(r.nonChimera).toBe(0);
      expect(r.errors).toBe(600);
    }
  }, 120_000);
});
