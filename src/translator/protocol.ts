/**
 * The messages between the Translator (main thread) and its worker thread, and what they carry. Both sides import
 * this module; neither imports the other.
 */
import type { ChimeraErrorReason } from '../errors';
import type { GenerateOptions, MarianLoadOptions } from '../marian';
import type { SchedulerOptions, SchedulerStats } from '../engine/scheduler';

/** Wall-clock milliseconds (high resolution) that both threads agree on: performance.now() has a per-thread origin. */
export function wallNow(): number {
  return performance.timeOrigin + performance.now();
}

export interface WorkerOptions {
  /** Load options that cross the thread boundary (onProgress becomes `progress` messages). */
  load: Omit<MarianLoadOptions, 'onProgress'>;
  /** Send a `progress` message while weights are packed. */
  progress?: boolean;
  /** Run this worker's threads at the lowest scheduling priority (background work: the guard's control). */
  lowPriority?: boolean;
  scheduler: SchedulerOptions;
}

export type Request =
  | { type: 'translate'; id: number; sentences: string[]; opts: GenerateOptions; stream: boolean; textOf: number[] }
  | { type: 'abort'; id: number }
  | { type: 'adjustNorm'; id: number; name: string; edit: { scaleGamma?: number; shiftBeta?: number } }
  | { type: 'sensitivity'; id: number; sentences: string[] }
  | { type: 'close' };

/** One sentence's translation and its timeline (wall-clock ms). */
export interface SentenceReply {
  text: string;
  tokens: number[];
  admitAt: number;
  firstAt: number;
  doneAt: number;
}

export interface WorkerStats extends SchedulerStats {
  at: number;
}

export type Reply =
  | { type: 'progress'; done: number; total: number }
  | { type: 'loaded'; loadMs: number; precision: unknown; maxPositions: number; threads: number; layers: { encoder: number; decoder: number }; sourceLang?: string; targetLang?: string; shortlist?: string | null }
  | { type: 'admit'; id: number; at: number }
  | { type: 'token'; id: number; sentence: number; token: number; text: string }
  | { type: 'sentence'; id: number; sentence: number; result: SentenceReply }
  | { type: 'result'; id: number; sentences: SentenceReply[] }
  | { type: 'error'; id: number; code: string; message: string; reason?: ChimeraErrorReason }
  | { type: 'stats'; stats: WorkerStats; steps: { rows: number; ms: number }[] }
  | { type: 'control'; id: number; value: unknown }
  | { type: 'closed' };

