import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { Store } from '../../src/store/store.ts';
import { StoreWriter } from '../../src/store/writer.ts';
import { glucoseDraft } from '../helpers/records.ts';

const open: Array<{ writer: StoreWriter; reader: Store }> = [];
afterEach(async () => {
  for (const { writer, reader } of open.splice(0)) {
    await writer.close();
    reader.close();
  }
});

async function setup(checkpointIntervalMs: number): Promise<{ path: string; writer: StoreWriter; reader: Store }> {
  const path = join(mkdtempSync(join(tmpdir(), 'poctd-writer-')), 'poctd.db');
  const reader = new Store(path); // the daemon's main-thread connection, which also migrates
  const writer = await StoreWriter.open(path, checkpointIntervalMs);
  open.push({ writer, reader });
  return { path, writer, reader };
}

/** Writes `rounds` commits of 50 records, each with a 4 KiB capture, pausing between them. */
async function writeRounds(writer: StoreWriter, rounds: number, pauseMs: number, walSizes: () => void): Promise<void> {
  let n = 0;
  for (let round = 0; round < rounds; round++) {
    const drafts = Array.from({ length: 50 }, () => glucoseDraft(n++));
    const [outcome] = await writer.commitMany([
      { site: 's', deviceId: 'bench1', driver: 'onetouch-ultra2', captureKind: 'raw', captureBytes: randomBytes(4096), drafts, receivedAt: new Date() },
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

  it('the checkpoint thread keeps the WAL small while commits never checkpoint themselves', async () => {
    const { path, writer, reader } = await setup(20);
    let maxWal = 0;
    await writeRounds(writer, 40, 40, () => {
      maxWal = Math.max(maxWal, statSync(`${path}-wal`).size);
    });
    expect(reader.recordCount()).toBe(2000);
    // About 2 MB were written in all; without checkpoints the WAL would hold all of it.
    expect(maxWal).toBeLessThan(512 * 1024);
  });

  it('if the checkpoint thread dies, SQLite checkpoints inline again and the WAL stays bounded', async () => {
    const { path, writer } = await setup(60_000); // the thread would not run in this test anyway
    await (writer as unknown as { checkpointer: Worker }).checkpointer.terminate();
    await new Promise((r) => setTimeout(r, 50));
    let maxWal = 0;
    // About 8 MB: twice SQLite's own limit of 1000 pages (4 MB with 4 KiB pages).
    await writeRounds(writer, 160, 0, () => {
      maxWal = Math.max(maxWal, statSync(`${path}-wal`).size);
    });
    expect(maxWal).toBeLessThan(6 * 1024 * 1024);
  });

  it('close stops both threads and leaves no WAL behind', async () => {
    const { path, writer, reader } = await setup(20);
    await writeRounds(writer, 3, 0, () => undefined);
    open.pop();
    await writer.close();
    reader.close();
    expect(existsSync(`${path}-wal`)).toBe(false);
  });
});
