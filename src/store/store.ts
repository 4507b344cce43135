import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { resultId, sha256Hex } from '../records/ids.ts';
import type { PatientIdPolicy } from '../config/types.ts';
import { buildResultRecord } from '../records/build.ts';
import { applyPatientPolicy } from '../records/privacy.ts';
import type { DeviceState, ResultDraft, ResultRecord } from '../records/types.ts';
import { REQUESTS_MIGRATION, RequestLog, type AuditRow, type RequestRecord, type RequestResponse, type Transaction } from './requests.ts';

/**
 * The source of truth. Records, the raw bytes they came from, the outbox that MQTT drains,
 * devices, and an audit of commands live in one SQLite file in WAL mode. MQTT is a view of it.
 */

const MIGRATIONS: string[] = [
  `CREATE TABLE captures (
     id TEXT PRIMARY KEY,                 -- sha256 of the bytes
     device_id TEXT NOT NULL,
     driver TEXT NOT NULL,
     kind TEXT NOT NULL,                  -- 'raw' | 'transcript'
     bytes BLOB NOT NULL,
     received_at TEXT NOT NULL
   );
   CREATE TABLE records (
     seq INTEGER PRIMARY KEY,             -- gap-free, assigned in the inserting transaction
     id TEXT NOT NULL UNIQUE,
     device_id TEXT NOT NULL,
     schema TEXT NOT NULL,
     category TEXT NOT NULL,
     capture_id TEXT NOT NULL REFERENCES captures(id),
     json TEXT NOT NULL,
     received_at TEXT NOT NULL
   );
   CREATE INDEX records_device ON records(device_id, seq);
   CREATE TABLE outbox (
     seq INTEGER PRIMARY KEY REFERENCES records(seq),
     device_id TEXT NOT NULL,
     published_at TEXT
   );
   CREATE INDEX outbox_pending ON outbox(seq) WHERE published_at IS NULL;
   CREATE TABLE quarantine (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     device_id TEXT NOT NULL,
     reason TEXT NOT NULL,
     bytes BLOB NOT NULL,
     sha256 TEXT NOT NULL,
     received_at TEXT NOT NULL
   );
   CREATE TABLE devices (
     id TEXT PRIMARY KEY,
     driver TEXT NOT NULL,
     state_json TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE TABLE audit (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     at TEXT NOT NULL,
     device_id TEXT,
     verb TEXT NOT NULL,
     params_json TEXT NOT NULL,
     status TEXT NOT NULL,
     detail_json TEXT
   );`,
  // Secrets the store generates for itself (the patient-id hash key).
  `CREATE TABLE settings (
     key TEXT PRIMARY KEY,
     value BLOB NOT NULL
   );`,
  // Device requests (issue 9): who asked and the transaction on each audit row, and the first
  // outcome of each transaction so a repeated request is answered, not run again (requests.ts).
  REQUESTS_MIGRATION,
];

export interface CommitOutcome {
  inserted: ResultRecord[];
  duplicates: number;
  captureId: string;
}

export interface CommitInput {
  site: string;
  deviceId: string;
  driver: string;
  captureKind: 'raw' | 'transcript';
  captureBytes: Buffer;
  drafts: ResultDraft[];
  receivedAt: Date;
  /** The site's patient-id policy, applied before the record is written (default `publish`). */
  patientIdPolicy?: PatientIdPolicy;
  /** Key for the `hash` policy; default: the random key this store generated on first use. */
  patientHashKey?: string;
}

export interface AuditEntry {
  device_id: string | null;
  verb: string;
  params: unknown;
  status: 'ok' | 'error';
  detail?: unknown;
}

export class Store {
  private readonly db: Database.Database;
  private readonly stmts;
  private readonly requests: RequestLog;

