/**
 * Writes the greedy-output fixture the standalone CUDA driver checks against (format: bench/cuda/fixture.ts).
 * Run it on a machine with Node and the addon, before the GPU run (the GPU machine has no Node):
 *
 *   npm run bench:cuda:prepare -- [--model DIR] [--data FILE] [--sentences N] [--out FILE]
 *
 * Defaults: the shared m30k model, the first 50 lines of the Multi30k 2016 test set, bench/cuda/fixture/m30k.bin.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildFixture, DEFAULT_FIXTURE, firstLines, readFixture } from './fixture';

const ROOT = path.resolve(__dirname, '..', '..');
const SHARED = path.resolve(ROOT, '..', 'shared');

function args(argv: string[]): { model: string; data: string; sentences: number; out: string } {
  const o = {
    model: path.join(SHARED, 'models', 'marian-m30k-en-de'),
    data: path.join(SHARED, 'data', 'multi30k', 'test_2016_flickr.en'),
    sentences: 50,
    out: DEFAULT_FIXTURE,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = argv[i + 1];
    if (a === '--model') o.model = v;
    else if (a === '--data') o.data = v;
    else if (a === '--sentences') o.sentences = Number(v);
    else if (a === '--out') o.out = v;
    else throw new Error(`unknown argument ${a} (known: --model, --data, --sentences, --out)`);
    i++;
  }
  if (!Number.isInteger(o.sentences) || o.sentences < 1) throw new Error('--sentences must be a positive integer');
  return o;
}

async function main(): Promise<void> {
  const a = args(process.argv.slice(2));
  const t0 = performance.now();
  const buf = await buildFixture(a.model, { sentences: firstLines(a.data, a.sentences) });
  fs.mkdirSync(path.dirname(a.out), { recursive: true });
  fs.writeFileSync(a.out, buf);
  const f = readFixture(buf); // the round trip the driver will rely on
  const same = f.sentences.filter((s) => s.fp32.join() === s.int8.join()).length;
  const toks = f.sentences.reduce((n, s) => n + s.fp32.length, 0);
  console.log(`wrote ${path.relative(process.cwd(), a.out)}: ${(f.bytes / 2 ** 20).toFixed(1)} MiB, d=${f.header.d} vocab=${f.header.vocab} ` +
    `layers=${f.header.encoderLayers}+${f.header.decoderLayers}, ${f.sentences.length} sentences (${toks} fp32 output tokens; ` +
    `int8 tier identical on ${same}), maxLength ${f.header.maxLength}, CPU path ${f.isa}, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
