/**
 * CLINITEK 50 records: one data packet → one result draft, and `decode()` of a capture. A record
 * resent after a NAK has the same record number and time, so it is one draft.
 */
import type { Capture, DecodeContext, DecodeIssue, DecodeResult } from '../../../src/driver-sdk/index.ts';
import { deviceBytes } from '../../../src/driver-sdk/capture.ts';
import type { DeviceIdentity, ResultDraft } from '../../../src/records/types.ts';
import { naiveToZoned } from '../../../src/util/time.ts';
import { stripObservations, stripRecordKey, type DateOrder } from '../../analytes/urine-strip.ts';
import { decodePacket, PacketFramer, type Clinitek50Record, type FramedItem } from './codec.ts';
import type { DeviceFacts } from '../../../src/driver-sdk/index.ts';

export const CLINITEK_50_DRIVER_ID = 'clinitek-50';
export const MANUFACTURER = 'Siemens Healthineers (Bayer Diagnostics)';
export const MODEL = 'CLINITEK 50';

export function clinitek50Identity(deviceId: string, firmware: string | null): DeviceIdentity {
  return { id: deviceId, driver: CLINITEK_50_DRIVER_ID, manufacturer: MANUFACTURER, model: MODEL, serial: null, firmware };
}

/** One strip → one result, one observation per analyte (and colour when the reader sent one). */
export function recordToDraft(r: Clinitek50Record, device: DeviceIdentity, timezone: string): ResultDraft {
  return {
    key: stripRecordKey(r),
    device: { ...device },
    category: 'patient',
    specimen: { id: null, type: 'urine' },
    patient: null,
    operator: null,
    observed_at: naiveToZoned(r.time, timezone),
    device_time: r.time,
    observations: stripObservations(r),
    flags: [],
  };
}

export function itemIssue(item: FramedItem): DecodeIssue | null {
  switch (item.kind) {
    case 'garbage':
      // A long burst is kept by its ends: the reason says how much of it was dropped.
      return { reason: item.size > item.bytes.length ? `garbage (${item.size} bytes, ${item.size - item.bytes.length} dropped; the first and last ${item.bytes.length / 2} kept)` : 'garbage', bytes: item.bytes };
    case 'overflow':
      return { reason: 'packet-too-long', bytes: item.bytes };
    case 'truncated':
      return { reason: 'truncated-packet', bytes: item.bytes };
    default:
      return null;
  }
}

/**
 * Decodes what the reader sent (a session transcript's `D` bytes, or raw bytes). Packets with a bad
 * checksum are issues, never records; a record resent after a NAK is one draft.
 */
export function decodeClinitek50(capture: Capture, ctx: DecodeContext, order: DateOrder = 'YMD'): DecodeResult {
  const framer = new PacketFramer();
  const items = [...framer.push(deviceBytes(capture)), ...framer.finish()];
  const issues: DecodeIssue[] = [];
  const records: Clinitek50Record[] = [];
  const device: DeviceFacts = {};
  for (const item of items) {
    const issue = itemIssue(item);
    if (issue) issues.push(issue);
    if (item.kind !== 'packet') continue;
    const r = decodePacket(item.bytes, order);
    if (!r.ok) {
      issues.push({ reason: r.error.code, bytes: item.bytes });
      continue;
    }
    if (r.message.type === 'identity') {
      device.model = MODEL;
      device.firmware = r.message.software;
      device.display_unit = r.message.units;
    } else {
      records.push(r.message);
    }
  }
  const seen = new Set<string>();
  const drafts: ResultDraft[] = [];
  for (const rec of records) {
    const key = stripRecordKey(rec);
    if (seen.has(key)) continue;
    seen.add(key);
    drafts.push(recordToDraft(rec, clinitek50Identity(ctx.deviceId, rec.software), ctx.timezone));
  }
  return { drafts: { result: drafts }, issues, device };
}
