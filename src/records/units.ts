/**
 * Units: what a device wrote → UCUM, checked by NLM's UCUM library (`@lhncbc/ucum-lhc`) instead of
 * hand tables alone, and exact conversions between UCUM units.
 *
 * A unit a device writes is read in this order:
 * 1. a device spelling that is not UCUM but whose meaning is fixed (`10E3/uL` for 10*3/uL,
 *    `uIU/mL` for u[IU]/mL, `p/HPF` for /[HPF]): a short table, case-insensitive, each entry a
 *    unit the library itself accepts (astm-units.test.ts checks them; the library, with its
 *    tables, is loaded at the first unit read, not when a daemon that never reads one starts);
 * 2. the text itself when the library says it is valid UCUM (case-sensitive, as UCUM is), then
 *    normalised: litre as `L` (`U/l` → `U/L`, `mg/dl` → `mg/dL`) and `10^3` as `10*3`, each
 *    rewrite kept only when the library says it is the same unit (same magnitude and dimension);
 * 3. anything else: no UCUM (the caller keeps the unit as sent and says it is unknown).
 *
 * Conversions are exact or not done: only between units of one dimension (not a dimensionless
 * one: % and mmol/mol are different quantities) whose ratio is a power of ten, and the number is
 * moved by its decimal point (never multiplied as a float).
 */
import { createRequire } from 'node:module';

interface UcumUnitLike {
  magnitude_: number;
  dim_: { dimVec_: number[] } | null;
  isSpecial_: boolean;
  isArbitrary_: boolean;
}
interface UcumUtils {
  validateUnitString(unit: string, suggest?: boolean): { status: string; ucumCode: string | null; unit?: unknown };
  convertUnitTo(from: string, value: number, to: string): { status: string; fromUnit?: UcumUnitLike; toUnit?: UcumUnitLike };
}

let utils: UcumUtils | null = null;
type UcumModule = { UcumLhcUtils?: { getInstance(): UcumUtils } };
/**
 * The library (CommonJS) is required at the first unit read, not imported with this module: every
 * command imports the driver list, and most never read a unit (about 10 ms of start-up saved).
 */
function loadUcum(): UcumUtils {
  const m = createRequire(import.meta.url)('@lhncbc/ucum-lhc') as UcumModule;
  const cls = m.UcumLhcUtils;
  if (!cls) throw new Error('@lhncbc/ucum-lhc: UcumLhcUtils not found');
  return cls.getInstance();
}
const ucum = (): UcumUtils => (utils ??= loadUcum());

/**
 * Device spellings (lower-cased, `µ`/`μ` as `u`) that are not UCUM as written but mean one UCUM
 * unit: upper-case forms of common units (`MG/DL`), `µ` for `u`, and the non-UCUM ones below.
 */
export const DEVICE_SPELLINGS: Readonly<Record<string, string>> = {
  'mg/dl': 'mg/dL', 'mg/l': 'mg/L', 'g/l': 'g/L', 'g/dl': 'g/dL', 'u/l': 'U/L', 'mg/g': 'mg/g', 'mg/mmol': 'mg/mmol',
  'mmol/l': 'mmol/L', 'umol/l': 'umol/L', 'mmol/mol': 'mmol/mol', 'fl': 'fL', 'pg': 'pg', '/ul': '/uL', 'ng/ml': 'ng/mL',
  'pg/ml': 'pg/mL', 'ug/dl': 'ug/dL', 'ug/l': 'ug/L', 'ng/l': 'ng/L', 'nmol/l': 'nmol/L', 'pmol/l': 'pmol/L', 'u/ml': 'U/mL',
  'um3': 'um3', 'coi': '{COI}',
  'iu/l': '[IU]/L', 'miu/l': 'm[IU]/L', 'miu/ml': 'm[IU]/mL', 'uiu/ml': 'u[IU]/mL', 'iu/ml': '[IU]/mL', 'uiu/l': 'u[IU]/L',
  '10e3/ul': '10*3/uL', '10e6/ul': '10*6/uL', '10e9/l': '10*9/L', '10e12/l': '10*12/L', '10^3/ul': '10*3/uL', '10^6/ul': '10*6/uL',
  'x10e3/ul': '10*3/uL', 'x10e6/ul': '10*6/uL', 'x10^3/ul': '10*3/uL', 'x10^6/ul': '10*6/uL', 'x10^9/l': '10*9/L', 'x10^12/l': '10*12/L',
  'p/ul': '/uL', 'p/hpf': '/[HPF]', 'p/lpf': '/[LPF]', 'mu/l': 'mU/L',
};

/** The lookup key of a device spelling: trimmed, lower-cased, micro sign as `u`. */
export function unitSpellingKey(unit: string): string {
  return unit.trim().replace(/[µμ]/g, 'u').toLowerCase();
}

