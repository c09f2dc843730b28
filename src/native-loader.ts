/**
 * Finds and loads the compiled addon. The order is:
 *   1. CHIMERA_NATIVE=path (CHIMERA_ADDON is the older name for the same thing);
 *   2. a local build: build/Release, then build/Debug (cmake-js or node-gyp, from `npm install` in a checkout
 *      or `npm rebuild chimera-infer --build-from-source`);
 *   3. the prebuild that matches this platform, architecture and libc under prebuilds/ (prebuildify's layout).
 * Before anything is loaded it checks that the CPU has the baseline the scalar path is compiled for, so an old
 * CPU gets an error that says so rather than SIGILL. When nothing loads, the error lists what was tried and the
 * fixes for the usual causes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ChimeraError } from './errors';

interface PlatformModule {
  PACKAGE_NAME: string;
  CPU_BASELINE: Record<string, { name: string; march: string; cpuinfoFlags: string[] }>;
  detectLibc(platform?: string, env?: NodeJS.ProcessEnv): 'glibc' | 'musl' | null;
  platformString(platform?: string, arch?: string, libc?: string | null): string;
  matchingPrebuilds(root: string, platform?: string, arch?: string, libc?: string | null): string[];
  missingBaseline(arch?: string, cpuinfoText?: string): string[] | null;
}

export type AddonSource = 'CHIMERA_NATIVE' | 'local build' | 'prebuild';

export interface LoadedAddon {
  binding: unknown;
  /** The absolute path of the file that loaded. */
  file: string;
  source: AddonSource;
  /** What was tried before it, each with why it did not load. */
  tried: string[];
  /** linux-x64-glibc, darwin-arm64, ... */
  platform: string;
}

export interface LoaderOptions {
  root?: string;
  env?: NodeJS.ProcessEnv;
  platform?: string;
  arch?: string;
  /** 'glibc' | 'musl' on Linux; detected when absent. */
  libc?: 'glibc' | 'musl' | null;
  /** The text of /proc/cpuinfo; read from the machine when absent (Linux only). */
  cpuinfo?: string;
  /** How a candidate is loaded: require by default. */
  load?: (file: string) => unknown;
  /** Called when a candidate loads after CHIMERA_NATIVE failed (the default emits a process warning). */
  warn?: (message: string) => void;
}

/** The package root: dist/*.js and src/*.ts both sit one level below it. */
export function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 4; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'scripts', 'platform.js'))) return dir;
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..');
}

let platformModule: PlatformModule | undefined;
/** scripts/platform.js of this package (plain CommonJS, shared with the install hook). */
export function platformInfo(): PlatformModule {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  platformModule ??= require(path.join(packageRoot(), 'scripts', 'platform.js')) as PlatformModule;
  return platformModule;
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0];
}

/** Throws E_NATIVE_LOAD when the CPU lacks the baseline (or the architecture is not one chimera builds for). */
export function checkCpuBaseline(opts: LoaderOptions = {}): void {
  const env = opts.env ?? process.env;
  if (env.CHIMERA_SKIP_CPU_CHECK === '1') return;
  const arch = opts.arch ?? process.arch;
  const plat = platformInfo();
  const missing = plat.missingBaseline(arch, opts.cpuinfo);
  if (missing === null) {
    throw new ChimeraError(
      'E_NATIVE_LOAD',
      `chimera: the ${arch} architecture is not supported (chimera is built for x64 and arm64). ` +
        'See "Supported platforms" in the README.',
    );
  }
  if (missing.length > 0) {
    const base = plat.CPU_BASELINE[arch];
    throw new ChimeraError(
      'E_NATIVE_LOAD',
      [
        `chimera: this CPU lacks ${missing.join(', ')}, part of the ${base.name} baseline that chimera's scalar path is compiled for;`,
        'loading the addon would crash with an illegal instruction. Run on a CPU with that baseline (any x86-64 or',
        'ARMv8-A server CPU has it; some emulators and virtual machines hide the flags: pass the host CPU through), or set',
        'CHIMERA_SKIP_CPU_CHECK=1 if you know better than /proc/cpuinfo.',
      ].join('\n'),
    );
  }
}

