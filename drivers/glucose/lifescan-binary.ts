/**
 * LifeScan's binary serial framing, shared by the OneTouch UltraEasy / UltraMini
 * (`onetouch-ultraeasy.ts`) and the OneTouch Verio IQ (`onetouch-verio-iq.ts`).
 *
 * Source: the shared research note `research/glucose-meters.md` §2.2, §2.3 and §3. The note
 * collects facts from glucometerutils (`support/lifescan_binary_protocol.py`, `drivers/otultraeasy.py`,
 * `drivers/otverioiq.py`), the Tidepool uploader (`oneTouchUltraMini.js`, `oneTouchVerioIQ.js`,
 * `lib/crc.js`) and daniel-thompson/ultraeasy (`src/ue_link.c` and a real captured session).
 * Only the facts are used here, none of their code.
 *
 *   STX(0x02) | len | link-control | message (len - 6 bytes) | ETX(0x03) | crc16 (little-endian)
 *
 *   len           the whole frame, STX to the last CRC byte
 *   crc16         CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR) over
 *                 STX … ETX. Vectors: CRC(02 06 06 03) = 0x41CD, CRC(02 06 08 03) = 0x62C2.
 *   link-control  UltraEasy/UltraMini: 0x10 MORE, 0x08 DISC (reset), 0x04 ACK, 0x02 E (the sequence
 *                 bit expected next from the other side), 0x01 S (this frame's sequence bit).
 *                 Verio IQ: always 0x00, one request gives one reply.
 *
 * The UltraEasy handshake, as the real capture shows it: the host sends DISC, the meter answers
 * DISC|ACK and both sides start at S = E = 0. For each command the host sends a data frame
 * (S, E), the meter answers an ACK frame, then its data frame, and the host acknowledges it with an
 * ACK frame. The host flips S when the meter ACKs, and sets E = NOT(meter's S) after the meter's
 * data frame. Every frame the meter sends carries S = the host's E. ue_link.c recovers from any
 * link fault (bad frame, wrong sequence bit, silence) by resetting the link with DISC and sending
 * the command again; this session does the same, which is safe because every command it sends
 * reads the meter (or sets its clock to a time that is recomputed on every try).
 *
 * Sections: CRC and frames · frame reader · dialects (what the two drivers plug in) · records and
 * decode() · session · simulator.
 */
import type {
  DeviceFacts,
  Capture,
  DecodeContext,
  DecodeIssue,
  DecodeResult,
  DeviceSimulator,
  SessionHost,
} from '../../src/driver-sdk/index.ts';
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
import type { DeviceConfig } from '../../src/config/types.ts';
import { byDeviceTime } from '../../src/records/build.ts';
import type { DeviceIdentity, Observation, ResultDraft } from '../../src/records/types.ts';
import type { ByteTransport } from '../../src/transports/transport.ts';
import { definedOnly, SimulatorOptionReader } from '../../src/driver-sdk/simulator-options.ts';
import { seededRandom } from '../../src/util/random.ts';
import { ChunkedWriter } from '../../src/driver-sdk/simulator-wire.ts';
import { SimulatedClock, type SimulatedClockOptions } from '../../src/driver-sdk/simulated-clock.ts';
import { clockSkewSeconds, isMeterNaiveTime, naiveToZoned, nowInZone } from '../../src/util/time.ts';

export const MANUFACTURER = 'LifeScan';

// ────────────────────────────────────────────────────────────────────────────────────────────────
// CRC and frames. Pure, no I/O.
// ────────────────────────────────────────────────────────────────────────────────────────────────

export const STX = 0x02;
export const ETX = 0x03;

export const LINK = { MORE: 0x10, DISC: 0x08, ACK: 0x04, E: 0x02, S: 0x01 } as const;
/** Bits 5–7 of the link-control byte are reserved; a frame with any of them set is refused. */
const LINK_RESERVED = 0xe0;

/** STX, len, link-control, ETX and two CRC bytes. */
export const MIN_FRAME = 6;
/**
 * The longest frame accepted. The longest reply either meter is known to send is the UltraEasy
 * version reply (26 bytes); ue_link.c keeps frames in a 64-byte buffer. A longer length byte is
 * treated as line noise, so one stray 0x02 cannot make the reader wait for 255 bytes.
 */
export const MAX_FRAME = 64;

const CRC_TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let k = 0; k < 8; k++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

/** CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, not reflected, no final XOR. */
export function crc16(bytes: Uint8Array): number {
  let crc = 0xffff;
  for (const b of bytes) crc = ((crc << 8) & 0xffff) ^ CRC_TABLE[((crc >> 8) ^ b) & 0xff]!;
  return crc;
}

export interface Frame {
  linkControl: number;
  message: Buffer;
  /** The whole frame as it was on the wire. */
  bytes: Buffer;
}

/** A frame: STX, len, link-control, message, ETX, CRC (little-endian). */
export function encodeFrame(message: Uint8Array, linkControl = 0): Buffer {
  const len = MIN_FRAME + message.length;
  if (len > MAX_FRAME) throw new RangeError(`a ${message.length}-byte message does not fit in one frame`);
  const out = Buffer.alloc(len);
  out[0] = STX;
  out[1] = len;
  out[2] = linkControl & 0xff;
  out.set(message, 3);
  out[len - 3] = ETX;
  out.writeUInt16LE(crc16(out.subarray(0, len - 2)), len - 2);
  return out;
}

