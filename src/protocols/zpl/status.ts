/**
 * Zebra status replies, byte for byte as the ZPL II guide gives them (research note part B4):
 * every reply is text between STX (0x02) and ETX (0x03), with no length, followed by CR LF.
 * `~HS` answers three such strings, `~HQES` and `~HI` one each. A reply arrives in as many reads
 * as the network makes of it, so the framer keeps what it has until the ETX; bytes outside a
 * block other than CR/LF are garbage and are handed back as such.
 *
 * The `~HS` silence rule matters: a printer in MEDIA OUT, RIBBON OUT, HEAD OPEN, REWINDER FULL or
 * HEAD OVER-TEMPERATURE does not answer `~HS` at all; `~HQES` still answers, with its bitmasks.
 */
import type { PrinterState } from '../../records/device-state.ts';
import { PRINT_MODES } from '../../records/device-state.ts';

export const STX = 0x02;
export const ETX = 0x03;

/** A block longer than this without its ETX is not a status reply (a ~HQES reply is about 120 bytes). */
export const MAX_BLOCK_BYTES = 4096;

export type ReplyItem = { kind: 'block'; text: string } | { kind: 'garbage'; bytes: Buffer; reason: string };

/** STX … ETX blocks out of a byte stream cut anywhere. */
export class ZebraReplyFramer {
  private block: number[] | null = null;
  private garbage: number[] = [];

  push(chunk: Buffer): ReplyItem[] {
    const out: ReplyItem[] = [];
    const flushGarbage = (reason: string): void => {
      if (this.garbage.length > 0) out.push({ kind: 'garbage', bytes: Buffer.from(this.garbage), reason });
      this.garbage = [];
    };
    for (const byte of chunk) {
      if (this.block === null) {
        if (byte === STX) {
          flushGarbage('bytes outside a status reply');
          this.block = [];
        } else if (byte !== 0x0d && byte !== 0x0a) {
          this.garbage.push(byte);
        }
        continue;
      }
      if (byte === ETX) {
        out.push({ kind: 'block', text: Buffer.from(this.block).toString('latin1') });
        this.block = null;
      } else if (byte === STX) {
        // A new reply began before this one ended: what came so far is incomplete.
        out.push({ kind: 'garbage', bytes: Buffer.from([STX, ...this.block]), reason: 'a status reply cut short (STX before its ETX)' });
        this.block = [];
      } else if (this.block.length >= MAX_BLOCK_BYTES) {
        out.push({ kind: 'garbage', bytes: Buffer.from([STX, ...this.block]), reason: `a status reply longer than ${MAX_BLOCK_BYTES} bytes` });
        this.block = null;
        this.garbage.push(byte);
      } else {
        this.block.push(byte);
      }
    }
    flushGarbage('bytes outside a status reply');
    return out;
  }

  /** Drops a partial block (the conversation it belonged to is over). */
  reset(): void {
    this.block = null;
    this.garbage = [];
  }
}

/** The printer-block fields a `~HS` reply gives. */
export type HostStatus = Omit<PrinterState, 'status_read_at' | 'queued_jobs'> & {
  partial_format: boolean;
  /** `~HS` string 2 field o: head open. */
  head_open: boolean;
};

export class StatusReplyError extends Error {}

function flag(fields: string[], i: number, what: string): boolean {
  const v = fields[i];
  if (v !== '0' && v !== '1') throw new StatusReplyError(`~HS ${what}: "${v ?? ''}" is not 0 or 1`);
  return v === '1';
}

function count(fields: string[], i: number, what: string): number {
  const v = fields[i] ?? '';
  if (!/^\d+$/.test(v)) throw new StatusReplyError(`~HS ${what}: "${v}" is not a number`);
  return Number(v);
}

