/**
 * pytorch_model.bin through the restricted unpickler: the shared model saved by torch.save (zip, fp32 and fp16)
 * against its safetensors weights and reference outputs; the small fixtures written by
 * scripts/make-torch-fixtures.py with torch 1.13 (legacy format, shards, views with offsets and strides, Float16,
 * BFloat16); hostile pickles; `convert --to safetensors`; and a mutation fuzz of both formats.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChimeraError } from '../src/errors';
import { MarianModel } from '../src/marian';
import { readMarianConfig } from '../src/model/config';
import { LIMITS, unpickle } from '../src/model/pickle';
import { floatToBf16, floatToHalf, halfToFloat, readSafetensors, readSafetensorsHeader } from '../src/model/safetensors';
import { convertToSafetensors } from '../src/model/to-safetensors';
import { parseTorchCheckpoint, readTorchCheckpoint, readTorchIndex, torchTensorFloat32 } from '../src/model/torch-bin';
import { loadMarianWeights, marianSinusoid, type MarianWeights } from '../src/model/weights';
import { getF32, getInts, readSafetensors as miniRead } from './helpers/safetensors-mini';
import { chimera } from './helpers/cli';

const ROOT = path.resolve(__dirname, '..');
const FIX = path.join(__dirname, 'fixtures', 'torch');
const SHARED = process.env.CHIMERA_SHARED ?? path.join(ROOT, '..', 'shared');
const ST_DIR = path.join(SHARED, 'models', 'marian-m30k-en-de');
const PT_DIR = path.join(SHARED, 'models', 'marian-m30k-en-de-torch');
const PT16_DIR = path.join(SHARED, 'models', 'marian-m30k-en-de-torch-fp16');
const HAVE_SHARED = [ST_DIR, PT_DIR, PT16_DIR].every((d) => fs.existsSync(d)) && fs.existsSync(path.join(ST_DIR, 'reference', 'logits.safetensors'));

function expectModelError(f: () => unknown, ...parts: string[]): ChimeraError {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected an error').toBeInstanceOf(ChimeraError);
  const ce = err as ChimeraError;
  expect(ce.code, ce.message).toBe('E_MODEL');
  for (const p of parts) expect(ce.message).toContain(p);
  return ce;
}

/** Every weight array of a MarianWeights, by a stable name. */
function flatten(w: MarianWeights): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>([['embed', w.embed], ['finalLogitsBias', w.finalLogitsBias]]);
  const walk = (prefix: string, v: unknown): void => {
    if (v instanceof Float32Array) out.set(prefix, v);
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(`${prefix}.${k}`, x);
  };
  walk('encoder', w.encoder);
  walk('decoder', w.decoder);
  return out;
}

function expectSameWeights(a: MarianWeights, b: MarianWeights, round: (x: number) => number = (x) => x): void {
  const fa = flatten(a);
  const fb = flatten(b);
  expect([...fa.keys()]).toEqual([...fb.keys()]);
  for (const [k, x] of fa) {
    const y = fb.get(k)!;
    expect(y.length, k).toBe(x.length);
    let bad = -1;
    for (let i = 0; i < x.length; i++) if (!Object.is(round(x[i]), y[i])) { bad = i; break; }
    expect(bad, `${k}: first difference at ${bad} (${x[bad]} -> ${bad >= 0 ? round(x[bad]) : ''} vs ${y[bad]})`).toBe(-1);
  }
}

const toHalf = (x: number) => halfToFloat(floatToHalf(x));
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const toBf16 = (x: number) => { u32[0] = floatToBf16(x) << 16; return f32[0]; };

// ------------------------------------------------------------------------------------- a tiny pickle writer

