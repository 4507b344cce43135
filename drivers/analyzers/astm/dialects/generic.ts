/**
 * Any other LIS2-A2 / E1394 sender: the code is R-3 component 4 (the manufacturer's local code,
 * research note §2.4), falling back to the first non-empty component; no code table, so every
 * observation carries `unmapped-code` unless `options.mappings` names it.
 */
import type { AstmDialect } from './types.ts';

export const genericDialect: AstmDialect = {
  id: 'generic',
  manufacturer: 'unknown',
  model: 'ASTM analyzer',
  description: 'any other E1394 / LIS2-A2 sender (code from R-3 component 4)',
  matches: () => true,
  identify: (sender) => ({ model: sender[0] || 'ASTM analyzer', firmware: null, serial: null }),
  encoding: 'auto',
  codeComponent: 4,
  tests: {},
  specimenType: null,
  sample: {
    sender: 'GENERIC^1.0',
    version: 'LIS2-A2',
    specimenPrefix: 'G',
    operator: '',
    tests: [{ testId: '^^^GLU', unit: 'mg/dL', min: 70, max: 200, decimals: 0 }],
  },
};
