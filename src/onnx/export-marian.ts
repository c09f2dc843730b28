/**
 * Exports a Hugging Face Marian directory as standard ONNX (opset 17) graphs laid out like Optimum's seq2seq
 * export, so that stock onnxruntime can run the very weights chimera runs:
 *
 * - `encoder_model.onnx`: input_ids, attention_mask (int64 [batch_size, encoder_sequence_length]) →
 *   last_hidden_state [batch_size, encoder_sequence_length, d_model].
 * - `decoder_model.onnx`: input_ids [batch_size, decoder_sequence_length], encoder_attention_mask,
 *   encoder_hidden_states → logits [batch_size, decoder_sequence_length, vocab], and for every layer i
 *   present.{i}.decoder.key/value and present.{i}.encoder.key/value, each [batch_size, heads, seq, head_dim].
 * - `decoder_with_past_model.onnx`: input_ids, encoder_attention_mask and past_key_values.{i}.decoder.key/value,
 *   past_key_values.{i}.encoder.key/value → logits and present.{i}.decoder.key/value. As in Optimum's export,
 *   encoder_hidden_states is not an input here (the cross-attention keys and values arrive as past). Positions
 *   start at the past length.
 *
 * Only standard ops are used. Linear weights are stored transposed ([in, out], for MatMul); the attention
 * scale head_dim^-0.5 is folded into the query projection. With `int8`, every Linear (the tied LM head
 * included) becomes what onnxruntime's quantize_dynamic emits: DynamicQuantizeLinear(x) → MatMulInteger(x_q,
 * W_q, x_zp, 0) → Cast(float) → Mul(x_scale · w_scale) → Add(bias), with symmetric per-output-channel int8
 * weights (scale = max|w| / 127, w_scale a [N] tensor), or with `perTensor` one scale per weight tensor (w_scale a
 * scalar: what quantize_dynamic emits with per_channel=False, its default). The embedding lookup stays fp32.
 *
 * For transformers.js (and Optimum's ORTModelForSeq2SeqLM), `onnx/` gets the same model in the layout those read:
 * `onnx/encoder_model.onnx` (a hard link to the top-level encoder, a copy where links fail) and
 * `onnx/decoder_model_merged.onnx`, Optimum's merged decoder: the decoder inputs, every past_key_values input, and
 * `use_cache_branch` (bool [1]) choosing, through one If node, between the no-past graph (else) and the with-past
 * graph (then), which passes the encoder K/V through as its present.{i}.encoder outputs. The two branches read
 * their weights from the outer graph's initializers, stored once. With int8 the files are named as transformers.js
 * loads dtype 'q8': `*_quantized.onnx`. config.json is copied with `"is_encoder_decoder": true` (transformers.js
 * feeds no past inputs without it).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ChimeraError } from '../errors';
import { readMarianConfig, requireModelDirectory, type MarianConfig } from '../model/config';
import { loadMarianWeights, type Linear, type MarianWeights, type Norm } from '../model/weights';
import { GraphBuilder, int64, type Dim } from './writer';

export const ONNX_FILES = {
  encoder: 'encoder_model.onnx',
  decoder: 'decoder_model.onnx',
  decoderWithPast: 'decoder_with_past_model.onnx',
} as const;

/** The transformers.js / Optimum layout (`onnx/` subfolder), fp32 and int8 ('q8' in transformers.js). */
export const ONNX_MERGED_FILES = {
  fp32: { encoder: 'onnx/encoder_model.onnx', decoderMerged: 'onnx/decoder_model_merged.onnx' },
  int8: { encoder: 'onnx/encoder_model_quantized.onnx', decoderMerged: 'onnx/decoder_model_merged_quantized.onnx' },
} as const;

/** How Linears are written: fp32 MatMul, or quantize_dynamic's int8 with per-channel or per-tensor weight scales. */
export type OnnxQuant = 'fp32' | 'int8-per-channel' | 'int8-per-tensor';