/** Writes the opcodes our tests need, for hostile inputs and the legacy format (protocol 2). */
class PickleWriter {
  private bytes: number[] = [];
  raw(...b: number[]): this { this.bytes.push(...b); return this; }
  ascii(s: string): this { for (const c of Buffer.from(s, 'latin1')) this.bytes.push(c); return this; }
  proto(p = 2): this { return this.raw(0x80, p); }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    return this.raw(0x58, ...len, ...b);
  }
  int(n: number): this {
    if (n >= 0 && n < 256) return this.raw(0x4b, n);
    if (n >= 0 && n < 65536) return this.raw(0x4d, n & 255, n >> 8);
    if (n >= -(2 ** 31) && n < 2 ** 31) { const b = Buffer.alloc(4); b.writeInt32LE(n); return this.raw(0x4a, ...b); }
    const b = Buffer.alloc(8);
    b.writeBigInt64LE(BigInt(n));
    return this.raw(0x8a, 8, ...b);
  }
  global(module: string, name: string): this { return this.ascii(`c${module}\n${name}\n`); }
  mark(): this { return this.raw(0x28); }
  tuple(): this { return this.raw(0x74); }
  tupleOf(ns: number[]): this { this.mark(); ns.forEach((n) => this.int(n)); return this.tuple(); }
  stop(): this { return this.raw(0x2e); }
  out(): Uint8Array { return Uint8Array.from(this.bytes); }
}

interface LegacyTensor {
  dtype: 'F32' | 'F16' | 'BF16';
  shape: number[];
  /** The whole storage, as float values. */
  storage: Float32Array;
  key?: string;
  offset?: number;
  stride?: number[];
  /** Declared element count (default: the storage's). */
  numel?: number;
}

const CLASS = { F32: 'FloatStorage', F16: 'HalfStorage', BF16: 'BFloat16Storage' } as const;

/** A legacy-format checkpoint (magic, protocol, sys info, state dict, keys, raw storages), built by hand. */
function legacyCheckpoint(tensors: Record<string, LegacyTensor>, opts: { mainPickle?: Uint8Array; storageCount?: (key: string) => bigint } = {}): Buffer {
  const magic = new PickleWriter().proto().raw(0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19).stop().out();
  const protocol = new PickleWriter().proto().int(1001).stop().out();
  const info = new PickleWriter().proto().raw(0x7d).str('little_endian').raw(0x88, 0x73).stop().out();
  const main = new PickleWriter().proto().raw(0x7d).mark();
  const storages = new Map<string, LegacyTensor>();
  for (const [name, t] of Object.entries(tensors)) {
    const key = t.key ?? name;
    storages.set(key, t);
    const row = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    main.str(name).global('torch._utils', '_rebuild_tensor_v2').mark()
      .mark().str('storage').global('torch', CLASS[t.dtype]).str(key).str('cpu').int(t.numel ?? t.storage.length).raw(0x4e).tuple().raw(0x51)
      .int(t.offset ?? 0).tupleOf(t.shape).tupleOf(t.stride ?? row).raw(0x89).global('collections', 'OrderedDict').raw(0x29, 0x52)
      .tuple().raw(0x52);
  }
  main.raw(0x75).stop();
  const keys = new PickleWriter().proto().raw(0x5d).mark();
  for (const k of [...storages.keys()].sort()) keys.str(k);
  keys.raw(0x65).stop();
  const parts: Buffer[] = [magic, protocol, info, opts.mainPickle ?? main.out(), keys.out()].map((b) => Buffer.from(b));
  for (const k of [...storages.keys()].sort()) {
    const t = storages.get(k)!;
    const count = Buffer.alloc(8);
    count.writeBigInt64LE(opts.storageCount?.(k) ?? BigInt(t.numel ?? t.storage.length));
    let data: Buffer;
    if (t.dtype === 'F32') data = Buffer.from(t.storage.buffer, t.storage.byteOffset, t.storage.byteLength);
    else {
      const h = new Uint16Array(t.storage.length);
      for (let i = 0; i < h.length; i++) h[i] = t.dtype === 'F16' ? floatToHalf(t.storage[i]) : floatToBf16(t.storage[i]);
      data = Buffer.from(h.buffer);
    }
    parts.push(count, data);
  }
  return Buffer.concat(parts);
}

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'chimera-torch-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

// --------------------------------------------------------------------------------------------- shared model

