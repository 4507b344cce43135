import { describe, expect, it } from 'vitest';
import { decodeAstmMessage } from '../../drivers/analyzers/astm/records.ts';
import type { Observation } from '../../src/records/types.ts';

/**
 * Rule 5 for ASTM analyzer results, one case per branch: HI/LO written as a comparator, as R-7
 * `>`/`<` or as a word (a flag, a comparator and the limit, never the number as a value), a
 * number with no unit, units the table does not know or that contradict the mapping, the R-7
 * abnormal flags, R-9 status codes (X withholds the value), reference ranges and comments.
 */

const ctx = { deviceId: 'lab-1', timezone: 'Europe/Copenhagen' };

function obs(value: string, unit = 'mg/dL', abnormal = '', status = 'F', extra = '', options: Parameters<typeof decodeAstmMessage>[2] = {}): Observation {
  const text = `H|\\^&|||GEN\rP|1\rO|1|S1\rR|1|^^^GLU|${value}|${unit}||${abnormal}||${status}||||20250101120000\r${extra}L|1|N\r`;
  const { drafts } = decodeAstmMessage(Buffer.from(text, 'latin1'), ctx, options);
  expect(drafts).toHaveLength(1);
  return drafts[0]!.observations[0]!;
}

const hilo = (o: Observation) => ({ value: o.value, comparator: o.comparator, limit: o.limit, hilo: o.flags.filter((f) => f === 'HI' || f === 'LO'), text: o.text });

describe('ASTM analyzer values', () => {
  it.each([
    ['95', 95],
    ['-5', -5],
    ['+5', 5],
    ['5.25', 5.25],
  ])('%j → value %d, unit and UCUM as sent', (raw, value) => {
    expect(obs(raw)).toMatchObject({ value, unit: 'mg/dL', ucum: 'mg/dL', comparator: null, text: null });
    expect(obs(raw)).not.toHaveProperty('limit');
  });

  it.each([
    ['>600', { value: null, comparator: '>', limit: 600, hilo: ['HI'], text: '>600' }],
    ['>=600', { value: null, comparator: '>=', limit: 600, hilo: ['HI'], text: '>=600' }],
    ['<10', { value: null, comparator: '<', limit: 10, hilo: ['LO'], text: '<10' }],
    ['<=10', { value: null, comparator: '<=', limit: 10, hilo: ['LO'], text: '<=10' }],
    ['> 600', { value: null, comparator: '>', limit: 600, hilo: ['HI'], text: '> 600' }],
  ])('%j is off the range: %j', (raw, expected) => {
    expect(hilo(obs(raw))).toEqual(expected);
  });

  it.each([
    ['>', 'HI'],
    ['<', 'LO'],
  ])('R-7 %s with a plain number: the number is the limit', (flag, hl) => {
    expect(hilo(obs('600', 'mg/dL', flag))).toEqual({ value: null, comparator: flag, limit: 600, hilo: [hl], text: '600' });
  });

  it.each([
    ['HI', 'HI', '>'],
    ['High', 'HI', '>'],
    ['hi', 'HI', '>'],
    ['HIGH', 'HI', '>'],
    ['LO', 'LO', '<'],
    ['Low', 'LO', '<'],
    ['lo', 'LO', '<'],
  ])('the word %j: flag %s, comparator %s, limit null, no value', (raw, flag, comparator) => {
    expect(hilo(obs(raw))).toEqual({ value: null, comparator, limit: null, hilo: [flag], text: raw });
  });

  it.each(['HIGHER', 'LOW-ISH', 'H', 'L'])('%j is not a HI/LO word: text only', (raw) => {
    expect(hilo(obs(raw))).toEqual({ value: null, comparator: null, limit: undefined, hilo: [], text: raw });
  });

  it('dashes are no value', () => {
    expect(obs('---').flags).toContain('no-value');
    expect(obs('-').flags).toContain('no-value');
    expect(obs('').flags).not.toContain('no-value');
    expect(obs('').text).toBeNull();
  });
});

