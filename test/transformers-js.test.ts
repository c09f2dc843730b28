/**
 * transformers.js (a devDependency, @huggingface/transformers) as a peer: it loads chimera's own export of the
 * shared model from a local directory (the onnx/ layout with Optimum's merged decoder, is_encoder_decoder in
 * config.json), with remote loading disabled, and its greedy output equals chimera fp32's. The q8 files
 * (*_quantized.onnx) load and translate too. Skipped, with the reason, when the package or the model is absent.
 */
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MarianModel } from '../src/marian';
import { exportMarianOnnx } from '../src/onnx/export-marian';

const ROOT = path.join(__dirname, '..');
const SHARED_MODEL = path.resolve(ROOT, '..', 'shared', 'models', 'marian-m30k-en-de');
const VAL_EN = path.resolve(ROOT, '..', 'shared', 'data', 'multi30k', 'val.en');
const haveShared = fs.existsSync(path.join(SHARED_MODEL, 'model.safetensors'));
let haveTjs = true;
try {
  require.resolve('@huggingface/transformers');
} catch {
  haveTjs = false;
}
const skipReason = !haveTjs ? '@huggingface/transformers is not installed (npm install)' : !haveShared ? `${SHARED_MODEL} is absent` : '';
if (skipReason) console.warn(`transformers.js tests skipped: ${skipReason}`);

type Tjs = typeof import('@huggingface/transformers');

describe.skipIf(skipReason !== '')('transformers.js on chimera\'s ONNX export of the shared model', () => {
  let tjs: Tjs, out: string, fp32: MarianModel, lines: string[];
  beforeAll(async () => {
    tjs = await import('@huggingface/transformers');
    out = fs.mkdtempSync(path.join(tmpdir(), 'chimera-tjs-'));
    exportMarianOnnx(SHARED_MODEL, path.join(out, 'fp32'));
    exportMarianOnnx(SHARED_MODEL, path.join(out, 'int8'), { int8: true });
    tjs.env.allowRemoteModels = false;
    tjs.env.localModelPath = out;
    fp32 = await MarianModel.load(SHARED_MODEL, { precision: 'fp32' });
    lines = fs.existsSync(VAL_EN)
      ? fs.readFileSync(VAL_EN, 'utf8').split('\n').filter((l) => l.trim() !== '').slice(0, 6)
      : ['A man in a blue shirt is riding a bike.', 'Two dogs play in the snow.', 'A woman is reading a book on a bench.'];
  }, 120_000);
  afterAll(() => {
    if (out) fs.rmSync(out, { recursive: true, force: true });
  });

  async function greedy(dir: string, dtype: 'fp32' | 'q8', ids: number[][]): Promise<number[][]> {
    const model = await tjs.AutoModelForSeq2SeqLM.from_pretrained(dir, {
      dtype, local_files_only: true,
      session_options: { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential' },
    } as Parameters<typeof tjs.AutoModelForSeq2SeqLM.from_pretrained>[1]);
    const res: number[][] = [];
    for (const x of ids) {
      const input_ids = new tjs.Tensor('int64', BigInt64Array.from(x, (v) => BigInt(v)), [1, x.length]);
      const attention_mask = new tjs.Tensor('int64', new BigInt64Array(x.length).fill(1n), [1, x.length]);
      let puts = 0;
      const streamer = { put: () => void puts++, end: () => undefined };
      const r = (await model.generate({ input_ids, attention_mask, max_new_tokens: 127, do_sample: false, num_beams: 1, streamer } as never)) as { data: BigInt64Array };
      expect(puts).toBeGreaterThan(1); // the start token, then one put per generated token
      res.push(Array.from(r.data, Number).slice(1)); // drop decoder_start_token_id
    }
    await model.dispose();
    return res;
  }

  it('fp32: greedy output equals chimera fp32 on every sentence', async () => {
    const ids = lines.map((l) => fp32.tokenizer!.encode(l));
    const want = ids.map((x) => fp32.generate([x], { maxLength: 127 }).ids[0]);
    expect(await greedy('fp32', 'fp32', ids)).toEqual(want);
  }, 120_000);

  it('q8 (*_quantized.onnx) loads and agrees with chimera fp32 on most sentences', async () => {
    const ids = lines.map((l) => fp32.tokenizer!.encode(l));
    const got = await greedy('int8', 'q8', ids);
    const same = got.filter((g, i) => g.join() === fp32.generate([ids[i]], { maxLength: 127 }).ids[0].join()).length;
    expect(same).toBeGreaterThanOrEqual(Math.ceil(0.5 * ids.length));
  }, 120_000);
});
