/**
 * Contour Next: H and R records → meter header and readings → ResultDraft, the model table, and
 * `decode()` for replay and golden captures. Protocol notes: README.md beside this file.
 */
import type { Capture, DecodeContext, DecodeIssue, DecodeResult } from '../../../src/driver-sdk/index.ts';
import { byDeviceTime } from '../../../src/records/build.ts';
import type { DeviceIdentity, ResultDraft } from '../../../src/records/types.ts';
import { type AstmLinkIssue, collectMessages } from '../../../src/protocols/astm/link.ts';
import { type AstmRecord, parseAstmDate, parseMessage, splitRecords } from '../../../src/protocols/astm/records.ts';
import { capillaryGlucoseCoding, codedGlucoseObservation, glucoseMeterDraft, type GlucoseUnit, meterLevel } from '../../analytes/glucose.ts';
import { decodeReport, MAX_FRAME_BYTES } from './codec.ts';
import type { DeviceFacts } from '../../../src/driver-sdk/index.ts';

export const CONTOUR_DRIVER_ID = 'contour-next';
export const MANUFACTURER = 'Ascensia';

export type { GlucoseUnit };

/**
 * Model codes as the H record names them (`Bayer7390`, `Contour7800`). Source: Tidepool
 * `lib/drivers/bayer/bayerConstants.js` `MODELS`, via the research note §2.7.
 */
export const CONTOUR_MODELS: Readonly<Record<string, string>> = {
  '6200': 'Contour Next Link',
  '6210': 'Contour Next Link 2.4',
  '6300': 'Contour Next Link',
  '7150': 'Contour',
  '7160': 'Contour Next EZ',
  '7220': 'Contour',
  '7350': 'Contour Next',
  '7390': 'Contour USB',
  '7410': 'Contour Next USB',
  '7600': 'Contour Plus',
  '7800': 'Contour Next One / Plus One',
  '7900': 'Contour Next',
};

/** Models that do not take the EOT step before command mode (Tidepool `setDateTime`). */
export const NO_EOT_BEFORE_COMMAND_MODE = new Set(['7800', '7900', '7950']);

export interface ContourHeader {
  /** The sender name, e.g. `Bayer7390`. */
  senderName: string;
  modelCode: string;
  model: string;
  /** Software versions from the sender field, joined with `/`. */
  firmware: string | null;
  serial: string;
  /** The config field's U=: the meter's display unit. */
  unit: GlucoseUnit | null;
  /** The config field's V=: the LO and HI limits in `unit`. */
  limits: { lo: number; hi: number } | null;
  recordCount: number | null;
  /** The meter clock when the transfer started, naive. */
  clock: string | null;
}

export type HeaderResult = { ok: true; header: ContourHeader } | { ok: false; code: 'not-a-contour' | 'bad-header'; detail: string };

const SENDER_RE = /^(?:Bayer|Contour)(\d{4})$/;

/** Reads the Contour fields of an H record parsed by the shared ASTM record parser. */
export function parseContourHeader(h: AstmRecord): HeaderResult {
  const d = h.delimiters;
  // The sender field is name ^ versions ^ serial ^ sku, and the versions are separated by the
  // repeat delimiter, so the field is split on components first (not on repeats).
  const sender = h.field(5).split(d.component);
  const name = sender[0] ?? '';
  const m = SENDER_RE.exec(name);
  if (!m) return { ok: false, code: 'not-a-contour', detail: 'the H record sender is not a Bayer/Contour model code' };
  const serial = (sender[2] ?? '').trim();
  if (!/^[0-9A-Za-z-]{4,20}$/.test(serial)) return { ok: false, code: 'bad-header', detail: 'the H record has no readable serial number' };
  const versions = (sender[1] ?? '').split(d.repeat).filter((v) => v !== '');
  const config = new Map<string, string>();
  for (const item of h.field(6).split(d.component)) {
    const eq = item.indexOf('=');
    if (eq > 0) config.set(item.slice(0, eq), item.slice(eq + 1));
  }
  const u = config.get('U');
  const unit: GlucoseUnit | null = u === '0' ? 'mg/dL' : u === '1' ? 'mmol/L' : null;
  let limits: ContourHeader['limits'] = null;
  const v = /^(\d{2})(\d{3})$/.exec(config.get('V') ?? '');
  if (v && unit) {
    const scale = unit === 'mmol/L' ? 10 : 1;
    limits = { lo: Number(v[1]) / scale, hi: Number(v[2]) / scale };
  }
  const count = /^\d+$/.test(h.text(7)) ? Number(h.text(7)) : null;
  const clock = parseAstmDate(h.text(14));
  const code = m[1]!;
  return {
    ok: true,
    header: {
      senderName: name,
      modelCode: code,
      model: CONTOUR_MODELS[code] ?? `Contour (model ${code})`,
      firmware: versions.length ? versions.join('/') : null,
      serial,
      unit,
      limits,
      recordCount: count,
      clock,
    },
  };
}

