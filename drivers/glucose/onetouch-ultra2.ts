/**
 * LifeScan OneTouch Ultra 2: an ASCII line protocol over the meter's 3.5 mm TRS serial cable,
 * 9600 baud 8N1.
 *
 * Source: the shared research note `research/glucose-meters.md` §2.1 and the pitfalls in §3. The
 * note collects facts from glucometerutils (`drivers/otultra2.py`) and the Tidepool uploader
 * (`lib/drivers/onetouch/oneTouchUltra2.js`). Only the facts are used here, none of their code.
 *
 *   host → meter   0x11 0x0D <CMD> 0x0D   glucometerutils style, which this driver sends. Tidepool
 *                                         sends 0x11 0x0D <CMD> with no final CR. The simulator
 *                                         accepts both.
 *   meter → host   <body> <CHK4> CR LF    CHK4: the 16-bit sum of the body bytes as 4 hex digits.
 *                                         The space before it is not summed.
 *
 *   DM?     ?P02.00.00 30/08/06                firmware (and its build date)
 *   DM@     @ "GMF600DCY"                      serial: 9 characters; the final Y marks an Ultra 2
 *   DMF     F "SAT","08/03/13","22:12:00   "   clock: MM/DD/YY, naive local time
 *   DMT..   T "SAT","08/03/13","22:12:00   "   set the clock: DMTMM/DD/YY HH:MM:SS
 *   DMSU?   SU?,"MG/DL "  |  SU?,"MMOL/L"      display unit (display only, see below)
 *   DMP     P 003,"GMF600DCY","MG/DL "         dump header: count, serial, display unit, then
 *           P "SAT","03/21/15","16:45:24   ","  081 ","N","03", 00     one line per reading,
 *                                                                        newest first
 *   DMZ     Z                                  erases the memory; the session never sends it
 *
 * A reading's value is in mg/dL on the wire, even when the meter displays mmol/L. The value field
 * is `<C|space> <3 digits><?|space>`: C marks control solution, ? a parity error. Meal is N, B or
 * A. Comment codes run 00–11. The meter has no record number, so a reading's identity is serial +
 * time + value. A meter that is switched on, or not seated in the cable, answers with a single
 * 0x00 byte. It must be switched off before it is plugged in.
 *
 * Sections: codec (pure) · records and decode() · session · simulator · definition.
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
import { NO_PARAMS } from '../../src/driver-sdk/index.ts';
import {
  type Attempt,
  CLOCK_SKEW_LIMIT_S,
  type ClockSyncResult,
  MeterSession,
  type MeterSessionOptions,
  NoAnswerError,
  numberOptions,
  ProtocolError,
  type RetryPolicy,
  retryPolicy,
  type SessionCommand,
} from '../../src/driver-sdk/meter-session.ts';
import { deviceBytes } from '../../src/driver-sdk/capture.ts';
import type { DeviceConfig } from '../../src/config/types.ts';
import { byDeviceTime } from '../../src/records/build.ts';
import { glucoseObservation, rangeGlucose } from './lifescan-binary.ts';
import type { DeviceIdentity, ResultDraft } from '../../src/records/types.ts';
import type { ByteTransport } from '../../src/transports/transport.ts';
import { definedOnly, SimulatorOptionReader } from '../../src/driver-sdk/simulator-options.ts';
import { seededRandom } from '../../src/util/random.ts';
import { ChunkedWriter } from '../../src/driver-sdk/simulator-wire.ts';
import { SimulatedClock, type SimulatedClockOptions } from '../../src/driver-sdk/simulated-clock.ts';
import { isMeterNaiveTime, meterNaiveTime, naiveToZoned, nowInZone } from '../../src/util/time.ts';

export const ULTRA2_DRIVER_ID = 'onetouch-ultra2';
const MANUFACTURER = 'LifeScan';
const MODEL = 'OneTouch Ultra 2';

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Codec: checksum, line framing, line parsing, host commands. Pure, with no I/O. Errors are
// returned as values and never thrown.
// ────────────────────────────────────────────────────────────────────────────────────────────────

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

const CR = 0x0d;
const LF = 0x0a;
const NUL = 0x00;

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

const ULTRA2_SERIAL_RE = /^[0-9A-Z]{8}Y$/;

export function isUltra2Serial(serial: string): boolean {
  return ULTRA2_SERIAL_RE.test(serial);
}

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}

/** The wire's `MM/DD/YY` and `HH:MM:SS` digits, in that order → naive time, or null if it is not a real time. */
function naiveFromWire(fields: string[]): string | null {
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

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Records: readings → ResultDraft, and decode() for `poctd replay` and the golden tests.
// ────────────────────────────────────────────────────────────────────────────────────────────────

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
  return {
    key: readingKey(r),
    device: { ...device },
    category: r.control ? 'control' : 'patient',
    specimen: { id: null, type: r.control ? 'control solution' : 'capillary blood' },
    patient: null,
    operator: null,
    observed_at: naiveToZoned(r.time, timezone),
    device_time: r.time,
    observations: [
      {
        ...observation,
        flags: [...(r.parity ? ['parity-error'] : []), ...observation.flags],
        text: glucose.kind === 'value' ? null : String(r.value),
      },
    ],
    flags,
  };
}

