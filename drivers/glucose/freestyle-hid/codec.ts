/**
 * Abbott FreeStyle shared HID protocol: the pure codec of the `freestyle-hid` driver. The wire
 * protocol (reports, init, text replies, CKSM checksums, multi-record messages, keep-alives) is
 * described in README.md beside this file, with its sources.
 *
 * Everything here is pure: bytes in, values out. Decoding never throws; errors are values.
 */
import { meterNaiveTime } from '../../../src/util/time.ts';

export const REPORT_SIZE = 64;
export const MAX_PAYLOAD = REPORT_SIZE - 2;

/** Message types (research note §2.6, table "Message types"). */
export const MSG = {
  INIT: 0x01,
  INIT_REPLY: 0x71,
  X04: 0x04,
  X04_REPLY: 0x34,
  SERIAL: 0x05,
  SERIAL_REPLY: 0x06,
  SWVER: 0x15,
  SWVER_REPLY: 0x35,
  TEXT: 0x60,
  /** Text commands as the Libre/Neo software and Tidepool send them; the reply is still 0x60. */
  TEXT_ALT: 0x21,
  KEEPALIVE: 0x22,
  UNKNOWN_COMMAND: 0x30,
} as const;

export type FreeStyleErrorCode =
  /** A report shorter than its type and length bytes, or a length beyond the 62 payload bytes. */
  | 'bad-report'
  /** A text reply without `CKSM:` and 8 hex digits before its status line. */
  | 'missing-checksum'
  /** The 8 hex digits do not match the sum of the message bytes. */
  | 'bad-checksum'
  /** `CMD Fail!`: the meter refused the command. */
  | 'command-failed'
  /** No `CMD OK`/`CMD Fail!` within the size a meter's whole memory could take. */
  | 'reply-too-long'
  /** The capture or the link ended in the middle of a text reply. */
  | 'truncated-reply'
  /** A multi-record reply whose record checksum does not match its records. */
  | 'bad-record-checksum'
  /** A multi-record reply whose count line differs from the number of records. */
  | 'record-count-mismatch'
  /** A multi-record reply without its `<count>,<checksum>` line. */
  | 'bad-record-list'
  /** A record type no public source describes: reported, never guessed at. */
  | 'unknown-record-type'
  /** A known record type with the wrong number of fields or a non-numeric field. */
  | 'invalid-record'
  /** A date or time that does not exist (the meter reports 255 after its clock lost power). */
  | 'invalid-date'
  /** 0x30 0x01 0x85: the meter does not know the message type that was sent. */
  | 'unknown-command'
  /** A report of a type that does not answer what was sent. */
  | 'unexpected-report'
  /**
   * An InsuLinx glucose record whose undocumented fields differ from every record of the real
   * capture: it might be a control run or an error, so it is kept aside rather than published.
   */
  | 'unverified-record';

export interface FreeStyleError {
  code: FreeStyleErrorCode;
  /** Built from the protocol only; it never quotes the meter's text (which may be patient data). */
  detail: string;
}

type Result<T> = ({ ok: true } & T) | { ok: false; error: FreeStyleError };

const fail = (code: FreeStyleErrorCode, detail: string): { ok: false; error: FreeStyleError } => ({ ok: false, error: { code, detail } });

// ── reports ──

export interface Report {
  type: number;
  payload: Buffer;
}

/** One report as the meter or the host puts it on the wire: 64 bytes, zero padded. */
export function encodeReport(type: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  if (payload.length > MAX_PAYLOAD) throw new RangeError(`a FreeStyle report carries at most ${MAX_PAYLOAD} bytes, got ${payload.length}`);
  const out = Buffer.alloc(REPORT_SIZE);
  out[0] = type & 0xff;
  out[1] = payload.length;
  Buffer.from(payload).copy(out, 2);
  return out;
}

