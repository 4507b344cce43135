import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { finalize } from '../../src/records/finalize.ts';
import { RECORD_KINDS } from '../../src/records/kinds.ts';
import { applyPrivacy, hashPatientId } from '../../src/records/privacy.ts';
import type { ResultDraft } from '../../src/records/types.ts';
import { Store } from '../../src/store/store.ts';
import { tempDir } from '../helpers/daemon.ts';
import { glucoseDraft } from '../helpers/records.ts';

const KEY = 'a-site-wide-secret-key';
const raw = { sha256: 'ab'.repeat(32), size: 10, kind: 'transcript' as const };
const fields = RECORD_KINDS.result.privateFields;
const context = { seq: 1, site: 'clinic-a', receivedAt: '2026-11-22T09:00:00.000Z', raw, timezone: 'Europe/Copenhagen' };

describe('privacy fails closed on a private path of the wrong shape', () => {
  it('omit: a patient that is a string (not an object holding the id) is protected, not kept', () => {
    expect(applyPrivacy({ patient: 'MRN-1' }, fields, { policy: 'omit' })).toEqual({ patient: null });
  });

  it('hash: a patient that is a string or a number is hashed, not kept', () => {
    expect(applyPrivacy({ patient: 'MRN-1' }, fields, { policy: 'hash', key: KEY })).toEqual({ patient: hashPatientId('MRN-1', KEY) });
    expect(applyPrivacy({ patient: 4711 }, fields, { policy: 'hash', key: KEY })).toEqual({ patient: hashPatientId('4711', KEY) });
  });

  it('an array where an object belongs, and a non-array where `*` steps into items, are protected whole', () => {
    expect(applyPrivacy({ patient: [{ id: 'MRN-1' }] }, fields, { policy: 'omit' })).toEqual({ patient: null });
    expect(applyPrivacy({ series: 'DOE^JANE' }, [['series', '*', 'patient_name']], { policy: 'omit' })).toEqual({ series: null });
  });

  it('publish keeps the value as it is, and an absent or null patient stays so', () => {
    expect(applyPrivacy({ patient: 'MRN-1' }, fields, { policy: 'publish' })).toEqual({ patient: 'MRN-1' });
    expect(applyPrivacy({ patient: null }, fields, { policy: 'omit' })).toEqual({ patient: null });
    expect(applyPrivacy({}, fields, { policy: 'omit' })).toEqual({});
  });
});

describe('finalize validates the finished record against its kind schema', () => {
  it('a patient with fields beyond its id (a name) is refused, naming the field, under every policy', () => {
    const draft = glucoseDraft(1, { patient: { id: 'MRN-1', name: 'DOE JANE' } as ResultDraft['patient'] });
    for (const privacy of [{ policy: 'omit' as const }, { policy: 'hash' as const, key: KEY }, { policy: 'publish' as const }]) {
      expect(() => finalize(RECORD_KINDS.result, draft, { ...context, privacy })).toThrow(/poct\.result\/2.*\/patient.*name/);
    }
  });

  it('a patient that is a string is refused under hash (and reaches nobody in clear)', () => {
    const draft = glucoseDraft(1, { patient: 'MRN-1' as unknown as ResultDraft['patient'] });
    expect(() => finalize(RECORD_KINDS.result, draft, { ...context, privacy: { policy: 'hash', key: KEY } })).toThrow(/\/patient/);
  });

  it('the store refuses the commit: nothing is stored, nothing is queued for MQTT', () => {
    const store = new Store(join(tempDir('poctd-privacy-'), 'poctd.db'));
    const bad = glucoseDraft(2, { patient: { id: 'MRN-1', name: 'DOE JANE' } as ResultDraft['patient'] });
    expect(() =>
      store.commit({
        site: 'clinic-a',
        deviceId: 'bench1',
        driver: 'onetouch-ultra2',
        capture: store.putCaptureSync('raw', Buffer.from('capture-with-a-bad-record')),
        drafts: { result: [glucoseDraft(1), bad] },
        receivedAt: new Date('2026-11-22T09:00:00Z'),
        timezone: 'Europe/Copenhagen',
        privacy: { patient_id: 'omit' },
      }),
    ).toThrow(/\/patient/);
    expect(store.recordCount()).toBe(0);
    expect(store.outboxDepth()).toBe(0);
    store.close();
  });
});
