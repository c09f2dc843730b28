/**
 * The quality commands of the `chimera` CLI: `bleu`, `eval` and `quantize`, each an option table (src/commands/args.ts
 * parses and validates against it) and a function returning the process exit code.
 */
import { corpusBleu, pyFixed, type BleuOptions, type BleuSmoothing, type BleuTokenizer } from '../bleu';
import { demoModelPath } from '../demo';
import { ChimeraError } from '../errors';
import { StagedProgress } from '../progress';
import { checkAligned, readLines } from '../quality/io';
import { bool, num, str, type CommandArgs, type CommandSpec, type OptionSpec } from './args';

const MODEL: OptionSpec = { flag: 'model', kind: 'string', arg: 'DIR|FILE', help: 'model directory, packed file or cached repo id', def: '(the built-in demo model)' };
const SRC: OptionSpec = { flag: 'src', kind: 'string', arg: 'FILE', help: 'source sentences, one per line', required: true };
const REF: OptionSpec = { flag: 'ref', kind: 'string', arg: 'FILE', help: 'reference translations, aligned with --src', required: true };
const BEAM: OptionSpec = { flag: 'beam', kind: 'int', arg: 'N', min: 1, help: 'beam width (1: greedy)' };
const LIMIT: OptionSpec = { flag: 'limit', kind: 'int', arg: 'N', min: 1, help: 'only the first N lines' };
const BATCH: OptionSpec = { flag: 'batch', kind: 'int', arg: 'N', min: 1, help: 'sentences per generate() call', def: '(32)' };
const MAX_LENGTH: OptionSpec = { flag: 'max-length', kind: 'int', arg: 'N', min: 1, help: 'generated tokens at most per sentence (default: the model\'s max_length - 1)' };
const JSON_OUT: OptionSpec = { flag: 'json', kind: 'boolean', help: 'one JSON object on stdout instead of text' };

/** Reads --src and --ref (aligned, same line count), cut to --limit lines. */
function readPair(a: CommandArgs): { src: string[]; ref: string[] } {
  const srcFile = str(a, 'src')!;
  const refFile = str(a, 'ref')!;
  const src = readLines(srcFile, { role: 'source' });
  const ref = readLines(refFile, { role: 'reference' });
  checkAligned([{ name: `source file ${srcFile}`, lines: src }, { name: `reference file ${refFile}`, lines: ref }]);
  const limit = num(a, 'limit');
  return limit === undefined ? { src, ref } : { src: src.slice(0, limit), ref: ref.slice(0, limit) };
}

// ------------------------------------------------------------------------------------------------ bleu

export async function bleuCommand(a: CommandArgs): Promise<number> {
  let hypFile: string;
  let refFiles: string[];
  if (a.positionals.length === 1) [hypFile, refFiles] = ['-', a.positionals];
  else [hypFile, ...refFiles] = a.positionals;
  if (refFiles.includes('-')) throw new ChimeraError('E_ARG', 'only the hypothesis can come from stdin (-), not a reference');
  const opts: BleuOptions = {
    tokenize: str(a, 'tokenize') as BleuTokenizer | undefined,
    smooth: str(a, 'smooth') as BleuSmoothing | undefined,
    smoothValue: num(a, 'smooth-value'),
    lowercase: bool(a, 'lowercase'),
  };
  // sacreBLEU reads with 'utf-8' (not 'utf-8-sig'): a byte-order mark stays part of the first line.
  const hyps = readLines(hypFile, { role: 'hypothesis', keepBom: true });
  const refs = refFiles.map((f) => readLines(f, { role: 'reference', keepBom: true }));
  checkAligned([
    { name: hypFile === '-' ? 'the hypothesis (stdin)' : `hypothesis file ${hypFile}`, lines: hyps },
    ...refs.map((lines, i) => ({ name: `reference file ${refFiles[i]}`, lines })),
  ]);
  const s = corpusBleu(hyps, refs, opts);
  if (bool(a, 'json')) {
    const { toString: _omit, ...fields } = s;
    void _omit;
    process.stdout.write(JSON.stringify({ name: 'BLEU', ...fields, line: s.toString() }, null, 1) + '\n');
  } else process.stdout.write(`${s.toString()}\n`);
  return 0;
}

// ------------------------------------------------------------------------------------------------ eval

