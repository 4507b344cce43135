/**
 * Ascensia (formerly Bayer) Contour USB and Contour Next meters: USB HID reports carrying ASTM
 * E1381 frames with E1394-style H/P/R/L records.
 *
 * Source: the shared research note `research/glucose-meters.md` §2.7 (facts collected from
 * glucometerutils `support/contourusb.py`, the Tidepool uploader `lib/drivers/bayer/*` and
 * contourtool), §3 and §7, and the two real frames in `fixtures/glucose/contour-next-*.bin`. Only
 * facts are used here, no code. The ASTM framer and record parser are the project's shared ones
 * (`src/protocols/astm/frame.ts`, `records.ts`).
 *
 *   HID report (64 bytes)   3 header bytes (`ABC`; ignored on read) · payload length (≤ 60) · payload
 *                           A frame spans several reports; a report may end in the middle of one.
 *   ASTM frame              <STX> FN text <CR> <ETB|ETX> C1 C2 <CR> <LF>
 *                           Every record frame ends ETB; only the last (the L record) ends ETX.
 *   Data transfer           host poke (EOT) → meter ENQ → host ACK → H → ACK → P → ACK → R … →
 *                           L (ETX) → ACK → meter EOT. A bad frame is answered NAK: sent again.
 *   H record                H|\^&||pwd|Bayer7390^fw\fw\fw^<serial>^<sku>|A=..^U=<0 mg/dL|1 mmol/L>^
 *                           V=<LL><HHH>^..|<record count>|||||<proc>|<ver>|<meter clock YYYYMMDDhhmm>
 *                           V holds the LO/HI limits; for U=1 they are mmol/L × 10.
 *   R record                R|<seq>|^^^Glucose|<value>|<mg/dL|mmol/L>^<P|B|C>||<markers>||<YYYYMMDDhhmm[ss]>
 *                           markers split on `/`: `<` LO, `>` HI, `C` control solution, B/A/F meal,
 *                           D/I/S/X notes, Z1…ZC quarter-hours after a meal, others kept as flags.
 *   Set clock               command mode after a transfer (Tidepool `setDateTime`, one source only):
 *                           ACK; EOT (not on Next One / Plus One / Plus Blue / 7900); NAK until EOT;
 *                           ENQ → ACK; `W|` `D|` `YYMMDD|\r` and `W|` `T|` `HHmm|\r`, each → ACK.
 *
 * Record identity (rule 3): the note could not confirm that the R sequence number is stable across
 * downloads (§7), so it is not used. A reading's key is its meter time + value + unit + control/
 * LO/HI, plus an occurrence counter for identical readings inside one transfer. Meal and note
 * markers are left out of the key: a meter lets the user change them after the test.
 *
 * Sections: HID codec · records and decode() · session · simulator · definition.
 */
import type {
  DeviceFacts,
  Capture,
  DecodeContext,
  DecodeIssue,
  DecodeResult,
  DeviceSimulator,
  DriverDefinition,
  SessionHost,
} from '../../src/driver-sdk/index.ts';
import { factsToPatch, NO_PARAMS } from '../../src/driver-sdk/index.ts';
import {
  CLOCK_SKEW_LIMIT_S,
  type ClockSyncResult,
  MeterSession,
  type MeterSessionOptions,
  NoAnswerError,
  numberOptions,
  ProtocolError,
  type SessionCommand,
} from '../../src/driver-sdk/meter-session.ts';
import type { DeviceConfig } from '../../src/config/types.ts';
import { byDeviceTime } from '../../src/records/build.ts';
import type { DeviceIdentity, Observation, ResultDraft } from '../../src/records/types.ts';
import type { ByteTransport } from '../../src/transports/transport.ts';
import {
  ACK,
  AstmFrameReader,
  type AstmFrameEvent,
  encodeFrames,
  ENQ,
  EOT,
  NAK,
  nextFrameNumber,
} from '../../src/protocols/astm/frame.ts';
import { type AstmRecord, parseAstmDate, parseMessage, splitRecords } from '../../src/protocols/astm/records.ts';
import { definedOnly, SimulatorOptionReader } from '../../src/driver-sdk/simulator-options.ts';
import { seededRandom } from '../../src/util/random.ts';
import { SimulatedClock, type SimulatedClockOptions } from '../../src/driver-sdk/simulated-clock.ts';
import { naiveToZoned, nowInZone } from '../../src/util/time.ts';

export const CONTOUR_DRIVER_ID = 'contour-next';
const MANUFACTURER = 'Ascensia';

// ────────────────────────────────────────────────────────────────────────────────────────────────
// HID codec: 64-byte reports, 3 header bytes, a length byte, up to 60 payload bytes. Pure.
// ────────────────────────────────────────────────────────────────────────────────────────────────

export const REPORT_SIZE = 64;
export const REPORT_HEADER = Buffer.from('ABC', 'latin1');
export const MAX_REPORT_PAYLOAD = 60;
const REPORT_OVERHEAD = 4;

/** One report without its zero padding: `ABC`, length, payload. */
export function encodeReport(payload: Uint8Array, header: Uint8Array = REPORT_HEADER): Buffer {
  if (payload.length > MAX_REPORT_PAYLOAD) throw new RangeError(`a Contour report carries at most ${MAX_REPORT_PAYLOAD} bytes, got ${payload.length}`);
  return Buffer.concat([Buffer.from(header.subarray(0, 3)), Buffer.from([payload.length]), Buffer.from(payload)]);
}