/** Files copied next to the graphs when the model directory has them (as Optimum does). */
const SIDE_FILES = [
  'config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'vocab.json',
  'source.spm', 'target.spm', 'special_tokens_map.json',
];

export interface OnnxExportOptions {
  /** Emit quantize_dynamic-style int8 Linears instead of fp32 MatMuls. */
  int8?: boolean;
  /** With int8: one weight scale per tensor (quantize_dynamic's per_channel=False) instead of one per output channel. */
  perTensor?: boolean;
  /** Also write the transformers.js layout (onnx/ with the merged decoder); default true. */
  merged?: boolean;
  /** Called after each graph is written: (graphs done, total, file name). */
  onProgress?: (done: number, total: number, file: string) => void;
}

export interface OnnxExportResult {
  outDir: string;
  /** Graph files written, with their sizes in bytes. */
  graphs: { file: string; bytes: number }[];
  /** Side files copied (config, tokenizer). */
  copied: string[];
}

/** Masked attention logits get this added (exp underflows to exactly 0 after the max is subtracted). */
const MASK_BIAS = -1e9;

/** The static sinusoidal position table [n, d]: dims [0, d/2) sin, [d/2, d) cos of pos / 10000^(2i/d). */
export function sinusoidalTable(n: number, d: number): Float32Array {
  const t = new Float32Array(n * d);
  const half = Math.ceil(d / 2);
  for (let pos = 0; pos < n; pos++) {
    for (let i = 0; i < half; i++) {
      const angle = pos / 10000 ** ((2 * i) / d);
      t[pos * d + i] = Math.sin(angle);
      if (half + i < d) t[pos * d + half + i] = Math.cos(angle);
    }
  }
  return t;
}

/** [out, in] row-major → [in, out], times `scale`. */
function transposeScaled(w: Float32Array, out: number, inF: number, scale: number): Float32Array {
  const t = new Float32Array(w.length);
  for (let o = 0; o < out; o++) {
    const row = o * inF;
    for (let i = 0; i < inF; i++) t[i * out + o] = w[row + i] * scale;
  }
  return t;
}

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Symmetric per-output-channel int8 of an [out, in] matrix (times `scale`), written transposed as [in, out]
 * for MatMulInteger, with the [out] dequantisation scales.
 */
export function quantizePerChannel(w: Float32Array, out: number, inF: number, scale = 1): { q: Int8Array; scales: Float32Array } {
  const q = new Int8Array(w.length);
  const scales = new Float32Array(out);
  for (let o = 0; o < out; o++) {
    const row = o * inF;
    let mx = 0;
    for (let i = 0; i < inF; i++) mx = Math.max(mx, Math.abs(w[row + i] * scale));
    const s = mx > 0 ? mx / 127 : 1;
    scales[o] = s;
    const inv = 1 / s;
    for (let i = 0; i < inF; i++) q[i * out + o] = Math.max(-127, Math.min(127, roundHalfEven(w[row + i] * scale * inv)));
  }
  return { q, scales };
}

/** Symmetric per-tensor int8 (one scale, max|w| / 127), written transposed as [in, out]; `scales` has one value. */
export function quantizePerTensor(w: Float32Array, out: number, inF: number, scale = 1): { q: Int8Array; scales: Float32Array } {
  let mx = 0;
  for (let i = 0; i < w.length; i++) mx = Math.max(mx, Math.abs(w[i] * scale));
  const s = mx > 0 ? mx / 127 : 1;
  const inv = 1 / s;
  const q = new Int8Array(w.length);
  for (let o = 0; o < out; o++) {
    const row = o * inF;
    for (let i = 0; i < inF; i++) q[i * out + o] = Math.max(-127, Math.min(127, roundHalfEven(w[row + i] * scale * inv)));
  }
  return { q, scales: Float32Array.of(s) };
}

