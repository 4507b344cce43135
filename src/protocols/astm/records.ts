/**
 * ASTM E1394 / CLSI LIS02-A2 records: the message layer shared by every ASTM device.
 *
 * A message is CR-separated records, H first and L last. The H record names the delimiters
 * (`H|\^&|…`: field, repeat, component, escape), so they are read from every H and never assumed.
 * Field positions (1-based, field 1 = the record type) follow the research note
 * `research/astm-urinalysis-poct1a.md` §2.1–2.6. Escapes `&F& &S& &R& &E&` (with the message's own
 * escape character) are decoded, `&Xhh…&` becomes the bytes it names in the message's encoding,
 * and other escapes (`&H& &N& &Z…&`) are kept as written.
 *
 * Pure: text in, a tree of records out (patients → orders → results, comments attached to the
 * record they follow), with problems as a list of issues. Nothing here throws on bad input.
 */
import { naiveFromFields } from '../../util/time.ts';

export interface AstmDelimiters {
  field: string;
  repeat: string;
  component: string;
  escape: string;
}

export const DEFAULT_DELIMITERS: Readonly<AstmDelimiters> = { field: '|', repeat: '\\', component: '^', escape: '&' };

export type TextEncoding = 'latin1' | 'utf-8' | 'windows-1250' | 'auto';
export const TEXT_ENCODINGS: readonly TextEncoding[] = ['latin1', 'utf-8', 'windows-1250', 'auto'];

export interface DecodedText {
  text: string;
  /** The encoding actually used. */
  encoding: Exclude<TextEncoding, 'auto'>;
  /** UTF-8 was asked for but the bytes are not valid UTF-8: bad sequences became U+FFFD. */
  invalid: boolean;
  /** `auto` found bytes that are not UTF-8 and read them in the fallback code page instead. */
  fellBack?: boolean;
}

function isAscii(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b >= 0x80) return false;
  return true;
}

/**
 * Bytes → text. `auto` takes UTF-8 when the bytes are valid UTF-8 holding non-ASCII characters
 * (77 Elektronika sends `µ` as C2 B5), else `fallback` (a one-byte code page never fails).
 */
export function decodeText(bytes: Uint8Array, encoding: TextEncoding, fallback: Exclude<TextEncoding, 'auto' | 'utf-8'> = 'latin1'): DecodedText {
  if (encoding === 'auto') {
    if (isAscii(bytes)) return { text: Buffer.from(bytes).toString('latin1'), encoding: 'latin1', invalid: false };
    try {
      return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes), encoding: 'utf-8', invalid: false };
    } catch {
      return { ...decodeText(bytes, fallback), fellBack: true };
    }
  }
  if (encoding === 'utf-8') {
    try {
      return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes), encoding, invalid: false };
    } catch {
      return { text: new TextDecoder('utf-8').decode(bytes), encoding, invalid: true };
    }
  }
  if (encoding === 'windows-1250') return { text: new TextDecoder('windows-1250').decode(bytes), encoding, invalid: false };
  return { text: Buffer.from(bytes).toString('latin1'), encoding: 'latin1', invalid: false };
}

/** Reads the four delimiters from an H record's first five characters, or null if it is not an H. */
export function parseDelimiters(headerRecord: string): AstmDelimiters | null {
  if (headerRecord.length < 5 || headerRecord[0] !== 'H') return null;
  const [field, repeat, component, escape] = [headerRecord[1]!, headerRecord[2]!, headerRecord[3]!, headerRecord[4]!];
  const all = [field, repeat, component, escape];
  // Four different printable characters, none of them a letter or digit.
  if (new Set(all).size !== 4 || all.some((c) => !/^[\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]$/.test(c))) return null;
  return { field, repeat, component, escape };
}

