import { localTimeAmbiguity } from '../util/time.ts';
import type { DraftTypes, RecordKind, RecordKindName, RecordTypes } from './kinds.ts';
import { applyPrivacy, type ResolvedPrivacy } from './privacy.ts';
import { schemaProblems } from './schemas.ts';
import type { RawRef } from './types.ts';

/** What the daemon adds to a draft to make it a record. */
export interface FinalizeContext {
  seq: number;
  site: string;
  /** ISO time the daemon received the capture. */
  receivedAt: string;
  /** The capture in the blob store. */
  raw: RawRef;
  /** IANA zone of the device's clock, for the DST flags. */
  timezone: string;
  /** From `resolvePrivacy`: required, so no caller can leave it out by accident. */
  privacy: ResolvedPrivacy;
}

/**
 * The one step from a draft to the record that is stored and published, shared by the store's
 * commit and `poctd replay` so that a replay prints exactly what the daemon would publish: the id
 * (rule 3), seq, site, arrival time, the raw reference, the DST flag on the device time, and the
 * privacy policy on the kind's patient fields; then the record is checked against its kind's schema
 * (throws when it does not fit).
 */
export function finalize<K extends RecordKindName>(kind: RecordKind<K>, draft: DraftTypes[K], ctx: FinalizeContext): RecordTypes[K] {
  const flagged = flagAmbiguousDeviceTime(kind, draft, ctx.timezone);
  const record = kind.assemble(flagged, { id: kind.id(draft), seq: ctx.seq, site: ctx.site, received_at: ctx.receivedAt, raw: ctx.raw });
  const finished = applyPrivacy(record, kind.privateFields, ctx.privacy);
  // A draft the schema refuses (a field the kind does not have, which privacy knows nothing of)
  // is never stored nor published: the commit fails, and the device is told so.
  const problems = schemaProblems(kind.schema, finished);
  if (problems.length > 0) throw new Error(`a ${kind.name} draft makes an invalid ${kind.schema} record: ${problems.join('; ')}`);
  return finished;
}

/**
 * Adds `device-time:repeated-hour` or `device-time:skipped-hour` to a draft whose naive device time
 * falls where a DST change makes it ambiguous in the device's zone: its `observed_at` then rests on
 * a choice the device could not make (or on a wrong clock), and a reader should know. Done here,
 * for every driver, rather than in each one.
 */
export function flagAmbiguousDeviceTime<K extends RecordKindName>(kind: RecordKind<K>, draft: DraftTypes[K], timeZone: string): DraftTypes[K] {
  const deviceTime = kind.deviceTime(draft);
  const ambiguity = deviceTime ? localTimeAmbiguity(deviceTime, timeZone) : null;
  return ambiguity ? kind.withFlag(draft, `device-time:${ambiguity}-hour`) : draft;
}