export interface ContourReading {
  /** R-2 as sent (kept for reference; not part of the record identity). */
  seq: string;
  /** Naive meter time. */
  time: string;
  /** null for LO/HI readings. */
  value: number | null;
  /** The value as the meter sent it, used in the record key. */
  valueText: string;
  unit: GlucoseUnit;
  /** R-5 component 2: P plasma, B whole blood, C capillary. */
  reference: string;
  markers: string[];
  control: boolean;
  lo: boolean;
  hi: boolean;
}

export type ReadingResult =
  | { ok: true; reading: ContourReading }
  /** Not a glucose measurement (the Next USB's Carb and Insulin log entries). */
  | { ok: false; skip: true; code: 'not-a-measurement' }
  | { ok: false; skip: false; code: 'unknown-test' | 'bad-value' | 'unknown-unit' | 'bad-date' | 'bad-markers'; detail: string };

const LOGBOOK_TESTS = new Set(['carb', 'insulin']);

/** One R record → a reading, or why it is not one. */
export function parseContourResult(r: AstmRecord): ReadingResult {
  const test = r.component(3, 4);
  if (test.toLowerCase() !== 'glucose') {
    if (LOGBOOK_TESTS.has(test.toLowerCase())) return { ok: false, skip: true, code: 'not-a-measurement' };
    return { ok: false, skip: false, code: 'unknown-test', detail: 'an R record that is not ^^^Glucose' };
  }
  const unitText = r.component(5, 1);
  if (unitText !== 'mg/dL' && unitText !== 'mmol/L') return { ok: false, skip: false, code: 'unknown-unit', detail: 'the unit is neither mg/dL nor mmol/L' };
  const markers = r.text(7).split('/').map((s) => s.trim()).filter((s) => s !== '');
  const lo = markers.includes('<');
  const hi = markers.includes('>');
  if (lo && hi) return { ok: false, skip: false, code: 'bad-markers', detail: 'a reading marked both LO and HI' };
  const valueText = r.text(4).trim();
  let value: number | null = null;
  if (!lo && !hi) {
    const ok = unitText === 'mg/dL' ? /^\d{1,4}$/.test(valueText) : /^\d{1,3}(\.\d{1,2})?$/.test(valueText);
    if (!ok) return { ok: false, skip: false, code: 'bad-value', detail: `the value is not a ${unitText} number` };
    value = Number(valueText);
  }
  const time = parseAstmDate(r.text(9));
  if (!time) return { ok: false, skip: false, code: 'bad-date', detail: 'the result time is not a real YYYYMMDDhhmm[ss] time' };
  return {
    ok: true,
    reading: { seq: r.field(2), time, value, valueText, unit: unitText, reference: r.component(5, 2), markers, control: markers.includes('C'), lo, hi },
  };
}

const NOTE_MARKERS: Record<string, string> = { D: 'note:not-feeling-right', I: 'note:sick', S: 'note:stress', X: 'note:activity' };
const MEAL_MARKERS: Record<string, string> = { B: 'meal:before', A: 'meal:after', F: 'meal:fasting' };
const REFERENCES: Record<string, string> = { P: 'reference:plasma', B: 'reference:whole-blood', C: 'reference:capillary' };

