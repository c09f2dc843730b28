/**
 * The translation server (src/server) on an ephemeral loopback port, through real HTTP (fetch): every route's
 * happy path, body validation, every error status (400, 404, 413, 429 under a burst, 503 while draining), SSE
 * event order and content against the non-streaming answer, a client disconnect freeing its slots, /metrics as
 * Prometheus text, the OpenAPI document, request ids, and API keys never reaching the logs.
 */
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type ChimeraServer } from '../src/server';
import type { TranslatorLike } from '../src/server/types';
import { Translator } from '../src/translator';
import { eventually, parsePrometheus, parseSse, postJson } from './helpers/server-http';

const MODEL_DIR = join(__dirname, '..', 'models', 'marian-m30k-en-de');

let app: ChimeraServer;
let base = '';
const logLines: string[] = [];

beforeAll(async () => {
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logLines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  app = createServer({ model: MODEL_DIR, maxTextBytes: 4096, logger: { level: 'info', stream: sink } });
  base = await app.listen({ host: '127.0.0.1', port: 0 });
});

afterAll(async () => {
  await app?.close();
});

/** The server's Translator as the contract describes it (stats() once continuous batching has landed). */
const translator = () => app.chimera.translator as TranslatorLike;

describe('happy paths', () => {
  it('POST /v1/translate with one text', async () => {
    const r = await postJson(base, '/v1/translate', { text: 'A dog runs across the grass.' });
    expect(r.status).toBe(200);
    expect(r.json.model).toBe('marian-m30k-en-de');
    expect(typeof r.json.ms).toBe('number');
    expect(r.json.translations).toHaveLength(1);
    const t = r.json.translations[0];
    expect(Object.keys(t).sort()).toEqual(['cached', 'text', 'tokens']);
    expect(t.text).toMatch(/Hund/);
    expect(t.tokens).toBeGreaterThan(0);
    expect(typeof t.cached).toBe('boolean');
    expect(r.headers.get('x-request-id')).toBeTruthy();
  });

  it('POST /v1/translate with texts and options, in order', async () => {
    const texts = ['A man rides a bike.', 'Two children play in the snow.', 'A woman is singing.'];
    const r = await postJson(base, '/v1/translate', { texts, beam: 2, maxLength: 40 });
    expect(r.status).toBe(200);
    expect(r.json.translations).toHaveLength(3);
    const one = await Promise.all(texts.map((text) => postJson(base, '/v1/translate', { text, beam: 2, maxLength: 40 })));
    expect(r.json.translations.map((x: { text: string }) => x.text)).toEqual(one.map((o) => o.json.translations[0].text));
    const s = await postJson(base, '/v1/translate', { text: 'A dog plays.', sample: true, temperature: 0.7, topK: 20, topP: 0.9, seed: 7 });
    expect(s.status).toBe(200);
  });

  it('an incoming x-request-id is kept', async () => {
    const r = await postJson(base, '/v1/translate', { text: 'A cat sleeps.' }, { 'x-request-id': 'abc-123' });
    expect(r.headers.get('x-request-id')).toBe('abc-123');
  });

  it('GET /health and /ready', async () => {
    const h = await fetch(base + '/health');
    expect(h.status).toBe(200);
    expect(await h.json()).toEqual({ status: 'ok' });
    const r = await fetch(base + '/ready');
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ status: 'ready', model: 'marian-m30k-en-de' });
  });

  it('GET /openapi.json documents every route', async () => {
    const r = await fetch(base + '/openapi.json');
    expect(r.status).toBe(200);
    const doc = await r.json();
    expect(doc.openapi).toMatch(/^3\./);
    for (const p of ['/v1/translate', '/v1/translate/stream', '/health', '/ready', '/metrics', '/languages', '/translate'])
      expect(doc.paths[p], p).toBeDefined();
    const t = doc.paths['/v1/translate'].post;
    expect(t.requestBody.content['application/json'].schema.properties.texts).toBeDefined();
    for (const code of ['200', '400', '413', '429', '503']) expect(t.responses[code], code).toBeDefined();
    expect(doc.paths['/translate'].post.requestBody.content['application/x-www-form-urlencoded']).toBeDefined();
  });
});

