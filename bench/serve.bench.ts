/**
 * npm run bench:serve — `chimera serve` under HTTP load from autocannon, against the plain way a Node user
 * serves onnxruntime-node today (a fastify route awaiting the reference decoder loop, one request at a time,
 * same weights exported with export-onnx).
 *
 *   npm run bench:serve -- [--json FILE] [--quick] [--models opus,m30k] [--duration S]
 *
 * Each server runs in its own child process on loopback (the load generator never shares its event loop).
 * Per model:
 * - rates rising (×2 from a start rate) until saturation (achieved < 85 % of the target, or errors): achieved
 *   requests/s, latency p50/p95/p99, non-2xx, mean batch rows per decoder step (from /metrics deltas);
 *   then a run at half the saturated rate (the p95 target);
 * - TTFT p50/p95 through POST /v1/translate/stream (time to the first `event: token` chunk), idle and under
 *   the half-saturated load;
 * - a burst at 10x the saturated rate against a server with --max-queue 64 (so the limit is reached): status
 *   counts (only 200 and 429 allowed) and the server's peak RSS;
 * - cache hits: one known sentence at a modest rate against a server with its cache on: p50/p99;
 * - the onnxruntime baseline server, the same ramp.
 * The load servers run with --cache-mb 0 so repeated validation sentences are decoded every time.
 * autocannon's overallRate is a per-connection quota per second, so arrivals come in bursts at each second's
 * start: latencies are pessimistic next to Poisson arrivals.
 *
 * Models: the OPUS-MT geometry (d 512, 6+6 layers, vocab 58101, deterministic random weights generated into
 * .tmp/models; they never emit eos, so maxLength is capped at 32 new tokens) and the built-in demo model
 * (m30k, natural stopping, maxLength 64). chimera int8 with 2 threads; onnxruntime int8 (quantize_dynamic
 * pattern) with 2 intra-op threads. Sentences: ../shared/data/multi30k/val.en.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const autocannon = require('autocannon');

const ROOT = path.resolve(__dirname, '..');
const VAL_EN = path.resolve(ROOT, '..', 'shared', 'data', 'multi30k', 'val.en');
const CLI = path.join(ROOT, 'dist', 'cli.js');

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}
const quick = process.argv.includes('--quick');
const THREADS = Number(arg('threads') ?? 2);

interface ModelSpec {
  name: string;
  dir: () => Promise<string>;
  maxLength: number;
  chimeraStart: number;
  ortStart: number;
}

const MODELS: Record<string, ModelSpec> = {
  opus: {
    name: 'opus-mt-en-de geometry (random weights)',
    dir: async () => {
      const dir = path.join(ROOT, '.tmp', 'models', 'opus-mt-en-de-seed1'); // shared with bench:e2e
      if (!fs.existsSync(path.join(dir, 'model.safetensors'))) {
        console.log(`generating the OPUS-MT-geometry model in ${dir} (once)...`);
        const { makeModel } = await import('../src/model/make-model');
        await makeModel({ preset: 'opus-mt-en-de', seed: 1, out: dir });
      }
      return dir;
    },
    maxLength: 32,
    chimeraStart: 25,
    ortStart: 2,
  },
  m30k: { name: 'marian-m30k-en-de (demo)', dir: async () => path.join(ROOT, 'models', 'marian-m30k-en-de'), maxLength: 64, chimeraStart: 50, ortStart: 5 },
};

function sentences(): string[] {
  if (fs.existsSync(VAL_EN)) return fs.readFileSync(VAL_EN, 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
  console.warn(`${VAL_EN} is missing: using synthetic sentences`);
  const who = ['A man', 'A young girl', 'Two dogs', 'An old woman', 'A group of children'];
  const what = ['is running across the grass', 'are playing in the snow', 'is riding a bike down the street'];
  return who.flatMap((w) => what.map((x) => `${w} ${x}.`));
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Server {
  url: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

async function startProcess(cmd: string[], port: number, what: string): Promise<Server> {
  const proc = spawn(process.execPath, cmd, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
  let log = '';
  proc.stdout!.on('data', (d) => (log = (log + d).slice(-4000)));
  proc.stderr!.on('data', (d) => (log = (log + d).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const t0 = Date.now();
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${what} exited: ${log}`);
    try {
      const r = await fetch(url + '/ready');
      if (r.status === 200) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() - t0 > 300_000) throw new Error(`${what} did not become ready: ${log}`);
    await sleep(100);
  }
  return {
    url,
    proc,
    async stop() {
      if (proc.exitCode !== null) return;
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      await gone;
      clearTimeout(t);
    },
  };
}

async function chimeraServer(dir: string, extra: string[] = []): Promise<Server> {
  const port = await freePort();
  return startProcess([CLI, 'serve', '--model', dir, '--precision', 'int8', '--threads', String(THREADS), '--port', String(port), '--log-level', 'warn', '--shutdown-timeout-s', '5', ...extra], port, 'chimera serve');
}

async function ortServer(dir: string, maxLength: number): Promise<Server> {
  const port = await freePort();
  const onnx = await exportOnnx(dir);
  return startProcess(['--import', 'tsx', __filename, '--ort-server', dir, onnx, String(port), String(maxLength)], port, 'onnxruntime server');
}

/** int8 ONNX (quantize_dynamic pattern) of a model directory, exported once into .tmp/onnx. */
async function exportOnnx(modelDir: string): Promise<string> {
  const { exportMarianOnnx } = await import('../src/onnx/export-marian');
  const out = path.join(ROOT, '.tmp', 'onnx', `serve-${path.basename(modelDir)}-int8`);
  const st = fs.statSync(path.join(modelDir, 'model.safetensors'));
  const stamp = JSON.stringify({ modelDir, size: st.size, mtime: st.mtimeMs });
  const stampFile = path.join(out, '.chimera-export.json');
  if (!fs.existsSync(stampFile) || fs.readFileSync(stampFile, 'utf8') !== stamp) {
    console.log(`exporting ${modelDir} as int8 ONNX to ${out}...`);
    exportMarianOnnx(modelDir, out, { int8: true });
    fs.writeFileSync(stampFile, stamp);
  }
  return out;
}

