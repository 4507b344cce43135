/**
 * Siemens CLINITEK Status / Status+ urine strip reader: one comma-delimited ASCII record per
 * sample, sent over a 3-wire RS-232 null-modem cable when the user presses "Send all data". The
 * reader has no ENQ/ACK handshake and sends nothing on its own (research note
 * `research/astm-urinalysis-poct1a.md` §3.1–3.2, from Siemens support bulletin CTStatus-002, whose
 * first page only was readable, and three public parsers; only their facts are used here).
 *
 *   1596,18-06-2018,15:25,06178,,,,,,Multistix 10 SG,Amarillo,Claro,GLU,500 mg/dL,*,BIL,Alto,*,…
 *   col 0   record number          col 1  date DD-MM-YYYY    col 2  time (`15:25` or ` 5:33PM`)
 *   col 3   operator id (inferred) col 4  patient/sample id  cols 5–8  empty in every sample
 *   col 9   strip type             col 10 colour, col 11 clarity (typed in by the user)
 *   col 12+ triplets: label, result text, `*` when abnormal. Labels are localized
 *           (EN `KET SG BLD UBG`, ES `CET DEN SAN URO`) and space-padded (`SG `, `pH `).
 *   error   an error code such as `E58` in place of the triplets: no result, a device event.
 *
 * Line end: the parsers read up to CR (0x0D); the shared sample file is a text file with LF line
 * ends. The framer accepts CR, LF and CR LF. Cols 3 and 5–8 are unverified; col 4 is taken as the
 * patient id (the daemon's privacy policy then applies to it), col 3 as the operator id. A record
 * whose id starts with CONTROL / CTRL / QC (the note shows `CONTROL-1` as an id) is a control run.
 * The record's identity is record number + date/time, which stays the same on every resend.
 *
 * Sections: locale tables · codec · records and decode() · session · simulator · definition.
 */
import type {
  Capture,
  DecodeContext,
  DecodeIssue,
  DecodeResult,
  DeviceSimulator,
  DriverDefinition,
  DriverSession,
  SessionHost,
} from '../../src/driver-sdk/index.ts';
import { numberOptions, SessionReporter } from '../../src/driver-sdk/meter-session.ts';
import { deviceBytes } from '../../src/driver-sdk/capture.ts';
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
} from './urine-strip-analytes.ts';

export const CLINITEK_STATUS_DRIVER_ID = 'clinitek-status';
const MANUFACTURER = 'Siemens Healthineers';
const MODEL = 'CLINITEK Status';

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Locale tables (data). Adding a language is adding one entry here.
// ────────────────────────────────────────────────────────────────────────────────────────────────

export interface ClinitekStatusLocale extends ReaderWording {
  /** What the reader prints for a colour/clarity/id the user did not enter. */
  notEntered: string;
  /** Colour and clarity words the simulator prints, by a neutral key. */
  colours: Record<string, string>;
  clarities: Record<string, string>;
  /** `24h`: `15:25`; `12h`: ` 5:33PM` (space-padded hour). */
  clock: '12h' | '24h';
}

export const CLINITEK_STATUS_LOCALES: Readonly<Record<string, ClinitekStatusLocale>> = {
  // English: the sample line of a JS project in the code index (research note §3.2).
  en: {
    labels: { GLU: 'GLU', BIL: 'BIL', KET: 'KET', SG: 'SG ', BLD: 'BLD', PH: 'pH ', PRO: 'PRO', UBG: 'UBG', NIT: 'NIT', LEU: 'LEU', ALB: 'ALB', CRE: 'CRE' },
    notEntered: 'Not Entered',
    words: { negative: 'Negative', trace: 'Trace', 'trace-intact': 'Trace-intact', 'trace-lysed': 'Trace-lysed', small: 'Small', moderate: 'Moderate', large: 'Large', positive: 'Positive' },
    colours: { yellow: 'Yellow', straw: 'Straw', amber: 'Amber', brown: 'Brown', red: 'Red' },
    clarities: { clear: 'Clear', 'slightly-cloudy': 'Slightly Cloudy', cloudy: 'Cloudy', turbid: 'Turbid' },
    clock: '12h',
  },
  // Spanish: ~35 lines in a Node.js project and a C# reader in the code index (research note §3.2).
  es: {
    labels: { GLU: 'GLU', BIL: 'BIL', KET: 'CET', SG: 'DEN', BLD: 'SAN', PH: 'pH ', PRO: 'PRO', UBG: 'URO', NIT: 'NIT', LEU: 'LEU' },
    notEntered: 'No introducido',
    words: { negative: 'Negativo', trace: 'Indicios', 'trace-intact': 'Ind.Intactos', 'trace-lysed': 'Ind.Hemolizados', small: 'Bajo', moderate: 'Moderado', large: 'Alto', positive: 'Positivo' },
    colours: { yellow: 'Amarillo', straw: 'Pajizo', amber: 'Ámbar', brown: 'Marrón', red: 'Rojo' },
    clarities: { clear: 'Claro', 'slightly-cloudy': 'Algo turbio', cloudy: 'Turbio', turbid: 'Muy turbio' },
    clock: '24h',
  },
};