export function ultra2Identity(deviceId: string, serial: string | null, firmware: string | null): DeviceIdentity {
  return { id: deviceId, driver: ULTRA2_DRIVER_ID, manufacturer: MANUFACTURER, model: MODEL, serial, firmware };
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
  return { drafts, issues, device };
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Session: the live conversation with one meter.
// ────────────────────────────────────────────────────────────────────────────────────────────────

/** `reply_timeout_ms` is per line (during DMP it restarts with every line); `retries` also covers the whole DMP. */
export type Ultra2SessionOptions = MeterSessionOptions;

const DEFAULT_SESSION_OPTIONS: Ultra2SessionOptions = { reply_timeout_ms: 2000, retries: 1, clock_skew_limit_s: CLOCK_SKEW_LIMIT_S };

/** Reads `device.options`. Throws an Error that names the bad option. */
export function ultra2SessionOptions(device: DeviceConfig): Ultra2SessionOptions {
  return numberOptions(device, DEFAULT_SESSION_OPTIONS, ['retries']);
}

type Reply = { ok: true; message: Ultra2Message } | { ok: false; timeout: boolean; code: string };

/**
 * Errors found after the checksum matched: the line arrived as the meter sent it, so it is the
 * meter's content that cannot be read, and a retry cannot help.
 */
function isContentError(code: Ultra2ErrorCode): boolean {
  return code === 'invalid-response' || code === 'invalid-date' || code === 'invalid-serial';
}

export interface DownloadResult {
  inserted: number;
  duplicates: number;
  records: number;
  unreadable: number;
}

interface Dump {
  header: Extract<Ultra2Message, { type: 'dump-header' }>;
  readings: Ultra2Reading[];
  /** Lines with a good checksum that are no valid reading: quarantined, not stored. */
  unreadable: number;
}

class Ultra2Session extends MeterSession<FramedItem> {
  private readonly opts: Ultra2SessionOptions;
  private readonly tries: RetryPolicy;
  private readonly framer = new LineFramer();

  constructor(host: SessionHost) {
    super(host, ULTRA2_DRIVER_ID);
    this.opts = ultra2SessionOptions(host.device);
    this.tries = retryPolicy(this.opts, 250);
  }

  protected frame(chunk: Buffer): FramedItem[] {
    return this.framer.push(chunk);
  }

  protected resetFramer(): void {
    this.framer.reset();
  }

  protected override commands(): Record<string, SessionCommand> {
    return { 'clock/sync': () => this.syncClock() };
  }

  private badLine(bytes: Buffer, code: string, detail: string): void {
    this.report.badData(bytes, code, detail, 'line');
  }

  private async sendCommand(command: string): Promise<void> {
    await this.send(encodeCommand(command));
  }

  /** Reads one reply line and checks that it is of the expected type. Bad lines are reported. */
  private async readReply(expected: Ultra2Message['type']): Promise<Reply> {
    const item = await this.inbox.next(this.opts.reply_timeout_ms);
    if (!item) return { ok: false, timeout: true, code: 'timeout' };
    if (item.kind === 'overflow') {
      this.badLine(item.bytes, 'line-too-long', `no line end within ${LineFramer.MAX_LINE} bytes`);
      return { ok: false, timeout: false, code: 'line-too-long' };
    }
    const r = decodeLine(item.bytes);
    if (!r.ok) {
      this.badLine(item.bytes, r.error.code, r.error.detail);
      return { ok: false, timeout: false, code: r.error.code };
    }
    if (r.garbage) this.badLine(r.garbage, 'garbage', 'noise before a valid line');
    if (r.message.type !== expected) {
      this.badLine(item.bytes, 'unexpected-reply', `expected a ${expected} line, got a ${r.message.type} line`);
      return { ok: false, timeout: false, code: 'unexpected-reply' };
    }
    return r;
  }

  /** Sends a one-line command and returns its verified reply. Sent once more on failure. */
  private async ask<T extends Ultra2Message['type']>(command: string, expected: T): Promise<Extract<Ultra2Message, { type: T }>> {
    const name = command.startsWith('DMT') ? 'DMT' : command;
    return this.retry(
      this.tries,
      async (): Promise<Attempt<Extract<Ultra2Message, { type: T }>, Extract<Reply, { ok: false }>>> => {
        this.clearInbox();
        await this.sendCommand(command);
        const reply = await this.readReply(expected);
        return reply.ok ? { ok: true, value: reply.message as Extract<Ultra2Message, { type: T }> } : { ok: false, failure: reply };
      },
      (failures) => {
        const last = failures.at(-1)!;
        if (last.timeout) {
          const nul = this.framer.nulBytes > 0;
          return new NoAnswerError(
            nul
              ? `the meter answered ${name} with a 0x00 byte only: switch it off, then seat it in the cable`
              : `no answer to ${name}: the meter is off, on when it should be off, or not in the cable`,
          );
        }
        return new ProtocolError(last.code, `no valid reply to ${name} after ${failures.length} tries (${last.code})`);
      },
    );
  }

  /** DMP: the header, then exactly `count` readings. The whole dump is asked again on any fault. */
  private async readDump(): Promise<Dump> {
    return this.retry(
      this.tries,
      () => this.readDumpOnce(),
      (codes) => {
        const last = codes.at(-1)!;
        if (last === 'timeout') return new NoAnswerError('no answer to DMP: the meter stopped answering');
        return new ProtocolError(last, `no complete DMP dump after ${codes.length} tries (${last}); nothing was stored`);
      },
    );
  }

  /** One DMP: the dump, or the code of the first fault that spoils it. */
  private async readDumpOnce(): Promise<Attempt<Dump, string>> {
    this.clearInbox();
    await this.sendCommand('DMP');
    const head = await this.readReply('dump-header');
    if (!head.ok) return { ok: false, failure: head.code };
    const header = head.message as Extract<Ultra2Message, { type: 'dump-header' }>;
    const total = header.count;
    // At most ~10 progress events per download, none for a few new readings.
    const step = Math.max(50, Math.ceil(total / 10));
    const readings: Ultra2Reading[] = [];
    let unreadable = 0;
    let fault: string | null = null;
    for (let i = 0; i < total; i++) {
      const item = await this.inbox.next(this.opts.reply_timeout_ms);
      if (!item) {
        fault = 'truncated-dump';
        this.host.log.warn({ received: i, total }, 'onetouch-ultra2: the dump stopped short');
        break;
      }
      if (item.kind === 'overflow') {
        this.badLine(item.bytes, 'line-too-long', `no line end within ${LineFramer.MAX_LINE} bytes`);
        fault = 'line-too-long';
        continue;
      }
      const r = decodeLine(item.bytes);
      if (!r.ok) {
        this.badLine(item.bytes, r.error.code, r.error.detail);
        if (isContentError(r.error.code)) {
          // The checksum holds, so this is what the meter has in memory: asking again brings
          // the same line back. It stays in quarantine; the readings around it are stored.
          unreadable++;
          continue;
        }
        fault = r.error.code;
        continue;
      }
      if (r.garbage) this.badLine(r.garbage, 'garbage', 'noise before a valid line');
      if (r.message.type !== 'reading') {
        this.badLine(item.bytes, 'unexpected-reply', `expected a reading line, got a ${r.message.type} line`);
        fault = 'unexpected-reply';
        continue;
      }
      readings.push(r.message.reading);
      const n = i + 1;
      if (n === total || n % step === 0) {
        this.report.emit('download_progress', `${n} of ${total} readings`, { received: n, total });
      }
    }
    return fault ? { ok: false, failure: fault } : { ok: true, value: { header, readings, unreadable } };
  }

  // ── conversations ──

  protected download(trigger: string): Promise<DownloadResult> {
    return this.downloadConversation(
      trigger,
      () => this.ask('DM?', 'firmware'),
      async (fw) => {
        const sn = await this.ask('DM@', 'serial');
        const clock = await this.ask('DMF', 'clock');
        const unit = await this.ask('DMSU?', 'unit');
        this.report.patch({
          model: MODEL,
          serial: sn.serial,
          firmware: fw.firmware,
          meter: { display_unit: unit.unit },
          last_seen: this.host.now().toISOString(),
        });
        this.report.clockRead(clock.time, this.host.timezone, this.host.now(), this.opts.clock_skew_limit_s);

        const dump = await this.readDump();
        const identity = ultra2Identity(this.host.device.id, dump.header.serial, fw.firmware);
        const drafts = readingsToDrafts(dump.readings, identity, this.host.timezone);
        const stored = await this.commitDownload(drafts);
        const skipped = dump.unreadable ? `; ${dump.unreadable} unreadable lines kept in quarantine` : '';
        return {
          result: { inserted: stored.inserted, duplicates: stored.duplicates, records: drafts.length, unreadable: dump.unreadable },
          message: `downloaded ${drafts.length} readings: ${stored.inserted} new, ${stored.duplicates} already stored${skipped}`,
          data: { records: drafts.length, inserted: stored.inserted, duplicates: stored.duplicates, unreadable: dump.unreadable },
          state: { meter: { record_count: dump.header.count } },
        };
      },
    );
  }

  private async syncClock(): Promise<ClockSyncResult> {
    if (!this.transport.isOpen) throw new Error('onetouch-ultra2: the transport is not open');
    this.inbox.resume();
    try {
      const target = nowInZone(this.host.timezone, this.host.now());
      const reply = await this.ask(setClockCommand(target), 'clock-set');
      const off = Math.abs(Date.parse(`${reply.time}Z`) - Date.parse(`${target}Z`)) / 1000;
      if (off > 2) {
        throw new ProtocolError('clock-not-set', `the meter reports a clock ${Math.round(off)} s away from the time sent`);
      }
      return this.report.clockSet(reply.time, this.host.timezone, this.host.now(), this.opts.clock_skew_limit_s);
    } catch (err) {
      throw this.failed(err, 'device_error');
    }
  }

}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Simulator: the meter's side of the protocol, for the demo, the tests and the benchmark.
// ────────────────────────────────────────────────────────────────────────────────────────────────

export interface SimulatedReading {
  /** Naive meter time `YYYY-MM-DDTHH:MM:SS`, years 2000–2099. */
  time: string;
  /** mg/dL, 0–999. */
  value: number;
  control?: boolean;
  meal?: Meal;
  comment?: number;
  parity?: boolean;
}

/** What a meter holds, enough to answer every command. */
export interface Ultra2MeterState {
  serial: string;
  /** The text after `?` in the DM? reply, e.g. `P02.00.00 30/08/06`. */
  firmware: string;
  unit: DisplayUnit;
  /** The meter's clock now, naive. */
  clock: string;
  /** In any order; DMP sends them newest first. */
  memory: SimulatedReading[];
}

const DAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];