export function isAck(f: Frame): boolean {
  return (f.linkControl & LINK.ACK) !== 0;
}

export function isDisc(f: Frame): boolean {
  return (f.linkControl & LINK.DISC) !== 0;
}

/** A data frame: neither ACK nor DISC. */
export function isData(f: Frame): boolean {
  return (f.linkControl & (LINK.ACK | LINK.DISC)) === 0;
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Frame reader: bytes in any chunking → frames and typed errors, never an exception.
// ────────────────────────────────────────────────────────────────────────────────────────────────

export type FrameErrorCode =
  /** STX, a plausible length and ETX where the length says, but the CRC does not match. */
  | 'bad-crc'
  /** STX followed by a length byte below 6 or above MAX_FRAME, or with no ETX where it points. */
  | 'bad-length'
  /** Bytes before a frame that do not start with STX. */
  | 'garbage'
  /** The link (or the capture) ended inside a frame. */
  | 'truncated';

export type FrameItem =
  | { kind: 'frame'; frame: Frame }
  | { kind: 'error'; code: FrameErrorCode; bytes: Buffer; detail: string };

/**
 * Cuts a byte stream into frames. The items it returns do not depend on how the stream was
 * chunked: a decision is only taken once the bytes it needs are there. Bytes that are no frame are
 * collected and reported as one `garbage` / `bad-length` item before the next frame, or by
 * `flush()` at the end of the stream. A frame whose length and ETX agree but whose CRC is wrong
 * is reported whole as `bad-crc`, unless a good frame starts inside it: then its length byte was
 * damaged (or its STX was noise), and only its first byte is skipped.
 */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  private skipped: number[] = [];

  push(chunk: Uint8Array): FrameItem[] {
    this.buf = this.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buf, chunk]);
    return this.scan(false);
  }

  /** The end of the stream: what is left is reported as garbage or a truncated frame. */
  flush(): FrameItem[] {
    const out = this.scan(true);
    this.buf = Buffer.alloc(0);
    return out;
  }

  /** Bytes held, waiting for the rest of a frame (or for a frame after noise). */
  get pendingBytes(): number {
    return this.buf.length + this.skipped.length;
  }

  reset(): void {
    this.buf = Buffer.alloc(0);
    this.skipped = [];
  }

  private skippedItem(): FrameItem[] {
    if (this.skipped.length === 0) return [];
    const bytes = Buffer.from(this.skipped);
    this.skipped = [];
    return bytes[0] === STX
      ? [{ kind: 'error', code: 'bad-length', bytes, detail: `${bytes.length} bytes from an STX whose length byte does not fit a frame` }]
      : [{ kind: 'error', code: 'garbage', bytes, detail: `${bytes.length} bytes that are not a frame` }];
  }

  /** Whether a frame's length and ETX agree at `at`; null when more bytes are needed. */
  private consistentAt(at: number): boolean | null {
    if (this.buf[at] !== STX) return false;
    if (at + 1 >= this.buf.length) return null;
    const len = this.buf[at + 1]!;
    if (len < MIN_FRAME || len > MAX_FRAME) return false;
    if (at + 2 < this.buf.length && (this.buf[at + 2]! & LINK_RESERVED) !== 0) return false;
    if (at + len > this.buf.length) return null;
    return this.buf[at + len - 3] === ETX;
  }

  private crcOkAt(at: number): boolean {
    const len = this.buf[at + 1]!;
    return this.buf.readUInt16LE(at + len - 2) === crc16(this.buf.subarray(at, at + len - 2));
  }

  /** A whole frame with a good CRC at `at`; null when more bytes are needed to tell. */
  private validAt(at: number): boolean | null {
    const c = this.consistentAt(at);
    return c === true ? this.crcOkAt(at) : c;
  }

  /**
   * Whether a good frame starts inside the `len` bytes from `at` (then the frame at `at` is noise
   * or has a damaged length byte, and must not swallow it). Null when that cannot be told yet.
   */
  private goodFrameInside(at: number, len: number, final: boolean): boolean | null {
    let unknown = false;
    for (let j = at + 1; j < at + len; j++) {
      if (this.buf[j] !== STX) continue;
      const v = this.validAt(j);
      if (v === true) return true;
      if (v === null) unknown = true;
    }
    return unknown && !final ? null : false;
  }

  private scan(final: boolean): FrameItem[] {
    const out: FrameItem[] = [];
    let at = 0;
    while (at < this.buf.length) {
      const ok = this.consistentAt(at);
      if (ok === false) {
        this.skipped.push(this.buf[at]!);
        at++;
        continue;
      }
      if (ok === null) {
        if (!final) break;
        // The stream ended inside what may be a frame. A good frame further on means this STX
        // was noise; otherwise the rest is one truncated frame.
        let next = -1;
        for (let j = at + 1; j < this.buf.length && next < 0; j++) if (this.validAt(j) === true) next = j;
        if (next < 0) {
          out.push(...this.skippedItem());
          const bytes = Buffer.from(this.buf.subarray(at));
          out.push({ kind: 'error', code: 'truncated', bytes, detail: `the stream ended ${bytes.length} bytes into a frame` });
          at = this.buf.length;
          break;
        }
        for (; at < next; at++) this.skipped.push(this.buf[at]!);
        continue;
      }
      const len = this.buf[at + 1]!;
      if (!this.crcOkAt(at)) {
        const inside = this.goodFrameInside(at, len, final);
        if (inside === null) break;
        if (inside) {
          this.skipped.push(this.buf[at]!);
          at++;
          continue;
        }
        const bytes = Buffer.from(this.buf.subarray(at, at + len));
        out.push(...this.skippedItem());
        const given = bytes.readUInt16LE(len - 2);
        const actual = crc16(bytes.subarray(0, len - 2));
        out.push({ kind: 'error', code: 'bad-crc', bytes, detail: `CRC ${hex4(given)} on the wire, ${hex4(actual)} computed` });
        at += len;
        continue;
      }
      const bytes = Buffer.from(this.buf.subarray(at, at + len));
      out.push(...this.skippedItem());
      out.push({ kind: 'frame', frame: { linkControl: bytes[2]!, message: Buffer.from(bytes.subarray(3, len - 3)), bytes } });
      at += len;
    }
    this.buf = Buffer.from(this.buf.subarray(at));
    if (final) out.push(...this.skippedItem());
    return out;
  }
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Dialects: the commands and replies of one meter family on top of the shared frames.
// ────────────────────────────────────────────────────────────────────────────────────────────────

