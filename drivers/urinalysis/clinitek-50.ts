/**
 * Bayer / Siemens CLINITEK 50 urine strip reader (legacy): RS-232 9600 8N1 with XON/XOFF, and DTR
 * must be low (high puts the reader's controller into programming mode).
 *
 * Source: the research note `research/astm-urinalysis-poct1a.md` §3.1 and §3.3, which summarise the
 * documentation in GNUmed `device-drivers/Clinitek50.py` (rev 1.5, 2004) and its Java port in
 * freemed/freeshim. Only the facts are used here, none of their code.
 *
 *   host → reader  ENQ (0x05)              identify: the reader answers with an identity packet
 *                  XON DC2 (0x11 0x12)     send the next record: a data packet, or a lone NAK
 *                                          (0x15) when there is no more data
 *                  ACK (0x06) / NAK (0x15) the packet was good / bad
 *   reader → host  STX CR LF <lines, each CR LF> <2 hex digits> ETX
 *                  checksum: the sum of the bytes after STX up to the last CR LF, & 0xFF, as two
 *                  hex digits (compared case-insensitively). Verified on the documented identity
 *                  packet (48).
 *
 *   identity packet                 data packet
 *   6510  01.02 9706201349          6510  01.02 9703031111    product 6510, revision (2 chars),
 *   DEUTSCH - CONV.                 008 HELL GELB               software 01.02, YYMMDDHHMM
 *   MULTISTIX 8 SG                  GLU  NEGATIV                record 008, colour "light yellow"
 *                                   OBL* Ca 10 Ery/uL           label, `*` = abnormal, result
 *
 * Labels follow the reader's language (German `OBL` = blood). The date part of the timestamp
 * follows the reader's date setting (YYMMDD by default, option `date_order`); the time is HHMM.
 *
 * Not in the documentation, so assumed and done the safe way: after the host NAKs a bad packet it
 * asks again (XON DC2) and the reader sends the same record again; a record is only ACKed after it
 * is committed, and the reader moves to the next record on ACK.
 *
 * Sections: codec · records and decode() · session · simulator · definition.
 */
import type {
  Capture,
  DecodeContext,
  DecodeIssue,
  DecodeResult,
  DeviceSimulator,
  DriverDefinition,
  SessionHost,
} from '../../src/driver-sdk/index.ts';
import {
  CLOCK_SKEW_LIMIT_S,
  MeterSession,
  type MeterSessionOptions,
  NoAnswerError,
  numberOptions,
  ProtocolError,
} from '../../src/driver-sdk/meter-session.ts';
import { deviceBytes } from '../../src/driver-sdk/capture.ts';
import { ACK, ENQ, ETX, NAK, STX, astmChecksum, formatChecksum } from '../../src/protocols/astm/frame.ts';
import type { DeviceConfig } from '../../src/config/types.ts';
import type { DeviceIdentity, DeviceState, ResultDraft } from '../../src/records/types.ts';
import type { ByteTransport } from '../../src/transports/transport.ts';
import { definedOnly, SimulatorOptionReader } from '../../src/driver-sdk/simulator-options.ts';
import { seededRandom } from '../../src/util/random.ts';
import { ChunkedWriter } from '../../src/driver-sdk/simulator-wire.ts';
import { hostTimeZone, naiveFromFields, naiveToZoned, nowInZone } from '../../src/util/time.ts';
import {
  dateOrderOption,
  labelLookup,
  printedPad,
  simulatedPad as pad,
  stripObservations,
  stripRecordKey,
  yearMonthDay,
  type DateOrder,
  type ReaderWording,
  type SimulatedStripResult,
  type StripRecord,
  type StripResult,
} from './urine-strip-analytes.ts';

export const CLINITEK_50_DRIVER_ID = 'clinitek-50';
const MANUFACTURER = 'Siemens Healthineers (Bayer Diagnostics)';
const MODEL = 'CLINITEK 50';
const PRODUCT_ID = '6510';

export { ACK, ENQ, NAK } from '../../src/protocols/astm/frame.ts';
export const XON = 0x11;
export const DC2 = 0x12;
export const XOFF = 0x13;

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Locale tables (data): the reader's labels and words per language.
// ────────────────────────────────────────────────────────────────────────────────────────────────

