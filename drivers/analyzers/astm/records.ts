/**
 * `astm` records: one complete ASTM E1394 message (H … L) → result drafts, with the dialect its H
 * record names (`dialects/`), and `decode()` for a stored capture. One result per order (O record):
 * the sample, with one observation per R record under it.
 *
 * Record identity (rule 3): sender name/serial (H-5) + specimen id + test time + the set of codes,
 * all fields the device resends unchanged, so a resent message gives the same ids.
 */
import type { Capture, DecodeContext, DecodeIssue, DecodeResult } from '../../../src/driver-sdk/index.ts';
import { deviceBytes } from '../../../src/driver-sdk/capture.ts';
import type { DeviceIdentity, Observation, ResultCategory, ResultDraft } from '../../../src/records/types.ts';
import { naiveToZoned } from '../../../src/util/time.ts';
import { collectMessages } from '../../../src/protocols/astm/link.ts';
import { collectBareMessages } from './bare-link.ts';
import {
  decodeText,
  parseAstmDate,
  parseMessage,
  splitRecords,
  parseDelimiters,
  type AstmComment,
  type AstmMessage,
  type AstmOrder,
  type AstmPatient,
  type AstmResult,
} from '../../../src/protocols/astm/records.ts';
import { stripObservation } from '../../analytes/urine-strip.ts';
import { convertExact, ucumOf } from '../../../src/records/units.ts';
import { detectDialect, findDialect, type AstmDialect, type TestMapping } from './dialects/index.ts';
import { parseAstmOptions, type AstmOptions } from './options.ts';
import { isLoinc, testCode } from './test-id.ts';
import type { DeviceFacts } from '../../../src/driver-sdk/index.ts';

export const ASTM_DRIVER_ID = 'astm';

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Message → drafts
// ────────────────────────────────────────────────────────────────────────────────────────────────

const STATUS_FLAGS: Readonly<Record<string, string>> = {
  P: 'preliminary', C: 'corrected', X: 'cannot-be-done', I: 'pending', S: 'partial', R: 'previously-transmitted',
  W: 'warning', V: 'verified', Q: 'response-to-query', M: 'mic', N: 'new',
};
const ABNORMAL_FLAGS: Readonly<Record<string, string | null>> = {
  N: null, L: 'L', H: 'H', LL: 'LL', HH: 'HH', A: 'abnormal', AA: 'abnormal', U: 'up', D: 'down', B: 'better', W: 'worse',
};

export interface MessageDecode {
  drafts: ResultDraft[];
  issues: DecodeIssue[];
  device: DeviceFacts;
  dialect: AstmDialect | null;
  /**
   * What the message was: results, a query (Q records), a keep-alive (only its H and L records:
   * some analyzers send one to test the line), or nothing usable.
   */
  kind: 'results' | 'query' | 'keep-alive' | 'empty';
}

function commentText(c: AstmComment): string {
  return c.text.join('^').trim();
}

/** The record a C record follows (LIS2-A2: a comment belongs to the record before it). */
export type CommentLevel = 'header' | 'patient' | 'order' | 'result';

/** A comment component that is a code (an alarm or flag name, a number): no spaces, short, printable ASCII. */
const COMMENT_CODE = /^[\x21-\x7e]{1,40}$/;

/**
 * A message's comments as flags, which are published whatever the privacy policy, so only what is
 * coded is copied. A comment under a patient record is about the patient (free text that may name
 * them): never copied, only `comment-withheld:patient` says there was one. Elsewhere a comment is
 * copied only when C-3 says the instrument wrote it (`I`) and every component of its text is a
 * code (`Alarm_WBC^LMNE-^BASO+`, `43`): instrument comments carry typed free text too (GeneXpert
 * `Notes^^Id# … <a name> …`), so text with spaces is withheld like a comment from the practice
 * (`P`), the LIS (`L`) or no stated source: `comment-withheld:header` / `order` / `result`.
 */
export function commentFlags(comments: readonly AstmComment[], level: CommentLevel): string[] {
  const flags: string[] = [];
  for (const c of comments) {
    const text = commentText(c);
    if (text === '') continue;
    const coded = c.text.map((t) => t.trim()).filter((t) => t !== '').every((t) => COMMENT_CODE.test(t));
    if (level !== 'patient' && c.source.trim().toUpperCase() === 'I' && coded) flags.push(`comment:${text.slice(0, 200)}`);
    else if (!flags.includes(`comment-withheld:${level}`)) flags.push(`comment-withheld:${level}`);
  }
  return flags;
}

