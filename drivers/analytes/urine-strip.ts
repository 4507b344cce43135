/**
 * Urine test strip analytes, shared by every urinalysis reader dialect (CLINITEK Status, CLINITEK 50,
 * the ASTM urine dialects): one table of analytes with their LOINC codes and units, the ordinal
 * vocabulary readers print, and `parseStripValue`, which turns a reader's result text into
 * `{value, comparator, unit, ucum, text}` without inventing anything.
 *
 * LOINC codes, and where each comes from (facts only; no code or prose copied):
 *   NOTE    shared research note `research/astm-urinalysis-poct1a.md` §3.4 (the "by Test strip"
 *           codes; its confidence marker is kept in the `source` text).
 *   PANEL   loinc.org/24357-6 "Urinalysis macro (dipstick) panel - Urine", whose member list
 *           repeats the note's strip codes and adds 32167-9 Clarity of Urine.
 *   AUTO    "by Automated test strip" codes, the method a reader uses (LOINC method
 *           `Test strip.automated`). Found in public code lists in the code index: a Taiwanese FHIR
 *           code-system list (50551-1, 50555-2, 50558-6, 50560-2, 57734-6, 57735-3, 57751-0,
 *           60026-2, 62487-4), a LOINC mapping table of an ETL project (53326-5, 53327-3, 53328-1,
 *           50557-8, 50561-0, 50563-6), and findacode.com's page for 60026-2, which lists it as a
 *           member of panel 50556-0. Single public sources each: check them against the LOINC
 *           table before relying on them in a regulated interface.
 *   ACR     20621-9 "Albumin/Creatinine [Mass Ratio] in Urine by Test strip": the Taiwanese list
 *           above gives this display name; the note marks 20621-9 vs 13705-9 as unverified.
 *
 * Which code an observation gets: a reader is an automated strip reader, so `loincFor` prefers the
 * AUTO code and falls back to the strip code where no automated one is known. A result that is a
 * quantity in a unit of the code's kind (`500 mg/dL`, `>=300 mg/dL`, `Apr 200 Hem/uL`, `1.020`)
 * takes the quantitative code; an ordinal result (`Negative`, `Trace`, `1+`, `Positivo`) the
 * presence code. A quantity in a unit no known code fits (urobilinogen in µmol/L: the codes here
 * are mass/volume) gets no LOINC at all rather than a wrong one.
 *
 * Sections: types · analyte table · ordinal vocabulary · value parsing · coding · reader records.
 */
import type { DeviceConfig } from '../../src/config/types.ts';
import type { Observation } from '../../src/records/types.ts';

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Types
// ────────────────────────────────────────────────────────────────────────────────────────────────

export type UrineAnalyteCode =
  | 'GLU'
  | 'BIL'
  | 'KET'
  | 'SG'
  | 'BLD'
  | 'PH'
  | 'PRO'
  | 'UBG'
  | 'NIT'
  | 'LEU'
  | 'ALB'
  | 'CRE'
  | 'PCR'
  | 'ACR'
  | 'COLOR'
  | 'CLARITY'
  | 'ASC';

/** What a quantitative result measures; decides which units a quantitative code accepts. */
export type QuantityKind = 'mass-concentration' | 'substance-concentration' | 'count-concentration' | 'mass-ratio' | 'specific-gravity' | 'ph';

export interface LoincCode {
  code: string;
  /** The LOINC long name, as given by the source. */
  name: string;
  /** Where the code was read (see the file header: NOTE, PANEL, AUTO, ACR). */
  source: string;
}

export interface LoincByMethod {
  /** `[Presence]` (ordinal) code, when LOINC has one for this analyte and method. */
  ordinal: LoincCode | null;
  /** Quantitative code, and the kind of quantity it measures. */
  quantitative: (LoincCode & { kind: QuantityKind }) | null;
}