/** Bytes → reports of at most 60 payload bytes; `cut` picks each report's size (default: full). */
export function encodeReports(bytes: Uint8Array, cut: (left: number) => number = (left) => left): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; ) {
    const left = bytes.length - i;
    const n = Math.max(1, Math.min(MAX_REPORT_PAYLOAD, left, Math.floor(cut(left))));
    out.push(encodeReport(bytes.subarray(i, i + n)));
    i += n;
  }
  return out;
}

export type ReportErrorCode = 'short-report' | 'bad-length';
export type ReportResult = { ok: true; payload: Buffer } | { ok: false; code: ReportErrorCode; detail: string };

/** One input report → its payload. The 3 header bytes are not checked (meters and hosts differ). */
export function decodeReport(report: Uint8Array): ReportResult {
  if (report.length < REPORT_OVERHEAD) {
    return { ok: false, code: 'short-report', detail: `a ${report.length}-byte report has no length byte` };
  }
  const len = report[3]!;
  if (len > MAX_REPORT_PAYLOAD) return { ok: false, code: 'bad-length', detail: `the length byte says ${len}, more than ${MAX_REPORT_PAYLOAD}` };
  if (report.length < REPORT_OVERHEAD + len) {
    return { ok: false, code: 'bad-length', detail: `the length byte says ${len} but the report holds ${report.length - REPORT_OVERHEAD}` };
  }
  return { ok: true, payload: Buffer.from(report.subarray(REPORT_OVERHEAD, REPORT_OVERHEAD + len)) };
}

