/**
 * The packed model file written by `chimera convert`: weights already quantised and laid out for the
 * kernels, so loading is one read into aligned memory plus views; nothing is re-packed.
 *
 * Layout: 8-byte magic, u64 little-endian header length, UTF-8 JSON header, zero padding to 64 bytes, then
 * blobs each starting at a 64-byte aligned offset. The header mirrors the native model description, with every
 * array or packed weight replaced by `{"$blob": index}`.
 */
import * as fs from 'node:fs';
import { ACTIVATION_CODES as KERNEL_ACTIVATION_CODES, MARIAN_ACTIVATIONS } from '../activation';
import { ChimeraError } from '../errors';
import { native } from '../native';
import { validateMarianConfig, type MarianConfig } from './config';

export const PACKED_MAGIC = 'CHMRPK01';
/** The header schema version this build writes and reads (the `format` field). */
export const PACKED_FORMAT_VERSION = 1;
const ALIGN = 64;
/** Bounds on the header itself, before any of it is trusted. */
const MAX_HEADER_BYTES = 64 * 2 ** 20;
const MAX_BLOBS = 1 << 16;
const MAX_FILES = 64;

type Tier = 'fp32' | 'fp16' | 'int8';
/** The precision plan stored with a packed model (the same shape as marian.ts's PrecisionPlan). */
export interface PackedPrecision {
  encoder: Tier;
  decoder: Tier;
  lmHead: Tier;
  encoderLayers?: Tier[];
  decoderLayers?: Tier[];
}

/**
 * The native model description (what marianCreate reads), shared by the writer (MarianModel.fromWeights /
 * save) and the reader. `W` is an opaque packed weight handle in memory, `F` a Float32Array and `H` a
 * Uint16Array; in a file's header every one of them is a `{ "$blob": index }` reference instead.
 */
export interface LinearDesc<W = object, F = Float32Array> { w: W; bias: F }
export interface NormDesc<F = Float32Array> { gamma: F; beta: F }
export interface EncoderLayerDesc<W = object, F = Float32Array> {
  qkv: LinearDesc<W, F>; out: LinearDesc<W, F>; lnAttn: NormDesc<F>; fc1: LinearDesc<W, F>; fc2: LinearDesc<W, F>; lnFfn: NormDesc<F>;
}
export interface DecoderLayerDesc<W = object, F = Float32Array> {
  qkv: LinearDesc<W, F>; out: LinearDesc<W, F>; lnSelf: NormDesc<F>; crossQ: LinearDesc<W, F>; crossKv: LinearDesc<W, F>;
  crossOut: LinearDesc<W, F>; lnCross: NormDesc<F>; fc1: LinearDesc<W, F>; fc2: LinearDesc<W, F>; lnFfn: NormDesc<F>;
}
export interface MarianDesc<W = object, F = Float32Array, H = Uint16Array> {
  d: number;
  heads: number;
  vocab: number;
  maxPos: number;
  embedScale: number;
  /** 1 relu, 2 silu/swish, 3 gelu, 4 gelu_new (the addon's activation codes) */
  act: number;
  /** fp32 embedding [vocab, d] (lmHead fp32) or its fp16 copy (the cheaper LM-head tiers) */
  embed?: F;
  embedHalf?: H;
  lmHead: LinearDesc<W, F>;
  encoder: EncoderLayerDesc<W, F>[];
  decoder: DecoderLayerDesc<W, F>[];
  /** The memory a packed file's views point into (kept alive by the native model through the description). */
  arena?: ArrayBuffer;
}
export interface BlobRef { $blob: number }
/** The description as a header stores it. */
export type MarianDescHeader = MarianDesc<BlobRef, BlobRef, BlobRef>;

