/**
 * The CUDA backend as TypeScript sees it: whether this build carries the device code and a GPU answered
 * (cudaInfo), and the one check of a `device` option that every entry point taking one uses. Asking for 'cuda'
 * where it is unavailable throws E_DEVICE with the reason; nothing ever falls back to the CPU silently.
 */
import { ChimeraError } from './errors';
import { native } from './native';
import { suggest } from './util/options';

/** Where a model, its decoder state or a kernel call runs. */
export type Device = 'cpu' | 'cuda';
export const DEVICES: readonly Device[] = ['cpu', 'cuda'];
/** Other spellings of a device, answered with ours. */
const DEVICE_ALIASES: Record<string, Device> = { gpu: 'cuda', nvidia: 'cuda', 'cuda:0': 'cuda', host: 'cpu' };

export interface CudaDeviceInfo {
  name: string;
  /** 'major.minor', e.g. '9.0' for an H100 / H200. */
  computeCapability: string;
  memoryBytes: number;
}

export interface CudaInfo {
  /** The device code is compiled in, a driver answered, and device 0 has compute capability 8.0 or newer. */
  available: boolean;
  /** This build contains the CUDA kernels (CMake CHIMERA_CUDA=auto found nvcc, or =on). */
  compiled: boolean;
  devices: CudaDeviceInfo[];
  /** Why CUDA is unavailable; empty when it is available. */
  reason: string;
}

let probed: CudaInfo | undefined;

/** What CUDA this process can use. Probed once (the first call loads the driver library, if there is one). */
export function cudaInfo(): CudaInfo {
  if (!probed) {
    const i = native().cudaInfo();
    probed = { available: i.available, compiled: i.compiled, devices: i.devices.map((d) => ({ ...d })), reason: i.reason };
  }
  return { ...probed, devices: probed.devices.map((d) => ({ ...d })) };
}

/** Throws E_DEVICE with the reason unless CUDA is available. */
export function requireCuda(what = 'device \'cuda\''): void {
  const i = cudaInfo();
  if (!i.available) throw new ChimeraError('E_DEVICE', `${what} needs CUDA, which is unavailable: ${i.reason}`);
}

/**
 * A `device` option: undefined is 'cpu'; another name is E_ARG with the nearest device; 'cuda' where it is
 * unavailable is E_DEVICE with the reason.
 */
export function checkDevice(v: unknown, what = 'device'): Device {
  if (v === undefined || v === 'cpu') return 'cpu';
  if (v === 'cuda') {
    requireCuda(`${what} 'cuda'`);
    return 'cuda';
  }
  const s = typeof v === 'string' ? (DEVICE_ALIASES[v.toLowerCase()] ?? suggest(v, DEVICES)) : undefined;
  throw new ChimeraError('E_ARG', `${what} must be 'cpu' or 'cuda', got ${typeof v === 'string' ? `'${v}'` : String(v)}${s ? ` (did you mean '${s}'?)` : ''}`);
}
