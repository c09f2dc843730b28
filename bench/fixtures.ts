/**
 * What bench:e2e and bench:ttft share: the OPUS-MT-geometry model (generated on demand into .tmp/models, never
 * committed), its ONNX exports for onnxruntime (.tmp/onnx, re-exported when the model or the exporter changes) and
 * the deterministic synthetic sources.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeModel } from '../src/model/make-model';
import { exportMarianOnnx } from '../src/onnx/export-marian';

export const ROOT = path.resolve(__dirname, '..');

export const ORT_TIERS = ['fp32', 'int8-per-channel', 'int8-per-tensor'] as const;
export type OrtTier = (typeof ORT_TIERS)[number];

/** The OPUS-MT geometry (d 512, 6+6 layers, vocab 58101) with deterministic random weights. */
export async function opusDir(): Promise<string> {
  const dir = path.join(ROOT, '.tmp', 'models', 'opus-mt-en-de-seed1');
  if (!fs.existsSync(path.join(dir, 'model.safetensors'))) {
    console.log(`generating the OPUS-MT-geometry model in ${dir} (once)...`);
    await makeModel({ preset: 'opus-mt-en-de', seed: 1, out: dir });
  }
  return dir;
}

/** Exports (once per source model and exporter version) the ONNX graphs of one ORT tier into .tmp/onnx/<name>-<tier>. */
export function onnxDir(modelDir: string, name: string, tier: OrtTier): string {
  const out = path.join(ROOT, '.tmp', 'onnx', `${name}-${tier}`);
  const st = fs.statSync(path.join(modelDir, 'model.safetensors'));
  const exporter = fs.statSync(path.join(ROOT, 'src', 'onnx', 'export-marian.ts'));
  const stamp = JSON.stringify({ modelDir, size: st.size, mtime: st.mtimeMs, exporter: exporter.mtimeMs });
  const stampFile = path.join(out, '.chimera-export.json');
  if (!fs.existsSync(stampFile) || fs.readFileSync(stampFile, 'utf8') !== stamp) {
    const t0 = performance.now();
    exportMarianOnnx(modelDir, out, { int8: tier !== 'fp32', perTensor: tier === 'int8-per-tensor' });
    fs.writeFileSync(stampFile, stamp);
    console.log(`exported ${name} ${tier} ONNX to ${out} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  return out;
}

/** A deterministic source of `len` ids (eos last) that avoids eos, unk and pad. */
export function source(len: number, vocab: number, eos: number, seed: number): number[] {
  let s = seed >>> 0;
  const ids: number[] = [];
  for (let i = 0; i < len - 1; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    ids.push(2 + (s % (vocab - 3)));
  }
  ids.push(eos);
  return ids;
}

/** A flag's value (`--name value`), or undefined. */
export function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

/** Rejects flags a bench does not know, naming the ones it does. */
export function checkFlags(known: { value: string[]; bool: string[] }): void {
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i].replace(/^--/, '');
    if (known.value.includes(f)) {
      if (argv[i + 1] === undefined) throw new Error(`--${f} needs a value`);
      i++;
    } else if (!known.bool.includes(f)) {
      const all = [...known.value.map((v) => `--${v} VALUE`), ...known.bool.map((b) => `--${b}`)];
      throw new Error(`unknown flag ${argv[i]} (flags: ${all.join(', ')})`);
    }
  }
}
