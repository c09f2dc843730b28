/**
 * The packed model file written by `chimera convert`: weights already quantised and laid out for the
 * kernels, so loading is one read into aligned memory plus views; nothing is re-packed.
 *
 * Layout: 8-byte magic, u64 little-endian header length, UTF-8 JSON header, zero padding to 64 bytes, then
 * blobs each starting at a 64-byte aligned offset. The header mirrors the native model description, with every
 * array or packed weight replaced by `{"$blob": index}`.
 */
import * as fs from 'node:fs';
import { ChimeraError } from '../errors';
import { native } from '../native';

export const PACKED_MAGIC = 'CHMRPK01';
const ALIGN = 64;

type BlobKind = 'f32' | 'u16' | 's8' | 'pf32' | 'pf16';
interface BlobEntry {
  kind: BlobKind;
  offset: number;
  bytes: number;
  n?: number;
  k?: number;
  /** s8 only: the per-channel scales, n floats */
  scalesOffset?: number;
}

export interface PackedHeader {
  format: 1;
  model: 'marian';
  config: unknown;
  precision: unknown;
  desc: unknown;
  blobs: BlobEntry[];
  files: Record<string, { offset: number; bytes: number }>;
  source: string;
}

const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

function fail(file: string, msg: string, cause?: unknown): never {
  throw new ChimeraError('E_MODEL', `${file}: ${msg}`, cause === undefined ? undefined : { cause });
}

/**
 * Writes `desc` (the native model description: nested objects whose leaves are numbers, Float32Array,
 * Uint16Array, or packed weight handles under the key `w`) and the tokenizer files to `file`.
 */
export function writePackedModel(
  file: string,
  meta: { config: unknown; precision: unknown; source: string },
  desc: object,
  tokenizerFiles: Map<string, Uint8Array>,
): number {
  const blobs: BlobEntry[] = [];
  const payloads: { offset: number; write: (buf: Buffer, off: number) => void }[] = [];
  let cursor = 0; // relative to the data region; fixed up once the header size is known
  const reserve = (bytes: number) => {
    const off = cursor;
    cursor = align(cursor + bytes);
    return off;
  };
  const walk = (v: unknown, key: string): unknown => {
    if (v instanceof Float32Array || v instanceof Uint16Array) {
      const bytes = v.byteLength;
      const offset = reserve(bytes);
      payloads.push({ offset, write: (buf, o) => buf.set(new Uint8Array(v.buffer, v.byteOffset, bytes), o) });
      blobs.push({ kind: v instanceof Float32Array ? 'f32' : 'u16', offset, bytes });
      return { $blob: blobs.length - 1 };
    }
    if (key === 'w' && v !== null && typeof v === 'object') {
      const info = native().packedInfo(v);
      const offset = reserve(info.bytes);
      const entry: BlobEntry = { kind: info.kind === 's8' ? 's8' : info.kind === 'f16' ? 'pf16' : 'pf32', offset, bytes: info.bytes, n: info.n, k: info.k };
      let scales: Float32Array | null = null;
      if (info.kind === 's8') {
        scales = new Float32Array(info.n);
        entry.scalesOffset = reserve(info.n * 4);
      }
      payloads.push({
        offset,
        write: (buf, o) => {
          native().packedCopy(v, new Uint8Array(buf.buffer, buf.byteOffset + o, info.bytes), scales);
          if (scales) buf.set(new Uint8Array(scales.buffer), o - offset + entry.scalesOffset!);
        },
      });
      blobs.push(entry);
      return { $blob: blobs.length - 1 };
    }
    if (Array.isArray(v)) return v.map((x) => walk(x, ''));
    if (v !== null && typeof v === 'object') {
      const o: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) if (k !== 'arena') o[k] = walk(x, k);
      return o;
    }
    return v;
  };
  const descJson = walk(desc, '');
  const files: PackedHeader['files'] = {};
  for (const [name, bytes] of tokenizerFiles) {
    const offset = reserve(bytes.byteLength);
    payloads.push({ offset, write: (buf, o) => buf.set(bytes, o) });
    files[name] = { offset, bytes: bytes.byteLength };
  }
  // The header holds absolute offsets, which depend on its own length: iterate until stable.
  let base = ALIGN;
  let headerBytes: Buffer;
  for (;;) {
    const shift = (o: number) => o + base;
    const header: PackedHeader = {
      format: 1, model: 'marian', config: meta.config, precision: meta.precision, desc: descJson,
      blobs: blobs.map((b) => ({ ...b, offset: shift(b.offset), ...(b.scalesOffset !== undefined ? { scalesOffset: shift(b.scalesOffset) } : {}) })),
      files: Object.fromEntries(Object.entries(files).map(([k, f]) => [k, { offset: shift(f.offset), bytes: f.bytes }])),
      source: meta.source,
    };
    headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
    const need = align(16 + headerBytes.length);
    if (need === base) break;
    base = need;
  }
  const total = base + cursor;
  const buf = Buffer.alloc(total);
  buf.write(PACKED_MAGIC, 0, 'latin1');
  buf.writeBigUInt64LE(BigInt(headerBytes.length), 8);
  headerBytes.copy(buf, 16);
  for (const p of payloads) p.write(buf, base + p.offset);
  fs.writeFileSync(file, buf);
  return total;
}