export type DisplayUnit = 'mg/dL' | 'mmol/L';
export type Meal = 'none' | 'before' | 'after';

export type LifeScanRequest =
  | { type: 'version' }
  | { type: 'serial' }
  | { type: 'read-clock' }
  | { type: 'write-clock'; seconds: number }
  | { type: 'unit' }
  | { type: 'count' }
  | { type: 'record'; index: number };

/** One record as the meter keeps it. */
export interface WireRecord {
  /** Seconds since the dialect's epoch, meter-local wall time. */
  seconds: number;
  /** The glucose field as sent (mg/dL, or an out-of-range code). */
  glucose: number;
  control: boolean;
  meal: Meal | null;
  /** Set when a field holds a code this driver does not know: the record is reported, not stored. */
  problem?: string;
}

export type LifeScanReply =
  | { type: 'version'; firmware: string; build: string | null }
  | { type: 'serial'; serial: string }
  | { type: 'clock'; seconds: number }
  | { type: 'clock-set' }
  | { type: 'unit'; unit: DisplayUnit }
  | { type: 'count'; count: number }
  | { type: 'record'; record: WireRecord };

export type ParsedReply = { ok: true; reply: LifeScanReply } | { ok: false; code: string; detail: string };

/** A glucose field read against the meter's range. */
export type Glucose = { kind: 'value'; mgdl: number } | { kind: 'HI'; limit: number } | { kind: 'LO'; limit: number } | { kind: 'invalid' };

/** What the meter knows, for the simulator. Records newest first (index 0 is the newest). */
export interface MeterView {
  serial: string;
  firmware: string;
  build: string;
  unit: DisplayUnit;
  clockSeconds: number;
  records: WireRecord[];
}

export interface LifeScanDialect {
  driverId: string;
  model: string;
  /** `ack`: UltraEasy's DISC/ACK/sequence handshake. `plain`: link-control 0, one reply per request. */
  linkMode: 'ack' | 'plain';
  /** Seconds from 1970-01-01 to the meter's epoch. */
  epochOffsetS: number;
  request(r: LifeScanRequest): Buffer;
  /** Which request a host message is, or null when this dialect does not send it. */
  classify(message: Buffer): LifeScanRequest | null;
  parseReply(r: LifeScanRequest, message: Buffer): ParsedReply;
  glucose(raw: number): Glucose;
  /** The meter's reply to a request (simulator); null = the meter stays silent. */
  reply(r: LifeScanRequest, meter: MeterView): Buffer | null;
}

// ── small helpers the dialects share ──

export const okReply = (reply: LifeScanReply): ParsedReply => ({ ok: true, reply });
export const badReply = (code: string, detail: string): ParsedReply => ({ ok: false, code, detail });

/** Printable ASCII, no quotes or backslashes: what a serial number or firmware string may hold. */
export function isPlainAscii(s: string): boolean {
  return /^[\x20-\x7e]*$/.test(s) && !/["\\]/.test(s);
}

/** `P02.00.0025/05/07` → firmware `P02.00.00`, build `25/05/07`. */
export function splitVersion(text: string): { firmware: string; build: string | null } {
  const m = /^(.+?)(\d{2}\/\d{2}\/\d{2})$/.exec(text);
  return m ? { firmware: m[1]!, build: m[2]! } : { firmware: text, build: null };
}

export function pascalString(text: string): Buffer {
  const b = Buffer.from(text, 'latin1');
  return Buffer.concat([Buffer.from([b.length]), b]);
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

export function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n & 0xffff);
  return b;
}

