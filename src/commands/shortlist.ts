/**
 * `chimera shortlist build --model DIR --src FILE --out FILE`: learns a vocabulary shortlist for a model from a
 * source-language corpus the model translates itself (src/model/shortlist.ts says how, and why the defaults).
 */
import * as fs from 'node:fs';
import { demoModelPath } from '../demo';
import { ProgressBar } from '../progress';
import { bool, num, str, type CommandArgs, type CommandSpec } from './args';

export const SHORTLIST: CommandSpec = {
  name: 'shortlist',
  args: 'build',
  positionals: { min: 1, max: 1, subcommands: ['build'], message: 'shortlist takes one subcommand: chimera shortlist build --model DIR --src FILE --out FILE' },
  summary: 'build a vocabulary shortlist (chimera shortlist build --src FILE --out FILE)',
  description: 'Translates each line of --src (source language, one sentence a line) greedily with the model, plus every\n' +
    'vocabulary token alone, credits each source token with the output tokens and the model\'s step alternatives, and\n' +
    'keeps per source token its --per-token best targets (Dice score) plus the --frequent most frequent targets.\n' +
    'Put the file in the model directory as shortlist.bin (or pass --shortlist FILE to translate / serve);\n' +
    '`chimera convert` then packs it into the model file.',
  options: [
    { flag: 'model', kind: 'string', arg: 'DIR|FILE', help: 'model directory, packed file or cached repo id', def: '(the built-in demo model)' },
    { flag: 'src', kind: 'string', arg: 'FILE', help: 'source-language corpus, one sentence a line', required: true },
    { flag: 'per-token', kind: 'int', arg: 'N', min: 0, help: 'candidates kept per source token', def: '(300)' },
    { flag: 'frequent', kind: 'int', arg: 'N', min: 0, help: 'most frequent target tokens in every candidate set', def: '(1000)' },
    { flag: 'alternatives', kind: 'int', arg: 'N', min: 0, help: 'the model\'s next-best tokens per step credited like its output', def: '(30)' },
    { flag: 'no-vocabulary-pass', kind: 'boolean', help: 'do not translate every vocabulary token alone' },
    { flag: 'out', kind: 'string', arg: 'FILE', help: 'the shortlist file to write', required: true },
  ],
  run: shortlistCommand,
};

export async function shortlistCommand(a: CommandArgs): Promise<number> {
  const { ChimeraError } = await import('../errors');
  const { MarianModel } = await import('../marian');
  const { buildShortlistFromModel, writeShortlistBytes, DEFAULT_PER_TOKEN, DEFAULT_FREQUENT, DEFAULT_ALTERNATIVES } = await import('../model/shortlist');
  const dir = str(a, 'model') ?? demoModelPath;
  const src = str(a, 'src')!;
  let lines: string[];
  try {
    lines = fs.readFileSync(src, 'utf8').split(/\r?\n/);
  } catch (e) {
    throw new ChimeraError('E_ARG', `cannot read --src ${src} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  // the model's default tier, and never a shortlist already there: the lists are learnt from the full vocabulary
  const model = await MarianModel.load(dir, { shortlist: false });
  const bar = new ProgressBar('translating');
  const t0 = performance.now();
  const { shortlist, sentences } = buildShortlistFromModel(model, lines, {
    perToken: num(a, 'per-token') ?? DEFAULT_PER_TOKEN,
    frequent: num(a, 'frequent') ?? DEFAULT_FREQUENT,
    alternatives: num(a, 'alternatives') ?? DEFAULT_ALTERNATIVES,
    vocabularyPass: !bool(a, 'no-vocabulary-pass'),
    onProgress: (d, t) => bar.update(d, t),
  });
  bar.done();
  const bytes = writeShortlistBytes(shortlist);
  fs.writeFileSync(str(a, 'out')!, bytes);
  const lists = shortlist.offsets.length - 1;
  console.log(`wrote ${str(a, 'out')}: ${sentences} sentences in ${((performance.now() - t0) / 1000).toFixed(1)} s; ` +
    `${shortlist.entries.length} candidates over ${lists} source tokens (at most ${shortlist.perToken} each), ${shortlist.frequent.length} frequent; ${(bytes.length / 1024).toFixed(0)} KiB`);
  return 0;
}
