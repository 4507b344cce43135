/**
 * The store's commit path, as the mutation run on `src/store/store.ts` found it unguarded: the group
 * commit (`commitMany`, which the writer thread calls) and the refusal of a row whose capture is not
 * in the blob store, each case on a real Store over a temporary database.
 */
import { describe, expect, it } from 'vitest';
import type { ResultDraft } from '../../src/records/types.ts';
import { Store, type CommitInput, type CommitOutcome } from '../../src/store/store.ts';
import { tempDir } from '../helpers/daemon.ts';
import { glucoseDraft } from '../helpers/records.ts';
import { join } from 'node:path';

function tempStore(): Store {
  return new Store(join(tempDir('poctd-store-safety-'), 'poctd.db'));
}

function input(store: Store, drafts: ResultDraft[], bytes: Buffer): CommitInput {
  return {
    site: 'clinic-a',
    deviceId: 'bench1',
    driver: 'onetouch-ultra2',
    capture: store.putCaptureSync('raw', bytes),
    drafts: { result: drafts },
    receivedAt: new Date('2026-11-22T09:00:00Z'),
    timezone: 'Europe/Copenhagen',
    privacy: { patient_id: 'hash' },
  };
}

const absentCapture = { sha256: 'cd'.repeat(32), size: 7, kind: 'raw' as const };

describe('Store commit path (safety)', () => {
  it('names a capture that is not in the blob store at all as missing', () => {
    const store = tempStore();
    const commit = () => store.commit({ ...input(store, [glucoseDraft(1)], Buffer.from('x')), capture: absentCapture });
    expect(commit).toThrow(`capture ${'cd'.repeat(32)} is not in the blob store (missing); it must be put before its records commit`);
    expect(store.recordCount()).toBe(0);
    expect(store.outboxDepth()).toBe(0);
    store.close();
  });

  it('group commit: each input is stored or refused on its own, the refused one leaving no row and its own error', () => {
    const store = tempStore();
    const first = input(store, [glucoseDraft(1), glucoseDraft(2)], Buffer.from('first capture'));
    const refused = { ...input(store, [glucoseDraft(3)], Buffer.from('refused capture')), capture: absentCapture };
    const last = input(store, [glucoseDraft(4)], Buffer.from('last capture'));
    const outcomes = store.commitMany([first, refused, last]);

    expect(outcomes).toHaveLength(3);
    const [a, b, c] = outcomes;
    expect(a).not.toBeInstanceOf(Error);
    expect((a as CommitOutcome).inserted.map((r) => r.seq)).toEqual([1, 2]);
    expect(b).toBeInstanceOf(Error);
    // The commit's own error, not a wrapper around its text.
    expect((b as Error).message).toMatch(/^capture c{1}d/);
    expect(c).not.toBeInstanceOf(Error);
    // Seq stays gap-free across the refused input.
    expect((c as CommitOutcome).inserted.map((r) => r.seq)).toEqual([3]);

    expect(store.recordCount()).toBe(3);
    expect(store.pendingOutbox(0, 10).map((r) => r.seq)).toEqual([1, 2, 3]);
    store.close();
  });

  it('group commit: a repeat inside the same group is a duplicate, not a second row', () => {
    const store = tempStore();
    const once = input(store, [glucoseDraft(1)], Buffer.from('capture once'));
    const again = input(store, [glucoseDraft(1), glucoseDraft(2)], Buffer.from('capture again'));
    const [a, b] = store.commitMany([once, again]) as CommitOutcome[];
    expect(a!.inserted).toHaveLength(1);
    expect(b!.duplicates).toBe(1);
    expect(b!.inserted.map((r) => r.seq)).toEqual([2]);
    expect(store.outboxDepth()).toBe(2);
    store.close();
  });
});