/** A GraphBuilder with generated tensor names, shared constants and the Marian building blocks. */
class MarianGraph {
  readonly g: GraphBuilder;
  private n = 0;
  private readonly consts = new Map<string, string>();
  /** Activation tensor → its DynamicQuantizeLinear outputs (quantize_dynamic quantizes each tensor once). */
  private readonly dql = new Map<string, [string, string, string]>();
  private readonly int8: boolean;
  /** Prefix of generated tensor and constant names (an If branch's names must not meet its sibling's). */
  private readonly prefix: string;

  constructor(
    name: string,
    private readonly cfg: MarianConfig,
    private readonly quant: OnnxQuant,
    private readonly cache: WeightCache,
    sub?: { parent: GraphBuilder; prefix: string },
  ) {
    this.int8 = quant !== 'fp32';
    this.prefix = sub?.prefix ?? '';
    this.g = new GraphBuilder({ name, opset: 17, producer: 'chimera export-onnx', parent: sub?.parent, nodePrefix: this.prefix });
  }

  private fresh(hint: string): string {
    return `/${this.prefix}${hint}_${this.n++}`;
  }

  op(type: string, inputs: string[], attrs: Record<string, number | number[] | { float: number }> = {}, out?: string): string {
    const o = out ?? this.fresh(type);
    this.g.node(type, inputs, [o], attrs);
    return o;
  }

  ops(type: string, inputs: string[], nOut: number, attrs: Record<string, number> = {}): string[] {
    const outs = Array.from({ length: nOut }, (_, i) => this.fresh(`${type}.${i}`));
    this.g.node(type, inputs, outs, attrs);
    return outs;
  }

  init(name: string, data: Float32Array | Int8Array | BigInt64Array, dims: number[]): string {
    this.g.initializer(name, data, dims);
    return name;
  }

  /** An int64 constant (a scalar when `scalar`), shared by every use. */
  i64(values: number[], scalar = false): string {
    const key = `i64:${scalar}:${values.join(',')}`;
    let name = this.consts.get(key);
    if (!name) {
      name = `${this.prefix}const_i64_${this.consts.size}`;
      this.g.initializer(name, int64(values), scalar ? [] : [values.length]);
      this.consts.set(key, name);
    }
    return name;
  }

  f32(v: number): string {
    const key = `f32:${v}`;
    let name = this.consts.get(key);
    if (!name) {
      name = `${this.prefix}const_f32_${this.consts.size}`;
      this.g.initializer(name, Float32Array.of(v), []);
      this.consts.set(key, name);
    }
    return name;
  }

  /** y = x W^T + b (fp32 MatMul, or the quantize_dynamic int8 pattern). `scale` multiplies W and b. */
  linear(x: string, l: Linear, name: string, scale = 1, out?: string): string {
    const bias = scale === 1 ? l.bias : l.bias.map((v) => v * scale);
    const b = this.init(`${name}.bias`, bias, [l.out]);
    if (!this.int8) {
      const w = this.init(`${name}.weight`, this.cache.transposed(l.weight, l.out, l.in, scale), [l.in, l.out]);
      return this.op('Add', [this.op('MatMul', [x, w]), b], {}, out);
    }
    const perTensor = this.quant === 'int8-per-tensor';
    const { q, scales } = this.cache.quantized(l.weight, l.out, l.in, scale, perTensor);
    const wq = this.init(`${name}.weight_quantized`, q, [l.in, l.out]);
    const ws = this.init(`${name}.weight_scale`, scales, perTensor ? [] : [l.out]);
    const wzp = this.consts.get('wzp') ?? this.init('weight_zero_point', Int8Array.of(0), []);
    this.consts.set('wzp', wzp);
    let d = this.dql.get(x);
    if (!d) {
      d = this.ops('DynamicQuantizeLinear', [x], 3) as [string, string, string];
      this.dql.set(x, d);
    }
    const [xq, xs, xzp] = d;
    const acc = this.op('MatMulInteger', [xq, wq, xzp, wzp]);
    const accF = this.op('Cast', [acc], { to: 1 });
    const s = this.op('Mul', [xs, ws]);
    return this.op('Add', [this.op('Mul', [accF, s]), b], {}, out);
  }

