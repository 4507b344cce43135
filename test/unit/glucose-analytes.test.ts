import { describe, expect, it } from 'vitest';
import {
  CAPILLARY_GLUCOSE_MG_DL,
  CAPILLARY_GLUCOSE_MMOL_L,
  GLUCOSE_CODINGS,
  GLUCOSE_HI_LIMIT,
  GLUCOSE_LO_LIMIT,
  INTERSTITIAL_GLUCOSE_MG_DL,
  capillaryGlucoseCoding,
  codedGlucoseObservation,
  glucoseCoding,
  glucoseLevelFields,
  glucoseMeterDraft,
  glucoseObservation,
  meterLevel,
  rangeGlucose,
} from '../../drivers/analytes/glucose.ts';
import { BLOOD_KETONE_MMOL_L } from '../../drivers/analytes/ketone.ts';
import type { DeviceIdentity } from '../../src/records/types.ts';

const DEVICE: DeviceIdentity = { id: 'bench1', driver: 'test', manufacturer: 'Test', model: 'Meter', serial: 'S1', firmware: null };

describe('glucose codes', () => {
  it('codes every specimen and unit with a source, and no combination twice', () => {
    const seen = new Set<string>();
    for (const c of GLUCOSE_CODINGS) {
      expect(c.loinc).toMatch(/^\d{1,6}-\d$/);
      expect(['POCT1', 'HDDT', 'CGM']).toContain(c.source);
      expect(c.ucum).toBe(c.unit);
      const pair = `${c.specimen}|${c.unit}`;
      expect(seen.has(pair), pair).toBe(false);
      seen.add(pair);
    }
  });

  it('finds capillary mg/dL, capillary mmol/L and interstitial mg/dL; nothing for interstitial mmol/L', () => {
    expect(glucoseCoding('capillary blood', 'mg/dL')?.loinc).toBe('41653-7');
    expect(glucoseCoding('capillary blood', 'mmol/L')?.loinc).toBe('14743-9');
    expect(glucoseCoding('interstitial fluid', 'mg/dL')?.loinc).toBe('99504-3');
    expect(glucoseCoding('interstitial fluid', 'mmol/L')).toBeNull();
    expect(CAPILLARY_GLUCOSE_MG_DL).toMatchObject({ code: 'GLU', name: 'Glucose', loinc: '41653-7', unit: 'mg/dL' });
    expect(CAPILLARY_GLUCOSE_MMOL_L).toMatchObject({ code: 'GLU', name: 'Glucose', loinc: '14743-9', unit: 'mmol/L' });
    expect(INTERSTITIAL_GLUCOSE_MG_DL).toMatchObject({ code: 'GLU-ISF', loinc: '99504-3', specimen: 'interstitial fluid' });
  });
});

describe('capillaryGlucoseCoding', () => {
  it('codes a strip reading by the unit the meter sent', () => {
    expect(capillaryGlucoseCoding('mg/dL')).toBe(CAPILLARY_GLUCOSE_MG_DL);
    expect(capillaryGlucoseCoding('mmol/L')).toBe(CAPILLARY_GLUCOSE_MMOL_L);
  });
});

describe('β-ketone code', () => {
  it('is BHB in mmol/L with its LOINC code and source', () => {
    expect(BLOOD_KETONE_MMOL_L).toMatchObject({ code: 'BHB', name: 'beta-Hydroxybutyrate', loinc: '66441-7', unit: 'mmol/L', ucum: 'mmol/L', source: 'FreeStyle' });
    expect(BLOOD_KETONE_MMOL_L.loincName).not.toBe('');
  });

  it('builds an observation like glucose: a value, or HI with the limit and no value', () => {
    expect(codedGlucoseObservation(BLOOD_KETONE_MMOL_L, { kind: 'value', value: 0.4 })).toEqual({
      code: 'BHB',
      name: 'beta-Hydroxybutyrate',
      loinc: '66441-7',
      value: 0.4,
      unit: 'mmol/L',
      ucum: 'mmol/L',
      flags: [],
      text: null,
      comparator: null,
    });
    expect(codedGlucoseObservation(BLOOD_KETONE_MMOL_L, { kind: 'HI', limit: 8 })).toMatchObject({ value: null, flags: ['HI'], comparator: '>', limit: 8 });
  });
});

describe('meterLevel (a reading against the limits the meter reports)', () => {
  const limits = { lo: 20, hi: 500 };

  it('a number is a value, whatever the limits (the meter already judged it in range)', () => {
    expect(meterLevel(104, limits)).toEqual({ kind: 'value', value: 104 });
    expect(meterLevel(5.6, null)).toEqual({ kind: 'value', value: 5.6 });
  });

  it('HI takes the hi limit and LO the lo limit', () => {
    expect(meterLevel('HI', limits)).toEqual({ kind: 'HI', limit: 500 });
    expect(meterLevel('LO', limits)).toEqual({ kind: 'LO', limit: 20 });
  });

  it('without limits, or without that side, the limit is null, never guessed', () => {
    expect(meterLevel('HI', null)).toEqual({ kind: 'HI', limit: null });
    expect(meterLevel('LO', null)).toEqual({ kind: 'LO', limit: null });
    expect(meterLevel('LO', { lo: null, hi: 8 })).toEqual({ kind: 'LO', limit: null });
    expect(meterLevel('HI', { lo: 1, hi: null })).toEqual({ kind: 'HI', limit: null });
  });
});

