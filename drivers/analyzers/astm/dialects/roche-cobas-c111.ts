/**
 * Roche cobas c111 (benchtop chemistry), ASTM E1381/E1394. Research note §2.7-A: one record per
 * frame ending ETB, the L frame ETX; H-5 `C111^Roche^c111^<software>^<?>^<serial>`; the Roche test
 * number in R-3 component 4 (`^^^550`); R-11 `$SYS$`.
 *
 * Test numbers: no public source in the research maps c111 test numbers to analytes, so the table
 * is empty and every result keeps its Roche number as its code, with no LOINC and the flag
 * `unmapped-code`. A site that knows its test menu adds the numbers with `options.mappings`.
 */
import { senderWords, type AstmDialect } from './types.ts';

export const rocheCobasC111: AstmDialect = {
  id: 'roche-cobas-c111',
  manufacturer: 'Roche',
  model: 'cobas c111',
  description: 'Roche cobas c111 chemistry analyzer',
  matches: (sender) => {
    const w = senderWords(sender);
    return w[0] === 'c111' || (w.includes('roche') && w.includes('c111'));
  },
  identify: (sender) => ({ model: 'cobas c111', firmware: sender[3] || null, serial: sender[5] || null }),
  encoding: 'auto',
  codeComponent: 4,
  tests: {},
  specimenType: null,
  sample: {
    sender: 'C111^Roche^c111^4.2.2.1730^1^10001',
    version: '1',
    specimenPrefix: 'T',
    operator: '$SYS$',
    tests: [{ testId: '^^^550', unit: 'U/L', min: 20, max: 160, decimals: 1 }],
  },
};
