/**
 * Writes a Marian model directory in Hugging Face layout with deterministic random weights: for tests and
 * benchmarks that need a model of a given geometry (e.g. OPUS-MT's) without downloading one. The output
 * loads with readMarianConfig / loadMarianWeights / MarianTokenizer like a real checkpoint; it does not
 * translate, but its tokenizer really encodes and decodes text.
 */
import { Rng } from '../util/rng';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ChimeraError } from '../errors';
import { writeSafetensors, type FloatDtype, type WritableTensor } from './safetensors';

export type ModelPreset = 'tiny' | 'opus-mt-en-de';

export interface MakeModelOptions {
  preset: ModelPreset;
  seed?: number;
  /** Output directory (created if needed; existing model files in it are overwritten). */
  out: string;
  /** Storage dtype of model.safetensors. Default F32. */
  dtype?: FloatDtype;
}

export interface MakeModelResult {
  dir: string;
  files: string[];
  params: number;
}

interface Geometry {
  vocab: number;
  d: number;
  layers: number;
  heads: number;
  ffn: number;
  maxPos: number;
  maxLength: number;
}

const PRESETS: Record<ModelPreset, Geometry> = {
  tiny: { vocab: 256, d: 32, layers: 2, heads: 4, ffn: 64, maxPos: 64, maxLength: 64 },
  'opus-mt-en-de': { vocab: 58101, d: 512, layers: 6, heads: 8, ffn: 2048, maxPos: 512, maxLength: 512 },
};

// ------------------------------------------------------------------------------------------------ vocabulary

const WORDS = [
  // English
  'the', 'a', 'an', 'man', 'woman', 'men', 'women', 'dog', 'cat', 'is', 'are', 'in', 'on', 'at', 'with', 'and',
  'of', 'to', 'two', 'three', 'people', 'boy', 'girl', 'child', 'street', 'water', 'red', 'blue', 'white',
  'black', 'green', 'sitting', 'standing', 'walking', 'playing', 'running', 'wearing', 'shirt', 'ball', 'front',
  'his', 'her', 'while', 'group', 'young', 'outside', 'small', 'big', 'house', 'A', 'The', 'Two',
  // German
  'der', 'die', 'das', 'ein', 'eine', 'einem', 'einer', 'und', 'mit', 'auf', 'im', 'ist', 'Mann', 'Frau',
  'Hund', 'Kind', 'Junge', 'Mädchen', 'zwei', 'drei', 'Straße', 'Wasser', 'rot', 'blau', 'weiß', 'schwarz',
  'grün', 'sitzt', 'steht', 'spielt', 'läuft', 'trägt', 'Hemd', 'Ball', 'vor', 'seine', 'ihre', 'Gruppe',
  'Menschen', 'Männer', 'Frauen', 'klein', 'groß', 'Haus', 'Ein', 'Eine', 'Zwei',
];
const SUFFIXES = ['ing', 'ed', 'er', 'en', 'es', 'st', 'ch', 'sch', 'ung', 'te', 'th', 'nd', 'ie', 'ei', 'ly', 're'];

function characters(): string[] {
  const out: string[] = [];
  for (let c = 97; c <= 122; c++) out.push(String.fromCharCode(c));
  for (let c = 65; c <= 90; c++) out.push(String.fromCharCode(c));
  for (let c = 48; c <= 57; c++) out.push(String.fromCharCode(c));
  out.push(...'.,!?\'"-:;()'.split(''), ...'äöüÄÖÜß'.split(''));
  return out;
}

