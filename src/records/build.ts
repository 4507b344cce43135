import { flagAmbiguousDeviceTime } from './finalize.ts';
import { RECORD_KINDS } from './kinds.ts';
import type { ResultDraft } from './types.ts';

/** The DST flags of `finalize`, on result drafts (see `flagAmbiguousDeviceTime`). */
export function flagAmbiguousDeviceTimes(drafts: ResultDraft[], timeZone: string): ResultDraft[] {
  return drafts.map((draft) => flagAmbiguousDeviceTime(RECORD_KINDS.result, draft, timeZone));
}

/** Sorts drafts oldest device time first, in place (stable: equal times keep their order). */
export function byDeviceTime(drafts: ResultDraft[]): ResultDraft[] {
  return drafts.sort((a, b) => (a.device_time! < b.device_time! ? -1 : a.device_time! > b.device_time! ? 1 : 0));
}