/** The baseline: fastify, one route that awaits the onnxruntime reference loop, one request at a time. */
async function runOrtServer(modelDir: string, onnxDir: string, port: number, maxLength: number): Promise<void> {
  const Fastify = (await import('fastify')).default;
  const { OrtMarian } = await import('../src/onnx/ort-marian');
  const { MarianTokenizer } = await import('../src/model/tokenizer');
  const tok = MarianTokenizer.load(modelDir);
  const m = await OrtMarian.create(onnxDir, { threads: THREADS });
  const app = Fastify();
  let chain: Promise<unknown> = Promise.resolve();
  app.get('/ready', async () => ({ status: 'ready' }));
  app.post('/v1/translate', async (req) => {
    const { text, maxLength: ml } = req.body as { text: string; maxLength?: number };
    const run = chain.then(async () => {
      const r = await m.generate([tok.encode(text)], { maxLength: ml ?? maxLength });
      return { text: tok.decode(r.ids[0]), tokens: r.ids[0].length };
    });
    chain = run.catch(() => {});
    const r = await run;
    return { translations: [{ ...r, cached: false }], model: 'onnxruntime', ms: 0 };
  });
  await app.listen({ host: '127.0.0.1', port });
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

interface LoadResult {
  target: number;
  achieved: number;
  p50: number;
  p95: number;
  p99: number;
  ok: number;
  non2xx: number;
  status: Record<string, number>;
  errors: number;
  timeouts: number;
  batchRows?: number;
}

let sentenceIdx = 0;

async function load(url: string, rate: number, seconds: number, body: () => Record<string, unknown>, connections?: number): Promise<LoadResult> {
  const lat: number[] = [];
  const status: Record<string, number> = {};
  const conns = connections ?? Math.max(4, Math.min(rate, 256));
  const inst = autocannon({
    url,
    connections: conns,
    overallRate: rate,
    duration: seconds,
    timeout: 30,
    requests: [{
      method: 'POST',
      path: '/v1/translate',
      headers: { 'content-type': 'application/json' },
      setupRequest: (req: Record<string, unknown>) => ({ ...req, body: JSON.stringify(body()) }),
    }],
  });
  inst.on('response', (_c: unknown, code: number, _b: number, ms: number) => {
    status[code] = (status[code] ?? 0) + 1;
    if (code >= 200 && code < 300) lat.push(ms);
  });
  const t0 = performance.now();
  const res = await inst;
  // responses over the wall time of the run (autocannon waits for the last in-flight answers)
  const elapsed = Math.max(seconds, (performance.now() - t0) / 1000);
  lat.sort((a, b) => a - b);
  const total = Object.values(status).reduce((a, b) => a + b, 0);
  const ok = lat.length;
  return {
    target: rate,
    achieved: ok / elapsed,
    p50: pct(lat, 50), p95: pct(lat, 95), p99: pct(lat, 99),
    ok, non2xx: total - ok, status, errors: res.errors ?? 0, timeouts: res.timeouts ?? 0,
  };
}

async function scrape(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(url + '/metrics')).text();
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

async function withBatchRows(url: string, run: () => Promise<LoadResult>): Promise<LoadResult> {
  const a = await scrape(url);
  const r = await run();
  const b = await scrape(url);
  const dc = (b.get('chimera_batch_rows_count') ?? 0) - (a.get('chimera_batch_rows_count') ?? 0);
  const ds = (b.get('chimera_batch_rows_sum') ?? 0) - (a.get('chimera_batch_rows_sum') ?? 0);
  r.batchRows = dc > 0 ? ds / dc : undefined;
  return r;
}

/** Time to the first token event through SSE, one request at a time, `n` requests. */
async function ttftSse(url: string, n: number, list: string[], maxLength: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const text = list[(sentenceIdx++) % list.length];
    const t0 = performance.now();
    const r = await fetch(url + '/v1/translate/stream', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text, maxLength }) });
    if (r.status !== 200) {
      await r.text();
      continue;
    }
    const reader = r.body!.getReader();
    let buf = '';
    let first = NaN;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += new TextDecoder().decode(value);
      if (Number.isNaN(first) && buf.includes('event: token')) first = performance.now() - t0;
    }
    if (!Number.isNaN(first)) out.push(first);
  }
  return out.sort((a, b) => a - b);
}

