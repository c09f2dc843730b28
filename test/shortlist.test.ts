/**
 * The vocabulary shortlist (src/model/shortlist.ts, the scheduler's cut rows, the native sub-LM-head): the
 * builder's counts against hand-computed ones, the file format and its refusals, outputs identical to the full
 * vocabulary when the shortlist holds every token, a request's output independent of its batch companions, the
 * sub-head bit for bit equal to the full head at the same tokens, the options and the CLI.
 */
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MarianModel, type Precision } from '../src/marian';
import { makeModel } from '../src/model/make-model';
import { native } from '../src/native';
import { Scheduler } from '../src/engine/scheduler';
import {
  countCooccurrence, readShortlistBytes, selectShortlist, SHORTLIST_FILE, writeShortlistBytes, type Shortlist,
} from '../src/model/shortlist';
import { expectChimeraError, expectSameFloats, forEachIsa } from './helpers/harness';
import { TestRng } from './helpers/reference';
import { chimera, DEMO_MODEL, ok } from './helpers/cli';

const handle = (m: MarianModel): object => (m as unknown as { handle: object }).handle;

describe('builder: sentence-level co-occurrence and selection', () => {
  // source tokens 1..4, targets 10..14; eos 0 and pad 9 are skipped on both sides
  const pairs = [
    { src: [1, 2, 0], tgt: [10, 11, 10, 0] }, // 10 twice: one co-occurrence per pair, two token counts
    { src: [1, 3, 0], tgt: [10, 12, 0] },
    { src: [2, 2, 4, 0], tgt: [11, 13, 9] },
    { src: [1, 0], tgt: [14, 0] },
  ];
  const c = countCooccurrence(pairs, [0, 9], [0, 9]);

  it('counts equal the hand-computed ones exactly', () => {
    const table = (s: number) => Object.fromEntries([...(c.pair.get(s) ?? new Map())].sort((a, b) => a[0] - b[0]));
    expect(table(1)).toEqual({ 10: 2, 11: 1, 12: 1, 14: 1 });
    expect(table(2)).toEqual({ 10: 1, 11: 2, 13: 1 });
    expect(table(3)).toEqual({ 10: 1, 12: 1 });
    expect(table(4)).toEqual({ 11: 1, 13: 1 });
    expect(c.pair.has(0)).toBe(false);
    expect(Object.fromEntries(c.sourceDocs)).toEqual({ 1: 3, 2: 2, 3: 1, 4: 1 });
    expect(Object.fromEntries(c.targetDocs)).toEqual({ 10: 2, 11: 2, 12: 1, 13: 1, 14: 1 });
    expect(Object.fromEntries(c.targetTokens)).toEqual({ 10: 3, 11: 2, 12: 1, 13: 1, 14: 1 });
  });

  it('selects by Dice (2c / (n_s + n_t)), then count, then id; the frequent set by token count', () => {
    const s = selectShortlist(c, 16, 2, 2, new Uint8Array(32));
    const list = (t: number) => [...s.entries.subarray(s.offsets[t], s.offsets[t + 1])];
    // token 1 (n=3): 10: 2*2/(3+2)=0.8; 11: 2/5=0.4; 12: 2/4=0.5; 14: 2/4=0.5 -> 10, then 12 and 14 tie: lower id
    expect(list(1)).toEqual([10, 12]);
    // token 2 (n=2): 10: 2/4=0.5; 11: 4/4=1; 13: 2/3 -> 11, 13
    expect(list(2)).toEqual([11, 13]);
    // token 3 (n=1): 10: 2/3; 12: 2/2=1 -> 12, 10
    expect(list(3)).toEqual([12, 10]);
    expect(list(4)).toEqual([13, 11]); // 13: 2/2=1; 11: 2/3
    expect(list(0)).toEqual([]);
    expect([...s.frequent]).toEqual([10, 11]);
  });
});

describe('file: round trip and refusals', () => {
  const s: Shortlist = {
    sourceVocab: 5, targetVocab: 5, vocabHash: new Uint8Array(32).fill(7), perToken: 2,
    frequent: Int32Array.of(4, 1), offsets: Uint32Array.of(0, 2, 2, 3, 3, 3), entries: Int32Array.of(2, 3, 1),
  };
  const bytes = writeShortlistBytes(s);

  it('reads back what was written', () => {
    expect(readShortlistBytes(bytes, 'x')).toEqual(s);
  });

  it('refuses bad magic, another version, a flipped byte, a truncated file (E_MODEL, no crash)', () => {
    const bad = (f: (b: Uint8Array) => Uint8Array, re: RegExp) => {
      const e = expectChimeraError(() => readShortlistBytes(f(Uint8Array.from(bytes)), 'sl.bin'), 'E_MODEL');
      expect(e.message).toMatch(re);
    };
    bad((b) => (b[0] = 0x41, b), /bad magic/);
    bad((b) => (b[8] = 2, b), /version 2/);
    bad((b) => (b[bytes.length - 40] ^= 1, b), /checksum/);
    bad((b) => b.subarray(0, b.length - 5), /checksum/);
    bad(() => new Uint8Array(3), /bad magic/);
  });
});