const NUMERIC = /^(<=|>=|<|>)?\s*([-+]?\d+(?:\.\d+)?)$/;

/** R-4 as one string (components joined), as the device sent it. */
function rawValue(r: AstmResult): string {
  return r.value.filter((v) => v.trim() !== '').join(' ').trim();
}

/**
 * R-4 sent as two components, an interpretation and a number (`-1^0.435` from a cobas e-series
 * COI, `POSITIVE^12.3`): the number is the value, the interpretation its text. Null otherwise.
 */
function interpretedValue(r: AstmResult): { number: string; interpretation: string } | null {
  const parts = r.value.map((v) => v.trim());
  while (parts.length > 0 && parts.at(-1) === '') parts.pop();
  if (parts.length !== 2 || parts[0] === '' || !NUMERIC.test(parts[1]!)) return null;
  return { interpretation: parts[0]!, number: parts[1]! };
}

/**
 * A result that must not be read as a measured value (R-9 cannot be done, a cancelled or
 * cannot-be-done order): value, comparator and limit go, the device's text stays.
 */
function withholdValue(obs: Observation, raw: string): void {
  if (obs.value === null && obs.comparator === null && obs.limit === undefined) return;
  obs.text = obs.text ?? (raw === '' ? null : raw);
  obs.value = null;
  obs.comparator = null;
  delete obs.limit;
}

/**
 * One analyzer (non-strip) R record → observation. `unitUnknown`: the dialect says the unit sent
 * has no known meaning, so a number is published as text only.
 */
function analyzerObservation(r: AstmResult, code: string, name: string, mapping: TestMapping | undefined, loincSent: string | null, unitUnknown = false): Observation {
  const interpreted = interpretedValue(r);
  const raw = interpreted ? interpreted.number : rawValue(r);
  const flags: string[] = [];
  let value: number | null = null;
  let comparator: Observation['comparator'] = null;
  let limit: number | null | undefined;
  let text: string | null = interpreted ? interpreted.interpretation : raw === '' ? null : raw;
  const m = NUMERIC.exec(raw);
  const rangeFlag = r.abnormalFlags.find((f) => f === '<' || f === '>');
  if (interpreted && m && !m[1] && !rangeFlag) {
    value = Number(m[2]);
  } else if (m && !m[1] && !rangeFlag) {
    value = Number(m[2]);
    text = null;
  } else if (m) {
    // Off the measuring range: the number is the device's limit, never the value (rule 5).
    comparator = (m[1] ?? rangeFlag) as Observation['comparator'];
    limit = Number(m[2]);
    flags.push(comparator!.startsWith('>') ? 'HI' : 'LO');
  } else if (/^(hi|high)$/i.test(raw) || /^(lo|low)$/i.test(raw)) {
    const hi = /^h/i.test(raw);
    flags.push(hi ? 'HI' : 'LO');
    comparator = hi ? '>' : '<';
    limit = null;
  } else if (raw !== '' && /^-+$/.test(raw)) flags.push('no-value');
  // R-7 `<`/`>` with a text result (DETECTED below the measuring range): the flag still says so.
  if (rangeFlag && !m) flags.push(rangeFlag === '>' ? 'HI' : 'LO');
  for (const f of r.abnormalFlags) {
    if (f === '<' || f === '>') continue;
    const n = ABNORMAL_FLAGS[f];
    if (n === undefined) flags.push(`flag:${f}`);
    else if (n !== null) flags.push(n);
  }
  const unitSent = r.units.trim();
  if (unitUnknown) {
    // The schema requires a unit with every number: a number (or limit) in an unknown unit is text only.
    if (!mapping && !loincSent) flags.push('unmapped-code');
    flags.push('unit-unknown');
    return { code, name, loinc: loincSent ?? mapping?.loinc ?? null, value: null, unit: null, ucum: null, flags, text: rawValue(r) === '' ? null : rawValue(r), comparator: null };
  }
  const ucumSent = unitSent === '' ? null : ucumOf(unitSent);
  let loinc = loincSent ?? mapping?.loinc ?? null;
  if (!mapping && !loincSent) flags.push('unmapped-code');
  if (unitSent !== '' && ucumSent === null) flags.push('unit-unknown');
  // A LOINC code is for one kind of quantity: a result in another unit is converted when the
  // conversion is exact (um3 → fL, g/dL → g/L: a power of ten), else it keeps its unit and loses the code.
  let unitOut = unitSent;
  let ucumOut = ucumSent;
  if (mapping?.ucum && ucumSent !== null && ucumSent !== mapping.ucum && !loincSent) {
    const converted = value !== null && m ? convertExact(m[2]!, ucumSent, mapping.ucum) : null;
    if (converted !== null) {
      value = converted;
      unitOut = mapping.ucum;
      ucumOut = mapping.ucum;
      flags.push(`converted-from:${ucumSent}`);
    } else {
      loinc = null;
      flags.push('unit-mismatch');
    }
  }
  const obs: Observation = {
    code,
    name,
    loinc,
    value,
    unit: unitSent === '' ? (mapping?.ucum ?? null) : unitOut,
    ucum: unitSent === '' ? (mapping?.ucum ?? null) : ucumOut,
    flags,
    text,
    comparator,
  };
  if (limit !== undefined) obs.limit = limit;
  return obs;
}

