/**
 * Reading stored results out of the database without the daemon (`poctd results`, `poctd
 * export`, `poctd audit`): a read-only connection, so it never migrates, locks out or writes to the store a
 * running daemon holds, and never needs a broker.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import type { ResultRecord } from '../records/types.ts';
import { RequestLog, type AuditRow } from './requests.ts';
import { blobPath } from './blobs.ts';

/** What to read; every filter given must hold (a list: any of its values). */
export interface ResultQuery {
  devices?: readonly string[];
  categories?: readonly string[];
  /** Observed at or after (the time of the test, as the device dated it). */
  since?: Date;
  /** Observed before. */
  until?: Date;
  /** seq range, both ends included. */
  seqFrom?: number;
  seqTo?: number;
  /** Records with at least one observation of one of these LOINC codes. */
  loinc?: readonly string[];
  /** At most this many records (the newest when `newestFirst`, else the oldest). */
  limit?: number;
  newestFirst?: boolean;
}

/** A capture the store keeps: its reference and where its bytes are. */
export interface StoredCapture {
  sha256: string;
  size: number;
  kind: string;
  device_id: string;
  driver: string;
  received_at: string;
  path: string;
}

/** The first schema version whose records name their capture in the blob store (`raw.sha256`). */
const BLOB_STORE_VERSION = 3;

export class StoreNotFoundError extends Error {}

export class ResultReader {
  private readonly db: Database.Database;
  readonly blobDir: string;

  constructor(readonly path: string) {
    if (!existsSync(path)) throw new StoreNotFoundError(`no database at ${path} (store.path in the config; the daemon makes it on its first start)`);
    this.db = new Database(path, { readonly: true, fileMustExist: true });
    this.blobDir = join(dirname(path), 'blobs');
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version < BLOB_STORE_VERSION) {
      this.db.close();
      throw new StoreNotFoundError(`${path} is an older database (schema version ${version}): start the daemon on it once to bring it up to date`);
    }
  }

  /** Result records in seq order (or newest first), filtered. */
  *results(q: ResultQuery = {}): Generator<ResultRecord> {
    const where = [`schema LIKE 'poct.result/%'`];
    const params: unknown[] = [];
    const anyOf = (column: string, values: readonly string[] | undefined): void => {
      if (!values || values.length === 0) return;
      where.push(`${column} IN (${values.map(() => '?').join(', ')})`);
      params.push(...values);
    };
    anyOf('device_id', q.devices);
    anyOf('category', q.categories);
    if (q.seqFrom !== undefined) {
      where.push('seq >= ?');
      params.push(q.seqFrom);
    }
    if (q.seqTo !== undefined) {
      where.push('seq <= ?');
      params.push(q.seqTo);
    }
    if (q.loinc && q.loinc.length > 0) {
      where.push(`EXISTS (SELECT 1 FROM json_each(records.json, '$.observations') o
                   WHERE json_extract(o.value, '$.loinc') IN (${q.loinc.map(() => '?').join(', ')}))`);
      params.push(...q.loinc);
    }
    const sql = `SELECT json FROM records WHERE ${where.join(' AND ')} ORDER BY seq ${q.newestFirst ? 'DESC' : 'ASC'}`;
    // observed_at carries the device's own offset, so the time range is compared as instants here,
    // not as text in SQL.
    const since = q.since?.getTime();
    const until = q.until?.getTime();
    let n = 0;
    for (const json of this.db.prepare(sql).pluck().iterate(...params) as Iterable<string>) {
      if (q.limit !== undefined && n >= q.limit) return;
      const record = JSON.parse(json) as ResultRecord;
      const at = Date.parse(record.observed_at);
      if (since !== undefined && !(at >= since)) continue;
      if (until !== undefined && !(at < until)) continue;
      n++;
      yield record;
    }
  }

  /** A capture by its sha256 or an unambiguous prefix of it (at least 8 hex digits). */
  capture(ref: string): StoredCapture {
    const prefix = ref.toLowerCase();
    if (!/^[0-9a-f]{8,64}$/.test(prefix)) throw new Error(`"${ref}" is not a capture reference (its sha256, or at least its first 8 hex digits)`);
    const rows = this.db
      .prepare(`SELECT id, size, kind, device_id, driver, received_at FROM captures WHERE id >= ? AND id < ? ORDER BY id LIMIT 2`)
      .all(prefix, `${prefix}g`) as Array<{ id: string; size: number; kind: string; device_id: string; driver: string; received_at: string }>;
    if (rows.length === 0) throw new Error(`no capture ${ref} in ${this.path}`);
    if (rows.length > 1) throw new Error(`${ref} names more than one capture; give more of its sha256`);
    const row = rows[0]!;
    return { sha256: row.id, size: row.size, kind: row.kind, device_id: row.device_id, driver: row.driver, received_at: row.received_at, path: blobPath(this.blobDir, row.id) };
  }

  /** The capture a record (by seq) was decoded from. */
  captureOfSeq(seq: number): StoredCapture {
    const id = this.db.prepare(`SELECT capture_id FROM records WHERE seq = ?`).pluck().get(seq) as string | undefined;
    if (id === undefined) throw new Error(`no record with seq ${seq} in ${this.path}`);
    return this.capture(id);
  }

  /** The audit trail, oldest first, read as the store's own RequestLog reads it. */
  auditRows(): AuditRow[] {
    return new RequestLog(this.db).auditRows();
  }

  close(): void {
    this.db.close();
  }
}
