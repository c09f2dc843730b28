/**
 * Marian tokenization (SentencePiece unigram + a shared vocabulary) on top of @huggingface/tokenizers.
 *
 * Why @huggingface/tokenizers 0.2.0: it is Hugging Face's own JS port (the tokenizer inside transformers.js),
 * pure JS with zero dependencies and no native or WASM code, it reads tokenizer.json directly, and it
 * implements what Marian needs: Unigram, NFKC / Precompiled normalisation, Metaspace pre-tokenizer and decoder,
 * TemplateProcessing. The alternatives: transformers.js only re-exports this package and drags in
 * onnxruntime and sharp; the SentencePiece WASM ports (@sctg/sentencepiece-js 1.3.3, a single release) are
 * 4 MB, ESM-only (a CommonJS package can only `require` them on Node >= 20.19), async to load, and accept a
 * corrupt model silently (a random file "loads" and then encodes everything to nothing).
 *
 * Verified: on the first 300 lines of Multi30k val.en and val.de, tokenizer.json of marian-m30k-en-de through
 * this package gives exactly the ids that source.spm gives through real SentencePiece (@sctg/sentencepiece-js,
 * pieces mapped through vocab.json; checked once, not a dependency) and the reference `sN.input_ids`; the
 * reference greedy ids decode to the matching lines of `val200.greedy.de` (test/model-tokenizer.test.ts).
 *
 * Without tokenizer.json we read `source.spm` ourselves (./spm.ts), segment text into SentencePiece pieces with
 * the same package, and map the pieces through `vocab.json`, which is what transformers' MarianTokenizer does.
 * On marian-m30k-en-de this path gives the same ids as tokenizer.json on all 600 lines above.
 *
 * SentencePiece conventions kept in both paths: runs of whitespace collapse to one space and the ends are
 * trimmed before encoding (`remove_extra_whitespaces`), and the source gets eos appended. Decoding does not
 * apply transformers' "clean up tokenization spaces" (SentencePiece output is already detokenised).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ChimeraError } from '../errors';
import { parseSpmModel, spmPieceTokenizerJson } from './spm';

export interface DecodeOptions {
  /** Drop eos, pad, unk and other special tokens. Default true. */
  skipSpecialTokens?: boolean;
}

type Json = Record<string, unknown>;

function modelError(file: string, problem: string, cause?: unknown): ChimeraError {
  return new ChimeraError('E_MODEL', `${file}: ${problem}`, cause === undefined ? undefined : { cause });
}

function specialName(cfg: Json, key: string, fallback: string): string {
  const v = cfg[key];
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return fallback;
}

/** Most ids a vocabulary may have (CONFIG_CAPS.vocabSize): a larger id is a corrupt or hostile file. */
const MAX_VOCAB = 2 ** 22;

function buildTokenizer(json: Json, config: Json, file: string): Tokenizer {
  // Ids are checked before the library sees them: it would build arrays up to the largest id (a hang or an
  // out-of-memory abort for an id of 1e9).
  const added = json.added_tokens;
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added) || added.length > MAX_VOCAB) throw modelError(file, 'added_tokens must be a list');
    for (const t of added)
      if (t === null || typeof t !== 'object' || !Number.isSafeInteger((t as Json).id) || ((t as Json).id as number) < 0 || ((t as Json).id as number) >= MAX_VOCAB || typeof (t as Json).content !== 'string')
        throw modelError(file, 'added_tokens entries need an integer id in the vocabulary range and a string content');
  }
  const model = json.model as Json | undefined;
  if (model && typeof model === 'object') {
    const v = model.vocab;
    if (Array.isArray(v) ? v.length > MAX_VOCAB : v && typeof v === 'object' && Object.keys(v).length > MAX_VOCAB) throw modelError(file, 'the vocabulary is too large');
    if (v && typeof v === 'object' && !Array.isArray(v))
      for (const id of Object.values(v)) if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) >= MAX_VOCAB) throw modelError(file, `vocabulary id ${String(id).slice(0, 40)} is out of range`);
    if (model.unk_id !== undefined && model.unk_id !== null && !(Number.isSafeInteger(model.unk_id) && (model.unk_id as number) >= 0 && (model.unk_id as number) < MAX_VOCAB))
      throw modelError(file, 'model.unk_id is out of range');
  }
  try {
    return new Tokenizer(json, config);
  } catch (e) {
    throw modelError(file, `cannot be used as a tokenizer (${(e as Error).message})`, e);
  }
}

