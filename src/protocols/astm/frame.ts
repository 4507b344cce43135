/**
 * ASTM E1381 / CLSI LIS01-A2 framing: the pure codec shared by every ASTM device.
 *
 *   <STX> FN text <ETB> C1 C2 <CR> <LF>        intermediate frame
 *   <STX> FN text <ETX> C1 C2 <CR> <LF>        end frame (its text normally ends with a record's CR)
 *
 * FN is ASCII '0'..'7' (the first frame after ENQ is '1', then 2…7, 0, 1…). C1C2 is the sum of the
 * bytes from FN through ETB/ETX inclusive, mod 256, as two hex digits: uppercase on the wire,
 * either case accepted here. Between frames the link uses single control bytes (ENQ ACK NAK EOT).
 *
 * Sources: the shared research note `research/astm-urinalysis-poct1a.md` §1.1–1.5 (checksums
 * recomputed there on real cobas c111 and Pentra XLR frames). No code from any other project.
 *
 * `AstmFrameReader` cuts a byte stream into events whatever the chunking. A frame attempt runs from
 * STX to its LF; anything that deviates is one `bad-frame` event, so a link answers it with exactly
 * one NAK. Memory is bounded by `maxFrameBytes`. Errors are values, never exceptions.
 */

export const STX = 0x02;
export const ETX = 0x03;
export const EOT = 0x04;
export const ENQ = 0x05;
export const ACK = 0x06;
export const NAK = 0x15;
export const ETB = 0x17;
export const CR = 0x0d;
export const LF = 0x0a;

export type ControlName = 'ENQ' | 'ACK' | 'NAK' | 'EOT';
const CONTROL_NAMES: Record<number, ControlName> = { [ENQ]: 'ENQ', [ACK]: 'ACK', [NAK]: 'NAK', [EOT]: 'EOT' };

/** E1381 allows frames of 247 characters including overhead (240 text); LIS01-A2 raised it to 64 000. */
export const DEFAULT_MAX_FRAME_BYTES = 64_000;
/** The text size a sender uses unless the device says otherwise (E1381-95). */
export const DEFAULT_FRAME_TEXT_SIZE = 240;

/**
 * Bytes E1381 does not allow inside frame text: SOH STX ETX EOT ENQ ACK DLE NAK SYN ETB LF DC1–DC4.
 * CR is allowed (it ends each record).
 */
const RESTRICTED = new Set([0x01, STX, ETX, EOT, ENQ, ACK, 0x10, NAK, 0x16, ETB, LF, 0x11, 0x12, 0x13, 0x14]);

/** Sum of `bytes` mod 256 (pass FN … ETB/ETX inclusive). */
export function astmChecksum(bytes: Uint8Array): number {
  let sum = 0;
  for (const b of bytes) sum = (sum + b) & 0xff;
  return sum;
}

export function formatChecksum(sum: number, lowercase = false): string {
  const hex = (sum & 0xff).toString(16).padStart(2, '0');
  return lowercase ? hex : hex.toUpperCase();
}

/** The next frame number after `n` (1…7, 0, 1…). */
export function nextFrameNumber(n: number): number {
  return (n + 1) % 8;
}

export interface EncodeFrameOptions {
  /** Write the checksum in lowercase hex (some devices do; used by the simulator). */
  lowercaseChecksum?: boolean;
}

/**
 * One frame on the wire. `text` goes in as given: an end frame's text normally ends with the
 * record's CR, and a record split across frames has no CR before ETB.
 */
export function encodeFrame(frameNumber: number, text: Uint8Array | string, final: boolean, options: EncodeFrameOptions = {}): Buffer {
  if (!Number.isInteger(frameNumber) || frameNumber < 0 || frameNumber > 7) throw new RangeError(`frame number ${frameNumber} is not 0–7`);
  const body = Buffer.concat([
    Buffer.from([0x30 + frameNumber]),
    typeof text === 'string' ? Buffer.from(text, 'latin1') : Buffer.from(text),
    Buffer.from([final ? ETX : ETB]),
  ]);
  const cs = Buffer.from(formatChecksum(astmChecksum(body), options.lowercaseChecksum), 'latin1');
  return Buffer.concat([Buffer.from([STX]), body, cs, Buffer.from([CR, LF])]);
}

