/**
 * fp64 reference of transformers' MarianMTModel forward pass (post-LN encoder-decoder), written from the
 * architecture facts alone, for checking the engine. Plain loops over Float64Array; weights are widened from
 * the fp32 checkpoint once at load. Nothing here imports src/ or vitest.
 *
 * Layout facts used (REFERENCE §3, checked numerically against the shared reference outputs):
 * - embeddings: token row × sqrt(d_model) when scale_embedding, plus a static sinusoidal table; positions
 *   count from 0 in both encoder and decoder. Column k < d/2 holds sin(pos / 10000^(2k/d)), column d/2 + k
 *   holds cos(pos / 10000^(2k/d)): the same angle in both halves (transformers builds it as
 *   angle[j] = pos / 10000^(2·(j//2)/d), then sin of the even j into the first half and cos of the odd j into
 *   the second, and j = 2k and j = 2k + 1 share j//2 = k).
 * - layers: h = LN(h + SelfAttn(h)); decoder: h = LN(h + CrossAttn(h, enc)); h = LN(h + fc2(act(fc1(h)))).
 * - attention: q = q_proj(h) · head_dim^-0.5, all projections with bias, softmax over keys, out_proj.
 * - logits = h · E^T + final_logits_bias, E the (tied) embedding.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { getF32, readSafetensors, type MiniTensors } from './safetensors-mini';

export interface MarianRefConfig {
  dModel: number;
  encoderLayers: number;
  decoderLayers: number;
  encoderHeads: number;
  decoderHeads: number;
  encoderFfn: number;
  decoderFfn: number;
  vocabSize: number;
  scaleEmbedding: boolean;
  activation: string;
  padId: number;
  eosId: number;
  decoderStartId: number;
  forcedEosId: number | null;
  badWordIds: number[]; // single-token entries of bad_words_ids
  layerNormEps: number;
}

interface Linear {
  w: Float64Array; // [out, in]
  b: Float64Array; // [out]
  out: number;
  in: number;
}

interface Norm {
  g: Float64Array;
  b: Float64Array;
}

interface Attention {
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
}

interface EncoderLayer {
  selfAttn: Attention;
  selfNorm: Norm;
  fc1: Linear;
  fc2: Linear;
  ffnNorm: Norm;
}

interface DecoderLayer extends EncoderLayer {
  crossAttn: Attention;
  crossNorm: Norm;
}

export interface MarianRefModel {
  config: MarianRefConfig;
  encEmbed: Float64Array; // [V, d]
  decEmbed: Float64Array; // [V, d]
  lmHead: Float64Array; // [V, d]
  finalLogitsBias: Float64Array; // [V]
  encoder: EncoderLayer[];
  decoder: DecoderLayer[];
}

// ------------------------------------------------------------------------------------------------ loading

function num(cfg: Record<string, unknown>, key: string, fallback?: number): number {
  const v = cfg[key];
  if (typeof v === 'number') return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`config.json: ${key} missing`);
}

export function parseMarianConfig(cfg: Record<string, unknown>): MarianRefConfig {
  if (cfg.normalize_before === true) throw new Error('marian-ref: only post-LN (normalize_before false) is modelled');
  if (cfg.normalize_embedding === true) throw new Error('marian-ref: normalize_embedding is not modelled');
  const pad = num(cfg, 'pad_token_id');
  const bad = Array.isArray(cfg.bad_words_ids)
    ? (cfg.bad_words_ids as unknown[]).filter((w): w is number[] => Array.isArray(w) && w.length === 1).map((w) => w[0])
    : [pad];
  const dModel = num(cfg, 'd_model');
  return {
    dModel,
    encoderLayers: num(cfg, 'encoder_layers'),
    decoderLayers: num(cfg, 'decoder_layers'),
    encoderHeads: num(cfg, 'encoder_attention_heads'),
    decoderHeads: num(cfg, 'decoder_attention_heads'),
    encoderFfn: num(cfg, 'encoder_ffn_dim'),
    decoderFfn: num(cfg, 'decoder_ffn_dim'),
    vocabSize: num(cfg, 'vocab_size'),
    scaleEmbedding: cfg.scale_embedding !== false,
    activation: typeof cfg.activation_function === 'string' ? cfg.activation_function : 'swish',
    padId: pad,
    eosId: num(cfg, 'eos_token_id'),
    decoderStartId: num(cfg, 'decoder_start_token_id', pad),
    forcedEosId: typeof cfg.forced_eos_token_id === 'number' ? cfg.forced_eos_token_id : null,
    badWordIds: bad,
    layerNormEps: 1e-5,
  };
}

function f64(a: Float32Array): Float64Array {
  return Float64Array.from(a);
}

function linear(t: MiniTensors, prefix: string, out: number, inp: number): Linear {
  const w = getF32(t, `${prefix}.weight`);
  const b = getF32(t, `${prefix}.bias`);
  if (w.length !== out * inp || b.length !== out) throw new Error(`${prefix}: expected [${out}, ${inp}]`);
  return { w: f64(w), b: f64(b), out, in: inp };
}

function norm(t: MiniTensors, prefix: string, d: number): Norm {
  const g = getF32(t, `${prefix}.weight`);
  const b = getF32(t, `${prefix}.bias`);
  if (g.length !== d || b.length !== d) throw new Error(`${prefix}: expected [${d}]`);
  return { g: f64(g), b: f64(b) };
}

function attention(t: MiniTensors, prefix: string, d: number): Attention {
  return {
    q: linear(t, `${prefix}.q_proj`, d, d),
    k: linear(t, `${prefix}.k_proj`, d, d),
    v: linear(t, `${prefix}.v_proj`, d, d),
    o: linear(t, `${prefix}.out_proj`, d, d),
  };
}

function firstPresent(t: MiniTensors, names: string[]): Float32Array {
  for (const n of names) if (t.has(n)) return getF32(t, n);
  throw new Error(`none of ${names.join(', ')} in the checkpoint`);
}

/** Builds the reference from a parsed config.json object and the checkpoint's tensors. */
export function marianRefFromTensors(cfgJson: Record<string, unknown>, t: MiniTensors): MarianRefModel {
  const config = parseMarianConfig(cfgJson);
  const { dModel: d, vocabSize: V } = config;
  const shared = ['model.shared.weight', 'model.encoder.embed_tokens.weight', 'model.decoder.embed_tokens.weight', 'lm_head.weight'];
  const encEmbed = firstPresent(t, ['model.encoder.embed_tokens.weight', ...shared]);
  const decEmbed = firstPresent(t, ['model.decoder.embed_tokens.weight', ...shared]);
  const lmHead = firstPresent(t, ['lm_head.weight', 'model.decoder.embed_tokens.weight', ...shared]);
  for (const e of [encEmbed, decEmbed, lmHead]) if (e.length !== V * d) throw new Error('embedding is not [vocab, d_model]');
  const flb = t.has('final_logits_bias') ? getF32(t, 'final_logits_bias') : new Float32Array(V);
  if (flb.length !== V) throw new Error('final_logits_bias is not [1, vocab]');
  const encoder: EncoderLayer[] = [];
  for (let i = 0; i < config.encoderLayers; i++) {
    const p = `model.encoder.layers.${i}`;
    encoder.push({
      selfAttn: attention(t, `${p}.self_attn`, d),
      selfNorm: norm(t, `${p}.self_attn_layer_norm`, d),
      fc1: linear(t, `${p}.fc1`, config.encoderFfn, d),
      fc2: linear(t, `${p}.fc2`, d, config.encoderFfn),
      ffnNorm: norm(t, `${p}.final_layer_norm`, d),
    });
  }
  const decoder: DecoderLayer[] = [];
  for (let i = 0; i < config.decoderLayers; i++) {
    const p = `model.decoder.layers.${i}`;
    decoder.push({
      selfAttn: attention(t, `${p}.self_attn`, d),
      selfNorm: norm(t, `${p}.self_attn_layer_norm`, d),
      crossAttn: attention(t, `${p}.encoder_attn`, d),
      crossNorm: norm(t, `${p}.encoder_attn_layer_norm`, d),
      fc1: linear(t, `${p}.fc1`, config.decoderFfn, d),
      fc2: linear(t, `${p}.fc2`, d, config.decoderFfn),
      ffnNorm: norm(t, `${p}.final_layer_norm`, d),
    });
  }
  const share = (a: Float32Array, b: Float32Array, fa: Float64Array): Float64Array => (a === b ? fa : f64(b));
  const enc64 = f64(encEmbed);
  const dec64 = share(encEmbed, decEmbed, enc64);
  const lm64 = lmHead === decEmbed ? dec64 : share(encEmbed, lmHead, enc64);
  return { config, encEmbed: enc64, decEmbed: dec64, lmHead: lm64, finalLogitsBias: f64(flb), encoder, decoder };
}

