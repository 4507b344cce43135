/**
 * Abbott FreeStyle meters on the shared HID protocol: InsuLinx (1a61:3460), Precision/Optium Neo
 * (1a61:3850), Libre (1a61:3650) and Libre Pro (1a61:3670). Libre 2 (1a61:3950) is recognised
 * and refused: it encrypts the protocol.
 *
 * The codec is `freestyle-hid-protocol.ts` (reports, text replies, CKSM checksums, record
 * layouts); this file holds the records, `decode()`, the session, the simulator and the
 * definition. Sources: the research note `research/glucose-meters.md` §2.6, §3, §7 and the real
 * InsuLinx session `fixtures/glucose/freestyle-insulinx-session.txt`; the clock-set commands are
 * confirmed by OpenGlucose's capture `data/insulinx/sync-time.log` (`$date,8,27,14` and
 * `$time,13,40`, each answered `CKSM:00000000` `CMD OK`).
 *
 * What a result is:
 *   - InsuLinx/Neo `$result?`: every glucose or β-ketone strip test. Neo marks control-solution
 *     runs (flag field 0) → category `control`. The InsuLinx has no documented control marker: its
 *     glucose records are checked against the undocumented field values that every record of the
 *     real capture has, and a record that departs is kept aside (issue `unverified-record`), never
 *     published as a patient result on a guess.
 *   - Libre `$arresult?` type 2: strip glucose, strip β-ketone and sensor scans; `$history?`: the
 *     sensor's automatic 15-minute readings. All are results, with a record flag saying which
 *     (`source:strip`, `source:sensor-scan`, `source:sensor-history`). Sensor values are
 *     interstitial-fluid glucose (LOINC 99504-3), never labelled capillary blood. Records the meter
 *     marks invalid (error bit 0x8000) are not readings and are counted, not published.
 *   - Time changes, insulin entries and InsuLinx type-4 records are not measurements.
 * Meter clock changes (`$result?` type 6, Libre `$arresult?` type 5): every reading the meter took
 * before a change, on the old clock, gets the record flags `device-clock-changed` and
 * `device-clock-changed:<±seconds>s` (new clock minus old; `:unknown` when either side is not a
 * real time). Its `device_time` and `observed_at` stay as the meter recorded them: the change's size
 * says how far the clock moved at that moment, not where the reading really belongs (the clock
 * may have been wrong before, or drifted), so nothing is moved on a guess. See `clockChangeFlags`.
 * Values are mg/dL on the wire whatever the display unit; β-ketone is the wire value ÷ 18 in
 * mmol/L, rounded to the meter's 0.1. HI/LO are flags with the meter's limit and no value.
 * The meter's patient name and id (`$ptname?`, `$ptid?`) are never asked for.
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
  AbortedError,
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
import type { DeviceIdentity, Observation, ResultDraft } from '../../src/records/types.ts';
import type { ByteTransport } from '../../src/transports/transport.ts';
import { definedOnly, SimulatorOptionReader } from '../../src/driver-sdk/simulator-options.ts';
import { seededRandom } from '../../src/util/random.ts';
import { SimulatedClock, type SimulatedClockOptions } from '../../src/driver-sdk/simulated-clock.ts';
import { naiveToZoned, nowInZone } from '../../src/util/time.ts';
import {
  clockChangeSeconds,
  decodeReport,
  encodeReport,
  type FreeStyleReading,
  MAX_PAYLOAD,
  messageLines,
  MSG,
  multiRecordMessage,
  parseClock,
  parseMultiRecord,
  parseRecord,
  parseTextReply,
  type RecordCommand,
  ReportStream,
  setClockCommands,
  TextReplyAssembler,
  textCommandReport,
  REPORT_SIZE,
  textChecksum,
  textReply,
  trimReport,
} from './freestyle-hid-protocol.ts';

export const FREESTYLE_DRIVER_ID = 'freestyle-hid';
const MANUFACTURER = 'Abbott';

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Models
// ────────────────────────────────────────────────────────────────────────────────────────────────

export type FreeStyleModel = 'insulinx' | 'neo' | 'libre' | 'libre-pro' | 'libre2';

export const LIBRE2_UNSUPPORTED =
  'FreeStyle Libre 2 encrypts its USB protocol (Speck-based, with keys that are not public): poctd cannot read it; use LibreView or Abbott software';

interface ModelInfo {
  name: string;
  productId: string;
  /** Which record commands it answers. */
  family: 'result' | 'libre';
  /** Glucose measuring range in mg/dL, for HI/LO flags. */
  glucose: { lo: number; hi: number } | null;
  /** β-ketone HI limit in mmol/L, where the meter reads ketone strips and shows HI. */
  ketoneHi: number | null;
  unsupported?: string;
}

/**
 * HI/LO limits: Neo glucose LO < 20 and HI > 500 mg/dL and ketone HI 8.0 mmol/L (research note
 * §2.6, Tidepool "according to spec"). The InsuLinx shares the 20–500 mg/dL range of the FreeStyle
 * strips (its owner's manual); no public capture shows it send HI or LO.
 */
export const MODELS: Record<FreeStyleModel, ModelInfo> = {
  insulinx: { name: 'FreeStyle InsuLinx', productId: '3460', family: 'result', glucose: { lo: 20, hi: 500 }, ketoneHi: null },
  neo: { name: 'FreeStyle Precision/Optium Neo', productId: '3850', family: 'result', glucose: { lo: 20, hi: 500 }, ketoneHi: 8.0 },
  libre: { name: 'FreeStyle Libre', productId: '3650', family: 'libre', glucose: null, ketoneHi: null },
  'libre-pro': { name: 'FreeStyle Libre Pro', productId: '3670', family: 'libre', glucose: null, ketoneHi: null },
  libre2: { name: 'FreeStyle Libre 2', productId: '3950', family: 'libre', glucose: null, ketoneHi: null, unsupported: LIBRE2_UNSUPPORTED },
};

const isModel = (v: unknown): v is FreeStyleModel => typeof v === 'string' && v in MODELS;

export function modelForProductId(productId: string | undefined): FreeStyleModel | null {
  const pid = productId?.trim().toLowerCase().replace(/^0x/, '').padStart(4, '0');
  return (Object.keys(MODELS) as FreeStyleModel[]).find((m) => MODELS[m].productId === pid) ?? null;
}

/** What the config says about the model: `options.model`, the HID product id, or the simulator's model. */
export function configuredModel(device: DeviceConfig): FreeStyleModel | null {
  const fromOptions = device.options?.model;
  if (fromOptions !== undefined) {
    if (!isModel(fromOptions)) throw new Error(`device ${device.id}: options.model must be one of ${Object.keys(MODELS).join(', ')}`);
    return fromOptions;
  }
  const t = device.transport;
  if (t.type === 'hid') return modelForProductId(t.product_id);
  if (t.type === 'simulated') {
    const m = t.simulator?.model;
    return m === undefined ? 'insulinx' : isModel(m) ? m : null;
  }
  return null;
}