  layerNorm(x: string, n: Norm, name: string, out?: string): string {
    const gamma = this.init(`${name}.weight`, n.gamma, [n.gamma.length]);
    const beta = this.init(`${name}.bias`, n.beta, [n.beta.length]);
    return this.op('LayerNormalization', [x, gamma, beta], { axis: -1, epsilon: { float: 1e-5 } }, out);
  }

  activation(x: string): string {
    switch (this.cfg.activation) {
      case 'swish':
      case 'silu':
        return this.op('Mul', [x, this.op('Sigmoid', [x])]);
      case 'relu':
        return this.op('Relu', [x]);
      case 'gelu': {
        const erf = this.op('Erf', [this.op('Mul', [x, this.f32(Math.SQRT1_2)])]);
        return this.op('Mul', [this.op('Mul', [x, this.f32(0.5)]), this.op('Add', [erf, this.f32(1)])]);
      }
      case 'gelu_new': {
        const x3 = this.op('Mul', [this.op('Mul', [x, x]), x]);
        const inner = this.op('Mul', [this.op('Add', [x, this.op('Mul', [x3, this.f32(0.044715)])]), this.f32(Math.sqrt(2 / Math.PI))]);
        return this.op('Mul', [this.op('Mul', [x, this.f32(0.5)]), this.op('Add', [this.op('Tanh', [inner]), this.f32(1)])]);
      }
    }
  }

  /** [B, T, d] → [B, H, T, hd]. */
  heads(x: string, out?: string): string {
    const H = this.cfg.decoderHeads, hd = this.cfg.dModel / H;
    return this.op('Transpose', [this.op('Reshape', [x, this.i64([0, 0, H, hd])])], { perm: [0, 2, 1, 3] }, out);
  }

  /** softmax(q k^T + mask) v for q [B, H, T, hd], k/v [B, H, Tk, hd]; back to [B, T, d]. */
  attend(q: string, k: string, v: string, maskBias: string): string {
    const kt = this.op('Transpose', [k], { perm: [0, 1, 3, 2] });
    const s = this.op('Add', [this.op('MatMul', [q, kt]), maskBias]);
    const p = this.op('Softmax', [s], { axis: -1 });
    const o = this.op('Transpose', [this.op('MatMul', [p, v])], { perm: [0, 2, 1, 3] });
    return this.op('Reshape', [o, this.i64([0, 0, this.cfg.dModel])]);
  }

  /** int64 mask [B, S] (1 = attend) → additive bias [B, 1, 1, S]. */
  paddingBias(mask: string): string {
    const m = this.op('Cast', [mask], { to: 1 });
    const bias = this.op('Mul', [this.op('Sub', [m, this.f32(1)]), this.f32(-MASK_BIAS)]);
    return this.op('Reshape', [bias, this.i64([0, 1, 1, -1])]);
  }

  /** Scalar int64 size of axis `axis` of `x`. */
  dim(x: string, axis: number): string {
    return this.op('Gather', [this.op('Shape', [x]), this.i64([axis], true)], { axis: 0 });
  }

  /** Token embeddings (scaled) plus the sinusoidal rows for positions `pos` (int64 [T]). */
  embed(ids: string, pos: string, w: MarianWeights): string {
    const { vocabSize: V, dModel: d, maxPositions } = this.cfg;
    const table = this.init('model.shared.weight', w.embed, [V, d]);
    let x = this.op('Gather', [table, ids], { axis: 0 });
    if (this.cfg.scaleEmbedding) x = this.op('Mul', [x, this.f32(Math.sqrt(d))]);
    const posTable = this.init('embed_positions.weight', this.cache.positions(maxPositions, d), [maxPositions, d]);
    return this.op('Add', [x, this.op('Gather', [posTable, pos], { axis: 0 })]);
  }
}

/** Transposed / quantised weights, computed once and shared by the two decoder graphs. */
class WeightCache {
  private readonly t = new Map<Float32Array, Map<number, Float32Array>>();
  private readonly q = new Map<Float32Array, Map<string, { q: Int8Array; scales: Float32Array }>>();
  private pos: Float32Array | null = null;

