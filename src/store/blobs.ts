import { createHash, randomUUID } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  existsSync,
  fsync,
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
import { mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { uptime } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';

/** A blob as SQLite names it: its content's sha256 and its size in bytes. */
export interface BlobRef {
  sha256: string;
  size: number;
}

/**
 * The file operations of a group put (`putMany`), node:fs by default. Everything but `fsync` is a
 * synchronous call: on the writer thread, which has nothing else to do meanwhile, a `stat`, an
 * `open` or a `write` into the page cache costs microseconds, far less than a trip through the
 * thread pool; only the syncs wait for the disk, and they go to the pool all at once. A test passes
 * its own operations to watch what reaches the disk and when, on a real directory.
 */
export interface BlobFileSystem {
  openSync(path: string, flags: string, mode?: number): number;
  writeSync(fd: number, buffer: Buffer, offset: number): number;
  closeSync(fd: number): void;
  renameSync(from: string, to: string): void;
  unlinkSync(path: string): void;
  mkdirSync(path: string): void;
  existsSync(path: string): boolean;
  readFileSync(path: string): Buffer;
  /** Resolves once the file or directory behind `fd` is on disk (on libuv's thread pool). */
  fsync(fd: number, path: string): Promise<void>;
}

export const nodeBlobFileSystem: BlobFileSystem = {
  openSync: (path, flags, mode) => openSync(path, flags, mode),
  writeSync: (fd, buffer, offset) => writeSync(fd, buffer, offset),
  closeSync,
  renameSync,
  unlinkSync,
  mkdirSync: (path) => void mkdirSync(path),
  existsSync,
  readFileSync: (path) => readFileSync(path),
  fsync: (fd) => new Promise((resolve, reject) => fsync(fd, (error) => (error ? reject(error) : resolve()))),
};

/** How many fsyncs this store asked for, by what they made durable (for tests and the benchmark). */
export interface BlobSyncCounts {
  files: number;
  directories: number;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;
/** A temp file this old was left by a write that never finished (a crash); a live write is far younger. */
const STALE_TEMP_MS = 24 * 3600_000;
/** A temp file's name: the pid of the process writing it, then a random part. */
const TEMP_NAME = /^(\d+)-/;

/** What the sweep of temp files goes by; the defaults are this process and this machine's boot. */
export interface TempSweepContext {
  now?: number;
  /** When the machine booted (ms): a temp older than that was written before a power cut or reboot. */
  bootedAt?: number;
  /** True when a process with this pid exists (signal 0: nothing is sent). */
  isAlive?: (pid: number) => boolean;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
/** How many blob names a store remembers as synced by itself (see `knownDurable`). */
const KNOWN_DURABLE_LIMIT = 4096;

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
  /**
   * Blobs this store itself saw synced (written, or found and synced again), newest last. A file
   * found under its name is not known to be on disk: another put of the same bytes (on this thread
   * or the other store thread) may have renamed it there and still be waiting for its syncs, or a
   * process that crashed may have left it in the page cache only. So a found blob counts only once
   * this store has synced it, and this memory spares the syncs on every repeat (a meter's same
   * full-memory download, again and again).
   */
  private readonly knownDurable = new Map<string, true>();
  /**
   * Shard directories whose name this store saw synced into the blob root. A shard found in place
   * may have been made by another put still waiting for that sync, so until then the root is
   * synced again with the blob (at most 256 entries).
   */
  private readonly knownShards = new Set<string>();

  constructor(
    readonly dir: string,
    private readonly fs: BlobFileSystem = nodeBlobFileSystem,
  ) {
    this.tempDir = join(dir, 'tmp');
    mkdirSync(this.tempDir, { recursive: true });
  }

  pathOf(sha256: string): string {
    return blobPath(this.dir, sha256);
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
    // from its hash, it costs a read and no write or sync (see `putMany` for why it is read).
    if (Buffer.isBuffer(source)) {
      const sha256 = sha256Of(source);
      const final = this.pathOf(sha256);
      if (await intact(final, sha256)) {
        if (!this.knownDurable.has(sha256)) {
          await this.syncFound(final);
          this.rememberDurable(sha256, dirname(final));
        }
        return { sha256, size: source.length };
      }
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
        this.syncs.files++;
        await file.sync();
      } finally {
        await file.close();
      }
      const sha256 = hash.digest('hex');
      const final = this.pathOf(sha256);
      // A file already under the name is replaced rather than read back: it may be a file too big
      // to hash twice, and one that a crash left damaged (see `putMany`) must not stay.
      const shard = dirname(final);
      if (!(await exists(shard))) await mkdir(shard, { recursive: true });
      if (!this.knownShards.has(shard)) {
        await this.syncDirectory(this.dir);
        this.knownShards.add(shard);
      }
      await rename(temp, final);
      await this.syncDirectory(shard);
      this.rememberDurable(sha256, shard);
      return { sha256, size };
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      throw error;
    }
  }

  /**
   * Several blobs made durable together, for a group commit (on the writer thread: see
   * `BlobFileSystem`). Each new blob is written to a temp file and renamed to its name at once,
   * then every file and every directory that gained a name is synced, each once and all at the same
   * time, so the whole group waits for the disk once. When this resolves, every blob not returned
   * as an Error survives a power cut, and the rows that name them may commit (rule 1).
   *
   * A blob's name can thus exist a moment before its bytes are synced, but no row names it then,
   * and a crash in that moment can leave a damaged file under the name: so a blob found already
   * there is read back and checked against its name before it counts, and written again if its
   * bytes do not match; one that matches but that this store has not seen synced (another put of
   * the same bytes may still wait for its syncs) is synced with the group, its directories too.
   * The same bytes twice in a group are written once. A blob whose write or
   * sync fails is its Error (its file removed); the others go on.
   */
  async putMany(sources: readonly Buffer[]): Promise<Array<BlobRef | Error>> {
    const fs = this.fs;
    const refs = sources.map((bytes) => ({ sha256: sha256Of(bytes), size: bytes.length }));
    const failed = new Map<string, Error>();
    const fail = (sha256: string, error: unknown): void => {
      if (!failed.has(sha256)) failed.set(sha256, error instanceof Error ? error : new Error(String(error)));
    };
    /** Each new blob's open file, to sync. */
    const written = new Map<string, { fd: number; final: string }>();
    /** Each blob found under its name but not known to be synced: its open file, synced too. */
    const found = new Map<string, { fd: number; final: string }>();
    /** Each directory that gained a name, and the blobs whose names wait on its sync. */
    const dirs = new Map<string, string[]>();
    const dependsOn = (dir: string, sha256: string): void => {
      const list = dirs.get(dir);
      if (list) list.push(sha256);
      else dirs.set(dir, [sha256]);
    };
    refs.forEach(({ sha256 }, i) => {
      if (written.has(sha256) || found.has(sha256) || failed.has(sha256)) return;
      const final = this.pathOf(sha256);
      if (this.holdsIntact(final, sha256)) {
        if (this.knownDurable.has(sha256)) return;
        // Its name, its shard and the root that holds the shard may each still wait for a sync
        // that another put asked for: sync them here, with the group's.
        try {
          found.set(sha256, { fd: fs.openSync(final, 'r'), final });
          dependsOn(dirname(final), sha256);
          if (!this.knownShards.has(dirname(final))) dependsOn(this.dir, sha256);
        } catch (error) {
          fail(sha256, error);
        }
        return;
      }
      const temp = this.tempName();
      let fd: number | undefined;
      try {
        fd = fs.openSync(temp, 'wx', 0o640);
        const bytes = sources[i]!;
        let done = 0;
        while (done < bytes.length) done += fs.writeSync(fd, bytes, done);
        const shard = dirname(final);
        if (!fs.existsSync(shard)) {
          try {
            fs.mkdirSync(shard);
          } catch (error) {
            // Made meanwhile by the main thread's store (a streamed put): the same directory.
            if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
          }
        }
        if (!this.knownShards.has(shard)) dependsOn(this.dir, sha256);
        fs.renameSync(temp, final);
        written.set(sha256, { fd, final });
        dependsOn(shard, sha256);
      } catch (error) {
        fail(sha256, error);
        if (fd !== undefined) fs.closeSync(fd);
        removeQuietly(fs, temp);
      }
    });
    const syncs: Array<Promise<void>> = [];
    for (const [sha256, { fd, final }] of [...written, ...found]) {
      this.syncs.files++;
      syncs.push(fs.fsync(fd, final).catch((error: unknown) => fail(sha256, error)));
    }
    const dirFds: number[] = [];
    for (const [dir, blobs] of dirs) {
      try {
        const fd = fs.openSync(dir, 'r');
        dirFds.push(fd);
        this.syncs.directories++;
        syncs.push(fs.fsync(fd, dir).catch((error: unknown) => blobs.forEach((sha256) => fail(sha256, error))));
      } catch (error) {
        blobs.forEach((sha256) => fail(sha256, error));
      }
    }
    await Promise.all(syncs);
    for (const fd of dirFds) fs.closeSync(fd);
    for (const [sha256, { fd, final }] of written) {
      fs.closeSync(fd);
      // Bytes that may not be on disk must not stay under their name.
      if (failed.has(sha256)) removeQuietly(fs, final);
      else this.rememberDurable(sha256, dirname(final));
    }
    // A found file is left in place even if its sync failed: another put may still own it.
    for (const [sha256, { fd, final }] of found) {
      fs.closeSync(fd);
      if (!failed.has(sha256)) this.rememberDurable(sha256, dirname(final));
    }
    return refs.map((ref) => {
      const error = failed.get(ref.sha256);
      return error ? new Error(`blob ${ref.sha256} could not be stored: ${error.message}`) : ref;
    });
  }

  /** True when the blob's file is there and its bytes hash to its name. */
  private holdsIntact(final: string, sha256: string): boolean {
    if (!this.fs.existsSync(final)) return false;
    try {
      return sha256Of(this.fs.readFileSync(final)) === sha256;
    } catch {
      return false;
    }
  }

  /** `put` for a Buffer, on the calling thread. */
  putSync(bytes: Buffer): BlobRef {
    const sha256 = sha256Of(bytes);
    const final = this.pathOf(sha256);
    if (this.holdsIntact(final, sha256)) {
      if (!this.knownDurable.has(sha256)) {
        this.syncFileSync(final);
        this.syncDirectorySync(dirname(final));
        if (!this.knownShards.has(dirname(final))) this.syncDirectorySync(this.dir);
        this.rememberDurable(sha256, dirname(final));
      }
      return { sha256, size: bytes.length };
    }
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
      if (!existsSync(shard)) mkdirSync(shard, { recursive: true });
      if (!this.knownShards.has(shard)) this.syncDirectorySync(this.dir);
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
    this.rememberDurable(sha256, dirname(final));
    return { sha256, size: bytes.length };
  }

  /**
   * `putSync` for many blobs at once (a migration): each new one written and renamed, then every
   * file and directory synced, so that a journal commit that the first sync forces carries the
   * rest and thousands of small blobs do not wait for the disk once each. Throws on any failure.
   */
  putManySync(sources: readonly Buffer[]): BlobRef[] {
    const refs = sources.map((bytes) => ({ sha256: sha256Of(bytes), size: bytes.length }));
    const files = new Set<string>();
    const dirs = new Set<string>();
    refs.forEach(({ sha256 }, i) => {
      const final = this.pathOf(sha256);
      if (files.has(final) || this.knownDurable.has(sha256)) return;
      const shard = dirname(final);
      if (!existsSync(shard)) mkdirSync(shard, { recursive: true });
      if (!this.knownShards.has(shard)) dirs.add(this.dir);
      dirs.add(shard);
      // Found in place or written now, it is synced here before it counts (see `knownDurable`).
      files.add(final);
      if (this.holdsIntact(final, sha256)) return;
      const temp = this.tempName();
      try {
        const fd = openSync(temp, 'wx', 0o640);
        try {
          const bytes = sources[i]!;
          let written = 0;
          while (written < bytes.length) written += writeSync(fd, bytes, written);
        } finally {
          closeSync(fd);
        }
        renameSync(temp, final);
      } catch (error) {
        try {
          unlinkSync(temp);
        } catch {
          // never created, or already renamed
        }
        throw error;
      }
    });
    for (const file of files) this.syncFileSync(file);
    for (const dir of dirs) this.syncDirectorySync(dir);
    for (const { sha256 } of refs) this.rememberDurable(sha256, dirname(this.pathOf(sha256)));
    return refs;
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

  /**
   * Removes temp files that a write interrupted by a crash left behind: each whose writer is gone
   * (its name's pid is not this process and no process has it, or the file is older than this
   * boot, so its pid may since have been given to another process), and any older than a day.
   * A temp of this process, or of another live one, may be a write under way and stays.
   */
  sweepStaleTemp(context: TempSweepContext = {}): number {
    const now = context.now ?? Date.now();
    const bootedAt = context.bootedAt ?? now - uptime() * 1000;
    const isAlive = context.isAlive ?? pidAlive;
    let removed = 0;
    for (const name of readdirSync(this.tempDir)) {
      const path = join(this.tempDir, name);
      try {
        const modified = statSync(path).mtimeMs;
        const pid = Number(TEMP_NAME.exec(name)?.[1] ?? NaN);
        const writerGone = Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && (modified < bootedAt || !isAlive(pid));
        if (writerGone || now - modified > STALE_TEMP_MS) {
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

  private rememberDurable(sha256: string, shard: string): void {
    this.knownShards.add(shard);
    this.knownDurable.delete(sha256);
    this.knownDurable.set(sha256, true);
    if (this.knownDurable.size > KNOWN_DURABLE_LIMIT) this.knownDurable.delete(this.knownDurable.keys().next().value!);
  }

  /** A found blob's file, its shard and the blob root synced at once (through `BlobFileSystem`). */
  private async syncFound(final: string): Promise<void> {
    const fs = this.fs;
    const fds: number[] = [];
    try {
      const paths = [final, dirname(final), ...(this.knownShards.has(dirname(final)) ? [] : [this.dir])];
      for (const path of paths) fds.push(fs.openSync(path, 'r'));
      this.syncs.files++;
      this.syncs.directories += paths.length - 1;
      await Promise.all(fds.map((fd, i) => fs.fsync(fd, paths[i]!)));
    } finally {
      for (const fd of fds) fs.closeSync(fd);
    }
  }

  private syncFileSync(path: string): void {
    const fd = openSync(path, 'r');
    try {
      this.syncs.files++;
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** A rename is durable only once the directory that holds the new name is synced. */
  private async syncDirectory(dir: string): Promise<void> {
    const handle = await open(dir, 'r');
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

function removeQuietly(fs: BlobFileSystem, path: string): void {
  try {
    fs.unlinkSync(path);
  } catch {
    // never created, or gone already
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

/** True when the file is there and its bytes hash to `sha256`. */
async function intact(path: string, sha256: string): Promise<boolean> {
  try {
    return sha256Of(await readFile(path)) === sha256;
  } catch {
    return false;
  }
}

/**
 * Where the blob named `sha256` lives under the store's blob directory (`ab/<sha256>`), for a
 * reader that must not make the directory as `BlobStore` does (`poctd export`, read-only).
 */
export function blobPath(dir: string, sha256: string): string {
  if (!SHA256_HEX.test(sha256)) throw new Error(`not a blob name: "${sha256}" (64 lowercase hex digits)`);
  return join(dir, sha256.slice(0, 2), sha256);
}
