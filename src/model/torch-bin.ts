/**
 * PyTorch checkpoints (`pytorch_model.bin`) read without Python and without executing anything.
 *
 * Formats:
 * - zip (torch >= 1.6): `<archive>/data.pkl` holds the state dict, whose tensors name their storages through
 *   persistent ids `('storage', torch.FloatStorage, key, location, numel)`; storage `key` is the stored entry
 *   `<archive>/data/<key>`. `<archive>/byteorder`, when present, must say `little`.
 * - legacy (torch < 1.6, or `_use_new_zipfile_serialization=False`): five pickles in a row (the magic number,
 *   the protocol version 1001, sys info, the state dict with persistent ids `('storage', type, key, location,
 *   numel, view_metadata)`, the sorted list of storage keys), then each storage in that order as an int64
 *   element count followed by its raw bytes.
 * - sharded: `pytorch_model.bin.index.json` with a `weight_map` from tensor name to shard file.
 *
 * The pickles go through the restricted unpickler (./pickle.ts). Storages are Float, Half and BFloat16 (others
 * parse, but cannot be read as weights); several tensors may share a storage (that is how tied weights are
 * saved), and a tensor is any view of its storage (offset, size, stride), checked to lie inside it.
 *
 * The file is memory-mapped (copy-on-write) like a packed model, and every storage size is checked against
 * the file before anything is allocated. An fp32 tensor that is contiguous and 4-byte aligned in the file is
 * returned as a view of the mapping (zero-copy; torch aligns zip entries to 64 bytes, so this is the usual
 * case); other layouts and dtypes are gathered and converted into a fresh Float32Array.
 */
import { mergeShards, resolveShards, type ShardSet } from './shards';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChimeraError } from '../errors';
import { native } from '../native';
import { asCount, describe, PyDict, PyGlobal, PyList, PyTuple, STORAGE_CLASSES, unpickle, type PyValue, type StorageRef, type TensorRef, type TorchDtype } from './pickle';
import { halfToFloat } from './safetensors';
import { looksLikeZip, readZipDirectory, zipEntryBytes } from './zip';

export type { TorchDtype } from './pickle';

/** A storage whose bytes have been located in the file. */
interface BoundStorage extends StorageRef {
  bytes?: Uint8Array;
}

export interface TorchTensorInfo {
  name: string;
  dtype: TorchDtype;
  shape: number[];
  stride: number[];
  /** Storage offset in elements. */
  offset: number;
  storageKey: string;
  file: string;
  /** @internal the storage's bytes (a view into the mapped file) */
  readonly bytes: Uint8Array;
}