  transposed(w: Float32Array, out: number, inF: number, scale: number): Float32Array {
    let m = this.t.get(w);
    if (!m) this.t.set(w, (m = new Map()));
    let r = m.get(scale);
    if (!r) m.set(scale, (r = transposeScaled(w, out, inF, scale)));
    return r;
  }

  quantized(w: Float32Array, out: number, inF: number, scale: number, perTensor: boolean): { q: Int8Array; scales: Float32Array } {
    let m = this.q.get(w);
    if (!m) this.q.set(w, (m = new Map()));
    const key = `${perTensor ? 't' : 'c'}${scale}`;
    let r = m.get(key);
    if (!r) m.set(key, (r = (perTensor ? quantizePerTensor : quantizePerChannel)(w, out, inF, scale)));
    return r;
  }

  positions(n: number, d: number): Float32Array {
    if (!this.pos || this.pos.length !== n * d) this.pos = sinusoidalTable(n, d);
    return this.pos;
  }
}

export interface MarianOnnxGraphs {
  encoder: Uint8Array;
  decoder: Uint8Array;
  decoderWithPast: Uint8Array;
  /** Optimum's merged decoder (transformers.js), when asked for. */
  decoderMerged?: Uint8Array;
}

function buildEncoder(cfg: MarianConfig, w: MarianWeights, quant: OnnxQuant, cache: WeightCache): Uint8Array {
  const G = new MarianGraph('encoder', cfg, quant, cache);
  const d = cfg.dModel, qs = (d / cfg.encoderHeads) ** -0.5;
  G.g.input('input_ids', 'int64', ['batch_size', 'encoder_sequence_length']);
  G.g.input('attention_mask', 'int64', ['batch_size', 'encoder_sequence_length']);
  G.g.output('last_hidden_state', 'float32', ['batch_size', 'encoder_sequence_length', d]);
  const S = G.dim('input_ids', 1);
  const pos = G.op('Range', [G.i64([0], true), S, G.i64([1], true)]);
  let h = G.embed('input_ids', pos, w);
  const mask = G.paddingBias('attention_mask');
  w.encoder.forEach((l, i) => {
    const p = `model.encoder.layers.${i}`;
    const q = G.heads(G.linear(h, l.selfAttn.q, `${p}.self_attn.q_proj`, qs));
    const k = G.heads(G.linear(h, l.selfAttn.k, `${p}.self_attn.k_proj`));
    const v = G.heads(G.linear(h, l.selfAttn.v, `${p}.self_attn.v_proj`));
    const a = G.linear(G.attend(q, k, v, mask), l.selfAttn.out, `${p}.self_attn.out_proj`);
    h = G.layerNorm(G.op('Add', [h, a]), l.selfAttnLayerNorm, `${p}.self_attn_layer_norm`);
    const f = G.linear(G.activation(G.linear(h, l.fc1, `${p}.fc1`)), l.fc2, `${p}.fc2`);
    const last = i === w.encoder.length - 1;
    h = G.layerNorm(G.op('Add', [h, f]), l.finalLayerNorm, `${p}.final_layer_norm`, last ? 'last_hidden_state' : undefined);
  });
  return G.g.toBytes();
}

const B = 'batch_size', S = 'encoder_sequence_length', T = 'decoder_sequence_length', P = 'past_decoder_sequence_length';

/**
 * The decoder graph (no past, or with past). With `sub` it is built as a branch of the merged decoder: no inputs
 * of its own (it reads the parent's), outputs named `sub.prefix + name` with their shapes left open, and the
 * with-past branch also outputs the encoder K/V it was given, so both branches have the same outputs.
 */
