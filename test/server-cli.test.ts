/**
 * `chimera serve`: the option table (flags, environment variables, defaults, "did you mean" for unknown
 * flags), and SIGTERM draining in a child process running `node dist/cli.js serve`: in-flight requests
 * complete, /ready and new requests answer 503 meanwhile, and the exit code is 0.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseServeArgs, serveUsage, suggest, SERVE_OPTIONS } from '../src/commands/serve';
import { eventually, postJson } from './helpers/server-http';

const CLI = join(__dirname, '..', 'dist', 'cli.js');

describe('serve options', () => {
  it('defaults', () => {
    const c = parseServeArgs([], {});
    expect(c).toMatchObject({ host: '127.0.0.1', port: 8080, maxQueue: 1024, cacheMb: 32, maxTextBytes: 65536, shutdownTimeoutS: 30, logLevel: 'info', help: false });
    expect(c.model).toBeUndefined();
    expect(c.redis).toBeUndefined();
  });

  it('flags win over environment variables, which win over defaults', () => {
    const c = parseServeArgs(['--port', '9001', '--max-queue=7', '--redis', 'redis://x:6379'], { CHIMERA_PORT: '9002', CHIMERA_HOST: '0.0.0.0', CHIMERA_CACHE_MB: '0', CHIMERA_MAX_QUEUE: '3' });
    expect(c.port).toBe(9001);
    expect(c.maxQueue).toBe(7);
    expect(c.host).toBe('0.0.0.0');
    expect(c.cacheMb).toBe(0);
    expect(c.redis).toBe('redis://x:6379');
  });

  it('every option has a CHIMERA_ environment variable listed in the usage text', () => {
    const u = serveUsage();
    for (const o of SERVE_OPTIONS) {
      expect(u).toContain(`--${o.flag}`);
      if (o.flag !== 'help') {
        expect(o.env).toBe(`CHIMERA_${o.flag.toUpperCase().replace(/-/g, '_')}`);
        expect(u).toContain(o.env);
      }
    }
  });

  it('unknown flags are rejected with a suggestion', () => {
    expect(() => parseServeArgs(['--prot', '80'], {})).toThrow(/unknown option --prot.*did you mean --port\?/);
    expect(() => parseServeArgs(['--max-que', '80'], {})).toThrow(/did you mean --max-queue\?/);
    expect(() => parseServeArgs(['--shutdown-timeout', '5'], {})).toThrow(/did you mean --shutdown-timeout-s\?/);
    expect(() => parseServeArgs(['--zzzzzzzzzzzz'], {})).toThrow(/unknown option --zzzzzzzzzzzz/);
    expect(suggest('zzzzzzzzzzzz')).toBeUndefined();
    expect(() => parseServeArgs(['stray'], {})).toThrow(/positional/);
  });

  it('bad values name their source', () => {
    expect(() => parseServeArgs(['--port', 'abc'], {})).toThrow(/--port must be a non-negative integer/);
    expect(() => parseServeArgs([], { CHIMERA_PORT: '-1' })).toThrow(/CHIMERA_PORT must be/);
    expect(() => parseServeArgs(['--precision', 'int4'], {})).toThrow(/--precision must be one of/);
    expect(() => parseServeArgs(['--port', '70000'], {})).toThrow(/65535/);
    expect(() => parseServeArgs(['--port'], {})).toThrow(/argument missing|--port/);
  });

  it('the CLI: --help exits 0, an unknown flag exits 1 with the suggestion', () => {
    const h = spawnSync(process.execPath, [CLI, 'serve', '--help'], { encoding: 'utf8' });
    expect(h.status).toBe(0);
    expect(h.stdout).toContain('CHIMERA_PORT');
    const bad = spawnSync(process.execPath, [CLI, 'serve', '--api-key', 'f'], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/did you mean --api-keys\?/);
    const top = spawnSync(process.execPath, [CLI, 'help'], { encoding: 'utf8' });
    expect(top.stdout).toMatch(/serve/);
  });
});

describe('SIGTERM drain in a child process', () => {
  let child: ChildProcess | null = null;
  afterEach(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  /** Starts `chimera serve` on a free port; resolves with its URL and its log lines. */
  async function serve(env: Record<string, string>, args: string[] = []): Promise<{ url: string; logs: string[]; exit: Promise<number | null> }> {
    const p = spawn(process.execPath, [CLI, 'serve', ...args], { env: { ...process.env, CHIMERA_PORT: '0', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    child = p;
    const logs: string[] = [];
    let buf = '';
    const exit = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve did not start: ${logs.join('\n')}`)), 30_000);
      p.stdout!.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          logs.push(line);
          try {
            const o = JSON.parse(line);
            if (o.msg === 'chimera serving') {
              clearTimeout(timer);
              resolve(o.url);
            }
          } catch {
            /* not JSON */
          }
        }
      });
      p.stderr!.on('data', (d) => logs.push(String(d)));
      p.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${logs.join('\n')}`)));
    });
    return { url, logs, exit };
  }

  it('in-flight requests complete, new ones get 503, exit code 0', async () => {
    const { url, logs, exit } = await serve({ CHIMERA_SHUTDOWN_TIMEOUT_S: '60', CHIMERA_LOG_LEVEL: 'info' });
    expect((await fetch(url + '/ready')).status).toBe(200);
    // a long request (high-temperature sampling rarely meets eos): still running while the checks below run
    const texts = Array.from({ length: 8 }, (_, i) => `A woman number ${i} in a green coat walks her dog along the beach.`);
    const inflight = postJson(url, '/v1/translate', { texts, sample: true, temperature: 50, seed: 4, maxLength: 150 });
    // wait until the server has the request (the in-flight gauge), then signal
    const seen = await eventually(async () => /chimera_inflight_requests 1/.test(await (await fetch(url + '/metrics')).text()), 20_000, 5);
    expect(seen).toBe(true);
    child!.kill('SIGTERM');
    await eventually(() => logs.some((l) => l.includes('"draining"')), 5000, 5);
    const ready = await fetch(url + '/ready').catch((e: Error) => e);
    const fresh = await postJson(url, '/v1/translate', { text: 'A dog.' }).catch((e: Error) => e);
    const r = await inflight;
    expect(r.status).toBe(200);
    expect(r.json.translations).toHaveLength(texts.length);
    expect(await exit).toBe(0);
    if (!(ready instanceof Error)) expect(ready.status).toBe(503);
    if (!(fresh instanceof Error)) {
      expect(fresh.status).toBe(503);
      expect(fresh.json.error.code).toBe('E_DRAINING');
    }
    expect(ready instanceof Error && fresh instanceof Error, 'the server answered while draining').toBe(false);
    expect(logs.join('\n')).toMatch(/"inTime":true/);
  });

  it('past --shutdown-timeout-s, requests still running are ended and the exit code is still 0', async () => {
    const { url, exit } = await serve({ CHIMERA_LOG_LEVEL: 'info' }, ['--shutdown-timeout-s', '0.2']);
    // high-temperature sampling rarely meets eos: 32 sentences of up to 250 tokens outlast 0.2 s
    const texts = Array.from({ length: 32 }, (_, i) => `A man number ${i} rides a horse across a wide green field.`);
    const inflight = postJson(url, '/v1/translate', { texts, sample: true, temperature: 50, seed: 1, maxLength: 250 }).catch((e: Error) => e);
    const seen = await eventually(async () => /chimera_inflight_requests 1/.test(await (await fetch(url + '/metrics')).text()), 20_000, 5);
    expect(seen).toBe(true);
    const t0 = Date.now();
    child!.kill('SIGTERM');
    expect(await exit).toBe(0);
    expect(Date.now() - t0).toBeLessThan(15_000);
    const r = await inflight;
    // either the 503 E_CLOSED answer or a cut connection, never a hang
    if (!(r instanceof Error)) expect([200, 503]).toContain(r.status);
  });

  it('an idle server exits 0 at once on SIGINT; env vars configure it', async () => {
    const { url, exit } = await serve({ CHIMERA_MAX_TEXT_BYTES: '10', CHIMERA_LOG_LEVEL: 'warn' }, ['--log-level', 'info']);
    const big = await postJson(url, '/v1/translate', { text: 'A dog runs across the grass.' });
    expect(big.status).toBe(413);
    child!.kill('SIGINT');
    expect(await exit).toBe(0);
  });

  it('warns when bound to a public address without keys', async () => {
    const { logs, exit } = await serve({ CHIMERA_HOST: '0.0.0.0' });
    expect(logs.join('\n')).toMatch(/without API keys/);
    child!.kill('SIGTERM');
    expect(await exit).toBe(0);
  });
});