/** `[type][len][payload]`; the padding after `2 + len` is ignored. */
export function decodeReport(bytes: Uint8Array): Result<{ report: Report }> {
  if (bytes.length < 2) return fail('bad-report', `a ${bytes.length}-byte report has no type and length`);
  const len = bytes[1]!;
  if (len > MAX_PAYLOAD) return fail('bad-report', `report length byte ${len} is beyond the ${MAX_PAYLOAD} payload bytes`);
  if (2 + len > bytes.length) return fail('bad-report', `report says ${len} payload bytes but holds ${bytes.length - 2}`);
  return { ok: true, report: { type: bytes[0]!, payload: Buffer.from(bytes.subarray(2, 2 + len)) } };
}

/** A report without its padding, as transcripts keep it (`[type][len][payload]`). */
export function trimReport(bytes: Uint8Array): Buffer {
  const r = decodeReport(bytes);
  return Buffer.from(r.ok ? bytes.subarray(0, 2 + r.report.payload.length) : bytes);
}

/** A text command (`$serlnum?`) as one 0x60 report with its CR LF. */
export function textCommandReport(command: string, type: number = MSG.TEXT): Buffer {
  return encodeReport(type, Buffer.from(`${command}\r\n`, 'latin1'));
}

/**
 * Cuts a byte stream (TCP, stdio) into 64-byte reports. An HID transport delivers one report per
 * read and needs none of this; a stream may cut and glue reports anywhere.
 */
export class ReportStream {
  private buf = Buffer.alloc(0);

  push(chunk: Uint8Array): Buffer[] {
    this.buf = this.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buf, chunk]);
    const out: Buffer[] = [];
    while (this.buf.length >= REPORT_SIZE) {
      out.push(Buffer.from(this.buf.subarray(0, REPORT_SIZE)));
      this.buf = this.buf.subarray(REPORT_SIZE);
    }
    return out;
  }

  pending(): number {
    return this.buf.length;
  }

  reset(): void {
    this.buf = Buffer.alloc(0);
  }
}

// ── text replies ──

/** The 32-bit sum of the bytes. */
export function textChecksum(bytes: Uint8Array | string): number {
  const b = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
  let sum = 0;
  for (const x of b) sum = (sum + x) >>> 0;
  return sum;
}

export function formatTextChecksum(sum: number): string {
  return (sum >>> 0).toString(16).toUpperCase().padStart(8, '0');
}

const OK_END = Buffer.from('CMD OK\r\n', 'latin1');
const FAIL_END = Buffer.from('CMD Fail!\r\n', 'latin1');

/** A whole reply text for a message, as the meter sends it. */
export function textReply(message: Uint8Array | string, ok = true, checksum?: number): Buffer {
  const m = typeof message === 'string' ? Buffer.from(message, 'latin1') : Buffer.from(message);
  const sum = checksum ?? textChecksum(m);
  return Buffer.concat([m, Buffer.from(`CKSM:${formatTextChecksum(sum)}\r\nCMD ${ok ? 'OK' : 'Fail!'}\r\n`, 'latin1')]);
}

export type AssemblerOutput = { kind: 'reply'; bytes: Buffer } | { kind: 'overflow'; bytes: Buffer };

/**
 * Joins the payloads of 0x60 reports until the text ends with `CMD OK\r\n` or `CMD Fail!\r\n`.
 * The output does not depend on where the reports were cut.
 */
export class TextReplyAssembler {
  /** Far above the largest memory dump (a Libre's history is a few hundred kB). */
  static readonly MAX_REPLY = 4 * 1024 * 1024;
  private parts: Buffer[] = [];
  private length = 0;
  /** The last bytes appended (at most 10), to find a terminator that straddles two payloads. */
  private tail = Buffer.alloc(0);
  /** CR LF count of the text so far (records received, for progress). */
  lines = 0;