export interface TorchCheckpoint {
  file: string;
  format: 'zip' | 'legacy';
  tensors: Map<string, TorchTensorInfo>;
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;
const ELEMENT_BYTES: Record<TorchDtype, number> = Object.fromEntries(
  Object.values(STORAGE_CLASSES).map((c) => [c.dtype, c.bytes]),
) as Record<TorchDtype, number>;
const LITTLE_ENDIAN = os.endianness() === 'LE';

function fail(file: string, problem: string): never {
  throw new ChimeraError('E_MODEL', `${file}: ${problem}`);
}

/** The storage class named in a persistent id. */
function storageClass(file: string, v: PyValue): { dtype: TorchDtype; bytes: number } {
  if (!(v instanceof PyGlobal) || v.module !== 'torch' || !(v.name in STORAGE_CLASSES))
    fail(file, `a persistent id names ${describe(v)}, not a torch storage class`);
  return STORAGE_CLASSES[(v as PyGlobal).name];
}

function storageKey(file: string, v: PyValue): string {
  if (typeof v !== 'string' || v === '' || v.length > 256 || /[/\\]/.test(v) || v === '.' || v === '..')
    fail(file, `a persistent id has storage key ${describe(v)}`);
  return v as string;
}

/**
 * Builds the persistent-load callback: one StorageRef per key (tied weights share it), the same dtype and
 * size however often a key is named.
 */
function storageTable(file: string, arity: number[]) {
  const byKey = new Map<string, BoundStorage>();
  const load = (pid: PyValue): StorageRef => {
    if (!(pid instanceof PyTuple) || !arity.includes(pid.items.length) || pid.items[0] !== 'storage')
      fail(file, `unsupported persistent id ${describe(pid)} (only storages are allowed)`);
    const [, cls, keyV, location, numelV] = (pid as PyTuple).items;
    const { dtype } = storageClass(file, cls);
    const key = storageKey(file, keyV);
    if (typeof location !== 'string') fail(file, `storage '${key}' has location ${describe(location)}`);
    const numel = asCount(file, numelV, `storage '${key}' element count`);
    if ((pid as PyTuple).items.length === 6 && (pid as PyTuple).items[5] !== null)
      fail(file, `storage '${key}' is a storage view (view_metadata), which only torch < 0.4 wrote; re-save the checkpoint`);
    const prev = byKey.get(key);
    if (prev) {
      if (prev.dtype !== dtype || prev.numel !== numel) fail(file, `storage '${key}' is named with two different types or sizes`);
      return prev;
    }
    const s: BoundStorage = { kind: 'storage', dtype, key, numel };
    byKey.set(key, s);
    return s;
  };
  return { load, byKey };
}

function stateDict(file: string, top: PyValue, storages: Map<string, BoundStorage>): Map<string, TorchTensorInfo> {
  if (!(top instanceof PyDict)) fail(file, `the checkpoint holds ${describe(top)}, not a state dict`);
  const tensors = new Map<string, TorchTensorInfo>();
  for (const [name, v] of (top as PyDict).map) {
    if (typeof name !== 'string') continue;
    if (typeof v !== 'object' || v === null || (v as TensorRef).kind !== 'tensor') continue; // not a tensor: never read
    const t = v as TensorRef;
    const s = storages.get(t.storage.key);
    if (!s?.bytes) fail(file, `tensor '${name}': storage '${t.storage.key}' has no data in the file`);
    tensors.set(name, { name, dtype: t.storage.dtype, shape: t.shape, stride: t.stride, offset: t.offset, storageKey: t.storage.key, file, bytes: s!.bytes! });
  }
  return tensors;
}

function parseZip(bytes: Uint8Array, file: string): TorchCheckpoint {
  const entries = readZipDirectory(bytes, file);
  const pkls = [...entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkls.length !== 1) fail(file, `a torch zip checkpoint has one <archive>/data.pkl, this one has ${pkls.length}`);
  const prefix = pkls[0].slice(0, -'data.pkl'.length);
  const order = entries.get(prefix + 'byteorder');
  if (order) {
    const v = Buffer.from(zipEntryBytes(bytes, order, file)).toString('latin1').trim();
    if (v !== 'little') fail(file, `byteorder is '${v}'; only little-endian checkpoints are supported`);
  }
  const { load, byKey } = storageTable(file, [5]);
  const pickle = zipEntryBytes(bytes, entries.get(pkls[0])!, file);
  const { value } = unpickle(pickle, { file, persistentLoad: load });
  for (const s of byKey.values()) {
    const e = entries.get(`${prefix}data/${s.key}`);
    if (!e) fail(file, `storage '${s.key}' has no entry ${prefix}data/${s.key}`);
    const need = s.numel * ELEMENT_BYTES[s.dtype];
    if (need > e!.size)
      fail(file, `storage '${s.key}' declares ${s.numel} elements (${need} bytes) but its entry holds ${e!.size} bytes`);
    s.bytes = zipEntryBytes(bytes, e!, file).subarray(0, need);
  }
  return { file, format: 'zip', tensors: stateDict(file, value, byKey) };
}

function parseLegacy(bytes: Uint8Array, file: string): TorchCheckpoint {
  const magic = unpickle(bytes, { file });
  if (magic.value !== LEGACY_MAGIC) fail(file, 'not a PyTorch checkpoint (neither a zip archive nor the legacy magic number)');
  const proto = unpickle(bytes, { file, start: magic.end });
  if (proto.value !== LEGACY_PROTOCOL) fail(file, `legacy protocol version ${describe(proto.value)}, expected ${LEGACY_PROTOCOL}`);
  const info = unpickle(bytes, { file, start: proto.end });
  if (info.value instanceof PyDict && info.value.map.get('little_endian') === false)
    fail(file, 'the checkpoint was saved on a big-endian machine; only little-endian checkpoints are supported');
  const { load, byKey } = storageTable(file, [6]);
  const main = unpickle(bytes, { file, start: info.end, persistentLoad: load });
  const keys = unpickle(bytes, { file, start: main.end });
  if (!(keys.value instanceof PyList)) fail(file, `the storage key list is ${describe(keys.value)}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = keys.end;
  const seen = new Set<string>();
  for (const k of (keys.value as PyList).items) {
    const key = storageKey(file, k);
    if (seen.has(key)) fail(file, `storage '${key}' is listed twice`);
    seen.add(key);
    if (pos + 8 > bytes.length) fail(file, `storage '${key}': the file ends before its size (at byte ${pos})`);
    const count = dv.getBigInt64(pos, true);
    const s = byKey.get(key);
    if (!s) fail(file, `storage '${key}' is listed but no tensor uses it`);
    if (count !== BigInt(s!.numel)) fail(file, `storage '${key}' holds ${count} elements in the file, but the pickle declares ${s!.numel}`);
    const need = s!.numel * ELEMENT_BYTES[s!.dtype];
    if (pos + 8 + need > bytes.length)
      fail(file, `storage '${key}' (${need} bytes at byte ${pos + 8}) runs past the end of the file (${bytes.length} bytes)`);
    s!.bytes = bytes.subarray(pos + 8, pos + 8 + need);
    pos += 8 + need;
  }
  return { file, format: 'legacy', tensors: stateDict(file, main.value, byKey) };
}

/** Parses a checkpoint held in memory (a view of the mapped file); tensors point into `bytes`. */
export function parseTorchCheckpoint(bytes: Uint8Array, file: string): TorchCheckpoint {
  if (!LITTLE_ENDIAN) fail(file, 'reading PyTorch checkpoints needs a little-endian host');
  if (looksLikeZip(bytes)) return parseZip(bytes, file);
  if (bytes.length >= 2 && bytes[0] === 0x80) return parseLegacy(bytes, file);
  if (bytes.length >= 262 && Buffer.from(bytes.subarray(257, 262)).toString('latin1') === 'ustar')
    fail(file, 'a tar checkpoint (torch < 0.1.10) is not supported; re-save it with a current torch');
  return fail(file, 'not a PyTorch checkpoint (neither a zip archive nor a pickle)');
}

function mapWhole(file: string): Uint8Array {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail(file, code === 'ENOENT' ? 'file not found' : `cannot open (${code ?? String(e)})`);
  }
  if (!st.isFile()) fail(file, 'not a regular file');
  if (st.size === 0) fail(file, 'the file is empty');
  let arena: ArrayBuffer | null;
  try {
    arena = native().mapFile(file);
  } catch (e) {
    throw new ChimeraError('E_MODEL', `${file}: ${(e as Error).message}`, { cause: e });
  }
  if (arena) return new Uint8Array(arena);
  const buf = fs.readFileSync(file);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Opens one `.bin` checkpoint file (zip or legacy), validating every storage and tensor view. */
export function readTorchCheckpoint(file: string): TorchCheckpoint {
  return parseTorchCheckpoint(mapWhole(file), file);
}

function isRowMajor(shape: number[], stride: number[]): boolean {
  let expect = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expect) return false;
    expect *= shape[i];
  }
  return true;
}

/** Elements of a tensor. */
export function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * The tensor as fp32, row-major. Contiguous aligned fp32 data is a view of the mapped file (zero-copy,
 * `zeroCopy: true`); everything else is converted into new memory. Float16 and BFloat16 convert exactly.
 */
export function torchTensorFloat32(t: TorchTensorInfo): { data: Float32Array; zeroCopy: boolean } {
  if (t.dtype !== 'F32' && t.dtype !== 'F16' && t.dtype !== 'BF16' && t.dtype !== 'F64')
    fail(t.file, `tensor '${t.name}' has dtype ${t.dtype}; weights must be Float, Half, BFloat16 or Double`);
  const n = numelOf(t.shape);
  const b = t.bytes;
  const contiguous = isRowMajor(t.shape, t.stride);
  if (t.dtype === 'F32' && contiguous) {
    const start = b.byteOffset + t.offset * 4;
    if (start % 4 === 0) return { data: new Float32Array(b.buffer, start, n), zeroCopy: true };
  }
  const out = new Float32Array(n);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let read: (elem: number) => number;
  if (t.dtype === 'F32') read = (e) => dv.getFloat32(e * 4, true);
  else if (t.dtype === 'F64') read = (e) => dv.getFloat64(e * 8, true);
  else if (t.dtype === 'BF16') {
    const bits = new Uint32Array(1);
    const f = new Float32Array(bits.buffer);
    read = (e) => { bits[0] = dv.getUint16(e * 2, true) << 16; return f[0]; };
  } else {
    const table = f16Table();
    read = (e) => table[dv.getUint16(e * 2, true)];
  }
  if (contiguous) {
    for (let i = 0; i < n; i++) out[i] = read(t.offset + i);
    return { data: out, zeroCopy: false };
  }
  // Strided gather: an odometer over the indices (no recursion).
  const rank = t.shape.length;
  const idx = new Array<number>(rank).fill(0);
  let elem = t.offset;
  for (let i = 0; i < n; i++) {
    out[i] = read(elem);
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      elem += t.stride[d];
      if (idx[d] < t.shape[d]) break;
      elem -= t.stride[d] * t.shape[d];
      idx[d] = 0;
    }
  }
  return { data: out, zeroCopy: false };
}

let F16_TABLE: Float32Array | null = null;
function f16Table(): Float32Array {
  if (!F16_TABLE) {
    F16_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) F16_TABLE[h] = halfToFloat(h);
  }
  return F16_TABLE;
}

/**
 * The checkpoint files behind a path: a `.bin` file, a `*.bin.index.json`, or a directory holding
 * `pytorch_model.bin` or `pytorch_model.bin.index.json`; for an index, which shard each tensor is listed in.
 */
export function resolveTorchBin(p: string): ShardSet {
  return resolveShards(p, 'pytorch_model.bin');
}

/** Every tensor behind `p` (see resolveTorchBin), checked for duplicates across shards and against the index. */
export function readTorchIndex(p: string): Map<string, TorchTensorInfo> {
  return mergeShards(resolveTorchBin(p), (f) => readTorchCheckpoint(f).tensors);
}
