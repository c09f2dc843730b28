/**
 * Finding models by Hugging Face repo id in the local Hugging Face cache, offline.
 *
 * The cache is the one Python's huggingface_hub (and `chimera pull`) writes:
 *   <cache>/models--ORG--NAME/refs/<branch or tag>      the commit hash the name points at
 *   <cache>/models--ORG--NAME/snapshots/<commit>/<file>  symlinks into ../../blobs/
 *   <cache>/models--ORG--NAME/blobs/<etag>              the file contents
 * and <cache> is `HF_HUB_CACHE`, else `HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
 * `~/.cache/huggingface/hub` (huggingface_hub's own order). Nothing here touches the network.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChimeraError } from '../errors';
import { findWeightFile } from './checkpoint';

export interface RepoRef {
  /** ORG/NAME */
  repo: string;
  /** A branch, tag or commit hash; absent means `main`. */
  revision?: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;
const REVISION = /^[A-Za-z0-9._/-]{1,200}$/;
export const COMMIT_HASH = /^[0-9a-f]{40}$/;

/** The Hugging Face hub cache directory this process uses. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HF_HOME) return path.join(env.HF_HOME, 'hub');
  const base = env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'huggingface', 'hub');
}

/** True for a valid revision name: no empty, `.` or `..` path parts. */
export function isValidRevision(rev: string): boolean {
  return REVISION.test(rev) && rev.split('/').every((p) => p !== '' && p !== '.' && p !== '..');
}

/**
 * Parses `ORG/NAME` or `ORG/NAME@REVISION`; null when `s` is not of that form. (Single-name legacy repos such
 * as `t5-small` are not accepted: they cannot be told apart from a relative path.)
 */
export function parseRepoId(s: string): RepoRef | null {
  const at = s.indexOf('@');
  const repo = at < 0 ? s : s.slice(0, at);
  const revision = at < 0 ? undefined : s.slice(at + 1);
  const parts = repo.split('/');
  if (parts.length !== 2 || !parts.every((p) => NAME.test(p) && !p.includes('--') && !p.endsWith('.'))) return null;
  if (revision !== undefined && !isValidRevision(revision)) return null;
  return revision === undefined ? { repo } : { repo, revision };
}

/** `<cache>/models--ORG--NAME`. */
export function repoCacheDir(repo: string, cacheDir = hubCacheDir()): string {
  return path.join(cacheDir, `models--${repo.split('/').join('--')}`);
}

function notCached(ref: RepoRef, cacheDir: string, what: string): ChimeraError {
  const rev = ref.revision ? ` --revision ${ref.revision}` : '';
  return new ChimeraError('E_MODEL',
    `${what} in the Hugging Face cache (${cacheDir}); nothing is downloaded implicitly: fetch it once with \`chimera pull ${ref.repo}${rev}\` (or huggingface-cli download)`);
}

/**
 * The snapshot directory of a repo in the cache: `refs/<revision>` (default `main`) names the commit, or the
 * revision is a commit hash itself. E_MODEL naming `chimera pull` when the repo, the revision or the snapshot's
 * config and weights are not there.
 */
export function resolveCachedRepo(ref: RepoRef, cacheDir = hubCacheDir()): string {
  const dir = repoCacheDir(ref.repo, cacheDir);
  const label = `${ref.repo}${ref.revision ? '@' + ref.revision : ''}`;
  if (!fs.existsSync(dir)) throw notCached(ref, cacheDir, `model ${ref.repo} is not`);
  const rev = ref.revision ?? 'main';
  let commit: string;
  if (COMMIT_HASH.test(rev)) commit = rev;
  else {
    try {
      commit = fs.readFileSync(path.join(dir, 'refs', rev), 'utf8').trim();
    } catch {
      throw notCached(ref, cacheDir, `revision '${rev}' of ${ref.repo} is not`);
    }
    if (!COMMIT_HASH.test(commit)) throw new ChimeraError('E_MODEL', `${path.join(dir, 'refs', rev)}: not a commit hash`);
  }
  const snap = path.join(dir, 'snapshots', commit);
  if (!fs.existsSync(snap)) throw notCached(ref, cacheDir, `snapshot ${commit} of ${label} is not`);
  // fs.existsSync follows the symlinks into blobs/, so a dangling link counts as missing.
  const missing = [!fs.existsSync(path.join(snap, 'config.json')) && 'config.json', !findWeightFile(snap) && 'weights'].filter(Boolean);
  if (missing.length) throw notCached(ref, cacheDir, `${label} is incomplete (no ${missing.join(', ')})`);
  return snap;
}

/**
 * What `MarianModel.load`, `Translator.load` and `--model` accept: an existing directory or file is returned as
 * given; otherwise a repo id (`ORG/NAME[@REVISION]`) is resolved in the local cache. Anything else is
 * returned unchanged, for the caller's own "does not exist" error.
 */
export function resolveModelSource(source: string, cacheDir?: string): string {
  if (typeof source !== 'string' || source === '' || fs.existsSync(source)) return source;
  const ref = parseRepoId(source);
  if (!ref) return source;
  const cache = cacheDir ?? hubCacheDir();
  try {
    return resolveCachedRepo(ref, cache);
  } catch (e) {
    if (e instanceof ChimeraError) {
      throw new ChimeraError('E_MODEL', `model path ${source} does not exist, and as a Hugging Face repo id: ${e.message}`, { cause: e });
    }
    throw e;
  }
}
