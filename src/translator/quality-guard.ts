/**
 * The live quality guard: a share of served sentences is translated again by a full-precision control model,
 * and the served output is scored against the control's over a sliding window (BLEU or chrF, sacreBLEU-exact).
 * A server has no references; what it can measure is how far its quantised output drifts from full precision
 * on the same live sentences. When the window's score falls below `minScore`, the guard alerts, or moves the
 * serving model one rung up the ladder `chimera quantize` climbs (int8 → int8 with its most sensitive groups at
 * fp16 → fp16 → fp32) by a hot swap; with `recoverScore` it steps back down once quality holds again.
 *
 * Shadowing never delays live traffic: the control runs in its own worker on its own small thread budget
 * (`controlThreads`, default 1) at the lowest scheduling priority, is loaded on first use, and shadow work is
 * dropped (and counted) whenever the live queue is under pressure or `maxShadowInflight` shadow requests are
 * outstanding.
 */
import { ChimeraError } from '../errors';
import type { Precision, PrecisionPlan } from '../marian';
import { ScoreWindow, type WindowMetric } from '../quality/score-window';
import { checkKeys } from '../util/options';
import { mulberry32 } from '../util/rng';

export interface QualityGuardOptions {
  /** Share of served (decoded, not cached) sentences also translated by the control. Default 0.02. */
  sampleRate?: number;
  /** The control's precision. Default 'fp32'. */
  controlPrecision?: Precision;
  /** Sentences in the sliding window. Default 500. */
  window?: number;
  /** 'bleu' (default) or 'chrf', computed with the control's output as the reference. */
  metric?: WindowMetric;
  /** The threshold for the window's score. */
  minScore: number;
  /** 'alert' (default: emit 'qualityAlert') or 'escalate' (hot-swap one rung up). */
  action?: 'alert' | 'escalate';
  /** Step one rung back down when a full window scores at least this (must exceed minScore). Off when unset. */
  recoverScore?: number;
  /** No tier change within this many ms of the previous one. Default 60,000. */
  cooldownMs?: number;
  /** Shadow requests outstanding at once; more are dropped. Default 4. */
  maxShadowInflight?: number;
  /**
   * Share of wall time the control may spend translating (over the last 10 s); samples past it are dropped.
   * Default 0.03; 1 lifts the limit. The control runs at low priority, but it still shares memory bandwidth and caches with the
   * serving threads, so its duty cycle, not only its priority, bounds what the guard costs live traffic.
   */
  shadowBudget?: number;
  /** The control's intra-op threads. Default 1. */
  controlThreads?: number;
  /** Groups ('encoder.3', 'decoder.0', 'lmHead') the mixed rung keeps at fp16; measured on window sentences when unset. */
  sensitiveGroups?: string[];
  /** How many of the most sensitive groups the mixed rung keeps at fp16. Default 2. */
  mixedGroups?: number;
  /** Seed of the sampling decision (reproducible tests). */
  seed?: number;
}
const GUARD_KEYS = ['sampleRate', 'controlPrecision', 'window', 'metric', 'minScore', 'action', 'recoverScore', 'cooldownMs', 'maxShadowInflight', 'shadowBudget', 'controlThreads', 'sensitiveGroups', 'mixedGroups', 'seed'] as const;

/** The span over which the control's duty cycle is measured (ms): long enough to hold several shadow sentences. */
const BUDGET_WINDOW_MS = 10_000;

/**
 * Sentences a live sensitivity ranking runs on: one teacher-forced pass per precision group over each, so a few
 * dozen keep it to seconds on the control's thread while still ranking the groups stably.
 */
const SENSITIVITY_SENTENCES = 32;

/**
 * Live requests waiting for admission at which shadow samples are dropped. In a continuously batched engine a
 * few requests wait a step or two as a matter of course; this many means arrivals outpace admission.
 */
const PRESSURE_QUEUED = 16;

export type Rung = 'int8' | 'int8+fp16' | 'fp16' | 'fp32';
export const LADDER: readonly Rung[] = ['int8', 'int8+fp16', 'fp16', 'fp32'];

