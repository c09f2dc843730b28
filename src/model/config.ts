/**
 * Reads a Hugging Face `MarianMTModel` config.json (plus generation_config.json when present) into a typed,
 * validated MarianConfig. Anything the engine does not implement is refused with E_MODEL naming the field,
 * rather than silently computing a different function.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MARIAN_ACTIVATIONS, type MarianActivation } from '../activation';
import { ChimeraError } from '../errors';

export type { MarianActivation };
const ACTIVATIONS = Object.keys(MARIAN_ACTIVATIONS) as readonly MarianActivation[];

export interface MarianConfig {
  vocabSize: number;
  dModel: number;
  encoderLayers: number;
  decoderLayers: number;
  encoderHeads: number;
  decoderHeads: number;
  encoderFfn: number;
  decoderFfn: number;
  activation: MarianActivation;
  maxPositions: number;
  scaleEmbedding: boolean;
  padId: number;
  eosId: number;
  decoderStartId: number;
  forcedEosId: number | null;
  /** Token sequences never to generate; Marian always bans pad, so [[padId]] when the files say nothing. */
  badWordsIds: number[][];
  numBeams: number;
  /** Generation length limit, counting the decoder start token (transformers' max_length). */
  maxLength: number;
  // The fields below are fixed by what this engine supports; they are kept so callers can see them.
  normalizeBefore: false;
  normalizeEmbedding: false;
  staticPositionEmbeddings: true;
  shareEmbeddings: true;
  tieWordEmbeddings: true;
}

type Json = Record<string, unknown>;

/** A value for an error message: JSON, cut short; never throws (deep nesting overflows JSON.stringify). */
function show(v: unknown): string {
  try {
    const j = JSON.stringify(v);
    if (j === undefined) return String(v);
    return j.length > 80 ? `${j.slice(0, 80)}...` : j;
  } catch {
    return Array.isArray(v) ? 'a deeply nested array' : typeof v;
  }
}

/**
 * Sane upper bounds on a config, checked before anything is allocated: a hostile or corrupt config.json (or
 * packed header) must fail at once with E_MODEL, not allocate gigabytes first. Real Marian models sit far
 * below them (opus-mt: d_model 512, 6 + 6 layers, 512 positions, 58k-65k tokens).
 */
export const CONFIG_CAPS = {
  vocabSize: 2 ** 22,
  dModel: 16384,
  layers: 256,
  heads: 1024,
  ffn: 131072,
  maxPositions: 65536,
  /** max_position_embeddings x d_model: the sinusoid table the engine computes (512 MiB of fp32). */
  positionFloats: 2 ** 27,
  /** vocab_size x d_model: the embedding (8 GiB of fp32). */
  embedFloats: 2 ** 31,
} as const;

function readJson(file: string, required: boolean): Json | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !required) return null;
    throw new ChimeraError('E_MODEL', `${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ChimeraError('E_MODEL', `${file}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ChimeraError('E_MODEL', `${file}: not a JSON object`);
  return json as Json;
}

/**
 * Checks that `dir` is a Hugging Face model directory, for commands that need the original weights: a
 * missing path is E_MODEL, a file (a packed model, say) is E_ARG with `why` explaining the need.
 */
export function requireModelDirectory(dir: string, why: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new ChimeraError('E_MODEL', `model path ${dir} does not exist`);
  }
  if (!st.isDirectory()) throw new ChimeraError('E_ARG', `${dir} is not a directory: ${why}`);
}

/**
 * Parses `<dir>/config.json`; values in `<dir>/generation_config.json` (when present) override the generation
 * fields, as transformers does.
 */
export function readMarianConfig(dir: string): MarianConfig {
  const file = path.join(dir, 'config.json');
  const cfg = readJson(file, true)!;
  const gen = readJson(path.join(dir, 'generation_config.json'), false) ?? {};
  return parseMarianConfig(cfg, gen, file);
}

