#!/usr/bin/env node
/** The `chimera` command line. */
import { cpuInfo, getThreads, setIsa, setThreads } from './kernels';
import { selfTest } from './selftest';

const USAGE = `usage: chimera <command> [options]

commands:
  info                 CPU features, the kernel path in use and the thread count
  selftest             run every kernel on every ISA this CPU supports against a plain reference
                       and print timings

options:
  --isa scalar|avx2|avx512vnni|auto   force a kernel path (same as CHIMERA_ISA)
  --threads N                          intra-op threads (same as CHIMERA_THREADS)
`;

function main(argv: string[]): number {
  const args = [...argv];
  const cmd = args.shift();
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--isa') setIsa(args[++i] as never);
    else if (args[i] === '--threads') setThreads(Number(args[++i]));
    else {
      process.stderr.write(`chimera: unknown option ${args[i]}\n${USAGE}`);
      return 2;
    }
  }
  switch (cmd) {
    case 'info': {
      const info = cpuInfo();
      const on = Object.entries(info.features).filter(([, v]) => v).map(([k]) => k);
      console.log(`isa in use:   ${info.isa}`);
      console.log(`supported:    ${info.supported.join(', ')}`);
      console.log(`threads:      ${getThreads()}`);
      console.log(`cpu features: ${on.join(' ')}`);
      return 0;
    }
    case 'selftest':
      return selfTest() ? 0 : 1;
    case undefined:
    case 'help':
    case '--help':
      process.stdout.write(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      process.stderr.write(`chimera: unknown command '${cmd}'\n${USAGE}`);
      return 2;
  }
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (e) {
  const err = e as { code?: string; message?: string };
  process.stderr.write(`chimera: ${err.code ? `[${err.code}] ` : ''}${err.message ?? String(e)}\n`);
  process.exitCode = 1;
}
