/**
 * A POCT1-A vendor profile: how a device family is recognised from its HEL (`DEV.vendor_id`,
 * `DEV.model_id`), who makes it, its local observation codes (`OBS.observation_id` with a
 * vendor coding system such as `SN="SIEM"`) mapped to LOINC and UCUM, each with its source, and
 * the message names it uses that the standard does not. Data, like the ASTM dialects: the
 * `poct1a` driver picks a profile per connection from the device's HEL.
 */
import type { ResultCategory } from '../../../src/records/types.ts';

/** One coding of a local code, for one unit (HbA1c is a different LOINC code in % and mmol/mol). */
export interface ObservationCoding {
  name: string;
  /** The UCUM unit this coding is for. */
  ucum: string;
  loinc: string;
  /** Where the code and its meaning come from. */
  source: string;
  specimen?: string;
}

export interface DeviceHello {
  deviceId: string | null;
  vendorId: string | null;
  modelId: string | null;
}

export interface Poct1aProfile {
  id: string;
  manufacturer: string;
  /** The model when the HEL names none. */
  model: string;
  description: string;
  matches(hello: DeviceHello): boolean;
  /** Local code (as sent, compared case-insensitively) → its codings, one per unit. */
  observations: Readonly<Record<string, readonly ObservationCoding[]>>;
  /**
   * Message names the family sends for a standard one (`HEL.R02` for `HEL.R01`), so the
   * conversation treats them as the standard's.
   */
  messageAliases?: Readonly<Record<string, string>>;
  /** SVC.role_cd values of the family and what they are, beyond the standard's (`role.ts`). */
  roles?: Readonly<Record<string, ResultCategory>>;
}