  push(payload: Uint8Array): AssemblerOutput[] {
    const out: AssemblerOutput[] = [];
    let start = 0;
    for (let i = 0; i < payload.length; i++) {
      if (payload[i] !== 0x0a) continue;
      // The last bytes up to this LF, across the previous payloads: enough for `CMD Fail!\r\n`.
      const window = Buffer.concat([this.tail, payload.subarray(start, i + 1)]);
      const recent = window.subarray(Math.max(0, window.length - FAIL_END.length));
      if (recent.length >= 2 && recent[recent.length - 2] === 0x0d) this.lines++;
      if (endsWith(recent, OK_END) || endsWith(recent, FAIL_END)) {
        this.append(payload.subarray(start, i + 1));
        start = i + 1;
        out.push({ kind: 'reply', bytes: this.take() });
      }
    }
    if (start < payload.length) {
      this.append(payload.subarray(start));
      if (this.length > TextReplyAssembler.MAX_REPLY) out.push({ kind: 'overflow', bytes: this.take() });
    }
    return out;
  }

  /** Text received so far that is not yet a whole reply. */
  pending(): Buffer {
    return Buffer.concat(this.parts);
  }

  reset(): void {
    this.parts = [];
    this.length = 0;
    this.tail = Buffer.alloc(0);
    this.lines = 0;
  }

  private append(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.parts.push(Buffer.from(bytes));
    this.length += bytes.length;
    const joined = Buffer.concat([this.tail, bytes]);
    this.tail = Buffer.from(joined.subarray(Math.max(0, joined.length - (FAIL_END.length - 1))));
  }

  private take(): Buffer {
    const all = Buffer.concat(this.parts);
    this.reset();
    return all;
  }
}

function endsWith(buf: Buffer, end: Buffer): boolean {
  return buf.length >= end.length && buf.subarray(buf.length - end.length).equals(end);
}

/** Verifies one whole reply and returns its message (the text before `CKSM:`). */
export function parseTextReply(reply: Uint8Array): Result<{ message: Buffer }> {
  const buf = Buffer.from(reply);
  let status: 'OK' | 'Fail!';
  if (endsWith(buf, OK_END)) status = 'OK';
  else if (endsWith(buf, FAIL_END)) status = 'Fail!';
  else return fail('truncated-reply', 'the reply does not end with a CMD OK or CMD Fail! line');
  const body = buf.subarray(0, buf.length - (status === 'OK' ? OK_END.length : FAIL_END.length));
  const m = /CKSM:([0-9A-Fa-f]{8})\r\n$/.exec(body.subarray(Math.max(0, body.length - 15)).toString('latin1'));
  if (!m || body.length < 15) return fail('missing-checksum', 'no CKSM: line with 8 hex digits before the status line');
  const message = body.subarray(0, body.length - 15);
  const given = Number.parseInt(m[1]!, 16);
  const actual = textChecksum(message);
  if (status === 'Fail!') return fail('command-failed', 'the meter answered CMD Fail!');
  if (given !== actual) {
    return fail('bad-checksum', `the reply carries CKSM ${formatTextChecksum(given)}, its ${message.length} message bytes sum to ${formatTextChecksum(actual)}`);
  }
  return { ok: true, message: Buffer.from(message) };
}

