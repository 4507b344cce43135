/**
 * β-ketone (beta-hydroxybutyrate) in blood, the second analyte of glucose meters that read ketone
 * strips (the FreeStyle Neo, the Libre readers). Levels, HI/LO and the observation builder are the
 * glucose ones (`glucose.ts`): a reading past the meter's limit is a flag with that limit, never a
 * number.
 *
 * LOINC code, and where it comes from (facts only; no code or prose copied):
 *   FreeStyle 66441-7 for a β-ketone strip reading in mmol/L, as the FreeStyle HID driver first
 *             coded it ("Beta hydroxybutyrate [Moles/volume] in Blood by Test strip", the code it
 *             gave Abbott's Precision strips). The shared research notes list no ketone LOINC code,
 *             so neither the code nor its long name has been checked there against a LOINC page.
 *
 * The unit is mmol/L: every meter this project reads shows β-ketone in mmol/L; how a meter puts it
 * on the wire (Abbott: a raw number that is 18 × mmol/L) is the driver's business.
 */
import type { AnalyteCoding } from './glucose.ts';

/** A blood β-ketone strip reading in mmol/L (66441-7). */
export const BLOOD_KETONE_MMOL_L: AnalyteCoding = {
  code: 'BHB',
  name: 'beta-Hydroxybutyrate',
  unit: 'mmol/L',
  ucum: 'mmol/L',
  loinc: '66441-7',
  loincName: 'Beta hydroxybutyrate [Moles/volume] in Blood by Test strip',
  source: 'FreeStyle',
};
