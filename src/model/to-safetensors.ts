/**
 * `chimera convert DIR OUT --to safetensors`: a standard model.safetensors from any checkpoint chimera reads
 * (pytorch_model.bin in either format, sharded or not), for users who want one.
 *
 * Tensors keep their names and stored dtype (F32, F16, BF16; F64 becomes F32), so the values are exactly the
 * checkpoint's. As transformers does when it saves a Marian model, the tied aliases of the embedding
 * (`model.encoder.embed_tokens.weight`, `model.decoder.embed_tokens.weight`, `lm_head.weight`; safetensors has
 * no shared storage) and the computed sinusoidal position tables are left out.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ChimeraError } from '../errors';
import { openCheckpoint } from './checkpoint';
import { writeSafetensors, type FloatDtype, type WritableTensor } from './safetensors';
import { EMBEDDING_NAMES, POSITION_TABLES } from './weights';

const SIDE_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'source.spm', 'target.spm', 'vocab.json'];

export interface ToSafetensorsResult {
  file: string;
  tensors: number;
  bytes: number;
  copied: string[];
}

/**
 * Writes the checkpoint of `dir` as safetensors. `out` ending in `.safetensors` is the file to write; otherwise
 * it is a directory that gets `model.safetensors` plus the config and tokenizer files, a loadable model.
 */
export function convertToSafetensors(dir: string, out: string): ToSafetensorsResult {
  const ck = openCheckpoint(dir);
  const names = [...ck.tensors.keys()];
  const embed = EMBEDDING_NAMES.find((n) => ck.tensors.has(n));
  const skip = new Set<string>([...POSITION_TABLES, ...EMBEDDING_NAMES.filter((n) => n !== embed)]);
  const keep = names.filter((n) => !skip.has(n) && ['F32', 'F16', 'BF16', 'F64'].includes(ck.tensors.get(n)!.dtype));
  if (keep.length === 0) throw new ChimeraError('E_MODEL', `${dir}: no floating-point tensors to write`);
  const data = ck.read(keep);
  const tensors: Record<string, WritableTensor> = {};
  for (const n of keep) {
    const t = data.get(n)!;
    const stored = ck.tensors.get(n)!.dtype;
    tensors[n] = { dtype: (stored === 'F64' ? 'F32' : stored) as FloatDtype, shape: t.shape, data: t.data };
  }
  const asDir = !out.endsWith('.safetensors');
  const file = asDir ? path.join(out, 'model.safetensors') : out;
  if (path.resolve(file) === path.resolve(dir, 'model.safetensors') || (ck.format === 'safetensors' && fs.existsSync(file) && asDir && path.resolve(out) === path.resolve(dir)))
    throw new ChimeraError('E_ARG', `${file}: refusing to overwrite the checkpoint being converted`);
  writeSafetensors(file, tensors, { format: 'pt' });
  const copied: string[] = [];
  if (asDir) {
    for (const f of SIDE_FILES) {
      const src = path.join(dir, f);
      if (fs.existsSync(src)) {
        fs.copyFileSync(src, path.join(out, f));
        copied.push(f);
      }
    }
  }
  return { file, tensors: keep.length, bytes: fs.statSync(file).size, copied };
}