function dims(u: UcumUnitLike | undefined): string | null {
  return u?.dim_ ? u.dim_.dimVec_.join(',') : null;
}

/** True when the library reads both as the same unit (same dimension and magnitude, no offset scale). */
function sameUnit(a: string, b: string): boolean {
  if (a === b) return true;
  const r = ucum().convertUnitTo(a, 1, b);
  if (r.status !== 'succeeded' || !r.fromUnit || !r.toUnit) return false;
  if (r.fromUnit.isSpecial_ || r.toUnit.isSpecial_) return false;
  return dims(r.fromUnit) === dims(r.toUnit) && r.fromUnit.magnitude_ === r.toUnit.magnitude_;
}

/** True when the library accepts `unit` as a UCUM expression exactly as written. */
export function isValidUcum(unit: string): boolean {
  if (unit.trim() !== unit || unit === '') return false;
  const r = ucum().validateUnitString(unit, false);
  return r.status === 'valid' && r.ucumCode === unit;
}

/** The UCUM spelling this project publishes for a valid UCUM unit: litre as `L`, `10^n` as `10*n`. */
function normalise(unit: string): string {
  let out = unit;
  const litre = out.replace(/(^|[^A-Za-z[_])([munpfdc]?)l(?![A-Za-z\]_])/g, '$1$2L');
  if (litre !== out && isValidUcum(litre) && sameUnit(out, litre)) out = litre;
  const power = out.replace(/\b10\^(\d+)/g, '10*$1');
  if (power !== out && isValidUcum(power) && sameUnit(out, power)) out = power;
  return out;
}

const cache = new Map<string, string | null>();

/** A unit as a device wrote it → its UCUM code, or null when it is not one this reads exactly. */
export function ucumOf(unit: string): string | null {
  const sent = unit.trim();
  if (sent === '') return null;
  const hit = cache.get(sent);
  if (hit !== undefined) return hit;
  let out: string | null = DEVICE_SPELLINGS[unitSpellingKey(sent)] ?? null;
  if (out === null && isValidUcum(sent)) out = normalise(sent);
  if (cache.size > 1000) cache.clear();
  cache.set(sent, out);
  return out;
}

/**
 * The power of ten that takes a number in `from` to `to` (g/dL → g/L is 1, um3 → fL is 0), when both are UCUM units of one dimension whose ratio is exactly a power of ten; else null.
 */
export function exactPowerOfTen(from: string, to: string): number | null {
  if (!isValidUcum(from) || !isValidUcum(to)) return null;
  const r = ucum().convertUnitTo(from, 1, to);
  if (r.status !== 'succeeded' || !r.fromUnit || !r.toUnit) return null;
  if (r.fromUnit.isSpecial_ || r.toUnit.isSpecial_ || r.fromUnit.isArbitrary_ !== r.toUnit.isArbitrary_) return null;
  if (dims(r.fromUnit) !== dims(r.toUnit)) return null;
  // Dimensionless units (%, mmol/mol, 1) name different quantities with one dimension: HbA1c in %
  // (NGSP) and in mmol/mol (IFCC) are not a power of ten apart. Never converted.
  if (r.fromUnit.dim_ === null || r.fromUnit.dim_.dimVec_.every((d) => d === 0)) return null;
  const ratio = r.fromUnit.magnitude_ / r.toUnit.magnitude_;
  const p = Math.round(Math.log10(ratio));
  // Magnitudes are floats (1e-18 as 9.999999999999999e-19): a power of ten within rounding is exact.
  return Math.abs(ratio / 10 ** p - 1) < 1e-9 ? p + 0 : null;
}

/** A decimal number's text moved by `power` places of ten, exactly (`"90.6"`, 0 → 90.6; `"4.2"`, 3 → 4200). */
export function shiftDecimal(text: string, power: number): number | null {
  const m = /^([-+]?)(\d+)(?:\.(\d+))?$/.exec(text.trim());
  if (!m) return null;
  const [, sign, int, frac = ''] = m as unknown as [string, string, string, string | undefined];
  let digits = int + frac;
  let point = int.length + power;
  if (point < 0) {
    digits = '0'.repeat(-point) + digits;
    point = 0;
  }
  if (point > digits.length) digits = digits + '0'.repeat(point - digits.length);
  const value = Number(`${sign}${digits.slice(0, point) || '0'}.${digits.slice(point) || '0'}`);
  return Number.isFinite(value) ? value : null;
}

/**
 * A value in UCUM unit `from`, written as `text`, in UCUM unit `to`: exact or null (a different
 * dimension, a ratio that is not a power of ten, molar ↔ mass, or text that is not a decimal).
 */
export function convertExact(text: string, from: string, to: string): number | null {
  const p = exactPowerOfTen(from, to);
  return p === null ? null : shiftDecimal(text, p);
}
