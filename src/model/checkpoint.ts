/**
 * One view over the weight files a Hugging Face model directory may hold, in transformers' order of
 * preference: `model.safetensors`, `model.safetensors.index.json`, `pytorch_model.bin`,
 * `pytorch_model.bin.index.json`. Callers list tensors with their dtype and shape, then read the ones they
 * want as fp32.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ChimeraError } from '../errors';
import { readSafetensors, readSafetensorsIndex, type FloatTensor } from './safetensors';
import { readTorchIndex, torchTensorFloat32 } from './torch-bin';

export interface CheckpointTensor {
  name: string;
  /** As the file stores it: F32, F16, BF16, ... */
  dtype: string;
  shape: number[];
  file: string;
}

export interface Checkpoint {
  format: 'safetensors' | 'pytorch';
  tensors: Map<string, CheckpointTensor>;
  /** Reads the named tensors as fp32 (a missing name is skipped). */
  read(names: Iterable<string>): Map<string, FloatTensor>;
}

export const WEIGHT_FILES = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json'] as const;

/** The weight file a directory would load, or null when it has none of WEIGHT_FILES. */
export function findWeightFile(dir: string): string | null {
  for (const f of WEIGHT_FILES) if (fs.existsSync(path.join(dir, f))) return path.join(dir, f);
  return null;
}

export function openCheckpoint(dir: string): Checkpoint {
  const file = findWeightFile(dir);
  if (!file) throw new ChimeraError('E_MODEL', `${dir}: no model.safetensors or pytorch_model.bin (nor a sharded index of either) in this directory`);
  if (file.includes('safetensors')) {
    const index = readSafetensorsIndex(dir);
    return {
      format: 'safetensors',
      tensors: new Map([...index].map(([n, t]) => [n, { name: n, dtype: t.dtype, shape: t.shape, file: t.file }])),
      read: (names) => readSafetensors(dir, new Set(names)),
    };
  }
  const index = readTorchIndex(file);
  const tensors = new Map<string, CheckpointTensor>();
  for (const [n, t] of index) tensors.set(n, { name: n, dtype: t.dtype, shape: t.shape, file: t.file });
  return {
    format: 'pytorch',
    tensors,
    read: (names) => {
      const out = new Map<string, FloatTensor>();
      for (const n of names) {
        const t = index.get(n);
        if (!t) continue;
        out.set(n, { dtype: (t.dtype === 'F64' ? 'F32' : t.dtype) as FloatTensor['dtype'], shape: t.shape, data: torchTensorFloat32(t).data });
      }
      return out;
    },
  };
}
