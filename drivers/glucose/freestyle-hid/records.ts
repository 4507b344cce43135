/**
 * FreeStyle HID: the models, the readings → ResultDraft conversion that `decode()` and the session
 * share, and `decode()` for replay and golden captures. Protocol notes: README.md beside this file.
 */
import type { Capture, DecodeContext, DecodeIssue, DecodeResult } from '../../../src/driver-sdk/index.ts';
import type { DeviceConfig } from '../../../src/config/types.ts';
import type { DeviceIdentity, Observation, ResultDraft } from '../../../src/records/types.ts';
import { CAPILLARY_GLUCOSE_MG_DL, glucoseLevelFields, glucoseMeterDraft, INTERSTITIAL_GLUCOSE_MG_DL, type MeterLimits, meterLevel } from '../../analytes/glucose.ts';
import { BLOOD_KETONE_MMOL_L } from '../../analytes/ketone.ts';
import {
  clockChangeSeconds,
  cString,
  decodeReport,
  initSerial,
  type FreeStyleReading,
  messageLines,
  MSG,
  parseClock,
  parseMultiRecord,
  parseRecord,
  parseTextReply,
  type RecordCommand,
  TextReplyAssembler,
} from './codec.ts';
import type { DeviceFacts } from '../../../src/driver-sdk/index.ts';

export const FREESTYLE_DRIVER_ID = 'freestyle-hid';
export const MANUFACTURER = 'Abbott';

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

export const RECORD_COMMANDS: Record<ModelInfo['family'], RecordCommand[]> = {
  result: ['$result?'],
  libre: ['$history?', '$arresult?'],
};

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Records: readings → ResultDraft, shared by decode() and the session.
// ────────────────────────────────────────────────────────────────────────────────────────────────

const TRENDS = ['none', 'falling-fast', 'falling', 'steady', 'rising', 'rising-fast'] as const;

/** The meter's own record identity: the command, its record number and its time (rule 3). */
export function readingKey(r: FreeStyleReading): string {
  return `${r.source}|${r.id}|${r.time}`;
}

/**
 * A reading → its observation: strip glucose, sensor glucose or strip β-ketone. Values are mg/dL
 * on the wire; β-ketone is the wire number ÷ 18 in mmol/L, to one decimal. HI/LO carry the model's
 * limit of that side (the meters give no β-ketone LO limit).
 */
function observation(r: FreeStyleReading, model: ModelInfo | null): Observation {
  const ketone = r.analyte === 'ketone';
  const coding = ketone ? BLOOD_KETONE_MMOL_L : r.method === 'strip' ? CAPILLARY_GLUCOSE_MG_DL : INTERSTITIAL_GLUCOSE_MG_DL;
  const limits: MeterLimits | null = ketone ? { lo: null, hi: model?.ketoneHi ?? null } : (model?.glucose ?? null);
  const sent = ketone && typeof r.raw === 'number' ? Math.round((r.raw / 18) * 10) / 10 : r.raw;
  // This key order (text before value) is the one FreeStyle records have always been published in.
  return { code: coding.code, name: coding.name, loinc: coding.loinc, unit: coding.unit, ucum: coding.ucum, text: null, ...glucoseLevelFields(meterLevel(sent, limits)) };
}

export function readingToDraft(r: FreeStyleReading, device: DeviceIdentity, timezone: string, model: ModelInfo | null): ResultDraft {
  const flags = [`source:${r.method}`];
  if (r.trend !== undefined) flags.push(`trend:${TRENDS[r.trend]}`);
  return glucoseMeterDraft({
    key: readingKey(r),
    device,
    control: r.control,
    specimen: r.method === 'strip' ? 'capillary blood' : 'interstitial fluid',
    time: r.time,
    timezone,
    observation: observation(r, model),
    flags,
  });
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

export const DISPLAY_UNIT_COMMANDS: Record<string, (line: string) => string | null> = {
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
    return { drafts: { result: [] }, issues: [{ reason: 'not-a-transcript' }], device: {} };
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
  return { drafts: { result: out.drafts }, issues, device };
}