/**
 * A LOINC code the device sends itself in R-3: the dialect's component, else component 1 (E1394's
 * universal test id) or component 5 right after a local code in 4 (Horiba: `^^^MCV^787-2`); only
 * a code whose check digit is right.
 */
function loincSentIn(comps: readonly string[], dialect: AstmDialect): string | null {
  const at = (n: number): string => (comps[n - 1] ?? '').trim();
  const candidates = dialect.loincComponent ? [at(dialect.loincComponent)] : [at(1), at(4) !== '' ? at(5) : ''];
  return candidates.find((c) => isLoinc(c)) ?? null;
}

/**
 * The table entry of a result: by its code, else by the local code (the dialect's component) when
 * every other component of the test id is empty or the LOINC code the device sent: a table entry
 * names one quantity, so it never covers a test id that holds a result aspect.
 */
function mappingFor(comps: readonly string[], code: string, local: string, loincSent: string | null, dialect: AstmDialect, mappings: Record<string, TestMapping> | undefined): TestMapping | undefined {
  const direct = mappings?.[code] ?? dialect.tests[code];
  if (direct) return direct;
  const rest = comps.map((c) => c.trim()).filter((c, i) => c !== '' && i !== dialect.codeComponent - 1 && c !== loincSent);
  if (local === '' || rest.length > 0) return undefined;
  return mappings?.[local] ?? dialect.tests[local];
}