/** Record-level flags from the markers (LO/HI and C are not flags here: they shape the observation). */
export function markerFlags(markers: string[]): string[] {
  const flags: string[] = [];
  for (const m of markers) {
    if (m === '<' || m === '>' || m === 'C') continue;
    const z = /^Z([1-9A-C])$/.exec(m);
    if (MEAL_MARKERS[m]) flags.push(MEAL_MARKERS[m]);
    else if (NOTE_MARKERS[m]) flags.push(NOTE_MARKERS[m]);
    else if (z) flags.push(`meal:minutes-after:${parseInt(z[1]!, 16) * 15}`);
    else flags.push(`marker:${m.replace(/[^0-9A-Za-z]/g, '?').slice(0, 8)}`);
  }
  return flags;
}

function readingKey(r: ContourReading, occurrence: number): string {
  const kind = r.lo ? 'LO' : r.hi ? 'HI' : r.valueText;
  return `${r.time}|${kind}|${r.unit}|${r.control ? 'C' : 'P'}|${occurrence}`;
}

export function contourIdentity(deviceId: string, header: ContourHeader | null): DeviceIdentity {
  return {
    id: deviceId,
    driver: CONTOUR_DRIVER_ID,
    manufacturer: MANUFACTURER,
    model: header?.model ?? 'Contour Next',
    serial: header?.serial ?? null,
    firmware: header?.firmware ?? null,
  };
}

/**
 * A reading → its result. LO/HI carry the header's V= limit of that side, and only when the header
 * is in the reading's unit (a limit in the other unit would be a wrong number).
 */
export function readingToDraft(r: ContourReading, header: ContourHeader, deviceId: string, timezone: string, occurrence: number): ResultDraft {
  const sent = r.lo ? 'LO' : r.hi ? 'HI' : r.value;
  if (sent === null) throw new Error('a Contour reading has neither a value nor a LO/HI marker');
  const limits = header.unit === r.unit ? header.limits : null;
  const flags = markerFlags(r.markers);
  const ref = REFERENCES[r.reference];
  if (ref) flags.push(ref);
  return glucoseMeterDraft({
    key: readingKey(r, occurrence),
    device: contourIdentity(deviceId, header),
    control: r.control,
    time: r.time,
    timezone,
    observation: codedGlucoseObservation(capillaryGlucoseCoding(r.unit), meterLevel(sent, limits)),
    flags,
  });
}

/** A problem with one record of a complete transfer; the record's own bytes go to quarantine. */
export interface RecordIssue {
  code: string;
  detail: string;
  bytes: Buffer;
}

export interface TransferResult {
  header: ContourHeader | null;
  drafts: ResultDraft[];
  /** R records and others that were kept aside (unknown type, unreadable value...). */
  problems: RecordIssue[];
  /** Logbook records that are no measurement (Carb, Insulin). */
  skipped: number;
  /** R records seen (any test). */
  resultRecords: number;
  /** Why the whole transfer cannot be used, or null. */
  fatal: { code: string; detail: string } | null;
}

/**
 * One complete message (H … L) → drafts. A message whose last record is not L, or whose H is
 * not a Contour's, gives no drafts at all (`fatal`).
 */
export function transferToDrafts(text: Buffer, deviceId: string, timezone: string): TransferResult {
  const out: TransferResult = { header: null, drafts: [], problems: [], skipped: 0, resultRecords: 0, fatal: null };
  const msg = parseMessage(text.toString('latin1'), 'latin1');
  const h = msg.header;
  if (!h) {
    out.fatal = { code: 'no-header', detail: 'the transfer has no H record' };
    return out;
  }
  const parsed = parseContourHeader(h.record);
  if (!parsed.ok) {
    out.fatal = { code: parsed.code, detail: parsed.detail };
    return out;
  }
  out.header = parsed.header;
  const last = msg.records.at(-1);
  if (!last || last.type !== 'L') {
    out.fatal = { code: 'no-L-record', detail: 'the transfer does not end with the L record' };
    return out;
  }
  const occurrences = new Map<string, number>();
  for (const r of msg.records) {
    if (r.type === 'H' || r.type === 'P' || r.type === 'L') continue;
    const bytes = Buffer.from(r.raw, 'latin1');
    if (r.type !== 'R') {
      out.problems.push({ code: 'unknown-record', detail: `a record of type ${r.type.slice(0, 1).replace(/[^A-Z]/g, '?')} is not one a Contour sends`, bytes });
      continue;
    }
    out.resultRecords++;
    const res = parseContourResult(r);
    if (!res.ok) {
      if (res.skip) out.skipped++;
      else out.problems.push({ code: res.code, detail: res.detail, bytes });
      continue;
    }
    const base = readingKey(res.reading, 0);
    const n = (occurrences.get(base) ?? 0) + 1;
    occurrences.set(base, n);
    out.drafts.push(readingToDraft(res.reading, parsed.header, deviceId, timezone, n));
  }
  return out;
}

