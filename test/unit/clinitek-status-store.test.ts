import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import type { DriverDefinition } from '../../src/driver-sdk/index.ts';
import type { ResultRecord } from '../../src/records/types.ts';
import { Store } from '../../src/store/store.ts';
import { clinitekStatus } from '../../drivers/urinalysis/clinitek-status/definition.ts';
import { decodeClinitekStatus } from '../../drivers/urinalysis/clinitek-status/records.ts';
import { ClinitekStatusSimulator, parseSimulatorOptions } from '../../drivers/urinalysis/clinitek-status/simulator.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { tempDir } from '../helpers/daemon.ts';
import { deviceManagerRig } from '../helpers/device-manager-rig.ts';
import { eventually } from '../helpers/eventually.ts';

const cleanups = useCleanups();

// Six strips, no E58 record: every line is a result. Sent 50 ms after the cable opens.
const SIMULATOR = { seed: 5, no_error_record: true, send_delay_ms: 50, max_chunk: 11 };
const SENT = new ClinitekStatusSimulator(parseSimulatorOptions(SIMULATOR)).sendAllBytes();
const LINES = SENT.toString('latin1').split(/\r\n/).filter((l) => l.length > 0);

/** A fresh database whose records table refuses every insert (as a full disk would) until allowed. */
function refusingDatabase(): { dbPath: string; allow: () => void } {
  const dbPath = join(tempDir('poctd-clinitek-'), 'poctd.db');
  new Store(dbPath).close(); // creates the schema
  const db = new Database(dbPath);
  db.exec(`CREATE TRIGGER refuse_test BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END;`);
  return {
    dbPath,
    allow: () => {
      db.exec('DROP TRIGGER refuse_test');
      db.close();
    },
  };
}

/** The real driver, with a count of the bytes its transport delivered (seen before the session's own listener). */
function countingDriver(): { driver: DriverDefinition; bytesIn: () => number } {
  let bytes = 0;
  const driver: DriverDefinition = {
    ...clinitekStatus,
    createSession: (host) => {
      host.transport.on('data', (chunk: Buffer) => (bytes += chunk.length));
      return clinitekStatus.createSession(host);
    },
  };
  return { driver, bytesIn: () => bytes };
}

const device = (commitRetryMs: number) => ({
  id: 'urine1',
  driver: 'clinitek-status',
  transport: { type: 'simulated' as const, simulator: SIMULATOR },
  options: { commit_retry_ms: commitRetryMs, burst_idle_ms: 100 },
});

describe('CLINITEK Status over the real device manager and store', () => {
  it('a failed commit keeps the lines and commits them on a retry, each with its own line as raw capture', async () => {
    expect(LINES).toHaveLength(6);
    const { dbPath, allow } = refusingDatabase();
    const { driver } = countingDriver();
    const r = await deviceManagerRig({ drivers: [driver], cleanups, dbPath, devices: [device(50)] });
    await eventually('download_failed', () => r.events.some((e) => e.type === 'download_failed'));
    expect(r.events.find((e) => e.type === 'download_failed')?.data).toEqual({ reason: 'commit-failed' });
    await eventually('status error', () => r.states('urine1').at(-1)?.status === 'error');
    expect(r.store.recordCount()).toBe(0);
    allow();
    await eventually('download_finished', () => r.events.some((e) => e.type === 'download_finished'), 10_000);
    expect(r.events.find((e) => e.type === 'download_finished')).toMatchObject({
      message: 'received 6 records: 6 new, 0 already stored',
      data: { records: 6, inserted: 6, duplicates: 0 },
    });
    expect(r.store.recordCount()).toBe(6);
    expect(r.store.quarantineCount()).toBe(0);
    await eventually('status ok', () => r.states('urine1').at(-1)?.status === 'ok');
    // In arrival order, each record's raw capture is its own line plus CR, and decodes to that record.
    const records = r.store.recordsSince(0, 100) as ResultRecord[];
    const captures = records.map((rec) => r.store.blobs.read(rec.raw.sha256).toString('latin1'));
    expect(captures).toEqual(LINES.map((l) => `${l}\r`));
    for (const [i, rec] of records.entries()) {
      const decoded = decodeClinitekStatus({ kind: 'raw', bytes: Buffer.from(captures[i]!, 'latin1') }, { deviceId: 'urine1', timezone: 'Europe/Copenhagen' });
      expect(decoded.drafts.result!.map((d) => [d.device_time, d.observations])).toEqual([[rec.device_time, rec.observations]]);
    }
    await r.stop();
  });

  it('lines still not stored when the daemon stops are kept in quarantine, none lost', async () => {
    const { dbPath, allow } = refusingDatabase();
    const { driver, bytesIn } = countingDriver();
    const r = await deviceManagerRig({ drivers: [driver], cleanups, dbPath, devices: [device(60_000)] });
    await eventually('download_failed', () => r.events.some((e) => e.type === 'download_failed'));
    await eventually('every byte of the send delivered', () => bytesIn() === SENT.length);
    await r.manager.stop();
    allow();
    await r.writer.drained();
    expect(r.store.recordCount()).toBe(0);
    const kept = r.store.quarantined();
    expect(kept.map((q) => q.reason)).toEqual(Array(6).fill('not-committed'));
    expect(kept.map((q) => q.bytes.toString('latin1'))).toEqual(LINES.map((l) => `${l}\r`));
    expect(r.events.some((e) => e.type === 'download_finished')).toBe(false);
    await r.stop();
  });
});