/** A frame's text and whether it ends the message part (ETX) or continues (ETB). */
export interface FramePart {
  text: Buffer;
  final: boolean;
}

export type FramingStyle =
  /** Each record its own frame ending ETX (Horiba Pentra). */
  | 'record-etx'
  /** Each record its own frame ending ETB, the last ETX (Roche cobas c111). */
  | 'record-etb'
  /** The whole message in one frame (DCA Vantage, Afinion 2 as stored). */
  | 'single'
  /** The message cut every `textSize` bytes, records split anywhere (E1381 senders). */
  | 'split';

/**
 * Cuts a message (CR-terminated records) into frame texts. Every style except `single` keeps each
 * frame's text within `textSize` bytes by cutting longer records into ETB frames.
 */
export function frameMessage(message: Uint8Array, style: FramingStyle = 'split', textSize = DEFAULT_FRAME_TEXT_SIZE): FramePart[] {
  const msg = Buffer.from(message);
  const size = Math.max(1, Math.floor(textSize));
  if (style === 'single') return [{ text: msg, final: true }];
  const cut = (b: Buffer): Buffer[] => {
    const out: Buffer[] = [];
    for (let i = 0; i < b.length; i += size) out.push(b.subarray(i, i + size));
    return out.length ? out : [b];
  };
  if (style === 'split') {
    const parts = cut(msg);
    return parts.map((text, i) => ({ text, final: i === parts.length - 1 }));
  }
  const records: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < msg.length; i++) {
    if (msg[i] === CR) {
      records.push(msg.subarray(start, i + 1));
      start = i + 1;
    }
  }
  if (start < msg.length) records.push(msg.subarray(start));
  const out: FramePart[] = [];
  records.forEach((rec, r) => {
    const pieces = cut(rec);
    pieces.forEach((text, p) => {
      const lastPiece = p === pieces.length - 1;
      const lastRecord = r === records.length - 1;
      out.push({ text, final: lastPiece && (style === 'record-etx' || lastRecord) });
    });
  });
  return out;
}

/** Frame texts → their frames, numbered 1…7, 0, 1… as one transmission numbers them. */
export function encodeFrames(parts: readonly FramePart[], options: EncodeFrameOptions = {}): Buffer[] {
  let frameNumber = 1;
  return parts.map((p) => {
    const frame = encodeFrame(frameNumber, p.text, p.final, options);
    frameNumber = nextFrameNumber(frameNumber);
    return frame;
  });
}

/**
 * One message as a receiver reads a whole transmission of it, with no replies: ENQ, the frames of
 * `frameMessage(message, style, textSize)`, EOT. For captures written without a device.
 */
export function encodeTransmission(message: Uint8Array, style: FramingStyle = 'split', textSize = DEFAULT_FRAME_TEXT_SIZE): Buffer {
  return Buffer.concat([Buffer.from([ENQ]), ...encodeFrames(frameMessage(message, style, textSize)), Buffer.from([EOT])]);
}

export type AstmFrameErrorReason =
  /** The checksum does not match the frame's bytes. */
  | 'checksum'
  /** Longer than the configured limit; the rest of it up to its LF is discarded. */
  | 'frame-too-long'
  /** The frame ended (LF, or the stream ended) before ETB/ETX and its checksum. */
  | 'truncated'
  /** A new STX arrived in the middle of a frame: the frame so far is dropped. */
  | 'interrupted'
  /** The byte after STX is not '0'–'7'. */
  | 'bad-frame-number'
  /** ETB/ETX is not followed by two hex digits, CR and LF. */
  | 'malformed-trailer'
  /** The text holds a control byte E1381 does not allow there. */
  | 'restricted-character'
  /** Something that ends like a frame (ETB/ETX, checksum, LF) but has no STX. */
  | 'missing-stx';

export type AstmFrameEvent =
  | { type: 'control'; byte: number; name: ControlName }
  | {
      type: 'frame';
      number: number;
      /** The text between FN and ETB/ETX. */
      text: Buffer;
      /** ETX (true) or ETB (false). */
      final: boolean;
      /** The whole frame as received, STX through LF. */
      raw: Buffer;
      lowercaseChecksum: boolean;
    }
  | { type: 'bad-frame'; reason: AstmFrameErrorReason; detail: string; number: number | null; raw: Buffer }
  | { type: 'garbage'; bytes: Buffer };