/**
 * The code under which a problem the ASTM link found is quarantined live and reported by
 * `decode`, so a replay names each problem as the session did.
 */
export function linkIssueCode(issue: AstmLinkIssue): string {
  if (issue.kind === 'bad-frame') return `bad-frame:${issue.reason}`;
  if (issue.kind === 'incomplete-message') return 'incomplete-transfer';
  return issue.reason;
}

/** Device → host ASTM bytes of a capture: raw files hold the stream; transcripts hold reports. */
function astmStream(capture: Capture, issues: DecodeIssue[]): Buffer {
  if (capture.kind === 'raw') return capture.bytes;
  const parts: Buffer[] = [];
  for (const e of capture.exchanges) {
    if (e.dir !== 'D') continue;
    const r = decodeReport(e.bytes);
    if (r.ok) parts.push(r.payload);
    else issues.push({ reason: r.code, bytes: e.bytes });
  }
  return Buffer.concat(parts);
}

export function headerState(h: ContourHeader): DeviceFacts {
  const s: DeviceFacts = { model: h.model, serial: h.serial, firmware: h.firmware };
  if (h.unit) s.display_unit = h.unit;
  if (h.recordCount !== null) s.record_count = h.recordCount;
  return s;
}

/**
 * Decodes a raw capture (the ASTM bytes the meter sent, HID layer removed) or a session transcript
 * (`D` lines are input reports). The bytes go through the shared ASTM receiver's assembly
 * (`collectMessages`), the rules the live link applies: a bad frame or one out of sequence is no
 * part of any message (live, it is NAKed), and only a transfer whose frames all arrived in order up
 * to its L record gives drafts. The header of any transfer, complete or not, is reported in
 * `device`. A capture holding the same reading twice (two transfers) gives it once.
 */
export function decodeContour(capture: Capture, ctx: DecodeContext): DecodeResult {
  const issues: DecodeIssue[] = [];
  const collected = collectMessages(astmStream(capture, issues), MAX_FRAME_BYTES);
  for (const i of collected.issues) issues.push({ reason: linkIssueCode(i), ...(i.bytes ? { bytes: i.bytes } : {}) });
  let device: DeviceFacts = {};
  const drafts = new Map<string, ResultDraft>();
  for (const text of collected.messages) {
    const t = transferToDrafts(text, ctx.deviceId, ctx.timezone);
    if (t.header) device = headerState(t.header);
    if (t.fatal) {
      issues.push({ reason: t.fatal.code });
      continue;
    }
    for (const p of t.problems) issues.push({ reason: p.code, bytes: p.bytes });
    for (const d of t.drafts) {
      const id = `${d.device.serial ?? ''}|${d.key}`;
      drafts.delete(id);
      drafts.set(id, d);
    }
  }
  // A header seen only in an incomplete transfer still says which meter this is.
  if (!device.serial) {
    for (const i of issues) {
      if (i.reason !== 'incomplete-transfer' || !i.bytes) continue;
      const first = splitRecords(i.bytes.toString('latin1'))[0];
      if (!first) continue;
      const msg = parseMessage(`${first}\r`, 'latin1');
      const parsed = msg.header ? parseContourHeader(msg.header.record) : null;
      if (parsed?.ok) device = headerState(parsed.header);
    }
  }
  const sorted = byDeviceTime([...drafts.values()]);
  return { drafts: { result: sorted }, issues, device };
}
