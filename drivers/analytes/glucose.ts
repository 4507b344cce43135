/**
 * Glucose, shared by every glucose meter family (LifeScan, Abbott FreeStyle, Ascensia Contour): the
 * LOINC code of each specimen and unit, the measuring range the LifeScan meters report HI/LO
 * against, and the builders that turn a reading into an `Observation` so that every meter codes
 * glucose the same way.
 *
 * LOINC codes, and where each comes from (facts only; no code or prose copied):
 *   POCT1   41653-7 "Glucose [Mass/volume] in Capillary blood by Glucometer": the shared research
 *           note `research/astm-urinalysis-poct1a.md` §5 (a point-of-care glucose OBX, verified
 *           there against HL7 `nhsn-dqm` examples), and the design brief's record example.
 *   HDDT    14743-9 "Glucose [Moles/volume] in Capillary blood by Glucometer", the mmol/L twin of
 *           41653-7: gematik's HDDT value set "Blood Glucose Measurement" lists both as the codes
 *           glucometer makers use; the LOINC name as a public LOINC code page gives it.
 *   CGM     99504-3 "Glucose [Mass/volume] in Interstitial fluid": HL7's Continuous Glucose
 *           Monitoring implementation guide (its sensor-reading example in mg/dL) and the LOINC
 *           code page, which names it the value a CGM device reports.
 * No moles/volume code for interstitial fluid is listed: no sensor this project reads reports
 * mmol/L on the wire, and a code is not added without a source.
 *
 * The β-ketone a glucose meter also reads on its own strips is coded in `ketone.ts`, with the same
 * levels and observation builder as glucose (this file).
 *
 * Sections: codes · measuring range · observations · results.
 */
import type { DeviceIdentity, Observation, ResultDraft } from '../../src/records/types.ts';
import { naiveToZoned } from '../../src/util/time.ts';

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Codes
// ────────────────────────────────────────────────────────────────────────────────────────────────

export type GlucoseUnit = 'mg/dL' | 'mmol/L';
export type GlucoseSpecimen = 'capillary blood' | 'interstitial fluid';

/** How one analyte a meter reads is coded in an `Observation` (glucose here, β-ketone in `ketone.ts`). */
export interface AnalyteCoding {
  /** `Observation.code`: the short code consumers already match on. */
  code: string;
  /** `Observation.name`. */
  name: string;
  unit: string;
  /** UCUM spelling of `unit`. */
  ucum: string;
  loinc: string;
  /** The LOINC long name, as the source gives it. */
  loincName: string;
  /** Where the code was read (see the header of the file that holds it). */
  source: string;
}

/** How one kind of glucose reading is coded; `source` is POCT1, HDDT or CGM (see the file header). */
export interface GlucoseCoding extends AnalyteCoding {
  specimen: GlucoseSpecimen;
  unit: GlucoseUnit;
}

export const GLUCOSE_CODINGS: readonly GlucoseCoding[] = [
  {
    code: 'GLU',
    name: 'Glucose',
    specimen: 'capillary blood',
    unit: 'mg/dL',
    ucum: 'mg/dL',
    loinc: '41653-7',
    loincName: 'Glucose [Mass/volume] in Capillary blood by Glucometer',
    source: 'POCT1',
  },
  {
    code: 'GLU',
    name: 'Glucose',
    specimen: 'capillary blood',
    unit: 'mmol/L',
    ucum: 'mmol/L',
    loinc: '14743-9',
    loincName: 'Glucose [Moles/volume] in Capillary blood by Glucometer',
    source: 'HDDT',
  },
  {
    code: 'GLU-ISF',
    name: 'Glucose (interstitial fluid, sensor)',
    specimen: 'interstitial fluid',
    unit: 'mg/dL',
    ucum: 'mg/dL',
    loinc: '99504-3',
    loincName: 'Glucose [Mass/volume] in Interstitial fluid',
    source: 'CGM',
  },
];

/** The coding of a specimen and unit; null when no sourced code exists (then publish no LOINC rather than a wrong one). */
export function glucoseCoding(specimen: GlucoseSpecimen, unit: GlucoseUnit): GlucoseCoding | null {
  return GLUCOSE_CODINGS.find((c) => c.specimen === specimen && c.unit === unit) ?? null;
}

function requiredCoding(specimen: GlucoseSpecimen, unit: GlucoseUnit): GlucoseCoding {
  const c = glucoseCoding(specimen, unit);
  if (!c) throw new Error(`no glucose coding for ${specimen} in ${unit}`);
  return c;
}

/** A strip reading in mg/dL (41653-7). */
export const CAPILLARY_GLUCOSE_MG_DL = requiredCoding('capillary blood', 'mg/dL');
/** A strip reading in mmol/L (14743-9). */
export const CAPILLARY_GLUCOSE_MMOL_L = requiredCoding('capillary blood', 'mmol/L');
/** A sensor reading in mg/dL (99504-3). */
export const INTERSTITIAL_GLUCOSE_MG_DL = requiredCoding('interstitial fluid', 'mg/dL');