/** `2015-03-21T16:45:24` → [`SAT`, `03/21/15`, `16:45:24`]. */
function wireDateTime(naive: string): [string, string, string] {
  const m = /^20(\d{2})-(\d{2})-(\d{2})T(\d{2}:\d{2}:\d{2})$/.exec(naive);
  if (!m) throw new RangeError(`not a naive time in 2000–2099: ${naive}`);
  const dow = DAYS[new Date(`${naive}Z`).getUTCDay()]!;
  return [dow, `${m[2]}/${m[3]}/${m[1]}`, m[4]!];
}

/** One reply line on the wire: body, space, checksum, CR LF. */
export function ultra2Line(body: string, checksum: number = ultra2Checksum(body)): Buffer {
  return Buffer.from(`${body} ${formatChecksum(checksum)}\r\n`, 'latin1');
}

export function readingBody(r: SimulatedReading): string {
  const [dow, date, time] = wireDateTime(r.time);
  const value = `${r.control ? 'C' : ' '} ${String(r.value).padStart(3, '0')}${r.parity ? '?' : ' '}`;
  return `P "${dow}","${date}","${time}   ","${value}","${r.meal ?? 'N'}","${pad2(r.comment ?? 0)}", 00`;
}

/** The reply bodies (no checksum, no line end) the meter sends for `command`. Null if it stays silent. */
export function ultra2ReplyBodies(command: string, meter: Ultra2MeterState): string[] | null {
  const unitWire = meter.unit === 'mmol/L' ? 'MMOL/L' : 'MG/DL ';
  const clockBody = (letter: 'F' | 'T', naive: string): string => {
    const [dow, date, time] = wireDateTime(naive);
    return `${letter} "${dow}","${date}","${time}   "`;
  };
  switch (command) {
    case 'DM?':
      return [`?${meter.firmware}`];
    case 'DM@':
      return [`@ "${meter.serial}"`];
    case 'DMF':
      return [clockBody('F', meter.clock)];
    case 'DMSU?':
      return [`SU?,"${unitWire}"`];
    case 'DMZ':
      return ['Z'];
    case 'DMP': {
      const newestFirst = [...meter.memory].sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
      const count = String(newestFirst.length).padStart(3, '0');
      return [`P ${count},"${meter.serial}","${unitWire}"`, ...newestFirst.map(readingBody)];
    }
  }
  const set = parseSetClock(command);
  return set ? [clockBody('T', set)] : null;
}

