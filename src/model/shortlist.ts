/**
 * The vocabulary shortlist: per source token, the target tokens a translation of it is likely to use, plus the
 * tokens every translation uses. A request's candidate set is the union of its source tokens' lists, the frequent
 * set, eos and pad; the engine computes the LM head over the union of the live requests' sets only and picks each
 * row's token among its own set (src/engine/scheduler.ts). The lists are learnt without parallel data: the model
 * translates a source-language corpus and each source token is credited with the tokens of the outputs of the
 * sentences it occurs in (buildShortlistFromModel).
 *
 * File (little-endian), version 1:
 *   magic 'CHMRSLST' (8) | u32 version | u32 source vocab | u32 target vocab | 32 B vocabulary hash |
 *   u32 per-token N | u32 frequent count F | u32 list entries E | u32 frequent[F] | u32 offsets[source vocab + 1] |
 *   entries[E] (offsets[s]..offsets[s+1] is token s's list, best first) | 32 B sha256 of everything before.
 * Entries are u16 when the target vocabulary has at most 65536 tokens (OPUS-MT's 58k: half the file), else u32.
 * The vocabulary hash names the model it was built for (the token strings of its vocabulary in id order); a
 * file whose hash, sizes, ids or checksum do not agree is refused with E_MODEL.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { ChimeraError } from '../errors';
import { topk } from '../kernels';

export const SHORTLIST_MAGIC = 'CHMRSLST';
export const SHORTLIST_VERSION = 1;
/** The name of a shortlist beside a model directory's files, and of its section in a packed model file. */
export const SHORTLIST_FILE = 'shortlist.bin';
const HASH_BYTES = 32;
const FIXED_HEADER_BYTES = 8 + 4 * 3 + HASH_BYTES + 4 * 3;
/** Bytes per list entry: u16 while every target id fits. */
const entryBytes = (targetVocab: number) => (targetVocab <= 65536 ? 2 : 4);

/**
 * Defaults of `chimera shortlist build`, measured on the shared m30k model (built from val, scored on
 * test_2016_flickr, greedy int8). Learnt from a thousand sentences, the lists are noisier than alignment-based
 * ones from millions (Bergamot ships 50 per token + 50 frequent), so they must be longer: 100 per token + 300
 * frequent lost 1.2 BLEU; 200 + 500 with 30 alternatives lost 0.26; 300 + 1000 with 30 alternatives lost 0.00
 * (95 % of outputs identical, 2.1k candidates per sentence of an 8k vocabulary). On a large vocabulary (OPUS-MT:
 * 58k) the same lists are a far smaller share of it.
 */
export const DEFAULT_PER_TOKEN = 300;
export const DEFAULT_FREQUENT = 1000;

export interface Shortlist {
  sourceVocab: number;
  targetVocab: number;
  /** sha256 of the vocabulary it was built for (vocabularyHash). */
  vocabHash: Uint8Array;
  perToken: number;
  /** The most frequent target tokens, most frequent first. */
  frequent: Int32Array;
  /** CSR lists: token s's candidates are entries[offsets[s] .. offsets[s + 1]), best first. */
  offsets: Uint32Array;
  entries: Int32Array;
}

/** The identity a shortlist is checked against: the vocabulary size and the token strings in id order. */
export function vocabularyHash(vocabSize: number, idToToken: ((id: number) => string | undefined) | null): Uint8Array {
  const h = createHash('sha256');
  h.update(`chimera-vocab\n${vocabSize}\n`);
  if (idToToken) for (let i = 0; i < vocabSize; i++) h.update(`${idToToken(i) ?? ''}\n`);
  return new Uint8Array(h.digest());
}

function fail(what: string, msg: string): never {
  throw new ChimeraError('E_MODEL', `${what}: ${msg}`);
}