/** Loads `<dir>/config.json` and `<dir>/model.safetensors`. */
export function marianRefLoad(dir: string): MarianRefModel {
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  return marianRefFromTensors(cfg, readSafetensors(join(dir, 'model.safetensors')));
}

// ------------------------------------------------------------------------------------------------ math

/** y[r, :] = x[r, :] · W^T + b for rows r. */
function applyLinear(x: Float64Array, rows: number, l: Linear): Float64Array {
  const y = new Float64Array(rows * l.out);
  for (let r = 0; r < rows; r++) {
    const xo = r * l.in;
    for (let o = 0; o < l.out; o++) {
      const wo = o * l.in;
      let s = l.b[o];
      for (let i = 0; i < l.in; i++) s += x[xo + i] * l.w[wo + i];
      y[r * l.out + o] = s;
    }
  }
  return y;
}

/**
 * erf in fp64 to ~1e-13: the Maclaurin series for |x| < 3, the continued fraction of erfc (modified Lentz)
 * beyond. Good far past what a 1e-4 comparison needs.
 */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 200; n++) {
      term *= (-ax * ax) / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  if (ax > 7) return Math.sign(x);
  // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
  const tiny = 1e-300;
  let f = ax;
  let C = ax;
  let D = 0;
  for (let n = 1; n < 500; n++) {
    const a = n / 2;
    D = ax + a * D;
    D = D === 0 ? tiny : D;
    C = ax + a / C;
    C = C === 0 ? tiny : C;
    D = 1 / D;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

function activate(x: Float64Array, kind: string): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    switch (kind) {
      case 'swish':
      case 'silu':
        x[i] = v / (1 + Math.exp(-v));
        break;
      case 'relu':
        x[i] = v > 0 ? v : 0;
        break;
      case 'gelu':
        x[i] = 0.5 * v * (1 + erf(v / Math.SQRT2));
        break;
      case 'gelu_new':
      case 'gelu_pytorch_tanh':
        x[i] = 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));
        break;
      default:
        throw new Error(`marian-ref: activation ${kind} is not modelled`);
    }
  }
}

