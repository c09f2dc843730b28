#!/usr/bin/env node
/** The `chimera` command line. */
import * as path from 'node:path';
import * as readline from 'node:readline';
import { ChimeraError } from './errors';
import { cpuInfo, getThreads, setIsa, setThreads, type Isa } from './kernels';
import { selfTest } from './selftest';

const USAGE = `usage: chimera <command> [options]

commands:
  translate [text]     translate text (or each line of stdin) with --model DIR, or the built-in demo model
                         --model DIR  --precision fp32|fp16|int8  --beam N  --max-length N
  convert DIR FILE     pack a Hugging Face model directory into one file that loads fast
                         --precision fp32|fp16|int8
                         --to safetensors  (instead: write a standard model.safetensors; FILE ending in
                         .safetensors is the file, else a directory that also gets config and tokenizer files)
  pull ORG/NAME[@REV]  download config, tokenizer and weights into the Hugging Face cache (HF_ENDPOINT, HF_TOKEN);
                       afterwards --model ORG/NAME loads offline.  --revision R  --cache-dir DIR  --quiet
  export-onnx DIR OUT  write the model as standard ONNX (opset 17) in Optimum's layout: encoder_model.onnx,
                       decoder_model.onnx, decoder_with_past_model.onnx (the same weights, for onnxruntime)
                         [--int8 (quantize_dynamic-style DynamicQuantizeLinear + MatMulInteger Linears)]
  make-model           write a model with deterministic random weights in Hugging Face layout
                         --preset tiny|opus-mt-en-de  --seed N  --out DIR
  tune-ln              fit layer-norm gamma/beta of a quantised model to the fp32 control; writes a packed model
                         --model DIR  --calib FILE  [--precision int8|fp16]  [--limit N]  [--out FILE]
                         [--heldout-src FILE --heldout-ref FILE  --heldout-limit N  --beam N]  [--ridge X]  [--report JSON]
  bleu HYP REF [REF2 ...]
                       sacreBLEU-exact corpus BLEU of a hypothesis file against reference files
                       (HYP '-' or only REF given: the hypothesis is read from stdin)
                         --tokenize 13a|none|intl|char  --smooth exp|floor|add-k|none  --smooth-value X
                         --lowercase  --json
  eval                 translate --src, score against --ref, and compare with the fp32 control
                         --model DIR|FILE  --src F  --ref F  [--precision fp32|fp16|int8 (default int8)]
                         [--control DIR (the fp32 model directory; needed for a packed --model)]
                         [--beam N  --limit N  --batch N  --max-length N  --json]
  quantize             quality gate: the cheapest precision plan within a BLEU budget, written packed
                         --model DIR  --src F  --ref F  --out FILE  [--max-bleu-drop X (default 0.5)]
                         [--beam N  --limit N  --batch N  --max-length N  --report FILE]
                         [--sensitivity-sentences N (default 200)  --try-all  --json]
  assess               chimera's tiers against onnxruntime on the same weights: TTFT p50/p95, sequential QPS,
                       BLEU beside the fp32 control, peak memory; writes report.md, report.json, ttft.svg
                         --model DIR  [--src F  --ref F]  [--out DIR (default assess-report)]  [--beam N]
                         [--limit N (default 100)]  [--max-length N (default 128)]   (needs onnxruntime-node)
  serve                the translation server (HTTP; SSE streaming, LibreTranslate API, /metrics, /ready);
                       \`chimera serve --help\` lists its options and their environment variables
                         [--model DIR|FILE  --host 127.0.0.1  --port 8080  --precision P  --threads N  --max-queue N
                          --cache-mb MB  --redis URL  --max-text-bytes N  --shutdown-timeout-s S  --api-keys FILE]
  doctor [--json]      which addon loaded and from where, ISA, threads, versions, and a verdict
  info                 CPU features, the kernel path in use and the thread count
  selftest             run every kernel on every ISA this CPU supports against a plain reference

global options:
  --isa scalar|avx2|avx512vnni|amx|auto   force a kernel path (same as CHIMERA_ISA)
  --threads N                              intra-op threads (same as CHIMERA_THREADS)
`;

/** The demo model shipped with the package (see models/marian-m30k-en-de/README.md for its provenance). */
export function defaultModelDir(): string {
  return path.resolve(__dirname, '..', 'models', 'marian-m30k-en-de');
}