/** Finds and loads the addon in the documented order; throws E_NATIVE_LOAD (or E_ISA) when it cannot. */
export function loadAddon(opts: LoaderOptions = {}): LoadedAddon {
  const root = opts.root ?? packageRoot();
  const env = opts.env ?? process.env;
  const platform = opts.platform ?? process.platform;
  const arch = opts.arch ?? process.arch;
  const plat = platformInfo();
  const libc = opts.libc !== undefined ? opts.libc : plat.detectLibc(platform, env);
  const platformStr = plat.platformString(platform, arch, libc);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const load = opts.load ?? ((file: string) => require(file));
  const warn = opts.warn ?? ((m: string) => process.emitWarning(m, { code: 'CHIMERA_NATIVE' }));

  checkCpuBaseline({ ...opts, env, arch });

  const explicitVar = env.CHIMERA_NATIVE ? 'CHIMERA_NATIVE' : env.CHIMERA_ADDON ? 'CHIMERA_ADDON' : undefined;
  const candidates: { file: string; source: AddonSource }[] = [];
  if (explicitVar) candidates.push({ file: path.resolve(env[explicitVar]!), source: 'CHIMERA_NATIVE' });
  for (const kind of ['Release', 'Debug'])
    candidates.push({ file: path.join(root, 'build', kind, 'chimera.node'), source: 'local build' });
  const prebuilds = plat.matchingPrebuilds(root, platform, arch, libc);
  for (const file of prebuilds) candidates.push({ file, source: 'prebuild' });

  const tried: string[] = [];
  let explicitFailed = false;
  for (const { file, source } of candidates) {
    const label = source === 'CHIMERA_NATIVE' ? `${explicitVar}=${file}` : file;
    if (!fs.existsSync(file)) {
      tried.push(`${label} (missing)`);
      if (source === 'CHIMERA_NATIVE') explicitFailed = true;
      continue;
    }
    try {
      const binding = load(file);
      if (explicitFailed) warn(`chimera: ${explicitVar} could not be loaded (${tried[0]}); using ${file} instead`);
      return { binding, file, source, tried, platform: platformStr };
    } catch (e) {
      // An ISA forced through CHIMERA_ISA that this CPU lacks is a user error, not a load failure.
      const code = (e as { code?: string }).code;
      if (code === 'E_ISA') throw new ChimeraError('E_ISA', (e as Error).message, { cause: e });
      tried.push(`${label} (${firstLine(e)})`);
      if (source === 'CHIMERA_NATIVE') explicitFailed = true;
    }
  }
  if (prebuilds.length === 0) {
    tried.push(`${path.join(root, 'prebuilds', `${platform}-${arch}`)}/${plat.PACKAGE_NAME}${libc ? `.${libc}` : ''}.node (no prebuild for ${platformStr} in this package)`);
  }
  throw new ChimeraError('E_NATIVE_LOAD', loadErrorText(platformStr, tried, libc));
}

/** The message of the E_NATIVE_LOAD error: what was tried and the concrete fixes. */
export function loadErrorText(platformStr: string, tried: string[], libc: string | null): string {
  const lines = [
    `chimera: could not load the native addon for ${platformStr} (Node ${process.version}, N-API ${process.versions.napi}).`,
    `Looked for: CHIMERA_NATIVE, build/Release/chimera.node, then a prebuild for ${platformStr}. Tried:`,
    ...tried.map((t) => `  - ${t}`),
    'Possible fixes:',
    '  - build it from source: `npm rebuild chimera-infer --build-from-source` (needs cmake >= 3.18 and a C++17 compiler,',
    '    e.g. `apt-get install cmake g++`, and the build tools as dev dependencies: `npm install -D cmake-js node-addon-api`)',
  ];
  if (libc === 'musl')
    lines.push('  - musl (Alpine): the prebuild must be the .musl.node one; a glibc binary does not load here (`apk add build-base cmake` to build)');
  else if (libc === 'glibc')
    lines.push('  - glibc vs musl: on Alpine or another musl system use the .musl.node prebuild; set LIBC=musl if detection is wrong');
  lines.push(
    '  - node_modules or a lockfile made on another OS (a macOS checkout mounted into Linux Docker, or `npm ci` run on the',
    '    host and copied): run `npm ci` (or `npm rebuild chimera-infer`) on the machine that runs the code',
    '  - if you installed with --ignore-scripts, run `npm rebuild chimera-infer` once',
    '  - or point CHIMERA_NATIVE at a chimera.node you built elsewhere',
    'Run `npx chimera doctor` for a report.',
  );
  return lines.join('\n');
}

let loaded: LoadedAddon | undefined;
/** Loads once per process; native() in src/native.ts wraps the binding. */
export function loadAddonOnce(): LoadedAddon {
  loaded ??= loadAddon();
  return loaded;
}

/** Which addon this process loaded, or undefined before the first kernel call. */
export function loadedAddon(): LoadedAddon | undefined {
  return loaded;
}
