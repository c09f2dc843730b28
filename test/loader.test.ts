/**
 * The addon loader (src/native-loader.ts) against a temporary package root holding fake binaries: its order
 * (CHIMERA_NATIVE, then build/Release, then the matching prebuild), libc matching, the CPU baseline check, the
 * E_NATIVE_LOAD text; the prebuild script's dry-run platform logic; `chimera doctor --json`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkCpuBaseline, loadAddon, type LoaderOptions } from '../src/native-loader';
import { addonPath, ROOT } from './helpers/addon-path';
import { chimera } from './helpers/cli';

let dir: string;
const put = (rel: string, content: string): string => {
  const file = path.join(dir, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
  return file;
};
// A fake binary's content says whether it "loads": the fake loader returns { from: file } or throws its text.
const fakeLoad = (file: string): unknown => {
  const text = fs.readFileSync(file, 'utf8');
  if (text.startsWith('bad:')) throw new Error(`${text.slice(4)}\nsecond line`);
  return { from: file };
};
const base = (): LoaderOptions => ({ root: dir, env: {}, platform: 'linux', arch: 'x64', libc: 'glibc', cpuinfo: 'flags\t\t: fpu sse sse2 avx2\n', load: fakeLoad, warn: () => {} });

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chimera-loader-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('loader order', () => {
  it('CHIMERA_NATIVE, then build/Release, then the matching prebuild', () => {
    const explicit = put('elsewhere/mine.node', 'ok');
    const release = put('build/Release/chimera.node', 'ok');
    const glibc = put('prebuilds/linux-x64/chimera-infer.glibc.node', 'ok');
    put('prebuilds/linux-x64/chimera-infer.musl.node', 'ok');
    put('prebuilds/linux-arm64/chimera-infer.glibc.node', 'ok');

    let r = loadAddon({ ...base(), env: { CHIMERA_NATIVE: explicit } });
    expect([r.file, r.source]).toEqual([explicit, 'CHIMERA_NATIVE']);
    // CHIMERA_ADDON is the older name for the same thing; CHIMERA_NATIVE wins when both are set.
    r = loadAddon({ ...base(), env: { CHIMERA_ADDON: explicit } });
    expect(r.source).toBe('CHIMERA_NATIVE');
    r = loadAddon({ ...base(), env: { CHIMERA_NATIVE: explicit, CHIMERA_ADDON: release } });
    expect(r.file).toBe(explicit);

    r = loadAddon(base());
    expect([r.file, r.source]).toEqual([release, 'local build']);

    fs.rmSync(path.join(dir, 'build'), { recursive: true });
    r = loadAddon(base());
    expect([r.file, r.source, r.platform]).toEqual([glibc, 'prebuild', 'linux-x64-glibc']);
    r = loadAddon({ ...base(), libc: 'musl' });
    expect(r.file).toBe(path.join(dir, 'prebuilds/linux-x64/chimera-infer.musl.node'));
    r = loadAddon({ ...base(), arch: 'arm64', cpuinfo: 'Features\t: fp asimd evtstrm\n' });
    expect(r.file).toBe(path.join(dir, 'prebuilds/linux-arm64/chimera-infer.glibc.node'));
  });

  it('a candidate that fails to load is recorded and the next one is tried; a failed CHIMERA_NATIVE warns', () => {
    const badExplicit = put('elsewhere/bad.node', 'bad:invalid ELF header');
    put('build/Release/chimera.node', 'bad:undefined symbol: _ZN7chimera3fooEv');
    const warnings: string[] = [];
    const r = loadAddon({ ...base(), env: { CHIMERA_NATIVE: badExplicit }, warn: (m) => warnings.push(m) });
    expect(r.source).toBe('prebuild');
    expect(r.tried).toEqual([
      `CHIMERA_NATIVE=${badExplicit} (invalid ELF header)`,
      `${path.join(dir, 'build/Release/chimera.node')} (undefined symbol: _ZN7chimera3fooEv)`,
      `${path.join(dir, 'build/Debug/chimera.node')} (missing)`,
    ]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/CHIMERA_NATIVE could not be loaded/);
  });

  it('E_ISA from the addon (CHIMERA_ISA the CPU lacks) is passed through, not hidden as a load failure', () => {
    const load = (): never => {
      throw Object.assign(new Error('CHIMERA_ISA=amx: this CPU cannot run it'), { code: 'E_ISA' });
    };
    expect(() => loadAddon({ ...base(), load })).toThrow(expect.objectContaining({ code: 'E_ISA' }));
  });

  it('E_NATIVE_LOAD lists what was tried and the concrete fixes', () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'chimera-loader-empty-'));
    try {
      let err: { code?: string; message: string } | undefined;
      try {
        loadAddon({ ...base(), root: empty, env: { CHIMERA_NATIVE: '/nonexistent/chimera.node' }, libc: 'musl' });
      } catch (e) {
        err = e as typeof err;
      }
      expect(err?.code).toBe('E_NATIVE_LOAD');
      const m = err!.message;
      expect(m).toContain('could not load the native addon for linux-x64-musl');
      expect(m).toContain('CHIMERA_NATIVE=/nonexistent/chimera.node (missing)');
      expect(m).toContain(`${path.join(empty, 'build/Release/chimera.node')} (missing)`);
      expect(m).toContain('no prebuild for linux-x64-musl in this package');
      expect(m).toContain('npm rebuild chimera-infer --build-from-source');
      expect(m).toMatch(/musl \(Alpine\)/);
      expect(m).toMatch(/lockfile made on another OS/);
      expect(m).toContain('chimera doctor');
      // glibc machines are told about the musl/glibc split too.
      try {
        loadAddon({ ...base(), root: empty });
      } catch (e) {
        expect((e as Error).message).toMatch(/glibc vs musl/);
      }
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });

  it('a real dlopen failure (a file that is not a shared object) is reported with its message', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'chimera-loader-real-'));
    try {
      fs.mkdirSync(path.join(root, 'build', 'Release'), { recursive: true });
      fs.writeFileSync(path.join(root, 'build', 'Release', 'chimera.node'), 'not a shared object');
      expect(() => loadAddon({ root, env: {}, cpuinfo: 'flags : sse sse2\nFeatures : fp asimd\n' })).toThrow(
        /build\/Release\/chimera\.node \((?!missing).+\)/,
      );
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('CPU baseline', () => {
  it('refuses a CPU without the baseline before anything is loaded', () => {
    let loaded = false;
    const load = (): unknown => {
      loaded = true;
      return {};
    };
    expect(() => loadAddon({ ...base(), cpuinfo: 'flags\t: fpu vme\n', load })).toThrow(/lacks sse, sse2, part of the x86-64 \(SSE2\) baseline/);
    expect(() => checkCpuBaseline({ arch: 'arm64', env: {}, cpuinfo: 'Features\t: fp evtstrm\n' })).toThrow(/lacks asimd/);
    expect(() => checkCpuBaseline({ arch: 'ia32', env: {} })).toThrow(/ia32 architecture is not supported/);
    expect(loaded).toBe(false);
    // The override, and a cpuinfo without a flags line (not decidable): no error.
    expect(() => checkCpuBaseline({ arch: 'x64', env: { CHIMERA_SKIP_CPU_CHECK: '1' }, cpuinfo: 'flags : fpu\n' })).not.toThrow();
    expect(() => checkCpuBaseline({ arch: 'x64', env: {}, cpuinfo: 'processor : 0\n' })).not.toThrow();
  });

  it('this machine has the baseline', () => {
    expect(() => checkCpuBaseline()).not.toThrow();
  });
});

describe('prebuild script, dry run', () => {
  it('plans every release target with prebuildify names, ISA kernels only on x64, the glibc check only on glibc', () => {
    const out = execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'prebuild.js'), '--dry-run', '--all', '--json'], { encoding: 'utf8' });
    const plans = JSON.parse(out) as { target: string; file: string; isaKernels: string[]; glibcCheck: string | null }[];
    const byTarget = Object.fromEntries(plans.map((p) => [p.target, p]));
    expect(Object.keys(byTarget).sort()).toEqual(['darwin-arm64', 'linux-arm64-glibc', 'linux-x64-glibc', 'linux-x64-musl', 'win32-x64']);
    expect(byTarget['linux-x64-musl'].file).toBe(path.join('prebuilds', 'linux-x64', 'chimera-infer.musl.node'));
    expect(byTarget['darwin-arm64'].file).toBe(path.join('prebuilds', 'darwin-arm64', 'chimera-infer.node'));
    expect(byTarget['linux-arm64-glibc'].isaKernels).toEqual(['scalar']);
    expect(byTarget['win32-x64'].isaKernels).toContain('avx512vnni');
    expect(byTarget['linux-x64-glibc'].glibcCheck).toMatch(/GLIBC_\* <= 2\.28/);
    expect(byTarget['linux-x64-musl'].glibcCheck).toBeNull();
  });
});

describe('chimera doctor --json', () => {
  it('reports the binary, ISA, threads, versions, onnxruntime and a verdict', () => {
    const addon = addonPath();
    const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), 'doctor', '--json'], {
      encoding: 'utf8',
      env: { ...process.env, CHIMERA_NATIVE: addon, CHIMERA_THREADS: '2' },
    });
    expect(r.status, r.stderr).toBe(0);
    const d = JSON.parse(r.stdout);
    expect(d.verdict.ok).toBe(true);
    expect(d.verdict.line).toMatch(/^ok: /);
    expect(d.addon).toMatchObject({ loaded: true, file: addon, source: 'CHIMERA_NATIVE', error: null });
    expect(d.addon.platform).toMatch(/^(linux|darwin|win32)-(x64|arm64)/);
    expect(d.isa.supported).toContain('scalar');
    expect(d.isa.supported).toContain(d.isa.inUse);
    expect(d.isa.compiled).toContain('scalar');
    expect(d.threads).toMatchObject({ intraOp: 2, env: '2' });
    expect(d.node).toMatchObject({ version: process.version, napi: Number(process.versions.napi), addonNapi: 8 });
    expect(d.package).toMatchObject({ name: 'chimera-infer' });
    expect(d.cpu.baselineOk).toBe(true);
    expect(d.kernelCheck.ok).toBe(true);
    expect(typeof d.onnxruntime.present).toBe('boolean');
  });

  it('reports the libc it detects (LIBC overrides it)', () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), 'doctor', '--json'], {
      encoding: 'utf8',
      env: { ...process.env, CHIMERA_NATIVE: '', CHIMERA_ADDON: '', LIBC: 'musl' },
      cwd: os.tmpdir(),
    });
    // With a local build present the addon still loads (LIBC only steers the prebuild choice).
    const d = JSON.parse(r.stdout);
    expect(typeof d.verdict.ok).toBe('boolean');
    expect(d.node.libc).toBe(process.platform === 'linux' ? 'musl' : null);
  });

  it('rejects unknown options', () => {
    const r = chimera(['doctor', '--bogus']);
    // one CLI layer: an argument error is [E_ARG], exit status 1, for every command
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/\[E_ARG\] unknown option --bogus for doctor/);
  });
});
