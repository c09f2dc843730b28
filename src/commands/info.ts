/** `chimera info` (CPU features, the kernel path, threads) and `chimera selftest` (the kernels against references). */
import type { CommandSpec } from './args';

export const INFO: CommandSpec = {
  name: 'info',
  summary: 'CPU features, the kernel path in use and the thread count',
  options: [],
  run: async () => {
    const { cpuInfo, getThreads } = await import('../kernels');
    const info = cpuInfo();
    const on = Object.entries(info.features).filter(([, v]) => v).map(([k]) => k);
    console.log(`isa in use:   ${info.isa}`);
    console.log(`supported:    ${info.supported.join(', ')}`);
    console.log(`threads:      ${getThreads()}`);
    console.log(`cpu features: ${on.join(' ')}`);
    return 0;
  },
};

export const SELFTEST: CommandSpec = {
  name: 'selftest',
  summary: 'layer norm, the int8 linear (and its exact accumulators) and the fp32 linear on every ISA this CPU has, against a reference',
  options: [],
  run: async () => ((await import('../selftest')).selfTest() ? 0 : 1),
};
