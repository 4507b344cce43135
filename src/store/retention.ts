/**
 * `store.retention`: bounded disk for a daemon that runs for years. Only what has left the daemon
 * is pruned: a record whose outbox row is published (MQTT has it, and the operations export can
 * take it out before), never one still waiting; then the captures no record names any more, and
 * the blob files no capture or quarantine row names. The newest record always stays, so `seq`
 * (MAX + 1) never goes back and a subscriber never sees a number twice.
 *
 * Runs on the writer thread (writer-worker.js) in batches, so a commit waits for one batch at most.
 */
import type Database from 'better-sqlite3';
import { rmSync } from 'node:fs';
import type { BlobStore } from './blobs.ts';

export interface RetentionSettings {
  /** Published records older than this many days (by received_at) are pruned. */
  max_age_days?: number;
  /** At most this many records are kept; the oldest published ones beyond it are pruned. */
  max_records?: number;
  /** Quarantine rows older than this many days are pruned (default: max_age_days). */
  quarantine_max_age_days?: number;
}

export interface PruneOutcome {
  records: number;
  captures: number;
  quarantine: number;
  blobs: number;
  /** True when the batch was full: call again for the rest. */
  more: boolean;
}

const DAY_MS = 86_400_000;

/** Whether any pruning is asked for. */
export function retentionEnabled(r: RetentionSettings | undefined): r is RetentionSettings {
  return !!r && (r.max_age_days !== undefined || r.max_records !== undefined || r.quarantine_max_age_days !== undefined);
}

/**
 * One batch of pruning (at most `batch` records, captures and quarantine rows each). The rows go in
 * one transaction; the blob files after it, each only if no row names it any more.
 */
export function pruneOnce(db: Database.Database, blobs: BlobStore, settings: RetentionSettings, now: Date, batch = 2000): PruneOutcome {
  const out: PruneOutcome = { records: 0, captures: 0, quarantine: 0, blobs: 0, more: false };
  const maxSeq = (db.prepare(`SELECT COALESCE(MAX(seq), 0) AS m FROM records`).get() as { m: number }).m;
  const doomed = new Set<string>();
  db.transaction(() => {
    const seqs = new Set<number>();
    if (settings.max_age_days !== undefined) {
      const before = new Date(now.getTime() - settings.max_age_days * DAY_MS).toISOString();
      for (const s of db
        .prepare(
          `SELECT r.seq FROM records r JOIN outbox o ON o.seq = r.seq
            WHERE o.published_at IS NOT NULL AND r.received_at < ? AND r.seq < ? ORDER BY r.seq LIMIT ?`,
        )
        .pluck()
        .all(before, maxSeq, batch) as number[])
        seqs.add(s);
    }
    if (settings.max_records !== undefined && seqs.size < batch) {
      const total = (db.prepare(`SELECT COUNT(*) AS n FROM records`).get() as { n: number }).n;
      const excess = Math.min(total - Math.max(1, settings.max_records) - seqs.size, batch - seqs.size);
      if (excess > 0) {
        for (const s of db
          .prepare(
            `SELECT r.seq FROM records r JOIN outbox o ON o.seq = r.seq
              WHERE o.published_at IS NOT NULL AND r.seq < ? ORDER BY r.seq LIMIT ?`,
          )
          .pluck()
          .all(maxSeq, excess + seqs.size) as number[]) {
          if (seqs.size >= batch) break;
          seqs.add(s);
        }
      }
    }
    const captureOf = db.prepare(`SELECT capture_id FROM records WHERE seq = ?`).pluck();
    const freed = new Set<string>();
    const delOutbox = db.prepare(`DELETE FROM outbox WHERE seq = ?`);
    const delRecord = db.prepare(`DELETE FROM records WHERE seq = ?`);
    for (const s of seqs) {
      freed.add(captureOf.get(s) as string);
      delOutbox.run(s);
      delRecord.run(s);
    }
    out.records = seqs.size;

    // Captures no record names any more: those of the records just pruned, and any older than the
    // age limit (a capture kept with no new record in it: the first of its kind that day).
    const named = db.prepare(`SELECT 1 FROM records WHERE capture_id = ? LIMIT 1`);
    const delCapture = db.prepare(`DELETE FROM captures WHERE id = ?`);
    const drop = (id: string): void => {
      if (named.get(id)) return;
      if (delCapture.run(id).changes > 0) {
        doomed.add(id);
        out.captures++;
      }
    };
    for (const id of freed) drop(id);
    if (settings.max_age_days !== undefined) {
      const before = new Date(now.getTime() - settings.max_age_days * DAY_MS).toISOString();
      const old = db
        .prepare(`SELECT c.id FROM captures c WHERE c.received_at < ? AND NOT EXISTS (SELECT 1 FROM records r WHERE r.capture_id = c.id) LIMIT ?`)
        .pluck()
        .all(before, batch) as string[];
      for (const id of old) drop(id);
    }

    const qAge = settings.quarantine_max_age_days ?? settings.max_age_days;
    if (qAge !== undefined) {
      const before = new Date(now.getTime() - qAge * DAY_MS).toISOString();
      const rows = db.prepare(`SELECT id, sha256 FROM quarantine WHERE received_at < ? ORDER BY id LIMIT ?`).all(before, batch) as Array<{ id: number; sha256: string }>;
      const delQ = db.prepare(`DELETE FROM quarantine WHERE id = ?`);
      for (const q of rows) {
        delQ.run(q.id);
        doomed.add(q.sha256);
      }
      out.quarantine = rows.length;
    }
  })();
  const stillNamed = db.prepare(`SELECT (SELECT 1 FROM captures WHERE id = ?) AS c, (SELECT 1 FROM quarantine WHERE sha256 = ? LIMIT 1) AS q`);
  for (const sha of doomed) {
    const named = stillNamed.get(sha, sha) as { c: number | null; q: number | null };
    if (named.c || named.q) continue;
    try {
      rmSync(blobs.pathOf(sha), { force: true });
      out.blobs++;
    } catch {
      // Not a blob name, or already gone: nothing to free.
    }
  }
  out.more = out.records >= batch || out.captures >= batch || out.quarantine >= batch;
  return out;
}