/** Activation codes by config.activation, as marianCreate takes them (from the one table in src/activation.ts). */
export const ACTIVATION_CODES: Record<string, number> = Object.fromEntries(
  Object.entries(MARIAN_ACTIVATIONS).map(([name, act]) => [name, KERNEL_ACTIVATION_CODES[act]]),
);

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
  format: typeof PACKED_FORMAT_VERSION;
  model: 'marian';
  config: MarianConfig;
  precision: PackedPrecision;
  desc: MarianDescHeader;
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
  meta: { config: MarianConfig; precision: PackedPrecision; source: string },
  desc: MarianDesc,
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
      format: PACKED_FORMAT_VERSION, model: 'marian', config: meta.config, precision: meta.precision, desc: descJson as MarianDescHeader,
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
  desc: MarianDesc;
  tokenizerFiles: Map<string, Uint8Array>;
  /** Time to read the file and build the views, in milliseconds. */
  readMs: number;
}

const TIERS: readonly Tier[] = ['fp32', 'fp16', 'int8'];
const PACKED_KIND: Record<Tier, BlobKind> = { int8: 's8', fp16: 'pf16', fp32: 'pf32' };

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const show = (v: unknown): string => {
  try {
    const j = JSON.stringify(v);
    return j === undefined ? String(v) : j.length > 60 ? `${j.slice(0, 60)}...` : j;
  } catch {
    return typeof v;
  }
};

function checkPrecision(file: string, p: unknown, config: MarianConfig): PackedPrecision {
  const tier = (v: unknown, what: string): Tier => {
    if (typeof v !== 'string' || !(TIERS as readonly string[]).includes(v)) fail(file, `precision.${what} must be one of ${TIERS.join(', ')}, got ${show(v)}`);
    return v as Tier;
  };
  if (!isObj(p)) fail(file, `precision must be an object, got ${show(p)}`);
  for (const k of Object.keys(p)) if (!['encoder', 'decoder', 'lmHead', 'encoderLayers', 'decoderLayers'].includes(k)) fail(file, `precision has an unknown field '${k}'`);
  const out: PackedPrecision = { encoder: tier(p.encoder, 'encoder'), decoder: tier(p.decoder, 'decoder'), lmHead: tier(p.lmHead, 'lmHead') };
  const layers = (v: unknown, what: 'encoderLayers' | 'decoderLayers', n: number) => {
    if (v === undefined) return;
    if (!Array.isArray(v) || v.length > n) fail(file, `precision.${what} must be an array of at most ${n} tiers`);
    out[what] = v.map((x, i) => tier(x, `${what}[${i}]`));
  };
  layers(p.encoderLayers, 'encoderLayers', config.encoderLayers);
  layers(p.decoderLayers, 'decoderLayers', config.decoderLayers);
  return out;
}

/** A 64-byte aligned range inside the data region. */
interface Range { off: number; len: number; what: string }

/**
 * Validates the header against the schema (MarianDesc, cross-checked with the config, the precision plan
 * and the blob table) and builds the description with views into `arena`. Every failure is E_MODEL naming
 * the file and the field. No recursion over the header: only the fields the schema names are read.
 */
