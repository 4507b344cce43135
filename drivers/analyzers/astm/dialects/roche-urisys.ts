/**
 * Roche Urisys 1100 and cobas u 411 (urine strip readers) in their ASTM mode.
 *
 * What is known (research note §3.1, §9): the Urisys 1100 manual §8.7 says its "ASTM" mode sends
 * results with sequence number, operator id, device id, patient id, measurement and last
 * calibration date/time; the cobas u 411 host manual has an "Upload (cobas u 411 to host)"
 * section. Neither record layout could be read publicly. This dialect therefore assumes the plain
 * LIS2-A2 layout: the sender name in H-5 component 1 (`Urisys 1100`, `cobas u 411`), one O per
 * strip, one R per pad with the pad's abbreviation in R-3 component 4 and the reader's text in R-4
 * (and unit in R-5). The codes below are the Combur strip pad abbreviations as printed on
 * Roche reports; check them against a real capture before relying on this dialect. Its golden case
 * is synthetic.
 */
import { senderWords, type AstmDialect, type TestMapping } from './types.ts';
import type { UrineAnalyteCode } from '../../../analytes/urine-strip.ts';

const ASSUMED = 'assumed pad abbreviation (layout unverified, research note §9); analyte from the shared strip table';
const strip = (name: string, analyte: UrineAnalyteCode): TestMapping => ({ name, loinc: null, strip: analyte, source: ASSUMED });

export const rocheUrisys: AstmDialect = {
  id: 'roche-urisys',
  manufacturer: 'Roche',
  model: 'Urisys 1100',
  description: 'Roche Urisys 1100 / cobas u 411 in ASTM mode (layout assumed, unverified)',
  matches: (sender) => senderWords(sender).some((s) => s.startsWith('urisys') || /^cobas ?u ?411$/.test(s) || s === 'u411'),
  identify: (sender) => {
    const name = sender[0] ?? '';
    return { model: /411/.test(name) ? 'cobas u 411' : 'Urisys 1100', firmware: sender[1] || null, serial: sender[2] || null };
  },
  encoding: 'auto',
  codeComponent: 4,
  tests: {
    SG: strip('Specific gravity', 'SG'),
    PH: strip('pH', 'PH'),
    LEU: strip('Leukocytes', 'LEU'),
    NIT: strip('Nitrite', 'NIT'),
    PRO: strip('Protein', 'PRO'),
    GLU: strip('Glucose', 'GLU'),
    KET: strip('Ketones', 'KET'),
    UBG: strip('Urobilinogen', 'UBG'),
    BIL: strip('Bilirubin', 'BIL'),
    ERY: strip('Blood', 'BLD'),
    COL: strip('Colour', 'COLOR'),
    CLA: strip('Clarity', 'CLARITY'),
  },
  specimenType: 'urine',
  sample: {
    sender: 'Urisys 1100^6.0^UR0000001',
    version: 'LIS2-A2',
    specimenPrefix: 'U',
    operator: 'OP1',
    tests: [
      { testId: '^^^SG', unit: '', choices: ['1.005', '1.010', '1.015', '1.020', '1.030'] },
      { testId: '^^^PH', unit: '', choices: ['5', '6', '6.5', '7', '8'] },
      { testId: '^^^LEU', unit: 'Leu/uL', choices: ['neg', '25', '100', '500'] },
      { testId: '^^^NIT', unit: '', choices: ['neg', 'pos'] },
      { testId: '^^^PRO', unit: 'mg/dL', choices: ['neg', '25', '75', '150'] },
      { testId: '^^^GLU', unit: 'mg/dL', choices: ['norm', '50', '100', '300'] },
    ],
  },
};
