/**
 * `chimera tune-ln`: fits the layer-norm gamma/beta of a quantised model to the fp32 control (src/quality/tune-ln.ts)
 * and writes the tuned model packed. With held-out sources and references it measures BLEU before and after, and
 * when tuning made it worse it says so on stderr and writes nothing unless --force (exit status 1).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { demoModelPath } from '../demo';
import { ChimeraError } from '../errors';
import type { MarianModel, Precision } from '../marian';
import { requireModelDirectory } from '../model/config';
import { generateBatched } from '../quality/batch';
import { checkAligned, readLines } from '../quality/io';
import { activationMse, controlDecoderInputs, decoderInputsFrom, tuneLayerNorms, type ActivationMse } from '../quality/tune-ln';
import { bool, num, str, type CommandArgs, type CommandSpec } from './args';

export const TUNE_LN: CommandSpec = {
  name: 'tune-ln',
  summary: 'fit layer-norm gamma/beta of a quantised model to the fp32 control; writes a packed model',
  description: 'With --heldout-src and --heldout-ref, held-out BLEU is measured before and after: when tuning makes it\n' +
    'worse, nothing is written unless --force.',
  options: [
    { flag: 'model', kind: 'string', arg: 'DIR', help: 'the Hugging Face model directory (the fp32 control is packed from it)', def: '(the built-in demo model)' },
    { flag: 'calib', kind: 'string', arg: 'FILE', help: 'calibration source sentences, one per line', required: true },
    { flag: 'precision', kind: 'string', arg: 'P', help: 'the quantised tier to tune (fp32 has nothing to tune)', choices: ['int8', 'fp16'], def: 'int8' },
    { flag: 'limit', kind: 'int', arg: 'N', min: 1, help: 'calibration sentences at most' },
    { flag: 'heldout-src', kind: 'string', arg: 'FILE', help: 'held-out source sentences (never the calibration ones)' },
    { flag: 'heldout-ref', kind: 'string', arg: 'FILE', help: 'their references: held-out BLEU before and after' },
    { flag: 'heldout-limit', kind: 'int', arg: 'N', min: 1, help: 'held-out sentences at most' },
    { flag: 'beam', kind: 'int', arg: 'N', min: 1, help: 'beam width for held-out BLEU', def: '1' },
    { flag: 'ridge', kind: 'number', arg: 'X', help: 'ridge toward the current gamma/beta (lambda = ridge x rows)' },
    { flag: 'out', kind: 'string', arg: 'FILE', help: 'the packed model to write', def: '(DIR-PRECISION-ln.chimera)' },
    { flag: 'report', kind: 'string', arg: 'JSON', help: 'write the figures as JSON' },
    { flag: 'force', kind: 'boolean', help: 'write the model even when held-out BLEU got worse' },
  ],
  run: tuneLnCommand,
};

/**
 * Why the tuned model is worse on the held-out set, or null when it is not (or nothing was measured): BLEU when
 * there are references, else the held-out activation error.
 */
export function heldoutVerdict(m: { bleuBefore?: number; bleuAfter?: number; mseBefore?: number; mseAfter?: number }): string | null {
  if (m.bleuBefore !== undefined && m.bleuAfter !== undefined)
    return m.bleuAfter < m.bleuBefore ? `held-out BLEU went down: ${m.bleuBefore.toFixed(2)} -> ${m.bleuAfter.toFixed(2)}` : null;
  if (m.mseBefore !== undefined && m.mseAfter !== undefined && m.mseAfter > m.mseBefore)
    return `held-out activation error went up: ${fmt(m.mseBefore)} -> ${fmt(m.mseAfter)}`;
  return null;
}

function translateAll(m: MarianModel, srcIds: (number[] | null)[], beam: number): number[][] {
  return generateBatched(m, srcIds, { beam });
}

const fmt = (x: number) => x.toExponential(3);

