#!/usr/bin/env node
// npm install hook. A consumer's install uses the prebuild in prebuilds/ that matches this platform, arch and
// libc (see scripts/platform.js), and needs neither a compiler nor the network. Otherwise (no prebuild fits, it
// does not load, `--build-from-source`, or a git checkout) the addon is built from source with cmake-js (the
// primary build), falling back to node-gyp (binding.gyp) when cmake is missing. Neither build downloads
// anything: cmake-js takes the Node-API headers from node-api-headers, node-gyp from this Node's own include dir.
// The build tools are devDependencies: present in a git checkout, named in the message when they are missing.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { matchingPrebuilds, platformString } = require('./platform');

const root = path.resolve(__dirname, '..');

function loads(file) {
  try {
    require(file);
    return true;
  } catch (e) {
    if (e && e.code === 'E_ISA') return true; // loads; CHIMERA_ISA asks for a path this CPU lacks
    console.warn(`chimera: ${file} did not load: ${String(e && e.message).split('\n')[0]}`);
    return false;
  }
}

function run(cmd, args) {
  console.log(`chimera: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  return r.status === 0;
}

function resolvable(name) {
  try {
    require.resolve(`${name}/package.json`, { paths: [root] });
    return true;
  } catch {
    return false;
  }
}

if (process.env.CHIMERA_SKIP_BUILD) process.exit(0);

const fromSource =
  !!process.env.CHIMERA_BUILD_FROM_SOURCE ||
  process.env.npm_config_build_from_source === 'true' ||
  // A git checkout always builds: a prebuild left in prebuilds/ would be older than the sources.
  fs.existsSync(path.join(root, '.git'));
const platform = platformString();

if (!fromSource) {
  for (const file of matchingPrebuilds(root)) {
    if (loads(file)) {
      console.log(`chimera: using the prebuilt ${path.relative(root, file)} (${platform})`);
      process.exit(0);
    }
  }
  console.log(`chimera: no prebuilt binary for ${platform} loads here; building from source`);
}

const missing = ['cmake-js', 'node-addon-api'].filter((n) => !resolvable(n));
if (missing.length > 0) {
  console.error(
    [
      `chimera: no prebuilt binary for ${platform}, and building from source needs ${missing.join(' and ')}.`,
      'To build from source:',
      `  npm install --save-dev ${missing.join(' ')}      (and cmake >= 3.18 + a C++17 compiler: apt-get install cmake g++)`,
      '  npm rebuild chimera-infer --build-from-source',
      'Or install with --ignore-scripts and point CHIMERA_NATIVE at a chimera.node built elsewhere.',
      'See "Troubleshooting" in node_modules/chimera-infer/README.md.',
    ].join('\n'),
  );
  process.exit(1);
}

const haveCmake = spawnSync('cmake', ['--version'], { stdio: 'ignore' }).status === 0;
let ok = false;
if (haveCmake) {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
  ok = run(process.execPath, [cmakeJs, 'compile', '--CDCMAKE_BUILD_TYPE=Release']);
}
if (!ok) {
  // node-gyp with this Node's own headers (include/node next to the executable), so it downloads nothing.
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  const nodedir = fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
  if (nodedir.length === 0) console.warn('chimera: no Node.js headers next to node; node-gyp would download them');
  const gyp = process.env.npm_config_node_gyp;
  ok = gyp
    ? run(process.execPath, [gyp, 'rebuild', ...nodedir])
    : run('npx', ['--no-install', 'node-gyp', 'rebuild', ...nodedir]);
}
if (!ok) {
  console.error(
    [
      `chimera: could not build the native addon, and no prebuilt binary matches ${platform}.`,
      'Possible fixes:',
      '  - install a C++17 compiler and cmake: `apt-get install g++ cmake` (Debian/Ubuntu), `apk add build-base cmake`',
      '    (Alpine), Xcode command line tools on macOS, Visual Studio Build Tools on Windows',
      '  - or let node-gyp build it: make sure python3 and make are installed, then `npm rebuild chimera-infer`',
      '  - see the errors above for the first failing step',
    ].join('\n'),
  );
  process.exit(1);
}