/** Decodes the escape sequences of one leaf value (already split on every delimiter). */
export function unescapeAstm(value: string, d: AstmDelimiters, encoding: TextEncoding = 'latin1'): string {
  const e = d.escape;
  if (!value.includes(e)) return value;
  let out = '';
  let i = 0;
  while (i < value.length) {
    const c = value[i]!;
    if (c !== e) {
      out += c;
      i++;
      continue;
    }
    const close = value.indexOf(e, i + 1);
    if (close < 0) {
      out += value.slice(i);
      break;
    }
    const body = value.slice(i + 1, close);
    let decoded: string | null = null;
    if (body === 'F') decoded = d.field;
    else if (body === 'S') decoded = d.component;
    else if (body === 'R') decoded = d.repeat;
    else if (body === 'E') decoded = d.escape;
    else if (/^X(?:[0-9A-Fa-f]{2})+$/.test(body)) decoded = decodeText(Buffer.from(body.slice(1), 'hex'), encoding === 'auto' ? 'utf-8' : encoding).text;
    out += decoded ?? value.slice(i, close + 1);
    i = close + 1;
  }
  return out;
}

/** One record, split into fields (still escaped; field 1 is the type letter). */
export class AstmRecord {
  constructor(
    readonly raw: string,
    readonly fields: readonly string[],
    readonly delimiters: AstmDelimiters,
    readonly encoding: TextEncoding,
  ) {}

  get type(): string {
    return (this.fields[0] ?? '').toUpperCase();
  }

  /** The raw (escaped) field `n` (1-based); '' when absent. */
  field(n: number): string {
    return this.fields[n - 1] ?? '';
  }

  /** Field `n` as one unescaped string (repeats and components joined as sent). */
  text(n: number): string {
    return unescapeAstm(this.field(n), this.delimiters, this.encoding);
  }

  /** The repeats of field `n`, each split into unescaped components. */
  repeats(n: number): string[][] {
    const raw = this.field(n);
    if (raw === '') return [];
    return raw.split(this.delimiters.repeat).map((r) => r.split(this.delimiters.component).map((c) => unescapeAstm(c, this.delimiters, this.encoding)));
  }

  /** The components of the first repeat of field `n`. */
  components(n: number): string[] {
    return this.repeats(n)[0] ?? [];
  }

  /** Component `c` (1-based) of field `n`'s first repeat; '' when absent. */
  component(n: number, c: number): string {
    return this.components(n)[c - 1] ?? '';
  }
}

export interface AstmComment {
  seq: string;
  /** C-3: P practice, L LIS, I instrument. */
  source: string;
  /** C-4 components, unescaped. */
  text: string[];
  /** C-5: G generic, T test name, P positive, N negative, I instrument flag. */
  commentType: string;
  record: AstmRecord;
}

export interface AstmResult {
  seq: string;
  /** R-3 components of the first repeat (universal code ^ name ^ type ^ local code ^ vendor…). */
  testId: string[];
  /** R-4 components; most devices send one. */
  value: string[];
  units: string;
  referenceRange: string;
  /** R-7 repeats and their components, one flag each (e.g. `L`, `HH`, `A`, `N`; ARCHITECT `EXP^<` is two). */
  abnormalFlags: string[];
  natureOfAbnormality: string;
  /** F final, P preliminary, C correction, X cannot be done, W warning, … */
  status: string;
  operator: string[];
  startedAt: string;
  completedAt: string;
  instrument: string[];
  comments: AstmComment[];
  record: AstmRecord;
}

export interface AstmOrder {
  seq: string;
  /** O-3 components: the specimen id (barcode), maybe with rack/position. */
  specimen: string[];
  /** O-4 components: the instrument's own specimen id. */
  instrumentSpecimen: string[];
  /** O-5 repeats of universal test id components. */
  testIds: string[][];
  priority: string;
  requestedAt: string;
  collectedAt: string;
  /** O-15: date/time the specimen was received. */
  receivedAt: string;
  /** O-23: date/time the results were reported or last modified. */
  reportedAt: string;
  /** O-12: N new, A add, C cancel, Q quality control, … */
  actionCode: string;
  /** O-16 components (specimen type ^ source). */
  specimenDescriptor: string[];
  /** O-26: F final, P preliminary, C correction, Q response to query, … */
  reportType: string;
  comments: AstmComment[];
  results: AstmResult[];
  /** Created for results that arrived with no O record before them. */
  implicit: boolean;
  record: AstmRecord | null;
}

