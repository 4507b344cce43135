import { createHash, randomUUID } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';

/** A blob as SQLite names it: its content's sha256 and its size in bytes. */
export interface BlobRef {
  sha256: string;
  size: number;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;
/** A temp file this old was left by a write that never finished (a crash); a live write is far younger. */
const STALE_TEMP_MS = 24 * 3600_000;

/**
 * Content-addressed files on disk beside the database: `<dir>/ab/<sha256>`. Raw captures (and, to
 * come, received files such as ultrasound cines far too big for a SQLite row or for memory) live
 * here; SQLite keeps only the reference. A blob is written to a temp file while its hash is
 * computed, synced, renamed into place and its directory synced, so that once `put` resolves the
 * bytes survive a power cut: only then may the row that names them commit (rule 1).
 *
 * `put` uses the asynchronous file API, whose writes and syncs run on libuv's thread pool: the
 * event loop never waits for the disk. `putSync` is for code already off the event loop (the
 * migration at start-up, tests).
 */
export class BlobStore {
  private readonly tempDir: string;

  constructor(readonly dir: string) {
    this.tempDir = join(dir, 'tmp');
    mkdirSync(this.tempDir, { recursive: true });
  }

  pathOf(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new Error(`not a blob name: "${sha256}" (64 lowercase hex digits)`);
    return join(this.dir, sha256.slice(0, 2), sha256);
  }

  has(sha256: string): boolean {
    return existsSync(this.pathOf(sha256));
  }

  /** The blob's size on disk, or undefined when it is not there. */
  sizeOf(sha256: string): number | undefined {
    try {
      return statSync(this.pathOf(sha256)).size;
    } catch {
      return undefined;
    }
  }

  /** Streams `source` into the store; resolves with its reference once it is durable. */
  async put(source: Buffer | Readable): Promise<BlobRef> {
    // A meter's full-memory download that brought nothing new is the same capture again: known
    // from its hash alone, it costs no write and no sync.
    if (Buffer.isBuffer(source)) {
      const sha256 = createHash('sha256').update(source).digest('hex');
      if (await exists(this.pathOf(sha256))) return { sha256, size: source.length };
    }
    const temp = this.tempName();
    const file = await open(temp, 'wx', 0o640);
    const hash = createHash('sha256');
    let size = 0;
    try {
      try {
        const chunks: AsyncIterable<Buffer | string> | Buffer[] = Buffer.isBuffer(source) ? [source] : source;
        for await (const chunk of chunks) {
          const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
          hash.update(bytes);
          size += bytes.length;
          let written = 0;
          while (written < bytes.length) written += (await file.write(bytes, written)).bytesWritten;
        }
        await file.sync();
      } finally {
        await file.close();
      }
      const sha256 = hash.digest('hex');
      const final = this.pathOf(sha256);
      if (await exists(final)) {
        await unlink(temp);
        return { sha256, size };
      }
      const shard = dirname(final);
      if (!(await exists(shard))) {
        await mkdir(shard, { recursive: true });
        await syncDirectory(this.dir);
      }
      await rename(temp, final);
      await syncDirectory(shard);
      return { sha256, size };
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      throw error;
    }
  }

  /** `put` for a Buffer, on the calling thread. */
  putSync(bytes: Buffer): BlobRef {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const final = this.pathOf(sha256);
    if (existsSync(final)) return { sha256, size: bytes.length };
    const temp = this.tempName();
    try {
      const fd = openSync(temp, 'wx', 0o640);
      try {
        let written = 0;
        while (written < bytes.length) written += writeSync(fd, bytes, written);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      const shard = dirname(final);
      if (!existsSync(shard)) {
        mkdirSync(shard, { recursive: true });
        syncDirectorySync(this.dir);
      }
      renameSync(temp, final);
      syncDirectorySync(shard);
    } catch (error) {
      try {
        unlinkSync(temp);
      } catch {
        // never created, or already renamed
      }
      throw error;
    }
    return { sha256, size: bytes.length };
  }

  /** The blob's bytes, checked against its name: a blob that changed on disk is an error, never data. */
  read(sha256: string): Buffer {
    const bytes = readFileSync(this.pathOf(sha256));
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== sha256) throw new Error(`blob ${sha256} is damaged: its bytes hash to ${actual}`);
    return bytes;
  }

  /** The blob as a stream, for files too big to read at once (check them with `verify`). */
  stream(sha256: string): Readable {
    return createReadStream(this.pathOf(sha256));
  }

  /** True when the blob is there and its bytes still hash to its name. */
  async verify(sha256: string): Promise<boolean> {
    const hash = createHash('sha256');
    try {
      for await (const chunk of this.stream(sha256)) hash.update(chunk as Buffer);
    } catch {
      return false;
    }
    return hash.digest('hex') === sha256;
  }

  /** Removes temp files that a write interrupted by a crash left behind. */
  sweepStaleTemp(now = Date.now()): number {
    let removed = 0;
    for (const name of readdirSync(this.tempDir)) {
      const path = join(this.tempDir, name);
      try {
        if (now - statSync(path).mtimeMs > STALE_TEMP_MS) {
          unlinkSync(path);
          removed++;
        }
      } catch {
        // gone already
      }
    }
    return removed;
  }

  private tempName(): string {
    return join(this.tempDir, `${process.pid}-${randomUUID()}`);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** A rename is durable only once the directory that holds the new name is synced. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function syncDirectorySync(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
