/**
 * `chimera doctor`: which addon loaded and from where, the ISA in use and the supported ones, thread settings,
 * Node / N-API / package versions, whether onnxruntime-node is there (for the benchmarks), and a verdict.
 * `--json` prints the same as one JSON object. Exit status 0 when chimera works here, 1 when it does not.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChimeraError } from '../errors';
import { loadAddonOnce, packageRoot, platformInfo, type LoadedAddon } from '../native-loader';
import { bool, runCommand, type CommandArgs, type CommandSpec } from './args';

export const DOCTOR: CommandSpec = {
  name: 'doctor',
  summary: 'which addon loaded and from where, ISA, threads, versions, and a verdict',
  description: 'Reports which native addon loaded and from where (CHIMERA_NATIVE, the local build or a prebuild), the\n' +
    'kernel path in use and the ones this CPU supports, thread settings, Node.js / N-API / package versions,\n' +
    'whether onnxruntime-node is installed (the benchmarks need it), and a verdict. Exit status 1 when the\n' +
    'addon does not load or a kernel check fails.',
  options: [{ flag: 'json', kind: 'boolean', help: 'one JSON object instead of text' }],
  run: doctor,
};

export interface DoctorReport {
  verdict: { ok: boolean; line: string };
  package: { name: string; version: string; root: string };
  node: { version: string; napi: number; addonNapi: number; platform: string; arch: string; libc: string | null };
  addon: {
    loaded: boolean;
    file: string | null;
    source: LoadedAddon['source'] | null;
    platform: string;
    tried: string[];
    prebuilds: string[];
    error: string | null;
  };
  cpu: { model: string; baseline: string; baselineOk: boolean };
  isa: { inUse: string | null; supported: string[]; compiled: string[]; features: string[]; env: string | null };
  threads: { intraOp: number | null; env: string | null; cpus: number };
  kernelCheck: { ok: boolean; maxError: number } | null;
  onnxruntime: { present: boolean; version: string | null };
}

function readJson(file: string): Record<string, unknown> | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
}

function onnxruntime(root: string): { present: boolean; version: string | null } {
  for (const base of [root, process.cwd()]) {
    try {
      const file = require.resolve('onnxruntime-node/package.json', { paths: [base] });
      return { present: true, version: (readJson(file)?.version as string) ?? null };
    } catch {
      // not here
    }
  }
  return { present: false, version: null };
}

/** A layer norm of a few rows, against the formula: proves the kernels run, not only that the file loaded. */
async function kernelCheck(): Promise<{ ok: boolean; maxError: number }> {
  const { layerNorm } = await import('../kernels');
  const cols = 64;
  const rows = 3;
  const x = new Float32Array(rows * cols).map((_, i) => Math.sin(i * 0.37) * 3 + (i % 7));
  const gamma = new Float32Array(cols).fill(1);
  const y = layerNorm(x, cols, gamma);
  let maxError = 0;
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * cols, (r + 1) * cols);
    const mean = row.reduce((a, b) => a + b, 0) / cols;
    const v = row.reduce((a, b) => a + (b - mean) ** 2, 0) / cols;
    for (let c = 0; c < cols; c++) maxError = Math.max(maxError, Math.abs(y[r * cols + c] - (row[c] - mean) / Math.sqrt(v + 1e-5)));
  }
  return { ok: maxError < 1e-4, maxError };
}

