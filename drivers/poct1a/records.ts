/**
 * `poct1a` records: a device's HEL → its identity, and each observation message (`OBS.R01`
 * patient, `OBS.R02` QC / calibration / proficiency) → result drafts, one per `SVC` (one service,
 * one sample), with one observation per `OBS` in it. `decode()` replays a stored capture or a
 * whole conversation (the documents both ways; only the device's observation messages give records).
 *
 * Category (rule 5: a control run is never a patient result): decided by message type and run
 * type together, never `role_cd` alone, because devices send QC runs whose `SVC.role_cd` still
 * says `OBS`: an `OBS.R02`, an `SVC` holding a `CTC` (control) instead of a `PT`, or a QC role is
 * never `patient`; only an `OBS.R01` whose role is `OBS` (or absent) with no control in it is.
 *
 * Record identity (rule 3): the device's `DEV.device_id` (else serial, else the configured id) +
 * `SVC.observation_dttm` as sent + the category + the observation ids, all things a device resends
 * unchanged, so a resent observation is stored once.
 */
import { deviceBytes } from '../../src/driver-sdk/capture.ts';
import type { Capture, DecodeContext, DecodeIssue, DecodeResult, DeviceFacts } from '../../src/driver-sdk/index.ts';
import { attribute, element, elements, parseDocument, value, values, valueOf, type Poct1aMessage, type XmlNode } from '../../src/protocols/poct1a/document.ts';
import { Poct1aSplitter } from '../../src/protocols/poct1a/splitter.ts';
import type { DeviceIdentity, Observation, ResultCategory, ResultDraft } from '../../src/records/types.ts';
import { naiveToZoned } from '../../src/util/time.ts';
import { detectProfile, findProfile, type DeviceHello, type Poct1aProfile } from './profiles/index.ts';

export const POCT1A_DRIVER_ID = 'poct1a';

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Message names
// ────────────────────────────────────────────────────────────────────────────────────────────────

