/**
 * The OneTouch Ultra 2 codec: the checksum, line framing, line parsing and host commands, both
 * directions of the ASCII line protocol. Pure, with no I/O; errors are returned as values and never
 * thrown. The command table and the protocol's pitfalls are in this folder's README.
 *
 *   host → meter   0x11 0x0D <CMD> 0x0D
 *   meter → host   <body> <CHK4> CR LF    CHK4: the 16-bit sum of the body bytes as 4 hex digits
 */
import { meterNaiveTime } from '../../../src/util/time.ts';

export type Ultra2ErrorCode =
  /** The line does not end with a space and 4 hex digits. */
  | 'missing-checksum'
  /** The 4 hex digits do not match the sum of the body. */
  | 'bad-checksum'
  /** The checksum is good (or the line is too short to hold one), but the line is not a reply this meter sends. */
  | 'invalid-response'
  /** A serial number that is not 9 characters ending in Y, so not an Ultra 2. */
  | 'invalid-serial'
  /** A date or time field that is not a real calendar time. */
  | 'invalid-date'
  | 'line-too-long'
  /** Bytes after the last line end: the capture or the link stopped in the middle of a line. */
  | 'truncated-line'
  /** The number of readings differs from the count in the DMP header. */
  | 'truncated-dump'
  /** Readings with no DMP header before them, so the count cannot be checked. */
  | 'missing-dump-header'
  /** Noise bytes before a valid line, on the same line. */
  | 'garbage'
  /** A valid line that does not answer the command that was sent. */
  | 'unexpected-reply';

export interface Ultra2Error {
  code: Ultra2ErrorCode;
  /** What went wrong, built from the protocol only. It never quotes the line. */
  detail: string;
}

export type DisplayUnit = 'mg/dL' | 'mmol/L';
export type Meal = 'N' | 'B' | 'A';

export interface Ultra2Reading {
  /** The meter's naive local time, `YYYY-MM-DDTHH:MM:SS`. */
  time: string;
  /** mg/dL, always. */
  value: number;
  control: boolean;
  parity: boolean;
  meal: Meal;
  /** 0–11; see COMMENT_SLUGS. */
  comment: number;
}

export type Ultra2Message =
  | { type: 'firmware'; firmware: string; build: string | null }
  | { type: 'serial'; serial: string }
  | { type: 'clock'; time: string }
  | { type: 'clock-set'; time: string }
  | { type: 'unit'; unit: DisplayUnit }
  | { type: 'dump-header'; count: number; serial: string; unit: DisplayUnit }
  | { type: 'reading'; reading: Ultra2Reading }
  | { type: 'erased' };

export type Ultra2LineResult =
  | { ok: true; message: Ultra2Message; /** noise before the line, skipped */ garbage?: Buffer }
  | { ok: false; error: Ultra2Error };

/** The 16-bit sum of the body bytes. */
export function ultra2Checksum(body: Uint8Array | string): number {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'latin1') : body;
  let sum = 0;
  for (const b of bytes) sum = (sum + b) & 0xffff;
  return sum;
}

export function formatChecksum(sum: number): string {
  return (sum & 0xffff).toString(16).toUpperCase().padStart(4, '0');
}

export const CR = 0x0d;
export const LF = 0x0a;
export const NUL = 0x00;

export type FramedItem = { kind: 'line'; bytes: Buffer } | { kind: 'overflow'; bytes: Buffer };

/**
 * Cuts a byte stream into lines. CR LF ends a line on the wire. A bare CR or LF is accepted as well,
 * because the glucometerutils vectors end in CR and edited files may end in LF. Empty lines are
 * skipped. NUL bytes where a line would start are counted and dropped: a meter that is not ready
 * answers a single 0x00. The output does not depend on how the stream was chunked.
 */
export class LineFramer {
  /** The longest line the meter sends is about 60 bytes. */
  static readonly MAX_LINE = 160;
  private readonly buf = Buffer.alloc(LineFramer.MAX_LINE);
  private len = 0;
  private discarding = false;
  /** NUL bytes seen where a line would start. */
  nulBytes = 0;