const RECORD_COMMANDS: Record<ModelInfo['family'], RecordCommand[]> = {
  result: ['$result?'],
  libre: ['$history?', '$arresult?'],
};

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Records: readings → ResultDraft, shared by decode() and the session.
// ────────────────────────────────────────────────────────────────────────────────────────────────

/** LOINC codes, with where they come from. */
const CODES = {
  /** Glucose [Mass/volume] in Capillary blood by Glucometer (as the Ultra 2 driver). */
  capillary: { code: 'GLU', name: 'Glucose', loinc: '41653-7' },
  /** Glucose [Mass/volume] in Interstitial fluid (LOINC 99504-3, the CGM term). */
  sensor: { code: 'GLU-ISF', name: 'Glucose (interstitial fluid, sensor)', loinc: '99504-3' },
  /** Beta hydroxybutyrate [Moles/volume] in Blood by Test strip (LOINC 66441-7; used for Abbott's Precision Pro strips). */
  ketone: { code: 'BHB', name: 'beta-Hydroxybutyrate', loinc: '66441-7' },
} as const;

const TRENDS = ['none', 'falling-fast', 'falling', 'steady', 'rising', 'rising-fast'] as const;

/** The meter's own record identity: the command, its record number and its time (rule 3). */
export function readingKey(r: FreeStyleReading): string {
  return `${r.source}|${r.id}|${r.time}`;
}

function observation(r: FreeStyleReading, model: ModelInfo | null): Observation {
  if (r.analyte === 'ketone') {
    const hi = model?.ketoneHi ?? null;
    const base = { ...CODES.ketone, unit: 'mmol/L', ucum: 'mmol/L', text: null };
    if (r.raw === 'HI') return { ...base, value: null, flags: ['HI'], comparator: '>', limit: hi };
    if (r.raw === 'LO') return { ...base, value: null, flags: ['LO'], comparator: '<', limit: null };
    return { ...base, value: Math.round((r.raw / 18) * 10) / 10, flags: [], comparator: null };
  }
  const codes = r.method === 'strip' ? CODES.capillary : CODES.sensor;
  const base = { ...codes, unit: 'mg/dL', ucum: 'mg/dL', text: null };
  if (r.raw === 'HI') return { ...base, value: null, flags: ['HI'], comparator: '>', limit: model?.glucose?.hi ?? null };
  if (r.raw === 'LO') return { ...base, value: null, flags: ['LO'], comparator: '<', limit: model?.glucose?.lo ?? null };
  return { ...base, value: r.raw, flags: [], comparator: null };
}

export function readingToDraft(r: FreeStyleReading, device: DeviceIdentity, timezone: string, model: ModelInfo | null): ResultDraft {
  const flags = [`source:${r.method}`];
  if (r.trend !== undefined) flags.push(`trend:${TRENDS[r.trend]}`);
  return {
    key: readingKey(r),
    device: { ...device },
    category: r.control ? 'control' : 'patient',
    specimen: { id: null, type: r.control ? 'control solution' : r.method === 'strip' ? 'capillary blood' : 'interstitial fluid' },
    patient: null,
    operator: null,
    observed_at: naiveToZoned(r.time, timezone),
    device_time: r.time,
    observations: [observation(r, model)],
    flags,
  };
}

export function freestyleIdentity(deviceId: string, model: string, serial: string | null, firmware: string | null): DeviceIdentity {
  return { id: deviceId, driver: FREESTYLE_DRIVER_ID, manufacturer: MANUFACTURER, model, serial, firmware };
}

/** What one conversation learnt from the meter; decode() and the session both fill one. */
export interface MeterSnapshot {
  serial: string | null;
  firmware: string | null;
  clock: string | null;
  displayUnit: string | null;
  /** Verified record lines per record command (the last complete reply wins). */
  records: Partial<Record<RecordCommand, string[]>>;
}

export interface RecordSummary {
  /** Records in the meter's lists (the count lines). */
  records: number;
  readings: number;
  controls: number;
  /** Records the meter marks invalid. */
  invalid: number;
  /** Time changes, insulin entries and other records that are not measurements. */
  other: number;
  /** Of those, the meter's clock-change records (also those that moved the clock by 0 s). */
  clockChanges: number;
  /** Records that could not be used (each also an issue). */
  rejected: number;
}

function modelFromRecords(snapshot: MeterSnapshot): FreeStyleModel | null {
  if (snapshot.records['$history?'] || snapshot.records['$arresult?']) return 'libre';
  const types = new Set((snapshot.records['$result?'] ?? []).map((l) => l.split(',')[0]));
  if (types.has('0') || types.has('4')) return 'insulinx';
  if (types.has('7') || types.has('9') || types.has('10') || types.has('11')) return 'neo';
  return null;
}

/** One clock change the meter logged: its record number, and how far it moved the clock (null: unknown). */
interface ClockChange {
  id: number;
  seconds: number | null;
}

/**
 * The flags of a reading with record number `id`: every change in the same list with a higher
 * record number came after it, so the reading was taken on a clock that was moved since.
 *
 * The meter numbers its records in the order it writes them, so the record number (not the time,
 * which is what a change makes unreliable) says which readings came before a change. Only changes
 * of the same list count: a Libre numbers `$history?` and `$arresult?` records on separate
 * counters (the only public example, Libre 3 lines in research note §2.6: history ids 233–243
 * beside arresult id 7415),
 * so an `$arresult?` change cannot be placed among `$history?` readings and flags none of them.
 *
 * Several changes: one size flag per change, oldest change first, not their sum. A sum is the
 * reading's offset to today's clock only when every size is known and the clock ran true between
 * changes; it hides changes that cancel (set forward then back: sum 0, yet the readings between
 * were on a clock an hour off) and cannot be formed when one size is unknown. The single sizes
 * keep all the meter said; whoever corrects can add them up. A change of 0 s (the clock
 * confirmed, to the minute the meter keeps) moved nothing and flags nothing.
 */
export function clockChangeFlags(id: number, changes: readonly ClockChange[]): string[] {
  const after = changes.filter((c) => c.id > id && c.seconds !== 0).sort((a, b) => a.id - b.id);
  if (after.length === 0) return [];
  const size = (s: number | null): string => (s === null ? 'unknown' : `${s > 0 ? '+' : ''}${s}s`);
  return ['device-clock-changed', ...after.map((c) => `device-clock-changed:${size(c.seconds)}`)];
}

