import { describe, expect, it } from 'vitest';
import { markerFlags, parseContourHeader, parseContourResult, readingToDraft, type ContourHeader, type ContourReading } from '../../drivers/glucose/contour-next/records.ts';
import { parseMessage } from '../../src/protocols/astm/records.ts';

/**
 * Rule 5 for the Contour meters, one case per branch: the unit of each record (never assumed),
 * the control marker, LO/HI markers with the header's V= limits in the header's own unit, the
 * value patterns per unit, and every other marker kind.
 */

function header(config: string): ContourHeader {
  const text = `H|\\^&||pw|Bayer7390^01.24\\01.04^7390-2336773^|A=1^${config}|1714||||||1|201909221304\r`;
  const h = parseContourHeader(parseMessage(text).header!.record);
  if (!h.ok) throw new Error(h.detail);
  return h.header;
}

function result(value: string, unit: string, markers: string, test = 'Glucose', time = '201909221200'): ReturnType<typeof parseContourResult> {
  const msg = parseMessage(`H|\\^&||pw|Bayer7390^01.24^7390-2336773^|U=0|1||||||1|201909221304\rP|1\rR|1|^^^${test}|${value}|${unit}||${markers}||${time}\rL|1|N\r`);
  return parseContourResult(msg.records.find((r) => r.type === 'R')!);
}

function reading(value: string, unit: string, markers: string): ContourReading {
  const r = result(value, unit, markers);
  if (!r.ok) throw new Error(r.code);
  return r.reading;
}

const draft = (r: ContourReading, h: ContourHeader) => readingToDraft(r, h, 'usb-1', 'Europe/Copenhagen', 0);

describe('Contour header: display unit and V= limits', () => {
  it.each([
    ['U=0^V=10600', 'mg/dL', { lo: 10, hi: 600 }],
    ['U=1^V=06333', 'mmol/L', { lo: 0.6, hi: 33.3 }],
    ['U=2^V=10600', null, null],
    ['V=10600', null, null],
    ['U=0', 'mg/dL', null],
    ['U=0^V=1060', 'mg/dL', null],
    ['U=0^V=106000', 'mg/dL', null],
    ['U=0^V=1x600', 'mg/dL', null],
  ])('%s → unit %s, limits %j', (config, unit, limits) => {
    const h = header(config);
    expect(h.unit).toBe(unit);
    expect(h.limits).toEqual(limits);
  });
});

describe('Contour result: unit, value, markers', () => {
  it.each([
    ['105', 'mg/dL^P', 105],
    ['1234', 'mg/dL^P', 1234],
    ['5.5', 'mmol/L^P', 5.5],
    ['5.55', 'mmol/L^P', 5.55],
    ['12', 'mmol/L^P', 12],
  ])('%s %s → %d', (value, unit, n) => {
    expect(reading(value, unit, '').value).toBe(n);
  });

  it.each([
    ['105.5', 'mg/dL^P'],
    ['12345', 'mg/dL^P'],
    ['', 'mg/dL^P'],
    ['-5', 'mg/dL^P'],
    ['5.555', 'mmol/L^P'],
    ['1234', 'mmol/L^P'],
    ['.5', 'mmol/L^P'],
    ['5.', 'mmol/L^P'],
  ])('%j %s is a bad value, not a guess', (value, unit) => {
    expect(result(value, unit, '')).toMatchObject({ ok: false, skip: false, code: 'bad-value' });
  });

  it.each(['mg/dl', 'mmol/l', '', 'mg', 'MG/DL'])('unit %j is refused: a number without a known unit is never stored', (unit) => {
    expect(result('105', `${unit}^P`, '')).toMatchObject({ ok: false, skip: false, code: 'unknown-unit' });
  });

  it.each(['Carb', 'carb', 'Insulin', 'INSULIN'])('%s is a logbook entry, skipped', (test) => {
    expect(result('10', 'mg/dL^P', '', test)).toEqual({ ok: false, skip: true, code: 'not-a-measurement' });
  });

  it.each(['Ketone', 'Glucose2', ''])('test %j is unknown', (test) => {
    expect(result('10', 'mg/dL^P', '', test)).toMatchObject({ ok: false, skip: false, code: 'unknown-test' });
  });

  it('glucose in any case is glucose', () => {
    expect(result('105', 'mg/dL^P', '', 'GLUCOSE')).toMatchObject({ ok: true });
  });

  it('a time that does not exist is refused', () => {
    expect(result('105', 'mg/dL^P', '', 'Glucose', '201902301200')).toMatchObject({ ok: false, code: 'bad-date' });
  });

  it('a reading marked both LO and HI is refused', () => {
    expect(result('', 'mg/dL^P', '</>')).toMatchObject({ ok: false, skip: false, code: 'bad-markers' });
  });

  it('LO and HI readings carry no value, whatever R-4 holds', () => {
    expect(reading('10', 'mg/dL^P', '<')).toMatchObject({ value: null, lo: true, hi: false, valueText: '10' });
    expect(reading('600', 'mg/dL^P', '>')).toMatchObject({ value: null, lo: false, hi: true });
    expect(reading('garbage', 'mg/dL^P', ' > ')).toMatchObject({ value: null, hi: true });
  });
});