/** Over every locale: the labels of different languages never clash. */
const analyteForLabel = labelLookup(Object.values(CLINITEK_STATUS_LOCALES).map((l) => l.labels));
const NOT_ENTERED: ReadonlySet<string> = new Set(Object.values(CLINITEK_STATUS_LOCALES).map((l) => l.notEntered.toLowerCase()));

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Codec: line framing and record parsing. Pure; errors are values, never thrown.
// ────────────────────────────────────────────────────────────────────────────────────────────────

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

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Records → drafts, and decode()
// ────────────────────────────────────────────────────────────────────────────────────────────────

/** An id the user entered for a control run (research note §3.2 shows `CONTROL-1`). */
const CONTROL_ID = /^(?:CONTROL|CTRL|QC)(?:\b|[-_ ]|\d)/i;

export function clinitekStatusIdentity(deviceId: string): DeviceIdentity {
  return { id: deviceId, driver: CLINITEK_STATUS_DRIVER_ID, manufacturer: MANUFACTURER, model: MODEL, serial: null, firmware: null };
}

/** One strip → one result with one observation per analyte (colour and clarity when entered). */
export function recordToDraft(r: ClinitekStatusRecord, device: DeviceIdentity, timezone: string): ResultDraft {
  const control = r.patient !== null && CONTROL_ID.test(r.patient);
  const flags: string[] = [];
  if (r.strip !== null) flags.push(`strip:${r.strip}`);
  if (control) flags.push('control:by-id');
  return {
    key: stripRecordKey(r),
    device: { ...device },
    category: control ? 'control' : 'patient',
    specimen: { id: control ? r.patient : null, type: control ? 'control solution' : 'urine' },
    patient: control || r.patient === null ? null : { id: r.patient },
    operator: r.operator === null ? null : { id: r.operator },
    observed_at: naiveToZoned(r.time, timezone),
    device_time: r.time,
    observations: stripObservations(r),
    flags,
  };
}

export interface DecodedLine {
  kind: 'record' | 'device-error' | 'bad';
  record?: ClinitekStatusRecord;
  issue?: DecodeIssue;
  /** Why a bad line is bad, for the event. */
  detail?: string;
  garbage?: Buffer;
}

/** One framed line → what it is. Shared by decode() and the session. */
export function classifyLine(item: FramedLine, order: DateOrder): DecodedLine {
  if (item.kind === 'overflow') {
    return { kind: 'bad', issue: { reason: 'line-too-long', bytes: item.bytes }, detail: `no line end within ${RecordLineFramer.MAX_LINE} bytes` };
  }
  const r = parseRecordLine(item.bytes, order);
  if (!r.ok) return { kind: 'bad', issue: { reason: r.error.code, bytes: item.bytes }, detail: r.error.detail };
  const out: DecodedLine = { kind: r.record.error ? 'device-error' : 'record', record: r.record };
  if (r.garbage) out.garbage = r.garbage;
  return out;
}

/**
 * Decodes what the reader sent (a raw capture, or the `D` bytes of a transcript). Every record is
 * one draft; a record sent twice (two presses of "Send all data") is one draft. Error records and
 * bad lines become issues with their bytes.
 */
