import { describe, expect, it } from 'vitest';
import { MODELS, readingToDraft } from '../../drivers/glucose/freestyle-hid/records.ts';
import { parseArresultRecord, parseHistoryRecord, parseResultRecord, type FreeStyleReading } from '../../drivers/glucose/freestyle-hid/codec.ts';
import type { DeviceIdentity } from '../../src/records/types.ts';

/**
 * Rule 5 for the FreeStyle meters, one case per branch: the Neo's control flag (0 = control
 * solution) on glucose and ketone records, HI/LO on each record kind that may carry them (ketone:
 * HI only), the model's limits, units (ketone ÷ 18 in mmol/L) and the specimen of each method.
 */

const device: DeviceIdentity = { id: 'fs-1', driver: 'freestyle-hid', manufacturer: 'Abbott', model: 'FreeStyle Precision/Optium Neo', serial: 'X', firmware: null };
// type,id,M,D,YY,h,m,?,value,?,flag,… (Neo glucose) and type,id,M,D,YY,h,m,?,value,flag,… (Neo ketone)
const neoGlucose = (value: string, flag: string): string => `7,101,3,21,15,16,42,0,${value},0,${flag},0`;
const neoKetone = (value: string, flag: string): string => `9,102,3,21,15,16,42,0,${value},${flag},0`;
// InsuLinx type 0: 16 fields, value at 13.
const insulinx = (value: string): string => `0,103,3,21,15,16,42,1,0,0,0,2,0,${value},0,0`;

function reading(line: string): FreeStyleReading {
  const r = parseResultRecord(line);
  if (!r.ok || r.record.kind !== 'reading') throw new Error(JSON.stringify(r));
  return r.record.reading;
}

describe('Neo control flag', () => {
  it.each([
    ['0', true],
    ['1', false],
    ['2', false],
    ['10', false],
  ])('glucose flag %s → control %s', (flag, control) => {
    expect(reading(neoGlucose('120', flag)).control).toBe(control);
  });

  it.each([
    ['0', true],
    ['1', false],
  ])('ketone flag %s → control %s', (flag, control) => {
    expect(reading(neoKetone('18', flag)).control).toBe(control);
  });

  it('a flag that is not a number refuses the record rather than guessing', () => {
    expect(parseResultRecord(neoGlucose('120', 'x'))).toMatchObject({ ok: false, error: { code: 'invalid-record' } });
    expect(parseResultRecord(neoGlucose('120', ''))).toMatchObject({ ok: false, error: { code: 'invalid-record' } });
    expect(parseResultRecord('7,101,3,21,15,16,42,0,120,0')).toMatchObject({ ok: false, error: { code: 'invalid-record' } });
    expect(parseResultRecord('9,102,3,21,15,16,42,0,18')).toMatchObject({ ok: false, error: { code: 'invalid-record' } });
  });

  it('the glucose flag sits at field 10 and the ketone flag at field 9', () => {
    expect(reading('7,101,3,21,15,16,42,0,120,0,1').control).toBe(false);
    expect(reading('7,101,3,21,15,16,42,0,120,1,0').control).toBe(true);
    expect(reading('9,102,3,21,15,16,42,0,18,1').control).toBe(false);
    expect(reading('9,102,3,21,15,16,42,0,18,0').control).toBe(true);
  });

  it('InsuLinx and Libre records have no control marker: never control', () => {
    expect(reading(insulinx('120')).control).toBe(false);
  });
});

describe('HI/LO on the wire', () => {
  it.each(['HI', 'LO'])('Neo glucose %s is kept as the literal', (v) => {
    expect(reading(neoGlucose(v, '1')).raw).toBe(v);
  });

  it('Neo ketone HI is kept; LO is not documented for ketone strips and refuses the record', () => {
    expect(reading(neoKetone('HI', '1')).raw).toBe('HI');
    expect(parseResultRecord(neoKetone('LO', '1'))).toMatchObject({ ok: false, error: { code: 'invalid-record' } });
  });

  it.each(['HI', 'LO'])('InsuLinx %s is kept', (v) => {
    expect(reading(insulinx(v)).raw).toBe(v);
  });

  it.each(['hi', 'High', '', '-5', '12.5', '12345678901'])('a value %j is neither a number nor HI/LO: refused', (v) => {
    expect(parseResultRecord(neoGlucose(v, '1'))).toMatchObject({ ok: false, error: { code: 'invalid-record' } });
    expect(parseResultRecord(insulinx(v))).toMatchObject({ ok: false, error: { code: 'invalid-record' } });
  });

  it('a Libre history or scan value is a number only (HI/LO there is not documented)', () => {
    const history = (v: string) => `5,12,3,21,15,16,42,11,0,0,0,0,0,${v},100,0`;
    expect(parseHistoryRecord(history('120'))).toMatchObject({ ok: true, record: { kind: 'reading', reading: { raw: 120, control: false } } });
    expect(parseHistoryRecord(history('HI'))).toMatchObject({ ok: false, error: { code: 'invalid-record' } });
    const scan = (v: string) => `9,2,3,21,15,16,42,11,0,2,0,0,${v},0,3,${',0'.repeat(14).slice(1)}`;
    expect(parseArresultRecord(scan('130'))).toMatchObject({ ok: true, record: { kind: 'reading', reading: { raw: 130, method: 'sensor-scan', trend: 3 } } });
    expect(parseArresultRecord(scan('HI'))).toMatchObject({ ok: false, error: { code: 'invalid-record' } });
  });
});

