// The mutation fuzzer in the suite (scripts/fuzz.js; seeds in test/fuzz/seeds): 2,000 cases per target, each
// run by a child process that announces it first, so a signal or hang is observed and names the case. Longer
// campaigns: npm run fuzz -- --cases N [--seed S]. The case count is fixed, not the time, so the verdict does
// not depend on machine speed; the timeout is only a backstop.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { addonPath, ROOT } from './helpers/addon-path';

const TARGETS = ['safetensors', 'packed', 'config', 'tokenizer', 'torch'];
const CASES = Number(process.env.CHIMERA_FUZZ_CASES ?? 2000);

describe('mutation fuzzing: 0 signals, 0 hangs, only E_MODEL', () => {
  it.each(TARGETS)('%s', (target) => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'fuzz.js'), '--targets', target, '--cases', String(CASES), '--json', '--jobs', '2'], {
      env: { ...process.env, CHIMERA_ADDON: addonPath() }, encoding: 'utf8', timeout: 900_000, maxBuffer: 64 << 20,
    });
    expect(r.signal, r.stderr).toBeNull();
    const [s] = JSON.parse(r.stdout.trim().split('\n').pop()!) as { cases: number; verdicts: Record<string, number>; crashes: unknown[]; bad: unknown[]; ms: number }[];
    expect(s.crashes, r.stderr).toEqual([]);
    expect(s.bad, r.stderr).toEqual([]);
    expect(s.cases).toBe(CASES);
    expect(Object.keys(s.verdicts).every((v) => v === 'ok' || v === 'code E_MODEL'), JSON.stringify(s.verdicts)).toBe(true);
    expect(r.status, r.stderr).toBe(0);
  }, 900_000);
});