function buildDecoderGraph(cfg: MarianConfig, w: MarianWeights, quant: OnnxQuant, cache: WeightCache, withPast: boolean, sub?: { parent: GraphBuilder; prefix: string }): GraphBuilder {
  const G = new MarianGraph(sub ? `${sub.prefix}decoder` : withPast ? 'decoder_with_past' : 'decoder', cfg, quant, cache, sub);
  const d = cfg.dModel, H = cfg.decoderHeads, hd = d / H, V = cfg.vocabSize, qs = hd ** -0.5;
  const name = (n: string) => (sub ? sub.prefix + n : n);
  const output = (n: string, dims: Dim[]) => G.g.output(name(n), 'float32', sub ? null : dims);
  if (!sub) {
    G.g.input('input_ids', 'int64', [B, T]);
    G.g.input('encoder_attention_mask', 'int64', [B, S]);
    if (!withPast) G.g.input('encoder_hidden_states', 'float32', [B, S, d]);
  }
  const kv: Dim[] = [B, H, withPast ? `${P} + ${T}` : T, hd];
  const L = w.decoder.length;
  if (withPast && !sub)
    for (let i = 0; i < L; i++)
      for (const part of ['decoder.key', 'decoder.value', 'encoder.key', 'encoder.value'])
        G.g.input(`past_key_values.${i}.${part}`, 'float32', [B, H, part.startsWith('decoder') ? P : S, hd]);
  output('logits', [B, T, V]);
  for (let i = 0; i < L; i++) {
    output(`present.${i}.decoder.key`, kv);
    output(`present.${i}.decoder.value`, kv);
    if (!withPast || sub) {
      output(`present.${i}.encoder.key`, [B, H, S, hd]);
      output(`present.${i}.encoder.value`, [B, H, S, hd]);
    }
  }

  // positions past .. past + T; key k is masked for query q when k > q
  const t = G.dim('input_ids', 1);
  const past = withPast ? G.dim('past_key_values.0.decoder.key', 2) : G.i64([0], true);
  const end = withPast ? G.op('Add', [past, t]) : t;
  const one = G.i64([1], true);
  const qpos = G.op('Range', [past, end, one]);
  const kpos = G.op('Range', [G.i64([0], true), end, one]);
  const later = G.op('Greater', [G.op('Reshape', [kpos, G.i64([1, -1])]), G.op('Reshape', [qpos, G.i64([-1, 1])])]);
  const causal = G.op('Mul', [G.op('Cast', [later], { to: 1 }), G.f32(MASK_BIAS)]);
  const encMask = G.paddingBias('encoder_attention_mask');

  let h = G.embed('input_ids', qpos, w);
  w.decoder.forEach((l, i) => {
    const p = `model.decoder.layers.${i}`;
    const pk = `past_key_values.${i}`, pr = name(`present.${i}`);
    const q = G.heads(G.linear(h, l.selfAttn.q, `${p}.self_attn.q_proj`, qs));
    let k = G.heads(G.linear(h, l.selfAttn.k, `${p}.self_attn.k_proj`), withPast ? undefined : `${pr}.decoder.key`);
    let v = G.heads(G.linear(h, l.selfAttn.v, `${p}.self_attn.v_proj`), withPast ? undefined : `${pr}.decoder.value`);
    if (withPast) {
      k = G.op('Concat', [`${pk}.decoder.key`, k], { axis: 2 }, `${pr}.decoder.key`);
      v = G.op('Concat', [`${pk}.decoder.value`, v], { axis: 2 }, `${pr}.decoder.value`);
    }
    let a = G.linear(G.attend(q, k, v, causal), l.selfAttn.out, `${p}.self_attn.out_proj`);
    h = G.layerNorm(G.op('Add', [h, a]), l.selfAttnLayerNorm, `${p}.self_attn_layer_norm`);

    const cq = G.heads(G.linear(h, l.encoderAttn.q, `${p}.encoder_attn.q_proj`, qs));
    const ck = withPast ? `${pk}.encoder.key` : G.heads(G.linear('encoder_hidden_states', l.encoderAttn.k, `${p}.encoder_attn.k_proj`), `${pr}.encoder.key`);
    const cv = withPast ? `${pk}.encoder.value` : G.heads(G.linear('encoder_hidden_states', l.encoderAttn.v, `${p}.encoder_attn.v_proj`), `${pr}.encoder.value`);
    if (withPast && sub) {
      G.op('Identity', [ck], {}, `${pr}.encoder.key`);
      G.op('Identity', [cv], {}, `${pr}.encoder.value`);
    }
    a = G.linear(G.attend(cq, ck, cv, encMask), l.encoderAttn.out, `${p}.encoder_attn.out_proj`);
    h = G.layerNorm(G.op('Add', [h, a]), l.encoderAttnLayerNorm, `${p}.encoder_attn_layer_norm`);

    const f = G.linear(G.activation(G.linear(h, l.fc1, `${p}.fc1`)), l.fc2, `${p}.fc2`);
    h = G.layerNorm(G.op('Add', [h, f]), l.finalLayerNorm, `${p}.final_layer_norm`);
  });
  // the tied LM head: logits = h E^T + final_logits_bias
  const lmHead: Linear = { weight: w.embed, bias: w.finalLogitsBias, out: V, in: d };
  G.linear(h, lmHead, 'lm_head', 1, name('logits'));
  return G.g;
}