export function decodeClinitekStatus(capture: Capture, ctx: DecodeContext, order: DateOrder = 'DMY'): DecodeResult {
  const framer = new RecordLineFramer();
  const items = framer.push(deviceBytes(capture));
  const tail = framer.pending();
  const issues: DecodeIssue[] = [];
  const drafts: ResultDraft[] = [];
  const seen = new Set<string>();
  const identity = clinitekStatusIdentity(ctx.deviceId);
  for (const item of items) {
    const d = classifyLine(item, order);
    if (d.garbage) issues.push({ reason: 'garbage', bytes: d.garbage });
    if (d.kind === 'bad') issues.push(d.issue!);
    else if (d.kind === 'device-error') issues.push({ reason: `device-error:${d.record!.error}`, bytes: item.bytes });
    else {
      const key = stripRecordKey(d.record!);
      if (seen.has(key)) continue;
      seen.add(key);
      drafts.push(recordToDraft(d.record!, identity, ctx.timezone));
    }
  }
  if (tail.length > 0) issues.push({ reason: 'truncated-line', bytes: tail });
  const device: Partial<DeviceState> = drafts.length > 0 ? { model: MODEL } : {};
  return { drafts, issues, device };
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Session: passive. The reader pushes records; each is committed as soon as its line is complete.
// ────────────────────────────────────────────────────────────────────────────────────────────────

export interface ClinitekStatusSessionOptions {
  /** Field order of the record's date (follows the reader's date setting). */
  date_order: DateOrder;
  /** Quiet time after the last record that ends one "Send all data" burst. */
  burst_idle_ms: number;
  /** Delay before a failed commit is tried again (the reader cannot resend on request). */
  commit_retry_ms: number;
}

const DEFAULT_NUMBER_OPTIONS = { burst_idle_ms: 2000, commit_retry_ms: 1000 };
const DEFAULT_SESSION_OPTIONS: ClinitekStatusSessionOptions = { date_order: 'DMY', ...DEFAULT_NUMBER_OPTIONS };

export function clinitekStatusSessionOptions(device: Pick<DeviceConfig, 'id' | 'options'>): ClinitekStatusSessionOptions {
  const o = device.options ?? {};
  for (const name of Object.keys(o)) {
    if (!(name in DEFAULT_SESSION_OPTIONS)) throw new Error(`device ${device.id}: unknown option ${name} for clinitek-status`);
  }
  return { date_order: dateOrderOption(device, DEFAULT_SESSION_OPTIONS.date_order), ...numberOptions(device, DEFAULT_NUMBER_OPTIONS) };
}

interface PendingRecord {
  draft: ResultDraft;
  bytes: Buffer;
}

class ClinitekStatusSession implements DriverSession {
  private readonly opts: ClinitekStatusSessionOptions;
  private readonly transport: ByteTransport;
  private readonly framer = new RecordLineFramer();
  private readonly identity: DeviceIdentity;
  private readonly report: SessionReporter;
  private pending: PendingRecord[] = [];
  private committing: Promise<void> | null = null;
  private burst: { records: number; inserted: number; duplicates: number } | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private started = false;
  private stopped = false;

  constructor(private readonly host: SessionHost) {
    this.opts = clinitekStatusSessionOptions(host.device);
    this.transport = host.transport;
    this.identity = clinitekStatusIdentity(host.device.id);
    this.report = new SessionReporter(host, CLINITEK_STATUS_DRIVER_ID);
  }

  private readonly onData = (chunk: Buffer): void => {
    for (const item of this.framer.push(chunk)) this.take(item);
    if (this.burst) this.armIdle();
  };
  private readonly onClose = (): void => this.dropPartial('the link closed in the middle of a record');
  private readonly onError = (err: Error): void => this.host.log.warn({ err: err.message }, 'clinitek-status: transport error');

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.transport.on('data', this.onData);
    this.transport.on('close', this.onClose);
    this.transport.on('error', this.onError);
    this.report.patch({ model: MODEL, status: 'idle', status_detail: 'waiting for "Send all data" on the reader' });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.transport.off('data', this.onData);
    this.transport.off('close', this.onClose);
    this.transport.off('error', this.onError);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.idleTimer = this.retryTimer = null;
    await this.committing?.catch(() => undefined);
    // One last try for records a failed commit left behind; what still fails is kept in quarantine.
    if (this.pending.length > 0) await this.flushOnce().catch(() => undefined);
    for (const p of this.pending.splice(0)) this.report.quarantine(p.bytes, 'not-committed');
    this.dropPartial('the session stopped in the middle of a record');
  }

  async command(verb: string): Promise<unknown> {
    if (verb === 'status') return { ...this.report.state };
    if (verb === 'download') {
      throw new Error('clinitek-status: the reader cannot be asked for data; press "Send all data" on the reader');
    }
    throw new Error(`clinitek-status: unknown command "${verb}" (known: status)`);
  }

  // ── records ──

  private take(item: FramedLine): void {
    const d = classifyLine(item, this.opts.date_order);
    if (d.garbage) this.report.badData(d.garbage, 'garbage', 'noise before a record', 'line');
    if (d.kind === 'bad') {
      this.report.badData(d.issue!.bytes!, d.issue!.reason, d.detail!, 'line');
      return;
    }
    const record = d.record!;
    this.report.patch({ last_seen: this.host.now().toISOString() });
    if (d.kind === 'device-error') {
      // The code and the record number only: the record also holds ids, which stay out of events.
      this.report.quarantine(item.bytes, `device-error:${record.error}`);
      this.report.emit('device_error', `the reader reported error ${record.error} for record ${record.seq}`, { code: record.error, record: record.seq });
      return;
    }
    if (!this.burst) {
      this.burst = { records: 0, inserted: 0, duplicates: 0 };
      this.report.patch({ status: 'downloading', status_detail: null });
      this.report.emit('download_started', 'the reader is sending records', { trigger: 'device' });
    }
    this.burst.records++;
    this.pending.push({ draft: recordToDraft(record, this.identity, this.host.timezone), bytes: item.bytes });
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.committing || this.retryTimer || this.pending.length === 0) return;
    this.committing = this.flushOnce()
      .then(
        () => undefined,
        (err: Error) => {
          this.host.log.error({ err: err.message }, 'clinitek-status: commit failed; will retry');
          this.report.emit('download_failed', `the store did not commit ${this.pending.length} record(s); retrying`, { reason: 'commit-failed' });
          this.report.patch({ status: 'error', status_detail: 'commit failed; retrying' });
          if (!this.stopped) {
            this.retryTimer = setTimeout(() => {
              this.retryTimer = null;
              this.scheduleFlush();
            }, this.opts.commit_retry_ms);
          }
        },
      )
      .finally(() => {
        this.committing = null;
        if (!this.stopped) this.scheduleFlush();
        else this.armIdle();
      });
  }

  /** Commits everything pending in one transaction; on failure the records stay pending. */
  private async flushOnce(): Promise<void> {
    const batch = this.pending.slice();
    if (batch.length === 0) return;
    const capture: Capture = { kind: 'raw', bytes: Buffer.concat(batch.flatMap((p) => [p.bytes, Buffer.from('\r')])) };
    const stored = await this.host.commit(
      { result: batch.map((p) => p.draft) },
      capture,
    );
    this.pending.splice(0, batch.length);
    if (this.burst) {
      this.burst.inserted += stored.inserted;
      this.burst.duplicates += stored.duplicates;
    }
    this.report.patch({ status: 'ok', status_detail: null, last_download: this.host.now().toISOString() });
    this.armIdle();
  }

  /** Ends a burst once the reader has been quiet and everything is committed. */
  private armIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    if (!this.burst || this.stopped) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (!this.burst || this.pending.length > 0 || this.committing) return;
      const b = this.burst;
      this.burst = null;
      this.report.emit('download_finished', `received ${b.records} records: ${b.inserted} new, ${b.duplicates} already stored`, b);
    }, this.opts.burst_idle_ms);
  }

  private dropPartial(detail: string): void {
    const partial = this.framer.pending();
    this.framer.reset();
    if (partial.length > 0) this.report.badData(partial, 'truncated-line', detail, 'line');
  }
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Simulator: the reader's side. It holds records and sends them all, one line each, as if
// "Send all data" was pressed when the host connects (and again every `send_all_every_s`).
// ────────────────────────────────────────────────────────────────────────────────────────────────

