/**
 * The LibreTranslate-compatible routes through the real `libretranslate` npm client, form bodies, its error
 * shape, and API keys (--api-keys): 401 without a key, 403 with an unknown one, on every protected route.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { translate as ltTranslate } from 'libretranslate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readApiKeys } from '../src/server/auth';
import { createServer, type ChimeraServer } from '../src/server';
import { Translator } from '../src/translator';
import type { TranslatorLike } from '../src/server/types';
import { postJson } from './helpers/server-http';

const MODEL_DIR = join(__dirname, '..', 'models', 'marian-m30k-en-de');
const KEYS = ['key-alpha-0123456789', 'key-beta-9876543210'];

let translator: TranslatorLike;
let open: ChimeraServer;
let locked: ChimeraServer;
let openBase = '';
let lockedBase = '';
let dir = '';

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'chimera-keys-'));
  writeFileSync(join(dir, 'keys'), `# keys\n${KEYS[0]}\n\n  ${KEYS[1]}  \n`);
  translator = (await Translator.load(MODEL_DIR)) as unknown as TranslatorLike;
  // two servers over one embedded Translator (and its language pair from the directory name)
  open = createServer({ translator, modelName: 'marian-m30k-en-de', sourceLang: 'en', targetLang: 'de' });
  locked = createServer({ translator, sourceLang: 'en', targetLang: 'de', apiKeys: readApiKeys(join(dir, 'keys')) });
  openBase = await open.listen({ host: '127.0.0.1', port: 0 });
  lockedBase = await locked.listen({ host: '127.0.0.1', port: 0 });
});

afterAll(async () => {
  await open?.close();
  await locked?.close();
  await translator?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('LibreTranslate routes', () => {
  it('GET /languages', async () => {
    const r = await fetch(openBase + '/languages');
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual([{ code: 'en', name: 'English', targets: ['de'] }, { code: 'de', name: 'German', targets: [] }]);
  });

  it('the real libretranslate client translates', async () => {
    const out = await ltTranslate({ query: 'A dog runs across the grass.', source: 'en', target: 'de', apiurl: openBase });
    expect(out).toMatch(/Hund/);
    const auto = await ltTranslate({ query: 'Two men are playing soccer.', target: 'de', apiurl: openBase });
    const plain = await postJson(openBase, '/v1/translate', { text: 'Two men are playing soccer.' });
    expect(auto).toBe(plain.json.translations[0].text);
  });

  it('the client rejects a pair the server does not list', async () => {
    await expect(ltTranslate({ query: 'A dog.', source: 'en', target: 'fr', apiurl: openBase })).rejects.toThrow(/not found/);
  });

  it('array q answers an array; auto source reports the detected language', async () => {
    const r = await postJson(openBase, '/translate', { q: ['A dog runs.', 'A cat sleeps.'], source: 'auto', target: 'de', format: 'text' });
    expect(r.status).toBe(200);
    expect(Array.isArray(r.json.translatedText)).toBe(true);
    expect(r.json.translatedText).toHaveLength(2);
    expect(r.json.detectedLanguage.language).toBe('en');
  });

  it('form bodies', async () => {
    const body = new URLSearchParams({ q: 'A dog runs.', source: 'en', target: 'de' });
    const r = await fetch(openBase + '/translate', { method: 'POST', body });
    expect(r.status).toBe(200);
    expect((await r.json()).translatedText).toMatch(/Hund/);
    const two = new URLSearchParams([['q', 'A dog runs.'], ['q', 'A cat sleeps.'], ['source', 'en'], ['target', 'de']]);
    const r2 = await fetch(openBase + '/translate', { method: 'POST', body: two });
    expect((await r2.json()).translatedText).toHaveLength(2);
  });

  it('400 in LibreTranslate\'s shape: unknown pair, unsupported format, missing q', async () => {
    for (const body of [
      { q: 'A dog.', source: 'en', target: 'fr' },
      { q: 'A dog.', source: 'fr', target: 'de' },
      { q: 'A dog.', source: 'en', target: 'de', format: 'html' },
      { source: 'en', target: 'de' },
      { q: '   ', source: 'en', target: 'de' },
      { q: 5, source: 'en', target: 'de' },
    ]) {
      const r = await postJson(openBase, '/translate', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(typeof r.json.error, JSON.stringify(body)).toBe('string');
    }
  });
});

describe('API keys', () => {
  const protectedRoutes: [string, string, unknown?][] = [
    ['POST', '/v1/translate', { text: 'A dog.' }],
    ['POST', '/v1/translate/stream', { text: 'A dog.' }],
    ['POST', '/translate', { q: 'A dog.', source: 'en', target: 'de' }],
    ['GET', '/metrics'],
    ['GET', '/openapi.json'],
  ];
  const call = (method: string, path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(lockedBase + path, { method, headers: body ? { 'content-type': 'application/json', ...headers } : headers, body: body ? JSON.stringify(body) : undefined });

  for (const [method, path, body] of protectedRoutes) {
    it(`${method} ${path}: 401 without a key, 403 with an unknown one, 200 with a good one`, async () => {
      const none = await call(method, path, body);
      expect(none.status).toBe(401);
      const bad = await call(method, path, body, { authorization: 'Bearer key-alpha-0123456788' });
      expect(bad.status).toBe(403);
      const good = await call(method, path, body, { authorization: `Bearer ${KEYS[1]}` });
      expect(good.status).toBe(200);
      await good.text();
      if (path === '/translate') {
        expect((await none.json()).error).toBeTypeOf('string');
      } else if (path.startsWith('/v1')) {
        expect((await none.json()).error.code).toBe('E_UNAUTHORIZED');
        expect((await bad.json()).error.code).toBe('E_FORBIDDEN');
      }
    });
  }

  it('/health, /ready and /languages need no key', async () => {
    for (const p of ['/health', '/ready', '/languages']) expect((await fetch(lockedBase + p)).status, p).toBe(200);
  });

  it("LibreTranslate's api_key field, and the npm client's apiKey", async () => {
    const body = { q: 'A dog runs.', source: 'en', target: 'de' };
    expect((await postJson(lockedBase, '/translate', { ...body, api_key: KEYS[0] })).status).toBe(200);
    expect((await postJson(lockedBase, '/translate', { ...body, api_key: 'nope' })).status).toBe(403);
    const form = new URLSearchParams({ ...body, api_key: KEYS[0] });
    expect((await fetch(lockedBase + '/translate', { method: 'POST', body: form })).status).toBe(200);
    expect(await ltTranslate({ query: 'A dog runs.', source: 'en', target: 'de', apiurl: lockedBase, apiKey: KEYS[0] })).toMatch(/Hund/);
    expect(await ltTranslate({ query: 'A dog runs.', source: 'en', target: 'de', apiurl: lockedBase })).toBeUndefined();
  });

  it('the keys file: comments and blank lines skipped; an empty file is an error', () => {
    expect(readApiKeys(join(dir, 'keys'))).toEqual(KEYS);
    writeFileSync(join(dir, 'empty'), '\n# nothing\n');
    expect(() => readApiKeys(join(dir, 'empty'))).toThrow(/no keys/);
  });
});

describe('embedding: chimeraPlugin in an app of its own, under a prefix', () => {
  it('routes, keys and public routes under the prefix; the host app\'s own routes untouched', async () => {
    const Fastify = (await import('fastify')).default;
    const { chimeraPlugin } = await import('../src/server');
    const host = Fastify();
    host.get('/mine', async () => ({ mine: true }));
    await host.register(chimeraPlugin, { translator, apiKeys: [KEYS[0]], sourceLang: 'en', targetLang: 'de', prefix: '/mt' });
    const base = await host.listen({ host: '127.0.0.1', port: 0 });
    try {
      expect((await fetch(base + '/mine')).status).toBe(200);
      expect((await fetch(base + '/mt/health')).status).toBe(200);
      expect((await fetch(base + '/mt/ready')).status).toBe(200);
      expect((await postJson(base, '/mt/v1/translate', { text: 'A dog runs.' })).status).toBe(401);
      const r = await postJson(base, '/mt/v1/translate', { text: 'A dog runs.' }, { authorization: `Bearer ${KEYS[0]}` });
      expect(r.status).toBe(200);
      expect(r.json.translations[0].text).toMatch(/Hund/);
      const doc = await (await fetch(base + '/mt/openapi.json', { headers: { authorization: `Bearer ${KEYS[0]}` } })).json();
      expect(doc.paths['/mt/v1/translate'].post.security).toBeDefined();
      expect(doc.paths['/mt/health'].get.security).toBeUndefined();
    } finally {
      await host.close();
    }
  });
});