/** Record lines → drafts (oldest first), with an issue for every record that could not be used. */
export function snapshotToDrafts(
  snapshot: MeterSnapshot,
  ctx: DecodeContext,
  knownModel: FreeStyleModel | null,
): { drafts: ResultDraft[]; issues: DecodeIssue[]; summary: RecordSummary; model: FreeStyleModel | null } {
  const modelId = knownModel ?? modelFromRecords(snapshot);
  const model = modelId ? MODELS[modelId] : null;
  const identity = freestyleIdentity(ctx.deviceId, model?.name ?? 'FreeStyle (HID)', snapshot.serial, snapshot.firmware);
  const drafts: ResultDraft[] = [];
  const issues: DecodeIssue[] = [];
  const summary: RecordSummary = { records: 0, readings: 0, controls: 0, invalid: 0, other: 0, clockChanges: 0, rejected: 0 };
  const seen = new Set<string>();
  for (const command of ['$result?', '$history?', '$arresult?'] as const) {
    const changes: ClockChange[] = [];
    const readings: Array<{ id: number; draft: ResultDraft }> = [];
    for (const line of snapshot.records[command] ?? []) {
      summary.records++;
      const parsed = parseRecord(command, line);
      if (!parsed.ok) {
        summary.rejected++;
        issues.push({ reason: parsed.error.code, bytes: Buffer.from(line, 'latin1') });
        continue;
      }
      const rec = parsed.record;
      if (rec.kind === 'invalid-reading') summary.invalid++;
      else if (rec.kind !== 'reading') {
        summary.other++;
        if (rec.kind === 'time-change') {
          summary.clockChanges++;
          changes.push({ id: rec.id, seconds: clockChangeSeconds(rec) });
        }
      } else {
        const draft = readingToDraft(rec.reading, identity, ctx.timezone, model);
        if (seen.has(draft.key)) continue;
        seen.add(draft.key);
        summary.readings++;
        if (rec.reading.control) summary.controls++;
        drafts.push(draft);
        readings.push({ id: rec.reading.id, draft });
      }
    }
    for (const r of readings) r.draft.flags.push(...clockChangeFlags(r.id, changes));
  }
  drafts.sort((a, b) => (a.device_time! < b.device_time! ? -1 : a.device_time! > b.device_time! ? 1 : a.key < b.key ? -1 : 1));
  return { drafts, issues, summary, model: modelId };
}

/** Latin-1 text of an init reply (`serial\0`, `version\0`) without its NUL. */
function cString(payload: Buffer): string {
  const nul = payload.indexOf(0);
  return payload.subarray(0, nul < 0 ? payload.length : nul).toString('latin1');
}

/** The init serial when it is one (`00000000 (No SerialNum)` is not). */
function initSerial(payload: Buffer): string | null {
  const s = cString(payload).trim();
  return s && !/No SerialNum/i.test(s) ? s : null;
}

const DISPLAY_UNIT_COMMANDS: Record<string, (line: string) => string | null> = {
  // Libre: 0 = mmol/L, 1 = mg/dL (glucometer-protocols); Neo/InsuLinx: 1 on a mg/dL meter, nothing else known.
  '$uom?': (l) => (l === '0' ? 'mmol/L' : l === '1' ? 'mg/dL' : null),
  '$gunits?': (l) => (l === '1' ? 'mg/dL' : null),
};

/** Applies one verified text reply to the snapshot. Replies to other commands are ignored unread. */
function applyReply(snapshot: MeterSnapshot, command: string, message: Buffer, clockParts: { date?: string; time?: string }): DecodeIssue | null {
  const first = messageLines(message)[0] ?? '';
  switch (command) {
    case '$serlnum?':
    case '$sn?':
      if (first) snapshot.serial = first;
      return null;
    case '$swver?':
      if (first) snapshot.firmware = first;
      return null;
    case '$date?':
      clockParts.date = first;
      return null;
    case '$time?':
      clockParts.time = first;
      return null;
    case '$uom?':
    case '$gunits?':
      snapshot.displayUnit = DISPLAY_UNIT_COMMANDS[command]!(first) ?? snapshot.displayUnit;
      return null;
    case '$result?':
    case '$history?':
    case '$arresult?': {
      const list = parseMultiRecord(message);
      if (!list.ok) return { reason: list.error.code, bytes: message };
      snapshot.records[command] = list.records;
      return null;
    }
    default:
      return null;
  }
}

/**
 * Decodes a session transcript: `H` reports say which command a reply answers, `D` reports carry
 * the replies. A raw capture (device bytes only) cannot be decoded, because `$result?`, `$history?`
 * and `$arresult?` lists are told apart by the command alone.
 */