function observationFor(r: AstmResult, dialect: AstmDialect, mappings: Record<string, TestMapping> | undefined): Observation {
  const comps = r.testId;
  const code = (dialect.identity ? dialect.identity(comps) : testCode(comps)) || '?';
  const local = (comps[dialect.codeComponent - 1] ?? '').trim();
  const loincSent = loincSentIn(comps, dialect);
  const mapping = mappingFor(comps, code, local, loincSent, dialect, mappings);
  const universalName = (comps[(dialect.nameComponent ?? 2) - 1] ?? '').trim();
  const name = mapping?.name ?? (universalName || code);
  const userMapped = mappings?.[code] !== undefined || (mapping !== undefined && mappings?.[local] === mapping);
  let obs: Observation;
  const raw = rawValue(r);
  if (mapping?.strip && !userMapped) {
    const unit = r.units.trim();
    // `5` + `mg/dl` is `5 mg/dl`; a word (`neg`, `norm`) stands alone whatever unit the pad has.
    const deviceText = unit !== '' && NUMERIC.test(raw) ? `${raw} ${unit}` : raw;
    const abnormal = r.abnormalFlags.some((f) => f !== 'N');
    const s = stripObservation(mapping.strip, code, deviceText, abnormal);
    obs = { ...s, code, name: mapping.name };
    if (loincSent) obs.loinc = loincSent;
    for (const f of r.abnormalFlags) {
      const n = ABNORMAL_FLAGS[f];
      if (n && n !== 'abnormal' && !obs.flags.includes(n)) obs.flags.push(n);
    }
    // R-7 `>` / `<`: off the pad's range. The number is the limit, never the value (as for analyzers).
    const rangeFlag = r.abnormalFlags.find((f) => f === '<' || f === '>');
    if (rangeFlag) {
      obs.flags.push(rangeFlag === '>' ? 'HI' : 'LO');
      if (obs.value !== null) {
        obs.comparator = rangeFlag;
        obs.limit = obs.value;
        obs.value = null;
        obs.text = obs.text ?? raw;
      }
    }
  } else {
    obs = analyzerObservation(r, code, name, mapping, loincSent, dialect.unknownUnits?.includes(r.units.trim()) ?? false);
  }
  if (obs.value !== null && obs.unit === null) {
    // A number is published only with its unit: without one it stays text.
    obs.text = obs.text ?? String(obs.value);
    obs.value = null;
    obs.flags.push('no-unit');
  }
  const status = r.status.trim().toUpperCase();
  if (status !== '' && status !== 'F') obs.flags.push(STATUS_FLAGS[status] ?? `status:${status}`);
  // R-9 X: the device could not do the test; a number it sent anyway is not a result.
  if (status === 'X') withholdValue(obs, raw);
  // R-6 as sent; one made only of delimiters (Mindray `^`) is no range.
  if (r.record.repeats(6).flat().some((c) => c.trim() !== '')) obs.flags.push(`reference:${r.referenceRange.trim()}`);
  obs.flags.push(...commentFlags(r.comments, 'result'));
  return obs;
}

/**
 * H-12, the processing id (first component), → what the run is. E1394 names P (production), T
 * (training), D (debugging) and Q (quality control); vendors add their own (Mindray BS: `PR`
 * patient result, `QR` QC result, `CR` calibration result). Only a plain production / patient
 * run (P, PR, or none sent) can be a patient's result; an id not in this table is never taken for
 * one either: it becomes `qc` with `processing:unrecognised:<id>`.
 */
const PROCESSING: Readonly<Record<string, { category: ResultCategory; flag: string | null } | null>> = {
  '': null,
  P: null,
  PR: null,
  Q: { category: 'qc', flag: null },
  QR: { category: 'qc', flag: 'processing:qc-result' },
  QC: { category: 'qc', flag: 'processing:qc-result' },
  CR: { category: 'calibration', flag: 'processing:calibration-result' },
  T: { category: 'qc', flag: 'processing:training' },
  D: { category: 'qc', flag: 'processing:debugging' },
};

/** The run H-12 names, or null for a plain patient run. */
export function processingRun(processingId: string): { category: ResultCategory; flag: string | null } | null {
  const id = (processingId.split('^')[0] ?? '').trim().toUpperCase();
  if (Object.hasOwn(PROCESSING, id)) return PROCESSING[id]!;
  const shown = /^[A-Z0-9]{1,8}$/.test(id) ? id : '?';
  return { category: 'qc', flag: `processing:unrecognised:${shown}` };
}

/** O-12 action C (cancel) and O-26 report type X (cannot be done): the values are not results. */
function orderWithheldFlags(order: AstmOrder): string[] {
  const flags: string[] = [];
  if (order.actionCode.trim().toUpperCase() === 'C') flags.push('order:cancelled');
  if (order.reportType.trim().toUpperCase() === 'X') flags.push('order:cannot-be-done');
  return flags;
}

/**
 * The specimen type of one order from its codes: each code's own specimen (dialect table), else
 * the dialect's; codes of different specimen kinds give null and `mixed`.
 */
function specimenTypeOf(codes: string[], dialect: AstmDialect): { type: string | null; mixed: boolean } {
  const kinds = new Set(codes.map((c) => dialect.tests[c]?.specimen ?? dialect.specimenType));
  if (kinds.size === 1) return { type: [...kinds][0]!, mixed: false };
  const named = [...kinds].filter((k) => k !== null);
  return { type: null, mixed: named.length > 1 };
}

/** O-16 specimen descriptors that name a control material rather than a patient's specimen. */
const CONTROL_DESCRIPTOR = /^(control|ctrl|qc|kontrola|controle)$/i;
/** O-16 descriptors that name a calibrator. */
const CALIBRATOR_DESCRIPTOR = /^(cal|calibrator|calibration)$/i;

