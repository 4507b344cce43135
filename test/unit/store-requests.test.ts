import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAX_OUTCOMES, OUTCOME_RETENTION_MS, REQUESTS_MIGRATION, RequestLog, type RequestRecord } from '../../src/store/requests.ts';
import { Store } from '../../src/store/store.ts';
import { tempDir } from '../helpers/daemon.ts';

function entry(transaction: string | number | null, status: 'ok' | 'error' = 'ok'): RequestRecord {
  return {
    device_id: 'd1',
    verb: 'download',
    params: {},
    requested_by: null,
    transaction,
    response: status === 'ok' ? { status, data: { inserted: 1 }, error: null } : { status, data: null, error: 'no answer' },
  };
}

describe('request outcomes (dedupe) and the audit', () => {
  it('keeps the first outcome of a transaction: a second record of it does not replace it', () => {
    const store = new Store(':memory:', { blobDir: join(tempDir('poctd-req-'), 'blobs') });
    const at = new Date('2026-12-01T10:00:00Z');
    store.recordRequest(entry('t1', 'error'), at);
    store.recordRequest(entry('t1', 'ok'), at);
    expect(store.requestOutcome('d1', 'download', 't1', at)).toEqual({ status: 'error', data: null, error: 'no answer' });
    expect(store.requestOutcome('d1', 'download', 't2', at)).toBeUndefined();
    expect(store.requestOutcome('d1', 'clock/sync', 't1', at)).toBeUndefined();
    expect(store.requestOutcome('d2', 'download', 't1', at)).toBeUndefined();
    // Both requests are in the audit, though only the first outcome answers repeats.
    expect(store.auditRows().map((r) => r.status)).toEqual(['error', 'ok']);
    store.close();
  });

  it('forgets outcomes older than the retention, and beyond the newest MAX_OUTCOMES', () => {
    const db = new Database(':memory:');
    db.exec(`CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, device_id TEXT, verb TEXT NOT NULL,
             params_json TEXT NOT NULL, status TEXT NOT NULL, detail_json TEXT);`);
    db.exec(REQUESTS_MIGRATION);
    const log = new RequestLog(db);
    const t0 = new Date('2026-12-01T00:00:00Z');
    log.record(entry('old'), t0);
    const later = new Date(t0.getTime() + OUTCOME_RETENTION_MS + 1000);
    expect(log.outcome('d1', 'download', 'old', later)).toBeUndefined();
    log.record(entry('new'), later);
    expect(log.outcomeCount()).toBe(1);
    db.transaction(() => {
      for (let i = 0; i < MAX_OUTCOMES + 5; i++) log.record(entry(i), new Date(later.getTime() + i));
    })();
    expect(log.outcomeCount()).toBe(MAX_OUTCOMES);
    expect(log.outcome('d1', 'download', 0, later)).toBeUndefined();
    expect(log.outcome('d1', 'download', MAX_OUTCOMES + 4, later)).toBeDefined();
    db.close();
  });

  it('a database from before the migration gets the new columns and table, its audit rows kept', () => {
    const path = join(tempDir('poctd-req-'), 'old.db');
    const made = new Store(path);
    made.recordRequest({ ...entry(null), verb: 'status', response: { status: 'ok', data: { ok: true }, error: null } }, new Date('2026-11-01T00:00:00Z'));
    made.close();
    // Back to the schema before this migration (version 3, the blob store's), keeping the audit row;
    // quarantine back to its bytes column too (version 5 moved them to the blob store).
    const raw = new Database(path);
    raw.exec(`DROP TABLE device_jobs; DROP TABLE sequences; DROP TABLE request_outcomes; ALTER TABLE audit DROP COLUMN requested_by; ALTER TABLE audit DROP COLUMN transaction_json;
      ALTER TABLE quarantine DROP COLUMN size; ALTER TABLE quarantine ADD COLUMN bytes BLOB NOT NULL DEFAULT x'';`);
    raw.pragma('user_version = 3');
    raw.close();
    const store = new Store(path);
    store.recordRequest({ ...entry('x'), requested_by: 'lab-dashboard' }, new Date());
    expect(store.auditRows().map((r) => [r.verb, r.requested_by, r.transaction])).toEqual([
      ['status', null, null],
      ['download', 'lab-dashboard', 'x'],
    ]);
    expect(store.requestOutcome('d1', 'download', 'x')).toEqual({ status: 'ok', data: { inserted: 1 }, error: null });
    store.close();
  });
});
