// Builds the TypeScript once before the suite: the Translator's worker thread runs the compiled dist/ code.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

export default function setup(): void {
  const root = path.resolve(__dirname, '..');
  // compiled files of moved or deleted modules would shadow the new ones (dist/translator.js over dist/translator/)
  execFileSync(process.execPath, [path.join(root, 'scripts', 'clean-dist.js')], { cwd: root, stdio: 'inherit' });
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
}