export interface AstmPatient {
  seq: string;
  practiceId: string;
  laboratoryId: string;
  patientId3: string;
  comments: AstmComment[];
  orders: AstmOrder[];
  implicit: boolean;
  record: AstmRecord | null;
}

export interface AstmHeader {
  delimiters: AstmDelimiters;
  /** H-5 components: usually name ^ version ^ serial, in a device-specific order. */
  sender: string[];
  /** H-12: P production, T training, D debugging, Q quality control. */
  processingId: string;
  /** H-13: `1394-97`, `E1394-97`, `LIS2-A2`, `1`, … */
  version: string;
  /** H-14 as sent. */
  timestamp: string;
  comments: AstmComment[];
  record: AstmRecord;
}

export interface AstmQuery {
  seq: string;
  startingRange: string[];
  endingRange: string[];
  testIds: string[][];
  statusCode: string;
  record: AstmRecord;
}

export interface AstmMessage {
  header: AstmHeader | null;
  patients: AstmPatient[];
  queries: AstmQuery[];
  /** M records (histograms, reagent data): kept raw. */
  manufacturer: AstmRecord[];
  /** S records and types this parser does not know: kept raw and reported in `issues`. */
  unknown: AstmRecord[];
  /** L-3 termination code (N normal, T aborted, …), null if the message has no L record. */
  terminationCode: string | null;
  /** Problems found while parsing (no record text in them: it may hold patient data). */
  issues: string[];
  records: AstmRecord[];
}

/** Splits message text into records on CR (LF and CR LF accepted too), skipping empty ones. */
export function splitRecords(text: string): string[] {
  return text.split(/\r\n|\r|\n/).filter((r) => r !== '');
}

function comment(r: AstmRecord): AstmComment {
  return { seq: r.field(2), source: r.text(3), text: r.components(4), commentType: r.text(5), record: r };
}

/**
 * Parses one message's text. Records before the first H are reported and skipped (their delimiters
 * are unknown); a second H starts over with its own delimiters (callers normally split messages).
 */
