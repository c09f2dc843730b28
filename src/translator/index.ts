/**
 * Translator: text in, text out, with the model running in a worker thread so the caller's event loop stays
 * free. Any number of concurrent translate() / stream() calls are batched by the worker's scheduler
 * (continuous batching: requests join and leave the running batch at every decoder step). Texts are split
 * into sentences; known sentences come from the cache without entering the queue.
 */
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { AbortError, ChimeraError, type ChimeraErrorCode, type ChimeraErrorReason } from '../errors';
import { OPTION_ALIASES, SEARCH_OPTION_KEYS, type GenerateOptions, type MarianLoadOptions, type Precision, type PrecisionPlan } from '../marian';
import type { Reply, Request, SentenceReply, WorkerOptions, WorkerStats } from './protocol';
import { modelIdentity, normaliseSentence, optionsKey, SentenceCache, type CacheStats, type CachedSentence, type SentenceCacheTier } from './cache';
import { joinSentences, splitSentences, type Segment } from './sentences';
import { checkKeys } from '../util/options';
import { checkDevice } from '../cuda';
import { resolveModelSource } from '../model/hub-cache';
import { checkGuardOptions, QualityGuard, type GuardControl, type QualityGuardOptions, type QualityStats } from './quality-guard';

export type { QualityGuardOptions, QualityStats, TierChange, Rung } from './quality-guard';

export type { CachedSentence, SentenceCacheTier, CacheStats } from './cache';

/**
 * translate() / stream() options: the same names and meanings as MarianModel.generate() (less onToken, plus
 * signal). Unknown keys are refused with E_ARG and the nearest known one.
 */
export interface TranslateOptions {
  beam?: number;
  /** Generated tokens at most (default: the model's max_length - 1). */
  maxLength?: number;
  lengthPenalty?: number;
  earlyStopping?: boolean;
  minNewTokens?: number;
  sample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  /** Aborting rejects the call with an AbortError and frees its decoder slots at the next step boundary. */
  signal?: AbortSignal;
}
const TRANSLATE_KEYS = [...SEARCH_OPTION_KEYS, 'signal'] as const;

export interface TranslatorLoadOptions extends MarianLoadOptions {
  /** Requests waiting for admission; one more rejects at once with E_BUSY. Default 1024. */
  maxQueue?: number;
  /** Decoder slots live at once (greedy: 1 per sentence, beam B: 2B). Default 64. */
  maxSlots?: number;
  /** Source tokens admitted (encoded and in use) at once. Default 4096. */
  maxSourceTokens?: number;
  /** Byte budget of the decoder state, worst case (every live sequence at its longest). Default 1 GiB. */
  maxStateBytes?: number;
  /** Padded source tokens encoded per step boundary while sequences run (bounds their stall). Default 256. */
  encodeChunkTokens?: number;
  /** In-process sentence cache, in bytes (lru-cache). 0 = off. Default 32 MiB. */
  cacheBytes?: number;
  /** Further cache tiers (e.g. Redis), read after the in-process LRU and written on completion. */
  cacheTiers?: SentenceCacheTier[];
  /** Split texts into sentences (so known ones come from the cache). Default true. */
  splitSentences?: boolean;
  /**
   * Run this Translator's threads at the lowest scheduling priority (Linux; elsewhere ignored): background work
   * that must not slow other Translators in the process, such as the quality guard's control. Default false.
   */
  lowPriority?: boolean;
  /** The live quality guard (off when unset): shadows served sentences through a full-precision control. */
  qualityGuard?: QualityGuardOptions;
}
const LOAD_KEYS = ['precision', 'threads', 'onProgress', 'device', 'shortlist', 'maxQueue', 'maxSlots', 'maxSourceTokens', 'maxStateBytes', 'encodeChunkTokens', 'cacheBytes', 'cacheTiers', 'splitSentences', 'qualityGuard', 'lowPriority'] as const;

export interface TranslationResult {
  text: string;
  tokens: number[];
  /** Every sentence of it came from a cache tier (nothing was decoded). */
  cached: boolean;
  /** From the call to the admission of its first decoded sentence (0 when cached). */
  queueMs: number;
  /** From the call to its first decided token (queue included); for a cached text, to the answer. */
  ttftMs: number;
  /** From the call to its last sentence's end. */
  totalMs: number;
}

export interface StreamEvent {
  /** The token decided (-1 when the text came from the cache or from a sentence finished ahead of its turn). */
  token: number;
  /** The whole translation so far. */
  text: string;
  /** What this event added to `text`. */
  delta: string;
}

