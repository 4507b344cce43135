/**
 * The index of received DICOM instances. Each instance's Part-10 file is a blob (content-addressed,
 * fsynced and renamed into place before its row commits); the row says which SOP instance it is,
 * of which study and series, from which caller, and in which transfer syntax. A second copy of an
 * instance is known by its SOP Instance UID: the same bytes again are the same row, different
 * bytes under the same UID are a second version (the newest one counts).
 *
 * The file is also a row of `captures` (kind `raw`), so a received instance is raw bytes kept like
 * every other device's, and whatever keeps or ages out captures sees it.
 */
import Database from 'better-sqlite3';

/** Migration (appended to the store's list). */
export const DICOM_INSTANCES_MIGRATION = `
  CREATE TABLE IF NOT EXISTS dicom_instances (
    sop_instance_uid TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    transfer_syntax_uid TEXT NOT NULL,
    study_instance_uid TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL,
    calling_ae TEXT NOT NULL,
    peer TEXT NOT NULL,
    source TEXT NOT NULL,                 -- 'c-store' | 'folder'
    received_at TEXT NOT NULL,
    PRIMARY KEY (sop_instance_uid, sha256)
  );
  CREATE INDEX IF NOT EXISTS dicom_instances_study ON dicom_instances(device_id, study_instance_uid, received_at);
`;

export interface DicomInstanceRow {
  sop_instance_uid: string;
  sha256: string;
  size: number;
  device_id: string;
  sop_class_uid: string;
  transfer_syntax_uid: string;
  study_instance_uid: string;
  series_instance_uid: string;
  calling_ae: string;
  peer: string;
  source: 'c-store' | 'folder';
  received_at: string;
}

export type IndexOutcome = 'new' | 'same-bytes-again' | 'new-version';

/**
 * Its own connection to the store's database (WAL lets it write beside the daemon's writer; each
 * insert is one short transaction, synchronous FULL like the store's, so a row that returned is on
 * disk).
 */
export class DicomInstanceIndex {
  private readonly db: Database.Database;
  private readonly stmts;
  /** Built once, not per instance: `db.transaction()` makes a new wrapper each call. */
  private readonly recordTx: (row: DicomInstanceRow) => IndexOutcome;

  constructor(path: string, driver = 'dicom-ultrasound') {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 10000');
    const hasTable = this.db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dicom_instances'`).get();
    if (!hasTable) throw new Error(`${path} has no dicom_instances table: open it with the Store first (its migrations make it)`);
    this.stmts = {
      exists: this.db.prepare(`SELECT sha256 FROM dicom_instances WHERE sop_instance_uid = ?`).pluck(),
      insertCapture: this.db.prepare(
        `INSERT OR IGNORE INTO captures (id, device_id, driver, kind, size, received_at) VALUES (?, ?, '${driver}', 'raw', ?, ?)`,
      ),
      insert: this.db.prepare(
        `INSERT OR IGNORE INTO dicom_instances (sop_instance_uid, sha256, size, device_id, sop_class_uid, transfer_syntax_uid,
           study_instance_uid, series_instance_uid, calling_ae, peer, source, received_at)
         VALUES (@sop_instance_uid, @sha256, @size, @device_id, @sop_class_uid, @transfer_syntax_uid,
           @study_instance_uid, @series_instance_uid, @calling_ae, @peer, @source, @received_at)`,
      ),
      byStudy: this.db.prepare(`SELECT * FROM dicom_instances WHERE device_id = ? AND study_instance_uid = ? ORDER BY received_at, sop_instance_uid`),
      bySop: this.db.prepare(`SELECT * FROM dicom_instances WHERE sop_instance_uid = ? ORDER BY received_at DESC`),
      count: this.db.prepare(`SELECT COUNT(*) FROM dicom_instances`).pluck(),
      // Studies with more instance versions than their newest study record covers (or none yet).
      unrecorded: this.db
        .prepare(
          `SELECT i.study_instance_uid FROM
             (SELECT study_instance_uid, COUNT(*) AS n FROM dicom_instances WHERE device_id = ? GROUP BY study_instance_uid) AS i
           LEFT JOIN
             (SELECT json_extract(json, '$.study.instance_uid') AS uid, MAX(json_extract(json, '$.version')) AS v
                FROM records WHERE device_id = ? AND schema = 'poct.study/1' GROUP BY uid) AS r
           ON r.uid = i.study_instance_uid
           WHERE r.v IS NULL OR r.v < i.n
           ORDER BY i.study_instance_uid`,
        )
        .pluck(),
    };
    this.recordTx = this.db.transaction((row: DicomInstanceRow): IndexOutcome => {
      const known = this.stmts.exists.all(row.sop_instance_uid) as string[];
      if (known.includes(row.sha256)) return 'same-bytes-again';
      this.stmts.insertCapture.run(row.sha256, row.device_id, row.size, row.received_at);
      this.stmts.insert.run(row);
      return known.length > 0 ? 'new-version' : 'new';
    });
  }

  /** Records an instance whose blob is already durable; returns once the row is on disk. */
  record(row: DicomInstanceRow): IndexOutcome {
    return this.recordTx(row);
  }

  /** Every version of an instance, newest first. */
  versions(sopInstanceUid: string): DicomInstanceRow[] {
    return this.stmts.bySop.all(sopInstanceUid) as DicomInstanceRow[];
  }

  study(deviceId: string, studyInstanceUid: string): DicomInstanceRow[] {
    return this.stmts.byStudy.all(deviceId, studyInstanceUid) as DicomInstanceRow[];
  }

  /**
   * The device's studies whose instances no study record covers yet: what a daemon killed inside a
   * study's quiet period left behind (its instances were stored and answered; the record was not).
   */
  unrecordedStudies(deviceId: string): string[] {
    return this.stmts.unrecorded.all(deviceId, deviceId) as string[];
  }

  count(): number {
    return this.stmts.count.get() as number;
  }

  close(): void {
    this.db.close();
  }
}