/** Pieces with unigram log-probability scores, in id order 2..V-2 (0 is </s>, 1 <unk>, V-1 <pad>). */
function pieces(vocab: number, rng: Rng): [string, number][] {
  const want = vocab - 3;
  const seen = new Set<string>(['</s>', '<unk>', '<pad>']);
  const out: [string, number][] = [];
  const add = (p: string, score: number) => {
    if (out.length < want && !seen.has(p)) {
      seen.add(p);
      out.push([p, Math.fround(score)]);
    }
  };
  // Every character alone and word-initial first, so that any text over them encodes without <unk>.
  add('▁', -7);
  for (const c of characters()) {
    add(`▁${c}`, -9 - 0.5 * rng.uniform());
    add(c, -10 - 0.5 * rng.uniform());
  }
  WORDS.forEach((w, i) => add(`▁${w}`, -4 - 0.02 * i - 0.1 * rng.uniform()));
  SUFFIXES.forEach((s, i) => add(s, -6 - 0.05 * i));
  // Fill up with lowercase letter sequences, shortest first, each with and without the word-start mark.
  const letters = 'etaoinshrdlcumwfgypbvkjxqz';
  for (let len = 2; out.length < want; len++) {
    const idx = new Array<number>(len).fill(0);
    while (out.length < want) {
      const s = idx.map((i) => letters[i]).join('');
      const score = -8 - 1.5 * len - idx.reduce((a, i) => a + i, 0) * 0.05 - 0.1 * rng.uniform();
      add(`▁${s}`, score);
      add(s, score - 0.5);
      let k = len - 1;
      while (k >= 0 && ++idx[k] === letters.length) idx[k--] = 0;
      if (k < 0) break;
    }
  }
  return out;
}

function tokenizerJson(vocab: [string, number][], V: number): object {
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const metaspace = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '</s>'), special(1, '<unk>'), special(V - 1, '<pad>')],
    normalizer: { type: 'NFKC' },
    pre_tokenizer: metaspace,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
      pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
      special_tokens: { '</s>': { id: '</s>', ids: [0], tokens: ['</s>'] } },
    },
    decoder: metaspace,
    model: { type: 'Unigram', unk_id: 1, vocab, byte_fallback: false },
  };
}

// ---------------------------------------------------------------------------------------------------- model

function makeWeights(g: Geometry, rng: Rng, dtype: FloatDtype): { tensors: Record<string, WritableTensor>; params: number } {
  const tensors: Record<string, WritableTensor> = {};
  let params = 0;
  const put = (name: string, shape: number[], fill: (i: number) => number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = fill(i);
    tensors[name] = { dtype, shape, data };
    params += n;
  };
  const normal = (std: number) => () => std * rng.normal();
  // Linear weights ~ N(0, 1/fan_in) keep activations O(1); small random biases and norm parameters make a
  // mix-up of weight and bias, or of gamma and beta, visible in tests.
  const linear = (p: string, out: number, inF: number) => {
    put(`${p}.weight`, [out, inF], normal(1 / Math.sqrt(inF)));
    put(`${p}.bias`, [out], normal(0.02));
  };
  const norm = (p: string) => {
    put(`${p}.weight`, [g.d], () => 1 + 0.05 * rng.normal());
    put(`${p}.bias`, [g.d], normal(0.02));
  };
  const attention = (p: string) => ['q_proj', 'k_proj', 'v_proj', 'out_proj'].forEach((x) => linear(`${p}.${x}`, g.d, g.d));

  put('model.shared.weight', [g.vocab, g.d], normal(1 / Math.sqrt(g.d)));
  put('final_logits_bias', [1, g.vocab], () => 0);
  for (let i = 0; i < g.layers; i++) {
    const p = `model.encoder.layers.${i}`;
    attention(`${p}.self_attn`);
    norm(`${p}.self_attn_layer_norm`);
    linear(`${p}.fc1`, g.ffn, g.d);
    linear(`${p}.fc2`, g.d, g.ffn);
    norm(`${p}.final_layer_norm`);
  }
  for (let i = 0; i < g.layers; i++) {
    const p = `model.decoder.layers.${i}`;
    attention(`${p}.self_attn`);
    norm(`${p}.self_attn_layer_norm`);
    attention(`${p}.encoder_attn`);
    norm(`${p}.encoder_attn_layer_norm`);
    linear(`${p}.fc1`, g.ffn, g.d);
    linear(`${p}.fc2`, g.d, g.ffn);
    norm(`${p}.final_layer_norm`);
  }
  return { tensors, params };
}

