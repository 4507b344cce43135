import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { finalize } from '../../src/records/finalize.ts';
import { RECORD_KINDS } from '../../src/records/kinds.ts';
import { hashPatientId, resolvePrivacy } from '../../src/records/privacy.ts';
import type { PatientIdPolicy } from '../../src/config/types.ts';
import type { ResultRecord } from '../../src/records/types.ts';
import { glucoseDraft } from '../helpers/records.ts';

/**
 * Each branch of the patient-id policy on its own (publish, hash, omit; a record with and without a
 * patient) and the key-length rule at its boundary: a mutation probe showed that one example per
 * policy let a policy that hashes everything, or never hashes, pass.
 */

const KEY = 'k'.repeat(16);

/** The record as finalize makes it under a policy (`publish`: the record as the device gave it). */
function finalized(patient: ResultRecord['patient'], policy: PatientIdPolicy = 'publish'): ResultRecord {
  return finalize(RECORD_KINDS.result, glucoseDraft(1, { patient }), {
    seq: 1,
    site: 'clinic-a',
    receivedAt: '2026-01-01T08:00:00.000Z',
    raw: { sha256: 'ab'.repeat(32), size: 10, kind: 'raw' },
    timezone: 'UTC',
    privacy: resolvePrivacy({ patient_id: policy, hash_key: KEY }),
  });
}

describe('finalize: every policy on a record with a patient id', () => {
  it('publish keeps the id as given, and the record itself', () => {
    const out = finalized({ id: 'MRN-12345' }, 'publish');
    expect(out.patient).toEqual({ id: 'MRN-12345' });
  });

  it('hash replaces the id by the keyed HMAC and leaves the rest of the record as it was', () => {
    const r = finalized({ id: 'MRN-12345' }, 'publish');
    const out = finalized({ id: 'MRN-12345' }, 'hash');
    const expected = `hmac:${createHmac('sha256', KEY).update('MRN-12345', 'utf8').digest('hex').slice(0, 32)}`;
    expect(out.patient).toEqual({ id: expected });
    expect({ ...out, patient: r.patient }).toEqual(r);
  });

  it('omit replaces the id by null', () => {
    const out = finalized({ id: 'MRN-12345' }, 'omit');
    expect(out.patient).toEqual({ id: null });
    expect(JSON.stringify(out)).not.toContain('MRN-12345');
  });
});

describe('finalize: a record with no patient id is left as it is under every policy', () => {
  for (const policy of ['publish', 'hash', 'omit'] as const) {
    it(`${policy}: patient null`, () => {
      expect(finalized(null, policy)).toEqual(finalized(null, 'publish'));
    });
    it(`${policy}: patient with a null id`, () => {
      expect(finalized({ id: null }, policy)).toEqual(finalized({ id: null }, 'publish'));
    });
    it(`${policy}: patient with an empty id`, () => {
      expect(finalized({ id: '' }, policy)).toEqual(finalized({ id: '' }, 'publish'));
    });
  }
});

describe('hashPatientId', () => {
  it('takes a key of exactly 16 bytes and refuses one of 15', () => {
    expect(hashPatientId('1234', 'k'.repeat(16))).toMatch(/^hmac:[0-9a-f]{32}$/);
    expect(() => hashPatientId('1234', 'k'.repeat(15))).toThrow('the patient-id hash key must be at least 16 bytes');
    expect(hashPatientId('1234', Buffer.alloc(16, 7))).toMatch(/^hmac:[0-9a-f]{32}$/);
    expect(() => hashPatientId('1234', Buffer.alloc(15, 7))).toThrow(/16 bytes/);
  });

  it('hashes the UTF-8 bytes of the id, so a non-ASCII id gets the same value on every daemon', () => {
    const id = 'Søren-Ærø-1';
    const expected = createHmac('sha256', KEY).update(Buffer.from(id, 'utf8')).digest('hex').slice(0, 32);
    expect(hashPatientId(id, KEY)).toBe(`hmac:${expected}`);
    expect(hashPatientId(id, KEY)).not.toBe(`hmac:${createHmac('sha256', KEY).update(Buffer.from(id, 'latin1')).digest('hex').slice(0, 32)}`);
  });

  it('gives different values for different ids and for different keys', () => {
    expect(hashPatientId('1234', KEY)).not.toBe(hashPatientId('1235', KEY));
    expect(hashPatientId('1234', KEY)).not.toBe(hashPatientId('1234', 'j'.repeat(16)));
  });
});
