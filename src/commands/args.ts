/**
 * The one command-line layer: every command is a table of options (flag, type, default, help, environment
 * variable), and node:util parseArgs does the parsing. From that table come the command's `--help`, its
 * validation (unknown options with "did you mean", numbers, ranges, choices, required options, positional
 * counts) and its line in the global usage. Numeric flags are validated here and nowhere else.
 */
import { parseArgs } from 'node:util';
import { ChimeraError } from '../errors';
import { MAX_THREADS } from '../limits';
import { suggest } from '../util/options';

export type OptionKind = 'string' | 'int' | 'number' | 'boolean';

export interface OptionSpec {
  /** The long flag without dashes: 'max-length'. */
  flag: string;
  kind: OptionKind;
  help: string;
  /** The value's placeholder in help: 'N', 'DIR|FILE'. */
  arg?: string;
  short?: string;
  /** Applied when the flag (and its variable) is absent, as if typed; a text in parentheses is shown, not applied. */
  def?: string;
  choices?: readonly string[];
  /** Bounds of an int / number (inclusive). Default min 0. */
  min?: number;
  max?: number;
  /** An environment variable that sets the option when the flag is absent (a flag wins over it). */
  env?: string;
  required?: boolean;
}

export interface CommandSpec {
  name: string;
  /** One line for the global usage. */
  summary: string;
  /** Positional synopsis: 'DIR FILE', '[TEXT ...]'. */
  args?: string;
  /** How many positionals are accepted, and what to say otherwise. */
  positionals?: { min: number; max: number; message?: string; /** the first positional is a subcommand, one of these */ subcommands?: readonly string[] };
  /** More text for `chimera NAME --help`. */
  description?: string;
  options: OptionSpec[];
  run(a: CommandArgs): Promise<number>;
}

export type OptionValue = string | number | boolean | undefined;

export interface CommandArgs {
  command: string;
  /** By flag name ('max-length'), typed (int / number / boolean), defaults applied. */
  values: Record<string, OptionValue>;
  positionals: string[];
}

/** Options every command takes (unless it defines its own of the same name). */
export const GLOBAL_OPTIONS: OptionSpec[] = [
  { flag: 'isa', kind: 'string', arg: 'ISA', help: 'force a kernel path (same as CHIMERA_ISA)', choices: ['scalar', 'avx2', 'avxvnni', 'avx512vnni', 'amx', 'auto'] },
  { flag: 'threads', kind: 'int', arg: 'N', min: 1, max: MAX_THREADS, help: 'intra-op threads (same as CHIMERA_THREADS)' },
  { flag: 'help', kind: 'boolean', short: 'h', help: 'this text' },
];

/** A command's table with the global options it does not define itself. */
export function allOptions(spec: CommandSpec): OptionSpec[] {
  const own = new Set(spec.options.map((o) => o.flag));
  return [...spec.options, ...GLOBAL_OPTIONS.filter((o) => !own.has(o.flag))];
}

function left(o: OptionSpec): string {
  return `  ${o.short ? `-${o.short}, ` : ''}--${o.flag}${o.arg ? ` ${o.arg}` : ''}`;
}

function right(o: OptionSpec): string {
  const bounds = o.kind === 'int' || o.kind === 'number'
    ? (o.min !== undefined && o.min !== 0) || o.max !== undefined ? ` (${o.min ?? 0}..${o.max ?? ''})` : ''
    : '';
  return `${o.help}${o.choices ? ` (${o.choices.join('|')})` : ''}${bounds}${o.required ? '; required' : ''}${o.def ? `; default ${o.def}` : ''}${o.env ? `  [${o.env}]` : ''}`;
}

/** `chimera NAME --help`, generated from the table. */
export function commandHelp(spec: CommandSpec): string {
  const opts = allOptions(spec);
  const width = Math.max(24, ...opts.map((o) => left(o).length + 2));
  const rows = opts.map((o) => `${left(o).padEnd(width)}${right(o)}`);
  return `usage: chimera ${spec.name}${spec.args ? ` ${spec.args}` : ''} [options]\n\n${spec.summary}${spec.description ? `\n${spec.description}` : ''}\n\noptions:\n${rows.join('\n')}\n`;
}