/** Writes config.json, generation_config.json, tokenizer.json, tokenizer_config.json, vocab.json, model.safetensors. */
export function makeModel(opts: MakeModelOptions): MakeModelResult {
  const g = PRESETS[opts.preset];
  if (!g) throw new ChimeraError('E_ARG', `preset must be one of ${Object.keys(PRESETS).join(', ')}, got ${String(opts.preset)}`);
  if (typeof opts.out !== 'string' || opts.out === '') throw new ChimeraError('E_ARG', 'out must be a directory path');
  const seed = opts.seed ?? 1;
  if (!Number.isInteger(seed)) throw new ChimeraError('E_ARG', `seed must be an integer, got ${String(seed)}`);
  const dtype = opts.dtype ?? 'F32';
  if (!['F32', 'F16', 'BF16'].includes(dtype)) throw new ChimeraError('E_ARG', `dtype must be F32, F16 or BF16, got ${String(dtype)}`);

  const rng = new Rng(seed);
  const V = g.vocab;
  const pad = V - 1;
  const vocab: [string, number][] = [['</s>', 0], ['<unk>', 0], ...pieces(V, rng), ['<pad>', 0]];

  const config = {
    architectures: ['MarianMTModel'],
    model_type: 'marian',
    vocab_size: V,
    decoder_vocab_size: V,
    d_model: g.d,
    encoder_layers: g.layers,
    decoder_layers: g.layers,
    encoder_attention_heads: g.heads,
    decoder_attention_heads: g.heads,
    encoder_ffn_dim: g.ffn,
    decoder_ffn_dim: g.ffn,
    activation_function: 'swish',
    max_position_embeddings: g.maxPos,
    scale_embedding: true,
    normalize_before: false,
    normalize_embedding: false,
    static_position_embeddings: true,
    add_bias_logits: false,
    add_final_layer_norm: false,
    share_encoder_decoder_embeddings: true,
    tie_word_embeddings: true,
    is_encoder_decoder: true,
    pad_token_id: pad,
    eos_token_id: 0,
    bos_token_id: 0,
    decoder_start_token_id: pad,
    forced_eos_token_id: 0,
    bad_words_ids: [[pad]],
    num_beams: 4,
    max_length: g.maxLength,
    dropout: 0.1,
    attention_dropout: 0.0,
    activation_dropout: 0.0,
    init_std: 0.02,
    use_cache: true,
    torch_dtype: dtype === 'F32' ? 'float32' : dtype === 'F16' ? 'float16' : 'bfloat16',
    chimera_make_model: { preset: opts.preset, seed },
  };
  const generation = {
    bad_words_ids: [[pad]],
    bos_token_id: 0,
    decoder_start_token_id: pad,
    eos_token_id: 0,
    forced_eos_token_id: 0,
    max_length: g.maxLength,
    num_beams: 4,
    pad_token_id: pad,
  };
  const tokenizerConfig = {
    model_max_length: g.maxPos,
    eos_token: '</s>',
    unk_token: '<unk>',
    pad_token: '<pad>',
    separate_vocabs: false,
    source_lang: 'en',
    target_lang: 'de',
    tokenizer_class: 'MarianTokenizer',
  };

  const dir = path.resolve(opts.out);
  fs.mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  const writeJson = (name: string, value: unknown) => {
    fs.writeFileSync(path.join(dir, name), JSON.stringify(value, null, 2) + '\n');
    files.push(name);
  };
  writeJson('config.json', config);
  writeJson('generation_config.json', generation);
  writeJson('tokenizer_config.json', tokenizerConfig);
  writeJson('vocab.json', Object.fromEntries(vocab.map(([p], i) => [p, i])));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson(vocab, V)));
  files.push('tokenizer.json');

  const { tensors, params } = makeWeights(g, rng, dtype);
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  files.push('model.safetensors');
  return { dir, files, params };
}
