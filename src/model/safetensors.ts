/**
 * safetensors reading and writing (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
 * length N, N bytes of JSON header, then the raw little-endian tensor data. Every header is validated in full
 * before any data is read, and every problem is an E_MODEL error naming the file, so a hostile or truncated
 * file can never make us read out of bounds or allocate absurd amounts of memory.
 */
import { mergeShards, resolveShards, type ShardSet } from './shards';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChimeraError } from '../errors';

export type FloatDtype = 'F32' | 'F16' | 'BF16';
export type IntDtype = 'I64' | 'I32' | 'I16' | 'I8' | 'U8';

export interface FloatTensor {
  dtype: FloatDtype; // the dtype stored in the file; data is always converted to fp32
  shape: number[];
  data: Float32Array;
}

export interface IntTensor {
  dtype: IntDtype;
  shape: number[];
  data: number[];
}

/** One header entry after validation; begin/end are absolute byte positions in the file. */
export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
  file: string;
}

export interface SafetensorsHeader {
  file: string;
  metadata: Record<string, string>;
  tensors: Map<string, TensorInfo>;
}

/** Which tensors to load: a list or set of names, or a predicate. Absent: all of them. */
export type TensorFilter = Iterable<string> | ((name: string) => boolean);

/** Every dtype the format defines, with its size, so that offsets can be checked for tensors we never load. */
const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};
const FLOAT_DTYPES: readonly string[] = ['F32', 'F16', 'BF16'];
const INT_DTYPES: readonly string[] = ['I64', 'I32', 'I16', 'I8', 'U8'];

const MAX_HEADER_BYTES = 100 * 1024 * 1024;

// The typed-array views below assume the host is little-endian, like the file format.
const LITTLE_ENDIAN = os.endianness() === 'LE';

function fail(file: string, problem: string): never {
  throw new ChimeraError('E_MODEL', `${file}: ${problem}`);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function withFd<T>(file: string, f: (fd: number, size: number) => T): T {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    fail(file, code === 'ENOENT' ? 'file not found' : `cannot open (${code ?? String(e)})`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) fail(file, 'not a regular file');
    return f(fd, st.size);
  } finally {
    fs.closeSync(fd);
  }
}

function readExactly(fd: number, file: string, dst: Uint8Array, position: number): void {
  let done = 0;
  while (done < dst.length) {
    const n = fs.readSync(fd, dst, done, dst.length - done, position + done);
    if (n === 0) fail(file, `unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

function parseHeader(fd: number, file: string, size: number): SafetensorsHeader {
  if (size < 8) fail(file, `file is ${size} bytes, shorter than the 8-byte header length`);
  const lenBuf = Buffer.alloc(8);
  readExactly(fd, file, lenBuf, 0);
  const n = lenBuf.readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER_BYTES)) fail(file, `header length ${n} is absurd (more than ${MAX_HEADER_BYTES} bytes)`);
  const headerLen = Number(n);
  if (8 + headerLen > size) fail(file, `header length ${headerLen} runs past the end of the file (${size} bytes)`);
  const raw = Buffer.alloc(headerLen);
  readExactly(fd, file, raw, 8);

  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    fail(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(json)) fail(file, 'header is not a JSON object');

  const dataStart = 8 + headerLen;
  const dataLen = size - dataStart;
  const metadata: Record<string, string> = Object.create(null) as Record<string, string>;
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isPlainObject(entry)) fail(file, '__metadata__ is not an object');
      for (const [k, v] of Object.entries(entry)) metadata[k] = typeof v === 'string' ? v : JSON.stringify(v);
      continue;
    }
    const where = `tensor '${name}'`;
    if (!isPlainObject(entry)) fail(file, `${where}: header entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = entry;
    if (dtype === undefined) fail(file, `${where}: missing dtype`);
    if (shape === undefined) fail(file, `${where}: missing shape`);
    if (offsets === undefined) fail(file, `${where}: missing data_offsets`);
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) fail(file, `${where}: unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every(isCount)) fail(file, `${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount))
      fail(file, `${where}: data_offsets ${JSON.stringify(offsets)} is not a pair of non-negative integers`);
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataLen)
      fail(file, `${where}: data_offsets [${begin}, ${end}] out of range (data section is ${dataLen} bytes)`);
    const numel = (shape as number[]).reduce((a, b) => a * b, 1);
    const expected = numel * DTYPE_BYTES[dtype];
    if (end - begin !== expected)
      fail(file, `${where}: data_offsets span ${end - begin} bytes, but shape [${(shape as number[]).join(', ')}] x ${dtype} needs ${expected}`);
    tensors.set(name, { name, dtype, shape: shape as number[], begin: dataStart + begin, end: dataStart + end, file });
  }

  const sorted = [...tensors.values()].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) fail(file, `tensors '${sorted[i - 1].name}' and '${sorted[i].name}' overlap`);
  }
  return { file, metadata, tensors };
}