describe('engine', () => {
  let dir = '';
  const models = new Map<Precision, MarianModel>();
  const slFile = (name: string) => join(dir, name);

  /** A shortlist of every token (frequent = the whole vocabulary). */
  const everyToken = (m: MarianModel): Uint8Array => {
    const V = m.config.vocabSize;
    const c = countCooccurrence([{ src: [1], tgt: Array.from({ length: V }, (_, i) => i) }], [], []);
    return writeShortlistBytes(selectShortlist(c, V, 0, V, m.vocabularyHash()));
  };
  /** A real, small shortlist: random lists of 6 per token, 4 frequent. */
  const smallList = (m: MarianModel, seed: number): Uint8Array => {
    const V = m.config.vocabSize;
    const rng = new TestRng(seed);
    const pairs = Array.from({ length: 200 }, () => ({
      src: Array.from({ length: 4 }, () => rng.int(3, V - 1)),
      tgt: Array.from({ length: 5 }, () => rng.int(3, V - 1)),
    }));
    return writeShortlistBytes(selectShortlist(countCooccurrence(pairs, [], []), V, 6, 4, m.vocabularyHash()));
  };
  const source = (rng: TestRng, n: number, m: MarianModel): number[] => [...Array.from({ length: n }, () => rng.int(3, m.config.vocabSize - 1)), m.config.eosId];

  beforeAll(async () => {
    dir = fs.mkdtempSync(join(tmpdir(), 'chimera-shortlist-'));
    await makeModel({ preset: 'tiny', seed: 5, out: join(dir, 'model') });
    for (const p of ['fp32', 'fp16', 'int8'] as Precision[]) models.set(p, await MarianModel.load(join(dir, 'model'), { precision: p }));
    const m = models.get('fp32')!;
    fs.writeFileSync(slFile('all.bin'), everyToken(m));
    fs.writeFileSync(slFile('small.bin'), smallList(m, 3));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  for (const p of ['fp32', 'int8'] as Precision[]) {
    it(`${p}: a shortlist of every token gives the full-vocabulary outputs exactly (greedy and beam)`, async () => {
      const full = models.get(p)!;
      const sl = await MarianModel.load(join(dir, 'model'), { precision: p, shortlist: slFile('all.bin') });
      expect(sl.shortlist).not.toBeNull();
      const rng = new TestRng(21);
      const srcs = Array.from({ length: 6 }, (_, i) => source(rng, 3 + i, full));
      for (const beam of [1, 3]) {
        const o = { beam, maxLength: 12 };
        expect(sl.generate(srcs, o).ids).toEqual(full.generate(srcs, o).ids);
      }
    });

    subHeadTest(p);
  }
  function subHeadTest(p: Precision): void {
    forEachIsa((isa) => it(`${p} ${isa}: the sub-LM-head's logits equal the full head's at the same tokens, bit for bit`, () => {
      const m = models.get(p)!;
      const nb = native();
      const V = m.config.vocabSize;
      const rng = new TestRng(8);
      const ids = Int32Array.from(new Set(Array.from({ length: 150 }, () => rng.int(0, V - 1)))).sort();
      const sub = nb.marianSubHead(handle(m), ids);
      const src = source(rng, 5, m);
      const st = nb.marianState(handle(m), 3, 4, 1, src.length);
      nb.marianEncode(handle(m), st, Int32Array.from(src), Int32Array.of(src.length), src.length, Int32Array.of(0), null);
      const rows = 3, tok = Int32Array.of(5, 9, 11), slots = Int32Array.of(0, 1, 2), pos = new Int32Array(3), srcs = new Int32Array(3);
      const fullLogits = new Float32Array(rows * V), subLogits = new Float32Array(rows * ids.length);
      nb.marianStep(handle(m), st, tok, slots, pos, srcs, fullLogits);
      nb.marianStep(handle(m), st, tok, slots, pos, srcs, subLogits, null, sub);
      const picked = new Float32Array(rows * ids.length);
      for (let r = 0; r < rows; r++) for (let c = 0; c < ids.length; c++) picked[r * ids.length + c] = fullLogits[r * V + ids[c]];
      expectSameFloats(subLogits, picked, `${p} sub-head logits`);
      // a sub-head of another model, or logits of the full width, are refused
      expectChimeraError(() => nb.marianStep(handle(m), st, tok, slots, pos, srcs, fullLogits, null, sub), 'E_SHAPE');
      const other = models.get(p === 'fp32' ? 'int8' : 'fp32')!;
      expectChimeraError(() => nb.marianStep(handle(other), st, tok, slots, pos, srcs, subLogits, null, sub), 'E_ARG');
    }));
  }
  subHeadTest('fp16');

  forEachIsa((isa) => it(`${isa}: int8 gathered channels give the same raw int32 accumulators; fp32 and fp16 the same outputs`, () => {
    const nb = native();
    const rng = new TestRng(9);
    const n = 300, k = 72;
    const w = rng.normalArray(n * k, 0, 0.1);
    const cols = Int32Array.of(0, 5, 63, 64, 65, 127, 128, 200, 299, 17);
    const rows = 3;
    const h8 = nb.packS8(w, n, k), g8 = nb.packedGather(h8, cols);
    const kp = 72; // k is a multiple of 4: no padding
    const q = new Int8Array(rows * kp).map(() => rng.int(-127, 127));
    const sums = Int32Array.from({ length: rows }, (_, r) => q.subarray(r * kp, (r + 1) * kp).reduce((s, v) => s + v, 0));
    const rawFull = new Int32Array(rows * n), rawSub = new Int32Array(rows * cols.length);
    nb.gemmS8Raw(h8, q, sums, kp, rows, rawFull);
    nb.gemmS8Raw(g8, q, sums, kp, rows, rawSub);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols.length; c++) expect(rawSub[r * cols.length + c]).toBe(rawFull[r * n + cols[c]]);
    const x = rng.normalArray(rows * k);
    for (const h of [nb.packF32(w, n, k), nb.packF16(w, n, k)]) {
      const g = nb.packedGather(h, cols);
      const full = new Float32Array(rows * n), part = new Float32Array(rows * cols.length);
      nb.linearF32(h, x, rows, null, 0, full, false);
      nb.linearF32(g, x, rows, null, 0, part, false);
      const picked = Float32Array.from({ length: rows * cols.length }, (_, i) => full[Math.floor(i / cols.length) * n + cols[i % cols.length]]);
      expectSameFloats(part, picked, 'gathered fp32/fp16 channels');
    }
  }));

  for (const p of ['fp32', 'int8'] as Precision[])
    for (const beam of [1, 2]) {
      it(`${p} beam ${beam}: with a real shortlist, a request's output is the same alone and joining a running batch`, async () => {
        const m = await MarianModel.load(join(dir, 'model'), { precision: p, shortlist: slFile('small.bin') });
        const rng = new TestRng(30 + beam);
        const target = source(rng, 6, m);
        const others = Array.from({ length: 5 }, (_, i) => source(rng, 3 + 2 * i, m));
        const o = m.searchOptions({ beam, maxLength: 10 });
        const run = (plan: { at: number; src: number[][] }[]): number[][][] => {
          const sched = new Scheduler(m.createBatch(), { maxSlots: 64, maxSourceTokens: 4096, maxStateBytes: 2 ** 28, encodeChunkTokens: 256 });
          const out: number[][][] = [];
          let tick = 0;
          const pending = [...plan];
          do {
            while (pending.length && pending[0].at <= tick) {
              const job = pending.shift()!;
              const k = out.length;
              out.push([]);
              sched.submit({ sources: job.src, options: o, onDone: (r) => (out[k] = r.map((x) => x.ids)), onError: (e) => { throw e; } });
            }
            tick++;
          } while (sched.tick() || pending.length);
          return out;
        };
        const alone = run([{ at: 0, src: [target] }])[0][0];
        // the others start first; the target joins mid-flight, then more join and leave around it
        const mixed = run([{ at: 0, src: others.slice(0, 3) }, { at: 2, src: [target] }, { at: 4, src: others.slice(3) }]);
        expect(mixed[1][0]).toEqual(alone);
        // and the candidate sets differ between the requests (the cut-rows path ran)
        const sets = [target, ...others].map((s) => m.shortlist!.sets.candidates(s).length);
        expect(new Set(sets).size).toBeGreaterThan(1);
        // each output stays within its own candidate set
        const cand = new Set(m.shortlist!.sets.candidates(target));
        for (const t of alone) expect(cand.has(t)).toBe(true);
      });
    }

  it('found beside the model; shortlist: false is the full vocabulary; a path loads that file; unknown keys refused', async () => {
    const mdir = join(dir, 'model');
    fs.copyFileSync(slFile('small.bin'), join(mdir, SHORTLIST_FILE));
    try {
      const m = await MarianModel.load(mdir, { precision: 'int8' });
      expect(m.shortlist).not.toBeNull();
      const off = await MarianModel.load(mdir, { precision: 'int8', shortlist: false });
      expect(off.shortlist).toBeNull();
      const rng = new TestRng(40);
      const srcs = Array.from({ length: 4 }, (_, i) => source(rng, 4 + i, m));
      expect(off.generate(srcs, { maxLength: 10 }).ids).toEqual(models.get('int8')!.generate(srcs, { maxLength: 10 }).ids);
      const all = await MarianModel.load(mdir, { precision: 'int8', shortlist: slFile('all.bin') });
      expect(all.shortlist!.data.frequent.length).toBe(m.config.vocabSize);
      // packed: the shortlist in use travels as a section of the file
      const packed = join(dir, 'packed.chimera');
      m.save(packed);
      const back = await MarianModel.load(packed);
      expect(back.shortlist?.fingerprint).toBe(m.shortlist!.fingerprint);
      expect(back.generate(srcs, { maxLength: 10 }).ids).toEqual(m.generate(srcs, { maxLength: 10 }).ids);
      expect((await MarianModel.load(packed, { shortlist: false })).shortlist).toBeNull();
      await expect(MarianModel.load(mdir, { shortlst: false } as never)).rejects.toThrow(/did you mean 'shortlist'/);
    } finally {
      fs.rmSync(join(mdir, SHORTLIST_FILE));
    }
    await expect(MarianModel.load(mdir, { shortlist: true })).rejects.toMatchObject({ code: 'E_MODEL' });
  });

  it('a shortlist built for another vocabulary, or corrupt, is refused with E_MODEL', async () => {
    const mdir = join(dir, 'model');
    const m = models.get('fp32')!;
    const V = m.config.vocabSize;
    const c = countCooccurrence([{ src: [1], tgt: [2] }], [], []);
    fs.writeFileSync(slFile('hash.bin'), writeShortlistBytes(selectShortlist(c, V, 1, 1, new Uint8Array(32))));
    await expect(MarianModel.load(mdir, { shortlist: slFile('hash.bin') })).rejects.toMatchObject({ code: 'E_MODEL', message: expect.stringMatching(/another model/) });
    fs.writeFileSync(slFile('size.bin'), writeShortlistBytes(selectShortlist(c, V + 1, 1, 1, m.vocabularyHash())));
    await expect(MarianModel.load(mdir, { shortlist: slFile('size.bin') })).rejects.toMatchObject({ code: 'E_MODEL', message: expect.stringMatching(/vocabulary of/) });
    const bad = Uint8Array.from(fs.readFileSync(slFile('small.bin')));
    bad[100] ^= 0xff;
    fs.writeFileSync(slFile('bad.bin'), bad);
    await expect(MarianModel.load(mdir, { shortlist: slFile('bad.bin') })).rejects.toMatchObject({ code: 'E_MODEL' });
    await expect(MarianModel.load(mdir, { shortlist: slFile('missing.bin') })).rejects.toMatchObject({ code: 'E_MODEL' });
  });
});

describe('CLI', () => {
  let dir = '';
  beforeAll(() => {
    dir = fs.mkdtempSync(join(tmpdir(), 'chimera-shortlist-cli-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('shortlist build, then translate with --shortlist and --no-shortlist', () => {
    const src = join(dir, 'src.en'), out = join(dir, 'sl.bin');
    fs.writeFileSync(src, 'A man is riding a bike.\nTwo dogs play in the snow.\n\nA woman sings on a stage.\n');
    const log = ok(chimera(['shortlist', 'build', '--model', DEMO_MODEL, '--src', src, '--out', out, '--no-vocabulary-pass', '--alternatives', '3', '--per-token', '20', '--frequent', '50']));
    expect(log).toMatch(/3 sentences/);
    const s = readShortlistBytes(fs.readFileSync(out), out);
    expect(s.perToken).toBe(20);
    expect(s.frequent.length).toBeLessThanOrEqual(50);
    const text = 'A man is riding a bike.';
    const withSl = ok(chimera(['translate', '--model', DEMO_MODEL, '--shortlist', out, text]));
    const without = ok(chimera(['translate', '--model', DEMO_MODEL, '--no-shortlist', text]));
    // a sentence of the build corpus: its own output tokens are in its candidate set
    expect(withSl).toBe(without);
    expect(chimera(['translate', '--model', DEMO_MODEL, '--shortlist', out, '--no-shortlist', text]).status).toBe(1);
    expect(chimera(['shortlist', 'bild', '--src', src, '--out', out]).stderr).toMatch(/unknown shortlist subcommand/);
    // the subcommand is judged before the options it needs, with the nearest one named
    expect(chimera(['shortlist', 'biuld']).stderr).toMatch(/unknown shortlist subcommand biuld \(did you mean build\?\)/);
  });
});