/** The reply bytes for `command`, every line checksummed and ended with CR LF. */
export function ultra2Reply(command: string, meter: Ultra2MeterState): Buffer | null {
  const bodies = ultra2ReplyBodies(command, meter);
  return bodies ? Buffer.concat(bodies.map((b) => ultra2Line(b))) : null;
}

/** `DMT03/21/15 16:45:24` → `2015-03-21T16:45:24`, or null. */
function parseSetClock(command: string): string | null {
  const m = /^DMT(\d{2})\/(\d{2})\/(\d{2}) (\d{2}):(\d{2}):(\d{2})$/.exec(command);
  return m ? naiveFromWire(m.slice(1, 7)) : null;
}

export interface Ultra2SimulatorOptions extends SimulatedClockOptions {
  serial?: string;
  firmware?: string;
  unit?: DisplayUnit;
  /** What the meter remembers. When absent, a few plausible readings from the last two days. */
  memory?: SimulatedReading[];
  /** Adds a new reading every so many seconds (about 1 in 10 a control run). */
  new_reading_every_s?: number;
  /** Readings the meter keeps before the oldest is dropped (default MEMORY_SIZE, as the real meter). */
  capacity?: number;
  /** true: answers nothing. 'nul': answers every command with a single 0x00 byte. */
  off?: boolean | 'nul';
  /** Sends the next N lines with a wrong checksum. */
  corrupt_next?: number;
  /** The largest chunk written at once (default 16); chunk sizes are random from 1 up to it. */
  max_chunk?: number;
  /** Pause between lines, in ms (default 0). */
  line_delay_ms?: number;
  /** Seed of the simulator's random numbers, for reproducible runs. */
  seed?: number;
}

