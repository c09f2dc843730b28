// Removes compiled files in dist/ whose TypeScript source is gone (a module moved or deleted), so a stale
// dist/translator.js cannot shadow dist/translator/index.js. Only orphans are touched: safe while tests run.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist');
const src = path.join(root, 'src');

function walk(dir) {
  if (!fs.existsSync(dir)) return;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) {
      walk(full);
      if (fs.readdirSync(full).length === 0) fs.rmdirSync(full);
      continue;
    }
    const m = /^(.*?)\.(js|js\.map|d\.ts|d\.ts\.map)$/.exec(e.name);
    if (!m) continue;
    const rel = path.relative(dist, path.join(dir, m[1]));
    if (rel === 'index' && /^index\.(mjs|d\.mts)$/.test(e.name)) continue;
    if (!fs.existsSync(path.join(src, `${rel}.ts`))) fs.rmSync(full, { force: true });
  }
}
walk(dist);
