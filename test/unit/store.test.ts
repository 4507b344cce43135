import Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { PatientIdPolicy } from '../../src/config/types.ts';
import { hashPatientId, type PrivacySettings } from '../../src/records/privacy.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import type { ResultDraft, ResultRecord } from '../../src/records/types.ts';
import { Store, type CommitInput } from '../../src/store/store.ts';
import { tempDir } from '../helpers/daemon.ts';
import { glucoseDraft } from '../helpers/records.ts';

function tempStore(): { store: Store; path: string } {
  const path = join(tempDir('poctd-store-'), 'poctd.db');
  return { store: new Store(path), path };
}

function input(store: Store, drafts: ResultDraft[], bytes: Buffer, privacy: PrivacySettings = { patient_id: 'hash' }): CommitInput {
  return {
    site: 'clinic-a',
    deviceId: 'bench1',
    driver: 'onetouch-ultra2',
    capture: store.putCaptureSync('raw', bytes),
    drafts: { result: drafts },
    receivedAt: new Date('2026-11-22T09:00:00Z'),
    timezone: 'Europe/Copenhagen',
    privacy,
  };
}

function commit(store: Store, drafts = [glucoseDraft(1), glucoseDraft(2)], bytes = Buffer.from('capture-1')) {
  return store.commit(input(store, drafts, bytes));
}

const results = (records: unknown[]): ResultRecord[] => records as ResultRecord[];