function categoryOf(order: AstmOrder, msg: AstmMessage, dialect: AstmDialect): ResultCategory {
  const run = processingRun(msg.header?.processingId ?? '');
  if (run) return run.category;
  if (order.actionCode.trim().toUpperCase() === 'Q') return 'qc';
  const descriptor = order.specimenDescriptor.map((c) => c.trim());
  if (descriptor.some((c) => CALIBRATOR_DESCRIPTOR.test(c))) return 'calibration';
  if (descriptor.some((c) => CONTROL_DESCRIPTOR.test(c))) return 'control';
  return dialect.category?.(order, msg) ?? 'patient';
}

/**
 * The naive time of a sample and which field it came from, named in the record's flags
 * (`time:<source>`): the latest result time (R-13 test completed, else R-12 test started, per
 * result), else O-23 (results reported: the instrument's own time of the result, the only time
 * some send), O-8 (collected), O-7 (requested), O-15 (specimen received), and last H-14 (the
 * message's own time, which changes when the device sends the message again).
 */
function sampleTime(order: AstmOrder, msg: AstmMessage): { time: string; source: string } | null {
  const times = order.results
    .map((r) => {
      const completed = parseAstmDate(r.completedAt);
      if (completed) return { time: completed, source: 'completed' };
      const started = parseAstmDate(r.startedAt);
      return started ? { time: started, source: 'started' } : null;
    })
    .filter((t): t is { time: string; source: string } => t !== null)
    .sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
  if (times.length) return times.at(-1)!;
  const fields = [
    [order.reportedAt, 'reported'],
    [order.collectedAt, 'collected'],
    [order.requestedAt, 'requested'],
    [order.receivedAt, 'specimen-received'],
    [msg.header?.timestamp ?? '', 'message'],
  ] as const;
  for (const [v, source] of fields) {
    const t = parseAstmDate(v);
    if (t) return { time: t, source };
  }
  return null;
}

/**
 * The specimen id of an order: where the device's `specimen_id_at` option or the dialect says (the cobas c311 puts a counter in O-3.1 and
 * the id in O-3.2), else the first non-empty component of O-3 (the specimen id), else of O-4 (the
 * instrument's specimen id: Sysmex sends only that, its number in component 3).
 */
function specimenIdOf(order: AstmOrder, dialect: AstmDialect, configured?: AstmOptions['specimen_id_at']): string | null {
  const at = configured ?? dialect.specimenIdAt;
  if (at) {
    const v = ((at.field === 3 ? order.specimen : order.instrumentSpecimen)[at.component - 1] ?? '').trim();
    if (v !== '') return v;
  }
  return [...order.specimen, ...order.instrumentSpecimen].map((c) => c.trim()).find((c) => c !== '') ?? null;
}

function patientId(p: AstmPatient): string | null {
  for (const id of [p.practiceId, p.laboratoryId, p.patientId3]) {
    const v = id.split('^')[0]!.trim();
    if (v !== '' && v !== '-') return v;
  }
  return null;
}

/**
 * H-5 (sender name or id, by component) of a message's H record, read as Latin-1 (sender fields
 * are ASCII); empty when there is no readable H record. Exported because the sender names the
 * device, for whoever must tell devices apart before decoding (a listener that serves several).
 */
export function headerSender(text: Buffer): string[] {
  const first = splitRecords(text.toString('latin1')).find((r) => r[0] === 'H' || r[0] === 'h');
  if (!first || !parseDelimiters(first)) return [];
  return parseMessage(first).header?.sender ?? [];
}

/** The dialect of a message: the forced one, else the one its H-5 sender matches. */
export function dialectOf(text: Buffer, forced?: string): AstmDialect {
  if (forced) return findDialect(forced)!;
  return detectDialect(headerSender(text));
}