export interface UrineAnalyte {
  code: UrineAnalyteCode;
  /** English name, used as `Observation.name`. */
  name: string;
  /** "by Test strip" (manual read). */
  strip: LoincByMethod;
  /** "by Automated test strip" (a reader). */
  automated: LoincByMethod;
  /** The usual UCUM unit of a numeric result, or null for ordinal / free-text analytes. */
  ucum: string | null;
  /** Free text typed in by the user (colour, clarity): never parsed for numbers. */
  freeText: boolean;
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// The analyte table (data)
// ────────────────────────────────────────────────────────────────────────────────────────────────

const NOTE = 'research note astm-urinalysis-poct1a.md §3.4';
const PANEL = 'loinc.org/24357-6 panel members';
const AUTO = 'public LOINC code lists in the code index (see file header, AUTO)';

const code = (c: string, name: string, source: string): LoincCode => ({ code: c, name, source });
const quant = (c: string, name: string, source: string, kind: QuantityKind): LoincCode & { kind: QuantityKind } => ({
  code: c,
  name,
  source,
  kind,
});
const none: LoincByMethod = { ordinal: null, quantitative: null };

export const URINE_ANALYTES: Readonly<Record<UrineAnalyteCode, UrineAnalyte>> = {
  GLU: {
    code: 'GLU',
    name: 'Glucose',
    strip: {
      ordinal: code('25428-4', 'Glucose [Presence] in Urine by Test strip', `${NOTE} [V]`),
      quantitative: quant('5792-7', 'Glucose [Mass/volume] in Urine by Test strip', `${NOTE} [V]`, 'mass-concentration'),
    },
    automated: {
      ordinal: code('50555-2', 'Glucose [Presence] in Urine by Automated test strip', AUTO),
      quantitative: quant('53328-1', 'Glucose [Mass/volume] in Urine by Automated test strip', AUTO, 'mass-concentration'),
    },
    ucum: 'mg/dL',
    freeText: false,
  },
  BIL: {
    code: 'BIL',
    name: 'Bilirubin',
    strip: {
      ordinal: code('5770-3', 'Bilirubin.total [Presence] in Urine by Test strip', `${NOTE} [V]`),
      quantitative: quant('20505-4', 'Bilirubin.total [Mass/volume] in Urine by Test strip', `${NOTE} [S]`, 'mass-concentration'),
    },
    automated: {
      ordinal: code('50551-1', 'Bilirubin.total [Presence] in Urine by Automated test strip', AUTO),
      quantitative: quant('53327-3', 'Bilirubin.total [Mass/volume] in Urine by Automated test strip', AUTO, 'mass-concentration'),
    },
    ucum: 'mg/dL',
    freeText: false,
  },
  KET: {
    code: 'KET',
    name: 'Ketones',
    strip: {
      ordinal: code('2514-8', 'Ketones [Presence] in Urine by Test strip', `${NOTE} [S]`),
      quantitative: quant('5797-6', 'Ketones [Mass/volume] in Urine by Test strip', `${NOTE} [V]`, 'mass-concentration'),
    },
    automated: {
      ordinal: code('57734-6', 'Ketones [Presence] in Urine by Automated test strip', AUTO),
      quantitative: quant('50557-8', 'Ketones [Mass/volume] in Urine by Automated test strip', AUTO, 'mass-concentration'),
    },
    ucum: 'mg/dL',
    freeText: false,
  },
  SG: {
    code: 'SG',
    name: 'Specific gravity',
    strip: { ordinal: null, quantitative: quant('5811-5', 'Specific gravity of Urine by Test strip', `${NOTE} [V]`, 'specific-gravity') },
    automated: {
      ordinal: null,
      quantitative: quant('53326-5', 'Specific gravity of Urine by Automated test strip', AUTO, 'specific-gravity'),
    },
    ucum: '1',
    freeText: false,
  },
  BLD: {
    code: 'BLD',
    name: 'Blood',
    strip: {
      ordinal: code('5794-3', 'Hemoglobin [Presence] in Urine by Test strip', `${NOTE} [V]`),
      quantitative: quant('20409-9', 'Erythrocytes [#/volume] in Urine by Test strip', `${NOTE} [V]`, 'count-concentration'),
    },
    automated: {
      ordinal: code('57751-0', 'Hemoglobin [Presence] in Urine by Automated test strip', AUTO),
      quantitative: null,
    },
    ucum: '/uL',
    freeText: false,
  },
  PH: {
    code: 'PH',
    name: 'pH',
    strip: { ordinal: null, quantitative: quant('5803-2', 'pH of Urine by Test strip', `${NOTE} [V]`, 'ph') },
    automated: { ordinal: null, quantitative: quant('50560-2', 'pH of Urine by Automated test strip', AUTO, 'ph') },
    ucum: '[pH]',
    freeText: false,
  },
  PRO: {
    code: 'PRO',
    name: 'Protein',
    strip: {
      ordinal: code('20454-5', 'Protein [Presence] in Urine by Test strip', `${NOTE} [S]`),
      quantitative: quant('5804-0', 'Protein [Mass/volume] in Urine by Test strip', `${NOTE} [V]`, 'mass-concentration'),
    },
    automated: {
      ordinal: code('57735-3', 'Protein [Presence] in Urine by Automated test strip', AUTO),
      quantitative: quant('50561-0', 'Protein [Mass/volume] in Urine by Automated test strip', AUTO, 'mass-concentration'),
    },
    ucum: 'mg/dL',
    freeText: false,
  },
  UBG: {
    code: 'UBG',
    name: 'Urobilinogen',
    strip: {
      ordinal: null,
      // The note: US Core uses 20405-7; some projects use 5818-0 for the same name (unverified).
      quantitative: quant('20405-7', 'Urobilinogen [Mass/volume] in Urine by Test strip', `${NOTE} [V]`, 'mass-concentration'),
    },
    automated: {
      ordinal: code('62487-4', 'Urobilinogen [Presence] in Urine by Automated test strip', AUTO),
      quantitative: quant('50563-6', 'Urobilinogen [Mass/volume] in Urine by Automated test strip', AUTO, 'mass-concentration'),
    },
    ucum: 'mg/dL',
    freeText: false,
  },
  NIT: {
    code: 'NIT',
    name: 'Nitrite',
    strip: {
      ordinal: code('5802-4', 'Nitrite [Presence] in Urine by Test strip', `${NOTE} [V]`),
      quantitative: quant('20407-3', 'Nitrite [Mass/volume] in Urine by Test strip', `${NOTE} [S]`, 'mass-concentration'),
    },
    automated: { ordinal: code('50558-6', 'Nitrite [Presence] in Urine by Automated test strip', AUTO), quantitative: null },
    ucum: null,
    freeText: false,
  },
  LEU: {
    code: 'LEU',
    name: 'Leukocytes',
    strip: {
      ordinal: code('5799-2', 'Leukocyte esterase [Presence] in Urine by Test strip', `${NOTE} [V]`),
      quantitative: quant('20408-1', 'Leukocytes [#/volume] in Urine by Test strip', `${NOTE} [V]`, 'count-concentration'),
    },
    automated: {
      ordinal: code('60026-2', 'Leukocyte esterase [Presence] in Urine by Automated test strip', AUTO),
      quantitative: null,
    },
    ucum: '/uL',
    freeText: false,
  },
  ALB: {
    code: 'ALB',
    name: 'Albumin',
    strip: { ordinal: null, quantitative: quant('11218-5', 'Microalbumin [Mass/volume] in Urine by Test strip', `${NOTE} [V]`, 'mass-concentration') },
    automated: none,
    ucum: 'mg/L',
    freeText: false,
  },
  CRE: {
    code: 'CRE',
    name: 'Creatinine',
    strip: { ordinal: null, quantitative: quant('30004-6', 'Creatinine [Mass/volume] in Urine by Test strip', `${NOTE} [V]`, 'mass-concentration') },
    automated: none,
    ucum: 'mg/dL',
    freeText: false,
  },
  // No public source found for a protein/creatinine "by Test strip" code: no LOINC is given.
  PCR: { code: 'PCR', name: 'Protein/Creatinine ratio', strip: none, automated: none, ucum: 'mg/g', freeText: false },
  ACR: {
    code: 'ACR',
    name: 'Albumin/Creatinine ratio',
    strip: {
      ordinal: null,
      quantitative: quant('20621-9', 'Albumin/Creatinine [Mass Ratio] in Urine by Test strip', 'ACR (see file header); the note marks it unverified', 'mass-ratio'),
    },
    automated: none,
    ucum: 'mg/g',
    freeText: false,
  },
  COLOR: {
    code: 'COLOR',
    name: 'Colour',
    strip: { ordinal: code('5778-6', 'Color of Urine', `${NOTE} [V]`), quantitative: null },
    automated: none,
    ucum: null,
    freeText: true,
  },
  CLARITY: {
    code: 'CLARITY',
    name: 'Clarity',
    // The note gives 5767-9 Appearance of Urine; the reader reports clarity, and LOINC has its own term.
    strip: { ordinal: code('32167-9', 'Clarity of Urine', PANEL), quantitative: null },
    automated: none,
    ucum: null,
    freeText: true,
  },
  ASC: {
    code: 'ASC',
    name: 'Ascorbic acid',
    strip: { ordinal: null, quantitative: quant('5768-7', 'Ascorbate [Mass/volume] in Urine by Test strip', `${NOTE} [S]`, 'mass-concentration') },
    automated: none,
    ucum: 'mg/dL',
    freeText: false,
  },
};

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Ordinal vocabulary: words readers print, per language, → one canonical grade. Data only; a new
// language is a new block. Matched case-insensitively on the whole result text.
// ────────────────────────────────────────────────────────────────────────────────────────────────

export type OrdinalGrade =
  | 'negative'
  | 'trace'
  | 'trace-intact'
  | 'trace-lysed'
  | 'small'
  | 'moderate'
  | 'large'
  | '1+'
  | '2+'
  | '3+'
  | '4+'
  | 'positive'
  | 'normal';

export const ORDINAL_VOCABULARY: Readonly<Record<string, Readonly<Record<string, OrdinalGrade>>>> = {
  en: {
    negative: 'negative',
    neg: 'negative',
    trace: 'trace',
    'trace-intact': 'trace-intact',
    'trace intact': 'trace-intact',
    'trace-lysed': 'trace-lysed',
    'trace lysed': 'trace-lysed',
    small: 'small',
    moderate: 'moderate',
    large: 'large',
    positive: 'positive',
    pos: 'positive',
    normal: 'normal',
    norm: 'normal',
  },
  es: {
    negativo: 'negative',
    indicios: 'trace',
    'ind.intactos': 'trace-intact',
    'ind.hemolizados': 'trace-lysed',
    bajo: 'small',
    moderado: 'moderate',
    alto: 'large',
    positivo: 'positive',
    normal: 'normal',
  },
  de: {
    negativ: 'negative',
    spur: 'trace',
    positiv: 'positive',
    normal: 'normal',
  },
  pl: {
    neg: 'negative',
    norm: 'normal',
    poz: 'positive',
  },
  plus: { '1+': '1+', '2+': '2+', '3+': '3+', '4+': '4+', '+': '1+', '++': '2+', '+++': '3+', '++++': '4+' },
};

const ORDINAL_LOOKUP: ReadonlyMap<string, OrdinalGrade> = new Map(
  Object.values(ORDINAL_VOCABULARY).flatMap((words) => Object.entries(words)),
);

/** The canonical grade of a whole result text (`Negativo` → negative), or null. */
export function ordinalGrade(text: string): OrdinalGrade | null {
  return ORDINAL_LOOKUP.get(text.trim().toLowerCase()) ?? null;
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Value parsing
// ────────────────────────────────────────────────────────────────────────────────────────────────

export type Comparator = NonNullable<Observation['comparator']>;

export interface StripValue {
  /** The exact number the text states, or null (ordinal, approximate, free text). */
  value: number | null;
  comparator: Comparator | null;
  /** The unit as the device wrote it (`mg/dL`, `Hem/uL`, `E.U./dL`), or null. */
  unit: string | null;
  /** UCUM for `unit` when there is a faithful one; never for Ehrlich units. */
  ucum: string | null;
  /** What `unit` measures, when known. */
  kind: QuantityKind | null;
  /** The device's text, with only the surrounding padding removed. */
  text: string;
  /** The canonical ordinal grade, when the whole text is an ordinal word. */
  ordinal: OrdinalGrade | null;
  /** The device marked the number as approximate (`Apr 200`, `Ca 10`): `value` stays null. */
  approximate: boolean;
  /**
   * The words after a number when no unit table knows them (`12 U/L`): the result is a quantity
   * of an unknown kind, so it gets neither a number nor a presence code, only its text.
   */
  unknownUnit: string | null;
}

/** Device unit (lower-cased, `µ` as `u`) → UCUM and kind. Data; add a row for a new spelling. */
const UNIT_TABLE: Readonly<Record<string, { ucum: string | null; kind: QuantityKind }>> = {
  'mg/dl': { ucum: 'mg/dL', kind: 'mass-concentration' },
  'mg/l': { ucum: 'mg/L', kind: 'mass-concentration' },
  'g/l': { ucum: 'g/L', kind: 'mass-concentration' },
  'g/dl': { ucum: 'g/dL', kind: 'mass-concentration' },
  'mmol/l': { ucum: 'mmol/L', kind: 'substance-concentration' },
  'umol/l': { ucum: 'umol/L', kind: 'substance-concentration' },
  // Ehrlich units: about 1 mg/dL of urobilinogen (research note §3.4), but UCUM has no unit for
  // them, so `ucum` stays null; the mass/volume code is still the one labs use for them.
  'e.u./dl': { ucum: null, kind: 'mass-concentration' },
  'eu/dl': { ucum: null, kind: 'mass-concentration' },
  '/ul': { ucum: '/uL', kind: 'count-concentration' },
  'ery/ul': { ucum: '/uL', kind: 'count-concentration' },
  'hem/ul': { ucum: '/uL', kind: 'count-concentration' },
  'rbc/ul': { ucum: '/uL', kind: 'count-concentration' },
  'leu/ul': { ucum: '/uL', kind: 'count-concentration' },
  'wbc/ul': { ucum: '/uL', kind: 'count-concentration' },
  'cells/ul': { ucum: '/uL', kind: 'count-concentration' },
  'mg/g': { ucum: 'mg/g', kind: 'mass-ratio' },
  'mg/mmol': { ucum: 'mg/mmol', kind: 'mass-ratio' },
  ph: { ucum: '[pH]', kind: 'ph' },
};

/**
 * A device's unit spelling as unit tables key it: trimmed, lower-case, micro as `u`. Devices
 * write micro as the micro sign (U+00B5), the Greek mu (U+03BC) or a plain u.
 */
export function unitKey(unit: string): string {
  return unit.trim().toLowerCase().replace(/µ|μ/g, 'u');
}

/** `mg/dL` → its UCUM code and kind, or null when the spelling is not known. */
export function unitInfo(unit: string): { ucum: string | null; kind: QuantityKind } | null {
  return UNIT_TABLE[unitKey(unit)] ?? null;
}

const COMPARATORS: Readonly<Record<string, Comparator>> = { '>=': '>=', '≥': '>=', '=>': '>=', '<=': '<=', '≤': '<=', '=<': '<=', '>': '>', '<': '<' };
/**
 * Words readers put before a number they call approximate: `Apr` (es/en Status), `Ca`/`ca.` (de).
 * The longer spellings come first: with `apr` first, `Aprox 200` matched only `Apr` and the rest
 * (`ox 200 Hem/uL`) was no number, so the reading lost its unit and its `approximate` flag.
 */
const APPROX = /^(?:approx\.?|aprox\.?|apr\.?|ca\.?|~)\s*/i;
const NUMBER_WITH_UNIT = /^(>=|<=|=>|=<|≥|≤|>|<)?\s*(\d+(?:\.\d+)?)(?:\s*(\S+(?:\s\S+)?))?$/;

/**
 * A reader's result text → value, comparator and unit, only where they are exact:
 *   `>=300 mg/dL` → {comparator '>=', value 300, unit 'mg/dL'}; `1.020` → {value 1.02};
 *   `pH 6.5` → {value 6.5, unit 'pH'}; `Apr 200 Hem/uL` → {value null, unit 'Hem/uL', approximate};
 *   `1+`, `Negative`, `Trace-intact` → text only (with `ordinal` set when the word is known).
 * `text` is always the device's text with only the surrounding padding removed. Never throws.
 */
export function parseStripValue(raw: string): StripValue {
  const text = raw.trim();
  const out: StripValue = { value: null, comparator: null, unit: null, ucum: null, kind: null, text, ordinal: ordinalGrade(text), approximate: false, unknownUnit: null };
  if (out.ordinal !== null || text === '') return out;
  let rest = text;
  const approx = APPROX.exec(rest);
  // `Ca` only counts as "approximately" when a number follows (`Ca 10 Ery/uL`).
  if (approx && /^\d/.test(rest.slice(approx[0].length))) {
    out.approximate = true;
    rest = rest.slice(approx[0].length);
  }
  const ph = /^ph\s+(\d+(?:\.\d+)?)$/i.exec(rest);
  if (ph) {
    if (!out.approximate) out.value = Number(ph[1]);
    out.unit = 'pH';
    out.ucum = '[pH]';
    out.kind = 'ph';
    return out;
  }
  const m = NUMBER_WITH_UNIT.exec(rest);
  if (!m) return out;
  const unit = m[3] ?? null;
  const info = unit !== null ? unitInfo(unit) : null;
  if (unit !== null && info === null) {
    out.unknownUnit = unit;
    return out;
  }
  if (!out.approximate) {
    out.value = Number(m[2]);
    out.comparator = m[1] !== undefined ? COMPARATORS[m[1]]! : null;
  }
  out.unit = unit;
  out.ucum = info?.ucum ?? null;
  out.kind = info?.kind ?? null;
  return out;
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Coding
// ────────────────────────────────────────────────────────────────────────────────────────────────

export type StripMethod = 'automated' | 'strip';

/** The kinds of a bare number (no unit) for the analytes that report one. */
const UNITLESS_KIND: Partial<Record<UrineAnalyteCode, QuantityKind>> = { SG: 'specific-gravity', PH: 'ph' };

/**
 * The LOINC code for one parsed result of `analyte`: the quantitative code when the result is a
 * quantity of the code's kind, the presence code for an ordinal result; the automated-strip code
 * when known and `method` is automated, else the strip code. Null when no code fits.
 */
export function loincFor(analyte: UrineAnalyteCode, v: StripValue, method: StripMethod = 'automated'): LoincCode | null {
  const a = URINE_ANALYTES[analyte];
  const methods = method === 'automated' ? [a.automated, a.strip] : [a.strip];
  if (a.freeText) return a.strip.ordinal;
  if (v.unknownUnit !== null) return null;
  const numeric = v.value !== null || v.comparator !== null || v.approximate;
  const kind = v.kind ?? (numeric && v.unit === null ? (UNITLESS_KIND[analyte] ?? null) : null);
  // A number with no unit for an analyte that needs one (`GLU 100`): which code is unknown.
  if (numeric && kind === null) return null;
  const quantity = kind !== null;
  for (const m of methods) {
    if (quantity) {
      if (m.quantitative && m.quantitative.kind === kind) return m.quantitative;
    } else if (m.ordinal) return m.ordinal;
  }
  // A quantity of another kind than any code's (µmol/L urobilinogen): no code rather than a wrong
  // one. An ordinal result of an analyte with no presence code (SG, pH): none.
  return null;
}

/** The UCUM of a parsed result: the unit's UCUM, or the analyte's own for unitless SG / pH numbers. */
export function ucumFor(analyte: UrineAnalyteCode, v: StripValue): string | null {
  if (v.unit !== null) return v.ucum;
  if ((v.value !== null || v.comparator !== null) && UNITLESS_KIND[analyte]) return URINE_ANALYTES[analyte].ucum;
  return null;
}

/** A strip pad has no measuring limit, so its observation never carries `limit`. */
export type StripObservation = Omit<Observation, 'limit'>;

/**
 * One strip result → one observation. `analyte` null means the reader's label is not in any
 * table: the observation is still kept, with the label as its code, no LOINC and the flag
 * `unknown-label`, never dropped. `abnormal` is the reader's own abnormal marker. A known analyte
 * whose result fits no LOINC code (urobilinogen in µmol/L) gets the flag `loinc-unmapped`; an
 * approximate number (`Apr 200`) gets `approximate`.
 */
export function stripObservation(
  analyte: UrineAnalyteCode | null,
  label: string,
  deviceText: string,
  abnormal: boolean,
  method: StripMethod = 'automated',
): StripObservation {
  const v = parseStripValue(deviceText);
  const flags: string[] = [];
  if (abnormal) flags.push('abnormal');
  if (v.approximate) flags.push('approximate');
  const text = v.text === '' ? null : v.text;
  if (analyte === null) {
    flags.push('unknown-label');
    // A number is published only with its unit (the result schema requires one): else text only.
    const numeric = v.unit !== null;
    return {
      code: label.trim(),
      name: label.trim(),
      loinc: null,
      value: numeric ? v.value : null,
      unit: v.unit,
      ucum: v.ucum,
      flags,
      text,
      comparator: numeric ? v.comparator : null,
    };
  }
  const a = URINE_ANALYTES[analyte];
  if (a.freeText) {
    return { code: a.code, name: a.name, loinc: a.strip.ordinal?.code ?? null, value: null, unit: null, ucum: null, flags, text, comparator: null };
  }
  const loinc = text === null ? null : loincFor(analyte, v, method);
  if (loinc === null && text !== null) flags.push('loinc-unmapped');
  if (v.unknownUnit !== null) flags.push('unit-unknown');
  // Unitless numbers: specific gravity is a ratio (UCUM `1`), pH has its own scale.
  const unit = v.unit ?? (v.value !== null && analyte === 'PH' ? 'pH' : v.value !== null && analyte === 'SG' ? '1' : null);
  // A number is published only with its unit (the result schema requires one): else text only.
  const numeric = unit !== null;
  return {
    code: a.code,
    name: a.name,
    loinc: loinc?.code ?? null,
    value: numeric ? v.value : null,
    unit,
    ucum: ucumFor(analyte, v),
    flags,
    text,
    comparator: numeric ? v.comparator : null,
  };
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Reader records: what the CLINITEK readers have in common once a record is parsed.
// ────────────────────────────────────────────────────────────────────────────────────────────────

/** One pad of a strip as the reader reported it. */
export interface StripResult {
  /** The label as sent, padding removed. */
  label: string;
  /** null: the label is in no locale table (kept, see `stripObservation`). */
  analyte: UrineAnalyteCode | null;
  /** The result text as sent. */
  text: string;
  abnormal: boolean;
}

/** One strip as a reader stores it: its number, the reader's naive time, the typed-in colour and clarity, the pads. */
export interface StripRecord {
  seq: number;
  /** Naive local time `YYYY-MM-DDTHH:MM:SS`. */
  time: string;
  /** null when not entered. */
  colour: string | null;
  /** null when not entered; absent on readers that have no clarity entry. */
  clarity?: string | null;
  results: StripResult[];
}

/** The reader numbers its records and keeps their time, and both stay the same on every resend. */
export function stripRecordKey(r: Pick<StripRecord, 'seq' | 'time'>): string {
  return `${r.seq}|${r.time}`;
}

/** Colour and clarity (when entered), then one observation per pad, in the reader's order. */
export function stripObservations(r: StripRecord): StripObservation[] {
  const observations: StripObservation[] = [];
  if (r.colour !== null) observations.push(stripObservation('COLOR', 'Colour', r.colour, false));
  if (r.clarity !== undefined && r.clarity !== null) observations.push(stripObservation('CLARITY', 'Clarity', r.clarity, false));
  for (const s of r.results) observations.push(stripObservation(s.analyte, s.label, s.text, s.abnormal));
  return observations;
}

/** How one reader language prints a strip: its label per analyte and its word per ordinal grade. */
export interface ReaderWording {
  /** Wire label (padding included, as sent); parsing matches it trimmed, any case. */
  labels: Partial<Record<UrineAnalyteCode, string>>;
  /** The simulators print these; parsing reads every language through the shared vocabulary. */
  words: Partial<Record<OrdinalGrade, string>>;
}

/** One pad a simulated reader holds. */
export interface SimulatedStripResult {
  /** An analyte code (printed with the locale's label) or any other label, sent as is. */
  code: string;
  /** An ordinal grade (`negative`, `trace-intact`, …: printed in the locale's word) or literal text (`500 mg/dL`). */
  value: string;
  abnormal?: boolean;
}

export const simulatedPad = (code: string, value: string, abnormal = false): SimulatedStripResult => ({ code, value, abnormal });

/** A simulated pad as a reader in `wording`'s language prints it: codes and grades it has words for are translated, the rest is sent as is. */
export function printedPad(wording: ReaderWording, pad: SimulatedStripResult): { label: string; value: string } {
  return { label: wording.labels[pad.code as UrineAnalyteCode] ?? pad.code, value: wording.words[pad.value as OrdinalGrade] ?? pad.value };
}

/** Trimmed, upper-cased label → analyte over the label tables of every locale of one reader. */
export function labelLookup(tables: Iterable<Partial<Record<UrineAnalyteCode, string>>>): (label: string) => UrineAnalyteCode | null {
  const byLabel = new Map<string, UrineAnalyteCode>();
  for (const labels of tables) {
    for (const [code, label] of Object.entries(labels)) byLabel.set(label.trim().toUpperCase(), code as UrineAnalyteCode);
  }
  return (label) => byLabel.get(label.trim().toUpperCase()) ?? null;
}

/** The order a reader prints the day, month and year of a date in: it follows the reader's date setting. */
export type DateOrder = 'DMY' | 'MDY' | 'YMD';
const DATE_ORDERS: readonly DateOrder[] = ['DMY', 'MDY', 'YMD'];

/** The three date fields as printed → [year, month, day]. The year is as printed (two digits stay two). */
export function yearMonthDay(fields: readonly [number, number, number], order: DateOrder): [number, number, number] {
  const [p, q, r] = fields;
  return order === 'DMY' ? [r, q, p] : order === 'MDY' ? [r, p, q] : [p, q, r];
}

/**
 * The device's `date_order` option, or `fallback` when it is not set. Anything else throws naming
 * the device; the message lists the reader's default first.
 */
export function dateOrderOption(device: Pick<DeviceConfig, 'id' | 'options'>, fallback: DateOrder): DateOrder {
  const given = device.options?.date_order;
  if (given === undefined) return fallback;
  if (!DATE_ORDERS.includes(given as DateOrder)) {
    const others = DATE_ORDERS.filter((o) => o !== fallback);
    throw new Error(`device ${device.id}: options.date_order must be ${fallback}, ${others.join(' or ')}`);
  }
  return given as DateOrder;
}

