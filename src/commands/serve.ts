/**
 * `chimera serve`: the translation server (src/server) on one port. Every flag has an environment variable
 * (CHIMERA_PORT, ...); a flag wins over its variable, which wins over the default. Unknown flags are rejected
 * with the nearest known one. SIGTERM / SIGINT drain: /ready and new requests answer 503, in-flight requests
 * get --shutdown-timeout-s to finish, then the Translator and Redis close and the process exits 0.
 */
import { parseArgs } from 'node:util';
import { ChimeraError } from '../errors';

type Kind = 'string' | 'int' | 'number' | 'boolean';

interface Opt {
  flag: string;
  env: string;
  kind: Kind;
  arg?: string;
  def?: string;
  help: string;
  choices?: string[];
}

const env = (flag: string) => `CHIMERA_${flag.toUpperCase().replace(/-/g, '_')}`;
const o = (flag: string, kind: Kind, help: string, extra: Partial<Opt> = {}): Opt => ({ flag, env: env(flag), kind, help, ...extra });

/** The option table: flag, environment variable, type, default, help. */
export const SERVE_OPTIONS: Opt[] = [
  o('model', 'string', 'model directory or packed file', { arg: 'DIR|FILE', def: '(the built-in demo model)' }),
  o('host', 'string', 'address to bind; anything but loopback without --api-keys logs a warning', { arg: 'ADDR', def: '127.0.0.1' }),
  o('port', 'int', 'port (0: any free port)', { arg: 'N', def: '8080' }),
  o('precision', 'string', 'precision of a model directory (a packed file carries its own)', { arg: 'P', choices: ['fp32', 'fp16', 'int8'] }),
  o('threads', 'int', 'intra-op threads of the translation worker', { arg: 'N' }),
  o('isa', 'string', 'force a kernel path', { arg: 'ISA', choices: ['scalar', 'avx2', 'avxvnni', 'avx512vnni', 'amx', 'auto'] }),
  o('max-queue', 'int', 'requests waiting for admission; one more gets 429', { arg: 'N', def: '1024' }),
  o('cache-mb', 'number', 'in-process sentence cache, MiB (0: off)', { arg: 'MB', def: '32' }),
  o('redis', 'string', 'shared sentence cache in Redis / Valkey (read after the in-process cache)', { arg: 'URL' }),
  o('redis-ttl-s', 'int', 'lifetime of Redis cache entries, seconds', { arg: 'S', def: '86400' }),
  o('redis-prefix', 'string', 'prefix of Redis keys', { arg: 'P', def: 'chimera:' }),
  o('max-text-bytes', 'int', 'UTF-8 bytes of one request\'s texts together; more gets 413', { arg: 'N', def: '65536' }),
  o('shutdown-timeout-s', 'number', 'on SIGTERM/SIGINT, how long in-flight requests may take to finish', { arg: 'S', def: '30' }),
  o('api-keys', 'string', 'file of API keys, one per line: every route but /health, /ready, /languages needs one', { arg: 'FILE' }),
  o('source-lang', 'string', 'source language code (default: the model config, or its name ...-SRC-TGT)', { arg: 'CODE' }),
  o('target-lang', 'string', 'target language code', { arg: 'CODE' }),
  o('quality-min-score', 'number', 'turn the live quality guard on: the window score (served vs the fp32 control) below which it acts', { arg: 'X' }),
  o('quality-action', 'string', 'what the guard does below the score', { arg: 'A', def: 'alert', choices: ['alert', 'escalate'] }),
  o('quality-metric', 'string', 'the guard\'s metric, against the control\'s output', { arg: 'M', def: 'bleu', choices: ['bleu', 'chrf'] }),
  o('quality-sample-rate', 'number', 'share of served sentences the control translates again', { arg: 'R', def: '0.02' }),
  o('quality-window', 'int', 'sentences in the guard\'s sliding window', { arg: 'N', def: '500' }),
  o('quality-recover-score', 'number', 'step back down a rung after a full window at or above this', { arg: 'X' }),
  o('quality-cooldown-s', 'number', 'no tier change within this long of the last', { arg: 'S', def: '60' }),
  o('quality-control-precision', 'string', 'the control model\'s precision', { arg: 'P', def: 'fp32', choices: ['fp32', 'fp16', 'int8'] }),
  o('log-level', 'string', 'pino log level', { arg: 'L', def: 'info', choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] }),
  o('help', 'boolean', 'this text'),
];