describe('glucoseLevelFields', () => {
  it('a value: the number, no flag, no comparator, and no limit key', () => {
    const f = glucoseLevelFields({ kind: 'value', value: 81 });
    expect(f).toEqual({ value: 81, flags: [], comparator: null });
    expect('limit' in f).toBe(false);
  });

  it('HI: no value, flag HI, ">" and the limit; LO: no value, flag LO, "<" and the limit', () => {
    expect(glucoseLevelFields({ kind: 'HI', limit: 500 })).toEqual({ value: null, flags: ['HI'], comparator: '>', limit: 500 });
    expect(glucoseLevelFields({ kind: 'LO', limit: 0.6 })).toEqual({ value: null, flags: ['LO'], comparator: '<', limit: 0.6 });
  });

  it('gives each observation its own flags array', () => {
    const a = glucoseLevelFields({ kind: 'value', value: 1 });
    const b = glucoseLevelFields({ kind: 'value', value: 1 });
    expect(a.flags).not.toBe(b.flags);
  });
});

describe('rangeGlucose (20–600 mg/dL)', () => {
  it('keeps the limits themselves as numbers', () => {
    expect(GLUCOSE_LO_LIMIT).toBe(20);
    expect(GLUCOSE_HI_LIMIT).toBe(600);
    expect(rangeGlucose(20)).toEqual({ kind: 'value', mgdl: 20 });
    expect(rangeGlucose(600)).toEqual({ kind: 'value', mgdl: 600 });
  });

  it('turns a number below 20 into LO and above 600 into HI, with the limit', () => {
    expect(rangeGlucose(19)).toEqual({ kind: 'LO', limit: 20 });
    expect(rangeGlucose(0)).toEqual({ kind: 'LO', limit: 20 });
    expect(rangeGlucose(601)).toEqual({ kind: 'HI', limit: 600 });
  });
});

describe('glucose observations', () => {
  it('a value carries the number, no flag, no comparator, no limit', () => {
    const o = glucoseObservation({ kind: 'value', mgdl: 81 });
    expect(o).toEqual({ code: 'GLU', name: 'Glucose', loinc: '41653-7', value: 81, unit: 'mg/dL', ucum: 'mg/dL', flags: [], text: null, comparator: null });
    expect(Object.keys(o)).toEqual(['code', 'name', 'loinc', 'value', 'unit', 'ucum', 'flags', 'text', 'comparator']);
  });

  it('HI is ">" the limit and LO "<" it, with no value', () => {
    expect(glucoseObservation({ kind: 'HI', limit: 600 })).toMatchObject({ value: null, flags: ['HI'], comparator: '>', limit: 600 });
    expect(glucoseObservation({ kind: 'LO', limit: 20 })).toMatchObject({ value: null, flags: ['LO'], comparator: '<', limit: 20 });
  });

  it('codes by the coding given: mmol/L keeps its unit, a HI/LO without a known limit says null', () => {
    expect(codedGlucoseObservation(CAPILLARY_GLUCOSE_MMOL_L, { kind: 'value', value: 5.4 })).toMatchObject({
      loinc: '14743-9',
      value: 5.4,
      unit: 'mmol/L',
      ucum: 'mmol/L',
    });
    expect(codedGlucoseObservation(INTERSTITIAL_GLUCOSE_MG_DL, { kind: 'LO', limit: null })).toMatchObject({
      code: 'GLU-ISF',
      loinc: '99504-3',
      value: null,
      flags: ['LO'],
      comparator: '<',
      limit: null,
    });
    expect(codedGlucoseObservation(CAPILLARY_GLUCOSE_MMOL_L, { kind: 'HI', limit: 33.3 })).toMatchObject({ flags: ['HI'], comparator: '>', limit: 33.3 });
  });

  it('keeps the published key order, with limit last on HI/LO', () => {
    expect(Object.keys(codedGlucoseObservation(CAPILLARY_GLUCOSE_MMOL_L, { kind: 'LO', limit: 0.6 }))).toEqual([
      'code',
      'name',
      'loinc',
      'value',
      'unit',
      'ucum',
      'flags',
      'text',
      'comparator',
      'limit',
    ]);
  });
});

describe('glucoseMeterDraft', () => {
  const reading = {
    key: 'k1',
    device: DEVICE,
    time: '2025-03-30T02:30:00',
    timezone: 'UTC',
    observation: glucoseObservation({ kind: 'value', mgdl: 95 }),
    flags: ['meal:before'],
  };

  it('a patient reading is capillary blood with no patient or operator', () => {
    const d = glucoseMeterDraft({ ...reading, control: false });
    expect(d).toMatchObject({
      key: 'k1',
      category: 'patient',
      specimen: { id: null, type: 'capillary blood' },
      patient: null,
      operator: null,
      observed_at: '2025-03-30T02:30:00+00:00',
      device_time: '2025-03-30T02:30:00',
      flags: ['meal:before'],
    });
    expect(d.observations).toEqual([reading.observation]);
    expect(d.device).toEqual(DEVICE);
    expect(d.device).not.toBe(DEVICE);
  });

  it('a control run is category control and specimen control solution, whatever the specimen', () => {
    const d = glucoseMeterDraft({ ...reading, control: true, specimen: 'interstitial fluid' });
    expect(d.category).toBe('control');
    expect(d.specimen.type).toBe('control solution');
  });

  it('a sensor reading names interstitial fluid', () => {
    expect(glucoseMeterDraft({ ...reading, control: false, specimen: 'interstitial fluid' }).specimen.type).toBe('interstitial fluid');
  });

  it('observed_at carries the offset of the device zone', () => {
    expect(glucoseMeterDraft({ ...reading, control: false, timezone: 'Europe/Copenhagen', time: '2025-07-01T12:00:00' }).observed_at).toBe('2025-07-01T12:00:00+02:00');
  });
});
