/**
 * The greedy-output fixture of the standalone CUDA driver (bench/cuda/driver.cpp): a Marian model's weights
 * exactly as the package hands them to the native layer, source sentences' ids, and the package's own CPU greedy
 * output for each, in a small binary the driver reads without Node (the GPU machine has none).
 *
 * Format, version 1. Little-endian; every field 4 bytes (u32, i32 or f32), so everything is 4-byte aligned.
 *
 *   magic        8 bytes "CHIMFIX1"
 *   header       u32 version (1), d, heads, vocab, maxPos, encoderLayers, decoderLayers, encoderFfn,
 *                decoderFfn, act (kernel activation code), eosId, padId, decoderStartId, maxLength (the search's,
 *                start token counted), forceEosAtMax (0/1), bannedCount, sentenceCount, isaBytes;
 *                f32 embedScale
 *   banned       i32[bannedCount]       token ids never generated (pad and bad_words_ids)
 *   isa          isaBytes of ASCII, zero padded to 4: the CPU kernel path the references were computed on
 *   weights      f32, in this order (linears [n][k] row-major, as marianCreate's packers take them: qkv fused
 *                [q; k; v] with q pre-scaled by head_dim^-0.5, crossKv fused [k; v], crossQ pre-scaled):
 *                embed [vocab][d]; lmHead.w [vocab][d], lmHead.b [vocab];
 *                per encoder layer: qkv.w [3d][d], qkv.b, out.w [d][d], out.b, lnAttn.gamma, lnAttn.beta,
 *                  fc1.w [F][d], fc1.b, fc2.w [d][F], fc2.b, lnFfn.gamma, lnFfn.beta;
 *                per decoder layer: qkv.w, qkv.b, out.w, out.b, lnSelf.gamma, lnSelf.beta, crossQ.w [d][d],
 *                  crossQ.b, crossKv.w [2d][d], crossKv.b, crossOut.w, crossOut.b, lnCross.gamma, lnCross.beta,
 *                  fc1.w, fc1.b, fc2.w, fc2.b, lnFfn.gamma, lnFfn.beta
 *   sentences    per sentence: u32 srcLen, i32[srcLen] (eos included); u32 fp32Len, i32[fp32Len] (greedy output of
 *                the fp32 tier, no start token, eos last when produced); u32 int8Len, i32[int8Len] (the int8 tier)
 *   end          u32 0x21444e45 ("END!")
 *
 * The fp32 weights are read back from the package's own packed handles (native packedCopy, then the 64-column
 * panel layout undone), so they are bit for bit what MarianModel.load packed, fusion and scaling included.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MarianModel } from '../../src/marian';
import { native } from '../../src/native';
import type { MarianDesc } from '../../src/model/packed-file';

export const FIXTURE_MAGIC = 'CHIMFIX1';
export const FIXTURE_VERSION = 1;
export const FIXTURE_END = 0x21444e45;
/** Header fields after the magic, in order (all u32 but the last, f32). */
export const HEADER_FIELDS = [
  'version', 'd', 'heads', 'vocab', 'maxPos', 'encoderLayers', 'decoderLayers', 'encoderFfn', 'decoderFfn', 'act',
  'eosId', 'padId', 'decoderStartId', 'maxLength', 'forceEosAtMax', 'bannedCount', 'sentenceCount', 'isaBytes', 'embedScale',
] as const;
export type FixtureHeader = Record<(typeof HEADER_FIELDS)[number], number>;

export interface FixtureSentence {
  src: number[];
  fp32: number[];
  int8: number[];
}
export interface Fixture {
  header: FixtureHeader;
  banned: number[];
  isa: string;
  /** Floats of weights, in the documented order, starting at byte weightsOffset. */
  weightFloats: number;
  weightsOffset: number;
  sentences: FixtureSentence[];
  bytes: number;
}

/** Floats the weights take for a geometry (the driver computes the same and checks the file against it). */
export function weightFloats(h: Pick<FixtureHeader, 'd' | 'vocab' | 'encoderLayers' | 'decoderLayers' | 'encoderFfn' | 'decoderFfn'>): number {
  const { d, vocab: V } = h;
  const lin = (n: number, k: number) => n * k + n;
  const ln = 2 * d;
  const enc = lin(3 * d, d) + lin(d, d) + ln + lin(h.encoderFfn, d) + lin(d, h.encoderFfn) + ln;
  const dec = lin(3 * d, d) + lin(d, d) + ln + lin(d, d) + lin(2 * d, d) + lin(d, d) + ln + lin(h.decoderFfn, d) + lin(d, h.decoderFfn) + ln;
  return V * d + lin(V, d) + h.encoderLayers * enc + h.decoderLayers * dec;
}

