/**
 * chimera's translation server as fastify plugins, one per concern:
 *   health (GET /health, /ready), metrics (GET /metrics), auth (API keys), openapi (GET /openapi.json),
 *   routes (POST /v1/translate, /v1/translate/stream), libretranslate (GET /languages, POST /translate),
 *   redis-cache (the shared sentence-cache tier).
 *
 *   const app = createServer({ model: '/models/opus-mt-en-de', precision: 'int8' });
 *   await app.listen({ port: 8080 });
 *
 * or mount the routes in an existing app: `app.register(chimeraPlugin, { translator })`.
 */
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { ChimeraError } from '../errors';
import { authPlugin } from './auth';
import { createContext, languagePair, type ChimeraContext, type ServerOptions } from './context';
import { ServerError, toHttpError } from './errors';
import { healthRoutes } from './health';
import { openApiPlugin } from './openapi';
import { translateRoutes } from './routes';
import { errorSchema } from './schemas';
import type { TranslatorLike, TranslatorLoadOptions } from './types';

export type { ServerOptions, ChimeraContext } from './context';
export { RedisCacheTier } from './redis-cache';
export type { RedisCacheTierOptions } from './redis-cache';
export { readApiKeys } from './auth';
export type * from './types';

/** The built-in demo model. */
export function demoModelDir(): string {
  return path.resolve(__dirname, '..', '..', 'models', 'marian-m30k-en-de');
}

