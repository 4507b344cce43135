import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package's root (the nearest directory above this module that holds package.json). This module
 * runs from `src/util/` in a checkout (tsx, vitest) and from `dist/src/util/` once compiled, so a
 * fixed `../../schemas/` would point into `dist/` in one of them; the shipped files (schemas,
 * package.json) stay at the root in both.
 */
function findPackageRoot(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dir === dirname(dir)) throw new Error(`poctd: no package.json above ${start}`);
  }
}

export const PACKAGE_ROOT = findPackageRoot();

/** A file shipped with the package, by its path from the package root: `packageFile('schemas', 'x.json')`. */
export function packageFile(...segments: string[]): string {
  return join(PACKAGE_ROOT, ...segments);
}