function buildDecoder(cfg: MarianConfig, w: MarianWeights, quant: OnnxQuant, cache: WeightCache, withPast: boolean): Uint8Array {
  return buildDecoderGraph(cfg, w, quant, cache, withPast).toBytes();
}

/**
 * Optimum's merged decoder: inputs encoder_attention_mask, input_ids, encoder_hidden_states, every
 * past_key_values.{i}.{decoder,encoder}.{key,value} and use_cache_branch (bool [1]); one If node whose then branch
 * is the with-past graph and else branch the no-past graph. With use_cache_branch false the past inputs are not
 * read (transformers.js feeds them empty, sequence length 0) and encoder_hidden_states is; with true the reverse.
 */
function buildMergedDecoder(cfg: MarianConfig, w: MarianWeights, quant: OnnxQuant, cache: WeightCache): Uint8Array {
  const top = new GraphBuilder({ name: 'decoder_model_merged', opset: 17, producer: 'chimera export-onnx' });
  const d = cfg.dModel, H = cfg.decoderHeads, hd = d / H, V = cfg.vocabSize, L = w.decoder.length;
  const SO = 'encoder_sequence_length_out';
  top.input('encoder_attention_mask', 'int64', [B, S]);
  top.input('input_ids', 'int64', [B, T]);
  top.input('encoder_hidden_states', 'float32', [B, S, d]);
  for (let i = 0; i < L; i++)
    for (const part of ['decoder.key', 'decoder.value', 'encoder.key', 'encoder.value'])
      top.input(`past_key_values.${i}.${part}`, 'float32', [B, H, part.startsWith('decoder') ? P : SO, hd]);
  top.input('use_cache_branch', 'bool', [1]);
  const outs = ['logits'];
  top.output('logits', 'float32', [B, T, V]);
  for (let i = 0; i < L; i++)
    for (const part of ['decoder.key', 'decoder.value', 'encoder.key', 'encoder.value']) {
      outs.push(`present.${i}.${part}`);
      top.output(`present.${i}.${part}`, 'float32', [B, H, part.startsWith('decoder') ? 'present_decoder_sequence_length' : SO, hd]);
    }
  const withPast = buildDecoderGraph(cfg, w, quant, cache, true, { parent: top, prefix: 'with_past/' });
  const noPast = buildDecoderGraph(cfg, w, quant, cache, false, { parent: top, prefix: 'no_past/' });
  top.node('If', ['use_cache_branch'], outs, { then_branch: { graph: withPast }, else_branch: { graph: noPast } });
  return top.toBytes();
}

function quantOf(opts: { int8?: boolean; perTensor?: boolean }): OnnxQuant {
  if (opts.perTensor && !opts.int8) throw new ChimeraError('E_ARG', 'perTensor (--per-tensor) applies to int8 exports only (add --int8)');
  return !opts.int8 ? 'fp32' : opts.perTensor ? 'int8-per-tensor' : 'int8-per-channel';
}