/** Validates and returns the header of one safetensors file, reading no tensor data. */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  return withFd(file, (fd, size) => parseHeader(fd, file, size));
}

function toFloat32(info: TensorInfo, bytes: Uint8Array): Float32Array {
  const n = bytes.length / DTYPE_BYTES[info.dtype];
  if (info.dtype === 'F32') return new Float32Array(bytes.buffer, bytes.byteOffset, n);
  const src = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
  const out = new Float32Array(n);
  if (info.dtype === 'BF16') {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) bits[i] = src[i] << 16;
  } else {
    const table = f16Table();
    for (let i = 0; i < n; i++) out[i] = table[src[i]];
  }
  return out;
}

function toInts(info: TensorInfo, file: string, bytes: Uint8Array): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = DTYPE_BYTES[info.dtype];
  const out = new Array<number>(bytes.length / size);
  for (let i = 0; i < out.length; i++) {
    const o = i * size;
    switch (info.dtype) {
      case 'I64': {
        const v = view.getBigInt64(o, true);
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER))
          fail(file, `tensor '${info.name}': value ${v} at index ${i} is not a safe JavaScript integer`);
        out[i] = Number(v);
        break;
      }
      case 'I32': out[i] = view.getInt32(o, true); break;
      case 'I16': out[i] = view.getInt16(o, true); break;
      case 'I8': out[i] = view.getInt8(o); break;
      default: out[i] = view.getUint8(o);
    }
  }
  return out;
}

function readBytes(fd: number, info: TensorInfo): Uint8Array {
  // A fresh, exactly-sized buffer: the Float32Array we hand out owns its memory and is 4-byte aligned.
  const bytes = new Uint8Array(new ArrayBuffer(info.end - info.begin));
  readExactly(fd, info.file, bytes, info.begin);
  return bytes;
}

function makeFilter(filter: TensorFilter | undefined): (name: string) => boolean {
  if (filter === undefined) return () => true;
  if (typeof filter === 'function') return filter;
  const set = new Set(filter);
  return (name) => set.has(name);
}

/**
 * Resolves a path to the list of safetensors files it stands for: a single file, a sharded set's
 * `*.safetensors.index.json`, or a directory holding `model.safetensors` or `model.safetensors.index.json`.
 * For an index, also returns which shard each tensor is listed in.
 */
export function resolveSafetensors(p: string): ShardSet {
  return resolveShards(p, 'model.safetensors');
}

/** Validated headers of every file behind `p` (see resolveSafetensors), checked for duplicate names across shards. */
export function readSafetensorsIndex(p: string): Map<string, TensorInfo> {
  return mergeShards(resolveSafetensors(p), (f) => readSafetensorsHeader(f).tensors);
}

function readSelected<T>(
  p: string,
  filter: TensorFilter | undefined,
  accept: readonly string[],
  convert: (info: TensorInfo, bytes: Uint8Array) => T,
): Map<string, T> {
  if (!LITTLE_ENDIAN) throw new ChimeraError('E_MODEL', 'safetensors reading needs a little-endian host');
  const keep = makeFilter(filter);
  const byFile = new Map<string, TensorInfo[]>();
  for (const info of readSafetensorsIndex(p).values()) {
    if (!keep(info.name)) continue;
    if (!accept.includes(info.dtype))
      fail(info.file, `tensor '${info.name}' has unsupported dtype ${info.dtype} (supported here: ${accept.join(', ')})`);
    const list = byFile.get(info.file) ?? [];
    list.push(info);
    byFile.set(info.file, list);
  }
  const out = new Map<string, T>();
  for (const [file, infos] of byFile) {
    withFd(file, (fd) => {
      for (const info of infos) out.set(info.name, convert(info, readBytes(fd, info)));
    });
  }
  return out;
}

/**
 * Reads floating-point tensors (F32, F16, BF16; converted to fp32) from a file, a sharded index or a model
 * directory. `filter` picks tensors by name; tensors it leaves out are not read (their headers still are).
 */
export function readSafetensors(p: string, filter?: TensorFilter): Map<string, FloatTensor> {
  return readSelected(p, filter, FLOAT_DTYPES, (info, bytes) => ({
    dtype: info.dtype as FloatDtype,
    shape: info.shape,
    data: toFloat32(info, bytes),
  }));
}

