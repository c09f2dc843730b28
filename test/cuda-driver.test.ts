// The standalone CUDA driver's inputs and scripts (bench/cuda): the greedy fixture round-trips (header, sizes, the
// weights exactly as the package packed them, the package's own greedy ids), run.sh is valid bash, and the Python
// parts compile and report "pending" with nothing measured. Building the driver itself is left to bench/cuda/run.sh
// (about a minute for the CPU part alone on 2 cores); when a built driver is present, its CPU side is run against
// a fixture made here.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFixture, FIXTURE_END, FIXTURE_MAGIC, readFixture, weightFloats } from '../bench/cuda/fixture';
import { MarianModel } from '../src/marian';
import { readMarianConfig } from '../src/model/config';
import { makeModel } from '../src/model/make-model';
import { loadMarianWeights } from '../src/model/weights';

const ROOT = path.resolve(__dirname, '..');
const SENTENCES = ['the man is walking on the street', 'two dogs are playing with a ball', 'Eine Frau sitzt'];
// Short outputs keep the fixture build fast; the tiny model's random weights rarely emit eos.
const MAX_NEW = 6;

let dir = '';
let model = '';
let buf: Buffer;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chimera-cuda-fixture-'));
  model = path.join(dir, 'model');
  makeModel({ preset: 'tiny', seed: 9, out: model });
  buf = await buildFixture(model, { sentences: SENTENCES, maxLength: MAX_NEW });
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('CUDA driver fixture', () => {
  it('round-trips: header, sizes, end marker', () => {
    const f = readFixture(buf);
    const c = readMarianConfig(model);
    expect(buf.toString('ascii', 0, 8)).toBe(FIXTURE_MAGIC);
    expect(f.header).toMatchObject({
      version: 1, d: c.dModel, heads: c.decoderHeads, vocab: c.vocabSize, maxPos: c.maxPositions,
      encoderLayers: c.encoderLayers, decoderLayers: c.decoderLayers, encoderFfn: c.encoderFfn, decoderFfn: c.decoderFfn,
      eosId: c.eosId, padId: c.padId, decoderStartId: c.decoderStartId, maxLength: MAX_NEW + 1, forceEosAtMax: 1,
      sentenceCount: SENTENCES.length,
    });
    expect(f.header.embedScale).toBeCloseTo(Math.sqrt(c.dModel), 5);
    expect(f.banned).toContain(c.padId);
    // every byte is accounted for: header, banned ids, ISA, weights, sentences, end marker
    const ints = f.sentences.reduce((n, s) => n + 3 + s.src.length + s.fp32.length + s.int8.length, 0);
    expect(f.bytes).toBe(f.weightsOffset + 4 * f.weightFloats + 4 * ints + 4);
    expect(buf.readUInt32LE(buf.length - 4)).toBe(FIXTURE_END);
    // d=32, vocab 256, 2+2 layers, ffn 64 (the tiny preset): the weight count by hand
    const d = 32, V = 256, F = 64, lin = (n: number, k: number) => n * k + n;
    const enc = lin(3 * d, d) + lin(d, d) + 2 * d + lin(F, d) + lin(d, F) + 2 * d;
    const dec = enc + lin(d, d) + lin(2 * d, d) + lin(d, d) + 2 * d;
    expect(f.header).toMatchObject({ d, vocab: V, encoderFfn: F, encoderLayers: 2 });
    expect(weightFloats(f.header)).toBe(V * d + lin(V, d) + 2 * enc + 2 * dec);
  });

  it('holds the weights exactly as packed (unpacked from the package handles) and the package greedy ids', async () => {
    const f = readFixture(buf);
    const c = readMarianConfig(model);
    const w = loadMarianWeights(model, c);
    const floats = new Float32Array(buf.buffer.slice(buf.byteOffset + f.weightsOffset, buf.byteOffset + f.weightsOffset + 4 * f.weightFloats));
    const d = c.dModel, V = c.vocabSize;
    expect(floats.subarray(0, V * d)).toEqual(w.embed);
    expect(floats.subarray(V * d, 2 * V * d)).toEqual(w.embed); // the tied LM head, through its packed handle
    expect(floats.subarray(2 * V * d, 2 * V * d + V)).toEqual(w.finalLogitsBias);
    // encoder layer 0: qkv rows [q * head_dim^-0.5; k; v], then its bias, out, LN, fc1
    const e0 = w.encoder[0];
    let o = 2 * V * d + V;
    const qs = (d / c.encoderHeads) ** -0.5;
    const qkv = floats.subarray(o, o + 3 * d * d);
    expect(qkv.subarray(0, d * d)).toEqual(e0.selfAttn.q.weight.map((x) => x * qs));
    expect(qkv.subarray(d * d, 2 * d * d)).toEqual(e0.selfAttn.k.weight);
    expect(qkv.subarray(2 * d * d)).toEqual(e0.selfAttn.v.weight);
    o += 3 * d * d + 3 * d;
    expect(floats.subarray(o, o + d * d)).toEqual(e0.selfAttn.out.weight);
    o += d * d + d;
    expect(floats.subarray(o, o + d)).toEqual(e0.selfAttnLayerNorm.gamma);
    o += 2 * d;
    expect(floats.subarray(o, o + c.encoderFfn * d)).toEqual(e0.fc1.weight);

    const m32 = await MarianModel.load(model, { precision: 'fp32' });
    const m8 = await MarianModel.load(model, { precision: 'int8' });
    const tok = m32.requireTokenizer();
    f.sentences.forEach((s, i) => {
      expect(s.src).toEqual(tok.encode(SENTENCES[i]));
      expect(s.fp32).toEqual(m32.generate([s.src], { maxLength: MAX_NEW }).ids[0]);
      expect(s.int8).toEqual(m8.generate([s.src], { maxLength: MAX_NEW }).ids[0]);
      expect(s.fp32.length).toBeGreaterThan(0);
      expect(s.fp32.length).toBeLessThanOrEqual(MAX_NEW);
    });
  });

  it('refuses a truncated or corrupted file', () => {
    expect(() => readFixture(buf.subarray(0, buf.length - 8))).toThrow(/truncated|end marker/);
    const bad = Buffer.from(buf);
    bad.write('XXXX', 0, 'ascii');
    expect(() => readFixture(bad)).toThrow(/magic/);
    const v2 = Buffer.from(buf);
    v2.writeUInt32LE(2, 8);
    expect(() => readFixture(v2)).toThrow(/version 2/);
  });

  const driver = process.env.CHIMERA_CUDA_DRIVER ?? path.join(ROOT, 'build-cuda-driver', 'chimera-cuda-driver');
  const haveDriver = fs.existsSync(driver);
  if (!haveDriver) console.log(`skipping the driver round trip: no built driver at ${driver} (bash bench/cuda/run.sh builds it)`);
  it.skipIf(!haveDriver)('a built driver reproduces the package greedy ids from the fixture on the CPU', () => {
    const file = path.join(dir, 'tiny.bin');
    fs.writeFileSync(file, buf);
    const r = spawnSync(driver, ['check', '--only', 'model', '--fixture', file], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stdout).toMatch(/PASS model\s+cpu fp32 greedy == package's\s+3\/3/);
    expect(r.stdout).toMatch(/PASS model\s+cpu int8 greedy == package's\s+3\/3/);
    expect([0, 3]).toContain(r.status); // 3: no CUDA device here, the device side skipped with its reason
  });
});

describe('bench/cuda scripts', () => {
  it('run.sh is valid bash', () => {
    const r = spawnSync('bash', ['-n', path.join(ROOT, 'bench', 'cuda', 'run.sh')], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  const python = spawnSync('python3', ['--version']).status === 0;
  if (!python) console.log('skipping the Python checks: python3 is not available');
  it.skipIf(!python)('torch_ref.py and report.py compile; the report marks unmeasured figures pending', () => {
    // compile() checks the syntax without writing __pycache__ into the tree
    const syntax = "import sys\nfor f in sys.argv[1:]: compile(open(f).read(), f, 'exec')";
    execFileSync('python3', ['-c', syntax, 'bench/cuda/torch_ref.py', 'bench/cuda/report.py'], { cwd: ROOT });
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'chimera-cuda-report-'));
    try {
      const text = execFileSync('python3', ['bench/cuda/report.py', '--out', out], { cwd: ROOT, encoding: 'utf8' });
      expect(text).toMatch(/int8 GEMM 4096\^3.*pending/);
      expect(text).toMatch(/OPUS-MT int8: decode b32.*pending/);
      expect(fs.existsSync(path.join(out, 'table.md'))).toBe(true);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
});
