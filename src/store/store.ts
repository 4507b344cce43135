import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { finalize } from '../records/finalize.ts';
import { eachDraft, RECORD_KINDS, type AnyRecord, type RecordDrafts } from '../records/kinds.ts';
import { hashPatientId, resolvePrivacy, type PrivacySettings, type PrivateField } from '../records/privacy.ts';
import { RESULT_SCHEMA, type CaptureKind, type DeviceState, type RawRef } from '../records/types.ts';
import { BlobStore, type BlobFileSystem } from './blobs.ts';
import { JOBS_MIGRATION, JobTable, type JobWrite } from './jobs.ts';
import { DICOM_INSTANCES_MIGRATION } from './dicom-instances.ts';
import { pruneOnce, type PruneOutcome, type RetentionSettings } from './retention.ts';
import { REQUESTS_MIGRATION, RequestLog, type AuditRow, type RequestRecord, type RequestResponse, type Transaction } from './requests.ts';

/**
 * The source of truth. Records, the references to the raw bytes they came from (the bytes are in
 * the blob store beside the database), the outbox that MQTT drains, devices, and an audit of
 * commands live in one SQLite file in WAL mode. MQTT is a view of it.
 */

/** What a migration written in code is given: the connection, the blob store, and the store's hash key. */
interface MigrationContext {
  db: Database.Database;
  blobs: BlobStore;
  localHashKey: () => Buffer;
}

type Migration = string | ((context: MigrationContext) => void);

const MIGRATIONS: Migration[] = [
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
  moveCapturesToBlobStore,
  // Device requests (issue 9): who asked and the transaction on each audit row, and the first
  // outcome of each transaction so a repeated request is answered, not run again (requests.ts).
  REQUESTS_MIGRATION,
  moveQuarantineToBlobStore,
  // Durable device jobs (issue 11: print jobs) and named sequences (issued specimen ids): jobs.ts.
  JOBS_MIGRATION,
  // Received DICOM instances (issue 12): which SOP instance each Part-10 blob is (dicom-instances.ts).
  DICOM_INSTANCES_MIGRATION,
  // Bounded disk (issue 16): retention asks which captures records still name, and a commit that
  // inserted nothing asks for the device's captures of the day and its last one, whose
  // drafts_digest (the record ids it held) says whether this one holds anything else.
  ({ db }) => {
    db.exec(`CREATE INDEX IF NOT EXISTS records_capture ON records(capture_id);
      CREATE INDEX IF NOT EXISTS captures_device ON captures(device_id, received_at);`);
    const columns = db.prepare(`SELECT name FROM pragma_table_info('captures')`).pluck().all() as string[];
    if (!columns.includes('drafts_digest')) db.exec(`ALTER TABLE captures ADD COLUMN drafts_digest TEXT`);
  },
];

/**
 * The schema version from which quarantined bytes live in the blob store too (capture bytes moved
 * there at version 3): from below it, a migration leaves free pages behind.
 */
const QUARANTINE_BLOBS_VERSION = 5;

/**
 * Version 3: the bytes of every capture move out of SQLite into the blob store (a 500 MB file has
 * no place in a row), `captures` keeps the reference (sha256 = id, size, kind), and the stored
 * `poct.result/1` records become `poct.result/2`, whose `raw` names the blob once, so replays and
 * republishes of old and new records look alike. Each blob is synced before the transaction that
 * drops its bytes commits; a crash in between leaves the old schema and a blob that the next
 * start writes again (it is named by its content, so that changes nothing).
 *
 * Before the store applied privacy itself, a caller that passed no policy stored patient ids in
 * the clear, and the rows do not say which policy they were stored under. The store, opened
 * without the site's config, cannot tell a `publish` site from a forgotten policy, so the rewrite
 * fails closed: every patient id not already protected (an `hmac:` hash, or omitted) is hashed with
 * this store's key. A `publish` site's older records thus come out hashed, never a clear id that
 * no policy asked for.
 */
