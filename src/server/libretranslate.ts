/**
 * LibreTranslate-compatible routes, so applications that speak its API can point at chimera unchanged:
 * GET /languages (the source language with its target, and the target with none) and POST /translate (JSON or form data; `q` a string or an array; `source` a code or `auto`;
 * `format` text). Errors use LibreTranslate's shape `{"error": "..."}`.
 */
import formbody from '@fastify/formbody';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ChimeraContext } from './context';
import { ServerError, toHttpError } from './errors';
import { checkSize, liveTranslator, withAbort } from './routes';
import { ltError, ltTranslateBody } from './schemas';

const NAMES: Record<string, string> = {
  ar: 'Arabic', bg: 'Bulgarian', ca: 'Catalan', cs: 'Czech', da: 'Danish', de: 'German', el: 'Greek', en: 'English',
  es: 'Spanish', et: 'Estonian', fi: 'Finnish', fr: 'French', he: 'Hebrew', hi: 'Hindi', hu: 'Hungarian',
  id: 'Indonesian', it: 'Italian', ja: 'Japanese', ko: 'Korean', lt: 'Lithuanian', lv: 'Latvian', nl: 'Dutch',
  no: 'Norwegian', pl: 'Polish', pt: 'Portuguese', ro: 'Romanian', ru: 'Russian', sk: 'Slovak', sl: 'Slovenian',
  sv: 'Swedish', th: 'Thai', tr: 'Turkish', uk: 'Ukrainian', vi: 'Vietnamese', zh: 'Chinese',
};

export function languageName(code: string): string {
  try {
    const n = new Intl.DisplayNames(['en'], { type: 'language' }).of(code);
    if (n && n !== code) return n;
  } catch {
    /* not a BCP 47 code */
  }
  return NAMES[code] ?? code;
}

export async function libreTranslateRoutes(app: FastifyInstance, opts: { ctx: ChimeraContext }): Promise<void> {
  const { ctx } = opts;
  await app.register(formbody);

  // LibreTranslate's error shape for every route of this scope
  app.setErrorHandler((err, req, reply) => {
    const h = toHttpError(err);
    if (h.code === 'E_INTERNAL') req.log.error({ err }, 'request failed');
    if (h.retryAfter) reply.header('retry-after', String(h.retryAfter));
    reply.code(h.status).send({ error: h.message });
  });

  app.get('/languages', {
    config: { chimeraPublic: true },
    schema: {
      summary: 'LibreTranslate: the language pairs this server translates',
      tags: ['libretranslate'],
      response: {
        200: {
          type: 'array',
          items: {
            type: 'object',
            properties: { code: { type: 'string' }, name: { type: 'string' }, targets: { type: 'array', items: { type: 'string' } } },
          },
        },
      },
    },
  }, async () => {
    const { sourceLang: s, targetLang: t } = ctx;
    if (!s || !t) return [];
    // The target is listed too (with no targets of its own), as LibreTranslate lists every language it knows:
    // its clients (the npm client among them) check that both codes of a request appear in this list.
    return [{ code: s, name: languageName(s), targets: [t] }, { code: t, name: languageName(t), targets: [] }];
  });

  app.post('/translate', {
    schema: {
      summary: 'LibreTranslate: translate `q` (a string or an array of strings) from `source` (or auto) to `target`',
      tags: ['libretranslate'],
      body: ltTranslateBody,
      consumes: ['application/json', 'application/x-www-form-urlencoded'],
      response: {
        200: {
          type: 'object',
          properties: {
            translatedText: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
            detectedLanguage: { type: 'object', properties: { confidence: { type: 'number' }, language: { type: 'string' } } },
          },
        },
        400: ltError,
      },
    },
  }, async (req: FastifyRequest<{ Body: { q: string | string[]; source: string; target: string; format: string } }>, reply) => {
    const { q, source, target, format } = req.body;
    if (format !== 'text') throw new ServerError(400, 'E_VALIDATION', `format ${JSON.stringify(format)} is not supported (only "text")`);
    const { sourceLang: s, targetLang: t } = ctx;
    if (!s || !t) throw new ServerError(400, 'E_VALIDATION', 'this server does not know its language pair (start it with --source-lang and --target-lang)');
    if ((source !== 'auto' && source !== s) || target !== t)
      throw new ServerError(400, 'E_VALIDATION', `${source} -> ${target} is not available: this server translates ${s} -> ${t}`);
    const texts = Array.isArray(q) ? q : [q];
    if (texts.length === 0 || texts.some((x) => typeof x !== 'string' || x.trim() === '')) throw new ServerError(400, 'E_VALIDATION', 'Invalid request: missing q parameter');
    checkSize(ctx, texts);
    const tr = liveTranslator(ctx);
    const { opts: o, done } = withAbort(ctx, reply, {});
    ctx.enter();
    try {
      const res = await tr.translate(texts, o);
      for (const r of res) ctx.metrics?.observeResult(r);
      const out = res.map((r) => r.text);
      return {
        translatedText: Array.isArray(q) ? out : out[0],
        ...(source === 'auto' ? { detectedLanguage: { confidence: 100, language: s } } : {}),
      };
    } finally {
      done();
      ctx.leave();
    }
  });
}
