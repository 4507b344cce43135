/**
 * Bounded disk (issue 16): the WAL was never truncated under continuous writes (34–540 MB), every
 * poll stored the meter's whole transcript again when nothing was new, and nothing pruned
 * anything. Here: `store.retention` prunes only published records (the newest always stays, so
 * `seq` never goes back), then the captures and blob files nothing names; a capture is stored
 * only when its commit inserted something, it is the first of its kind that day, or it differs
 * from the device's last; `store.wal_max_mb` truncates the WAL on the writer thread.
 */
import Database from 'better-sqlite3';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ResultDraft } from '../../src/records/types.ts';
import { Store, type GroupCommitInput } from '../../src/store/store.ts';
import { StoreWriter } from '../../src/store/writer.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { tempDir } from '../helpers/daemon.ts';
import { eventually } from '../helpers/eventually.ts';
import { glucoseDraft } from '../helpers/records.ts';

const cleanups = useCleanups();
const DAY = 86_400_000;
const NOW = new Date('2026-12-01T12:00:00Z');

function tempStore(): { store: Store; path: string } {
  const path = join(tempDir('poctd-retention-'), 'poctd.db');
  const store = new Store(path);
  cleanups.push(async () => store.close());
  return { store, path };
}

function commitAt(store: Store, drafts: ResultDraft[], bytes: Buffer, at: Date, deviceId = 'bench1'): number[] {
  const capture = store.putCaptureSync('transcript', bytes);
  const out = store.commit({ site: 's', deviceId, driver: 'onetouch-ultra2', capture, drafts: { result: drafts }, receivedAt: at, timezone: 'UTC', privacy: { patient_id: 'hash' } });
  return out.inserted.map((r) => r.seq);
}

function groupInput(drafts: ResultDraft[], bytes: Buffer, at: Date, deviceId = 'bench1'): GroupCommitInput {
  return { site: 's', deviceId, driver: 'onetouch-ultra2', capture: { kind: 'transcript', bytes }, drafts: { result: drafts }, receivedAt: at, timezone: 'UTC', privacy: { patient_id: 'hash' } };
}

describe('store.retention', () => {
  it('prunes published records older than max_age_days with their captures and blobs; unpublished and recent ones stay', () => {
    const { store } = tempStore();
    const old = [0, 1, 2].map((n) => commitAt(store, [glucoseDraft(n)], Buffer.from(`old capture ${n}`), new Date(NOW.getTime() - 40 * DAY))[0]!);
    const oldUnpublished = commitAt(store, [glucoseDraft(3)], Buffer.from('old unpublished'), new Date(NOW.getTime() - 40 * DAY))[0]!;
    const recent = commitAt(store, [glucoseDraft(4)], Buffer.from('recent'), new Date(NOW.getTime() - DAY))[0]!;
    store.markPublishedMany([...old, recent], NOW);
    const blobOf = (text: string): string => store.blobs.pathOf(store.putCaptureSync('transcript', Buffer.from(text)).sha256);
    const oldBlob = blobOf('old capture 0');
    store.quarantine('bench1', Buffer.from('noise long ago'), 'garbage', new Date(NOW.getTime() - 40 * DAY));
    store.quarantine('bench1', Buffer.from('noise today'), 'garbage', NOW);
    const out = store.prune({ max_age_days: 30 }, NOW);
    expect(out).toMatchObject({ records: 3, captures: 3, quarantine: 1, more: false });
    expect(out.blobs).toBe(4);
    expect(existsSync(oldBlob)).toBe(false);
    expect(existsSync(blobOf('recent'))).toBe(true);
    expect(store.recordsSince(0, 100).map((r) => r.seq)).toEqual([oldUnpublished, recent]);
    expect(store.quarantined().map((q) => q.bytes.toString())).toEqual(['noise today']);
    // Nothing more to do.
    expect(store.prune({ max_age_days: 30 }, NOW)).toMatchObject({ records: 0, captures: 0, quarantine: 0, blobs: 0 });
  });

  it('max_records keeps the newest; the newest record always stays, so seq goes on from it', () => {
    const { store } = tempStore();
    const seqs = Array.from({ length: 10 }, (_, n) => commitAt(store, [glucoseDraft(n)], Buffer.from(`c${n}`), NOW)[0]!);
    store.markPublishedMany(seqs, NOW);
    expect(store.prune({ max_records: 4 }, NOW).records).toBe(6);
    expect(store.recordsSince(0, 100).map((r) => r.seq)).toEqual(seqs.slice(6));
    // Even a limit of 1 with every record published keeps the last: the next seq follows it.
    store.prune({ max_records: 1, max_age_days: 0.0001 }, new Date(NOW.getTime() + DAY));
    expect(store.recordsSince(0, 100).map((r) => r.seq)).toEqual([seqs[9]]);
    expect(commitAt(store, [glucoseDraft(99)], Buffer.from('next'), NOW)).toEqual([seqs[9]! + 1]);
  });

  it('works in batches: a batch that was full says there is more', () => {
    const { store } = tempStore();
    const seqs = Array.from({ length: 7 }, (_, n) => commitAt(store, [glucoseDraft(n)], Buffer.from(`b${n}`), new Date(NOW.getTime() - 10 * DAY))[0]!);
    commitAt(store, [glucoseDraft(50)], Buffer.from('newest'), NOW);
    store.markPublishedMany(seqs, NOW);
    expect(store.prune({ max_age_days: 1 }, NOW, 3)).toMatchObject({ records: 3, more: true });
    expect(store.prune({ max_age_days: 1 }, NOW, 3)).toMatchObject({ records: 3, more: true });
    expect(store.prune({ max_age_days: 1 }, NOW, 3)).toMatchObject({ records: 1, more: false });
    expect(store.recordCount()).toBe(1);
  });

  it('through the writer thread: pruned at start, and on demand', async () => {
    const { store, path } = tempStore();
    const seqs = [0, 1].map((n) => commitAt(store, [glucoseDraft(n)], Buffer.from(`w${n}`), new Date(Date.now() - 40 * DAY))[0]!);
    commitAt(store, [glucoseDraft(9)], Buffer.from('w-new'), new Date());
    store.markPublishedMany(seqs, new Date());
    const writer = await StoreWriter.open(path, 1000, { retention: { max_age_days: 30 } });
    cleanups.push(() => writer.close());
    await eventually('pruned at start', () => store.recordCount() === 1);
    expect((await writer.stats()).pruned).toMatchObject({ records: 2, captures: 2 });
  });
});