describe('ASTM units', () => {
  it('a number with no unit and no mapping: no value, the number as text, flag no-unit', () => {
    expect(obs('95', '')).toMatchObject({ value: null, unit: null, ucum: null, text: '95' });
    expect(obs('95', '').flags).toContain('no-unit');
  });

  it('a number with no unit takes the mapping\'s unit', () => {
    const o = obs('95', '', '', 'F', '', { mappings: { GLU: { name: 'Glucose', loinc: '2345-7', ucum: 'mg/dL', source: 'test mapping' } } });
    expect(o).toMatchObject({ value: 95, unit: 'mg/dL', ucum: 'mg/dL', loinc: '2345-7' });
    expect(o.flags).toEqual([]);
  });

  it('a unit the mapping contradicts keeps its unit and loses the code', () => {
    const o = obs('5.3', 'mmol/L', '', 'F', '', { mappings: { GLU: { name: 'Glucose', loinc: '2345-7', ucum: 'mg/dL', source: 'test mapping' } } });
    expect(o).toMatchObject({ value: 5.3, unit: 'mmol/L', ucum: 'mmol/L', loinc: null });
    expect(o.flags).toContain('unit-mismatch');
  });

  it('a unit the table does not know: kept as sent, no UCUM, flag unit-unknown', () => {
    const o = obs('5', 'furlongs');
    expect(o).toMatchObject({ value: 5, unit: 'furlongs', ucum: null });
    expect(o.flags).toEqual(['unmapped-code', 'unit-unknown']);
  });
});

describe('ASTM R-7 abnormal flags and R-9 status', () => {
  it.each([
    ['N', []],
    ['L', ['L']],
    ['H', ['H']],
    ['LL', ['LL']],
    ['HH', ['HH']],
    ['A', ['abnormal']],
    ['AA', ['abnormal']],
    ['U', ['up']],
    ['D', ['down']],
    ['B', ['better']],
    ['W', ['worse']],
    ['Z', ['flag:Z']],
  ])('R-7 %s → %j', (flag, flags) => {
    expect(obs('95', 'mg/dL', flag).flags).toEqual([...flags, 'unmapped-code']);
  });

  it.each([
    ['P', 'preliminary'],
    ['p', 'preliminary'],
    ['C', 'corrected'],
    ['I', 'pending'],
    ['S', 'partial'],
    ['R', 'previously-transmitted'],
    ['W', 'warning'],
    ['V', 'verified'],
    ['Q', 'response-to-query'],
    ['M', 'mic'],
    ['N', 'new'],
    ['Z', 'status:Z'],
  ])('R-9 %s → flag %s, the value kept', (status, flag) => {
    const o = obs('95', 'mg/dL', '', status);
    expect(o.flags).toEqual(['unmapped-code', flag]);
    expect(o.value).toBe(95);
  });

  it('R-9 F and empty: no status flag', () => {
    expect(obs('95', 'mg/dL', '', 'F').flags).toEqual(['unmapped-code']);
    expect(obs('95', 'mg/dL', '', '').flags).toEqual(['unmapped-code']);
  });

  it('R-9 X withholds a value, a comparator and a limit; a word stays text', () => {
    expect(hilo(obs('95', 'mg/dL', '', 'X'))).toEqual({ value: null, comparator: null, limit: undefined, hilo: [], text: '95' });
    expect(hilo(obs('>600', 'mg/dL', '', 'X'))).toEqual({ value: null, comparator: null, limit: undefined, hilo: ['HI'], text: '>600' });
    expect(hilo(obs('HI', 'mg/dL', '', 'X'))).toEqual({ value: null, comparator: null, limit: undefined, hilo: ['HI'], text: 'HI' });
    expect(hilo(obs('pending', 'mg/dL', '', 'X'))).toEqual({ value: null, comparator: null, limit: undefined, hilo: [], text: 'pending' });
    expect(obs('95', 'mg/dL', '', 'x').flags).toContain('cannot-be-done');
  });

  it('the reference range and result comments become flags; an empty comment does not', () => {
    const text = 'H|\\^&|||GEN\rP|1\rO|1|S1\rR|1|^^^GLU|95|mg/dL|70-110|||F||||20250101120000\rC|1|I|CHECK_SAMPLE^AGAIN|G\rC|2|I| |G\rC|3|I|check sample again|G\rL|1|N\r';
    const o = decodeAstmMessage(Buffer.from(text, 'latin1'), ctx).drafts[0]!.observations[0]!;
    // Coded instrument text is copied; instrument free text (spaces) is withheld like typed text.
    expect(o.flags).toEqual(['unmapped-code', 'reference:70-110', 'comment:CHECK_SAMPLE^AGAIN', 'comment-withheld:result']);
  });

  it('a comment is cut at 200 characters', () => {
    const long = Array<string>(7).fill('x'.repeat(40)).join('^');
    const text = `H|\\^&|||GEN\rP|1\rO|1|S1\rR|1|^^^GLU|95|mg/dL||||F||||20250101120000\rC|1|I|${long}|G\rL|1|N\r`;
    const o = decodeAstmMessage(Buffer.from(text, 'latin1'), ctx).drafts[0]!.observations[0]!;
    expect(o.flags.at(-1)).toBe(`comment:${long.slice(0, 200)}`);
  });
});
