import { describe, expect, it } from 'vitest';
import { COMMENT_SLUGS, readingToDraft, ultra2Identity } from '../../drivers/glucose/onetouch-ultra2/records.ts';
import { decodeLine, ultra2Line, type Ultra2Reading } from '../../drivers/glucose/onetouch-ultra2/codec.ts';

/**
 * Rule 5 for the OneTouch Ultra 2, one case per branch: the `C` control marker, the 20–600 mg/dL
 * range on both sides (HI/LO flags with the limit and the number kept only as text), the parity
 * mark, meal and comment codes, and the display unit of the dump header (values stay mg/dL).
 */

const identity = ultra2Identity('u2', 'GMF600DCY', 'P02.00.00');

/** One reply line as decodeLine takes it: body, space, checksum, without the CR LF. */
function wire(body: string): Buffer {
  const full = ultra2Line(body);
  return full.subarray(0, full.length - 2);
}

function line(marker: 'C' | ' ', value: string, parity = ' ', meal = 'N', comment = '00'): ReturnType<typeof decodeLine> {
  return decodeLine(wire(`P "SAT","03/21/15","16:42:11   ","${marker} ${value}${parity}","${meal}","${comment}", 00`));
}

function reading(...args: Parameters<typeof line>): Ultra2Reading {
  const r = line(...args);
  if (!r.ok || r.message.type !== 'reading') throw new Error(JSON.stringify(r));
  return r.message.reading;
}

const draft = (r: Ultra2Reading) => readingToDraft(r, identity, 'Europe/Copenhagen');

describe('Ultra 2 reading line', () => {
  it('C marks a control-solution run; a space a patient reading', () => {
    expect(reading('C', '105')).toMatchObject({ control: true, value: 105, time: '2015-03-21T16:42:11' });
    expect(reading(' ', '105')).toMatchObject({ control: false, value: 105 });
  });

  it('any other marker is no known reply', () => {
    expect(decodeLine(wire('P "SAT","03/21/15","16:42:11   ","Q 105 ","N","00", 00'))).toMatchObject({ ok: false, error: { code: 'invalid-response' } });
  });

  it('? after the value is the parity mark', () => {
    expect(reading(' ', '105', '?').parity).toBe(true);
    expect(reading(' ', '105', ' ').parity).toBe(false);
  });

  it.each([
    ['00', 0],
    ['01', 1],
    ['11', 11],
  ])('comment %s → %i', (comment, code) => {
    expect(reading(' ', '105', ' ', 'N', comment).comment).toBe(code);
  });

  it('comment 12 and above is outside 00–11: refused', () => {
    expect(line(' ', '105', ' ', 'N', '12')).toMatchObject({ ok: false, error: { code: 'invalid-response' } });
    expect(line(' ', '105', ' ', 'N', '99')).toMatchObject({ ok: false, error: { code: 'invalid-response' } });
  });

  it('a date that does not exist is refused', () => {
    expect(decodeLine(wire('P "SAT","02/30/15","16:42:11   ","  105 ","N","00", 00'))).toMatchObject({ ok: false, error: { code: 'invalid-date' } });
  });
});

describe('Ultra 2 dump header: the display unit', () => {
  it.each([
    ['MG/DL ', 'mg/dL'],
    ['MMOL/L', 'mmol/L'],
  ])('%j → %s', (wireUnit, unit) => {
    const r = decodeLine(wire(`P 005,"GMF600DCY","${wireUnit}"`));
    expect(r).toEqual({ ok: true, message: { type: 'dump-header', count: 5, serial: 'GMF600DCY', unit } });
  });

  it('the unit reply says the same', () => {
    expect(decodeLine(wire('SU?,"MMOL/L"'))).toEqual({ ok: true, message: { type: 'unit', unit: 'mmol/L' } });
    expect(decodeLine(wire('SU?,"MG/DL "'))).toEqual({ ok: true, message: { type: 'unit', unit: 'mg/dL' } });
  });
});

describe('Ultra 2 reading → draft', () => {
  it('a control run: category control, control solution, key marked C', () => {
    const d = draft(reading('C', '105'));
    expect(d.category).toBe('control');
    expect(d.specimen).toEqual({ id: null, type: 'control solution' });
    expect(d.key).toBe('2015-03-21T16:42:11|105|C');
  });

  it('a patient reading: category patient, capillary blood, the value in mg/dL with no text', () => {
    const d = draft(reading(' ', '105'));
    expect(d.category).toBe('patient');
    expect(d.specimen).toEqual({ id: null, type: 'capillary blood' });
    expect(d.key).toBe('2015-03-21T16:42:11|105|P');
    expect(d.observations).toEqual([{ code: 'GLU', name: 'Glucose', loinc: '41653-7', value: 105, unit: 'mg/dL', ucum: 'mg/dL', flags: [], text: null, comparator: null }]);
  });

  it.each([
    ['601', { value: null, flags: ['HI'], comparator: '>', limit: 600, text: '601' }],
    ['600', { value: 600, flags: [], comparator: null, text: null }],
    ['020', { value: 20, flags: [], comparator: null, text: null }],
    ['019', { value: null, flags: ['LO'], comparator: '<', limit: 20, text: '19' }],
    ['000', { value: null, flags: ['LO'], comparator: '<', limit: 20, text: '0' }],
    ['999', { value: null, flags: ['HI'], comparator: '>', limit: 600, text: '999' }],
  ])('wire value %s → %j', (value, expected) => {
    expect(draft(reading(' ', value)).observations[0]).toMatchObject(expected);
  });

  it('the parity mark is an observation flag, before HI/LO', () => {
    expect(draft(reading(' ', '105', '?')).observations[0]!.flags).toEqual(['parity-error']);
    expect(draft(reading(' ', '700', '?')).observations[0]!.flags).toEqual(['parity-error', 'HI']);
  });

  it.each([
    ['B', ['meal:before']],
    ['A', ['meal:after']],
    ['N', []],
  ])('meal %s → %j', (meal, flags) => {
    expect(draft(reading(' ', '105', ' ', meal)).flags).toEqual(flags);
  });

  it.each(COMMENT_SLUGS.map((slug, i) => [i, slug] as const).slice(1))('comment %i → comment:%s', (code, slug) => {
    expect(draft(reading(' ', '105', ' ', 'N', String(code).padStart(2, '0'))).flags).toEqual([`comment:${slug}`]);
  });

  it('comment 0 is no flag; a code with no slug is comment:unknown', () => {
    expect(draft(reading(' ', '105')).flags).toEqual([]);
    expect(draft({ ...reading(' ', '105'), comment: 12 }).flags).toEqual(['comment:unknown']);
  });
});