/** The lines of a message without their CR LF (text is Latin-1 decoded; the codec never interprets free text). */
export function messageLines(message: Uint8Array): string[] {
  const text = Buffer.from(message).toString('latin1');
  const lines = text.split('\r\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/**
 * A multi-record message: the record lines, verified against the count and checksum line, or
 * none for `Log Empty`.
 */
export function parseMultiRecord(message: Uint8Array): Result<{ records: string[]; count: number }> {
  const buf = Buffer.from(message);
  const text = buf.toString('latin1');
  if (text === 'Log Empty\r\n') return { ok: true, records: [], count: 0 };
  if (!text.endsWith('\r\n')) return fail('bad-record-list', 'the record list does not end with CR LF');
  const lastStart = text.lastIndexOf('\r\n', text.length - 3) + 2; // 0 when there is one line only
  const countLine = text.slice(lastStart, text.length - 2);
  const m = /^(\d{1,7}),([0-9A-Fa-f]{8})$/.exec(countLine);
  if (!m) return fail('bad-record-list', 'the record list has no <count>,<checksum> line at its end');
  const recordBytes = buf.subarray(0, lastStart);
  const given = Number.parseInt(m[2]!, 16);
  const actual = textChecksum(recordBytes);
  if (given !== actual) {
    return fail('bad-record-checksum', `the record checksum is ${formatTextChecksum(given)}, the ${recordBytes.length} record bytes sum to ${formatTextChecksum(actual)}`);
  }
  const records = lastStart === 0 ? [] : messageLines(recordBytes);
  const count = Number(m[1]);
  if (count !== records.length) return fail('record-count-mismatch', `the count line says ${count} records, the list holds ${records.length}`);
  return { ok: true, records, count };
}

/** A multi-record message for a list of record lines (simulator, tests). */
export function multiRecordMessage(records: string[]): Buffer {
  if (records.length === 0) return Buffer.from('Log Empty\r\n', 'latin1');
  const body = Buffer.from(records.map((r) => `${r}\r\n`).join(''), 'latin1');
  return Buffer.concat([body, Buffer.from(`${records.length},${formatTextChecksum(textChecksum(body))}\r\n`, 'latin1')]);
}

// ── init replies ──

/** Latin-1 text of an init reply (`serial\0`, `version\0`) without its NUL. */
export function cString(payload: Buffer): string {
  const nul = payload.indexOf(0);
  return payload.subarray(0, nul < 0 ? payload.length : nul).toString('latin1');
}

/** The init serial when it is one (`00000000 (No SerialNum)` is not). */
export function initSerial(payload: Buffer): string | null {
  const s = cString(payload).trim();
  return s && !/No SerialNum/i.test(s) ? s : null;
}

// ── dates ──

/** `$date?` → `M,D,YY` and `$time?` → `H,M` into one naive time (seconds 0). */
export function parseClock(dateLine: string, timeLine: string): Result<{ time: string }> {
  const d = /^(\d{1,3}),(\d{1,3}),(\d{1,3})$/.exec(dateLine);
  const t = /^(\d{1,3}),(\d{1,3})$/.exec(timeLine);
  if (!d || !t) return fail('invalid-date', 'the $date?/$time? replies are not M,D,YY and H,M');
  const time = meterNaiveTime(Number(d[3]), Number(d[1]), Number(d[2]), Number(t[1]), Number(t[2]));
  if (!time) return fail('invalid-date', 'the meter clock reads a date or time that does not exist (255 means its clock lost power)');
  return { ok: true, time };
}

/** Naive time → the set-clock commands `$date,M,D,YY` and `$time,H,M` (no leading zeros). */
export function setClockCommands(naive: string): { date: string; time: string } {
  const m = /^20(\d{2})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):\d{2}$/.exec(naive);
  if (!m) throw new RangeError(`the FreeStyle clock holds years 2000–2099 only: ${naive}`);
  const n = m.slice(1).map(Number) as [number, number, number, number, number];
  return { date: `$date,${n[1]},${n[2]},${n[0]}`, time: `$time,${n[3]},${n[4]}` };
}

// ── records ──

export type Analyte = 'glucose' | 'ketone';
export type Method = 'strip' | 'sensor-scan' | 'sensor-history';

export interface FreeStyleReading {
  /** The command whose reply held the record. */
  source: '$result?' | '$history?' | '$arresult?';
  recordType: number;
  /** The meter's own record number. */
  id: number;
  /** Naive meter time. */
  time: string;
  analyte: Analyte;
  method: Method;
  /** The raw wire value: glucose mg/dL, ketone mg/dL-like (÷18 = mmol/L), or the HI/LO literal. */
  raw: number | 'HI' | 'LO';
  control: boolean;
  /** Libre scans: the trend arrow 0–5. */
  trend?: number;
}

export type FreeStyleRecord =
  | { kind: 'reading'; reading: FreeStyleReading }
  /** A time change the meter logged: the new clock and the one before (null: not a real time). */
  | { kind: 'time-change'; id: number; time: string | null; previous: string | null }
  /** A record the meter itself marks invalid (error bit 0x8000): not a reading. */
  | { kind: 'invalid-reading'; id: number; time: string | null; source: FreeStyleReading['source'] }
  /** A known record type that is not a measurement (insulin, InsuLinx type 4). */
  | { kind: 'other'; recordType: number; id: number; what: string };

/**
 * How far a time change moved the meter clock: new minus old in seconds (negative: set back), or
 * null when either side is not a real time (a clock that had lost power reads 255).
 */
export function clockChangeSeconds(change: { time: string | null; previous: string | null }): number | null {
  if (change.time === null || change.previous === null) return null;
  return (Date.parse(`${change.time}Z`) - Date.parse(`${change.previous}Z`)) / 1000;
}

const isNum = (s: string | undefined): s is string => s !== undefined && /^\d{1,10}$/.test(s);

function ints(fields: string[], indexes: number[]): number[] | null {
  const out: number[] = [];
  for (const i of indexes) {
    const f = fields[i];
    if (!isNum(f)) return null;
    out.push(Number(f));
  }
  return out;
}

function wireValue(field: string | undefined, allowHiLo: boolean): number | 'HI' | 'LO' | null {
  if (isNum(field)) return Number(field);
  if (allowHiLo && (field === 'HI' || field === 'LO')) return field;
  return null;
}

function timeAt(fields: string[], at: number, seconds: boolean): string | null | undefined {
  const n = ints(fields, seconds ? [at, at + 1, at + 2, at + 3, at + 4, at + 5] : [at, at + 1, at + 2, at + 3, at + 4]);
  if (!n) return undefined;
  return meterNaiveTime(n[2]!, n[0]!, n[1]!, n[3]!, n[4]!, n[5] ?? 0);
}

/**
 * The InsuLinx type-0 fields whose meaning no public source gives, with the only value each takes
 * in all 227 glucose records of the real capture. Field 11 varies (0–3; Abbott's export calls the
 * column "Meal Taken Time") and is not checked.
 */
const INSULINX_FIXED_FIELDS: ReadonlyArray<[number, string]> = [
  [7, '1'],
  [8, '0'],
  [9, '0'],
  [10, '0'],
  [12, '0'],
  [14, '0'],
  [15, '0'],
];

/**
 * One `$result?` record (InsuLinx and Precision/Optium Neo). Record types:
 *   0  InsuLinx glucose: type,id,M,D,YY,h,m,?,?,?,?,?,?,value,?,? (16 fields; value mg/dL, HI, LO)
 *   4  InsuLinx, not a measurement (in the capture: weekly at 11:26, carrying the 70/160 target range)
 *   6  time change: type,id,M,D,YY,h,m,valid,oldM,oldD,oldYY,oldh,oldm — the new clock first, then the
 *      old one (Neo per the research note §2.6; InsuLinx confirmed by the real capture: record
 *      `6,20305,8,6,14,11,11,1,8,6,14,17,10` lies between 20303 at 15:59 and 20307 at 13:00, so the
 *      clock went from 17:10 back to 11:11, not the other way)
 *   7  Neo glucose: type,id,M,D,YY,h,m,?,value|HI|LO,?,flag,…  flag 0 = control solution
 *   9  Neo β-ketone: type,id,M,D,YY,h,m,?,value|HI,flag,…  value ÷ 18 = mmol/L; flag 0 = control
 *   10 Neo insulin, 11 Neo basal titration: not measurements
 */
export function parseResultRecord(line: string): Result<{ record: FreeStyleRecord }> {
  const f = line.split(',');
  if (!isNum(f[0]) || !isNum(f[1])) return fail('invalid-record', 'a $result? record does not start with a numeric type and id');
  const type = Number(f[0]);
  const id = Number(f[1]);
  const base = { source: '$result?' as const, recordType: type, id };
  switch (type) {
    case 0: {
      if (f.length !== 16) return fail('invalid-record', `an InsuLinx glucose record has 16 fields, this one ${f.length}`);
      const time = timeAt(f, 2, false);
      if (time === undefined || !ints(f, [7, 8, 9, 10, 11, 12, 14, 15])) return fail('invalid-record', 'an InsuLinx glucose record has a non-numeric field');
      if (time === null) return fail('invalid-date', 'an InsuLinx glucose record carries a date or time that does not exist');
      const raw = wireValue(f[13], true);
      if (raw === null) return fail('invalid-record', 'an InsuLinx glucose value is neither a number nor HI/LO');
      const odd = INSULINX_FIXED_FIELDS.filter(([i, v]) => f[i] !== v).map(([i]) => i);
      if (odd.length > 0) {
        return fail('unverified-record', `InsuLinx record ${id}: undocumented field(s) ${odd.join(', ')} differ from every record of the real capture`);
      }
      return { ok: true, record: { kind: 'reading', reading: { ...base, time, analyte: 'glucose', method: 'strip', raw, control: false } } };
    }
    case 4:
      if (f.length !== 15 || !ints(f, f.map((_, i) => i))) return fail('invalid-record', 'an InsuLinx type-4 record has 15 numeric fields');
      return { ok: true, record: { kind: 'other', recordType: 4, id, what: 'InsuLinx type 4 (not a measurement)' } };
    case 6: {
      if (f.length !== 13) return fail('invalid-record', `a time-change record has 13 fields, this one ${f.length}`);
      const time = timeAt(f, 2, false);
      const previous = timeAt(f, 8, false);
      if (time === undefined || previous === undefined || !isNum(f[7])) return fail('invalid-record', 'a time-change record has a non-numeric field');
      return { ok: true, record: { kind: 'time-change', id, time, previous } };
    }
    case 7:
    case 9: {
      const ketone = type === 9;
      const flagAt = ketone ? 9 : 10;
      if (f.length <= flagAt) return fail('invalid-record', `a Neo ${ketone ? 'ketone' : 'glucose'} record has at least ${flagAt + 1} fields, this one ${f.length}`);
      const time = timeAt(f, 2, false);
      if (time === undefined || !isNum(f[flagAt])) return fail('invalid-record', 'a Neo record has a non-numeric field');
      if (time === null) return fail('invalid-date', 'a Neo record carries a date or time that does not exist');
      // Ketone strips read 0.0–8.0 mmol/L: only HI is documented for them.
      const raw = wireValue(f[8], true);
      if (raw === null || (ketone && raw === 'LO')) return fail('invalid-record', `a Neo ${ketone ? 'ketone' : 'glucose'} value is not a number${ketone ? ' or HI' : ', HI or LO'}`);
      const control = Number(f[flagAt]) === 0;
      return {
        ok: true,
        record: { kind: 'reading', reading: { ...base, time, analyte: ketone ? 'ketone' : 'glucose', method: 'strip', raw, control } },
      };
    }
    case 10:
    case 11:
      return { ok: true, record: { kind: 'other', recordType: type, id, what: type === 10 ? 'Neo insulin entry' : 'Neo basal titration' } };
    default:
      return fail('unknown-record-type', `$result? record type ${type} is not described by any public source`);
  }
}

const LIBRE_ERROR_BIT = 0x8000;

/**
 * One Libre `$history?` record, the sensor's automatic reading every ~15 min:
 * id,12,M,D,YY,h,m,s,?,?,?,?,first,value,runtime,errors (16 fields; value mg/dL).
 */
export function parseHistoryRecord(line: string): Result<{ record: FreeStyleRecord }> {
  const f = line.split(',');
  if (f.length < 16 || !isNum(f[0]) || !isNum(f[1])) return fail('invalid-record', `a $history? record has 16 numeric fields, this one ${f.length}`);
  const id = Number(f[0]);
  const type = Number(f[1]);
  if (type !== 12) return fail('unknown-record-type', `$history? record type ${type} is not described by any public source`);
  const time = timeAt(f, 2, true);
  if (time === undefined || !isNum(f[13]) || !isNum(f[15])) return fail('invalid-record', 'a $history? record has a non-numeric field');
  if (Number(f[15]) & LIBRE_ERROR_BIT) return { ok: true, record: { kind: 'invalid-reading', id, time, source: '$history?' } };
  if (time === null) return fail('invalid-date', 'a $history? record carries a date or time that does not exist');
  return {
    ok: true,
    record: {
      kind: 'reading',
      reading: { source: '$history?', recordType: 12, id, time, analyte: 'glucose', method: 'sensor-history', raw: Number(f[13]), control: false },
    },
  };
}

/**
 * One Libre `$arresult?` record. Type 2, a reading the user took: id,2,M,D,YY,h,m,s,?,kind,?,?,
 * value,?,trend,… with kind 0 = blood-glucose strip, 1 = β-ketone strip (value ÷ 18 = mmol/L),
 * 2 = sensor scan, and the error bitfield at index 28. Type 5, a time change: new time at 2–7,
 * old at 9–14.
 */
export function parseArresultRecord(line: string): Result<{ record: FreeStyleRecord }> {
  const f = line.split(',');
  if (!isNum(f[0]) || !isNum(f[1])) return fail('invalid-record', 'an $arresult? record does not start with a numeric id and type');
  const id = Number(f[0]);
  const type = Number(f[1]);
  if (type === 5) {
    if (f.length < 15) return fail('invalid-record', `an $arresult? time change has at least 15 fields, this one ${f.length}`);
    const time = timeAt(f, 2, true);
    const previous = timeAt(f, 9, true);
    if (time === undefined || previous === undefined) return fail('invalid-record', 'an $arresult? time change has a non-numeric field');
    return { ok: true, record: { kind: 'time-change', id, time, previous } };
  }
  if (type !== 2) return fail('unknown-record-type', `$arresult? record type ${type} is not described by any public source`);
  if (f.length < 29) return fail('invalid-record', `an $arresult? reading has at least 29 fields, this one ${f.length}`);
  const time = timeAt(f, 2, true);
  const n = ints(f, [9, 12, 14, 28]);
  if (time === undefined || !n) return fail('invalid-record', 'an $arresult? reading has a non-numeric field');
  const [kind, value, trend, errors] = n as [number, number, number, number];
  if (errors & LIBRE_ERROR_BIT) return { ok: true, record: { kind: 'invalid-reading', id, time, source: '$arresult?' } };
  if (time === null) return fail('invalid-date', 'an $arresult? reading carries a date or time that does not exist');
  if (kind > 2) return fail('unknown-record-type', `$arresult? reading kind ${kind} is not described by any public source`);
  const reading: FreeStyleReading = {
    source: '$arresult?',
    recordType: 2,
    id,
    time,
    analyte: kind === 1 ? 'ketone' : 'glucose',
    method: kind === 2 ? 'sensor-scan' : 'strip',
    raw: value,
    control: false,
  };
  if (kind === 2 && trend <= 5) reading.trend = trend;
  return { ok: true, record: { kind: 'reading', reading } };
}

export const RECORD_COMMANDS = ['$result?', '$history?', '$arresult?'] as const;
export type RecordCommand = (typeof RECORD_COMMANDS)[number];

export function parseRecord(command: RecordCommand, line: string): Result<{ record: FreeStyleRecord }> {
  if (command === '$history?') return parseHistoryRecord(line);
  if (command === '$arresult?') return parseArresultRecord(line);
  return parseResultRecord(line);
}