const SIMULATOR_OPTION_HELP: Record<string, string> = {
  serial: 'serial number, 9 characters ending in Y (default GMF600DCY)',
  firmware: 'DM? reply text (default "P02.00.00 30/08/06")',
  unit: 'display unit: mg/dL or mmol/L (readings stay mg/dL on the wire)',
  clock_offset_s: 'meter clock minus the true time, in seconds (default 0)',
  memory: 'readings: [{time: "YYYY-MM-DDTHH:MM:SS", value, control?, meal?: N|B|A, comment?: 0-11}]',
  new_reading_every_s: 'add a new reading every N seconds, about 1 in 10 a control run',
  capacity: 'readings kept before the oldest is dropped (default 500, as the real meter)',
  off: 'true: never answer; "nul": answer with a single 0x00 byte (meter on or not in the cable)',
  corrupt_next: 'send the next N lines with a wrong checksum',
  timezone: "IANA zone of the meter's naive clock (default: the host's)",
  max_chunk: 'largest write in bytes; chunk sizes are random from 1 to this (default 16)',
  line_delay_ms: 'pause before each line in ms (default 0)',
  seed: 'random seed for reproducible runs',
};

const SIMULATOR = 'onetouch-ultra2 simulator';

/** Checks untyped options (from YAML or the command line) and returns them typed. */
export function parseSimulatorOptions(o: Record<string, unknown>): Ultra2SimulatorOptions {
  const read = new SimulatorOptionReader(o, SIMULATOR, Object.keys(SIMULATOR_OPTION_HELP));
  return definedOnly<Ultra2SimulatorOptions>({
    serial: read.string('serial', ULTRA2_SERIAL_RE, '9 characters A-Z/0-9 ending in Y'),
    firmware: read.string('firmware', /^\S+( \S.*)?$/, 'a string like "P02.00.00 30/08/06"'),
    unit: read.oneOf('unit', ['mg/dL', 'mmol/L'] as const, 'mg/dL or mmol/L'),
    clock_offset_s: read.number('clock_offset_s'),
    memory: read.list('memory', (r, where) => parseSimulatedReading(read, r, where), 'a list of readings'),
    new_reading_every_s: read.number('new_reading_every_s', 0.001),
    capacity: read.number('capacity', 1),
    off: read.oneOf('off', [true, false, 'nul'] as const, 'true, false or "nul"'),
    corrupt_next: read.number('corrupt_next', 0),
    timezone: read.timezone(),
    max_chunk: read.number('max_chunk', 1),
    line_delay_ms: read.number('line_delay_ms', 0),
    seed: read.number('seed', 0),
    now: read.now(),
  });
}