export function decodeFreeStyle(capture: Capture, ctx: DecodeContext): DecodeResult {
  const issues: DecodeIssue[] = [];
  if (capture.kind !== 'transcript') {
    return { drafts: [], issues: [{ reason: 'not-a-transcript' }], device: {} };
  }
  const snapshot: MeterSnapshot = { serial: null, firmware: null, clock: null, displayUnit: null, records: {} };
  let bootSerial: string | null = null;
  let bootFirmware: string | null = null;
  const clockParts: { date?: string; time?: string } = {};
  const assembler = new TextReplyAssembler();
  let command: string | null = null;
  let sawText = false;
  const flushPartial = (): void => {
    const partial = assembler.pending();
    if (partial.length > 0) issues.push({ reason: 'truncated-reply', bytes: partial });
    assembler.reset();
  };
  for (const ex of capture.exchanges) {
    const r = decodeReport(ex.bytes);
    if (!r.ok) {
      issues.push({ reason: r.error.code, bytes: ex.bytes });
      continue;
    }
    const { type, payload } = r.report;
    if (ex.dir === 'H') {
      if (type === MSG.TEXT || type === MSG.TEXT_ALT) {
        flushPartial();
        command = payload.toString('latin1').replace(/\r\n$/, '');
      } else command = null;
      continue;
    }
    switch (type) {
      case MSG.KEEPALIVE:
      case MSG.X04_REPLY:
      case MSG.INIT_REPLY:
        break;
      case MSG.SERIAL_REPLY:
        bootSerial = initSerial(payload);
        break;
      case MSG.SWVER_REPLY:
        bootFirmware = cString(payload).trim() || null;
        break;
      case MSG.UNKNOWN_COMMAND:
        issues.push({ reason: 'unknown-command', bytes: ex.bytes });
        break;
      case MSG.TEXT:
        sawText = true;
        for (const out of assembler.push(payload)) {
          if (out.kind === 'overflow') {
            issues.push({ reason: 'reply-too-long' });
            continue;
          }
          const reply = parseTextReply(out.bytes);
          if (!reply.ok) {
            // A refused command is the meter's answer, not damage: no bytes to keep.
            issues.push(reply.error.code === 'command-failed' ? { reason: 'command-failed' } : { reason: reply.error.code, bytes: out.bytes });
            continue;
          }
          if (command === null) continue;
          const issue = applyReply(snapshot, command, reply.message, clockParts);
          if (issue) issues.push(issue);
        }
        break;
      default:
        issues.push({ reason: 'unexpected-report', bytes: ex.bytes });
    }
  }
  flushPartial();
  snapshot.serial ??= bootSerial;
  snapshot.firmware ??= bootFirmware;
  if (clockParts.date !== undefined && clockParts.time !== undefined) {
    const c = parseClock(clockParts.date, clockParts.time);
    if (c.ok) snapshot.clock = c.time;
    else issues.push({ reason: c.error.code });
  }
  if (!sawText && capture.exchanges.length > 0 && issues.length === 0) issues.push({ reason: 'no-text-replies' });
  const out = snapshotToDrafts(snapshot, ctx, null);
  issues.push(...out.issues);
  const device: DeviceFacts = {};
  if (out.model) device.model = MODELS[out.model].name;
  if (snapshot.serial !== null) device.serial = snapshot.serial;
  if (snapshot.firmware !== null) device.firmware = snapshot.firmware;
  if (snapshot.displayUnit !== null) device.display_unit = snapshot.displayUnit;
  if (Object.keys(snapshot.records).length > 0) device.record_count = out.summary.records;
  return { drafts: out.drafts, issues, device };
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Session: the live conversation with one meter.
// ────────────────────────────────────────────────────────────────────────────────────────────────

/**
 * `reply_timeout_ms` is per report (during a memory dump it restarts with every report);
 * `retries` covers a bad reply: checksum, truncation, no answer.
 */
export type FreeStyleSessionOptions = MeterSessionOptions;

const DEFAULT_SESSION_OPTIONS: FreeStyleSessionOptions = { reply_timeout_ms: 2000, retries: 1, clock_skew_limit_s: CLOCK_SKEW_LIMIT_S };

/** Reads `device.options`; throws an Error that names the bad option. */
export function freestyleSessionOptions(device: DeviceConfig): FreeStyleSessionOptions {
  return numberOptions(device, DEFAULT_SESSION_OPTIONS, ['retries']);
}

type TextOutcome = { ok: true; message: Buffer } | { ok: false; code: string; timeout: boolean };

export interface DownloadResult {
  inserted: number;
  duplicates: number;
  records: number;
}

/** Progress events: at most every 25 records. */
const PROGRESS_EVERY = 25;

/** The session's items are 64-byte reports. */
class FreeStyleSession extends MeterSession<Buffer> {
  private readonly opts: FreeStyleSessionOptions;
  private readonly tries: RetryPolicy;
  /** HID delivers one report per `data` event; a stream (TCP, in-memory) is cut into 64-byte reports. */
  private readonly stream: ReportStream | null;
  private model: FreeStyleModel | null;
  private readonly assembler = new TextReplyAssembler();

  constructor(host: SessionHost) {
    super(host, FREESTYLE_DRIVER_ID);
    this.opts = freestyleSessionOptions(host.device);
    this.tries = retryPolicy(this.opts, 250);
    this.stream = host.device.transport.type === 'hid' ? null : new ReportStream();
    this.model = configuredModel(host.device);
    this.linkClosedMessage = 'the meter was unplugged (the link closed) during the conversation';
  }

  protected frame(chunk: Buffer): Buffer[] {
    return this.stream ? this.stream.push(chunk) : [Buffer.from(chunk)];
  }

  /** The text reply in progress; the report stream is reset per conversation (`begin`). */
  protected resetFramer(): void {
    this.assembler.reset();
  }

  /** A capture keeps whole reports without their padding, as `decodeFreeStyle` reads them. */
  protected override transcribeReceived(_chunk: Buffer, reports: readonly Buffer[]): Buffer[] {
    return reports.map(trimReport);
  }

  protected override linkClosed(): void {
    this.stream?.reset();
  }

  protected override commands(): Record<string, SessionCommand> {
    return { 'clock/sync': () => this.syncClock() };
  }

  /** Bad bytes: quarantined, logged and announced by reason only (the text may be patient data). */
  private badFrame(bytes: Buffer, code: string, detail: string): void {
    this.report.badData(bytes, code, detail);
  }

  // ── wire I/O ──

  /** Records the report without its padding; a failed write ends the conversation as a closed link. */
  protected override async send(report: Buffer): Promise<void> {
    this.inbox.check();
    this.transcript?.push({ dir: 'H', bytes: trimReport(report) });
    try {
      await this.transport.write(report);
    } catch (err) {
      this.inbox.check();
      throw new AbortedError(`the meter could not be written to: ${(err as Error).message}`);
    }
  }

  /** A binary init step: sends `type`, waits for `replyType`; keep-alives are skipped. */
  private async binary(type: number, replyType: number): Promise<Buffer> {
    const name = `0x${type.toString(16).padStart(2, '0')}`;
    return this.retry(
      this.tries,
      async (): Promise<Attempt<Buffer, 'timeout'>> => {
        this.clearInbox();
        await this.send(encodeReport(type));
        for (;;) {
          const report = await this.inbox.next(this.opts.reply_timeout_ms);
          if (!report) return { ok: false, failure: 'timeout' };
          const r = decodeReport(report);
          if (!r.ok) {
            this.badFrame(report, r.error.code, r.error.detail);
            continue;
          }
          if (r.report.type === replyType) return { ok: true, value: r.report.payload };
          if (r.report.type === MSG.UNKNOWN_COMMAND) throw new ProtocolError('unknown-command', `the meter does not know init message ${name}`);
          // Keep-alives and stray reports are not the reply: wait on.
        }
      },
      () => new NoAnswerError(`no answer to init message ${name}: the meter is off, asleep or not a FreeStyle HID meter`),
    );
  }

  /** One text command and its whole reply, or why it failed. */
  private async exchangeText(command: string, progress?: (lines: number) => void): Promise<TextOutcome> {
    this.clearInbox();
    await this.send(textCommandReport(command));
    for (;;) {
      const report = await this.inbox.next(this.opts.reply_timeout_ms);
      if (!report) {
        const partial = this.assembler.pending();
        if (partial.length > 0) {
          this.badFrame(partial, 'truncated-reply', `the reply to ${command} stopped after ${partial.length} bytes`);
          return { ok: false, code: 'truncated-reply', timeout: false };
        }
        return { ok: false, code: 'timeout', timeout: true };
      }
      const r = decodeReport(report);
      if (!r.ok) {
        this.badFrame(report, r.error.code, r.error.detail);
        return { ok: false, code: r.error.code, timeout: false };
      }
      const { type, payload } = r.report;
      if (type === MSG.KEEPALIVE) continue;
      if (type === MSG.UNKNOWN_COMMAND) return { ok: false, code: 'unknown-command', timeout: false };
      if (type !== MSG.TEXT) {
        this.badFrame(report, 'unexpected-report', `a 0x${type.toString(16).padStart(2, '0')} report during a text reply`);
        continue;
      }
      const outs = this.assembler.push(payload);
      progress?.(this.assembler.lines);
      for (const out of outs) {
        if (out.kind === 'overflow') {
          this.badFrame(out.bytes.subarray(0, 256), 'reply-too-long', `no CMD OK within ${TextReplyAssembler.MAX_REPLY} bytes`);
          return { ok: false, code: 'reply-too-long', timeout: false };
        }
        const reply = parseTextReply(out.bytes);
        if (reply.ok) return { ok: true, message: reply.message };
        if (reply.error.code === 'command-failed') return { ok: false, code: 'command-failed', timeout: false };
        this.badFrame(out.bytes, reply.error.code, reply.error.detail);
        return { ok: false, code: reply.error.code, timeout: false };
      }
    }
  }

  /**
   * A text command, sent once more when the reply is damaged or missing. `check` may refuse a
   * verified message (a record list whose own checksum fails), which also counts as damage.
   * Returns null for `CMD Fail!` when `mayFail`.
   */
  private async askText(
    command: string,
    opts: { mayFail?: boolean; check?: (m: Buffer) => string | null; progress?: (lines: number) => void } = {},
  ): Promise<Buffer | null> {
    return this.retry(
      this.tries,
      async (): Promise<Attempt<Buffer | null, Extract<TextOutcome, { ok: false }>>> => {
        const outcome = await this.exchangeText(command, opts.progress);
        if (outcome.ok) {
          const problem = opts.check?.(outcome.message) ?? null;
          if (!problem) return { ok: true, value: outcome.message };
          this.badFrame(outcome.message, problem, `the reply to ${command} failed its record check`);
          return { ok: false, failure: { ok: false, code: problem, timeout: false } };
        }
        if (outcome.code === 'command-failed' || outcome.code === 'unknown-command') {
          if (opts.mayFail) return { ok: true, value: null };
          throw new ProtocolError(outcome.code, `the meter refused ${command} (${outcome.code})`);
        }
        return { ok: false, failure: outcome };
      },
      (failures) => {
        const last = failures.at(-1)!;
        if (last.timeout) return new NoAnswerError(`no answer to ${command}: the meter stopped answering`);
        return new ProtocolError(last.code, `no valid reply to ${command} after ${failures.length} tries (${last.code})`);
      },
    );
  }

  private async readClock(): Promise<string | null> {
    const date = await this.askText('$date?');
    const time = await this.askText('$time?');
    const c = parseClock(messageLines(date!)[0] ?? '', messageLines(time!)[0] ?? '');
    return c.ok ? c.time : null;
  }

  /** Init sequence as Abbott's software sends it: 0x04, 0x05 (serial), 0x15 (version), 0x01. */
  private async init(): Promise<{ serial: string | null; firmware: string | null }> {
    await this.binary(MSG.X04, MSG.X04_REPLY);
    const serial = initSerial(await this.binary(MSG.SERIAL, MSG.SERIAL_REPLY));
    const firmware = cString(await this.binary(MSG.SWVER, MSG.SWVER_REPLY)).trim() || null;
    await this.binary(MSG.INIT, MSG.INIT_REPLY);
    return { serial, firmware };
  }

  // ── conversations ──

  protected download(trigger: string): Promise<DownloadResult> {
    return this.downloadConversation(
      trigger,
      () => {
        this.stream?.reset();
        return this.init();
      },
      async (boot) => {
        const snapshot: MeterSnapshot = { serial: null, firmware: null, clock: null, displayUnit: null, records: {} };
        // The serial: `$serlnum?` (InsuLinx, Neo) or `$sn?` (Libre). An unknown model is probed.
        let family = this.model ? MODELS[this.model].family : null;
        let serialReply: Buffer | null;
        if (family === 'libre') serialReply = await this.askText('$sn?');
        else {
          serialReply = await this.askText('$serlnum?', { mayFail: family === null });
          if (serialReply === null) {
            serialReply = await this.askText('$sn?');
            family = 'libre';
          } else family ??= 'result';
        }
        snapshot.serial = messageLines(serialReply!)[0] || boot.serial;
        snapshot.firmware = messageLines((await this.askText('$swver?'))!)[0] || boot.firmware;
        snapshot.clock = await this.readClock();
        const unitCommand = family === 'libre' ? '$uom?' : '$gunits?';
        const unit = await this.askText(unitCommand, { mayFail: true });
        snapshot.displayUnit = unit ? DISPLAY_UNIT_COMMANDS[unitCommand]!(messageLines(unit)[0] ?? '') : null;
        this.checkClock(snapshot.clock);
        this.report.patch({
          model: this.model ? MODELS[this.model].name : (this.report.state.model ?? null),
          serial: snapshot.serial,
          firmware: snapshot.firmware,
          meter: { display_unit: snapshot.displayUnit },
          last_seen: this.host.now().toISOString(),
        });

        let received = 0;
        let lastProgress = 0;
        for (const command of RECORD_COMMANDS[family]) {
          const before = received;
          const message = await this.askText(command, {
            check: (m) => {
              const list = parseMultiRecord(m);
              return list.ok ? null : list.error.code;
            },
            progress: (lines) => {
              received = before + lines;
              if (received - lastProgress >= PROGRESS_EVERY) {
                lastProgress = received;
                this.report.emit('download_progress', `${received} records received`, { received, total: null });
              }
            },
          });
          const list = parseMultiRecord(message!);
          if (list.ok) snapshot.records[command] = list.records;
          received = before + (list.ok ? list.records.length : 0);
        }

        const out = snapshotToDrafts(snapshot, { deviceId: this.host.device.id, timezone: this.host.timezone }, this.model);
        if (!this.model && out.model) this.report.patch({ model: MODELS[out.model].name });
        this.report.emit('download_progress', `${out.summary.records} of ${out.summary.records} records`, {
          received: out.summary.records,
          total: out.summary.records,
        });
        for (const issue of out.issues) {
          this.badFrame(issue.bytes ?? Buffer.alloc(0), issue.reason, 'a record that cannot be used as a result; it is kept in quarantine');
        }
        const stored = await this.commitDownload(out.drafts);
        return {
          result: { inserted: stored.inserted, duplicates: stored.duplicates, records: out.drafts.length },
          message: `downloaded ${out.drafts.length} results (${out.summary.records} records): ${stored.inserted} new, ${stored.duplicates} already stored`,
          data: {
            records: out.drafts.length,
            inserted: stored.inserted,
            duplicates: stored.duplicates,
            meter_records: out.summary.records,
            controls: out.summary.controls,
            not_results: out.summary.other,
            clock_changes: out.summary.clockChanges,
            invalid: out.summary.invalid,
            rejected: out.summary.rejected,
          },
          state: { meter: { record_count: out.summary.records } },
        };
      },
    );
  }

  private checkClock(clock: string | null): void {
    if (clock === null) {
      this.report.patch({ clock_skew_s: null, clock_skew_flagged: true });
      this.report.emit('clock_skew', 'the meter clock is not set (it reports 255: its clock lost power)', { clock_skew_s: null, limit_s: this.opts.clock_skew_limit_s });
      return;
    }
    this.report.clockRead(clock, this.host.timezone, this.host.now(), this.opts.clock_skew_limit_s);
  }

  private async syncClock(): Promise<ClockSyncResult> {
    if (!this.transport.isOpen) throw new Error('freestyle-hid: the transport is not open');
    this.inbox.resume();
    this.stream?.reset();
    try {
      await this.init();
      const target = nowInZone(this.host.timezone, this.host.now());
      const cmds = setClockCommands(target);
      await this.askText(cmds.date);
      await this.askText(cmds.time);
      const clock = await this.readClock();
      // The meter keeps minutes only: its clock may read up to a minute behind the time sent.
      const off = clock === null ? Infinity : Math.abs(Date.parse(`${clock}Z`) - Date.parse(`${target.slice(0, 16)}:00Z`)) / 1000;
      if (clock === null || off > 120) {
        throw new ProtocolError('clock-not-set', `the meter reports a clock ${clock === null ? 'that is not set' : `${Math.round(off)} s away from the time sent`}`);
      }
      return this.report.clockSet(clock, this.host.timezone, this.host.now(), this.opts.clock_skew_limit_s);
    } catch (err) {
      throw this.failed(err, 'device_error');
    }
  }
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Simulator: the meter's side, one 64-byte report per write.
// ────────────────────────────────────────────────────────────────────────────────────────────────

export type SimulatedKind = 'glucose' | 'ketone' | 'scan' | 'history';

export interface SimulatedRecord {
  /** Naive meter time `YYYY-MM-DDTHH:MM:SS` (InsuLinx/Neo keep minutes only). */
  time: string;
  /** glucose (strip), ketone (strip), scan (Libre sensor scan), history (Libre 15-min reading). */
  kind?: SimulatedKind;
  /** Glucose in mg/dL, ketone in mmol/L (sent ×18), or the HI/LO literal (InsuLinx/Neo). */
  value: number | 'HI' | 'LO';
  /** A control-solution run (Neo only: the InsuLinx has no documented marker). */
  control?: boolean;
  /** Libre: the meter marks the record invalid (error bit 0x8000). */
  error?: boolean;
}

export interface FreeStyleSimulatorOptions extends SimulatedClockOptions {
  model?: FreeStyleModel;
  serial?: string;
  firmware?: string;
  memory?: SimulatedRecord[];
  /** Replies sent from now on with a wrong CKSM: the next N. */
  corrupt_next?: number;
  /** A 0x22 keep-alive report after every N reports (0: none). */
  keepalive_every?: number;
  /** Largest payload per report (1–62); replies are cut at this size, even mid-token. */
  max_payload?: number;
  /** true: never answers. */
  off?: boolean;
  report_delay_ms?: number;
  /** What the meter holds as patient name and id (patient data: the driver never asks). */
  patient_name?: string;
  patient_id?: string;
  seed?: number;
}

const SIMULATOR_OPTION_HELP: Record<string, string> = {
  model: 'insulinx (default), neo, libre, libre-pro or libre2 (libre2 answers encrypted noise)',
  serial: 'serial number (default JAGT241-U6242-like per model)',
  firmware: 'software version (default 1.40)',
  clock_offset_s: 'meter clock minus the true time, in seconds (default 0)',
  memory: 'records: [{time: "YYYY-MM-DDTHH:MM:SS", kind?: glucose|ketone|scan|history, value: mg/dL | mmol/L (ketone) | "HI" | "LO", control?, error?}]',
  corrupt_next: 'send the next N text replies with a wrong CKSM checksum',
  keepalive_every: 'send a 0x22 keep-alive report after every N reports (default 3; 0 = none)',
  max_payload: 'largest payload per report, 1-62 (default 62); replies are cut there, even mid-token',
  off: 'true: never answer',
  report_delay_ms: 'pause between reports in ms (default 0)',
  patient_name: "the patient name the meter holds (patient data; the driver never asks for it)",
  patient_id: "the patient id the meter holds (patient data; the driver never asks for it)",
  timezone: "IANA zone of the meter's naive clock (default: the host's)",
  seed: 'random seed for reproducible runs',
};

const DEFAULT_SERIALS: Record<FreeStyleModel, string> = {
  insulinx: 'JAGT241-U6242',
  neo: 'XCGA123-N4567',
  libre: 'JCMV112-L0042',
  'libre-pro': 'JGMP311-P0007',
  libre2: 'MAGV104-Z0099',
};

const SIMULATOR = 'freestyle-hid simulator';

const NAIVE_RE = /^20\d{2}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/;

/** Checks untyped options (from YAML or the command line) and returns them typed. */
export function parseSimulatorOptions(o: Record<string, unknown>): FreeStyleSimulatorOptions {
  const read = new SimulatorOptionReader(o, SIMULATOR, Object.keys(SIMULATOR_OPTION_HELP));
  const modelOption = read.oneOf('model', Object.keys(MODELS) as FreeStyleModel[], Object.keys(MODELS).join(', '));
  const model = modelOption ?? 'insulinx';
  return definedOnly<FreeStyleSimulatorOptions>({
    model: modelOption,
    serial: read.string('serial', /^[\x21-\x7e]{1,30}$/, '1-30 printable characters'),
    firmware: read.string('firmware'),
    clock_offset_s: read.number('clock_offset_s'),
    memory: read.list('memory', (r, where) => parseSimulatedRecord(read, r, where, model), 'a list of records'),
    corrupt_next: read.number('corrupt_next', 0),
    keepalive_every: read.number('keepalive_every', 0),
    max_payload: read.number('max_payload', 1, MAX_PAYLOAD),
    off: read.boolean('off'),
    report_delay_ms: read.number('report_delay_ms', 0),
    patient_name: read.string('patient_name'),
    patient_id: read.string('patient_id'),
    timezone: read.timezone(),
    seed: read.number('seed', 0),
    now: read.now(),
  });
}

function parseSimulatedRecord(read: SimulatorOptionReader, r: unknown, where: string, model: FreeStyleModel): SimulatedRecord {
  if (typeof r !== 'object' || r === null) throw read.error(where, 'an object');
  const o = r as Record<string, unknown>;
  if (typeof o.time !== 'string' || !NAIVE_RE.test(o.time)) throw read.error(`${where}.time`, 'YYYY-MM-DDTHH:MM:SS in 2000–2099');
  const libre = MODELS[model].family === 'libre';
  const kinds: SimulatedKind[] = libre ? ['glucose', 'ketone', 'scan', 'history'] : model === 'neo' ? ['glucose', 'ketone'] : ['glucose'];
  const kind = (o.kind ?? (libre ? 'history' : 'glucose')) as SimulatedKind;
  if (!kinds.includes(kind)) throw read.error(`${where}.kind`, `one of ${kinds.join(', ')} for model ${model}`);
  const hiLo = !libre && (o.value === 'HI' || (o.value === 'LO' && kind === 'glucose'));
  if (!hiLo && (typeof o.value !== 'number' || !Number.isFinite(o.value) || o.value < 0 || o.value > (kind === 'ketone' ? 30 : 999))) {
    throw read.error(`${where}.value`, kind === 'ketone' ? 'mmol/L 0–30 or "HI"' : `mg/dL 0–999${libre ? '' : ' or "HI"/"LO"'}`);
  }
  if (o.control !== undefined && (typeof o.control !== 'boolean' || (o.control && model !== 'neo'))) {
    throw read.error(`${where}.control`, 'true or false, and true only for model neo (the only documented control marker)');
  }
  if (o.error !== undefined && (typeof o.error !== 'boolean' || (o.error && !libre))) throw read.error(`${where}.error`, 'true or false, true only for Libre models');
  const out: SimulatedRecord = { time: o.time, kind, value: o.value as SimulatedRecord['value'] };
  if (o.control) out.control = true;
  if (o.error) out.error = true;
  return out;
}

const f2 = (n: number): string => String(n);

function civil(naive: string): [number, number, number, number, number, number] {
  const m = /^20(\d{2})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})$/.exec(naive)!;
  return [Number(m[2]), Number(m[3]), Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6])];
}