/** The [n][k] fp32 weights behind a packed fp32 handle (layout: groups of 64 columns, each k row 64 wide). */
function unpackF32(handle: object): { w: Float32Array; n: number; k: number } {
  const nb = native();
  const info = nb.packedInfo(handle);
  if (info.kind !== 'f32') throw new Error(`expected an fp32 packed weight, got ${info.kind}`);
  const raw = new Uint8Array(info.bytes);
  nb.packedCopy(handle, raw, null);
  const p = new Float32Array(raw.buffer, raw.byteOffset, info.bytes / 4);
  const { n, k } = info;
  const w = new Float32Array(n * k);
  for (let col = 0; col < n; col++) {
    const base = (col >> 6) * k * 64 + (col & 63);
    for (let j = 0; j < k; j++) w[col * k + j] = p[base + j * 64];
  }
  return { w, n, k };
}

class Writer {
  private chunks: Buffer[] = [];
  bytes = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.bytes += b.length;
  }
  u32(...v: number[]): void {
    const b = Buffer.alloc(4 * v.length);
    v.forEach((x, i) => {
      if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) throw new Error(`u32 field out of range: ${x}`);
      b.writeUInt32LE(x, 4 * i);
    });
    this.push(b);
  }
  i32s(v: ArrayLike<number>): void {
    const a = Int32Array.from(v as ArrayLike<number>);
    this.push(Buffer.from(a.buffer, a.byteOffset, a.byteLength));
  }
  f32s(a: Float32Array, n: number, what: string): void {
    if (a.length !== n) throw new Error(`${what} has ${a.length} floats, expected ${n}`);
    this.push(Buffer.from(a.buffer, a.byteOffset, a.byteLength));
  }
  done(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

export interface BuildOptions {
  /** Source texts (tokenised with the model's tokenizer, eos appended). */
  sentences: string[];
  /** Generated tokens at most; default the package's (the model's max_length - 1). */
  maxLength?: number;
}

/** Loads `modelDir` at fp32 and at int8 through MarianModel.load and returns the fixture file's bytes. */
export async function buildFixture(modelDir: string, opts: BuildOptions): Promise<Buffer> {
  const fp32 = await MarianModel.load(modelDir, { precision: 'fp32' });
  const int8 = await MarianModel.load(modelDir, { precision: 'int8' });
  const c = fp32.config;
  const spec = fp32.searchSpec;
  const gen = opts.maxLength === undefined ? {} : { maxLength: opts.maxLength };
  const searchMax = fp32.searchOptions(gen).maxLength;
  const tok = fp32.requireTokenizer();
  const sentences: FixtureSentence[] = opts.sentences.map((text) => {
    const src = tok.encode(text);
    return { src, fp32: fp32.generate([src], gen).ids[0], int8: int8.generate([src], gen).ids[0] };
  });
  // the description marianCreate was given (private to MarianModel: this script reads it, never changes it)
  const desc = (fp32 as unknown as { desc: MarianDesc }).desc;
  const d = desc.d;
  if (!desc.embed) throw new Error('the fp32 tier should carry an fp32 embedding');
  const isa = native().cpuInfo().isa;
  const isaBytes = Buffer.from(isa, 'ascii');
  const w = new Writer();
  w.push(Buffer.from(FIXTURE_MAGIC, 'ascii'));
  const ffnOf = (layers: { fc1: { bias: Float32Array } }[]) => layers[0].fc1.bias.length;
  const header: FixtureHeader = {
    version: FIXTURE_VERSION, d, heads: desc.heads, vocab: desc.vocab, maxPos: desc.maxPos,
    encoderLayers: desc.encoder.length, decoderLayers: desc.decoder.length,
    encoderFfn: ffnOf(desc.encoder), decoderFfn: ffnOf(desc.decoder), act: desc.act,
    eosId: spec.eosId, padId: c.padId, decoderStartId: spec.startId, maxLength: searchMax,
    forceEosAtMax: spec.forceEosAtMax ? 1 : 0, bannedCount: spec.banned.length, sentenceCount: sentences.length,
    isaBytes: isaBytes.length, embedScale: desc.embedScale,
  };
  if (desc.encoder.some((l) => l.fc1.bias.length !== header.encoderFfn) || desc.decoder.some((l) => l.fc1.bias.length !== header.decoderFfn))
    throw new Error('layers of different FFN widths within the encoder or decoder are not supported by fixture v1');
  w.u32(...HEADER_FIELDS.slice(0, -1).map((k) => header[k]));
  const es = Buffer.alloc(4);
  es.writeFloatLE(header.embedScale, 0);
  w.push(es);
  w.i32s(spec.banned);
  w.push(Buffer.concat([isaBytes, Buffer.alloc((4 - (isaBytes.length % 4)) % 4)]));

  const start = w.bytes;
  type Lin = { w: object; bias?: Float32Array | null };
  const linear = (l: Lin, n: number, k: number, what: string) => {
    const u = unpackF32(l.w);
    if (u.n !== n || u.k !== k) throw new Error(`${what} is ${u.n}x${u.k}, expected ${n}x${k}`);
    w.f32s(u.w, n * k, `${what}.w`);
    if (!l.bias) throw new Error(`${what} has no bias (fixture v1 stores one for every linear)`);
    w.f32s(l.bias, n, `${what}.b`);
  };
  type Ln = { gamma: Float32Array; beta?: Float32Array | null };
  const norm = (n: Ln, what: string) => {
    w.f32s(n.gamma, d, `${what}.gamma`);
    if (!n.beta) throw new Error(`${what} has no beta`);
    w.f32s(n.beta, d, `${what}.beta`);
  };
  const V = desc.vocab;
  w.f32s(desc.embed as Float32Array, V * d, 'embed');
  linear(desc.lmHead, V, d, 'lmHead');
  desc.encoder.forEach((l, i) => {
    const F = header.encoderFfn, p = `encoder.${i}`;
    linear(l.qkv, 3 * d, d, `${p}.qkv`);
    linear(l.out, d, d, `${p}.out`);
    norm(l.lnAttn, `${p}.lnAttn`);
    linear(l.fc1, F, d, `${p}.fc1`);
    linear(l.fc2, d, F, `${p}.fc2`);
    norm(l.lnFfn, `${p}.lnFfn`);
  });
  desc.decoder.forEach((l, i) => {
    const F = header.decoderFfn, p = `decoder.${i}`;
    linear(l.qkv, 3 * d, d, `${p}.qkv`);
    linear(l.out, d, d, `${p}.out`);
    norm(l.lnSelf, `${p}.lnSelf`);
    linear(l.crossQ, d, d, `${p}.crossQ`);
    linear(l.crossKv, 2 * d, d, `${p}.crossKv`);
    linear(l.crossOut, d, d, `${p}.crossOut`);
    norm(l.lnCross, `${p}.lnCross`);
    linear(l.fc1, F, d, `${p}.fc1`);
    linear(l.fc2, d, F, `${p}.fc2`);
    norm(l.lnFfn, `${p}.lnFfn`);
  });
  if (w.bytes - start !== 4 * weightFloats(header)) throw new Error('weight section size does not match weightFloats()');
  for (const s of sentences) {
    w.u32(s.src.length);
    w.i32s(s.src);
    w.u32(s.fp32.length);
    w.i32s(s.fp32);
    w.u32(s.int8.length);
    w.i32s(s.int8);
  }
  w.u32(FIXTURE_END);
  return w.done();
}

/** Parses a fixture (header, banned ids, ISA, sentences; the weights are only sized). Throws on any mismatch. */
export function readFixture(buf: Buffer): Fixture {
  if (buf.length < 8 || buf.toString('ascii', 0, 8) !== FIXTURE_MAGIC) throw new Error('not a chimera CUDA fixture (bad magic)');
  let o = 8;
  const need = (n: number) => {
    if (o + n > buf.length) throw new Error(`fixture truncated at byte ${o}`);
  };
  const u32 = () => {
    need(4);
    const v = buf.readUInt32LE(o);
    o += 4;
    return v;
  };
  const i32s = (n: number) => {
    need(4 * n);
    const a: number[] = [];
    for (let i = 0; i < n; i++) a.push(buf.readInt32LE(o + 4 * i));
    o += 4 * n;
    return a;
  };
  const header = {} as FixtureHeader;
  for (const k of HEADER_FIELDS.slice(0, -1)) header[k] = u32();
  need(4);
  header.embedScale = buf.readFloatLE(o);
  o += 4;
  if (header.version !== FIXTURE_VERSION) throw new Error(`fixture version ${header.version}, expected ${FIXTURE_VERSION}`);
  const banned = i32s(header.bannedCount);
  need(header.isaBytes);
  const isa = buf.toString('ascii', o, o + header.isaBytes);
  o += header.isaBytes + ((4 - (header.isaBytes % 4)) % 4);
  const wf = weightFloats(header);
  const weightsOffset = o;
  need(4 * wf);
  o += 4 * wf;
  const sentences: FixtureSentence[] = [];
  for (let i = 0; i < header.sentenceCount; i++) sentences.push({ src: i32s(u32()), fp32: i32s(u32()), int8: i32s(u32()) });
  if (u32() !== FIXTURE_END) throw new Error('fixture end marker missing');
  if (o !== buf.length) throw new Error(`${buf.length - o} trailing bytes after the end marker`);
  return { header, banned, isa, weightFloats: wf, weightsOffset, sentences, bytes: buf.length };
}

/** The first `n` non-empty lines of a text file. */
export function firstLines(file: string, n: number): string[] {
  return fs.readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '').slice(0, n);
}

export const DEFAULT_FIXTURE = path.join(__dirname, 'fixture', 'm30k.bin');