export interface SimulatedRecord {
  seq: number;
  /** Naive `YYYY-MM-DDTHH:MM:SS`. */
  time: string;
  operator?: string;
  patient?: string;
  strip?: string;
  /** A colour/clarity key from the locale table (`yellow`, `clear`) or literal text; absent = not entered. */
  colour?: string;
  clarity?: string;
  results?: SimulatedStripResult[];
  /** An error code (`E58`) in place of results. */
  error?: string;
}

/**
 * The stored samples: the records of the research note's sample lines (§3.2) as data, with made-up
 * ids in place of the ids in the public lines, plus a control run.
 */
export const SAMPLE_RECORDS: readonly SimulatedRecord[] = [
  { seq: 1565, time: '2018-06-17T09:43:00', operator: 'OP01', patient: 'P-0001', strip: 'Multistix 10 SG', colour: 'yellow', clarity: 'clear',
    results: [pad('GLU', 'negative'), pad('BIL', 'negative'), pad('KET', 'trace', true), pad('SG', '1.020'), pad('BLD', 'negative'), pad('PH', '6.0'), pad('PRO', '100 mg/dL', true), pad('UBG', '0.2 E.U./dL'), pad('NIT', 'negative'), pad('LEU', 'negative')] },
  { seq: 1568, time: '2018-06-17T10:45:00', operator: 'OP01', patient: 'P-0002', strip: 'Multistix 10 SG', error: 'E58' },
  { seq: 1577, time: '2018-06-18T10:42:00', operator: 'OP01', patient: 'P-0003', strip: 'Multistix 10 SG', colour: 'yellow', clarity: 'slightly-cloudy',
    results: [pad('GLU', '>=1000 mg/dL', true), pad('BIL', 'negative'), pad('KET', 'negative'), pad('SG', '1.015'), pad('BLD', 'negative'), pad('PH', '5.5'), pad('PRO', 'negative'), pad('UBG', '0.2 E.U./dL'), pad('NIT', 'negative'), pad('LEU', 'negative')] },
  { seq: 1583, time: '2018-06-18T11:12:00', operator: 'OP01', patient: 'P-0004', strip: 'Multistix 10 SG', colour: 'yellow', clarity: 'clear',
    results: [pad('GLU', 'negative'), pad('BIL', 'negative'), pad('KET', 'negative'), pad('SG', '1.015'), pad('BLD', 'trace-intact', true), pad('PH', '5.5'), pad('PRO', 'negative'), pad('UBG', '0.2 E.U./dL'), pad('NIT', 'negative'), pad('LEU', 'Apr 15 Leu/uL', true)] },
  { seq: 1590, time: '2018-06-18T12:00:00', operator: 'OP01', patient: 'CONTROL-1', strip: 'Multistix 10 SG', colour: 'yellow', clarity: 'clear',
    results: [pad('GLU', '100 mg/dL', true), pad('BIL', 'small', true), pad('KET', '15 mg/dL', true), pad('SG', '1.020'), pad('BLD', 'Apr 25 Hem/uL', true), pad('PH', '6.5'), pad('PRO', '30 mg/dL', true), pad('UBG', '2.0 E.U./dL', true), pad('NIT', 'positive', true), pad('LEU', 'Apr 70 Leu/uL', true)] },
  { seq: 1596, time: '2018-06-18T15:25:00', operator: 'OP01', strip: 'Multistix 10 SG', colour: 'yellow', clarity: 'clear',
    results: [pad('GLU', '500 mg/dL', true), pad('BIL', 'large', true), pad('KET', '15 mg/dL', true), pad('SG', '1.020'), pad('BLD', 'Apr 200 Hem/uL', true), pad('PH', '7.0'), pad('PRO', '>=300 mg/dL', true), pad('UBG', '4.0 E.U./dL', true), pad('NIT', 'positive', true), pad('LEU', 'Apr 500 Leu/uL', true)] },
  { seq: 1822, time: '2021-12-24T17:33:00', patient: 'P-0005', strip: 'Multistix 10 SG',
    results: [pad('GLU', 'negative'), pad('BIL', 'negative'), pad('KET', 'negative'), pad('SG', '1.020'), pad('BLD', 'trace-intact'), pad('PH', '7.0'), pad('PRO', 'negative'), pad('UBG', '3.2 umol/L'), pad('NIT', 'negative'), pad('LEU', 'negative')] },
];