interface Parsed {
  cmd: string | undefined;
  positional: string[];
  flags: Map<string, string>;
}

const BOOLEAN_FLAGS = new Set<string>(['lowercase', 'json', 'try-all', 'int8']);

function parse(argv: string[]): Parsed {
  const flags = new Map<string, string>();
  const positional: string[] = [];
  let cmd: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      if (eq > 0) flags.set(name, a.slice(eq + 1));
      else if (BOOLEAN_FLAGS.has(name)) flags.set(name, 'true');
      else {
        if (i + 1 >= argv.length) throw new ChimeraError('E_ARG', `--${name} needs a value`);
        flags.set(name, argv[++i]);
      }
    } else if (cmd === undefined) cmd = a;
    else positional.push(a);
  }
  return { cmd, positional, flags };
}

function intFlag(p: Parsed, name: string): number | undefined {
  const v = p.flags.get(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new ChimeraError('E_ARG', `--${name} must be a non-negative integer, got ${v}`);
  return n;
}

function takeFlags(p: Parsed, allowed: string[]): void {
  for (const k of p.flags.keys())
    if (!allowed.includes(k) && k !== 'isa' && k !== 'threads') throw new ChimeraError('E_ARG', `unknown option --${k} for ${p.cmd}\n${USAGE}`);
}

async function translate(p: Parsed): Promise<number> {
  takeFlags(p, ['model', 'precision', 'beam', 'max-length']);
  const { MarianModel } = await import('./marian');
  const dir = p.flags.get('model') ?? defaultModelDir();
  // A packed file carries its precision; for a directory the default is fp32.
  const precision = p.flags.get('precision') as 'fp32' | undefined;
  const model = await MarianModel.load(dir, precision === undefined ? {} : { precision });
  const tok = model.tokenizer;
  if (!tok) throw new ChimeraError('E_MODEL', `${dir} has no tokenizer.json`);
  const beam = intFlag(p, 'beam');
  const maxNewTokens = intFlag(p, 'max-length');
  const run = (text: string): string => {
    if (text.trim() === '') return '';
    const r = model.generate([tok.encode(text)], { beam, maxNewTokens });
    return tok.decode(r.ids[0]);
  };
  if (p.positional.length > 0) {
    console.log(run(p.positional.join(' ')));
    return 0;
  }
  // No text: translate stdin line by line, one output line per input line (empty lines stay empty).
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) process.stdout.write(run(line) + '\n');
  return 0;
}

async function convert(p: Parsed): Promise<number> {
  takeFlags(p, ['precision', 'to']);
  const [dir, file] = p.positional;
  if (!dir || !file || p.positional.length > 2) throw new ChimeraError('E_ARG', `convert takes a model directory and an output file\n${USAGE}`);
  const to = p.flags.get('to');
  if (to === 'safetensors') {
    if (p.flags.has('precision')) throw new ChimeraError('E_ARG', '--to safetensors keeps the checkpoint\'s dtypes; --precision applies to packed files');
    const { convertToSafetensors } = await import('./model/to-safetensors');
    const { resolveModelSource } = await import('./model/hub-cache');
    const r = convertToSafetensors(resolveModelSource(dir), file);
    console.log(`wrote ${r.file}: ${r.tensors} tensors, ${(r.bytes / 1048576).toFixed(1)} MiB${r.copied.length ? `; copied ${r.copied.join(', ')}` : ''}`);
    return 0;
  }
  if (to !== undefined && to !== 'chimera') throw new ChimeraError('E_ARG', `--to must be safetensors or chimera, got ${to}`);
  const { MarianModel } = await import('./marian');
  const { ProgressBar } = await import('./progress');
  const precision = (p.flags.get('precision') ?? 'int8') as 'int8';
  const bar = new ProgressBar(`packing ${precision}`);
  const model = await MarianModel.load(dir, { precision, onProgress: (d, t) => bar.update(d, t) });
  bar.done();
  const bytes = model.save(file);
  const back = await MarianModel.load(file);
  console.log(`wrote ${file}: ${(bytes / 1048576).toFixed(1)} MiB, ${precision}; loads in ${back.loadMs.toFixed(1)} ms (from ${model.loadMs.toFixed(0)} ms for the directory)`);
  return 0;
}

