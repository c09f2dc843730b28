/**
 * `chimera pull`: an explicit download of what chimera needs from a Hugging Face model repository into the
 * standard Hugging Face cache layout (see ./hub-cache.ts), through the maintained `@huggingface/hub` client.
 * It is the only code in chimera that touches the network, and only when called.
 *
 * - Files: config.json, generation_config.json, the tokenizer files, and the weights, preferring
 *   model.safetensors (or its sharded index) over pytorch_model.bin (or its index); the shards an index lists.
 * - Endpoint and token: `HF_ENDPOINT` (default https://huggingface.co) and `HF_TOKEN`, or the options.
 * - Resume: a file is downloaded to `blobs/<etag>.incomplete`; an interrupted pull leaves it there and the
 *   next one asks only for the missing bytes (an HTTP Range request). A finished file is checked against the
 *   size the Hub lists and, for LFS files, against its sha256 before it is moved into place.
 * - The snapshot gets relative symlinks into blobs/ (copies where symlinks are not allowed), and
 *   `refs/<revision>` the commit hash, exactly as huggingface_hub writes them.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ChimeraError } from '../errors';
import { COMMIT_HASH, hubCacheDir, isValidRevision, parseRepoId, repoCacheDir } from './hub-cache';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

/** Files chimera reads besides the weights; config.json is required, the others are fetched when present. */
export const MODEL_FILES = [
  'config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json',
  'source.spm', 'target.spm', 'vocab.json',
] as const;
/** Weight files in order of preference. */
export const WEIGHT_CHOICES = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json'] as const;

export interface PullOptions {
  revision?: string;
  /** Default: hubCacheDir() (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Default: HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Default: HF_TOKEN. */
  token?: string;
  /** Bytes done and bytes in all, across every file to fetch. */
  onProgress?: (done: number, total: number, file: string) => void;
  /** One line per file. */
  log?: (line: string) => void;
  fetch?: typeof fetch;
}

export interface PulledFile {
  path: string;
  bytes: number;
  /** False when the blob was already in the cache. */
  downloaded: boolean;
  /** Bytes that were already there from an interrupted pull. */
  resumedFrom: number;
}

export interface PullResult {
  repo: string;
  commit: string;
  snapshot: string;
  files: PulledFile[];
}

interface ListedFile {
  type: string;
  path: string;
  size: number;
  oid: string;
  lfs?: { oid: string; size: number };
}

type Hub = typeof import('@huggingface/hub');

function hubError(e: unknown, repo: string, what: string, endpoint: string, hasToken: boolean): ChimeraError {
  const err = e as { statusCode?: number; message?: string; cause?: { code?: string } };
  const status = err.statusCode;
  if (status === 401 || status === 403) {
    const hint = hasToken ? 'the token in HF_TOKEN was refused or has no access to it' : 'it may be private or gated: set HF_TOKEN to a token with access';
    return new ChimeraError('E_MODEL', `pull ${repo}: ${what}: access denied (HTTP ${status}); ${hint}`, { cause: e });
  }
  if (status === 404) return new ChimeraError('E_MODEL', `pull ${repo}: ${what}: not found on ${endpoint} (HTTP 404)`, { cause: e });
  if (status !== undefined) return new ChimeraError('E_MODEL', `pull ${repo}: ${what}: HTTP ${status} from ${endpoint} (${err.message ?? ''})`, { cause: e });
  const code = err.cause?.code ? ` (${err.cause.code})` : '';
  return new ChimeraError('E_MODEL', `pull ${repo}: ${what}: cannot reach ${endpoint}${code}: ${err.message ?? String(e)}`, { cause: e });
}