/** `2018-06-18T15:25:00` → [`18-06-2018`, `15:25` or ` 3:25PM`]. */
function wireDateTime(naive: string, clock: '12h' | '24h'): [string, string] {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):\d{2}$/.exec(naive);
  if (!m) throw new RangeError(`not a naive time: ${naive}`);
  const date = `${m[3]}-${m[2]}-${m[1]}`;
  const h = Number(m[4]);
  if (clock === '24h') return [date, `${m[4]}:${m[5]}`];
  const h12 = h % 12 === 0 ? 12 : h % 12;
  return [date, `${String(h12).padStart(2, ' ')}:${m[5]}${h < 12 ? 'AM' : 'PM'}`];
}

/** One record as the reader prints it in `locale` (no line end). */
export function formatRecordLine(rec: SimulatedRecord, localeName: string): string {
  const locale = CLINITEK_STATUS_LOCALES[localeName];
  if (!locale) throw new RangeError(`no CLINITEK Status locale "${localeName}"`);
  const [date, time] = wireDateTime(rec.time, locale.clock);
  const head = [
    String(rec.seq),
    date,
    time,
    rec.operator ?? '',
    rec.patient ?? '',
    '',
    '',
    '',
    '',
    rec.strip ?? '',
    rec.colour === undefined ? locale.notEntered : (locale.colours[rec.colour] ?? rec.colour),
    rec.clarity === undefined ? locale.notEntered : (locale.clarities[rec.clarity] ?? rec.clarity),
  ];
  if (rec.error) return [...head, rec.error].join(',');
  const triplets = (rec.results ?? []).flatMap((s) => {
    const { label, value } = printedPad(locale, s);
    return [label, value, s.abnormal ? '*' : ''];
  });
  return [...head, ...triplets].join(',');
}