describe('Store', () => {
  it('commits records with gap-free seq, raw capture and outbox rows; records validate', () => {
    const { store } = tempStore();
    const out = commit(store);
    expect(out.inserted.map((r) => r.seq)).toEqual([1, 2]);
    expect(out.duplicates).toBe(0);
    for (const record of out.inserted) expect(schemaProblems('poct.result/2', record)).toEqual([]);
    expect(store.outboxDepth()).toBe(2);
    const capture = store.capture(out.captureId);
    expect(capture?.bytes.toString()).toBe('capture-1');
    const sha256 = createHash('sha256').update('capture-1').digest('hex');
    expect(out.captureId).toBe(sha256);
    expect(out.inserted[0]!.raw).toEqual({ sha256, size: 9, kind: 'raw' });
    store.close();
  });

  it('keeps the capture in the blob store beside the database, and only its reference in SQLite', () => {
    const { store, path } = tempStore();
    const bytes = Buffer.from('a capture only the blob store holds');
    const out = commit(store, [glucoseDraft(1)], bytes);
    const blob = join(path, '..', 'blobs', out.captureId.slice(0, 2), out.captureId);
    expect(readFileSync(blob)).toEqual(bytes);
    store.close();
    const db = new Database(path, { readonly: true });
    expect(db.prepare(`SELECT id, kind, size FROM captures`).all()).toEqual([{ id: out.captureId, kind: 'raw', size: bytes.length }]);
    expect((db.prepare(`PRAGMA table_info(captures)`).all() as Array<{ name: string }>).map((c) => c.name)).not.toContain('bytes');
    db.close();
  });

  it('refuses to commit rows that name a capture the blob store does not hold', () => {
    const { store } = tempStore();
    const missing = { sha256: 'ab'.repeat(32), size: 3, kind: 'raw' as const };
    expect(() => store.commit({ ...input(store, [glucoseDraft(1)], Buffer.from('x')), capture: missing })).toThrow(/not in the blob store/);
    const wrongSize = { ...store.putCaptureSync('raw', Buffer.from('four')), size: 5 };
    expect(() => store.commit({ ...input(store, [glucoseDraft(1)], Buffer.from('x')), capture: wrongSize })).toThrow(/4 bytes, not 5/);
    expect(store.recordCount()).toBe(0);
    store.close();
  });

  it('finalizes in the commit: the DST flag on an ambiguous device time, in the device zone', () => {
    const { store } = tempStore();
    const repeated = glucoseDraft(1, { device_time: '2026-10-25T02:30:00', observed_at: '2026-10-25T02:30:00+02:00' });
    const out = store.commit(input(store, [repeated, glucoseDraft(2)], Buffer.from('dst')));
    expect(results(out.inserted).map((r) => r.flags)).toEqual([['device-time:repeated-hour'], []]);
    store.close();
  });

  it('refuses a draft kind that no record kind has, storing nothing', () => {
    const { store } = tempStore();
    const bad = { ...input(store, [glucoseDraft(1)], Buffer.from('k')), drafts: { result: [glucoseDraft(1)], studdy: [] } as CommitInput['drafts'] };
    expect(() => store.commit(bad)).toThrow(/unknown record kind "studdy"/);
    expect(store.recordCount()).toBe(0);
    store.close();
  });

  it('ignores a re-download of the same memory: same ids, nothing new, seq stays gap-free', () => {
    const { store } = tempStore();
    commit(store);
    const again = commit(store, [glucoseDraft(1), glucoseDraft(2), glucoseDraft(3)], Buffer.from('capture-2'));
    expect(again.duplicates).toBe(2);
    expect(again.inserted.map((r) => r.seq)).toEqual([3]);
    expect(store.recordCount()).toBe(3);
    store.close();
  });

  it('keeps everything across a reopen, including what was not yet published', () => {
    const { store, path } = tempStore();
    const out = commit(store);
    store.markPublished(out.inserted[0]!.seq);
    store.close();
    const reopened = new Store(path);
    expect(reopened.pendingOutbox(0, 10).map((r) => r.seq)).toEqual([2]);
    expect(reopened.recordsSince(0, 10)).toHaveLength(2);
    reopened.close();
  });

  it('serves the outbox in seq order after a given seq', () => {
    const { store } = tempStore();
    commit(store, [1, 2, 3, 4, 5].map((n) => glucoseDraft(n)));
    expect(store.pendingOutbox(2, 2).map((r) => r.seq)).toEqual([3, 4]);
    store.markPublishedMany([1, 2, 3]);
    expect(store.outboxDepth()).toBe(2);
    store.close();
  });

  const patientDraft = (n: number): ResultDraft => glucoseDraft(n, { patient: { id: 'MRN-12345' } });

  /** The database file and its WAL, as bytes: what a clear id would leave on disk. */
  const onDisk = (path: string): string =>
    [path, `${path}-wal`].filter((f) => existsSync(f)).map((f) => readFileSync(f).toString('latin1')).join('');

  it.each<[PatientIdPolicy, RegExp | null]>([
    ['publish', /^MRN-12345$/],
    ['hash', /^hmac:[0-9a-f]{32}$/],
    ['omit', null],
  ])('applies privacy.patient_id %s before anything is stored', (policy, expected) => {
    const { store, path } = tempStore();
    const out = store.commit(input(store, [patientDraft(1)], Buffer.from('p'), { patient_id: policy, hash_key: 'a-site-wide-secret-key' }));
    const stored = results(store.recordsSince(0, 1))[0]!;
    for (const record of [results(out.inserted)[0]!, stored]) {
      if (expected) expect(record.patient?.id).toMatch(expected);
      else expect(record.patient).toEqual({ id: null });
    }
    if (policy === 'hash') expect(stored.patient?.id).toBe(hashPatientId('MRN-12345', 'a-site-wide-secret-key'));
    store.close();
    // Under hash and omit the clear id is nowhere in the database, its WAL included.
    if (policy === 'publish') expect(onDisk(path)).toContain('MRN-12345');
    else expect(onDisk(path)).not.toContain('MRN-12345');
  });

  it('fails closed when the privacy settings are forgotten or wrong: hashed with the store key, never published', () => {
    const { store, path } = tempStore();
    const forgotten = { ...input(store, [patientDraft(1)], Buffer.from('f')) } as Partial<CommitInput>;
    delete forgotten.privacy;
    const a = store.commit(forgotten as CommitInput);
    const unknownPolicy = input(store, [patientDraft(2)], Buffer.from('g'), { patient_id: 'Publish' as PatientIdPolicy });
    const b = store.commit(unknownPolicy);
    const noPolicy = input(store, [patientDraft(3)], Buffer.from('h'), {} as PrivacySettings);
    const c = store.commit(noPolicy);
    const storeKeyHash = hashPatientId('MRN-12345', store.localHashKey());
    for (const out of [a, b, c]) expect(results(out.inserted)[0]!.patient?.id).toBe(storeKeyHash);
    store.close();
    expect(onDisk(path)).not.toContain('MRN-12345');
  });

  it('hashes patient ids with a key: stable per store, different between stores, the configured key wins', () => {
    const dir = tempDir('poctd-store-');
    const commit = (store: Store, n: number, key?: string): string | null | undefined =>
      results(
        store.commit(
          input(store, [glucoseDraft(n, { patient: { id: '1234' } })], Buffer.from(`x${n}`), { patient_id: 'hash', ...(key ? { hash_key: key } : {}) }),
        ).inserted,
      )[0]!.patient?.id;
    const a = new Store(join(dir, 'a.db'));
    const first = commit(a, 1);
    expect(commit(a, 2)).toBe(first);
    a.close();
    const reopened = new Store(join(dir, 'a.db'));
    expect(commit(reopened, 3)).toBe(first); // the key survives a restart
    reopened.close();
    const b = new Store(join(dir, 'b.db'));
    expect(commit(b, 4)).not.toBe(first);
    // Two daemons that share a configured key agree.
    const shared = 'a-site-wide-secret-key';
    expect(commit(b, 5, shared)).toBe(hashPatientId('1234', shared));
    b.close();
    // A plain hash of a short id can be reversed by trying every id; the keyed one cannot.
    expect(first).not.toContain(createHash('sha256').update('clinic-a\n1234').digest('hex').slice(0, 24));
    expect(() => hashPatientId('1234', 'short')).toThrow(/16 bytes/);
  });

  it('writes publish marks and device states without a disk sync, and goes back to FULL for records', () => {
    const { store } = tempStore();
    const out = commit(store);
    const sync = (): unknown => (store as unknown as { db: { pragma(p: string, o: object): unknown } }).db.pragma('synchronous', { simple: true });
    expect(sync()).toBe(2); // FULL
    store.markPublishedMany(out.inserted.map((r) => r.seq));
    store.saveDeviceStates([]);
    expect(sync()).toBe(2);
    expect(store.outboxDepth()).toBe(0);
    store.close();
  });

  it('keeps quarantined bytes in the blob store, the row naming them, and audit rows', () => {
    const { store, path } = tempStore();
    const refused = Buffer.from('P bad line');
    store.quarantine('bench1', refused, 'bad-checksum', new Date('2026-12-04T02:59:00Z'));
    const sha = createHash('sha256').update(refused).digest('hex');
    expect(store.quarantined()).toEqual([
      { device_id: 'bench1', reason: 'bad-checksum', sha256: sha, size: refused.length, received_at: '2026-12-04T02:59:00.000Z', bytes: refused },
    ]);
    expect(readFileSync(store.blobs.pathOf(sha))).toEqual(refused);
    const db = new Database(path, { readonly: true });
    expect(db.prepare(`SELECT name FROM pragma_table_info('quarantine')`).pluck().all()).not.toContain('bytes');
    db.close();
    const at = new Date('2026-12-04T03:00:00Z');
    store.recordRequest(
      { device_id: 'bench1', verb: 'clock/sync', params: {}, requested_by: null, transaction: null, response: { status: 'ok', data: { clock: 'x' }, error: null } },
      at,
    );
    expect(store.quarantineCount()).toBe(1);
    expect(store.auditRows()).toEqual([
      { at: at.toISOString(), device_id: 'bench1', verb: 'clock/sync', status: 'ok', params: {}, detail: { clock: 'x' }, requested_by: null, transaction: null },
    ]);
    store.close();
  });

  it('offers no audit write but recordRequest, whose callers redact the params (no unredacted path)', () => {
    const { store } = tempStore();
    expect('audit' in store).toBe(false);
    expect('auditEntries' in store).toBe(false);
    store.close();
  });
});

