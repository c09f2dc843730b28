/**
 * Loads the weights of a Hugging Face MarianMTModel checkpoint (safetensors or pytorch_model.bin, see
 * ./checkpoint.ts) into typed fp32 arrays, checking every tensor against the config.
 *
 * Position tables: Marian's are sinusoidal and the engine computes them, so the loader never uses the saved
 * ones. Older checkpoints (every Helsinki-NLP pytorch_model.bin) still save `model.{encoder,decoder}.
 * embed_positions.weight`; in a pytorch_model.bin each is checked against the formula (within the rounding of
 * its dtype) so that a checkpoint with learned or otherwise different positions is refused with E_MODEL instead
 * of silently computing another function. In safetensors they are ignored, as before.
 */
import { ChimeraError } from '../errors';
import type { MarianConfig } from './config';
import { openCheckpoint, type CheckpointTensor } from './checkpoint';
import type { FloatTensor } from './safetensors';

/** A PyTorch Linear: y = x W^T + b, W stored row-major [out, in]. */
export interface Linear {
  weight: Float32Array;
  bias: Float32Array;
  out: number;
  in: number;
}

export interface Norm {
  gamma: Float32Array;
  beta: Float32Array;
}

export interface AttentionWeights {
  q: Linear;
  k: Linear;
  v: Linear;
  out: Linear;
}

export interface EncoderLayerWeights {
  selfAttn: AttentionWeights;
  selfAttnLayerNorm: Norm;
  fc1: Linear;
  fc2: Linear;
  finalLayerNorm: Norm;
}

export interface DecoderLayerWeights extends EncoderLayerWeights {
  encoderAttn: AttentionWeights;
  encoderAttnLayerNorm: Norm;
}

export interface MarianWeights {
  /** Shared token embedding [vocab, d]; also the (tied) LM head. Not yet scaled by sqrt(d). */
  embed: Float32Array;
  /** [vocab], added to the logits. Zeros when the checkpoint has none. */
  finalLogitsBias: Float32Array;
  encoder: EncoderLayerWeights[];
  decoder: DecoderLayerWeights[];
  /** The checkpoint tensor the embedding came from. */
  embedSource: string;
}

/** Names a tied embedding may be saved under, in order of preference. */
export const EMBEDDING_NAMES = [
  'model.shared.weight',
  'model.encoder.embed_tokens.weight',
  'model.decoder.embed_tokens.weight',
  'lm_head.weight',
] as const;

/** Every tensor name the loader reads for a config, except the embedding (one of EMBEDDING_NAMES). */
export function marianTensorNames(config: MarianConfig): string[] {
  const names = ['final_logits_bias'];
  const attn = (p: string) => ['q_proj', 'k_proj', 'v_proj', 'out_proj'].flatMap((x) => [`${p}.${x}.weight`, `${p}.${x}.bias`]);
  const norm = (p: string) => [`${p}.weight`, `${p}.bias`];
  const layer = (p: string, cross: boolean) => [
    ...attn(`${p}.self_attn`), ...norm(`${p}.self_attn_layer_norm`),
    ...(cross ? [...attn(`${p}.encoder_attn`), ...norm(`${p}.encoder_attn_layer_norm`)] : []),
    `${p}.fc1.weight`, `${p}.fc1.bias`, `${p}.fc2.weight`, `${p}.fc2.bias`, ...norm(`${p}.final_layer_norm`),
  ];
  for (let i = 0; i < config.encoderLayers; i++) names.push(...layer(`model.encoder.layers.${i}`, false));
  for (let i = 0; i < config.decoderLayers; i++) names.push(...layer(`model.decoder.layers.${i}`, true));
  return names;
}