/** The three `~HS` strings (the text inside each STX … ETX) decoded. */
export function parseHostStatus(strings: readonly string[]): HostStatus {
  if (strings.length !== 3) throw new StatusReplyError(`~HS: ${strings.length} strings, expected 3`);
  const one = strings[0]!.trim().split(',');
  const two = strings[1]!.trim().split(',');
  const three = strings[2]!.trim().split(',');
  if (one.length !== 12) throw new StatusReplyError(`~HS string 1: ${one.length} fields, expected 12`);
  if (two.length !== 11) throw new StatusReplyError(`~HS string 2: ${two.length} fields, expected 11`);
  if (three.length !== 2) throw new StatusReplyError(`~HS string 3: ${three.length} fields, expected 2`);
  const mode = count(two, 5, 'string 2 print mode');
  return {
    paper_out: flag(one, 1, 'string 1 paper out'),
    paused: flag(one, 2, 'string 1 pause'),
    label_length_dots: count(one, 3, 'string 1 label length'),
    formats_in_buffer: count(one, 4, 'string 1 formats in buffer'),
    receive_buffer_full: flag(one, 5, 'string 1 buffer full'),
    partial_format: flag(one, 7, 'string 1 partial format'),
    corrupt_ram: flag(one, 9, 'string 1 corrupt RAM'),
    under_temperature: flag(one, 10, 'string 1 under temperature'),
    over_temperature: flag(one, 11, 'string 1 over temperature'),
    head_open: flag(two, 2, 'string 2 head up'),
    ribbon_out: flag(two, 3, 'string 2 ribbon out'),
    print_mode: PRINT_MODES[mode] ?? null,
    labels_remaining: count(two, 8, 'string 2 labels remaining'),
  };
}

/** `~HQES` error bits of group 1: nibble and value as the ZPL guide's table (`~WQ` / `~HQ`) lists them. */
export const HQES_ERRORS = [
  { bit: 0x00000001, name: 'media_out', text: 'media out' },
  { bit: 0x00000002, name: 'ribbon_out', text: 'ribbon out' },
  { bit: 0x00000004, name: 'head_open', text: 'head open' },
  { bit: 0x00000008, name: 'cutter_fault', text: 'cutter fault' },
  { bit: 0x00000010, name: 'head_over_temperature', text: 'printhead over temperature' },
  { bit: 0x00000020, name: 'motor_over_temperature', text: 'motor over temperature' },
  { bit: 0x00000040, name: 'bad_printhead_element', text: 'bad printhead element' },
  { bit: 0x00000080, name: 'printhead_detection_error', text: 'printhead detection error' },
  { bit: 0x00000100, name: 'invalid_firmware_config', text: 'invalid firmware configuration' },
  { bit: 0x00000200, name: 'printhead_thermistor_open', text: 'printhead thermistor open' },
  { bit: 0x00001000, name: 'paper_jam_during_retract', text: 'paper jam during retract' },
  { bit: 0x00002000, name: 'presenter_not_running', text: 'presenter not running' },
  { bit: 0x00004000, name: 'paper_feed_error', text: 'paper feed error' },
  { bit: 0x00008000, name: 'clear_paper_path_failed', text: 'clear paper path failed' },
  { bit: 0x00010000, name: 'paused', text: 'paused' },
  { bit: 0x00040000, name: 'black_mark_calibrate_error', text: 'black mark calibrate error' },
  { bit: 0x00080000, name: 'black_mark_not_found', text: 'black mark not found' },
] as const;

/** `~HQES` warning bits of group 1. */
export const HQES_WARNINGS = [
  { bit: 0x00000001, name: 'calibrate_media', text: 'media needs calibrating' },
  { bit: 0x00000002, name: 'clean_printhead', text: 'clean the printhead' },
  { bit: 0x00000004, name: 'replace_printhead', text: 'replace the printhead' },
  { bit: 0x00000008, name: 'paper_near_end', text: 'paper near its end' },
] as const;

export interface FlagSet {
  /** The flag digit: 1 when any error (or warning) is present. */
  present: boolean;
  group2: number;
  group1: number;
  /** The names of the bits of group 1 this table knows. */
  names: string[];
  /** The same in words, and `unknown bit 0x…` for a bit the table does not know. */
  texts: string[];
}