export interface TierChange {
  at: string;
  from: Rung;
  to: Rung;
  score: number;
}

export interface QualityStats {
  metric: WindowMetric;
  /** The window's score; null until the window first fills (and again after each tier change). */
  score: number | null;
  /** Pairs scored since the start. */
  samples: number;
  shadowDropped: number;
  tier: Rung;
  changes: TierChange[];
  controlLoaded: boolean;
  /** Resident memory the process gained when the control loaded (bytes; 0 before). */
  controlMemoryBytes: number;
}

/** What the guard needs from the Translator it watches (and from the control it creates). */
export interface GuardHost {
  queued(): number;
  swap(plan: PrecisionPlan): Promise<void>;
  layers: { encoder: number; decoder: number };
  loadControl(precision: Precision, threads: number, maxQueue: number): Promise<GuardControl>;
  emit(event: string, payload: unknown): void;
}

export interface GuardControl {
  translate(sentence: string, opts: Record<string, unknown>): Promise<string>;
  /** Groups most sensitive to int8 first, measured on `sentences` on the control's own thread budget. */
  sensitivity(sentences: string[]): Promise<string[]>;
  close(): Promise<void>;
}

/** The rung a precision plan is on. */
export function rungOf(p: PrecisionPlan): Rung {
  const all = [p.encoder, p.decoder, p.lmHead, ...(p.encoderLayers ?? []), ...(p.decoderLayers ?? [])];
  if (all.every((x) => x === 'fp32')) return 'fp32';
  if (all.every((x) => x === 'fp16' || x === 'fp32') && all.some((x) => x === 'fp16')) return 'fp16';
  if (all.every((x) => x === 'int8')) return 'int8';
  return 'int8+fp16';
}

/** The plan of the mixed rung: int8 everywhere except `groups` at fp16. */
export function mixedPlan(layers: { encoder: number; decoder: number }, groups: readonly string[]): PrecisionPlan {
  const at = (g: string): Precision => (groups.includes(g) ? 'fp16' : 'int8');
  const enc = Array.from({ length: layers.encoder }, (_, i) => at(`encoder.${i}`));
  const dec = Array.from({ length: layers.decoder }, (_, i) => at(`decoder.${i}`));
  const plan: PrecisionPlan = { encoder: 'int8', decoder: 'int8', lmHead: at('lmHead') };
  if (enc.some((x) => x !== 'int8')) plan.encoderLayers = enc;
  if (dec.some((x) => x !== 'int8')) plan.decoderLayers = dec;
  return plan;
}