/** A report as kept in a capture: without the zero padding after its payload. */
export function trimReport(report: Uint8Array): Buffer {
  const r = decodeReport(report);
  return Buffer.from(r.ok ? report.subarray(0, REPORT_OVERHEAD + r.payload.length) : report);
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Records: H and R records → header, readings → ResultDraft; decode() for replay and golden tests.
// ────────────────────────────────────────────────────────────────────────────────────────────────

export type GlucoseUnit = 'mg/dL' | 'mmol/L';

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
const NO_EOT_BEFORE_COMMAND_MODE = new Set(['7800', '7900', '7950']);

/** Glucose LOINC by unit: capillary blood by glucometer, mass and moles per volume. */
const GLUCOSE_LOINC: Record<GlucoseUnit, string> = { 'mg/dL': '41653-7', 'mmol/L': '14743-9' };

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

export function readingToDraft(r: ContourReading, header: ContourHeader, deviceId: string, timezone: string, occurrence: number): ResultDraft {
  const limit = header.limits && header.unit === r.unit ? (r.lo ? header.limits.lo : r.hi ? header.limits.hi : null) : null;
  const obs: Observation = {
    code: 'GLU',
    name: 'Glucose',
    loinc: GLUCOSE_LOINC[r.unit],
    value: r.value,
    unit: r.unit,
    ucum: r.unit,
    flags: r.lo ? ['LO'] : r.hi ? ['HI'] : [],
    text: null,
    comparator: r.lo ? '<' : r.hi ? '>' : null,
  };
  if (r.lo || r.hi) obs.limit = limit;
  const flags = markerFlags(r.markers);
  const ref = REFERENCES[r.reference];
  if (ref) flags.push(ref);
  return {
    key: readingKey(r, occurrence),
    device: contourIdentity(deviceId, header),
    category: r.control ? 'control' : 'patient',
    specimen: { id: null, type: r.control ? 'control solution' : 'capillary blood' },
    patient: null,
    operator: null,
    observed_at: naiveToZoned(r.time, timezone),
    device_time: r.time,
    observations: [obs],
    flags,
  };
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
 * Assembles transfers from frame events, as a capture holds them. Frames are taken in order with
 * verified checksums; a repeat of the last frame (a retransmission) is dropped; a frame-number gap
 * is an issue and cuts a partly received record. A transfer counts only when an ETX frame closes it.
 */
class TransferAssembler {
  private parts: Buffer[] = [];
  private lastNumber: number | null = null;
  private lastText: Buffer | null = null;
  readonly messages: Buffer[] = [];
  readonly issues: DecodeIssue[] = [];

  event(e: AstmFrameEvent): void {
    if (e.type === 'garbage') {
      this.issues.push({ reason: 'garbage', bytes: e.bytes });
      return;
    }
    if (e.type === 'bad-frame') {
      this.issues.push({ reason: `bad-frame:${e.reason}`, bytes: e.raw });
      return;
    }
    if (e.type === 'control') {
      if (e.byte === EOT && this.parts.length > 0) this.incomplete();
      return;
    }
    const startsHeader = e.text[0] === 0x48; // 'H'
    if (startsHeader && this.parts.length > 0) this.incomplete();
    if (this.parts.length > 0 || startsHeader) {
      if (this.lastNumber !== null && e.number === this.lastNumber && this.lastText?.equals(e.text)) return; // retransmission
      if (this.lastNumber !== null && e.number !== nextFrameNumber(this.lastNumber)) {
        this.issues.push({ reason: 'frame-gap' });
        // A record cut by the gap is dropped: keep the text up to the last record end.
        const joined = Buffer.concat(this.parts);
        const end = joined.lastIndexOf(0x0d);
        this.parts = [joined.subarray(0, end + 1)];
      }
    } else {
      this.issues.push({ reason: 'frame-before-header', bytes: e.raw });
      return;
    }
    this.parts.push(e.text);
    this.lastNumber = e.number;
    this.lastText = e.text;
    if (e.final) {
      this.messages.push(Buffer.concat(this.parts));
      this.parts = [];
      this.lastNumber = null;
      this.lastText = null;
    }
  }

  finish(): void {
    if (this.parts.length > 0) this.incomplete();
  }

  private incomplete(): void {
    this.issues.push({ reason: 'incomplete-transfer', bytes: Buffer.concat(this.parts) });
    this.parts = [];
    this.lastNumber = null;
    this.lastText = null;
  }
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

function headerState(h: ContourHeader): DeviceFacts {
  const s: DeviceFacts = { model: h.model, serial: h.serial, firmware: h.firmware };
  if (h.unit) s.display_unit = h.unit;
  if (h.recordCount !== null) s.record_count = h.recordCount;
  return s;
}

/**
 * Decodes a raw capture (the ASTM bytes the meter sent, HID layer removed) or a session transcript
 * (`D` lines are input reports). Only transfers that reach their L record give drafts; the header
 * of any transfer, complete or not, is reported in `device`. A capture holding the same reading
 * twice (two transfers) gives it once.
 */
export function decodeContour(capture: Capture, ctx: DecodeContext): DecodeResult {
  const issues: DecodeIssue[] = [];
  const reader = new AstmFrameReader({ maxFrameBytes: MAX_FRAME_BYTES });
  const asm = new TransferAssembler();
  for (const e of [...reader.push(astmStream(capture, issues)), ...reader.finish()]) asm.event(e);
  asm.finish();
  issues.push(...asm.issues);
  let device: DeviceFacts = {};
  const drafts = new Map<string, ResultDraft>();
  for (const text of asm.messages) {
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
  return { drafts: sorted, issues, device };
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Session: the live conversation with one meter.
// ────────────────────────────────────────────────────────────────────────────────────────────────

/** E1381 allows 247 bytes per frame; a little room for meters that stretch it. */
const MAX_FRAME_BYTES = 1024;
/** A full meter memory (about 2000 readings) is ~150 kB: more than this is not a Contour. */
const MAX_TRANSFER_BYTES = 1 << 20;

/**
 * `reply_timeout_ms`: for the meter's ENQ after the poke, and for each frame of a transfer;
 * `retries`: pokes sent before the meter counts as not answering.
 */
export interface ContourSessionOptions extends MeterSessionOptions {
  /** NAKs for one frame before the transfer is given up (E1381: 6). */
  max_naks: number;
}

const DEFAULT_SESSION_OPTIONS: ContourSessionOptions = { reply_timeout_ms: 5000, max_naks: 6, retries: 1, clock_skew_limit_s: CLOCK_SKEW_LIMIT_S };

/** Reads `device.options`. Throws an Error that names the bad option. */
export function contourSessionOptions(device: DeviceConfig): ContourSessionOptions {
  return numberOptions(device, DEFAULT_SESSION_OPTIONS, ['retries']);
}

export interface ContourDownloadResult {
  inserted: number;
  duplicates: number;
  records: number;
  /** Records kept aside in quarantine (unknown type, unreadable value). */
  unreadable: number;
}

const TAG = CONTOUR_DRIVER_ID;

class ContourSession extends MeterSession<AstmFrameEvent> {
  private readonly opts: ContourSessionOptions;
  private readonly reader = new AstmFrameReader({ maxFrameBytes: MAX_FRAME_BYTES });
  /** A transfer ran to its end since the link opened (the meter then accepts command mode). */
  private transferDone = false;
  private header: ContourHeader | null = null;

  constructor(host: SessionHost) {
    super(host, TAG);
    this.opts = contourSessionOptions(host.device);
    this.linkClosedMessage = 'the meter was unplugged (the link closed) during the transfer';
  }

  /** One HID report per `data` event → the ASTM frames and control bytes it completes. */
  protected frame(report: Buffer): AstmFrameEvent[] {
    const r = decodeReport(report);
    if (!r.ok) {
      // Its payload is lost: the frame it belonged to fails its check and is NAKed.
      this.badInput(Buffer.from(report), r.code, r.detail);
      return [];
    }
    return this.reader.push(r.payload);
  }

  protected resetFramer(): void {
    this.reader.reset();
  }

  /** A capture keeps each report without its zero padding. */
  protected override transcribeReceived(report: Buffer): Buffer[] {
    return [trimReport(report)];
  }

  protected override linkOpened(): void {
    this.transferDone = false;
  }

  protected override linkClosed(): void {
    this.transferDone = false;
  }

  protected override commands(): Record<string, SessionCommand> {
    return { 'clock/sync': () => this.syncClock() };
  }

  private badInput(bytes: Buffer, code: string, detail: string): void {
    this.report.badData(bytes, code, detail, 'input');
  }

  // ── wire I/O ──

  /** Sends `payload` as one report (recorded as sent, without padding). */
  protected override send(payload: Buffer): Promise<void> {
    return super.send(encodeReport(payload));
  }

  private sendControl(byte: number): Promise<void> {
    return this.send(Buffer.from([byte]));
  }

  /** Waits for one of `wanted` control bytes; other events are reported or dropped. */
  private async expectControl(wanted: number[], timeoutMs: number): Promise<number | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = await this.inbox.next(Math.max(0, deadline - Date.now()));
      if (!e) return null;
      if (e.type === 'control' && wanted.includes(e.byte)) return e.byte;
      if (e.type === 'garbage') this.badInput(e.bytes, 'garbage', 'bytes outside a frame');
      else if (e.type === 'bad-frame') this.badInput(e.raw, `bad-frame:${e.reason}`, e.detail);
    }
  }

  /** Poke → ENQ. Null when the meter never bids (not in data-transfer mode). */
  private async poke(): Promise<boolean> {
    for (let attempt = 0; attempt <= this.opts.retries; attempt++) {
      this.clearInbox();
      await this.sendControl(EOT);
      if ((await this.expectControl([ENQ], this.opts.reply_timeout_ms)) === ENQ) return true;
    }
    return false;
  }

  /**
   * Receives one transfer after the meter's ENQ: ACK each good frame, NAK each bad one, and hold
   * the ACK of the closing (ETX) frame until `commit` resolved.
   */
  private async receiveTransfer(commit: (text: Buffer) => Promise<void>): Promise<void> {
    let parts: Buffer[] = [];
    let size = 0;
    let expected = 1;
    let last: { number: number; text: Buffer } | null = null;
    let naks = 0;
    let results = 0;
    let total: number | null = null;
    let step = 25;
    const nak = async (why: string): Promise<void> => {
      naks++;
      if (naks > this.opts.max_naks) {
        throw new ProtocolError('too-many-naks', `the meter sent ${naks} bad frames in a row (${why}); nothing was stored`);
      }
      await this.sendControl(NAK);
    };
    await this.sendControl(ACK);
    for (;;) {
      const e = await this.inbox.next(this.opts.reply_timeout_ms);
      if (!e) {
        throw new ProtocolError('timeout', `the meter stopped sending after ${results} results, before the L record; nothing was stored`);
      }
      if (e.type === 'garbage') {
        this.badInput(e.bytes, 'garbage', 'bytes between frames');
        continue;
      }
      if (e.type === 'bad-frame') {
        this.badInput(e.raw, `bad-frame:${e.reason}`, e.detail);
        await nak(e.reason);
        continue;
      }
      if (e.type === 'control') {
        if (e.byte === EOT) throw new ProtocolError('incomplete-transfer', 'the meter ended the transfer before the L record; nothing was stored');
        if (e.byte === ENQ) {
          // The meter started over: what came so far is dropped, the transfer restarts at frame 1.
          parts = [];
          size = 0;
          expected = 1;
          last = null;
          results = 0;
          await this.sendControl(ACK);
        }
        continue;
      }
      if (last && e.number === last.number && e.text.equals(last.text)) {
        await this.sendControl(ACK); // our ACK was lost and the frame came again
        continue;
      }
      if (e.number !== expected) {
        this.badInput(e.raw, 'frame-sequence', `frame number ${e.number} where ${expected} was due`);
        await nak('frame-sequence');
        continue;
      }
      naks = 0;
      size += e.text.length;
      if (size > MAX_TRANSFER_BYTES) throw new ProtocolError('transfer-too-long', `the transfer passed ${MAX_TRANSFER_BYTES} bytes; nothing was stored`);
      parts.push(e.text);
      last = { number: e.number, text: e.text };
      expected = nextFrameNumber(e.number);
      if (e.text[0] === 0x48 /* H */ && parts.length === 1) {
        const msg = parseMessage(e.text.toString('latin1'), 'latin1');
        const h = msg.header ? parseContourHeader(msg.header.record) : null;
        if (h && !h.ok) throw new ProtocolError(h.code, `${h.detail}; nothing was stored`);
        if (h?.ok) {
          total = h.header.recordCount;
          step = Math.max(25, Math.ceil((total ?? 0) / 10));
          this.onHeader(h.header);
        }
      } else if (e.text[0] === 0x52 /* R */) {
        results++;
        if (total !== null && total > 0 && (results % step === 0 || results === total)) {
          this.report.emit('download_progress', `${results} of ${total} records`, { received: results, total });
        }
      }
      if (!e.final) {
        await this.sendControl(ACK);
        continue;
      }
      await commit(Buffer.concat(parts));
      // Rule 1: the ACK that completes the transfer goes out only now, after the commit.
      await this.sendControl(ACK);
      await this.expectControl([EOT], Math.min(1000, this.opts.reply_timeout_ms));
      return;
    }
  }

  private onHeader(h: ContourHeader): void {
    this.header = h;
    this.report.patch({ ...factsToPatch(headerState(h)), last_seen: this.host.now().toISOString() });
    if (h.clock) this.report.clockRead(h.clock, this.host.timezone, this.host.now(), this.opts.clock_skew_limit_s);
  }

  // ── conversations ──

  protected download(trigger: string): Promise<ContourDownloadResult> {
    return this.downloadConversation(
      trigger,
      async () => {
        if (!(await this.poke())) {
          throw new NoAnswerError(
            'the meter sent no ENQ: it is not in data-transfer mode (unplug it and plug it in again; a Contour sends its memory once per plug-in)',
          );
        }
      },
      async () => {
        let result: ContourDownloadResult | null = null;
        await this.receiveTransfer(async (text) => {
          const t = transferToDrafts(text, this.host.device.id, this.host.timezone);
          if (t.fatal) throw new ProtocolError(t.fatal.code, `${t.fatal.detail}; nothing was stored`);
          for (const p of t.problems) this.badInput(p.bytes, p.code, p.detail);
          const stored = await this.commitDownload(t.drafts);
          result = { inserted: stored.inserted, duplicates: stored.duplicates, records: t.drafts.length, unreadable: t.problems.length };
        });
        this.transcript = null;
        this.transferDone = true;
        const r = result as ContourDownloadResult | null;
        if (!r) throw new ProtocolError('no-commit', 'the transfer ended without a commit');
        const skipped = r.unreadable ? `; ${r.unreadable} unreadable records kept in quarantine` : '';
        return {
          result: r,
          message: `downloaded ${r.records} readings: ${r.inserted} new, ${r.duplicates} already stored${skipped}`,
          data: { records: r.records, inserted: r.inserted, duplicates: r.duplicates, unreadable: r.unreadable },
        };
      },
    );
  }

  /**
   * Command mode, as the note documents it from Tidepool: only after a transfer in this plug-in
   * (the meter must have sent its memory first), so a download runs first when none has.
   */
  private async syncClock(): Promise<ClockSyncResult> {
    if (!this.transport.isOpen) throw new Error(`${TAG}: the meter is not plugged in`);
    if (!this.transferDone) await this.download('clock-sync');
    this.inbox.resume();
    try {
      const target = nowInZone(this.host.timezone, this.host.now()).slice(0, 16) + ':00';
      const m = /^\d{2}(\d{2})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(target)!;
      this.clearInbox();
      await this.sendControl(ACK);
      await this.expectControl([ENQ, EOT, ACK], Math.min(300, this.opts.reply_timeout_ms));
      if (!NO_EOT_BEFORE_COMMAND_MODE.has(this.header?.modelCode ?? '')) {
        await this.sendControl(EOT);
        await this.expectControl([ENQ, EOT, ACK, NAK], this.opts.reply_timeout_ms);
      }
      let eot = false;
      for (let i = 0; i < this.opts.max_naks && !eot; i++) {
        await this.sendControl(NAK);
        eot = (await this.expectControl([EOT], this.opts.reply_timeout_ms)) === EOT;
      }
      if (!eot) throw new ProtocolError('no-command-mode', 'the meter did not leave data-transfer mode (no EOT after NAK)');
      const step = async (text: string, what: string): Promise<void> => {
        await this.send(Buffer.from(text, 'latin1'));
        const reply = await this.expectControl([ACK, NAK], this.opts.reply_timeout_ms);
        if (reply === ACK) return;
        if (reply === NAK && what === 'date' && /Link/.test(this.header?.model ?? '')) {
          throw new ProtocolError('clock-set-by-pump', 'the meter refused the date: a Contour Next Link paired with a pump takes its clock from the pump');
        }
        throw new ProtocolError('clock-not-set', `the meter did not accept the ${what} (${reply === NAK ? 'NAK' : 'no answer'})`);
      };
      await this.sendControl(ENQ);
      if ((await this.expectControl([ACK, NAK], this.opts.reply_timeout_ms)) !== ACK) {
        throw new ProtocolError('no-command-mode', 'the meter did not accept command mode (no ACK to ENQ)');
      }
      await step('W|', 'write command');
      await step('D|', 'date command');
      await step(`${m[1]}${m[2]}${m[3]}|\r`, 'date');
      await step('W|', 'write command');
      await step('T|', 'time command');
      await step(`${m[4]}${m[5]}|\r`, 'time');
      await this.sendControl(EOT);
      // The Contour cannot read its clock back: the time sent stands for it until the next download.
      return this.report.clockSet(
        target,
        this.host.timezone,
        this.host.now(),
        this.opts.clock_skew_limit_s,
        'the meter clock was set to the host time (minutes; the next download reads it back)',
      );
    } catch (err) {
      throw this.failed(err, 'device_error');
    }
  }
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Simulator: a Contour meter in data-transfer mode, over the report stream.
// ────────────────────────────────────────────────────────────────────────────────────────────────

export interface SimulatedContourReading {
  /** Naive meter time, `YYYY-MM-DDTHH:MM` or with `:SS` (the meter keeps minutes). */
  time: string;
  /** In the meter's unit; ignored for `lo`/`hi`. */
  value: number;
  control?: boolean;
  lo?: boolean;
  hi?: boolean;
  /** Other markers as the meter writes them: B, A, F, D, I, S, X, Z1…ZC, M0, T1… */
  markers?: string[];
}

export interface ContourSimulatorOptions extends SimulatedClockOptions {
  serial?: string;
  /** Model code as in the H record (default 7410, Contour Next USB). */
  model_code?: string;
  firmware?: string;
  unit?: GlucoseUnit;
  memory?: SimulatedContourReading[];
  /** Never answers. */
  off?: boolean;
  /** Sends the next N frames with a wrong checksum (each is NAKed and sent again). */
  corrupt_next?: number;
  /** Stops sending after this many frames of a transfer (a meter that hangs mid-transfer). */
  stop_after_frames?: number;
  /** Sends one transfer per plug-in, like the real meter (a second poke gets no ENQ). */
  once_per_plug?: boolean;
  /** Records added before the L record, as given (to test unknown record types). */
  extra_records?: string[];
  /** true: each report carries a random 1…60 bytes; false (default): reports are filled to 60. */
  random_cuts?: boolean;
  /** NAKs the date and time writes in command mode and keeps its clock. */
  refuse_clock_set?: boolean;
  seed?: number;
}

const SIMULATOR_OPTION_HELP: Record<string, string> = {
  serial: 'serial number as the H record carries it (default 7410-1234567)',
  model_code: 'model code in the H record sender (default 7410, Contour Next USB)',
  firmware: 'software versions, separated by / (default 01.14/01.03/04.18)',
  unit: 'meter unit: mg/dL or mmol/L (values are sent in it; mmol/L with one decimal)',
  clock_offset_s: 'meter clock minus the true time, in seconds (default 0)',
  memory: 'readings: [{time: "YYYY-MM-DDTHH:MM", value, control?, lo?, hi?, markers?: ["B"|"A"|"F"|"Z4"|...]}]',
  off: 'true: never answer (meter not in data-transfer mode)',
  corrupt_next: 'send the next N frames with a wrong checksum (NAKed, then sent again)',
  stop_after_frames: 'stop sending after N frames of a transfer (a meter that hangs)',
  once_per_plug: 'true: one transfer per plug-in, as the real meter; later pokes get no ENQ',
  extra_records: 'records (text) inserted before the L record, e.g. ["Q|1|x"]',
  random_cuts: 'true: reports carry a random 1-60 bytes, cutting frames anywhere',
  refuse_clock_set: 'true: NAK the date and time writes and keep the clock, as a Contour Next Link paired with a pump refuses the date',
  timezone: "IANA zone of the meter's naive clock (default: the host's)",
  seed: 'random seed for reproducible runs',
};

/** Checks untyped options (YAML, command line) and returns them typed. */
export function parseContourSimulatorOptions(o: Record<string, unknown>): ContourSimulatorOptions {
  const read = new SimulatorOptionReader(o, `${TAG} simulator`, Object.keys(SIMULATOR_OPTION_HELP));
  return definedOnly<ContourSimulatorOptions>({
    serial: read.string('serial', /^[0-9A-Za-z-]{4,20}$/, '4-20 characters 0-9 A-Z and -'),
    model_code: read.string('model_code', /^\d{4}$/, 'four digits'),
    firmware: read.string('firmware', /^[0-9A-Za-z.]+(\/[0-9A-Za-z.]+)*$/, 'versions separated by /'),
    timezone: read.timezone(),
    clock_offset_s: read.number('clock_offset_s', -1e10),
    corrupt_next: read.number('corrupt_next', 0),
    stop_after_frames: read.number('stop_after_frames', 1),
    seed: read.number('seed', 0),
    off: read.boolean('off'),
    once_per_plug: read.boolean('once_per_plug'),
    random_cuts: read.boolean('random_cuts'),
    refuse_clock_set: read.boolean('refuse_clock_set'),
    unit: read.oneOf('unit', ['mg/dL', 'mmol/L'] as const, 'mg/dL or mmol/L'),
    memory: read.list('memory', (r, where) => parseSimulatedContourReading(read, r, where), 'a list of readings'),
    extra_records: read.list('extra_records', (r, where) => oneLineString(read, r, where), 'a list of one-line strings'),
    now: read.now(),
  });
}

function oneLineString(read: SimulatorOptionReader, r: unknown, where: string): string {
  if (typeof r !== 'string' || [...r].some((c) => c.charCodeAt(0) < 0x20)) throw read.error(where, 'a one-line string');
  return r;
}

function parseSimulatedContourReading(read: SimulatorOptionReader, r: unknown, where: string): SimulatedContourReading {
  if (typeof r !== 'object' || r === null) throw read.error(where, 'an object');
  const o = r as Record<string, unknown>;
  if (typeof o.time !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(o.time)) throw read.error(`${where}.time`, 'YYYY-MM-DDTHH:MM');
  if (typeof o.value !== 'number' || !Number.isFinite(o.value) || o.value < 0 || o.value > 9999) throw read.error(`${where}.value`, 'a number 0-9999');
  const out: SimulatedContourReading = { time: o.time, value: o.value };
  for (const k of ['control', 'lo', 'hi'] as const) {
    if (o[k] === undefined) continue;
    if (typeof o[k] !== 'boolean') throw read.error(`${where}.${k}`, 'true or false');
    out[k] = o[k];
  }
  if (o.markers !== undefined) {
    if (!Array.isArray(o.markers) || o.markers.some((m) => typeof m !== 'string' || !/^[0-9A-Z]{1,3}$/.test(m))) {
      throw read.error(`${where}.markers`, 'a list like ["B", "Z4"]');
    }
    out.markers = o.markers as string[];
  }
  return out;
}

/** `2015-05-26T11:50` → `201505261150`. */
function astmTime(naive: string): string {
  return naive.replace(/[-T:]/g, '').slice(0, 12);
}

/** The records (without CR) of one transfer as the simulated meter sends them. */
export function contourTransferRecords(meter: {
  serial: string;
  modelCode: string;
  firmware: string;
  unit: GlucoseUnit;
  clock: string;
  memory: SimulatedContourReading[];
  extraRecords?: string[];
}): string[] {
  const mmol = meter.unit === 'mmol/L';
  const limits = mmol ? 'V=06333' : 'V=10600';
  const config = `A=1^C=63^G=1^I=0200^R=0^S=1^U=${mmol ? 1 : 0}^${limits}^Z=1`;
  const oldestFirst = [...meter.memory].sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
  const records = [
    `H|\\^&||sim0pw|Bayer${meter.modelCode}^${meter.firmware.replace(/\//g, '\\')}^${meter.serial}^${meter.modelCode}-|${config}|${oldestFirst.length}||||||1|${astmTime(meter.clock)}`,
    'P|1',
  ];
  oldestFirst.forEach((r, i) => {
    const markers = [...(r.lo ? ['<'] : r.hi ? ['>'] : []), ...(r.control ? ['C'] : []), ...(r.markers ?? [])].join('/');
    const limitValue = mmol ? (r.lo ? '0.6' : '33.3') : r.lo ? '10' : '600';
    const value = r.lo || r.hi ? limitValue : mmol ? r.value.toFixed(1) : String(Math.round(r.value));
    records.push(`R|${i + 1}|^^^Glucose|${value}|${meter.unit}^P||${markers}||${astmTime(r.time)}`);
  });
  records.push(...(meter.extraRecords ?? []));
  records.push('L|1||N');
  return records;
}

type SimState = 'idle' | 'bid' | 'sending' | 'command';

export class ContourSimulator implements DeviceSimulator {
  serial: string;
  modelCode: string;
  firmware: string;
  unit: GlucoseUnit;
  readonly deviceClock: SimulatedClock;
  memory: SimulatedContourReading[];
  off: boolean;
  stopAfterFrames: number | null;
  extraRecords: string[];
  /** Every control byte and command text the host sent, in order (tests read it). */
  readonly received: string[] = [];
  /** Transfers completed (the host ACKed the L frame). */
  transfers = 0;
  private readonly oncePerPlug: boolean;
  private readonly randomCuts: boolean;
  private readonly refuseClockSet: boolean;
  private readonly random: () => number;
  private corruptFrames: number;
  private transport: ByteTransport | null = null;
  private state: SimState = 'idle';
  private frames: Buffer[] = [];
  private frameIndex = 0;
  private sentThisPlug = false;
  private commandText = '';
  private pendingCommand: 'date' | 'time' | null = null;
  private writeArmed = false;
  private sending: Promise<void> = Promise.resolve();

  constructor(options: ContourSimulatorOptions = {}) {
    this.serial = options.serial ?? '7410-1234567';
    this.modelCode = options.model_code ?? '7410';
    this.firmware = options.firmware ?? '01.14/01.03/04.18';
    this.unit = options.unit ?? 'mg/dL';
    this.deviceClock = new SimulatedClock(options);
    this.off = options.off ?? false;
    this.corruptFrames = Math.floor(options.corrupt_next ?? 0);
    this.stopAfterFrames = options.stop_after_frames ?? null;
    this.extraRecords = options.extra_records ?? [];
    this.oncePerPlug = options.once_per_plug ?? false;
    this.randomCuts = options.random_cuts ?? false;
    this.refuseClockSet = options.refuse_clock_set ?? false;
    this.random = seededRandom(options.seed ?? Date.now());
    this.memory = options.memory ? options.memory.map((r) => ({ ...r })) : this.defaultMemory();
  }

  /** Sends the next `n` frames with a wrong checksum. */
  corruptNext(n: number): void {
    this.corruptFrames += n;
  }

  /** The meter's naive clock now. */
  clock(): string {
    return this.deviceClock.read();
  }

  attach(transport: ByteTransport): void {
    this.detach();
    this.transport = transport;
    this.state = 'idle';
    this.sentThisPlug = false;
    transport.on('data', this.onReport);
  }

  detach(): void {
    if (this.transport) this.transport.off('data', this.onReport);
    this.transport = null;
    this.state = 'idle';
    this.frames = [];
  }

  private defaultMemory(): SimulatedContourReading[] {
    const start = Date.parse(`${this.clock()}Z`) - 2 * 86400_000;
    const mmol = this.unit === 'mmol/L';
    const plan: [number, number, string[], boolean][] = [
      [7.5, 96, ['B'], false],
      [13, 142, ['A', 'Z8'], false],
      [24 + 8, 88, ['F'], false],
      [24 + 8.2, 112, [], true],
      [24 + 14, 176, ['A'], false],
    ];
    return plan.map(([h, mg, markers, control]) => ({
      time: new Date(start + h * 3600_000).toISOString().slice(0, 16),
      value: mmol ? Math.round((mg / 18) * 10) / 10 : mg,
      markers,
      control,
    }));
  }

  private readonly onReport = (report: Buffer): void => {
    if (this.off) return;
    // Hosts write `ABC` or zeros as the header; the length byte says how much is payload.
    const r = decodeReport(report);
    if (!r.ok) return;
    for (const b of r.payload) this.byte(b);
  };

  private byte(b: number): void {
    if (this.state === 'command' && b !== EOT && b !== ENQ) {
      this.commandText += String.fromCharCode(b);
      this.commandStep();
      return;
    }
    this.received.push(CONTROL_TEXT[b] ?? String.fromCharCode(b));
    switch (this.state) {
      case 'idle':
        if (b === EOT || b === ACK || b === 0x58 /* X */) {
          if (this.oncePerPlug && this.sentThisPlug) return;
          this.state = 'bid';
          this.send(Buffer.from([ENQ]));
        } else if (b === NAK) this.send(Buffer.from([EOT]));
        else if (b === ENQ) {
          this.state = 'command';
          this.commandText = '';
          this.writeArmed = false;
          this.pendingCommand = null;
          this.send(Buffer.from([ACK]));
        }
        return;
      case 'bid':
        if (b === ACK) {
          this.frames = this.buildFrames();
          this.frameIndex = 0;
          this.state = 'sending';
          this.sendFrame();
        } else if (b === NAK) {
          this.state = 'idle';
          this.send(Buffer.from([EOT]));
        } else if (b === EOT) this.send(Buffer.from([ENQ]));
        return;
      case 'sending':
        if (b === ACK) {
          this.frameIndex++;
          if (this.frameIndex >= this.frames.length) {
            this.state = 'idle';
            this.sentThisPlug = true;
            this.transfers++;
            this.send(Buffer.from([EOT]));
          } else this.sendFrame();
        } else if (b === NAK) this.sendFrame();
        else if (b === EOT) this.state = 'idle';
        return;
      case 'command':
        if (b === EOT) this.state = 'idle';
        else this.send(Buffer.from([NAK])); // ENQ inside command mode
        return;
    }
  }

  /** Command mode: `W|` arms a write, `D|`/`T|` choose the field, `YYMMDD|\r`/`HHmm|\r` set it. */
  private commandStep(): void {
    const t = this.commandText;
    if (t === 'W|' || t === 'D|' || t === 'T|' || t.endsWith('\r')) this.received.push(t.replace('\r', '\\r'));
    if (t === 'W|') {
      this.writeArmed = true;
      this.commandText = '';
      this.send(Buffer.from([ACK]));
    } else if ((t === 'D|' || t === 'T|') && this.writeArmed) {
      this.pendingCommand = t === 'D|' ? 'date' : 'time';
      this.commandText = '';
      this.send(Buffer.from([ACK]));
    } else if (t.endsWith('\r')) {
      this.commandText = '';
      const ok = !this.refuseClockSet && this.applySet(t.slice(0, -1));
      this.writeArmed = false;
      this.pendingCommand = null;
      this.send(Buffer.from([ok ? ACK : NAK]));
    } else if (t.length > 16) {
      this.commandText = '';
      this.send(Buffer.from([NAK]));
    }
  }

  private applySet(text: string): boolean {
    if (this.pendingCommand === 'date') {
      const m = /^(\d{2})(\d{2})(\d{2})\|$/.exec(text);
      return m !== null && this.deviceClock.setDate(Number(m[1]), Number(m[2]), Number(m[3]));
    }
    if (this.pendingCommand === 'time') {
      const m = /^(\d{2})(\d{2})\|$/.exec(text);
      return m !== null && this.deviceClock.setTime(Number(m[1]), Number(m[2]));
    }
    return false;
  }

  private buildFrames(): Buffer[] {
    const records = contourTransferRecords({
      serial: this.serial,
      modelCode: this.modelCode,
      firmware: this.firmware,
      unit: this.unit,
      clock: this.clock(),
      memory: this.memory,
      extraRecords: this.extraRecords,
    });
    return encodeFrames(records.map((r, i) => ({ text: Buffer.from(`${r}\r`, 'latin1'), final: i === records.length - 1 })));
  }

  private sendFrame(): void {
    if (this.stopAfterFrames !== null && this.frameIndex >= this.stopAfterFrames) return;
    let frame = this.frames[this.frameIndex]!;
    if (this.corruptFrames > 0) {
      this.corruptFrames--;
      frame = Buffer.from(frame);
      const at = frame.length - 4; // the first checksum digit (… C1 C2 CR LF)
      frame[at] = frame[at] === 0x30 ? 0x31 : 0x30;
    }
    this.send(frame);
  }

  /** Writes bytes as 64-byte input reports, in order. */
  private send(bytes: Buffer): void {
    const transport = this.transport;
    if (!transport) return;
    const cut = this.randomCuts ? () => 1 + Math.floor(this.random() * MAX_REPORT_PAYLOAD) : undefined;
    const reports = encodeReports(bytes, cut).map((r) => Buffer.concat([r, Buffer.alloc(REPORT_SIZE - r.length)]));
    this.sending = this.sending
      .then(async () => {
        for (const report of reports) {
          if (this.transport !== transport || !transport.isOpen) return;
          await transport.write(report);
        }
      })
      .catch(() => undefined);
  }
}

const CONTROL_TEXT: Record<number, string> = { [ACK]: 'ACK', [NAK]: 'NAK', [EOT]: 'EOT', [ENQ]: 'ENQ' };

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Definition
// ────────────────────────────────────────────────────────────────────────────────────────────────

const usb = (productId: string, description: string): DriverDefinition['usb'][number] => ({ vendorId: '1a79', productId, description });

export const contourNext: DriverDefinition = {
  id: CONTOUR_DRIVER_ID,
  kind: 'glucose-meter',
  vendor: MANUFACTURER,
  models: ['Contour Next USB', 'Contour Next', 'Contour USB', 'Contour Next Link', 'Contour Next Link 2.4', 'Contour Next One', 'Contour Plus One', 'Contour Plus Blue'],
  usb: [
    usb('7350', 'Ascensia/Bayer Contour Next (USB HID)'),
    usb('7410', 'Ascensia/Bayer Contour Next USB (USB HID)'),
    usb('6002', 'Bayer Contour USB (USB HID)'),
    usb('6200', 'Bayer Contour Next Link, mg/dL (USB HID)'),
    usb('6300', 'Bayer Contour Next Link, mmol/L (USB HID)'),
    usb('6210', 'Ascensia Contour Next Link 2.4 (USB HID)'),
    usb('7800', 'Ascensia Contour Next One / Contour Plus One (USB HID)'),
    usb('7900', 'Ascensia Contour Next, newer model (USB HID)'),
    usb('7950', 'Ascensia Contour Plus Blue (USB HID)'),
  ],
  transports: ['hid', 'simulated'],
  commands: {
    download: { description: 'poke the meter and read its whole memory (one transfer per plug-in); returns {inserted, duplicates, records, unreadable}', params: NO_PARAMS },
    'clock/sync': { description: 'set the meter clock to the host time (minutes) in command mode after a transfer; unverified on hardware (one source)', params: NO_PARAMS },
    status: { description: 'the current device state: model, serial, unit, record count, clock skew, last download', params: NO_PARAMS },
  },
  decode: decodeContour,
  createSession: (host) => new ContourSession(host),
  simulator: {
    description: 'a Contour Next meter in data-transfer mode: ASTM frames in 64-byte HID reports, NAK → resend, command-mode clock set',
    options: SIMULATOR_OPTION_HELP,
    create: (options) => new ContourSimulator(parseContourSimulatorOptions(options)),
  },
};