/** The wire line of one record, as the model writes it (fields per freestyle-hid-protocol.ts). */
export function simulatedRecordLine(model: FreeStyleModel, id: number, r: SimulatedRecord): { command: RecordCommand; line: string } {
  const [mo, d, yy, h, mi, s] = civil(r.time);
  const kind = r.kind ?? (MODELS[model].family === 'libre' ? 'history' : 'glucose');
  const wire = (v: SimulatedRecord['value']): string => (typeof v === 'number' ? f2(kind === 'ketone' ? Math.round(v * 18) : Math.round(v)) : v);
  if (model === 'insulinx') return { command: '$result?', line: [0, id, mo, d, yy, h, mi, 1, 0, 0, 0, 3, 0, wire(r.value), 0, 0].join(',') };
  if (model === 'neo') {
    const flag = r.control ? 0 : 1;
    if (kind === 'ketone') return { command: '$result?', line: [9, id, mo, d, yy, h, mi, 0, wire(r.value), flag].join(',') };
    return { command: '$result?', line: [7, id, mo, d, yy, h, mi, 0, wire(r.value), 0, flag, 0, 0, 0, 0, 0, 0, 0, 0].join(',') };
  }
  const errors = r.error ? 0x8000 : 0;
  if (kind === 'history') return { command: '$history?', line: [id, 12, mo, d, yy, h, mi, s, 1, 0, 0, 0, 0, wire(r.value), 900, errors].join(',') };
  const readingKind = kind === 'glucose' ? 0 : kind === 'ketone' ? 1 : 2;
  const fields: (string | number)[] = [id, 2, mo, d, yy, h, mi, s, 1, readingKind, 0, 0, wire(r.value), kind === 'scan' ? 1 : 0, kind === 'scan' ? 3 : 0];
  while (fields.length < 28) fields.push(0);
  fields.push(errors, '""', '""', '""', '""', '""', '""');
  return { command: '$arresult?', line: fields.join(',') };
}

