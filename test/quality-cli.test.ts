/**
 * `chimera bleu`, `chimera eval` and `chimera quantize` (dist/cli.js, built by the global setup) as child
 * processes: sacreBLEU's output line for files and stdin, clear errors (exit 1) for misaligned, empty,
 * non-UTF-8 and missing inputs, the fp32 control in eval, and the gate end to end.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { corpusBleu } from '../src/bleu';
import { MarianModel } from '../src/marian';
import { chimera as run, DEMO_MODEL as MODEL_DIR, fails, ok } from './helpers/cli';

const SHARED = '/work/shared';
const DATA = join(SHARED, 'data', 'multi30k');
const GREEDY = join(SHARED, 'models', 'marian-m30k-en-de', 'reference', 'val200.greedy.de');
const HAVE_DATA = existsSync(join(DATA, 'val.en')) && existsSync(join(DATA, 'val.de')) && existsSync(GREEDY);

const chimera = (args: string[], input?: string | Buffer, timeout = 60_000) => run(args, { input, timeout });

let dir: string;
const lines = (f: string, n: number) => readFileSync(f, 'utf8').split('\n').slice(0, n);
const write = (name: string, content: string | Buffer) => {
  const f = join(dir, name);
  writeFileSync(f, content);
  return f;
};

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'chimera-quality-cli-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!HAVE_DATA)('chimera bleu', () => {
  let hyps: string[];
  let refs: string[];
  let hypFile: string;
  let refFile: string;

  beforeAll(() => {
    hyps = lines(GREEDY, 200);
    refs = lines(join(DATA, 'val.de'), 200);
    hypFile = write('hyp200.de', hyps.join('\n') + '\n');
    refFile = write('val200.de', refs.join('\n') + '\n');
  });

  it("prints sacreBLEU's line, equal to corpusBleu().toString(), for val200.greedy.de against val.de's first 200 lines", () => {
    const want = corpusBleu(hyps, [refs]).toString();
    expect(want).toBe(
      'BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.4.2 = 36.5 64.8/42.4/29.8/21.8 ' +
        '(BP = 1.000 ratio = 1.034 hyp_len = 2540 ref_len = 2457)',
    );
    expect(ok(chimera(['bleu', hypFile, refFile]))).toBe(`${want}\n`);
    // The shared file itself (no trailing newline handling issues) gives the same.
    expect(ok(chimera(['bleu', GREEDY, refFile]))).toBe(`${want}\n`);
  });

  it("reads the hypothesis from stdin with '-' or when only references are named", () => {
    const want = `${corpusBleu(hyps, [refs]).toString()}\n`;
    const input = hyps.join('\n') + '\n';
    expect(ok(chimera(['bleu', '-', refFile], input))).toBe(want);
    expect(ok(chimera(['bleu', refFile], input))).toBe(want);
  });

  it('options and several references match the API; --json carries the full score', () => {
    const ref2 = lines(GREEDY, 200).map((l, i) => (i % 3 === 0 ? refs[i] : l));
    const ref2File = write('ref2.de', ref2.join('\n') + '\n');
    for (const [flags, opts] of [
      [['--tokenize', 'intl', '--smooth', 'floor', '--smooth-value', '0.2'], { tokenize: 'intl', smooth: 'floor', smoothValue: 0.2 }],
      [['--tokenize', 'char', '--lowercase'], { tokenize: 'char', lowercase: true }],
      [['--tokenize', 'none', '--smooth', 'add-k'], { tokenize: 'none', smooth: 'add-k' }],
      [['--smooth', 'none'], { smooth: 'none' }],
    ] as const) {
      const want = corpusBleu(hyps, [refs, ref2], opts).toString();
      expect(ok(chimera(['bleu', hypFile, refFile, ref2File, ...flags])), flags.join(' ')).toBe(`${want}\n`);
    }
    const j = JSON.parse(ok(chimera(['bleu', hypFile, refFile, '--json'])));
    const s = corpusBleu(hyps, [refs]);
    expect(j).toMatchObject({ name: 'BLEU', score: s.score, counts: s.counts, totals: s.totals, bp: s.bp, sysLen: 2540, refLen: 2457, signature: s.signature, line: s.toString() });
  });

  it('hypothesis and reference files of different lengths: exit 1 naming both counts', () => {
    const short = write('short.de', hyps.slice(0, 150).join('\n') + '\n');
    fails(chimera(['bleu', short, refFile]), /reference file .*val200\.de has 200 lines but hypothesis file .*short\.de has 150: the files must be aligned line by line/);
    fails(chimera(['bleu', hypFile, refFile, short]), /reference file .*short\.de has 150 lines but hypothesis file .*hyp200\.de has 200/);
    fails(chimera(['bleu', '-', refFile], 'one line\n'), /reference file .* has 200 lines but the hypothesis \(stdin\) has 1/);
  });

  it('an empty file or empty stdin: exit 1', () => {
    const empty = write('empty.de', '');
    fails(chimera(['bleu', empty, refFile]), /hypothesis file .*empty\.de is empty/);
    fails(chimera(['bleu', hypFile, empty]), /reference file .*empty\.de is empty/);
    fails(chimera(['bleu', refFile], ''), /hypothesis input \(stdin\) is empty/);
  });

  it('non-UTF-8 bytes (Latin-1 German): exit 1 naming the line and byte', () => {
    const latin1 = Buffer.from('Ein Hund.\nZwei M\xe4nner.\n', 'latin1');
    const bad = write('latin1.de', latin1);
    const two = write('two.de', 'Ein Hund.\nZwei Männer.\n');
    fails(chimera(['bleu', bad, two]), /hypothesis file .*latin1\.de is not valid UTF-8 \(line 2, byte offset 16: 0xe4\)/);
    fails(chimera(['bleu', two, bad]), /reference file .*latin1\.de is not valid UTF-8/);
    fails(chimera(['bleu', '-', two], latin1), /hypothesis input \(stdin\) is not valid UTF-8 \(line 2/);
  });

  it('missing files, bad options and no arguments: exit 1', () => {
    fails(chimera(['bleu', join(dir, 'nope.de'), refFile]), /hypothesis file .*nope\.de does not exist/);
    fails(chimera(['bleu', hypFile, join(dir, 'nope.de')]), /reference file .*nope\.de does not exist/);
    fails(chimera(['bleu', hypFile, refFile, '--tokenize', 'moses']), /tokenize/);
    fails(chimera(['bleu', hypFile, refFile, '--smooth-value', 'x']), /--smooth-value must be a number/);
    fails(chimera(['bleu', hypFile, refFile, '--beam', '2']), /unknown option --beam for bleu/);
    fails(chimera(['bleu']), /bleu needs reference files/);
  });
});

describe.skipIf(!HAVE_DATA)('chimera eval and chimera quantize', () => {
  let srcFile: string;
  let refFile: string;

  beforeAll(() => {
    srcFile = write('val80.en', lines(join(DATA, 'val.en'), 80).join('\n') + '\n');
    refFile = write('val80.de', lines(join(DATA, 'val.de'), 80).join('\n') + '\n');
  });

  it('eval reports the tier, the fp32 control and the delta; --limit cuts both files', () => {
    const j = JSON.parse(ok(chimera(['eval', '--model', MODEL_DIR, '--src', srcFile, '--ref', refFile, '--limit', '50', '--precision', 'int8', '--json'])));
    expect(j.tier.name).toBe('int8');
    expect(j.control.name).toBe('fp32');
    expect(j.tier.sentences).toBe(50);
    expect(j.control.sentences).toBe(50);
    expect(j.delta).toBeCloseTo(j.tier.bleu - j.control.bleu, 12);
    expect(j.tier.sentencesPerSec).toBeGreaterThan(0);
    expect(j.control.sentencesPerSec).toBeGreaterThan(0);
    expect(j.control.line).toMatch(/^BLEU\|nrefs:1\|case:mixed\|eff:no\|tok:13a\|smooth:exp\|version:2\.4\.2 = /);
    const text = ok(chimera(['eval', '--model', MODEL_DIR, '--src', srcFile, '--ref', refFile, '--limit', '50', '--precision', 'fp16']));
    expect(text).toMatch(/^fp16 +[0-9.]+ +[0-9.]+ +[0-9.]+$/m);
    expect(text).toMatch(/^fp32 \(control\) +[0-9.]+ /m);
    expect(text).toMatch(/^delta: [+-][0-9.]+ BLEU; speed [0-9.]+x fp32$/m);
  });

  it('eval of a packed file needs --control DIR, and then scores as the directory at that tier', async () => {
    const packed = join(dir, 'int8.chimera');
    (await MarianModel.load(MODEL_DIR, { precision: 'int8' })).save(packed);
    fails(chimera(['eval', '--model', packed, '--src', srcFile, '--ref', refFile, '--limit', '30']), /packed file: the fp32 control needs the Hugging Face model directory.*--control DIR/);
    const a = JSON.parse(ok(chimera(['eval', '--model', packed, '--control', MODEL_DIR, '--src', srcFile, '--ref', refFile, '--limit', '30', '--json'])));
    const b = JSON.parse(ok(chimera(['eval', '--model', MODEL_DIR, '--src', srcFile, '--ref', refFile, '--limit', '30', '--precision', 'int8', '--json'])));
    expect(a.tier.name).toBe('int8');
    expect(a.tier.bleu).toBe(b.tier.bleu);
    expect(a.control.bleu).toBe(b.control.bleu);
  });

  it('eval: misaligned, empty or missing inputs and a missing --ref: exit 1', () => {
    const short = write('short.en', 'A dog.\n');
    fails(chimera(['eval', '--model', MODEL_DIR, '--src', short, '--ref', refFile]), /reference file .* has 80 lines but source file .*short\.en has 1/);
    fails(chimera(['eval', '--model', MODEL_DIR, '--src', write('e.en', ''), '--ref', refFile]), /source file .* is empty/);
    fails(chimera(['eval', '--model', MODEL_DIR, '--src', srcFile]), /eval needs --ref/);
    fails(chimera(['eval', '--model', join(dir, 'none'), '--src', srcFile, '--ref', refFile]), /does not exist/);
  });

  it('quantize with a 5-BLEU budget keeps int8 everywhere, writes the model and both reports', async () => {
    const out = join(dir, 'gate.chimera');
    const md = ok(chimera(['quantize', '--model', MODEL_DIR, '--src', srcFile, '--ref', refFile, '--max-bleu-drop', '5', '--out', out, '--limit', '60']));
    expect(md).toContain('| tier | configuration | BLEU | delta | sent/s | ms/token | gate | chosen |');
    expect(md).toMatch(/^\| 1 \| int8 \| [0-9.]+ \| [+-][0-9.]+ \| [0-9.]+ \| [0-9.]+ \| pass \| yes \|$/m);
    expect(md).toMatch(/^\| 4 \| fp32 \(control\) \| [0-9.]+ \| \+0\.00 \| .* \| control \| {2}\|$/m);
    const back = await MarianModel.load(out);
    expect(back.precision).toEqual({ encoder: 'int8', decoder: 'int8', lmHead: 'int8' });
    const report = JSON.parse(readFileSync(`${out}.report.json`, 'utf8'));
    expect(report.chosen.name).toBe('int8');
    expect(report.sentences).toBe(60);
    expect(report.maxBleuDrop).toBe(5);
    expect(readFileSync(`${out}.report.md`, 'utf8')).toBe(md.slice(0, md.indexOf('\nreport: ')));
    // --report names the files.
    const base = join(dir, 'custom-report');
    ok(chimera(['quantize', '--model', MODEL_DIR, '--src', srcFile, '--ref', refFile, '--out', join(dir, 'g2.chimera'), '--limit', '20', '--report', `${base}.md`]));
    expect(existsSync(`${base}.md`) && existsSync(`${base}.json`)).toBe(true);
  });

  it('quantize: bad budget, packed --model, missing --out: exit 1', () => {
    const args = ['--src', srcFile, '--ref', refFile, '--limit', '10'];
    fails(chimera(['quantize', '--model', MODEL_DIR, ...args, '--out', join(dir, 'x.chimera'), '--max-bleu-drop', '-1']), /--max-bleu-drop must be >= 0/);
    fails(chimera(['quantize', '--model', MODEL_DIR, ...args, '--out', join(dir, 'x.chimera'), '--max-bleu-drop', 'lots']), /--max-bleu-drop must be a number/);
    fails(chimera(['quantize', '--model', MODEL_DIR, ...args]), /quantize needs --out/);
    const packed = join(dir, 'int8.chimera');
    if (existsSync(packed)) fails(chimera(['quantize', '--model', packed, ...args, '--out', join(dir, 'x.chimera')]), /must be a Hugging Face model directory/);
  });
});
