import { suggest } from '../util/options';

/** How errors become HTTP statuses and bodies: `{"error": {"code", "message"}}` (LibreTranslate routes: `{"error": "..."}`). */

export interface HttpError {
  status: number;
  code: string;
  message: string;
  /** Seconds, for 429 and 503. */
  retryAfter?: number;
}

/** An error the server raises itself, with its status. */
export class ServerError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly retryAfter?: number) {
    super(message);
    this.name = 'ServerError';
  }
}

/**
 * A schema violation in words a client can act on: an unknown body field is named, with the nearest known one
 * (the library's option checks do the same), instead of ajv's "must NOT have additional properties".
 */
function validationMessage(v: unknown): string | undefined {
  const list = Array.isArray(v) ? (v as { keyword?: string; params?: { additionalProperty?: string }; parentSchema?: { properties?: Record<string, unknown> } }[]) : [];
  const extra = list.find((x) => x.keyword === 'additionalProperties' && x.params?.additionalProperty);
  if (!extra) return undefined;
  const name = extra.params!.additionalProperty!;
  const known = Object.keys(extra.parentSchema?.properties ?? {});
  const near = suggest(name, known);
  return `unknown body field '${name}'${near ? ` (did you mean '${near}'?)` : ''}${known.length ? `; known fields: ${known.join(', ')}` : ''}`;
}

/** Maps anything thrown by a handler, fastify or the Translator to a status, a code and a message. */
export function toHttpError(e: unknown): HttpError {
  const err = e as { name?: string; code?: string; reason?: string; message?: string; statusCode?: number; validation?: unknown; status?: number; retryAfter?: number };
  if (e instanceof ServerError) return { status: e.status, code: e.code, message: e.message, retryAfter: e.retryAfter };
  if (err?.validation) return { status: 400, code: 'E_VALIDATION', message: validationMessage(err.validation) ?? err.message ?? 'invalid request' };
  switch (err?.code) {
    case 'E_INPUT':
      return { status: err.reason === 'too_long' ? 413 : 400, code: 'E_INPUT', message: err.message ?? 'invalid input' };
    case 'E_ARG':
      return { status: 400, code: 'E_ARG', message: err.message ?? 'invalid option' };
    case 'E_BUSY':
      return { status: 429, code: 'E_BUSY', message: err.message ?? 'the queue is full, retry later', retryAfter: 1 };
    case 'E_CLOSED':
      return { status: 503, code: 'E_CLOSED', message: err.message ?? 'the translator is closed', retryAfter: 5 };
    case 'ABORT_ERR':
      // the client went away; nobody reads this answer
      return { status: 499, code: 'E_ABORTED', message: err.message ?? 'the request was aborted' };
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, code: 'E_INPUT', message: err.message ?? 'request body is too large' };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { status: 415, code: 'E_MEDIA_TYPE', message: err.message ?? 'unsupported content type' };
  }
  if (err?.name === 'AbortError') return { status: 499, code: 'E_ABORTED', message: err.message ?? 'the request was aborted' };
  const sc = err?.statusCode;
  if (typeof sc === 'number' && sc >= 400 && sc < 500) return { status: sc, code: sc === 400 ? 'E_VALIDATION' : `E_HTTP_${sc}`, message: err.message ?? 'bad request' };
  return { status: 500, code: 'E_INTERNAL', message: 'internal error' };
}
