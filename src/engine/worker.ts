/**
 * The Translator's worker thread: owns one MarianModel and its tokenizer, and answers requests from the
 * main thread, so the caller's event loop never waits on the model.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ChimeraError } from '../errors';
import { MarianModel, type GenerateOptions, type MarianLoadOptions } from '../marian';

export type Request =
  | { type: 'translate'; id: number; texts: string[]; opts: GenerateOptions }
  | { type: 'stream'; id: number; text: string; opts: GenerateOptions }
  | { type: 'close' };

export type Reply =
  | { type: 'loaded'; loadMs: number; precision: unknown }
  | { type: 'result'; id: number; results: TranslationResult[] }
  | { type: 'token'; id: number; token: number; text: string; delta: string }
  | { type: 'error'; id: number; code: string; message: string };

export interface TranslationResult {
  text: string;
  tokens: number[];
  ttftMs: number;
  totalMs: number;
}

const port = parentPort;
if (!port) throw new Error('worker.ts must run in a worker thread');

function fail(id: number, e: unknown): void {
  const err = e as { code?: string; message?: string };
  port!.postMessage({ type: 'error', id, code: err.code ?? 'E_NATIVE', message: err.message ?? String(e) } satisfies Reply);
}

async function main(): Promise<void> {
  const { dir, opts } = workerData as { dir: string; opts: MarianLoadOptions };
  let model: MarianModel;
  try {
    model = await MarianModel.load(dir, opts);
    if (!model.tokenizer) throw new ChimeraError('E_MODEL', `${dir} has no usable tokenizer (tokenizer.json)`);
  } catch (e) {
    fail(-1, e);
    return;
  }
  const tok = model.tokenizer!;
  port!.postMessage({ type: 'loaded', loadMs: model.loadMs, precision: model.precision } satisfies Reply);
  port!.on('message', (req: Request) => {
    if (req.type === 'close') {
      port!.close();
      return;
    }
    try {
      if (req.type === 'translate') {
        const ids = req.texts.map((t) => tok.encode(t));
        const r = model.generate(ids, req.opts);
        const results = r.ids.map((out) => ({
          text: tok.decode(out), tokens: out, ttftMs: r.ttftMs, totalMs: r.totalMs,
        }));
        port!.postMessage({ type: 'result', id: req.id, results } satisfies Reply);
      } else {
        const ids = [tok.encode(req.text)];
        const sofar: number[] = [];
        let prev = '';
        const r = model.generate(ids, {
          ...req.opts,
          onToken: (_s, t) => {
            sofar.push(t);
            const text = tok.decode(sofar);
            port!.postMessage({ type: 'token', id: req.id, token: t, text, delta: text.startsWith(prev) ? text.slice(prev.length) : text } satisfies Reply);
            prev = text;
          },
        });
        port!.postMessage({ type: 'result', id: req.id, results: [{ text: tok.decode(r.ids[0]), tokens: r.ids[0], ttftMs: r.ttftMs, totalMs: r.totalMs }] } satisfies Reply);
      }
    } catch (e) {
      fail(req.id, e);
    }
  });
}

void main();