/** Validates already-parsed config objects; `where` names the source in error messages. */
export function parseMarianConfig(cfg: Json, gen: Json = {}, where = 'config.json'): MarianConfig {
  const bad = (field: string, why: string): never => {
    throw new ChimeraError('E_MODEL', `${where}: ${field} ${why}`);
  };
  const genOr = (key: string): unknown => (gen[key] !== undefined && gen[key] !== null ? gen[key] : cfg[key]);

  const posInt = (key: string, value: unknown = cfg[key], fallback?: number, cap = Number.MAX_SAFE_INTEGER): number => {
    if (value === undefined || value === null) {
      if (fallback !== undefined) return fallback;
      bad(key, 'is missing');
    }
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) bad(key, `must be a positive integer, got ${show(value)}`);
    if ((value as number) > cap) bad(key, `= ${value} is above the limit ${cap} this engine accepts`);
    return value as number;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const v = cfg[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') bad(key, `must be true or false, got ${show(v)}`);
    return v as boolean;
  };
  const must = (key: string, expected: boolean, fallback: boolean, why: string): void => {
    if (bool(key, fallback) !== expected) bad(key, `= ${!expected} is not supported (${why})`);
  };

  if (cfg.model_type !== 'marian') bad('model_type', `must be "marian", got ${show(cfg.model_type)}`);
  const arch = cfg.architectures;
  if (arch !== undefined && !(Array.isArray(arch) && arch.includes('MarianMTModel')))
    bad('architectures', `must include "MarianMTModel", got ${show(arch)}`);
  if (cfg.is_encoder_decoder === false) bad('is_encoder_decoder', '= false is not supported (only the encoder-decoder MarianMTModel is)');

  // Options that change the computation and that this engine does not implement.
  must('normalize_before', false, false, 'only post-LN Marian is implemented');
  must('normalize_embedding', false, false, 'no embedding layer norm is implemented');
  must('static_position_embeddings', true, true, 'only sinusoidal positions are implemented');
  must('add_bias_logits', false, false, 'logits get only final_logits_bias');
  must('add_final_layer_norm', false, false, 'no final layer norm is implemented');
  must('layernorm_embedding', false, false, 'no embedding layer norm is implemented');
  must('share_encoder_decoder_embeddings', true, true, 'separate source and target vocabularies are not supported yet');
  must('tie_word_embeddings', true, true, 'the LM head must be the shared embedding');
  if (cfg.layer_norm_eps !== undefined && cfg.layer_norm_eps !== 1e-5) bad('layer_norm_eps', `= ${show(cfg.layer_norm_eps)} is not supported (Marian uses 1e-5)`);

  const vocabSize = posInt('vocab_size', undefined, undefined, CONFIG_CAPS.vocabSize);
  if (cfg.decoder_vocab_size !== undefined && cfg.decoder_vocab_size !== null && cfg.decoder_vocab_size !== vocabSize)
    bad('decoder_vocab_size', `= ${show(cfg.decoder_vocab_size)} differs from vocab_size ${vocabSize} (separate vocabularies are not supported yet)`);
  const dModel = posInt('d_model', undefined, undefined, CONFIG_CAPS.dModel);
  if (vocabSize * dModel > CONFIG_CAPS.embedFloats) bad('vocab_size', `x d_model = ${vocabSize * dModel} is above the limit ${CONFIG_CAPS.embedFloats}`);
  const encoderHeads = posInt('encoder_attention_heads', undefined, undefined, CONFIG_CAPS.heads);
  const decoderHeads = posInt('decoder_attention_heads', undefined, undefined, CONFIG_CAPS.heads);
  if (dModel % encoderHeads !== 0) bad('encoder_attention_heads', `= ${encoderHeads} does not divide d_model ${dModel}`);
  if (dModel % decoderHeads !== 0) bad('decoder_attention_heads', `= ${decoderHeads} does not divide d_model ${dModel}`);
  if (dModel % 2 !== 0) bad('d_model', `= ${dModel} must be even (the sinusoidal positions need sin and cos halves)`);
  if (encoderHeads !== decoderHeads)
    bad('decoder_attention_heads', `= ${decoderHeads} differs from encoder_attention_heads ${encoderHeads} (not supported)`);

  const activation = cfg.activation_function ?? 'gelu';
  if (typeof activation !== 'string' || !(ACTIVATIONS as readonly string[]).includes(activation))
    bad('activation_function', `${show(activation)} is not supported (supported: ${ACTIVATIONS.join(', ')})`);

  const tokenId = (key: string, value: unknown): number => {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value >= vocabSize)
      bad(key, `must be a token id in [0, ${vocabSize}), got ${show(value)}`);
    return value as number;
  };
  const padId = tokenId('pad_token_id', genOr('pad_token_id'));
  const eosId = tokenId('eos_token_id', genOr('eos_token_id'));
  const startRaw = genOr('decoder_start_token_id');
  const decoderStartId = startRaw === undefined || startRaw === null ? padId : tokenId('decoder_start_token_id', startRaw);
  const forcedRaw = genOr('forced_eos_token_id');
  const forcedEosId = forcedRaw === undefined || forcedRaw === null ? null : tokenId('forced_eos_token_id', forcedRaw);

  const badRaw = genOr('bad_words_ids');
  let badWordsIds: number[][] = [[padId]];
  if (badRaw !== undefined && badRaw !== null) {
    if (!Array.isArray(badRaw) || !badRaw.every((s) => Array.isArray(s) && s.length > 0))
      bad('bad_words_ids', `must be a list of non-empty id lists, got ${show(badRaw)}`);
    badWordsIds = (badRaw as unknown[][]).map((s) => s.map((t) => tokenId('bad_words_ids', t)));
  }

  const maxPositions = posInt('max_position_embeddings', undefined, undefined, CONFIG_CAPS.maxPositions);
  if (maxPositions * dModel > CONFIG_CAPS.positionFloats)
    bad('max_position_embeddings', `x d_model = ${maxPositions * dModel} is above the limit ${CONFIG_CAPS.positionFloats}`);
  return {
    vocabSize,
    dModel,
    encoderLayers: posInt('encoder_layers', undefined, undefined, CONFIG_CAPS.layers),
    decoderLayers: posInt('decoder_layers', undefined, undefined, CONFIG_CAPS.layers),
    encoderHeads,
    decoderHeads,
    encoderFfn: posInt('encoder_ffn_dim', undefined, undefined, CONFIG_CAPS.ffn),
    decoderFfn: posInt('decoder_ffn_dim', undefined, undefined, CONFIG_CAPS.ffn),
    activation: activation as MarianActivation,
    maxPositions,
    scaleEmbedding: bool('scale_embedding', false),
    padId,
    eosId,
    decoderStartId,
    forcedEosId,
    badWordsIds,
    numBeams: posInt('num_beams', genOr('num_beams'), 1, 64),
    // transformers' own default (20) would silently cut translations short; the position table is the real limit.
    maxLength: posInt('max_length', genOr('max_length'), maxPositions),
    normalizeBefore: false,
    normalizeEmbedding: false,
    staticPositionEmbeddings: true,
    shareEmbeddings: true,
    tieWordEmbeddings: true,
  };
}

