/**
 * The quality commands of the `chimera` CLI: `bleu`, `eval` and `quantize`. src/cli.ts parses the command line
 * and hands each one its positional arguments and flags; each returns the process exit code.
 */
import { corpusBleu, pyFixed, type BleuOptions, type BleuSmoothing, type BleuTokenizer } from '../bleu';
import { ChimeraError } from '../errors';
import { ProgressBar } from '../progress';
import { checkAligned, readLines } from '../quality/io';

export interface CommandArgs {
  cmd?: string;
  positional: string[];
  flags: Map<string, string>;
}

// The boolean flags read here (lowercase, json, try-all) take no value: src/cli.ts lists them in BOOLEAN_FLAGS.

function allow(a: CommandArgs, name: string, allowed: string[]): void {
  for (const k of a.flags.keys())
    if (!allowed.includes(k) && k !== 'isa' && k !== 'threads') throw new ChimeraError('E_ARG', `unknown option --${k} for ${name}; see chimera help`);
}

function int(a: CommandArgs, name: string, min = 1): number | undefined {
  const v = a.flags.get(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < min) throw new ChimeraError('E_ARG', `--${name} must be an integer >= ${min}, got ${v}`);
  return n;
}

function num(a: CommandArgs, name: string): number | undefined {
  const v = a.flags.get(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new ChimeraError('E_ARG', `--${name} must be a number, got ${v}`);
  return n;
}

function need(a: CommandArgs, name: string, cmd: string): string {
  const v = a.flags.get(name);
  if (v === undefined || v === '') throw new ChimeraError('E_ARG', `${cmd} needs --${name}`);
  return v;
}

function bool(a: CommandArgs, name: string): boolean {
  const v = a.flags.get(name);
  if (v === undefined) return false;
  if (v === 'true' || v === '1' || v === 'yes') return true;
  if (v === 'false' || v === '0' || v === 'no') return false;
  throw new ChimeraError('E_ARG', `--${name} takes no value (or true/false), got ${v}`);
}

/** One progress bar per stage, replaced when the stage changes. */
function stagedProgress(): { update: (stage: string, done: number, total: number) => void; done: (msg?: string) => void } {
  let bar: ProgressBar | null = null;
  let current = '';
  return {
    update(stage, done, total) {
      if (stage !== current) {
        bar?.done();
        bar = new ProgressBar(stage);
        current = stage;
      }
      bar!.update(done, total);
    },
    done(msg) {
      bar?.done(msg);
      if (!bar && msg) process.stderr.write(`${msg}\n`);
      bar = null;
      current = '';
    },
  };
}

/** Reads --src and --ref (aligned, same line count), cut to --limit lines. */
function readPair(a: CommandArgs, cmd: string): { src: string[]; ref: string[] } {
  const srcFile = need(a, 'src', cmd);
  const refFile = need(a, 'ref', cmd);
  const src = readLines(srcFile, { role: 'source' });
  const ref = readLines(refFile, { role: 'reference' });
  checkAligned([{ name: `source file ${srcFile}`, lines: src }, { name: `reference file ${refFile}`, lines: ref }]);
  const limit = int(a, 'limit');
  return limit === undefined ? { src, ref } : { src: src.slice(0, limit), ref: ref.slice(0, limit) };
}

// ------------------------------------------------------------------------------------------------ bleu

export async function bleuCommand(a: CommandArgs): Promise<number> {
  allow(a, 'bleu', ['tokenize', 'smooth', 'smooth-value', 'lowercase', 'json']);
  let hypFile: string;
  let refFiles: string[];
  if (a.positional.length === 0) throw new ChimeraError('E_ARG', 'bleu needs reference files: chimera bleu HYP REF [REF2 ...] (HYP - for stdin)');
  if (a.positional.length === 1) [hypFile, refFiles] = ['-', a.positional];
  else [hypFile, ...refFiles] = a.positional;
  if (refFiles.includes('-')) throw new ChimeraError('E_ARG', 'only the hypothesis can come from stdin (-), not a reference');
  const opts: BleuOptions = {
    tokenize: a.flags.get('tokenize') as BleuTokenizer | undefined,
    smooth: a.flags.get('smooth') as BleuSmoothing | undefined,
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
  allow(a, 'eval', ['model', 'src', 'ref', 'precision', 'control', 'beam', 'limit', 'batch', 'max-length', 'json']);
  const { evaluateWithControl } = await import('../quality/eval');
  const model = need(a, 'model', 'eval');
  const { src, ref } = readPair(a, 'eval');
  const precision = a.flags.get('precision') as 'int8' | undefined;
  const beam = int(a, 'beam') ?? 1;
  const progress = stagedProgress();
  const r = await evaluateWithControl(model, src, ref, {
    precision, control: a.flags.get('control'), beam, batchSize: int(a, 'batch'), maxNewTokens: int(a, 'max-length'),
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
  allow(a, 'quantize', ['model', 'src', 'ref', 'max-bleu-drop', 'out', 'beam', 'limit', 'batch', 'max-length', 'report', 'sensitivity-sentences', 'try-all', 'json']);
  const { quantizeWithGate, writeGateReport, gateReportMarkdown } = await import('../quality/quantize');
  const model = need(a, 'model', 'quantize');
  const out = need(a, 'out', 'quantize');
  const maxBleuDrop = num(a, 'max-bleu-drop') ?? 0.5;
  if (maxBleuDrop < 0) throw new ChimeraError('E_ARG', `--max-bleu-drop must be >= 0 (the fp32 control itself has a drop of 0), got ${maxBleuDrop}`);
  const { src, ref } = readPair(a, 'quantize');
  const progress = stagedProgress();
  const { report } = await quantizeWithGate(model, src, ref, {
    maxBleuDrop, out, beam: int(a, 'beam'), batchSize: int(a, 'batch'), maxNewTokens: int(a, 'max-length'),
    sensitivitySentences: int(a, 'sensitivity-sentences'), tryAll: bool(a, 'try-all'),
    onProgress: (stage, d, t) => progress.update(stage, d, t),
    onResult: (row) => progress.done(
      `${row.name}: BLEU ${pyFixed(row.bleu, 2)} (${row.delta >= 0 ? '+' : ''}${pyFixed(row.delta, 2)}), ${row.sentencesPerSec.toFixed(1)} sent/s` +
        (row.control ? ' [control]' : row.passed ? ' [pass]' : ` [fail: drop > ${maxBleuDrop}]`),
    ),
  });
  progress.done();
  const files = writeGateReport(report, a.flags.get('report') ?? `${out}.report`);
  if (bool(a, 'json')) process.stdout.write(JSON.stringify({ ...report, reportFiles: files }, null, 1) + '\n');
  else process.stdout.write(`${gateReportMarkdown(report)}\nreport: ${files.md}, ${files.json}\n`);
  return 0;
}