function moveCapturesToBlobStore({ db, blobs, localHashKey }: MigrationContext): void {
  const ids = db.prepare(`SELECT id FROM captures`).pluck().all() as string[];
  const bytesOf = db.prepare(`SELECT bytes FROM captures WHERE id = ?`).pluck();
  const sizes = new Map<string, number>();
  for (const id of ids) {
    const bytes = bytesOf.get(id) as Buffer;
    const ref = blobs.putSync(bytes);
    if (ref.sha256 !== id) throw new Error(`capture ${id}: its bytes hash to ${ref.sha256}; the database is damaged`);
    sizes.set(id, ref.size);
  }
  db.exec(`ALTER TABLE captures ADD COLUMN size INTEGER NOT NULL DEFAULT 0`);
  const setSize = db.prepare(`UPDATE captures SET size = ? WHERE id = ?`);
  for (const [id, size] of sizes) setSize.run(size, id);
  db.exec(`ALTER TABLE captures DROP COLUMN bytes`);
  const oldRecords = db
    .prepare(
      `SELECT r.seq, r.json, c.id AS sha256, c.size, c.kind FROM records r JOIN captures c ON c.id = r.capture_id
        WHERE r.schema = 'poct.result/1'`,
    )
    .all() as Array<{ seq: number; json: string; sha256: string; size: number; kind: CaptureKind }>;
  const rewrite = db.prepare(`UPDATE records SET schema = ?, json = ? WHERE seq = ?`);
  const key = oldRecords.length > 0 ? localHashKey() : undefined;
  for (const row of oldRecords) {
    const record = JSON.parse(row.json) as Record<string, unknown>;
    const raw: RawRef = { sha256: row.sha256, size: row.size, kind: row.kind };
    const fields = RECORD_KINDS.result.privateFields;
    const protectedRecord = fields.reduce<unknown>((node, field) => protectClearIds(node, field, key!), record) as Record<string, unknown>;
    rewrite.run(RESULT_SCHEMA, JSON.stringify({ ...protectedRecord, schema: RESULT_SCHEMA, raw }), row.seq);
  }
}

/** A patient id already protected by a policy: hashed (`hashPatientId`'s form) or omitted. */
const PROTECTED_ID = /^hmac:[0-9a-f]{32}$/;

/**
 * `node` (changed in place) with each value at `path` hashed unless it is already protected. Like
 * `applyPrivacy`, it fails closed on a value of the wrong shape: that is hashed whole.
 */
function protectClearIds(node: unknown, path: PrivateField, key: Buffer): unknown {
  if (node === null || node === undefined || node === '') return node;
  if (path.length === 0) {
    if (typeof node === 'string' && PROTECTED_ID.test(node)) return node;
    return hashPatientId(typeof node === 'string' ? node : JSON.stringify(node), key);
  }
  const [step, ...rest] = path as [string, ...string[]];
  if (step === '*') {
    if (!Array.isArray(node)) return protectClearIds(node, [], key);
    for (let i = 0; i < node.length; i++) node[i] = protectClearIds(node[i], rest, key);
    return node;
  }
  if (typeof node !== 'object' || Array.isArray(node)) return protectClearIds(node, [], key);
  const holder = node as Record<string, unknown>;
  if (Object.hasOwn(holder, step)) holder[step] = protectClearIds(holder[step], rest, key);
  return holder;
}

/**
 * Version 5: quarantined bytes move to the blob store too (a refused file, a DICOM instance later,
 * has no place in a row either); each row keeps the reference (sha256, size). The blobs are all
 * written, then synced together, before the transaction that drops the bytes commits: a burst of
 * line noise can have left tens of thousands of rows.
 */
function moveQuarantineToBlobStore({ db, blobs }: MigrationContext): void {
  const rows = db.prepare(`SELECT id, bytes FROM quarantine ORDER BY id`).all() as Array<{ id: number; bytes: Buffer }>;
  const refs = blobs.putManySync(rows.map((r) => r.bytes));
  db.exec(`ALTER TABLE quarantine ADD COLUMN size INTEGER NOT NULL DEFAULT 0`);
  // The bytes are what was kept; the hash is made from them again rather than trusted.
  const setRef = db.prepare(`UPDATE quarantine SET sha256 = ?, size = ? WHERE id = ?`);
  rows.forEach((row, i) => setRef.run(refs[i]!.sha256, refs[i]!.size, row.id));
  db.exec(`ALTER TABLE quarantine DROP COLUMN bytes`);
}

/** The record ids a capture's drafts make, as one hash (order-free). */
function draftsDigest(drafts: RecordDrafts): string {
  const ids = eachDraft(drafts)
    .map(({ kind, draft }) => kind.id(draft))
    .sort();
  return createHash('sha256').update(ids.join('\n')).digest('hex');
}

/** Bytes refused by a driver, to keep in quarantine (rule 6). */
export interface QuarantineEntry {
  deviceId: string;
  bytes: Buffer;
  reason: string;
  at: Date;
}

