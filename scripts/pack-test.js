#!/usr/bin/env node
// The pack-and-install test (run by .ci/run): pack the package as npm would publish it, with this platform's
// prebuild in it, install the tarball into an empty project with --offline and with no compiler on PATH, then use
// it through import, require and the CLI (translate with the built-in model, doctor). Asserts what the tarball
// holds and prints its size. The repository's tree is not touched: the package is staged in a temporary folder.
//
//   node scripts/pack-test.js [--addon FILE] [--keep]
//   --addon: the chimera.node to ship as the prebuild (default: CHIMERA_NATIVE / CHIMERA_ADDON, else build/Release)
//   --tree-prebuilds: ship the prebuilds/ already in the tree instead (the release job: every platform's)
'use strict';
const { spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');
const platform = require('./platform');

const root = path.resolve(__dirname, '..');
const { values } = parseArgs({ options: { addon: { type: 'string' }, 'tree-prebuilds': { type: 'boolean', default: false }, keep: { type: 'boolean', default: false } } });

const t0 = Date.now();
const log = (m) => console.log(`pack-test [${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);
function fail(m) {
  console.error(`pack-test: FAIL: ${m}`);
  process.exit(1);
}
function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.status !== 0 && !opts.allowFail)
    fail(`${cmd} ${args.join(' ')} exited ${r.status}\n${(r.stdout || '').slice(-4000)}\n${(r.stderr || '').slice(-4000)}`);
  return r;
}
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'chimera-pack-'));
const stage = path.join(tmp, 'stage');
const project = path.join(tmp, 'project');
fs.mkdirSync(stage);
fs.mkdirSync(project);

// 1. What npm would publish from this tree (package.json "files", README, package.json), built TypeScript.
sh(npm, ['run', 'build:ts'], { cwd: root });
const dry = JSON.parse(sh(npm, ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root }).stdout)[0];
for (const f of dry.files) {
  if (f.path.startsWith('prebuilds/') && !values['tree-prebuilds']) continue; // only the prebuild staged below ships from here
  fs.mkdirSync(path.dirname(path.join(stage, f.path)), { recursive: true });
  fs.copyFileSync(path.join(root, f.path), path.join(stage, f.path));
}

// 2. This platform's prebuild, placed and checked by the prebuild script (symbol versions reported, not enforced:
//    a binary built on this machine is for this machine; release builds come from the workflow's containers).
const addon =
  values.addon || process.env.CHIMERA_NATIVE || process.env.CHIMERA_ADDON || path.join(root, 'build', 'Release', 'chimera.node');
if (values['tree-prebuilds']) log('shipping the prebuilds/ of the tree');
else if (!fs.existsSync(addon)) fail(`${addon} does not exist: build the addon first (npm ci, or npm run build:native)`);
else sh(process.execPath, [path.join(root, 'scripts', 'prebuild.js'), '--from', addon, '--out-root', stage, '--glibc-check', 'warn'], {
  stdio: 'inherit',
});
const libc = platform.detectLibc();
const prebuildRel = path.relative(stage, platform.prebuildPath(stage, process.platform, process.arch, libc)).split(path.sep).join('/');

// 3. Pack (no lifecycle scripts: dist is already built) and check the contents.
const packed = JSON.parse(sh(npm, ['pack', '--json', '--ignore-scripts', '--pack-destination', tmp], { cwd: stage }).stdout)[0];
const tarball = path.join(tmp, packed.filename);
const files = packed.files.map((f) => f.path);
const must = [
  'package.json',
  'README.md',
  'LICENSE',
  prebuildRel,
  'dist/index.js',
  'dist/index.mjs',
  'dist/index.d.ts',
  'dist/cli.js',
  'dist/native-loader.js',
  'scripts/install.js',
  'scripts/platform.js',
  'models/marian-m30k-en-de/README.md',
  'models/marian-m30k-en-de/model.safetensors',
  'models/marian-m30k-en-de/tokenizer.json',
  'models/marian-m30k-en-de/config.json',
];
const missing = must.filter((f) => !files.includes(f));
if (missing.length > 0) fail(`the tarball lacks ${missing.join(', ')}`);
// Source maps must not point at sources the package does not ship: they carry the sources inline.
{
  const mapFile = path.join(root, 'dist', 'index.js.map');
  if (fs.existsSync(mapFile)) {
    const map = JSON.parse(fs.readFileSync(mapFile, 'utf8'));
    if (!Array.isArray(map.sourcesContent) || map.sourcesContent.length !== map.sources.length) fail('dist/index.js.map has no inline sources (tsconfig inlineSources)');
  }
}
const forbidden = [
  [/^test\//, 'tests'],
  [/\.test\.[cm]?[jt]s$/, 'test files'],
  [/(^|\/)\.tmp\//, '.tmp'],
  [/^build[^/]*\//, 'build trees'],
  [/^bench(-results)?\//, 'benchmarks'],
  [/(^|\/)node_modules\//, 'node_modules'],
  [/^src\//, 'TypeScript sources'],
  [/^models\/(?!marian-m30k-en-de\/)/, 'models other than the demo model (generated benchmark models)'],
  [/\.(onnx|chimera|bin)$/, 'generated model files'],
  [/^\.(git|github|ci)\//, 'repository machinery'],
];
for (const [re, what] of forbidden) {
  const bad = files.filter((f) => re.test(f));
  if (bad.length > 0) fail(`the tarball holds ${what}: ${bad.slice(0, 5).join(', ')}`);
}
const readme = fs.readFileSync(path.join(stage, 'models', 'marian-m30k-en-de', 'README.md'), 'utf8');
if (!/non-commercial/i.test(readme)) fail("the demo model's README lacks its licence note (Multi30k: non-commercial)");
log(
  `tarball ${packed.filename}: ${packed.size} bytes (${(packed.size / 1048576).toFixed(2)} MiB) packed, ` +
    `${packed.unpackedSize} bytes unpacked, ${packed.entryCount} files; holds ${prebuildRel}, dist, the demo model + README`,
);

// 4. An empty project that installs the tarball offline. Its lockfile pins the runtime dependencies to the
//    versions in this repository's lockfile, which `npm ci` put in the npm cache, so nothing is fetched.
const lock = JSON.parse(fs.readFileSync(path.join(root, 'package-lock.json'), 'utf8'));
const pkg = JSON.parse(fs.readFileSync(path.join(stage, 'package.json'), 'utf8'));
const integrity = `sha512-${crypto.createHash('sha512').update(fs.readFileSync(tarball)).digest('base64')}`;
const spec = `file:../${packed.filename}`;
const packages = {
  '': { name: 'chimera-pack-test', version: '1.0.0', dependencies: { 'chimera-infer': spec } },
  'node_modules/chimera-infer': {
    version: pkg.version,
    resolved: spec,
    integrity,
    hasInstallScript: true,
    license: pkg.license,
    dependencies: pkg.dependencies,
    bin: pkg.bin,
    engines: pkg.engines,
  },
};
for (const [k, v] of Object.entries(lock.packages)) {
  if (!k.startsWith('node_modules/') || v.dev || v.devOptional || v.link) continue;
  // npm leaves "resolved" out of some entries; without it an offline install asks for the packument.
  const name = k.slice(k.lastIndexOf('node_modules/') + 'node_modules/'.length);
  const registry = (process.env.npm_config_registry || 'https://registry.npmjs.org/').replace(/\/?$/, '/');
  packages[k] = v.resolved ? v : { ...v, resolved: `${registry}${name}/-/${name.split('/').pop()}-${v.version}.tgz` };
}
fs.writeFileSync(
  path.join(project, 'package.json'),
  JSON.stringify({ name: 'chimera-pack-test', version: '1.0.0', private: true, dependencies: { 'chimera-infer': spec } }, null, 2),
);
fs.writeFileSync(
  path.join(project, 'package-lock.json'),
  JSON.stringify({ name: 'chimera-pack-test', version: '1.0.0', lockfileVersion: 3, requires: true, packages }, null, 2),
);

// No compiler on PATH: a folder of links to every program on PATH except compilers and build tools.
const COMPILER = /^(cc|c\+\+|c89|c99|cpp|gcc|g\+\+|clang|clang\+\+|cl|cmake|ctest|cpack|make|gmake|ninja|ld|ld\.\w+|as)([-.][\w.]+)?$|-(gcc|g\+\+|cc|c\+\+|clang|clang\+\+)(-[\d.]+)?$/;
const bin = path.join(tmp, 'bin');
fs.mkdirSync(bin);
const seen = new Set();
for (const dir of (process.env.PATH || '').split(path.delimiter)) {
  let names = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    continue;
  }
  for (const n of names) {
    if (seen.has(n) || COMPILER.test(n)) continue;
    seen.add(n);
    try {
      fs.symlinkSync(path.join(dir, n), path.join(bin, n));
    } catch {
      // a name that cannot be linked
    }
  }
}
const env = { ...process.env, PATH: bin };
for (const k of Object.keys(env)) if (/^(CHIMERA_|npm_)/.test(k)) delete env[k];
env.npm_config_cache = process.env.npm_config_cache || path.join(os.homedir(), '.npm');
for (const tool of ['g++', 'gcc', 'cc', 'c++', 'cmake', 'make']) {
  const r = spawnSync('sh', ['-c', `command -v ${tool}`], { env, encoding: 'utf8' });
  if (r.status === 0) fail(`${tool} is still on the test PATH (${r.stdout.trim()})`);
}

const inst = sh(npm, ['install', '--offline', '--no-audit', '--no-fund', '--foreground-scripts'], { cwd: project, env });
const installLog = `${inst.stdout}\n${inst.stderr}`;
if (!/using the prebuilt/.test(installLog)) fail(`the install did not use the prebuild:\n${installLog.slice(-3000)}`);
for (const toolPkg of ['cmake-js', 'node-addon-api', 'node-api-headers', 'node-gyp'])
  if (fs.existsSync(path.join(project, 'node_modules', toolPkg))) fail(`the install pulled the build tool ${toolPkg}`);
log(`installed offline with no compiler on PATH: ${installLog.match(/chimera: using the prebuilt[^\n]*/)[0]}`);

// 5. Use it: import, require, the CLI.
const use = (args, what) => {
  const r = sh(args[0], args.slice(1), { cwd: project, env });
  log(`${what}: ${r.stdout.trim().split('\n').slice(-1)[0]}`);
  return r.stdout;
};
use([process.execPath, '--input-type=module', '-e',
  "import { cpuInfo, layerNorm, MarianModel, Translator } from 'chimera-infer';" +
  "if (typeof MarianModel.load !== 'function' || typeof Translator.load !== 'function') throw new Error('exports');" +
  "const y = layerNorm(new Float32Array([1, 2, 3, 4]), 4, new Float32Array(4).fill(1));" +
  "if (!(Math.abs(y[0] + 1.3416) < 1e-3)) throw new Error('layerNorm ' + y[0]);" +
  "console.log('import ok, isa ' + cpuInfo().isa);"], 'import');
use([process.execPath, '-e',
  "const c = require('chimera-infer'); const p = require.resolve('chimera-infer');" +
  "if (!p.includes('node_modules')) throw new Error(p);" +
  "console.log('require ok, supported ' + c.cpuInfo().supported.join(','));"], 'require');
const translated = use(['npx', '--no-install', 'chimera', 'translate', 'A dog runs across the grass.'], 'npx chimera translate').trim();
if (translated.length === 0) fail('chimera translate printed nothing');
const doctor = JSON.parse(use(['npx', '--no-install', 'chimera', 'doctor', '--json'], 'npx chimera doctor --json'));
if (!doctor.verdict.ok) fail(`doctor: ${doctor.verdict.line}`);
if (doctor.addon.source !== 'prebuild') fail(`doctor says the addon came from ${doctor.addon.source}, not the prebuild`);
if (!doctor.addon.file.includes(path.join('node_modules', 'chimera-infer', 'prebuilds'))) fail(`doctor: ${doctor.addon.file}`);
log(`doctor: ${doctor.verdict.line}`);

if (values.keep) log(`kept ${tmp}`);
else fs.rmSync(tmp, { recursive: true, force: true });
log(`PASS (${packed.size} bytes, ${packed.entryCount} files)`);