describe('SSE', () => {
  it('token events, then done, equal to the non-streaming result', async () => {
    const text = 'Three people are sitting on a bench near the water.';
    const r = await fetch(base + '/v1/translate/stream', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text }) });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = parseSse(await r.text());
    const tokens = events.filter((e) => e.event === 'token');
    const done = events.filter((e) => e.event === 'done');
    expect(done).toHaveLength(1);
    expect(events[events.length - 1].event).toBe('done');
    expect(events.some((e) => e.event === 'error')).toBe(false);
    expect(tokens.length).toBeGreaterThan(0);
    let sofar = '';
    for (const ev of tokens) {
      expect(Object.keys(ev.data).sort()).toEqual(['delta', 'text']);
      sofar += ev.data.delta;
      expect(ev.data.text).toBe(sofar);
    }
    const plain = await postJson(base, '/v1/translate', { text });
    const want = plain.json.translations[0];
    expect(done[0].data.text).toBe(want.text);
    expect(done[0].data.tokens).toBe(want.tokens);
    expect(sofar).toBe(want.text);
    expect(Object.keys(done[0].data).sort()).toEqual(['cached', 'text', 'tokens']);
  });

  it('errors before the first token are HTTP statuses', async () => {
    const r = await postJson(base, '/v1/translate/stream', { text: 'A dog.', beam: 4 });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('E_VALIDATION');
    const e = await postJson(base, '/v1/translate/stream', { text: '   ' });
    expect(e.status).toBe(400);
    expect(e.json.error.code).toBe('E_INPUT');
  });
});

describe('validation and errors', () => {
  const bad: [string, unknown][] = [
    ['no text', {}],
    ['both text and texts', { text: 'a', texts: ['b'] }],
    ['text not a string', { text: 5 }],
    ['empty text', { text: '' }],
    ['empty texts', { texts: [] }],
    ['texts with a number', { texts: ['a', 3] }],
    ['unknown option', { text: 'a', beams: 2 }],
    ['beam 0', { text: 'a', beam: 0 }],
    ['beam as a string', { text: 'a', beam: '2' }],
    ['topP above 1', { text: 'a', topP: 1.5 }],
    ['temperature 0', { text: 'a', temperature: 0 }],
    ['seed negative', { text: 'a', seed: -1 }],
  ];
  for (const [what, body] of bad)
    it(`400 for ${what}`, async () => {
      const r = await postJson(base, '/v1/translate', body);
      expect(r.status).toBe(400);
      expect(r.json.error.code).toBe('E_VALIDATION');
      expect(typeof r.json.error.message).toBe('string');
    });

  it('400 for malformed JSON and whitespace-only text', async () => {
    const r = await postJson(base, '/v1/translate', '{"text": ');
    expect(r.status).toBe(400);
    expect(r.json.error).toBeDefined();
    const w = await postJson(base, '/v1/translate', { text: '  \n ' });
    expect(w.status).toBe(400);
    expect(w.json.error.code).toBe('E_INPUT');
  });

  it('404 in the error shape', async () => {
    const r = await fetch(base + '/v2/nothing');
    expect(r.status).toBe(404);
    expect((await r.json()).error.code).toBe('E_NOT_FOUND');
  });

  it('413 over maxTextBytes', async () => {
    const r = await postJson(base, '/v1/translate', { text: 'A dog runs. '.repeat(400) });
    expect(r.status).toBe(413);
    expect(r.json.error.code).toBe('E_INPUT');
    const s = await postJson(base, '/v1/translate', { texts: Array(10).fill('ä'.repeat(250)) });
    expect(s.status).toBe(413);
  });

  it("413 over the model's maximum source length", async () => {
    // one sentence (no sentence breaks) of ~400 tokens, under maxTextBytes
    const r = await postJson(base, '/v1/translate', { text: 'dog '.repeat(400).trim() });
    expect(r.status).toBe(413);
    expect(r.json.error.code).toBe('E_INPUT');
  });

  it('the server still serves after the errors', async () => {
    const r = await postJson(base, '/v1/translate', { text: 'A dog runs.' });
    expect(r.status).toBe(200);
  });
});

