/**
 * CLINITEK Status records: one parsed strip record → one result draft, and `decode()` of a capture.
 * The record's identity is record number + date/time, which stays the same on every resend.
 */
import type { Capture, DecodeContext, DecodeIssue, DecodeResult } from '../../../src/driver-sdk/index.ts';
import { deviceBytes } from '../../../src/driver-sdk/capture.ts';
import type { DeviceIdentity, ResultDraft } from '../../../src/records/types.ts';
import { naiveToZoned } from '../../../src/util/time.ts';
import { stripObservations, stripRecordKey, type DateOrder } from '../../analytes/urine-strip.ts';
import { parseRecordLine, RecordLineFramer, type ClinitekStatusRecord, type FramedLine } from './codec.ts';
import type { DeviceFacts } from '../../../src/driver-sdk/index.ts';

export const CLINITEK_STATUS_DRIVER_ID = 'clinitek-status';
export const MANUFACTURER = 'Siemens Healthineers';
export const MODEL = 'CLINITEK Status';


/** An id the user entered for a control run (research note §3.2 shows `CONTROL-1`). */
const CONTROL_ID = /^(?:CONTROL|CTRL|QC)(?:\b|[-_ ]|\d)/i;

export function clinitekStatusIdentity(deviceId: string): DeviceIdentity {
  return { id: deviceId, driver: CLINITEK_STATUS_DRIVER_ID, manufacturer: MANUFACTURER, model: MODEL, serial: null, firmware: null };
}

/** One strip → one result with one observation per analyte (colour and clarity when entered). */
export function recordToDraft(r: ClinitekStatusRecord, device: DeviceIdentity, timezone: string): ResultDraft {
  const control = r.patient !== null && CONTROL_ID.test(r.patient);
  const flags: string[] = [];
  if (r.strip !== null) flags.push(`strip:${r.strip}`);
  if (control) flags.push('control:by-id');
  return {
    key: stripRecordKey(r),
    device: { ...device },
    category: control ? 'control' : 'patient',
    specimen: { id: control ? r.patient : null, type: control ? 'control solution' : 'urine' },
    patient: control || r.patient === null ? null : { id: r.patient },
    operator: r.operator === null ? null : { id: r.operator },
    observed_at: naiveToZoned(r.time, timezone),
    device_time: r.time,
    observations: stripObservations(r),
    flags,
  };
}

export interface DecodedLine {
  kind: 'record' | 'device-error' | 'bad';
  record?: ClinitekStatusRecord;
  issue?: DecodeIssue;
  /** Why a bad line is bad, for the event. */
  detail?: string;
  garbage?: Buffer;
}

/** One framed line → what it is. Shared by decode() and the session. */
export function classifyLine(item: FramedLine, order: DateOrder): DecodedLine {
  if (item.kind === 'overflow') {
    return { kind: 'bad', issue: { reason: 'line-too-long', bytes: item.bytes }, detail: `no line end within ${RecordLineFramer.MAX_LINE} bytes` };
  }
  const r = parseRecordLine(item.bytes, order);
  if (!r.ok) return { kind: 'bad', issue: { reason: r.error.code, bytes: item.bytes }, detail: r.error.detail };
  const out: DecodedLine = { kind: r.record.error ? 'device-error' : 'record', record: r.record };
  if (r.garbage) out.garbage = r.garbage;
  return out;
}

/**
 * Decodes what the reader sent (a raw capture, or the `D` bytes of a transcript). Every record is
 * one draft; a record sent twice (two presses of "Send all data") is one draft. Error records and
 * bad lines become issues with their bytes.
 */
export function decodeClinitekStatus(capture: Capture, ctx: DecodeContext, order: DateOrder = 'DMY'): DecodeResult {
  const framer = new RecordLineFramer();
  const items = framer.push(deviceBytes(capture));
  const tail = framer.pending();
  const issues: DecodeIssue[] = [];
  const drafts: ResultDraft[] = [];
  const seen = new Set<string>();
  const identity = clinitekStatusIdentity(ctx.deviceId);
  for (const item of items) {
    const d = classifyLine(item, order);
    if (d.garbage) issues.push({ reason: 'garbage', bytes: d.garbage });
    if (d.kind === 'bad') issues.push(d.issue!);
    else if (d.kind === 'device-error') issues.push({ reason: `device-error:${d.record!.error}`, bytes: item.bytes });
    else {
      const key = stripRecordKey(d.record!);
      if (seen.has(key)) continue;
      seen.add(key);
      drafts.push(recordToDraft(d.record!, identity, ctx.timezone));
    }
  }
  if (tail.length > 0) issues.push({ reason: 'truncated-line', bytes: tail });
  const device: DeviceFacts = drafts.length > 0 ? { model: MODEL } : {};
  return { drafts: { result: drafts }, issues, device };
}
