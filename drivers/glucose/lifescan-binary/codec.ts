/**
 * LifeScan's binary serial framing, shared by the OneTouch UltraEasy / UltraMini
 * (`../onetouch-ultraeasy/`) and the OneTouch Verio IQ (`../onetouch-verio-iq/`): the CRC, frames,
 * the frame reader, and the dialect interface each of the two drivers fills in. Pure, no I/O.
 *
 *   STX(0x02) | len | link-control | message (len - 6 bytes) | ETX(0x03) | crc16 (little-endian)
 *
 * The link-control bits, the UltraEasy handshake and the sources are in this folder's README.
 *
 * Sections: CRC and frames · frame reader · dialects (what the two drivers plug in).
 */
import type { GlucoseMgdl } from '../../analytes/glucose.ts';

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

/** A glucose field read against the meter's range, or a value no reading can have. */
export type Glucose = GlucoseMgdl | { kind: 'invalid' };

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

/** A serial number as both meters send it, once its padding is cut off: 6–16 characters A–Z/0–9. */
export function serialReply(serial: string): ParsedReply {
  if (!/^[0-9A-Z]{6,16}$/.test(serial)) return badReply('invalid-serial', 'the serial number is not 6–16 characters A–Z/0–9');
  return okReply({ type: 'serial', serial });
}

/** The clock reply body: u32le seconds since the dialect's epoch. */
export function clockReply(body: Buffer): ParsedReply {
  if (body.length !== 4) return badReply('invalid-reply', 'a clock reply is not 4 bytes');
  return okReply({ type: 'clock', seconds: body.readUInt32LE(0) });
}

/** The display-unit reply body: 0 mg/dL or 1 mmol/L, then three 00. */
export function unitReply(body: Buffer): ParsedReply {
  if (body.length !== 4 || body[0]! > 1) return badReply('invalid-reply', 'the display unit is not 0 (mg/dL) or 1 (mmol/L)');
  return okReply({ type: 'unit', unit: body[0] === 1 ? 'mmol/L' : 'mg/dL' });
}

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
