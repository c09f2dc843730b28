/**
 * The sentence cache: an in-process LRU bounded in bytes (the maintained lru-cache package), then any further
 * tiers the caller adds (a server's Redis), read in order after the LRU and written on completion.
 *
 * A key is the model's identity + its precision plan + the options that change output + the normalised
 * sentence. Sampling without a seed is never cached (its output is not a function of the key).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LRUCache } from 'lru-cache';

export interface CachedSentence {
  text: string;
  tokens: number[];
}

/** A further cache tier (e.g. Redis shared by replicas). Failures must not fail requests: they count as misses. */
export interface SentenceCacheTier {
  readonly name: string;
  get(keys: string[]): Promise<(CachedSentence | null | undefined)[]>;
  set(entries: [string, CachedSentence][]): Promise<void> | void;
}

export interface TierCounters {
  hits: number;
  misses: number;
  errors: number;
}

export interface CacheStats {
  hits: number;
  misses: number;
  entries: number;
  bytes: number;
  maxBytes: number;
  tiers: Record<string, TierCounters>;
}

/** Options that change a translation, in a fixed order: they are part of every key. */
const OUTPUT_OPTIONS = ['beam', 'maxLength', 'lengthPenalty', 'earlyStopping', 'minNewTokens', 'sample', 'temperature', 'topK', 'topP', 'seed'] as const;

/** The options part of a key, or null when the output is not reproducible (sampling without a seed). */
export function optionsKey(o: Record<string, unknown>): string | null {
  if (o.sample === true && o.seed === undefined) return null;
  return OUTPUT_OPTIONS.map((k) => (o[k] === undefined ? '' : String(o[k]))).join(',');
}

/** The text a key and the model see: Unicode NFC, so composed and decomposed spellings share one entry. */
export function normaliseSentence(s: string): string {
  return s.normalize('NFC');
}

/** Bytes read from each end of a weights file for its identity: catches re-exports without hashing gigabytes. */
const IDENTITY_SAMPLE_BYTES = 1 << 20;

/**
 * A model's identity for cache keys, the same on every replica holding the same files: a hash of config.json
 * (or a packed file's header) plus the size and both ends of each weights file. Paths and mtimes are left out
 * on purpose, since replicas keep their copies at different places and times.
 */
export function modelIdentity(source: string): string {
  const h = createHash('sha256');
  const sample = (file: string) => {
    const st = fs.statSync(file);
    h.update(`${path.basename(file)}:${st.size}:`);
    const fd = fs.openSync(file, 'r');
    try {
      const n = Math.min(IDENTITY_SAMPLE_BYTES, st.size);
      const buf = Buffer.alloc(n);
      fs.readSync(fd, buf, 0, n, 0);
      h.update(buf);
      fs.readSync(fd, buf, 0, n, Math.max(0, st.size - n));
      h.update(buf);
    } finally {
      fs.closeSync(fd);
    }
  };
  try {
    const st = fs.statSync(source);
    if (st.isFile()) sample(source);
    else {
      for (const f of fs.readdirSync(source).sort()) {
        const full = path.join(source, f);
        if (!fs.statSync(full).isFile()) continue;
        if (/\.(json|spm|model)$/.test(f)) h.update(`${f}:`).update(fs.readFileSync(full));
        else if (/\.(safetensors|bin|chimera)$/.test(f)) sample(full);
      }
    }
  } catch {
    h.update(`path:${path.resolve(source)}`); // unreadable: fall back to the path (no sharing, still correct)
  }
  return h.digest('hex').slice(0, 32);
}

/** Approximate bytes of one entry: UTF-16 strings, 8 bytes per token number, and the LRU's own node. */
const ENTRY_OVERHEAD_BYTES = 96;
function entryBytes(key: string, v: CachedSentence): number {
  return 2 * key.length + 2 * v.text.length + 8 * v.tokens.length + ENTRY_OVERHEAD_BYTES;
}

export class SentenceCache {
  private readonly lru: LRUCache<string, CachedSentence> | null;
  private readonly counters = { hits: 0, misses: 0 };
  private readonly tierCounters: Record<string, TierCounters> = {};

  constructor(readonly maxBytes: number, private readonly tiers: readonly SentenceCacheTier[] = []) {
    this.lru = maxBytes > 0 ? new LRUCache<string, CachedSentence>({ maxSize: maxBytes, sizeCalculation: (v, k) => entryBytes(k, v) }) : null;
    for (const t of tiers) this.tierCounters[t.name] = { hits: 0, misses: 0, errors: 0 };
  }

  get enabled(): boolean {
    return this.lru !== null || this.tiers.length > 0;
  }

  /** Looks a key up in the LRU only (synchronous, the fast path); counts the memory tier's hit or miss. */
  getLocal(key: string): CachedSentence | undefined {
    if (!this.lru) return undefined;
    const v = this.lru.get(key);
    if (v) this.counters.hits++;
    else this.counters.misses++;
    return v;
  }

  /**
   * Looks `keys` up tier by tier (each after the LRU missed); found entries are copied into the LRU. A tier that
   * fails counts an error and misses: a cache outage never fails a request.
   */
  async getTiers(keys: string[]): Promise<(CachedSentence | undefined)[]> {
    const out: (CachedSentence | undefined)[] = keys.map(() => undefined);
    let want = keys.map((_, i) => i);
    for (const t of this.tiers) {
      if (want.length === 0) break;
      const c = this.tierCounters[t.name];
      let got: (CachedSentence | null | undefined)[];
      try {
        got = await t.get(want.map((i) => keys[i]));
      } catch {
        c.errors++;
        c.misses += want.length;
        continue;
      }
      const still: number[] = [];
      want.forEach((i, k) => {
        const v = got[k];
        if (v && typeof v.text === 'string' && Array.isArray(v.tokens)) {
          out[i] = v;
          c.hits++;
          this.lru?.set(keys[i], v);
        } else {
          c.misses++;
          still.push(i);
        }
      });
      want = still;
    }
    return out;
  }

  /** Stores decoded sentences in the LRU and, without waiting, in every tier. */
  set(entries: [string, CachedSentence][]): void {
    if (entries.length === 0) return;
    for (const [k, v] of entries) this.lru?.set(k, v);
    for (const t of this.tiers) {
      const c = this.tierCounters[t.name];
      try {
        Promise.resolve(t.set(entries)).catch(() => c.errors++);
      } catch {
        c.errors++;
      }
    }
  }

  stats(): CacheStats {
    return {
      hits: this.counters.hits,
      misses: this.counters.misses,
      entries: this.lru?.size ?? 0,
      bytes: this.lru?.calculatedSize ?? 0,
      maxBytes: this.maxBytes,
      tiers: Object.fromEntries(Object.entries(this.tierCounters).map(([k, v]) => [k, { ...v }])),
    };
  }
}