  /**
   * `checkpointElsewhere`: this connection never copies the WAL into the database file itself,
   * because another thread does (see writer.ts).
   */
  constructor(path: string, options: { checkpointElsewhere?: boolean } = {}) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    if (options.checkpointElsewhere) this.db.pragma('wal_autocheckpoint = 0');
    // FULL: a record the device was told "received" survives a power cut, not only a crash.
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.migrate();
    this.requests = new RequestLog(this.db);
    this.stmts = {
      insertCapture: this.db.prepare(
        `INSERT OR IGNORE INTO captures (id, device_id, driver, kind, bytes, received_at) VALUES (?, ?, ?, ?, ?, ?)`,
      ),
      recordExists: this.db.prepare(`SELECT 1 FROM records WHERE id = ?`),
      nextSeq: this.db.prepare(`SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM records`),
      insertRecord: this.db.prepare(
        `INSERT INTO records (seq, id, device_id, schema, category, capture_id, json, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      insertOutbox: this.db.prepare(`INSERT INTO outbox (seq, device_id) VALUES (?, ?)`),
      pending: this.db.prepare(
        `SELECT r.seq, r.device_id, r.json FROM outbox o JOIN records r ON r.seq = o.seq
          WHERE o.published_at IS NULL AND o.seq > ? ORDER BY o.seq LIMIT ?`,
      ),
      markPublished: this.db.prepare(`UPDATE outbox SET published_at = ? WHERE seq = ? AND published_at IS NULL`),
      outboxDepth: this.db.prepare(`SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL`),
      since: this.db.prepare(`SELECT seq, device_id, json FROM records WHERE seq > ? ORDER BY seq LIMIT ?`),
      recordCount: this.db.prepare(`SELECT COUNT(*) AS n FROM records`),
      capture: this.db.prepare(`SELECT id, device_id, driver, kind, bytes FROM captures WHERE id = ?`),
      quarantine: this.db.prepare(
        `INSERT INTO quarantine (device_id, reason, bytes, sha256, received_at) VALUES (?, ?, ?, ?, ?)`,
      ),
      upsertDevice: this.db.prepare(
        `INSERT INTO devices (id, driver, state_json, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT(id) DO UPDATE SET driver = excluded.driver, state_json = excluded.state_json, updated_at = excluded.updated_at`,
      ),
      device: this.db.prepare(`SELECT state_json FROM devices WHERE id = ?`),
      audit: this.db.prepare(
        `INSERT INTO audit (at, device_id, verb, params_json, status, detail_json) VALUES (?, ?, ?, ?, ?, ?)`,
      ),
    };
  }

  private hashKey: Buffer | undefined;

  /** This store's own random patient-id hash key, made on first use and kept in the database. */
  localHashKey(): Buffer {
    if (this.hashKey) return this.hashKey;
    const row = this.db.prepare(`SELECT value FROM settings WHERE key = 'patient_hash_key'`).get() as { value: Buffer } | undefined;
    if (row) return (this.hashKey = row.value);
    const key = randomBytes(32);
    this.db.prepare(`INSERT OR IGNORE INTO settings (key, value) VALUES ('patient_hash_key', ?)`).run(key);
    const kept = this.db.prepare(`SELECT value FROM settings WHERE key = 'patient_hash_key'`).get() as { value: Buffer };
    return (this.hashKey = kept.value);
  }

  /** Back to SQLite's own checkpoints (every 1000 pages), when the checkpoint thread is gone. */
  checkpointInline(): void {
    this.db.pragma('wal_autocheckpoint = 1000');
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  /**
   * Stores the capture and every draft not stored before, each with the next seq and an outbox row,
   * in one transaction. When this returns, it is on disk: only then may a device hear "received".
   */
  commitResults(input: CommitInput): CommitOutcome {
    const receivedAt = input.receivedAt.toISOString();
    const captureId = sha256Hex(input.captureBytes);
    const run = this.db.transaction((): CommitOutcome => {
      this.stmts.insertCapture.run(captureId, input.deviceId, input.driver, input.captureKind, input.captureBytes, receivedAt);
      const inserted: ResultRecord[] = [];
      let duplicates = 0;
      for (const draft of input.drafts) {
        const id = resultId(draft);
        if (this.stmts.recordExists.get(id)) {
          duplicates++;
          continue;
        }
        const seq = (this.stmts.nextSeq.get() as { seq: number }).seq;
        let record = buildResultRecord(draft, { seq, site: input.site, receivedAt, captureSha256: captureId });
        if (input.patientIdPolicy) {
          record = applyPatientPolicy(record, input.patientIdPolicy, input.patientHashKey ?? this.localHashKey());
        }
        this.stmts.insertRecord.run(seq, id, input.deviceId, record.schema, record.category, captureId, JSON.stringify(record), receivedAt);
        this.stmts.insertOutbox.run(seq, input.deviceId);
        inserted.push(record);
      }
      return { inserted, duplicates, captureId };
    });
    return run();
  }

  /**
   * Group commit: several sessions' commits in one transaction, so one disk sync covers them all.
   * Each input is its own savepoint: one that fails is rolled back alone and returned as its Error.
   */
  commitMany(inputs: CommitInput[]): Array<CommitOutcome | Error> {
    return this.db.transaction(() =>
      inputs.map((input) => {
        try {
          return this.commitResults(input);
        } catch (error) {
          return error instanceof Error ? error : new Error(String(error));
        }
      }),
    )();
  }

  /** Unpublished records after `afterSeq`, oldest first. */
  pendingOutbox(afterSeq: number, limit: number): ResultRecord[] {
    return this.pendingOutboxJson(afterSeq, limit).map((r) => JSON.parse(r.json) as ResultRecord);
  }

  /** The same rows as stored JSON text, for publishing without parsing and re-serialising. */
  pendingOutboxJson(afterSeq: number, limit: number): Array<{ seq: number; device_id: string; json: string }> {
    return this.stmts.pending.all(afterSeq, limit) as Array<{ seq: number; device_id: string; json: string }>;
  }

  markPublished(seq: number, at: Date = new Date()): void {
    this.stmts.markPublished.run(at.toISOString(), seq);
  }

  markPublishedMany(seqs: number[], at: Date = new Date()): void {
    const when = at.toISOString();
    this.withoutSync(() => {
      for (const seq of seqs) this.stmts.markPublished.run(when, seq);
    });
  }

  /**
   * Runs a transaction whose loss in a power cut costs nothing but a repeat (publish marks: the
   * results are sent once more; device states: an older `last_seen`) without waiting for the disk.
   * WAL keeps the order, and the next FULL commit syncs these pages too.
   */
  private withoutSync(write: () => void): void {
    this.db.pragma('synchronous = NORMAL');
    try {
      this.db.transaction(write)();
    } finally {
      this.db.pragma('synchronous = FULL');
    }
  }

  outboxDepth(): number {
    return (this.stmts.outboxDepth.get() as { n: number }).n;
  }

  recordCount(): number {
    return (this.stmts.recordCount.get() as { n: number }).n;
  }

  recordsSince(sinceSeq: number, limit: number): ResultRecord[] {
    const rows = this.stmts.since.all(sinceSeq, limit) as { json: string }[];
    return rows.map((r) => JSON.parse(r.json) as ResultRecord);
  }

  capture(id: string): { id: string; device_id: string; driver: string; kind: 'raw' | 'transcript'; bytes: Buffer } | undefined {
    return this.stmts.capture.get(id) as ReturnType<Store['capture']>;
  }

  quarantine(deviceId: string, bytes: Buffer, reason: string, at: Date = new Date()): void {
    this.stmts.quarantine.run(deviceId, reason, bytes, sha256Hex(bytes), at.toISOString());
  }

  quarantineCount(): number {
    return (this.db.prepare(`SELECT COUNT(*) AS n FROM quarantine`).get() as { n: number }).n;
  }

  saveDeviceState(state: DeviceState, at: Date = new Date()): void {
    this.saveDeviceStates([state], at);
  }

  /** Many devices' states in one transaction (one disk sync). */
  saveDeviceStates(states: DeviceState[], at: Date = new Date()): void {
    const when = at.toISOString();
    this.withoutSync(() => {
      for (const state of states) this.stmts.upsertDevice.run(state.id, state.driver, JSON.stringify(state), when);
    });
  }

  deviceState(id: string): DeviceState | undefined {
    const row = this.stmts.device.get(id) as { state_json: string } | undefined;
    return row ? (JSON.parse(row.state_json) as DeviceState) : undefined;
  }

  audit(entry: AuditEntry, at: Date = new Date()): void {
    this.stmts.audit.run(
      at.toISOString(),
      entry.device_id,
      entry.verb,
      JSON.stringify(entry.params ?? {}),
      entry.status,
      entry.detail === undefined ? null : JSON.stringify(entry.detail),
    );
  }

  auditEntries(): Array<{ device_id: string | null; verb: string; status: string; params: unknown; detail: unknown }> {
    const rows = this.db.prepare(`SELECT device_id, verb, status, params_json, detail_json FROM audit ORDER BY id`).all() as Array<{
      device_id: string | null;
      verb: string;
      status: string;
      params_json: string;
      detail_json: string | null;
    }>;
    return rows.map((r) => ({
      device_id: r.device_id,
      verb: r.verb,
      status: r.status,
      params: JSON.parse(r.params_json),
      detail: r.detail_json ? JSON.parse(r.detail_json) : null,
    }));
  }

  /** A device request answered: its audit row, and its outcome for repeats of its transaction. */
  recordRequest(entry: RequestRecord, at: Date = new Date()): void {
    this.requests.record(entry, at);
  }

  /** The first outcome of a request with this transaction, when it is still kept. */
  requestOutcome(deviceId: string, verb: string, transaction: Transaction, now: Date = new Date()): RequestResponse | undefined {
    return this.requests.outcome(deviceId, verb, transaction, now);
  }

  /** Every audit row with who asked and the transaction, oldest first. */
  auditRows(): AuditRow[] {
    return this.requests.auditRows();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
