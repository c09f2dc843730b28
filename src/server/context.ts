/**
 * The state one chimera server shares between its plugins: the options, the Translator, the language pair,
 * the drain state and in-flight count, the optional Redis tier and the metrics registry.
 */
import * as path from 'node:path';
import type { Precision, PrecisionPlan } from '../marian';
import type { RedisCacheTier } from './redis-cache';
import type { ServerMetrics } from './metrics';
import type { TranslatorLike } from './types';

export interface ServerOptions {
  /** A Translator to serve (embedding); the server does not close one it was given. */
  translator?: TranslatorLike;
  /** Model directory or packed file (default: the built-in demo model). Ignored with `translator`. */
  model?: string;
  precision?: Precision | PrecisionPlan;
  threads?: number;
  /** Where the model runs: 'cpu' (default) or 'cuda' (Translator.load's option). */
  device?: 'cpu' | 'cuda';
  /** The vocabulary shortlist: false turns the model's own off, a path loads that file (Translator.load's option). */
  shortlist?: boolean | string;
  /** Requests waiting for admission; one more gets 429. */
  maxQueue?: number;
  /** In-process sentence cache in MiB (0 = off). */
  cacheMb?: number;
  /** redis://... or rediss://...: a shared sentence-cache tier (needs a server-owned Translator). */
  redis?: string;
  redisTtlS?: number;
  redisPrefix?: string;
  /** UTF-8 bytes of all texts of one request together; more gets 413. Default 65536. */
  maxTextBytes?: number;
  /** Bearer keys; when set, every route but /health and /ready (and /languages, as LibreTranslate) needs one. */
  apiKeys?: string[];
  sourceLang?: string;
  targetLang?: string;
  /** Name reported in replies' `model` field (default: the model's base name). */
  modelName?: string;
  /** How long drain() waits for in-flight requests, seconds. Default 30. */
  shutdownTimeoutS?: number;
  /** Collect prom-client's process default metrics into this server's registry. Default true. */
  defaultMetrics?: boolean;
  /** The live quality guard of the server-owned Translator (see Translator's qualityGuard); off when unset. */
  qualityGuard?: import('../translator').QualityGuardOptions;
}

export const DEFAULT_MAX_TEXT_BYTES = 65536;

export interface ChimeraContext {
  readonly opts: ServerOptions;
  translator: TranslatorLike | null;
  ownsTranslator: boolean;
  modelName: string;
  sourceLang?: string;
  targetLang?: string;
  maxTextBytes: number;
  draining: boolean;
  closed: boolean;
  inflight: number;
  redis: RedisCacheTier | null;
  metrics: ServerMetrics | null;
  /** Resolves when in-flight requests reach zero or after `timeoutMs` (then true = drained in time). */
  waitIdle(timeoutMs: number): Promise<boolean>;
  enter(): void;
  leave(): void;
}

export function createContext(opts: ServerOptions): ChimeraContext {
  const idleWaiters = new Set<() => void>();
  const ctx: ChimeraContext = {
    opts,
    translator: null,
    ownsTranslator: false,
    modelName: opts.modelName ?? 'chimera',
    maxTextBytes: opts.maxTextBytes ?? DEFAULT_MAX_TEXT_BYTES,
    draining: false,
    closed: false,
    inflight: 0,
    redis: null,
    metrics: null,
    enter() {
      ctx.inflight++;
    },
    leave() {
      ctx.inflight--;
      if (ctx.inflight === 0) for (const w of [...idleWaiters]) w();
    },
    waitIdle(timeoutMs) {
      if (ctx.inflight === 0) return Promise.resolve(true);
      return new Promise((resolve) => {
        const done = (ok: boolean) => {
          clearTimeout(timer);
          idleWaiters.delete(onIdle);
          resolve(ok);
        };
        const onIdle = () => done(true);
        const timer = setTimeout(() => done(false), Math.max(0, timeoutMs));
        idleWaiters.add(onIdle);
      });
    },
  };
  return ctx;
}

/**
 * The language pair of a model: explicit options, else what the Translator knows (config), else a model name
 * ending in SRC-TGT (opus-mt-en-de, marian-m30k-en-de).
 */
export function languagePair(opts: ServerOptions, translator: TranslatorLike | null, modelPath?: string): { source?: string; target?: string } {
  const info = translator?.modelInfo;
  let source = opts.sourceLang ?? info?.sourceLang;
  let target = opts.targetLang ?? info?.targetLang;
  const name = modelPath ?? info?.source;
  if ((!source || !target) && name) {
    const base = path.basename(name.replace(/[\\/]+$/, '')).replace(/\.chimera$/, '').toLowerCase();
    const m = /(?:^|[-_.])([a-z]{2,3})-([a-z]{2,3})(?:[-_.](?:int8|fp16|fp32))?$/.exec(base);
    if (m) {
      source ??= m[1];
      target ??= m[2];
    }
  }
  return { source, target };
}
