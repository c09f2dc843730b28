/**
 * `chimera pull` against a small Hub stand-in on loopback (HF_ENDPOINT), serving the endpoints @huggingface/hub
 * uses: GET /api/models/ORG/NAME/revision/REV, GET /api/models/ORG/NAME/tree/REV, and GET
 * /ORG/NAME/resolve/REV/PATH with Range requests. The real Hub is not reachable from the test machines and is
 * never contacted here.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ChimeraError } from '../src/errors';
import { MarianModel } from '../src/marian';
import { resolveModelSource } from '../src/model/hub-cache';
import { pullModel } from '../src/model/pull';

const ROOT = path.resolve(__dirname, '..');
const FIX = path.join(__dirname, 'fixtures', 'torch');
const GOOD_TOKEN = 'hf_good_token_for_tests';

interface RepoFile { data: Buffer; lfs: boolean; missingOnServer?: boolean }
interface Repo { sha: string; files: Map<string, RepoFile>; private?: boolean; unlisted?: string[] }

const repos = new Map<string, Repo>();
/** Break the connection after this many body bytes, once, for `repo/path`. */
const breakOnce = new Map<string, number>();
const requests: { method: string; url: string; range?: string; auth?: string }[] = [];
let server: http.Server;
let endpoint: string;
let cacheRoot: string;

const sha1 = (b: Buffer | string) => createHash('sha1').update(b).digest('hex');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const gitOid = (b: Buffer) => sha1(Buffer.concat([Buffer.from(`blob ${b.length}\0`), b]));

function repoFrom(dirs: string[], opts: Partial<Repo> = {}): Repo {
  const files = new Map<string, RepoFile>();
  for (const d of dirs) for (const f of fs.readdirSync(d)) files.set(f, { data: fs.readFileSync(path.join(d, f)), lfs: /\.(bin|safetensors)$/.test(f) });
  return { sha: sha1(dirs.join('|') + JSON.stringify(opts)), files, ...opts };
}

function json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

function handle(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url!, 'http://x');
  requests.push({ method: req.method!, url: url.pathname, range: req.headers.range, auth: req.headers.authorization });
  const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const api = parts[0] === 'api' && parts[1] === 'models';
  const [org, name] = api ? parts.slice(2, 4) : parts.slice(0, 2);
  const repo = repos.get(`${org}/${name}`);
  if (!repo) return json(res, 404, { error: 'Repository not found' }, { 'X-Error-Code': 'RepositoryNotFound' });
  if (repo.private && req.headers.authorization !== `Bearer ${GOOD_TOKEN}`)
    return json(res, 401, { error: 'Invalid credentials in Authorization header' });
  if (api && parts[4] === 'revision') {
    if (parts[5] !== 'main' && parts[5] !== repo.sha) return json(res, 404, { error: `Invalid rev id: ${parts[5]}` }, { 'X-Error-Code': 'RevisionNotFound' });
    return json(res, 200, { _id: 'x', id: `${org}/${name}`, sha: repo.sha, private: !!repo.private, downloads: 0, likes: 0, lastModified: '2025-01-01T00:00:00.000Z' });
  }
  if (api && parts[4] === 'tree') {
    const list = [...repo.files].filter(([p]) => !repo.unlisted?.includes(p)).map(([p, f]) => ({
      type: 'file', path: p, size: f.lfs ? 134 : f.data.length, oid: f.lfs ? sha1(p) : gitOid(f.data),
      ...(f.lfs ? { lfs: { oid: sha256(f.data), size: f.data.length, pointerSize: 134 } } : {}),
    }));
    return json(res, 200, list);
  }
  if (!api && parts[2] === 'resolve') {
    const p = parts.slice(4).join('/');
    const f = repo.files.get(p);
    if (!f || f.missingOnServer) return json(res, 404, { error: 'Entry not found' }, { 'X-Error-Code': 'EntryNotFound' });
    const size = f.data.length;
    let start = 0;
    let end = size - 1;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (m) {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
    }
    const headers = { ETag: `"${f.lfs ? sha256(f.data) : gitOid(f.data)}"`, 'X-Repo-Commit': repo.sha, 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream' };
    const body = f.data.subarray(start, end + 1);
    res.writeHead(m ? 206 : 200, { ...headers, 'Content-Length': String(body.length), ...(m ? { 'Content-Range': `bytes ${start}-${end}/${size}` } : {}) });
    const key = `${org}/${name}/${p}`;
    const cut = breakOnce.get(key);
    if (cut !== undefined && body.length > cut) {
      breakOnce.delete(key);
      res.write(body.subarray(0, cut), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.end(body);
    return;
  }
  json(res, 400, { error: `unexpected ${req.method} ${url.pathname}` });
}

async function expectPullError(p: Promise<unknown>, code: string, ...parts: string[]): Promise<void> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, 'expected an error').toBeInstanceOf(ChimeraError);
  expect((err as ChimeraError).code, (err as Error).message).toBe(code);
  for (const s of parts) expect((err as Error).message).toContain(s);
}