export class FreeStyleSimulator implements DeviceSimulator {
  readonly model: FreeStyleModel;
  serial: string;
  firmware: string;
  readonly deviceClock: SimulatedClock;
  memory: SimulatedRecord[];
  off: boolean;
  /** Every text command received, in order (tests read it). */
  readonly received: string[] = [];
  private corrupt: number;
  private readonly corruptFor = new Map<string, number>();
  private readonly keepaliveEvery: number;
  private readonly maxPayload: number;
  private readonly reportDelayMs: number;
  private readonly patientName: string;
  private readonly patientId: string;
  private readonly random: () => number;
  private transport: ByteTransport | null = null;
  private readonly stream = new ReportStream();
  private sinceKeepalive = 0;
  private replying: Promise<void> = Promise.resolve();

  constructor(options: FreeStyleSimulatorOptions = {}) {
    this.model = options.model ?? 'insulinx';
    this.serial = options.serial ?? DEFAULT_SERIALS[this.model];
    this.firmware = options.firmware ?? '1.40';
    this.deviceClock = new SimulatedClock(options);
    this.off = options.off ?? false;
    this.corrupt = options.corrupt_next ?? 0;
    this.keepaliveEvery = Math.floor(options.keepalive_every ?? 3);
    this.maxPayload = Math.floor(options.max_payload ?? MAX_PAYLOAD);
    this.reportDelayMs = options.report_delay_ms ?? 0;
    this.patientName = options.patient_name ?? 'Doe,Jane';
    this.patientId = options.patient_id ?? 'PID-000042';
    this.random = seededRandom(options.seed ?? Date.now());
    this.memory = options.memory ? options.memory.map((r) => ({ ...r })) : this.defaultMemory();
  }

