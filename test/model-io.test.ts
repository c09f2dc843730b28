/**
 * Model I/O: the safetensors reader against hostile and broken files, F16/BF16 conversion, sharded sets,
 * config refusals, the weight loader, and make-model round trips. The independent reader in
 * helpers/safetensors-mini.ts cross-checks what our writer produces.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ChimeraError } from '../src/errors';
import { parseMarianConfig, readMarianConfig } from '../src/model/config';
import { makeModel } from '../src/model/make-model';
import {
  floatToBf16, floatToHalf, halfToFloat, readIntTensor, readIntTensors, readSafetensors, readSafetensorsHeader,
  writeSafetensors, type WritableTensor,
} from '../src/model/safetensors';
import { MarianTokenizer } from '../src/model/tokenizer';
import { loadMarianWeights, marianTensorNames } from '../src/model/weights';
import { readSafetensors as miniRead, getF32 } from './helpers/safetensors-mini';

const SHARED = '/work/shared/models/marian-m30k-en-de';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'chimera-model-io-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const tmpFile = (name: string) => path.join(tmp, `${counter++}-${name}`);
const tmpDir = (name: string) => {
  const d = path.join(tmp, `${counter++}-${name}`);
  fs.mkdirSync(d, { recursive: true });
  return d;
};

/** Asserts that f throws a ChimeraError with `code` whose message contains every one of `parts`. */
function expectError(f: () => unknown, code: string, ...parts: string[]): ChimeraError {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code} containing ${parts.join(' / ')}`).toBeInstanceOf(ChimeraError);
  const ce = err as ChimeraError;
  expect(ce.code, ce.message).toBe(code);
  for (const p of parts) expect(ce.message).toContain(p);
  return ce;
}

/** A raw safetensors file: 8-byte length (or `len`), header text, data. */
function rawFile(name: string, header: unknown, data: Uint8Array = new Uint8Array(0), len?: bigint): string {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const h = Buffer.from(text, 'utf8');
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(len ?? BigInt(h.length));
  const file = tmpFile(name);
  fs.writeFileSync(file, Buffer.concat([head, h, data]));
  return file;
}

const sameBits = (a: Float32Array, b: Float32Array) =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

const f32Entry = (shape: number[], begin: number, end: number) => ({ dtype: 'F32', shape, data_offsets: [begin, end] });

describe('safetensors: hostile and broken files', () => {
  it('file shorter than 8 bytes', () => {
    const f = tmpFile('short.safetensors');
    fs.writeFileSync(f, Buffer.from([1, 2, 3, 4, 5]));
    expectError(() => readSafetensors(f), 'E_MODEL', f, '5 bytes', 'shorter than');
    const empty = tmpFile('empty.safetensors');
    fs.writeFileSync(empty, '');
    expectError(() => readSafetensors(empty), 'E_MODEL', empty, '0 bytes');
  });

  it('missing file', () => {
    const f = path.join(tmp, 'nope.safetensors');
    expectError(() => readSafetensors(f), 'E_MODEL', f, 'not found');
  });

  it('header length past the end, or absurd', () => {
    const past = rawFile('past.safetensors', '{}', new Uint8Array(4), 1000n);
    expectError(() => readSafetensors(past), 'E_MODEL', past, 'header length 1000', 'past the end');
    const absurd = rawFile('absurd.safetensors', '{}', new Uint8Array(0), 1n << 62n);
    expectError(() => readSafetensors(absurd), 'E_MODEL', absurd, 'absurd');
    const max = rawFile('max.safetensors', '{}', new Uint8Array(0), 0xffffffffffffffffn);
    expectError(() => readSafetensors(max), 'E_MODEL', max, 'absurd');
    const justOver = rawFile('over.safetensors', '{}', new Uint8Array(0), BigInt(100 * 1024 * 1024 + 1));
    expectError(() => readSafetensors(justOver), 'E_MODEL', 'absurd');
  });

  it('header not JSON, or not an object', () => {
    const f = rawFile('notjson.safetensors', '{"a": ');
    expectError(() => readSafetensors(f), 'E_MODEL', f, 'not valid JSON');
    const bin = rawFile('binary.safetensors', '\u0000\u0001garbage');
    expectError(() => readSafetensors(bin), 'E_MODEL', 'not valid JSON');
    for (const h of ['[]', 'null', '"text"', '42']) {
      const g = rawFile('notobj.safetensors', h);
      expectError(() => readSafetensors(g), 'E_MODEL', g, 'not a JSON object');
    }
  });

  it('entries missing dtype, shape or data_offsets', () => {
    const data = new Uint8Array(8);
    const cases: [Record<string, unknown>, string][] = [
      [{ shape: [2], data_offsets: [0, 8] }, 'missing dtype'],
      [{ dtype: 'F32', data_offsets: [0, 8] }, 'missing shape'],
      [{ dtype: 'F32', shape: [2] }, 'missing data_offsets'],
    ];
    for (const [entry, msg] of cases) {
      const f = rawFile('missing.safetensors', { w: entry }, data);
      expectError(() => readSafetensors(f), 'E_MODEL', f, "tensor 'w'", msg);
    }
    const notObj = rawFile('entry.safetensors', { w: [1, 2] }, data);
    expectError(() => readSafetensors(notObj), 'E_MODEL', "tensor 'w'", 'not an object');
    const badShape = rawFile('shape.safetensors', { w: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, data);
    expectError(() => readSafetensors(badShape), 'E_MODEL', 'shape [-2]');
    const fracShape = rawFile('shape2.safetensors', { w: { dtype: 'F32', shape: [1.5], data_offsets: [0, 8] } }, data);
    expectError(() => readSafetensors(fracShape), 'E_MODEL', 'shape');
    const badOffs = rawFile('offs.safetensors', { w: { dtype: 'F32', shape: [2], data_offsets: [0] } }, data);
    expectError(() => readSafetensors(badOffs), 'E_MODEL', 'data_offsets [0]', 'pair');
    const badMeta = rawFile('meta.safetensors', { __metadata__: 'x' }, data);
    expectError(() => readSafetensors(badMeta), 'E_MODEL', '__metadata__');
  });

  it('unknown and unsupported dtypes', () => {
    const unknown = rawFile('f33.safetensors', { w: { dtype: 'F33', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8));
    expectError(() => readSafetensors(unknown), 'E_MODEL', unknown, 'unknown dtype "F33"');
    const f64 = rawFile('f64.safetensors', { w: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8));
    expectError(() => readSafetensors(f64), 'E_MODEL', f64, "tensor 'w'", 'unsupported dtype F64', 'F32, F16, BF16');
    const i64 = rawFile('i64.safetensors', { w: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8));
    expectError(() => readSafetensors(i64), 'E_MODEL', 'unsupported dtype I64');
    expectError(() => readIntTensors(f64), 'E_MODEL', 'unsupported dtype F64', 'I64');
    // A tensor that the filter leaves out is not converted, so its dtype does not matter.
    const mixed = rawFile('mixed.safetensors', { a: f32Entry([1], 0, 4), b: { dtype: 'F64', shape: [1], data_offsets: [4, 12] } }, new Uint8Array(12));
    expect([...readSafetensors(mixed, ['a']).keys()]).toEqual(['a']);
  });

  it('offsets out of range', () => {
    const end = rawFile('end.safetensors', { w: f32Entry([4], 0, 16) }, new Uint8Array(8));
    expectError(() => readSafetensors(end), 'E_MODEL', end, "tensor 'w'", 'data_offsets [0, 16] out of range', '8 bytes');
    const rev = rawFile('rev.safetensors', { w: f32Entry([0], 8, 4) }, new Uint8Array(8));
    expectError(() => readSafetensors(rev), 'E_MODEL', 'out of range');
    const huge = rawFile('huge.safetensors', { w: f32Entry([2], 2 ** 53, 2 ** 53 + 8) }, new Uint8Array(8));
    expectError(() => readSafetensors(huge), 'E_MODEL', "tensor 'w'");
  });

  it('offsets not matching shape x dtype size', () => {
    const f = rawFile('size.safetensors', { w: f32Entry([3], 0, 8) }, new Uint8Array(8));
    expectError(() => readSafetensors(f), 'E_MODEL', f, "tensor 'w'", 'span 8 bytes', 'shape [3] x F32 needs 12');
    const bf = rawFile('size2.safetensors', { w: { dtype: 'BF16', shape: [2, 2], data_offsets: [0, 4] } }, new Uint8Array(8));
    expectError(() => readSafetensors(bf), 'E_MODEL', 'needs 8');
    // A shape whose element count overflows is caught by the same check.
    const big = rawFile('size3.safetensors', { w: f32Entry([2 ** 40, 2 ** 40], 0, 8) }, new Uint8Array(8));
    expectError(() => readSafetensors(big), 'E_MODEL', "tensor 'w'");
  });

  it('overlapping tensors', () => {
    const f = rawFile('overlap.safetensors', { a: f32Entry([2], 0, 8), b: f32Entry([2], 4, 12) }, new Uint8Array(12));
    expectError(() => readSafetensors(f), 'E_MODEL', f, "'a'", "'b'", 'overlap');
    const same = rawFile('alias.safetensors', { a: f32Entry([2], 0, 8), b: f32Entry([2], 0, 8) }, new Uint8Array(8));
    expectError(() => readSafetensors(same), 'E_MODEL', 'overlap');
    // Zero-size tensors take no bytes and overlap nothing.
    const empty = rawFile('zero.safetensors', { a: f32Entry([2], 0, 8), z: f32Entry([0], 4, 4) }, new Uint8Array(8));
    expect(readSafetensors(empty).get('z')!.data.length).toBe(0);
  });

  it('errors never leak as non-ChimeraErrors on random garbage', () => {
    let seed = 12345;
    const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
    for (let i = 0; i < 50; i++) {
      const n = next() % 64;
      const bytes = Buffer.alloc(n);
      for (let j = 0; j < n; j++) bytes[j] = next() & 0xff;
      if (n >= 8) bytes.writeBigUInt64LE(BigInt(next() % 80), 0);
      const f = tmpFile('garbage.safetensors');
      fs.writeFileSync(f, bytes);
      try {
        readSafetensors(f);
      } catch (e) {
        expect(e).toBeInstanceOf(ChimeraError);
        expect((e as ChimeraError).code).toBe('E_MODEL');
      }
    }
  });
});

describe('safetensors: writing and dtype conversion', () => {
  it('header is padded with spaces to a multiple of 8 and the reader agrees with an independent one', () => {
    for (const name of ['w', 'ww', 'www', 'wwww', 'weight.long.name']) {
      const f = tmpFile('pad.safetensors');
      const data = Float32Array.from([1.5, -2, 3.25]);
      writeSafetensors(f, { [name]: { dtype: 'F32', shape: [3], data } }, { format: 'pt' });
      const buf = fs.readFileSync(f);
      const n = Number(buf.readBigUInt64LE(0));
      expect(n % 8).toBe(0);
      const text = buf.toString('utf8', 8, 8 + n);
      expect(text.trimEnd()).toBe(text.replace(/ +$/, ''));
      expect(JSON.parse(text).__metadata__).toEqual({ format: 'pt' });
      expect(Array.from(readSafetensors(f).get(name)!.data)).toEqual([1.5, -2, 3.25]);
      expect(Array.from(getF32(miniRead(f), name))).toEqual([1.5, -2, 3.25]);
      expect(readSafetensorsHeader(f).metadata.format).toBe('pt');
    }
  });

  it('F32 round trip is exact, for many tensors', () => {
    const f = tmpFile('f32.safetensors');
    const tensors: Record<string, WritableTensor> = {};
    for (let i = 0; i < 20; i++) tensors[`t${i}`] = { dtype: 'F32', shape: [i % 3 + 1, 5], data: Float32Array.from({ length: (i % 3 + 1) * 5 }, (_, j) => Math.fround(Math.sin(i * 31 + j) * 1e3)) };
    writeSafetensors(f, tensors);
    const back = readSafetensors(f);
    for (const [k, t] of Object.entries(tensors)) {
      expect(back.get(k)!.shape).toEqual(t.shape);
      expect(Array.from(back.get(k)!.data)).toEqual(Array.from(t.data as Float32Array));
    }
    const some = readSafetensors(f, (n) => n.endsWith('7'));
    expect([...some.keys()].sort()).toEqual(['t17', 't7']);
  });

  it('F16: exact bit patterns, round to nearest even, subnormals, overflow, NaN', () => {
    const cases: [number, number][] = [
      [1, 0x3c00], [-2, 0xc000], [0.5, 0x3800], [65504, 0x7bff], [65519, 0x7bff], [65520, 0x7c00], [1e6, 0x7c00],
      [-Infinity, 0xfc00], [-0, 0x8000], [0, 0],
      [1 + 2 ** -11, 0x3c00], // tie between 1 and 1 + 2^-10: even (1)
      [1 + 3 * 2 ** -11, 0x3c02], // tie: even mantissa 2
      [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // tie with 0: even
      [3 * 2 ** -25, 0x0002], // tie between 1 and 2 subnormal units: even
      [2 ** -26, 0x0000],
      [2 ** -14 - 2 ** -25, 0x0400], // rounds up from the largest subnormal into the smallest normal
    ];
    for (const [x, bits] of cases) expect(floatToHalf(x), `floatToHalf(${x})`).toBe(bits);
    expect(floatToHalf(NaN) & 0x7c00).toBe(0x7c00);
    expect(floatToHalf(NaN) & 0x3ff).not.toBe(0);
    for (const [, bits] of cases) expect(halfToFloat(floatToHalf(halfToFloat(bits)))).toBe(halfToFloat(bits));

    const f = tmpFile('f16.safetensors');
    const data = Float32Array.from(cases.map(([x]) => x).concat([NaN]));
    writeSafetensors(f, { h: { dtype: 'F16', shape: [data.length], data } });
    const header = readSafetensorsHeader(f).tensors.get('h')!;
    expect(header.dtype).toBe('F16');
    const raw = fs.readFileSync(f).subarray(header.begin, header.end);
    for (let i = 0; i < cases.length; i++) expect(raw.readUInt16LE(2 * i)).toBe(cases[i][1]);
    const back = readSafetensors(f).get('h')!;
    expect(back.dtype).toBe('F16');
    for (let i = 0; i < cases.length; i++) expect(Object.is(back.data[i], halfToFloat(cases[i][1])) || back.data[i] === halfToFloat(cases[i][1])).toBe(true);
    expect(Number.isNaN(back.data[cases.length])).toBe(true);
  });

  it('F16 round trip keeps relative error within 2^-11 over the normal range', () => {
    const n = 10000;
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = Math.fround((i % 2 ? -1 : 1) * Math.exp(((i * 7919) % n) / n * 20 - 9));
    const f = tmpFile('f16r.safetensors');
    writeSafetensors(f, { x: { dtype: 'F16', shape: [100, 100], data } });
    const back = readSafetensors(f).get('x')!;
    expect(back.shape).toEqual([100, 100]);
    for (let i = 0; i < n; i++) expect(Math.abs(back.data[i] - data[i])).toBeLessThanOrEqual(Math.abs(data[i]) * 2 ** -11);
  });

  it('BF16: rounding to nearest even matches a manual bit conversion', () => {
    const view = new DataView(new ArrayBuffer(4));
    const manual = (x: number): number => {
      view.setFloat32(0, x);
      const bits = view.getUint32(0);
      let hi = bits >>> 16;
      const lo = bits & 0xffff;
      if (lo > 0x8000 || (lo === 0x8000 && (hi & 1) === 1)) hi = (hi + 1) & 0xffff;
      return hi;
    };
    const fromBits = (hi: number): number => {
      view.setUint32(0, hi << 16);
      return view.getFloat32(0);
    };
    const xs: number[] = [1, -1, 0, -0, 3.14159, 1e-40, -1e38, 3.4e38, Infinity, -Infinity, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20];
    for (let i = 0; i < 2000; i++) xs.push(Math.fround(Math.sin(i * 1.7) * 10 ** ((i % 40) - 20)));
    expect(floatToBf16(1 + 2 ** -8)).toBe(0x3f80); // tie to even (down)
    expect(floatToBf16(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie to even (up)
    expect(floatToBf16(3.4e38)).toBe(0x7f80); // rounds up to +Inf, as IEEE rounding does
    const data = Float32Array.from(xs);
    for (let i = 0; i < data.length; i++) expect(floatToBf16(data[i]), `x = ${data[i]}`).toBe(manual(data[i]));
    const f = tmpFile('bf16.safetensors');
    writeSafetensors(f, { b: { dtype: 'BF16', shape: [data.length], data }, nan: { dtype: 'BF16', shape: [1], data: Float32Array.of(NaN) } });
    const back = readSafetensors(f);
    const b = back.get('b')!;
    expect(b.dtype).toBe('BF16');
    for (let i = 0; i < data.length; i++) expect(b.data[i]).toBe(fromBits(manual(data[i])));
    expect(Number.isNaN(back.get('nan')!.data[0])).toBe(true);
  });

  it('integer tensors: I64, I32, I16, I8, U8; unsafe I64 refused', () => {
    const f = tmpFile('ints.safetensors');
    writeSafetensors(f, {
      a: { dtype: 'I64', shape: [3], data: [0, -5, 2 ** 40] },
      b: { dtype: 'I32', shape: [2], data: [-2147483648, 7] },
      c: { dtype: 'I16', shape: [1], data: [-300] },
      d: { dtype: 'I8', shape: [1], data: [-7] },
      e: { dtype: 'U8', shape: [1], data: [200] },
      x: { dtype: 'F32', shape: [1], data: Float32Array.of(1) },
    });
    const ints = readIntTensors(f, (n) => n !== 'x');
    expect(ints.get('a')!.data).toEqual([0, -5, 2 ** 40]);
    expect(ints.get('b')!.data).toEqual([-2147483648, 7]);
    expect(ints.get('c')!.data).toEqual([-300]);
    expect(ints.get('d')!.data).toEqual([-7]);
    expect(ints.get('e')!.data).toEqual([200]);
    expect(readIntTensor(f, 'a').shape).toEqual([3]);
    expectError(() => readIntTensor(f, 'zz'), 'E_MODEL', "no tensor named 'zz'");

    const data = new Uint8Array(8);
    new DataView(data.buffer).setBigInt64(0, 1n << 60n, true);
    const unsafe = rawFile('unsafe.safetensors', { big: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, data);
    expectError(() => readIntTensors(unsafe), 'E_MODEL', "tensor 'big'", 'not a safe JavaScript integer');
  });

  it('writer refuses inconsistent input', () => {
    const f = tmpFile('bad.safetensors');
    expectError(() => writeSafetensors(f, { w: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }), 'E_SHAPE', "'w'");
    expectError(() => writeSafetensors(f, { w: { dtype: 'X' as 'F32', shape: [1], data: new Float32Array(1) } }), 'E_ARG', 'dtype');
    expectError(() => writeSafetensors(f, { w: { dtype: 'I32', shape: [1], data: [1.5] } }), 'E_ARG', '1.5');
  });
});

describe('safetensors: sharded sets', () => {
  const shardDir = () => {
    const dir = tmpDir('sharded');
    writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), {
      a: { dtype: 'F32', shape: [2], data: Float32Array.of(1, 2) },
      b: { dtype: 'BF16', shape: [1], data: Float32Array.of(3) },
    });
    writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), { c: { dtype: 'F16', shape: [2], data: Float32Array.of(4, 5) } });
    const index = { metadata: { total_size: 14 }, weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00001-of-00002.safetensors', c: 'model-00002-of-00002.safetensors' } };
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
    return { dir, index };
  };

  it('loads every shard through the directory or the index file, with a filter', () => {
    const { dir } = shardDir();
    for (const p of [dir, path.join(dir, 'model.safetensors.index.json')]) {
      const t = readSafetensors(p);
      expect([...t.keys()].sort()).toEqual(['a', 'b', 'c']);
      expect(Array.from(t.get('a')!.data)).toEqual([1, 2]);
      expect(Array.from(t.get('b')!.data)).toEqual([3]);
      expect(Array.from(t.get('c')!.data)).toEqual([4, 5]);
    }
    expect([...readSafetensors(dir, ['c']).keys()]).toEqual(['c']);
  });

  it('a shard listed in the index is missing', () => {
    const { dir } = shardDir();
    fs.rmSync(path.join(dir, 'model-00002-of-00002.safetensors'));
    expectError(() => readSafetensors(dir), 'E_MODEL', 'model.safetensors.index.json', "shard 'model-00002-of-00002.safetensors'", 'missing');
  });

  it('duplicate names across shards', () => {
    const { dir, index } = shardDir();
    writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), {
      c: { dtype: 'F16', shape: [2], data: Float32Array.of(4, 5) },
      a: { dtype: 'F32', shape: [2], data: Float32Array.of(9, 9) },
    });
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
    expectError(() => readSafetensors(dir), 'E_MODEL', "tensor 'a'", 'also appears in', 'model-00001-of-00002.safetensors');
  });

  it('index problems: not JSON, no weight_map, paths outside the directory, tensor not in its shard', () => {
    const { dir, index } = shardDir();
    const idx = path.join(dir, 'model.safetensors.index.json');
    fs.writeFileSync(idx, '{ nope');
    expectError(() => readSafetensors(dir), 'E_MODEL', idx, 'not valid JSON');
    fs.writeFileSync(idx, JSON.stringify({ metadata: {} }));
    expectError(() => readSafetensors(dir), 'E_MODEL', 'no weight_map');
    fs.writeFileSync(idx, JSON.stringify({ weight_map: { a: '../../etc/passwd' } }));
    expectError(() => readSafetensors(dir), 'E_MODEL', 'invalid shard', 'passwd');
    fs.writeFileSync(idx, JSON.stringify({ weight_map: { a: 7 } }));
    expectError(() => readSafetensors(dir), 'E_MODEL', 'invalid shard');
    fs.writeFileSync(idx, JSON.stringify({ weight_map: { ...index.weight_map, c: 'model-00001-of-00002.safetensors' } }));
    expectError(() => readSafetensors(dir), 'E_MODEL', "tensor 'c'", 'not there');
  });

  it('a directory with no weights', () => {
    const dir = tmpDir('noweights');
    expectError(() => readSafetensors(dir), 'E_MODEL', dir, 'no model.safetensors');
  });
});

// ------------------------------------------------------------------------------------------------- config

const BASE_CONFIG = {
  architectures: ['MarianMTModel'], model_type: 'marian', vocab_size: 100, d_model: 16, encoder_layers: 1, decoder_layers: 1,
  encoder_attention_heads: 2, decoder_attention_heads: 2, encoder_ffn_dim: 32, decoder_ffn_dim: 32, activation_function: 'swish',
  max_position_embeddings: 32, scale_embedding: true, normalize_before: false, normalize_embedding: false,
  static_position_embeddings: true, share_encoder_decoder_embeddings: true, tie_word_embeddings: true, pad_token_id: 99,
  eos_token_id: 0, decoder_start_token_id: 99, forced_eos_token_id: 0, bad_words_ids: [[99]], num_beams: 4, max_length: 30,
};

describe('config', () => {
  it.skipIf(!fs.existsSync(SHARED))('reads the shared model config', () => {
    const c = readMarianConfig(SHARED);
    expect(c).toMatchObject({
      vocabSize: 8001, dModel: 128, encoderLayers: 3, decoderLayers: 3, encoderHeads: 4, decoderHeads: 4, encoderFfn: 512,
      decoderFfn: 512, activation: 'swish', maxPositions: 256, scaleEmbedding: true, padId: 8000, eosId: 0, decoderStartId: 8000,
      forcedEosId: 0, badWordsIds: [[8000]], numBeams: 4, maxLength: 128, normalizeBefore: false, normalizeEmbedding: false,
      staticPositionEmbeddings: true, shareEmbeddings: true, tieWordEmbeddings: true,
    });
  });

  it('generation_config.json overrides config.json; defaults when fields are absent', () => {
    const dir = tmpDir('gen');
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(BASE_CONFIG));
    fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ num_beams: 2, max_length: 20, bad_words_ids: [[99], [5, 6]] }));
    const c = readMarianConfig(dir);
    expect(c.numBeams).toBe(2);
    expect(c.maxLength).toBe(20);
    expect(c.badWordsIds).toEqual([[99], [5, 6]]);
    const { num_beams, max_length, bad_words_ids, forced_eos_token_id, decoder_start_token_id, static_position_embeddings, ...rest } = BASE_CONFIG;
    void [num_beams, max_length, bad_words_ids, forced_eos_token_id, decoder_start_token_id, static_position_embeddings];
    const d = parseMarianConfig(rest);
    expect(d).toMatchObject({ numBeams: 1, maxLength: 32, badWordsIds: [[99]], forcedEosId: null, decoderStartId: 99, staticPositionEmbeddings: true });
  });

  it('missing or broken config.json', () => {
    const dir = tmpDir('nocfg');
    expectError(() => readMarianConfig(dir), 'E_MODEL', path.join(dir, 'config.json'), 'cannot read');
    fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": ');
    expectError(() => readMarianConfig(dir), 'E_MODEL', 'not valid JSON');
    fs.writeFileSync(path.join(dir, 'config.json'), '[1]');
    expectError(() => readMarianConfig(dir), 'E_MODEL', 'not a JSON object');
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(BASE_CONFIG));
    fs.writeFileSync(path.join(dir, 'generation_config.json'), 'nope');
    expectError(() => readMarianConfig(dir), 'E_MODEL', 'generation_config.json', 'not valid JSON');
  });

  const refusals: [string, Record<string, unknown>, string[]][] = [
    ['model_type', { model_type: 'bart' }, ['model_type', 'marian']],
    ['model_type absent', { model_type: undefined }, ['model_type']],
    ['architectures', { architectures: ['MarianForCausalLM'] }, ['architectures']],
    ['normalize_before', { normalize_before: true }, ['normalize_before', 'post-LN']],
    ['normalize_embedding', { normalize_embedding: true }, ['normalize_embedding']],
    ['static_position_embeddings', { static_position_embeddings: false }, ['static_position_embeddings', 'sinusoidal']],
    ['add_bias_logits', { add_bias_logits: true }, ['add_bias_logits']],
    ['add_final_layer_norm', { add_final_layer_norm: true }, ['add_final_layer_norm']],
    ['separate vocabularies', { share_encoder_decoder_embeddings: false }, ['share_encoder_decoder_embeddings', 'separate']],
    ['decoder_vocab_size', { decoder_vocab_size: 50 }, ['decoder_vocab_size']],
    ['untied LM head', { tie_word_embeddings: false }, ['tie_word_embeddings']],
    ['layer_norm_eps', { layer_norm_eps: 1e-6 }, ['layer_norm_eps']],
    ['non-boolean flag', { scale_embedding: 'yes' }, ['scale_embedding', 'true or false']],
    ['d_model not divisible', { d_model: 15 }, ['encoder_attention_heads', 'does not divide d_model 15']],
    ['decoder heads not divisible', { decoder_attention_heads: 3 }, ['decoder_attention_heads', 'does not divide']],
    ['heads mismatch', { encoder_attention_heads: 4 }, ['decoder_attention_heads', 'differs from encoder_attention_heads']],
    ['zero vocab', { vocab_size: 0 }, ['vocab_size', 'positive integer']],
    ['negative d_model', { d_model: -16 }, ['d_model', 'positive integer']],
    ['fractional layers', { encoder_layers: 1.5 }, ['encoder_layers']],
    ['string ffn', { decoder_ffn_dim: '32' }, ['decoder_ffn_dim']],
    ['missing max_position_embeddings', { max_position_embeddings: undefined }, ['max_position_embeddings', 'missing']],
    ['activation', { activation_function: 'tanh' }, ['activation_function', 'tanh', 'swish']],
    ['pad out of range', { pad_token_id: 100 }, ['pad_token_id', '[0, 100)']],
    ['eos missing', { eos_token_id: undefined }, ['eos_token_id']],
    ['bad words', { bad_words_ids: [[1000]] }, ['bad_words_ids']],
    ['bad words shape', { bad_words_ids: [1, 2] }, ['bad_words_ids']],
    ['num_beams', { num_beams: 0 }, ['num_beams']],
    ['not encoder-decoder', { is_encoder_decoder: false }, ['is_encoder_decoder']],
  ];
  for (const [what, patch, parts] of refusals) {
    it(`refuses: ${what}`, () => {
      const cfg: Record<string, unknown> = { ...BASE_CONFIG, ...patch };
      for (const k of Object.keys(patch)) if (patch[k] === undefined) delete cfg[k];
      expectError(() => parseMarianConfig(cfg), 'E_MODEL', 'config.json', ...parts);
    });
  }
});

// -------------------------------------------------------------------------------------- weights + make-model

describe('weights', () => {
  it.skipIf(!fs.existsSync(SHARED))('loads the shared model and matches an independent reader', () => {
    const config = readMarianConfig(SHARED);
    const w = loadMarianWeights(SHARED, config);
    expect(w.encoder).toHaveLength(3);
    expect(w.decoder).toHaveLength(3);
    expect(w.embed.length).toBe(8001 * 128);
    expect(w.finalLogitsBias.length).toBe(8001);
    const l = w.decoder[2];
    expect([l.fc1.out, l.fc1.in, l.fc2.out, l.fc2.in]).toEqual([512, 128, 128, 512]);
    const mini = miniRead(path.join(SHARED, 'model.safetensors'));
    const embName = ['model.shared.weight', 'model.encoder.embed_tokens.weight', 'model.decoder.embed_tokens.weight', 'lm_head.weight'].find((n) => mini.has(n))!;
    expect(w.embedSource).toBe(embName);
    expect(sameBits(w.embed, getF32(mini, embName))).toBe(true);
    expect(sameBits(l.encoderAttn.v.weight, getF32(mini, 'model.decoder.layers.2.encoder_attn.v_proj.weight'))).toBe(true);
    expect(sameBits(l.encoderAttnLayerNorm.beta, getF32(mini, 'model.decoder.layers.2.encoder_attn_layer_norm.bias'))).toBe(true);
    expect(sameBits(w.encoder[1].selfAttn.out.bias, getF32(mini, 'model.encoder.layers.1.self_attn.out_proj.bias'))).toBe(true);
    expect(sameBits(w.encoder[0].finalLayerNorm.gamma, getF32(mini, 'model.encoder.layers.0.final_layer_norm.weight'))).toBe(true);
    expect(sameBits(w.encoder[0].finalLayerNorm.gamma, w.encoder[0].finalLayerNorm.beta)).toBe(false);
  });

  /** A tiny model directory whose model.safetensors is rewritten by `edit`. */
  const editedTiny = (edit: (t: Record<string, WritableTensor>) => void) => {
    const dir = tmpDir('edited');
    makeModel({ preset: 'tiny', seed: 3, out: dir });
    const file = path.join(dir, 'model.safetensors');
    const t: Record<string, WritableTensor> = {};
    for (const [k, v] of readSafetensors(file)) t[k] = { dtype: 'F32', shape: v.shape, data: v.data };
    edit(t);
    writeSafetensors(file, t);
    return { dir, config: readMarianConfig(dir) };
  };

  it('accepts any tied copy of the embedding, ignores embed_positions, defaults final_logits_bias to zeros', () => {
    for (const name of ['model.encoder.embed_tokens.weight', 'model.decoder.embed_tokens.weight', 'lm_head.weight']) {
      let emb: Float32Array | undefined;
      const { dir, config } = editedTiny((t) => {
        emb = t['model.shared.weight'].data as Float32Array;
        t[name] = t['model.shared.weight'];
        delete t['model.shared.weight'];
        delete t.final_logits_bias;
        t['model.encoder.embed_positions.weight'] = { dtype: 'F32', shape: [3], data: new Float32Array(3) };
      });
      const w = loadMarianWeights(dir, config);
      expect(w.embedSource).toBe(name);
      expect(w.embed).toEqual(emb);
      expect(w.finalLogitsBias).toEqual(new Float32Array(256));
    }
  });

  it('missing tensors are named', () => {
    const { dir, config } = editedTiny((t) => {
      delete t['model.decoder.layers.1.encoder_attn.k_proj.bias'];
    });
    expectError(() => loadMarianWeights(dir, config), 'E_MODEL', "missing tensor 'model.decoder.layers.1.encoder_attn.k_proj.bias'");
    const noEmb = editedTiny((t) => {
      delete t['model.shared.weight'];
    });
    expectError(() => loadMarianWeights(noEmb.dir, noEmb.config), 'E_MODEL', 'no embedding tensor', 'model.shared.weight');
    const many = editedTiny((t) => {
      for (const k of Object.keys(t)) if (k.includes('encoder.layers.1')) delete t[k];
    });
    expectError(() => loadMarianWeights(many.dir, many.config), 'E_MODEL', 'missing tensor', 'more');
  });

  it('shapes are checked against the config', () => {
    const { dir, config } = editedTiny((t) => {
      t['model.encoder.layers.0.fc1.weight'] = { dtype: 'F32', shape: [32, 64], data: new Float32Array(2048) };
    });
    expectError(() => loadMarianWeights(dir, config), 'E_MODEL', "'model.encoder.layers.0.fc1.weight'", 'shape [32, 64]', 'expected [64, 32]');
    const bias = editedTiny((t) => {
      t.final_logits_bias = { dtype: 'F32', shape: [256], data: new Float32Array(256) };
    });
    expectError(() => loadMarianWeights(bias.dir, bias.config), 'E_MODEL', 'final_logits_bias', 'expected [1, 256]');
    // A config with more layers than the checkpoint.
    const deeper = { ...config, encoderLayers: 3 };
    expectError(() => loadMarianWeights(editedTiny(() => {}).dir, deeper), 'E_MODEL', 'model.encoder.layers.2.');
  });

  it('lists the tensor names it reads', () => {
    const names = marianTensorNames(readMarianConfig(makeModel({ preset: 'tiny', out: tmpDir('names') }).dir));
    expect(names).toContain('model.decoder.layers.1.encoder_attn_layer_norm.weight');
    expect(names.length).toBe(1 + 2 * 16 + 2 * 26);
  });
});

describe('make-model', () => {
  it('tiny: loads back with the config, weights and tokenizer loaders', () => {
    const dir = tmpDir('tiny');
    const r = makeModel({ preset: 'tiny', seed: 42, out: dir });
    expect(r.files.sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'vocab.json']);
    const config = readMarianConfig(dir);
    expect(config).toMatchObject({ vocabSize: 256, dModel: 32, encoderLayers: 2, decoderLayers: 2, encoderHeads: 4, encoderFfn: 64, maxPositions: 64, padId: 255, eosId: 0, decoderStartId: 255 });
    const w = loadMarianWeights(dir, config);
    expect(r.params).toBe(countParams(w));
    expect(w.finalLogitsBias.every((v) => v === 0)).toBe(true);
    const g = w.encoder[0].selfAttnLayerNorm.gamma;
    expect(Math.abs(g.reduce((a, b) => a + b, 0) / g.length - 1)).toBeLessThan(0.05);
    const q = w.decoder[1].selfAttn.q.weight;
    const std = Math.sqrt(q.reduce((a, b) => a + b * b, 0) / q.length);
    expect(std).toBeGreaterThan(0.7 / Math.sqrt(32));
    expect(std).toBeLessThan(1.3 / Math.sqrt(32));

    const tj = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
    expect(tj.model.vocab).toHaveLength(256);
    expect([tj.model.vocab[0][0], tj.model.vocab[1][0], tj.model.vocab[255][0]]).toEqual(['</s>', '<unk>', '<pad>']);
    expect(new Set(tj.model.vocab.map((v: [string, number]) => v[0])).size).toBe(256);

    const tok = MarianTokenizer.load(dir);
    expect([tok.vocabSize, tok.eosId, tok.unkId, tok.padId]).toEqual([256, 0, 1, 255]);
    for (const s of ['A man is sitting in front of the house.', 'Two dogs are playing with a red ball!', 'Ein Mann mit einem Hund läuft auf der Straße.', 'Hello, World 42 (test)']) {
      const ids = tok.encode(s);
      expect(ids[ids.length - 1]).toBe(0);
      expect(ids).not.toContain(1);
      expect(tok.decode(ids)).toBe(s);
    }
    expect(tok.encode('the man').map((i) => tok.idToToken(i))).toEqual(['▁the', '▁man', '</s>']);
  });

  it('is deterministic in the seed; F16 / BF16 storage loads close to F32', () => {
    const a = makeModel({ preset: 'tiny', seed: 5, out: tmpDir('a') });
    const b = makeModel({ preset: 'tiny', seed: 5, out: tmpDir('b') });
    const c = makeModel({ preset: 'tiny', seed: 6, out: tmpDir('c') });
    for (const f of a.files) expect(fs.readFileSync(path.join(a.dir, f)).equals(fs.readFileSync(path.join(b.dir, f))), f).toBe(true);
    expect(fs.readFileSync(path.join(a.dir, 'model.safetensors')).equals(fs.readFileSync(path.join(c.dir, 'model.safetensors')))).toBe(false);

    const config = readMarianConfig(a.dir);
    const ref = loadMarianWeights(a.dir, config);
    for (const dtype of ['F16', 'BF16'] as const) {
      const h = makeModel({ preset: 'tiny', seed: 5, out: tmpDir(dtype), dtype });
      expect(readSafetensorsHeader(path.join(h.dir, 'model.safetensors')).tensors.get('model.shared.weight')!.dtype).toBe(dtype);
      const w = loadMarianWeights(h.dir, readMarianConfig(h.dir));
      const tol = dtype === 'F16' ? 2 ** -11 : 2 ** -8;
      const x = w.decoder[0].fc2.weight;
      const y = ref.decoder[0].fc2.weight;
      for (let i = 0; i < x.length; i++) expect(Math.abs(x[i] - y[i])).toBeLessThanOrEqual(Math.abs(y[i]) * tol + 1e-7);
    }
  });

  it('refuses bad options', () => {
    expectError(() => makeModel({ preset: 'huge' as 'tiny', out: tmpDir('x') }), 'E_ARG', 'preset');
    expectError(() => makeModel({ preset: 'tiny', seed: 1.5, out: tmpDir('x') }), 'E_ARG', 'seed');
    expectError(() => makeModel({ preset: 'tiny', out: '' }), 'E_ARG', 'out');
  });
});

function countParams(w: ReturnType<typeof loadMarianWeights>): number {
  let n = w.embed.length + w.finalLogitsBias.length;
  const lin = (l: { weight: Float32Array; bias: Float32Array }) => l.weight.length + l.bias.length;
  const attn = (a: { q: { weight: Float32Array; bias: Float32Array }; k: { weight: Float32Array; bias: Float32Array }; v: { weight: Float32Array; bias: Float32Array }; out: { weight: Float32Array; bias: Float32Array } }) => lin(a.q) + lin(a.k) + lin(a.v) + lin(a.out);
  const norm = (x: { gamma: Float32Array; beta: Float32Array }) => x.gamma.length + x.beta.length;
  for (const l of w.encoder) n += attn(l.selfAttn) + norm(l.selfAttnLayerNorm) + lin(l.fc1) + lin(l.fc2) + norm(l.finalLayerNorm);
  for (const l of w.decoder) n += attn(l.selfAttn) + norm(l.selfAttnLayerNorm) + attn(l.encoderAttn) + norm(l.encoderAttnLayerNorm) + lin(l.fc1) + lin(l.fc2) + norm(l.finalLayerNorm);
  return n;
}