export interface TranslatorStats {
  /** Requests waiting for admission. */
  queued: number;
  /** Requests being decoded. */
  active: number;
  activeSequences: number;
  slotsInUse: number;
  slotsTotal: number;
  sourceTokensInUse: number;
  steps: number;
  stepRowsMean: number;
  stepMsMean: number;
  stepMsLast: number;
  encodes: number;
  encodeMsMean: number;
  tokensGenerated: number;
  requests: { done: number; failed: number; aborted: number; busy: number; cached: number };
  cache: CacheStats;
  /** The quality guard's window, tier and changes; null when the guard is off. */
  quality: QualityStats | null;
}

export interface ModelInfo {
  source: string;
  precision: PrecisionPlan;
  /** Tokens a source sentence may have (eos included): the model's max_position_embeddings. */
  maxSourceTokens: number;
  sourceLang?: string;
  targetLang?: string;
  /** Identity used in cache keys (hash of the model's files). */
  identity: string;
  /** Intra-op threads of this Translator's engine (its own pool: other Translators and the caller keep theirs). */
  threads: number;
  layers: { encoder: number; decoder: number };
}

const DEFAULTS = { maxQueue: 1024, maxSlots: 64, maxSourceTokens: 4096, maxStateBytes: 2 ** 30, encodeChunkTokens: 256, cacheBytes: 32 * 2 ** 20 };

/** How long close() waits for the worker to leave between steps before terminating it (ms). */
const CLOSE_GRACE_MS = 10_000;

export function workerPath(): string {
  // Compiled: dist/translator/worker.js beside this file. From the TypeScript sources (tests): the built copy.
  const here = path.join(__dirname, 'worker.js');
  if (fs.existsSync(here)) return here;
  const built = path.resolve(__dirname, '..', '..', 'dist', 'translator', 'worker.js');
  if (fs.existsSync(built)) return built;
  throw new ChimeraError('E_NATIVE_LOAD', `the translator worker script is missing (looked for ${here} and ${built}); run \`npm run build:ts\``);
}

function positiveInt(v: unknown, what: string, min = 1): number | undefined {
  if (v === undefined) return undefined;
  if (!(typeof v === 'number' && Number.isInteger(v) && v >= min)) throw new ChimeraError('E_ARG', `${what} must be an integer >= ${min}, got ${String(v)}`);
  return v;
}

/** Checks a translate()/stream() options object; returns the worker's generate options (no signal). */
function generateOptions(o: TranslateOptions | undefined): GenerateOptions {
  checkKeys(o, TRANSLATE_KEYS, 'translate option', OPTION_ALIASES);
  if (!o) return {};
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw new ChimeraError('E_ARG', 'signal must be an AbortSignal');
  const { signal: _s, ...rest } = o;
  for (const [k, v] of Object.entries(rest)) if (typeof v === 'function' || typeof v === 'symbol' || (typeof v === 'object' && v !== null))
    throw new ChimeraError('E_ARG', `translate option ${k} must be a number or boolean, got ${typeof v}`);
  if (rest.maxLength !== undefined && !(Number.isInteger(rest.maxLength) && rest.maxLength >= 1)) throw new ChimeraError('E_ARG', `maxLength must be a positive integer, got ${String(rest.maxLength)}`);
  return rest;
}

/** One model in its worker thread. The Translator serves from one engine; a retired one drains, then closes. */
interface Engine {
  worker: Worker;
  plan: PrecisionPlan;
  /** Cache keys of this engine's outputs start with this (identity + precision plan). */
  keyPrefix: string;
  stats: WorkerStats | null;
  inflight: number;
  retired: boolean;
  exited: boolean;
}

type Loaded = Extract<Reply, { type: 'loaded' }>;

/** Starts a worker on `source` and resolves when its model is loaded (rejects with the worker's error). */
function spawnEngine(source: string, wo: WorkerOptions, onProgress?: (done: number, total: number) => void): Promise<{ worker: Worker; loaded: Loaded }> {
  let worker: Worker;
  try {
    worker = new Worker(workerPath(), { workerData: { dir: source, opts: wo } });
  } catch (e) {
    // a missing worker script, or options that cannot be sent to a thread (functions, class instances)
    if (e instanceof ChimeraError) return Promise.reject(e);
    return Promise.reject(new ChimeraError('E_ARG', `cannot start the translator worker: ${(e as Error).message}`, { cause: e }));
  }
  return new Promise((resolve, reject) => {
    const done = () => {
      worker.off('message', onMsg);
      worker.off('error', onErr);
      worker.off('exit', onExit);
    };
    const onMsg = (m: Reply) => {
      if (m.type === 'progress') {
        try {
          onProgress?.(m.done, m.total);
        } catch {
          /* a failing progress callback must not break the load */
        }
        return;
      }
      if (m.type !== 'loaded' && m.type !== 'error') return;
      done();
      if (m.type === 'loaded') resolve({ worker, loaded: m });
      else {
        void worker.terminate();
        reject(new ChimeraError(m.code as ChimeraErrorCode, m.message));
      }
    };
    const onErr = (e: Error) => {
      done();
      reject(new ChimeraError('E_NATIVE', `the translator worker failed while loading: ${e.message}`, { cause: e }));
    };
    // without this, a worker that dies before answering would leave the promise pending forever
    const onExit = (code: number) => {
      done();
      reject(new ChimeraError('E_NATIVE', `the translator worker exited (code ${code}) before the model loaded`));
    };
    worker.on('message', onMsg);
    worker.on('error', onErr);
    worker.on('exit', onExit);
  });
}

