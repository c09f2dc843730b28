/**
 * The `chimera` command line (dist/cli.js, built by the global setup), run as a child process: translate from
 * arguments and from stdin against in-process translations, error exits, make-model determinism, info.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpuInfo } from '../src/kernels';
import { MarianModel } from '../src/marian';

const ROOT = join(__dirname, '..');
const CLI = join(ROOT, 'dist', 'cli.js');
const MODEL_DIR = join(ROOT, 'models', 'marian-m30k-en-de');

/** Runs `node dist/cli.js ...args` with a hard timeout; the environment does not force an ISA or thread count. */
function chimera(args: string[], input?: string): SpawnSyncReturns<string> {
  const env = { ...process.env };
  delete env.CHIMERA_ISA;
  delete env.CHIMERA_THREADS;
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, input: input ?? '', encoding: 'utf8', timeout: 30_000, env });
  if (r.error) throw r.error;
  expect(r.signal, `chimera ${args.join(' ')} was killed (timeout?)\n${r.stderr}`).toBeNull();
  return r;
}

function ok(r: SpawnSyncReturns<string>): string {
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

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
  it('an unknown command exits 2 with the usage on stderr', () => {
    const r = chimera(['translat', 'A dog runs.']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("unknown command 'translat'");
    expect(r.stderr).toContain('usage: chimera');
    expect(r.stdout).toBe('');
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
