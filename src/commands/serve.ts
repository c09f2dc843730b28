/**
 * `chimera serve`: the translation server (src/server) on one port. Every flag has an environment variable
 * (CHIMERA_PORT, ...); a flag wins over its variable, which wins over the default. Unknown flags are rejected
 * with the nearest known one. SIGTERM / SIGINT drain: /ready and new requests answer 503, in-flight requests
 * get --shutdown-timeout-s to finish, then the Translator and Redis close and the process exits 0.
 */
import { ChimeraError } from '../errors';
import { MAX_THREADS } from '../limits';
import { suggest as nearest } from '../util/options';
import { commandHelp, parseCommand, runCommand, type CommandArgs, type CommandSpec, type OptionKind, type OptionSpec } from './args';

type Opt = OptionSpec & { env: string };

const env = (flag: string) => `CHIMERA_${flag.toUpperCase().replace(/-/g, '_')}`;
const o = (flag: string, kind: OptionKind, help: string, extra: Partial<OptionSpec> = {}): Opt => ({ flag, env: env(flag), kind, help, ...extra });

/** The option table: flag, environment variable, type, default, help. */
export const SERVE_OPTIONS: Opt[] = [
  o('model', 'string', 'model directory or packed file', { arg: 'DIR|FILE', def: '(the built-in demo model)' }),
  o('host', 'string', 'address to bind; anything but loopback without --api-keys logs a warning', { arg: 'ADDR', def: '127.0.0.1' }),
  o('port', 'int', 'port (0: any free port)', { arg: 'N', def: '8080', max: 65535 }),
  o('precision', 'string', 'precision of a model directory (a packed file carries its own)', { arg: 'P', choices: ['fp32', 'fp16', 'int8'] }),
  o('threads', 'int', 'intra-op threads of the translation worker', { arg: 'N', min: 1, max: MAX_THREADS }),
  o('device', 'string', 'where the model runs (cuda: the GPU; fails with E_DEVICE where CUDA is unavailable)', { arg: 'D', choices: ['cpu', 'cuda'], def: 'cpu' }),
  o('shortlist', 'string', 'vocabulary shortlist file (default: the model\'s own, when it has one)', { arg: 'FILE' }),
  o('no-shortlist', 'boolean', 'the full vocabulary, even when the model has a shortlist'),
  o('isa', 'string', 'force a kernel path', { arg: 'ISA', choices: ['scalar', 'avx2', 'avxvnni', 'avx512vnni', 'amx', 'auto'] }),
  o('max-queue', 'int', 'requests waiting for admission; one more gets 429', { arg: 'N', def: '1024' }),
  o('cache-mb', 'number', 'in-process sentence cache, MiB (0: off)', { arg: 'MB', def: '32' }),
  o('redis', 'string', 'shared sentence cache in Redis / Valkey (read after the in-process cache)', { arg: 'URL' }),
  o('redis-ttl-s', 'int', 'lifetime of Redis cache entries, seconds', { arg: 'S', def: '86400' }),
  o('redis-prefix', 'string', 'prefix of Redis keys', { arg: 'P', def: 'chimera:' }),
  o('max-text-bytes', 'int', 'UTF-8 bytes of one request\'s texts together; more gets 413', { arg: 'N', def: '65536', min: 1 }),
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
  o('quality-shadow-budget', 'number', 'share of wall time the control may spend translating (1: no limit)', { arg: 'X', def: '0.03' }),
  o('log-level', 'string', 'pino log level', { arg: 'L', def: 'info', choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] }),
  { flag: 'help', kind: 'boolean', short: 'h', help: 'this text', env: '' },
];

export const SERVE: CommandSpec = {
  name: 'serve',
  summary: 'the translation server (HTTP; SSE streaming, LibreTranslate API, /metrics, /ready)',
  description: 'POST /v1/translate, /v1/translate/stream (SSE), LibreTranslate\'s /translate and /languages, /health, /ready,\n' +
    '/metrics, /openapi.json. Each option can also be set by its environment variable; a flag wins over it.',
  positionals: { min: 0, max: 0, message: 'serve takes no positional arguments; use --model DIR' },
  options: SERVE_OPTIONS,
  run: (a) => serve(serveConfig(a)),
};

export function serveUsage(): string {
  return commandHelp(SERVE);
}

/** The nearest serve flag to a misspelt one. */
export function suggest(name: string): string | undefined {
  return nearest(name, SERVE_OPTIONS.map((x) => x.flag));
}

export interface ServeConfig {
  model?: string;
  host: string;
  port: number;
  precision?: 'fp32' | 'fp16' | 'int8';
  threads?: number;
  device?: 'cpu' | 'cuda';
  shortlist?: string;
  noShortlist?: boolean;
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
  qualityShadowBudget: number;
  help: boolean;
}

const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** Flags, then environment variables, then defaults. Throws E_ARG for unknown flags and bad values. */
export function parseServeArgs(argv: string[], environ: NodeJS.ProcessEnv = process.env): ServeConfig {
  return serveConfig(parseCommand(SERVE, argv, environ));
}

function serveConfig(a: CommandArgs): ServeConfig {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(a.values)) if (v !== undefined) out[camel(k)] = v;
  return { help: false, ...out } as ServeConfig;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host) || host === '::ffff:127.0.0.1';
}

/** `chimera serve ARGS` (the dispatcher in src/cli.ts parses through SERVE itself). */
export async function serveCommand(argv: string[]): Promise<number> {
  return runCommand(SERVE, argv);
}

async function serve(cfg: ServeConfig): Promise<number> {
  if (cfg.noShortlist && cfg.shortlist !== undefined) throw new ChimeraError('E_ARG', '--shortlist and --no-shortlist contradict each other');
  if (cfg.isa !== undefined) (await import('../kernels')).setIsa(cfg.isa as 'auto');
  const { createServer, readApiKeys } = await import('../server');
  const apiKeys = cfg.apiKeys ? readApiKeys(cfg.apiKeys) : undefined;
  const app = createServer({
    model: cfg.model,
    precision: cfg.precision,
    threads: cfg.threads,
    device: cfg.device,
    ...(cfg.noShortlist ? { shortlist: false } : cfg.shortlist !== undefined ? { shortlist: cfg.shortlist } : {}),
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
          window: cfg.qualityWindow, cooldownMs: cfg.qualityCooldownS * 1000, controlPrecision: cfg.qualityControlPrecision, shadowBudget: cfg.qualityShadowBudget,
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
