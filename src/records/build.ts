import { localTimeAmbiguity } from '../util/time.ts';
import { resultId } from './ids.ts';
import { RESULT_SCHEMA, type ResultDraft, type ResultRecord } from './types.ts';

/** A driver's draft plus what the daemon owns: schema, id, seq, site, arrival time, raw capture. */
export function buildResultRecord(
  draft: ResultDraft,
  owned: { seq: number; site: string; receivedAt: string; captureSha256: string },
): ResultRecord {
  const { key: _key, ...body } = draft;
  return {
    schema: RESULT_SCHEMA,
    id: resultId(draft),
    seq: owned.seq,
    site: owned.site,
    ...body,
    received_at: owned.receivedAt,
    raw: { capture: owned.captureSha256, sha256: owned.captureSha256 },
  };
}

/**
 * Adds `device-time:repeated-hour` or `device-time:skipped-hour` to a draft whose naive device time
 * falls where a DST change makes it ambiguous in the device's zone: its `observed_at` then rests on
 * a choice the device could not make (or on a wrong clock), and a reader should know. Done here,
 * for every driver, rather than in each one.
 */
export function flagAmbiguousDeviceTimes(drafts: ResultDraft[], timeZone: string): ResultDraft[] {
  return drafts.map((draft) => {
    const kind = draft.device_time ? localTimeAmbiguity(draft.device_time, timeZone) : null;
    if (!kind) return draft;
    const flag = `device-time:${kind}-hour`;
    return draft.flags.includes(flag) ? draft : { ...draft, flags: [...draft.flags, flag] };
  });
}

/** Sorts drafts oldest device time first, in place (stable: equal times keep their order). */
export function byDeviceTime(drafts: ResultDraft[]): ResultDraft[] {
  return drafts.sort((a, b) => (a.device_time! < b.device_time! ? -1 : a.device_time! > b.device_time! ? 1 : 0));
}