export type LineEnd = 'cr' | 'crlf' | 'lf';
const LINE_ENDS: Record<LineEnd, string> = { cr: '\r', crlf: '\r\n', lf: '\n' };

export interface ClinitekStatusSimulatorOptions {
  locale?: string;
  memory?: SimulatedRecord[];
  /** Leave the error record(s) out of the default memory. */
  no_error_record?: boolean;
  line_end?: LineEnd;
  /** Send all records this long after attach (default 300 ms); negative: never on attach. */
  send_delay_ms?: number;
  send_all_every_s?: number;
  new_record_every_s?: number;
  /** Insert a line of noise between records. */
  garbage?: boolean;
  /** Cut the last record of each send short, with no line end. */
  truncate_last?: boolean;
  max_chunk?: number;
  seed?: number;
  timezone?: string;
}

const SIMULATOR_OPTION_HELP: Record<string, string> = {
  locale: `labels and words: ${Object.keys(CLINITEK_STATUS_LOCALES).join(' or ')} (default en)`,
  memory: 'records: [{seq, time: "YYYY-MM-DDTHH:MM:SS", operator?, patient?, strip?, colour?, clarity?, results: [{code, value, abnormal?}] | error: "E58"}]',
  no_error_record: 'true: leave the E58 error record out of the stored samples',
  line_end: 'cr, crlf or lf after each record (default crlf)',
  send_delay_ms: 'send all records this many ms after the port opens (default 300; -1: not on open)',
  send_all_every_s: 'press "Send all data" again every N seconds',
  new_record_every_s: 'add a new random strip every N seconds (sent with the next "Send all data")',
  garbage: 'true: a line of noise between records',
  truncate_last: 'true: cut the last record short, with no line end',
  max_chunk: 'largest write in bytes; chunk sizes are random from 1 to this (default 16)',
  seed: 'random seed for reproducible runs',
  timezone: "IANA zone of the reader's clock, for new records (default: the host's)",
};

const SIMULATOR = 'clinitek-status simulator';

