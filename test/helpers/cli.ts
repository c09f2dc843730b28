/** Running the built `chimera` command (dist/cli.js, built by the global setup) and plain Node scripts as child processes. */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as path from 'node:path';
import { expect } from 'vitest';

export const ROOT = path.resolve(__dirname, '..', '..');
export const CLI = path.join(ROOT, 'dist', 'cli.js');
export const DEMO_MODEL = path.join(ROOT, 'models', 'marian-m30k-en-de');

export interface RunOptions {
  input?: string | Buffer;
  /** Extra environment variables (CHIMERA_ISA and CHIMERA_THREADS are removed first, unless given here). */
  env?: Record<string, string>;
  timeout?: number;
  cwd?: string;
}

function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.CHIMERA_ISA;
  delete env.CHIMERA_THREADS;
  return { ...env, ...extra };
}

/** Runs `node dist/cli.js ...args` with a hard timeout; fails the test when it is killed. */
export function chimera(args: string[], o: RunOptions = {}): SpawnSyncReturns<string> {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: o.cwd ?? ROOT, input: o.input ?? '', encoding: 'utf8', timeout: o.timeout ?? 60_000, env: childEnv(o.env) });
  if (r.error) throw r.error;
  expect(r.signal, `chimera ${args.join(' ')} was killed (timeout?)\n${r.stderr}`).toBeNull();
  return r;
}

/** Runs a Node.js script given as text (CommonJS, cwd = the repository) with a hard timeout. */
export function nodeScript(code: string, o: RunOptions = {}): SpawnSyncReturns<string> {
  const r = spawnSync(process.execPath, ['-e', code], { cwd: o.cwd ?? ROOT, input: o.input ?? '', encoding: 'utf8', timeout: o.timeout ?? 60_000, env: childEnv(o.env) });
  if (r.error) throw r.error;
  expect(r.signal, `the script was killed (timeout?): it did not exit\n${r.stderr}`).toBeNull();
  return r;
}

/** Exit status 0; returns stdout. */
export function ok(r: SpawnSyncReturns<string>): string {
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

/** Exit 1, nothing on stdout, a `chimera: [CODE] message` line on stderr matching `re`. */
export function fails(r: SpawnSyncReturns<string>, re: RegExp): void {
  expect(r.status, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(1);
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(/^chimera: \[E_[A-Z]+\] /);
  expect(r.stderr).toMatch(re);
}
