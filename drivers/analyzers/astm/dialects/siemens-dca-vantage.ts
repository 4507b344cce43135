/**
 * Siemens DCA Vantage (urine albumin, creatinine, albumin/creatinine ratio; HbA1c), ASTM mode.
 * Research note §2.7-D: the whole message in one frame (as stored); H-5
 * `DCA VANTAGE^<software>^<serial>`; R-3 `^^^Alb`, `^^^Crt`, `^^^Ratio`; each R followed by a C
 * record holding the correction slope^offset.
 *
 * LOINC: urine chemistry codes (the DCA measures by immunoassay / chemistry, not a strip), from
 * public LOINC code lists in the code index: 14957-5 "Microalbumin [Mass/volume] in Urine",
 * 2161-8 "Creatinine [Mass/volume] in Urine", 9318-7 "Albumin/Creatinine [Mass Ratio] in Urine",
 * 4548-4 "Hemoglobin A1c/Hemoglobin.total in Blood" (several FHIR value-set files agree). The
 * `HbA1c` code name on the DCA is assumed from the Afinion's (not seen in a DCA capture).
 *
 * Specimen: per code (the LOINC system of each code: urine for Alb/Crt/Ratio, blood for HbA1c),
 * not per device; a code not in the table has no known specimen (null).
 */
import { senderWords, type AstmDialect } from './types.ts';

const LISTS = 'public LOINC code lists in the code index (FHIR value sets; see file header)';

export const siemensDcaVantage: AstmDialect = {
  id: 'siemens-dca-vantage',
  manufacturer: 'Siemens Healthineers',
  model: 'DCA Vantage',
  description: 'Siemens DCA Vantage (urine albumin/creatinine, HbA1c)',
  matches: (sender) => senderWords(sender).some((s) => s.replace(/\s+/g, '').startsWith('dcavantage')),
  identify: (sender) => ({ model: 'DCA Vantage', firmware: sender[1] || null, serial: sender[2] || null }),
  encoding: 'auto',
  codeComponent: 4,
  tests: {
    Alb: { name: 'Albumin', loinc: '14957-5', ucum: 'mg/L', specimen: 'urine', source: LISTS },
    Crt: { name: 'Creatinine', loinc: '2161-8', ucum: 'mg/dL', specimen: 'urine', source: LISTS },
    Ratio: { name: 'Albumin/Creatinine ratio', loinc: '9318-7', ucum: 'mg/g', specimen: 'urine', source: LISTS },
    HbA1c: { name: 'Hemoglobin A1c', loinc: '4548-4', ucum: '%', specimen: 'whole blood', source: `${LISTS}; code name assumed` },
  },
  specimenType: null,
  sample: {
    sender: 'DCA VANTAGE^04.04.00.00^S000001',
    version: '',
    specimenPrefix: '',
    operator: '',
    tests: [
      { testId: '^^^Alb', unit: 'mg/L', min: 5, max: 150, decimals: 1 },
      { testId: '^^^Crt', unit: 'mg/dL', min: 20, max: 300, decimals: 1 },
      { testId: '^^^Ratio', unit: 'mg/g', min: 5, max: 300, decimals: 1 },
    ],
  },
};