interface Pending {
  engine: Engine;
  admitted: boolean;
  settle(e: Error | null, sentences?: SentenceReply[]): void;
  onToken?(sentence: number, token: number, text: string): void;
  onSentence?(sentence: number, r: SentenceReply): void;
  onAdmit?(at: number): void;
}

/** One text of a call: its segments and, per segment, where its translation comes from. */
interface TextPlan {
  segments: Segment[];
  keys: (string | null)[];
  /** Per segment: a cached sentence, or the index into the call's list of sentences to decode. */
  from: (CachedSentence | number | null)[];
}

export class Translator extends EventEmitter {
  private engine: Engine;
  private readonly retired = new Set<Engine>();
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private queued = 0;
  private closed = false;
  private closing: Promise<void> | null = null;
  private readonly counters = { done: 0, failed: 0, aborted: 0, busy: 0, cached: 0 };
  private readonly cache: SentenceCache;
  private readonly workerOptions: WorkerOptions;
  private guard: QualityGuard | null = null;
  readonly loadMs: number;
  readonly modelInfo: ModelInfo;

  private constructor(worker: Worker, loaded: Loaded, source: string, wo: WorkerOptions, private readonly o: Required<Pick<TranslatorLoadOptions, 'maxQueue' | 'splitSentences'>> & TranslatorLoadOptions) {
    super();
    this.workerOptions = wo;
    this.loadMs = loaded.loadMs;
    this.modelInfo = {
      source, precision: loaded.precision as PrecisionPlan, maxSourceTokens: loaded.maxPositions, identity: modelIdentity(source), threads: loaded.threads, layers: loaded.layers,
      ...(loaded.sourceLang ? { sourceLang: loaded.sourceLang } : {}), ...(loaded.targetLang ? { targetLang: loaded.targetLang } : {}),
    };
    this.cache = new SentenceCache(o.cacheBytes ?? DEFAULTS.cacheBytes, o.cacheTiers ?? []);
    this.engine = this.adopt(worker, loaded.precision as PrecisionPlan, loaded.shortlist);
  }

  private adopt(worker: Worker, plan: PrecisionPlan, shortlist?: string | null): Engine {
    // a shortlist may change outputs: its fingerprint is part of the key (none: the keys are as before)
    const sl = shortlist ? `sl:${shortlist}|` : '';
    const e: Engine = { worker, plan, keyPrefix: `chimera1|${this.modelInfo.identity}|${JSON.stringify(plan)}|${sl}`, stats: null, inflight: 0, retired: false, exited: false };
    worker.on('message', (m: Reply) => this.onMessage(e, m));
    worker.on('error', (err) => {
      if (e === this.engine) this.failAll(new ChimeraError('E_NATIVE', `the translator worker failed: ${err.message}`, { cause: err }));
      else this.failEngine(e, new ChimeraError('E_NATIVE', `a retired translator worker failed: ${err.message}`, { cause: err }));
    });
    // Idle until a request is sent: an idle Translator does not keep the process alive (see hold / release).
    worker.unref();
    worker.on('exit', () => {
      e.exited = true;
      this.retired.delete(e);
      const err = new ChimeraError(this.closed ? 'E_CLOSED' : 'E_NATIVE', this.closed ? 'the Translator was closed' : 'the translator worker exited');
      if (e === this.engine) this.failAll(err);
      else this.failEngine(e, err);
    });
    return e;
  }

  /**
   * Work in flight on an engine keeps the process alive (its worker is ref'ed); an idle engine does not, so a
   * script that forgets close() still exits, as with onnxruntime-node sessions. A retired engine (hot swap) and
   * the quality guard's control Translator follow the same rule: each holds the process only while it has work.
   */
  private hold(e: Engine): void {
    if (e.inflight++ === 0 && !e.exited) e.worker.ref();
  }

  private release(e: Engine): void {
    if (--e.inflight === 0 && !e.exited) e.worker.unref();
  }

