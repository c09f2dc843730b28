#!/usr/bin/env node
// npm install hook: use a prebuilt addon for this platform when one ships in prebuilds/, else build from
// source with cmake-js (the primary build), falling back to node-gyp (binding.gyp) when cmake is missing.
// Nothing is downloaded: both builds compile against the headers Node.js already has.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const prebuilt = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'chimera.node');

function loads(file) {
  try {
    require(file);
    return true;
  } catch (e) {
    console.warn(`chimera: ${file} did not load: ${e.message.split('\n')[0]}`);
    return false;
  }
}

function run(cmd, args) {
  console.log(`chimera: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  return r.status === 0;
}

if (process.env.CHIMERA_SKIP_BUILD) process.exit(0);
if (fs.existsSync(prebuilt) && !process.env.CHIMERA_BUILD_FROM_SOURCE && loads(prebuilt)) {
  console.log(`chimera: using prebuilt ${path.relative(root, prebuilt)}`);
  process.exit(0);
}

const haveCmake = spawnSync('cmake', ['--version'], { stdio: 'ignore' }).status === 0;
let ok = false;
if (haveCmake) {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  ok = run(process.execPath, [cmakeJs, 'compile', '--CDCMAKE_BUILD_TYPE=Release']);
}
if (!ok) {
  const gyp = process.env.npm_config_node_gyp;
  ok = gyp ? run(process.execPath, [gyp, 'rebuild']) : run('npx', ['--no-install', 'node-gyp', 'rebuild']);
}
if (!ok) {
  console.error(
    [
      'chimera: could not build the native addon, and no prebuilt binary matches this platform.',
      'Possible fixes:',
      '  - install a C++17 compiler and cmake: `apt-get install g++ cmake` (Debian/Ubuntu), Xcode CLT on macOS',
      '  - or let node-gyp build it: make sure python3 and make are installed, then `npm rebuild chimera-infer`',
      '  - see the errors above for the first failing step',
    ].join('\n'),
  );
  process.exit(1);
}