function parseSimulatedReading(read: SimulatorOptionReader, r: unknown, where: string): SimulatedReading {
  if (typeof r !== 'object' || r === null) throw read.error(where, 'an object');
  const o = r as Record<string, unknown>;
  if (typeof o.time !== 'string' || !isMeterNaiveTime(o.time)) {
    throw read.error(`${where}.time`, 'YYYY-MM-DDTHH:MM:SS in 2000–2099');
  }
  if (typeof o.value !== 'number' || !Number.isInteger(o.value) || o.value < 0 || o.value > 999) {
    throw read.error(`${where}.value`, 'an integer 0–999 (mg/dL)');
  }
  if (o.meal !== undefined && o.meal !== 'N' && o.meal !== 'B' && o.meal !== 'A') throw read.error(`${where}.meal`, 'N, B or A');
  if (o.comment !== undefined && (typeof o.comment !== 'number' || !Number.isInteger(o.comment) || o.comment < 0 || o.comment > 11)) {
    throw read.error(`${where}.comment`, 'an integer 0–11');
  }
  if (o.control !== undefined && typeof o.control !== 'boolean') throw read.error(`${where}.control`, 'true or false');
  if (o.parity !== undefined && typeof o.parity !== 'boolean') throw read.error(`${where}.parity`, 'true or false');
  const out: SimulatedReading = { time: o.time, value: o.value };
  if (o.control !== undefined) out.control = o.control as boolean;
  if (o.meal !== undefined) out.meal = o.meal as Meal;
  if (o.comment !== undefined) out.comment = o.comment as number;
  if (o.parity !== undefined) out.parity = o.parity as boolean;
  return out;
}

/** The Ultra 2 keeps its last 500 readings. */
const MEMORY_SIZE = 500;