/** The schema the store had before the blob store (versions 1 and 2), with one session's rows in it. */
function oldDatabase(
  path: string,
  captures: Array<{ bytes: Buffer; kind: 'raw' | 'transcript'; records: number }>,
  patients: Record<number, unknown> = {},
): void {
  const db = new Database(path);
  db.exec(`CREATE TABLE captures (id TEXT PRIMARY KEY, device_id TEXT NOT NULL, driver TEXT NOT NULL, kind TEXT NOT NULL, bytes BLOB NOT NULL, received_at TEXT NOT NULL);
    CREATE TABLE records (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, device_id TEXT NOT NULL, schema TEXT NOT NULL, category TEXT NOT NULL,
      capture_id TEXT NOT NULL REFERENCES captures(id), json TEXT NOT NULL, received_at TEXT NOT NULL);
    CREATE INDEX records_device ON records(device_id, seq);
    CREATE TABLE outbox (seq INTEGER PRIMARY KEY REFERENCES records(seq), device_id TEXT NOT NULL, published_at TEXT);
    CREATE INDEX outbox_pending ON outbox(seq) WHERE published_at IS NULL;
    CREATE TABLE quarantine (id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, reason TEXT NOT NULL, bytes BLOB NOT NULL, sha256 TEXT NOT NULL, received_at TEXT NOT NULL);
    CREATE TABLE devices (id TEXT PRIMARY KEY, driver TEXT NOT NULL, state_json TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, device_id TEXT, verb TEXT NOT NULL, params_json TEXT NOT NULL, status TEXT NOT NULL, detail_json TEXT);
    CREATE TABLE settings (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    PRAGMA user_version = 2;`);
  let seq = 0;
  for (const capture of captures) {
    const sha256 = createHash('sha256').update(capture.bytes).digest('hex');
    db.prepare(`INSERT INTO captures VALUES (?, 'bench1', 'onetouch-ultra2', ?, ?, '2026-11-22T09:00:00.000Z')`).run(sha256, capture.kind, capture.bytes);
    for (let i = 0; i < capture.records; i++) {
      seq++;
      const { key: _key, ...body } = glucoseDraft(seq);
      const patient = seq in patients ? patients[seq] : body.patient;
      const record = { schema: 'poct.result/1', id: `${seq}`.padStart(32, '0'), seq, site: 'clinic-a', ...body, patient, received_at: '2026-11-22T09:00:00.000Z', raw: { capture: sha256, sha256 } };
      expect(schemaProblems('poct.result/1', record)).toEqual([]);
      db.prepare(`INSERT INTO records VALUES (?, ?, 'bench1', 'poct.result/1', 'patient', ?, ?, '2026-11-22T09:00:00.000Z')`).run(seq, record.id, sha256, JSON.stringify(record));
      db.prepare(`INSERT INTO outbox VALUES (?, 'bench1', ?)`).run(seq, seq === 1 ? '2026-11-22T09:00:01.000Z' : null);
    }
  }
  db.close();
}

