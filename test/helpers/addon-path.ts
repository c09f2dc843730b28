/** Where the compiled addon lives, in the order src/native.ts searches, for tests that spawn plain node. */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');

export function addonPath(): string {
  const list = [
    process.env.CHIMERA_ADDON ? path.resolve(process.env.CHIMERA_ADDON) : '',
    path.join(ROOT, 'prebuilds', `${process.platform}-${process.arch}`, 'chimera.node'),
    path.join(ROOT, 'build', 'Release', 'chimera.node'),
    path.join(ROOT, 'build', 'Debug', 'chimera.node'),
  ].filter((p) => p !== '');
  const found = list.find((p) => fs.existsSync(p));
  if (!found) throw new Error(`no chimera.node found; tried ${list.join(', ')}`);
  return found;
}