/** In place: x[r] = LN(x[r] + add[r]). */
function addNorm(x: Float64Array, add: Float64Array, rows: number, n: Norm, eps: number): void {
  const d = n.g.length;
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    let mean = 0;
    for (let i = 0; i < d; i++) {
      x[o + i] += add[o + i];
      mean += x[o + i];
    }
    mean /= d;
    let v = 0;
    for (let i = 0; i < d; i++) v += (x[o + i] - mean) ** 2;
    const inv = 1 / Math.sqrt(v / d + eps);
    for (let i = 0; i < d; i++) x[o + i] = (x[o + i] - mean) * inv * n.g[i] + n.b[i];
  }
}

/**
 * Multi-head attention of `rows` queries (already projected, unscaled) over `keys` keys/values.
 * Query r may see keys [0, visible(r)). Returns the concatenated heads before out_proj.
 */
function attend(
  q: Float64Array,
  rows: number,
  k: Float64Array,
  v: Float64Array,
  keys: number,
  d: number,
  heads: number,
  visible: (r: number) => number,
): Float64Array {
  const hd = d / heads;
  const scale = 1 / Math.sqrt(hd);
  const out = new Float64Array(rows * d);
  const p = new Float64Array(keys);
  for (let r = 0; r < rows; r++) {
    const n = visible(r);
    for (let h = 0; h < heads; h++) {
      const qo = r * d + h * hd;
      let max = -Infinity;
      for (let j = 0; j < n; j++) {
        let s = 0;
        const ko = j * d + h * hd;
        for (let i = 0; i < hd; i++) s += q[qo + i] * scale * k[ko + i];
        p[j] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let j = 0; j < n; j++) {
        p[j] = Math.exp(p[j] - max);
        sum += p[j];
      }
      for (let j = 0; j < n; j++) {
        const w = p[j] / sum;
        const vo = j * d + h * hd;
        for (let i = 0; i < hd; i++) out[qo + i] += w * v[vo + i];
      }
    }
  }
  return out;
}

