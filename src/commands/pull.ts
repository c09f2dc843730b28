/** `chimera pull REPO [--revision R] [--cache-dir DIR]`: an explicit download into the Hugging Face cache. */
import { parseArgs } from 'node:util';
import { ChimeraError } from '../errors';

export const PULL_USAGE = `usage: chimera pull ORG/NAME[@REVISION] [--revision R] [--cache-dir DIR] [--quiet]

Downloads config, generation config, tokenizer files and weights (model.safetensors preferred, else
pytorch_model.bin; sharded indexes with their shards) into the Hugging Face cache (HF_HUB_CACHE, else
HF_HOME/hub, else ~/.cache/huggingface/hub). Honours HF_ENDPOINT and HF_TOKEN. An interrupted pull resumes.
Afterwards \`--model ORG/NAME\` loads it offline.
`;

/** argv: everything after the command name. Returns the exit code. */
export async function pullCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        revision: { type: 'string' },
        'cache-dir': { type: 'string' },
        quiet: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
        // global options, handled by the CLI before dispatch
        isa: { type: 'string' },
        threads: { type: 'string' },
      },
    });
  } catch (e) {
    throw new ChimeraError('E_ARG', `${(e as Error).message}\n${PULL_USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(PULL_USAGE);
    return 0;
  }
  if (positionals.length !== 1) throw new ChimeraError('E_ARG', `pull takes one repo id\n${PULL_USAGE}`);
  const { pullModel } = await import('../model/pull');
  const { ProgressBar } = await import('../progress');
  const bar = new ProgressBar(`pull ${positionals[0]}`);
  const quiet = values.quiet === true;
  const r = await pullModel(positionals[0], {
    revision: values.revision,
    cacheDir: values['cache-dir'],
    onProgress: quiet ? undefined : (done, total) => bar.update(done, total),
    log: quiet ? undefined : (line) => { bar.done(); process.stderr.write(`  ${line}\n`); },
  });
  bar.done();
  const fetched = r.files.filter((f) => f.downloaded);
  const bytes = fetched.reduce((s, f) => s + f.bytes, 0);
  console.log(`${r.repo}@${r.commit}: ${fetched.length} file(s) downloaded (${(bytes / 1048576).toFixed(1)} MiB), ${r.files.length - fetched.length} already cached`);
  console.log(r.snapshot);
  return 0;
}