/** The global usage: every command's synopsis and summary, from the tables. */
export function globalUsage(specs: readonly CommandSpec[]): string {
  const rows = specs.map((s) => {
    const head = `  ${s.name}${s.args ? ` ${s.args}` : ''}`;
    return head.length > 25 ? `${head}\n${' '.repeat(27)}${s.summary}` : `${head.padEnd(27)}${s.summary}`;
  });
  const g = GLOBAL_OPTIONS.map((o) => `  ${left(o).trim().padEnd(25)}${right(o)}`);
  return `usage: chimera <command> [options]

commands:
${rows.join('\n')}

global options (every command):
${g.join('\n')}
  ${'--version, -v'.padEnd(25)}print the version

\`chimera <command> --help\` lists a command's options. A model is a Hugging Face Marian directory, a packed file
from \`chimera convert\`, or a repo id in the local Hugging Face cache; where --model is optional it defaults to the
built-in demo model. --precision defaults to fp32 everywhere (the checkpoint's own numbers).
`;
}

function usageError(spec: CommandSpec, message: string): ChimeraError {
  return new ChimeraError('E_ARG', `${message}; see chimera ${spec.name} --help`);
}

function convert(spec: CommandSpec, o: OptionSpec, raw: string | boolean, from: string): OptionValue {
  if (o.kind === 'boolean') return raw === true;
  const s = String(raw);
  if (o.kind === 'int' || o.kind === 'number') {
    const n = Number(s);
    const min = o.min ?? 0;
    if (o.kind === 'number' && (s.trim() === '' || !Number.isFinite(n))) throw new ChimeraError('E_ARG', `${from} must be a number, got ${s}`);
    if (o.kind === 'int' && (s.trim() === '' || !Number.isInteger(n) || n < min))
      throw new ChimeraError('E_ARG', `${from} must be ${min === 0 ? 'a non-negative integer' : `an integer >= ${min}`}, got ${s}`);
    if (n < min) throw new ChimeraError('E_ARG', `${from} must be >= ${min}, got ${s}`);
    if (o.max !== undefined && n > o.max) throw new ChimeraError('E_ARG', `${from} must be at most ${o.max}, got ${s}`);
    return n;
  }
  if (o.choices && !o.choices.includes(s)) {
    const near = suggest(s, o.choices);
    throw new ChimeraError('E_ARG', `${from} must be one of ${o.choices.join(', ')}, got ${s}${near ? ` (did you mean ${near}?)` : ''}`);
  }
  void spec;
  return s;
}

/**
 * Parses a command's arguments against its table: flags, then environment variables, then defaults.
 * Throws E_ARG for unknown options (naming the nearest), missing values, bad numbers or choices, a missing
 * required option and a wrong number of positionals.
 */
