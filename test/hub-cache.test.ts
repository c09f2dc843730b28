/**
 * Models by Hugging Face repo id, resolved offline in a cache laid out as huggingface_hub writes it
 * (refs/, snapshots/<commit>/ symlinks into blobs/), built here from the torch fixtures.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChimeraError } from '../src/errors';
import { MarianModel } from '../src/marian';
import { hubCacheDir, parseRepoId, resolveCachedRepo, resolveModelSource } from '../src/model/hub-cache';

const FIX = path.join(__dirname, 'fixtures', 'torch');
const SHA_MAIN = 'a'.repeat(40);
const SHA_V1 = '1234567890abcdef1234567890abcdef12345678';

let cache: string;

/** Writes one file of a snapshot as the Hub's cache does: content in blobs/<sha256>, a relative symlink. */
function put(repoDir: string, commit: string, name: string, src: string): void {
  const data = fs.readFileSync(src);
  const etag = createHash('sha256').update(data).digest('hex');
  const blob = path.join(repoDir, 'blobs', etag);
  fs.mkdirSync(path.dirname(blob), { recursive: true });
  fs.writeFileSync(blob, data);
  const link = path.join(repoDir, 'snapshots', commit, name);
  fs.mkdirSync(path.dirname(link), { recursive: true });
  fs.symlinkSync(path.relative(path.dirname(link), blob), link);
}

function expectModelError(f: () => unknown, ...parts: string[]): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ChimeraError);
  expect((err as ChimeraError).code).toBe('E_MODEL');
  for (const p of parts) expect((err as ChimeraError).message).toContain(p);
}

beforeAll(() => {
  cache = fs.mkdtempSync(path.join(os.tmpdir(), 'chimera-hub-'));
  const repo = path.join(cache, 'models--Org--tiny-mt');
  // main: the legacy fp32 checkpoint; v1: the sharded one; an older commit with only a config
  for (const f of ['config.json', 'generation_config.json', 'pytorch_model.bin']) put(repo, SHA_MAIN, f, path.join(FIX, 'tiny-legacy', f));
  for (const f of fs.readdirSync(path.join(FIX, 'tiny-sharded'))) put(repo, SHA_V1, f, path.join(FIX, 'tiny-sharded', f));
  put(repo, 'b'.repeat(40), 'config.json', path.join(FIX, 'tiny', 'config.json'));
  fs.mkdirSync(path.join(repo, 'refs'), { recursive: true });
  fs.writeFileSync(path.join(repo, 'refs', 'main'), SHA_MAIN); // no newline, as huggingface_hub writes it
  fs.writeFileSync(path.join(repo, 'refs', 'v1'), SHA_V1 + '\n');
  fs.writeFileSync(path.join(repo, 'refs', 'old'), 'b'.repeat(40));
  fs.mkdirSync(path.join(repo, 'refs', 'pr'));
  fs.writeFileSync(path.join(repo, 'refs', 'pr', '1'), SHA_V1);
});
afterAll(() => {
  fs.rmSync(cache, { recursive: true, force: true });
});

describe('repo ids', () => {
  it('parses ORG/NAME[@REVISION] and nothing else', () => {
    expect(parseRepoId('Helsinki-NLP/opus-mt-en-de')).toEqual({ repo: 'Helsinki-NLP/opus-mt-en-de' });
    expect(parseRepoId('Helsinki-NLP/opus-mt-en-de@v1.0')).toEqual({ repo: 'Helsinki-NLP/opus-mt-en-de', revision: 'v1.0' });
    expect(parseRepoId('a/b@refs/pr/1')).toEqual({ repo: 'a/b', revision: 'refs/pr/1' });
    for (const bad of ['t5-small', 'a/b/c', '/abs/path', './x/y', 'a/..', 'a/b@../x', 'a/b@', 'a--b/c', '../x']) expect(parseRepoId(bad), bad).toBeNull();
  });

  it('the cache directory: HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME, else ~/.cache', () => {
    expect(hubCacheDir({ HF_HUB_CACHE: '/c', HF_HOME: '/h' })).toBe('/c');
    expect(hubCacheDir({ HF_HOME: '/h' })).toBe(path.join('/h', 'hub'));
    expect(hubCacheDir({ XDG_CACHE_HOME: '/x' })).toBe(path.join('/x', 'huggingface', 'hub'));
    expect(hubCacheDir({})).toBe(path.join(os.homedir(), '.cache', 'huggingface', 'hub'));
  });
});