describe('Store migration to the blob store', () => {
  it('moves the bytes of an old database out to blobs, keeps the references, and rewrites records as poct.result/2', () => {
    const dir = tempDir('poctd-migrate-');
    const path = join(dir, 'poctd.db');
    const transcript = Buffer.from('H 444d40\nD 4030312022474d463630304443592220303030410d0a\n', 'latin1');
    const raw = Buffer.concat([Buffer.from([0x02, 0x31, 0x00, 0xff, 0x03]), randomBytes(256 * 1024)]);
    oldDatabase(path, [
      { bytes: transcript, kind: 'transcript', records: 2 },
      { bytes: raw, kind: 'raw', records: 1 },
    ]);
    expect(statSync(path).size).toBeGreaterThan(raw.length);
    const store = new Store(path);
    const records = results(store.recordsSince(0, 10));
    expect(records.map((r) => r.schema)).toEqual(['poct.result/2', 'poct.result/2', 'poct.result/2']);
    for (const r of records) expect(schemaProblems('poct.result/2', r)).toEqual([]);
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    expect(records.map((r) => r.raw)).toEqual([
      { sha256: sha(transcript), size: transcript.length, kind: 'transcript' },
      { sha256: sha(transcript), size: transcript.length, kind: 'transcript' },
      { sha256: sha(raw), size: raw.length, kind: 'raw' },
    ]);
    // Everything else about the records is as it was, the outbox too.
    expect(records[0]!.observations).toEqual(glucoseDraft(1).observations);
    expect(store.pendingOutbox(0, 10).map((r) => r.seq)).toEqual([2, 3]);
    expect(store.capture(sha(transcript))?.bytes).toEqual(transcript);
    expect(store.capture(sha(raw))?.bytes).toEqual(raw);
    expect(readFileSync(join(dir, 'blobs', sha(raw).slice(0, 2), sha(raw)))).toEqual(raw);
    // New commits go on after the migrated seqs.
    expect(commit(store, [glucoseDraft(9)], Buffer.from('after')).inserted.map((r) => r.seq)).toEqual([4]);
    store.close();
    // The bytes left the database file, not only its tables.
    expect(statSync(path).size).toBeLessThan(raw.length / 2);
    const db = new Database(path, { readonly: true });
    expect(db.pragma('user_version', { simple: true })).toBe(8); // the blob store's (3), the requests' (4), quarantine's blobs (5), device jobs (6), DICOM instances (7), retention's indexes (8)
    expect(JSON.stringify(db.prepare(`SELECT * FROM captures`).all())).not.toContain('bytes');
    expect(db.prepare(`SELECT DISTINCT schema FROM records`).pluck().all()).toEqual(['poct.result/2']);
    db.close();
  });

  it('publishes no clear patient id from an old database: ids a caller without a policy stored are hashed, protected ones kept', () => {
    const path = join(tempDir('poctd-migrate-'), 'poctd.db');
    const alreadyHashed = `hmac:${'ab'.repeat(16)}`;
    oldDatabase(path, [{ bytes: Buffer.from('old session'), kind: 'raw', records: 4 }], {
      1: { id: 'P-12345' },
      2: { id: alreadyHashed },
      3: { id: null },
      4: { id: 'P-12345' },
    });
    const store = new Store(path);
    const key = store.localHashKey();
    const records = results(store.recordsSince(0, 10));
    expect(records.map((r) => r.patient)).toEqual([
      { id: hashPatientId('P-12345', key) },
      { id: alreadyHashed },
      { id: null },
      { id: hashPatientId('P-12345', key) }, // the same patient stays linkable
    ]);
    const stored = JSON.stringify(store.pendingOutboxJson(0, 10)) + JSON.stringify(store.recordRowsSince(0, 10));
    expect(stored).not.toContain('P-12345');
    for (const r of records) expect(schemaProblems('poct.result/2', r)).toEqual([]);
    store.close();
  });

  it('moves the bytes of old quarantine rows to the blob store, each row keeping its reference', () => {
    const path = join(tempDir('poctd-migrate-'), 'poctd.db');
    oldDatabase(path, [{ bytes: Buffer.from('a session'), kind: 'raw', records: 1 }]);
    const noise = Array.from({ length: 300 }, (_, i) => Buffer.from([0xff, i & 0xff, (i >> 8) & 0xff]));
    const old = new Database(path);
    const insert = old.prepare(`INSERT INTO quarantine (device_id, reason, bytes, sha256, received_at) VALUES ('bench1', 'garbage', ?, ?, '2026-11-22T09:00:00.000Z')`);
    old.transaction(() => {
      for (const bytes of [...noise, noise[0]!]) insert.run(bytes, createHash('sha256').update(bytes).digest('hex'));
    })();
    old.close();
    const store = new Store(path);
    const kept = store.quarantined();
    expect(kept.map((q) => q.bytes)).toEqual([...noise, noise[0]!]);
    expect(kept.map((q) => q.size)).toEqual([...noise, noise[0]!].map((b) => b.length));
    // Synced in one pass: each file and each directory once, not once per row.
    expect(store.blobs.syncs.files).toBe(1 + noise.length);
    const db = new Database(path, { readonly: true });
    expect(db.prepare(`SELECT name FROM pragma_table_info('quarantine')`).pluck().all()).toEqual(['id', 'device_id', 'reason', 'sha256', 'received_at', 'size']);
    db.close();
    store.close();
  });

  it('refuses to migrate a capture whose bytes do not match its id, leaving the old database as it was', () => {
    const dir = tempDir('poctd-migrate-');
    const path = join(dir, 'poctd.db');
    oldDatabase(path, [{ bytes: Buffer.from('good'), kind: 'raw', records: 1 }]);
    const db = new Database(path);
    db.prepare(`UPDATE captures SET bytes = ?`).run(Buffer.from('tampered'));
    db.close();
    expect(() => new Store(path)).toThrow(/hash to .*damaged/);
    const after = new Database(path, { readonly: true });
    expect(after.pragma('user_version', { simple: true })).toBe(2);
    expect((after.prepare(`SELECT bytes FROM captures`).pluck().get() as Buffer).toString()).toBe('tampered');
    after.close();
  });
});

