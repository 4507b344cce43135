/**
 * CLINITEK 50 codec: the control bytes, packet framing (STX … ETX, XON/XOFF dropped), checksum,
 * and identity / data packet parsing and encoding. Pure; errors are values, never thrown. The
 * packet layout is in README.md in this folder.
 */
import { ETX, NAK, STX, astmChecksum, formatChecksum } from '../../../src/protocols/astm/frame.ts';
import { naiveFromFields } from '../../../src/util/time.ts';
import { EndsKept } from '../../../src/util/ends-kept.ts';
import { labelLookup, yearMonthDay, type DateOrder, type StripRecord, type StripResult } from '../../analytes/urine-strip.ts';
import { CLINITEK_50_LOCALES } from './locales.ts';

export { ACK, ENQ, NAK } from '../../../src/protocols/astm/frame.ts';
export const XON = 0x11;
export const DC2 = 0x12;
export const XOFF = 0x13;

/** The product number every packet's first line starts with. */
export const PRODUCT_ID = '6510';

const analyteForLabel = labelLookup(Object.values(CLINITEK_50_LOCALES).map((l) => l.labels));

export type Clinitek50ErrorCode =
  /** The packet does not start STX CR LF or has too few lines. */
  | 'bad-header'
  /** No two hex digits before ETX. */
  | 'missing-checksum'
  | 'bad-checksum'
  /** The checksum is good but the lines are not an identity or data packet of a CLINITEK 50. */
  | 'invalid-packet'
  | 'invalid-date'
  | 'packet-too-long'
  /** STX again, or the link closed, before ETX. */
  | 'truncated-packet'
  /** Bytes between packets. */
  | 'garbage';

export interface Clinitek50Error {
  code: Clinitek50ErrorCode;
  /** Built from the layout only; never quotes the packet. */
  detail: string;
}

export type FramedItem =
  | { kind: 'packet'; bytes: Buffer }
  | { kind: 'nak' }
  /** `bytes`: the burst's first and last `GARBAGE_KEEP / 2` bytes; `size`: how many it had in all. */
  | { kind: 'garbage'; bytes: Buffer; size: number }
  | { kind: 'overflow'; bytes: Buffer }
  | { kind: 'truncated'; bytes: Buffer };

/**
 * Cuts the reader's byte stream into packets (STX … ETX), lone NAKs and garbage. XON/XOFF are flow
 * control and dropped wherever they are. The output does not depend on how the stream was chunked.
 */
export class PacketFramer {
  /** GNUmed reads at most 1024 bytes for a packet. */
  static readonly MAX_PACKET = 1024;
  /**
   * A burst of bytes between packets (a reader on the wrong baud rate sends nothing else) keeps
   * this many of its bytes, half from its start and half from its end, and counts the rest: the
   * framer holds a bounded amount whatever the line sends, and the burst is one report.
   */
  static readonly GARBAGE_KEEP = 512;
  private packet: number[] | null = null;
  private readonly garbage = new EndsKept(PacketFramer.GARBAGE_KEEP);

  /** How many bytes the framer holds (an unfinished packet and what it keeps of a burst). */
  get held(): number {
    return (this.packet?.length ?? 0) + Math.min(this.garbage.size, PacketFramer.GARBAGE_KEEP);
  }

  push(chunk: Uint8Array): FramedItem[] {
    const out: FramedItem[] = [];
    for (const b of chunk) {
      if (b === XON || b === XOFF) continue;
      if (this.packet) {
        if (b === STX) {
          out.push({ kind: 'truncated', bytes: Buffer.from(this.packet) });
          this.packet = [b];
          continue;
        }
        this.packet.push(b);
        if (b === ETX) {
          out.push({ kind: 'packet', bytes: Buffer.from(this.packet) });
          this.packet = null;
        } else if (this.packet.length > PacketFramer.MAX_PACKET) {
          out.push({ kind: 'overflow', bytes: Buffer.from(this.packet) });
          this.packet = null;
        }
        continue;
      }
      if (b === STX || b === NAK) {
        this.flushGarbage(out);
        if (b === STX) this.packet = [b];
        else out.push({ kind: 'nak' });
        continue;
      }
      this.garbage.pushByte(b);
    }
    return out;
  }

  private flushGarbage(out: FramedItem[]): void {
    if (this.garbage.size === 0) return;
    out.push({ kind: 'garbage', bytes: this.garbage.kept(), size: this.garbage.size });
    this.garbage.clear();
  }

  /** What is left: an unfinished packet or trailing garbage. */
  finish(): FramedItem[] {
    const out: FramedItem[] = [];
    this.flushGarbage(out);
    if (this.packet) out.push({ kind: 'truncated', bytes: Buffer.from(this.packet) });
    this.packet = null;
    return out;
  }

  reset(): void {
    this.packet = null;
    this.garbage.clear();
  }
}

/** The packet checksum: the bytes from CR LF to the last CR LF, summed mod 256 (as ASTM's). */
export const clinitek50Checksum = astmChecksum;

const fail = (code: Clinitek50ErrorCode, detail: string): { ok: false; error: Clinitek50Error } => ({ ok: false, error: { code, detail } });

