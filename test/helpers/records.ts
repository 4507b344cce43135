import type { ResultDraft } from '../../src/records/types.ts';

/** A plausible glucose draft for store and publisher tests that need no driver. */
export function glucoseDraft(n: number, overrides: Partial<ResultDraft> = {}): ResultDraft {
  const time = new Date(Date.UTC(2026, 0, 1, 8, 0, 0) + n * 60_000).toISOString().slice(0, 19);
  return {
    key: `${time}|${100 + n}|P`,
    device: {
      id: 'bench1',
      driver: 'onetouch-ultra2',
      manufacturer: 'LifeScan',
      model: 'OneTouch Ultra 2',
      serial: 'GMF600DCY',
      firmware: 'P02.00.00',
    },
    category: 'patient',
    specimen: { id: null, type: 'capillary blood' },
    patient: null,
    operator: null,
    observed_at: `${time}+01:00`,
    device_time: time,
    observations: [
      { code: 'GLU', name: 'Glucose', loinc: '41653-7', value: 100 + n, unit: 'mg/dL', ucum: 'mg/dL', flags: [], text: null, comparator: null },
    ],
    flags: [],
    ...overrides,
  };
}