/** Loads (or adopts) the Translator and registers every chimera route in this (encapsulated) scope. */
export async function chimeraPlugin(app: FastifyInstance, options: ServerOptions & { ctx?: ChimeraContext }): Promise<void> {
  const ctx = options.ctx ?? createContext(options);
  const opts = ctx.opts;
  // the heavier modules (prom-client, ioredis, formbody) load with the first server, not with the package
  const { ServerMetrics, metricsPlugin } = await import('./metrics');
  const { libreTranslateRoutes } = await import('./libretranslate');
  ctx.metrics ??= new ServerMetrics(ctx, opts.defaultMetrics !== false);

  if (opts.translator) {
    if (opts.redis) throw new ChimeraError('E_ARG', 'the redis option needs a Translator the server loads itself; with your own Translator, pass a RedisCacheTier in its cacheTiers');
    ctx.translator = opts.translator;
    ctx.ownsTranslator = false;
    ctx.modelName = opts.modelName ?? (opts.translator.modelInfo?.source ? path.basename(opts.translator.modelInfo.source) : 'chimera');
  } else {
    const model = opts.model ?? demoModelDir();
    if (opts.redis) {
      const { RedisCacheTier } = await import('./redis-cache');
      const metrics = ctx.metrics;
      ctx.redis = new RedisCacheTier({
        url: opts.redis,
        ttlS: opts.redisTtlS,
        prefix: opts.redisPrefix,
        warn: (msg) => app.log.warn(msg),
        onError: (op) => metrics.redisErrors.inc({ op }),
      });
    }
    const load: TranslatorLoadOptions = {
      ...(opts.precision !== undefined ? { precision: opts.precision } : {}),
      ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
      ...(opts.device !== undefined ? { device: opts.device } : {}),
      ...(opts.shortlist !== undefined ? { shortlist: opts.shortlist } : {}),
      ...(opts.maxQueue !== undefined ? { maxQueue: opts.maxQueue } : {}),
      ...(opts.cacheMb !== undefined ? { cacheBytes: Math.round(opts.cacheMb * 1048576) } : {}),
      ...(ctx.redis ? { cacheTiers: [ctx.redis] } : {}),
      ...(opts.qualityGuard ? { qualityGuard: opts.qualityGuard } : {}),
    };
    const { Translator } = await import('../translator');
    const t0 = performance.now();
    try {
      ctx.translator = (await (Translator.load as (m: string, o: TranslatorLoadOptions) => Promise<unknown>)(model, load)) as TranslatorLike;
    } catch (e) {
      await ctx.redis?.close();
      throw e;
    }
    ctx.ownsTranslator = true;
    ctx.modelName = opts.modelName ?? path.basename(model.replace(/[\\/]+$/, ''));
    app.log.info({ model, loadMs: Math.round(performance.now() - t0) }, 'model loaded');
  }
  const pair = languagePair(opts, ctx.translator, opts.translator ? undefined : (opts.model ?? demoModelDir()));
  ctx.sourceLang = pair.source;
  ctx.targetLang = pair.target;
  ctx.metrics.attach();
  // the quality guard's structured events, in the server's log
  ctx.translator?.on?.('tierChange', (e: unknown) => app.log.warn(e as object, 'precision tier changed by the quality guard'));
  ctx.translator?.on?.('qualityAlert', (e: unknown) => app.log.warn(e as object, 'translation quality below the guard threshold'));
  ctx.translator?.on?.('qualityError', (e: unknown) => app.log.error(e as object, 'quality guard tier change failed'));

  app.addSchema(errorSchema);

  // Errors: {"error": {"code", "message"}} (the LibreTranslate scope sets its own shape)
  app.setErrorHandler((err, req, reply) => {
    const h = toHttpError(err);
    if (h.code === 'E_INTERNAL') req.log.error({ err }, 'request failed');
    if (h.retryAfter) reply.header('retry-after', String(h.retryAfter));
    reply.code(h.status).send({ error: { code: h.code, message: h.message } });
  });

  // Draining: everything but liveness and readiness answers 503 (and asks the client not to reuse the connection)
  app.addHook('onRequest', async (req, reply) => {
    if (!(ctx.draining || ctx.closed)) return;
    if ((req.routeOptions.config as { chimeraAlwaysOpen?: boolean } | undefined)?.chimeraAlwaysOpen) return;
    reply.header('connection', 'close');
    throw new ServerError(503, 'E_DRAINING', 'the server is shutting down', 5);
  });
  app.addHook('onResponse', async (req, reply) => {
    ctx.metrics?.observeRequest(req.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
  });
  app.addHook('onSend', async (req, reply, payload) => {
    reply.header('x-request-id', String(req.id));
    return payload;
  });

  const secured = !!opts.apiKeys && opts.apiKeys.length > 0;
  if (secured) await app.register(authPlugin, { keys: opts.apiKeys! });
  await app.register(openApiPlugin, { ctx, secured });
  await app.register(healthRoutes, { ctx });
  await app.register(metricsPlugin, { ctx });
  await app.register(translateRoutes, { ctx });
  await app.register(libreTranslateRoutes, { ctx });

  app.addHook('onClose', async () => {
    ctx.closed = true;
    ctx.metrics?.detach();
    if (ctx.ownsTranslator) await ctx.translator?.close().catch(() => {});
    await ctx.redis?.close();
  });
}

export interface ChimeraHandle {
  readonly context: ChimeraContext;
  readonly translator: TranslatorLike | null;
  /**
   * Graceful shutdown: /ready and new requests answer 503 at once; in-flight requests get up to `timeoutS`
   * (default: shutdownTimeoutS, 30) to finish; then the server, the Translator (if it owns it) and Redis close.
   * Resolves true when every in-flight request finished in time.
   */
  drain(timeoutS?: number): Promise<boolean>;
}

export type ChimeraServer = FastifyInstance & { chimera: ChimeraHandle };

export interface CreateServerOptions extends ServerOptions {
  /** pino options (or true/false); the Authorization header and API keys are always redacted. Default false. */
  logger?: boolean | Record<string, unknown>;
  /** Extra fastify options (bodyLimit is derived from maxTextBytes unless given). */
  fastify?: Omit<FastifyServerOptions, 'logger'>;
}

const REDACT = [
  'req.headers.authorization', 'req.headers["x-api-key"]', 'headers.authorization',
  'req.body.api_key', 'req.body.apiKey', 'body.api_key', 'body.apiKey', 'api_key', 'apiKey',
];

/** Drops API keys from a logged URL's query string. */
export function redactUrl(url: string): string {
  return url.replace(/([?&](?:api_key|apiKey)=)[^&#]*/g, '$1[redacted]');
}

function loggerOptions(l: CreateServerOptions['logger']): FastifyServerOptions['logger'] {
  if (!l) return false;
  const base = l === true ? {} : l;
  return {
    ...base,
    redact: { paths: REDACT, censor: '[redacted]' },
    serializers: {
      req: (req: { method?: string; url?: string; ip?: string; headers?: Record<string, unknown> }) => ({
        method: req.method, url: redactUrl(req.url ?? ''), remoteAddress: req.ip,
      }),
      ...((base as { serializers?: object }).serializers ?? {}),
    },
  } as FastifyServerOptions['logger'];
}

/** A fastify instance serving one Translator; `await app.listen(...)` (or `app.ready()`) loads the model. */
export function createServer(options: CreateServerOptions = {}): ChimeraServer {
  const ctx = createContext(options);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Fastify = (require('fastify') as typeof import('fastify')).default;
  const app = Fastify({
    logger: loggerOptions(options.logger),
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    bodyLimit: Math.max(1 << 20, 8 * ctx.maxTextBytes),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false, verbose: true } },
    return503OnClosing: true,
    // the chimera plugin loads the model while the server starts: a large one quantised from a directory can
    // take longer than fastify's default 10 s plugin timeout
    pluginTimeout: 0,
    ...(options.fastify ?? {}),
  }) as unknown as ChimeraServer;

  const handle: ChimeraHandle = {
    context: ctx,
    get translator() {
      return ctx.translator;
    },
    async drain(timeoutS) {
      ctx.draining = true;
      const s = timeoutS ?? options.shutdownTimeoutS ?? 30;
      app.log.info({ inflight: ctx.inflight, timeoutS: s }, 'draining');
      const ok = await ctx.waitIdle(s * 1000);
      if (!ok) {
        // Out of time: requests still running end now. A Translator the server owns is closed first, so they
        // answer 503 (E_CLOSED); connections still open after a short grace are cut.
        app.log.warn({ inflight: ctx.inflight }, 'shutdown timeout: closing with requests still in flight');
        ctx.closed = true;
        if (ctx.ownsTranslator) await ctx.translator?.close().catch(() => {});
        if (!(await ctx.waitIdle(2000))) app.server.closeAllConnections?.();
      }
      await app.close();
      return ok;
    },
  };
  app.decorate('chimera', handle);
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({ error: { code: 'E_NOT_FOUND', message: `no route ${req.method} ${redactUrl(req.url)}` } });
  });
  app.register(chimeraPlugin, { ...options, ctx });
  return app;
}