function buildDesc(file: string, header: PackedHeader, arena: ArrayBuffer, dataStart: number): { desc: MarianDesc; tokenizerFiles: Map<string, Uint8Array> } {
  const size = arena.byteLength;
  const config = validateMarianConfig(header.config, file);
  const plan = checkPrecision(file, header.precision, config);
  const blobs = header.blobs;
  if (!Array.isArray(blobs) || blobs.length > MAX_BLOBS) fail(file, `blobs must be an array of at most ${MAX_BLOBS} entries`);
  const ranges: Range[] = [];
  const range = (off: unknown, len: unknown, what: string): [number, number] => {
    if (typeof off !== 'number' || typeof len !== 'number' || !Number.isSafeInteger(off) || !Number.isSafeInteger(len) || off < dataStart || len < 0 || off + len > size)
      fail(file, `${what} lies outside the file (offset ${show(off)}, ${show(len)} bytes, file ${size} bytes, data from ${dataStart})`);
    if (off % ALIGN) fail(file, `${what} is not ${ALIGN}-byte aligned`);
    ranges.push({ off, len, what });
    return [off, len];
  };
  const used = new Uint8Array(blobs.length);
  const blobAt = (ref: unknown, path: string): { entry: BlobEntry; i: number } => {
    const i = isObj(ref) ? ref.$blob : undefined;
    if (!isObj(ref) || Object.keys(ref).length !== 1 || typeof i !== 'number' || !Number.isInteger(i) || i < 0 || i >= blobs.length)
      fail(file, `${path} must be a reference to one of the ${blobs.length} blobs, got ${show(ref)}`);
    if (used[i]) fail(file, `${path}: blob ${i} is referenced twice`);
    used[i] = 1;
    const entry = blobs[i];
    if (!isObj(entry)) fail(file, `blob ${i} must be an object`);
    return { entry: entry as unknown as BlobEntry, i };
  };
  const finiteF32 = (a: Float32Array, path: string) => {
    for (let j = 0; j < a.length; j++)
      if (!Number.isFinite(a[j])) fail(file, `tensor ${path} holds ${a[j]} at [${j}]: weights must be finite`);
  };
  const finiteF16 = (a: Uint16Array, path: string) => {
    for (let j = 0; j < a.length; j++)
      if ((a[j] & 0x7c00) === 0x7c00) fail(file, `tensor ${path} holds a non-finite fp16 value at [${j}]: weights must be finite`);
  };
  const f32 = (ref: unknown, len: number, path: string): Float32Array => {
    const { entry, i } = blobAt(ref, path);
    if (entry.kind !== 'f32') fail(file, `${path}: blob ${i} has kind ${show(entry.kind)}, expected f32`);
    const [off, bytes] = range(entry.offset, entry.bytes, `blob ${i} (${path})`);
    if (bytes !== len * 4) fail(file, `${path}: blob ${i} holds ${bytes} bytes, expected ${len} floats (${len * 4} bytes)`);
    const a = new Float32Array(arena, off, len);
    finiteF32(a, path);
    return a;
  };
  const u16 = (ref: unknown, len: number, path: string): Uint16Array => {
    const { entry, i } = blobAt(ref, path);
    if (entry.kind !== 'u16') fail(file, `${path}: blob ${i} has kind ${show(entry.kind)}, expected u16`);
    const [off, bytes] = range(entry.offset, entry.bytes, `blob ${i} (${path})`);
    if (bytes !== len * 2) fail(file, `${path}: blob ${i} holds ${bytes} bytes, expected ${len} fp16 values`);
    const a = new Uint16Array(arena, off, len);
    finiteF16(a, path);
    return a;
  };
  const packed = (ref: unknown, n: number, k: number, tier: Tier, path: string): object => {
    const { entry, i } = blobAt(ref, path);
    const kind = PACKED_KIND[tier];
    if (entry.kind !== kind) fail(file, `${path}: blob ${i} has kind ${show(entry.kind)}, but the precision plan says ${tier} (${kind})`);
    if (entry.n !== n || entry.k !== k) fail(file, `${path}: blob ${i} is ${show(entry.n)}x${show(entry.k)}, expected ${n}x${k} from the config`);
    const [off, bytes] = range(entry.offset, entry.bytes, `blob ${i} (${path})`);
    let scales: Float32Array | null = null;
    if (kind === 's8') {
      const [so] = range(entry.scalesOffset, n * 4, `blob ${i} scales (${path})`);
      scales = new Float32Array(arena, so, n);
      finiteF32(scales, `${path} (scales)`);
    } else if (entry.scalesOffset !== undefined) fail(file, `${path}: blob ${i} of kind ${kind} has scales`);
    const data = new Uint8Array(arena, off, bytes);
    if (kind === 'pf32') finiteF32(new Float32Array(arena, off, bytes >> 2), path);
    else if (kind === 'pf16') finiteF16(new Uint16Array(arena, off, bytes >> 1), path);
    try {
      return native().packedView(kind === 's8' ? 's8' : kind === 'pf16' ? 'f16' : 'f32', n, k, data, scales);
    } catch (e) {
      fail(file, `${path}: blob ${i}: ${(e as Error).message}`, e);
    }
  };
  const fields = (o: unknown, path: string, keys: readonly string[]): Record<string, unknown> => {
    if (!isObj(o)) fail(file, `${path} must be an object, got ${show(o)}`);
    for (const k of Object.keys(o)) if (!keys.includes(k)) fail(file, `${path} has an unknown field '${k}'`);
    for (const k of keys) if (!(k in o)) fail(file, `${path} lacks '${k}'`);
    return o;
  };
  const d = config.dModel;
  const linear = (o: unknown, n: number, k: number, tier: Tier, path: string): LinearDesc => {
    const l = fields(o, path, ['w', 'bias']);
    return { w: packed(l.w, n, k, tier, `${path}.w`), bias: f32(l.bias, n, `${path}.bias`) };
  };
  const norm = (o: unknown, path: string): NormDesc => {
    const l = fields(o, path, ['gamma', 'beta']);
    return { gamma: f32(l.gamma, d, `${path}.gamma`), beta: f32(l.beta, d, `${path}.beta`) };
  };
  const h = header.desc as unknown;
  const embedKey = plan.lmHead === 'fp32' ? 'embed' : 'embedHalf';
  const top = fields(h, 'desc', ['d', 'heads', 'vocab', 'maxPos', 'embedScale', 'act', embedKey, 'lmHead', 'encoder', 'decoder']);
  const expect = (key: string, want: number) => {
    if (top[key] !== want) fail(file, `desc.${key} is ${show(top[key])}, but the config says ${want}`);
  };
  expect('d', d);
  expect('heads', config.decoderHeads);
  expect('vocab', config.vocabSize);
  expect('maxPos', config.maxPositions);
  expect('embedScale', config.scaleEmbedding ? Math.sqrt(d) : 1);
  expect('act', ACTIVATION_CODES[config.activation]);
  const enc = top.encoder, dec = top.decoder;
  if (!Array.isArray(enc) || enc.length !== config.encoderLayers) fail(file, `desc.encoder must be an array of ${config.encoderLayers} layers (config.encoderLayers)`);
  if (!Array.isArray(dec) || dec.length !== config.decoderLayers) fail(file, `desc.decoder must be an array of ${config.decoderLayers} layers (config.decoderLayers)`);
  const pe = (i: number) => plan.encoderLayers?.[i] ?? plan.encoder;
  const pd = (i: number) => plan.decoderLayers?.[i] ?? plan.decoder;
  const V = config.vocabSize;
  const desc: MarianDesc = {
    d, heads: config.decoderHeads, vocab: V, maxPos: config.maxPositions, embedScale: top.embedScale as number, act: top.act as number,
    ...(embedKey === 'embed' ? { embed: f32(top.embed, V * d, 'desc.embed') } : { embedHalf: u16(top.embedHalf, V * d, 'desc.embedHalf') }),
    lmHead: linear(top.lmHead, V, d, plan.lmHead, 'desc.lmHead'),
    encoder: enc.map((l: unknown, i: number) => {
      const p = `desc.encoder[${i}]`, t = pe(i), F = config.encoderFfn;
      const o = fields(l, p, ['qkv', 'out', 'lnAttn', 'fc1', 'fc2', 'lnFfn']);
      return {
        qkv: linear(o.qkv, 3 * d, d, t, `${p}.qkv`), out: linear(o.out, d, d, t, `${p}.out`), lnAttn: norm(o.lnAttn, `${p}.lnAttn`),
        fc1: linear(o.fc1, F, d, t, `${p}.fc1`), fc2: linear(o.fc2, d, F, t, `${p}.fc2`), lnFfn: norm(o.lnFfn, `${p}.lnFfn`),
      };
    }),
    decoder: dec.map((l: unknown, i: number) => {
      const p = `desc.decoder[${i}]`, t = pd(i), F = config.decoderFfn;
      const o = fields(l, p, ['qkv', 'out', 'lnSelf', 'crossQ', 'crossKv', 'crossOut', 'lnCross', 'fc1', 'fc2', 'lnFfn']);
      return {
        qkv: linear(o.qkv, 3 * d, d, t, `${p}.qkv`), out: linear(o.out, d, d, t, `${p}.out`), lnSelf: norm(o.lnSelf, `${p}.lnSelf`),
        crossQ: linear(o.crossQ, d, d, t, `${p}.crossQ`), crossKv: linear(o.crossKv, 2 * d, d, t, `${p}.crossKv`),
        crossOut: linear(o.crossOut, d, d, t, `${p}.crossOut`), lnCross: norm(o.lnCross, `${p}.lnCross`),
        fc1: linear(o.fc1, F, d, t, `${p}.fc1`), fc2: linear(o.fc2, d, F, t, `${p}.fc2`), lnFfn: norm(o.lnFfn, `${p}.lnFfn`),
      };
    }),
  };
  const unused = used.indexOf(0);
  if (unused >= 0) fail(file, `blob ${unused} is listed but not used by the description`);
  const tokenizerFiles = new Map<string, Uint8Array>();
  const files = header.files ?? {};
  if (!isObj(files) || Object.keys(files).length > MAX_FILES) fail(file, `files must be an object of at most ${MAX_FILES} entries`);
  for (const [name, f] of Object.entries(files)) {
    if (!/^[A-Za-z0-9._-]{1,128}$/.test(name)) fail(file, `files: bad name ${show(name)}`);
    if (!isObj(f)) fail(file, `files.${name} must be an object`);
    const [off, len] = range(f.offset, f.bytes, `file ${name}`);
    tokenizerFiles.set(name, new Uint8Array(arena, off, len));
  }
  // no two blobs (or scales, or files) may share bytes
  ranges.sort((a, b) => a.off - b.off);
  for (let j = 1; j < ranges.length; j++)
    if (ranges[j - 1].off + ranges[j - 1].len > ranges[j].off) fail(file, `${ranges[j - 1].what} overlaps ${ranges[j].what}`);
  header.config = config;
  header.precision = plan;
  desc.arena = arena; // the native model keeps desc alive, and with it the memory every view points into
  return { desc, tokenizerFiles };
}

