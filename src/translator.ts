/**
 * Translator: text in, text out, with the model running in a worker thread so the caller's event loop stays
 * free. One request runs at a time per Translator; requests queue in order.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ChimeraError, type ChimeraErrorCode } from './errors';
import type { GenerateOptions, MarianLoadOptions } from './marian';
import type { Reply, Request, TranslationResult } from './engine/worker';

export type { TranslationResult } from './engine/worker';

export interface TranslateOptions {
  beam?: number;
  /** Generated tokens at most (default: the model's max_length - 1). */
  maxLength?: number;
  lengthPenalty?: number;
  earlyStopping?: boolean;
  sample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
}

export interface StreamEvent {
  token: number;
  /** The whole translation so far. */
  text: string;
  /** What this token added to `text`. */
  delta: string;
}

function workerPath(): string {
  // Compiled: dist/engine/worker.js beside this file. From the TypeScript sources (tests): the built copy.
  const here = path.join(__dirname, 'engine', 'worker.js');
  if (fs.existsSync(here)) return here;
  const built = path.resolve(__dirname, '..', 'dist', 'engine', 'worker.js');
  if (fs.existsSync(built)) return built;
  throw new ChimeraError('E_NATIVE_LOAD', `the translator worker script is missing (looked for ${here} and ${built}); run \`npm run build:ts\``);
}

function generateOptions(o: TranslateOptions = {}): GenerateOptions {
  const { maxLength, ...rest } = o;
  return { ...rest, ...(maxLength !== undefined ? { maxNewTokens: maxLength } : {}) };
}

export class Translator {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: TranslationResult[]) => void; reject: (e: Error) => void; onToken?: (ev: StreamEvent) => void }>();
  private closed = false;
  readonly loadMs: number;

  private constructor(worker: Worker, loadMs: number) {
    this.worker = worker;
    this.loadMs = loadMs;
    worker.on('message', (m: Reply) => this.onMessage(m));
    worker.on('error', (e) => this.failAll(e));
    worker.on('exit', () => this.failAll(new ChimeraError('E_NATIVE', 'the translator worker exited')));
  }

  /** Loads a model directory in a new worker thread. */
  static load(dir: string, opts: MarianLoadOptions = {}): Promise<Translator> {
    if (typeof dir !== 'string' || !fs.existsSync(dir)) return Promise.reject(new ChimeraError('E_MODEL', `model directory ${String(dir)} does not exist`));
    let worker: Worker;
    try {
      worker = new Worker(workerPath(), { workerData: { dir: path.resolve(dir), opts } });
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
        done();
        if (m.type === 'loaded') resolve(new Translator(worker, m.loadMs));
        else if (m.type === 'error') {
          void worker.terminate();
          reject(new ChimeraError(m.code as ChimeraErrorCode, m.message));
        }
      };
      const onErr = (e: Error) => {
        done();
        reject(e);
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

  private onMessage(m: Reply): void {
    if (m.type === 'loaded') return;
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.type === 'token') {
      p.onToken?.({ token: m.token, text: m.text, delta: m.delta });
      return;
    }
    this.pending.delete(m.id);
    if (m.type === 'result') p.resolve(m.results);
    else if (m.type === 'error') p.reject(new ChimeraError(m.code as ChimeraErrorCode, m.message));
  }

  private failAll(e: Error): void {
    this.closed = true;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  private send(req: Request, onToken?: (ev: StreamEvent) => void): Promise<TranslationResult[]> {
    if (this.closed) return Promise.reject(new ChimeraError('E_ARG', 'this Translator is closed'));
    return new Promise((resolve, reject) => {
      this.pending.set((req as { id: number }).id, { resolve, reject, onToken });
      this.worker.postMessage(req);
    });
  }

  /** Translates each text; returns one result per text, in order. */
  translate(texts: string | string[], opts?: TranslateOptions): Promise<TranslationResult[]> {
    const list = typeof texts === 'string' ? [texts] : texts;
    if (!Array.isArray(list) || list.length === 0 || list.some((t) => typeof t !== 'string'))
      return Promise.reject(new ChimeraError('E_INPUT', 'texts must be a string or a non-empty array of strings'));
    if (list.some((t) => t.trim() === '')) return Promise.reject(new ChimeraError('E_INPUT', 'cannot translate an empty text'));
    return this.send({ type: 'translate', id: this.nextId++, texts: list, opts: generateOptions(opts) });
  }

  /** Yields tokens as they are decided, then ends; `await` the iterator's return for nothing more. */
  async *stream(text: string, opts?: TranslateOptions): AsyncGenerator<StreamEvent, TranslationResult> {
    if (typeof text !== 'string' || text.trim() === '') throw new ChimeraError('E_INPUT', 'cannot translate an empty text');
    const queue: StreamEvent[] = [];
    let wake: (() => void) | null = null;
    let finished = false;
    let error: Error | null = null;
    let result: TranslationResult | undefined;
    const o = generateOptions(opts);
    if ((o.beam ?? 1) > 1) throw new ChimeraError('E_ARG', 'stream() decides tokens one by one: use beam 1 (greedy or sampling)');
    this.send({ type: 'stream', id: this.nextId++, text, opts: o }, (ev) => {
      queue.push(ev);
      wake?.();
    }).then(
      (r) => { result = r[0]; finished = true; wake?.(); },
      (e: Error) => { error = e; finished = true; wake?.(); },
    );
    for (;;) {
      if (queue.length) {
        yield queue.shift()!;
        continue;
      }
      if (finished) break;
      await new Promise<void>((r) => (wake = r));
      wake = null;
    }
    if (error) throw error;
    return result!;
  }

  /** Stops the worker; pending requests are rejected. */
  async close(): Promise<void> {
    if (this.closed) return;
    // reject what is still pending as closed, rather than as a worker crash when the exit event arrives
    this.failAll(new ChimeraError('E_ARG', 'the Translator was closed before this request finished'));
    this.worker.postMessage({ type: 'close' } satisfies Request);
    await this.worker.terminate();
  }
}
