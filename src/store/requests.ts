/**
 * Device requests: the audit of who asked what (kept), and the outcome of each request that
 * carried a `transaction`, so a repeat of it (MQTT QoS 1 delivers at least once, and a client
 * may resend after a reconnect or a daemon restart) is answered with the first outcome instead
 * of running again. Outcomes are bounded: older than `OUTCOME_RETENTION_MS`, or beyond the
 * newest `MAX_OUTCOMES`, they are dropped, and a repeat that late runs again.
 */
import type Database from 'better-sqlite3';

/** Migration (appended to the store's list): who asked and the transaction on the audit row; the outcomes table. */
export const REQUESTS_MIGRATION = `
  ALTER TABLE audit ADD COLUMN requested_by TEXT;
  ALTER TABLE audit ADD COLUMN transaction_json TEXT;
  CREATE TABLE request_outcomes (
    device_id TEXT NOT NULL,
    verb TEXT NOT NULL,
    transaction_json TEXT NOT NULL,       -- JSON, so the string "1" and the number 1 stay apart
    response_json TEXT NOT NULL,          -- the response as published, without its transaction
    at TEXT NOT NULL,
    PRIMARY KEY (device_id, verb, transaction_json)
  );
  CREATE INDEX request_outcomes_at ON request_outcomes(at);
`;

export const OUTCOME_RETENTION_MS = 7 * 24 * 3600 * 1000;
export const MAX_OUTCOMES = 10_000;

export type Transaction = string | number;

export interface RequestResponse {
  status: 'ok' | 'error';
  data: unknown;
  error: string | null;
}

/**
 * One answered request. `params` must already be free of patient data (the caller redacts them).
 * `device_id` null is a bridge request: audited, its outcome not kept (bridge requests run again).
 */
export interface RequestRecord {
  device_id: string | null;
  verb: string;
  params: Record<string, unknown>;
  requested_by: string | null;
  transaction: Transaction | null;
  response: RequestResponse;
}

export interface AuditRow {
  at: string;
  device_id: string | null;
  verb: string;
  params: unknown;
  status: string;
  detail: unknown;
  requested_by: string | null;
  transaction: Transaction | null;
}

export class RequestLog {
  private readonly stmts;

  constructor(private readonly db: Database.Database) {
    this.stmts = {
      audit: db.prepare(
        `INSERT INTO audit (at, device_id, verb, params_json, status, detail_json, requested_by, transaction_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      keep: db.prepare(
        `INSERT INTO request_outcomes (device_id, verb, transaction_json, response_json, at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (device_id, verb, transaction_json) DO NOTHING`,
      ),
      outcome: db.prepare(`SELECT response_json FROM request_outcomes WHERE device_id = ? AND verb = ? AND transaction_json = ? AND at >= ?`),
      pruneOld: db.prepare(`DELETE FROM request_outcomes WHERE at < ?`),
      pruneMany: db.prepare(
        `DELETE FROM request_outcomes WHERE rowid IN (SELECT rowid FROM request_outcomes ORDER BY at DESC, rowid DESC LIMIT -1 OFFSET ?)`,
      ),
      count: db.prepare(`SELECT COUNT(*) AS n FROM request_outcomes`),
    };
  }

  /** The audit row, and the outcome when the request had a transaction, in one transaction. */
  record(entry: RequestRecord, at: Date): void {
    const when = at.toISOString();
    const tx = entry.transaction === null ? null : JSON.stringify(entry.transaction);
    this.db.transaction(() => {
      this.stmts.audit.run(
        when,
        entry.device_id,
        entry.verb,
        JSON.stringify(entry.params),
        entry.response.status,
        JSON.stringify(entry.response.error ?? entry.response.data ?? null),
        entry.requested_by,
        tx,
      );
      if (tx === null || entry.device_id === null) return;
      this.stmts.keep.run(entry.device_id, entry.verb, tx, JSON.stringify(entry.response), when);
      this.stmts.pruneOld.run(new Date(at.getTime() - OUTCOME_RETENTION_MS).toISOString());
      this.stmts.pruneMany.run(MAX_OUTCOMES);
    })();
  }

  /** The first outcome of this device + verb + transaction, if it is still kept. */
  outcome(deviceId: string, verb: string, transaction: Transaction, now: Date): RequestResponse | undefined {
    const since = new Date(now.getTime() - OUTCOME_RETENTION_MS).toISOString();
    const row = this.stmts.outcome.get(deviceId, verb, JSON.stringify(transaction), since) as { response_json: string } | undefined;
    return row ? (JSON.parse(row.response_json) as RequestResponse) : undefined;
  }

  outcomeCount(): number {
    return (this.stmts.count.get() as { n: number }).n;
  }

  auditRows(): AuditRow[] {
    const rows = this.db
      .prepare(`SELECT at, device_id, verb, params_json, status, detail_json, requested_by, transaction_json FROM audit ORDER BY id`)
      .all() as Array<Record<string, string | null>>;
    return rows.map((r) => ({
      at: r.at as string,
      device_id: r.device_id ?? null,
      verb: r.verb as string,
      params: JSON.parse(r.params_json as string),
      status: r.status as string,
      detail: r.detail_json ? JSON.parse(r.detail_json) : null,
      requested_by: r.requested_by ?? null,
      transaction: r.transaction_json ? (JSON.parse(r.transaction_json) as Transaction) : null,
    }));
  }
}
