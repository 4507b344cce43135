/**
 * Any POCT1-A2 device: observation ids coded in LOINC (`SN="LN"`, as the standard's OBS example
 * `2341-6` glucose) pass through; local codes are published with the flag `unmapped-code`.
 * `HEL.R02` and `OBS`-family quirks that several public Nova-style implementations show are
 * aliases here, since they are not one vendor's.
 */
import type { Poct1aProfile } from './types.ts';

export const genericProfile: Poct1aProfile = {
  id: 'generic',
  manufacturer: 'unknown',
  model: 'POCT1-A device',
  description: 'any CLSI POCT1-A2 device (LOINC-coded observations)',
  matches: () => true,
  observations: {},
  messageAliases: { 'HEL.R02': 'HEL.R01' },
};
