/**
 * `chimera translate [TEXT ...]`: each argument is translated as its own line (one output line per argument);
 * with no argument, each line of stdin is (one output line per input line, empty lines stay empty). A line
 * that cannot be translated (too long for the model, say) gives an empty output line and a message on stderr
 * naming its line number, so output stays aligned with input; the exit status is 1 at the end when any line
 * failed. `--fail-fast` stops at the first failure instead.
 */
import * as readline from 'node:readline';
import { demoModelPath } from '../demo';
import { ChimeraError } from '../errors';
import { bool, num, str, type CommandArgs, type CommandSpec } from './args';

export const TRANSLATE: CommandSpec = {
  name: 'translate',
  args: '[TEXT ...]',
  positionals: { min: 0, max: Infinity },
  summary: 'translate each argument, or each line of stdin, to one output line',
  description: 'Each TEXT argument is translated on its own and printed on its own line (quote a sentence to keep it\n' +
    'together). Without TEXT, stdin is translated line by line. A line that fails prints an empty line and a\n' +
    'message on stderr naming the line; the exit status is 1 at the end (or at once with --fail-fast).',
  options: [
    { flag: 'model', kind: 'string', arg: 'DIR|FILE', help: 'model directory, packed file or cached repo id', def: '(the built-in demo model)' },
    { flag: 'precision', kind: 'string', arg: 'P', help: 'precision of a model directory (a packed file carries its own)', choices: ['fp32', 'fp16', 'int8'], def: '(fp32)' },
    { flag: 'beam', kind: 'int', arg: 'N', min: 1, help: 'beam width (1: greedy)', def: '(1)' },
    { flag: 'max-length', kind: 'int', arg: 'N', min: 1, help: 'generated tokens at most per line (default: the model\'s max_length - 1)' },
    { flag: 'fail-fast', kind: 'boolean', help: 'stop at the first line that cannot be translated' },
    { flag: 'device', kind: 'string', arg: 'D', help: 'where the model runs (cuda: the GPU; E_DEVICE where CUDA is unavailable)', choices: ['cpu', 'cuda'], def: '(cpu)' },
    { flag: 'shortlist', kind: 'string', arg: 'FILE', help: 'vocabulary shortlist file', def: '(the model\'s own, when it has one)' },
    { flag: 'no-shortlist', kind: 'boolean', help: 'the full vocabulary, even when the model has a shortlist' },
  ],
  run: translateCommand,
};

/** Errors that belong to one line (its text), not to the run: the line fails, the others go on. */
function lineError(e: unknown): e is ChimeraError {
  return e instanceof ChimeraError && e.code === 'E_INPUT';
}

/** --shortlist FILE / --no-shortlist as the load option (translate and serve). */
export function shortlistOption(a: CommandArgs): { shortlist?: string | false } {
  const file = str(a, 'shortlist');
  if (file !== undefined && bool(a, 'no-shortlist')) throw new ChimeraError('E_ARG', '--shortlist and --no-shortlist contradict each other');
  return bool(a, 'no-shortlist') ? { shortlist: false } : file !== undefined ? { shortlist: file } : {};
}

export async function translateCommand(a: CommandArgs): Promise<number> {
  const { MarianModel } = await import('../marian');
  const dir = str(a, 'model') ?? demoModelPath;
  const precision = str(a, 'precision') as 'fp32' | undefined;
  const device = str(a, 'device') as 'cpu' | 'cuda' | undefined;
  const model = await MarianModel.load(dir, { ...(precision === undefined ? {} : { precision }), ...(device === undefined ? {} : { device }), ...shortlistOption(a) });
  const tok = model.requireTokenizer();
  const opts = { beam: num(a, 'beam'), maxLength: num(a, 'max-length') };
  const failFast = bool(a, 'fail-fast');
  const run = (text: string): string => {
    if (text.trim() === '') return '';
    const r = model.generate([tok.encode(text)], opts);
    return tok.decode(r.ids[0]);
  };
  let failed = 0;
  /** Translates one line; on a line error writes an empty line and the message, and returns false. */
  const line = (text: string, n: number, what: string): boolean => {
    try {
      process.stdout.write(run(text) + '\n');
      return true;
    } catch (e) {
      if (!lineError(e)) throw e;
      failed++;
      if (!failFast) process.stdout.write('\n');
      process.stderr.write(`chimera: ${what} ${n}: [${e.code}] ${e.message.replace(/^input \d+ has/, 'it has')}\n`);
      return false;
    }
  };
  if (a.positionals.length > 0) {
    for (const [i, text] of a.positionals.entries()) if (!line(text, i + 1, 'argument') && failFast) return 1;
    return failed > 0 ? 1 : 0;
  }
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  let n = 0;
  for await (const text of rl) {
    if (!line(text, ++n, 'line') && failFast) {
      rl.close();
      return 1;
    }
  }
  if (failed > 0) process.stderr.write(`chimera: ${failed} of ${n} lines could not be translated (empty output lines)\n`);
  return failed > 0 ? 1 : 0;
}
