/**
 * A deliberately small safetensors reader for tests, independent of src/model so that the tests do not
 * check the loader against itself. It reads the whole file, parses the JSON header and copies each tensor
 * out as F32 -> Float32Array, I32 -> Int32Array, I64 -> number[] (the values tests use are small ids).
 * Checks are limited to what keeps a test from silently reading garbage.
 */
import { readFileSync } from 'node:fs';

export type MiniTensor =
  | { dtype: 'F32'; shape: number[]; data: Float32Array }
  | { dtype: 'I32'; shape: number[]; data: Int32Array }
  | { dtype: 'I64'; shape: number[]; data: number[] };

export type MiniTensors = Map<string, MiniTensor>;

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

const BYTES: Record<string, number> = { F32: 4, I32: 4, I64: 8 };

export function readSafetensors(path: string): MiniTensors {
  const buf = readFileSync(path);
  if (buf.length < 8) throw new Error(`${path}: too short for a safetensors file`);
  const headerLen = Number(buf.readBigUInt64LE(0));
  if (8 + headerLen > buf.length) throw new Error(`${path}: header length ${headerLen} past end of file`);
  const header = JSON.parse(buf.toString('utf8', 8, 8 + headerLen)) as Record<string, HeaderEntry | unknown>;
  const base = 8 + headerLen;
  const out: MiniTensors = new Map();
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const e = raw as HeaderEntry;
    const size = BYTES[e.dtype];
    if (size === undefined) throw new Error(`${path}: ${name}: unsupported dtype ${e.dtype}`);
    const count = e.shape.reduce((a, b) => a * b, 1);
    const [begin, end] = e.data_offsets;
    if (end - begin !== count * size || base + end > buf.length) {
      throw new Error(`${path}: ${name}: data_offsets [${begin}, ${end}] do not fit shape [${e.shape}]`);
    }
    // Copy into a fresh, aligned buffer (the file offset need not be a multiple of the element size).
    const bytes = new Uint8Array(count * size);
    buf.copy(bytes, 0, base + begin, base + end);
    const view = new DataView(bytes.buffer);
    if (e.dtype === 'F32') {
      const data = new Float32Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getFloat32(i * 4, true);
      out.set(name, { dtype: 'F32', shape: e.shape, data });
    } else if (e.dtype === 'I32') {
      const data = new Int32Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getInt32(i * 4, true);
      out.set(name, { dtype: 'I32', shape: e.shape, data });
    } else {
      const data: number[] = new Array(count);
      for (let i = 0; i < count; i++) data[i] = Number(view.getBigInt64(i * 8, true));
      out.set(name, { dtype: 'I64', shape: e.shape, data });
    }
  }
  return out;
}

/** The named tensor, which must exist and be F32. */
export function getF32(t: MiniTensors, name: string): Float32Array {
  const e = t.get(name);
  if (!e) throw new Error(`tensor ${name} missing`);
  if (e.dtype !== 'F32') throw new Error(`tensor ${name} is ${e.dtype}, expected F32`);
  return e.data;
}

/** The named integer tensor (I32 or I64) as plain numbers. */
export function getInts(t: MiniTensors, name: string): number[] {
  const e = t.get(name);
  if (!e) throw new Error(`tensor ${name} missing`);
  if (e.dtype === 'I64') return e.data.slice();
  if (e.dtype === 'I32') return Array.from(e.data);
  throw new Error(`tensor ${name} is ${e.dtype}, expected an integer dtype`);
}