describe('a capture is stored only when it is worth keeping', () => {
  it("nothing new, not the first of the day, the same records as the last: not stored; new records, other records, or another device's first of the day: stored", async () => {
    const { store } = tempStore();
    const drafts = [glucoseDraft(1), glucoseDraft(2)];
    const day1 = new Date('2026-12-01T08:00:00Z');
    const captures = (): number => (new Database(store['db'].name, { readonly: true }).prepare('SELECT COUNT(*) AS n FROM captures').get() as { n: number }).n;
    const [first] = await store.commitGroup([groupInput(drafts, Buffer.from('full memory v1'), day1)]);
    expect(first).toMatchObject({ inserted: [expect.anything(), expect.anything()] });
    // The same download again (a poll that found nothing new): nothing stored, two duplicates.
    const [again] = await store.commitGroup([groupInput(drafts, Buffer.from('full memory v1'), new Date(day1.getTime() + 60_000))]);
    expect(again).toMatchObject({ inserted: [], duplicates: 2 });
    expect(captures()).toBe(1);
    // Nothing new, bytes that differ only by the meter's clock: the same records, not kept (before:
    // every poll's transcript was stored).
    for (let i = 2; i < 12; i++) {
      await store.commitGroup([groupInput(drafts, Buffer.from(`full memory v1, clock 08:${i}`), new Date(day1.getTime() + i * 60_000))]);
    }
    expect(captures()).toBe(1);
    // A transcript that holds other records (one fewer: the meter's memory was cleared): kept.
    await store.commitGroup([groupInput([drafts[0]!], Buffer.from('full memory, one left'), new Date(day1.getTime() + 700_000))]);
    expect(captures()).toBe(2);
    // A new record: kept.
    await store.commitGroup([groupInput([...drafts, glucoseDraft(3)], Buffer.from('full memory v2'), new Date(day1.getTime() + 800_000))]);
    expect(captures()).toBe(3);
    // Another device's download that brought nothing new is that device's first of the day: kept.
    await store.commitGroup([groupInput(drafts, Buffer.from('bench2 full memory'), new Date(day1.getTime() + 900_000), 'bench2')]);
    expect(captures()).toBe(4);
    // And its repeat is not.
    await store.commitGroup([groupInput(drafts, Buffer.from('bench2 full memory'), new Date(day1.getTime() + 960_000), 'bench2')]);
    expect(captures()).toBe(4);
  });
});

describe('store.wal_max_mb', () => {
  async function writeLoad(walMaxMb: number): Promise<{ walBytes: number; truncated: number }> {
    const path = join(tempDir('poctd-wal-'), 'poctd.db');
    const reader = new Store(path);
    cleanups.push(async () => reader.close());
    const writer = await StoreWriter.open(path, 50, { walMaxMb });
    cleanups.push(() => writer.close());
    // A reader that holds a snapshot keeps PASSIVE checkpoints from resetting the WAL.
    const snapshot = new Database(path, { readonly: true });
    cleanups.push(async () => snapshot.close());
    snapshot.prepare('BEGIN').run();
    snapshot.prepare('SELECT COUNT(*) FROM records').get();
    let n = 0;
    for (let round = 0; round < 8; round++) {
      await Promise.all(
        Array.from({ length: 20 }, () =>
          writer.commit({ ...groupInput([glucoseDraft(100_000 + n)], Buffer.from(`wal load ${n++} ${'x'.repeat(2000)}`), new Date()), deviceId: `d${n % 7}` }),
        ),
      );
    }
    snapshot.prepare('COMMIT').run();
    await new Promise((res) => setTimeout(res, 300));
    const stats = await writer.stats();
    return { walBytes: existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0, truncated: stats.checkpoints.truncated };
  }

  it('a WAL past the limit is truncated by the writer thread; with the limit off it stays as big as it grew', async () => {
    const bounded = await writeLoad(0.25);
    const unbounded = await writeLoad(0);
    expect(bounded.truncated).toBeGreaterThan(0);
    expect(bounded.walBytes).toBeLessThanOrEqual(0.25 * 1024 * 1024);
    expect(unbounded.truncated).toBe(0);
    expect(unbounded.walBytes).toBeGreaterThan(0.25 * 1024 * 1024);
  }, 60_000);
});
