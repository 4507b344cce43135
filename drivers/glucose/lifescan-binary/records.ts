/**
 * LifeScan binary records: a verified wire record → a reading → a ResultDraft, and `decodeLifeScan`,
 * which reads a session transcript for `poctd replay` and the golden tests. Shared by the UltraEasy
 * and the Verio IQ; each passes its dialect.
 */
import type { Capture, DecodeContext, DecodeIssue, DecodeResult } from '../../../src/driver-sdk/index.ts';
import { byDeviceTime } from '../../../src/records/build.ts';
import type { DeviceIdentity, ResultDraft } from '../../../src/records/types.ts';
import { glucoseMeterDraft, glucoseObservation, type GlucoseMgdl } from '../../analytes/glucose.ts';
import {
  FrameReader,
  isData,
  naiveFromSeconds,
  type FrameItem,
  type LifeScanDialect,
  type LifeScanRequest,
  type Meal,
  type WireRecord,
} from './codec.ts';
import type { DeviceFacts } from '../../../src/driver-sdk/index.ts';

export const MANUFACTURER = 'LifeScan';

export interface Reading {
  /** Naive meter time `YYYY-MM-DDTHH:MM:SS`. */
  time: string;
  glucose: GlucoseMgdl;
  control: boolean;
  meal: Meal | null;
}

/** A wire record → a reading, or the reason it cannot be one. */
export function readRecord(d: LifeScanDialect, r: WireRecord): { ok: true; reading: Reading } | { ok: false; code: string } {
  if (r.problem) return { ok: false, code: r.problem };
  const time = naiveFromSeconds(r.seconds, d.epochOffsetS);
  if (!time) return { ok: false, code: 'invalid-date' };
  const glucose = d.glucose(r.glucose);
  if (glucose.kind === 'invalid') return { ok: false, code: 'invalid-value' };
  return { ok: true, reading: { time, glucose, control: r.control, meal: r.meal } };
}

/** No record number survives a new reading (index 0 is always the newest), so the key is time + value + control (rule 3). */
export function readingKey(r: Reading): string {
  const v = r.glucose.kind === 'value' ? String(r.glucose.mgdl) : r.glucose.kind;
  return `${r.time}|${v}|${r.control ? 'C' : 'P'}`;
}

export function readingToDraft(r: Reading, device: DeviceIdentity, timezone: string): ResultDraft {
  const flags: string[] = [];
  if (r.meal === 'before') flags.push('meal:before');
  if (r.meal === 'after') flags.push('meal:after');
  return glucoseMeterDraft({ key: readingKey(r), device, control: r.control, time: r.time, timezone, observation: glucoseObservation(r.glucose), flags });
}

export function identity(d: LifeScanDialect, deviceId: string, serial: string | null, firmware: string | null): DeviceIdentity {
  return { id: deviceId, driver: d.driverId, manufacturer: MANUFACTURER, model: d.model, serial, firmware };
}


/**
 * Decodes a session transcript. A reply can only be read together with the request it answers
 * (the UltraEasy clock and display-unit replies have the same shape), so a raw capture of device
 * bytes alone gives an issue and no records. Host frames name the request; the next device data
 * frame is its reply. Every bad frame is an issue with its bytes. A record asked for more than once
 * (a retry) counts once. Records from a download that stopped short are returned, with an
 * `incomplete-download` issue (the live session never commits such a download).
 */
export function decodeLifeScan(d: LifeScanDialect, capture: Capture, ctx: DecodeContext): DecodeResult {
  const issues: DecodeIssue[] = [];
  const device: DeviceFacts = {};
  if (capture.kind === 'raw') {
    issues.push({ reason: 'needs-transcript', bytes: capture.bytes });
    return { drafts: { result: [] }, issues, device };
  }
  const host = new FrameReader();
  const meter = new FrameReader();
  let pending: LifeScanRequest | null = null;
  let serial: string | null = null;
  let firmware: string | null = null;
  let count: number | null = null;
  const records = new Map<number, Reading>();

  const onMeter = (item: FrameItem): void => {
    if (item.kind === 'error') {
      issues.push({ reason: item.code, bytes: item.bytes });
      return;
    }
    const f = item.frame;
    if (!isData(f)) return; // ACK and DISC|ACK frames carry nothing
    if (!pending) {
      issues.push({ reason: 'unsolicited-reply', bytes: f.bytes });
      return;
    }
    const req = pending;
    pending = null;
    const parsed = d.parseReply(req, f.message);
    if (!parsed.ok) {
      issues.push({ reason: parsed.code, bytes: f.bytes });
      return;
    }
    const r = parsed.reply;
    if (r.type === 'version') firmware = r.firmware;
    else if (r.type === 'serial') serial = r.serial;
    else if (r.type === 'unit') device.display_unit = r.unit;
    else if (r.type === 'count') count = r.count;
    else if (r.type === 'record' && req.type === 'record') {
      const rr = readRecord(d, r.record);
      if (rr.ok) records.set(req.index, rr.reading);
      else issues.push({ reason: rr.code, bytes: f.bytes });
    }
  };
  const onHost = (item: FrameItem): void => {
    if (item.kind === 'error' || !isData(item.frame)) return;
    pending = d.classify(item.frame.message);
  };
  for (const e of capture.exchanges) {
    if (e.dir === 'H') host.push(e.bytes).forEach(onHost);
    else meter.push(e.bytes).forEach(onMeter);
  }
  host.flush().forEach(onHost);
  meter.flush().forEach(onMeter);

  if (count !== null) {
    for (let i = 0; i < count; i++) {
      if (!records.has(i)) {
        issues.push({ reason: 'incomplete-download' });
        break;
      }
    }
  }
  const id = identity(d, ctx.deviceId, serial, firmware);
  const seen = new Set<string>();
  const drafts: ResultDraft[] = [];
  for (const reading of records.values()) {
    const draft = readingToDraft(reading, id, ctx.timezone);
    if (seen.has(draft.key)) continue;
    seen.add(draft.key);
    drafts.push(draft);
  }
  byDeviceTime(drafts);
  if (serial !== null) device.serial = serial;
  if (firmware !== null) device.firmware = firmware;
  if (count !== null) device.record_count = count;
  return { drafts: { result: drafts }, issues, device };
}