const savedEnv = { HF_ENDPOINT: process.env.HF_ENDPOINT, HF_TOKEN: process.env.HF_TOKEN };

beforeAll(async () => {
  server = http.createServer(handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  process.env.HF_ENDPOINT = endpoint;
  delete process.env.HF_TOKEN;
  cacheRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'chimera-pull-'));
  repos.set('Org/tiny-mt', repoFrom([path.join(FIX, 'tiny-sharded')]));
  repos.set('Org/both', repoFrom([path.join(FIX, 'tiny'), path.join(FIX, 'tiny-legacy')]));
  repos.set('Org/resume', repoFrom([path.join(FIX, 'tiny-legacy')]));
  repos.set('Private/tiny', repoFrom([path.join(FIX, 'tiny-bf16')], { private: true }));
  repos.set('Org/no-shard', repoFrom([path.join(FIX, 'tiny-sharded')], { unlisted: ['pytorch_model-00002-of-00002.bin'] }));
  const gone = repoFrom([path.join(FIX, 'tiny-legacy')]);
  gone.files.get('pytorch_model.bin')!.missingOnServer = true;
  repos.set('Org/gone', gone);
  repos.set('Org/no-weights', { sha: 'f'.repeat(40), files: new Map([['config.json', { data: fs.readFileSync(path.join(FIX, 'tiny', 'config.json')), lfs: false }]]) });
});