/** A quarantine row, with its bytes read back from the blob store. */
export interface QuarantinedBytes {
  device_id: string;
  reason: string;
  sha256: string;
  size: number;
  received_at: string;
  bytes: Buffer;
}

export interface CommitOutcome {
  inserted: AnyRecord[];
  duplicates: number;
  captureId: string;
}

export interface CommitInput {
  site: string;
  deviceId: string;
  driver: string;
  /** The capture, already durable in the blob store (`BlobStore.put`): the rows name it. */
  capture: RawRef;
  /** The session's drafts by record kind. */
  drafts: RecordDrafts;
  receivedAt: Date;
  /** IANA zone of the device's clock, for the DST flags. */
  timezone: string;
  /**
   * The site's privacy settings, applied before anything is written. Required; if a caller still
   * passes none, patient ids are hashed with this store's key (see `resolvePrivacy`).
   */
  privacy: PrivacySettings;
  /**
   * Changes to the device's durable jobs (jobs.ts), written in the same transaction as the
   * records: a job and the record that announces it are stored together or not at all. A new
   * job's bytes are this commit's capture.
   */
  jobs?: readonly JobWrite[];
}

/** A capture's bytes, not yet stored: the group commit puts them in the blob store before its rows. */
export interface CaptureBytes {
  kind: CaptureKind;
  bytes: Buffer;
}

/** A commit whose capture is either already in the blob store or its bytes, for the writer to put. */
export type GroupCommitInput = Omit<CommitInput, 'capture'> & { capture: RawRef | CaptureBytes };

/** A stored record as its row holds it, with the schema that says which kind (and topic) it is. */
export interface StoredRecordRow {
  seq: number;
  device_id: string;
  schema: string;
  json: string;
}

export class Store {
  private readonly db: Database.Database;
  private readonly stmts;
  private readonly requests: RequestLog;
  /** The durable device jobs and sequences (reads here; writes through a commit or `nextSequence`). */
  readonly jobs: JobTable;

  /** The raw bytes, by sha256, beside the database (`<dir>/blobs/`) unless `blobDir` says otherwise. */
  readonly blobs: BlobStore;