export interface AstmFrameReaderOptions {
  /** The longest frame accepted, STX through LF (default 64 000). */
  maxFrameBytes?: number;
  /**
   * Files (not live links) often lose the CR or the LF after the checksum: accept a frame that ends
   * `C1 C2 CR` (then LF is optional) or `C1 C2 LF`. A live link waits for CR LF.
   */
  lenientLineEnd?: boolean;
}

const isHex = (b: number): boolean => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);

/**
 * Incremental E1381 framer. Push chunks in; get control bytes, frames, bad frames and garbage out,
 * in stream order. The events do not depend on how the stream was chunked.
 */
export class AstmFrameReader {
  readonly maxFrameBytes: number;
  readonly lenient: boolean;
  private frame: number[] | null = null;
  /** Index in `frame` of the ETB/ETX byte once seen. */
  private endAt = -1;
  /** Discarding an oversized frame up to its LF. */
  private discarding = false;
  private garbage: number[] = [];
  /** The garbage being collected is the tail of a frame already reported as truncated. */
  private tail = false;
  /** In lenient mode, a frame was accepted at CR and an LF right after it belongs to it. */
  private swallowLf = false;

  constructor(options: AstmFrameReaderOptions = {}) {
    this.maxFrameBytes = Math.max(16, Math.floor(options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES));
    this.lenient = options.lenientLineEnd ?? false;
  }

  push(chunk: Uint8Array): AstmFrameEvent[] {
    const out: AstmFrameEvent[] = [];
    for (const b of chunk) this.byte(b, out);
    return out;
  }

  /** The end of a file: a pending frame is evaluated (or reported truncated), pending garbage reported. */
  finish(): AstmFrameEvent[] {
    const out: AstmFrameEvent[] = [];
    if (this.frame) this.evaluate(out, false);
    this.flushGarbage(out);
    this.reset();
    return out;
  }

  /** Drops whatever is half-read (after a timeout or a link loss). */
  reset(): void {
    this.frame = null;
    this.endAt = -1;
    this.discarding = false;
    this.garbage = [];
    this.tail = false;
    this.swallowLf = false;
  }

  /** Drops a half-read frame and pending garbage (as `reset`) and returns their bytes. */
  drop(): Buffer {
    const bytes = Buffer.from([...(this.frame ?? []), ...this.garbage]);
    this.reset();
    return bytes;
  }

  /** True while a frame or an oversized frame is half-read. */
  get midFrame(): boolean {
    return this.frame !== null || this.discarding;
  }

  private byte(b: number, out: AstmFrameEvent[]): void {
    if (this.swallowLf) {
      this.swallowLf = false;
      if (b === LF) return;
    }
    if (this.discarding) {
      if (b === STX) {
        this.discarding = false;
        this.startFrame(out);
      } else if (b === LF) this.discarding = false;
      return;
    }
    if (this.frame) {
      this.inFrame(b, out);
      return;
    }
    // Between frames.
    if (b === STX) {
      this.startFrame(out);
      return;
    }
    const name = CONTROL_NAMES[b];
    if (name) {
      this.flushGarbage(out);
      out.push({ type: 'control', byte: b, name });
      return;
    }
    this.garbage.push(b);
    if (b === LF) this.garbageLine(out);
    else if (this.garbage.length >= this.maxFrameBytes) this.flushGarbage(out);
  }

  private startFrame(out: AstmFrameEvent[]): void {
    this.flushGarbage(out);
    this.frame = [STX];
    this.endAt = -1;
  }

  private inFrame(b: number, out: AstmFrameEvent[]): void {
    const f = this.frame!;
    if (b === STX) {
      // In lenient mode a frame that lacks only its line end is complete.
      if (this.lenient && this.endAt >= 0 && f.length >= this.endAt + 3) this.evaluate(out, false);
      else this.bad(out, 'interrupted', 'a new STX arrived before the frame ended', null);
      this.startFrame(out);
      return;
    }
    if (f.length >= this.maxFrameBytes) {
      this.bad(out, 'frame-too-long', `no frame end within ${this.maxFrameBytes} bytes`, null);
      this.discarding = b !== LF;
      return;
    }
    f.push(b);
    if (this.endAt < 0) {
      if (b === ETX || b === ETB) this.endAt = f.length - 1;
      else if (b === LF) {
        this.bad(out, 'truncated', 'the frame ended (LF) before ETB/ETX', null);
        this.tail = true;
      }
      return;
    }
    // After ETB/ETX: C1 C2 CR LF, nothing else.
    const pos = f.length - 1 - this.endAt; // 1, 2: checksum; 3: CR; 4: LF
    if (pos <= 2) {
      if (!isHex(b)) this.evaluate(out, b !== LF);
      return;
    }
    if (pos === 3) {
      if (b === LF) this.evaluate(out, false); // CR stripped: accepted, as files do
      else if (b !== CR) this.evaluate(out, true);
      else if (this.lenient) {
        this.evaluate(out, false);
        this.swallowLf = true;
      }
      return;
    }
    // pos 4: LF, or a broken trailer.
    this.evaluate(out, b !== LF);
  }

