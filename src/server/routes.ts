/**
 * POST /v1/translate and POST /v1/translate/stream (server-sent events). A client that disconnects before its
 * answer aborts the translation through the Translator's AbortSignal, which frees its slots.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ChimeraContext } from './context';
import { ServerError, toHttpError } from './errors';
import { streamBody, translateBody, translateReply, translationObject } from './schemas';
import type { ServerTranslateOptions, ServerTranslationResult, TranslatorLike } from './types';

type Options = Pick<ServerTranslateOptions, 'beam' | 'maxLength' | 'sample' | 'temperature' | 'topK' | 'topP' | 'seed'>;
const OPTION_KEYS = ['beam', 'maxLength', 'sample', 'temperature', 'topK', 'topP', 'seed'] as const;

export function pickOptions(body: Record<string, unknown>): Options {
  const o: Record<string, unknown> = {};
  for (const k of OPTION_KEYS) if (body[k] !== undefined) o[k] = body[k];
  return o as Options;
}

export function utf8Bytes(texts: string[]): number {
  let n = 0;
  for (const t of texts) n += Buffer.byteLength(t, 'utf8');
  return n;
}

/** The translator, or 503 when there is none or the server is draining. */
export function liveTranslator(ctx: ChimeraContext): TranslatorLike {
  if (ctx.draining || ctx.closed) throw new ServerError(503, 'E_DRAINING', 'the server is shutting down', 5);
  if (!ctx.translator) throw new ServerError(503, 'E_NOT_READY', 'the model is not loaded yet', 5);
  return ctx.translator;
}

export function checkSize(ctx: ChimeraContext, texts: string[]): void {
  const n = utf8Bytes(texts);
  if (n > ctx.maxTextBytes) throw new ServerError(413, 'E_INPUT', `the texts are ${n} bytes of UTF-8; this server takes at most ${ctx.maxTextBytes}`);
}

/**
 * Translator options with an AbortSignal tied to the client's connection. Translators without the contract's
 * stats() predate AbortSignal support (their worker cannot take a signal), so they get none.
 */
export function withAbort(ctx: ChimeraContext, reply: FastifyReply, o: Options): { opts: ServerTranslateOptions; done: () => void } {
  const t = ctx.translator!;
  if (typeof t.stats !== 'function') return { opts: o, done: () => {} };
  const ac = new AbortController();
  let finished = false;
  const onClose = () => {
    if (!finished && !reply.raw.writableEnded) ac.abort();
  };
  reply.raw.on('close', onClose);
  return {
    opts: { ...o, signal: ac.signal },
    done: () => {
      finished = true;
      reply.raw.off('close', onClose);
    },
  };
}

export function translationJson(r: ServerTranslationResult): { text: string; cached: boolean; tokens: number } {
  return { text: r.text, cached: r.cached === true, tokens: r.tokens.length };
}

const round1 = (x: number) => Math.round(x * 10) / 10;

export async function translateRoutes(app: FastifyInstance, opts: { ctx: ChimeraContext }): Promise<void> {
  const { ctx } = opts;

  app.post('/v1/translate', {
    schema: {
      summary: 'Translate one text or a list of texts',
      tags: ['translate'],
      body: translateBody,
      response: { 200: translateReply },
    },
  }, async (req: FastifyRequest<{ Body: { text?: string; texts?: string[] } & Options }>, reply) => {
    const body = req.body;
    const texts = body.texts ?? [body.text!];
    checkSize(ctx, texts);
    const t = liveTranslator(ctx);
    const t0 = performance.now();
    const { opts: o, done } = withAbort(ctx, reply, pickOptions(body));
    ctx.enter();
    try {
      const res = await t.translate(texts, o);
      for (const r of res) ctx.metrics?.observeResult(r);
      return { translations: res.map(translationJson), model: ctx.modelName, ms: round1(performance.now() - t0) };
    } finally {
      done();
      ctx.leave();
    }
  });

  app.post('/v1/translate/stream', {
    schema: {
      summary: 'Translate one text, answered as server-sent events: `token` events, then `done` (or `error`)',
      tags: ['translate'],
      body: streamBody,
      response: {
        200: {
          description: 'text/event-stream. `event: token` data {"text","delta"}; `event: done` data: the translation object; `event: error` data {"code","message"}',
          content: { 'text/event-stream': { schema: { type: 'string' } } },
        },
      },
    },
  }, async (req: FastifyRequest<{ Body: { text: string } & Options }>, reply) => {
    const { text } = req.body;
    checkSize(ctx, [text]);
    const t = liveTranslator(ctx);
    const t0 = performance.now();
    const { opts: o, done } = withAbort(ctx, reply, pickOptions(req.body));
    ctx.enter();
    try {
      const it = t.stream(text, o);
      // Wait for the first event before committing to a 200: queue-full, input and option errors still get
      // their HTTP status. Errors after this point arrive as an `error` event.
      const first = await it.next();
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
        'x-request-id': String(req.id),
      });
      const send = (event: string, data: unknown) => {
        if (!res.destroyed) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      };
      let status = 200;
      try {
        let cur = first;
        while (!cur.done) {
          send('token', { text: cur.value.text, delta: cur.value.delta });
          cur = await it.next();
        }
        const r = cur.value;
        if (r) {
          ctx.metrics?.observeResult(r);
          send('done', translationJson(r));
        } else send('done', { text: '', cached: false, tokens: 0 });
      } catch (e) {
        const h = toHttpError(e);
        status = h.status;
        if (h.status >= 500 && h.code === 'E_INTERNAL') req.log.error({ err: e }, 'stream failed');
        send('error', { code: h.code, message: h.message });
      }
      res.end();
      // (the HTTP status is 200 once the stream began; requests_total counts it in onResponse)
      if (status !== 200) req.log.info({ status, responseTime: performance.now() - t0 }, 'stream ended with an error event');
      return reply;
    } finally {
      done();
      ctx.leave();
    }
  });
}

export { translationObject };
