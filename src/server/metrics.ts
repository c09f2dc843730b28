/**
 * Prometheus metrics (prom-client, one Registry per server, `chimera_` prefix) and the GET /metrics route.
 * Histograms: queue wait, TTFT, request duration, batch rows per decoder step (from the Translator's 'steps'
 * event). Gauges read Translator.stats() at scrape time; the counters that mirror the Translator's own running
 * totals (tokens, cache hits and misses per tier) advance by the difference since the previous scrape.
 */
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ChimeraContext } from './context';
import type { StepRecord, TranslatorStats } from './types';

const MS_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const ROW_BUCKETS = [1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 256];

export class ServerMetrics {
  readonly registry = new Registry();
  readonly queueWait: Histogram;
  readonly ttft: Histogram;
  readonly duration: Histogram<'route' | 'status'>;
  readonly batchRows: Histogram;
  readonly requests: Counter<'route' | 'status'>;
  readonly redisErrors: Counter<'op'>;
  private readonly tokens: Counter;
  private readonly cacheHits: Counter<'tier'>;
  private readonly cacheMisses: Counter<'tier'>;
  private readonly cacheErrors: Counter<'tier'>;
  private last = new Map<string, number>();
  private readonly onSteps = (recs: StepRecord[]) => {
    for (const r of recs) this.batchRows.observe(r.rows);
  };

  constructor(private readonly ctx: ChimeraContext, defaults = true) {
    const r = this.registry;
    const registers = [r];
    this.queueWait = new Histogram({ name: 'chimera_queue_wait_seconds', help: 'Time from a request to its admission into the batch', buckets: MS_BUCKETS, registers });
    this.ttft = new Histogram({ name: 'chimera_ttft_seconds', help: 'Time from a request to its first decided token (queue included)', buckets: MS_BUCKETS, registers });
    this.duration = new Histogram({ name: 'chimera_request_duration_seconds', help: 'HTTP request duration', labelNames: ['route', 'status'], buckets: MS_BUCKETS, registers });
    this.batchRows = new Histogram({ name: 'chimera_batch_rows', help: 'Rows (live hypotheses) per decoder step', buckets: ROW_BUCKETS, registers });
    this.requests = new Counter({ name: 'chimera_requests_total', help: 'HTTP requests by route and status code', labelNames: ['route', 'status'], registers });
    this.redisErrors = new Counter({ name: 'chimera_redis_errors_total', help: 'Failed Redis cache-tier operations (the request went on without the tier)', labelNames: ['op'], registers });
    this.tokens = new Counter({ name: 'chimera_tokens_generated_total', help: 'Tokens decided by the decoder', registers });
    this.cacheHits = new Counter({ name: 'chimera_cache_hits_total', help: 'Sentence-cache hits by tier', labelNames: ['tier'], registers });
    this.cacheMisses = new Counter({ name: 'chimera_cache_misses_total', help: 'Sentence-cache misses by tier', labelNames: ['tier'], registers });
    this.cacheErrors = new Counter({ name: 'chimera_cache_errors_total', help: 'Sentence-cache tier errors by tier (counted as misses)', labelNames: ['tier'], registers });
    const stats = () => this.stats();
    new Gauge({ name: 'chimera_queue_depth', help: 'Requests waiting for admission', registers, collect() { this.set(stats()?.queued ?? 0); } });
    new Gauge({ name: 'chimera_active_sequences', help: 'Requests being decoded', registers, collect() { this.set(stats()?.active ?? 0); } });
    new Gauge({ name: 'chimera_slots_in_use', help: 'Decoder slots in use', registers, collect() { this.set(stats()?.slotsInUse ?? 0); } });
    new Gauge({ name: 'chimera_slots_total', help: 'Decoder slots available', registers, collect() { this.set(stats()?.slotsTotal ?? 0); } });
    new Gauge({ name: 'chimera_inflight_requests', help: 'HTTP translation requests in flight', registers, collect() { this.set(ctx.inflight); } });
    new Gauge({ name: 'chimera_ready', help: '1 when the model is loaded and the server is not draining', registers, collect() { this.set(ctx.translator && !ctx.draining && !ctx.closed ? 1 : 0); } });
    // the live quality guard (present only when the Translator has one)
    const quality = () => stats()?.quality ?? null;
    new Gauge({
      name: 'chimera_quality_score', help: 'Quality guard: the sliding window score of served output against the control (absent until the window fills)',
      labelNames: ['metric'], registers,
      collect() {
        this.reset();
        const q = quality();
        if (q && q.score !== null) this.set({ metric: q.metric }, q.score);
      },
    });
    new Gauge({
      name: 'chimera_precision_tier', help: 'Quality guard: 1 for the precision rung being served, 0 for the others', labelNames: ['tier'], registers,
      collect() {
        this.reset();
        const q = quality();
        if (q) for (const t of ['int8', 'int8+fp16', 'fp16', 'fp32']) this.set({ tier: t }, t === q.tier ? 1 : 0);
      },
    });
    this.qualitySamples = new Counter({ name: 'chimera_quality_samples_total', help: 'Quality guard: served sentences scored against the control', registers });
    this.qualityDropped = new Counter({ name: 'chimera_quality_shadow_dropped_total', help: 'Quality guard: shadow samples dropped under load', registers });
    this.tierChanges = new Counter({ name: 'chimera_tier_changes_total', help: 'Quality guard: precision tier changes', registers });
    if (defaults) collectDefaultMetrics({ register: r, prefix: 'chimera_' });
  }