afterAll(async () => {
  for (const [k, v] of Object.entries(savedEnv)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  fs.rmSync(cacheRoot, { recursive: true, force: true });
});

afterEach(() => {
  delete process.env.HF_TOKEN;
});

let n = 0;
const freshCache = () => path.join(cacheRoot, `c${n++}`);

describe('chimera pull against a local Hub stand-in', () => {
  it('fetches config, generation config, the index and its shards into the cache layout; then loads offline by id', async () => {
    const cacheDir = freshCache();
    const r = await pullModel('Org/tiny-mt', { cacheDir });
    const sha = repos.get('Org/tiny-mt')!.sha;
    expect(r.commit).toBe(sha);
    expect(r.files.map((f) => f.path).sort()).toEqual(
      ['config.json', 'generation_config.json', 'pytorch_model-00001-of-00002.bin', 'pytorch_model-00002-of-00002.bin', 'pytorch_model.bin.index.json'].sort());
    const repoDir = path.join(cacheDir, 'models--Org--tiny-mt');
    expect(fs.readFileSync(path.join(repoDir, 'refs', 'main'), 'utf8')).toBe(sha);
    const link = path.join(repoDir, 'snapshots', sha, 'pytorch_model-00001-of-00002.bin');
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(fs.readlinkSync(link)).toBe(path.join('..', '..', 'blobs', sha256(repos.get('Org/tiny-mt')!.files.get('pytorch_model-00001-of-00002.bin')!.data)));
    expect(fs.readdirSync(path.join(repoDir, 'blobs')).some((f) => f.endsWith('.incomplete'))).toBe(false);

    const before = requests.length;
    const again = await pullModel('Org/tiny-mt', { cacheDir });
    expect(again.files.every((f) => !f.downloaded)).toBe(true);
    expect(requests.slice(before).filter((q) => q.url.includes('/resolve/'))).toEqual([]);

    expect(resolveModelSource('Org/tiny-mt', cacheDir)).toBe(r.snapshot);
    const saved = process.env.HF_HUB_CACHE;
    process.env.HF_HUB_CACHE = cacheDir;
    try {
      const byId = await MarianModel.load('Org/tiny-mt');
      const ref = await MarianModel.load(path.join(FIX, 'tiny'));
      expect(Array.from(byId.teacherForcedLogits([4, 8, 0], [63, 2]))).toEqual(Array.from(ref.teacherForcedLogits([4, 8, 0], [63, 2])));
    } finally {
      if (saved === undefined) delete process.env.HF_HUB_CACHE;
      else process.env.HF_HUB_CACHE = saved;
    }
  });

  it('prefers model.safetensors and fetches only what chimera needs', async () => {
    const before = requests.length;
    const r = await pullModel('Org/both', { cacheDir: freshCache() });
    expect(r.files.map((f) => f.path)).toContain('model.safetensors');
    expect(r.files.map((f) => f.path)).not.toContain('pytorch_model.bin');
    expect(requests.slice(before).some((q) => q.url.endsWith('/pytorch_model.bin'))).toBe(false);
  });

  it('resumes an interrupted download with a Range request and checks the sha256', async () => {
    const cacheDir = freshCache();
    const repo = repos.get('Org/resume')!;
    const size = repo.files.get('pytorch_model.bin')!.data.length;
    breakOnce.set('Org/resume/pytorch_model.bin', 20_000);
    await expectPullError(pullModel('Org/resume', { cacheDir }), 'E_MODEL', 'pytorch_model.bin', 'run pull again');
    const blobs = path.join(cacheDir, 'models--Org--resume', 'blobs');
    const partial = fs.readdirSync(blobs).find((f) => f.endsWith('.incomplete'))!;
    expect(partial).toBeDefined();
    const have = fs.statSync(path.join(blobs, partial)).size;
    expect(have).toBeGreaterThan(0);
    expect(have).toBeLessThan(size);

    const before = requests.length;
    const r = await pullModel('Org/resume', { cacheDir });
    const got = r.files.find((f) => f.path === 'pytorch_model.bin')!;
    expect(got.resumedFrom).toBe(have);
    const ranges = requests.slice(before).filter((q) => q.url.endsWith('/pytorch_model.bin') && q.range !== 'bytes=0-0').map((q) => q.range);
    expect(ranges).toEqual([`bytes=${have}-${size - 1}`]);
    const final = fs.readFileSync(path.join(r.snapshot, 'pytorch_model.bin'));
    expect(final.equals(repo.files.get('pytorch_model.bin')!.data)).toBe(true);
  });

  it('a corrupt partial file fails the sha256 check and is removed', async () => {
    const cacheDir = freshCache();
    const repo = repos.get('Org/resume')!;
    const data = repo.files.get('pytorch_model.bin')!.data;
    const blobs = path.join(cacheDir, 'models--Org--resume', 'blobs');
    fs.mkdirSync(blobs, { recursive: true });
    const partial = path.join(blobs, sha256(data) + '.incomplete');
    fs.writeFileSync(partial, Buffer.alloc(1000, 7));
    await expectPullError(pullModel('Org/resume', { cacheDir }), 'E_MODEL', 'sha256', 'does not match');
    expect(fs.existsSync(partial)).toBe(false);
    const r = await pullModel('Org/resume', { cacheDir });
    expect(fs.readFileSync(path.join(r.snapshot, 'pytorch_model.bin')).equals(data)).toBe(true);
  });

  it('a missing repository, revision, shard, file or weights', async () => {
    await expectPullError(pullModel('Org/nothing', { cacheDir: freshCache() }), 'E_MODEL', 'not found', 'HTTP 404');
    await expectPullError(pullModel('Org/tiny-mt', { cacheDir: freshCache(), revision: 'v9' }), 'E_MODEL', "revision 'v9'", '404');
    await expectPullError(pullModel('Org/no-shard', { cacheDir: freshCache() }), 'E_MODEL', 'shard pytorch_model-00002-of-00002.bin', 'missing from the repository');
    await expectPullError(pullModel('Org/gone', { cacheDir: freshCache() }), 'E_MODEL', 'pytorch_model.bin', 'missing on');
    await expectPullError(pullModel('Org/no-weights', { cacheDir: freshCache() }), 'E_MODEL', 'none of model.safetensors');
    await expectPullError(pullModel('not-a-repo-id', { cacheDir: freshCache() }), 'E_ARG', 'ORG/NAME');
  });

  it('an auth failure (HF_TOKEN): none, a refused one, a malformed one, then the right one', async () => {
    await expectPullError(pullModel('Private/tiny', { cacheDir: freshCache() }), 'E_MODEL', 'access denied (HTTP 401)', 'set HF_TOKEN');
    process.env.HF_TOKEN = 'hf_wrong';
    await expectPullError(pullModel('Private/tiny', { cacheDir: freshCache() }), 'E_MODEL', 'access denied (HTTP 401)', 'HF_TOKEN was refused');
    process.env.HF_TOKEN = 'not-a-token';
    await expectPullError(pullModel('Private/tiny', { cacheDir: freshCache() }), 'E_ARG', 'HF_TOKEN');
    process.env.HF_TOKEN = GOOD_TOKEN;
    const before = requests.length;
    const r = await pullModel('Private/tiny', { cacheDir: freshCache() });
    expect(r.files.some((f) => f.path === 'pytorch_model.bin' && f.downloaded)).toBe(true);
    expect(requests.slice(before).every((q) => q.auth === `Bearer ${GOOD_TOKEN}`)).toBe(true);
  });

  it('the CLI: chimera pull REPO --cache-dir DIR (HF_ENDPOINT from the environment)', async () => {
    const cacheDir = freshCache();
    const env = { ...process.env, HF_ENDPOINT: endpoint };
    delete env.HF_TOKEN;
    const { stdout } = await promisify(execFile)(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), 'pull', 'Org/tiny-mt', '--cache-dir', cacheDir], { env, timeout: 60_000 });
    expect(stdout).toContain(`Org/tiny-mt@${repos.get('Org/tiny-mt')!.sha}: 5 file(s) downloaded`);
    expect(stdout.trim().split('\n').pop()).toBe(path.join(cacheDir, 'models--Org--tiny-mt', 'snapshots', repos.get('Org/tiny-mt')!.sha));
    const bad = await promisify(execFile)(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), 'pull'], { env }).catch((e: { code: number; stderr: string }) => e);
    expect((bad as { code: number }).code).toBe(1);
    expect((bad as { stderr: string }).stderr).toContain('pull takes one repo id');
  });
});
