/**
 * The Translator's worker thread (src/translator/index.ts starts it; src/translator/protocol.ts is what they say): owns one MarianModel, its tokenizer and a Scheduler. Requests from the main
 * thread are queued; between decoder steps the event loop turns (setImmediate), so new requests, aborts and
 * close are seen at every step boundary and join the running batch.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ChimeraError, type ChimeraErrorCode, type ChimeraErrorReason } from '../errors';
import { getThreads } from '../kernels';
import { native } from '../native';
import { MarianModel } from '../marian';
import { Scheduler } from '../engine/scheduler';
import { wallNow, type Reply, type Request, type WorkerOptions } from './protocol';

const port = parentPort;
if (!port) throw new Error('worker.ts must run in a worker thread');

function errorReply(id: number, e: unknown): Reply {
  const err = e as { code?: string; message?: string; reason?: ChimeraErrorReason };
  return { type: 'error', id, code: err?.code ?? 'E_NATIVE', message: err?.message ?? String(e), ...(err?.reason ? { reason: err.reason } : {}) };
}

/**
 * The nice value of a low-priority worker: the weakest CFS weight (15 against 1024 at nice 0), so under contention
 * it gets about 1.5 % of a core and otherwise all the idle time.
 */
const LOW_PRIORITY_NICE = 19;

/** Stats are sent at most this often while busy (ms): often enough for a scrape, cheap next to a step. */
const STATS_INTERVAL_MS = 25;

