/**
 * `astm`: the generic CLSI LIS2-A2 (ASTM E1394 records over E1381 framing) analyzer driver.
 *
 * The device sends; the daemon receives (serial, TCP client or TCP server). Each complete message
 * (H … L) is decoded with the dialect its H record names (`dialects/`), committed, and only then is
 * its last frame ACKed (`src/protocols/astm/link.ts`). One result per order (O record): the
 * sample, with one observation per R record under it.
 *
 * Device options (`devices[].options`):
 *   dialect              force a dialect id instead of recognising it from H-5
 *   encoding             latin1 | utf-8 | windows-1250 | auto (default: the dialect's)
 *   mappings             { "<code>": { name, loinc?, ucum? } } adds or overrides code mappings
 *   receive_timeout_ms   receiver timer (default 30 000); reply_timeout_ms sender timer (15 000)
 *   max_frame_bytes      longest frame accepted (default 64 000); frame_text_size for sending (240)
 *
 * Record identity (rule 3): sender name/serial (H-5) + specimen id + test time + the set of codes,
 * all fields the device resends unchanged, so a resent message gives the same ids.
 *
 * Sections: options · message → drafts · decode() · session · simulator · definition.
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
import { SessionReporter } from '../../src/driver-sdk/meter-session.ts';
import { deviceBytes } from '../../src/driver-sdk/capture.ts';
import type { DeviceIdentity, DeviceState, Observation, ResultCategory, ResultDraft } from '../../src/records/types.ts';
import type { ByteTransport } from '../../src/transports/transport.ts';
import { definedOnly, SimulatorOptionReader } from '../../src/driver-sdk/simulator-options.ts';
import { seededRandom } from '../../src/util/random.ts';
import { ChunkedWriter } from '../../src/driver-sdk/simulator-wire.ts';
import { hostTimeZone, naiveToZoned, nowInZone } from '../../src/util/time.ts';
import { ACK, ENQ, EOT, frameMessage, NAK, type FramingStyle } from '../../src/protocols/astm/frame.ts';
import { ASTM_LINK_DEFAULTS, AstmLink, collectMessages, type AstmLinkIssue, type AstmLinkMessage } from '../../src/protocols/astm/link.ts';
import {
  decodeText,
  parseAstmDate,
  parseMessage,
  splitRecords,
  parseDelimiters,
  TEXT_ENCODINGS,
  type AstmComment,
  type AstmMessage,
  type AstmOrder,
  type AstmPatient,
  type AstmResult,
  type TextEncoding,
} from '../../src/protocols/astm/records.ts';
import { stripObservation, unitKey } from '../urinalysis/urine-strip-analytes.ts';
import { DIALECTS, detectDialect, findDialect, type AstmDialect, type TestMapping } from './dialects/index.ts';

export const ASTM_DRIVER_ID = 'astm';

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Options
// ────────────────────────────────────────────────────────────────────────────────────────────────

export interface AstmOptions {
  dialect?: string;
  encoding?: TextEncoding;
  mappings?: Record<string, TestMapping>;
  receive_timeout_ms: number;
  reply_timeout_ms: number;
  max_frame_bytes: number;
  frame_text_size: number;
}

const DEFAULT_OPTIONS: AstmOptions = {
  receive_timeout_ms: ASTM_LINK_DEFAULTS.receiveTimeoutMs,
  reply_timeout_ms: ASTM_LINK_DEFAULTS.replyTimeoutMs,
  max_frame_bytes: ASTM_LINK_DEFAULTS.maxFrameBytes,
  frame_text_size: ASTM_LINK_DEFAULTS.frameTextSize,
};
const KNOWN_OPTIONS = new Set(['dialect', 'encoding', 'mappings', 'receive_timeout_ms', 'reply_timeout_ms', 'max_frame_bytes', 'frame_text_size']);
const LOINC_RE = /^\d{1,7}-\d$/;

/** Reads `options` (from the device config). Throws an Error that names the bad field. */
export function parseAstmOptions(o: Record<string, unknown>, where = 'options'): AstmOptions {
  const out: AstmOptions = { ...DEFAULT_OPTIONS };
  for (const k of Object.keys(o)) if (!KNOWN_OPTIONS.has(k)) throw new Error(`${where}.${k}: unknown option (known: ${[...KNOWN_OPTIONS].join(', ')})`);
  if (o.dialect !== undefined) {
    if (typeof o.dialect !== 'string' || !findDialect(o.dialect)) {
      throw new Error(`${where}.dialect: must be one of ${DIALECTS.map((d) => d.id).join(', ')}`);
    }
    out.dialect = o.dialect;
  }
  if (o.encoding !== undefined) {
    if (typeof o.encoding !== 'string' || !TEXT_ENCODINGS.includes(o.encoding as TextEncoding)) {
      throw new Error(`${where}.encoding: must be one of ${TEXT_ENCODINGS.join(', ')}`);
    }
    out.encoding = o.encoding as TextEncoding;
  }
  if (o.mappings !== undefined) {
    if (typeof o.mappings !== 'object' || o.mappings === null || Array.isArray(o.mappings)) {
      throw new Error(`${where}.mappings: must be a map of code → {name, loinc, ucum}`);
    }
    const maps: Record<string, TestMapping> = {};
    for (const [code, v] of Object.entries(o.mappings as Record<string, unknown>)) {
      const at = `${where}.mappings["${code}"]`;
      if (code.trim() === '') throw new Error(`${where}.mappings: a code must not be empty`);
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${at}: must be an object {name, loinc, ucum}`);
      const m = v as Record<string, unknown>;
      for (const k of Object.keys(m)) if (!['name', 'loinc', 'ucum', 'source'].includes(k)) throw new Error(`${at}.${k}: unknown field (known: name, loinc, ucum, source)`);
      if (typeof m.name !== 'string' || m.name.trim() === '') throw new Error(`${at}.name: required, a non-empty string`);
      if (m.loinc !== undefined && m.loinc !== null && (typeof m.loinc !== 'string' || !LOINC_RE.test(m.loinc))) {
        throw new Error(`${at}.loinc: must be a LOINC code like 2345-7, or null`);
      }
      if (m.ucum !== undefined && m.ucum !== null && (typeof m.ucum !== 'string' || m.ucum.trim() === '')) {
        throw new Error(`${at}.ucum: must be a UCUM unit string like mg/dL, or null`);
      }
      if (m.source !== undefined && typeof m.source !== 'string') throw new Error(`${at}.source: must be a string`);
      maps[code] = {
        name: m.name,
        loinc: (m.loinc as string | null | undefined) ?? null,
        ...(m.ucum !== undefined ? { ucum: m.ucum as string | null } : {}),
        source: (m.source as string | undefined) ?? 'site configuration (options.mappings)',
      };
    }
    out.mappings = maps;
  }
  for (const [name, min] of [['receive_timeout_ms', 10], ['reply_timeout_ms', 10], ['max_frame_bytes', 64], ['frame_text_size', 16]] as const) {
    const v = o[name];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) throw new Error(`${where}.${name}: must be a number >= ${min}`);
    out[name] = v;
  }
  return out;
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Message → drafts
// ────────────────────────────────────────────────────────────────────────────────────────────────

/** Device unit spellings (lower-cased, `µ` as `u`) → UCUM, for analyzer results (strip results use the strip table). */
const UCUM_UNITS: Readonly<Record<string, string>> = {
  'mg/dl': 'mg/dL', 'mg/l': 'mg/L', 'g/l': 'g/L', 'g/dl': 'g/dL', 'u/l': 'U/L', 'iu/l': '[IU]/L', '%': '%', 'mg/g': 'mg/g',
  'mg/mmol': 'mg/mmol', 'mmol/l': 'mmol/L', 'umol/l': 'umol/L', 'mmol/mol': 'mmol/mol', 'fl': 'fL', 'pg': 'pg',
  '10e3/ul': '10*3/uL', '10e6/ul': '10*6/uL', '10^3/ul': '10*3/uL', '10^6/ul': '10*6/uL', '/ul': '/uL', 'p/ul': '/uL', 'p/hpf': '/[HPF]',
  'p/lpf': '/[LPF]', 'ng/ml': 'ng/mL', 'mu/l': 'mU/L',
};

export function ucumOf(unit: string): string | null {
  return UCUM_UNITS[unitKey(unit)] ?? null;
}

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
  device: Partial<DeviceState>;
  dialect: AstmDialect | null;
  /** What the message was: results, a query (Q records), or nothing usable. */
  kind: 'results' | 'query' | 'empty';
}

function commentText(c: AstmComment): string {
  return c.text.join('^').trim();
}

function commentFlags(comments: AstmComment[]): string[] {
  return comments.map(commentText).filter((t) => t !== '').map((t) => `comment:${t.slice(0, 200)}`);
}

const NUMERIC = /^(<=|>=|<|>)?\s*([-+]?\d+(?:\.\d+)?)$/;

/** R-4 as one string (components joined), as the device sent it. */
function rawValue(r: AstmResult): string {
  return r.value.filter((v) => v.trim() !== '').join(' ').trim();
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
function analyzerObservation(r: AstmResult, code: string, mapping: TestMapping | undefined, loincSent: string | null, unitUnknown = false): Observation {
  const raw = rawValue(r);
  const flags: string[] = [];
  let value: number | null = null;
  let comparator: Observation['comparator'] = null;
  let limit: number | null | undefined;
  let text: string | null = raw === '' ? null : raw;
  const m = NUMERIC.exec(raw);
  const rangeFlag = r.abnormalFlags.find((f) => f === '<' || f === '>');
  if (m && !m[1] && !rangeFlag) {
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
    return { code, name: mapping?.name ?? code, loinc: loincSent ?? mapping?.loinc ?? null, value: null, unit: null, ucum: null, flags, text: raw === '' ? null : raw, comparator: null };
  }
  const ucumSent = unitSent === '' ? null : ucumOf(unitSent);
  let loinc = loincSent ?? mapping?.loinc ?? null;
  if (!mapping && !loincSent) flags.push('unmapped-code');
  if (unitSent !== '' && ucumSent === null) flags.push('unit-unknown');
  // A LOINC code is for one kind of quantity: a result in another unit keeps its unit, loses the code.
  if (mapping?.ucum && ucumSent !== null && ucumSent !== mapping.ucum && !loincSent) {
    loinc = null;
    flags.push('unit-mismatch');
  }
  const obs: Observation = {
    code,
    name: mapping?.name ?? code,
    loinc,
    value,
    unit: unitSent === '' ? (mapping?.ucum ?? null) : unitSent,
    ucum: unitSent === '' ? (mapping?.ucum ?? null) : ucumSent,
    flags,
    text,
    comparator,
  };
  if (limit !== undefined) obs.limit = limit;
  return obs;
}

function observationFor(r: AstmResult, dialect: AstmDialect, mappings: Record<string, TestMapping> | undefined): Observation {
  const comps = r.testId;
  const code = (comps[dialect.codeComponent - 1] ?? '').trim() || comps.find((c) => c.trim() !== '')?.trim() || '?';
  const sent = dialect.loincComponent ? (comps[dialect.loincComponent - 1] ?? '').trim() : '';
  const loincSent = LOINC_RE.test(sent) ? sent : null;
  const mapping = mappings?.[code] ?? dialect.tests[code];
  let obs: Observation;
  const raw = rawValue(r);
  if (mapping?.strip && !mappings?.[code]) {
    const unit = r.units.trim();
    // `5` + `mg/dl` is `5 mg/dl`; a word (`neg`, `norm`) stands alone whatever unit the pad has.
    const deviceText = unit !== '' && NUMERIC.test(raw) ? `${raw} ${unit}` : raw;
    const abnormal = r.abnormalFlags.some((f) => f !== 'N');
    const s = stripObservation(mapping.strip, code, deviceText, abnormal);
    obs = { ...s, code, name: mapping.name };
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
    obs = analyzerObservation(r, code, mapping, loincSent, dialect.unknownUnits?.includes(r.units.trim()) ?? false);
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
  if (r.referenceRange.trim() !== '') obs.flags.push(`reference:${r.referenceRange.trim()}`);
  obs.flags.push(...commentFlags(r.comments));
  return obs;
}

/** H-12 processing ids that are never a patient's result: training and debugging runs. */
const NON_PATIENT_PROCESSING: Readonly<Record<string, string>> = { T: 'processing:training', D: 'processing:debugging' };

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

function categoryOf(order: AstmOrder, msg: AstmMessage, dialect: AstmDialect): ResultCategory {
  const processing = msg.header?.processingId.trim().toUpperCase() ?? '';
  if (processing === 'Q' || Object.hasOwn(NON_PATIENT_PROCESSING, processing)) return 'qc';
  if (order.actionCode.trim().toUpperCase() === 'Q') return 'qc';
  if (order.specimenDescriptor.some((c) => /^(control|qc)$/i.test(c.trim()))) return 'control';
  return dialect.category?.(order, msg) ?? 'patient';
}

/**
 * The naive time of a sample and where it came from: the latest R-13 (test completed), else R-12,
 * O-8 (collected), O-7 (requested), O-15 (specimen received), and last H-14 (the message's own
 * time, which changes when the device sends the message again, so it is a last resort).
 */
function sampleTime(order: AstmOrder, msg: AstmMessage): { time: string; source: string } | null {
  const times = order.results.map((r) => parseAstmDate(r.completedAt) ?? parseAstmDate(r.startedAt)).filter((t): t is string => t !== null);
  if (times.length) return { time: times.sort().at(-1)!, source: 'result' };
  for (const [v, source] of [[order.collectedAt, 'collected'], [order.requestedAt, 'requested'], [order.receivedAt, 'specimen-received'], [msg.header?.timestamp ?? '', 'message']] as const) {
    const t = parseAstmDate(v);
    if (t) return { time: t, source };
  }
  return null;
}

function patientId(p: AstmPatient): string | null {
  for (const id of [p.practiceId, p.laboratoryId, p.patientId3]) {
    const v = id.split('^')[0]!.trim();
    if (v !== '' && v !== '-') return v;
  }
  return null;
}

/** The dialect of a message, from its H record (read as Latin-1: sender fields are ASCII). */
export function dialectOf(text: Buffer, forced?: string): AstmDialect {
  if (forced) return findDialect(forced)!;
  const first = splitRecords(text.toString('latin1')).find((r) => r[0] === 'H' || r[0] === 'h');
  if (!first || !parseDelimiters(first)) return detectDialect([]);
  return detectDialect(parseMessage(first).header?.sender ?? []);
}

/** One complete message (H … L bytes) → drafts, as the session and `decode` both use it. */
export function decodeAstmMessage(bytes: Buffer, ctx: DecodeContext, options: Partial<AstmOptions> = {}): MessageDecode {
  const dialect = dialectOf(bytes, options.dialect);
  const encoding = options.encoding ?? dialect.encoding;
  const decoded = decodeText(bytes, encoding, dialect.fallbackEncoding);
  const msg = parseMessage(decoded.text, decoded.encoding);
  const issues: DecodeIssue[] = msg.issues.map((reason) => ({ reason, bytes }));
  if (decoded.invalid) issues.push({ reason: 'invalid UTF-8 in the message; decoded with replacement characters', bytes });
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
  const headerFlags = commentFlags(msg.header.comments);
  for (const patient of msg.patients) {
    for (const order of patient.orders) {
      if (order.results.length === 0) continue;
      const when = sampleTime(order, msg);
      if (!when) {
        issues.push({ reason: 'a sample with results has no valid date/time (R-13, O-8, H-14); not stored', bytes });
        continue;
      }
      const observations = order.results.map((r) => observationFor(r, dialect, options.mappings));
      const withheld = orderWithheldFlags(order);
      if (withheld.length > 0) order.results.forEach((r, i) => withholdValue(observations[i]!, rawValue(r)));
      const category = categoryOf(order, msg, dialect);
      const specimenId = (order.specimen[0] ?? '').trim() || (order.instrumentSpecimen[0] ?? '').trim() || null;
      const time = when.time;
      const flags = [...headerFlags, ...commentFlags(patient.comments), ...commentFlags(order.comments), ...withheld];
      const processing = msg.header.processingId.trim().toUpperCase();
      if (Object.hasOwn(NON_PATIENT_PROCESSING, processing)) flags.push(NON_PATIENT_PROCESSING[processing]!);
      // No test time in the results: say which time the record carries.
      if (when.source !== 'result') flags.push(`time:${when.source}`);
      if (decoded.invalid) flags.push('encoding-error');
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
  return out;
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// decode(): a capture (raw device bytes, or a session transcript) → drafts
// ────────────────────────────────────────────────────────────────────────────────────────────────

export function decodeAstm(capture: Capture, ctx: DecodeContext): DecodeResult {
  const options = parseAstmOptions(ctx.options ?? {}, `device ${ctx.deviceId}: options`);
  const { messages, issues: linkIssues } = collectMessages(deviceBytes(capture), options.max_frame_bytes);
  const issues: DecodeIssue[] = linkIssues.map((i) => ({ reason: i.reason, bytes: i.bytes }));
  const drafts: ResultDraft[] = [];
  let device: Partial<DeviceState> = {};
  for (const m of messages) {
    const r = decodeAstmMessage(m, ctx, options);
    drafts.push(...r.drafts);
    issues.push(...r.issues);
    if (r.kind === 'query') issues.push({ reason: 'a query (Q) message: no results in it', bytes: m });
    if (r.kind === 'empty') issues.push({ reason: 'a message with no results', bytes: m });
    device = { ...device, ...r.device };
  }
  return { drafts, issues, device };
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Session: a passive receiver. The device bids for the line whenever it has results.
// ────────────────────────────────────────────────────────────────────────────────────────────────

class AstmSession implements DriverSession {
  private readonly opts: AstmOptions;
  private readonly link: AstmLink;
  private readonly report: SessionReporter;
  private stopped = false;
  private totals = { messages: 0, records: 0, inserted: 0, duplicates: 0 };

  constructor(private readonly host: SessionHost) {
    this.opts = parseAstmOptions(host.device.options ?? {}, `device ${host.device.id}: options`);
    this.report = new SessionReporter(host, ASTM_DRIVER_ID);
    this.link = new AstmLink(
      host.transport,
      {
        onMessage: (m) => this.onMessage(m),
        onIssue: (i) => this.onIssue(i),
        onTransmission: (phase) => this.onTransmission(phase),
      },
      {
        role: 'host',
        receiveTimeoutMs: this.opts.receive_timeout_ms,
        replyTimeoutMs: this.opts.reply_timeout_ms,
        maxFrameBytes: this.opts.max_frame_bytes,
        frameTextSize: this.opts.frame_text_size,
      },
    );
  }

  async start(): Promise<void> {
    this.link.start();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.link.stop();
  }

  async command(verb: string, params: Record<string, unknown>): Promise<unknown> {
    if (this.stopped) throw new Error('astm: the session is stopped');
    switch (verb) {
      case 'status':
        return { ...this.report.state };
      case 'send': {
        // Host → device (orders, query answers): records as text, one per line or CR-separated.
        const text = params.message;
        if (typeof text !== 'string' || !/^H/.test(text)) throw new Error('astm: send needs {"message": "H|\\\\^&|…\\rL|1|N"} starting with an H record');
        const records = splitRecords(text);
        await this.link.send(Buffer.from(records.map((r) => `${r}\r`).join(''), 'latin1'));
        return { sent: records.length };
      }
      default:
        throw new Error(`astm: unknown command "${verb}" (known: status, send)`);
    }
  }

  /** Bytes kept for a person to look at; an empty or missing piece is not worth a quarantine entry. */
  private quarantine(bytes: Buffer | undefined, reason: string): void {
    if (bytes && bytes.length > 0) this.report.quarantine(bytes, reason);
  }

  private onTransmission(phase: 'start' | 'end'): void {
    if (this.stopped) return;
    if (phase === 'start') {
      this.totals = { messages: 0, records: 0, inserted: 0, duplicates: 0 };
      this.report.patch({ status: 'downloading', status_detail: null, last_seen: this.host.now().toISOString() });
      this.report.emit('download_started', 'the device started a transmission', { trigger: 'device' });
      return;
    }
    const t = this.totals;
    if (t.messages > 0) {
      this.report.emit('download_finished', `received ${t.records} results in ${t.messages} messages: ${t.inserted} new, ${t.duplicates} already stored`, {
        records: t.records,
        inserted: t.inserted,
        duplicates: t.duplicates,
      });
    }
    if (this.report.state.status === 'downloading') this.report.patch({ status: 'ok', status_detail: null });
  }

  private onIssue(i: AstmLinkIssue): void {
    if (this.stopped) return;
    this.quarantine(i.bytes, i.reason);
    this.host.log.warn({ reason: i.reason, kind: i.kind, answer: i.answer ?? null }, 'astm: link issue');
    if (i.kind === 'receive-timeout' || i.kind === 'incomplete-message' || i.kind === 'link-closed') {
      if (i.bytes) this.report.emit('download_failed', `${i.detail}`, { reason: i.reason });
      if (this.report.state.status === 'downloading') this.report.patch({ status: 'ok', status_detail: null });
      return;
    }
    this.report.emit('bad_frame', `${i.kind}: ${i.detail}`, { reason: i.reason, answer: i.answer ?? null });
  }

  private async onMessage(m: AstmLinkMessage): Promise<void> {
    const ctx: DecodeContext = { deviceId: this.host.device.id, timezone: this.host.timezone };
    const r = decodeAstmMessage(m.text, ctx, this.opts);
    const capture: Capture = { kind: 'transcript', exchanges: m.exchanges };
    for (const issue of r.issues) this.host.log.warn({ reason: issue.reason }, 'astm: message problem');
    this.report.patch({ ...r.device, last_seen: this.host.now().toISOString() });
    if (r.drafts.length === 0) {
      // Nothing to store, but the message itself arrived intact: it is ACKed as E1381 requires
      // (a NAK would only make the device send the same message again, forever). The bytes are
      // kept in quarantine and the reason is an event.
      const reason = r.kind === 'query' ? 'query-unsupported' : 'no-results';
      this.quarantine(m.text, reason);
      this.report.emit(
        r.kind === 'query' ? 'device_error' : 'bad_frame',
        r.kind === 'query' ? 'the device sent a query (Q); this daemon holds no orders to answer it' : 'a message with no results in it',
        { reason },
      );
      return;
    }
    const stored = await this.host.commit({ result: r.drafts }, capture); // a rejection NAKs the last frame
    const t = this.totals;
    t.messages++;
    t.records += r.drafts.length;
    t.inserted += stored.inserted;
    t.duplicates += stored.duplicates;
    const at = this.host.now().toISOString();
    this.report.patch({ last_download: at, last_seen: at });
    if (r.issues.length > 0) {
      this.report.emit('bad_frame', `a message was stored with ${r.issues.length} problem(s)`, { reason: 'message-problems', problems: r.issues.map((i) => i.reason) });
    }
  }
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Simulator: an instrument that sends stored or generated messages, with the nasty variants.
// ────────────────────────────────────────────────────────────────────────────────────────────────

const FRAMINGS: readonly FramingStyle[] = ['record-etx', 'record-etb', 'single', 'split'];

const SIMULATOR_OPTION_HELP: Record<string, string> = {
  dialect: `whose messages to send: ${DIALECTS.map((d) => d.id).join(', ')} (default roche-cobas-c111)`,
  messages: 'messages to send instead: a list of strings, records separated by \\r or \\n (H … L)',
  count: 'generated messages sent when the link opens (default 1)',
  every_s: 'send another generated message every N seconds',
  control: 'true: generated messages are QC runs (O-12 = Q)',
  framing: 'record-etx | record-etb | single | split (default record-etb)',
  split_at: 'text bytes per frame for split and for long records (default 240)',
  lowercase_checksum: 'true: checksums in lowercase hex',
  corrupt_frame: 'N: corrupt frame N (1-based, counted over the session) once; the host must NAK it',
  max_chunk: 'largest write in bytes; chunk sizes are random from 1 to this (default: whole frames)',
  never_eot: 'true: never send EOT after a message',
  stall_after_frames: 'N: stop in silence after N frames of the first message (no EOT)',
  reply_timeout_ms: 'how long to wait for ACK/NAK (default 15000)',
  seed: 'random seed for reproducible runs',
  encoding: 'utf-8 | latin1: how text is written (default utf-8)',
  timezone: "IANA zone of the instrument's clock, for generated messages (default: the host's)",
};

export interface AstmSimulatorOptions {
  dialect: AstmDialect;
  messages?: string[];
  count: number;
  every_s?: number;
  control: boolean;
  framing: FramingStyle;
  split_at: number;
  lowercase_checksum: boolean;
  corrupt_frame?: number;
  max_chunk?: number;
  never_eot: boolean;
  stall_after_frames?: number;
  reply_timeout_ms: number;
  seed: number;
  encoding: 'utf-8' | 'latin1';
  timezone: string;
}

const SIMULATOR = 'astm simulator';

/** Checks untyped options (from YAML or the command line) and returns them typed, with defaults. */
export function parseSimulatorOptions(o: Record<string, unknown>): AstmSimulatorOptions {
  const read = new SimulatorOptionReader(o, SIMULATOR, Object.keys(SIMULATOR_OPTION_HELP));
  const dialects = DIALECTS.map((d) => d.id);
  const whole = (v: number | undefined): number | undefined => (v === undefined ? undefined : Math.floor(v));
  const message = (m: unknown, where: string): string => {
    if (typeof m !== 'string' || !/^H/.test(m)) throw read.error(where, 'a string starting with an H record');
    return m;
  };
  return definedOnly<AstmSimulatorOptions>({
    dialect: findDialect(read.oneOf('dialect', dialects, `one of ${dialects.join(', ')}`) ?? 'roche-cobas-c111')!,
    messages: read.list('messages', message, 'a list of strings, each starting with an H record'),
    count: read.number('count', 0) ?? 1,
    every_s: read.number('every_s', 0.01),
    control: read.boolean('control') ?? false,
    framing: read.oneOf('framing', FRAMINGS, FRAMINGS.join(' | ')) ?? 'record-etb',
    split_at: read.number('split_at', 1) ?? ASTM_LINK_DEFAULTS.frameTextSize,
    lowercase_checksum: read.boolean('lowercase_checksum') ?? false,
    corrupt_frame: whole(read.number('corrupt_frame', 1)),
    max_chunk: whole(read.number('max_chunk', 1)),
    never_eot: read.boolean('never_eot') ?? false,
    stall_after_frames: whole(read.number('stall_after_frames', 0)),
    reply_timeout_ms: read.number('reply_timeout_ms', 10) ?? ASTM_LINK_DEFAULTS.replyTimeoutMs,
    seed: read.number('seed', 0) ?? Date.now(),
    encoding: read.oneOf('encoding', ['utf-8', 'latin1'] as const, 'utf-8 or latin1') ?? 'utf-8',
    timezone: read.timezone() ?? hostTimeZone(),
  });
}

/** YYYYMMDDHHMMSS on the instrument's clock, which keeps naive local time in `timezone`. */
function stamp(d: Date, timezone: string): string {
  return nowInZone(timezone, d).replace(/\D/g, '');
}

/** A plausible message from the dialect's sample description (generated values, no real patient). */
export function generateMessage(
  dialect: AstmDialect,
  random: () => number,
  now: Date,
  n: number,
  control = false,
  timezone = hostTimeZone(),
): string {
  const s = dialect.sample;
  const ts = stamp(now, timezone);
  const specimen = `${s.specimenPrefix}${String(100000 + n).slice(1)}`;
  const records = [
    `H|\\^&|||${s.sender}|||||||${control ? 'Q' : 'P'}|${s.version}|${ts}`,
    'P|1',
    `O|1|${specimen}||${s.tests.map((t) => t.testId).join('\\')}|R||||||${control ? 'Q' : 'N'}||||||||||||||F`,
  ];
  s.tests.forEach((t, i) => {
    let value: string;
    if (t.choices) value = t.choices[Math.floor(random() * t.choices.length)]!;
    else value = ((t.min ?? 0) + random() * ((t.max ?? 1) - (t.min ?? 0))).toFixed(t.decimals ?? 1);
    records.push(`R|${i + 1}|${t.testId}|${value}|${t.unit}||N||F||${s.operator}||${ts}|${s.instrument ?? ''}`);
  });
  records.push('L|1|N');
  return records.join('\r') + '\r';
}

export class AstmSimulator implements DeviceSimulator {
  private transport: ByteTransport | null = null;
  private link: AstmLink | null = null;
  private readonly random: () => number;
  private readonly wire: ChunkedWriter;
  private timer: NodeJS.Timeout | null = null;
  private generated = 0;
  private framesSent = 0;
  private corruptDone = false;
  private stallDone = false;
  private readonly retries = new Set<NodeJS.Timeout>();
  /** Every byte the simulator received from the host (tests read it). */
  readonly received: number[] = [];
  /** Messages the host acknowledged in full. */
  delivered = 0;
  /** Send failures (NAK limit, timeouts). */
  readonly failures: string[] = [];

  constructor(readonly options: AstmSimulatorOptions) {
    this.random = seededRandom(options.seed);
    // The link hears of a failed write, fails the send and the message is sent again later.
    this.wire = new ChunkedWriter(this.random, options.max_chunk ?? 0, (t) => t === this.transport, 'report');
  }

  attach(transport: ByteTransport): void {
    this.detach();
    this.transport = transport;
    const o = this.options;
    this.link = new AstmLink(
      transport,
      { onMessage: async () => undefined, onIssue: () => undefined },
      {
        role: 'instrument',
        replyTimeoutMs: o.reply_timeout_ms,
        frameTextSize: o.split_at,
        write: (b) => this.wire.write(transport, [b]),
      },
    );
    this.link.start();
    transport.on('data', this.onData);
    transport.on('open', this.onOpen);
    if (transport.isOpen) this.onOpen();
    if (o.every_s) this.timer = setInterval(() => this.sendNext(), o.every_s * 1000);
  }

  detach(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const r of this.retries) clearTimeout(r);
    this.retries.clear();
    if (this.transport) {
      this.transport.off('data', this.onData);
      this.transport.off('open', this.onOpen);
    }
    void this.link?.stop();
    this.link = null;
    this.transport = null;
  }

  private readonly onData = (chunk: Buffer): void => {
    for (const b of chunk) if (b === ACK || b === NAK || b === ENQ || b === EOT) this.received.push(b);
  };

  private readonly onOpen = (): void => {
    const o = this.options;
    if (o.messages) for (const m of o.messages) this.send(m);
    else for (let i = 0; i < o.count; i++) this.sendNext();
  };

  /** Sends one more generated message. */
  sendNext(): void {
    this.send(generateMessage(this.options.dialect, this.random, new Date(), ++this.generated, this.options.control, this.options.timezone));
  }

  /** Sends one message text (records separated by CR or LF). */
  send(text: string): void {
    if (!this.link) return;
    const body = Buffer.from(splitRecords(text).map((r) => `${r}\r`).join(''), this.options.encoding === 'latin1' ? 'latin1' : 'utf8');
    this.sendBytes(this.link, body);
  }

  /** A message the host did not take (no answer, NAK limit) is sent again a second later, up to 5 times, as instruments do. */
  private sendBytes(link: AstmLink, body: Buffer, attempt = 0): void {
    const o = this.options;
    const frames = frameMessage(body, o.framing, o.split_at);
    const stall = o.stall_after_frames !== undefined && !this.stallDone;
    if (stall) this.stallDone = true;
    link
      .send(body, {
        frames,
        skipEot: o.never_eot,
        lowercaseChecksum: o.lowercase_checksum,
        ...(stall ? { stallAfterFrames: o.stall_after_frames } : {}),
        mangle: (frame) => {
          this.framesSent++;
          if (o.corrupt_frame !== undefined && !this.corruptDone && this.framesSent === o.corrupt_frame) {
            this.corruptDone = true;
            const bad = Buffer.from(frame);
            bad[2] = bad[2]! ^ 0x20; // a flipped bit in the text: the checksum no longer matches
            return bad;
          }
          return frame;
        },
      })
      .then(() => {
        if (!stall) this.delivered++;
      })
      .catch((err: Error) => {
        this.failures.push(err.message);
        if (attempt < 5 && this.link === link) {
          const retry = setTimeout(() => {
            this.retries.delete(retry);
            if (this.link === link) this.sendBytes(link, body, attempt + 1);
          }, 1000);
          this.retries.add(retry);
        }
      });
  }

}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Definition
// ────────────────────────────────────────────────────────────────────────────────────────────────

export const astmDriver: DriverDefinition = {
  id: ASTM_DRIVER_ID,
  kind: 'analyzer',
  vendor: 'various (CLSI LIS2-A2 / ASTM E1394)',
  models: DIALECTS.filter((d) => d.id !== 'generic').map((d) => d.description),
  usb: [],
  transports: ['serial', 'tcp', 'tcp-server', 'simulated'],
  serialDefaults: { baud_rate: 9600, data_bits: 8, parity: 'none', stop_bits: 1 },
  commands: {
    status: { description: 'the device state: model, serial and firmware from the last H record, last message time' },
    send: { description: 'send a message to the device (host → device, e.g. orders): {"message": "H|\\\\^&|…\\rL|1|N"}' },
  },
  decode: decodeAstm,
  createSession: (host) => new AstmSession(host),
  simulator: {
    description: 'an ASTM E1381/E1394 instrument that sends result messages (ENQ, frames, EOT) in a chosen dialect and framing',
    options: SIMULATOR_OPTION_HELP,
    create: (options) => new AstmSimulator(parseSimulatorOptions(options)),
  },
};