/** The graphs in memory (tests; exportMarianOnnx writes them one at a time instead). */
export function buildMarianOnnx(config: MarianConfig, weights: MarianWeights, opts: { int8?: boolean; perTensor?: boolean; merged?: boolean } = {}): MarianOnnxGraphs {
  const cache = new WeightCache();
  const quant = quantOf(opts);
  return {
    encoder: buildEncoder(config, weights, quant, cache),
    decoder: buildDecoder(config, weights, quant, cache, false),
    decoderWithPast: buildDecoder(config, weights, quant, cache, true),
    ...(opts.merged ? { decoderMerged: buildMergedDecoder(config, weights, quant, cache) } : {}),
  };
}

/**
 * Writes encoder_model.onnx, decoder_model.onnx and decoder_with_past_model.onnx for the model in `dir`, and (unless
 * `merged: false`) the transformers.js layout in onnx/ (ONNX_MERGED_FILES).
 */
export function exportMarianOnnx(dir: string, outDir: string, opts: OnnxExportOptions = {}): OnnxExportResult {
  requireModelDirectory(dir, 'export-onnx needs a Hugging Face model directory (config.json + model.safetensors), not a packed file');
  const config = readMarianConfig(dir);
  const weights = loadMarianWeights(dir, config);
  const quant = quantOf(opts);
  const merged = opts.merged ?? true;
  const mf = ONNX_MERGED_FILES[quant === 'fp32' ? 'fp32' : 'int8'];
  fs.mkdirSync(outDir, { recursive: true });
  const cache = new WeightCache();
  const graphs: { file: string; bytes: number }[] = [];
  const steps: [string, () => Uint8Array][] = [
    [ONNX_FILES.encoder, () => buildEncoder(config, weights, quant, cache)],
    [ONNX_FILES.decoder, () => buildDecoder(config, weights, quant, cache, false)],
    [ONNX_FILES.decoderWithPast, () => buildDecoder(config, weights, quant, cache, true)],
  ];
  if (merged) steps.push([mf.decoderMerged, () => buildMergedDecoder(config, weights, quant, cache)]);
  const total = steps.length + (merged ? 1 : 0);
  for (const [file, build] of steps) {
    const bytes = build();
    if (bytes.length >= 2 ** 31)
      throw new ChimeraError('E_MODEL', `${file} would be ${(bytes.length / 2 ** 30).toFixed(2)} GiB; protobuf limits one ONNX file to 2 GiB`);
    fs.mkdirSync(path.dirname(path.join(outDir, file)), { recursive: true });
    fs.writeFileSync(path.join(outDir, file), bytes);
    graphs.push({ file, bytes: bytes.length });
    opts.onProgress?.(graphs.length, total, file);
  }
  if (merged) {
    // the encoder is the same graph in both layouts: a hard link, or a copy where the file system has none
    const from = path.join(outDir, ONNX_FILES.encoder), to = path.join(outDir, mf.encoder);
    fs.rmSync(to, { force: true });
    try {
      fs.linkSync(from, to);
    } catch {
      fs.copyFileSync(from, to);
    }
    graphs.push({ file: mf.encoder, bytes: fs.statSync(to).size });
    opts.onProgress?.(graphs.length, total, mf.encoder);
  }
  const copied: string[] = [];
  for (const f of SIDE_FILES) {
    const src = path.join(dir, f);
    const dst = path.join(outDir, f);
    if (!fs.existsSync(src) || path.resolve(src) === path.resolve(dst)) continue;
    if (f === 'config.json') {
      // transformers.js feeds the past inputs only to models it knows are encoder-decoder
      const c = JSON.parse(fs.readFileSync(src, 'utf8')) as Record<string, unknown>;
      fs.writeFileSync(dst, JSON.stringify({ ...c, is_encoder_decoder: true }, null, 2) + '\n');
    } else fs.copyFileSync(src, dst);
    copied.push(f);
  }
  return { outDir: path.resolve(outDir), graphs, copied };
}