  push(chunk: Uint8Array): FramedItem[] {
    const out: FramedItem[] = [];
    for (const b of chunk) {
      if (b === CR || b === LF) {
        if (this.discarding) this.discarding = false;
        else if (this.len > 0) out.push({ kind: 'line', bytes: Buffer.from(this.buf.subarray(0, this.len)) });
        this.len = 0;
        continue;
      }
      if (this.discarding) continue;
      if (b === NUL && this.len === 0) {
        this.nulBytes++;
        continue;
      }
      if (this.len === LineFramer.MAX_LINE) {
        out.push({ kind: 'overflow', bytes: Buffer.from(this.buf) });
        this.len = 0;
        this.discarding = true;
        continue;
      }
      this.buf[this.len++] = b;
    }
    return out;
  }

  /** The bytes of an unfinished line, without a line end yet. */
  pending(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len));
  }

  reset(): void {
    this.len = 0;
    this.discarding = false;
    this.nulBytes = 0;
  }
}

const fail = (code: Ultra2ErrorCode, detail: string): { ok: false; error: Ultra2Error } => ({
  ok: false,
  error: { code, detail },
});

/** One body character, a space and four hex digits. */
const MIN_LINE = 6;

function splitChecksum(line: Uint8Array): { ok: true; body: Buffer } | { ok: false; error: Ultra2Error } {
  const buf = Buffer.from(line.buffer, line.byteOffset, line.byteLength);
  if (buf.length < MIN_LINE) return fail('invalid-response', `a ${buf.length}-byte line is too short to be a reply`);
  const tail = buf.subarray(buf.length - 5).toString('latin1');
  if (!/^ [0-9A-Fa-f]{4}$/.test(tail)) return fail('missing-checksum', 'the line does not end with a space and 4 hex digits');
  const body = buf.subarray(0, buf.length - 5);
  const given = parseInt(tail.slice(1), 16);
  const actual = ultra2Checksum(body);
  if (given !== actual) {
    return fail('bad-checksum', `the line carries checksum ${formatChecksum(given)}, its bytes sum to ${formatChecksum(actual)}`);
  }
  return { ok: true, body };
}

const DATE_RE = String.raw`(\d{2})/(\d{2})/(\d{2})`;
// The meter pads the time field with 3 spaces. Any number of spaces is accepted.
const TIME_RE = String.raw`(\d{2}):(\d{2}):(\d{2}) *`;
const FIRMWARE_RE = /^\?(\S+)(?: (.+))?$/;
const SERIAL_RE = /^@ "([^"]*)"$/;
const CLOCK_RE = new RegExp(`^([FT]) "([A-Z]{3})","${DATE_RE}","${TIME_RE}"$`);
const UNIT_RE = /^SU\?,"(MG\/DL |MMOL\/L)"$/;
const HEADER_RE = /^P (\d{3}),"([^"]*)","(MG\/DL |MMOL\/L)"$/;
// The final `, 00` field is undocumented. Only 00 has ever been seen, so any other value is refused
// (invalid-response) rather than guessed at.
const READING_RE = new RegExp(`^P "([A-Z]{3})","${DATE_RE}","${TIME_RE}","([C ]) (\\d{3})([? ])","([NBA])","(\\d{2})", 00$`);
/** The first byte of every reply body, used to find a line behind noise. */
const LINE_STARTS = new Set([...'?@FTSPZ'].map((c) => c.charCodeAt(0)));

export const ULTRA2_SERIAL_RE = /^[0-9A-Z]{8}Y$/;

export function isUltra2Serial(serial: string): boolean {
  return ULTRA2_SERIAL_RE.test(serial);
}

/** The wire's `MM/DD/YY` and `HH:MM:SS` digits, in that order → naive time, or null if it is not a real time. */
export function naiveFromWire(fields: string[]): string | null {
  const [mo, d, yy, h, mi, s] = fields.map(Number) as [number, number, number, number, number, number];
  return meterNaiveTime(yy, mo, d, h, mi, s);
}

function displayUnit(wire: string): DisplayUnit {
  return wire === 'MMOL/L' ? 'mmol/L' : 'mg/dL';
}

