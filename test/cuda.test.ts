/**
 * The CUDA backend. Always run: the addon carries sm_80 and sm_90 SASS and compute_90 PTX when it was built with
 * CUDA (read from the ELF's .nv_fatbin section, and with cuobjdump where it is installed); cudaInfo() reports
 * unavailability cleanly with a reason; every `device: 'cuda'` entry point throws ChimeraError E_DEVICE (never a
 * crash, never a silent CPU run); unknown device names are refused with a suggestion.
 * With a GPU (skipped visibly otherwise, the reason in the test names): every kernel against the CPU reference
 * (NMSE <= 1e-7 for fp32 paths; int32 bit-exact for the int8 GEMM, reference and fast; quantisation bit-identical)
 * and greedy output identical to the CPU's fp32 on the m30k model.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addLayerNorm, addRmsNorm, ChimeraError, cudaInfo, gemmInt8, int8GemmAccumulators, layerNorm, linear, linearInt8,
  MarianModel, packFp32Weights, packInt8Weights, PackedFp32Weights, QuantizedRows, quantizeRows, rmsNorm, Translator,
} from '../src/index';
import { native } from '../src/native';
import { loadAddonOnce } from '../src/native-loader';
import { makeModel } from '../src/model/make-model';
import { Rng } from '../src/util/rng';
import { chimera } from './helpers/cli';

const info = cudaInfo();
const GPU = info.available;
// In every GPU test's name, so a run without one says why it skipped.
const SKIP = GPU ? '' : ` [skipped: no GPU: ${info.reason}]`;
const DEMO = path.join(__dirname, '..', 'models', 'marian-m30k-en-de');
const VAL_EN = path.join(__dirname, '..', '..', 'shared', 'data', 'multi30k', 'val.en');
// fp32 paths against the CPU: NMSE = sum (a - b)^2 / sum b^2 (different summation orders, same math).
const NMSE_MAX = 1e-7;

function nmse(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return den === 0 ? num : num / den;
}

function int8Array(rng: Rng, n: number): Int8Array {
  const a = new Int8Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.int(-128, 127);
  return a;
}

async function code(f: () => unknown): Promise<string> {
  try {
    await f();
  } catch (e) {
    expect(e).toBeInstanceOf(ChimeraError);
    return (e as ChimeraError).code + ': ' + (e as Error).message;
  }
  return 'no error';
}

if (!GPU) console.log(`cuda.test: GPU tests skip: ${info.reason}`);

// ------------------------------------------------------------------------------------------------ always run

describe('cudaInfo', () => {
  it('reports compiled / available / devices / reason', () => {
    expect(typeof info.compiled).toBe('boolean');
    expect(typeof info.available).toBe('boolean');
    expect(Array.isArray(info.devices)).toBe(true);
    if (info.available) {
      expect(info.compiled).toBe(true);
      expect(info.reason).toBe('');
      expect(info.devices.length).toBeGreaterThan(0);
      for (const d of info.devices) {
        expect(d.computeCapability).toMatch(/^\d+\.\d+$/);
        expect(d.memoryBytes).toBeGreaterThan(0);
      }
    } else {
      expect(info.reason.length).toBeGreaterThan(10);
      if (!info.compiled) expect(info.reason).toMatch(/built without CUDA/);
    }
  });

  it('is a copy: editing the result changes nothing', () => {
    const a = cudaInfo();
    a.devices.push({ name: 'x', computeCapability: '1.0', memoryBytes: 1 });
    a.available = !a.available;
    expect(cudaInfo()).toEqual(info);
  });
});

// The fatbinary entries of an ELF shared object's .nv_fatbin section: { kind: 'elf' | 'ptx', arch }.
function fatbinEntries(file: string): { kind: string; arch: number }[] {
  const f = fs.readFileSync(file);
  if (f.readUInt32BE(0) !== 0x7f454c46) return [];
  const shoff = Number(f.readBigUInt64LE(0x28)), shentsize = f.readUInt16LE(0x3a), shnum = f.readUInt16LE(0x3c), shstrndx = f.readUInt16LE(0x3e);
  const sec = (i: number) => {
    const o = shoff + i * shentsize;
    return { name: f.readUInt32LE(o), offset: Number(f.readBigUInt64LE(o + 24)), size: Number(f.readBigUInt64LE(o + 32)) };
  };
  const strtab = sec(shstrndx);
  const nameOf = (n: number) => f.toString('latin1', strtab.offset + n, f.indexOf(0, strtab.offset + n));
  const out: { kind: string; arch: number }[] = [];
  for (let i = 0; i < shnum; i++) {
    const s = sec(i);
    if (nameOf(s.name) !== '.nv_fatbin') continue;
    const end = s.offset + s.size;
    let pos = s.offset;
    const FATBIN_MAGIC = 0xba55ed50;
    while (pos + 16 <= end) {
      if (f.readUInt32LE(pos) !== FATBIN_MAGIC) {
        pos += 8; // fatbins are 8-byte aligned within the section
        continue;
      }
      const hsz = f.readUInt16LE(pos + 6), fsz = Number(f.readBigUInt64LE(pos + 8));
      // entry header: kind u16 (1 PTX, 2 ELF), version u16, header size u32, payload size u64, ..., arch u32 at +28
      for (let e = pos + hsz; e < pos + hsz + fsz;) {
        const kind = f.readUInt16LE(e), ehsz = f.readUInt32LE(e + 4), psz = Number(f.readBigUInt64LE(e + 8));
        out.push({ kind: kind === 1 ? 'ptx' : kind === 2 ? 'elf' : `kind ${kind}`, arch: f.readUInt32LE(e + 28) });
        e += ehsz + psz;
      }
      pos += hsz + fsz;
    }
  }
  return out;
}

function cuobjdump(): string | null {
  for (const c of ['cuobjdump', '/usr/local/cuda/bin/cuobjdump']) {
    const r = spawnSync(c, ['--version'], { encoding: 'utf8' });
    if (r.status === 0) return c;
  }
  return null;
}

describe('device code in the addon', () => {
  const file = loadAddonOnce().file;
  const why = !info.compiled ? ' [skipped: this build has no CUDA (CHIMERA_CUDA=off or nvcc not found)]' : process.platform !== 'linux' ? ' [skipped: ELF check on Linux only]' : '';
  it.skipIf(why !== '')(`has SASS for sm_80 and sm_90 and compute_90 PTX in .nv_fatbin${why}`, () => {
    const e = fatbinEntries(file);
    const elf = new Set(e.filter((x) => x.kind === 'elf').map((x) => x.arch));
    const ptx = new Set(e.filter((x) => x.kind === 'ptx').map((x) => x.arch));
    expect(elf.has(80) && elf.has(90), JSON.stringify(e)).toBe(true);
    expect(ptx.has(90), JSON.stringify(e)).toBe(true);
  });
  const tool = cuobjdump();
  it.skipIf(why !== '' || !tool)(`cuobjdump --list-elf / --list-ptx agree${why || (tool ? '' : ' [skipped: cuobjdump not installed]')}`, () => {
    const elf = spawnSync(tool!, ['--list-elf', file], { encoding: 'utf8' }).stdout;
    const ptx = spawnSync(tool!, ['--list-ptx', file], { encoding: 'utf8' }).stdout;
    expect(elf).toMatch(/sm_80/);
    expect(elf).toMatch(/sm_90/);
    expect(ptx).toMatch(/sm_90/);
  });
  it('links no CUDA library dynamically (the runtime is static; the driver is loaded at the first CUDA call)', () => {
    if (process.platform !== 'linux') return;
    const r = spawnSync('ldd', [file], { encoding: 'utf8' });
    if (r.status !== 0) return;
    expect(r.stdout).not.toMatch(/libcudart|libcuda\.so/);
  });
});

describe('device option', () => {
  let tiny = '';
  let tmp = '';
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'chimera-cuda-'));
    tiny = path.join(tmp, 'tiny');
    makeModel({ preset: 'tiny', seed: 3, out: tiny });
  });
  afterAll(() => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  const rng = new Rng(7);
  const x = rng.normalArray(4 * 64), r = rng.normalArray(4 * 64), g = rng.normalArray(64, 1, 0.1), b = rng.normalArray(64, 0, 0.1);
  const w8 = packInt8Weights(rng.normalArray(32 * 64, 0, 0.05), 32, 64);
  const w32 = packFp32Weights(rng.normalArray(32 * 64, 0, 0.05), 32, 64);
  const w16 = new PackedFp32Weights(native().packF16(rng.normalArray(32 * 64, 0, 0.05), 32, 64), 32, 64);
  const entryPoints: [string, () => unknown][] = [
    ['layerNorm', () => layerNorm(x, 64, g, b, { device: 'cuda' })],
    ['addLayerNorm', () => addLayerNorm(x, r, 64, g, b, { device: 'cuda' })],
    ['rmsNorm', () => rmsNorm(x, 64, g, { device: 'cuda' })],
    ['addRmsNorm', () => addRmsNorm(x, r, 64, g, { device: 'cuda' })],
    ['quantizeRows', () => quantizeRows(x, 64, undefined, { device: 'cuda' })],
    ['linearInt8', () => linearInt8(x, 4, w8, { device: 'cuda' })],
    ['linear fp32', () => linear(x, 4, w32, { device: 'cuda' })],
    ['linear fp16', () => linear(x, 4, w16, { device: 'cuda' })],
    ['gemmInt8', () => gemmInt8(new Int8Array(4 * 64), new Int8Array(32 * 64), 4, 32, 64, { device: 'cuda' })],
    ['MarianModel.load', () => MarianModel.load(tiny, { device: 'cuda' })],
    ['Translator.load', () => Translator.load(tiny, { device: 'cuda' })],
  ];
  for (const [name, f] of entryPoints) {
    it.skipIf(GPU)(`${name} with device 'cuda' throws E_DEVICE with the reason${GPU ? ' [skipped: a GPU is available]' : ''}`, async () => {
      const c = await code(f);
      expect(c).toMatch(/^E_DEVICE: /);
      expect(c).toContain(info.reason);
    });
  }

  it.skipIf(GPU)(`the binding's own CUDA entry points answer E_DEVICE through the error boundary${GPU ? ' [skipped: a GPU is available]' : ''}`, async () => {
    expect(await code(() => native().cudaGemmS8(new Int8Array(4), new Int8Array(4), 1, 1, 4, new Int32Array(1), false))).toMatch(/^E_DEVICE: /);
    expect(await code(() => native().cudaQuantizeRows(x, 4, 64, new Int8Array(4 * 64), new Float32Array(4), new Int32Array(4), 64, true))).toMatch(/^E_DEVICE: /);
  });

  it("device 'cpu' is the default and runs the CPU kernels", () => {
    expect(layerNorm(x, 64, g, b, { device: 'cpu' })).toEqual(layerNorm(x, 64, g, b));
    const a = int8Array(rng, 3 * 40), w = int8Array(rng, 5 * 40);
    const c = gemmInt8(a, w, 3, 5, 40);
    for (let i = 0; i < 3; i++)
      for (let j = 0; j < 5; j++) {
        let s = 0;
        for (let k = 0; k < 40; k++) s += a[i * 40 + k] * w[j * 40 + k];
        expect(c[i * 5 + j]).toBe(s);
      }
  });

  it('linearInt8 raw: the exact accumulators on the CPU too', () => {
    const raw = new Int32Array(4 * 32);
    linearInt8(x, 4, w8, { raw });
    expect(raw).toEqual(int8GemmAccumulators(quantizeRows(x, 64), w8));
  });

  it('unknown device names are refused with a suggestion', async () => {
    expect(await code(() => layerNorm(x, 64, g, b, { device: 'gpu' as 'cuda' }))).toMatch(/^E_ARG: .*did you mean 'cuda'/);
    expect(await code(() => linear(x, 4, w32, { device: 'cudaa' as 'cuda' }))).toMatch(/^E_ARG: .*did you mean 'cuda'/);
    expect(await code(() => MarianModel.load(tiny, { device: 'cuda0' as 'cuda' }))).toMatch(/^E_ARG: .*did you mean 'cuda'/);
    expect(await code(() => Translator.load(tiny, { device: 'CPU ' as 'cpu' }))).toMatch(/^E_ARG: .*device must be 'cpu' or 'cuda'/);
    expect(await code(() => layerNorm(x, 64, g, b, { devcie: 'cuda' } as never))).toMatch(/^E_ARG: unknown layerNorm option key 'devcie' \(did you mean 'device'\?\)/);
    expect(await code(() => quantizeRows(x, 64, undefined, { reference: true }))).toMatch(/^E_ARG: .*needs device: 'cuda'/);
  });

  it(`chimera translate --device cuda fails with E_DEVICE${GPU ? ' [skipped: a GPU is available]' : ''}`, () => {
    if (GPU) return;
    const r = chimera(['translate', '--model', tiny, '--device', 'cuda', 'hello']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/E_DEVICE|CUDA/);
  });
});

// ------------------------------------------------------------------------------------------------ with a GPU

describe('CUDA kernels against the CPU', () => {
  const rng = new Rng(12);
  const shapes: [number, number][] = [[1, 1], [3, 7], [5, 64], [17, 512], [2, 1000], [33, 1024], [4, 4096]];
  for (const reference of [false, true]) {
    const which = reference ? 'reference' : 'fast';
    it.skipIf(!GPU)(`layerNorm / addLayerNorm / rmsNorm (${which}), fused quantisation${SKIP}`, () => {
      for (const [rows, cols] of shapes) {
        const x = rng.normalArray(rows * cols, 0.5, 2), res = rng.normalArray(rows * cols);
        const g = rng.normalArray(cols, 1, 0.2), b = rng.normalArray(cols, 0, 0.2), bias = rng.normalArray(cols, 0, 0.1);
        const dev = { device: 'cuda' as const, reference };
        expect(nmse(layerNorm(x, cols, g, b, dev), layerNorm(x, cols, g, b))).toBeLessThanOrEqual(NMSE_MAX);
        expect(nmse(rmsNorm(x, cols, g, dev), rmsNorm(x, cols, g))).toBeLessThanOrEqual(NMSE_MAX);
        const s1 = new Float32Array(rows * cols), s2 = new Float32Array(rows * cols);
        const q1 = new QuantizedRows(rows, cols), q2 = new QuantizedRows(rows, cols);
        const o1 = addLayerNorm(x, res, cols, g, b, { ...dev, bias, sumOut: s1, quantizeTo: q1 });
        const o2 = addLayerNorm(x, res, cols, g, b, { bias, sumOut: s2, quantizeTo: q2 });
        expect(nmse(o1, o2)).toBeLessThanOrEqual(NMSE_MAX);
        expect(s1).toEqual(s2); // the sum is two exact-order additions per element
        // the fused quantisation of (nearly) the same floats: scales to float rounding, values within one step
        for (let i = 0; i < rows; i++) expect(Math.abs(q1.scales[i] - q2.scales[i])).toBeLessThanOrEqual(1e-5 * q2.scales[i]);
        for (let i = 0; i < q1.data.length; i++) expect(Math.abs(q1.data[i] - q2.data[i])).toBeLessThanOrEqual(1);
        // and exactly the quantisation of its own output
        expect(q1.data).toEqual(quantizeRows(o1, cols).data);
        expect(nmse(addRmsNorm(x, res, cols, g, dev), addRmsNorm(x, res, cols, g))).toBeLessThanOrEqual(NMSE_MAX);
      }
    });

    it.skipIf(!GPU)(`quantizeRows (${which}) is bit-identical to the CPU${SKIP}`, () => {
      for (const [rows, cols] of [...shapes, [3, 5], [8, 33]] as [number, number][]) {
        const x = rng.normalArray(rows * cols, 0, 3);
        x[0] = 0;
        if (rows > 1) x.fill(0, cols, 2 * cols); // an all-zero row: scale 0
        const a = quantizeRows(x, cols, undefined, { device: 'cuda', reference });
        const b = quantizeRows(x, cols);
        expect(a.data).toEqual(b.data);
        expect(a.scales).toEqual(b.scales);
        expect(a.sums).toEqual(b.sums);
      }
      const bad = rng.normalArray(2 * 8);
      bad[3] = NaN;
      expect(() => quantizeRows(bad, 8, undefined, { device: 'cuda', reference })).toThrow(/NaN or Inf/);
    });

    it.skipIf(!GPU)(`int8 GEMM (${which}) is exact in int32${SKIP}`, () => {
      const gemmShapes: [number, number, number][] = [
        [1, 1, 1], [1, 7, 33], [1, 2048, 2048], [2, 3, 31], [3, 17, 100], [16, 8, 32], [31, 33, 65], [33, 65, 64],
        [64, 129, 257], [130, 200, 2048], [129, 1, 7], [257, 130, 96],
      ];
      for (const [m, n, k] of gemmShapes) {
        const a = int8Array(rng, m * k), b = int8Array(rng, n * k);
        expect(gemmInt8(a, b, m, n, k, { device: 'cuda', reference })).toEqual(gemmInt8(a, b, m, n, k));
      }
    });

    it.skipIf(!GPU)(`linearInt8 (${which}): raw exact, output and activations against the CPU${SKIP}`, () => {
      for (const [rows, n, k] of [[1, 64, 64], [5, 100, 70], [40, 300, 512]] as [number, number, number][]) {
        const w = packInt8Weights(rng.normalArray(n * k, 0, 0.05), n, k);
        const x = rng.normalArray(rows * k), bias = rng.normalArray(n, 0, 0.1);
        for (const activation of ['none', 'relu', 'silu', 'gelu', 'gelu_tanh'] as const) {
          const raw = new Int32Array(rows * n);
          const y = linearInt8(x, rows, w, { bias, activation, raw, device: 'cuda', reference });
          expect(raw).toEqual(int8GemmAccumulators(quantizeRows(x, k), w));
          expect(nmse(y, linearInt8(x, rows, w, { bias, activation }))).toBeLessThanOrEqual(NMSE_MAX);
        }
      }
    });

    it.skipIf(!GPU)(`linear fp32 and fp16 weights (${which})${SKIP}`, () => {
      for (const [rows, n, k] of [[1, 64, 64], [7, 100, 70], [65, 130, 512]] as [number, number, number][]) {
        const wf = rng.normalArray(n * k, 0, 0.05), x = rng.normalArray(rows * k), bias = rng.normalArray(n, 0, 0.1);
        const w32 = packFp32Weights(wf, n, k);
        const w16 = new PackedFp32Weights(native().packF16(wf, n, k), n, k);
        for (const w of [w32, w16]) {
          const y = linear(x, rows, w, { bias, activation: 'gelu', device: 'cuda', reference });
          expect(nmse(y, linear(x, rows, w, { bias, activation: 'gelu' }))).toBeLessThanOrEqual(NMSE_MAX);
        }
      }
    });

    it.skipIf(!GPU)(`decode attention (${which})${SKIP}`, () => {
      for (const [rows, heads, hd, maxLen] of [[1, 1, 8, 1], [3, 8, 64, 40], [6, 4, 16, 300]] as number[][]) {
        const ldkv = 2 * heads * hd, width = heads * hd;
        const lens = Int32Array.from({ length: rows }, () => rng.int(1, maxLen));
        const offs = Int32Array.from({ length: rows }, (_, i) => i * maxLen * ldkv);
        const kv = rng.normalArray(rows * maxLen * ldkv), q = rng.normalArray(rows * width, 0, 0.3);
        const a = new Float32Array(rows * width), b = new Float32Array(rows * width);
        native().cudaDecodeAttention(q, kv, offs, ldkv, width, lens, heads, hd, a, reference);
        native().decodeAttention(q, kv, offs, ldkv, width, lens, heads, hd, b);
        expect(nmse(a, b)).toBeLessThanOrEqual(NMSE_MAX);
      }
    });
  }
});

describe('the Marian model on the GPU', () => {
  const lines = fs.existsSync(VAL_EN) ? fs.readFileSync(VAL_EN, 'utf8').split('\n').filter((l) => l.trim() !== '').slice(0, 40) : [];
  const why = SKIP || (lines.length === 0 ? ` [skipped: ${VAL_EN} is missing]` : '');
  it.skipIf(why !== '')(`fp32 greedy output is identical to the CPU's${why}`, async () => {
    const cpu = await MarianModel.load(DEMO, { precision: 'fp32' });
    const gpu = await MarianModel.load(DEMO, { precision: 'fp32', device: 'cuda' });
    expect(gpu.device).toBe('cuda');
    const tok = cpu.requireTokenizer();
    const src = lines.map((l) => tok.encode(l));
    expect(gpu.generate(src).ids).toEqual(cpu.generate(src).ids);
    // one at a time (batch 1) and with beams, too
    expect(gpu.generate([src[3]]).ids).toEqual(cpu.generate([src[3]]).ids);
    expect(gpu.generate(src.slice(0, 4), { beam: 4 }).ids).toEqual(cpu.generate(src.slice(0, 4), { beam: 4 }).ids);
    // teacher-forced logits
    const dec = [cpu.config.decoderStartId, ...cpu.generate([src[0]]).ids[0]];
    expect(nmse(gpu.teacherForcedLogits(src[0], dec), cpu.teacherForcedLogits(src[0], dec))).toBeLessThanOrEqual(NMSE_MAX);
  });

  it.skipIf(why !== '')(`int8 and fp16 run on the device and agree with the CPU tier on most sentences${why}`, async () => {
    for (const precision of ['int8', 'fp16'] as const) {
      const cpu = await MarianModel.load(DEMO, { precision });
      const gpu = await MarianModel.load(DEMO, { precision, device: 'cuda' });
      const tok = cpu.requireTokenizer();
      const src = lines.map((l) => tok.encode(l));
      const a = gpu.generate(src).ids, b = cpu.generate(src).ids;
      const same = a.filter((x, i) => JSON.stringify(x) === JSON.stringify(b[i])).length;
      expect(same / a.length).toBeGreaterThanOrEqual(0.8);
    }
  });

  it.skipIf(why !== '')(`layer-norm edits reach the device after syncNorms (Translator.adjustLayerNorm calls it)${why}`, async () => {
    const cpu = await MarianModel.load(DEMO, { precision: 'fp32' });
    const gpu = await MarianModel.load(DEMO, { precision: 'fp32', device: 'cuda' });
    const tok = cpu.requireTokenizer();
    const src = tok.encode(lines[0]);
    const dec = [cpu.config.padId, 5, 6, 7];
    const before = gpu.teacherForcedLogits(src, dec);
    for (const m of [cpu, gpu]) {
      m.layerNorms()[3].params.scaleGamma(1.5);
      m.syncNorms();
    }
    const after = gpu.teacherForcedLogits(src, dec);
    expect(nmse(after, before)).toBeGreaterThan(1e-6);
    expect(nmse(after, cpu.teacherForcedLogits(src, dec))).toBeLessThanOrEqual(NMSE_MAX);
  });

  it.skipIf(why !== '')(`Translator.load(..., { device: 'cuda' }) translates as the CPU does${why}`, async () => {
    const a = await Translator.load(DEMO, { device: 'cuda', cacheBytes: 0 });
    const b = await Translator.load(DEMO, { cacheBytes: 0 });
    try {
      const ta = await Promise.all(lines.slice(0, 8).map((l) => a.translate(l)));
      const tb = await Promise.all(lines.slice(0, 8).map((l) => b.translate(l)));
      expect(ta.map((t) => t.text)).toEqual(tb.map((t) => t.text));
    } finally {
      await a.close();
      await b.close();
    }
  });
});