/** Checks untyped options (from YAML or the command line) and returns them typed. */
export function parseSimulatorOptions(o: Record<string, unknown>): ClinitekStatusSimulatorOptions {
  const read = new SimulatorOptionReader(o, SIMULATOR, Object.keys(SIMULATOR_OPTION_HELP));
  const locales = Object.keys(CLINITEK_STATUS_LOCALES);
  return definedOnly<ClinitekStatusSimulatorOptions>({
    locale: read.oneOf('locale', locales, locales.join(' or ')),
    memory: read.list('memory', (v, where) => parseSimulatedRecord(read, v, where), 'a list of records'),
    no_error_record: read.boolean('no_error_record'),
    line_end: read.oneOf('line_end', ['cr', 'crlf', 'lf'] as const, 'cr, crlf or lf'),
    send_delay_ms: read.number('send_delay_ms', -1),
    send_all_every_s: read.number('send_all_every_s', 0.01),
    new_record_every_s: read.number('new_record_every_s', 0.01),
    garbage: read.boolean('garbage'),
    truncate_last: read.boolean('truncate_last'),
    max_chunk: read.number('max_chunk', 1),
    seed: read.number('seed', 0),
    timezone: read.timezone(),
  });
}

function parseSimulatedRecord(read: SimulatorOptionReader, v: unknown, where: string): SimulatedRecord {
  if (typeof v !== 'object' || v === null) throw read.error(where, 'an object');
  const o = v as Record<string, unknown>;
  if (typeof o.seq !== 'number' || !Number.isInteger(o.seq) || o.seq < 0) throw read.error(`${where}.seq`, 'a whole number');
  if (typeof o.time !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/.test(o.time)) throw read.error(`${where}.time`, 'YYYY-MM-DDTHH:MM:SS');
  const out: SimulatedRecord = { seq: o.seq, time: o.time };
  for (const k of ['operator', 'patient', 'strip', 'colour', 'clarity', 'error'] as const) {
    if (o[k] === undefined) continue;
    if (typeof o[k] !== 'string' || /[,\r\n]/.test(o[k])) throw read.error(`${where}.${k}`, 'text without commas or line ends');
    out[k] = o[k];
  }
  if (o.results !== undefined) {
    if (!Array.isArray(o.results)) throw read.error(`${where}.results`, 'a list');
    out.results = o.results.map((x, i) => {
      const s = x as Record<string, unknown>;
      if (typeof s?.code !== 'string' || typeof s.value !== 'string' || /[,\r\n]/.test(s.code + s.value)) {
        throw read.error(`${where}.results[${i}]`, '{code, value} without commas');
      }
      return { code: s.code, value: s.value, abnormal: s.abnormal === true };
    });
  }
  if (!out.error && (!out.results || out.results.length === 0)) throw read.error(where, 'a record with results or an error');
  return out;
}

export class ClinitekStatusSimulator implements DeviceSimulator {
  memory: SimulatedRecord[];
  locale: string;
  private readonly lineEnd: string;
  private readonly sendDelayMs: number;
  private readonly wire: ChunkedWriter;
  private readonly random: () => number;
  private readonly timezone: string;
  private readonly opts: ClinitekStatusSimulatorOptions;
  private transport: ByteTransport | null = null;
  private timers: NodeJS.Timeout[] = [];

  constructor(options: ClinitekStatusSimulatorOptions = {}) {
    this.opts = options;
    this.locale = options.locale ?? 'en';
    this.lineEnd = LINE_ENDS[options.line_end ?? 'crlf'];
    this.sendDelayMs = options.send_delay_ms ?? 300;
    this.random = seededRandom(options.seed ?? Date.now());
    this.wire = new ChunkedWriter(this.random, Math.max(1, Math.floor(options.max_chunk ?? 16)), (t) => t === this.transport);
    this.timezone = options.timezone ?? hostTimeZone();
    const base = options.memory ?? SAMPLE_RECORDS.map((x) => structuredClone(x));
    this.memory = options.no_error_record ? base.filter((x) => !x.error) : base;
  }