  private readonly qualitySamples: Counter;
  private readonly qualityDropped: Counter;
  private readonly tierChanges: Counter;

  /** Starts listening to the Translator's 'steps' event (when it has one). */
  attach(): void {
    this.ctx.translator?.on?.('steps', this.onSteps);
  }

  detach(): void {
    this.ctx.translator?.off?.('steps', this.onSteps);
  }

  private stats(): TranslatorStats | undefined {
    const t = this.ctx.translator;
    if (!t || typeof t.stats !== 'function') return undefined;
    try {
      return t.stats();
    } catch {
      return undefined;
    }
  }

  private advance(c: Counter<string>, key: string, now: number, labels?: Record<string, string>): void {
    const prev = this.last.get(key) ?? 0;
    if (now > prev) labels ? c.inc(labels, now - prev) : c.inc(now - prev);
    this.last.set(key, Math.max(prev, now));
  }

  /** Brings the mirrored counters up to the Translator's totals (called before each scrape). */
  sync(): void {
    const s = this.stats();
    if (!s) return;
    this.advance(this.tokens, 'tokens', s.tokensGenerated ?? 0);
    const q = s.quality;
    if (q) {
      this.advance(this.qualitySamples, 'quality:samples', q.samples);
      this.advance(this.qualityDropped, 'quality:dropped', q.shadowDropped);
      this.advance(this.tierChanges, 'quality:changes', q.changes.length);
    }
    if (s.cache) {
      this.advance(this.cacheHits, 'hits:memory', s.cache.hits ?? 0, { tier: 'memory' });
      this.advance(this.cacheMisses, 'misses:memory', s.cache.misses ?? 0, { tier: 'memory' });
      for (const [tier, v] of Object.entries(s.cache.tiers ?? {})) {
        this.advance(this.cacheHits, `hits:${tier}`, v.hits ?? 0, { tier });
        this.advance(this.cacheMisses, `misses:${tier}`, v.misses ?? 0, { tier });
        this.advance(this.cacheErrors, `errors:${tier}`, v.errors ?? 0, { tier });
      }
    }
  }

  /** Records a finished HTTP request. */
  observeRequest(route: string, status: number, seconds: number): void {
    const labels = { route, status: String(status) };
    this.requests.inc(labels);
    this.duration.observe(labels, seconds);
  }

  /** Records the per-translation timings the Translator reports. */
  observeResult(r: { cached?: boolean; queueMs?: number; ttftMs?: number }): void {
    if (r.cached) return;
    if (typeof r.queueMs === 'number') this.queueWait.observe(r.queueMs / 1000);
    if (typeof r.ttftMs === 'number') this.ttft.observe(r.ttftMs / 1000);
  }
}

export async function metricsPlugin(app: FastifyInstance, opts: { ctx: ChimeraContext }): Promise<void> {
  const { ctx } = opts;
  const m = ctx.metrics!;
  app.get('/metrics', {
    schema: {
      summary: 'Prometheus metrics (text exposition format)',
      tags: ['operations'],
      response: { 200: { type: 'string' } },
    },
  }, async (_req, reply) => {
    m.sync();
    const body = await m.registry.metrics();
    reply.header('content-type', m.registry.contentType);
    return body;
  });
}
