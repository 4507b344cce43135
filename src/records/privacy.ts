import { createHmac } from 'node:crypto';
import type { PatientIdPolicy } from '../config/types.ts';
import type { ResultRecord } from './types.ts';

/**
 * Applies the site's patient-id policy before a record is stored, so the database, MQTT and
 * replays all hold the same thing.
 *
 * `hash` is an HMAC-SHA256 under a secret key: the same patient gets the same value, so results
 * stay linkable, but a patient id (often a short number) cannot be found again by hashing every
 * candidate, which a plain hash of the id would allow. Daemons that must agree on the values share
 * the key through `privacy.hash_key`; otherwise each store keeps a random key of its own.
 */
export function applyPatientPolicy(record: ResultRecord, policy: PatientIdPolicy, hashKey: Buffer | string): ResultRecord {
  const id = record.patient?.id;
  if (!id || policy === 'publish') return record;
  if (policy === 'omit') return { ...record, patient: { id: null } };
  return { ...record, patient: { id: hashPatientId(id, hashKey) } };
}

export function hashPatientId(id: string, hashKey: Buffer | string): string {
  if (hashKey.length < 16) throw new Error('the patient-id hash key must be at least 16 bytes');
  return `hmac:${createHmac('sha256', hashKey).update(id, 'utf8').digest('hex').slice(0, 32)}`;
}
