/**
 * The Translator the server programs against (src/translator), declared structurally here so the
 * server compiles against any Translator that offers these members: the package's own, or one passed in by
 * an embedding application. Members a Translator may lack are optional and the server degrades without them
 * (no gauges without stats(), no batch-rows histogram without the 'steps' event).
 */
import type { PrecisionPlan } from '../marian';

// The package's own types, used as they are; only what an embedding application's Translator may leave out is
// loosened below (stats() fields are read with defaults).
export type { CachedSentence, SentenceCacheTier, TranslatorLoadOptions, StreamEvent as ServerStreamEvent } from '../translator';
import type { StreamEvent as ServerStreamEvent, TranslatorStats as FullStats } from '../translator';

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

/** What stats() may return: the Translator's figures, any of which an embedding application's may lack. */
export type TranslatorStats = Partial<FullStats>;

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
