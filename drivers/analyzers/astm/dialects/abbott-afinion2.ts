/**
 * Abbott Afinion 2 (HbA1c, also lipids, CRP, ACR), ASTM mode. Research note §2.7-D: the whole
 * message in one frame (as stored); H-5 `Afinion 2 Analyzer^^<serial>`; R-3 `^^^HbA1c`, value in
 * `%`, R-11 the operator.
 *
 * LOINC 4548-4 "Hemoglobin A1c/Hemoglobin.total in Blood" from public code lists in the code
 * index. The Afinion also reports HbA1c in mmol/mol (IFCC) where configured: that unit does not
 * fit 4548-4, so such a result keeps its unit and gets no LOINC (flag `unit-mismatch`).
 *
 * Specimen: per code. Only `HbA1c` is mapped (the only code seen in a capture): whole blood (the
 * message does not say capillary or venous). The Afinion's other tests (ACR in urine, lipids,
 * CRP) have no known code names here, so their results get no specimen type (null).
 */
import { senderWords, type AstmDialect } from './types.ts';

export const abbottAfinion2: AstmDialect = {
  id: 'abbott-afinion2',
  manufacturer: 'Abbott',
  model: 'Afinion 2',
  description: 'Abbott Afinion 2 analyzer (HbA1c)',
  matches: (sender) => senderWords(sender).some((s) => s.startsWith('afinion')),
  identify: (sender) => ({ model: sender[0]?.replace(/\s*analy[sz]er$/i, '') || 'Afinion 2', firmware: sender[1] || null, serial: sender[2] || null }),
  encoding: 'auto',
  codeComponent: 4,
  tests: {
    HbA1c: { name: 'Hemoglobin A1c', loinc: '4548-4', ucum: '%', specimen: 'whole blood', source: 'public LOINC code lists in the code index (FHIR value sets)' },
  },
  specimenType: null,
  sample: {
    sender: 'Afinion 2 Analyzer^^AF20000001',
    version: '1',
    specimenPrefix: '',
    operator: '1001',
    tests: [{ testId: '^^^HbA1c', unit: '%', min: 4.8, max: 9.5, decimals: 1 }],
  },
};
