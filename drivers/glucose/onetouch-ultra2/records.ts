/**
 * Ultra 2 records: verified readings → ResultDrafts (the comment-code table, the record key, the
 * HI/LO rule), and `decodeUltra2` for `poctd replay` and the golden tests.
 */
import type { Capture, DecodeContext, DecodeIssue, DecodeResult } from '../../../src/driver-sdk/index.ts';
import { deviceBytes } from '../../../src/driver-sdk/capture.ts';
import { byDeviceTime } from '../../../src/records/build.ts';
import type { DeviceIdentity, ResultDraft } from '../../../src/records/types.ts';
import { glucoseMeterDraft, glucoseObservation, rangeGlucose } from '../../analytes/glucose.ts';
import { LineFramer, decodeLine, type DisplayUnit, type Ultra2Reading } from './codec.ts';
import type { DeviceFacts } from '../../../src/driver-sdk/index.ts';

export const ULTRA2_DRIVER_ID = 'onetouch-ultra2';
export const MANUFACTURER = 'LifeScan';
export const ULTRA2_MODEL = 'OneTouch Ultra 2';

/** Comment codes 00–11, named as in the LifeScan documents (research note §2.1). */
export const COMMENT_SLUGS = [
  'none',
  'not-enough-food',
  'too-much-food',
  'mild-exercise',
  'hard-exercise',
  'medication',
  'stress',
  'illness',
  'feel-hypo',
  'menses',
  'vacation',
  'other',
] as const;

/** The meter has no record number, so the key is time + value + control/patient (rule 3). */
export function readingKey(r: Ultra2Reading): string {
  return `${r.time}|${r.value}|${r.control ? 'C' : 'P'}`;
}

/**
 * One reading → one result. HI/LO: no public source shows how an Ultra 2 encodes readings outside
 * its 20–600 mg/dL range (research note §2.1, §3: inferred from thresholds only), the range of the
 * other LifeScan meters. A number outside the range cannot be a measurement the meter stands
 * behind, so it is published as the flag HI or LO with the limit and comparator, never as an exact
 * value; the number as sent stays in `text` and the raw capture (rule 5). Tidepool's substitute
 * values (19, 601) are not used either.
 */
export function readingToDraft(r: Ultra2Reading, device: DeviceIdentity, timezone: string): ResultDraft {
  const flags: string[] = [];
  if (r.meal === 'B') flags.push('meal:before');
  if (r.meal === 'A') flags.push('meal:after');
  if (r.comment > 0) flags.push(`comment:${COMMENT_SLUGS[r.comment] ?? 'unknown'}`);
  const glucose = rangeGlucose(r.value);
  const observation = glucoseObservation(glucose);
  return glucoseMeterDraft({
    key: readingKey(r),
    device,
    control: r.control,
    time: r.time,
    timezone,
    observation: {
      ...observation,
      flags: [...(r.parity ? ['parity-error'] : []), ...observation.flags],
      text: glucose.kind === 'value' ? null : String(r.value),
    },
    flags,
  });
}

export function ultra2Identity(deviceId: string, serial: string | null, firmware: string | null): DeviceIdentity {
  return { id: deviceId, driver: ULTRA2_DRIVER_ID, manufacturer: MANUFACTURER, model: ULTRA2_MODEL, serial, firmware };
}


/** Wire order (newest first) → drafts, oldest first. */
export function readingsToDrafts(readings: Ultra2Reading[], device: DeviceIdentity, timezone: string): ResultDraft[] {
  return byDeviceTime([...readings].reverse().map((r) => readingToDraft(r, device, timezone)));
}

interface DumpSeen {
  header: { count: number; serial: string; unit: DisplayUnit } | null;
  readings: Ultra2Reading[];
}

/**
 * Decodes a raw capture (what the meter sent: DMP reply lines, maybe other replies) or a stored
 * session transcript, where only the `D` bytes are read. Every bad line becomes an issue with its
 * bytes. Every verified reading becomes a draft, even from a dump that came up short. That dump
 * also gets a `truncated-dump` issue. (The live session never commits a short dump.) A capture
 * that holds a retried dump is deduplicated by serial + key, and the last dump wins.
 */
export function decodeUltra2(capture: Capture, ctx: DecodeContext): DecodeResult {
  const framer = new LineFramer();
  const items = framer.push(deviceBytes(capture));
  const tail = framer.pending();
  const issues: DecodeIssue[] = [];
  const dumps: DumpSeen[] = [];
  let current: DumpSeen | null = null;
  let serial: string | null = null;
  let firmware: string | null = null;
  let unit: DisplayUnit | null = null;
  let recordCount: number | null = null;

  const take = (line: Buffer, truncated: boolean): void => {
    const r = decodeLine(line);
    if (!r.ok) {
      issues.push({ reason: truncated ? 'truncated-line' : r.error.code, bytes: line });
      return;
    }
    if (r.garbage) issues.push({ reason: 'garbage', bytes: r.garbage });
    const m = r.message;
    if (m.type === 'reading') {
      if (!current) dumps.push((current = { header: null, readings: [] }));
      current.readings.push(m.reading);
      return;
    }
    current = null;
    if (m.type === 'dump-header') {
      dumps.push((current = { header: m, readings: [] }));
      serial = m.serial;
      unit = m.unit;
      recordCount = m.count;
    } else if (m.type === 'serial') serial = m.serial;
    else if (m.type === 'firmware') firmware = m.firmware;
    else if (m.type === 'unit') unit = m.unit;
  };
  for (const item of items) {
    if (item.kind === 'overflow') issues.push({ reason: 'line-too-long', bytes: item.bytes });
    else take(item.bytes, false);
  }
  if (tail.length > 0) take(tail, true);

  const drafts: ResultDraft[] = [];
  const seen = new Set<string>();
  for (const dump of dumps) {
    if (!dump.header) issues.push({ reason: 'missing-dump-header' });
    else if (dump.header.count !== dump.readings.length) issues.push({ reason: 'truncated-dump' });
  }
  for (const dump of [...dumps].reverse()) {
    const dumpSerial = dump.header?.serial ?? serial;
    const identity = ultra2Identity(ctx.deviceId, dumpSerial, firmware);
    for (const draft of readingsToDrafts(dump.readings, identity, ctx.timezone)) {
      const id = `${dumpSerial ?? ''}|${draft.key}`;
      if (seen.has(id)) continue;
      seen.add(id);
      drafts.push(draft);
    }
  }
  byDeviceTime(drafts);

  const device: DeviceFacts = {};
  if (serial !== null) device.serial = serial;
  if (firmware !== null) device.firmware = firmware;
  if (unit !== null) device.display_unit = unit;
  if (recordCount !== null) device.record_count = recordCount;
  return { drafts: { result: drafts }, issues, device };
}
