import { readFileSync } from 'node:fs';

/** A PEM file named in the config; the error says which setting points at a missing file. */
export function readTlsFile(setting: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(`${setting}: cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : (code ?? (error as Error).message)}`, { cause: error });
  }
}
