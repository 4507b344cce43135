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
import * as fsPromises from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';

/** A blob as SQLite names it: its content's sha256 and its size in bytes. */
export interface BlobRef {
  sha256: string;
  size: number;
}

/**
 * The asynchronous file operations a blob store uses (node:fs/promises by default). A test passes
 * its own to watch what reaches the disk and when, on a real directory.
 */
export type BlobFileSystem = Pick<typeof fsPromises, 'open' | 'mkdir' | 'rename' | 'stat' | 'unlink'>;

/** How many fsyncs this store asked for, by what they made durable (for tests and the benchmark). */
export interface BlobSyncCounts {
  files: number;
  directories: number;
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
  readonly syncs: BlobSyncCounts = { files: 0, directories: 0 };

  constructor(
    readonly dir: string,
    private readonly fs: BlobFileSystem = fsPromises,
  ) {
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

  /**
   * Streams `source` into the store; resolves with its reference once it is durable. For a file
   * that may be too big for memory (a Readable is never gathered into one Buffer); captures that
   * commit with records go through `putMany`, which shares the syncs of a group commit.
   */
  async put(source: Buffer | Readable): Promise<BlobRef> {
    // A meter's full-memory download that brought nothing new is the same capture again: known
    // from its hash alone, it costs no write and no sync.
    if (Buffer.isBuffer(source)) {
      const sha256 = sha256Of(source);
      if (await this.exists(this.pathOf(sha256))) return { sha256, size: source.length };
    }
    const temp = this.tempName();
    const file = await this.fs.open(temp, 'wx', 0o640);
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
        this.syncs.files++;
        await file.sync();
      } finally {
        await file.close();
      }
      const sha256 = hash.digest('hex');
      const final = this.pathOf(sha256);
      if (await this.exists(final)) {
        await this.fs.unlink(temp);
        return { sha256, size };
      }
      const shard = dirname(final);
      if (!(await this.exists(shard))) {
        await this.fs.mkdir(shard, { recursive: true });
        await this.syncDirectory(this.dir);
      }
      await this.fs.rename(temp, final);
      await this.syncDirectory(shard);
      return { sha256, size };
    } catch (error) {
      await this.fs.unlink(temp).catch(() => undefined);
      throw error;
    }
  }

  /**
   * Several blobs made durable together, for a group commit: every new blob is written to its
   * temp file and synced at once (the syncs overlap on libuv's thread pool, and the file system
   * journals them together), then renamed into place, then each directory that gained a name is
   * synced once, all at once. When this resolves, every blob not returned as an Error survives a
   * power cut, so the rows that name them may commit. Blobs already stored cost a `stat`; the same
   * bytes twice in a group are written once. A blob that fails is its Error; the others go on.
   */
  async putMany(sources: readonly Buffer[]): Promise<Array<BlobRef | Error>> {
    const refs = sources.map((bytes) => ({ sha256: sha256Of(bytes), size: bytes.length }));
    const fresh = new Map<string, Buffer>();
    await Promise.all(
      refs.map(async (ref, i) => {
        if (!(await this.exists(this.pathOf(ref.sha256)))) fresh.set(ref.sha256, sources[i]!);
      }),
    );
    const failed = new Map<string, Error>();
    const fail = (sha256: string, error: unknown): void => {
      if (!failed.has(sha256)) failed.set(sha256, error instanceof Error ? error : new Error(String(error)));
    };
    const temps = new Map<string, string>();
    await Promise.all(
      [...fresh].map(async ([sha256, bytes]) => {
        try {
          temps.set(sha256, await this.writeSyncedTemp(bytes));
        } catch (error) {
          fail(sha256, error);
        }
      }),
    );
    /** Each directory to sync, and the blobs whose durability waits on it. */
    const dirs = new Map<string, string[]>();
    const dependsOn = (dir: string, sha256: string): void => {
      const list = dirs.get(dir);
      if (list) list.push(sha256);
      else dirs.set(dir, [sha256]);
    };
    const madeShards = new Map<string, Promise<boolean>>();
    await Promise.all(
      [...temps].map(async ([sha256, temp]) => {
        const final = this.pathOf(sha256);
        const shard = dirname(final);
        try {
          // One mkdir per new shard even when several blobs of the group land in it.
          let made = madeShards.get(shard);
          if (!made) madeShards.set(shard, (made = this.makeDirectory(shard)));
          if (await made) dependsOn(this.dir, sha256);
          if (await this.exists(final)) {
            // Put meanwhile by another writer (a streamed put): the bytes are the same, keep the first.
            await this.fs.unlink(temp);
          } else {
            await this.fs.rename(temp, final);
          }
          dependsOn(shard, sha256);
        } catch (error) {
          fail(sha256, error);
          await this.fs.unlink(temp).catch(() => undefined);
        }
      }),
    );
    await Promise.all(
      [...dirs].map(async ([dir, blobs]) => {
        try {
          await this.syncDirectory(dir);
        } catch (error) {
          for (const sha256 of blobs) fail(sha256, error);
        }
      }),
    );
    return refs.map((ref) => {
      const error = failed.get(ref.sha256);
      return error ? new Error(`blob ${ref.sha256} could not be stored: ${error.message}`) : ref;
    });
  }

  /** A temp file holding `bytes`, synced; removed again if anything fails. */
  private async writeSyncedTemp(bytes: Buffer): Promise<string> {
    const temp = this.tempName();
    const file = await this.fs.open(temp, 'wx', 0o640);
    try {
      try {
        let written = 0;
        while (written < bytes.length) written += (await file.write(bytes, written)).bytesWritten;
        this.syncs.files++;
        await file.sync();
      } finally {
        await file.close();
      }
    } catch (error) {
      await this.fs.unlink(temp).catch(() => undefined);
      throw error;
    }
    return temp;
  }

  /** Creates the directory; true when it was not there (then its parent needs a sync). */
  private async makeDirectory(dir: string): Promise<boolean> {
    if (await this.exists(dir)) return false;
    return (await this.fs.mkdir(dir, { recursive: true })) !== undefined;
  }

  /** `put` for a Buffer, on the calling thread. */
  putSync(bytes: Buffer): BlobRef {
    const sha256 = sha256Of(bytes);
    const final = this.pathOf(sha256);
    if (existsSync(final)) return { sha256, size: bytes.length };
    const temp = this.tempName();
    try {
      const fd = openSync(temp, 'wx', 0o640);
      try {
        let written = 0;
        while (written < bytes.length) written += writeSync(fd, bytes, written);
        this.syncs.files++;
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      const shard = dirname(final);
      if (!existsSync(shard)) {
        mkdirSync(shard, { recursive: true });
        this.syncDirectorySync(this.dir);
      }
      renameSync(temp, final);
      this.syncDirectorySync(shard);
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

  private async exists(path: string): Promise<boolean> {
    try {
      await this.fs.stat(path);
      return true;
    } catch {
      return false;
    }
  }

  /** A rename is durable only once the directory that holds the new name is synced. */
  private async syncDirectory(dir: string): Promise<void> {
    const handle = await this.fs.open(dir, 'r');
    try {
      this.syncs.directories++;
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  private syncDirectorySync(dir: string): void {
    const fd = openSync(dir, 'r');
    try {
      this.syncs.directories++;
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

function sha256Of(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}