  /**
   * `checkpointElsewhere`: this connection never copies the WAL into the database file inside a
   * commit; its owner calls `checkpoint` between commits (the writer thread, writer-worker.js).
   */
  constructor(path: string, options: { checkpointElsewhere?: boolean; blobDir?: string; blobFs?: BlobFileSystem } = {}) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    const blobDir = options.blobDir ?? (path === ':memory:' ? undefined : join(dirname(path), 'blobs'));
    if (!blobDir) throw new Error('a store in memory needs a blobDir for its raw captures');
    this.blobs = new BlobStore(blobDir, options.blobFs);
    // The writer thread's store is opened while the main thread's writes may be under way.
    if (!options.checkpointElsewhere) this.blobs.sweepStaleTemp();
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    if (options.checkpointElsewhere) this.db.pragma('wal_autocheckpoint = 0');
    // FULL: a record the device was told "received" survives a power cut, not only a crash.
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.migrate();
    this.requests = new RequestLog(this.db);
    this.jobs = new JobTable(this.db);
    this.stmts = {
      insertCapture: this.db.prepare(
        `INSERT OR IGNORE INTO captures (id, device_id, driver, kind, size, received_at, drafts_digest) VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ),
      recordExists: this.db.prepare(`SELECT 1 FROM records WHERE id = ?`),
      nextSeq: this.db.prepare(`SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM records`),
      insertRecord: this.db.prepare(
        `INSERT INTO records (seq, id, device_id, schema, category, capture_id, json, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      insertOutbox: this.db.prepare(`INSERT INTO outbox (seq, device_id) VALUES (?, ?)`),
      pending: this.db.prepare(
        `SELECT r.seq, r.device_id, r.schema, r.json FROM outbox o JOIN records r ON r.seq = o.seq
          WHERE o.published_at IS NULL AND o.seq > ? ORDER BY o.seq LIMIT ?`,
      ),
      markPublished: this.db.prepare(`UPDATE outbox SET published_at = ? WHERE seq = ? AND published_at IS NULL`),
      outboxDepth: this.db.prepare(`SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL`),
      since: this.db.prepare(`SELECT seq, device_id, schema, json FROM records WHERE seq > ? ORDER BY seq LIMIT ?`),
      recordCount: this.db.prepare(`SELECT COUNT(*) AS n FROM records`),
      capture: this.db.prepare(`SELECT id, device_id, driver, kind, size FROM captures WHERE id = ?`),
      quarantine: this.db.prepare(`INSERT INTO quarantine (device_id, reason, sha256, size, received_at) VALUES (?, ?, ?, ?, ?)`),
      upsertDevice: this.db.prepare(
        `INSERT INTO devices (id, driver, state_json, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT(id) DO UPDATE SET driver = excluded.driver, state_json = excluded.state_json, updated_at = excluded.updated_at`,
      ),
      device: this.db.prepare(`SELECT state_json FROM devices WHERE id = ?`),
      captureOfDay: this.db.prepare(`SELECT 1 FROM captures WHERE device_id = ? AND kind = ? AND received_at >= ? LIMIT 1`),
      lastCapture: this.db.prepare(`SELECT id, drafts_digest AS digest FROM captures WHERE device_id = ? ORDER BY received_at DESC, rowid DESC LIMIT 1`),
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

  /** Copies what it can of the WAL back into the database file, without waiting for readers. */
  checkpoint(): void {
    this.db.pragma('wal_checkpoint(PASSIVE)');
  }

  /**
   * Copies the whole WAL back and truncates it to zero bytes (`store.wal_max_mb`); false when a
   * reader kept it busy (the next try goes on).
   */
  checkpointTruncate(): boolean {
    const [row] = this.db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
    return row?.busy === 0;
  }

  /** The WAL file's size in bytes (0 when there is none). */
  walBytes(): number {
    try {
      return statSync(`${this.db.name}-wal`).size;
    } catch {
      return 0;
    }
  }

  /** One batch of `store.retention` pruning (retention.ts). */
  prune(settings: RetentionSettings, now: Date = new Date(), batch?: number): PruneOutcome {
    return pruneOnce(this.db, this.blobs, settings, now, batch);
  }

  /**
   * Whether a commit's capture is worth keeping (issue 16: a meter polled every few seconds stored
   * its whole memory again each time, 10 MB for 2 205 records in 6 minutes): yes when a draft is
   * new, when the device has no capture of this kind yet today (UTC), or when it differs from the
   * device's last stored capture: in its bytes and in the records it holds (a poll whose transcript
   * differs only by the meter's clock holds the same records, and is not kept again).
   */
  captureWorthKeeping(input: { deviceId: string; drafts: RecordDrafts; receivedAt: Date; capture: { kind: CaptureKind } }, sha256: string): boolean {
    for (const { kind, draft } of eachDraft(input.drafts)) if (!this.stmts.recordExists.get(kind.id(draft))) return true;
    const day = input.receivedAt.toISOString().slice(0, 10);
    if (!this.stmts.captureOfDay.get(input.deviceId, input.capture.kind, `${day}T00:00:00.000Z`)) return true;
    const last = this.stmts.lastCapture.get(input.deviceId) as { id: string; digest: string | null } | undefined;
    if (!last) return true;
    return last.id !== sha256 && last.digest !== draftsDigest(input.drafts);
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    for (let v = version; v < MIGRATIONS.length; v++) {
      const migration = MIGRATIONS[v]!;
      this.db.transaction(() => {
        if (typeof migration === 'string') this.db.exec(migration);
        else migration({ db: this.db, blobs: this.blobs, localHashKey: () => this.localHashKey() });
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
    // The bytes that moved to the blob store (versions 3 and 5) leave free pages behind; give them back to the disk once.
    if (version > 0 && version < QUARANTINE_BLOBS_VERSION && MIGRATIONS.length >= QUARANTINE_BLOBS_VERSION) this.db.exec('VACUUM');
  }

  /**
   * Puts a capture's bytes into the blob store on this thread and gives its reference, for callers
   * already off the event loop (tools, tests); the daemon uses the asynchronous `blobs.put`.
   */
  putCaptureSync(kind: CaptureKind, bytes: Buffer): RawRef {
    return { ...this.blobs.putSync(bytes), kind };
  }

  /**
   * Stores the capture's reference and every draft not stored before, each finalized (id, seq,
   * site, DST flags, privacy) with the next seq and an outbox row, in one transaction. When this
   * returns, it is on disk: only then may a device hear "received". The capture's bytes must be in
   * the blob store already: a row never names a blob that is not there.
   */
  commit(input: CommitInput): CommitOutcome {
    const receivedAt = input.receivedAt.toISOString();
    const raw: RawRef = { sha256: input.capture.sha256, size: input.capture.size, kind: input.capture.kind };
    const onDisk = this.blobs.sizeOf(raw.sha256);
    if (onDisk !== raw.size) {
      throw new Error(`capture ${raw.sha256} is not in the blob store (${onDisk === undefined ? 'missing' : `${onDisk} bytes, not ${raw.size}`}); it must be put before its records commit`);
    }
    const drafts = eachDraft(input.drafts);
    const run = this.db.transaction((): CommitOutcome => {
      this.stmts.insertCapture.run(raw.sha256, input.deviceId, input.driver, raw.kind, raw.size, receivedAt, draftsDigest(input.drafts));
      const privacy = resolvePrivacy(input.privacy, this.localHashKey());
      const inserted: AnyRecord[] = [];
      let duplicates = 0;
      for (const { kind, draft } of drafts) {
        const id = kind.id(draft);
        if (this.stmts.recordExists.get(id)) {
          duplicates++;
          continue;
        }
        const seq = (this.stmts.nextSeq.get() as { seq: number }).seq;
        const record = finalize(kind, draft, { seq, site: input.site, receivedAt, raw, timezone: input.timezone, privacy });
        this.stmts.insertRecord.run(seq, id, input.deviceId, kind.schema, kind.category(draft), raw.sha256, JSON.stringify(record), receivedAt);
        this.stmts.insertOutbox.run(seq, input.deviceId);
        inserted.push(record);
      }
      if (input.jobs && input.jobs.length > 0) this.jobs.apply(input.deviceId, raw.sha256, input.jobs, receivedAt);
      return { inserted, duplicates, captureId: raw.sha256 };
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
          return this.commit(input);
        } catch (error) {
          return error instanceof Error ? error : new Error(String(error));
        }
      }),
    )();
  }

  /**
   * The writer thread's group commit: the captures that come as bytes go into the blob store
   * together (`BlobStore.putMany`: their files and directories synced once for the group), then
   * every input whose capture is durable commits in one transaction. An input whose blob could not
   * be stored is not committed and comes back as its Error, as does one that fails in SQLite.
   */
  async commitGroup(inputs: readonly GroupCommitInput[]): Promise<Array<CommitOutcome | Error>> {
    const outcomes: Array<CommitOutcome | Error | undefined> = inputs.map(() => undefined);
    // A capture that brought nothing new, of a kind the device already sent today, the same as its
    // last one, is not stored again: the commit would only count duplicates.
    const withBytes = inputs.flatMap((input, i) => {
      if (!('bytes' in input.capture)) return [];
      const sha256 = createHash('sha256').update(input.capture.bytes).digest('hex');
      if (this.captureWorthKeeping({ ...input, capture: input.capture }, sha256)) return [{ i, bytes: input.capture.bytes }];
      outcomes[i] = { inserted: [], duplicates: eachDraft(input.drafts).length, captureId: sha256 };
      return [];
    });
    const blobs = await this.blobs.putMany(withBytes.map((c) => c.bytes));
    const ready: CommitInput[] = [];
    const readyAt: number[] = [];
    const refOf = new Map(withBytes.map((c, k) => [c.i, blobs[k]!]));
    inputs.forEach((input, i) => {
      if (outcomes[i]) return;
      const blob = refOf.get(i);
      if (blob instanceof Error) {
        outcomes[i] = blob;
        return;
      }
      const capture: RawRef = blob ? { ...blob, kind: input.capture.kind } : (input.capture as RawRef);
      ready.push({ ...input, capture });
      readyAt.push(i);
    });
    if (ready.length > 0) this.commitMany(ready).forEach((outcome, k) => (outcomes[readyAt[k]!] = outcome));
    return outcomes as Array<CommitOutcome | Error>;
  }

  /** Unpublished records after `afterSeq`, oldest first. */
  pendingOutbox(afterSeq: number, limit: number): AnyRecord[] {
    return this.pendingOutboxJson(afterSeq, limit).map((r) => JSON.parse(r.json) as AnyRecord);
  }

  /** The same rows as stored JSON text, for publishing without parsing and re-serialising. */
  pendingOutboxJson(afterSeq: number, limit: number): StoredRecordRow[] {
    return this.stmts.pending.all(afterSeq, limit) as StoredRecordRow[];
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

  /** When the oldest record still waiting to be published was received (ISO text), or null when none waits. */
  oldestUnpublishedAt(): string | null {
    const row = this.db
      .prepare(`SELECT r.received_at AS at FROM outbox o JOIN records r ON r.seq = o.seq WHERE o.published_at IS NULL ORDER BY o.seq LIMIT 1`)
      .get() as { at: string } | undefined;
    return row?.at ?? null;
  }

  recordCount(): number {
    return (this.stmts.recordCount.get() as { n: number }).n;
  }

  recordsSince(sinceSeq: number, limit: number): AnyRecord[] {
    return this.recordRowsSince(sinceSeq, limit).map((r) => JSON.parse(r.json) as AnyRecord);
  }

  /** Stored records after `sinceSeq` as their rows hold them (JSON text and schema), oldest first. */
  recordRowsSince(sinceSeq: number, limit: number): StoredRecordRow[] {
    return this.stmts.since.all(sinceSeq, limit) as StoredRecordRow[];
  }

  /** A capture's reference and its bytes, read back from the blob store and checked against its sha256. */
  capture(id: string): { id: string; device_id: string; driver: string; kind: CaptureKind; size: number; bytes: Buffer } | undefined {
    const row = this.stmts.capture.get(id) as { id: string; device_id: string; driver: string; kind: CaptureKind; size: number } | undefined;
    return row ? { ...row, bytes: this.blobs.read(row.id) } : undefined;
  }

  /** Keeps refused bytes on this thread: their blob, then the row that names it (tools, tests). */
  quarantine(deviceId: string, bytes: Buffer, reason: string, at: Date = new Date()): void {
    const ref = this.blobs.putSync(bytes);
    this.stmts.quarantine.run(deviceId, reason, ref.sha256, ref.size, at.toISOString());
  }

  /**
   * Keeps many refused chunks at once (the writer thread's bookkeeping slice): their blobs put and
   * synced together (`BlobStore.putMany`), then their rows in one transaction, so a burst of garbage
   * costs the disk one wait per slice, not one per chunk. Each entry is its own savepoint: one whose
   * blob or row fails is its Error (null: kept), and the others are kept.
   */
  async quarantineMany(entries: readonly QuarantineEntry[]): Promise<Array<Error | null>> {
    const refs = await this.blobs.putMany(entries.map((e) => e.bytes));
    return this.db.transaction(() =>
      entries.map((entry, i) => {
        const ref = refs[i]!;
        if (ref instanceof Error) return ref;
        try {
          this.db.transaction(() => this.stmts.quarantine.run(entry.deviceId, entry.reason, ref.sha256, ref.size, entry.at.toISOString()))();
          return null;
        } catch (error) {
          return error instanceof Error ? error : new Error(String(error));
        }
      }),
    )();
  }

  quarantineCount(): number {
    return (this.db.prepare(`SELECT COUNT(*) AS n FROM quarantine`).get() as { n: number }).n;
  }

  /** Every quarantine row, oldest first, with its bytes read back (and checked) from the blob store. */
  quarantined(): QuarantinedBytes[] {
    const rows = this.db.prepare(`SELECT device_id, reason, sha256, size, received_at FROM quarantine ORDER BY id`).all() as Array<
      Omit<QuarantinedBytes, 'bytes'>
    >;
    return rows.map((row) => ({ ...row, bytes: this.blobs.read(row.sha256) }));
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

  /** The ids of every device whose state the store remembers (configured now or not). */
  deviceIds(): string[] {
    return this.db.prepare(`SELECT id FROM devices ORDER BY id`).pluck().all() as string[];
  }

  deviceState(id: string): DeviceState | undefined {
    const row = this.stmts.device.get(id) as { state_json: string } | undefined;
    return row ? (JSON.parse(row.state_json) as DeviceState) : undefined;
  }

  /** A device request answered: its audit row, and its outcome for repeats of its transaction. */
  recordRequest(entry: RequestRecord, at: Date = new Date()): void {
    this.requests.record(entry, at);
  }

  /** The first outcome of a request with this transaction, when it is still kept. */
  requestOutcome(deviceId: string, verb: string, transaction: Transaction, now: Date = new Date()): RequestResponse | undefined {
    return this.requests.outcome(deviceId, verb, transaction, now);
  }

  /** The next number of a named sequence, committed (and synced) before it is returned: never given twice. */
  nextSequence(name: string): number {
    return this.db.transaction(() => this.jobs.next(name))();
  }

  /** Every audit row with who asked and the transaction, oldest first. */
  auditRows(): AuditRow[] {
    return this.requests.auditRows();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