export class Ultra2Simulator implements DeviceSimulator {
  serial: string;
  firmware: string;
  unit: DisplayUnit;
  readonly deviceClock: SimulatedClock;
  memory: SimulatedReading[];
  off: boolean | 'nul';
  /** Lines sent from now on with a wrong checksum: 0 is the next line. */
  private readonly corruptAt = new Set<number>();
  private readonly garbleAt = new Set<number>();
  private linesSent = 0;
  /** Every command received, in order (tests read it). */
  readonly received: string[] = [];
  private readonly lineDelayMs: number;
  private readonly random: () => number;
  private readonly newReadingEveryS: number | undefined;
  private transport: ByteTransport | null = null;
  private rx: number[] = [];
  private flushTimer: NodeJS.Timeout | null = null;
  private readingTimer: NodeJS.Timeout | null = null;
  private readonly capacity: number;
  private readonly wire: ChunkedWriter;

  constructor(options: Ultra2SimulatorOptions = {}) {
    this.serial = options.serial ?? 'GMF600DCY';
    this.firmware = options.firmware ?? 'P02.00.00 30/08/06';
    this.unit = options.unit ?? 'mg/dL';
    this.deviceClock = new SimulatedClock(options);
    this.off = options.off ?? false;
    this.corruptNext(options.corrupt_next ?? 0);
    this.lineDelayMs = options.line_delay_ms ?? 0;
    this.random = seededRandom(options.seed ?? Date.now());
    this.wire = new ChunkedWriter(this.random, Math.max(1, Math.floor(options.max_chunk ?? 16)), (t) => t === this.transport);
    this.newReadingEveryS = options.new_reading_every_s;
    this.capacity = Math.floor(options.capacity ?? MEMORY_SIZE);
    this.memory = options.memory ? options.memory.map((r) => ({ ...r })) : this.defaultMemory();
  }

  /** Sends the next `n` lines with a wrong checksum. */
  corruptNext(n: number): void {
    for (let i = 0; i < n; i++) this.corruptLine(i);
  }

  /** Sends one line with a wrong checksum: the `index`-th line from now (0 = the next). */
  corruptLine(index: number): void {
    this.corruptAt.add(this.linesSent + index);
  }

  /**
   * Sends one reading line dated 30 February, with a checksum that matches: what a meter with a
   * damaged memory cell sends every time it is asked. `index` counts lines as in `corruptLine`.
   */
  garbleLine(index: number): void {
    this.garbleAt.add(this.linesSent + index);
  }

  /** The meter's naive clock now. */
  clock(): string {
    return this.deviceClock.read();
  }

  meterState(): Ultra2MeterState {
    return { serial: this.serial, firmware: this.firmware, unit: this.unit, clock: this.clock(), memory: this.memory };
  }

  /** Stores a new plausible reading at the meter's clock (about 1 in 10 a control run). */
  addReading(reading?: Partial<SimulatedReading>): SimulatedReading {
    const control = reading?.control ?? this.random() < 0.1;
    const r: SimulatedReading = {
      time: reading?.time ?? this.clock(),
      value: reading?.value ?? (control ? 95 + Math.floor(this.random() * 40) : 70 + Math.floor(this.random() * 150)),
      control,
      meal: reading?.meal ?? (control ? 'N' : (['N', 'B', 'A'] as const)[Math.floor(this.random() * 3)]!),
      comment: reading?.comment ?? (control || this.random() < 0.7 ? 0 : 1 + Math.floor(this.random() * 11)),
    };
    this.memory.push(r);
    if (this.memory.length > this.capacity) {
      this.memory.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
      this.memory.splice(0, this.memory.length - this.capacity);
    }
    return r;
  }

  attach(transport: ByteTransport): void {
    this.detach();
    this.transport = transport;
    transport.on('data', this.onData);
    if (this.newReadingEveryS) {
      this.readingTimer = setInterval(() => this.addReading(), this.newReadingEveryS * 1000);
    }
  }

  detach(): void {
    if (this.transport) this.transport.off('data', this.onData);
    this.transport = null;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    if (this.readingTimer) clearInterval(this.readingTimer);
    this.flushTimer = null;
    this.readingTimer = null;
    this.rx = [];
  }