/** Meter seconds → naive local time, or null when it is no time in 2000–2099. */
export function naiveFromSeconds(seconds: number, epochOffsetS: number): string | null {
  const ms = (seconds + epochOffsetS) * 1000;
  if (!Number.isFinite(ms) || ms < Date.UTC(2000, 0, 1) || ms > Date.UTC(2099, 11, 31, 23, 59, 59)) return null;
  return new Date(ms).toISOString().slice(0, 19);
}

export function secondsFromNaive(naive: string, epochOffsetS: number): number {
  return Math.round(Date.parse(`${naive}Z`) / 1000) - epochOffsetS;
}

/** The meter's measuring range: a reading outside it is a HI/LO flag with the limit, never a number. */
export const GLUCOSE_LO_LIMIT = 20;
export const GLUCOSE_HI_LIMIT = 600;

export function rangeGlucose(mgdl: number): Glucose {
  if (mgdl > GLUCOSE_HI_LIMIT) return { kind: 'HI', limit: GLUCOSE_HI_LIMIT };
  if (mgdl < GLUCOSE_LO_LIMIT) return { kind: 'LO', limit: GLUCOSE_LO_LIMIT };
  return { kind: 'value', mgdl };
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Records and decode().
// ────────────────────────────────────────────────────────────────────────────────────────────────

export interface Reading {
  /** Naive meter time `YYYY-MM-DDTHH:MM:SS`. */
  time: string;
  glucose: Glucose;
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

export function glucoseObservation(g: Glucose): Observation {
  const base: Observation = {
    code: 'GLU',
    name: 'Glucose',
    loinc: '41653-7',
    value: null,
    unit: 'mg/dL',
    ucum: 'mg/dL',
    flags: [],
    text: null,
    comparator: null,
  };
  if (g.kind === 'value') return { ...base, value: g.mgdl };
  if (g.kind === 'HI') return { ...base, flags: ['HI'], comparator: '>', limit: g.limit };
  if (g.kind === 'LO') return { ...base, flags: ['LO'], comparator: '<', limit: g.limit };
  throw new RangeError('an invalid glucose field has no observation');
}

export function readingToDraft(r: Reading, device: DeviceIdentity, timezone: string): ResultDraft {
  const flags: string[] = [];
  if (r.meal === 'before') flags.push('meal:before');
  if (r.meal === 'after') flags.push('meal:after');
  return {
    key: readingKey(r),
    device: { ...device },
    category: r.control ? 'control' : 'patient',
    specimen: { id: null, type: r.control ? 'control solution' : 'capillary blood' },
    patient: null,
    operator: null,
    observed_at: naiveToZoned(r.time, timezone),
    device_time: r.time,
    observations: [glucoseObservation(r.glucose)],
    flags,
  };
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
    return { drafts: [], issues, device };
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
  return { drafts, issues, device };
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Session: the link layer and the conversations with one meter; the rest is `MeterSession`.
// ────────────────────────────────────────────────────────────────────────────────────────────────

/** `reply_timeout_ms` is per frame; on the UltraEasy each retry follows a link reset. */
export type LifeScanSessionOptions = MeterSessionOptions;

const SESSION_DEFAULTS: LifeScanSessionOptions = { reply_timeout_ms: 1000, retries: 2, clock_skew_limit_s: CLOCK_SKEW_LIMIT_S };

/** Reads `device.options` (`retries` may be 0). Throws an Error that names the bad option. */
export function sessionOptions(device: DeviceConfig): LifeScanSessionOptions {
  return numberOptions(device, SESSION_DEFAULTS, ['retries']);
}

/** One failed try of one exchange; the caller decides whether to try again. */
class LinkFault extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

export interface DownloadResult {
  inserted: number;
  duplicates: number;
  records: number;
}

const REQUEST_NAMES: Record<LifeScanRequest['type'], string> = {
  version: 'read version',
  serial: 'read serial',
  'read-clock': 'read clock',
  'write-clock': 'set clock',
  unit: 'read display unit',
  count: 'read record count',
  record: 'read record',
};

/**
 * The live conversation with one meter: the dialect's link layer (the UltraEasy handshake or the
 * plain Verio IQ exchange), the download and the clock set.
 */
export class LifeScanSession extends MeterSession<FrameItem> {
  private readonly opts: LifeScanSessionOptions;
  private readonly tries: RetryPolicy;
  private readonly reader = new FrameReader();
  /** UltraEasy sequence bits: S of the host's next data frame, E = the S expected from the meter. */
  private seqS = 0;
  private seqE = 0;

  constructor(
    private readonly dialect: LifeScanDialect,
    host: SessionHost,
  ) {
    super(host, dialect.driverId);
    this.opts = sessionOptions(host.device);
    this.tries = retryPolicy(this.opts, 200);
  }

  protected frame(chunk: Buffer): FrameItem[] {
    return this.reader.push(chunk);
  }

  protected resetFramer(): void {
    this.reader.reset();
  }

  protected override commands(): Record<string, SessionCommand> {
    return { 'clock/sync': () => this.syncClock() };
  }

  private badFrame(bytes: Buffer, code: string, detail: string): void {
    this.report.badData(bytes, code, detail, 'frame');
  }

  // ── wire I/O ──

  private async sendFrame(message: Uint8Array, linkControl: number): Promise<void> {
    await this.send(encodeFrame(message, linkControl));
  }

  /**
   * The next frame from the meter. Noise before a frame is reported and skipped; a damaged frame
   * is reported and fails this try. Silence fails it with `timeout`, or `truncated` when part of
   * a frame came.
   */
  private async nextFrame(): Promise<Frame> {
    const deadline = Date.now() + this.opts.reply_timeout_ms;
    for (;;) {
      const item = await this.inbox.next(Math.max(0, deadline - Date.now()));
      if (!item) {
        const rest = this.reader.flush();
        for (const r of rest) if (r.kind === 'error') this.badFrame(r.bytes, r.code, r.detail);
        throw new LinkFault(rest.length > 0 ? 'truncated' : 'timeout');
      }
      if (item.kind === 'frame') return item.frame;
      this.badFrame(item.bytes, item.code, item.detail);
      if (item.code === 'bad-crc' || item.code === 'truncated') throw new LinkFault(item.code);
    }
  }

  /** UltraEasy: DISC → DISC|ACK; both sides' sequence bits start again at 0. */
  private async linkReset(): Promise<void> {
    await this.sendFrame(Buffer.alloc(0), LINK.DISC);
    const f = await this.nextFrame();
    if ((f.linkControl & (LINK.DISC | LINK.ACK)) !== (LINK.DISC | LINK.ACK)) {
      this.badFrame(f.bytes, 'unexpected-frame', 'expected DISC|ACK after a link reset');
      throw new LinkFault('unexpected-frame');
    }
    this.seqS = 0;
    this.seqE = 0;
  }

  /** One request, one reply message, with the UltraEasy handshake or the plain Verio IQ exchange. */
  private async exchange(message: Buffer): Promise<Buffer> {
    if (this.dialect.linkMode === 'plain') {
      await this.sendFrame(message, 0);
      const f = await this.nextFrame();
      if (f.linkControl !== 0) {
        this.badFrame(f.bytes, 'unexpected-frame', `link-control 0x${f.linkControl.toString(16)} where 0x00 is expected`);
        throw new LinkFault('unexpected-frame');
      }
      return f.message;
    }
    await this.sendFrame(message, this.seqS | (this.seqE ? LINK.E : 0));
    const ack = await this.nextFrame();
    if (!isAck(ack) || isDisc(ack) || ack.message.length > 0) {
      this.badFrame(ack.bytes, 'unexpected-frame', 'expected an ACK frame');
      throw new LinkFault('unexpected-frame');
    }
    if ((ack.linkControl & LINK.S) !== this.seqE) {
      this.badFrame(ack.bytes, 'sequence', 'the ACK carries the wrong sequence bit');
      throw new LinkFault('sequence');
    }
    this.seqS ^= 1;
    const data = await this.nextFrame();
    if (!isData(data)) {
      this.badFrame(data.bytes, 'unexpected-frame', 'expected a data frame');
      throw new LinkFault('unexpected-frame');
    }
    if ((data.linkControl & LINK.S) !== this.seqE) {
      this.badFrame(data.bytes, 'sequence', 'the reply carries the wrong sequence bit');
      throw new LinkFault('sequence');
    }
    this.seqE = (data.linkControl & LINK.S) ^ 1;
    await this.sendFrame(Buffer.alloc(0), LINK.ACK | this.seqS | (this.seqE ? LINK.E : 0));
    return data.message;
  }

  /** Opens the link for a conversation: the UltraEasy link reset (with retries); nothing on the Verio IQ. */
  private async openLink(): Promise<void> {
    this.clearInbox();
    if (this.dialect.linkMode === 'plain') return;
    await this.retry(
      this.tries,
      () => this.linkFaultAsFailure(() => this.linkReset()),
      (codes) => {
        const last = codes.at(-1)!;
        if (last === 'timeout') return new NoAnswerError('no answer to a link reset: the meter is off, asleep or not in the cable');
        return new ProtocolError(last, `the meter did not accept a link reset after ${codes.length} tries (${last})`);
      },
    );
  }

  /** Sends a request and returns its verified reply. On a fault: reset the link (UltraEasy) and ask again. */
  private async ask<T extends LifeScanReply['type']>(req: LifeScanRequest, expected: T[]): Promise<Extract<LifeScanReply, { type: T }>> {
    const name = REQUEST_NAMES[req.type];
    return this.retry(
      this.tries,
      (attempt) =>
        this.linkFaultAsFailure(async () => {
          if (attempt > 0 && this.dialect.linkMode === 'ack') await this.linkReset();
          const message = this.dialect.request(req.type === 'write-clock' ? { type: 'write-clock', seconds: this.hostClockSeconds() } : req);
          const reply = await this.exchange(message);
          const parsed = this.dialect.parseReply(req, reply);
          if (!parsed.ok) {
            this.badFrame(reply, parsed.code, parsed.detail);
            throw new LinkFault(parsed.code);
          }
          if (!(expected as string[]).includes(parsed.reply.type)) {
            this.badFrame(reply, 'unexpected-reply', `a ${parsed.reply.type} reply to ${name}`);
            throw new LinkFault('unexpected-reply');
          }
          return parsed.reply as Extract<LifeScanReply, { type: T }>;
        }),
      (codes) => {
        if (codes.every((c) => c === 'timeout')) return new NoAnswerError(`no answer to ${name}: the meter stopped answering`);
        const last = codes.at(-1)!;
        return new ProtocolError(last, `no valid reply to ${name} after ${codes.length} tries (${last})`);
      },
    );
  }

  /** One try of `exchange`: a LinkFault becomes its failure code, any other error ends the tries. */
  private async linkFaultAsFailure<T>(exchange: () => Promise<T>): Promise<Attempt<T, string>> {
    try {
      return { ok: true, value: await exchange() };
    } catch (err) {
      if (!(err instanceof LinkFault)) throw err;
      return { ok: false, failure: err.code };
    }
  }

  private hostClockSeconds(): number {
    return secondsFromNaive(nowInZone(this.host.timezone, this.host.now()), this.dialect.epochOffsetS);
  }

  private clockNaive(seconds: number): string {
    const t = naiveFromSeconds(seconds, this.dialect.epochOffsetS);
    if (!t) throw new ProtocolError('invalid-date', 'the meter clock reads a time outside 2000–2099');
    return t;
  }

  private checkSkew(clock: string): number {
    return this.report.clockRead(clock, this.host.timezone, this.host.now(), this.opts.clock_skew_limit_s);
  }

  // ── conversations ──

  protected download(trigger: string): Promise<DownloadResult> {
    return this.downloadConversation(
      trigger,
      async () => {
        await this.openLink();
        return this.ask({ type: 'version' }, ['version']);
      },
      async (version) => {
        const sn = await this.ask({ type: 'serial' }, ['serial']);
        const clock = await this.ask({ type: 'read-clock' }, ['clock']);
        const unit = await this.ask({ type: 'unit' }, ['unit']);
        this.report.patch({
          model: this.dialect.model,
          serial: sn.serial,
          firmware: version.firmware,
          meter: { display_unit: unit.unit },
          last_seen: this.host.now().toISOString(),
        });
        this.checkSkew(this.clockNaive(clock.seconds));
        const { count } = await this.ask({ type: 'count' }, ['count']);
        const step = Math.max(25, Math.ceil(count / 10));
        const readings: Reading[] = [];
        for (let i = 0; i < count; i++) {
          const { record } = await this.ask({ type: 'record', index: i }, ['record']);
          const r = readRecord(this.dialect, record);
          if (r.ok) readings.push(r.reading);
          // A record that verified (CRC) but holds no real time or value is kept in quarantine and
          // reported; the meter sends it the same way every time, so asking again cannot help.
          else this.badFrame(Buffer.concat([u16(i), u32(record.seconds), u32(record.glucose)]), r.code, `record ${i} cannot be read (${r.code})`);
          const n = i + 1;
          if (n === count || n % step === 0) this.report.emit('download_progress', `${n} of ${count} records`, { received: n, total: count });
        }
        const id = identity(this.dialect, this.host.device.id, sn.serial, version.firmware);
        const seen = new Set<string>();
        const drafts = byDeviceTime(
          readings.map((r) => readingToDraft(r, id, this.host.timezone)).filter((d) => (seen.has(d.key) ? false : (seen.add(d.key), true))),
        );
        const stored = await this.commitDownload(drafts);
        return {
          result: { inserted: stored.inserted, duplicates: stored.duplicates, records: drafts.length },
          message: `downloaded ${drafts.length} records: ${stored.inserted} new, ${stored.duplicates} already stored`,
          data: { records: drafts.length, inserted: stored.inserted, duplicates: stored.duplicates },
          state: { meter: { record_count: count } },
        };
      },
    );
  }

  private async syncClock(): Promise<ClockSyncResult> {
    if (!this.transport.isOpen) throw new Error(`${this.tag}: the transport is not open`);
    // No transcript: a clock set stores no records.
    this.inbox.resume();
    try {
      await this.openLink();
      await this.ask({ type: 'write-clock', seconds: 0 }, ['clock-set']);
      const back = await this.ask({ type: 'read-clock' }, ['clock']);
      const clock = this.clockNaive(back.seconds);
      const skew = clockSkewSeconds(clock, this.host.timezone, this.host.now());
      if (Math.abs(skew) > 5) throw new ProtocolError('clock-not-set', `the meter clock reads ${skew} s off the host time after the set`);
      return this.report.clockSet(clock, this.host.timezone, this.host.now(), this.opts.clock_skew_limit_s);
    } catch (err) {
      throw this.failed(err, 'device_error');
    }
  }
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Simulator: the meter's side, for the demo, the tests and `poctd simulate`.
// ────────────────────────────────────────────────────────────────────────────────────────────────

export interface SimulatedReading {
  /** Naive meter time `YYYY-MM-DDTHH:MM:SS`, years 2000–2099. */
  time: string;
  /** mg/dL, or `HI` / `LO` (the UltraEasy's 0xFFFF / 0xFFFE codes). */
  value: number | 'HI' | 'LO';
  control?: boolean;
  meal?: Meal;
}

export interface SimulatorOptions extends SimulatedClockOptions {
  serial?: string;
  firmware?: string;
  unit?: DisplayUnit;
  memory?: SimulatedReading[];
  off?: boolean;
  corrupt_next?: number;
  max_chunk?: number;
  frame_delay_ms?: number;
  seed?: number;
}

export const SIMULATOR_OPTION_HELP: Record<string, string> = {
  serial: 'serial number (printable ASCII)',
  firmware: 'firmware version text, e.g. "P02.00.00"',
  unit: 'display unit: mg/dL or mmol/L (readings stay mg/dL on the wire)',
  clock_offset_s: 'meter clock minus the true time, in seconds (default 0)',
  memory: 'readings: [{time: "YYYY-MM-DDTHH:MM:SS", value: mg/dL | "HI" | "LO", control?, meal?: none|before|after}]',
  off: 'true: the meter answers nothing (off, asleep or not in the cable)',
  corrupt_next: 'send the next N frames with a wrong CRC',
  timezone: "IANA zone of the meter's naive clock (default: the host's)",
  max_chunk: 'largest write in bytes; chunk sizes are random from 1 to this (default 16)',
  frame_delay_ms: 'pause before each frame in ms (default 0)',
  seed: 'random seed for reproducible runs',
};

export interface SimulatorRules {
  driverId: string;
  defaultSerial: string;
  defaultFirmware: string;
  isSerial(s: string): boolean;
  /** Why a reading cannot be held by this meter, or null. */
  readingProblem(r: SimulatedReading): string | null;
  /** A reading → the meter's record (the glucose field as this meter writes it). */
  toWire(r: SimulatedReading, epochOffsetS: number): WireRecord;
  defaultMemory(clock: string): SimulatedReading[];
}

/** Checks untyped options (from YAML or the command line) and returns them typed. */
export function parseSimulatorOptions(rules: SimulatorRules, o: Record<string, unknown>): SimulatorOptions {
  const read = new SimulatorOptionReader(o, `${rules.driverId} simulator`, Object.keys(SIMULATOR_OPTION_HELP));
  return definedOnly<SimulatorOptions>({
    serial: checkedString(read, 'serial', (s) => rules.isSerial(s), 'a serial number this meter can have'),
    firmware: checkedString(read, 'firmware', (s) => isPlainAscii(s) && s.length >= 1 && s.length <= 24, 'printable ASCII, 1–24 characters'),
    unit: read.oneOf('unit', ['mg/dL', 'mmol/L'] as const, 'mg/dL or mmol/L'),
    clock_offset_s: read.number('clock_offset_s'),
    memory: read.list('memory', (r, where) => parseSimulatedReading(read, rules, r, where), 'a list of readings'),
    off: read.boolean('off'),
    corrupt_next: read.number('corrupt_next', 0),
    timezone: read.timezone(),
    max_chunk: read.number('max_chunk', 1),
    frame_delay_ms: read.number('frame_delay_ms', 0),
    seed: read.number('seed', 0),
    now: read.now(),
  });
}

/** A string option that `ok` accepts (a check the reader's pattern cannot express). */
function checkedString(read: SimulatorOptionReader, name: string, ok: (s: string) => boolean, want: string): string | undefined {
  const v = read.string(name, undefined, want);
  if (v !== undefined && !ok(v)) throw read.error(name, want);
  return v;
}

function parseSimulatedReading(read: SimulatorOptionReader, rules: SimulatorRules, r: unknown, where: string): SimulatedReading {
  if (typeof r !== 'object' || r === null) throw read.error(where, 'an object');
  const x = r as Record<string, unknown>;
  if (typeof x.time !== 'string' || !isMeterNaiveTime(x.time)) {
    throw read.error(`${where}.time`, 'YYYY-MM-DDTHH:MM:SS in 2000–2099');
  }
  if (!(x.value === 'HI' || x.value === 'LO' || (typeof x.value === 'number' && Number.isInteger(x.value) && x.value >= 0))) {
    throw read.error(`${where}.value`, 'an integer mg/dL, "HI" or "LO"');
  }
  if (x.control !== undefined && typeof x.control !== 'boolean') throw read.error(`${where}.control`, 'true or false');
  if (x.meal !== undefined && x.meal !== 'none' && x.meal !== 'before' && x.meal !== 'after') throw read.error(`${where}.meal`, 'none, before or after');
  const reading: SimulatedReading = { time: x.time, value: x.value as number | 'HI' | 'LO' };
  if (x.control !== undefined) reading.control = x.control as boolean;
  if (x.meal !== undefined) reading.meal = x.meal as Meal;
  const problem = rules.readingProblem(reading);
  if (problem) throw read.error(where, problem);
  return reading;
}

/** A LifeScan meter on a byte transport: the frames, the UltraEasy handshake, and the dialect's replies. */
export class LifeScanSimulator implements DeviceSimulator {
  serial: string;
  firmware: string;
  build: string;
  unit: DisplayUnit;
  readonly deviceClock: SimulatedClock;
  memory: SimulatedReading[];
  off: boolean;
  /** Every request received, in order (tests read it). */
  readonly received: LifeScanRequest['type'][] = [];
  /** Link resets received. */
  resets = 0;
  private readonly corruptAt = new Set<number>();
  private framesSent = 0;
  private readonly wire: ChunkedWriter;
  private readonly frameDelayMs: number;
  private readonly random: () => number;
  private readonly reader = new FrameReader();
  private transport: ByteTransport | null = null;
  // UltraEasy link state: the meter's S, the host S it expects next, and its last reply (resent on a duplicate).
  private meterS = 0;
  private expectS = 0;
  private awaitingAck = false;
  private lastReply: Buffer | null = null;

  constructor(
    private readonly dialect: LifeScanDialect,
    private readonly rules: SimulatorRules,
    options: SimulatorOptions = {},
  ) {
    this.serial = options.serial ?? rules.defaultSerial;
    const v = splitVersion(options.firmware ?? rules.defaultFirmware);
    this.firmware = v.firmware;
    this.build = v.build ?? '';
    this.unit = options.unit ?? 'mg/dL';
    this.deviceClock = new SimulatedClock(options);
    this.off = options.off ?? false;
    this.corruptNext(options.corrupt_next ?? 0);
    this.frameDelayMs = options.frame_delay_ms ?? 0;
    this.random = seededRandom(options.seed ?? Date.now());
    this.wire = new ChunkedWriter(this.random, Math.max(1, Math.floor(options.max_chunk ?? 16)), (t) => t === this.transport);
    this.memory = options.memory ? options.memory.map((r) => ({ ...r })) : rules.defaultMemory(this.clock());
  }

  /** Sends the next `n` frames with a wrong CRC. */
  corruptNext(n: number): void {
    for (let i = 0; i < n; i++) this.corruptFrame(i);
  }

  /** Sends one frame with a wrong CRC: the `index`-th frame from now (0 = the next). */
  corruptFrame(index: number): void {
    this.corruptAt.add(this.framesSent + index);
  }

  /** The meter's naive clock now. */
  clock(): string {
    return this.deviceClock.read();
  }

  view(): MeterView {
    const newestFirst = [...this.memory].sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
    return {
      serial: this.serial,
      firmware: this.firmware,
      build: this.build,
      unit: this.unit,
      clockSeconds: secondsFromNaive(this.clock(), this.dialect.epochOffsetS),
      records: newestFirst.map((r) => this.rules.toWire(r, this.dialect.epochOffsetS)),
    };
  }

  attach(transport: ByteTransport): void {
    this.detach();
    this.transport = transport;
    transport.on('data', this.onData);
  }

  detach(): void {
    if (this.transport) this.transport.off('data', this.onData);
    this.transport = null;
    this.reader.reset();
  }

  private readonly onData = (chunk: Buffer): void => {
    for (const item of this.reader.push(chunk)) {
      // A damaged frame from the host is ignored: the host hears nothing and asks again.
      if (item.kind === 'frame') this.handle(item.frame);
    }
  };

  private handle(f: Frame): void {
    if (this.off) return;
    if (this.dialect.linkMode === 'plain') {
      const reply = this.serve(f.message);
      if (reply) this.send(reply, 0);
      return;
    }
    if (isDisc(f)) {
      this.resets++;
      this.meterS = 0;
      this.expectS = 0;
      this.awaitingAck = false;
      this.lastReply = null;
      this.send(Buffer.alloc(0), LINK.DISC | LINK.ACK);
      return;
    }
    if (isAck(f)) {
      if (this.awaitingAck) {
        this.awaitingAck = false;
        this.meterS ^= 1;
      }
      return;
    }
    const s = f.linkControl & LINK.S;
    if (s !== this.expectS) {
      // The host sent its last frame again (it missed our reply): acknowledge and repeat the reply.
      if (this.lastReply) {
        this.send(Buffer.alloc(0), LINK.ACK | this.meterS | (this.expectS ? LINK.E : 0));
        this.send(this.lastReply, this.meterS | (this.expectS ? LINK.E : 0));
      }
      return;
    }
    this.expectS = s ^ 1;
    this.send(Buffer.alloc(0), LINK.ACK | this.meterS | (this.expectS ? LINK.E : 0));
    const reply = this.serve(f.message);
    if (!reply) return;
    this.lastReply = reply;
    this.awaitingAck = true;
    this.send(reply, this.meterS | (this.expectS ? LINK.E : 0));
  }

  /** The dialect's reply to a request, with its side effect on the meter. */
  private serve(message: Buffer): Buffer | null {
    const req = this.dialect.classify(message);
    if (!req) return null;
    this.received.push(req.type);
    if (req.type === 'write-clock') {
      const target = naiveFromSeconds(req.seconds, this.dialect.epochOffsetS);
      if (target) this.deviceClock.set(target);
    }
    return this.dialect.reply(req, this.view());
  }

  private send(message: Buffer, linkControl: number): void {
    const transport = this.transport;
    if (!transport) return;
    const frame = encodeFrame(message, linkControl);
    if (this.corruptAt.delete(this.framesSent++)) frame[frame.length - 1] = frame[frame.length - 1]! ^ 0x5a;
    void this.wire.write(transport, [frame], this.frameDelayMs);
  }
}
