import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { DeviceState } from '../../src/records/types.ts';
import { Store } from '../../src/store/store.ts';
import { StoreWriter } from '../../src/store/writer.ts';
import { tempDir } from '../helpers/daemon.ts';
import { glucoseDraft } from '../helpers/records.ts';
import type { GroupCommitInput } from '../../src/store/store.ts';
import type { ResultDraft } from '../../src/records/types.ts';

/**
 * A commit of result drafts with its capture's bytes, as the device manager makes one: the writer
 * thread puts them in the blob store with its group (nothing is synced on this thread first).
 */
function commitInput(fields: { deviceId: string; driver?: string | null; bytes: Buffer; drafts: ResultDraft[] }): GroupCommitInput {
  return {
    site: 's',
    deviceId: fields.deviceId,
    driver: (fields.driver === undefined ? 'onetouch-ultra2' : fields.driver) as string,
    capture: { kind: 'raw', bytes: fields.bytes },
    drafts: { result: fields.drafts },
    receivedAt: new Date(),
    timezone: 'UTC',
    privacy: { patient_id: 'hash' },
  };
}

const open: Array<{ writer: StoreWriter; reader: Store }> = [];
afterEach(async () => {
  for (const { writer, reader } of open.splice(0)) {
    await writer.close();
    reader.close();
  }
});

async function setup(checkpointIntervalMs: number): Promise<{ path: string; writer: StoreWriter; reader: Store }> {
  const path = join(tempDir('poctd-writer-'), 'poctd.db');
  const reader = new Store(path); // the daemon's main-thread connection, which also migrates
  const writer = await StoreWriter.open(path, checkpointIntervalMs);
  open.push({ writer, reader });
  return { path, writer, reader };
}

/** Writes `rounds` commits of 50 records, each with a 4 KiB capture, pausing between them. */
/** Draft numbers never repeat across calls, so writers running at once store distinct records. */
let n = 0;
async function writeRounds(writer: StoreWriter, rounds: number, pauseMs: number, walSizes: () => void): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    const drafts = Array.from({ length: 50 }, () => glucoseDraft(n++));
    const [outcome] = await writer.commitMany([
      commitInput({ deviceId: 'bench1', bytes: randomBytes(4096), drafts }),
    ]);
    expect(outcome).not.toBeInstanceOf(Error);
    walSizes();
    await new Promise((r) => setTimeout(r, pauseMs));
  }
}