export function parseCommand(spec: CommandSpec, argv: string[], environ: NodeJS.ProcessEnv = process.env): CommandArgs {
  const opts = allOptions(spec);
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  // A negative number after a numeric flag is its value (parseArgs would take `-1` for an option).
  const numeric = new Set(opts.filter((o) => o.kind === 'int' || o.kind === 'number').map((o) => `--${o.flag}`));
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (numeric.has(argv[i]) && i + 1 < argv.length && /^-(\d|\.\d|Infinity)/.test(argv[i + 1])) args.push(`${argv[i]}=${argv[++i]}`);
    else args.push(argv[i]);
  }
  try {
    ({ values, positionals } = parseArgs({
      args,
      options: Object.fromEntries(opts.map((o) => [o.flag, { type: o.kind === 'boolean' ? 'boolean' : 'string', ...(o.short ? { short: o.short } : {}) }])) as Record<string, { type: 'string' | 'boolean'; short?: string }>,
      strict: true,
      allowPositionals: true,
    }));
  } catch (e) {
    const err = e as { code?: string; message: string };
    if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const m = /'(-{1,2})([^'=]+)/.exec(err.message);
      const name = m?.[2] ?? '';
      const s = name.length > 1 ? suggest(name, opts.map((o) => o.flag)) : undefined;
      throw usageError(spec, `unknown option ${m ? m[1] + name : ''} for ${spec.name}${s ? ` (did you mean --${s}?)` : ''}`);
    }
    if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const m = /'(?:-\w, )?--([\w-]+)/.exec(err.message);
      const o = opts.find((x) => x.flag === m?.[1]);
      if (o && o.kind !== 'boolean') throw usageError(spec, `--${o.flag} needs a value${o.arg ? ` (${o.arg})` : ''}`);
      if (o) throw usageError(spec, `--${o.flag} takes no value`);
    }
    throw usageError(spec, err.message);
  }
  const out: Record<string, OptionValue> = {};
  for (const o of opts) {
    let raw: string | boolean | undefined = values[o.flag];
    let from = `--${o.flag}`;
    if (raw === undefined && o.env && o.kind !== 'boolean' && environ[o.env] !== undefined && environ[o.env] !== '') {
      raw = environ[o.env];
      from = o.env;
    }
    if (raw === undefined && o.def !== undefined && !o.def.startsWith('(')) raw = o.def;
    if (raw === undefined) {
      if (o.kind === 'boolean') out[o.flag] = false;
      continue;
    }
    out[o.flag] = convert(spec, o, raw, from);
  }
  if (out.help === true) return { command: spec.name, values: out, positionals };
  const p = spec.positionals ?? { min: 0, max: 0 };
  // a misspelt subcommand is the first thing to say, before the options it would need
  if (p.subcommands && positionals.length > 0 && !p.subcommands.includes(positionals[0])) {
    const s = suggest(positionals[0], p.subcommands);
    throw usageError(spec, `unknown ${spec.name} subcommand ${positionals[0]}${s ? ` (did you mean ${s}?)` : ''}; the ones there are: ${p.subcommands.join(', ')}`);
  }
  for (const o of opts) if (o.required && (out[o.flag] === undefined || out[o.flag] === '')) throw usageError(spec, `${spec.name} needs --${o.flag}${o.arg ? ` ${o.arg}` : ''}`);
  if (positionals.length < p.min || positionals.length > p.max) {
    const want = p.max === 0 ? 'no positional arguments' : p.min === p.max ? `${p.min} argument${p.min > 1 ? 's' : ''}` : `${p.min} to ${p.max === Infinity ? 'any number of' : p.max} arguments`;
    throw usageError(spec, p.message ?? `${spec.name} takes ${want}${spec.args ? ` (${spec.args})` : ''}, got ${positionals.length}${positionals.length ? `: ${positionals.join(' ')}` : ''}`);
  }
  return { command: spec.name, values: out, positionals };
}

/** Typed accessors for a command's values. */
export function str(a: CommandArgs, flag: string): string | undefined {
  const v = a.values[flag];
  return v === undefined ? undefined : String(v);
}
export function num(a: CommandArgs, flag: string): number | undefined {
  const v = a.values[flag];
  return typeof v === 'number' ? v : undefined;
}
export function bool(a: CommandArgs, flag: string): boolean {
  return a.values[flag] === true;
}

/**
 * Parses `argv` against the command's table and runs it: `--help` prints the command's help; the global
 * --isa / --threads (unless the command defines its own) are applied first. Returns the exit code.
 */
export async function runCommand(spec: CommandSpec, argv: string[], environ: NodeJS.ProcessEnv = process.env): Promise<number> {
  const a = parseCommand(spec, argv, environ);
  if (a.values.help === true) {
    process.stdout.write(commandHelp(spec));
    return 0;
  }
  const own = new Set(spec.options.map((o) => o.flag));
  if (!own.has('isa') && a.values.isa !== undefined) (await import('../kernels')).setIsa(a.values.isa as 'auto');
  if (!own.has('threads') && a.values.threads !== undefined) (await import('../kernels')).setThreads(a.values.threads as number);
  return spec.run(a);
}
