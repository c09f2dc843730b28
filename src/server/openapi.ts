/**
 * GET /openapi.json: an OpenAPI 3.1 document built from the JSON schemas the routes are registered with
 * (collected by an onRoute hook), so the document and the validation cannot drift apart.
 */
import type { FastifyInstance, FastifySchema, RouteOptions } from 'fastify';
import type { ChimeraContext } from './context';
import { errorSchema } from './schemas';

interface Collected {
  method: string;
  url: string;
  schema: Record<string, unknown>;
  isPublic: boolean;
}

const ERROR_STATUSES: Record<string, string> = {
  '400': 'invalid body or options',
  '401': 'an API key is required',
  '403': 'the API key is not valid',
  '413': 'the texts are over --max-text-bytes or the model\'s maximum source length',
  '429': 'the queue is full; retry after Retry-After seconds',
  '503': 'the server is draining (shutting down) or not ready',
};

function refToComponent(s: unknown): unknown {
  if (Array.isArray(s)) return s.map(refToComponent);
  if (!s || typeof s !== 'object') return s;
  const o: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s)) {
    if (k === '$ref' && typeof v === 'string' && v.endsWith('#')) o[k] = `#/components/schemas/${v.slice(0, -1)}`;
    else o[k] = refToComponent(v);
  }
  return o;
}

export function buildOpenApi(routes: Collected[], ctx: ChimeraContext, secured: boolean): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const s = r.schema;
    const responses: Record<string, unknown> = {};
    for (const [code, rs] of Object.entries((s.response as Record<string, Record<string, unknown>>) ?? {})) {
      if (rs && typeof rs === 'object' && 'content' in rs) responses[code] = { description: rs.description ?? '', content: rs.content };
      else responses[code] = { description: (rs?.description as string) ?? '', content: { 'application/json': { schema: refToComponent(rs) } } };
    }
    const lt = (s.tags as string[] | undefined)?.includes('libretranslate');
    if (!/\/(health|metrics|openapi\.json)$/.test(r.url))
      for (const [code, d] of Object.entries(ERROR_STATUSES)) {
        if (responses[code]) continue;
        if ((code === '401' || code === '403') && (!secured || r.isPublic)) continue;
        if (r.method === 'GET' && code !== '503' && code !== '401' && code !== '403') continue;
        responses[code] = {
          description: d,
          content: { 'application/json': { schema: lt ? { type: 'object', properties: { error: { type: 'string' } } } : { $ref: '#/components/schemas/ChimeraError' } } },
        };
      }
    const op: Record<string, unknown> = { summary: s.summary, tags: s.tags, responses };
    if (s.body) {
      const consumes = (s.consumes as string[] | undefined) ?? ['application/json'];
      op.requestBody = { required: true, content: Object.fromEntries(consumes.map((c) => [c, { schema: refToComponent(s.body) }])) };
    }
    if (secured && !r.isPublic) op.security = [{ bearer: [] }];
    (paths[r.url] ??= {})[r.method.toLowerCase()] = op;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'chimera translation server',
      version: '0.1.0',
      description: `Marian / OPUS-MT translation (${ctx.modelName}${ctx.sourceLang && ctx.targetLang ? `, ${ctx.sourceLang} -> ${ctx.targetLang}` : ''}). Errors: {"error": {"code", "message"}}; LibreTranslate routes: {"error": "..."}.`,
    },
    paths,
    components: {
      schemas: { ChimeraError: { type: 'object', required: ['error'], properties: errorSchema.properties } },
      ...(secured ? { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'or LibreTranslate\'s api_key field' } } } : {}),
    },
  };
}

/** Collects the routes of the enclosing scope; registers GET /openapi.json. Register it before the routes. */
export async function openApiPlugin(app: FastifyInstance, opts: { ctx: ChimeraContext; secured: boolean }): Promise<void> {
  const routes: Collected[] = [];
  app.addHook('onRoute', (r: RouteOptions) => {
    const methods = Array.isArray(r.method) ? r.method : [r.method];
    const isPublic = !!(r.config as { chimeraPublic?: boolean } | undefined)?.chimeraPublic;
    for (const m of methods) if (m !== 'HEAD') routes.push({ method: m, url: r.url, schema: (r.schema as Record<string, unknown>) ?? {}, isPublic });
  });
  let doc: Record<string, unknown> | null = null;
  app.get('/openapi.json', { schema: { summary: 'This document', tags: ['operations'] } as FastifySchema }, async () => (doc ??= buildOpenApi(routes, opts.ctx, opts.secured)));
}
(openApiPlugin as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true;