describe('StoreWriter', () => {
  it('commits on its thread, readable at once from the main connection', async () => {
    const { writer, reader } = await setup(1000);
    await writeRounds(writer, 2, 0, () => undefined);
    expect(reader.recordCount()).toBe(100);
  });

  it('checkpoints between group commits keep the WAL small while commits never checkpoint themselves', async () => {
    const { path, writer, reader } = await setup(20);
    let maxWal = 0;
    await writeRounds(writer, 40, 40, () => {
      maxWal = Math.max(maxWal, statSync(`${path}-wal`).size);
    });
    expect(reader.recordCount()).toBe(2000);
    // About 2 MB were written in all; without checkpoints the WAL would hold all of it.
    expect(maxWal).toBeLessThan(512 * 1024);
  });

  it('commits that never pause still leave room for checkpoints: the WAL stays bounded', async () => {
    const { path, writer, reader } = await setup(20);
    let maxWal = 0;
    // Four writers at once, each starting its next commit the moment the last is answered: about
    // 8 MB in all, twice SQLite's own limit of 1000 pages (4 MB with 4 KiB pages).
    await Promise.all(
      [0, 1, 2, 3].map((w) =>
        writeRounds(writer, 40, 0, () => {
          maxWal = Math.max(maxWal, statSync(`${path}-wal`).size);
        }).then(() => w),
      ),
    );
    expect(reader.recordCount()).toBe(8000);
    expect(maxWal).toBeLessThan(6 * 1024 * 1024);
  });

  it('commits asked for together share a transaction, and one that fails is rolled back alone', async () => {
    const { writer, reader } = await setup(1000);
    const input = (n: number, driver: unknown = 'onetouch-ultra2') =>
      commitInput({ deviceId: `m${n}`, driver: driver as string | null, bytes: randomBytes(64), drafts: [glucoseDraft(n)] });
    const outcomes = await Promise.allSettled([writer.commit(input(1)), writer.commit(input(2, null)), writer.commit(input(3))]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((outcomes[1] as PromiseRejectedResult).reason.message).toMatch(/constraint failed/);
    // The two that were kept got consecutive seqs: the failed one left no gap.
    const seqs = outcomes.flatMap((o) => (o.status === 'fulfilled' ? o.value.inserted.map((r) => r.seq) : []));
    expect(seqs).toEqual([1, 2]);
    expect(reader.recordCount()).toBe(2);
  });

  it('answers a commit before bookkeeping that was asked for earlier', async () => {
    const { writer, reader } = await setup(1000);
    const states = Array.from({ length: 2000 }, (_, i) => ({ id: `meter-${i}`, driver: 'onetouch-ultra2' }) as DeviceState);
    const order: string[] = [];
    // Its blob is written (and synced) first: done between the asks, that sync could outlast the
    // whole bookkeeping on a loaded machine, and the commit would then arrive after it, not overtake it.
    const input = commitInput({ deviceId: 'm', bytes: randomBytes(64), drafts: [glucoseDraft(1)] });
    const saved = writer.saveDeviceStates(states, new Date()).then(() => order.push('states'));
    const marked = writer.markPublishedMany(Array.from({ length: 2000 }, (_, i) => i + 1), new Date()).then(() => order.push('marks'));
    const committed = writer.commitMany([input]).then(() => order.push('commit'));
    await Promise.all([saved, marked, committed]);
    // The commit overtook both; the bookkeeping kept its own order.
    expect(order).toEqual(['commit', 'states', 'marks']);
    expect(reader.deviceState('meter-1999')?.id).toBe('meter-1999');
  });

  it('a failed bookkeeping write is answered with its error and the queue goes on', async () => {
    const { writer, reader } = await setup(1000);
    const broken = [{ id: 'meter-1' } as DeviceState]; // no driver: the devices table refuses it
    await expect(writer.saveDeviceStates(broken, new Date())).rejects.toThrow(/NOT NULL/);
    await writeRounds(writer, 1, 0, () => undefined);
    expect(reader.recordCount()).toBe(50);
  });

  it('its thread writes audit rows only through recordRequest (params redacted by the caller): no raw audit method', async () => {
    const { writer, reader } = await setup(1000);
    expect('audit' in writer).toBe(false);
    const call = (writer as unknown as { call(method: string, ...args: unknown[]): Promise<unknown> }).call.bind(writer);
    const unredacted = { device_id: 'bench1', verb: 'status', params: { 'x-patient': 'P-1' }, status: 'ok' };
    await expect(call('audit', unredacted, new Date())).rejects.toThrow(/unknown store method audit/);
    await writer.recordRequest(
      { device_id: 'bench1', verb: 'status', params: {}, requested_by: 'lab', transaction: 7, response: { status: 'ok', data: { state: 'idle' }, error: null } },
      new Date(),
    );
    expect(reader.auditRows().map((r) => [r.verb, r.requested_by, r.transaction, r.detail])).toEqual([['status', 'lab', 7, { state: 'idle' }]]);
  });

  it('a burst of quarantined chunks is kept in the blob store in slices, one disk wait per slice, never one per chunk', async () => {
    const { writer, reader } = await setup(1000);
    const noise = Array.from({ length: 500 }, (_, i) => Buffer.from(`\xff noise ${i}`, 'latin1'));
    const before = await writer.stats();
    await Promise.all(noise.map((bytes) => writer.quarantine('bench1', bytes, 'garbage', new Date())));
    const after = await writer.stats();
    const slices = after.quarantineSlices - before.quarantineSlices;
    expect(slices).toBeGreaterThan(0);
    // 50 per slice when all 500 are queued at once (10 slices); on a loaded machine the asks reach
    // the thread in several waves and slices come out smaller, but never one per chunk.
    expect(slices).toBeLessThan(noise.length / 5);
    // Each slice syncs each directory that gained a name once (256 shards at most, and the root).
    expect(after.blobSyncs.directories - before.blobSyncs.directories).toBeLessThanOrEqual(slices * 257);
    expect(reader.quarantined().map((q) => q.bytes)).toEqual(noise);
  });

  it('close writes everything asked for before it', async () => {
    const { writer, reader } = await setup(1000);
    open.pop();
    const states = Array.from({ length: 300 }, (_, i) => ({ id: `meter-${i}`, driver: 'onetouch-ultra2' }) as DeviceState);
    void writer.saveDeviceStates(states, new Date());
    void writer.commitMany([
      commitInput({ deviceId: 'm', bytes: randomBytes(64), drafts: [glucoseDraft(7)] }),
    ]);
    await writer.close();
    expect(reader.recordCount()).toBe(1);
    expect(reader.deviceState('meter-299')?.id).toBe('meter-299');
    reader.close();
  });

  it('close finishes when the thread exits in the same turn as its answer', async () => {
    // Node, handling a worker's exit, first delivers the messages still queued and then emits
    // 'exit', synchronously; a busy main thread can read the close answer that way. This fake
    // worker does the same on 'close'.
    const worker = Object.assign(new EventEmitter(), {
      postMessage(message: { id: number; method: string }) {
        if (message.method !== 'close') return;
        worker.emit('message', { id: message.id, result: null });
        worker.emit('exit', 0);
      },
    });
    const writer = new (StoreWriter as unknown as new (w: unknown) => StoreWriter)(worker);
    const outcome = await Promise.race([
      writer.close().then(() => 'closed'),
      new Promise((r) => setTimeout(r, 2000)).then(() => 'still waiting after 2 s'),
    ]);
    expect(outcome).toBe('closed');
  });

  it('close stops the thread and leaves no WAL behind', async () => {
    const { path, writer, reader } = await setup(20);
    await writeRounds(writer, 3, 0, () => undefined);
    open.pop();
    await writer.close();
    reader.close();
    expect(existsSync(`${path}-wal`)).toBe(false);
  });
});
