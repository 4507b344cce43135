import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlobStore, nodeBlobFileSystem, type BlobFileSystem } from '../../src/store/blobs.ts';
import { Store, type GroupCommitInput } from '../../src/store/store.ts';
import { StoreWriter } from '../../src/store/writer.ts';
import { tempDir } from '../helpers/daemon.ts';
import { eventually } from '../helpers/eventually.ts';
import { glucoseDraft } from '../helpers/records.ts';

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

/** `count` distinct captures whose blobs land in the same shard directory (same first two hex digits). */
function capturesInOneShard(count: number, tag: string, shard?: string): { shard: string; captures: Buffer[] } {
  const captures: Buffer[] = [];
  let wanted = shard;
  for (let n = 0; captures.length < count; n++) {
    const bytes = Buffer.from(`${tag} capture ${n}`);
    const prefix = sha256(bytes).slice(0, 2);
    wanted ??= prefix;
    if (prefix === wanted) captures.push(bytes);
  }
  return { shard: wanted!, captures };
}

/** A capture whose blob lands in a shard other than `shard`. */
function captureOutside(shard: string, tag: string): Buffer {
  for (let n = 0; ; n++) {
    const bytes = Buffer.from(`${tag} elsewhere ${n}`);
    if (sha256(bytes).slice(0, 2) !== shard) return bytes;
  }
}

let draftNumber = 0;
function input(deviceId: string, bytes: Buffer): GroupCommitInput {
  return {
    site: 's',
    deviceId,
    driver: 'onetouch-ultra2',
    capture: { kind: 'raw', bytes },
    drafts: { result: [glucoseDraft(++draftNumber)] },
    receivedAt: new Date(),
    timezone: 'UTC',
    privacy: { patient_id: 'hash' },
  };
}

const closers: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function writerOnNewStore(): Promise<{ writer: StoreWriter; reader: Store }> {
  const path = join(tempDir('poctd-group-'), 'poctd.db');
  const reader = new Store(path);
  closers.push(() => reader.close());
  const writer = await StoreWriter.open(path);
  closers.push(() => writer.close());
  return { writer, reader };
}

describe('group commit with the blob store (writer thread, real store)', () => {
  it('a group whose captures share a shard syncs each file and that directory once, then commits once', async () => {
    const { writer, reader } = await writerOnNewStore();
    const { shard, captures } = capturesInOneShard(6, 'first');
    const before = await writer.stats();
    const outcomes = await writer.commitMany(captures.slice(0, 4).map((bytes, i) => input(`m${i}`, bytes)));
    expect(outcomes.every((o) => !(o instanceof Error))).toBe(true);
    const first = await writer.stats();
    expect(first.groups - before.groups).toBe(1);
    expect(first.blobSyncs.files - before.blobSyncs.files).toBe(4);
    // The new shard directory, and the blob root that gained it: one sync each for the whole group.
    expect(first.blobSyncs.directories - before.blobSyncs.directories).toBe(2);

    // The shard exists now: the next group syncs only it, once for two blobs.
    await writer.commitMany(captures.slice(4).map((bytes, i) => input(`n${i}`, bytes)));
    const second = await writer.stats();
    expect(second.blobSyncs.files - first.blobSyncs.files).toBe(2);
    expect(second.blobSyncs.directories - first.blobSyncs.directories).toBe(1);
    expect(reader.recordCount()).toBe(6);
    for (const bytes of captures) {
      expect(reader.blobs.pathOf(sha256(bytes)).includes(`/${shard}/`)).toBe(true);
      expect(await reader.blobs.verify(sha256(bytes))).toBe(true);
    }
  });

  it('commits asked for by separate callers at once share their groups: one directory sync per group, never one per commit', async () => {
    const { writer, reader } = await writerOnNewStore();
    const { shard, captures } = capturesInOneShard(9, 'callers');
    await writer.commit(input('warm', captures[0]!)); // makes the shard, so each later group syncs only it
    const before = await writer.stats();
    const rest = captures.slice(1);
    await Promise.all(rest.map((bytes, i) => writer.commit(input(`c${i}`, bytes))));
    const after = await writer.stats();
    const groups = after.groups - before.groups;
    expect(after.blobSyncs.files - before.blobSyncs.files).toBe(rest.length);
    expect(after.blobSyncs.directories - before.blobSyncs.directories).toBe(groups);
    expect(groups).toBeLessThanOrEqual(rest.length);
    expect(reader.recordCount()).toBe(captures.length);
    expect(readdirSync(join(reader.blobs.dir, shard))).toHaveLength(captures.length);
  });

  it('a capture already stored costs no write and no sync; the same bytes twice in a group are written once', async () => {
    const { writer, reader } = await writerOnNewStore();
    const bytes = Buffer.from('the same memory download');
    await writer.commit(input('a', bytes));
    const before = await writer.stats();
    const outcomes = await writer.commitMany([input('a', bytes), input('b', bytes)]);
    expect(outcomes.map((o) => (o instanceof Error ? o.message : o.captureId))).toEqual([sha256(bytes), sha256(bytes)]);
    const after = await writer.stats();
    expect(after.blobSyncs).toEqual(before.blobSyncs);
    const twice = Buffer.from('new bytes, twice in one group');
    await writer.commitMany([input('c', twice), input('d', twice)]);
    expect((await writer.stats()).blobSyncs.files - after.blobSyncs.files).toBe(1);
    expect(reader.recordCount()).toBe(5);
  });

  it('a commit whose blob cannot be stored is not committed and its caller gets the error; the rest of its group commits', async () => {
    const { writer, reader } = await writerOnNewStore();
    const { shard, captures } = capturesInOneShard(1, 'blocked');
    // A file where the shard directory must be: the blob cannot be renamed into place.
    writeFileSync(join(reader.blobs.dir, shard), 'not a directory');
    const fine = captureOutside(shard, 'fine');
    const [blocked, stored] = await writer.commitMany([input('blocked', captures[0]!), input('fine', fine)]);
    expect(blocked).toBeInstanceOf(Error);
    expect((blocked as Error).message).toMatch(new RegExp(`blob ${sha256(captures[0]!)} could not be stored`));
    expect(stored).not.toBeInstanceOf(Error);
    await expect(writer.commit(input('blocked-again', captures[0]!))).rejects.toThrow(/could not be stored/);
    const rows = reader.recordRowsSince(0, 10);
    expect(rows.map((r) => r.device_id)).toEqual(['fine']);
    expect(rows.map((r) => (JSON.parse(r.json) as { raw: { sha256: string } }).raw.sha256)).toEqual([sha256(fine)]);
    expect(reader.outboxDepth()).toBe(1);
    expect(readdirSync(join(reader.blobs.dir, 'tmp'))).toEqual([]);
  });
});