describe('FreeStyle reading → observation', () => {
  const neo = MODELS.neo;
  const base = (over: Partial<FreeStyleReading>): FreeStyleReading => ({
    source: '$result?',
    recordType: 7,
    id: 1,
    time: '2015-03-21T16:42:00',
    analyte: 'glucose',
    method: 'strip',
    raw: 120,
    control: false,
    ...over,
  });
  const obs = (over: Partial<FreeStyleReading>, model = neo) => readingToDraft(base(over), device, 'Europe/Copenhagen', model).observations[0]!;

  it('glucose in range: the number in mg/dL, capillary LOINC', () => {
    expect(obs({})).toEqual({ code: 'GLU', name: 'Glucose', loinc: '41653-7', unit: 'mg/dL', ucum: 'mg/dL', text: null, value: 120, flags: [], comparator: null });
  });

  it('glucose HI and LO: no value, the flag, the comparator and the model limit', () => {
    expect(obs({ raw: 'HI' })).toMatchObject({ value: null, flags: ['HI'], comparator: '>', limit: 500 });
    expect(obs({ raw: 'LO' })).toMatchObject({ value: null, flags: ['LO'], comparator: '<', limit: 20 });
  });

  it('glucose HI/LO on a model with no known range: limit null, never a made-up number', () => {
    expect(obs({ raw: 'HI' }, MODELS.libre)).toMatchObject({ value: null, flags: ['HI'], limit: null });
    expect(obs({ raw: 'LO' }, MODELS.libre)).toMatchObject({ value: null, flags: ['LO'], limit: null });
    expect(readingToDraft(base({ raw: 'HI' }), device, 'Europe/Copenhagen', null).observations[0]).toMatchObject({ limit: null });
  });

  it('ketone: the wire value ÷ 18 in mmol/L, rounded to 0.1, with the ketone LOINC', () => {
    expect(obs({ analyte: 'ketone', raw: 18 })).toEqual({ code: 'BHB', name: 'beta-Hydroxybutyrate', loinc: '66441-7', unit: 'mmol/L', ucum: 'mmol/L', text: null, value: 1, flags: [], comparator: null });
    expect(obs({ analyte: 'ketone', raw: 25 }).value).toBe(1.4);
    expect(obs({ analyte: 'ketone', raw: 1 }).value).toBe(0.1);
  });

  it('ketone HI: the model\'s ketone limit in mmol/L; LO: no limit', () => {
    expect(obs({ analyte: 'ketone', raw: 'HI' })).toMatchObject({ value: null, flags: ['HI'], comparator: '>', limit: 8 });
    expect(obs({ analyte: 'ketone', raw: 'HI' }, MODELS.insulinx)).toMatchObject({ value: null, flags: ['HI'], limit: null });
    expect(obs({ analyte: 'ketone', raw: 'LO' })).toMatchObject({ value: null, flags: ['LO'], comparator: '<', limit: null });
  });

  it('sensor readings: the interstitial-fluid code, in mg/dL', () => {
    expect(obs({ method: 'sensor-history', raw: 99 })).toMatchObject({ code: 'GLU-ISF', loinc: '99504-3', value: 99, unit: 'mg/dL' });
    expect(obs({ method: 'sensor-scan', raw: 'HI' })).toMatchObject({ code: 'GLU-ISF', flags: ['HI'] });
  });
});

describe('FreeStyle reading → draft', () => {
  const r = (over: Partial<FreeStyleReading>): FreeStyleReading => ({
    source: '$result?',
    recordType: 7,
    id: 1,
    time: '2015-03-21T16:42:00',
    analyte: 'glucose',
    method: 'strip',
    raw: 120,
    control: false,
    ...over,
  });
  const draft = (over: Partial<FreeStyleReading>) => readingToDraft(r(over), device, 'Europe/Copenhagen', MODELS.neo);

  it('a control run: category control, specimen control solution', () => {
    expect(draft({ control: true })).toMatchObject({ category: 'control', specimen: { id: null, type: 'control solution' }, patient: null });
  });

  it.each([
    ['strip', 'capillary blood'],
    ['sensor-history', 'interstitial fluid'],
    ['sensor-scan', 'interstitial fluid'],
  ] as const)('a patient %s reading: specimen %s, source flag', (method, type) => {
    const d = draft({ method });
    expect(d.category).toBe('patient');
    expect(d.specimen).toEqual({ id: null, type });
    expect(d.flags).toEqual([`source:${method}`]);
  });

  it.each([
    [0, 'trend:none'],
    [1, 'trend:falling-fast'],
    [3, 'trend:steady'],
    [5, 'trend:rising-fast'],
  ])('trend %i → %s', (trend, flag) => {
    expect(draft({ method: 'sensor-scan', trend }).flags).toEqual(['source:sensor-scan', flag]);
  });

  it('the key is the command, the record number and the time', () => {
    expect(draft({}).key).toBe('$result?|1|2015-03-21T16:42:00');
  });
});