async function main(): Promise<void> {
  const { dir, opts } = workerData as { dir: string; opts: WorkerOptions };
  let model: MarianModel;
  // Before anything starts the thread pool: its threads inherit this thread's priority.
  if (opts.lowPriority) native().setThreadNice(LOW_PRIORITY_NICE);
  try {
    const onProgress = opts.progress ? (done: number, total: number) => port!.postMessage({ type: 'progress', done, total } satisfies Reply) : undefined;
    model = await MarianModel.load(dir, { ...opts.load, ...(onProgress ? { onProgress } : {}) });
    model.requireTokenizer();
  } catch (e) {
    port!.postMessage(errorReply(-1, e));
    return;
  }
  const tok = model.tokenizer!;
  const sched = new Scheduler(model.createBatch(), opts.scheduler);
  const cancels = new Map<number, () => void>();
  let closing = false;
  let running = false;
  let lastStats = 0;

  const sendStats = (): void => {
    lastStats = performance.now();
    const steps = sched.stepLog.splice(0, sched.stepLog.length);
    port!.postMessage({ type: 'stats', stats: { ...sched.stats(), at: wallNow() }, steps } satisfies Reply);
  };
  const wall = (t: number) => performance.timeOrigin + t;

  const loop = (): void => {
    if (closing) return;
    try {
      sched.tick();
    } catch (e) {
      // the scheduler fails requests itself; anything reaching here is a bug: fail everything, keep serving
      sched.failAll(new ChimeraError('E_NATIVE', `scheduler failure: ${(e as Error).message}`));
    }
    if (sched.busy) {
      if (performance.now() - lastStats >= STATS_INTERVAL_MS) sendStats();
      setImmediate(loop);
    } else {
      running = false;
      sendStats();
    }
  };
  const kick = (): void => {
    if (!running && !closing) {
      running = true;
      setImmediate(loop);
    }
  };

  port!.postMessage({
    type: 'loaded', loadMs: model.loadMs, precision: model.precision, maxPositions: model.config.maxPositions, threads: getThreads(),
    layers: { encoder: model.config.encoderLayers, decoder: model.config.decoderLayers },
    shortlist: model.shortlist?.fingerprint ?? null,
    ...languagePair(model),
  } satisfies Reply);

  port!.on('message', (req: Request) => {
    if (req.type === 'close') {
      // Between steps by construction (this handler never runs inside a step): nothing native is in flight.
      closing = true;
      sched.failAll(new ChimeraError('E_CLOSED', 'the Translator was closed before this request finished'));
      port!.postMessage({ type: 'closed' } satisfies Reply);
      port!.close();
      return;
    }
    if (req.type === 'abort') {
      cancels.get(req.id)?.();
      cancels.delete(req.id);
      return;
    }
    if (closing) {
      port!.postMessage(errorReply(req.id, new ChimeraError('E_CLOSED', 'the Translator is closed')));
      return;
    }
    if (req.type === 'adjustNorm') {
      try {
        const ln = model.layerNorms().find((n) => n.name === req.name);
        if (!ln) throw new ChimeraError('E_ARG', `no layer norm named ${req.name}; see MarianModel.layerNorms()`);
        if (req.edit.scaleGamma !== undefined) ln.params.scaleGamma(req.edit.scaleGamma);
        if (req.edit.shiftBeta !== undefined) ln.params.shiftBeta(req.edit.shiftBeta);
        model.syncNorms(); // a 'cuda' model keeps device copies of gamma/beta
        port!.postMessage({ type: 'control', id: req.id, value: null } satisfies Reply);
      } catch (e) {
        port!.postMessage(errorReply(req.id, e));
      }
      return;
    }
    if (req.type === 'sensitivity') {
      // Between steps, on this worker's thread budget: one teacher-forced pass per precision group (see quantize).
      void (async () => {
        try {
          const { measureSensitivity } = await import('../quality/quantize');
          const control = await MarianModel.load(dir, { precision: 'fp32' });
          const src = req.sentences.map((x) => control.tokenizer!.encode(x));
          const tgt = control.generate(src, { maxLength: 64 }).ids;
          const r = await measureSensitivity(dir, control, src, tgt);
          port!.postMessage({ type: 'control', id: req.id, value: r.ranking.map((e) => e.group) } satisfies Reply);
        } catch (e) {
          port!.postMessage(errorReply(req.id, e));
        }
      })();
      return;
    }
    try {
      const ids = req.sentences.map((s) => tok.encode(s));
      const texts = new Map<number, number[]>();
      const cancel = sched.submit({
        sources: ids,
        options: model.searchOptions(req.opts),
        label: (i) => `input ${req.textOf[i] ?? i}`,
        onAdmit: (at) => port!.postMessage({ type: 'admit', id: req.id, at: wall(at) } satisfies Reply),
        onToken: req.stream
          ? (s, t) => {
            let so = texts.get(s);
            if (!so) texts.set(s, (so = []));
            so.push(t);
            port!.postMessage({ type: 'token', id: req.id, sentence: s, token: t, text: tok.decode(so) } satisfies Reply);
          }
          : undefined,
        onSentence: req.stream
          ? (s, r) => port!.postMessage({
            type: 'sentence', id: req.id, sentence: s,
            result: { text: tok.decode(r.ids), tokens: r.ids, admitAt: wall(r.admitAt), firstAt: wall(r.firstAt), doneAt: wall(r.doneAt) },
          } satisfies Reply)
          : undefined,
        onDone: (rs) => {
          cancels.delete(req.id);
          sendStats(); // first, so stats() is current when the caller's promise resolves
          port!.postMessage({
            type: 'result', id: req.id,
            sentences: rs.map((r) => ({ text: tok.decode(r.ids), tokens: r.ids, admitAt: wall(r.admitAt), firstAt: wall(r.firstAt), doneAt: wall(r.doneAt) })),
          } satisfies Reply);
        },
        onError: (e) => {
          cancels.delete(req.id);
          // an abort was asked for by the main thread, which has already answered the caller
          if ((e as { name?: string }).name !== 'AbortError') port!.postMessage(errorReply(req.id, e));
        },
      });
      cancels.set(req.id, cancel);
      kick();
    } catch (e) {
      port!.postMessage(errorReply(req.id, e));
    }
  });
}

/** The model's language pair: config fields when present, else an opus-mt-SRC-TGT directory name. */
function languagePair(model: MarianModel): { sourceLang?: string; targetLang?: string } {
  const dir = String((workerData as { dir: string }).dir);
  const m = /opus-mt-([a-z]{2,3}(?:_[a-zA-Z]+)?)-([a-z]{2,3}(?:_[a-zA-Z]+)?)/.exec(dir.split(/[\\/]/).filter(Boolean).pop() ?? '');
  const c = model.config as unknown as { sourceLang?: string; targetLang?: string };
  return {
    ...(c.sourceLang ?? m?.[1] ? { sourceLang: c.sourceLang ?? m?.[1] } : {}),
    ...(c.targetLang ?? m?.[2] ? { targetLang: c.targetLang ?? m?.[2] } : {}),
  };
}

export type { ChimeraErrorCode };
void main();
