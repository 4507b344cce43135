/**
 * `src/records/units.ts`: units through NLM's UCUM library. Valid UCUM is kept and normalised,
 * device spellings with one meaning are read, anything else has no UCUM; conversions are exact
 * powers of ten or not done, and never between dimensionless units.
 */
import { describe, expect, it } from 'vitest';
import { parseAstmOptions } from '../../drivers/analyzers/astm/options.ts';
import { convertExact, DEVICE_SPELLINGS, exactPowerOfTen, isValidUcum, shiftDecimal, ucumOf } from '../../src/records/units.ts';

describe('ucumOf', () => {
  it.each([
    ['10*3/uL', '10*3/uL'],
    ['10*6/uL', '10*6/uL'],
    ['fL', 'fL'],
    ['um3', 'um3'],
    ['U/L', 'U/L'],
    ['U/l', 'U/L'],
    ['mg/dl', 'mg/dL'],
    ['mmol/l', 'mmol/L'],
    ['10^3/uL', '10*3/uL'],
    ['10E3/uL', '10*3/uL'],
    ['uIU/mL', 'u[IU]/mL'],
    ['mIU/mL', 'm[IU]/mL'],
    ['µmol/L', 'umol/L'],
    ['MG/DL', 'mg/dL'],
    ['COI', '{COI}'],
    [' g/dL ', 'g/dL'],
    ['mg/dL', 'mg/dL'],
    ['mg/L', 'mg/L'],
    ['g/L', 'g/L'],
    ['g/dL', 'g/dL'],
    ['IU/L', '[IU]/L'],
    ['%', '%'],
    ['mg/g', 'mg/g'],
    ['mg/mmol', 'mg/mmol'],
    ['mmol/L', 'mmol/L'],
    ['umol/L', 'umol/L'],
    ['mmol/mol', 'mmol/mol'],
    ['pg', 'pg'],
    ['10e3/uL', '10*3/uL'],
    ['10e6/uL', '10*6/uL'],
    ['10^3/µL', '10*3/uL'],
    ['10^6/uL', '10*6/uL'],
    ['/uL', '/uL'],
    ['p/uL', '/uL'],
    ['p/hpf', '/[HPF]'],
    ['p/lpf', '/[LPF]'],
    ['ng/mL', 'ng/mL'],
    ['mU/L', 'mU/L'],
    [' mg/dl ', 'mg/dL'],
    ['mg', 'mg'],
    ['U', 'U'],
    ['ml', 'mL'],
    ['mg/dL/min', 'mg/dL/min'],
  ])('%j → %s', (unit, ucum) => {
    expect(ucumOf(unit)).toBe(ucum);
  });

  it.each(['', '  ', 'RLU', '10)/mm)', 'Ery/µl', 'sec', 'S/CO', 'mg/dL)', 'Index'])('%j has no UCUM', (unit) => {
    expect(ucumOf(unit)).toBeNull();
  });

  it('every device spelling in the table means a unit the UCUM library accepts as written', () => {
    const bad = Object.entries(DEVICE_SPELLINGS).filter(([, code]) => !isValidUcum(code));
    expect(bad).toEqual([]);
  });

  it('isValidUcum is case-sensitive and exact', () => {
    expect(isValidUcum('mg/dL')).toBe(true);
    expect(isValidUcum('MG/DL')).toBe(false);
    expect(isValidUcum(' mg/dL')).toBe(false);
  });
});

describe('exact conversions', () => {
  it.each([
    ['um3', 'fL', 0],
    ['g/dL', 'g/L', 1],
    ['mg/L', 'mg/dL', -1],
    ['10*3/uL', '10*9/L', 0],
  ])('%s → %s is 10^%d', (from, to, p) => {
    expect(exactPowerOfTen(from, to)).toBe(p);
  });

  it.each([
    ['mg/dL', 'mmol/L'], // mass ↔ substance needs a molar mass
    ['mmol/mol', '%'], // HbA1c IFCC ↔ NGSP is not a scale
    ['%', '1'],
    ['mg/dL', 'fL'],
    ['[IU]/L', 'U/L'],
    ['RLU', 'U/L'],
    ['Cel', 'K'], // an offset scale
  ])('%s → %s is not converted', (from, to) => {
    expect(exactPowerOfTen(from, to)).toBeNull();
    expect(convertExact('1', from, to)).toBeNull();
  });

  it('moves the decimal point instead of multiplying floats', () => {
    expect(convertExact('90.6', 'um3', 'fL')).toBe(90.6);
    expect(convertExact('4.2', 'g/dL', 'g/L')).toBe(42);
    expect(convertExact('0.05', 'mg/dL', 'mg/L')).toBe(0.5);
    expect(convertExact('0.07', 'g/L', 'g/dL')).toBe(0.007);
    expect(shiftDecimal('-1.5', 3)).toBe(-1500);
    expect(shiftDecimal('12', -4)).toBe(0.0012);
    expect(shiftDecimal('1e3', 0)).toBeNull();
  });
});

describe('options.mappings units', () => {
  it('a mapping unit must be valid UCUM as written', () => {
    expect(parseAstmOptions({ mappings: { X: { name: 'X', ucum: '10*3/uL' } } }).mappings!.X!.ucum).toBe('10*3/uL');
    expect(() => parseAstmOptions({ mappings: { X: { name: 'X', ucum: 'MG/DL' } } })).toThrow(/mappings\["X"\]\.ucum: must be a valid UCUM unit/);
    expect(() => parseAstmOptions({ mappings: { X: { name: 'X', ucum: 'RLU' } } })).toThrow(/ucum/);
  });
});
