/**
 * Roche cobas c311 (chemistry), ASTM E1394 as its host interface sends it (senaite.astm
 * `tests/data/cobas_c311.txt`, two versions, and `tests/test_cobas_c311.py`, which names the
 * fields): H-5 `c311^1`; the whole message in one frame; O-3
 * `<total counter>^<sample id padded with spaces>^<sample count>^^<daily counter>`, so the
 * specimen id is component 2, not 1 (the counter in component 1 would name another sample);
 * R-3 `^^^<Roche test number>/` (the `/` ends the application code); O-23 (results reported) is
 * the only time the message holds; a `C|1|I|<n>|I` comment (an instrument data alarm number) after
 * each result.
 *
 * Test numbers: no public source maps them to analytes (as for the c111), so the table is empty:
 * every result keeps its code (`685/`) with no LOINC and `unmapped-code`, unless the site's
 * `options.mappings` names it.
 */
import { senderWords, type AstmDialect } from './types.ts';

export const rocheCobasC311: AstmDialect = {
  id: 'roche-cobas-c311',
  manufacturer: 'Roche',
  model: 'cobas c311',
  description: 'Roche cobas c311 chemistry analyzer (specimen id in O-3 component 2)',
  matches: (sender) => senderWords(sender)[0] === 'c311',
  identify: (sender) => ({ model: 'cobas c311', firmware: sender[1] || null, serial: null }),
  encoding: 'auto',
  codeComponent: 4,
  specimenIdAt: { field: 3, component: 2 },
  tests: {},
  specimenType: null,
  sample: {
    sender: 'c311^1',
    version: '1',
    specimenPrefix: 'C',
    operator: '',
    tests: [{ testId: '^^^685/', unit: 'U/l', min: 5, max: 60, decimals: 1 }],
  },
};