export function parseMessage(text: string, encoding: TextEncoding = 'latin1'): AstmMessage {
  const msg: AstmMessage = { header: null, patients: [], queries: [], manufacturer: [], unknown: [], terminationCode: null, issues: [], records: [] };
  let d: AstmDelimiters | null = null;
  let patient: AstmPatient | null = null;
  let order: AstmOrder | null = null;
  let last: { comments: AstmComment[] } | null = null;
  let beforeHeader = 0;
  /** The 1-based place of the record being read, for the issues. */
  let position = 0;

  const ensurePatient = (): AstmPatient => {
    if (!patient) {
      patient = { seq: '', practiceId: '', laboratoryId: '', patientId3: '', comments: [], orders: [], implicit: true, record: null };
      msg.patients.push(patient);
    }
    return patient;
  };
  const ensureOrder = (): AstmOrder => {
    if (!order) {
      order = {
        seq: '', specimen: [], instrumentSpecimen: [], testIds: [], priority: '', requestedAt: '', collectedAt: '', receivedAt: '', reportedAt: '', actionCode: '',
        specimenDescriptor: [], reportType: '', comments: [], results: [], implicit: true, record: null,
      };
      ensurePatient().orders.push(order);
      msg.issues.push(`record ${position} (R): a result arrived with no order (O) record before it`);
    }
    return order;
  };

  for (const line of splitRecords(text)) {
    position++;
    if (line[0] === 'H' || line[0] === 'h') {
      const parsed = parseDelimiters(line);
      if (!parsed) {
        msg.issues.push(`record ${position} (H): H-2 does not define four distinct delimiters (field, repeat, component, escape)`);
        continue;
      }
      if (msg.header) msg.issues.push(`record ${position} (H): a second H record inside one message`);
      d = parsed;
      const fields = [line[0], line.slice(2, 5), ...line.slice(6).split(d.field)];
      if (line[5] !== undefined && line[5] !== d.field) msg.issues.push(`record ${position} (H): H-2 is not followed by the field delimiter`);
      const r = new AstmRecord(line, fields, d, encoding);
      msg.records.push(r);
      msg.header = { delimiters: d, sender: r.components(5), processingId: r.text(12), version: r.text(13), timestamp: r.text(14), comments: [], record: r };
      patient = null;
      order = null;
      last = msg.header;
      continue;
    }
    if (!d) {
      beforeHeader++;
      continue;
    }
    const r = new AstmRecord(line, line.split(d.field), d, encoding);
    msg.records.push(r);
    switch (r.type) {
      case 'P':
        patient = { seq: r.field(2), practiceId: r.text(3), laboratoryId: r.text(4), patientId3: r.text(5), comments: [], orders: [], implicit: false, record: r };
        msg.patients.push(patient);
        order = null;
        last = patient;
        break;
      case 'O':
        order = {
          seq: r.field(2),
          specimen: r.components(3),
          instrumentSpecimen: r.components(4),
          testIds: r.repeats(5),
          priority: r.text(6),
          requestedAt: r.text(7),
          collectedAt: r.text(8),
          receivedAt: r.text(15),
          reportedAt: r.text(23),
          actionCode: r.text(12),
          specimenDescriptor: r.components(16),
          reportType: r.text(26),
          comments: [],
          results: [],
          implicit: false,
          record: r,
        };
        ensurePatient().orders.push(order);
        last = order;
        break;
      case 'R': {
        const result: AstmResult = {
          seq: r.field(2),
          testId: r.components(3),
          value: r.components(4),
          units: r.text(5),
          referenceRange: r.text(6),
          abnormalFlags: r.repeats(7).flat().map((f) => f.trim()).filter((f) => f !== ''),
          natureOfAbnormality: r.text(8),
          status: r.text(9),
          operator: r.components(11),
          startedAt: r.text(12),
          completedAt: r.text(13),
          instrument: r.components(14),
          comments: [],
          record: r,
        };
        ensureOrder().results.push(result);
        last = result;
        break;
      }
      case 'C':
        if (last) last.comments.push(comment(r));
        else msg.issues.push(`record ${position} (C): a comment record with nothing before it`);
        break;
      case 'Q':
        msg.queries.push({ seq: r.field(2), startingRange: r.components(3), endingRange: r.components(4), testIds: r.repeats(5), statusCode: r.text(13), record: r });
        last = null;
        break;
      case 'M':
        msg.manufacturer.push(r);
        break;
      case 'L':
        msg.terminationCode = r.text(3);
        last = null;
        break;
      default:
        msg.unknown.push(r);
        msg.issues.push(`record ${position}: unknown record type "${r.type.slice(0, 1).replace(/[^\x21-\x7e]/g, '?')}" kept raw (expected H, P, O, R, C, Q, M or L)`);
    }
  }
  if (beforeHeader > 0) msg.issues.push(`${beforeHeader} record(s) before the H record skipped`);
  if (!msg.header) msg.issues.push('no H record');
  return msg;
}

/**
 * `YYYYMMDD[HH[MM[SS]]]` (E1394 dates, local device time, no zone) → naive ISO
 * `YYYY-MM-DDTHH:MM:SS` with missing parts as zero, or null when it is not a real calendar time.
 */
export function parseAstmDate(s: string): string | null {
  const m = /^(\d{4})(\d{2})(\d{2})(?:(\d{2})(?:(\d{2})(\d{2})?)?)?$/.exec(s.trim());
  if (!m) return null;
  const [y, mo, d, h, mi, se] = [m[1], m[2], m[3], m[4] ?? '00', m[5] ?? '00', m[6] ?? '00'].map(Number) as [number, number, number, number, number, number];
  return naiveFromFields(y, mo, d, h, mi, se);
}

/** Escapes text for a field of a message built here (the simulator and the sender). */
export function escapeAstm(value: string, d: AstmDelimiters = DEFAULT_DELIMITERS): string {
  let out = '';
  for (const c of value) {
    if (c === d.escape) out += `${d.escape}E${d.escape}`;
    else if (c === d.field) out += `${d.escape}F${d.escape}`;
    else if (c === d.component) out += `${d.escape}S${d.escape}`;
    else if (c === d.repeat) out += `${d.escape}R${d.escape}`;
    else out += c;
  }
  return out;
}
