/**
 * Horiba ABX Pentra XLR (haematology), ASTM E1394. Research note §2.7-B: one record per frame,
 * each ending ETX, frame numbers wrapping 7→0; H-5 just `ABX` (no model, serial or version); R-3
 * `^^^<code>^<LOINC>^1`, i.e. the device's code in component 4 and a LOINC code it sends itself
 * in component 5; R-5 is `1` for every result, a unit code whose meaning no public source in the
 * research explains (the note only says "a unit code!", §2.3), and the LOINC codes name the
 * quantity, not the unit it is reported in (WBC may be 10*3/uL or 10*9/L). A number with an unknown
 * unit is not a result a consumer can read, so each is published as text only: value, unit and
 * UCUM null, the number in `text`, flag `unit-unknown`. Values `-----` with status X where the
 * instrument could not measure.
 *
 * Names below are the analyte names of the LOINC codes the device itself sends (component 5). Two
 * of the codes it sends fail LOINC's check digit (`789-9` for RBC, `2100-5` for RDW-SD): they are
 * not LOINC codes, so those two results carry none (`isLoinc` in options.ts refuses them too).
 *
 * Code: R-3 component 4 alone (component 5 is that code's LOINC; component 6 is `1` in every
 * result of the capture); a component 6 other than `1` is kept in the code, since its meaning is
 * not known and it may tell two quantities apart.
 */
import { senderWords, type AstmDialect, type TestMapping } from './types.ts';

const DEVICE = 'sent by the device in R-3 component 5 (research note §2.7-B)';
const t = (name: string, loinc: string): TestMapping => ({ name, loinc, source: DEVICE });

export const horibaPentra: AstmDialect = {
  id: 'horiba-pentra',
  manufacturer: 'Horiba ABX',
  model: 'Pentra XLR',
  description: 'Horiba ABX Pentra XL/XLR haematology analyzers',
  matches: (sender) => {
    const w = senderWords(sender);
    return w[0] === 'abx' || w.some((s) => s.includes('pentra'));
  },
  identify: (sender) => ({ model: sender.find((s) => /pentra/i.test(s)) ?? 'Pentra XLR', serial: null, firmware: null }),
  encoding: 'auto',
  codeComponent: 4,
  loincComponent: 5,
  identity: (comps) => {
    const local = (comps[3] ?? '').trim();
    const extra = (comps[5] ?? '').trim();
    return extra === '' || extra === '1' ? local : `${local}^${extra}`;
  },
  tests: {
    WBC: t('Leukocytes', '804-5'),
    'LYM#': t('Lymphocytes', '731-0'),
    'LYM%': t('Lymphocytes/100 leukocytes', '736-9'),
    'MON#': t('Monocytes', '742-7'),
    'MON%': t('Monocytes/100 leukocytes', '744-3'),
    'NEU#': t('Neutrophils', '751-8'),
    'NEU%': t('Neutrophils/100 leukocytes', '770-8'),
    'EOS#': t('Eosinophils', '711-2'),
    'EOS%': t('Eosinophils/100 leukocytes', '713-8'),
    'BAS#': t('Basophils', '704-7'),
    'BAS%': t('Basophils/100 leukocytes', '706-2'),
    RBC: { name: 'Erythrocytes', loinc: null, source: `${DEVICE}; the device's 789-9 fails the LOINC check digit` },
    HGB: t('Hemoglobin', '717-9'),
    HCT: t('Hematocrit', '4544-3'),
    MCV: t('MCV', '787-2'),
    MCH: t('MCH', '785-6'),
    MCHC: t('MCHC', '786-4'),
    RDW: t('Erythrocyte distribution width', '788-0'),
    PLT: t('Platelets', '777-3'),
    MPV: t('Platelet mean volume', '776-5'),
    RDWSD: { name: 'Erythrocyte distribution width (SD)', loinc: null, source: `${DEVICE}; the device's 2100-5 fails the LOINC check digit` },
  },
  specimenType: 'whole blood',
  unknownUnits: ['1'],
  sample: {
    sender: 'ABX',
    version: 'E1394-97',
    specimenPrefix: 'S',
    operator: 'OPERATOR',
    tests: [
      { testId: '^^^WBC^804-5^1', unit: '1', min: 4, max: 11, decimals: 1 },
      { testId: '^^^RBC^789-9^1', unit: '1', min: 3.9, max: 5.6, decimals: 2 },
      { testId: '^^^HGB^717-9^1', unit: '1', min: 11.5, max: 17, decimals: 1 },
      { testId: '^^^PLT^777-3^1', unit: '1', min: 150, max: 400, decimals: 0 },
    ],
  },
};