/** A strip reading in the unit the meter sent: both units have a capillary-blood code. */
export function capillaryGlucoseCoding(unit: GlucoseUnit): GlucoseCoding {
  return unit === 'mmol/L' ? CAPILLARY_GLUCOSE_MMOL_L : CAPILLARY_GLUCOSE_MG_DL;
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Measuring range
// ────────────────────────────────────────────────────────────────────────────────────────────────

/**
 * The 20–600 mg/dL range of the LifeScan meters (research note `research/glucose-meters.md` §2.1
 * and §2.2: Tidepool reads values past these limits as low and high on the Ultra 2, and the
 * UltraEasy's HI/LO codes as > 600 and < 20 mg/dL). A reading outside it is a HI/LO flag with the limit,
 * never a number. Other meters report their own limits (FreeStyle Neo 20–500, Contour from its
 * header), which they pass as the limit of a HI/LO level.
 */
export const GLUCOSE_LO_LIMIT = 20;
export const GLUCOSE_HI_LIMIT = 600;

/** A reading in mg/dL read against a measuring range. */
export type GlucoseMgdl = { kind: 'value'; mgdl: number } | { kind: 'HI'; limit: number } | { kind: 'LO'; limit: number };

export function rangeGlucose(mgdl: number): GlucoseMgdl {
  if (mgdl > GLUCOSE_HI_LIMIT) return { kind: 'HI', limit: GLUCOSE_HI_LIMIT };
  if (mgdl < GLUCOSE_LO_LIMIT) return { kind: 'LO', limit: GLUCOSE_LO_LIMIT };
  return { kind: 'value', mgdl };
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Observations
// ────────────────────────────────────────────────────────────────────────────────────────────────

/**
 * A level in its coding's unit (glucose, or a meter's other analyte): a number, or HI/LO past the
 * meter's limit (null when the meter does not say which limit).
 */
export type GlucoseLevel = { kind: 'value'; value: number } | { kind: 'HI'; limit: number | null } | { kind: 'LO'; limit: number | null };

/** The limits a meter reports HI/LO against, in the reading's unit; a side the meter does not give is null. */
export interface MeterLimits {
  lo: number | null;
  hi: number | null;
}

/**
 * A meter's reading as it sent it (a number, or its HI/LO marker) → its level, with the limit of
 * the side it is past. Without limits (an unknown model, a header without them) the limit is null,
 * never a guessed one.
 */
export function meterLevel(reading: number | 'HI' | 'LO', limits: MeterLimits | null): GlucoseLevel {
  if (reading === 'HI') return { kind: 'HI', limit: limits?.hi ?? null };
  if (reading === 'LO') return { kind: 'LO', limit: limits?.lo ?? null };
  return { kind: 'value', value: reading };
}

/** The fields a level decides. HI/LO carry no value: the flag, the comparator and the limit say it all. */
export function glucoseLevelFields(level: GlucoseLevel): Pick<Observation, 'value' | 'flags' | 'comparator' | 'limit'> {
  if (level.kind === 'value') return { value: level.value, flags: [], comparator: null };
  if (level.kind === 'HI') return { value: null, flags: ['HI'], comparator: '>', limit: level.limit };
  return { value: null, flags: ['LO'], comparator: '<', limit: level.limit };
}

/** One observation of a meter analyte (`limit` only on HI/LO). */
export function codedGlucoseObservation(coding: AnalyteCoding, level: GlucoseLevel): Observation {
  const base: Observation = {
    code: coding.code,
    name: coding.name,
    loinc: coding.loinc,
    value: null,
    unit: coding.unit,
    ucum: coding.ucum,
    flags: [],
    text: null,
    comparator: null,
  };
  // Spread over `base`, the level's fields keep base's key order (the published order), `limit` last.
  return { ...base, ...glucoseLevelFields(level) };
}

/** A capillary-blood reading in mg/dL (what the LifeScan meters send) → its observation. */
export function glucoseObservation(g: GlucoseMgdl): Observation {
  return codedGlucoseObservation(CAPILLARY_GLUCOSE_MG_DL, g.kind === 'value' ? { kind: 'value', value: g.mgdl } : g);
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Results
// ────────────────────────────────────────────────────────────────────────────────────────────────

/** One reading of a glucose meter, as every meter family's records build it. */
export interface GlucoseMeterReading {
  key: string;
  device: DeviceIdentity;
  /** A control-solution run: category `control` and specimen `control solution`, never a patient result. */
  control: boolean;
  /** The specimen of a patient reading (default capillary blood, a strip). */
  specimen?: GlucoseSpecimen;
  /** The meter's naive local time `YYYY-MM-DDTHH:MM:SS`. */
  time: string;
  /** The device's configured zone, which turns `time` into `observed_at`. */
  timezone: string;
  observation: Observation;
  flags: string[];
}

/**
 * A reading → its result. A meter reading names no patient and no operator: the meters this
 * project reads either keep none or are never asked for them.
 */
export function glucoseMeterDraft(r: GlucoseMeterReading): ResultDraft {
  return {
    key: r.key,
    device: { ...r.device },
    category: r.control ? 'control' : 'patient',
    specimen: { id: null, type: r.control ? 'control solution' : (r.specimen ?? 'capillary blood') },
    patient: null,
    operator: null,
    observed_at: naiveToZoned(r.time, r.timezone),
    device_time: r.time,
    observations: [r.observation],
    flags: r.flags,
  };
}
