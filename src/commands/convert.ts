/** `chimera convert DIR FILE`: pack a model directory into one file that loads fast (or write standard safetensors). */
import { ChimeraError } from '../errors';
import { ProgressBar } from '../progress';
import { bool, str, type CommandArgs, type CommandSpec } from './args';

export const CONVERT: CommandSpec = {
  name: 'convert',
  args: 'DIR FILE',
  positionals: { min: 2, max: 2, message: 'convert takes a model directory and an output file (chimera convert DIR FILE)' },
  summary: 'pack a Hugging Face model directory into one file that loads fast',
  description: 'With --to safetensors: write a standard model.safetensors instead (FILE ending in .safetensors is the\n' +
    'file, else a directory that also gets the config and tokenizer files). A directory without a tokenizer is\n' +
    'refused (its packed file could never translate text) unless --no-tokenizer says the weights alone are meant.',
  options: [
    { flag: 'precision', kind: 'string', arg: 'P', help: 'precision of the packed weights', choices: ['fp32', 'fp16', 'int8'], def: '(fp32)' },
    { flag: 'to', kind: 'string', arg: 'FORMAT', help: 'output format', choices: ['chimera', 'safetensors'], def: 'chimera' },
    { flag: 'no-tokenizer', kind: 'boolean', help: 'pack a model that has no tokenizer (it can then only take token ids)' },
  ],
  run: convertCommand,
};

export async function convertCommand(a: CommandArgs): Promise<number> {
  const [dir, file] = a.positionals;
  if (str(a, 'to') === 'safetensors') {
    if (a.values.precision !== undefined) throw new ChimeraError('E_ARG', '--to safetensors keeps the checkpoint\'s dtypes; --precision applies to packed files');
    const { convertToSafetensors } = await import('../model/to-safetensors');
    const { resolveModelSource } = await import('../model/hub-cache');
    const r = convertToSafetensors(resolveModelSource(dir), file);
    console.log(`wrote ${r.file}: ${r.tensors} tensors, ${(r.bytes / 1048576).toFixed(1)} MiB${r.copied.length ? `; copied ${r.copied.join(', ')}` : ''}`);
    if (!r.copied.some((f) => f === 'tokenizer.json' || f === 'source.spm') && !bool(a, 'no-tokenizer'))
      process.stderr.write(`warning: ${dir} has no tokenizer (tokenizer.json, or source.spm + vocab.json): the result can only take token ids\n`);
    return 0;
  }
  const { MarianModel, noTokenizerError } = await import('../marian');
  const precision = (str(a, 'precision') ?? 'fp32') as 'fp32';
  const bar = new ProgressBar(`packing ${precision}`);
  const model = await MarianModel.load(dir, { precision, onProgress: (d, t) => bar.update(d, t) });
  bar.done();
  if (!model.tokenizer && !bool(a, 'no-tokenizer')) {
    const e = noTokenizerError(dir);
    throw new ChimeraError(e.code, `${e.message}; its packed file could never translate text. Add the tokenizer files, or pass --no-tokenizer to pack the weights alone`);
  }
  const bytes = model.save(file);
  const back = await MarianModel.load(file);
  console.log(`wrote ${file}: ${(bytes / 1048576).toFixed(1)} MiB, ${precision}; loads in ${back.loadMs.toFixed(1)} ms (from ${model.loadMs.toFixed(0)} ms for the directory)`);
  return 0;
}
