import { createHash } from 'node:crypto';
import type { PatientIdPolicy } from '../config/types.ts';
import type { ResultRecord } from './types.ts';

/**
 * Applies the site's patient-id policy before a record is stored, so the database, MQTT and
 * replays all hold the same thing. `hash` keeps results of one patient linkable within a site
 * without carrying the identifier itself.
 */
export function applyPatientPolicy(record: ResultRecord, policy: PatientIdPolicy, site: string): ResultRecord {
  const id = record.patient?.id;
  if (!id || policy === 'publish') return record;
  if (policy === 'omit') return { ...record, patient: { id: null } };
  const hashed = createHash('sha256').update(`${site}\n${id}`).digest('hex').slice(0, 24);
  return { ...record, patient: { id: `sha256:${hashed}` } };
}
