/**
 * A path the daemon will write to (the database, its blob store) checked before anything opens it,
 * so a wrong setting is a clear message naming the setting instead of a hang or a crash: Node's
 * recursive mkdir spins at 100 % CPU under /proc, and a file system that is not a disk takes
 * writes it never keeps.
 */
import { accessSync, constants, realpathSync, statSync } from 'node:fs';
import { dirname, resolve, sep } from 'node:path';

/** Kernel and device file systems: nothing written there is stored. */
const NOT_STORAGE = ['/proc', '/sys', '/dev'];

function under(path: string, root: string): boolean {
  return path === root || path.startsWith(root + sep);
}

/** The path itself if it exists, else its nearest existing ancestor. */
function nearestExisting(path: string): string {
  let p = path;
  for (;;) {
    try {
      statSync(p);
      return p;
    } catch {
      const up = dirname(p);
      if (up === p) return p;
      p = up;
    }
  }
}

/**
 * Throws an Error naming `setting` when `file` cannot be a file the daemon writes: under /proc,
 * /sys or /dev (as given or once links are resolved), a directory, read-only, or in a directory
 * that cannot be made.
 */
export function checkWritableFile(file: string, setting: string): void {
  const abs = resolve(file);
  const kernel = (p: string): string | undefined => NOT_STORAGE.find((root) => under(p, root));
  const given = kernel(abs);
  if (given) throw new Error(`${setting}: ${file} is under ${given}, a kernel file system, not storage; choose a directory on a disk`);
  const existing = nearestExisting(abs);
  let real = existing;
  try {
    real = realpathSync(existing);
  } catch {
    // Resolved as far as it goes.
  }
  const resolved = kernel(real);
  if (resolved) throw new Error(`${setting}: ${file} leads (through ${existing}) under ${resolved}, a kernel file system, not storage; choose a directory on a disk`);
  const stat = statSync(existing);
  if (existing === abs) {
    if (stat.isDirectory()) throw new Error(`${setting}: ${file} is a directory; give the database file's path (e.g. ${resolve(abs, 'poctd.db')})`);
    try {
      accessSync(abs, constants.R_OK | constants.W_OK);
    } catch {
      throw new Error(`${setting}: ${file} exists but this user cannot read and write it`);
    }
    try {
      accessSync(dirname(abs), constants.W_OK);
    } catch {
      throw new Error(`${setting}: the directory ${dirname(abs)} is not writable (the database keeps its journal and blobs beside it)`);
    }
    return;
  }
  if (!stat.isDirectory()) throw new Error(`${setting}: ${existing} is a file, so ${file} cannot be made under it`);
  try {
    accessSync(existing, constants.W_OK | constants.X_OK);
  } catch {
    throw new Error(`${setting}: ${existing} is not writable by this user, so ${dirname(abs) === existing ? file : dirname(abs)} cannot be made`);
  }
}
