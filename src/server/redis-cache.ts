/**
 * A shared sentence-cache tier in Redis or Valkey (ioredis), for replicas behind a load balancer. The
 * Translator reads it after its in-process LRU and writes it on completion. Entries live `ttlS` seconds under
 * `prefix`. An outage degrades to misses at once: no offline queue, short connect and command timeouts, and
 * reconnection in the background; errors are counted (`errors`, and the server's chimera_redis_errors_total)
 * and logged as a warning at most once per `warnEveryMs`.
 */
import type Redis from 'ioredis';
import type { CachedSentence, SentenceCacheTier } from './types';

export interface RedisCacheTierOptions {
  /** redis://[:password@]host:port[/db] or rediss://... */
  url: string;
  ttlS?: number;
  prefix?: string;
  commandTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** A warning sink (the server passes its pino logger's warn). */
  warn?: (msg: string, err?: unknown) => void;
  warnEveryMs?: number;
  /** Called once per failed command (the server counts them in a metric). */
  onError?: (op: 'get' | 'set' | 'connection', err: unknown) => void;
}

export class RedisCacheTier implements SentenceCacheTier {
  readonly name = 'redis';
  readonly client: Redis;
  readonly ttlS: number;
  readonly prefix: string;
  errors = 0;
  private lastWarn = -Infinity;
  private readonly warnEveryMs: number;

  constructor(private readonly opts: RedisCacheTierOptions) {
    this.ttlS = opts.ttlS ?? 86400;
    this.prefix = opts.prefix ?? 'chimera:';
    this.warnEveryMs = opts.warnEveryMs ?? 30_000;
    // loaded on first use, so importing chimera-infer does not load ioredis
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const RedisClient = (require('ioredis') as { default: typeof Redis }).default;
    this.client = new RedisClient(opts.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: opts.commandTimeoutMs ?? 100,
      connectTimeout: opts.connectTimeoutMs ?? 1000,
      // keep trying in the background, at most every 2 s
      retryStrategy: (times) => Math.min(100 * times, 2000),
      lazyConnect: false,
    });
    // without a listener an 'error' event would crash the process
    this.client.on('error', (e) => this.fail('connection', e));
  }

  /** Resolves once connected (or rejects after `timeoutMs`); the tier works without waiting for it. */
  ready(timeoutMs = 2000): Promise<void> {
    if (this.client.status === 'ready') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => { this.client.off('ready', ok); reject(new Error(`redis not ready within ${timeoutMs} ms`)); }, timeoutMs);
      const ok = () => { clearTimeout(t); resolve(); };
      this.client.once('ready', ok);
    });
  }

  private fail(op: 'get' | 'set' | 'connection', e: unknown): void {
    this.errors++;
    this.opts.onError?.(op, e);
    const now = Date.now();
    if (now - this.lastWarn >= this.warnEveryMs) {
      this.lastWarn = now;
      this.opts.warn?.(`redis cache tier unavailable (${op}: ${(e as Error)?.message ?? String(e)}); serving from the in-process cache`, e);
    }
  }

  async get(keys: string[]): Promise<(CachedSentence | null)[]> {
    if (keys.length === 0) return [];
    try {
      const vals = await this.client.mget(keys.map((k) => this.prefix + k));
      return vals.map((v) => {
        if (v == null) return null;
        try {
          const o = JSON.parse(v) as CachedSentence;
          return typeof o?.text === 'string' && Array.isArray(o.tokens) ? o : null;
        } catch {
          return null;
        }
      });
    } catch (e) {
      this.fail('get', e);
      throw e;
    }
  }

  async set(entries: [string, CachedSentence][]): Promise<void> {
    if (entries.length === 0) return;
    try {
      const p = this.client.pipeline();
      for (const [k, v] of entries) p.set(this.prefix + k, JSON.stringify({ text: v.text, tokens: v.tokens }), 'EX', this.ttlS);
      const res = await p.exec();
      const bad = res?.find(([err]) => err);
      if (bad) throw bad[0];
    } catch (e) {
      this.fail('set', e);
    }
  }

  async close(): Promise<void> {
    try {
      if (this.client.status === 'ready') await Promise.race([this.client.quit(), new Promise((r) => setTimeout(r, 500))]);
    } catch {
      /* already gone */
    }
    this.client.disconnect();
  }
}