export async function doctorReport(): Promise<DoctorReport> {
  const root = packageRoot();
  const plat = platformInfo();
  const pkg = readJson(path.join(root, 'package.json')) ?? {};
  const libc = plat.detectLibc();
  const platform = plat.platformString(process.platform, process.arch, libc);
  const baseline = plat.CPU_BASELINE[process.arch];
  const missing = plat.missingBaseline(process.arch);
  const report: DoctorReport = {
    verdict: { ok: false, line: '' },
    package: { name: String(pkg.name ?? 'chimera-infer'), version: String(pkg.version ?? '?'), root },
    node: {
      version: process.version,
      napi: Number(process.versions.napi),
      addonNapi: ((pkg.binary as { napi_versions?: number[] } | undefined)?.napi_versions ?? [8])[0],
      platform: process.platform,
      arch: process.arch,
      libc,
    },
    addon: { loaded: false, file: null, source: null, platform, tried: [], prebuilds: plat.matchingPrebuilds(root), error: null },
    cpu: { model: os.cpus()[0]?.model ?? 'unknown', baseline: baseline?.name ?? `none for ${process.arch}`, baselineOk: missing !== null && missing.length === 0 },
    isa: { inUse: null, supported: [], compiled: [], features: [], env: process.env.CHIMERA_ISA ?? null },
    threads: { intraOp: null, env: process.env.CHIMERA_THREADS ?? null, cpus: os.availableParallelism() },
    kernelCheck: null,
    onnxruntime: onnxruntime(root),
  };
  let loaded: LoadedAddon;
  try {
    // The same search as the kernels use (and the same module cache: the file is dlopen'ed once).
    loaded = loadAddonOnce();
  } catch (e) {
    report.addon.error = (e as Error).message;
    const code = e instanceof ChimeraError ? e.code : 'E_NATIVE_LOAD';
    report.verdict = {
      ok: false,
      line: code === 'E_ISA'
        ? `problem: CHIMERA_ISA=${process.env.CHIMERA_ISA} asks for a kernel path this CPU cannot run`
        : `problem: the native addon does not load for ${platform} (see the tried list and the fixes above)`,
    };
    return report;
  }
  Object.assign(report.addon, { loaded: true, file: loaded.file, source: loaded.source, tried: loaded.tried });
  const { cpuInfo, getThreads } = await import('../kernels');
  const { native } = await import('../native');
  const info = cpuInfo();
  const raw = native().cpuInfo();
  report.isa = {
    inUse: info.isa,
    supported: info.supported,
    compiled: raw.compiled ?? [],
    features: Object.entries(info.features).filter(([, v]) => v).map(([k]) => k),
    env: process.env.CHIMERA_ISA ?? null,
  };
  report.threads.intraOp = getThreads();
  try {
    report.kernelCheck = await kernelCheck();
  } catch (e) {
    report.kernelCheck = { ok: false, maxError: Number.NaN };
    report.addon.error = (e as Error).message;
  }
  const best = info.supported[info.supported.length - 1];
  const notCompiled = report.isa.compiled.length > 0 && !report.isa.compiled.includes(best);
  const ok = report.kernelCheck.ok;
  const where = loaded.source === 'prebuild' ? `the ${platform} prebuild` : loaded.source === 'local build' ? 'the local build' : 'CHIMERA_NATIVE';
  report.verdict = {
    ok,
    line: ok
      ? `ok: chimera works here: ${where}, the ${info.isa} kernels, ${report.threads.intraOp} thread(s)` +
        (info.isa !== best ? ` (this CPU could run ${best}${notCompiled ? ', not compiled into this build' : ''})` : '')
      : `problem: the addon loaded from ${loaded.file} but its kernel check failed (max error ${report.kernelCheck.maxError})`,
  };
  return report;
}

function printText(r: DoctorReport): void {
  const row = (k: string, v: string): void => console.log(`${k.padEnd(14)}${v}`);
  row('package', `${r.package.name} ${r.package.version} (${r.package.root})`);
  row('node', `${r.node.version}, N-API ${r.node.napi} (the addon needs ${r.node.addonNapi}), ${r.addon.platform}`);
  row('addon', r.addon.loaded ? `${r.addon.file} (${r.addon.source})` : 'not loaded');
  for (const t of r.addon.tried) row('  tried', t);
  row('prebuilds', r.addon.prebuilds.length > 0 ? r.addon.prebuilds.join(', ') : `none for ${r.addon.platform} in this package`);
  row('cpu', `${r.cpu.model}; baseline ${r.cpu.baseline}: ${r.cpu.baselineOk ? 'ok' : 'MISSING'}`);
  if (r.isa.inUse) {
    row('isa in use', `${r.isa.inUse}${r.isa.env ? ` (CHIMERA_ISA=${r.isa.env})` : ''}`);
    row('supported', r.isa.supported.join(', '));
    row('compiled', r.isa.compiled.join(', '));
  }
  row('threads', `${r.threads.intraOp ?? '?'} intra-op${r.threads.env ? ` (CHIMERA_THREADS=${r.threads.env})` : ''}; ${r.threads.cpus} CPUs available`);
  if (r.kernelCheck) row('kernel check', `${r.kernelCheck.ok ? 'ok' : 'FAILED'} (layer norm, max error ${r.kernelCheck.maxError.toExponential(1)})`);
  row('onnxruntime', r.onnxruntime.present ? `onnxruntime-node ${r.onnxruntime.version} (benchmarks can run)` : 'not installed (only the benchmarks and `chimera assess` need it)');
  if (r.addon.error) console.log(`\n${r.addon.error}\n`);
  console.log(r.verdict.line);
}

export async function doctorCommand(argv: string[]): Promise<number> {
  return runCommand(DOCTOR, argv);
}

async function doctor(a: CommandArgs): Promise<number> {
  const r = await doctorReport();
  if (bool(a, 'json')) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  else printText(r);
  return r.verdict.ok ? 0 : 1;
}