/**
 * Opens a packed model file: memory-mapped (copy-on-write, so live edits such as layer-norm tuning stay
 * private) where the platform allows, else read in one piece into 64-byte aligned memory. Either way the
 * weights are used in place through views; nothing is copied or re-packed. The header is validated against
 * the schema above before anything is built: any malformed, inconsistent or non-finite content is E_MODEL.
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
  const view = Buffer.from(arena);
  if (view.toString('latin1', 0, 8) !== PACKED_MAGIC) fail(file, 'not a chimera packed model (bad magic)');
  const hlen = Number(view.readBigUInt64LE(8));
  if (hlen <= 0 || hlen > MAX_HEADER_BYTES || 16 + hlen > size) fail(file, `header length ${hlen} runs past the end of the file (${size} bytes) or the ${MAX_HEADER_BYTES}-byte limit`);
  let header: PackedHeader;
  try {
    header = JSON.parse(view.toString('utf8', 16, 16 + hlen)) as PackedHeader;
  } catch (e) {
    fail(file, `the header is not valid JSON (${(e as Error).message})`, e);
  }
  if (!isObj(header)) fail(file, 'the header is not a JSON object');
  if (header.format !== PACKED_FORMAT_VERSION)
    fail(file, `packed format version ${show(header.format)} is not supported (this build reads version ${PACKED_FORMAT_VERSION}); convert the model again`);
  if (header.model !== 'marian') fail(file, `unsupported packed model kind ${show(header.model)}`);
  if (header.source !== undefined && typeof header.source !== 'string') fail(file, 'source must be a string');
  const { desc, tokenizerFiles } = buildDesc(file, header, arena, align(16 + hlen));
  return { header, desc, tokenizerFiles, readMs: performance.now() - t0 };
}
