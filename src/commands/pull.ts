/** `chimera pull REPO [--revision R] [--cache-dir DIR]`: an explicit download into the Hugging Face cache. */
import { bool, runCommand, str, type CommandArgs, type CommandSpec } from './args';

export const PULL: CommandSpec = {
  name: 'pull',
  args: 'ORG/NAME[@REVISION]',
  positionals: { min: 1, max: 1, message: 'pull takes one repo id (chimera pull ORG/NAME[@REVISION])' },
  summary: 'download config, tokenizer and weights into the Hugging Face cache; afterwards --model ORG/NAME loads offline',
  description: 'Downloads config, generation config, tokenizer files and weights (model.safetensors preferred, else\n' +
    'pytorch_model.bin; sharded indexes with their shards) into the Hugging Face cache (HF_HUB_CACHE, else\n' +
    'HF_HOME/hub, else ~/.cache/huggingface/hub). Honours HF_ENDPOINT and HF_TOKEN. An interrupted pull resumes.',
  options: [
    { flag: 'revision', kind: 'string', arg: 'R', help: 'branch, tag or commit', def: '(main, or @REVISION)' },
    { flag: 'cache-dir', kind: 'string', arg: 'DIR', help: 'the Hugging Face hub cache to fill' },
    { flag: 'quiet', kind: 'boolean', help: 'no progress' },
  ],
  run: pull,
};

/** argv: everything after the command name. Returns the exit code. */
export async function pullCommand(argv: string[]): Promise<number> {
  return runCommand(PULL, argv);
}

async function pull(a: CommandArgs): Promise<number> {
  const positionals = a.positionals;
  const values = { revision: str(a, 'revision'), 'cache-dir': str(a, 'cache-dir') };
  const { pullModel } = await import('../model/pull');
  const { ProgressBar } = await import('../progress');
  const bar = new ProgressBar(`pull ${positionals[0]}`);
  const quiet = bool(a, 'quiet');
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
