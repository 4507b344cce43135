/**
 * 77 Elektronika LabUReader Plus 2 (strip reader) and UriSed mini / UriSed 3 (sediment), LIS2-A2.
 * Research note §2.7-E and §3.1: H-5 `<model>^<model>^<software>^1^<serial>`
 * (`LUP2^LUP2^1.0.11^1^UA301000462`, `UriSed mini^UriSed mini^3.2.19^1^UMI01000538`), H-13
 * `LIS2-A2`; strip results as R records with the local code in R-3 component 4 (`^^^Bil`) and the
 * value and unit in R-4/R-5 (`5`, `mg/dl`; `neg`, `norm`); sediment results with LOINC in
 * component 1 (`46419-8^^^RBC`); abnormal `A` in R-7 and again as `C|1|I|A|I`; Polish free text
 * for colour and clarity (`wodojasny`, `przejrzysty`).
 *
 * Text encoding: the sample sends `µ` as the UTF-8 bytes C2 B5, and the note shows the same text
 * read as Latin-1 (`Ery/Âµl`, `mÄ™tny`), so the dialect reads UTF-8 (`auto`); a message that is not
 * valid UTF-8 (a device set to its Polish code page) is read as windows-1250 and flagged
 * `encoding:fallback-windows-1250`, never with replacement characters. `options.encoding`
 * overrides it (`utf-8` forces UTF-8: bad bytes become U+FFFD, flagged `encoding-error`).
 *
 * Strip codes → the shared urine strip analyte table (LOINC "by automated test strip" where known).
 * The code spellings are those seen in the sample. QC marking: the sample's O-4 ends
 * `…^Service^SAMPLE`; a value there naming a control (`CONTROL`, `QC`, `KONTROLA`) is taken as a
 * control run. This is inferred, not documented.
 */
import { isLoinc, testCode } from '../test-id.ts';
import { senderWords, type AstmDialect, type TestMapping } from './types.ts';
import type { UrineAnalyteCode } from '../../../analytes/urine-strip.ts';

const SEEN = 'code seen in the LUP2 sample (research note §2.7-E); analyte from the shared strip table';
const strip = (name: string, analyte: UrineAnalyteCode): TestMapping => ({ name, loinc: null, strip: analyte, source: SEEN });
const SED = 'code seen in the UriSed mini sample; the device sends the LOINC code itself in R-3 component 1';

export const elektronika77: AstmDialect = {
  id: '77elektronika',
  manufacturer: '77 Elektronika',
  model: 'LabUReader Plus 2',
  description: '77 Elektronika LabUReader Plus 2, LabUMat 2, UriSed mini / UriSed 3 (LIS2-A2)',
  matches: (sender) => {
    const w = senderWords(sender);
    return w.some((s) => s === 'lup2' || s.startsWith('labureader') || s.startsWith('labumat') || s.startsWith('urised'));
  },
  identify: (sender) => {
    const name = sender[0] ?? '';
    const model = /^lup2$/i.test(name) ? 'LabUReader Plus 2' : name || 'LabUReader Plus 2';
    return { model, firmware: sender[2] || null, serial: sender[4] || null };
  },
  encoding: 'auto',
  fallbackEncoding: 'windows-1250',
  codeComponent: 4,
  loincComponent: 1,
  // Component 1 is the LOINC code of a sediment result (it tells RBC /HPF from RBC /uL: kept in the
  // code) or the strip's pad index (`1^^^Bil` and `^^^Bil` are the same pad: left out).
  identity: (comps) => (isLoinc((comps[0] ?? '').trim()) ? testCode(comps) : (comps[3] ?? '').trim() || testCode(comps)),
  tests: {
    Bil: strip('Bilirubin', 'BIL'),
    Ubg: strip('Urobilinogen', 'UBG'),
    Ket: strip('Ketones', 'KET'),
    Asc: strip('Ascorbic acid', 'ASC'),
    Glu: strip('Glucose', 'GLU'),
    Pro: strip('Protein', 'PRO'),
    Ery: strip('Blood', 'BLD'),
    pH: strip('pH', 'PH'),
    Nit: strip('Nitrite', 'NIT'),
    Leu: strip('Leukocytes', 'LEU'),
    SG: strip('Specific gravity', 'SG'),
    Col: strip('Colour', 'COLOR'),
    Cla: strip('Clarity', 'CLARITY'),
    RBC: { name: 'Erythrocytes (sediment)', loinc: null, source: SED },
    WBC: { name: 'Leukocytes (sediment)', loinc: null, source: SED },
  },
  specimenType: 'urine',
  category: (order) => (order.instrumentSpecimen.some((c) => /^(control|qc|kontrola)$/i.test(c.trim())) ? 'control' : null),
  sample: {
    sender: 'LUP2^LUP2^1.0.11^1^UA300000001',
    version: 'LIS2-A2',
    specimenPrefix: '0000',
    operator: 'autologin',
    instrument: 'LUP2',
    tests: [
      { testId: '^^^Glu', unit: 'mg/dl', choices: ['norm', '50', '100', '300'] },
      { testId: '^^^Pro', unit: 'mg/dl', choices: ['neg', '30', '100'] },
      { testId: '^^^Ery', unit: 'Ery/µl', choices: ['neg', '10', '50', '300'] },
      { testId: '^^^pH', unit: '', choices: ['5.0', '5.5', '6.0', '6.5', '7.0'] },
      { testId: '^^^SG', unit: '', choices: ['1.005', '1.010', '1.020', '1.030'] },
      { testId: '^^^Col', unit: '', choices: ['żółty', 'słomkowy', 'wodojasny'] },
    ],
  },
};