export function isPackedModelFile(file: string): boolean {
  try {
    if (!fs.statSync(file).isFile()) return false;
    const fd = fs.openSync(file, 'r');
    try {
      const b = Buffer.alloc(8);
      return fs.readSync(fd, b, 0, 8, 0) === 8 && b.toString('latin1') === PACKED_MAGIC;
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

function readWhole(file: string): ArrayBuffer {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    fail(file, `cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, e);
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size < 16) fail(file, `only ${size} bytes: not a chimera packed model`);
    const arena = native().allocArena(size);
    const bytes = new Uint8Array(arena);
    for (let got = 0; got < size; ) {
      const n = fs.readSync(fd, bytes, got, Math.min(size - got, 1 << 30), got);
      if (n <= 0) fail(file, `the file ended after ${got} of ${size} bytes`);
      got += n;
    }
    return arena;
  } finally {
    fs.closeSync(fd);
  }
}

export interface PackedModel {
  header: PackedHeader;
  /** The native model description, with views into `arena` (which it also references). */
  desc: Record<string, unknown>;
  tokenizerFiles: Map<string, Uint8Array>;
  /** Time to read the file and build the views, in milliseconds. */
  readMs: number;
}

/**
 * Opens a packed model file: memory-mapped (copy-on-write, so live edits such as layer-norm tuning stay
 * private) where the platform allows, else read in one piece into 64-byte aligned memory. Either way the
 * weights are used in place through views; nothing is copied or re-packed.
 */
export function readPackedModel(file: string): PackedModel {
  const t0 = performance.now();
  let arena: ArrayBuffer | null = null;
  try {
    arena = native().mapFile(file);
  } catch (e) {
    fail(file, (e as Error).message, e);
  }
  if (!arena) arena = readWhole(file);
  const size = arena.byteLength;
  if (size < 16) fail(file, `only ${size} bytes: not a chimera packed model`);
  const bytes = new Uint8Array(arena);
  const view = Buffer.from(arena);
  if (view.toString('latin1', 0, 8) !== PACKED_MAGIC) fail(file, 'not a chimera packed model (bad magic)');
  const hlen = Number(view.readBigUInt64LE(8));
  if (hlen <= 0 || 16 + hlen > size) fail(file, `header length ${hlen} runs past the end of the file (${size} bytes)`);
  let header: PackedHeader;
  try {
    header = JSON.parse(view.toString('utf8', 16, 16 + hlen)) as PackedHeader;
  } catch (e) {
    fail(file, `the header is not valid JSON (${(e as Error).message})`, e);
  }
  if (header?.format !== 1 || header.model !== 'marian' || !Array.isArray(header.blobs))
    fail(file, 'unsupported packed model (format or model field)');
  const dataStart = align(16 + hlen);
  const inRange = (off: unknown, len: unknown, what: string): [number, number] => {
    if (typeof off !== 'number' || typeof len !== 'number' || !Number.isInteger(off) || !Number.isInteger(len) || off < dataStart || len < 0 || off + len > size)
      fail(file, `${what} lies outside the file (offset ${String(off)}, ${String(len)} bytes, file ${size} bytes)`);
    if (off % ALIGN) fail(file, `${what} is not ${ALIGN}-byte aligned`);
    return [off, len];
  };
  const built = header.blobs.map((b, i) => {
    const [off, len] = inRange(b.offset, b.bytes, `blob ${i}`);
    switch (b.kind) {
      case 'f32':
        if (len % 4) fail(file, `blob ${i}: ${len} bytes is not a whole number of floats`);
        return new Float32Array(arena, off, len / 4);
      case 'u16':
        if (len % 2) fail(file, `blob ${i}: odd byte count for fp16 data`);
        return new Uint16Array(arena, off, len / 2);
      case 's8':
      case 'pf32':
      case 'pf16': {
        const n = b.n, k = b.k;
        if (!Number.isInteger(n) || !Number.isInteger(k) || n! < 1 || k! < 1) fail(file, `blob ${i}: bad dimensions`);
        let scales: Float32Array | null = null;
        if (b.kind === 's8') {
          const [so] = inRange(b.scalesOffset, n! * 4, `blob ${i} scales`);
          scales = new Float32Array(arena, so, n!);
        }
        try {
          return native().packedView(b.kind === 's8' ? 's8' : b.kind === 'pf16' ? 'f16' : 'f32', n!, k!, new Uint8Array(arena, off, len), scales);
        } catch (e) {
          fail(file, `blob ${i}: ${(e as Error).message}`, e);
        }
      }
      // eslint-disable-next-line no-fallthrough
      default:
        fail(file, `blob ${i} has unknown kind ${String((b as BlobEntry).kind)}`);
    }
  });
  const rebuild = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(rebuild);
    if (v !== null && typeof v === 'object') {
      const ref = (v as { $blob?: unknown }).$blob;
      if (ref !== undefined) {
        if (typeof ref !== 'number' || !(ref in built)) fail(file, `reference to missing blob ${String(ref)}`);
        return built[ref];
      }
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, rebuild(x)]));
    }
    return v;
  };
  const desc = rebuild(header.desc) as Record<string, unknown>;
  desc.arena = arena; // the native model keeps desc alive, and with it the memory every view points into
  const tokenizerFiles = new Map<string, Uint8Array>();
  for (const [name, f] of Object.entries(header.files ?? {})) {
    const [off, len] = inRange(f.offset, f.bytes, `file ${name}`);
    tokenizerFiles.set(name, bytes.subarray(off, off + len));
  }
  return { header, desc, tokenizerFiles, readMs: performance.now() - t0 };
}