  /** Checks a complete (or broken) frame attempt and emits one event. */
  private evaluate(out: AstmFrameEvent[], trailerBroken: boolean): void {
    const raw = Buffer.from(this.frame!);
    this.frame = null;
    const fnByte = raw[1];
    const number = fnByte !== undefined && fnByte >= 0x30 && fnByte <= 0x37 ? fnByte - 0x30 : null;
    const endAt = this.endAt;
    this.endAt = -1;
    if (endAt < 0) {
      this.emitBad(out, 'truncated', 'the frame ended before ETB/ETX', number, raw);
      return;
    }
    const c1 = raw[endAt + 1];
    const c2 = raw[endAt + 2];
    if (trailerBroken || c1 === undefined || c2 === undefined || !isHex(c1) || !isHex(c2)) {
      this.emitBad(out, 'malformed-trailer', 'ETB/ETX is not followed by two hex digits and CR LF', number, raw);
      if (trailerBroken && raw[raw.length - 1] !== LF) this.tail = true;
      return;
    }
    if (number === null) {
      this.emitBad(out, 'bad-frame-number', 'the byte after STX is not a frame number 0–7', null, raw);
      return;
    }
    const given = parseInt(String.fromCharCode(c1, c2), 16);
    const actual = astmChecksum(raw.subarray(1, endAt + 1));
    if (given !== actual) {
      this.emitBad(out, 'checksum', `the frame carries checksum ${formatChecksum(given)}, its bytes sum to ${formatChecksum(actual)}`, number, raw);
      return;
    }
    const text = raw.subarray(2, endAt);
    for (const t of text) {
      if (RESTRICTED.has(t)) {
        this.emitBad(out, 'restricted-character', `the frame text holds control byte 0x${t.toString(16).padStart(2, '0')}`, number, raw);
        return;
      }
    }
    const lower = (c1 >= 0x61 && c1 <= 0x66) || (c2 >= 0x61 && c2 <= 0x66);
    out.push({ type: 'frame', number, text: Buffer.from(text), final: raw[endAt] === ETX, raw, lowercaseChecksum: lower });
  }

  private bad(out: AstmFrameEvent[], reason: AstmFrameErrorReason, detail: string, number: number | null): void {
    const raw = Buffer.from(this.frame!);
    this.frame = null;
    this.endAt = -1;
    const fn = raw[1];
    this.emitBad(out, reason, detail, number ?? (fn !== undefined && fn >= 0x30 && fn <= 0x37 ? fn - 0x30 : null), raw);
  }

  private emitBad(out: AstmFrameEvent[], reason: AstmFrameErrorReason, detail: string, number: number | null, raw: Buffer): void {
    out.push({ type: 'bad-frame', reason, detail, number, raw });
  }

  /** Garbage up to an LF: a frame that lost its STX if it holds ETB/ETX, else noise. */
  private garbageLine(out: AstmFrameEvent[]): void {
    const g = this.garbage;
    const looksLikeFrame = !this.tail && g.some((b) => b === ETX || b === ETB);
    this.tail = false;
    if (!looksLikeFrame) {
      this.flushGarbage(out);
      return;
    }
    this.garbage = [];
    this.emitBad(out, 'missing-stx', 'bytes ending like a frame (ETB/ETX, checksum, LF) arrived without STX', null, Buffer.from(g));
  }

  private flushGarbage(out: AstmFrameEvent[]): void {
    if (this.garbage.length > 0) out.push({ type: 'garbage', bytes: Buffer.from(this.garbage) });
    this.garbage = [];
    this.tail = false;
  }
}