describe('resolution in the cache (offline)', () => {
  it('refs/main, an explicit branch or tag, a nested ref, a commit hash', () => {
    const repo = path.join(cache, 'models--Org--tiny-mt');
    expect(resolveCachedRepo({ repo: 'Org/tiny-mt' }, cache)).toBe(path.join(repo, 'snapshots', SHA_MAIN));
    expect(resolveCachedRepo({ repo: 'Org/tiny-mt', revision: 'v1' }, cache)).toBe(path.join(repo, 'snapshots', SHA_V1));
    expect(resolveCachedRepo({ repo: 'Org/tiny-mt', revision: 'pr/1' }, cache)).toBe(path.join(repo, 'snapshots', SHA_V1));
    expect(resolveCachedRepo({ repo: 'Org/tiny-mt', revision: SHA_V1 }, cache)).toBe(path.join(repo, 'snapshots', SHA_V1));
    expect(resolveModelSource('Org/tiny-mt@v1', cache)).toBe(path.join(repo, 'snapshots', SHA_V1));
  });

  it('a missing repo, revision or snapshot names `chimera pull`', () => {
    expectModelError(() => resolveModelSource('Org/missing', cache), 'model path Org/missing does not exist', 'not in the Hugging Face cache', 'chimera pull Org/missing');
    expectModelError(() => resolveModelSource('Org/tiny-mt@v9', cache), "revision 'v9'", 'chimera pull Org/tiny-mt --revision v9');
    expectModelError(() => resolveModelSource(`Org/tiny-mt@${'c'.repeat(40)}`, cache), 'snapshot', 'chimera pull');
    expectModelError(() => resolveModelSource('Org/tiny-mt@old', cache), 'incomplete (no weights)');
  });

  it('a dangling symlink (blob deleted) counts as missing', () => {
    const repo = path.join(cache, 'models--Org--dangling');
    put(repo, SHA_MAIN, 'config.json', path.join(FIX, 'tiny', 'config.json'));
    put(repo, SHA_MAIN, 'pytorch_model.bin', path.join(FIX, 'tiny-legacy', 'pytorch_model.bin'));
    fs.mkdirSync(path.join(repo, 'refs'));
    fs.writeFileSync(path.join(repo, 'refs', 'main'), SHA_MAIN);
    expect(resolveModelSource('Org/dangling', cache)).toContain(SHA_MAIN);
    const link = path.join(repo, 'snapshots', SHA_MAIN, 'pytorch_model.bin');
    fs.rmSync(path.resolve(path.dirname(link), fs.readlinkSync(link)));
    expectModelError(() => resolveModelSource('Org/dangling', cache), 'incomplete (no weights)');
  });

  it('an existing path wins over a repo id of the same spelling; other strings pass through', () => {
    const cwd = process.cwd();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chimera-local-'));
    try {
      fs.mkdirSync(path.join(dir, 'Org', 'tiny-mt'), { recursive: true });
      process.chdir(dir);
      expect(resolveModelSource('Org/tiny-mt', cache)).toBe('Org/tiny-mt');
    } finally {
      process.chdir(cwd);
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(resolveModelSource('/no/such/model', cache)).toBe('/no/such/model');
  });

  it('MarianModel.load takes a repo id (HF_HUB_CACHE) and loads the cached snapshot through its symlinks', async () => {
    const saved = process.env.HF_HUB_CACHE;
    process.env.HF_HUB_CACHE = cache;
    try {
      const byId = await MarianModel.load('Org/tiny-mt');
      const v1 = await MarianModel.load('Org/tiny-mt@v1');
      const ref = await MarianModel.load(path.join(FIX, 'tiny'));
      const l = (m: MarianModel) => Array.from(m.teacherForcedLogits([3, 7, 11, 0], [63, 5]));
      expect(l(byId)).toEqual(l(ref));
      expect(l(v1)).toEqual(l(ref));
      await expect(MarianModel.load('Org/absent')).rejects.toThrow(/chimera pull Org\/absent/);
    } finally {
      if (saved === undefined) delete process.env.HF_HUB_CACHE;
      else process.env.HF_HUB_CACHE = saved;
    }
  });
});