/** Row `pos` of the static sinusoidal table, added into x[off .. off + d). */
function addPosition(x: Float64Array, off: number, pos: number, d: number): void {
  const half = d >> 1;
  // For odd d transformers' sin half has ceil(d/2) columns; Marian models have even d.
  if (d % 2 !== 0) throw new Error('marian-ref: odd d_model is not modelled');
  for (let k = 0; k < half; k++) {
    const angle = pos / Math.pow(10000, (2 * k) / d);
    x[off + k] += Math.sin(angle);
    x[off + half + k] += Math.cos(angle);
  }
}

/** The static sinusoidal position table [n, d] (exported for tests of the layout). */
export function sinusoidalPositions(n: number, d: number): Float64Array {
  const t = new Float64Array(n * d);
  for (let p = 0; p < n; p++) addPosition(t, p * d, p, d);
  return t;
}

function embed(model: MarianRefModel, table: Float64Array, ids: number[], firstPos: number): Float64Array {
  const { dModel: d, vocabSize: V, scaleEmbedding } = model.config;
  const s = scaleEmbedding ? Math.sqrt(d) : 1;
  const x = new Float64Array(ids.length * d);
  ids.forEach((id, r) => {
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new Error(`marian-ref: token id ${id} out of range`);
    for (let i = 0; i < d; i++) x[r * d + i] = table[id * d + i] * s;
    addPosition(x, r * d, firstPos + r, d);
  });
  return x;
}

// ------------------------------------------------------------------------------------------------ forward

/** Encoder output [S, d] for one unpadded source sequence (which should already end in eos). */
export function encoderForward(model: MarianRefModel, srcIds: number[]): Float64Array {
  const { dModel: d, encoderHeads: heads, activation, layerNormEps: eps } = model.config;
  const S = srcIds.length;
  if (S === 0) throw new Error('marian-ref: empty source');
  const h = embed(model, model.encEmbed, srcIds, 0);
  for (const L of model.encoder) {
    const q = applyLinear(h, S, L.selfAttn.q);
    const k = applyLinear(h, S, L.selfAttn.k);
    const v = applyLinear(h, S, L.selfAttn.v);
    const a = applyLinear(attend(q, S, k, v, S, d, heads, () => S), S, L.selfAttn.o);
    addNorm(h, a, S, L.selfNorm, eps);
    const f = applyLinear(h, S, L.fc1);
    activate(f, activation);
    addNorm(h, applyLinear(f, S, L.fc2), S, L.ffnNorm, eps);
  }
  return h;
}

/**
 * Decoder state: per-layer self-attention keys/values for the tokens fed so far, and the cross-attention
 * keys/values of the encoder output (computed once).
 */
export interface DecoderState {
  encLen: number;
  crossK: Float64Array[];
  crossV: Float64Array[];
  selfK: number[][]; // per layer, flat [len * d] as a growable array
  selfV: number[][];
  len: number;
}

export function decoderInit(model: MarianRefModel, enc: Float64Array): DecoderState {
  const d = model.config.dModel;
  const S = enc.length / d;
  return {
    encLen: S,
    crossK: model.decoder.map((L) => applyLinear(enc, S, L.crossAttn.k)),
    crossV: model.decoder.map((L) => applyLinear(enc, S, L.crossAttn.v)),
    selfK: model.decoder.map(() => []),
    selfV: model.decoder.map(() => []),
    len: 0,
  };
}

/**
 * Feeds `ids` (positions state.len, state.len + 1, ...) through the decoder with the causal mask, appends them
 * to the state, and returns their final hidden states [ids.length, d].
 */
export function decoderStep(model: MarianRefModel, state: DecoderState, ids: number[]): Float64Array {
  const { dModel: d, decoderHeads: heads, activation, layerNormEps: eps } = model.config;
  const T = ids.length;
  const past = state.len;
  const h = embed(model, model.decEmbed, ids, past);
  model.decoder.forEach((L, li) => {
    const q = applyLinear(h, T, L.selfAttn.q);
    const kNew = applyLinear(h, T, L.selfAttn.k);
    const vNew = applyLinear(h, T, L.selfAttn.v);
    for (let i = 0; i < kNew.length; i++) {
      state.selfK[li].push(kNew[i]);
      state.selfV[li].push(vNew[i]);
    }
    const K = Float64Array.from(state.selfK[li]);
    const Vv = Float64Array.from(state.selfV[li]);
    const sa = attend(q, T, K, Vv, past + T, d, heads, (r) => past + r + 1);
    addNorm(h, applyLinear(sa, T, L.selfAttn.o), T, L.selfNorm, eps);
    const cq = applyLinear(h, T, L.crossAttn.q);
    const ca = attend(cq, T, state.crossK[li], state.crossV[li], state.encLen, d, heads, () => state.encLen);
    addNorm(h, applyLinear(ca, T, L.crossAttn.o), T, L.crossNorm, eps);
    const f = applyLinear(h, T, L.fc1);
    activate(f, activation);
    addNorm(h, applyLinear(f, T, L.fc2), T, L.ffnNorm, eps);
  });
  state.len += T;
  return h;
}

