/** GET /health (liveness: the process answers) and GET /ready (the model is loaded and the server is not draining). */
import type { FastifyInstance } from 'fastify';
import type { ChimeraContext } from './context';

export async function healthRoutes(app: FastifyInstance, opts: { ctx: ChimeraContext }): Promise<void> {
  const { ctx } = opts;
  app.get('/health', {
    config: { chimeraPublic: true, chimeraAlwaysOpen: true },
    schema: {
      summary: 'Liveness: 200 while the process runs',
      tags: ['operations'],
      response: { 200: { type: 'object', properties: { status: { type: 'string' } } } },
    },
  }, async () => ({ status: 'ok' }));

  app.get('/ready', {
    config: { chimeraPublic: true, chimeraAlwaysOpen: true },
    schema: {
      summary: 'Readiness: 200 when the model is loaded and the server is not draining, else 503',
      tags: ['operations'],
      response: {
        200: { type: 'object', properties: { status: { type: 'string' }, model: { type: 'string' } } },
        503: { $ref: 'ChimeraError#' },
      },
    },
  }, async (_req, reply) => {
    if (ctx.draining || ctx.closed) {
      reply.code(503).header('retry-after', '5');
      return { error: { code: 'E_DRAINING', message: 'the server is shutting down' } };
    }
    if (!ctx.translator) {
      reply.code(503).header('retry-after', '5');
      return { error: { code: 'E_NOT_READY', message: 'the model is not loaded yet' } };
    }
    return { status: 'ready', model: ctx.modelName };
  });
}
