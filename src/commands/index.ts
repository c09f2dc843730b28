/** Every `chimera` command's table, in the order the global usage lists them. */
import type { CommandSpec } from './args';
import { ASSESS } from './assess';
import { CONVERT } from './convert';
import { DOCTOR } from './doctor';
import { EXPORT_ONNX } from './export-onnx';
import { INFO, SELFTEST } from './info';
import { MAKE_MODEL } from './make-model';
import { PULL } from './pull';
import { BLEU, EVAL, QUANTIZE } from './quality';
import { SERVE } from './serve';
import { SHORTLIST } from './shortlist';
import { TRANSLATE } from './translate';
import { TUNE_LN } from './tune-ln';

export const COMMANDS: readonly CommandSpec[] = [
  TRANSLATE, CONVERT, PULL, EXPORT_ONNX, MAKE_MODEL, SHORTLIST, TUNE_LN, BLEU, EVAL, QUANTIZE, ASSESS, SERVE, DOCTOR, INFO, SELFTEST,
];