/** A relative path inside the repo: no absolute parts, no `..`. */
function safeRepoPath(p: string): boolean {
  return p !== '' && !p.startsWith('/') && !p.includes('\\') && p.split('/').every((x) => x !== '' && x !== '.' && x !== '..');
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

function linkInto(snapshotFile: string, blob: string): void {
  fs.mkdirSync(path.dirname(snapshotFile), { recursive: true });
  fs.rmSync(snapshotFile, { force: true });
  try {
    fs.symlinkSync(path.relative(path.dirname(snapshotFile), blob), snapshotFile);
  } catch {
    fs.copyFileSync(blob, snapshotFile);
  }
}

/**
 * Downloads `repo` (ORG/NAME, optionally `@REVISION`) into the cache and returns the snapshot directory, which
 * MarianModel.load accepts (as does the repo id itself from then on, offline).
 */
export async function pullModel(repoArg: string, opts: PullOptions = {}): Promise<PullResult> {
  const ref = parseRepoId(repoArg);
  if (!ref) throw new ChimeraError('E_ARG', `'${repoArg}' is not a Hugging Face model id of the form ORG/NAME`);
  if (opts.revision !== undefined && ref.revision !== undefined && opts.revision !== ref.revision)
    throw new ChimeraError('E_ARG', `two revisions given: @${ref.revision} and --revision ${opts.revision}`);
  const revision = opts.revision ?? ref.revision ?? 'main';
  if (!isValidRevision(revision)) throw new ChimeraError('E_ARG', `invalid revision '${revision}'`);
  const repo = ref.repo;
  const endpoint = (opts.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  const token = opts.token ?? (process.env.HF_TOKEN || undefined);
  if (token !== undefined && !token.startsWith('hf_')) throw new ChimeraError('E_ARG', 'HF_TOKEN must be a Hugging Face access token (it starts with hf_)');
  const cacheDir = opts.cacheDir ?? hubCacheDir();
  const log = opts.log ?? (() => undefined);
  const hub: Hub = await import('@huggingface/hub');
  const common = { hubUrl: endpoint, accessToken: token, ...(opts.fetch ? { fetch: opts.fetch } : {}) };

  // 1. The commit the revision points at, and the files in it.
  let commit: string;
  try {
    const info = await hub.modelInfo({ name: repo, revision, additionalFields: ['sha'], ...common });
    commit = String((info as { sha?: unknown }).sha ?? '');
  } catch (e) {
    throw hubError(e, repo, `revision '${revision}'`, endpoint, token !== undefined);
  }
  if (!COMMIT_HASH.test(commit)) throw new ChimeraError('E_MODEL', `pull ${repo}: the Hub answered no commit hash for revision '${revision}'`);
  const listed = new Map<string, ListedFile>();
  try {
    for await (const f of hub.listFiles({ repo, revision: commit, ...common })) {
      if (f.type === 'file') listed.set(f.path, f as unknown as ListedFile);
    }
  } catch (e) {
    throw hubError(e, repo, 'listing files', endpoint, token !== undefined);
  }

  // 2. What to fetch.
  if (!listed.has('config.json')) throw new ChimeraError('E_MODEL', `pull ${repo}@${revision}: the repository has no config.json; is it a model repository?`);
  const weights = WEIGHT_CHOICES.find((w) => listed.has(w));
  if (!weights)
    throw new ChimeraError('E_MODEL', `pull ${repo}@${revision}: the repository has none of ${WEIGHT_CHOICES.join(', ')}`);
  const plan = [...MODEL_FILES.filter((f) => listed.has(f)), weights];

  const storage = repoCacheDir(repo, cacheDir);
  const snapshot = path.join(storage, 'snapshots', commit);
  const blobs = path.join(storage, 'blobs');
  fs.mkdirSync(blobs, { recursive: true });
  fs.mkdirSync(snapshot, { recursive: true });

  const results: PulledFile[] = [];
  let totalBytes = plan.reduce((s, p) => s + (listed.get(p)!.lfs?.size ?? listed.get(p)!.size), 0);
  let doneBytes = 0;

  const fetchOne = async (repoPath: string): Promise<string> => {
    const f = listed.get(repoPath);
    if (!f) throw new ChimeraError('E_MODEL', `pull ${repo}@${revision}: ${repoPath} is missing from the repository`);
    if (!safeRepoPath(repoPath)) throw new ChimeraError('E_MODEL', `pull ${repo}: refusing the file name ${JSON.stringify(repoPath)}`);
    const size = f.lfs?.size ?? f.size;
    const etag = f.lfs?.oid ?? f.oid;
    if (!/^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(etag ?? '')) throw new ChimeraError('E_MODEL', `pull ${repo}: ${repoPath} has no usable oid`);
    const blob = path.join(blobs, etag);
    const link = path.join(snapshot, ...repoPath.split('/'));
    if (fs.existsSync(blob) && fs.statSync(blob).size === size) {
      linkInto(link, blob);
      doneBytes += size;
      opts.onProgress?.(doneBytes, totalBytes, repoPath);
      results.push({ path: repoPath, bytes: size, downloaded: false, resumedFrom: 0 });
      log(`${repoPath}: already in the cache`);
      return link;
    }
    const partial = blob + '.incomplete';
    let have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
    if (have > size) {
      fs.rmSync(partial);
      have = 0;
    }
    doneBytes += have;
    if (have < size) {
      let web: Blob | null;
      try {
        web = await hub.downloadFile({ repo, path: repoPath, revision: commit, xet: false, ...common });
      } catch (e) {
        throw hubError(e, repo, repoPath, endpoint, token !== undefined);
      }
      if (!web) throw new ChimeraError('E_MODEL', `pull ${repo}@${revision}: ${repoPath} is missing on ${endpoint} (HTTP 404)`);
      if (web.size !== size)
        throw new ChimeraError('E_MODEL', `pull ${repo}: ${repoPath} is ${web.size} bytes on the server but listed as ${size}`);
      const part = have > 0 ? web.slice(have) : web;
      const out = fs.openSync(partial, 'a');
      try {
        const reader = part.stream().getReader();
        for (;;) {
          let r: { done: boolean; value?: Uint8Array };
          try {
            r = (await reader.read()) as { done: boolean; value?: Uint8Array };
          } catch (e) {
            const msg = typeof e === 'string' ? e : (e as Error).message;
            throw new ChimeraError('E_MODEL',
              `pull ${repo}: ${repoPath}: the download broke off after ${fs.fstatSync(out).size} of ${size} bytes (${msg}); run pull again to resume`, { cause: e });
          }
          if (r.done || !r.value) break;
          const chunk = r.value;
          let off = 0;
          while (off < chunk.length) off += fs.writeSync(out, chunk, off, chunk.length - off);
          doneBytes += chunk.length;
          opts.onProgress?.(doneBytes, totalBytes, repoPath);
        }
      } finally {
        fs.closeSync(out);
      }
    }
    const got = fs.statSync(partial).size;
    if (got !== size) {
      if (got > size) fs.rmSync(partial);
      throw new ChimeraError('E_MODEL', `pull ${repo}: ${repoPath}: received ${got} bytes, expected ${size}; run pull again to resume`);
    }
    if (f.lfs) {
      const digest = await sha256File(partial);
      if (digest !== f.lfs.oid) {
        fs.rmSync(partial);
        throw new ChimeraError('E_MODEL', `pull ${repo}: ${repoPath}: sha256 ${digest} does not match the Hub's ${f.lfs.oid}; the partial file was removed, run pull again`);
      }
    }
    fs.renameSync(partial, blob);
    linkInto(link, blob);
    results.push({ path: repoPath, bytes: size, downloaded: true, resumedFrom: have });
    log(`${repoPath}: ${size} bytes${have ? ` (resumed at ${have})` : ''}`);
    return link;
  };

  for (const p of plan) {
    const file = await fetchOne(p);
    if (p.endsWith('.index.json')) {
      let shards: string[];
      try {
        const wm = (JSON.parse(fs.readFileSync(file, 'utf8')) as { weight_map?: Record<string, unknown> }).weight_map;
        if (typeof wm !== 'object' || wm === null) throw new Error('no weight_map');
        shards = [...new Set(Object.values(wm))].map((s) => {
          if (typeof s !== 'string' || s !== path.posix.basename(s) || !safeRepoPath(s)) throw new Error(`invalid shard name ${JSON.stringify(s)}`);
          return s;
        });
      } catch (e) {
        throw new ChimeraError('E_MODEL', `pull ${repo}: ${p}: ${(e as Error).message}`, { cause: e });
      }
      const dir = path.posix.dirname(p);
      const paths = shards.map((s) => (dir === '.' ? s : `${dir}/${s}`));
      for (const s of paths) {
        const f = listed.get(s);
        if (!f) throw new ChimeraError('E_MODEL', `pull ${repo}@${revision}: shard ${s} listed in ${p} is missing from the repository`);
        totalBytes += f.lfs?.size ?? f.size;
      }
      for (const s of paths) await fetchOne(s);
    }
  }

  if (revision !== commit) {
    const refFile = path.join(storage, 'refs', ...revision.split('/'));
    fs.mkdirSync(path.dirname(refFile), { recursive: true });
    fs.writeFileSync(refFile, commit);
  }
  return { repo, commit, snapshot, files: results };
}