describe('metrics', () => {
  it('/metrics parses as Prometheus text with the chimera_ metrics', async () => {
    const r = await fetch(base + '/metrics');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await r.text();
    const m = parsePrometheus(text);
    for (const name of ['chimera_queue_wait_seconds', 'chimera_ttft_seconds', 'chimera_request_duration_seconds', 'chimera_batch_rows'])
      expect(text, name).toContain(`# TYPE ${name} histogram`);
    for (const name of ['chimera_queue_depth', 'chimera_active_sequences', 'chimera_slots_in_use'])
      expect(text, name).toContain(`# TYPE ${name} gauge`);
    for (const name of ['chimera_tokens_generated_total', 'chimera_cache_hits_total', 'chimera_cache_misses_total', 'chimera_requests_total'])
      expect(text, name).toContain(`# TYPE ${name} counter`);
    expect(text).toContain('chimera_process_cpu_user_seconds_total');
    expect(m.get('chimera_requests_total{route="/v1/translate",status="200"}')).toBeGreaterThan(0);
    expect(m.get('chimera_requests_total{route="/v1/translate",status="400"}')).toBeGreaterThan(0);
    expect(m.get('chimera_requests_total{route="/v1/translate",status="413"}')).toBeGreaterThan(0);
    expect(m.get('chimera_request_duration_seconds_count{route="/v1/translate",status="200"}')).toBeGreaterThan(0);
  });

  it('translator figures reach the metrics (stats() and the steps event)', async () => {
    const t = translator();
    expect(typeof t.stats, 'the contract Translator has stats()').toBe('function');
    await postJson(base, '/v1/translate', { text: 'A brown dog jumps over a fence.' });
    const again = await postJson(base, '/v1/translate', { text: 'A brown dog jumps over a fence.' });
    expect(again.json.translations[0].cached).toBe(true);
    const m = parsePrometheus(await (await fetch(base + '/metrics')).text());
    expect(m.get('chimera_tokens_generated_total')).toBeGreaterThan(0);
    expect(m.get('chimera_cache_hits_total{tier="memory"}')).toBeGreaterThan(0);
    expect(m.get('chimera_cache_misses_total{tier="memory"}')).toBeGreaterThan(0);
    expect(m.get('chimera_batch_rows_count')).toBeGreaterThan(0);
    expect(m.get('chimera_ttft_seconds_count')).toBeGreaterThan(0);
    expect(m.get('chimera_queue_wait_seconds_count')).toBeGreaterThan(0);
    expect(m.get('chimera_slots_total')).toBeGreaterThan(0);
  });
});

describe('client disconnect', () => {
  it('aborting a stream mid-way frees its slots', async () => {
    const t = translator();
    expect(typeof t.stats, 'the contract Translator has stats()').toBe('function');
    const aborted0 = t.stats!().requests.aborted;
    const ac = new AbortController();
    // high-temperature sampling rarely meets eos: a long generation, cut after its first token
    const r = await fetch(base + '/v1/translate/stream', {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: ac.signal,
      body: JSON.stringify({ text: 'A group of people stand in front of a large building.', sample: true, temperature: 50, seed: 3, maxLength: 250 }),
    });
    expect(r.status).toBe(200);
    const reader = r.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain('event: token');
    ac.abort();
    await reader.cancel().catch(() => {});
    const freed = await eventually(() => {
      const s = t.stats!();
      return s.active === 0 && s.slotsInUse === 0 && s.queued === 0 && s.requests.aborted > aborted0;
    }, 10_000);
    expect(freed, JSON.stringify(t.stats!())).toBe(true);
    const m = parsePrometheus(await (await fetch(base + '/metrics')).text());
    expect(m.get('chimera_slots_in_use')).toBe(0);
    expect(m.get('chimera_active_sequences')).toBe(0);
    expect(m.get('chimera_inflight_requests')).toBe(0);
  });

  it('aborting a plain request frees its slots', async () => {
    const t = translator();
    expect(typeof t.stats).toBe('function');
    const aborted0 = t.stats!().requests.aborted;
    const ac = new AbortController();
    const p = fetch(base + '/v1/translate', {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: ac.signal,
      body: JSON.stringify({ texts: Array.from({ length: 16 }, (_, i) => `Person number ${i} walks down a long street.`), sample: true, temperature: 50, seed: 5, maxLength: 250 }),
    }).catch((e: Error) => e);
    await eventually(() => t.stats!().active > 0, 10_000, 2);
    ac.abort();
    expect(await p).toBeInstanceOf(Error);
    const freed = await eventually(() => {
      const s = t.stats!();
      return s.active === 0 && s.slotsInUse === 0 && s.requests.aborted > aborted0;
    }, 10_000);
    expect(freed, JSON.stringify(t.stats!())).toBe(true);
  });
});