function parseBody(body: string): Ultra2LineResult {
  let m: RegExpExecArray | null;
  if ((m = READING_RE.exec(body))) {
    const [c, value, parity, meal, comment] = m.slice(8) as string[];
    const time = naiveFromWire(m.slice(2, 8));
    if (!time) return fail('invalid-date', 'a reading carries a date or time that does not exist');
    const code = Number(comment);
    if (code > 11) return fail('invalid-response', `comment code ${code} is outside 00–11`);
    return {
      ok: true,
      message: {
        type: 'reading',
        reading: { time, value: Number(value), control: c === 'C', parity: parity === '?', meal: meal as Meal, comment: code },
      },
    };
  }
  if ((m = HEADER_RE.exec(body))) {
    const serial = m[2]!;
    if (!isUltra2Serial(serial)) return fail('invalid-serial', 'the dump header serial is not 9 characters ending in Y');
    return { ok: true, message: { type: 'dump-header', count: Number(m[1]), serial, unit: displayUnit(m[3]!) } };
  }
  if ((m = SERIAL_RE.exec(body))) {
    if (!isUltra2Serial(m[1]!)) return fail('invalid-serial', 'the serial number is not 9 characters ending in Y');
    return { ok: true, message: { type: 'serial', serial: m[1]! } };
  }
  if ((m = CLOCK_RE.exec(body))) {
    const time = naiveFromWire(m.slice(3, 9));
    if (!time) return fail('invalid-date', 'the meter clock reads a date or time that does not exist');
    return { ok: true, message: { type: m[1] === 'F' ? 'clock' : 'clock-set', time } };
  }
  if ((m = UNIT_RE.exec(body))) return { ok: true, message: { type: 'unit', unit: displayUnit(m[1]!) } };
  if ((m = FIRMWARE_RE.exec(body))) return { ok: true, message: { type: 'firmware', firmware: m[1]!, build: m[2] ?? null } };
  if (body === 'Z') return { ok: true, message: { type: 'erased' } };
  return fail('invalid-response', 'the checksum is good but the line is no known Ultra 2 reply');
}

function decodeWholeLine(line: Uint8Array): Ultra2LineResult {
  const split = splitChecksum(line);
  if (!split.ok) return split;
  return parseBody(split.body.toString('latin1'));
}

/**
 * Verifies and parses one line, without its line end. If the whole line fails its checksum but a
 * later part of it is a complete valid line, that part is returned with the noise before it in
 * `garbage`. This covers line noise glued to the start of a line. Such a suffix needs its own
 * matching checksum and must match a strict reply pattern, so it cannot turn into a wrong reading.
 */
export function decodeLine(line: Uint8Array): Ultra2LineResult {
  const whole = decodeWholeLine(line);
  if (whole.ok || (whole.error.code !== 'bad-checksum' && whole.error.code !== 'missing-checksum')) return whole;
  for (let i = 1; i <= line.length - MIN_LINE; i++) {
    if (!LINE_STARTS.has(line[i]!)) continue;
    const rest = decodeWholeLine(line.subarray(i));
    if (rest.ok) return { ...rest, garbage: Buffer.from(line.subarray(0, i)) };
  }
  return whole;
}

/** A host command on the wire: 0x11 0x0D <CMD> 0x0D. */
export function encodeCommand(command: string): Buffer {
  return Buffer.concat([Buffer.from([0x11, CR]), Buffer.from(command, 'latin1'), Buffer.from([CR])]);
}

/** `2015-03-21T16:45:24` → `DMT03/21/15 16:45:24`. */
export function setClockCommand(naive: string): string {
  const m = /^20(\d{2})-(\d{2})-(\d{2})T(\d{2}:\d{2}:\d{2})$/.exec(naive);
  if (!m) throw new RangeError(`the Ultra 2 clock holds years 2000–2099 only: ${naive}`);
  return `DMT${m[2]}/${m[3]}/${m[1]} ${m[4]}`;
}

/** One reply line on the wire: body, space, checksum, CR LF. */
export function ultra2Line(body: string, checksum: number = ultra2Checksum(body)): Buffer {
  return Buffer.from(`${body} ${formatChecksum(checksum)}\r\n`, 'latin1');
}
