/**
 * The Translator the server programs against (docs/translator-contract.md), declared structurally here so the
 * server compiles against any Translator that offers these members: the package's own, or one passed in by
 * an embedding application. Members a Translator may lack are optional and the server degrades without them
 * (no gauges without stats(), no batch-rows histogram without the 'steps' event).
 */
import type { PrecisionPlan, MarianLoadOptions } from '../marian';

export interface CachedSentence {
  text: string;
  tokens: number[];
}

/** A cache tier read after the in-process LRU and written on completion (e.g. Redis). */
export interface SentenceCacheTier {
  readonly name: string;
  get(keys: string[]): Promise<(CachedSentence | null | undefined)[]>;
  set(entries: [string, CachedSentence][]): Promise<void> | void;
}

export interface TranslatorLoadOptions extends MarianLoadOptions {
  maxQueue?: number;
  maxSlots?: number;
  maxSourceTokens?: number;
  maxStateBytes?: number;
  cacheBytes?: number;
  cacheTiers?: SentenceCacheTier[];
  splitSentences?: boolean;
  qualityGuard?: import('../translator').QualityGuardOptions;
}

export interface ServerTranslateOptions {
  beam?: number;
  maxLength?: number;
  lengthPenalty?: number;
  earlyStopping?: boolean;
  sample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  signal?: AbortSignal;
}

export interface ServerTranslationResult {
  text: string;
  tokens: number[];
  cached?: boolean;
  queueMs?: number;
  ttftMs: number;
  totalMs: number;
}

export interface ServerStreamEvent {
  token: number;
  text: string;
  delta: string;
}

export interface TranslatorStats {
  queued: number;
  active: number;
  slotsInUse: number;
  slotsTotal: number;
  sourceTokensInUse: number;
  steps: number;
  stepRowsMean: number;
  stepMsMean: number;
  stepMsLast: number;
  tokensGenerated: number;
  requests: { done: number; failed: number; aborted: number; busy: number };
  cache: {
    hits: number;
    misses: number;
    entries: number;
    bytes: number;
    tiers: Record<string, { hits: number; misses: number; errors: number }>;
  };
}

export interface ModelInfo {
  source: string;
  precision?: PrecisionPlan | unknown;
  maxSourceTokens?: number;
  sourceLang?: string;
  targetLang?: string;
}

export interface StepRecord {
  rows: number;
  ms: number;
}

/** What the server needs from a Translator. */
export interface TranslatorLike {
  readonly loadMs?: number;
  readonly modelInfo?: ModelInfo;
  translate(texts: string | string[], opts?: ServerTranslateOptions): Promise<ServerTranslationResult[]>;
  stream(text: string, opts?: ServerTranslateOptions): AsyncGenerator<ServerStreamEvent, ServerTranslationResult | undefined>;
  close(): Promise<void>;
  stats?(): TranslatorStats;
  on?(event: 'steps', fn: (records: StepRecord[]) => void): unknown;
  /** The quality guard's structured events: 'tierChange', 'qualityAlert', 'qualityError'. */
  on?(event: 'tierChange' | 'qualityAlert' | 'qualityError', fn: (e: unknown) => void): unknown;
  off?(event: 'steps', fn: (records: StepRecord[]) => void): unknown;
}
