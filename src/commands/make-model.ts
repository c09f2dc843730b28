/** `chimera make-model --out DIR`: a model with deterministic random weights in Hugging Face layout. */
import { num, str, type CommandArgs, type CommandSpec } from './args';

export const MAKE_MODEL: CommandSpec = {
  name: 'make-model',
  summary: 'write a model with deterministic random weights in Hugging Face layout',
  options: [
    { flag: 'preset', kind: 'string', arg: 'NAME', help: 'geometry', choices: ['tiny', 'opus-mt-en-de'], def: 'tiny' },
    { flag: 'seed', kind: 'int', arg: 'N', help: 'random seed', def: '0' },
    { flag: 'out', kind: 'string', arg: 'DIR', help: 'output directory', required: true },
  ],
  run: makeModelCommand,
};

export async function makeModelCommand(a: CommandArgs): Promise<number> {
  const { makeModel } = await import('../model/make-model');
  const out = str(a, 'out')!;
  const preset = str(a, 'preset') as 'tiny' | 'opus-mt-en-de';
  await makeModel({ preset, seed: num(a, 'seed')!, out });
  console.log(`wrote ${preset} model to ${out}`);
  return 0;
}