describe('Contour reading → draft', () => {
  const mg = header('U=0^V=10600');
  const mmol = header('U=1^V=06333');

  it('a patient reading in mg/dL: LOINC 41653-7, unit kept, no flags', () => {
    const d = draft(reading('105', 'mg/dL^P', ''), mg);
    expect(d.category).toBe('patient');
    expect(d.specimen).toEqual({ id: null, type: 'capillary blood' });
    expect(d.observations).toEqual([{ code: 'GLU', name: 'Glucose', loinc: '41653-7', value: 105, unit: 'mg/dL', ucum: 'mg/dL', flags: [], text: null, comparator: null }]);
    expect(d.key).toBe('2019-09-22T12:00:00|105|mg/dL|P|0');
  });

  it('a reading in mmol/L: LOINC 14743-9 and the unit of the record, not of the header', () => {
    const d = draft(reading('5.5', 'mmol/L^P', ''), mg);
    expect(d.observations[0]).toMatchObject({ loinc: '14743-9', value: 5.5, unit: 'mmol/L', ucum: 'mmol/L' });
  });

  it.each(['C', 'C/B', 'B/C', ' C '])('markers %j: a control run, never a patient result', (markers) => {
    const d = draft(reading('105', 'mg/dL^P', markers), mg);
    expect(d.category).toBe('control');
    expect(d.specimen).toEqual({ id: null, type: 'control solution' });
    expect(d.key).toBe('2019-09-22T12:00:00|105|mg/dL|C|0');
  });

  it.each(['c', 'CC', 'B'])('markers %j: not a control marker', (markers) => {
    expect(draft(reading('105', 'mg/dL^P', markers), mg).category).toBe('patient');
  });

  it('LO: flag, comparator <, the header\'s LO limit, keyed LO', () => {
    const d = draft(reading('', 'mg/dL^P', '<'), mg);
    expect(d.observations[0]).toMatchObject({ value: null, flags: ['LO'], comparator: '<', limit: 10 });
    expect(d.key).toBe('2019-09-22T12:00:00|LO|mg/dL|P|0');
  });

  it('HI: flag, comparator >, the header\'s HI limit, keyed HI', () => {
    const d = draft(reading('', 'mg/dL^P', '>'), mg);
    expect(d.observations[0]).toMatchObject({ value: null, flags: ['HI'], comparator: '>', limit: 600 });
    expect(d.key).toBe('2019-09-22T12:00:00|HI|mg/dL|P|0');
  });

  it('HI/LO limits in mmol/L come from an mmol/L header', () => {
    expect(draft(reading('', 'mmol/L^P', '>'), mmol).observations[0]!.limit).toBe(33.3);
    expect(draft(reading('', 'mmol/L^P', '<'), mmol).observations[0]!.limit).toBe(0.6);
  });

  it('a limit in another unit than the reading\'s, or no V=, gives limit null, never a converted number', () => {
    expect(draft(reading('', 'mmol/L^P', '>'), mg).observations[0]!.limit).toBeNull();
    expect(draft(reading('', 'mg/dL^P', '<'), header('U=0')).observations[0]!.limit).toBeNull();
  });

  it('a reading in range has no limit field at all', () => {
    expect(draft(reading('105', 'mg/dL^P', ''), mg).observations[0]).not.toHaveProperty('limit');
  });

  it.each([
    ['P', 'reference:plasma'],
    ['B', 'reference:whole-blood'],
    ['C', 'reference:capillary'],
  ])('reference %s → %s', (ref, flag) => {
    expect(draft(reading('105', `mg/dL^${ref}`, ''), mg).flags).toEqual([flag]);
  });

  it('an unknown reference gives no flag; occurrence makes the key unique', () => {
    const r = reading('105', 'mg/dL^Q', '');
    expect(draft(r, mg).flags).toEqual([]);
    expect(readingToDraft(r, mg, 'usb-1', 'Europe/Copenhagen', 2).key).toBe('2019-09-22T12:00:00|105|mg/dL|P|2');
  });
});

describe('Contour markers → record flags', () => {
  it.each([
    ['B', ['meal:before']],
    ['A', ['meal:after']],
    ['F', ['meal:fasting']],
    ['D', ['note:not-feeling-right']],
    ['I', ['note:sick']],
    ['S', ['note:stress']],
    ['X', ['note:activity']],
    ['Z1', ['meal:minutes-after:15']],
    ['Z4', ['meal:minutes-after:60']],
    ['Z9', ['meal:minutes-after:135']],
    ['ZA', ['meal:minutes-after:150']],
    ['ZC', ['meal:minutes-after:180']],
    ['Z0', ['marker:Z0']],
    ['ZD', ['marker:ZD']],
    ['M0', ['marker:M0']],
    ['<', []],
    ['>', []],
    ['C', []],
    ['a+b', ['marker:a?b']],
    ['LONGMARKER12', ['marker:LONGMARK']],
  ])('%j → %j', (marker, flags) => {
    expect(markerFlags([marker])).toEqual(flags);
  });

  it('keeps the order of several markers', () => {
    expect(markerFlags(['B', 'C', 'S', 'Z2'])).toEqual(['meal:before', 'note:stress', 'meal:minutes-after:30']);
  });
});