/**
 * Validates a MarianConfig read back from a packed file's header (the camelCase form parseMarianConfig
 * returns): every field typed, within CONFIG_CAPS and consistent, else E_MODEL naming `where` and the field.
 */
export function validateMarianConfig(c: unknown, where: string): MarianConfig {
  const bad = (field: string, why: string): never => {
    throw new ChimeraError('E_MODEL', `${where}: config.${field} ${why}`);
  };
  if (c === null || typeof c !== 'object' || Array.isArray(c)) bad('', `must be an object, got ${c === null ? 'null' : Array.isArray(c) ? 'an array' : typeof c}`);
  const o = c as Json;
  const int = (k: string, lo: number, hi: number): number => {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < lo || v > hi) bad(k, `must be an integer in ${lo}..${hi}, got ${show(v)}`);
    return v as number;
  };
  const vocabSize = int('vocabSize', 1, CONFIG_CAPS.vocabSize);
  const dModel = int('dModel', 2, CONFIG_CAPS.dModel);
  if (dModel % 2) bad('dModel', 'must be even');
  if (vocabSize * dModel > CONFIG_CAPS.embedFloats) bad('vocabSize', 'x dModel is above the limit');
  const encoderHeads = int('encoderHeads', 1, CONFIG_CAPS.heads);
  const decoderHeads = int('decoderHeads', 1, CONFIG_CAPS.heads);
  if (encoderHeads !== decoderHeads) bad('decoderHeads', 'must equal encoderHeads');
  if (dModel % decoderHeads) bad('decoderHeads', `must divide dModel ${dModel}`);
  const maxPositions = int('maxPositions', 1, CONFIG_CAPS.maxPositions);
  if (maxPositions * dModel > CONFIG_CAPS.positionFloats) bad('maxPositions', 'x dModel is above the limit');
  const id = (k: string) => int(k, 0, vocabSize - 1);
  const activation = o.activation;
  if (typeof activation !== 'string' || !(ACTIVATIONS as readonly string[]).includes(activation)) bad('activation', `must be one of ${ACTIVATIONS.join(', ')}`);
  if (typeof o.scaleEmbedding !== 'boolean') bad('scaleEmbedding', 'must be a boolean');
  const forced = o.forcedEosId;
  if (forced !== null && forced !== undefined) id('forcedEosId');
  const bw = o.badWordsIds;
  if (!Array.isArray(bw) || bw.length > 65536 || !bw.every((s) => Array.isArray(s) && s.length > 0 && s.length <= 64 && s.every((t) => Number.isSafeInteger(t) && t >= 0 && t < vocabSize)))
    bad('badWordsIds', 'must be a list of non-empty lists of token ids in the vocabulary');
  const fixed: [string, boolean][] = [['normalizeBefore', false], ['normalizeEmbedding', false], ['staticPositionEmbeddings', true], ['shareEmbeddings', true], ['tieWordEmbeddings', true]];
  for (const [k, v] of fixed) if (o[k] !== undefined && o[k] !== v) bad(k, `must be ${v}`);
  return {
    vocabSize, dModel,
    encoderLayers: int('encoderLayers', 1, CONFIG_CAPS.layers),
    decoderLayers: int('decoderLayers', 1, CONFIG_CAPS.layers),
    encoderHeads, decoderHeads,
    encoderFfn: int('encoderFfn', 1, CONFIG_CAPS.ffn),
    decoderFfn: int('decoderFfn', 1, CONFIG_CAPS.ffn),
    activation: activation as MarianActivation,
    maxPositions,
    scaleEmbedding: o.scaleEmbedding as boolean,
    padId: id('padId'), eosId: id('eosId'), decoderStartId: id('decoderStartId'),
    forcedEosId: forced === null || forced === undefined ? null : (forced as number),
    badWordsIds: (bw as number[][]).map((s) => [...s]),
    numBeams: int('numBeams', 1, 64),
    maxLength: int('maxLength', 1, 1 << 20),
    normalizeBefore: false, normalizeEmbedding: false, staticPositionEmbeddings: true, shareEmbeddings: true, tieWordEmbeddings: true,
  };
}
