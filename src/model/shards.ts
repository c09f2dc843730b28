/**
 * Sharded checkpoints as Hugging Face writes them, for every weights format: a single file, or
 * `NAME.index.json` whose `weight_map` names the shard (a file beside it) of each tensor.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ChimeraError } from '../errors';

const INDEX_SUFFIX = '.index.json';

function fail(file: string, problem: string): never {
  throw new ChimeraError('E_MODEL', `${file}: ${problem}`);
}

export interface ShardSet {
  files: string[];
  /** For an index: the shard each tensor is listed in. */
  weightMap?: Map<string, string>;
}

/**
 * The files behind `p`: a weights file, its `.index.json`, or a directory holding `base` (e.g. model.safetensors,
 * pytorch_model.bin) or `base.index.json`. Shard names must be plain file names beside the index, so an index
 * cannot point elsewhere.
 */
export function resolveShards(p: string, base: string): ShardSet {
  let target = p;
  if (fs.existsSync(p) && fs.statSync(p).isDirectory()) {
    const single = path.join(p, base);
    const index = path.join(p, base + INDEX_SUFFIX);
    if (fs.existsSync(single)) target = single;
    else if (fs.existsSync(index)) target = index;
    else fail(p, `no ${base} or ${base}${INDEX_SUFFIX} in this directory`);
  }
  if (!target.endsWith(INDEX_SUFFIX)) return { files: [target] };
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(target, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    fail(target, code === 'ENOENT' ? 'file not found' : `index is not valid JSON (${(e as Error).message})`);
  }
  const wm = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) fail(target, 'index has no weight_map object');
  const dir = path.dirname(target);
  const weightMap = new Map<string, string>();
  const files: string[] = [];
  for (const [name, shard] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof shard !== 'string' || shard === '' || shard !== path.basename(shard) || shard === '.' || shard === '..')
      fail(target, `weight_map entry '${name}' names an invalid shard ${JSON.stringify(shard)}`);
    const shardPath = path.join(dir, shard);
    if (!files.includes(shardPath)) {
      if (!fs.existsSync(shardPath)) fail(target, `shard '${shard}' listed in the index is missing`);
      files.push(shardPath);
    }
    weightMap.set(name, shardPath);
  }
  if (files.length === 0) fail(target, 'index weight_map is empty');
  return { files, weightMap };
}

/** Every tensor of every shard (read by `read`), refusing a name in two shards or one the index misplaces. */
export function mergeShards<T extends { file: string }>(set: ShardSet, read: (file: string) => Map<string, T>): Map<string, T> {
  const all = new Map<string, T>();
  for (const file of set.files) {
    for (const [name, info] of read(file)) {
      const prev = all.get(name);
      if (prev) fail(file, `tensor '${name}' also appears in ${prev.file}`);
      all.set(name, info);
    }
  }
  if (set.weightMap) {
    for (const [name, shard] of set.weightMap) {
      const info = all.get(name);
      if (!info || info.file !== shard) fail(shard, `the index lists tensor '${name}' in this shard, but it is not there`);
    }
  }
  return all;
}