describe('group commit ordering (real store, file system watched)', () => {
  /**
   * The real file system, with every fsync logged together with what a second connection sees at
   * that moment, and held until the test lets it go.
   */
  function watchedFs(observe: () => number): {
    fs: BlobFileSystem;
    log: Array<{ op: string; path: string; visibleRows: number }>;
    held: Array<() => void>;
  } {
    const log: Array<{ op: string; path: string; visibleRows: number }> = [];
    const held: Array<() => void> = [];
    const fs: BlobFileSystem = {
      ...nodeBlobFileSystem,
      renameSync: (from, to) => {
        nodeBlobFileSystem.renameSync(from, to);
        log.push({ op: 'rename', path: to, visibleRows: observe() });
      },
      fsync: async (fd, path) => {
        await new Promise<void>((release) => held.push(release));
        await nodeBlobFileSystem.fsync(fd, path);
        log.push({ op: 'fsync', path, visibleRows: observe() });
      },
    };
    return { fs, log, held };
  }

  it('every blob file and every directory that gained a name is synced before any row of its group is visible', async () => {
    const path = join(tempDir('poctd-order-'), 'poctd.db');
    const reader = new Store(path);
    closers.push(() => reader.close());
    const watched = watchedFs(() => reader.recordCount());
    const store = new Store(path, { blobFs: watched.fs });
    closers.push(() => store.close());
    const { captures } = capturesInOneShard(2, 'order');
    const other = captureOutside(sha256(captures[0]!).slice(0, 2), 'order');
    const group = store.commitGroup([input('a', captures[0]!), input('b', captures[1]!), input('c', other)]);

    // Three files, their two new shard directories and the blob root that gained them: all asked
    // for at once, and while they are held no row is visible.
    await eventually('the syncs are asked for', () => watched.held.length === 6);
    expect(reader.recordCount()).toBe(0);
    watched.held.splice(0).forEach((release) => release());
    const outcomes = await group;
    expect(outcomes.every((o) => !(o instanceof Error))).toBe(true);

    expect(watched.log.every((entry) => entry.visibleRows === 0)).toBe(true);
    const synced = watched.log.filter((e) => e.op === 'fsync').map((e) => e.path);
    expect(synced).toHaveLength(6);
    expect(synced).toContain(store.blobs.dir);
    for (const bytes of [...captures, other]) {
      const final = store.blobs.pathOf(sha256(bytes));
      expect(synced).toContain(final);
      expect(synced).toContain(dirname(final));
      expect(await reader.blobs.verify(sha256(bytes))).toBe(true);
    }
    expect(synced.filter((p) => p === dirname(store.blobs.pathOf(sha256(captures[0]!))))).toHaveLength(1);
    expect(reader.recordCount()).toBe(3);
  });

  /**
   * The same bytes put twice at once: the second finds the first's file already under its name
   * while the first still waits for its syncs. It must not count the blob as stored (a row naming
   * it would commit before it is on disk) until its own syncs of that file and its directories.
   */
  async function secondPutWaitsForSyncs(second: (blobs: BlobStore, bytes: Buffer) => Promise<unknown>): Promise<void> {
    const watched = watchedFs(() => 0);
    const blobs = new BlobStore(join(tempDir('poctd-twice-'), 'blobs'), watched.fs);
    const bytes = Buffer.from('one capture, two puts at once');
    const final = blobs.pathOf(sha256(bytes));
    const first = blobs.putMany([bytes]);
    // The file, its new shard and the blob root.
    await eventually('the first put asked for its syncs', () => watched.held.length === 3);
    expect(existsSync(final)).toBe(true);
    let settled = false;
    const again = second(blobs, bytes).then((ref) => ((settled = true), ref));
    await eventually('the second put settled or asked for syncs of its own', () => settled || watched.held.length === 6);
    expect(settled).toBe(false);
    const asked = watched.log.length;
    watched.held.splice(0).forEach((release) => release());
    expect(await first).toEqual([{ sha256: sha256(bytes), size: bytes.length }]);
    expect(await again).toMatchObject({ sha256: sha256(bytes), size: bytes.length });
    const synced = watched.log.slice(asked).filter((e) => e.op === 'fsync').map((e) => e.path);
    expect(synced.filter((p) => p === final)).toHaveLength(2);
    expect(synced.filter((p) => p === dirname(final))).toHaveLength(2);
    expect(synced.filter((p) => p === blobs.dir)).toHaveLength(2);
    // Synced once by this store, the blob is known: a third put costs no sync.
    const before = { ...blobs.syncs };
    await blobs.putMany([bytes]);
    await blobs.put(bytes);
    expect(blobs.syncs).toEqual(before);
  }

  it('a group put that finds the same bytes in place while another put of them waits for its syncs syncs them itself', async () => {
    await secondPutWaitsForSyncs(async (blobs, bytes) => (await blobs.putMany([bytes]))[0]);
  });

  it('a put of a Buffer that finds the same bytes in place while a group put of them waits for its syncs syncs them itself', async () => {
    await secondPutWaitsForSyncs((blobs, bytes) => blobs.put(bytes));
  });

  it('a blob whose sync fails leaves no file under its name, no temp file and no row, and the error names it', async () => {
    const path = join(tempDir('poctd-order-'), 'poctd.db');
    const bytes = Buffer.from('never durable');
    const failingSync: BlobFileSystem = {
      ...nodeBlobFileSystem,
      fsync: (fd, p) => (p.endsWith(sha256(bytes)) ? Promise.reject(new Error('EIO: i/o error, fsync')) : nodeBlobFileSystem.fsync(fd, p)),
    };
    const store = new Store(path, { blobFs: failingSync });
    closers.push(() => store.close());
    const fine = Buffer.from('durable');
    const [outcome, kept] = await store.commitGroup([input('x', bytes), input('y', fine)]);
    expect(outcome).toBeInstanceOf(Error);
    expect((outcome as Error).message).toMatch(/could not be stored: EIO/);
    expect(kept).not.toBeInstanceOf(Error);
    expect(store.recordRowsSince(0, 10).map((r) => r.device_id)).toEqual(['y']);
    expect(existsSync(store.blobs.pathOf(sha256(bytes)))).toBe(false);
    expect(readdirSync(join(store.blobs.dir, 'tmp'))).toEqual([]);
  });

  it('a damaged file left under a blob name (a crash before its sync) is written again, never taken as the blob', async () => {
    const path = join(tempDir('poctd-order-'), 'poctd.db');
    const store = new Store(path);
    closers.push(() => store.close());
    const bytes = Buffer.from('the capture a crash cut short');
    const final = store.blobs.pathOf(sha256(bytes));
    mkdirSync(dirname(final), { recursive: true });
    writeFileSync(final, bytes.subarray(0, 10));
    const [outcome] = await store.commitGroup([input('z', bytes)]);
    expect(outcome).not.toBeInstanceOf(Error);
    expect(store.blobs.read(sha256(bytes))).toEqual(bytes);
    expect(store.blobs.syncs.files).toBe(1);
    // putSync and put check the same way.
    writeFileSync(final, 'garbage');
    store.blobs.putSync(bytes);
    expect(store.blobs.read(sha256(bytes))).toEqual(bytes);
    writeFileSync(final, 'garbage');
    await store.blobs.put(bytes);
    expect(store.blobs.read(sha256(bytes))).toEqual(bytes);
  });
});