export async function evalCommand(a: CommandArgs): Promise<number> {
  const { evaluateWithControl } = await import('../quality/eval');
  const model = str(a, 'model') ?? demoModelPath;
  const { src, ref } = readPair(a);
  const precision = str(a, 'precision') as 'int8' | undefined;
  const beam = num(a, 'beam') ?? 1;
  const progress = new StagedProgress();
  const r = await evaluateWithControl(model, src, ref, {
    precision, control: str(a, 'control'), beam, batchSize: num(a, 'batch'), maxLength: num(a, 'max-length'),
    onRunProgress: (w, d, t) => progress.update(w === 'control' ? 'fp32 control' : 'translating', d, t),
  });
  progress.done();
  if (bool(a, 'json')) {
    const pick = (x: typeof r.tier | typeof r.control) => ({
      name: x.name, plan: x.plan, bleu: x.bleu.score, line: x.bleu.toString(), counts: x.bleu.counts, totals: x.bleu.totals,
      bp: x.bleu.bp, sysLen: x.bleu.sysLen, refLen: x.bleu.refLen, sentences: x.sentences, tokens: x.tokens, seconds: x.seconds,
      sentencesPerSec: x.sentencesPerSec, msPerToken: x.msPerToken,
    });
    process.stdout.write(JSON.stringify({ model, signature: r.control.bleu.signature, tier: pick(r.tier), control: pick(r.control), delta: r.delta, speedup: r.speedup }, null, 1) + '\n');
    return 0;
  }
  const rows = [
    [r.tier.name, pyFixed(r.tier.bleu.score, 2), r.tier.sentencesPerSec.toFixed(1), r.tier.msPerToken.toFixed(3)],
    ['fp32 (control)', pyFixed(r.control.bleu.score, 2), r.control.sentencesPerSec.toFixed(1), r.control.msPerToken.toFixed(3)],
  ];
  const head = ['configuration', 'BLEU', 'sent/s', 'ms/token'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const fmt = (row: string[]) => row.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  const out = [
    `${r.control.sentences} sentences, ${beam > 1 ? `beam ${beam}` : 'greedy'}, ${r.control.bleu.signature}`,
    fmt(head), ...rows.map(fmt),
    `delta: ${r.delta >= 0 ? '+' : ''}${pyFixed(r.delta, 2)} BLEU; speed ${r.speedup.toFixed(2)}x fp32`,
    `${r.tier.name}: ${r.tier.bleu.toString()}`,
    `fp32: ${r.control.bleu.toString()}`,
  ];
  process.stdout.write(out.join('\n') + '\n');
  return 0;
}

// ------------------------------------------------------------------------------------------------ quantize

export async function quantizeCommand(a: CommandArgs): Promise<number> {
  const { quantizeWithGate, writeGateReport, gateReportMarkdown } = await import('../quality/quantize');
  const model = str(a, 'model') ?? demoModelPath;
  const out = str(a, 'out')!;
  const maxBleuDrop = num(a, 'max-bleu-drop')!;
  const { src, ref } = readPair(a);
  const progress = new StagedProgress();
  const { report } = await quantizeWithGate(model, src, ref, {
    maxBleuDrop, out, beam: num(a, 'beam'), batchSize: num(a, 'batch'), maxLength: num(a, 'max-length'),
    sensitivitySentences: num(a, 'sensitivity-sentences'), tryAll: bool(a, 'try-all'),
    onProgress: (stage, d, t) => progress.update(stage, d, t),
    onResult: (row) => progress.done(
      `${row.name}: BLEU ${pyFixed(row.bleu, 2)} (${row.delta >= 0 ? '+' : ''}${pyFixed(row.delta, 2)}), ${row.sentencesPerSec.toFixed(1)} sent/s` +
        (row.control ? ' [control]' : row.passed ? ' [pass]' : ` [fail: drop > ${maxBleuDrop}]`),
    ),
  });
  progress.done();
  const files = writeGateReport(report, str(a, 'report') ?? `${out}.report`);
  if (bool(a, 'json')) process.stdout.write(JSON.stringify({ ...report, reportFiles: files }, null, 1) + '\n');
  else process.stdout.write(`${gateReportMarkdown(report)}\nreport: ${files.md}, ${files.json}\n`);
  return 0;
}

// ------------------------------------------------------------------------------------------------ tables

export const BLEU: CommandSpec = {
  name: 'bleu',
  args: 'HYP REF [REF2 ...]',
  positionals: { min: 1, max: Infinity, message: 'bleu needs reference files: chimera bleu HYP REF [REF2 ...] (HYP - for stdin)' },
  summary: 'sacreBLEU-exact corpus BLEU of a hypothesis file against reference files',
  description: 'HYP \'-\', or only REF given: the hypothesis is read from stdin.',
  options: [
    { flag: 'tokenize', kind: 'string', arg: 'T', help: 'tokenizer', choices: ['13a', 'none', 'intl', 'char'], def: '(13a)' },
    { flag: 'smooth', kind: 'string', arg: 'S', help: 'smoothing', choices: ['exp', 'floor', 'add-k', 'none'], def: '(exp)' },
    { flag: 'smooth-value', kind: 'number', arg: 'X', help: 'value for floor / add-k smoothing' },
    { flag: 'lowercase', kind: 'boolean', help: 'case-insensitive' },
    JSON_OUT,
  ],
  run: bleuCommand,
};

export const EVAL: CommandSpec = {
  name: 'eval',
  summary: 'translate --src, score against --ref, and compare with the fp32 control',
  options: [
    MODEL, SRC, REF,
    { flag: 'precision', kind: 'string', arg: 'P', help: 'the tier under test', choices: ['fp32', 'fp16', 'int8'], def: '(fp32)' },
    { flag: 'control', kind: 'string', arg: 'DIR', help: 'the fp32 model directory (needed for a packed --model)' },
    BEAM, LIMIT, BATCH, MAX_LENGTH, JSON_OUT,
  ],
  run: evalCommand,
};

export const QUANTIZE: CommandSpec = {
  name: 'quantize',
  summary: 'quality gate: the cheapest precision plan within a BLEU budget, written packed',
  options: [
    MODEL, SRC, REF,
    { flag: 'out', kind: 'string', arg: 'FILE', help: 'the packed model to write', required: true },
    { flag: 'max-bleu-drop', kind: 'number', arg: 'X', min: 0, help: 'BLEU the chosen plan may lose against the fp32 control', def: '0.5' },
    BEAM, LIMIT, BATCH, MAX_LENGTH,
    { flag: 'report', kind: 'string', arg: 'BASE', help: 'report files BASE.md and BASE.json', def: '(FILE.report)' },
    { flag: 'sensitivity-sentences', kind: 'int', arg: 'N', min: 1, help: 'sentences for the per-group sensitivity', def: '(200)' },
    { flag: 'try-all', kind: 'boolean', help: 'score every rung of the ladder, not only up to the first that passes' },
    JSON_OUT,
  ],
  run: quantizeCommand,
};