describe.skipIf(!HAVE_SHARED)('the shared model saved by torch.save', () => {
  const config = () => readMarianConfig(ST_DIR);

  it('the fp32 zip checkpoint: every tensor zero-copy, tied weights on one storage, positions present', () => {
    const ck = readTorchCheckpoint(path.join(PT_DIR, 'pytorch_model.bin'));
    expect(ck.format).toBe('zip');
    const shared = ck.tensors.get('model.shared.weight')!;
    for (const n of ['lm_head.weight', 'model.encoder.embed_tokens.weight', 'model.decoder.embed_tokens.weight']) {
      expect(ck.tensors.get(n)!.storageKey, n).toBe(shared.storageKey);
    }
    expect(ck.tensors.has('model.encoder.embed_positions.weight')).toBe(true);
    const views = [...ck.tensors.values()].map((t) => torchTensorFloat32(t));
    expect(views.every((v) => v.zeroCopy)).toBe(true);
    const a = torchTensorFloat32(shared).data;
    const b = torchTensorFloat32(ck.tensors.get('lm_head.weight')!).data;
    expect(b.buffer).toBe(a.buffer);
    expect(b.byteOffset).toBe(a.byteOffset);
  });

  it('fp32 .bin weights are bit-identical to model.safetensors', () => {
    expectSameWeights(loadMarianWeights(ST_DIR, config()), loadMarianWeights(PT_DIR, config()));
  });

  it('fp16 .bin weights equal the fp16-rounded safetensors weights exactly', () => {
    const ck = readTorchCheckpoint(path.join(PT16_DIR, 'pytorch_model.bin'));
    expect(new Set([...ck.tensors.values()].map((t) => t.dtype))).toEqual(new Set(['F16']));
    expectSameWeights(loadMarianWeights(ST_DIR, config()), loadMarianWeights(PT16_DIR, config()), toHalf);
  });

  it('fp32 .bin logits are identical to the safetensors model and match the PyTorch reference', async () => {
    const st = await MarianModel.load(ST_DIR);
    const pt = await MarianModel.load(PT_DIR);
    const ref = miniRead(path.join(ST_DIR, 'reference', 'logits.safetensors'));
    for (let n = 0; n < 4; n++) {
      const src = getInts(ref, `s${n}.input_ids`);
      const dec = getInts(ref, `s${n}.decoder_input_ids`);
      const a = st.teacherForcedLogits(src, dec);
      const b = pt.teacherForcedLogits(src, dec);
      expect(Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(Buffer.from(a.buffer, a.byteOffset, a.byteLength)), `s${n}`).toBe(true);
      const r = getF32(ref, `s${n}.logits`);
      let err = 0;
      let scale = 0;
      for (let i = 0; i < r.length; i++) {
        err = Math.max(err, Math.abs(b[i] - r[i]));
        scale = Math.max(scale, Math.abs(r[i]));
      }
      expect(err / scale, `s${n} vs reference`).toBeLessThanOrEqual(1e-4);
    }
  });

  it('fp32 .bin greedy (its own SentencePiece files, no tokenizer.json) reproduces val200.greedy.de', async () => {
    const pt = await MarianModel.load(PT_DIR);
    const tok = pt.tokenizer!;
    expect(tok).not.toBeNull();
    const N = 200;
    const src = fs.readFileSync(path.join(SHARED, 'data', 'multi30k', 'val.en'), 'utf8').split('\n').slice(0, N);
    const ref = fs.readFileSync(path.join(ST_DIR, 'reference', 'val200.greedy.de'), 'utf8').split('\n').slice(0, N);
    const hyps: string[] = [];
    for (let i = 0; i < N; i += 50) hyps.push(...pt.generate(src.slice(i, i + 50).map((s) => tok.encode(s))).ids.map((ids) => tok.decode(ids)));
    const st = await MarianModel.load(ST_DIR);
    const stTok = st.tokenizer!;
    const stHyps: string[] = [];
    for (let i = 0; i < N; i += 50) stHyps.push(...st.generate(src.slice(i, i + 50).map((s) => stTok.encode(s))).ids.map((ids) => stTok.decode(ids)));
    expect(hyps).toEqual(stHyps);
    const same = hyps.filter((h, i) => h === ref[i]).length;
    expect(same / N, `${same} of ${N} identical`).toBeGreaterThanOrEqual(0.99);
  });

  it('load time: .bin against safetensors (printed)', async () => {
    const time = async (dir: string) => {
      const ms: number[] = [];
      for (let i = 0; i < 3; i++) ms.push((await MarianModel.load(dir)).loadMs);
      return Math.min(...ms);
    };
    const st = await time(ST_DIR);
    const pt = await time(PT_DIR);
    const pt16 = await time(PT16_DIR);
    console.log(`MarianModel.load fp32, best of 3: safetensors ${st.toFixed(1)} ms, pytorch_model.bin ${pt.toFixed(1)} ms, fp16 .bin ${pt16.toFixed(1)} ms`);
    expect(pt).toBeLessThan(10_000); // informative: the figures vary with the machine's load
  });
});

