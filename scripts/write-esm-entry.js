// Writes dist/index.mjs (named ESM exports over the CommonJS build) and its type declarations, so the
// package serves both `import` and `require` from one compiled tree.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const dist = path.resolve(__dirname, '..', 'dist');
const names = Object.keys(require(path.join(dist, 'index.js'))).filter((n) => n !== 'default' && n !== '__esModule');
const body = [
  "import cjs from './index.js';",
  ...names.map((n) => `export const ${n} = cjs.${n};`),
  'export default cjs;',
  '',
].join('\n');
fs.writeFileSync(path.join(dist, 'index.mjs'), body);
fs.writeFileSync(path.join(dist, 'index.d.mts'), "export * from './index.js';\n");