export interface Clinitek50Locale extends ReaderWording {
  /** Identity packet language name (`DEUTSCH`). */
  name: string;
}

export const CLINITEK_50_LOCALES: Readonly<Record<string, Clinitek50Locale>> = {
  // German: the GNUmed documentation's data packet.
  de: {
    name: 'DEUTSCH',
    labels: { GLU: 'GLU', BIL: 'BIL', KET: 'KET', SG: 'SG', PH: 'pH', PRO: 'PRO', UBG: 'UBG', NIT: 'NIT', BLD: 'OBL', LEU: 'LEU' },
    words: { negative: 'NEGATIV', trace: 'SPUR', positive: 'POSITIV', normal: 'NORMAL' },
  },
  // English: the CLINITEK Status English labels (no English CLINITEK 50 packet is public).
  en: {
    name: 'ENGLISH',
    labels: { GLU: 'GLU', BIL: 'BIL', KET: 'KET', SG: 'SG', PH: 'pH', PRO: 'PRO', UBG: 'UBG', NIT: 'NIT', BLD: 'BLD', LEU: 'LEU' },
    words: { negative: 'NEGATIVE', trace: 'TRACE', small: 'SMALL', moderate: 'MODERATE', large: 'LARGE', positive: 'POSITIVE', normal: 'NORMAL' },
  },
};

const analyteForLabel = labelLookup(Object.values(CLINITEK_50_LOCALES).map((l) => l.labels));

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Codec. Pure; errors are values, never thrown.
// ────────────────────────────────────────────────────────────────────────────────────────────────

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
  | { kind: 'garbage'; bytes: Buffer }
  | { kind: 'overflow'; bytes: Buffer }
  | { kind: 'truncated'; bytes: Buffer };

/**
 * Cuts the reader's byte stream into packets (STX … ETX), lone NAKs and garbage. XON/XOFF are flow
 * control and dropped wherever they are. The output does not depend on how the stream was chunked.
 */