// ------------------------------------------------------------------------------------ fixtures from torch 1.13

describe('small checkpoints written by torch 1.13 (scripts/make-torch-fixtures.py)', () => {
  const tiny = path.join(FIX, 'tiny');
  const config = () => readMarianConfig(tiny);

  it('legacy format (fp32) gives the reference weights exactly', () => {
    const ck = readTorchCheckpoint(path.join(FIX, 'tiny-legacy', 'pytorch_model.bin'));
    expect(ck.format).toBe('legacy');
    expectSameWeights(loadMarianWeights(tiny, config()), loadMarianWeights(path.join(FIX, 'tiny-legacy'), config()));
  });

  it('legacy format in Float16 gives the fp16-rounded reference weights exactly', () => {
    expectSameWeights(loadMarianWeights(tiny, config()), loadMarianWeights(path.join(FIX, 'tiny-fp16-legacy'), config()), toHalf);
  });

  it('BFloat16 gives the bf16-rounded reference weights exactly', () => {
    const ck = readTorchCheckpoint(path.join(FIX, 'tiny-bf16', 'pytorch_model.bin'));
    expect(new Set([...ck.tensors.values()].map((t) => t.dtype))).toEqual(new Set(['BF16']));
    expectSameWeights(loadMarianWeights(tiny, config()), loadMarianWeights(path.join(FIX, 'tiny-bf16'), config()), toBf16);
  });

  it('sharded, with storage offsets and transposed strides, gives the reference weights exactly', () => {
    const dir = path.join(FIX, 'tiny-sharded');
    const all = readTorchIndex(path.join(dir, 'pytorch_model.bin.index.json'));
    expect(new Set([...all.values()].map((t) => path.basename(t.file))).size).toBe(2);
    const k = all.get('model.decoder.layers.1.encoder_attn.k_proj.weight')!;
    const q = all.get('model.decoder.layers.1.encoder_attn.q_proj.weight')!;
    expect(k.storageKey).toBe(q.storageKey);
    expect(k.offset).toBe(16 * 16);
    expect(all.get('model.encoder.layers.0.fc1.weight')!.stride).toEqual([1, 32]);
    expectSameWeights(loadMarianWeights(tiny, config()), loadMarianWeights(dir, config()));
  });

  it('a .bin model computes the same logits as its safetensors twin', async () => {
    const a = await MarianModel.load(tiny);
    const b = await MarianModel.load(path.join(FIX, 'tiny-sharded'));
    const la = a.teacherForcedLogits([5, 9, 17, 0], [63, 4, 8]);
    const lb = b.teacherForcedLogits([5, 9, 17, 0], [63, 4, 8]);
    expect(Array.from(lb)).toEqual(Array.from(la));
  });

  for (const f of ['views.bin', 'views-legacy.bin']) {
    it(`${f}: every view (offset, transposed, strided, stride 0, 0-d, empty, fp16, bf16, fp64) reads as torch sees it`, () => {
      const expected = JSON.parse(fs.readFileSync(path.join(FIX, 'views.json'), 'utf8')) as Record<string, { shape: number[]; stride: number[]; offset: number; dtype: string; values: number[] }>;
      const ck = readTorchCheckpoint(path.join(FIX, f));
      expect([...ck.tensors.keys()].sort()).toEqual(Object.keys(expected).sort());
      for (const [name, e] of Object.entries(expected)) {
        const t = ck.tensors.get(name)!;
        expect(t.shape, name).toEqual(e.shape);
        expect(t.stride, name).toEqual(e.stride);
        expect(t.offset, name).toBe(e.offset);
        if (e.dtype === 'int64') {
          expect(t.dtype).toBe('I64');
          expectModelError(() => torchTensorFloat32(t), 'ids', 'I64');
          continue;
        }
        expect(Array.from(torchTensorFloat32(t).data), name).toEqual(e.values);
      }
      if (f === 'views.bin') {
        expect(torchTensorFloat32(ck.tensors.get('row_slice')!).zeroCopy).toBe(true);
        expect(torchTensorFloat32(ck.tensors.get('transposed')!).zeroCopy).toBe(false);
      }
    });
  }

  it('position tables are checked against the sinusoidal formula', () => {
    const ref = readSafetensors(path.join(tiny, 'model.safetensors'));
    const build = (pos: Float32Array, dtype: 'F32' | 'BF16' = 'F32') => {
      const tensors: Record<string, LegacyTensor> = {};
      for (const [n, t] of ref) tensors[n] = { dtype, shape: t.shape, storage: t.data };
      tensors['model.decoder.embed_positions.weight'] = { dtype, shape: [32, 16], storage: pos };
      const dir = path.join(tmp, `pos-${Math.random().toString(36).slice(2)}`);
      fs.mkdirSync(dir);
      fs.copyFileSync(path.join(tiny, 'config.json'), path.join(dir, 'config.json'));
      fs.writeFileSync(path.join(dir, 'pytorch_model.bin'), legacyCheckpoint(tensors));
      return dir;
    };
    const good = new Float32Array(32 * 16).map((_, i) => marianSinusoid(Math.floor(i / 16), i % 16, 16));
    expect(() => loadMarianWeights(build(good), config())).not.toThrow();
    expect(() => loadMarianWeights(build(good, 'BF16'), config())).not.toThrow();
    const learned = good.map((v, i) => (i === 5 * 16 + 3 ? v + 0.01 : v));
    expectModelError(() => loadMarianWeights(build(learned), config()), 'embed_positions', 'sinusoidal', 'position 5, column 3');
    // The fixture's tables, written by transformers' formula in numpy, pass.
    const ck = readTorchCheckpoint(path.join(FIX, 'tiny-legacy', 'pytorch_model.bin'));
    const saved = torchTensorFloat32(ck.tensors.get('model.encoder.embed_positions.weight')!).data;
    let worst = 0;
    for (let i = 0; i < saved.length; i++) worst = Math.max(worst, Math.abs(saved[i] - marianSinusoid(Math.floor(i / 16), i % 16, 16)));
    expect(worst).toBeLessThan(1e-6);
  });

  it('convert --to safetensors writes a standard file with the same values (library and CLI)', async () => {
    const out = path.join(tmp, 'st-out');
    const r = convertToSafetensors(path.join(FIX, 'tiny-sharded'), out);
    expect(r.copied).toContain('config.json');
    const names = [...readSafetensorsHeader(r.file).tensors.keys()];
    expect(names).toContain('model.shared.weight');
    expect(names).not.toContain('lm_head.weight');
    expect(names).not.toContain('model.encoder.embed_positions.weight');
    expectSameWeights(loadMarianWeights(tiny, config()), loadMarianWeights(out, config()));
    // bf16 stays bf16
    const bf = convertToSafetensors(path.join(FIX, 'tiny-bf16'), path.join(tmp, 'bf16.safetensors'));
    expect(readSafetensorsHeader(bf.file).tensors.get('model.shared.weight')!.dtype).toBe('BF16');
    // The CLI, from a legacy checkpoint
    const cliOut = path.join(tmp, 'cli-st');
    const run = chimera(['convert', path.join(FIX, 'tiny-legacy'), cliOut, '--to', 'safetensors']);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toContain('model.safetensors');
    expectSameWeights(loadMarianWeights(tiny, config()), loadMarianWeights(cliOut, config()));
  });
});

