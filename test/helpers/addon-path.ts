/** Where the compiled addon lives, in the order src/native-loader.ts searches, for tests that spawn plain node. */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');

export function addonPath(): string {
  const explicit = process.env.CHIMERA_NATIVE || process.env.CHIMERA_ADDON;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { matchingPrebuilds } = require(path.join(ROOT, 'scripts', 'platform.js')) as { matchingPrebuilds(root: string): string[] };
  const list = [
    explicit ? path.resolve(explicit) : '',
    path.join(ROOT, 'build', 'Release', 'chimera.node'),
    path.join(ROOT, 'build', 'Debug', 'chimera.node'),
    ...matchingPrebuilds(ROOT),
  ].filter((p) => p !== '');
  const found = list.find((p) => fs.existsSync(p));
  if (!found) throw new Error(`no chimera.node found; tried ${list.join(', ')}`);
  return found;
}