  /** The bytes of one "Send all data". */
  sendAllBytes(): Buffer {
    const lines = this.memory.map((rec) => formatRecordLine(rec, this.locale) + this.lineEnd);
    if (this.opts.garbage) for (let i = lines.length - 1; i > 0; i--) lines.splice(i, 0, `\u0000~#noise#~\u00ff${this.lineEnd}`);
    if (this.opts.truncate_last && lines.length > 0) {
      const last = lines[lines.length - 1]!;
      lines[lines.length - 1] = last.slice(0, Math.floor(last.length / 2));
    }
    return Buffer.from(lines.join(''), 'latin1');
  }

  addRecord(): SimulatedRecord {
    const seq = Math.max(0, ...this.memory.map((x) => x.seq)) + 1;
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(this.random() * xs.length)]!;
    const glu = pick(['negative', 'negative', 'negative', '100 mg/dL', '250 mg/dL']);
    const rec: SimulatedRecord = {
      seq,
      time: nowInZone(this.timezone).replace(/\d{2}$/, '00'),
      operator: 'OP01',
      patient: `P-${String(1000 + seq).slice(-4)}`,
      strip: 'Multistix 10 SG',
      colour: pick(['yellow', 'straw', 'amber']),
      clarity: pick(['clear', 'clear', 'slightly-cloudy']),
      results: [
        pad('GLU', glu, glu !== 'negative'),
        pad('BIL', 'negative'),
        pad('KET', pick(['negative', 'negative', 'trace'])),
        pad('SG', pick(['1.005', '1.010', '1.015', '1.020', '1.025'])),
        pad('BLD', pick(['negative', 'negative', 'trace-intact'])),
        pad('PH', pick(['5.5', '6.0', '6.5', '7.0'])),
        pad('PRO', pick(['negative', 'negative', '30 mg/dL'])),
        pad('UBG', '0.2 E.U./dL'),
        pad('NIT', 'negative'),
        pad('LEU', pick(['negative', 'negative', 'Apr 15 Leu/uL'])),
      ],
    };
    for (const x of rec.results!) if (x.value !== 'negative' && !/^[\d.]+$/.test(x.value) && x.value !== '0.2 E.U./dL') x.abnormal = true;
    this.memory.push(rec);
    return rec;
  }

  attach(transport: ByteTransport): void {
    this.detach();
    this.transport = transport;
    if (this.sendDelayMs >= 0) this.timers.push(setTimeout(() => this.sendAll(), this.sendDelayMs));
    if (this.opts.send_all_every_s) this.timers.push(setInterval(() => this.sendAll(), this.opts.send_all_every_s * 1000));
    if (this.opts.new_record_every_s) this.timers.push(setInterval(() => this.addRecord(), this.opts.new_record_every_s * 1000));
  }

  detach(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    this.transport = null;
  }

  /** Writes one "Send all data" in random chunks, as a USB-serial adapter delivers it. */
  sendAll(): Promise<void> {
    if (!this.transport) return Promise.resolve();
    return this.wire.write(this.transport, [this.sendAllBytes()]);
  }
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Definition
// ────────────────────────────────────────────────────────────────────────────────────────────────

export const clinitekStatus: DriverDefinition = {
  id: CLINITEK_STATUS_DRIVER_ID,
  kind: 'urinalysis-reader',
  vendor: MANUFACTURER,
  models: ['CLINITEK Status', 'CLINITEK Status+'],
  usb: [],
  transports: ['serial', 'tcp', 'simulated'],
  // 9600 8N1 is the CLINITEK family's setting in the research note (CLINITEK 50); the Status
  // bulletin's first page does not give it. A site can override it in the config.
  serialDefaults: { baud_rate: 9600, data_bits: 8, parity: 'none', stop_bits: 1 },
  commands: {
    status: { description: 'the current device state (the reader cannot be asked for data: press "Send all data" on it)' },
  },
  decode: (capture, ctx) =>
    decodeClinitekStatus(capture, ctx, clinitekStatusSessionOptions({ id: ctx.deviceId, options: ctx.options }).date_order),
  createSession: (host) => new ClinitekStatusSession(host),
  simulator: {
    description: 'a CLINITEK Status reader: sends its stored strips as comma records, as on "Send all data", in English or Spanish',
    options: SIMULATOR_OPTION_HELP,
    create: (options) => new ClinitekStatusSimulator(parseSimulatorOptions(options)),
  },
};
