/**
 * The `chimera` command line (dist/cli.js, built by the global setup), run as a child process: translate from
 * arguments and from stdin against in-process translations, line alignment on failures, error exits, help,
 * version and "did you mean", convert's tokenizer rule, make-model determinism, info.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpuInfo } from '../src/kernels';
import { MarianModel } from '../src/marian';
import { chimera as run, DEMO_MODEL as MODEL_DIR, ok } from './helpers/cli';

const chimera = (args: string[], input?: string) => run(args, { input, timeout: 30_000 });

let fp32: MarianModel;
const tmpDirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'chimera-cli-'));
  tmpDirs.push(d);
  return d;
};

function inProcess(m: MarianModel, text: string, beam?: number): string {
  const tok = m.tokenizer!;
  return tok.decode(m.generate([tok.encode(text)], { beam }).ids[0]);
}

beforeAll(async () => {
  fp32 = await MarianModel.load(MODEL_DIR);
});

afterAll(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

describe('chimera translate', () => {
  it('translates an argument with the built-in model: one German line, as in-process', () => {
    const out = ok(chimera(['translate', 'A dog runs.']));
    const want = inProcess(fp32, 'A dog runs.');
    expect(want).toBe('Ein Hund rennt.');
    expect(out).toBe(`${want}\n`);
  });

  it('several arguments are translated each as its own line, in order', () => {
    const out = ok(chimera(['translate', 'A dog.', 'A cat.']));
    expect(out).toBe(`${inProcess(fp32, 'A dog.')}\n${inProcess(fp32, 'A cat.')}\n`);
  });

  it('stdin keeps alignment: a line that fails is an empty line plus a stderr message naming it, exit 1 at the end', () => {
    const long = Array(400).fill('dog').join(' ');
    const r = chimera(['translate'], `A dog runs.\n${long}\n\nTwo men talk.\n`);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe(`${inProcess(fp32, 'A dog runs.')}\n\n\n${inProcess(fp32, 'Two men talk.')}\n`);
    expect(r.stderr).toMatch(/^chimera: line 2: \[E_INPUT\] it has \d+ tokens/);
    expect(r.stderr).not.toContain('input 0');
    expect(r.stderr).toContain('1 of 4 lines could not be translated');
    const ff = chimera(['translate', '--fail-fast'], `A dog runs.\n${long}\nTwo men talk.\n`);
    expect(ff.status).toBe(1);
    expect(ff.stdout).toBe(`${inProcess(fp32, 'A dog runs.')}\n`);
    expect(ff.stderr).toMatch(/^chimera: line 2: \[E_INPUT\]/);
    const args = chimera(['translate', 'A dog runs.', long]);
    expect(args.status).toBe(1);
    expect(args.stdout).toBe(`${inProcess(fp32, 'A dog runs.')}\n\n`);
    expect(args.stderr).toMatch(/^chimera: argument 2: \[E_INPUT\]/);
  });

  it('translates stdin line by line; an empty line stays empty', () => {
    const lines = ['A dog runs.', '', 'Two men are playing soccer in the park.'];
    const out = ok(chimera(['translate'], lines.join('\n') + '\n'));
    expect(out.endsWith('\n')).toBe(true);
    const got = out.slice(0, -1).split('\n');
    expect(got).toHaveLength(3);
    expect(got[0]).toBe(inProcess(fp32, lines[0]));
    expect(got[1]).toBe('');
    expect(got[2]).toBe(inProcess(fp32, lines[2]));
    expect(got[2].length).toBeGreaterThan(0);
  });

  it('--precision int8 --beam 4 works and matches the int8 model in-process', async () => {
    const text = 'A woman in a red dress is singing on a stage.';
    const out = ok(chimera(['translate', '--precision', 'int8', '--beam', '4', text]));
    const int8 = await MarianModel.load(MODEL_DIR, { precision: 'int8' });
    expect(out).toBe(`${inProcess(int8, text, 4)}\n`);
    expect(out.trim().length).toBeGreaterThan(0);
  });

  it('a missing model directory exits 1 with [E_MODEL] on stderr', () => {
    const r = chimera(['translate', '--model', '/nonexistent', 'A dog runs.']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('[E_MODEL]');
    expect(r.stderr).toContain('/nonexistent');
    expect(r.stdout).toBe('');
  });

  it('bad options exit 1 with the error code', () => {
    const r = chimera(['translate', '--beam', '0', 'A dog runs.']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('[E_ARG]');
    const r2 = chimera(['translate', '--precision', 'int4', 'A dog runs.']);
    expect(r2.status).toBe(1);
    expect(r2.stderr).toContain('[E_ARG]');
  });
});

describe('chimera (other commands)', () => {
  it('an unknown command exits 2 with "did you mean" and a one-line usage on stderr', () => {
    const r = chimera(['translat', 'A dog runs.']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("unknown command 'translat' (did you mean 'translate'?)");
    expect(r.stderr).toContain('usage: chimera');
    expect(r.stderr.trim().split('\n')).toHaveLength(2);
    expect(r.stdout).toBe('');
    expect(chimera(['zzzzzzzz']).stderr).not.toContain('did you mean');
  });

  it('--help, -h and help print the global usage generated from every command table; --version and -v the version', () => {
    const pkg = JSON.parse(readFileSync(join(MODEL_DIR, '..', '..', 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--help', '-h', 'help']) {
      const out = ok(chimera([flag]));
      expect(out).toMatch(/^usage: chimera <command>/);
      for (const cmd of ['translate', 'convert', 'pull', 'export-onnx', 'make-model', 'tune-ln', 'bleu', 'eval', 'quantize', 'assess', 'serve', 'doctor', 'info', 'selftest'])
        expect(out, cmd).toMatch(new RegExp(`^  ${cmd}\\b`, 'm'));
    }
    for (const flag of ['--version', '-v']) expect(ok(chimera([flag]))).toBe(`chimera-infer ${pkg.version}\n`);
    const none = chimera([]);
    expect(none.status).toBe(2);
    expect(none.stderr).toContain('usage: chimera');
  });

  it('every command answers --help and -h with its own options (exit 0), from its table', () => {
    for (const cmd of ['translate', 'convert', 'pull', 'export-onnx', 'make-model', 'tune-ln', 'bleu', 'eval', 'quantize', 'assess', 'serve', 'doctor', 'info', 'selftest']) {
      const out = ok(chimera([cmd, '--help']));
      expect(out, cmd).toMatch(new RegExp(`^usage: chimera ${cmd}\\b`));
      expect(out, cmd).toContain('--threads N');
      expect(ok(chimera([cmd, '-h']))).toBe(out);
    }
    expect(ok(chimera(['help', 'eval']))).toBe(ok(chimera(['eval', '--help'])));
    const t = ok(chimera(['translate', '--help']));
    expect(t).toContain('--model DIR|FILE');
    expect(t).toContain('--fail-fast');
  });

  it('an unknown option or a missing value is one line naming the nearest option, not the whole usage', () => {
    const r = chimera(['translate', '--bem', '4', 'A dog runs.']);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe("chimera: [E_ARG] unknown option --bem for translate (did you mean --beam?); see chimera translate --help\n");
    const m = chimera(['translate', '--beam']);
    expect(m.status).toBe(1);
    expect(m.stderr).toBe('chimera: [E_ARG] --beam needs a value (N); see chimera translate --help\n');
    const e = chimera(['eval', '--src', 'x']);
    expect(e.status).toBe(1);
    expect(e.stderr).toMatch(/^chimera: \[E_ARG\] eval needs --ref FILE; see chimera eval --help\n$/);
    const c = chimera(['translate', '--precision', 'int9', 'x']);
    expect(c.stderr).toContain('--precision must be one of fp32, fp16, int8, got int9 (did you mean int8?)');
  });

  it('convert refuses a directory without a tokenizer unless --no-tokenizer; translate names the one tokenizer rule', () => {
    const dir = tmp();
    ok(chimera(['make-model', '--preset', 'tiny', '--seed', '1', '--out', dir]));
    for (const f of ['tokenizer.json', 'source.spm', 'vocab.json', 'target.spm']) rmSync(join(dir, f), { force: true });
    const file = join(tmp(), 'm.chimera');
    const r = chimera(['convert', dir, file]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('[E_MODEL]');
    expect(r.stderr).toContain('tokenizer.json, or source.spm + vocab.json');
    expect(r.stderr).toContain('--no-tokenizer');
    expect(ok(chimera(['convert', dir, file, '--no-tokenizer']))).toContain('fp32');
    const t = chimera(['translate', '--model', file, 'hello']);
    expect(t.status).toBe(1);
    expect(t.stderr).toContain(`${file} has no usable tokenizer: a model directory needs tokenizer.json, or source.spm + vocab.json`);
  });

  it('global options may come before the command', () => {
    expect(ok(chimera(['--threads', '1', 'translate', 'A dog runs.']))).toBe(`${inProcess(fp32, 'A dog runs.')}\n`);
    expect(ok(chimera(['--isa=scalar', 'info']))).toMatch(/isa in use:\s+scalar/);
  });

  it('make-model writes a deterministic model that translate can run', () => {
    const [a, b, c] = [tmp(), tmp(), tmp()];
    expect(ok(chimera(['make-model', '--preset', 'tiny', '--seed', '3', '--out', a]))).toContain(a);
    ok(chimera(['make-model', '--preset', 'tiny', '--seed', '3', '--out', b]));
    ok(chimera(['make-model', '--preset', 'tiny', '--seed', '4', '--out', c]));
    const wa = readFileSync(join(a, 'model.safetensors'));
    expect(wa.length).toBeGreaterThan(1000);
    expect(wa.equals(readFileSync(join(b, 'model.safetensors')))).toBe(true);
    expect(wa.equals(readFileSync(join(c, 'model.safetensors')))).toBe(false);
    const out = ok(chimera(['translate', '--model', a, 'hello']));
    // random weights: any text, but exactly one line
    expect(out.endsWith('\n')).toBe(true);
    expect(out.slice(0, -1)).not.toContain('\n');
  });

  it('info lists the ISA in use and the supported ones', () => {
    const out = ok(chimera(['info']));
    const info = cpuInfo();
    const isa = /isa in use:\s+(\S+)/.exec(out);
    expect(isa?.[1]).toBe(info.isa);
    expect(out).toMatch(new RegExp(`supported:\\s+${info.supported.join(', ')}`));
    expect(info.supported).toContain('scalar');
  });
});
