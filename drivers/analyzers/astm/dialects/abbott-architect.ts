/**
 * Abbott ARCHITECT (i / c / ci systems), ASTM E1394 as its host interface sends it. Field meanings
 * from senaite.astm `instruments/abbott_architect.py` (which follows Abbott's interface manual) and
 * its test message `tests/data/abbott_architect.txt`: H-5 `ARCHITECT^<version>^<SCC serial>^<record
 * types>`; H-12 `P` patient or `Q` quality control results; R-3
 * `^^^<assay number>^<assay name>^<dilution protocol>^<assay status P primary / C correlation>^
 * <reagent master lot>^<reagent kit serial>^<control lot>^<result type F final / P preliminary
 * instrument response / I interpretation>`; R-7 several flags as components (`EXP^<`).
 *
 * Why a dialect: the generic code (the whole test id) holds the reagent lot and kit serial, so a
 * new reagent lot would give the same quantity a new code. The code here is what tells quantities
 * apart: assay number, dilution protocol, assay status (a correlation version is another
 * calibration) and result type (`0021^UNDILUTED^P^F`, `…^I`, `…^P` stay three codes); the lots are
 * left out. A control lot (component 10, empty for patient results) marks a control run.
 *
 * Assay numbers are site-specific (each lab's assay menu), so the table is empty: every result
 * keeps its code with `unmapped-code` unless `options.mappings` names it.
 */
import { senderWords, type AstmDialect } from './types.ts';

const at = (comps: readonly string[], n: number): string => (comps[n - 1] ?? '').trim();

export const abbottArchitect: AstmDialect = {
  id: 'abbott-architect',
  manufacturer: 'Abbott',
  model: 'ARCHITECT',
  description: 'Abbott ARCHITECT i/c/ci systems (code: assay number, dilution, status, result type)',
  matches: (sender) => senderWords(sender)[0] === 'architect',
  identify: (sender) => ({ model: 'ARCHITECT', firmware: sender[1] || null, serial: sender[2] || null }),
  encoding: 'auto',
  codeComponent: 4,
  nameComponent: 5,
  identity: (comps) => [at(comps, 4), at(comps, 6), at(comps, 7), at(comps, 11)].join('^').replace(/\^+$/, ''),
  tests: {},
  specimenType: null,
  category: (order) => (order.results.some((r) => at(r.testId, 10) !== '') ? 'control' : null),
  sample: {
    sender: 'ARCHITECT^9.45^SCC00001^H1P1O1R1C1Q1L1',
    version: '1',
    specimenPrefix: 'A',
    operator: '',
    tests: [{ testId: '^^^0021^B-hCG^UNDILUTED^P^00000L000^00001^^F', unit: 'mIU/mL', min: 0.5, max: 20, decimals: 2 }],
  },
};