export class PacketFramer {
  /** GNUmed reads at most 1024 bytes for a packet. */
  static readonly MAX_PACKET = 1024;
  private packet: number[] | null = null;
  private garbage: number[] = [];

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
      this.garbage.push(b);
    }
    return out;
  }

  private flushGarbage(out: FramedItem[]): void {
    if (this.garbage.length > 0) out.push({ kind: 'garbage', bytes: Buffer.from(this.garbage) });
    this.garbage = [];
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
    this.garbage = [];
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

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Records → drafts, and decode()
// ────────────────────────────────────────────────────────────────────────────────────────────────

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

function itemIssue(item: FramedItem): DecodeIssue | null {
  switch (item.kind) {
    case 'garbage':
      return { reason: 'garbage', bytes: item.bytes };
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
  const device: Partial<DeviceState> = {};
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
  return { drafts, issues, device };
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Session: identify (ENQ), then ask for records (XON DC2) until the reader answers NAK; each record
// is committed, then ACKed.
// ────────────────────────────────────────────────────────────────────────────────────────────────

/** `retries`: bad packets in a row before the download is given up. */
export interface Clinitek50SessionOptions extends MeterSessionOptions {
  date_order: DateOrder;
}

const DEFAULT_NUMBER_OPTIONS: MeterSessionOptions = { reply_timeout_ms: 3000, retries: 3, clock_skew_limit_s: CLOCK_SKEW_LIMIT_S };
const DEFAULT_SESSION_OPTIONS: Clinitek50SessionOptions = { ...DEFAULT_NUMBER_OPTIONS, date_order: 'YMD' };

export function clinitek50SessionOptions(device: Pick<DeviceConfig, 'id' | 'options'>): Clinitek50SessionOptions {
  const o = device.options ?? {};
  for (const name of Object.keys(o)) {
    if (!(name in DEFAULT_SESSION_OPTIONS)) throw new Error(`device ${device.id}: unknown option ${name} for clinitek-50`);
  }
  const dateOrder = dateOrderOption(device, DEFAULT_SESSION_OPTIONS.date_order);
  return { ...numberOptions(device, DEFAULT_NUMBER_OPTIONS, ['retries']), date_order: dateOrder };
}

export interface DownloadResult {
  records: number;
  inserted: number;
  duplicates: number;
}

/** The most records one download reads (the reader's memory is far smaller): a guard against a loop. */
const MAX_RECORDS = 10_000;

class Clinitek50Session extends MeterSession<FramedItem> {
  private readonly opts: Clinitek50SessionOptions;
  private readonly framer = new PacketFramer();

  constructor(host: SessionHost) {
    super(host, CLINITEK_50_DRIVER_ID);
    this.opts = clinitek50SessionOptions(host.device);
  }

  protected frame(chunk: Buffer): FramedItem[] {
    return this.framer.push(chunk);
  }

  protected resetFramer(): void {
    this.framer.reset();
  }

  private async sendBytes(...bytes: number[]): Promise<void> {
    await this.send(Buffer.from(bytes));
  }

  /** The next packet or NAK; garbage and broken packets on the way are reported and skipped. */
  private async next(): Promise<FramedItem | null> {
    const deadline = Date.now() + this.opts.reply_timeout_ms;
    for (;;) {
      const item = await this.inbox.next(Math.max(0, deadline - Date.now()));
      if (!item) return null;
      const issue = itemIssue(item);
      if (issue?.bytes) {
        this.report.badData(issue.bytes, issue.reason, 'bytes outside a complete packet', 'packet');
        if (item.kind === 'garbage') continue;
      }
      return item;
    }
  }

  /** Sets DTR low as the reader requires. A port without modem lines (a pty) only logs it. */
  private async dtrLow(): Promise<void> {
    if (!this.transport.setSignals) return;
    try {
      await this.transport.setSignals({ dtr: false });
    } catch (err) {
      this.host.log.info({ err: (err as Error).message }, 'clinitek-50: could not set DTR low');
    }
  }

  private async identify(): Promise<Clinitek50Identity> {
    let last = 'timeout';
    for (let attempt = 0; attempt <= this.opts.retries; attempt++) {
      this.clearInbox();
      await this.sendBytes(ENQ);
      const item = await this.next();
      if (!item) continue;
      if (item.kind !== 'packet') {
        last = item.kind;
        continue;
      }
      const r = decodePacket(item.bytes, this.opts.date_order);
      if (!r.ok) {
        this.report.badData(item.bytes, r.error.code, r.error.detail, 'packet');
        last = r.error.code;
        continue;
      }
      if (r.message.type === 'identity') return r.message;
      last = 'unexpected-record';
    }
    if (last === 'timeout') throw new NoAnswerError('no answer to ENQ: the reader is off, busy, or not on this port');
    throw new ProtocolError(last, `no valid identity packet after ${this.opts.retries + 1} tries (${last})`);
  }

  protected async download(trigger: string): Promise<DownloadResult> {
    this.begin();
    let started = false;
    try {
      await this.dtrLow();
      const id = await this.identify();
      started = true;
      this.report.patch({
        model: MODEL,
        firmware: id.software,
        display_unit: id.units,
        status: 'downloading',
        status_detail: null,
        last_seen: this.host.now().toISOString(),
      });
      this.report.clockRead(id.clock, this.host.timezone, this.host.now(), this.opts.clock_skew_limit_s, 'reader');
      this.report.emit('download_started', `download started (${trigger})`, { trigger });
      const identity = clinitek50Identity(this.host.device.id, id.software);
      const total = { records: 0, inserted: 0, duplicates: 0 };
      let faults = 0;
      for (let n = 0; n < MAX_RECORDS; n++) {
        // Each record's capture is its own request and answer (and any NAKed tries before it).
        this.transcript = [];
        await this.sendBytes(XON, DC2);
        const item = await this.next();
        if (!item) throw new NoAnswerError('no answer to a record request: the reader stopped answering');
        if (item.kind === 'nak') break; // no more data
        let reason: string | null = null;
        let record: Clinitek50Record | null = null;
        if (item.kind !== 'packet') reason = item.kind === 'overflow' ? 'packet-too-long' : 'truncated-packet';
        else {
          const r = decodePacket(item.bytes, this.opts.date_order);
          if (!r.ok) {
            this.report.badData(item.bytes, r.error.code, r.error.detail, 'packet');
            reason = r.error.code;
          } else if (r.message.type !== 'record') reason = 'unexpected-identity';
          else record = r.message;
        }
        if (!record) {
          await this.sendBytes(NAK);
          if (++faults > this.opts.retries) throw new ProtocolError(reason ?? 'invalid-packet', `${faults} bad packets in a row (${reason}); the records not yet ACKed stay on the reader`);
          continue;
        }
        faults = 0;
        const capture = this.takeCapture();
        let stored: { inserted: number; duplicates: number };
        try {
          stored = await this.host.commit({ result: [recordToDraft(record, identity, this.host.timezone)] }, capture);
        } catch (err) {
          await this.sendBytes(NAK).catch(() => undefined);
          throw new ProtocolError('commit-failed', `the store did not commit record ${record.seq}: ${(err as Error).message}; it was not ACKed`);
        }
        await this.sendBytes(ACK);
        total.records++;
        total.inserted += stored.inserted;
        total.duplicates += stored.duplicates;
      }
      this.transcript = null;
      const at = this.host.now().toISOString();
      this.report.patch({ status: 'ok', status_detail: null, record_count: total.records, last_download: at, last_seen: at });
      this.report.emit('download_finished', `downloaded ${total.records} records: ${total.inserted} new, ${total.duplicates} already stored`, total);
      return total;
    } catch (err) {
      throw this.failed(err, started ? 'download_failed' : 'device_error');
    }
  }
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Simulator: the reader's side.
// ────────────────────────────────────────────────────────────────────────────────────────────────

export interface SimulatedC50Record {
  seq: number;
  /** Naive `YYYY-MM-DDTHH:MM:SS` (seconds are not sent). */
  time: string;
  colour?: string;
  results: SimulatedStripResult[];
}

/** The GNUmed documentation's record (record 008), then two made-up ones. */
export const SAMPLE_RECORDS: readonly SimulatedC50Record[] = [
  {
    seq: 8,
    time: '1997-03-03T11:11:00',
    colour: 'HELL GELB',
    results: [pad('GLU', 'negative'), pad('BIL', 'negative'), pad('KET', 'negative'), pad('SG', '>=1.030'), pad('PH', '5.0'), pad('PRO', 'negative'), pad('UBG', '0.2 mg/dL'), pad('NIT', 'negative'), pad('BLD', 'Ca 10 Ery/uL', true), pad('LEU', '0 Leu/uL')],
  },
  {
    seq: 9,
    time: '1997-03-03T11:20:00',
    colour: 'GELB',
    results: [pad('GLU', '100 mg/dL', true), pad('BIL', 'negative'), pad('KET', '15 mg/dL', true), pad('SG', '1.015'), pad('PH', '6.5'), pad('PRO', '30 mg/dL', true), pad('UBG', '0.2 mg/dL'), pad('NIT', 'positive', true), pad('BLD', 'negative'), pad('LEU', 'Ca 75 Leu/uL', true)],
  },
  {
    seq: 10,
    time: '1997-03-03T11:31:00',
    colour: 'GELB',
    results: [pad('GLU', 'negative'), pad('BIL', 'negative'), pad('KET', 'negative'), pad('SG', '1.020'), pad('PH', '6.0'), pad('PRO', 'negative'), pad('UBG', '0.2 mg/dL'), pad('NIT', 'negative'), pad('BLD', 'negative'), pad('LEU', '0 Leu/uL')],
  },
];

/** `1997-03-03T11:11:00` → `9703031111` (YYMMDD). */
function wireStamp(naive: string): string {
  const m = /^\d{2}(\d{2})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(naive);
  if (!m) throw new RangeError(`not a naive time: ${naive}`);
  return `${m[1]}${m[2]}${m[3]}${m[4]}${m[5]}`;
}

export interface Clinitek50ReaderInfo {
  software: string;
  language: string;
  units: string;
  strip: string;
}

export function identityLines(info: Clinitek50ReaderInfo, clock: string): string[] {
  const locale = CLINITEK_50_LOCALES[info.language]!;
  return [`${PRODUCT_ID}  ${info.software} ${wireStamp(clock)}`, `${locale.name} - ${info.units}`, info.strip];
}

export function recordLines(rec: SimulatedC50Record, software: string, language: string): string[] {
  const locale = CLINITEK_50_LOCALES[language];
  if (!locale) throw new RangeError(`no CLINITEK 50 locale "${language}"`);
  const lines = [`${PRODUCT_ID}  ${software} ${wireStamp(rec.time)}`, `${String(rec.seq).padStart(3, '0')} ${(rec.colour ?? '').padEnd(14)}`];
  for (const s of rec.results) {
    const { label, value } = printedPad(locale, s);
    lines.push(`${(label + (s.abnormal ? '*' : '')).padEnd(4)} ${value.padEnd(15)}`);
  }
  return lines;
}

export interface Clinitek50SimulatorOptions {
  language?: string;
  units?: string;
  strip?: string;
  software?: string;
  memory?: SimulatedC50Record[];
  /** Send the next N data packets with a wrong checksum. */
  corrupt_next?: number;
  /** Noise bytes before every data packet. */
  garbage?: boolean;
  /** true: never answers. */
  off?: boolean;
  max_chunk?: number;
  seed?: number;
  timezone?: string;
}

const SIMULATOR_OPTION_HELP: Record<string, string> = {
  language: `labels and words: ${Object.keys(CLINITEK_50_LOCALES).join(' or ')} (default de)`,
  units: 'unit system in the identity packet (default CONV.)',
  strip: 'strip type in the identity packet (default MULTISTIX 10 SG)',
  software: 'software version NN.NN (default 01.02)',
  memory: 'records: [{seq, time: "YYYY-MM-DDTHH:MM:SS", colour?, results: [{code, value, abnormal?}]}]',
  corrupt_next: 'send the next N data packets with a wrong checksum',
  garbage: 'true: noise bytes before every data packet',
  off: 'true: never answer',
  max_chunk: 'largest write in bytes; chunk sizes are random from 1 to this (default 16)',
  seed: 'random seed for reproducible runs',
  timezone: "IANA zone of the reader's clock (default: the host's)",
};

const SIMULATOR = 'clinitek-50 simulator';

/** Checks untyped options (from YAML or the command line) and returns them typed. */
export function parseSimulatorOptions(o: Record<string, unknown>): Clinitek50SimulatorOptions {
  const read = new SimulatorOptionReader(o, SIMULATOR, Object.keys(SIMULATOR_OPTION_HELP));
  const languages = Object.keys(CLINITEK_50_LOCALES);
  const printable = /^[\x20-\x7e]*$/;
  return definedOnly<Clinitek50SimulatorOptions>({
    language: read.oneOf('language', languages, languages.join(' or ')),
    units: read.string('units', printable, 'one line of printable ASCII'),
    strip: read.string('strip', printable, 'one line of printable ASCII'),
    software: read.string('software', /^\d{2}\.\d{2}$/, 'NN.NN'),
    memory: read.list('memory', (v, where) => parseSimulatedRecord(read, v, where), 'a list of records'),
    corrupt_next: read.number('corrupt_next', 0),
    garbage: read.boolean('garbage'),
    off: read.boolean('off'),
    max_chunk: read.number('max_chunk', 1),
    seed: read.number('seed', 0),
    timezone: read.timezone(),
  });
}

function parseSimulatedRecord(read: SimulatorOptionReader, v: unknown, where: string): SimulatedC50Record {
  const rec = v as Record<string, unknown>;
  if (typeof rec?.seq !== 'number' || !Number.isInteger(rec.seq) || rec.seq < 0 || rec.seq > 999) throw read.error(`${where}.seq`, 'a whole number 0-999');
  if (typeof rec.time !== 'string' || !/^(19[7-9]\d|20[0-6]\d)-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/.test(rec.time)) throw read.error(`${where}.time`, 'YYYY-MM-DDTHH:MM:SS in 1970-2069');
  if (!Array.isArray(rec.results) || rec.results.length === 0) throw read.error(`${where}.results`, 'a non-empty list');
  const results = rec.results.map((s: Record<string, unknown>, j: number) => {
    if (typeof s?.code !== 'string' || !/^[A-Za-z]{2,4}$/.test(s.code) || typeof s.value !== 'string' || /[\r\n]/.test(s.value)) {
      throw read.error(`${where}.results[${j}]`, '{code: 2-4 letters, value: text}');
    }
    return { code: s.code, value: s.value, abnormal: s.abnormal === true };
  });
  const r: SimulatedC50Record = { seq: rec.seq, time: rec.time, results };
  if (typeof rec.colour === 'string') r.colour = rec.colour;
  return r;
}

export class Clinitek50Simulator implements DeviceSimulator {
  memory: SimulatedC50Record[];
  /** Index of the record the next DC2 sends; moves on ACK only. */
  next = 0;
  corruptNext: number;
  off: boolean;
  readonly received: number[] = [];
  private readonly info: Clinitek50ReaderInfo;
  private readonly garbage: boolean;
  private readonly wire: ChunkedWriter;
  private readonly random: () => number;
  private readonly timezone: string;
  private transport: ByteTransport | null = null;
  private outstanding = false;

  constructor(options: Clinitek50SimulatorOptions = {}) {
    this.info = {
      software: options.software ?? '01.02',
      language: options.language ?? 'de',
      units: options.units ?? 'CONV.',
      strip: options.strip ?? 'MULTISTIX 10 SG',
    };
    this.memory = options.memory ?? SAMPLE_RECORDS.map((x) => structuredClone(x));
    this.corruptNext = options.corrupt_next ?? 0;
    this.garbage = options.garbage ?? false;
    this.off = options.off ?? false;
    this.random = seededRandom(options.seed ?? Date.now());
    this.wire = new ChunkedWriter(this.random, Math.max(1, Math.floor(options.max_chunk ?? 16)), (t) => t === this.transport);
    this.timezone = options.timezone ?? hostTimeZone();
  }

  attach(transport: ByteTransport): void {
    this.detach();
    this.transport = transport;
    transport.on('data', this.onData);
  }

  detach(): void {
    if (this.transport) this.transport.off('data', this.onData);
    this.transport = null;
  }

  private readonly onData = (chunk: Buffer): void => {
    for (const b of chunk) this.handle(b);
  };

  private handle(b: number): void {
    this.received.push(b);
    if (this.off) return;
    switch (b) {
      case ENQ:
        this.write(encodePacket(identityLines(this.info, nowInZone(this.timezone))));
        return;
      case DC2: {
        const rec = this.memory[this.next];
        if (!rec) {
          this.write(Buffer.from([NAK]));
          return;
        }
        this.outstanding = true;
        const lines = recordLines(rec, this.info.software, this.info.language);
        let packet = encodePacket(lines);
        if (this.corruptNext > 0) {
          this.corruptNext--;
          packet = encodePacket(lines, clinitek50Checksum(packet.subarray(1, packet.length - 3)) + 1);
        }
        this.write(this.garbage ? Buffer.concat([Buffer.from('~\x00noise\xff', 'latin1'), packet]) : packet);
        return;
      }
      case ACK:
        if (this.outstanding) this.next++;
        this.outstanding = false;
        return;
      case NAK:
        this.outstanding = false; // the same record goes again on the next DC2
        return;
      default:
        return; // XON, XOFF and anything else: nothing to answer
    }
  }

  private write(bytes: Buffer): void {
    if (this.transport) void this.wire.write(this.transport, [bytes]);
  }
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Definition
// ────────────────────────────────────────────────────────────────────────────────────────────────

export const clinitek50: DriverDefinition = {
  id: CLINITEK_50_DRIVER_ID,
  kind: 'urinalysis-reader',
  vendor: MANUFACTURER,
  models: [MODEL],
  usb: [],
  transports: ['serial', 'tcp', 'simulated'],
  serialDefaults: { baud_rate: 9600, data_bits: 8, parity: 'none', stop_bits: 1 },
  commands: {
    download: { description: 'identify the reader (ENQ), read every record (XON DC2) and store it before ACKing it; returns {records, inserted, duplicates}' },
    status: { description: 'the current device state: software version, unit system, clock skew, last download' },
  },
  decode: (capture, ctx) => decodeClinitek50(capture, ctx, clinitek50SessionOptions({ id: ctx.deviceId, options: ctx.options }).date_order),
  createSession: (host) => new Clinitek50Session(host),
  simulator: {
    description: 'a CLINITEK 50 reader: answers ENQ with its identity packet and XON DC2 with checksummed record packets (NAK when empty)',
    options: SIMULATOR_OPTION_HELP,
    create: (options) => new Clinitek50Simulator(parseSimulatorOptions(options)),
  },
};