/** The standard's name for a message the device sent (its profile's aliases, e.g. `HEL.R02`). */
export function canonicalType(root: string, profile: Poct1aProfile): string {
  const r = root.trim().toUpperCase();
  const aliases = { ...(findProfile('generic')?.messageAliases ?? {}), ...(profile.messageAliases ?? {}) };
  return aliases[r] ?? r;
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// HEL
// ────────────────────────────────────────────────────────────────────────────────────────────────

export interface Hello extends DeviceHello {
  serial: string | null;
  manufacturerName: string | null;
  swVersion: string | null;
  /** `DCP.application_timeout`, seconds. */
  applicationTimeoutS: number | null;
  /** `DSC.max_message_sz`: the largest message the device takes, bytes. */
  maxMessageBytes: number | null;
  connectionProfile: string | null;
  topics: string[];
  directives: string[];
  /** `HDR.creation_dttm` of the HEL: the device's clock at that moment. */
  deviceClock: string | null;
}

function positiveInt(text: string | null): number | null {
  if (text === null || !/^\d+$/.test(text)) return null;
  const n = Number(text);
  return n > 0 && Number.isSafeInteger(n) ? n : null;
}

export function readHello(m: Poct1aMessage): Hello {
  const dev = element(m.body, 'DEV');
  const dsc = element(dev, 'DSC') ?? element(m.body, 'DSC');
  const dcp = element(dev, 'DCP') ?? element(m.body, 'DCP');
  return {
    deviceId: value(dev, 'DEV.device_id'),
    vendorId: value(dev, 'DEV.vendor_id'),
    modelId: value(dev, 'DEV.model_id'),
    serial: value(dev, 'DEV.serial_id'),
    manufacturerName: value(dev, 'DEV.manufacturer_name'),
    swVersion: value(dev, 'DEV.sw_version'),
    applicationTimeoutS: positiveInt(value(dcp, 'DCP.application_timeout')),
    maxMessageBytes: positiveInt(value(dsc, 'DSC.max_message_sz')),
    connectionProfile: value(dsc, 'DSC.connection_profile_cd'),
    topics: values(dsc, 'DSC.topics_supported_cd'),
    directives: values(dsc, 'DSC.directives_supported_cd'),
    deviceClock: m.header.creationTime,
  };
}

export function identityOf(hello: Hello | null, profile: Poct1aProfile, deviceId: string): DeviceIdentity {
  return {
    id: deviceId,
    driver: POCT1A_DRIVER_ID,
    manufacturer: profile.id !== 'generic' ? profile.manufacturer : (hello?.manufacturerName ?? hello?.vendorId ?? profile.manufacturer),
    model: hello?.modelId ?? profile.model,
    serial: hello?.serial ?? null,
    firmware: hello?.swVersion ?? null,
  };
}

export function factsOf(identity: DeviceIdentity): DeviceFacts {
  return { manufacturer: identity.manufacturer, model: identity.model, serial: identity.serial, firmware: identity.firmware };
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Times
// ────────────────────────────────────────────────────────────────────────────────────────────────

const POCT_TIME = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$/;

/**
 * A POCT1-A time → the absolute time and the device's wall clock. A time with an offset keeps
 * it; one without (the DCA sends `SVC.observation_dttm` with none) is made absolute with the
 * device's configured zone. Null when it is not a time.
 */
export function readPoctTime(text: string | null, timezone: string): { at: string; wall: string; zoned: boolean } | null {
  if (text === null) return null;
  const m = POCT_TIME.exec(text.trim());
  if (!m) return null;
  const wall = m[1]!;
  if (!m[3]) {
    try {
      return { at: naiveToZoned(wall, timezone), wall, zoned: false };
    } catch {
      return null;
    }
  }
  const off = m[3] === 'Z' ? '+00:00' : m[3].includes(':') ? m[3] : `${m[3].slice(0, 3)}:${m[3].slice(3)}`;
  if (Number.isNaN(Date.parse(`${wall}${off}`))) return null;
  return { at: `${wall}${off}`, wall, zoned: true };
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Observations
// ────────────────────────────────────────────────────────────────────────────────────────────────

/** Device unit spellings (lower-cased, `µ` as `u`) → UCUM. */
const UCUM: Readonly<Record<string, string>> = {
  'mg/dl': 'mg/dL', 'mmol/l': 'mmol/L', 'mmol/mol': 'mmol/mol', '%': '%', 'mg/l': 'mg/L', 'g/l': 'g/L', 'g/dl': 'g/dL',
  'mg/g': 'mg/g', 'mg/mmol': 'mg/mmol', 'umol/l': 'umol/L', 'u/l': 'U/L', 'iu/l': '[IU]/L', 'ng/ml': 'ng/mL', 'sec': 's', 's': 's',
  'inr': '{INR}', 'mmhg': 'mm[Hg]', 'meq/l': 'meq/L',
};

export function ucumOf(unit: string): string | null {
  return UCUM[unit.trim().toLowerCase().replace(/µ|μ/g, 'u')] ?? null;
}

const INTERPRETATION: Readonly<Record<string, string | null>> = { N: null, L: 'L', H: 'H', LL: 'LL', HH: 'HH', A: 'abnormal', AA: 'abnormal' };
const LOINC_RE = /^\d{1,7}-\d$/;
const NUMBER = /^(<=|>=|<|>)?\s*([-+]?\d+(?:\.\d+)?)$/;

/** `[80;120]` → `80;120`, for a flag. */
function limitText(node: XmlNode | null): string | null {
  const v = valueOf(node);
  if (v === null) return null;
  const unit = attribute(node, 'U')?.trim();
  return `${v.replace(/^\[|\]$/g, '')}${unit ? ` ${unit}` : ''}`;
}

/** A note's text (`NTE.text`), first 200 characters. */
function noteTexts(node: XmlNode | null): string[] {
  return elements(node, 'NTE')
    .map((n) => value(n, 'NTE.text'))
    .filter((t): t is string => t !== null)
    .map((t) => t.slice(0, 200));
}

function observationOf(o: XmlNode, profile: Poct1aProfile): Observation {
  const idEl = element(o, 'OBS.observation_id');
  const code = (attribute(idEl, 'V') ?? value(o, 'OBS.observation_id') ?? '').trim() || '?';
  const system = (attribute(idEl, 'SN') ?? '').trim().toUpperCase();
  const display = attribute(idEl, 'DN')?.trim() || null;
  const valueEl = element(o, 'OBS.value');
  const raw = value(o, 'OBS.value');
  const unitSent = attribute(valueEl, 'U')?.trim() || null;
  const ucumSent = unitSent ? ucumOf(unitSent) : null;
  const flags: string[] = [];
  const codings = Object.entries(profile.observations).find(([k]) => k.toLowerCase() === code.toLowerCase())?.[1] ?? [];
  const coding = codings.find((c) => c.ucum === ucumSent) ?? null;
  let loinc: string | null = null;
  if (system === 'LN' && LOINC_RE.test(code)) loinc = code;
  else if (coding) loinc = coding.loinc;
  else if (codings.length > 0) flags.push('unit-mismatch');
  else flags.push('unmapped-code');
  if (unitSent && !ucumSent) flags.push('unit-unknown');
  let v: number | null = null;
  let comparator: Observation['comparator'] = null;
  let limit: number | null | undefined;
  let text: string | null = null;
  const qualitative = value(o, 'OBS.qualitative_value');
  if (raw !== null) {
    const m = NUMBER.exec(raw);
    if (m && !m[1]) v = Number(m[2]);
    else if (m) {
      // Off the measuring range: the number is the device's limit, never the value (rule 5).
      comparator = m[1] as Observation['comparator'];
      limit = Number(m[2]);
      flags.push(comparator!.startsWith('>') ? 'HI' : 'LO');
      text = raw;
    } else if (/^(hi|high)$/i.test(raw) || /^(lo|low)$/i.test(raw)) {
      const hi = /^h/i.test(raw);
      flags.push(hi ? 'HI' : 'LO');
      comparator = hi ? '>' : '<';
      limit = null;
      text = raw;
    } else text = raw;
  }
  if (qualitative !== null) text = text ?? qualitative;
  const interpretation = value(o, 'OBS.interpretation_cd');
  if (interpretation !== null) {
    const f = INTERPRETATION[interpretation.toUpperCase()];
    if (f === undefined) flags.push(`interpretation:${interpretation}`);
    else if (f !== null) flags.push(f);
  }
  const method = value(o, 'OBS.method_cd');
  if (method) flags.push(`method:${method}`);
  const status = value(o, 'OBS.status_cd');
  if (status) flags.push(`status:${status}`);
  const normal = limitText(element(o, 'OBS.normal_lo-hi_limit'));
  if (normal) flags.push(`normal:${normal}`);
  const critical = limitText(element(o, 'OBS.critical_lo-hi_limit'));
  if (critical) flags.push(`critical:${critical}`);
  // Notes on an observation are the device's own (calibration slope, reporting units).
  for (const n of noteTexts(o)) flags.push(`note:${n}`);
  const obs: Observation = {
    code,
    name: coding?.name ?? display ?? code,
    loinc,
    value: v,
    unit: unitSent,
    ucum: ucumSent,
    flags,
    text,
    comparator,
  };
  if (limit !== undefined) obs.limit = limit;
  if (obs.value !== null && obs.unit === null) {
    // A number is published only with its unit.
    obs.text = raw;
    obs.value = null;
    obs.flags.push('no-unit');
  }
  return obs;
}

/** SVC.role_cd → category, for roles that are not a patient's observation. */
const ROLE_CATEGORY: Readonly<Record<string, ResultCategory>> = {
  LQC: 'qc', EQC: 'qc', QC: 'qc', CAL: 'calibration', PRF: 'proficiency', PT: 'proficiency',
};

export function categoryOf(type: string, svc: XmlNode, profile: Poct1aProfile): ResultCategory {
  const role = (value(svc, 'SVC.role_cd') ?? '').toUpperCase();
  const byRole = profile.roles?.[role] ?? ROLE_CATEGORY[role];
  const control = element(svc, 'CTC') !== null;
  if (type === 'OBS.R01' && (role === 'OBS' || role === '') && !control) return 'patient';
  // Never patient from here on: a QC run (OBS.R02, a CTC, a QC role), whatever its role_cd says.
  return byRole ?? 'qc';
}

const SPECIMEN: Readonly<Record<string, string>> = { BLD: 'blood', CBLD: 'capillary blood', ABLD: 'arterial blood', VBLD: 'venous blood', UR: 'urine', SER: 'serum', PLAS: 'plasma' };

export interface ObservationDecode {
  drafts: ResultDraft[];
  issues: DecodeIssue[];
}

/** The observation ids of a message, for an event (codes are never patient data). */
export function observationCodes(m: Poct1aMessage): string[] {
  return elements(m.body, 'SVC').flatMap((svc) =>
    [svc, ...elements(svc, 'PT'), ...elements(svc, 'CTC')].flatMap((n) => elements(n, 'OBS').map((o) => (attribute(element(o, 'OBS.observation_id'), 'V') ?? '?').trim())),
  );
}

/** One OBS message → one draft per SVC. */
export function decodeObservationMessage(m: Poct1aMessage, type: string, hello: Hello | null, profile: Poct1aProfile, ctx: DecodeContext): ObservationDecode {
  const identity = identityOf(hello, profile, ctx.deviceId);
  const who = hello?.deviceId ?? identity.serial ?? ctx.deviceId;
  const drafts: ResultDraft[] = [];
  const issues: DecodeIssue[] = [];
  const services = elements(m.body, 'SVC');
  if (services.length === 0) issues.push({ reason: `${type} with no SVC (service) element`, bytes: m.bytes });
  for (const svc of services) {
    const pts = elements(svc, 'PT');
    const ctcs = elements(svc, 'CTC');
    const obsNodes = [...elements(svc, 'OBS'), ...pts.flatMap((p) => elements(p, 'OBS')), ...ctcs.flatMap((c) => elements(c, 'OBS'))];
    if (obsNodes.length === 0) {
      issues.push({ reason: `${type}: a service with no OBS in it`, bytes: m.bytes });
      continue;
    }
    const sentTime = value(svc, 'SVC.observation_dttm');
    const when = readPoctTime(sentTime, ctx.timezone);
    if (!when) {
      issues.push({ reason: `${type}: SVC.observation_dttm is missing or not a time; not stored`, bytes: m.bytes });
      continue;
    }
    const category = categoryOf(type, svc, profile);
    const observations = obsNodes.map((o) => observationOf(o, profile));
    const flags: string[] = [];
    const role = value(svc, 'SVC.role_cd');
    if (role && role.toUpperCase() !== 'OBS') flags.push(`role:${role}`);
    if (category !== 'patient' && type === 'OBS.R01') flags.push('qc-in-obs-r01');
    const status = value(svc, 'SVC.status_cd');
    if (status) flags.push(`status:${status}`);
    const reason = value(svc, 'SVC.reason_cd');
    if (reason) flags.push(`reason:${reason}`);
    const seq = value(svc, 'SVC.sequence_nbr');
    if (seq) flags.push(`sequence:${seq}`);
    const rgt = elements(svc, 'RGT');
    for (const r of rgt) {
      const name = value(r, 'RGT.name');
      const lot = value(r, 'RGT.lot_number');
      const exp = value(r, 'RGT.expiration_date');
      if (name) flags.push(`reagent:${name}`);
      if (lot) flags.push(`reagent-lot:${lot}`);
      if (exp) flags.push(`reagent-expiry:${exp}`);
    }
    const ctcLot = ctcs.map((c) => value(c, 'CTC.lot_number') ?? value(c, 'CTC.name')).find((x) => x !== null);
    if (ctcLot) flags.push(`control:${ctcLot}`);
    // Notes at the service or patient level may be typed by a person: withheld, only their presence said.
    if (noteTexts(svc).length > 0) flags.push('note-withheld:service');
    if (pts.some((p) => noteTexts(p).length > 0)) flags.push('note-withheld:patient');
    if (!when.zoned) flags.push('time:device-zone');
    const operator = value(element(svc, 'OPR'), 'OPR.operator_id') ?? value(element(m.body, 'OPR'), 'OPR.operator_id');
    const spc = element(svc, 'SPC') ?? pts.map((p) => element(p, 'SPC')).find((x) => x !== null) ?? null;
    const spcType = value(spc, 'SPC.type_cd');
    const codes = [...new Set(observations.map((o) => o.code))].sort();
    const codingSpecimens = new Set(
      codes.map((c) => Object.entries(profile.observations).find(([k]) => k.toLowerCase() === c.toLowerCase())?.[1][0]?.specimen ?? null),
    );
    const specimenType = spcType ? (SPECIMEN[spcType.toUpperCase()] ?? spcType) : codingSpecimens.size === 1 ? [...codingSpecimens][0]! : null;
    const patientId = category === 'patient' ? (pts.map((p) => value(p, 'PT.patient_id')).find((x) => x !== null) ?? null) : null;
    drafts.push({
      // The time as the device sent it: a change of the configured zone must not make a resend new.
      key: [who, sentTime, category, codes.join(',')].join('|'),
      device: { ...identity },
      category,
      specimen: { id: value(spc, 'SPC.specimen_id') ?? value(spc, 'SPC.id'), type: specimenType },
      patient: category === 'patient' ? { id: patientId } : null,
      operator: operator ? { id: operator } : null,
      observed_at: when.at,
      device_time: when.wall,
      observations,
      flags,
    });
  }
  return { drafts, issues };
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// decode(): a capture (raw device bytes, or a session transcript) → drafts
// ────────────────────────────────────────────────────────────────────────────────────────────────

export function decodePoct1a(capture: Capture, ctx: DecodeContext): DecodeResult {
  const forced = typeof ctx.options?.profile === 'string' ? findProfile(ctx.options.profile) : undefined;
  if (ctx.options?.profile !== undefined && !forced) throw new Error(`device ${ctx.deviceId}: options.profile: unknown profile ${JSON.stringify(ctx.options.profile)}`);
  const splitter = new Poct1aSplitter();
  const bytes = deviceBytes(capture);
  const events = [...splitter.push(bytes), ...splitter.end()];
  const drafts: ResultDraft[] = [];
  const issues: DecodeIssue[] = [];
  let hello: Hello | null = null;
  let profile = forced ?? detectProfile(null);
  let device: DeviceFacts = {};
  let sawPoct = false;
  for (const e of events) {
    if (e.kind === 'problem') {
      // A byte stream that is not XML at all is another device's capture: no POCT1-A issue to say.
      if (sawPoct || e.reason !== 'garbage') issues.push({ reason: `${e.reason}: ${e.detail}`, bytes: e.bytes });
      continue;
    }
    const parsed = parseDocument(e.bytes);
    if (!parsed.ok) {
      issues.push({ reason: parsed.reason, bytes: e.bytes });
      continue;
    }
    sawPoct = true;
    const type = canonicalType(parsed.message.root, profile);
    if (type === 'HEL.R01') {
      hello = readHello(parsed.message);
      profile = forced ?? detectProfile(hello);
      device = factsOf(identityOf(hello, profile, ctx.deviceId));
    } else if (type.startsWith('OBS.')) {
      const r = decodeObservationMessage(parsed.message, type, hello, profile, ctx);
      drafts.push(...r.drafts);
      issues.push(...r.issues);
    }
  }
  return { drafts: { result: drafts }, issues, device };
}