export interface ErrorStatus {
  errors: FlagSet;
  warnings: FlagSet;
}

const FLAG_LINE = (label: string): RegExp => new RegExp(`${label}:\\s*([01])\\s+([0-9A-Fa-f]{8})\\s+([0-9A-Fa-f]{8})`);

function flagSet(text: string, label: string, table: ReadonlyArray<{ bit: number; name: string; text: string }>): FlagSet {
  const m = FLAG_LINE(label).exec(text);
  if (!m) throw new StatusReplyError(`~HQES: no "${label}: f gggggggg hhhhhhhh" line`);
  const group1 = parseInt(m[3]!, 16);
  const names: string[] = [];
  const texts: string[] = [];
  let known = 0;
  for (const entry of table) {
    if ((group1 & entry.bit) === 0) continue;
    known |= entry.bit;
    names.push(entry.name);
    texts.push(entry.text);
  }
  const unknown = (group1 & ~known) >>> 0;
  if (unknown !== 0) texts.push(`unknown bit 0x${unknown.toString(16).padStart(8, '0')}`);
  return { present: m[1] === '1', group2: parseInt(m[2]!, 16), group1, names, texts };
}

/** A `~HQES` reply (the text inside its STX … ETX) decoded. */
export function parseErrorStatus(text: string): ErrorStatus {
  if (!/PRINTER STATUS/.test(text)) throw new StatusReplyError('~HQES: no "PRINTER STATUS" heading');
  return { errors: flagSet(text, 'ERRORS', HQES_ERRORS), warnings: flagSet(text, 'WARNINGS', HQES_WARNINGS) };
}

export interface HostIdentification {
  model: string;
  firmware: string;
  /** Dots per millimetre: 6, 8, 12 or 24. */
  dpmm: number;
  memory: string;
  options: string | null;
}

/** A `~HI` reply, `XXXXXX,V1.0.0,dpm,000KB,X`, decoded. */
export function parseHostIdentification(text: string): HostIdentification {
  const fields = text.trim().split(',');
  if (fields.length < 4) throw new StatusReplyError(`~HI: ${fields.length} fields, expected at least 4`);
  const dpmm = Number(fields[2]);
  if (![6, 8, 12, 24].includes(dpmm)) throw new StatusReplyError(`~HI: dots per millimetre "${fields[2]}" is not 6, 8, 12 or 24`);
  return { model: fields[0]!.trim(), firmware: fields[1]!.trim(), dpmm, memory: fields[3]!.trim(), options: fields[4]?.trim() || null };
}

/** The queries, as the host writes them. */
export const QUERIES = { hostStatus: '~HS', errorStatus: '~HQES', identification: '~HI' } as const;

/** How many STX … ETX blocks each query is answered with. */
export const REPLY_BLOCKS: Readonly<Record<string, number>> = { '~HS': 3, '~HQES': 1, '~HI': 1 };

/** The reason a job must wait, in words, from a `~HS` reply (null: the printer can print). */
export function hostStatusFault(s: HostStatus): string | null {
  const reasons = [
    s.paper_out && 'paper out',
    s.ribbon_out && 'ribbon out',
    s.head_open && 'head open',
    s.paused && 'paused',
    s.receive_buffer_full && 'receive buffer full',
    s.over_temperature && 'head too hot',
    s.corrupt_ram && 'configuration lost (corrupt RAM)',
  ].filter((r): r is string => typeof r === 'string');
  return reasons.length > 0 ? reasons.join(', ') : null;
}

/** The printer-block patch an `~HQES` reply gives (what its bits say; the rest is unknown). */
export function errorStatusPatch(s: ErrorStatus): Partial<PrinterState> {
  const has = (name: string): boolean => s.errors.names.includes(name);
  return {
    paper_out: has('media_out'),
    ribbon_out: has('ribbon_out'),
    head_open: has('head_open'),
    paused: has('paused'),
    over_temperature: has('head_over_temperature'),
  };
}