  /** Sends the next `n` text replies with a wrong checksum. */
  corruptNext(n: number): void {
    this.corrupt += n;
  }

  /** Sends the next `n` replies to `command` (e.g. `$history?`) with a wrong checksum. */
  corruptReplyTo(command: string, n = 1): void {
    this.corruptFor.set(command, (this.corruptFor.get(command) ?? 0) + n);
  }

  /** The meter's naive clock now. */
  clock(): string {
    return this.deviceClock.read();
  }

  attach(transport: ByteTransport): void {
    this.detach();
    this.transport = transport;
    transport.on('data', this.onData);
  }

  detach(): void {
    if (this.transport) this.transport.off('data', this.onData);
    this.transport = null;
    this.stream.reset();
  }

  /** Record lines per command, newest first with descending record numbers, as the meters send them. */
  recordLists(): Partial<Record<RecordCommand, string[]>> {
    const sorted = [...this.memory].sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
    const lists: Partial<Record<RecordCommand, string[]>> = {};
    sorted.forEach((r, i) => {
      const { command, line } = simulatedRecordLine(this.model, 1000 + sorted.length - i, r);
      (lists[command] ??= []).push(line);
    });
    return lists;
  }

  private defaultMemory(): SimulatedRecord[] {
    const start = Date.parse(`${this.clock().slice(0, 16)}:00Z`) - 2 * 86400_000;
    const at = (h: number): string => new Date(start + h * 3600_000).toISOString().slice(0, 19);
    const libre = MODELS[this.model].family === 'libre';
    if (libre) {
      const history: SimulatedRecord[] = Array.from({ length: 8 }, (_, i) => ({ time: at(8 + i * 0.25), kind: 'history', value: 100 + 5 * i }));
      return [
        ...history,
        { time: at(9.1), kind: 'scan', value: 131 },
        { time: at(12), kind: 'glucose', value: 96 },
        { time: at(12.5), kind: 'ketone', value: 0.6 },
        { time: at(13), kind: 'history', value: 0, error: true },
      ];
    }
    if (this.model === 'neo') {
      return [
        { time: at(7.5), kind: 'glucose', value: 96 },
        { time: at(8), kind: 'glucose', value: 118, control: true },
        { time: at(13), kind: 'ketone', value: 0.6 },
        { time: at(19), kind: 'glucose', value: 'HI' },
        { time: at(26), kind: 'glucose', value: 'LO' },
      ];
    }
    return [
      { time: at(7.5), value: 96 },
      { time: at(13), value: 142 },
      { time: at(19), value: 121 },
      { time: at(32), value: 88 },
    ];
  }

  private readonly onData = (chunk: Buffer): void => {
    for (const report of this.stream.push(chunk)) this.handle(report);
  };

