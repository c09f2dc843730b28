#!/usr/bin/env node
/**
 * The `chimera` command line: finds the command and hands it its arguments. Each command is an option table and
 * a function in src/commands/ (src/commands/args.ts parses, validates and writes the help from the tables).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { globalUsage, runCommand } from './commands/args';
import { demoModelPath } from './demo';
import { suggest } from './util/options';

/** The demo model shipped with the package (kept for callers of the old name; see demoModelPath). */
export function defaultModelDir(): string {
  return demoModelPath;
}

function version(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { name: string; version: string };
  return `${pkg.name} ${pkg.version}`;
}

export async function main(argv: string[]): Promise<number> {
  // The command table is loaded lazily per command module (each imports its heavy parts on run).
  const { COMMANDS } = await import('./commands');
  // Global options written before the command (`chimera --threads 2 translate ...`) move after it.
  const lead: string[] = [];
  let i = 0;
  while (i < argv.length && /^--(isa|threads)(=|$)/.test(argv[i])) {
    lead.push(argv[i]);
    if (!argv[i].includes('=') && i + 1 < argv.length) lead.push(argv[++i]);
    i++;
  }
  const [cmd, ...rest] = argv.slice(i);
  const usage = globalUsage(COMMANDS);
  if (cmd === undefined) {
    process.stderr.write(usage);
    return 2;
  }
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    const sub = rest[0] !== undefined ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    if (sub) return runCommand(sub, ['--help']);
    process.stdout.write(usage);
    return 0;
  }
  if (cmd === '--version' || cmd === '-v' || cmd === 'version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const spec = COMMANDS.find((c) => c.name === cmd);
  if (!spec) {
    const near = suggest(cmd.replace(/^-+/, ''), COMMANDS.map((c) => c.name));
    const what = cmd.startsWith('-') ? `unknown option '${cmd}' before the command` : `unknown command '${cmd}'`;
    process.stderr.write(`chimera: ${what}${near ? ` (did you mean '${near}'?)` : ''}\nusage: chimera <command> [options]; \`chimera --help\` lists the commands\n`);
    return 2;
  }
  return runCommand(spec, [...rest, ...lead]);
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e) => {
      const err = e as { code?: string; message?: string };
      process.stderr.write(`chimera: ${err.code ? `[${err.code}] ` : ''}${err.message ?? String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