/** One complete message (H … L bytes) → drafts, as the session and `decode` both use it. */
export function decodeAstmMessage(bytes: Buffer, ctx: DecodeContext, options: Partial<AstmOptions> = {}): MessageDecode {
  const dialect = dialectOf(bytes, options.dialect);
  const encoding = options.encoding ?? dialect.encoding;
  const decoded = decodeText(bytes, encoding, options.fallback_encoding ?? dialect.fallbackEncoding);
  const msg = parseMessage(decoded.text, decoded.encoding);
  const issues: DecodeIssue[] = msg.issues.map((reason) => ({ reason, bytes }));
  if (decoded.invalid) issues.push({ reason: 'invalid UTF-8 in the message; decoded with replacement characters', bytes });
  if (decoded.fellBack) issues.push({ reason: `not UTF-8: read as ${decoded.encoding} (encoding auto)`, bytes });
  const out: MessageDecode = { drafts: [], issues, device: {}, dialect, kind: 'empty' };
  if (!msg.header) return out;
  const facts = dialect.identify(msg.header.sender);
  const identity: DeviceIdentity = {
    id: ctx.deviceId,
    driver: ASTM_DRIVER_ID,
    manufacturer: dialect.manufacturer,
    model: facts.model,
    serial: facts.serial,
    firmware: facts.firmware,
  };
  out.device = { model: facts.model, serial: facts.serial, firmware: facts.firmware, manufacturer: dialect.manufacturer };
  const senderKey = facts.serial ?? msg.header.sender.join('^');
  const headerFlags = commentFlags(msg.header.comments, 'header');
  for (const patient of msg.patients) {
    for (const order of patient.orders) {
      if (order.results.length === 0) continue;
      const when = sampleTime(order, msg);
      if (!when) {
        issues.push({ reason: 'a sample with results has no valid date/time (R-13, R-12, O-23, O-8, O-7, O-15, H-14); not stored', bytes });
        continue;
      }
      const observations = order.results.map((r) => observationFor(r, dialect, options.mappings));
      const withheld = orderWithheldFlags(order);
      if (withheld.length > 0) order.results.forEach((r, i) => withholdValue(observations[i]!, rawValue(r)));
      const category = categoryOf(order, msg, dialect);
      const specimenId = specimenIdOf(order, dialect, options.specimen_id_at);
      const time = when.time;
      const flags = [...headerFlags, ...commentFlags(patient.comments, 'patient'), ...commentFlags(order.comments, 'order'), ...withheld];
      const run = processingRun(msg.header.processingId);
      if (run?.flag) flags.push(run.flag);
      flags.push(`time:${when.source}`);
      if (decoded.invalid) flags.push('encoding-error');
      if (decoded.fellBack) flags.push(`encoding:fallback-${decoded.encoding}`);
      const codes = [...new Set(observations.map((o) => o.code))].sort();
      const specimen = specimenTypeOf(codes, dialect);
      if (specimen.mixed) flags.push('specimen:mixed');
      const operator = order.results.map((r) => (r.operator[0] ?? '').trim()).find((o) => o !== '') ?? null;
      out.drafts.push({
        key: [senderKey, specimenId ?? '', time, codes.join(',')].join('|'),
        device: { ...identity },
        category,
        specimen: { id: specimenId, type: specimen.mixed ? null : (specimen.type ?? (order.specimenDescriptor[0]?.trim() || null)) },
        patient: category === 'patient' ? { id: patientId(patient) } : null,
        operator: operator ? { id: operator } : null,
        observed_at: naiveToZoned(time, ctx.timezone),
        device_time: time,
        observations,
        flags,
      });
    }
  }
  if (out.drafts.length > 0) out.kind = 'results';
  else if (msg.queries.length > 0) out.kind = 'query';
  else if (msg.records.length === 2 && msg.records[1]!.type === 'L' && msg.issues.length === 0) out.kind = 'keep-alive';
  return out;
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// decode(): a capture (raw device bytes, or a session transcript) → drafts
// ────────────────────────────────────────────────────────────────────────────────────────────────

/** The complete messages of a capture as the live link would take them, and the link's problems. */
export function astmMessages(capture: Capture, options: AstmOptions): { messages: Buffer[]; issues: Array<DecodeIssue & { detail?: string }> } {
  const bytes = deviceBytes(capture);
  const { messages, issues } = options.framing === 'bare' ? collectBareMessages(bytes, options.max_frame_bytes) : collectMessages(bytes, options.max_frame_bytes);
  return { messages, issues: issues.map((i) => ({ reason: i.reason, detail: i.detail, ...(i.bytes ? { bytes: i.bytes } : {}) })) };
}

export interface PlacedIssue {
  /** What went wrong, without its place: identical problems share it. */
  reason: string;
  /** What exactly, for this one (the frame number seen …); the first of a run is shown. */
  detail?: string;
  /** Byte offset in the device's bytes (-1 when not found). */
  at: number;
  /** The message (1-based) it is in, for problems inside a complete message. */
  message?: number;
  bytes?: Buffer;
}

/**
 * Issues in the order of their place in the capture, each run of identical problems as one line
 * with its count and the bytes it spans (`bad-frame checksum: … (×12, bytes 310…4420)`), so a
 * replay of a noisy capture stays readable. Each merged issue keeps all the bytes of its run.
 */
export function collapseIssues(placed: PlacedIssue[]): DecodeIssue[] {
  const sorted = placed.map((p, i) => ({ ...p, i })).sort((a, b) => (a.at === b.at ? a.i - b.i : a.at - b.at));
  const out: DecodeIssue[] = [];
  let k = 0;
  while (k < sorted.length) {
    let end = k + 1;
    while (end < sorted.length && sorted[end]!.reason === sorted[k]!.reason) end++;
    const run = sorted.slice(k, end);
    const first = run[0]!;
    const last = run.at(-1)!;
    const parts: string[] = [];
    if (run.length > 1) parts.push(`×${run.length}`);
    if (first.message !== undefined) parts.push(run.length === 1 || last.message === first.message ? `message ${first.message}` : `messages ${first.message}…${last.message}`);
    if (first.at >= 0) parts.push(run.length === 1 ? `at byte ${first.at}` : `bytes ${first.at}…${last.at}`);
    if (first.detail) parts.push(run.length === 1 ? first.detail : `first: ${first.detail}`);
    const bytes = run.flatMap((r) => (r.bytes ? [r.bytes] : []));
    out.push({
      reason: parts.length ? `${first.reason} (${parts.join('; ')})` : first.reason,
      ...(run.length > 1 ? { count: run.length } : {}),
      ...(bytes.length ? { bytes: Buffer.concat(bytes) } : {}),
    });
    k = end;
  }
  return out;
}

export function decodeAstm(capture: Capture, ctx: DecodeContext): DecodeResult {
  const options = parseAstmOptions(ctx.options ?? {}, `device ${ctx.deviceId}: options`);
  const wire = deviceBytes(capture);
  const { messages, issues: linkIssues } = astmMessages(capture, options);
  const placed: PlacedIssue[] = [];
  // Place each link problem by its bytes, in order (a repeat of the same bytes is found after the last).
  let from = 0;
  for (const i of linkIssues) {
    const at = i.bytes && i.bytes.length > 0 ? wire.indexOf(i.bytes, from) : -1;
    if (at >= 0) from = at + 1;
    placed.push({ reason: i.reason, ...(i.detail ? { detail: i.detail } : {}), at, ...(i.bytes ? { bytes: i.bytes } : {}) });
  }
  const drafts: ResultDraft[] = [];
  let device: DeviceFacts = {};
  let search = 0;
  messages.forEach((m, n) => {
    // A message's text is cut into frames on the wire: its H record's first bytes say where it starts.
    const head = m.subarray(0, Math.min(12, m.length));
    const found = wire.indexOf(head, search);
    const at = found >= 0 ? found : -1;
    if (found >= 0) search = found + 1;
    const message = n + 1;
    const r = decodeAstmMessage(m, ctx, options);
    drafts.push(...r.drafts);
    for (const i of r.issues) placed.push({ reason: i.reason, at, message, ...(i.bytes ? { bytes: i.bytes } : {}) });
    if (r.kind === 'query') placed.push({ reason: 'a query (Q) message: no results in it', at, message, bytes: m });
    if (r.kind === 'keep-alive') placed.push({ reason: 'a keep-alive message (only H and L records): nothing to store', at, message });
    if (r.kind === 'empty') placed.push({ reason: 'a message with no results (no R record under an O record)', at, message, bytes: m });
    device = { ...device, ...r.device };
  });
  return { drafts: { result: drafts }, issues: collapseIssues(placed), device };
}