describe('logs', () => {
  it('request ids are logged; API keys and Authorization never are', async () => {
    await postJson(base, '/v1/translate?api_key=sekrit-query', { text: 'A dog.' }, { authorization: 'Bearer sekrit-header', 'x-request-id': 'log-check-1' });
    await postJson(base, '/translate', { q: 'A dog.', source: 'en', target: 'de', api_key: 'sekrit-body' });
    const all = logLines.join('\n');
    expect(all).toContain('log-check-1');
    expect(all).not.toContain('sekrit');
  });
});

describe('back-pressure: 429 under a burst', () => {
  let small: ChimeraServer;
  let sbase = '';
  let own: TranslatorLike;
  beforeAll(async () => {
    own = (await (Translator.load as (d: string, o: object) => Promise<unknown>)(MODEL_DIR, { maxQueue: 1, maxSlots: 1 })) as TranslatorLike;
    small = createServer({ translator: own });
    sbase = await small.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await small?.close();
    await own?.close();
  });

  it('only 200s and 429s (with Retry-After), then it serves again', async () => {
    // long requests (high-temperature sampling rarely meets eos) so the one slot and the one queue place stay
    // taken while the burst arrives, whatever the machine's speed
    const texts = Array.from({ length: 4 }, (_, i) => `A man in a blue shirt number ${i} is climbing a rock wall.`);
    const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => postJson(sbase, '/v1/translate', { texts, seed: i, sample: true, temperature: 50, maxLength: 200 })));
    const statuses = rs.map((r) => r.status);
    expect(statuses.every((s) => s === 200 || s === 429), statuses.join(',')).toBe(true);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(0);
    const busy = rs.find((r) => r.status === 429)!;
    expect(busy.json.error.code).toBe('E_BUSY');
    expect(Number(busy.headers.get('retry-after'))).toBeGreaterThan(0);
    const after = await postJson(sbase, '/v1/translate', { text: 'A dog runs.' });
    expect(after.status).toBe(200);
    const m = parsePrometheus(await (await fetch(sbase + '/metrics')).text());
    expect(m.get('chimera_requests_total{route="/v1/translate",status="429"}')).toBeGreaterThan(0);
  });

  it('an embedded Translator is not closed with the server', async () => {
    const extra = createServer({ translator: own });
    await extra.ready();
    await extra.close();
    const r = await own.translate('A dog runs.');
    expect(r[0].text).toMatch(/Hund/);
  });
});

describe('draining', () => {
  it('drain(): /ready and new requests answer 503, in-flight requests finish', async () => {
    const d = createServer({ model: MODEL_DIR });
    const dbase = await d.listen({ host: '127.0.0.1', port: 0 });
    // a long request (high-temperature sampling rarely meets eos): still running while the checks below run
    const texts = Array.from({ length: 8 }, (_, i) => `Child number ${i} plays with a red ball in the garden.`);
    const inflight = postJson(dbase, '/v1/translate', { texts, sample: true, temperature: 50, seed: 2, maxLength: 150 });
    await eventually(() => d.chimera.context.inflight > 0, 10_000, 1);
    const drained = d.chimera.drain(60);
    const ready = await fetch(dbase + '/ready').catch((e: Error) => e);
    const fresh = await postJson(dbase, '/v1/translate', { text: 'A dog.' }).catch((e: Error) => e);
    const r = await inflight;
    expect(await drained).toBe(true);
    expect(r.status).toBe(200);
    expect(r.json.translations).toHaveLength(texts.length);
    // while the request was in flight the server was still listening: both got a 503
    if (!(ready instanceof Error)) {
      expect(ready.status).toBe(503);
      expect((await ready.json()).error.code).toBe('E_DRAINING');
    }
    if (!(fresh instanceof Error)) {
      expect(fresh.status).toBe(503);
      expect(fresh.json.error.code).toBe('E_DRAINING');
    }
    expect(ready instanceof Error && fresh instanceof Error, 'at least one answer came while draining').toBe(false);
  });
});

describe('unknown body fields', () => {
  it('are named, with the nearest known field', async () => {
    const r = await postJson(base, '/v1/translate', { text: 'A dog.', bem: 2 });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('E_VALIDATION');
    expect(r.json.error.message).toMatch(/unknown body field 'bem' \(did you mean 'beam'\?\)/);
    const s = await postJson(base, '/v1/translate', { text: 'A dog.', max_length: 2 });
    expect(s.json.error.message).toMatch(/'max_length'.*did you mean 'maxLength'/);
  });
});