  private defaultMemory(): SimulatedReading[] {
    const start = Date.parse(`${this.clock()}Z`) - 2 * 86400_000;
    const plan: [number, number, Meal, boolean][] = [
      [7.5, 96, 'B', false],
      [13, 142, 'A', false],
      [19, 121, 'B', false],
      [24 + 8, 88, 'B', false],
      [24 + 8.2, 112, 'N', true],
      [24 + 14, 176, 'A', false],
    ];
    return plan.map(([h, value, meal, control]) => ({
      time: new Date(start + h * 3600_000).toISOString().slice(0, 19),
      value,
      meal,
      control,
      comment: 0,
    }));
  }

  private readonly onData = (chunk: Buffer): void => {
    for (const b of chunk) {
      if (b === 0x11) continue; // the wake-up byte
      if (b === CR || b === LF) this.endCommand();
      else this.rx.push(b);
    }
    // Tidepool-style commands have no final CR: treat a short pause as the end of the command.
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = this.rx.length > 0 ? setTimeout(() => this.endCommand(), 50) : null;
  };

  private endCommand(): void {
    if (this.rx.length === 0) return;
    const command = Buffer.from(this.rx).toString('latin1').trim();
    this.rx = [];
    if (command) this.handle(command);
  }

  private handle(command: string): void {
    this.received.push(command);
    if (this.off === true) return;
    if (this.off === 'nul') {
      this.enqueueWrites([Buffer.from([NUL])]);
      return;
    }
    const bodies = ultra2ReplyBodies(command, this.meterState());
    if (!bodies) return; // the meter ignores what it does not know
    const set = parseSetClock(command);
    if (set) this.deviceClock.set(set);
    if (command === 'DMZ') this.memory = [];
    this.enqueueWrites(
      bodies.map((body) => {
        const n = this.linesSent++;
        if (this.garbleAt.delete(n)) return ultra2Line(body.replace(/"\d{2}\/\d{2}\/(\d{2})"/, '"02/30/$1"'));
        if (!this.corruptAt.delete(n)) return ultra2Line(body);
        return ultra2Line(body, ultra2Checksum(body) + 1);
      }),
    );
  }

  private enqueueWrites(lines: Buffer[]): void {
    if (this.transport) void this.wire.write(this.transport, lines, this.lineDelayMs);
  }
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Definition
// ────────────────────────────────────────────────────────────────────────────────────────────────

export const onetouchUltra2: DriverDefinition = {
  id: ULTRA2_DRIVER_ID,
  kind: 'glucose-meter',
  vendor: MANUFACTURER,
  models: [MODEL],
  usb: [
    { vendorId: '067b', productId: '2303', description: 'Prolific PL2303 USB-serial cable (the LifeScan cable); only suggests this driver' },
    { vendorId: '0403', productId: '6001', description: 'FTDI FT232 USB-serial cable; only suggests this driver' },
    { vendorId: '1a86', productId: '7523', description: 'WCH CH340 USB-serial cable; only suggests this driver' },
  ],
  transports: ['serial', 'tcp', 'simulated'],
  serialDefaults: { baud_rate: 9600, data_bits: 8, parity: 'none', stop_bits: 1 },
  commands: {
    download: { description: 'read the whole meter memory (DMP) and store new readings; returns {inserted, duplicates, records}', params: NO_PARAMS },
    'clock/sync': { description: "set the meter clock to the host time in the device's zone (DMT); returns the new clock", params: NO_PARAMS },
    status: { description: 'the current device state: serial, firmware, display unit, clock skew, last download', params: NO_PARAMS },
  },
  decode: decodeUltra2,
  createSession: (host) => new Ultra2Session(host),
  simulator: {
    description: 'a OneTouch Ultra 2 meter: answers DM?, DM@, DMF, DMSU?, DMP, DMT and DMZ with checksummed lines',
    options: SIMULATOR_OPTION_HELP,
    create: (options) => new Ultra2Simulator(parseSimulatorOptions(options)),
  },
};