export function serveUsage(): string {
  const rows = SERVE_OPTIONS.map((x) => {
    const left = `  --${x.flag}${x.arg ? ` ${x.arg}` : ''}`;
    const right = `${x.help}${x.choices ? ` (${x.choices.join('|')})` : ''}${x.def ? `; default ${x.def}` : ''}${x.flag === 'help' ? '' : `  [${x.env}]`}`;
    return `${left.padEnd(30)} ${right}`;
  });
  return `usage: chimera serve [options]\n\nThe translation server: POST /v1/translate, /v1/translate/stream (SSE), LibreTranslate's /translate and\n/languages, /health, /ready, /metrics, /openapi.json. Each option can also be set by its environment variable.\n\n${rows.join('\n')}\n`;
}

/** Levenshtein distance, for "did you mean". */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length];
}

export function suggest(name: string): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const x of SERVE_OPTIONS) {
    const dist = editDistance(name, x.flag);
    if (dist < bestD) {
      bestD = dist;
      best = x.flag;
    }
  }
  return bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

export interface ServeConfig {
  model?: string;
  host: string;
  port: number;
  precision?: 'fp32' | 'fp16' | 'int8';
  threads?: number;
  isa?: string;
  maxQueue: number;
  cacheMb: number;
  redis?: string;
  redisTtlS: number;
  redisPrefix: string;
  maxTextBytes: number;
  shutdownTimeoutS: number;
  apiKeys?: string;
  sourceLang?: string;
  targetLang?: string;
  logLevel: string;
  qualityMinScore?: number;
  qualityAction: 'alert' | 'escalate';
  qualityMetric: 'bleu' | 'chrf';
  qualitySampleRate: number;
  qualityWindow: number;
  qualityRecoverScore?: number;
  qualityCooldownS: number;
  qualityControlPrecision: 'fp32' | 'fp16' | 'int8';
  help: boolean;
}

const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** Flags, then environment variables, then defaults. Throws E_ARG for unknown flags and bad values. */
export function parseServeArgs(argv: string[], environ: NodeJS.ProcessEnv = process.env): ServeConfig {
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: Object.fromEntries(SERVE_OPTIONS.map((x) => [x.flag, { type: x.kind === 'boolean' ? 'boolean' : 'string' }])) as Record<string, { type: 'string' | 'boolean' }>,
      strict: true,
      allowPositionals: true,
    }));
  } catch (e) {
    const err = e as { code?: string; message: string };
    if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const m = /'(-{1,2})([^'=]+)/.exec(err.message);
      const name = m?.[2] ?? '';
      const s = suggest(name);
      throw new ChimeraError('E_ARG', `unknown option ${m ? m[1] + name : ''} for serve${s ? ` (did you mean --${s}?)` : ''}; see chimera serve --help`);
    }
    throw new ChimeraError('E_ARG', `${err.message}; see chimera serve --help`);
  }
  if (positionals.length) throw new ChimeraError('E_ARG', `serve takes no positional arguments (got ${positionals.join(' ')}); use --model DIR`);
  const out: Record<string, unknown> = {};
  for (const x of SERVE_OPTIONS) {
    let raw: string | boolean | undefined = values[x.flag];
    let from = `--${x.flag}`;
    if (raw === undefined && environ[x.env] !== undefined && environ[x.env] !== '' && x.kind !== 'boolean') {
      raw = environ[x.env];
      from = x.env;
    }
    if (raw === undefined && x.def !== undefined && !x.def.startsWith('(')) raw = x.def;
    if (raw === undefined) continue;
    const key = camel(x.flag);
    if (x.kind === 'boolean') out[key] = raw === true;
    else if (x.kind === 'int' || x.kind === 'number') {
      const n = Number(raw);
      if (String(raw).trim() === '' || !Number.isFinite(n) || n < 0 || (x.kind === 'int' && !Number.isInteger(n)))
        throw new ChimeraError('E_ARG', `${from} must be a non-negative ${x.kind === 'int' ? 'integer' : 'number'}, got ${String(raw)}`);
      out[key] = n;
    } else {
      if (x.choices && !x.choices.includes(String(raw))) throw new ChimeraError('E_ARG', `${from} must be one of ${x.choices.join(', ')}, got ${String(raw)}`);
      out[key] = raw;
    }
  }
  const cfg = { help: false, ...out } as ServeConfig;
  if (cfg.port > 65535) throw new ChimeraError('E_ARG', `port must be at most 65535, got ${cfg.port}`);
  if (cfg.threads === 0) throw new ChimeraError('E_ARG', '--threads must be at least 1');
  if (cfg.maxTextBytes === 0) throw new ChimeraError('E_ARG', '--max-text-bytes must be at least 1');
  return cfg;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host) || host === '::ffff:127.0.0.1';
}