export function writeShortlistBytes(s: Shortlist): Uint8Array {
  const F = s.frequent.length, E = s.entries.length;
  const eb = entryBytes(s.targetVocab);
  const body = FIXED_HEADER_BYTES + 4 * (F + s.sourceVocab + 1) + eb * E;
  const buf = Buffer.alloc(body + HASH_BYTES);
  buf.write(SHORTLIST_MAGIC, 0, 'latin1');
  let o = 8;
  for (const v of [SHORTLIST_VERSION, s.sourceVocab, s.targetVocab]) o = buf.writeUInt32LE(v, o);
  buf.set(s.vocabHash, o);
  o += HASH_BYTES;
  for (const v of [s.perToken, F, E]) o = buf.writeUInt32LE(v, o);
  for (const v of s.frequent) o = buf.writeUInt32LE(v, o);
  for (const v of s.offsets) o = buf.writeUInt32LE(v, o);
  for (const v of s.entries) o = eb === 2 ? buf.writeUInt16LE(v, o) : buf.writeUInt32LE(v, o);
  buf.set(createHash('sha256').update(buf.subarray(0, body)).digest(), body);
  return buf;
}

/** Parses and validates a shortlist; `what` names it in errors. Every inconsistency is E_MODEL. */
export function readShortlistBytes(bytes: Uint8Array, what: string): Shortlist {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < FIXED_HEADER_BYTES + HASH_BYTES || buf.toString('latin1', 0, 8) !== SHORTLIST_MAGIC) fail(what, 'not a chimera shortlist (bad magic)');
  const version = buf.readUInt32LE(8);
  if (version !== SHORTLIST_VERSION) fail(what, `shortlist version ${version} is not supported (this build reads version ${SHORTLIST_VERSION}); build it again`);
  const body = buf.length - HASH_BYTES;
  const sum = createHash('sha256').update(buf.subarray(0, body)).digest();
  if (!sum.equals(buf.subarray(body))) fail(what, 'checksum mismatch: the file is corrupt or truncated');
  const sourceVocab = buf.readUInt32LE(12), targetVocab = buf.readUInt32LE(16);
  const vocabHash = new Uint8Array(buf.subarray(20, 20 + HASH_BYTES));
  let o = 20 + HASH_BYTES;
  const perToken = buf.readUInt32LE(o), F = buf.readUInt32LE(o + 4), E = buf.readUInt32LE(o + 8);
  o += 12;
  if (sourceVocab < 1 || targetVocab < 1 || body !== FIXED_HEADER_BYTES + 4 * (F + sourceVocab + 1) + entryBytes(targetVocab) * E) fail(what, 'sizes in the header do not match the file length');
  const u32 = (n: number) => {
    const a = new Uint32Array(n);
    for (let i = 0; i < n; i++, o += 4) a[i] = buf.readUInt32LE(o);
    return a;
  };
  const frequent = Int32Array.from(u32(F));
  const offsets = u32(sourceVocab + 1);
  const entries = new Int32Array(E);
  if (entryBytes(targetVocab) === 2) for (let i = 0; i < E; i++, o += 2) entries[i] = buf.readUInt16LE(o);
  else for (let i = 0; i < E; i++, o += 4) entries[i] = buf.readUInt32LE(o);
  for (const t of frequent) if (t >= targetVocab) fail(what, `frequent token ${t} is outside the target vocabulary (${targetVocab})`);
  for (const t of entries) if (t >= targetVocab) fail(what, `candidate ${t} is outside the target vocabulary (${targetVocab})`);
  if (offsets[0] !== 0 || offsets[sourceVocab] !== E) fail(what, 'list offsets do not cover the entries');
  for (let s = 0; s < sourceVocab; s++)
    if (offsets[s + 1] < offsets[s] || offsets[s + 1] - offsets[s] > perToken) fail(what, `the list of source token ${s} is malformed`);
  return { sourceVocab, targetVocab, vocabHash, perToken, frequent, offsets, entries };
}