/** Doubling rates from `start` until saturated; returns every step and the saturated (best clean) rate. */
async function ramp(url: string, start: number, seconds: number, body: () => Record<string, unknown>, metrics: boolean, label: string): Promise<{ steps: LoadResult[]; saturated: number }> {
  const steps: LoadResult[] = [];
  let best = 0;
  for (let rate = start; rate <= 6400; rate *= 2) {
    const r = metrics ? await withBatchRows(url, () => load(url, rate, seconds, body)) : await load(url, rate, seconds, body);
    steps.push(r);
    console.log(`  ${label} rate ${rate}/s: achieved ${r.achieved.toFixed(1)}/s, p50 ${r.p50.toFixed(0)} p95 ${r.p95.toFixed(0)} p99 ${r.p99.toFixed(0)} ms, non-2xx ${r.non2xx}${r.batchRows !== undefined ? `, batch rows ${r.batchRows.toFixed(1)}` : ''}`);
    if (r.non2xx === 0 && r.errors === 0) best = Math.max(best, r.achieved);
    if (r.achieved < 0.85 * rate || r.non2xx > 0 || r.errors > 0) break;
    await sleep(500);
  }
  return { steps, saturated: best };
}

function rssOf(pid: number): number {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+) kB/.exec(s);
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

async function benchModel(key: string, list: string[], seconds: number, out: Record<string, unknown>[]): Promise<void> {
  const spec = MODELS[key];
  const dir = await spec.dir();
  const body = () => ({ text: list[(sentenceIdx++) % list.length], maxLength: spec.maxLength });
  console.log(`\n== ${spec.name}: chimera int8, ${THREADS} threads ==`);
  const srv = await chimeraServer(dir, ['--cache-mb', '0']);
  const row: Record<string, unknown> = { model: key, name: spec.name, threads: THREADS, maxLength: spec.maxLength };
  try {
    await load(srv.url, 20, 2, body); // warm-up
    const { steps, saturated } = await ramp(srv.url, spec.chimeraStart, seconds, body, true, 'chimera');
    row.chimera = steps;
    row.chimeraSaturated = saturated;
    const half = Math.max(1, Math.round(saturated / 2));
    await sleep(1000);
    const ttftIdle = await ttftSse(srv.url, quick ? 20 : 50, list, spec.maxLength);
    // TTFT under the half-saturated load, and that load's latency
    const loadP = withBatchRows(srv.url, () => load(srv.url, half, seconds, body));
    await sleep(1000);
    const ttftLoaded = await ttftSse(srv.url, quick ? 10 : 25, list, spec.maxLength);
    const halfRes = await loadP;
    console.log(`  half-saturated ${half}/s: achieved ${halfRes.achieved.toFixed(1)}/s, p50 ${halfRes.p50.toFixed(0)} p95 ${halfRes.p95.toFixed(0)} p99 ${halfRes.p99.toFixed(0)} ms, non-2xx ${halfRes.non2xx}`);
    console.log(`  TTFT via SSE: idle p50 ${pct(ttftIdle, 50).toFixed(1)} p95 ${pct(ttftIdle, 95).toFixed(1)} ms; under ${half}/s p50 ${pct(ttftLoaded, 50).toFixed(1)} p95 ${pct(ttftLoaded, 95).toFixed(1)} ms`);
    row.half = halfRes;
    row.ttftIdle = { p50: pct(ttftIdle, 50), p95: pct(ttftIdle, 95), n: ttftIdle.length };
    row.ttftLoaded = { p50: pct(ttftLoaded, 50), p95: pct(ttftLoaded, 95), n: ttftLoaded.length, rate: half };
  } finally {
    await srv.stop();
  }

  // burst: 10x capacity, against a server with a short queue (--max-queue 64) so the limit is reached
  const bsrv = await chimeraServer(dir, ['--cache-mb', '0', '--max-queue', '64']);
  try {
    const saturated = row.chimeraSaturated as number;
    await load(bsrv.url, 10, 1, body);
    const rss0 = rssOf(bsrv.proc.pid!);
    let peak = rss0;
    const poll = setInterval(() => (peak = Math.max(peak, rssOf(bsrv.proc.pid!))), 100);
    const burstRate = Math.max(10, Math.round(10 * saturated));
    const burst = await load(bsrv.url, burstRate, quick ? 3 : 5, body, Math.min(1024, burstRate));
    clearInterval(poll);
    const bad = Object.entries(burst.status).filter(([c]) => c !== '200' && c !== '429').reduce((a, [, n]) => a + n, 0);
    console.log(`  burst ${burstRate}/s: statuses ${JSON.stringify(burst.status)}, socket errors ${burst.errors}, timeouts ${burst.timeouts}; RSS ${(rss0 / 1048576).toFixed(0)} -> peak ${(peak / 1048576).toFixed(0)} MiB`);
    row.burst = { rate: burstRate, maxQueue: 64, status: burst.status, other: bad, errors: burst.errors, timeouts: burst.timeouts, rssBefore: rss0, rssPeak: peak };
  } finally {
    await bsrv.stop();
  }

  // cache hits: a server with its cache on, one known sentence
  const cached = await chimeraServer(dir);
  try {
    const text = list[0];
    await fetch(cached.url + '/v1/translate', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text, maxLength: spec.maxLength }) });
    await load(cached.url, 100, 1, () => ({ text, maxLength: spec.maxLength }), 4);
    const hit = await load(cached.url, 200, quick ? 3 : 5, () => ({ text, maxLength: spec.maxLength }), 4);
    console.log(`  cache hits at 200/s: p50 ${hit.p50.toFixed(2)} p99 ${hit.p99.toFixed(2)} ms, non-2xx ${hit.non2xx}`);
    row.cacheHit = { p50: hit.p50, p95: hit.p95, p99: hit.p99, non2xx: hit.non2xx };
  } finally {
    await cached.stop();
  }

  console.log(`== ${spec.name}: onnxruntime baseline (fastify, one request at a time, int8, ${THREADS} threads) ==`);
  const ort = await ortServer(dir, spec.maxLength);
  try {
    await load(ort.url, 2, 2, body, 2);
    const { steps, saturated } = await ramp(ort.url, spec.ortStart, seconds, body, false, 'ort');
    row.ort = steps;
    row.ortSaturated = saturated;
  } finally {
    await ort.stop();
  }
  row.speedup = (row.chimeraSaturated as number) / Math.max(1e-9, row.ortSaturated as number);
  out.push(row);
}