export function checkGuardOptions(o: unknown): Required<Omit<QualityGuardOptions, 'recoverScore' | 'sensitiveGroups' | 'seed'>> & QualityGuardOptions {
  checkKeys(o, GUARD_KEYS, 'qualityGuard option');
  const g = (o ?? {}) as QualityGuardOptions;
  const num = (v: unknown, what: string, lo: number, hi: number) => {
    if (!(typeof v === 'number' && Number.isFinite(v) && v >= lo && v <= hi)) throw new ChimeraError('E_ARG', `qualityGuard.${what} must be a number in [${lo}, ${hi}], got ${String(v)}`);
    return v;
  };
  const int = (v: unknown, what: string, lo: number) => {
    if (!(Number.isInteger(v) && (v as number) >= lo)) throw new ChimeraError('E_ARG', `qualityGuard.${what} must be an integer >= ${lo}, got ${String(v)}`);
    return v as number;
  };
  if (g.minScore === undefined) throw new ChimeraError('E_ARG', 'qualityGuard.minScore is required (the window score below which the guard acts)');
  const r = {
    ...g,
    sampleRate: g.sampleRate === undefined ? 0.02 : num(g.sampleRate, 'sampleRate', 0, 1),
    controlPrecision: g.controlPrecision ?? 'fp32',
    window: g.window === undefined ? 500 : int(g.window, 'window', 1),
    metric: g.metric ?? 'bleu',
    minScore: num(g.minScore, 'minScore', 0, 100),
    action: g.action ?? 'alert',
    cooldownMs: g.cooldownMs === undefined ? 60_000 : num(g.cooldownMs, 'cooldownMs', 0, Number.MAX_SAFE_INTEGER),
    maxShadowInflight: g.maxShadowInflight === undefined ? 4 : int(g.maxShadowInflight, 'maxShadowInflight', 1),
    shadowBudget: g.shadowBudget === undefined ? 0.03 : num(g.shadowBudget, 'shadowBudget', 0, 1),
    controlThreads: g.controlThreads === undefined ? 1 : int(g.controlThreads, 'controlThreads', 1),
    mixedGroups: g.mixedGroups === undefined ? 2 : int(g.mixedGroups, 'mixedGroups', 1),
  };
  if (!['fp32', 'fp16', 'int8'].includes(r.controlPrecision)) throw new ChimeraError('E_ARG', `qualityGuard.controlPrecision must be fp32, fp16 or int8, got ${String(r.controlPrecision)}`);
  if (r.metric !== 'bleu' && r.metric !== 'chrf') throw new ChimeraError('E_ARG', `qualityGuard.metric must be 'bleu' or 'chrf', got ${String(r.metric)}`);
  if (r.action !== 'alert' && r.action !== 'escalate') throw new ChimeraError('E_ARG', `qualityGuard.action must be 'alert' or 'escalate', got ${String(r.action)}`);
  if (r.recoverScore !== undefined && !(num(r.recoverScore, 'recoverScore', 0, 100) > r.minScore))
    throw new ChimeraError('E_ARG', 'qualityGuard.recoverScore must be above minScore (hysteresis)');
  if (r.sensitiveGroups !== undefined && !(Array.isArray(r.sensitiveGroups) && r.sensitiveGroups.every((x) => typeof x === 'string' && /^(encoder\.\d+|decoder\.\d+|lmHead)$/.test(x))))
    throw new ChimeraError('E_ARG', "qualityGuard.sensitiveGroups must be group names such as 'encoder.3', 'decoder.0', 'lmHead'");
  return r;
}

export class QualityGuard {
  private readonly o: ReturnType<typeof checkGuardOptions>;
  private readonly window: ScoreWindow;
  private readonly rnd: () => number;
  private control: Promise<GuardControl> | null = null;
  private controlLoaded = false;
  private controlMemoryBytes = 0;
  private inflight = 0;
  private dropped = 0;
  private rung: Rung;
  private readonly base: Rung;
  private readonly changes: TierChange[] = [];
  private lastChange = -Infinity;
  private swapping = false;
  private sinceAlert = 0;
  private closed = false;
  /** Shadow requests of the last BUDGET_WINDOW_MS (end Infinity while in flight), for the duty cycle. */
  private readonly spans: { start: number; end: number }[] = [];
  /** The latest shadowed sources: the sentences a sensitivity ranking is measured on. */
  private readonly recent: string[] = [];

  constructor(private readonly host: GuardHost, opts: unknown, initial: PrecisionPlan) {
    this.o = checkGuardOptions(opts);
    this.window = new ScoreWindow(this.o.metric, this.o.window);
    this.rnd = mulberry32(this.o.seed ?? 1);
    this.rung = this.base = rungOf(initial);
  }

  /**
   * Offers decoded sentences with their served translations. Sampled ones are sent to the control unless the
   * live queue or the shadow budget is under pressure (then they are dropped and counted). Sampling without a
   * seed is not shadowed: its output is not a function of the input.
   */
  observe(sources: string[], served: string[], opts: Record<string, unknown>): void {
    if (this.closed || (opts.sample === true && opts.seed === undefined)) return;
    for (let i = 0; i < sources.length; i++) {
      if (!(this.rnd() < this.o.sampleRate)) continue;
      if (this.inflight >= this.o.maxShadowInflight || this.host.queued() >= PRESSURE_QUEUED || (this.o.shadowBudget < 1 && this.busyShare() >= this.o.shadowBudget)) {
        this.dropped++;
        continue;
      }
      this.inflight++;
      const span = { start: performance.now(), end: Infinity };
      this.spans.push(span);
      void this.shadow(sources[i], served[i], opts).finally(() => {
        this.inflight--;
        span.end = performance.now();
      });
    }
  }

