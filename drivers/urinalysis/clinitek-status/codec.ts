/**
 * CLINITEK Status codec: line framing and record parsing. Pure; errors are values, never thrown.
 * The record layout is in README.md in this folder.
 */
import { naiveFromFields } from '../../../src/util/time.ts';
import { labelLookup, yearMonthDay, type DateOrder, type StripRecord } from '../../analytes/urine-strip.ts';
import { CLINITEK_STATUS_LOCALES } from './locales.ts';

/** Over every locale: the labels of different languages never clash. */
const analyteForLabel = labelLookup(Object.values(CLINITEK_STATUS_LOCALES).map((l) => l.labels));
const NOT_ENTERED: ReadonlySet<string> = new Set(Object.values(CLINITEK_STATUS_LOCALES).map((l) => l.notEntered.toLowerCase()));

export type ClinitekStatusErrorCode =
  /** The line is not a CLINITEK Status record (no `number,date,` start, too few fields). */
  | 'not-a-record'
  /** The date or time field is not a real calendar time. */
  | 'invalid-date'
  /** An analyte label with no result field after it: the record was cut short. */
  | 'incomplete-record'
  /** The abnormal marker field holds something other than `*` or nothing. */
  | 'invalid-field'
  | 'line-too-long'
  /** Bytes with no line end when the link closed or the capture ended. */
  | 'truncated-line'
  /** Noise before a record on the same line. */
  | 'garbage';

export interface ClinitekStatusError {
  code: ClinitekStatusErrorCode;
  /** Built from the layout only; never quotes the line (it holds patient ids). */
  detail: string;
}

export interface ClinitekStatusRecord extends StripRecord {
  operator: string | null;
  patient: string | null;
  strip: string | null;
  clarity: string | null;
  /** `E58` etc.: the reader reported an error in place of results. */
  error: string | null;
}

export type RecordResult =
  | { ok: true; record: ClinitekStatusRecord; garbage?: Buffer }
  | { ok: false; error: ClinitekStatusError };

const CR = 0x0d;
const LF = 0x0a;

export type FramedLine = { kind: 'line'; bytes: Buffer } | { kind: 'overflow'; bytes: Buffer };

/**
 * Cuts the byte stream into lines at CR, LF or CR LF; empty lines are skipped. The result does not
 * depend on how the stream was chunked. A line longer than MAX_LINE is reported as overflow and the
 * rest of it up to the next line end is dropped.
 */
export class RecordLineFramer {
  /** The longest real record is ~240 bytes; 2 kB leaves room for long ids and more analytes. */
  static readonly MAX_LINE = 2048;
  private buf: number[] = [];
  private discarding = false;

  push(chunk: Uint8Array): FramedLine[] {
    const out: FramedLine[] = [];
    for (const b of chunk) {
      if (b === CR || b === LF) {
        if (this.discarding) this.discarding = false;
        else if (this.buf.length > 0) out.push({ kind: 'line', bytes: Buffer.from(this.buf) });
        this.buf = [];
        continue;
      }
      if (this.discarding) continue;
      if (this.buf.length === RecordLineFramer.MAX_LINE) {
        out.push({ kind: 'overflow', bytes: Buffer.from(this.buf) });
        this.buf = [];
        this.discarding = true;
        continue;
      }
      this.buf.push(b);
    }
    return out;
  }

  pending(): Buffer {
    return Buffer.from(this.buf);
  }

  reset(): void {
    this.buf = [];
    this.discarding = false;
  }
}

const fail = (code: ClinitekStatusErrorCode, detail: string): { ok: false; error: ClinitekStatusError } => ({ ok: false, error: { code, detail } });

/** The start of a record: record number, a date, and the comma after it. */
const RECORD_START = /(\d{1,7}),(\d{1,4})[-/.](\d{1,2})[-/.](\d{1,4}),/;
const TIME_RE = /^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?\s*$/;
const ERROR_CODE = /^E\d{1,3}$/;
/** Fields before the first analyte label. */
const HEADER_FIELDS = 12;

function naiveTime(a: string, b: string, c: string, order: DateOrder, time: string): string | null {
  const [y, mo, d] = yearMonthDay([Number(a), Number(b), Number(c)], order);
  const year = y < 100 ? 2000 + y : y;
  const t = TIME_RE.exec(time);
  if (!t) return null;
  let h = Number(t[1]);
  const mi = Number(t[2]);
  const s = t[3] !== undefined ? Number(t[3]) : 0;
  if (t[4]) {
    if (h < 1 || h > 12) return null;
    const pm = t[4].toUpperCase() === 'PM';
    h = (h % 12) + (pm ? 12 : 0);
  }
  if (year < 1990 || year > 2099) return null;
  return naiveFromFields(year, mo, d, h, mi, s);
}

const entered = (field: string | undefined): string | null => {
  const t = (field ?? '').trim();
  return t === '' || NOT_ENTERED.has(t.toLowerCase()) ? null : t;
};

/**
 * Parses one record line (without its line end). Noise before the record start on the same line is
 * returned in `garbage`. Fields are found by label, never by position.
 */
export function parseRecordLine(line: Uint8Array, order: DateOrder = 'DMY'): RecordResult {
  const text = Buffer.from(line).toString('latin1');
  const m = RECORD_START.exec(text);
  if (!m) return fail('not-a-record', 'no "number,date," at the start of the line');
  const garbage = m.index > 0 ? Buffer.from(line.subarray(0, m.index)) : undefined;
  const fields = text.slice(m.index).split(',');
  if (fields.length < HEADER_FIELDS + 1) return fail('not-a-record', `${fields.length} fields, a record has at least ${HEADER_FIELDS + 1}`);
  const time = naiveTime(m[2]!, m[3]!, m[4]!, order, fields[2]!);
  if (!time) return fail('invalid-date', 'the date or time field is not a real time');
  const record: ClinitekStatusRecord = {
    seq: Number(m[1]),
    time,
    operator: entered(fields[3]),
    patient: entered(fields[4]),
    strip: entered(fields[9]),
    colour: entered(fields[10]),
    clarity: entered(fields[11]),
    results: [],
    error: null,
  };
  const first = fields[HEADER_FIELDS]!.trim();
  if (ERROR_CODE.test(first) && fields.slice(HEADER_FIELDS + 1).every((f) => f.trim() === '')) {
    record.error = first;
    return garbage ? { ok: true, record, garbage } : { ok: true, record };
  }
  for (let i = HEADER_FIELDS; i < fields.length; i += 3) {
    const label = fields[i]!.trim();
    const value = fields[i + 1];
    const mark = (fields[i + 2] ?? '').trim();
    if (label === '' && (value ?? '').trim() === '' && mark === '') continue; // the trailing comma
    if (label === '') return fail('invalid-field', `an empty analyte label at field ${i}`);
    if (value === undefined) return fail('incomplete-record', `the analyte at field ${i} has no result`);
    if (mark !== '' && mark !== '*') return fail('invalid-field', `field ${i + 2} is neither "*" nor empty`);
    record.results.push({ label, analyte: analyteForLabel(label), text: value.trim(), abnormal: mark === '*' });
  }
  if (record.results.length === 0) return fail('incomplete-record', 'a record with neither results nor an error code');
  return garbage ? { ok: true, record, garbage } : { ok: true, record };
}
