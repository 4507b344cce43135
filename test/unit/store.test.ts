import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyPatientPolicy, hashPatientId } from '../../src/records/privacy.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import { Store } from '../../src/store/store.ts';
import { tempDir } from '../helpers/daemon.ts';
import { glucoseDraft } from '../helpers/records.ts';

function tempStore(): { store: Store; path: string } {
  const path = join(tempDir('poctd-store-'), 'poctd.db');
  return { store: new Store(path), path };
}

function commit(store: Store, drafts = [glucoseDraft(1), glucoseDraft(2)], bytes = Buffer.from('capture-1')) {
  return store.commitResults({
    site: 'clinic-a',
    deviceId: 'bench1',
    driver: 'onetouch-ultra2',
    captureKind: 'raw',
    captureBytes: bytes,
    drafts,
    receivedAt: new Date('2026-11-22T09:00:00Z'),
  });
}

describe('Store', () => {
  it('commits records with gap-free seq, raw capture and outbox rows; records validate', () => {
    const { store } = tempStore();
    const out = commit(store);
    expect(out.inserted.map((r) => r.seq)).toEqual([1, 2]);
    expect(out.duplicates).toBe(0);
    for (const record of out.inserted) expect(schemaProblems('poct.result/1', record)).toEqual([]);
    expect(store.outboxDepth()).toBe(2);
    const capture = store.capture(out.captureId);
    expect(capture?.bytes.toString()).toBe('capture-1');
    expect(out.inserted[0]!.raw.sha256).toBe(out.captureId);
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

  it('applies the patient-id policy before anything is stored', () => {
    const { store } = tempStore();
    const draft = glucoseDraft(1, { patient: { id: 'MRN-12345' } });
    const out = store.commitResults({
      site: 'clinic-a',
      deviceId: 'bench1',
      driver: 'onetouch-ultra2',
      captureKind: 'raw',
      captureBytes: Buffer.from('x'),
      drafts: [draft],
      receivedAt: new Date(),
      patientIdPolicy: 'hash',
    });
    expect(out.inserted[0]!.patient?.id).toMatch(/^hmac:[0-9a-f]{32}$/);
    expect(JSON.stringify(store.recordsSince(0, 1))).not.toContain('MRN-12345');
    expect(applyPatientPolicy(out.inserted[0]!, 'omit', 'x'.repeat(16)).patient).toEqual({ id: null });
    store.close();
  });

  it('hashes patient ids with a key: stable per store, different between stores, the configured key wins', () => {
    const dir = tempDir('poctd-store-');
    const commit = (store: Store, n: number, key?: string): string | null | undefined =>
      store.commitResults({
        site: 'clinic-a',
        deviceId: 'bench1',
        driver: 'onetouch-ultra2',
        captureKind: 'raw',
        captureBytes: Buffer.from(`x${n}`),
        drafts: [glucoseDraft(n, { patient: { id: '1234' } })],
        receivedAt: new Date(),
        patientIdPolicy: 'hash',
        ...(key ? { patientHashKey: key } : {}),
      }).inserted[0]!.patient?.id;
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

  it('keeps quarantined bytes and audit rows', () => {
    const { store } = tempStore();
    store.quarantine('bench1', Buffer.from('P bad line'), 'bad-checksum');
    store.audit({ device_id: 'bench1', verb: 'clock/sync', params: {}, status: 'ok', detail: { clock: 'x' } });
    expect(store.quarantineCount()).toBe(1);
    expect(store.auditEntries()).toEqual([
      { device_id: 'bench1', verb: 'clock/sync', status: 'ok', params: {}, detail: { clock: 'x' } },
    ]);
    store.close();
  });
});