// ------------------------------------------------------------------------------------------ hostile pickles

describe('hostile pickles are refused with E_MODEL and no side effect', () => {
  const file = 'hostile.bin';
  const marker = () => path.join(tmp, 'pwned');

  it('REDUCE of os.system is refused at the GLOBAL, naming it; nothing runs', () => {
    const p = new PickleWriter().proto().global('os', 'system').str(`touch ${marker()}`).raw(0x85, 0x52).stop().out();
    expectModelError(() => unpickle(p, { file }), "refuses global 'os.system'");
    // Inside a legacy checkpoint, as the state dict
    const ck = legacyCheckpoint({}, { mainPickle: p });
    expectModelError(() => parseTorchCheckpoint(ck, file), 'os.system');
    expect(fs.existsSync(marker())).toBe(false);
  });

  it('builtins.eval, subprocess.Popen (STACK_GLOBAL, protocol 4), posix.system', () => {
    const ev = new PickleWriter().proto().global('builtins', 'eval').str("__import__('os').system('touch x')").raw(0x85, 0x52).stop().out();
    expectModelError(() => unpickle(ev, { file }), 'builtins.eval');
    const sg = new PickleWriter().proto(4).raw(0x8c, 10).ascii('subprocess').raw(0x8c, 5).ascii('Popen').raw(0x93).stop().out();
    expectModelError(() => unpickle(sg, { file }), 'subprocess.Popen');
    const px = new PickleWriter().proto().global('posix', 'system').stop().out();
    expectModelError(() => unpickle(px, { file }), 'posix.system');
    // torch globals beyond the list are refused too
    const tl = new PickleWriter().proto().global('torch', 'load').stop().out();
    expectModelError(() => unpickle(tl, { file }), 'torch.load');
  });

  it('object-building opcodes (INST, OBJ, NEWOBJ, EXT1) are refused by name', () => {
    expectModelError(() => unpickle(new PickleWriter().proto().mark().ascii('ios\nsystem\n').stop().out(), { file }), 'INST');
    expectModelError(() => unpickle(new PickleWriter().proto().mark().raw(0x6f).stop().out(), { file }), 'OBJ');
    expectModelError(() => unpickle(new PickleWriter().proto().global('collections', 'OrderedDict').raw(0x29, 0x81).stop().out(), { file }), 'NEWOBJ');
    expectModelError(() => unpickle(new PickleWriter().proto().raw(0x82, 1).stop().out(), { file }), 'EXT1');
  });

  it('an allowed global cannot be called with arbitrary arguments', () => {
    const p = new PickleWriter().proto().global('torch._utils', '_rebuild_tensor_v2').str('x').raw(0x85, 0x52).stop().out();
    expectModelError(() => unpickle(p, { file }), '_rebuild_tensor_v2 takes 4 to 7 arguments');
    const s = new PickleWriter().proto().global('torch', 'FloatStorage').raw(0x29, 0x52).stop().out();
    expectModelError(() => unpickle(s, { file }), 'torch.FloatStorage cannot be called');
  });

  const one = (t: Partial<LegacyTensor>, opts?: Parameters<typeof legacyCheckpoint>[1]) =>
    legacyCheckpoint({ w: { dtype: 'F32', shape: [2, 2], storage: new Float32Array([1, 2, 3, 4]), ...t } }, opts);

  it('a well-formed hand-written legacy checkpoint reads (the writer is right)', () => {
    const ck = parseTorchCheckpoint(one({}), file);
    expect(Array.from(torchTensorFloat32(ck.tensors.get('w')!).data)).toEqual([1, 2, 3, 4]);
  });

  it('a storage bigger than the file', () => {
    // the pickle declares 2^40 elements: refused before anything is allocated
    expectModelError(() => parseTorchCheckpoint(one({ numel: 2 ** 40, shape: [2, 2] }), file), "storage 'w'", 'runs past the end of the file');
    // the zip format: a storage entry shorter than declared (patch the real fixture's pickle in place)
    const buf = Buffer.from(fs.readFileSync(path.join(FIX, 'views.bin')));
    // every persistent id of 'base' (6 x 8 floats, shared by several views) ends ... BININT1 48, TUPLE
    let patched = 0;
    for (let c = buf.indexOf(Buffer.from([0x4b, 48, 0x74])); c >= 0; c = buf.indexOf(Buffer.from([0x4b, 48, 0x74]), c + 1)) {
      buf[c + 1] = 255;
      patched++;
    }
    expect(patched).toBeGreaterThan(0);
    expectModelError(() => parseTorchCheckpoint(buf, file), 'declares 255 elements', 'holds 192 bytes');
  });

  it('a negative storage offset, a view past its storage, a negative size', () => {
    expectModelError(() => parseTorchCheckpoint(one({ offset: -1 }), file), 'storage offset -1');
    expectModelError(() => parseTorchCheckpoint(one({ offset: 1 }), file), 'reaches element 4', "storage 'w' of 4 elements");
    expectModelError(() => parseTorchCheckpoint(one({ shape: [2, 3], stride: [3, 1] }), file), 'outside its storage');
    expectModelError(() => parseTorchCheckpoint(one({ shape: [-2, 2], stride: [2, 1] }), file), 'tensor size[0] -2');
    expectModelError(() => parseTorchCheckpoint(one({}, { storageCount: () => 3n }), file), 'holds 3 elements in the file');
  });

  it('a deep nesting bomb: MARKs and nested lists', () => {
    const marks = new PickleWriter().proto();
    for (let i = 0; i < 100_000; i++) marks.mark();
    expectModelError(() => unpickle(marks.stop().out(), { file }), `MARKs nest deeper than ${LIMITS.maxMarkDepth}`);
    const lists = new PickleWriter().proto();
    for (let i = 0; i < 10_000; i++) lists.raw(0x5d);
    for (let i = 0; i < 9_999; i++) lists.raw(0x61);
    expectModelError(() => unpickle(lists.stop().out(), { file }), `nest deeper than ${LIMITS.maxNesting} levels`);
    const tuples = new PickleWriter().proto().raw(0x29);
    for (let i = 0; i < 10_000; i++) tuples.raw(0x85);
    expectModelError(() => unpickle(tuples.stop().out(), { file }), 'nest deeper');
  });

  it('a memo flood, a huge memo index, a GET of nothing', () => {
    const flood = new PickleWriter().proto().raw(0x4e);
    const idx = Buffer.alloc(4);
    for (let i = 0; i <= LIMITS.maxMemo; i++) {
      idx.writeUInt32LE(i);
      flood.raw(0x72, idx[0], idx[1], idx[2], idx[3]);
    }
    expectModelError(() => unpickle(flood.stop().out(), { file }), `memo exceeds ${LIMITS.maxMemo} entries`);
    expectModelError(() => unpickle(new PickleWriter().proto().raw(0x4e, 0x72, 0xff, 0xff, 0xff, 0xff).stop().out(), { file }), 'memo index 4294967295 out of range');
    expectModelError(() => unpickle(new PickleWriter().proto().raw(0x68, 7).stop().out(), { file }), 'memo index 7 was never stored');
  });

  it('lengths beyond the data: strings, bytes, big integers, truncation', () => {
    expectModelError(() => unpickle(new PickleWriter().proto().raw(0x58, 0xff, 0xff, 0xff, 0x7f, 0x41).stop().out(), { file }), 'needs 2147483647 bytes');
    expectModelError(() => unpickle(new PickleWriter().proto().raw(0x8d, 0, 0, 0, 0, 0, 0, 0, 1).stop().out(), { file }), 'larger than the file');
    expectModelError(() => unpickle(new PickleWriter().proto().raw(0x8b, 0, 0, 0, 1).stop().out(), { file }), 'an integer of 16777216 bytes');
    expectModelError(() => unpickle(new PickleWriter().proto().str('abc').out(), { file }), 'ends without STOP');
    const whole = one({});
    expectModelError(() => parseTorchCheckpoint(whole.subarray(0, whole.length - 5), file), 'runs past the end of the file');
  });

  it('a mutation fuzz of both formats: every result is a parse or an E_MODEL', () => {
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
    for (const f of ['views.bin', 'views-legacy.bin']) {
      const orig = fs.readFileSync(path.join(FIX, f));
      let refused = 0;
      for (let round = 0; round < 400; round++) {
        const buf = Buffer.from(orig);
        const flips = 1 + Math.floor(rand() * 4);
        for (let k = 0; k < flips; k++) buf[Math.floor(rand() * buf.length)] = Math.floor(rand() * 256);
        const cut = rand() < 0.1 ? Math.floor(rand() * buf.length) : buf.length;
        try {
          const ck = parseTorchCheckpoint(buf.subarray(0, cut), f);
          for (const t of ck.tensors.values()) if (!t.dtype.startsWith('I')) torchTensorFloat32(t);
        } catch (e) {
          expect(e, String(e)).toBeInstanceOf(ChimeraError);
          expect((e as ChimeraError).code).toBe('E_MODEL');
          refused++;
        }
      }
      expect(refused).toBeGreaterThan(0);
    }
  });
});
