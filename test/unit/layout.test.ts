import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repo = resolve(fileURLToPath(new URL('../..', import.meta.url)));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.(ts|js|mjs)$/.test(name) ? [path] : [];
  });
}

function staticSpecifiers(text: string): string[] {
  return [
    ...[...text.matchAll(/\b(?:import|export)\s[^'"`;()]*?from\s*['"]([^'"]+)['"]/g)].map((m) => m[1]!),
    ...[...text.matchAll(/^\s*import\s*['"]([^'"]+)['"]/gm)].map((m) => m[1]!),
  ];
}

/** Every module specifier of a file: static imports and re-exports, and `import('…')` with a literal. */
function specifiers(text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/\b(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]/g)) found.push(m[1]!);
  for (const m of text.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g)) found.push(m[1]!);
  for (const m of text.matchAll(/^\s*import\s*['"]([^'"]+)['"]/gm)) found.push(m[1]!);
  return found;
}

describe('layout', () => {
  it('src/ imports nothing from drivers/: the driver list is handed to the core by cli/', () => {
    const drivers = join(repo, 'drivers');
    const offending = sourceFiles(join(repo, 'src')).flatMap((file) =>
      specifiers(readFileSync(file, 'utf8'))
        .filter((s) => s.startsWith('.'))
        .filter((s) => {
          const target = resolve(dirname(file), s);
          return target === drivers || target.startsWith(drivers + '/');
        })
        .map((s) => `${relative(repo, file)}: ${s}`),
    );
    expect(offending).toEqual([]);
  });

  it('finds the imports it checks (the scan is not blind)', () => {
    expect(specifiers(readFileSync(join(repo, 'cli', 'main.ts'), 'utf8'))).toContain('../drivers/index.ts');
    expect(specifiers(readFileSync(join(repo, 'cli', 'run.ts'), 'utf8'))).toContain('../drivers/index.ts');
  });

  it('cli/main.ts loads no command module up front: `poctd --help` loads no driver, SQLite or MQTT', () => {
    const main = readFileSync(join(repo, 'cli', 'main.ts'), 'utf8');
    expect(staticSpecifiers(main)).toEqual(['./command-line.ts']);
    expect(staticSpecifiers(readFileSync(join(repo, 'cli', 'command-line.ts'), 'utf8'))).toEqual([]);
    // The commands are there, behind import(): the check above is not passing on an empty file.
    expect(specifiers(main)).toEqual(expect.arrayContaining(['./run.ts', './replay.ts', '../drivers/index.ts']));
  });
});
