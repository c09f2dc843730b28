/**
 * Run-time ISA dispatch: cpuInfo() consistency (also against /proc/cpuinfo on Linux), setIsa round trips,
 * kernel counters, and CHIMERA_ISA at load time in child processes that require the addon directly.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { cpuInfo, getIsa, getThreads, kernelCounters, layerNorm, setIsa, setThreads } from '../src/index';
import type { Isa } from '../src/index';
import { addonPath } from './helpers/addon-path';
import { expectChimeraError } from './helpers/harness';

const ALL: Isa[] = ['scalar', 'avx2', 'avxvnni', 'avx512vnni', 'amx'];

function runChild(env: Record<string, string | undefined>, body: string) {
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== 'CHIMERA_ISA') childEnv[k] = v;
  for (const [k, v] of Object.entries(env)) if (v !== undefined) childEnv[k] = v;
  const script = `const n = require(${JSON.stringify(addonPath())});\n${body}`;
  return spawnSync(process.execPath, ['-e', script], { env: childEnv, encoding: 'utf8', timeout: 30_000 });
}

describe('cpuInfo', () => {
  afterAll(() => {
    setIsa('auto');
  });

  it('has the documented shape', () => {
    const info = cpuInfo();
    expect(ALL).toContain(info.isa);
    expect(info.supported.length).toBeGreaterThanOrEqual(1);
    expect(info.supported[0]).toBe('scalar');
    for (const s of info.supported) expect(ALL).toContain(s);
    // "best last": listed in increasing order of capability, no duplicates.
    const order = info.supported.map((s) => ALL.indexOf(s));
    for (let i = 1; i < order.length; i++) expect(order[i]).toBeGreaterThan(order[i - 1]);
    expect(info.supported).toContain(info.isa);
    for (const f of ['avx2', 'avx512f', 'avx512vnni']) expect(typeof info.features[f], `features.${f}`).toBe('boolean');
  });

  it('features are consistent with supported', () => {
    const { features, supported } = cpuInfo();
    if (supported.includes('avx2')) expect(features.avx2).toBe(true);
    if (supported.includes('avx512vnni')) {
      expect(features.avx512f).toBe(true);
      expect(features.avx512vnni).toBe(true);
    }
    if (!features.avx2) expect(supported).not.toContain('avx2');
    if (!features.avx512vnni || !features.avx512f) expect(supported).not.toContain('avx512vnni');
    if (supported.includes('avxvnni')) expect(features.avxvnni && features.avx2).toBe(true);
    if (!features.avxvnni) expect(supported).not.toContain('avxvnni');
    if (supported.includes('amx')) expect(features.amx_int8 && features.amx_tile && features.avx512vnni).toBe(true);
    if (!features.amx_int8) expect(supported).not.toContain('amx');
  });

  it.skipIf(!fs.existsSync('/proc/cpuinfo'))('features agree with the kernel-reported CPU flags', () => {
    const text = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const line = text.split('\n').find((l) => l.startsWith('flags'));
    if (!line) return;
    const flags = new Set(line.split(':')[1].trim().split(/\s+/));
    const { features } = cpuInfo();
    expect(features.avx2, 'avx2').toBe(flags.has('avx2'));
    expect(features.avx512f, 'avx512f').toBe(flags.has('avx512f'));
    expect(features.avx512vnni, 'avx512vnni (avx512_vnni in /proc/cpuinfo)').toBe(flags.has('avx512_vnni'));
    expect(features.avxvnni, 'avxvnni (avx_vnni in /proc/cpuinfo)').toBe(flags.has('avx_vnni'));
  });

  it('setIsa round-trips for every supported ISA, and auto picks the best', () => {
    const { supported } = cpuInfo();
    for (const isa of supported) {
      expect(setIsa(isa)).toBe(isa);
      expect(getIsa()).toBe(isa);
      expect(cpuInfo().isa).toBe(isa);
    }
    const best = supported[supported.length - 1];
    expect(setIsa('auto')).toBe(best);
    expect(getIsa()).toBe(best);
  });

  it('unsupported or unknown ISAs throw E_ISA and leave the ISA unchanged', () => {
    setIsa('scalar');
    const missing = ALL.filter((i) => !cpuInfo().supported.includes(i));
    for (const isa of missing) expectChimeraError(() => setIsa(isa), 'E_ISA', isa);
    expectChimeraError(() => setIsa('bogus' as Isa), 'E_ISA', 'bogus');
    expect(getIsa()).toBe('scalar');
    setIsa('auto');
  });

  it('kernel counters are keyed op:isa with non-negative integer counts and count real runs', () => {
    const { supported } = cpuInfo();
    const x = new Float32Array(64).fill(1).map((v, i) => v + i);
    const g = new Float32Array(16).fill(1);
    for (const isa of supported) {
      setIsa(isa);
      const before = kernelCounters()[`layer_norm:${isa}`] ?? 0;
      layerNorm(x, 16, g);
      layerNorm(x, 16, g);
      expect(kernelCounters()[`layer_norm:${isa}`]).toBeGreaterThanOrEqual(before + 2);
    }
    setIsa('auto');
    const c = kernelCounters();
    for (const [k, v] of Object.entries(c)) {
      expect(k).toMatch(/^[a-z0-9_]+:(scalar|avx2|avxvnni|avx512vnni|amx)$/);
      expect(Number.isInteger(v) && v >= 0, `${k} = ${v}`).toBe(true);
    }
  });

  it('setThreads / getThreads round trip', () => {
    const prev = getThreads();
    expect(Number.isInteger(prev) && prev >= 1).toBe(true);
    setThreads(2);
    expect(getThreads()).toBe(2);
    setThreads(1);
    expect(getThreads()).toBe(1);
    setThreads(prev);
  });
});

describe('CHIMERA_ISA at load time (child processes)', () => {
  const { supported } = cpuInfo();
  const best = supported[supported.length - 1];

  it.each(supported)('CHIMERA_ISA=%s selects it', (isa) => {
    const r = runChild({ CHIMERA_ISA: isa }, 'process.stdout.write(n.getIsa());');
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(isa);
  });

  it('unset or auto selects the best ISA', () => {
    for (const env of [{}, { CHIMERA_ISA: 'auto' }]) {
      const r = runChild(env, 'process.stdout.write(n.getIsa());');
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe(best);
    }
  });

  it('a forced ISA is really used by the kernels in the child', () => {
    const r = runChild(
      { CHIMERA_ISA: 'scalar' },
      `const x = new Float32Array(64).fill(2); x[3] = 5;
       n.norm(0, x, null, null, new Float32Array(16).fill(1), null, 16, 1e-5, new Float32Array(64), null, null, null, null, 0);
       const c = n.kernelCounters();
       process.stdout.write(JSON.stringify(Object.keys(c).filter((k) => k.startsWith('layer_norm:') && c[k] > 0)));`,
    );
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(['layer_norm:scalar']);
  });

  it('CHIMERA_ISA=bogus fails cleanly at load: exit code 1 (not a signal), message naming CHIMERA_ISA', () => {
    const r = runChild({ CHIMERA_ISA: 'bogus' }, 'process.stdout.write("loaded");');
    expect(r.signal, `killed by ${r.signal}`).toBeNull();
    expect(r.status).toBe(1);
    expect(r.stdout).not.toContain('loaded');
    expect(r.stderr).toContain('CHIMERA_ISA');
  });

  it('the load error carries code E_ISA', () => {
    const r = spawnSync(
      process.execPath,
      ['-e', `try { require(${JSON.stringify(addonPath())}); process.stdout.write('loaded'); } catch (e) { process.stdout.write(JSON.stringify({ code: e.code, message: String(e.message) })); }`],
      { env: { ...process.env, CHIMERA_ISA: 'bogus' }, encoding: 'utf8', timeout: 30_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { code: string; message: string };
    expect(out.code).toBe('E_ISA');
    expect(out.message).toContain('CHIMERA_ISA');
  });

  const missing = (['avx2', 'avxvnni', 'avx512vnni', 'amx'] as Isa[]).filter((i) => !supported.includes(i));
  it.skipIf(missing.length === 0)('forcing an ISA this CPU lacks through CHIMERA_ISA fails with E_ISA', () => {
    for (const isa of missing) {
      const r = runChild({ CHIMERA_ISA: isa }, 'process.stdout.write("loaded");');
      expect(r.signal).toBeNull();
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('CHIMERA_ISA');
    }
  });
});