function shapeStr(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

export const POSITION_TABLES = ['model.encoder.embed_positions.weight', 'model.decoder.embed_positions.weight'] as const;

/** Largest |saved - formula| accepted for a position table, by stored dtype (values lie in [-1, 1]). */
const POSITION_TOLERANCE: Record<string, number> = { F32: 1e-4, F64: 1e-4, F16: 1e-3, BF16: 8e-3 };

/**
 * transformers' MarianSinusoidalPositionalEmbedding: column j < d/2 holds sin(pos / 10000^(2j/d)), column
 * d/2 + j holds cos of the same angle (for odd d the sin half has one more column).
 */
export function marianSinusoid(pos: number, col: number, d: number): number {
  const half = d % 2 === 0 ? d / 2 : (d + 1) / 2;
  const j = col < half ? col : col - half;
  const angle = pos / Math.pow(10000, (2 * j) / d);
  return col < half ? Math.sin(angle) : Math.cos(angle);
}

function checkPositions(name: string, t: FloatTensor, info: CheckpointTensor, config: MarianConfig): void {
  const d = config.dModel;
  const rows = t.shape[0];
  if (t.shape.length !== 2 || t.shape[1] !== d || rows < 1)
    throw new ChimeraError('E_MODEL', `${info.file}: tensor '${name}' has shape ${shapeStr(t.shape)}, expected [positions, ${d}]`);
  const tol = POSITION_TOLERANCE[info.dtype] ?? 1e-4;
  let worst = 0;
  let at = [0, 0];
  for (let p = 0; p < rows; p++) {
    for (let c = 0; c < d; c++) {
      const err = Math.abs(t.data[p * d + c] - marianSinusoid(p, c, d));
      if (!(err <= worst)) {
        worst = Number.isNaN(err) ? Infinity : err;
        at = [p, c];
      }
    }
  }
  if (worst > tol)
    throw new ChimeraError('E_MODEL',
      `${info.file}: tensor '${name}' is not Marian's sinusoidal position table (position ${at[0]}, column ${at[1]} is off by ${worst.toExponential(2)}); chimera computes positions and cannot use learned ones`);
}

/**
 * Loads the checkpoint of `dir` (model.safetensors, pytorch_model.bin, or a sharded index of either) for
 * `config`. Any missing tensor, or one whose shape disagrees with the config, is an E_MODEL error naming it.
 */
export function loadMarianWeights(dir: string, config: MarianConfig): MarianWeights {
  const checkpoint = openCheckpoint(dir);
  const index = checkpoint.tensors;
  const embedSource = EMBEDDING_NAMES.find((n) => index.has(n));
  if (!embedSource) throw new ChimeraError('E_MODEL', `${dir}: no embedding tensor (looked for ${EMBEDDING_NAMES.join(', ')})`);
  // config.json layer counts are capped (CONFIG_CAPS.layers), so this list is small; every name is checked
  // against the checkpoint index before any tensor is read.
  const wanted = new Set([embedSource, ...marianTensorNames(config)]);
  const missing = [...wanted].filter((n) => n !== 'final_logits_bias' && !index.has(n));
  if (missing.length > 0) {
    const more = missing.length > 5 ? ` and ${missing.length - 5} more` : '';
    throw new ChimeraError('E_MODEL', `${dir}: missing tensor ${missing.slice(0, 5).map((n) => `'${n}'`).join(', ')}${more}`);
  }
  // Only pytorch_model.bin files are checked: transformers never writes the tables into safetensors (they are in
  // _keys_to_ignore_on_save), and a safetensors file that has them keeps the earlier rule, ignored.
  const positions = checkpoint.format === 'pytorch' ? POSITION_TABLES.filter((n) => index.has(n)) : [];
  const tensors = checkpoint.read([...wanted, ...positions]);
  const infoOf = (name: string): CheckpointTensor => index.get(name)!;
  for (const n of positions) checkPositions(n, tensors.get(n)!, infoOf(n), config);

  const get = (name: string, shape: number[]): Float32Array => {
    const t = tensors.get(name) as FloatTensor;
    const same = t.shape.length === shape.length && t.shape.every((v, i) => v === shape[i]);
    if (!same) throw new ChimeraError('E_MODEL', `${infoOf(name).file}: tensor '${name}' has shape ${shapeStr(t.shape)}, expected ${shapeStr(shape)} from config.json`);
    // NaN / Inf would quietly turn every translation into garbage (or, in int8, fail later with no name)
    const a = t.data;
    for (let i = 0; i < a.length; i++)
      if (!Number.isFinite(a[i]))
        throw new ChimeraError('E_MODEL', `${infoOf(name).file}: tensor '${name}' holds ${a[i]} at flat index ${i}: weights must be finite`);
    return a;
  };
  const d = config.dModel;
  const linear = (p: string, out: number, inF: number): Linear => ({ weight: get(`${p}.weight`, [out, inF]), bias: get(`${p}.bias`, [out]), out, in: inF });
  const norm = (p: string): Norm => ({ gamma: get(`${p}.weight`, [d]), beta: get(`${p}.bias`, [d]) });
  const attention = (p: string): AttentionWeights => ({
    q: linear(`${p}.q_proj`, d, d), k: linear(`${p}.k_proj`, d, d), v: linear(`${p}.v_proj`, d, d), out: linear(`${p}.out_proj`, d, d),
  });

  const encoder: EncoderLayerWeights[] = [];
  for (let i = 0; i < config.encoderLayers; i++) {
    const p = `model.encoder.layers.${i}`;
    encoder.push({
      selfAttn: attention(`${p}.self_attn`),
      selfAttnLayerNorm: norm(`${p}.self_attn_layer_norm`),
      fc1: linear(`${p}.fc1`, config.encoderFfn, d),
      fc2: linear(`${p}.fc2`, d, config.encoderFfn),
      finalLayerNorm: norm(`${p}.final_layer_norm`),
    });
  }
  const decoder: DecoderLayerWeights[] = [];
  for (let i = 0; i < config.decoderLayers; i++) {
    const p = `model.decoder.layers.${i}`;
    decoder.push({
      selfAttn: attention(`${p}.self_attn`),
      selfAttnLayerNorm: norm(`${p}.self_attn_layer_norm`),
      encoderAttn: attention(`${p}.encoder_attn`),
      encoderAttnLayerNorm: norm(`${p}.encoder_attn_layer_norm`),
      fc1: linear(`${p}.fc1`, config.decoderFfn, d),
      fc2: linear(`${p}.fc2`, d, config.decoderFfn),
      finalLayerNorm: norm(`${p}.final_layer_norm`),
    });
  }
  const V = config.vocabSize;
  return {
    embed: get(embedSource, [V, d]),
    finalLogitsBias: tensors.has('final_logits_bias') ? get('final_logits_bias', [1, V]) : new Float32Array(V),
    encoder,
    decoder,
    embedSource,
  };
}
