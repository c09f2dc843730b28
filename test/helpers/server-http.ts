/** Helpers for the server tests: JSON requests, server-sent events, Prometheus text, free ports, redis-server. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';

export async function postJson(base: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; json: any; text: string }> {
  const r = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await r.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, headers: r.headers, json, text };
}

export interface SseEvent {
  event: string;
  data: any;
}

/** Parses a complete text/event-stream body. */
export function parseSse(text: string): SseEvent[] {
  const out: SseEvent[] = [];
  for (const block of text.split('\n\n')) {
    if (block.trim() === '') continue;
    let event = 'message';
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    out.push({ event, data: JSON.parse(data.join('\n')) });
  }
  return out;
}

/**
 * Prometheus text exposition format, strictly: every sample line is `name{labels} value` (value as Go's
 * ParseFloat reads it), every metric has a TYPE before its samples. Returns samples keyed by `name{labels}`.
 */
export function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const typed = new Map<string, string>();
  const sampleRe = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? ([+-]?(?:[0-9.eE+-]+|[Nn][Aa][Nn]|[Ii][Nn][Ff]))(?: -?[0-9]+)?$/;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) continue;
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(type)) throw new Error(`bad TYPE line: ${line}`);
      typed.set(name, type);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = sampleRe.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
    const base = m[1].replace(/_(bucket|sum|count|total|created)$/, '');
    if (!typed.has(m[1]) && !typed.has(base) && !typed.has(m[1].replace(/_(bucket|sum|count)$/, ''))) throw new Error(`sample before its TYPE: ${line}`);
    // Go's ParseFloat, as Prometheus reads values: NaN and Inf in any case (prom-client writes "Nan")
    const low = m[3].toLowerCase();
    const v = low === 'nan' ? NaN : low === 'inf' || low === '+inf' ? Infinity : low === '-inf' ? -Infinity : Number(m[3]);
    if (Number.isNaN(v) && low !== 'nan') throw new Error(`bad value: ${line}`);
    samples.set(m[1] + (m[2] ?? ''), v);
  }
  return samples;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export const REDIS_BIN = process.env.REDIS_SERVER ?? 'redis-server';

/** Why redis-server cannot be used here, or null when it can. */
export function redisUnavailable(): string | null {
  const r = spawnSync(REDIS_BIN, ['--version'], { encoding: 'utf8' });
  if (r.error) return `${REDIS_BIN} is not installed (${(r.error as Error).message}); .ci/run installs it with apt-get install -y redis-server`;
  if (r.status !== 0) return `${REDIS_BIN} --version failed: ${r.stderr}`;
  return null;
}

/** Starts a throwaway redis-server on a free loopback port (no persistence); resolves when it accepts commands. */
export async function startRedis(): Promise<{ proc: ChildProcess; port: number; url: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const proc = spawn(REDIS_BIN, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout!.on('data', (d) => (log += d));
  proc.stderr!.on('data', (d) => (log += d));
  const t0 = Date.now();
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`redis-server exited: ${log}`);
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => {
        c.write('PING\r\n');
      });
      c.once('data', (d) => {
        c.destroy();
        resolve(d.toString().startsWith('+PONG'));
      });
      c.once('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() - t0 > 10_000) throw new Error(`redis-server did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await gone;
  };
  return { proc, port, url: `redis://127.0.0.1:${port}`, stop };
}

/** Polls `fn` until it returns a truthy value or `ms` pass. */
export async function eventually<T>(fn: () => T | Promise<T>, ms = 5000, step = 20): Promise<T> {
  const t0 = Date.now();
  let last: T;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() - t0 > ms) return last;
    await new Promise((r) => setTimeout(r, step));
  }
}