/** Checks STX CR LF, the checksum and ETX; returns the text lines between the first and last CR LF. */
export function verifyPacket(packet: Uint8Array): { ok: true; lines: string[] } | { ok: false; error: Clinitek50Error } {
  const p = Buffer.from(packet);
  if (p.length < 6 || p[0] !== STX || p[1] !== 0x0d || p[2] !== 0x0a || p[p.length - 1] !== ETX) {
    return fail('bad-header', 'the packet does not start with STX CR LF or does not end with ETX');
  }
  const hex = p.subarray(p.length - 3, p.length - 1).toString('latin1');
  if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return fail('missing-checksum', 'no two hex digits before ETX');
  const body = p.subarray(1, p.length - 3);
  const actual = clinitek50Checksum(body);
  const given = parseInt(hex, 16);
  if (given !== actual) {
    return fail('bad-checksum', `the packet carries checksum ${hex.toUpperCase()}, its bytes sum to ${formatChecksum(actual)}`);
  }
  const text = body.toString('latin1');
  if (!text.endsWith('\r\n')) return fail('bad-header', 'the last line before the checksum has no CR LF');
  const lines = text.slice(2, -2).split('\r\n');
  if (lines.length < 2) return fail('bad-header', `${lines.length} line(s); a packet has at least 2`);
  return { ok: true, lines };
}

export interface Clinitek50Identity {
  type: 'identity';
  revision: string;
  software: string;
  /** The reader's clock, naive. */
  clock: string;
  language: string;
  units: string;
  strip: string;
}

/** The reader has no clarity entry: `clarity` is never set. */
export interface Clinitek50Record extends StripRecord {
  type: 'record';
  revision: string;
  software: string;
}

export type Clinitek50Message = Clinitek50Identity | Clinitek50Record;

const HEADER_RE = /^(\d{4})(.{2})(\d{2}\.\d{2}) (\d{10})\s*$/;
const SEQ_RE = /^(\d{3})(?: +(.*?))?\s*$/;
const RESULT_RE = /^([A-Za-z]{2,4})(\*)?\s+(\S.*?)\s*$/;

/** `9703031111` → `1997-03-03T11:11:00` (YY < 70 → 20YY). */
function naiveFromStamp(stamp: string, order: DateOrder): string | null {
  const [a, b, c, hh, mi] = [0, 2, 4, 6, 8].map((i) => Number(stamp.slice(i, i + 2))) as [number, number, number, number, number];
  const [yy, mo, d] = yearMonthDay([a, b, c], order);
  return naiveFromFields(yy < 70 ? 2000 + yy : 1900 + yy, mo, d, hh, mi, 0);
}

/** The verified lines of a packet → an identity or a record. */
export function parsePacketLines(lines: string[], order: DateOrder = 'YMD'): { ok: true; message: Clinitek50Message } | { ok: false; error: Clinitek50Error } {
  const h = HEADER_RE.exec(lines[0]!);
  if (!h) return fail('invalid-packet', 'the first line is not "product revision software YYMMDDHHMM"');
  if (h[1] !== PRODUCT_ID) return fail('invalid-packet', `product ${h[1]} is not a CLINITEK 50 (${PRODUCT_ID})`);
  const time = naiveFromStamp(h[4]!, order);
  if (!time) return fail('invalid-date', 'the timestamp is not a real time');
  const second = lines[1]!;
  const ident = /^(.+?) - (.+?)\s*$/.exec(second);
  if (ident && lines.length === 3) {
    return {
      ok: true,
      message: { type: 'identity', revision: h[2]!, software: h[3]!, clock: time, language: ident[1]!.trim(), units: ident[2]!, strip: lines[2]!.trim() },
    };
  }
  const s = SEQ_RE.exec(second);
  if (!s) return fail('invalid-packet', 'the second line is neither "LANGUAGE - UNITS" nor a record number');
  const results: StripResult[] = [];
  for (const [i, line] of lines.slice(2).entries()) {
    const m = RESULT_RE.exec(line);
    if (!m) return fail('invalid-packet', `result line ${i + 1} is not "LABEL[*] result"`);
    results.push({ label: m[1]!, analyte: analyteForLabel(m[1]!), text: m[3]!, abnormal: m[2] === '*' });
  }
  if (results.length === 0) return fail('invalid-packet', 'a data packet with no result lines');
  const colour = (s[2] ?? '').trim();
  return { ok: true, message: { type: 'record', revision: h[2]!, software: h[3]!, seq: Number(s[1]), time, colour: colour === '' ? null : colour, results } };
}

export function decodePacket(packet: Uint8Array, order: DateOrder = 'YMD'): { ok: true; message: Clinitek50Message } | { ok: false; error: Clinitek50Error } {
  const v = verifyPacket(packet);
  return v.ok ? parsePacketLines(v.lines, order) : v;
}

/** Lines → a packet on the wire. `checksum` overrides the computed one (simulator: a corrupted packet). */
export function encodePacket(lines: string[], checksum?: number): Buffer {
  const body = Buffer.from(`\r\n${lines.join('\r\n')}\r\n`, 'latin1');
  const sum = (checksum ?? clinitek50Checksum(body)) & 0xff;
  return Buffer.concat([Buffer.from([STX]), body, Buffer.from(formatChecksum(sum), 'latin1'), Buffer.from([ETX])]);
}
