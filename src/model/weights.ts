/**
 * Loads the weights of a Hugging Face MarianMTModel checkpoint into typed fp32 arrays, checking every tensor
 * against the config. Sinusoidal position tables (`embed_positions`) are never read: they are computed.
 */
import { ChimeraError } from '../errors';
import type { MarianConfig } from './config';
import { readSafetensors, readSafetensorsIndex, type FloatTensor, type TensorInfo } from './safetensors';

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

/**
 * Loads `<dir>/model.safetensors` (or a sharded `model.safetensors.index.json`) for `config`. Any missing tensor,
 * or one whose shape disagrees with the config, is an E_MODEL error naming it.
 */
export function loadMarianWeights(dir: string, config: MarianConfig): MarianWeights {
  const index = readSafetensorsIndex(dir);
  const embedSource = EMBEDDING_NAMES.find((n) => index.has(n));
  if (!embedSource) throw new ChimeraError('E_MODEL', `${dir}: no embedding tensor (looked for ${EMBEDDING_NAMES.join(', ')})`);
  const wanted = new Set([embedSource, ...marianTensorNames(config)]);
  const missing = [...wanted].filter((n) => n !== 'final_logits_bias' && !index.has(n));
  if (missing.length > 0) {
    const more = missing.length > 5 ? ` and ${missing.length - 5} more` : '';
    throw new ChimeraError('E_MODEL', `${dir}: missing tensor ${missing.slice(0, 5).map((n) => `'${n}'`).join(', ')}${more}`);
  }
  const tensors = readSafetensors(dir, wanted);
  const infoOf = (name: string): TensorInfo => index.get(name)!;

  const get = (name: string, shape: number[]): Float32Array => {
    const t = tensors.get(name) as FloatTensor;
    const same = t.shape.length === shape.length && t.shape.every((v, i) => v === shape[i]);
    if (!same) throw new ChimeraError('E_MODEL', `${infoOf(name).file}: tensor '${name}' has shape ${shapeStr(t.shape)}, expected ${shapeStr(shape)} from config.json`);
    return t.data;
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