  private handle(bytes: Buffer): void {
    const r = decodeReport(bytes);
    if (!r.ok) return; // the meter drops what it cannot read
    const { type, payload } = r.report;
    const text = type === MSG.TEXT || type === MSG.TEXT_ALT ? payload.toString('latin1').replace(/\r\n$/, '') : null;
    if (text !== null) this.received.push(text);
    else this.received.push(`#${type.toString(16).padStart(2, '0')}`);
    if (this.off) return;
    if (this.model === 'libre2' && type !== MSG.SERIAL) {
      // Encrypted from here on: 62 bytes of noise behind the type byte, the length byte unreadable.
      const noise = Buffer.alloc(REPORT_SIZE);
      for (let i = 0; i < noise.length; i++) noise[i] = Math.floor(this.random() * 256);
      noise[0] = MSG.TEXT;
      this.enqueue([noise]);
      return;
    }
    switch (type) {
      case MSG.X04:
        return this.enqueue([encodeReport(MSG.X04_REPLY, Buffer.of(0x0c))]);
      case MSG.SERIAL:
        return this.enqueue([encodeReport(MSG.SERIAL_REPLY, Buffer.from(`${this.serial}\0`, 'latin1'))]);
      case MSG.SWVER:
        return this.enqueue([encodeReport(MSG.SWVER_REPLY, Buffer.from(`${this.firmware}\0`, 'latin1'))]);
      case MSG.INIT:
        return this.enqueue([encodeReport(MSG.INIT_REPLY, Buffer.of(0x01))]);
      case MSG.TEXT:
      case MSG.TEXT_ALT:
        return this.enqueue(this.textReports(this.answer(text!)));
      default:
        return this.enqueue([encodeReport(MSG.UNKNOWN_COMMAND, Buffer.of(0x85))]);
    }
  }

  /** The reply text for a command, or a refusal. */
  private answer(command: string): Buffer {
    const libre = MODELS[this.model].family === 'libre';
    const ok = (message: string | Buffer): Buffer => {
      const forCommand = this.corruptFor.get(command) ?? 0;
      if (this.corrupt > 0 || forCommand > 0) {
        if (forCommand > 0) this.corruptFor.set(command, forCommand - 1);
        else this.corrupt--;
        return textReply(message, true, textChecksum(message) + 1);
      }
      return textReply(message);
    };
    const refuse = (): Buffer => textReply('', false);
    const [mo, d, yy, h, mi] = civil(this.clock());
    switch (command) {
      case '$serlnum?':
        return libre ? refuse() : ok(`${this.serial}\r\n`);
      case '$sn?':
        return libre ? ok(`${this.serial}\r\n`) : refuse();
      case '$swver?':
        return ok(`${this.firmware}\r\n`);
      case '$date?':
        return ok(`${mo},${d},${yy}\r\n`);
      case '$time?':
        return ok(`${h},${mi}\r\n`);
      case '$ptname?':
        return ok(`${this.patientName}\r\n`);
      case '$ptid?':
        return ok(`${this.patientId}\r\n`);
      case '$gunits?':
        return libre ? refuse() : ok('1\r\n');
      case '$uom?':
        return libre ? ok('1\r\n') : refuse();
      case '$result?':
      case '$history?':
      case '$arresult?': {
        if (libre !== (command !== '$result?')) return refuse();
        return ok(multiRecordMessage(this.recordLists()[command] ?? []));
      }
    }
    const set = /^\$(date|time),(\d{1,2}),(\d{1,2})(?:,(\d{1,2}))?$/.exec(command);
    if (set) {
      const [a, b, c] = [Number(set[2]), Number(set[3]), set[4] === undefined ? null : Number(set[4])];
      const accepted = set[1] === 'date' ? c !== null && this.deviceClock.setDate(c, a, b) : c === null && this.deviceClock.setTime(a, b);
      return accepted ? ok('') : refuse();
    }
    return refuse();
  }

  /** Cuts a reply into 0x60 reports of at most `max_payload` bytes, with keep-alives between. */
  private textReports(reply: Buffer): Buffer[] {
    const reports: Buffer[] = [];
    for (let i = 0; i < reply.length; i += this.maxPayload) {
      reports.push(encodeReport(MSG.TEXT, reply.subarray(i, i + this.maxPayload)));
    }
    return reports;
  }

  private enqueue(reports: Buffer[]): void {
    const transport = this.transport;
    if (!transport) return;
    this.replying = this.replying
      .then(async () => {
        for (const report of reports) {
          if (this.transport !== transport || !transport.isOpen) return;
          if (this.keepaliveEvery > 0 && ++this.sinceKeepalive > this.keepaliveEvery) {
            this.sinceKeepalive = 1;
            await transport.write(encodeReport(MSG.KEEPALIVE, Buffer.of(0x03)));
          }
          await transport.write(report);
          if (this.reportDelayMs > 0) await new Promise((r) => setTimeout(r, this.reportDelayMs));
        }
      })
      .catch(() => undefined);
  }
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Definition
// ────────────────────────────────────────────────────────────────────────────────────────────────

export const freestyleHid: DriverDefinition = {
  id: FREESTYLE_DRIVER_ID,
  kind: 'glucose-meter',
  vendor: MANUFACTURER,
  models: [MODELS.insulinx.name, MODELS.neo.name, MODELS.libre.name, MODELS['libre-pro'].name],
  usb: [
    { vendorId: '1a61', productId: '3460', description: 'FreeStyle InsuLinx (the meter itself)' },
    { vendorId: '1a61', productId: '3850', description: 'FreeStyle Precision/Optium Neo (the meter itself)' },
    { vendorId: '1a61', productId: '3650', description: 'FreeStyle Libre reader (the meter itself)' },
    { vendorId: '1a61', productId: '3670', description: 'FreeStyle Libre Pro reader (the meter itself)' },
    { vendorId: '1a61', productId: '3950', description: 'FreeStyle Libre 2 reader', unsupported: LIBRE2_UNSUPPORTED },
  ],
  transports: ['hid', 'tcp', 'simulated'],
  commands: {
    download: { description: 'read the whole meter memory ($result?, or $history? and $arresult? on a Libre) and store new results; returns {inserted, duplicates, records}', params: NO_PARAMS },
    'clock/sync': { description: "set the meter clock to the host time in the device's zone ($date, and $time,; minutes only); returns the new clock", params: NO_PARAMS },
    status: { description: 'the current device state: model, serial, software version, clock skew, last download', params: NO_PARAMS },
  },
  decode: decodeFreeStyle,
  // Never talk to a Libre 2 named by its model option: nothing it says could be read, and a guess
  // would be worse than nothing. Named by its USB id, the usb entry above refuses it.
  refuses: (device) => {
    let model: FreeStyleModel | null;
    try {
      model = configuredModel(device);
    } catch {
      return null; // a bad model option is the session's config error to report
    }
    const reason = model ? MODELS[model].unsupported : undefined;
    return model && reason ? { model: MODELS[model].name, reason } : null;
  },
  createSession: (host) => new FreeStyleSession(host),
  simulator: {
    description:
      'an Abbott FreeStyle HID meter (InsuLinx, Neo, Libre, Libre Pro; Libre 2 answers noise): 64-byte reports [type][len][payload], init 04/05/15/01, text commands with CKSM checksums',
    options: SIMULATOR_OPTION_HELP,
    create: (options) => new FreeStyleSimulator(parseSimulatorOptions(options)),
  },
};