async function exportOnnxCmd(p: Parsed): Promise<number> {
  takeFlags(p, ['int8']);
  const [dir, out] = p.positional;
  if (!dir || !out || p.positional.length > 2) throw new ChimeraError('E_ARG', `export-onnx takes a model directory and an output directory\n${USAGE}`);
  const { exportMarianOnnx } = await import('./onnx/export-marian');
  const { ProgressBar } = await import('./progress');
  const int8 = p.flags.get('int8') === 'true';
  const bar = new ProgressBar(`exporting ${int8 ? 'int8' : 'fp32'} ONNX`);
  const r = exportMarianOnnx(dir, out, { int8, onProgress: (d, t) => bar.update(d, t) });
  bar.done();
  for (const g of r.graphs) console.log(`wrote ${g.file}: ${(g.bytes / 1048576).toFixed(1)} MiB`);
  console.log(`${r.outDir}: opset 17, ${int8 ? 'int8 (DynamicQuantizeLinear + MatMulInteger)' : 'fp32'}; copied ${r.copied.join(', ') || 'nothing'}`);
  return 0;
}

async function makeModelCmd(p: Parsed): Promise<number> {
  takeFlags(p, ['preset', 'seed', 'out']);
  const { makeModel } = await import('./model/make-model');
  const out = p.flags.get('out');
  if (!out) throw new ChimeraError('E_ARG', 'make-model needs --out DIR');
  const preset = p.flags.get('preset') ?? 'tiny';
  if (preset !== 'tiny' && preset !== 'opus-mt-en-de') throw new ChimeraError('E_ARG', `--preset must be tiny or opus-mt-en-de, got ${preset}`);
  await makeModel({ preset, seed: intFlag(p, 'seed') ?? 0, out });
  console.log(`wrote ${preset} model to ${out}`);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'pull') return (await import('./commands/pull')).pullCommand(argv.slice(1));
  if (argv[0] === 'doctor') return (await import('./commands/doctor')).doctorCommand(argv.slice(1));
  if (argv[0] === 'serve') return (await import('./commands/serve')).serveCommand(argv.slice(1));
  const p = parse(argv);
  const isa = p.flags.get('isa');
  if (isa !== undefined) setIsa(isa as Isa);
  const threads = intFlag(p, 'threads');
  if (threads !== undefined) setThreads(threads);
  switch (p.cmd) {
    case 'translate':
      return translate(p);
    case 'make-model':
      return makeModelCmd(p);
    case 'export-onnx':
      return exportOnnxCmd(p);
    case 'convert':
      return convert(p);
    case 'tune-ln': {
      takeFlags(p, ['model', 'calib', 'precision', 'heldout-src', 'heldout-ref', 'limit', 'heldout-limit', 'out', 'beam', 'ridge', 'report']);
      const { tuneLnCli } = await import('./quality/tune-ln');
      const f = (k: string) => p.flags.get(k);
      return tuneLnCli({
        model: f('model'), calib: f('calib'), precision: f('precision'), heldoutSrc: f('heldout-src'), heldoutRef: f('heldout-ref'),
        limit: intFlag(p, 'limit'), heldoutLimit: intFlag(p, 'heldout-limit'), out: f('out'), beam: intFlag(p, 'beam'),
        ridge: f('ridge') === undefined ? undefined : Number(f('ridge')), report: f('report'),
      });
    }
    case 'bleu':
      return (await import('./commands/quality')).bleuCommand(p);
    case 'eval':
      return (await import('./commands/quality')).evalCommand(p);
    case 'quantize':
      return (await import('./commands/quality')).quantizeCommand(p);
    case 'assess':
      return (await import('./commands/assess')).assessCommand(p);
    case 'info': {
      const info = cpuInfo();
      const on = Object.entries(info.features).filter(([, v]) => v).map(([k]) => k);
      console.log(`isa in use:   ${info.isa}`);
      console.log(`supported:    ${info.supported.join(', ')}`);
      console.log(`threads:      ${getThreads()}`);
      console.log(`cpu features: ${on.join(' ')}`);
      return 0;
    }
    case 'selftest':
      return selfTest() ? 0 : 1;
    case undefined:
    case 'help':
      process.stdout.write(USAGE);
      return p.cmd === undefined ? 2 : 0;
    default:
      process.stderr.write(`chimera: unknown command '${p.cmd}'\n${USAGE}`);
      return 2;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e) => {
      const err = e as { code?: string; message?: string };
      process.stderr.write(`chimera: ${err.code ? `[${err.code}] ` : ''}${err.message ?? String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