function table(rows: Record<string, any>[]): string {
  const lines: string[] = [];
  for (const r of rows) {
    lines.push(`\n### ${r.name} (int8, ${r.threads} threads, maxLength ${r.maxLength})\n`);
    lines.push('| server | target req/s | achieved req/s | p50 ms | p95 ms | p99 ms | non-2xx | mean batch rows |');
    lines.push('|---|---:|---:|---:|---:|---:|---:|---:|');
    const fmt = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
    for (const s of r.chimera) lines.push(`| chimera | ${s.target} | ${fmt(s.achieved, 1)} | ${fmt(s.p50)} | ${fmt(s.p95)} | ${fmt(s.p99)} | ${s.non2xx + s.errors} | ${s.batchRows === undefined ? '-' : s.batchRows.toFixed(1)} |`);
    const h = r.half;
    lines.push(`| chimera (half-saturated) | ${h.target} | ${fmt(h.achieved, 1)} | ${fmt(h.p50)} | ${fmt(h.p95)} | ${fmt(h.p99)} | ${h.non2xx + h.errors} | ${h.batchRows === undefined ? '-' : h.batchRows.toFixed(1)} |`);
    for (const s of r.ort) lines.push(`| onnxruntime baseline | ${s.target} | ${fmt(s.achieved, 1)} | ${fmt(s.p50)} | ${fmt(s.p95)} | ${fmt(s.p99)} | ${s.non2xx + s.errors} | 1 |`);
    lines.push('');
    lines.push(`- saturated rate (best with 0 errors): chimera ${fmt(r.chimeraSaturated, 1)}/s, onnxruntime ${fmt(r.ortSaturated, 1)}/s: **${fmt(r.speedup, 1)}x**`);
    lines.push(`- TTFT via SSE: idle p50 ${fmt(r.ttftIdle.p50, 1)} / p95 ${fmt(r.ttftIdle.p95, 1)} ms; at ${r.ttftLoaded.rate}/s p50 ${fmt(r.ttftLoaded.p50, 1)} / p95 ${fmt(r.ttftLoaded.p95, 1)} ms`);
    lines.push(`- cache hit (200/s, 4 connections): p50 ${fmt(r.cacheHit.p50, 2)} / p99 ${fmt(r.cacheHit.p99, 2)} ms`);
    lines.push(`- burst at ${r.burst.rate}/s (10x, --max-queue ${r.burst.maxQueue}): ${JSON.stringify(r.burst.status)}, other statuses ${r.burst.other}, socket errors ${r.burst.errors}, timeouts ${r.burst.timeouts}; server RSS ${(r.burst.rssBefore / 1048576).toFixed(0)} MiB -> peak ${(r.burst.rssPeak / 1048576).toFixed(0)} MiB`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  if (process.argv.includes('--ort-server')) {
    const i = process.argv.indexOf('--ort-server');
    const [dir, onnx, port, maxLength] = process.argv.slice(i + 1, i + 5);
    await runOrtServer(dir, onnx, Number(port), Number(maxLength));
    return;
  }
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: npm run build:ts first`);
  const list = sentences();
  const seconds = Number(arg('duration') ?? (quick ? 4 : 8));
  const models = (arg('models') ?? 'opus,m30k').split(',');
  const rows: Record<string, unknown>[] = [];
  for (const k of models) {
    if (!MODELS[k]) throw new Error(`unknown model ${k} (opus, m30k)`);
    await benchModel(k, list, seconds, rows);
  }
  const md = table(rows as Record<string, any>[]);
  console.log(md);
  const json = arg('json');
  if (json) {
    fs.mkdirSync(path.dirname(path.resolve(json)), { recursive: true });
    fs.writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), quick, seconds, threads: THREADS, rows }, null, 2));
    console.log(`wrote ${json}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