/** Reads integer tensors (I64, I32, I16, I8, U8) as plain numbers; I64 values must be safe integers. */
export function readIntTensors(p: string, filter?: TensorFilter): Map<string, IntTensor> {
  return readSelected(p, filter, INT_DTYPES, (info, bytes) => ({
    dtype: info.dtype as IntDtype,
    shape: info.shape,
    data: toInts(info, info.file, bytes),
  }));
}

/** Reads one integer tensor; E_MODEL if it is absent. */
export function readIntTensor(p: string, name: string): IntTensor {
  const t = readIntTensors(p, [name]).get(name);
  if (!t) fail(p, `no tensor named '${name}'`);
  return t;
}

// ------------------------------------------------------------------------------------- fp16 / bf16 conversion

let F16_TABLE: Float32Array | null = null;

function f16Table(): Float32Array {
  if (!F16_TABLE) {
    F16_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) F16_TABLE[h] = halfToFloat(h);
  }
  return F16_TABLE;
}

/** IEEE 754 binary16 bits -> number. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** number -> IEEE 754 binary16 bits, rounding to nearest even; overflow gives ±Inf, NaN stays NaN. */
export function floatToHalf(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: rounds to ±0
    const m = mant | 0x800000; // implicit leading 1
    const shift = 14 - e;
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half; // a carry into the exponent field gives the smallest normal, which is right
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++; // may carry into the exponent, up to Inf: correct
  return sign | half;
}

/** number -> bfloat16 bits (the top 16 bits of the fp32 value), rounding to nearest even; NaN stays NaN. */
export function floatToBf16(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  if ((bits & 0x7f800000) === 0x7f800000 && bits & 0x7fffff) return (bits >>> 16) | 0x40;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

// ------------------------------------------------------------------------------------------------- writing

export type WritableTensor =
  | { dtype: FloatDtype; shape: number[]; data: Float32Array }
  | { dtype: IntDtype; shape: number[]; data: ArrayLike<number> };

function encodeTensor(name: string, t: WritableTensor): Uint8Array {
  const n = t.data.length;
  switch (t.dtype) {
    case 'F32':
      return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    case 'F16':
    case 'BF16': {
      const out = new Uint16Array(n);
      const conv = t.dtype === 'F16' ? floatToHalf : floatToBf16;
      for (let i = 0; i < n; i++) out[i] = conv(t.data[i]);
      return new Uint8Array(out.buffer);
    }
    default: {
      const size = DTYPE_BYTES[t.dtype];
      const view = new DataView(new ArrayBuffer(n * size));
      for (let i = 0; i < n; i++) {
        const v = t.data[i];
        if (!Number.isSafeInteger(v)) throw new ChimeraError('E_ARG', `tensor '${name}': ${v} is not an integer`);
        if (t.dtype === 'I64') view.setBigInt64(i * size, BigInt(v), true);
        else if (t.dtype === 'I32') view.setInt32(i * size, v, true);
        else if (t.dtype === 'I16') view.setInt16(i * size, v, true);
        else if (t.dtype === 'I8') view.setInt8(i * size, v);
        else view.setUint8(i * size, v);
      }
      return new Uint8Array(view.buffer);
    }
  }
}

/**
 * Writes tensors (in the order given) to a safetensors file. F32 data is written as is; F16 and BF16 are
 * rounded to nearest even. The JSON header is padded with spaces to a multiple of 8 bytes, as the format asks.
 */
export function writeSafetensors(file: string, tensors: Record<string, WritableTensor>, metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    if (name === '__metadata__') throw new ChimeraError('E_ARG', `'__metadata__' is reserved and cannot name a tensor`);
    if (!(t.dtype in DTYPE_BYTES) || ![...FLOAT_DTYPES, ...INT_DTYPES].includes(t.dtype))
      throw new ChimeraError('E_ARG', `tensor '${name}': cannot write dtype ${String(t.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every(isCount))
      throw new ChimeraError('E_ARG', `tensor '${name}': shape must be a list of non-negative integers`);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel !== t.data.length)
      throw new ChimeraError('E_SHAPE', `tensor '${name}': shape [${t.shape.join(', ')}] holds ${numel} elements, data has ${t.data.length}`);
    const blob = encodeTensor(name, t);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + blob.length] };
    blobs.push(blob);
    offset += blob.length;
  }
  let json = JSON.stringify(header);
  const len = Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - (len % 8)) % 8);
  const head = Buffer.alloc(8 + Buffer.byteLength(json, 'utf8'));
  head.writeBigUInt64LE(BigInt(head.length - 8), 0);
  head.write(json, 8, 'utf8');

  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, head);
    for (const blob of blobs) {
      let done = 0;
      while (done < blob.length) done += fs.writeSync(fd, blob, done, blob.length - done);
    }
  } finally {
    fs.closeSync(fd);
  }
}
