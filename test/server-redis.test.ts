/**
 * The Redis cache tier against a real redis-server this test starts on a free loopback port (and kills): a
 * translation made by one server instance is a cache hit on another; when Redis dies, requests keep
 * succeeding from the in-process cache, with a warning and chimera_redis_errors_total. Skipped, with the
 * reason, when redis-server is not installed (.ci/run installs it).
 */
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type ChimeraServer } from '../src/server';
import { RedisCacheTier } from '../src/server/redis-cache';
import type { TranslatorLike } from '../src/server/types';
import { eventually, parsePrometheus, postJson, redisUnavailable, startRedis } from './helpers/server-http';

const MODEL_DIR = join(__dirname, '..', 'models', 'marian-m30k-en-de');
const why = redisUnavailable();
if (why) console.warn(`[server-redis] SKIPPED: ${why}`);

describe.skipIf(why !== null)(`Redis cache tier${why ? ` (skipped: ${why})` : ''}`, () => {
  let redis: Awaited<ReturnType<typeof startRedis>>;
  let a: ChimeraServer;
  let b: ChimeraServer;
  let baseA = '';
  let baseB = '';
  const warnings: string[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    const sink = new Writable({
      write(chunk, _e, cb) {
        for (const l of String(chunk).split('\n').filter(Boolean)) if (JSON.parse(l).level >= 40) warnings.push(l);
        cb();
      },
    });
    const prefix = `test:${process.pid}:`;
    a = createServer({ model: MODEL_DIR, redis: redis.url, redisPrefix: prefix, logger: { level: 'warn', stream: sink } });
    b = createServer({ model: MODEL_DIR, redis: redis.url, redisPrefix: prefix });
    baseA = await a.listen({ host: '127.0.0.1', port: 0 });
    baseB = await b.listen({ host: '127.0.0.1', port: 0 });
    await a.chimera.context.redis!.ready(5000);
    await b.chimera.context.redis!.ready(5000);
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await redis?.stop();
  });

  it('a translation from instance A is a hit on instance B', async () => {
    const text = 'A little girl in a pink dress climbs the stairs.';
    const first = await postJson(baseA, '/v1/translate', { text });
    expect(first.status).toBe(200);
    expect(first.json.translations[0].cached).toBe(false);
    // written on completion: give the write a moment to land
    const hit = await eventually(async () => {
      const r = await postJson(baseB, '/v1/translate', { text });
      return r.json.translations[0].cached ? r : null;
    }, 5000, 50);
    expect(hit, 'B never saw A\'s translation in Redis').toBeTruthy();
    expect(hit!.json.translations[0].text).toBe(first.json.translations[0].text);
    const stats = (b.chimera.translator as TranslatorLike).stats!();
    expect(stats.cache.tiers.redis.hits).toBeGreaterThan(0);
    const m = parsePrometheus(await (await fetch(baseB + '/metrics')).text());
    expect(m.get('chimera_cache_hits_total{tier="redis"}')).toBeGreaterThan(0);
  });

  it('entries carry the TTL and the prefix', async () => {
    const tier = a.chimera.context.redis!;
    const keys = await tier.client.keys(`${tier.prefix}*`);
    expect(keys.length).toBeGreaterThan(0);
    const ttl = await tier.client.ttl(keys[0]);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(tier.ttlS);
  });

  it('a Redis kill degrades to the in-process cache: no failed requests', async () => {
    await redis.stop();
    await eventually(() => a.chimera.context.redis!.client.status !== 'ready', 5000);
    const texts = ['An old man reads a newspaper on a bench.', 'Two dogs run through the snow.'];
    for (const text of texts) {
      const r = await postJson(baseA, '/v1/translate', { text });
      expect(r.status).toBe(200);
      expect(r.json.translations[0].cached).toBe(false);
    }
    const again = await postJson(baseA, '/v1/translate', { text: texts[0] });
    expect(again.status).toBe(200);
    expect(again.json.translations[0].cached).toBe(true);
    const s = await postJson(baseA, '/v1/translate/stream', { text: 'A boy jumps into a lake.' });
    expect(s.status).toBe(200);
    expect(s.text).toContain('event: done');
    const m = parsePrometheus(await (await fetch(baseA + '/metrics')).text());
    const errs = [...m.entries()].filter(([k]) => k.startsWith('chimera_redis_errors_total')).reduce((x, [, v]) => x + v, 0);
    expect(errs).toBeGreaterThan(0);
    expect(warnings.join('\n')).toMatch(/redis cache tier unavailable/);
    // rate-limited: not one warning per failed command
    expect(warnings.filter((w) => /redis cache tier unavailable/.test(w)).length).toBeLessThanOrEqual(2);
    const ready = await fetch(baseA + '/ready');
    expect(ready.status).toBe(200);
  });

  it('the tier alone: misses fast when Redis is down', async () => {
    const tier = new RedisCacheTier({ url: redis.url, connectTimeoutMs: 200 });
    try {
      const t0 = performance.now();
      await expect(tier.get(['k'])).rejects.toThrow();
      await tier.set([['k', { text: 'x', tokens: [1] }]]);
      expect(performance.now() - t0).toBeLessThan(1000);
      expect(tier.errors).toBeGreaterThan(0);
    } finally {
      await tier.close();
    }
  });
});
