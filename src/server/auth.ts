/**
 * API keys. With keys configured, every route but the public ones (/health, /ready, and /languages, which
 * LibreTranslate itself and its clients fetch without a key) needs `Authorization: Bearer KEY`, or the
 * `api_key` field (LibreTranslate; `apiKey` as its npm client sends it) in the body or query. Missing: 401;
 * unknown: 403. Keys are compared as SHA-256 digests with crypto.timingSafeEqual, against every configured
 * key (no early exit), and never logged.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ChimeraError } from '../errors';
import { ServerError } from './errors';


/** Reads a keys file: one key per line; blank lines and lines starting with # are ignored. */
export function readApiKeys(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ChimeraError('E_ARG', `cannot read the API keys file ${file}: ${(e as Error).message}`);
  }
  const keys = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  if (keys.length === 0) throw new ChimeraError('E_ARG', `the API keys file ${file} holds no keys`);
  return keys;
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

export class KeyRing {
  private readonly digests: Buffer[];
  constructor(keys: string[]) {
    this.digests = keys.map(digest);
  }
  /** Constant-time in the key's content: every configured key is compared. */
  has(key: string): boolean {
    const d = digest(key);
    let ok = false;
    for (const k of this.digests) ok = timingSafeEqual(d, k) || ok;
    return ok;
  }
}

/** The key a request carries, if any. */
export function requestKey(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  if (typeof h === 'string') {
    const m = /^Bearer\s+(.+)$/i.exec(h.trim());
    if (m) return m[1].trim();
  }
  for (const src of [req.body, req.query] as unknown[]) {
    if (src && typeof src === 'object') {
      const o = src as Record<string, unknown>;
      for (const f of ['api_key', 'apiKey']) if (typeof o[f] === 'string' && o[f] !== '') return o[f] as string;
    }
  }
  return undefined;
}

export function authHook(keys: KeyRing) {
  return async (req: FastifyRequest): Promise<void> => {
    // routes marked public in their config (/health, /ready, /languages), under any prefix
    if ((req.routeOptions.config as { chimeraPublic?: boolean } | undefined)?.chimeraPublic) return;
    const key = requestKey(req);
    if (key === undefined) throw new ServerError(401, 'E_UNAUTHORIZED', 'an API key is required (Authorization: Bearer KEY, or api_key)');
    if (!keys.has(key)) throw new ServerError(403, 'E_FORBIDDEN', 'the API key is not valid');
  };
}

/** Adds the key check to the enclosing scope (preValidation: after the body is parsed, before it is validated). */
export async function authPlugin(app: FastifyInstance, opts: { keys: string[] }): Promise<void> {
  app.addHook('preValidation', authHook(new KeyRing(opts.keys)));
}
(authPlugin as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true;
