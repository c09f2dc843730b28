/**
 * A child process of `chimera assess` that measures one engine's peak memory alone: it loads the engine, translates
 * the sentences it is sent, and reports its peak resident set size. Run by child_process.fork with IPC.
 */
import * as fs from 'node:fs';
import { setThreads } from '../kernels';

/**
 * Peak resident set of this process in MB: Linux's VmHWM (reset by exec), else getrusage's maxRSS (which on
 * Linux carries the forking parent's peak across exec, so it is only a fallback).
 */
export function peakRssMb(): number {
  try {
    const m = /VmHWM:\s*(\d+)\s*kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) / 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS / 1024;
}

export interface ProbeJob {
  engine: 'chimera' | 'ort' | 'none';
  tier: string;
  model: string;
  onnxDir?: string;
  threads: number;
  sources: number[][];
  beam: number;
  maxLength: number;
}

export interface ProbeResult {
  peakRssMb: number;
  rssAfterLoadMb: number;
  loadMs: number;
  error?: string;
}

async function run(job: ProbeJob): Promise<ProbeResult> {
  setThreads(job.threads);
  const t0 = performance.now();
  let translate: (ids: number[]) => Promise<unknown> = async () => undefined;
  if (job.engine === 'chimera') {
    const { MarianModel } = await import('../marian');
    const m = await MarianModel.load(job.model, { precision: job.tier as 'fp32' });
    translate = async (ids) => m.generate([ids], { beam: job.beam, maxLength: job.maxLength });
  } else if (job.engine === 'ort') {
    const { OrtMarian } = await import('../onnx/ort-marian');
    const m = await OrtMarian.create(job.onnxDir!, { threads: job.threads });
    translate = (ids) => m.generate([ids], { beam: job.beam, maxLength: job.maxLength });
  } else {
    // the baseline: both runtimes' modules loaded, no model
    await import('../marian');
    await import('../onnx/ort-marian');
  }
  const loadMs = performance.now() - t0;
  const rssAfterLoadMb = process.memoryUsage().rss / 2 ** 20;
  for (const ids of job.sources) await translate(ids);
  return { peakRssMb: peakRssMb(), rssAfterLoadMb, loadMs };
}

process.once('message', (job: ProbeJob) => {
  run(job).then(
    (r) => process.send!(r, () => process.exit(0)),
    (e) => process.send!({ peakRssMb: NaN, rssAfterLoadMb: NaN, loadMs: NaN, error: String((e as Error).message ?? e) }, () => process.exit(1)),
  );
});