/** The tokenizer files of a model directory that exist, read into memory. */
export function readTokenizerFiles(dir: string): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  for (const name of ['tokenizer.json', 'tokenizer_config.json', 'source.spm', 'vocab.json']) {
    const file = path.join(dir, name);
    if (!fs.existsSync(file)) continue;
    // tokenizer.json makes the SentencePiece files unnecessary
    if ((name === 'source.spm' || name === 'vocab.json') && files.has('tokenizer.json')) continue;
    try {
      files.set(name, fs.readFileSync(file));
    } catch (e) {
      throw modelError(file, `cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, e);
    }
  }
  return files;
}

export class MarianTokenizer {
  /** Number of ids (highest id + 1). */
  readonly vocabSize: number;
  readonly eosId: number;
  readonly unkId: number;
  readonly padId: number;
  /** Where the segmentation came from. */
  readonly source: 'tokenizer.json' | 'source.spm';

  private constructor(
    private readonly encoder: Tokenizer,
    private readonly decoder: Tokenizer,
    /** Maps the encoder's piece strings to ids; null when the encoder's own ids are already the vocabulary's. */
    private readonly pieceIds: Map<string, number> | null,
    private readonly vocab: Map<string, number>,
    private readonly pieces: (string | undefined)[],
    special: { eos: string; unk: string; pad: string },
    source: 'tokenizer.json' | 'source.spm',
    where: string,
  ) {
    this.vocabSize = pieces.length;
    const id = (name: string, what: string): number => {
      const v = vocab.get(name);
      if (v === undefined) throw modelError(where, `the ${what} token '${name}' is not in the vocabulary`);
      return v;
    };
    this.eosId = id(special.eos, 'eos');
    this.unkId = id(special.unk, 'unk');
    this.padId = id(special.pad, 'pad');
    this.source = source;
  }

  /**
   * Loads the tokenizer of a Marian model directory: `tokenizer.json` when present, else `source.spm` +
   * `vocab.json`. `tokenizer_config.json`, when present, names the special tokens.
   */
  static load(dir: string): MarianTokenizer {
    return MarianTokenizer.fromFiles(readTokenizerFiles(dir), dir);
  }

  /**
   * Builds the tokenizer from the files of a model directory held in memory (a packed model file carries
   * them): names as in the directory, e.g. `tokenizer.json`, `tokenizer_config.json`.
   */
  static fromFiles(files: Map<string, Uint8Array>, dir: string): MarianTokenizer {
    // A malformed file may make the tokenizer library itself throw (a TypeError, a stack overflow on deep
    // nesting): that is a bad model file, E_MODEL, like every other problem found here.
    try {
      return MarianTokenizer.fromFilesUnguarded(files, dir);
    } catch (e) {
      if (e instanceof ChimeraError) throw e;
      throw modelError(dir, `the tokenizer files cannot be used (${String((e as Error)?.message ?? e).slice(0, 200)})`, e);
    }
  }

  private static fromFilesUnguarded(files: Map<string, Uint8Array>, dir: string): MarianTokenizer {
    const json = (name: string): Json => {
      const where = path.join(dir, name);
      let v: unknown;
      try {
        v = JSON.parse(Buffer.from(files.get(name)!).toString('utf8'));
      } catch (e) {
        throw modelError(where, `not valid JSON (${(e as Error).message})`, e);
      }
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw modelError(where, 'not a JSON object');
      return v as Json;
    };
    const cfgFile = path.join(dir, 'tokenizer_config.json');
    const config = files.has('tokenizer_config.json') ? json('tokenizer_config.json') : {};
    if (config.separate_vocabs === true)
      throw modelError(cfgFile, 'separate_vocabs = true is not supported yet (one shared vocabulary is)');
    const special = {
      eos: specialName(config, 'eos_token', '</s>'),
      unk: specialName(config, 'unk_token', '<unk>'),
      pad: specialName(config, 'pad_token', '<pad>'),
    };
    if (files.has('tokenizer.json'))
      return MarianTokenizer.fromTokenizerJson(json('tokenizer.json'), config, special, path.join(dir, 'tokenizer.json'));
    if (!files.has('source.spm') || !files.has('vocab.json')) {
      throw modelError(
        dir,
        'no tokenizer: a Marian model directory needs tokenizer.json, or source.spm + vocab.json as the ' +
          'Helsinki-NLP/opus-mt-* repositories ship them',
      );
    }
    return MarianTokenizer.fromSpm(files.get('source.spm')!, json('vocab.json'), config, special, path.join(dir, 'source.spm'), path.join(dir, 'vocab.json'));
  }

  private static fromTokenizerJson(json: Json, config: Json, special: { eos: string; unk: string; pad: string }, file: string): MarianTokenizer {
    const tok = buildTokenizer(json, config, file);
    const vocab = tok.get_vocab(true);
    const pieces: (string | undefined)[] = [];
    for (const [piece, id] of vocab) {
      if (!Number.isSafeInteger(id) || id < 0 || id >= MAX_VOCAB) throw modelError(file, `vocabulary id ${String(id).slice(0, 40)} is out of range`);
      pieces[id] = piece;
    }
    return new MarianTokenizer(tok, tok, null, vocab, pieces, special, 'tokenizer.json', file);
  }

  private static fromSpm(
    spmBytes: Uint8Array,
    vocabJson: Json,
    config: Json,
    special: { eos: string; unk: string; pad: string },
    spmFile: string,
    vocabFile: string,
  ): MarianTokenizer {
    const { json } = spmPieceTokenizerJson(parseSpmModel(spmBytes, spmFile), spmFile);
    const encoder = buildTokenizer(json, {}, spmFile);

    const vocab = new Map<string, number>();
    const pieces: (string | undefined)[] = [];
    for (const [piece, id] of Object.entries(vocabJson)) {
      if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0 || id > 10_000_000)
        throw modelError(vocabFile, `piece ${JSON.stringify(piece)} has an invalid id ${JSON.stringify(id)}`);
      if (pieces[id] !== undefined) throw modelError(vocabFile, `id ${id} is used by both ${JSON.stringify(pieces[id])} and ${JSON.stringify(piece)}`);
      vocab.set(piece, id);
      pieces[id] = piece;
    }
    // A decoding-only tokenizer over the Marian vocabulary: scores do not matter, specials are skippable.
    const filled = Array.from(pieces, (p, i) => p ?? `<unused-${i}>`);
    const specials = [special.eos, special.unk, special.pad].filter((s) => vocab.has(s));
    const decoderJson = {
      version: '1.0',
      added_tokens: specials.map((s) => ({ id: vocab.get(s), content: s, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
      model: { type: 'Unigram', unk_id: vocab.get(special.unk) ?? 0, vocab: filled.map((p) => [p, 0]), byte_fallback: false },
    };
    const decoder = buildTokenizer(decoderJson, config, vocabFile);
    return new MarianTokenizer(encoder, decoder, vocab, vocab, pieces, special, 'source.spm', vocabFile);
  }

  /** A piece that is only word-boundary marks or spaces ('▁'): no content of its own. */
  private isBlankPiece(id: number): boolean {
    const p = this.pieces[id];
    return p !== undefined && /^[\u2581\s]*$/.test(p);
  }

  /** Source ids for one text, eos appended (Marian's convention). Empty or blank text is E_INPUT. */
  encode(text: string): number[] {
    if (typeof text !== 'string') throw new ChimeraError('E_INPUT', `text must be a string, got ${text === null ? 'null' : typeof text}`);
    const clean = text.trim().replace(/\s+/g, ' ');
    if (clean === '') throw new ChimeraError('E_INPUT', 'text is empty', { reason: 'empty' });
    const enc = this.library(() => this.encoder.encode(clean, { add_special_tokens: false }));
    const ids = this.pieceIds ? enc.tokens.map((t) => this.pieceIds!.get(t) ?? this.unkId) : enc.ids;
    // Text that encodes to nothing the model knows (zero-width spaces only, lone surrogates, emoji the
    // vocabulary lacks) would make the model hallucinate a translation of nothing: refuse it like empty text.
    if (ids.every((id) => id === this.unkId || id === this.eosId || id === this.padId || this.isBlankPiece(id)))
      throw new ChimeraError('E_INPUT', `text has nothing translatable (it encodes to ${ids.length === 0 ? 'no tokens' : 'unknown tokens only'})`, { reason: 'empty' });
    ids.push(this.eosId);
    return ids;
  }

  encodeBatch(texts: readonly string[]): number[][] {
    if (!Array.isArray(texts)) throw new ChimeraError('E_INPUT', 'texts must be an array of strings');
    return texts.map((t, i) => {
      try {
        return this.encode(t);
      } catch (e) {
        if (e instanceof ChimeraError) throw new ChimeraError(e.code, `texts[${i}]: ${e.message}`, e.reason ? { reason: e.reason } : undefined);
        throw e;
      }
    });
  }

  /** Text for target ids. Ids outside the vocabulary are E_INPUT. */
  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const list = Array.from(ids);
    for (const id of list) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize || this.pieces[id] === undefined)
        throw new ChimeraError('E_INPUT', `token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
    }
    const skip = opts.skipSpecialTokens ?? true;
    const kept = skip ? list.filter((id) => id !== this.eosId && id !== this.padId && id !== this.unkId) : list;
    if (kept.length === 0) return '';
    return this.library(() => this.decoder.decode(kept, { skip_special_tokens: skip, clean_up_tokenization_spaces: false }));
  }

  /** Runs a call into the tokenizer library: what it throws on a malformed tokenizer file is E_MODEL. */
  private library<T>(f: () => T): T {
    try {
      return f();
    } catch (e) {
      if (e instanceof ChimeraError) throw e;
      throw modelError(this.source, `the tokenizer failed (${String((e as Error)?.message ?? e).slice(0, 200)})`, e);
    }
  }

  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.pieces[id] : undefined;
  }

  tokenToId(token: string): number | undefined {
    return this.vocab.get(token);
  }
}
