import { createHash } from 'node:crypto';
import type { ResultDraft } from './types.ts';

/**
 * Rule 3 of the design: a record id comes from the device's identity (driver + serial, or the
 * configured device id when the serial is unknown) and the device's own identity for the record.
 * The same reading downloaded twice gets the same id, so the store keeps it once.
 */
export function resultId(draft: Pick<ResultDraft, 'device' | 'key'>): string {
  const deviceIdentity = draft.device.serial
    ? `${draft.device.driver}/serial:${draft.device.serial}`
    : `${draft.device.driver}/device:${draft.device.id}`;
  return createHash('sha256').update(`${deviceIdentity}\n${draft.key}`).digest('hex').slice(0, 32);
}

export function sha256Hex(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}
