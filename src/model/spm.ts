/**
 * Reads a SentencePiece model file (`source.spm`, a protobuf `ModelProto`) without native code, and turns it
 * into a tokenizer.json-shaped object that @huggingface/tokenizers can run. Used when a Marian directory has
 * no tokenizer.json (the original Helsinki-NLP/opus-mt-* repositories ship only the .spm files).
 *
 * Only what tokenization needs is decoded: the pieces (string, score, type), the trainer's model type and
 * byte_fallback flag, and the normalizer spec. Unknown fields are skipped, as protobuf allows.
 */
import { ChimeraError } from '../errors';

/** SentencePiece's piece types (ModelProto.SentencePiece.Type). */
export const PieceType = { Normal: 1, Unknown: 2, Control: 3, UserDefined: 4, Unused: 5, Byte: 6 } as const;
export type PieceType = (typeof PieceType)[keyof typeof PieceType];

export interface SpmPiece {
  piece: string;
  score: number;
  type: PieceType;
}

export interface SpmModel {
  pieces: SpmPiece[];
  /** TrainerSpec.model_type: 1 unigram, 2 BPE, 3 word, 4 char. */
  modelType: number;
  byteFallback: boolean;
  normalizerName: string;
  precompiledCharsmap: Uint8Array;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
}

interface Field {
  no: number;
  wire: number;
  int: number; // varint value (wire 0), lossy above 2^53: only small enums and flags are used
  bytes: Uint8Array; // wire 2 payload
  f32: number; // wire 5 value
}

/** Iterates the fields of one protobuf message, with every length checked against the buffer. */
function* fields(buf: Uint8Array, file: string): Generator<Field> {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const bad = (): never => {
    throw new ChimeraError('E_MODEL', `${file}: not a valid SentencePiece model (malformed protobuf)`);
  };
  let i = 0;
  const varint = (): number => {
    let v = 0;
    let mul = 1;
    for (let n = 0; n < 10; n++) {
      if (i >= buf.length) bad();
      const b = buf[i++];
      v += (b & 0x7f) * mul;
      mul *= 128;
      if (b < 0x80) return v;
    }
    return bad();
  };
  while (i < buf.length) {
    const key = varint();
    const no = Math.floor(key / 8);
    const wire = key % 8;
    const f: Field = { no, wire, int: 0, bytes: EMPTY, f32: 0 };
    if (wire === 0) f.int = varint();
    else if (wire === 1) {
      if (i + 8 > buf.length) bad();
      i += 8;
    } else if (wire === 2) {
      const len = varint();
      if (len > buf.length - i) bad();
      f.bytes = buf.subarray(i, i + len);
      i += len;
    } else if (wire === 5) {
      if (i + 4 > buf.length) bad();
      f.f32 = view.getFloat32(i, true);
      i += 4;
    } else bad();
    if (no === 0) bad();
    yield f;
  }
}

const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parses a SentencePiece ModelProto. */
export function parseSpmModel(buf: Uint8Array, file: string): SpmModel {
  const model: SpmModel = {
    pieces: [],
    modelType: 1,
    byteFallback: false,
    normalizerName: 'nmt_nfkc',
    precompiledCharsmap: EMPTY,
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
  };
  const text = (b: Uint8Array): string => {
    try {
      return utf8.decode(b);
    } catch {
      throw new ChimeraError('E_MODEL', `${file}: a piece is not valid UTF-8`);
    }
  };
  for (const f of fields(buf, file)) {
    if (f.no === 1 && f.wire === 2) {
      const p: SpmPiece = { piece: '', score: 0, type: PieceType.Normal };
      for (const g of fields(f.bytes, file)) {
        if (g.no === 1 && g.wire === 2) p.piece = text(g.bytes);
        else if (g.no === 2 && g.wire === 5) p.score = g.f32;
        else if (g.no === 3 && g.wire === 0) p.type = g.int as PieceType;
      }
      model.pieces.push(p);
    } else if (f.no === 2 && f.wire === 2) {
      for (const g of fields(f.bytes, file)) {
        if (g.no === 3 && g.wire === 0) model.modelType = g.int;
        else if (g.no === 35 && g.wire === 0) model.byteFallback = g.int !== 0;
      }
    } else if (f.no === 3 && f.wire === 2) {
      for (const g of fields(f.bytes, file)) {
        if (g.no === 1 && g.wire === 2) model.normalizerName = text(g.bytes);
        else if (g.no === 2 && g.wire === 2) model.precompiledCharsmap = g.bytes;
        else if (g.no === 3 && g.wire === 0) model.addDummyPrefix = g.int !== 0;
        else if (g.no === 4 && g.wire === 0) model.removeExtraWhitespaces = g.int !== 0;
      }
    }
  }
  if (model.pieces.length === 0) throw new ChimeraError('E_MODEL', `${file}: not a SentencePiece model (no pieces)`);
  return model;
}

/**
 * A tokenizer.json object that splits text into the pieces SentencePiece would produce with this model.
 * Its ids are only positions in its own list; callers map the piece strings to the real vocabulary.
 * Control and unused pieces are left out because SentencePiece never matches them in text.
 */
export function spmPieceTokenizerJson(spm: SpmModel, file: string): { json: Record<string, unknown>; unkPiece: string } {
  if (spm.modelType !== 1) throw new ChimeraError('E_MODEL', `${file}: SentencePiece model type ${spm.modelType} is not supported (only unigram)`);
  if (spm.byteFallback) throw new ChimeraError('E_MODEL', `${file}: SentencePiece byte_fallback is not supported`);
  const vocab: [string, number][] = [];
  let unkId = -1;
  for (const p of spm.pieces) {
    if (p.type === PieceType.Control || p.type === PieceType.Unused || p.type === PieceType.Byte) continue;
    if (p.type === PieceType.Unknown) unkId = vocab.length;
    vocab.push([p.piece, p.score]);
  }
  if (unkId < 0) throw new ChimeraError('E_MODEL', `${file}: SentencePiece model has no unknown piece`);

  // @huggingface/tokenizers runs 'Precompiled' as NFKC plus SentencePiece's control-character and whitespace
  // rules rather than interpreting the charsmap; for the nfkc / nmt_nfkc rules Marian models use, that agrees.
  let normalizer: object | null = null;
  if (spm.normalizerName !== 'identity') {
    normalizer = { type: 'Precompiled', precompiled_charsmap: Buffer.from(spm.precompiledCharsmap).toString('base64') };
    if (spm.normalizerName.endsWith('_cf')) normalizer = { type: 'Sequence', normalizers: [normalizer, { type: 'Lowercase' }] };
  }
  const json = {
    version: '1.0',
    added_tokens: [],
    normalizer,
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: spm.addDummyPrefix ? 'always' : 'never', split: true },
    post_processor: null,
    decoder: null,
    model: { type: 'Unigram', unk_id: unkId, vocab, byte_fallback: false },
  };
  return { json, unkPiece: vocab[unkId][0] };
}