  /**
   * Loads a model directory, packed file or cached repo id in a new worker thread. `onProgress(done, total)` is
   * called on this thread while the worker packs the weights (it is not sent to the worker: functions cannot be).
   */
  static async load(model: string, opts: TranslatorLoadOptions = {}): Promise<Translator> {
    checkKeys(opts, LOAD_KEYS, 'Translator.load option');
    checkDevice(opts.device, 'Translator.load device'); // E_DEVICE here, before a worker starts
    // a directory, a packed file, or a Hugging Face repo id found offline in the local cache
    model = resolveModelSource(model);
    if (typeof model !== 'string' || !fs.existsSync(model)) throw new ChimeraError('E_MODEL', `model path ${String(model)} does not exist`);
    const sched: WorkerOptions['scheduler'] = {
      maxSlots: positiveInt(opts.maxSlots, 'maxSlots') ?? DEFAULTS.maxSlots,
      maxSourceTokens: positiveInt(opts.maxSourceTokens, 'maxSourceTokens') ?? DEFAULTS.maxSourceTokens,
      maxStateBytes: positiveInt(opts.maxStateBytes, 'maxStateBytes') ?? DEFAULTS.maxStateBytes,
      encodeChunkTokens: positiveInt(opts.encodeChunkTokens, 'encodeChunkTokens') ?? DEFAULTS.encodeChunkTokens,
    };
    positiveInt(opts.maxQueue, 'maxQueue', 0);
    positiveInt(opts.cacheBytes, 'cacheBytes', 0);
    if (opts.splitSentences !== undefined && typeof opts.splitSentences !== 'boolean') throw new ChimeraError('E_ARG', 'splitSentences must be a boolean');
    if (opts.cacheTiers !== undefined && !(Array.isArray(opts.cacheTiers) && opts.cacheTiers.every((t) => t && typeof t.get === 'function' && typeof t.set === 'function' && typeof t.name === 'string')))
      throw new ChimeraError('E_ARG', 'cacheTiers must be an array of { name, get(keys), set(entries) }');
    if (opts.onProgress !== undefined && typeof opts.onProgress !== 'function') throw new ChimeraError('E_ARG', 'onProgress must be a function (done, total)');
    const { onProgress, cacheTiers: _t, maxQueue: _q, cacheBytes: _c, splitSentences: _s, maxSlots: _a, maxSourceTokens: _b, maxStateBytes: _d, encodeChunkTokens: _e, qualityGuard, lowPriority, ...load } = opts;
    if (lowPriority !== undefined && typeof lowPriority !== 'boolean') throw new ChimeraError('E_ARG', 'lowPriority must be a boolean');
    const source = path.resolve(model);
    if (qualityGuard !== undefined) {
      const g = checkGuardOptions(qualityGuard);
      if (g.action === 'escalate' && !fs.statSync(source).isDirectory())
        throw new ChimeraError('E_ARG', `qualityGuard.action 'escalate' re-quantises from the original weights: ${source} must be a model directory, not a packed file`);
    }
    const wo: WorkerOptions = { load, scheduler: sched, ...(lowPriority ? { lowPriority } : {}) };
    const { worker, loaded } = await spawnEngine(source, onProgress ? { ...wo, progress: true } : wo, onProgress);
    const t = new Translator(worker, loaded, source, wo, { ...opts, maxQueue: opts.maxQueue ?? DEFAULTS.maxQueue, splitSentences: opts.splitSentences ?? true });
    if (qualityGuard !== undefined) t.guard = new QualityGuard(t.guardHost(), qualityGuard, t.modelInfo.precision);
    return t;
  }

  /** What the quality guard may do with this Translator: read the queue, swap the tier, load its control. */
  private guardHost() {
    return {
      queued: () => this.queued,
      swap: (plan: PrecisionPlan) => this.swapPrecision(plan),
      layers: this.modelInfo.layers,
      emit: (event: string, payload: unknown) => this.emit(event, payload),
      loadControl: async (precision: Precision, threads: number, maxQueue: number): Promise<GuardControl> => {
        const c = await Translator.load(this.modelInfo.source, { precision, threads, cacheBytes: 0, splitSentences: false, maxQueue, lowPriority: true });
        return {
          translate: async (sentence, o) => (await c.translate(sentence, o as TranslateOptions))[0].text,
          sensitivity: (sentences) => c.measureSensitivity(sentences),
          close: () => c.close(),
        };
      },
    };
  }

