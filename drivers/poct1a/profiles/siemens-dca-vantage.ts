/**
 * Siemens DCA Vantage (HbA1c; urine albumin/creatinine), POCT1-A2 over TCP. The real conversation
 * (`../shared/fixtures/poct1a/siemens-dca-vantage-conversation.txt`, research note §4.6): HEL
 * `DEV.vendor_id` `SIEM`, `DEV.model_id` `DCA Vantage`; observation ids are local codes with
 * `SN="SIEM"`: `HbA1c` (here in mmol/mol, IFCC reporting) and `eAG` (mg/dL, method C: calculated).
 *
 * LOINC, from loinc.org term pages and the LOINC forum (public): 59261-8 "Hemoglobin
 * A1c/Hemoglobin.total in Blood by IFCC protocol" (reported in mmol/mol), 4548-4 "Hemoglobin
 * A1c/Hemoglobin.total in Blood" (NGSP, %), 27353-2 "Glucose mean value [Mass/volume] in Blood
 * Estimated from glycated hemoglobin" (eAG, mg/dL). Albumin, creatinine and ratio: the same codes
 * as the ASTM dialect of this device (`drivers/analyzers/astm/dialects/siemens-dca-vantage.ts`);
 * their POCT1-A code names are assumed to be the ASTM ones (no POCT1-A capture of them).
 */
import { siemensDcaVantage as astmDialect } from '../../analyzers/astm/dialects/siemens-dca-vantage.ts';
import type { ObservationCoding, Poct1aProfile } from './types.ts';

const LOINC_ORG = 'loinc.org term pages and LOINC forum (see file header)';
const ASTM_LISTS = 'as the ASTM DCA dialect (public LOINC code lists); POCT1-A code name assumed';

/** A urine code as the ASTM dialect of this device codes it: one table for the device, not two. */
function asInAstmDialect(code: 'Alb' | 'Crt' | 'Ratio'): ObservationCoding[] {
  const { name, loinc, ucum, specimen } = astmDialect.tests[code]!;
  if (!loinc || !ucum) throw new Error(`the ASTM DCA dialect gives ${code} no LOINC code and unit`);
  return [{ name, ucum, loinc, ...(specimen ? { specimen } : {}), source: ASTM_LISTS }];
}

export const siemensDcaVantageProfile: Poct1aProfile = {
  id: 'siemens-dca-vantage',
  manufacturer: 'Siemens Healthineers',
  model: 'DCA Vantage',
  description: 'Siemens DCA Vantage (HbA1c, eAG; urine albumin/creatinine)',
  matches: (h) => (h.vendorId ?? '').trim().toUpperCase() === 'SIEM' && /dca\s*vantage/i.test(h.modelId ?? h.deviceId ?? ''),
  observations: {
    HbA1c: [
      { name: 'Hemoglobin A1c (IFCC)', ucum: 'mmol/mol', loinc: '59261-8', specimen: 'whole blood', source: LOINC_ORG },
      { name: 'Hemoglobin A1c (NGSP)', ucum: '%', loinc: '4548-4', specimen: 'whole blood', source: LOINC_ORG },
    ],
    eAG: [{ name: 'Estimated average glucose', ucum: 'mg/dL', loinc: '27353-2', specimen: 'whole blood', source: LOINC_ORG }],
    Alb: asInAstmDialect('Alb'),
    Crt: asInAstmDialect('Crt'),
    Ratio: asInAstmDialect('Ratio'),
  },
};
