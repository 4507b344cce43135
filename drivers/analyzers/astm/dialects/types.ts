/**
 * What an ASTM device dialect says about a device family: how to recognise it from the H record's
 * sender field (H-5), which test-id component carries its code, the code → name / LOINC / UCUM
 * table (data, with the source of each code), the text encoding it uses, how it marks QC runs, and
 * what its simulator sends. The generic `astm` driver picks a dialect per message.
 */
import type { UrineAnalyteCode } from '../../../analytes/urine-strip.ts';
import type { TextEncoding } from '../../../../src/protocols/astm/records.ts';
import type { AstmMessage, AstmOrder } from '../../../../src/protocols/astm/records.ts';
import type { ResultCategory } from '../../../../src/records/types.ts';

export interface TestMapping {
  name: string;
  /** LOINC code, or null when no source gives one. */
  loinc: string | null;
  /** The UCUM unit the LOINC code is for; a result in another unit keeps its unit but loses the code. */
  ucum?: string | null;
  /** Urine strip analyte: value, unit and LOINC then come from the shared strip table. */
  strip?: UrineAnalyteCode;
  /** Where the code and its meaning come from. */
  source: string;
  /**
   * The specimen this code is measured in, for a device that measures several kinds (the DCA
   * Vantage: HbA1c in blood, albumin in urine). Without it the dialect's `specimenType` holds.
   */
  specimen?: string;
}

export interface SampleTest {
  /** R-3 as sent (escaped text), e.g. `^^^550`. */
  testId: string;
  unit: string;
  /** A number in [min, max] with `decimals` digits, or one of `choices`. */
  min?: number;
  max?: number;
  decimals?: number;
  choices?: string[];
}

/** What the simulator sends for this dialect: a plausible message, never a real patient's. */
export interface DialectSample {
  /** H-5 sender field as sent. */
  sender: string;
  /** H-13 version. */
  version: string;
  specimenPrefix: string;
  operator: string;
  instrument?: string;
  tests: SampleTest[];
}

export interface DeviceFacts {
  model: string;
  serial: string | null;
  firmware: string | null;
}

export interface AstmDialect {
  id: string;
  manufacturer: string;
  /** Default model name (the sender field may name a more exact one). */
  model: string;
  description: string;
  /** Recognises the family from H-5's components. */
  matches(sender: string[]): boolean;
  /** Model, serial and firmware from H-5. */
  identify(sender: string[]): DeviceFacts;
  /** Text encoding of the device (per message; `options.encoding` overrides it). */
  encoding: TextEncoding;
  /** With `encoding: auto`, the 8-bit code page of text that is not UTF-8 (default latin1). */
  fallbackEncoding?: Exclude<TextEncoding, 'auto' | 'utf-8'>;
  /** Which R-3 component (1-based) holds the device's local code: the key of `tests`. */
  codeComponent: number;
  /** Which R-3 component holds a LOINC code the device sends itself, if any (else component 1, or 5 after a local code). */
  loincComponent?: number;
  /**
   * The published code of a result from R-3's components, when this family's whole test id holds
   * components that do not tell quantities apart (the Pentra's constant `1`). Without it the code
   * is the whole universal test id (`testCode` in records.ts): two different quantities never
   * share one.
   */
  identity?(testId: string[]): string;
  /** Which R-3 component holds the test's name, when an unmapped code needs one (default 2, E1394's universal name). */
  nameComponent?: number;
  /** Where this family puts the specimen id (O-3 or O-4, component), when not the generic place. */
  specimenIdAt?: { field: 3 | 4; component: number };
  tests: Readonly<Record<string, TestMapping>>;
  /** The specimen of every code that names none in `tests` (null: not known). */
  specimenType: string | null;
  /**
   * R-5 unit spellings this device sends whose meaning no source gives (Pentra `1`): a number
   * with one is published as text only (value, unit and UCUM null, flag `unit-unknown`).
   */
  unknownUnits?: readonly string[];
  /** A device-specific QC/control marking, beyond the generic H-12 / O-12 `Q` rules. */
  category?(order: AstmOrder, message: AstmMessage): ResultCategory | null;
  sample: DialectSample;
}

/** H-5 components with empty ones dropped, lower-cased, for matching. */
export function senderWords(sender: string[]): string[] {
  return sender.map((s) => s.trim().toLowerCase()).filter((s) => s !== '');
}
