/**
 * Durable device jobs: the work a command-taking device still owes (a label to print), kept so
 * that a job accepted is never lost, across a broker outage, a printer that is off, or a daemon
 * killed with `kill -9`. A job is written in the same transaction as its first record (the store's
 * commit), before the request is answered; each change of state likewise, beside the record that
 * publishes it. The bytes to send are the record's capture, in the blob store; `summary` holds
 * only what may be shown (no patient data). A job carries the request's transaction, so a repeat
 * of the request finds the job instead of making a second one, even after a restart.
 *
 * Also here: named sequences that never give the same number twice (issued specimen ids).
 */
import type Database from 'better-sqlite3';

/** Migration (appended to the store's list): the jobs and the sequences. */
export const JOBS_MIGRATION = `
  CREATE TABLE device_jobs (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    verb TEXT NOT NULL,
    transaction_json TEXT,                -- JSON, as in request_outcomes; null without one
    state TEXT NOT NULL,
    open INTEGER NOT NULL,                -- 1 while the device still owes work on it
    payload_sha256 TEXT NOT NULL,         -- the bytes to send, in the blob store
    summary_json TEXT NOT NULL,           -- what may be shown: never patient data
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
  );
  CREATE INDEX device_jobs_open ON device_jobs(device_id, created_at) WHERE open = 1;
  CREATE INDEX device_jobs_device ON device_jobs(device_id, created_at);
  CREATE UNIQUE INDEX device_jobs_transaction ON device_jobs(device_id, verb, transaction_json) WHERE transaction_json IS NOT NULL;
  CREATE TABLE sequences (
    name TEXT PRIMARY KEY,
    last INTEGER NOT NULL
  );
`;

export interface DeviceJob {
  id: string;
  device_id: string;
  verb: string;
  transaction: string | number | null;
  state: string;
  open: boolean;
  payload_sha256: string;
  summary: Record<string, unknown>;
  attempts: number;
  reason: string | null;
  created_at: string;
  updated_at: string;
}

/** A job change, written in the transaction of the commit that carries it. */
export type JobWrite =
  | { op: 'insert'; job: Omit<DeviceJob, 'device_id' | 'created_at' | 'updated_at' | 'payload_sha256'> }
  | { op: 'update'; id: string; state: string; open: boolean; attempts?: number; reason?: string | null };

interface JobRow {
  id: string;
  device_id: string;
  verb: string;
  transaction_json: string | null;
  state: string;
  open: number;
  payload_sha256: string;
  summary_json: string;
  attempts: number;
  reason: string | null;
  created_at: string;
  updated_at: string;
}

function fromRow(r: JobRow): DeviceJob {
  return {
    id: r.id,
    device_id: r.device_id,
    verb: r.verb,
    transaction: r.transaction_json === null ? null : (JSON.parse(r.transaction_json) as string | number),
    state: r.state,
    open: r.open === 1,
    payload_sha256: r.payload_sha256,
    summary: JSON.parse(r.summary_json) as Record<string, unknown>,
    attempts: r.attempts,
    reason: r.reason,
    created_at: r.created_at,
    updated_at: r.updated_at,
  };
}

export class JobTable {
  private readonly stmts;

  constructor(db: Database.Database) {
    this.stmts = {
      insert: db.prepare(
        `INSERT INTO device_jobs (id, device_id, verb, transaction_json, state, open, payload_sha256, summary_json, attempts, reason, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      update: db.prepare(
        `UPDATE device_jobs SET state = ?, open = ?, attempts = COALESCE(?, attempts), reason = ?, updated_at = ? WHERE id = ? AND device_id = ?`,
      ),
      get: db.prepare(`SELECT * FROM device_jobs WHERE id = ? AND device_id = ?`),
      byTransaction: db.prepare(`SELECT * FROM device_jobs WHERE device_id = ? AND verb = ? AND transaction_json = ?`),
      open: db.prepare(`SELECT * FROM device_jobs WHERE device_id = ? AND open = 1 ORDER BY created_at, rowid`),
      recent: db.prepare(`SELECT * FROM device_jobs WHERE device_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?`),
      next: db.prepare(
        `INSERT INTO sequences (name, last) VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET last = last + 1 RETURNING last`,
      ),
    };
  }

  /** Applies a commit's job writes (inside its transaction); throws for an update of a job that is not there. */
  apply(deviceId: string, payloadSha256: string, writes: readonly JobWrite[], at: string): void {
    for (const w of writes) {
      if (w.op === 'insert') {
        const j = w.job;
        const tx = j.transaction === null ? null : JSON.stringify(j.transaction);
        this.stmts.insert.run(j.id, deviceId, j.verb, tx, j.state, j.open ? 1 : 0, payloadSha256, JSON.stringify(j.summary), j.attempts, j.reason, at, at);
      } else {
        const changed = this.stmts.update.run(w.state, w.open ? 1 : 0, w.attempts ?? null, w.reason ?? null, at, w.id, deviceId).changes;
        if (changed !== 1) throw new Error(`job ${w.id} of ${deviceId} is not in the store`);
      }
    }
  }

  get(deviceId: string, id: string): DeviceJob | undefined {
    const r = this.stmts.get.get(id, deviceId) as JobRow | undefined;
    return r ? fromRow(r) : undefined;
  }

  byTransaction(deviceId: string, verb: string, transaction: string | number): DeviceJob | undefined {
    const r = this.stmts.byTransaction.get(deviceId, verb, JSON.stringify(transaction)) as JobRow | undefined;
    return r ? fromRow(r) : undefined;
  }

  /** The jobs the device still owes, oldest first. */
  open(deviceId: string): DeviceJob[] {
    return (this.stmts.open.all(deviceId) as JobRow[]).map(fromRow);
  }

  /** The newest jobs of a device, newest first. */
  recent(deviceId: string, limit: number): DeviceJob[] {
    return (this.stmts.recent.all(deviceId, limit) as JobRow[]).map(fromRow);
  }

  /** The next number of a named sequence (1, 2, …); committed by the caller's transaction. */
  next(name: string): number {
    return (this.stmts.next.get(name) as { last: number }).last;
  }
}