describe('BlobStore', () => {
  it('streams a Readable into <dir>/<first two hex>/<sha256>, and reads it back verified', async () => {
    const { store } = tempStore();
    const chunks = Array.from({ length: 64 }, (_, i) => Buffer.alloc(16 * 1024, i));
    const whole = Buffer.concat(chunks);
    const { Readable } = await import('node:stream');
    const ref = await store.blobs.put(Readable.from(chunks));
    expect(ref).toEqual({ sha256: createHash('sha256').update(whole).digest('hex'), size: whole.length });
    expect(store.blobs.pathOf(ref.sha256)).toBe(join(store.blobs.dir, ref.sha256.slice(0, 2), ref.sha256));
    expect(store.blobs.read(ref.sha256)).toEqual(whole);
    expect(await store.blobs.verify(ref.sha256)).toBe(true);
    // Nothing is left in the temp directory; a second put of the same bytes is the same blob.
    expect(readdirSync(join(store.blobs.dir, 'tmp'))).toEqual([]);
    const before = statSync(store.blobs.pathOf(ref.sha256)).mtimeMs;
    expect(await store.blobs.put(whole)).toEqual(ref);
    expect(statSync(store.blobs.pathOf(ref.sha256)).mtimeMs).toBe(before); // the blob already there is never replaced
    expect(readdirSync(join(store.blobs.dir, 'tmp'))).toEqual([]);
    store.close();
  });

  it('says a blob whose bytes changed on disk is damaged, instead of returning them', async () => {
    const { store } = tempStore();
    const ref = await store.blobs.put(Buffer.from('original'));
    writeFileSync(store.blobs.pathOf(ref.sha256), 'tampered');
    expect(() => store.blobs.read(ref.sha256)).toThrow(/damaged/);
    expect(await store.blobs.verify(ref.sha256)).toBe(false);
    expect(await store.blobs.verify('0'.repeat(64))).toBe(false);
    expect(() => store.blobs.pathOf('../../etc/passwd')).toThrow(/not a blob name/);
    store.close();
  });

  it('at start removes the temp files of writers that are gone, keeping those of live ones', async () => {
    const { store, path } = tempStore();
    store.close();
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, ['-e', '']);
    const deadPid = await new Promise<number>((resolve) => child.on('exit', () => resolve(child.pid!)));
    const tmp = join(store.blobs.dir, 'tmp');
    const names = { dead: `${deadPid}-crashed`, mine: `${process.pid}-under-way`, live: `${process.ppid}-under-way` };
    for (const name of Object.values(names)) writeFileSync(join(tmp, name), 'part of a capture');
    const reopened = new Store(path);
    expect(readdirSync(tmp).sort()).toEqual([names.mine, names.live].sort());
    // A temp older than this boot: its pid may belong to another process now; its writer is gone.
    const now = Date.now();
    utimesSync(join(tmp, names.live), new Date(now - 2 * 3600_000), new Date(now - 2 * 3600_000));
    expect(reopened.blobs.sweepStaleTemp({ now, bootedAt: now - 3600_000 })).toBe(1);
    expect(readdirSync(tmp)).toEqual([names.mine]);
    reopened.close();
  });

  it('a stream that fails mid-way leaves no blob and no temp file', async () => {
    const { store } = tempStore();
    const { Readable } = await import('node:stream');
    const failing = new Readable({
      read() {
        this.push(Buffer.from('part of a file'));
        this.destroy(new Error('connection reset'));
      },
    });
    await expect(store.blobs.put(failing)).rejects.toThrow(/connection reset/);
    expect(readdirSync(join(store.blobs.dir, 'tmp'))).toEqual([]);
    expect(readdirSync(store.blobs.dir)).toEqual(['tmp']);
    store.close();
  });
});