  /** The share of the last BUDGET_WINDOW_MS the control spent on shadow requests (in-flight ones up to now). */
  private busyShare(): number {
    const now = performance.now(), from = now - BUDGET_WINDOW_MS;
    while (this.spans.length > 0 && this.spans[0].end < from) this.spans.shift();
    let busy = 0;
    for (const s of this.spans) busy += Math.min(s.end, now) - Math.max(s.start, from);
    return busy / BUDGET_WINDOW_MS;
  }

  private async shadow(source: string, served: string, opts: Record<string, unknown>): Promise<void> {
    let ref: string;
    try {
      this.control ??= this.loadControl();
      ref = await (await this.control).translate(source, opts);
    } catch {
      this.dropped++; // E_BUSY from the control's own queue, or a control failure: the sample is lost, not the request
      return;
    }
    if (this.closed) return;
    this.recent.push(source);
    if (this.recent.length > SENSITIVITY_SENTENCES) this.recent.shift();
    try {
      this.window.add(served, ref);
    } catch {
      this.dropped++; // a pair the metric cannot score (an empty control output under BLEU)
      return;
    }
    this.evaluate();
  }

  private async loadControl(): Promise<GuardControl> {
    const before = process.memoryUsage().rss;
    const c = await this.host.loadControl(this.o.controlPrecision, this.o.controlThreads, this.o.maxShadowInflight);
    this.controlLoaded = true;
    this.controlMemoryBytes = Math.max(0, process.memoryUsage().rss - before);
    return c;
  }

  private evaluate(): void {
    const score = this.window.score();
    if (score === null || this.swapping) return;
    const now = performance.now();
    const cooled = now - this.lastChange >= this.o.cooldownMs;
    if (score < this.o.minScore) {
      if (this.o.action === 'escalate' && cooled && this.rung !== 'fp32') void this.move(+1, score);
      else {
        // an alert when the window first drops, then once per window's worth of samples while it stays low
        if (this.sinceAlert === 0) this.host.emit('qualityAlert', { metric: this.o.metric, score, minScore: this.o.minScore, tier: this.rung });
        this.sinceAlert = (this.sinceAlert + 1) % this.o.window;
      }
      return;
    }
    this.sinceAlert = 0;
    if (this.o.recoverScore !== undefined && score >= this.o.recoverScore && cooled && LADDER.indexOf(this.rung) > LADDER.indexOf(this.base))
      void this.move(-1, score);
  }

  private async planFor(rung: Rung): Promise<PrecisionPlan> {
    if (rung === 'int8+fp16') {
      let groups = this.o.sensitiveGroups;
      if (!groups) {
        this.control ??= this.loadControl();
        groups = await (await this.control).sensitivity([...this.recent]);
      }
      return mixedPlan(this.host.layers, groups.slice(0, this.o.mixedGroups));
    }
    return { encoder: rung as Precision, decoder: rung as Precision, lmHead: rung as Precision };
  }

  private async move(dir: 1 | -1, score: number): Promise<void> {
    const to = LADDER[LADDER.indexOf(this.rung) + dir];
    if (!to) return;
    this.swapping = true;
    const from = this.rung;
    try {
      await this.host.swap(await this.planFor(to));
      this.rung = to;
      const change: TierChange = { at: new Date().toISOString(), from, to, score };
      this.changes.push(change);
      this.host.emit('tierChange', { event: 'chimera.tier_change', metric: this.o.metric, ...change });
      this.window.clear(); // the next window measures the new tier
    } catch (e) {
      this.host.emit('qualityError', { event: 'chimera.tier_change_failed', from, to, message: (e as Error).message });
    } finally {
      this.lastChange = performance.now();
      this.swapping = false;
    }
  }

  stats(): QualityStats {
    return {
      metric: this.o.metric, score: this.window.score(), samples: this.window.samples, shadowDropped: this.dropped,
      tier: this.rung, changes: this.changes.map((c) => ({ ...c })), controlLoaded: this.controlLoaded, controlMemoryBytes: this.controlMemoryBytes,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    const c = this.control;
    this.control = null;
    if (c) await (await c.catch(() => null))?.close();
  }
}