/** `chimera tune-ln`: returns the exit code. Output goes to stdout, progress and warnings to stderr. */
export async function tuneLnCommand(a: CommandArgs): Promise<number> {
  const o = {
    model: str(a, 'model') ?? demoModelPath, calib: str(a, 'calib')!, precision: str(a, 'precision'), heldoutSrc: str(a, 'heldout-src'),
    heldoutRef: str(a, 'heldout-ref'), limit: num(a, 'limit'), heldoutLimit: num(a, 'heldout-limit'), out: str(a, 'out'),
    beam: num(a, 'beam'), ridge: num(a, 'ridge'), report: str(a, 'report'), force: bool(a, 'force'),
  };
  const { MarianModel } = await import('../marian');
  const { corpusBleu } = await import('../bleu');
  const log = (s: string) => process.stdout.write(s + '\n');
  requireModelDirectory(o.model, '--model must be a model directory (the fp32 control is packed from it)');
  const precision = (o.precision ?? 'int8') as Precision;
  if ((o.heldoutRef !== undefined) && o.heldoutSrc === undefined) throw new ChimeraError('E_ARG', '--heldout-ref needs --heldout-src');
  if (o.heldoutSrc !== undefined && path.resolve(o.heldoutSrc) === path.resolve(o.calib))
    throw new ChimeraError('E_ARG', 'the held-out sentences must not be the calibration ones');
  const beam = o.beam ?? 1;
  const out = o.out ?? `${path.basename(path.resolve(o.model))}-${precision}-ln.chimera`;

  let calibText = readLines(o.calib, { role: 'calibration' }).filter((l) => l.trim() !== '');
  if (o.limit !== undefined && o.limit > 0) calibText = calibText.slice(0, o.limit);
  if (calibText.length === 0) throw new ChimeraError('E_INPUT', `calibration file ${o.calib} has no non-empty lines`);
  let heldSrc: string[] | undefined, heldRef: string[] | undefined;
  if (o.heldoutSrc !== undefined) {
    heldSrc = readLines(o.heldoutSrc, { role: 'held-out source' });
    if (o.heldoutRef !== undefined) {
      heldRef = readLines(o.heldoutRef, { role: 'held-out reference' });
      checkAligned([{ name: o.heldoutSrc, lines: heldSrc }, { name: o.heldoutRef, lines: heldRef }]);
    }
    if (o.heldoutLimit !== undefined && o.heldoutLimit > 0) {
      heldSrc = heldSrc.slice(0, o.heldoutLimit);
      heldRef = heldRef?.slice(0, o.heldoutLimit);
    }
    const calibSet = new Set(calibText.map((l) => l.trim()));
    const overlap = heldSrc.filter((l) => l.trim() !== '' && calibSet.has(l.trim())).length;
    if (overlap > 0) process.stderr.write(`warning: ${overlap} held-out source lines also occur in the calibration set\n`);
  }

  const t0 = performance.now();
  const f = await MarianModel.load(o.model, { precision: 'fp32' });
  const q = await MarianModel.load(o.model, { precision });
  const tok = f.requireTokenizer();
  const calib = calibText.map((l) => tok.encode(l));
  log(`tune-ln: ${o.model}, ${precision} against fp32; ${calib.length} calibration sentences from ${o.calib}`);

  // Held-out: the control's translations give both the fp32 BLEU and the teacher-forcing inputs.
  const held = heldSrc?.map((l) => (l.trim() === '' ? null : tok.encode(l)));
  const heldIds = held?.filter((x): x is number[] => x !== null);
  let heldDec: number[][] | undefined;
  const bleuOf = (m: MarianModel) => {
    const ids = translateAll(m, held!, beam);
    return { ids, bleu: heldRef ? corpusBleu(ids.map((x) => tok.decode(x)), [heldRef]) : undefined };
  };
  const report: Record<string, unknown> = { model: o.model, precision, calib: o.calib, calibSentences: calib.length, heldout: o.heldoutSrc, beam };
  let bF: ReturnType<typeof bleuOf> | undefined, bQ0: ReturnType<typeof bleuOf> | undefined;
  let mse0: ActivationMse | undefined;
  if (held && heldIds && heldIds.length > 0) {
    bF = bleuOf(f);
    // Teacher-forcing inputs from F's greedy output (the same as bF's when beam is 1).
    const greedy = beam === 1 ? bF.ids : translateAll(f, held, 1);
    heldDec = held.flatMap((x, i) => (x === null ? [] : [decoderInputsFrom(f, greedy[i])]));
    bQ0 = bleuOf(q);
    mse0 = activationMse(q, f, heldIds, { decoderInputs: heldDec });
  }

  const tTune = performance.now();
  const { ProgressBar } = await import('../progress');
  const bar = new ProgressBar('fitting layer norms');
  const res = tuneLayerNorms(q, f, calib, { ridge: o.ridge, onProgress: (d, t) => bar.update(d, t) });
  bar.done();
  log(`fitted ${res.perNorm.length} layer norms in ${((performance.now() - tTune) / 1000).toFixed(1)} s`);

  let mse1: ActivationMse | undefined, bQ1: ReturnType<typeof bleuOf> | undefined;
  if (heldIds && heldDec && heldIds.length > 0) {
    mse1 = activationMse(q, f, heldIds, { decoderInputs: heldDec });
    bQ1 = bleuOf(q);
  }

  log('');
  log('activation MSE (post-LN output, Q vs fp32)      calibration before -> after    held-out before -> after');
  res.perNorm.forEach((r, k) => {
    const h = mse0 && mse1 ? `${fmt(mse0.perNorm[k].mse)} -> ${fmt(mse1.perNorm[k].mse)}` : '-';
    log(`  ${r.name.padEnd(46)} ${fmt(r.mseBefore)} -> ${fmt(r.mseAfter)}    ${h}`);
  });
  log(`  ${'mean'.padEnd(46)} ${fmt(res.meanMseBefore)} -> ${fmt(res.meanMseAfter)}    ${mse0 && mse1 ? `${fmt(mse0.mean)} -> ${fmt(mse1.mean)}` : '-'}`);

  if (bF?.bleu && bQ0?.bleu && bQ1?.bleu) {
    const line = (name: string, s: number) => log(`  ${name.padEnd(22)} ${s.toFixed(2)}  (${(s - bF!.bleu!.score >= 0 ? '+' : '')}${(s - bF!.bleu!.score).toFixed(2)} vs fp32)`);
    log('');
    log(`held-out BLEU on ${held!.length} sentences (${o.heldoutSrc}, ${beam > 1 ? `beam ${beam}` : 'greedy'}):`);
    line('fp32', bF.bleu.score);
    line(`${precision}`, bQ0.bleu.score);
    line(`${precision} + LN tuning`, bQ1.bleu.score);
    log(`  ${bQ1.bleu.toString()}`);
  } else if (!held) log('\nno --heldout-src: held-out BLEU and activation error not measured (never measured on calibration sentences)');

  // Tuning that made held-out quality worse is not written without --force (BLEU when there are references,
  // else the held-out activation error).
  const worse = heldoutVerdict({ bleuBefore: bQ0?.bleu?.score, bleuAfter: bQ1?.bleu?.score, mseBefore: mse0?.mean, mseAfter: mse1?.mean });
  report.worse = worse;
  if (worse) {
    process.stderr.write(`\nWARNING: layer-norm tuning made ${precision} WORSE on the held-out set (${worse}).\n`);
    if (!o.force) {
      process.stderr.write(`WARNING: ${out} was NOT written; keep the untuned ${precision} model, or pass --force to write this one anyway.\n`);
      if (o.report) fs.writeFileSync(o.report, JSON.stringify({ ...report, written: false }, null, 2) + '\n');
      return 1;
    }
    process.stderr.write(`WARNING: writing ${out} anyway (--force).\n`);
  }
  const bytes = q.save(out);
  // The saved file must reproduce the tuned model: same gamma/beta, same logits.
  const back = await MarianModel.load(out);
  const checkSrc = (heldIds && heldIds.length > 0 ? heldIds : calib).slice(0, 16);
  const checkDec = heldDec && heldIds && heldIds.length > 0 ? heldDec.slice(0, 16) : controlDecoderInputs(f, checkSrc);
  let identical = true;
  const bn = back.layerNorms(), qn = q.layerNorms();
  for (let k = 0; k < qn.length && identical; k++)
    for (let c = 0; c < q.config.dModel; c++)
      if (bn[k].params.gamma[c] !== qn[k].params.gamma[c] || bn[k].params.beta[c] !== qn[k].params.beta[c]) identical = false;
  for (let i = 0; i < checkSrc.length && identical; i++) {
    const a = q.teacherForcedLogits(checkSrc[i], checkDec[i]), b = back.teacherForcedLogits(checkSrc[i], checkDec[i]);
    for (let j = 0; j < a.length; j++) if (a[j] !== b[j]) { identical = false; break; }
  }
  log('');
  log(`wrote ${out}: ${(bytes / 1048576).toFixed(1)} MiB; reloaded: ${identical ? `identical logits on ${checkSrc.length} sentences` : 'MISMATCH'}`);
  log(`total ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  if (o.report) {
    Object.assign(report, {
      out, written: true, reloadIdentical: identical, tuneMs: res.ms,
      perNorm: res.perNorm.map((r, k) => ({ ...r, heldoutMseBefore: mse0?.perNorm[k].mse, heldoutMseAfter: mse1?.perNorm[k].mse })),
      calibMse: { before: res.meanMseBefore, after: res.meanMseAfter },
      heldoutMse: mse0 && mse1 ? { before: mse0.mean, after: mse1.mean } : undefined,
      bleu: bF?.bleu && bQ0?.bleu && bQ1?.bleu ? { fp32: bF.bleu.score, before: bQ0.bleu.score, after: bQ1.bleu.score, signature: bF.bleu.signature } : undefined,
    });
    fs.writeFileSync(o.report, JSON.stringify(report, null, 2) + '\n');
  }
  return identical ? 0 : 1;
}