export function readShortlistFile(file: string): Shortlist {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new ChimeraError('E_MODEL', `cannot read shortlist ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { cause: e });
  }
  return readShortlistBytes(bytes, file);
}

/** Refuses a shortlist built for another vocabulary (E_MODEL). */
export function checkShortlistFor(s: Shortlist, vocabSize: number, vocabHash: Uint8Array, what: string): void {
  if (s.sourceVocab !== vocabSize || s.targetVocab !== vocabSize)
    fail(what, `built for a vocabulary of ${s.sourceVocab} source / ${s.targetVocab} target tokens; this model has ${vocabSize}`);
  if (!Buffer.from(s.vocabHash).equals(Buffer.from(vocabHash))) fail(what, 'built for another model (its vocabulary hash differs); build it again for this model');
}

/** A short fingerprint of a shortlist's contents (cache keys: outputs with and without one may differ). */
export function shortlistFingerprint(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}

// ---------------------------------------------------------------------------------------------------- building

/**
 * Sentence-level co-occurrence of a corpus of (source ids, output ids) pairs: per pair, every distinct source token
 * co-occurs once with every distinct output token. `skipSource` / `skipTarget` are left out (eos, pad: they are
 * added to every candidate set anyway). Exact integer counts.
 */
export interface Cooccurrence {
  /** pairs[s] = Map(target -> number of sentence pairs holding both). */
  pair: Map<number, Map<number, number>>;
  /** Sentence pairs whose source holds s. */
  sourceDocs: Map<number, number>;
  /** Sentence pairs whose output holds t. */
  targetDocs: Map<number, number>;
  /** Occurrences of t in all outputs (the frequent set ranks by it). */
  targetTokens: Map<number, number>;
}

export function countCooccurrence(pairs: Iterable<{ src: readonly number[]; tgt: readonly number[] }>, skipSource: readonly number[], skipTarget: readonly number[]): Cooccurrence {
  const c: Cooccurrence = { pair: new Map(), sourceDocs: new Map(), targetDocs: new Map(), targetTokens: new Map() };
  const inc = (m: Map<number, number>, k: number) => m.set(k, (m.get(k) ?? 0) + 1);
  const skS = new Set(skipSource), skT = new Set(skipTarget);
  for (const { src, tgt } of pairs) {
    const S = [...new Set(src)].filter((t) => !skS.has(t));
    const T = [...new Set(tgt)].filter((t) => !skT.has(t));
    for (const t of tgt) if (!skT.has(t)) inc(c.targetTokens, t);
    for (const t of T) inc(c.targetDocs, t);
    for (const s of S) {
      inc(c.sourceDocs, s);
      let m = c.pair.get(s);
      if (!m) c.pair.set(s, (m = new Map()));
      for (const t of T) inc(m, t);
    }
  }
  return c;
}

/**
 * The shortlist of a co-occurrence table. Per source token its `perToken` best targets by the Dice coefficient
 * 2 c(s,t) / (n(s) + n(t)) (n: sentence counts). Why not p(t|s) = c(s,t) / n(s): for a fixed s it ranks exactly as
 * the raw count, so every list would fill with the, the, a, punctuation, which the frequent set already holds;
 * Dice discounts a target by how often it appears at all, which leaves the slots to the translations specific to
 * s. Ties go to the larger count, then the lower id (deterministic). Plus the `frequent` most frequent targets by
 * token count (ties: lower id).
 */
export function selectShortlist(c: Cooccurrence, vocab: number, perToken: number, frequent: number, vocabHash: Uint8Array): Shortlist {
  const offsets = new Uint32Array(vocab + 1);
  const lists: number[][] = [];
  for (let s = 0; s < vocab; s++) {
    const m = c.pair.get(s);
    let l: number[] = [];
    if (m) {
      const ns = c.sourceDocs.get(s)!;
      const scored = [...m].map(([t, k]) => ({ t, k, dice: (2 * k) / (ns + c.targetDocs.get(t)!) }));
      scored.sort((a, b) => b.dice - a.dice || b.k - a.k || a.t - b.t);
      l = scored.slice(0, perToken).map((x) => x.t);
    }
    lists.push(l);
    offsets[s + 1] = offsets[s] + l.length;
  }
  const freq = [...c.targetTokens].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, frequent).map(([t]) => t);
  return { sourceVocab: vocab, targetVocab: vocab, vocabHash, perToken, frequent: Int32Array.from(freq), offsets, entries: Int32Array.from(lists.flat()) };
}

/** What buildShortlistFromModel needs of a model (MarianModel provides it). */
export interface ShortlistSourceModel {
  readonly config: { vocabSize: number; eosId: number; padId: number; decoderStartId: number };
  requireTokenizer(): { encode(text: string): number[]; idToToken(id: number): string | undefined };
  generate(ids: number[][], opts: { beam?: number }): { ids: number[][] };
  teacherForcedLogits(srcIds: number[], decoderInputIds: number[]): Float32Array;
}

export interface BuildShortlistOptions {
  /** Candidates kept per source token. Default DEFAULT_PER_TOKEN. */
  perToken?: number;
  /** Most frequent target tokens added to every set. Default DEFAULT_FREQUENT. */
  frequent?: number;
  /** The model's k best tokens at every step of each translation, credited like its output. Default DEFAULT_ALTERNATIVES. */
  alternatives?: number;
  /** Also translate every vocabulary token alone (see below). Default true. */
  vocabularyPass?: boolean;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Alternatives per decoder step. A greedy translation shows one word per step; the model's next choices there
 * are the synonyms and inflections another sentence would pick. On m30k (val for the build, test for the
 * measurement; 200 per token + 500 frequent) 10 alternatives took output-token coverage from 96.8 % to 99.0 % and
 * 30 to 99.3 %, and the BLEU loss from 1.7 to 0.5 and 0.26.
 */
export const DEFAULT_ALTERNATIVES = 30;

/** Sentences translated per generate() call while building: enough rows per step to keep the engine busy. */
const BUILD_BATCH = 128;

/**
 * Builds a shortlist by translating `lines` (source language, one sentence each) greedily with the model as
 * loaded, crediting each source token with the output tokens and the step alternatives, then counting and
 * selecting as above.
 */
export function buildShortlistFromModel(model: ShortlistSourceModel, lines: readonly string[], o: BuildShortlistOptions = {}): { shortlist: Shortlist; sentences: number } {
  const tok = model.requireTokenizer();
  const c0 = model.config;
  const V = c0.vocabSize;
  const perToken = o.perToken ?? DEFAULT_PER_TOKEN, frequent = o.frequent ?? DEFAULT_FREQUENT, K = Math.min(o.alternatives ?? DEFAULT_ALTERNATIVES, V);
  for (const [k, v] of [['perToken', perToken], ['frequent', frequent], ['alternatives', K]] as const)
    if (!Number.isInteger(v) || v < 0) throw new ChimeraError('E_ARG', `${k} must be an integer >= 0, got ${v}`);
  const special = [c0.eosId, c0.padId];
  const text = lines.map((l) => l.trim()).filter((l) => l !== '');
  if (text.length === 0) throw new ChimeraError('E_INPUT', 'the source corpus has no non-empty lines', { reason: 'empty' });
  const srcs = text.map((l) => tok.encode(l));
  // The vocabulary pass: every source token alone, as a one-token sentence. A corpus of a thousand sentences
  // leaves most of the vocabulary unseen (m30k val: ~1.5k distinct output tokens, and 4.5 % of the test set's
  // output tokens are none of them), and an unseen source token would bring no candidates at all; its
  // translation in isolation gives it at least the model's own reading of it.
  if (o.vocabularyPass ?? true) for (let t = 0; t < V; t++) if (!special.includes(t)) srcs.push([t, c0.eosId]);
  const pairs: { src: number[]; tgt: number[] }[] = [];
  const idx = new Int32Array(0), val = new Float32Array(0);
  let topIdx = idx, topVal = val;
  for (let i = 0; i < srcs.length; i += BUILD_BATCH) {
    const src = srcs.slice(i, i + BUILD_BATCH);
    const out = model.generate(src, { beam: 1 }).ids;
    src.forEach((s, j) => {
      const tgt = out[j].slice();
      if (K > 0 && out[j].length > 0) {
        const dec = [c0.decoderStartId, ...out[j].slice(0, -1)];
        const logits = model.teacherForcedLogits(s, dec);
        if (topIdx.length < dec.length * K) [topIdx, topVal] = [new Int32Array(dec.length * K), new Float32Array(dec.length * K)];
        const n = dec.length * K;
        topk(logits, dec.length, V, K, { outIdx: topIdx.subarray(0, n), outVal: topVal.subarray(0, n) });
        for (let q = 0; q < n; q++) tgt.push(topIdx[q]);
      }
      pairs.push({ src: s, tgt });
    });
    o.onProgress?.(Math.min(srcs.length, i + BUILD_BATCH), srcs.length);
  }
  const c = countCooccurrence(pairs, special, special);
  const hash = vocabularyHash(V, (id) => tok.idToToken(id));
  return { shortlist: selectShortlist(c, V, perToken, frequent, hash), sentences: text.length };
}

// ---------------------------------------------------------------------------------------------------- runtime

/**
 * Candidate sets at run time. `always` (eos, pad, the frequent set) joins every set; pad is kept in so that the
 * search's own pad ban applies to it, which makes a set of every token give exactly the full-vocabulary rows.
 */
export class ShortlistSets {
  /** 1 for tokens of the base set (always + frequent), 2 while a source's own candidate is being collected. */
  private readonly mark: Uint8Array;
  /** always + frequent, deduplicated (the first part of every set). */
  private readonly base: Int32Array;
  private buf: Int32Array;

  constructor(private readonly s: Shortlist, always: readonly number[]) {
    this.mark = new Uint8Array(s.targetVocab);
    const b: number[] = [];
    for (const t of [...always, ...s.frequent]) if (!this.mark[t]) {
      this.mark[t] = 1;
      b.push(t);
    }
    this.base = Int32Array.from(b);
    this.buf = new Int32Array(b.length + 1024);
  }

  /** The candidate set of one source (its token ids), ascending. Called once per sentence, on admission. */
  candidates(source: readonly number[]): Int32Array {
    const { mark, s } = this;
    const { offsets, entries } = s;
    let need = this.base.length;
    for (const src of source) if (src >= 0 && src < s.sourceVocab) need += offsets[src + 1] - offsets[src];
    if (this.buf.length < need) this.buf = new Int32Array(need);
    const buf = this.buf;
    buf.set(this.base);
    let n = this.base.length;
    for (const src of source) {
      if (src < 0 || src >= s.sourceVocab) continue;
      for (let i = offsets[src], e = offsets[src + 1]; i < e; i++) {
        const t = entries[i];
        if (mark[t] === 0) {
          mark[t] = 2;
          buf[n++] = t;
        }
      }
    }
    for (let i = this.base.length; i < n; i++) mark[buf[i]] = 0;
    return buf.slice(0, n).sort();
  }
}

/** Sorted union of sorted sets, through a mark array of the vocabulary (reused). */
export function unionOf(sets: readonly Int32Array[], mark: Uint8Array): Int32Array {
  let n = 0;
  for (const s of sets) for (const t of s) if (!mark[t]) {
    mark[t] = 1;
    n++;
  }
  const out = new Int32Array(n);
  let k = 0;
  for (let t = 0; t < mark.length && k < n; t++) if (mark[t]) {
    out[k++] = t;
    mark[t] = 0;
  }
  return out;
}