  /**
   * Hot swap: loads the same model at `precision` in a new worker, then sends every new request there. Requests
   * already sent finish on the old engine, which is closed once it has answered them: nothing is dropped or
   * answered twice. Resolves when the new engine serves. Needs a model directory (a packed file has one precision).
   */
  async swapPrecision(precision: PrecisionPlan | Precision): Promise<void> {
    this.checkOpen();
    const wo: WorkerOptions = { ...this.workerOptions, load: { ...this.workerOptions.load, precision } };
    const { worker, loaded } = await spawnEngine(this.modelInfo.source, wo);
    if (this.closed) {
      await worker.terminate();
      throw new ChimeraError('E_CLOSED', 'the Translator was closed during the swap');
    }
    const old = this.engine;
    this.engine = this.adopt(worker, loaded.precision as PrecisionPlan, loaded.shortlist);
    this.modelInfo.precision = loaded.precision as PrecisionPlan;
    old.retired = true;
    this.retired.add(old);
    if (old.inflight === 0) void this.closeEngine(old);
  }

  /** Posts 'close' to an engine and waits for its worker to leave (terminating it after a grace period). */
  private async closeEngine(e: Engine): Promise<void> {
    if (e.exited) return;
    const gone = new Promise<void>((r) => e.worker.once('exit', () => r()));
    e.worker.ref(); // closing is work in flight: a caller awaiting close() sees the worker leave
    try {
      e.worker.postMessage({ type: 'close' } satisfies Request);
    } catch {
      /* the worker is already gone */
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), CLOSE_GRACE_MS)));
    if ((await Promise.race([gone, late])) === 'late') await e.worker.terminate();
    clearTimeout(timer);
  }

  /** Sends a raw request to the serving engine's worker (quality tools: layer-norm edits, sensitivity). */
  private control<T>(req: Record<string, unknown>): Promise<T> {
    this.checkOpen();
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const p: Pending = {
        engine: this.engine, admitted: true,
        settle: (e, r) => (e ? reject(e) : resolve(r as unknown as T)),
      };
      this.pending.set(id, p);
      this.hold(this.engine);
      this.engine.worker.postMessage({ ...req, id });
    });
  }

  /**
   * Edits a layer norm of the served model in place (live gamma/beta: the next step uses it). For tuning and for
   * the quality guard's demonstration; `name` as in MarianModel.layerNorms().
   */
  adjustLayerNorm(name: string, edit: { scaleGamma?: number; shiftBeta?: number }): Promise<void> {
    if (typeof name !== 'string') return Promise.reject(new ChimeraError('E_ARG', 'name must be a layer-norm name'));
    checkKeys(edit, ['scaleGamma', 'shiftBeta'], 'layer-norm edit');
    for (const [k, v] of Object.entries(edit)) if (!(typeof v === 'number' && Number.isFinite(v))) return Promise.reject(new ChimeraError('E_ARG', `${k} must be a finite number`));
    return this.control<void>({ type: 'adjustNorm', name, edit });
  }

  /** Per-group int8 sensitivity of the served model's source directory, measured in its worker on `sentences`. */
  measureSensitivity(sentences: string[]): Promise<string[]> {
    return this.control<string[]>({ type: 'sensitivity', sentences });
  }

  private onMessage(e: Engine, m: Reply): void {
    if (m.type === 'stats') {
      e.stats = m.stats;
      if (m.steps.length > 0) this.emit('steps', m.steps);
      return;
    }
    if (m.type === 'loaded' || m.type === 'closed' || m.type === 'progress') return;
    const p = this.pending.get(m.id);
    if (!p) return; // aborted or closed: already answered
    switch (m.type) {
      case 'admit':
        if (!p.admitted) {
          p.admitted = true;
          this.queued--;
        }
        p.onAdmit?.(m.at);
        return;
      case 'token':
        p.onToken?.(m.sentence, m.token, m.text);
        return;
      case 'sentence':
        p.onSentence?.(m.sentence, m.result);
        return;
      case 'result':
        this.forget(m.id, p);
        p.settle(null, m.sentences);
        return;
      case 'error':
        this.forget(m.id, p);
        p.settle(new ChimeraError(m.code as ChimeraErrorCode, m.message, m.reason ? { reason: m.reason } : undefined));
        return;
      case 'control':
        this.forget(m.id, p);
        p.settle(null, m.value as SentenceReply[]);
        return;
    }
  }

  private forget(id: number, p: Pending): void {
    if (!this.pending.delete(id)) return;
    if (!p.admitted) {
      p.admitted = true;
      this.queued--;
    }
    const e = p.engine;
    this.release(e);
    if (e.retired && e.inflight === 0 && !this.closing) void this.closeEngine(e);
  }

  private failAll(e: Error): void {
    this.closed = true;
    for (const [id, p] of [...this.pending]) {
      this.forget(id, p);
      p.settle(e);
    }
  }

  /** Fails the requests of one (retired) engine only. */
  private failEngine(engine: Engine, e: Error): void {
    for (const [id, p] of [...this.pending]) {
      if (p.engine !== engine) continue;
      this.forget(id, p);
      p.settle(e);
    }
  }

  /** Plans a call: splits texts, looks sentences up in the LRU, and lists what must still be found or decoded. */
  private plan(texts: string[], g: GenerateOptions): { plans: TextPlan[]; todo: string[]; todoKeys: (string | null)[]; textOf: number[] } {
    const ok = optionsKey(g as Record<string, unknown>);
    const plans: TextPlan[] = [];
    const todo: string[] = [];
    const todoKeys: (string | null)[] = [];
    const textOf: number[] = [];
    const index = new Map<string, number>();
    for (const [ti, text] of texts.entries()) {
      const segments = this.o.splitSentences ? splitSentences(text) : [{ lead: '', core: text, trail: '' }];
      const keys: (string | null)[] = [];
      const from: (CachedSentence | number | null)[] = [];
      for (const s of segments) {
        if (s.core === '') {
          keys.push(null);
          from.push(null);
          continue;
        }
        const sentence = normaliseSentence(s.core);
        const key = ok === null || !this.cache.enabled ? null : this.engine.keyPrefix + ok + '|' + sentence;
        keys.push(key);
        const hit = key === null ? undefined : this.cache.getLocal(key);
        if (hit) {
          from.push(hit);
          continue;
        }
        // the same sentence twice in one call is decoded once (only when its output is a function of it)
        const dedupe = key ?? null;
        let k = dedupe !== null ? index.get(dedupe) : undefined;
        if (k === undefined) {
          k = todo.length;
          todo.push(sentence);
          todoKeys.push(key);
          textOf.push(ti);
          if (dedupe !== null) index.set(dedupe, k);
        }
        from.push(k);
      }
      plans.push({ segments, keys, from });
    }
    return { plans, todo, todoKeys, textOf };
  }

  /** Fills plans from further cache tiers; returns the sentences left to decode and their places. */
  private async fromTiers(plans: TextPlan[], todo: string[], todoKeys: (string | null)[], textOf: number[]): Promise<{ todo: string[]; todoKeys: (string | null)[]; textOf: number[] }> {
    const ask = todoKeys.map((k, i) => [k, i] as const).filter(([k]) => k !== null) as [string, number][];
    if (ask.length === 0) return { todo, todoKeys, textOf };
    const got = await this.cache.getTiers(ask.map(([k]) => k));
    const found = new Map<number, CachedSentence>();
    ask.forEach(([, i], n) => {
      const v = got[n];
      if (v) found.set(i, v);
    });
    if (found.size === 0) return { todo, todoKeys, textOf };
    const remap = new Map<number, number>();
    const nt: string[] = [], nk: (string | null)[] = [], no: number[] = [];
    todo.forEach((s, i) => {
      if (found.has(i)) return;
      remap.set(i, nt.length);
      nt.push(s);
      nk.push(todoKeys[i]);
      no.push(textOf[i]);
    });
    for (const p of plans) p.from = p.from.map((f) => (typeof f === 'number' ? (found.get(f) ?? remap.get(f)!) : f));
    return { todo: nt, todoKeys: nk, textOf: no };
  }

  private checkOpen(): void {
    if (this.closed) throw new ChimeraError('E_CLOSED', 'this Translator is closed');
  }

  private checkTexts(texts: unknown): string[] {
    const list = typeof texts === 'string' ? [texts] : texts;
    if (!Array.isArray(list) || list.length === 0 || list.some((t) => typeof t !== 'string'))
      throw new ChimeraError('E_INPUT', 'texts must be a string or a non-empty array of strings', { reason: 'invalid' });
    if (list.some((t) => (t as string).trim() === '')) throw new ChimeraError('E_INPUT', 'cannot translate an empty text', { reason: 'empty' });
    return list as string[];
  }

  /**
   * Sends sentences to the worker. Rejects at once with E_BUSY when maxQueue requests are already waiting.
   * The returned promise settles with the sentences' replies; `signal` aborts it.
   */
  private dispatch(sentences: string[], textOf: number[], g: GenerateOptions, stream: boolean, signal: AbortSignal | undefined, hooks: Partial<Pending> = {}): Promise<SentenceReply[]> {
    if (this.queued >= this.o.maxQueue) {
      this.counters.busy++;
      return Promise.reject(new ChimeraError('E_BUSY', `the queue is full (${this.o.maxQueue} requests waiting; maxQueue): retry later`));
    }
    const id = this.nextId++;
    const engine = this.engine;
    return new Promise<SentenceReply[]>((resolve, reject) => {
      const onAbort = () => {
        const p = this.pending.get(id);
        if (!p) return;
        this.forget(id, p);
        engine.worker.postMessage({ type: 'abort', id } satisfies Request);
        p.settle(new AbortError('the translation was aborted', { cause: signal?.reason }));
      };
      const p: Pending = {
        engine,
        admitted: false,
        ...hooks,
        settle: (e, r) => {
          signal?.removeEventListener('abort', onAbort);
          if (e) reject(e);
          else resolve(r!);
        },
      };
      this.pending.set(id, p);
      this.queued++;
      this.hold(engine);
      try {
        engine.worker.postMessage({ type: 'translate', id, sentences, opts: g, stream, textOf } satisfies Request);
      } catch (e) {
        this.forget(id, p);
        p.settle(new ChimeraError('E_ARG', `options cannot be sent to the worker: ${(e as Error).message}`, { cause: e }));
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Translates each text; returns one result per text, in order. */
  async translate(texts: string | string[], opts?: TranslateOptions): Promise<TranslationResult[]> {
    const t0 = performance.timeOrigin + performance.now();
    const list = this.checkTexts(texts);
    const g = generateOptions(opts);
    const signal = opts?.signal;
    this.checkOpen();
    if (signal?.aborted) {
      this.counters.aborted++;
      throw new AbortError('the translation was aborted', { cause: signal.reason });
    }
    let { plans, todo, todoKeys, textOf } = this.plan(list, g);
    try {
      if (todo.length > 0) ({ todo, todoKeys, textOf } = await this.fromTiers(plans, todo, todoKeys, textOf));
      if (signal?.aborted) throw new AbortError('the translation was aborted', { cause: signal.reason });
      const decoded = todo.length > 0 ? await this.dispatch(todo, textOf, g, false, signal) : [];
      this.guard?.observe(todo, decoded.map((r) => r.text), g as Record<string, unknown>);
      this.cache.set(decoded.flatMap((r, i) => (todoKeys[i] !== null ? [[todoKeys[i]!, { text: r.text, tokens: r.tokens }] as [string, CachedSentence]] : [])));
      const now = performance.timeOrigin + performance.now();
      const out = plans.map((p) => this.assemble(p, decoded, t0, now));
      this.counters.done++;
      if (todo.length === 0) this.counters.cached++;
      return out;
    } catch (e) {
      if ((e as Error).name === 'AbortError') this.counters.aborted++;
      else if ((e as ChimeraError).code !== 'E_BUSY') this.counters.failed++;
      throw e;
    }
  }

  private assemble(p: TextPlan, decoded: SentenceReply[], t0: number, now: number): TranslationResult {
    const texts: string[] = [];
    const tokens: number[] = [];
    let admit = Infinity, first = Infinity, done = 0, cached = true;
    p.from.forEach((f) => {
      if (f === null) {
        texts.push('');
        return;
      }
      const r = typeof f === 'number' ? decoded[f] : f;
      texts.push(r.text);
      tokens.push(...r.tokens);
      if (typeof f === 'number') {
        cached = false;
        const d = decoded[f];
        admit = Math.min(admit, d.admitAt);
        first = Math.min(first, d.firstAt);
        done = Math.max(done, d.doneAt);
      }
    });
    const total = (cached ? now : done) - t0;
    return {
      text: joinSentences(p.segments, texts),
      tokens,
      cached,
      queueMs: cached ? 0 : Math.max(0, admit - t0),
      ttftMs: cached ? total : Math.max(0, first - t0),
      totalMs: Math.max(0, total),
    };
  }

  /**
   * Yields the translation as it is decided, token by token (sentences in order; cached ones at once), then
   * returns the whole result. Beam search decides nothing until the end: use beam 1 (greedy or sampling).
   */
  async *stream(text: string, opts?: TranslateOptions): AsyncGenerator<StreamEvent, TranslationResult> {
    const t0 = performance.timeOrigin + performance.now();
    if (typeof text !== 'string') throw new ChimeraError('E_INPUT', 'stream() takes one text (a string)', { reason: 'invalid' });
    this.checkTexts(text);
    const g = generateOptions(opts);
    if ((g.beam ?? 1) > 1) throw new ChimeraError('E_ARG', 'stream() decides tokens one by one: use beam 1 (greedy or sampling)');
    const signal = opts?.signal;
    this.checkOpen();
    if (signal?.aborted) throw new AbortError('the translation was aborted', { cause: signal.reason });
    const planned = this.plan([text], g);
    let { todo, todoKeys, textOf } = planned;
    const plan = planned.plans[0];
    if (todo.length > 0) ({ todo, todoKeys, textOf } = await this.fromTiers(planned.plans, todo, todoKeys, textOf));

    // ordered emission: segment `cur` may stream live; later segments wait until it is complete
    const segs = plan.segments;
    const doneText: (string | undefined)[] = plan.from.map((f) => (f === null ? '' : typeof f === 'number' ? undefined : f.text));
    const partial: string[] = segs.map(() => '');
    const bySentence = new Map<number, number>();
    plan.from.forEach((f, i) => typeof f === 'number' && bySentence.set(f, i));
    const events: StreamEvent[] = [];
    let cur = 0, prefix = '', shown = '';
    // a decided token is always an event (eos adds no text but is a token); a catch-up only when text grew
    const emit = (token: number) => {
      const full = cur < segs.length ? prefix + segs[cur].lead + partial[cur] : prefix;
      if (full === shown && token < 0) return;
      events.push({ token, text: full, delta: full.startsWith(shown) ? full.slice(shown.length) : full });
      shown = full;
    };
    const catchUp = () => {
      while (cur < segs.length && doneText[cur] !== undefined) {
        prefix += segs[cur].lead + doneText[cur] + segs[cur].trail;
        cur++;
      }
      emit(-1);
    };
    let wake: (() => void) | null = null;
    let result: SentenceReply[] | null = null;
    let error: Error | null = null;
    catchUp();
    if (todo.length > 0) {
      this.dispatch(todo, textOf, g, true, signal, {
        onToken: (s, token, partialText) => {
          const i = bySentence.get(s)!;
          partial[i] = partialText;
          if (i === cur) {
            emit(token);
            wake?.();
          }
        },
        onSentence: (s, r) => {
          const i = bySentence.get(s)!;
          doneText[i] = r.text;
          if (i === cur) {
            catchUp();
            wake?.();
          }
        },
      }).then(
        (r) => {
          result = r;
          r.forEach((x, s) => (doneText[bySentence.get(s)!] = x.text));
          catchUp();
          wake?.();
        },
        (e: Error) => {
          error = e;
          wake?.();
        },
      );
    }
    try {
      for (;;) {
        while (events.length) yield events.shift()!;
        if (error) throw error;
        if (todo.length === 0 || result) break;
        await new Promise<void>((r) => (wake = r));
        wake = null;
      }
      const decoded = (result ?? []) as SentenceReply[];
      this.guard?.observe(todo, decoded.map((r) => r.text), g as Record<string, unknown>);
      this.cache.set(decoded.flatMap((r, i) => (todoKeys[i] !== null ? [[todoKeys[i]!, { text: r.text, tokens: r.tokens }] as [string, CachedSentence]] : [])));
      this.counters.done++;
      if (todo.length === 0) this.counters.cached++;
      return this.assemble(plan, decoded, t0, performance.timeOrigin + performance.now());
    } catch (e) {
      if ((e as Error).name === 'AbortError') this.counters.aborted++;
      else if ((e as ChimeraError).code !== 'E_BUSY') this.counters.failed++;
      throw e;
    }
  }

  /** Queue, batch, step and cache figures: the worker's as of its last step boundary, the rest live. */
  stats(): TranslatorStats {
    const w = this.engine.stats;
    const steps = w?.steps ?? 0;
    return {
      queued: this.queued,
      active: Math.max(0, this.pending.size - this.queued),
      activeSequences: w?.activeSequences ?? 0,
      slotsInUse: w?.slotsInUse ?? 0,
      slotsTotal: w?.slotsTotal ?? 0,
      sourceTokensInUse: w?.sourceTokensInUse ?? 0,
      steps,
      stepRowsMean: steps ? w!.stepRows / steps : 0,
      stepMsMean: steps ? w!.stepMs / steps : 0,
      stepMsLast: w?.stepMsLast ?? 0,
      encodes: w?.encodes ?? 0,
      encodeMsMean: w?.encodes ? w.encodeMs / w.encodes : 0,
      tokensGenerated: w?.tokensGenerated ?? 0,
      requests: { ...this.counters },
      cache: this.cache.stats(),
      quality: this.guard?.stats() ?? null,
    };
  }

  /**
   * Stops admitting at once: queued and running requests reject with E_CLOSED, new calls too. The worker
   * leaves at its next step boundary (the step in flight finishes; nothing native is interrupted), and the
   * promise resolves when it is gone. Calling close() again returns the same promise.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.failAll(new ChimeraError('E_CLOSED', 'the Translator was closed before this request finished'));
    const guard = this.guard?.close() ?? Promise.resolve();
    this.closing = Promise.all([guard, ...[this.engine, ...this.retired].map((e) => this.closeEngine(e))]).then(() => undefined);
    return this.closing;
  }
}

export type { ChimeraErrorReason };