/** LM head: logits [rows, V] = h · E^T + final_logits_bias. */
export function lmHeadLogits(model: MarianRefModel, h: Float64Array): Float64Array {
  const { dModel: d, vocabSize: V } = model.config;
  const rows = h.length / d;
  const out = new Float64Array(rows * V);
  for (let r = 0; r < rows; r++) {
    for (let t = 0; t < V; t++) {
      let s = model.finalLogitsBias[t];
      const eo = t * d;
      for (let i = 0; i < d; i++) s += h[r * d + i] * model.lmHead[eo + i];
      out[r * V + t] = s;
    }
  }
  return out;
}

/** Teacher-forced logits [T, V] for decoder inputs (normally [start, y1, ..., y_{T-1}]). */
export function decoderLogits(model: MarianRefModel, srcIds: number[], decoderInputIds: number[]): Float64Array {
  const state = decoderInit(model, encoderForward(model, srcIds));
  return lmHeadLogits(model, decoderStep(model, state, decoderInputIds));
}

/**
 * Greedy decoding with transformers' semantics: start from decoder_start_token_id; the bad-word ids (pad) are
 * never chosen; `maxLength` counts the start token; when one slot is left, forced_eos_token_id is forced; stop
 * after eos. Returns the whole sequence, start token included (transformers' `generate` output).
 */
export function greedy(model: MarianRefModel, srcIds: number[], maxLength: number): number[] {
  const { eosId, forcedEosId, decoderStartId, badWordIds, vocabSize: V } = model.config;
  const state = decoderInit(model, encoderForward(model, srcIds));
  const seq = [decoderStartId];
  let next = decoderStartId;
  while (seq.length < maxLength) {
    const logits = lmHeadLogits(model, decoderStep(model, state, [next]));
    for (const b of badWordIds) logits[b] = -Infinity;
    if (forcedEosId !== null && seq.length === maxLength - 1) {
      next = forcedEosId;
    } else {
      let best = 0;
      for (let t = 1; t < V; t++) if (logits[t] > logits[best]) best = t;
      next = best;
    }
    seq.push(next);
    if (next === eosId) break;
  }
  return seq;
}

// ------------------------------------------------------------------------------------------------ text

/** Text <-> ids for a model directory, for tests. `encode` appends eos (the Marian post-processor does). */
export interface RefTokenizer {
  /** null when @huggingface/tokenizers is not installed: only decoding is available then. */
  encode: ((text: string) => number[]) | null;
  decode: (ids: number[]) => string;
}

/**
 * Loads `tokenizer.json` through @huggingface/tokenizers when that package is installed. Decoding never needs
 * it: pieces from vocab.json are joined, '▁' becomes a space, special ids (eos, unk, pad) are skipped and the
 * result trimmed, which is what the Metaspace decoder does for these vocabularies.
 */
export async function loadRefTokenizer(dir: string): Promise<RefTokenizer> {
  const vocab = JSON.parse(readFileSync(join(dir, 'vocab.json'), 'utf8')) as Record<string, number>;
  const pieces: string[] = [];
  for (const [piece, id] of Object.entries(vocab)) pieces[id] = piece;
  const special = new Set(['</s>', '<unk>', '<pad>']);
  const decode = (ids: number[]): string =>
    ids
      .map((id) => pieces[id] ?? '')
      .filter((p) => !special.has(p))
      .join('')
      .replace(/\u2581/g, ' ')
      .trim();
  let encode: RefTokenizer['encode'] = null;
  try {
    const mod = (await import('@huggingface/tokenizers')) as unknown as {
      Tokenizer: new (json: object, cfg: object) => { encode(text: string): { ids: number[] } };
    };
    const tok = new mod.Tokenizer(
      JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as object,
      JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as object,
    );
    encode = (text: string) => tok.encode(text).ids.map(Number);
  } catch {
    encode = null;
  }
  return { encode, decode };
}