export async function serveCommand(argv: string[]): Promise<number> {
  const cfg = parseServeArgs(argv);
  if (cfg.help) {
    process.stdout.write(serveUsage());
    return 0;
  }
  if (cfg.isa !== undefined) (await import('../kernels')).setIsa(cfg.isa as 'auto');
  const { createServer, readApiKeys } = await import('../server');
  const apiKeys = cfg.apiKeys ? readApiKeys(cfg.apiKeys) : undefined;
  const app = createServer({
    model: cfg.model,
    precision: cfg.precision,
    threads: cfg.threads,
    maxQueue: cfg.maxQueue,
    cacheMb: cfg.cacheMb,
    redis: cfg.redis,
    redisTtlS: cfg.redisTtlS,
    redisPrefix: cfg.redisPrefix,
    maxTextBytes: cfg.maxTextBytes,
    shutdownTimeoutS: cfg.shutdownTimeoutS,
    apiKeys,
    sourceLang: cfg.sourceLang,
    targetLang: cfg.targetLang,
    logger: { level: cfg.logLevel },
    ...(cfg.qualityMinScore !== undefined
      ? {
        qualityGuard: {
          minScore: cfg.qualityMinScore, action: cfg.qualityAction, metric: cfg.qualityMetric, sampleRate: cfg.qualitySampleRate,
          window: cfg.qualityWindow, cooldownMs: cfg.qualityCooldownS * 1000, controlPrecision: cfg.qualityControlPrecision,
          ...(cfg.qualityRecoverScore !== undefined ? { recoverScore: cfg.qualityRecoverScore } : {}),
        },
      }
      : {}),
  });
  let stopping: Promise<void> | null = null;
  const stop = (signal: string) => {
    if (stopping) {
      app.log.warn({ signal }, 'already draining');
      return;
    }
    app.log.info({ signal }, 'shutting down');
    stopping = app.chimera.drain(cfg.shutdownTimeoutS).then(
      (inTime) => {
        app.log.info({ inTime }, 'stopped');
        process.exit(0);
      },
      (e) => {
        app.log.error({ err: e }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  try {
    await app.listen({ host: cfg.host, port: cfg.port });
  } catch (e) {
    await app.close().catch(() => {});
    throw e;
  }
  const ctx = app.chimera.context;
  if (!apiKeys && !isLoopback(cfg.host))
    app.log.warn({ host: cfg.host }, 'listening on a non-loopback address without API keys: anyone who can reach it can use it (pass --api-keys FILE)');
  const addr = app.server.address();
  const url = typeof addr === 'object' && addr ? `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}` : String(addr);
  app.log.info({ url, model: ctx.modelName, languages: ctx.sourceLang && ctx.targetLang ? `${ctx.sourceLang}-${ctx.targetLang}` : undefined, redis: !!cfg.redis, apiKeys: apiKeys?.length ?? 0 }, 'chimera serving');
  // keep running until a signal; the listening socket holds the event loop open
  return new Promise<number>(() => {});
}
