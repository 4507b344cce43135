import { describe, expect, it } from 'vitest';
import { loincFor, parseStripValue, stripObservation, ucumFor, unitInfo } from '../../drivers/analytes/urine-strip.ts';

/**
 * Rule 5 for urine strips ("units are always explicit"), one case per branch: every comparator
 * spelling, every approximate marker, pH written with its name, unit spellings and the micro
 * sign, a number with no unit (coded only where the analyte has a unitless scale), an unknown
 * unit, and what each case publishes.
 */

describe('parseStripValue: comparators', () => {
  it.each([
    ['>=300 mg/dL', '>='],
    ['≥300 mg/dL', '>='],
    ['=>300 mg/dL', '>='],
    ['<=300 mg/dL', '<='],
    ['≤300 mg/dL', '<='],
    ['=<300 mg/dL', '<='],
    ['>300 mg/dL', '>'],
    ['<300 mg/dL', '<'],
    ['> 300 mg/dL', '>'],
    ['300 mg/dL', null],
  ])('%j → comparator %s, value 300, unit mg/dL', (text, comparator) => {
    expect(parseStripValue(text)).toMatchObject({ value: 300, comparator, unit: 'mg/dL', ucum: 'mg/dL', kind: 'mass-concentration', approximate: false });
  });
});

describe('parseStripValue: approximate numbers keep no value', () => {
  it.each(['Apr 200 Hem/uL', 'apr. 200 Hem/uL', 'Approx 200 Hem/uL', 'Aprox 200 Hem/uL', 'aprox. 200 Hem/uL', 'approx.200 Hem/uL', 'Ca 200 Hem/uL', 'ca. 200 Hem/uL', '~200 Hem/uL', '~ 200 Hem/uL'])(
    '%j',
    (text) => {
      expect(parseStripValue(text)).toMatchObject({ value: null, comparator: null, unit: 'Hem/uL', ucum: '/uL', approximate: true, text });
    },
  );

  it('an approximate comparator keeps neither value nor comparator', () => {
    expect(parseStripValue('Ca >=300 mg/dL')).toMatchObject({ approximate: false, value: null });
    expect(parseStripValue('Ca 300 mg/dL')).toMatchObject({ approximate: true, value: null, comparator: null, unit: 'mg/dL' });
  });

  it('Ca with no number after it is text, not approximate (a word, e.g. calcium)', () => {
    expect(parseStripValue('Ca')).toMatchObject({ approximate: false, value: null, unit: null, text: 'Ca' });
    expect(parseStripValue('Ca high')).toMatchObject({ approximate: false, value: null });
  });

  it('a marker before a word is no approximate number, and gives no value', () => {
    expect(parseStripValue('Apr pH 6.5')).toMatchObject({ approximate: false, value: null, unit: null });
  });
});

describe('parseStripValue: pH, bare numbers, units', () => {
  it.each(['pH 6.5', 'PH 6.5', 'ph  6.5'])('%j → 6.5 [pH]', (text) => {
    expect(parseStripValue(text)).toMatchObject({ value: 6.5, unit: 'pH', ucum: '[pH]', kind: 'ph', comparator: null });
  });

  it('pH with no number is text', () => {
    expect(parseStripValue('pH')).toMatchObject({ value: null, unit: null, text: 'pH' });
  });

  it('a bare number has a value and no unit', () => {
    expect(parseStripValue('1.020')).toMatchObject({ value: 1.02, unit: null, ucum: null, kind: null });
    expect(parseStripValue('7')).toMatchObject({ value: 7, unit: null });
  });

  it.each([
    ['5 µmol/L', 'umol/L'],
    ['5 μmol/L', 'umol/L'],
    ['5 umol/L', 'umol/L'],
    ['5 MMOL/L', 'mmol/L'],
    ['5 g/L', 'g/L'],
    ['5 g/dL', 'g/dL'],
    ['5 mg/L', 'mg/L'],
    ['5 Ery/µL', '/uL'],
    ['5 Leu/uL', '/uL'],
    ['5 WBC/uL', '/uL'],
    ['5 RBC/uL', '/uL'],
    ['5 cells/uL', '/uL'],
    ['5 /uL', '/uL'],
    ['30 mg/g', 'mg/g'],
    ['3 mg/mmol', 'mg/mmol'],
  ])('%j → ucum %s', (text, ucum) => {
    expect(parseStripValue(text)).toMatchObject({ value: Number(text.split(' ')[0]), ucum });
  });

  it('Ehrlich units have no UCUM code but a known kind', () => {
    expect(parseStripValue('1 E.U./dL')).toMatchObject({ value: 1, unit: 'E.U./dL', ucum: null, kind: 'mass-concentration' });
    expect(parseStripValue('1 EU/dL')).toMatchObject({ ucum: null, kind: 'mass-concentration' });
    expect(unitInfo(' E.U./DL ')).toEqual({ ucum: null, kind: 'mass-concentration' });
  });

  it('an unknown unit: no value, no comparator, the words kept as unknownUnit', () => {
    expect(parseStripValue('>12 U/L')).toMatchObject({ value: null, comparator: null, unit: null, ucum: null, unknownUnit: 'U/L' });
    expect(parseStripValue('12 per field')).toMatchObject({ value: null, unknownUnit: 'per field' });
    expect(unitInfo('U/L')).toBeNull();
  });

  it('ordinal words and empty text', () => {
    expect(parseStripValue('  Negativo ')).toMatchObject({ ordinal: 'negative', value: null, text: 'Negativo' });
    expect(parseStripValue('++')).toMatchObject({ ordinal: '2+', value: null });
    expect(parseStripValue('')).toMatchObject({ ordinal: null, value: null, text: '' });
    expect(parseStripValue('1+ 2')).toMatchObject({ value: null, ordinal: null });
  });
});

describe('loincFor and ucumFor: a number with no unit', () => {
  it('glucose 100 with no unit: no code, no UCUM (which unit is unknown)', () => {
    const v = parseStripValue('100');
    expect(loincFor('GLU', v)).toBeNull();
    expect(ucumFor('GLU', v)).toBeNull();
  });

  it('specific gravity and pH numbers with no unit: their own scale', () => {
    expect(loincFor('SG', parseStripValue('1.020'))!.code).toBe('53326-5');
    expect(loincFor('SG', parseStripValue('1.020'), 'strip')!.code).toBe('5811-5');
    expect(ucumFor('SG', parseStripValue('1.020'))).toBe('1');
    expect(loincFor('PH', parseStripValue('6.5'))!.code).toBe('50560-2');
    expect(ucumFor('PH', parseStripValue('6.5'))).toBe('[pH]');
    expect(ucumFor('SG', parseStripValue('>1.030'))).toBe('1');
  });

  it('an approximate bare number has no code where the analyte needs a unit', () => {
    expect(loincFor('GLU', parseStripValue('Apr 100'))).toBeNull();
  });

  it('a quantity takes the quantitative code of its kind; an ordinal the presence code', () => {
    expect(loincFor('GLU', parseStripValue('100 mg/dL'))!.code).toBe('53328-1');
    expect(loincFor('GLU', parseStripValue('100 mg/dL'), 'strip')!.code).toBe('5792-7');
    expect(loincFor('GLU', parseStripValue('Negative'))!.code).toBe('50555-2');
    expect(loincFor('GLU', parseStripValue('Negative'), 'strip')!.code).toBe('25428-4');
  });

  it('a quantity of a kind no code has gets no code (blood in mg/dL); automated falls back to the strip code', () => {
    expect(loincFor('GLU', parseStripValue('5 mmol/L'))).toBeNull();
    // Blood has no automated quantitative code: the strip one is used.
    expect(loincFor('BLD', parseStripValue('50 Ery/uL'))!.code).toBe('20409-9');
  });

  it('an ordinal result of an analyte with no presence code gets none', () => {
    expect(loincFor('SG', parseStripValue('Normal'))).toBeNull();
  });

  it('an unknown unit gets no code', () => {
    expect(loincFor('GLU', parseStripValue('100 U/L'))).toBeNull();
  });
});

describe('stripObservation: what each case publishes', () => {
  it('glucose with a unit: value, unit, UCUM, the automated code', () => {
    expect(stripObservation('GLU', 'GLU', '>=300 mg/dL', true)).toEqual({
      code: 'GLU',
      name: 'Glucose',
      loinc: '53328-1',
      value: 300,
      unit: 'mg/dL',
      ucum: 'mg/dL',
      flags: ['abnormal'],
      text: '>=300 mg/dL',
      comparator: '>=',
    });
  });

  it('glucose as a bare number: text only, flagged loinc-unmapped, never a number without a unit', () => {
    expect(stripObservation('GLU', 'GLU', '100', false)).toEqual({
      code: 'GLU',
      name: 'Glucose',
      loinc: null,
      value: null,
      unit: null,
      ucum: null,
      flags: ['loinc-unmapped'],
      text: '100',
      comparator: null,
    });
  });

  it('specific gravity and pH as bare numbers: unit 1 and pH', () => {
    expect(stripObservation('SG', 'SG', '1.020', false)).toMatchObject({ value: 1.02, unit: '1', ucum: '1', loinc: '53326-5', comparator: null });
    expect(stripObservation('SG', 'SG', '>=1.030', false)).toMatchObject({ value: 1.03, unit: '1', comparator: '>=' });
    expect(stripObservation('PH', 'pH', '6.5', false)).toMatchObject({ value: 6.5, unit: 'pH', ucum: '[pH]', loinc: '50560-2' });
  });

  it('an approximate number: no value, flag approximate', () => {
    const o = stripObservation('BLD', 'BLO', 'Apr 200 Hem/uL', false);
    expect(o).toMatchObject({ value: null, comparator: null, unit: 'Hem/uL', ucum: '/uL' });
    expect(o.flags).toEqual(['approximate']);
  });

  it('an unknown unit: no value, flags loinc-unmapped and unit-unknown', () => {
    expect(stripObservation('GLU', 'GLU', '12 U/L', false)).toMatchObject({ value: null, unit: null, loinc: null, flags: ['loinc-unmapped', 'unit-unknown'], text: '12 U/L' });
  });

  it('an empty result: no text, no loinc-unmapped flag', () => {
    expect(stripObservation('GLU', 'GLU', '  ', false)).toMatchObject({ text: null, loinc: null, value: null, flags: [] });
  });

  it('an unknown label keeps its text; a number only with its unit', () => {
    expect(stripObservation(null, ' XYZ ', '5 mg/dL', false)).toEqual({
      code: 'XYZ',
      name: 'XYZ',
      loinc: null,
      value: 5,
      unit: 'mg/dL',
      ucum: 'mg/dL',
      flags: ['unknown-label'],
      text: '5 mg/dL',
      comparator: null,
    });
    expect(stripObservation(null, 'XYZ', '>5', true)).toMatchObject({ value: null, unit: null, comparator: null, flags: ['abnormal', 'unknown-label'], text: '>5' });
    expect(stripObservation(null, 'XYZ', '', false)).toMatchObject({ text: null });
  });

  it('colour and clarity are free text with their strip code', () => {
    const c = stripObservation('COLOR', 'Colour', 'YELLOW', false);
    expect(c).toMatchObject({ value: null, unit: null, ucum: null, comparator: null, text: 'YELLOW' });
    expect(stripObservation('COLOR', 'Colour', '5 mg/dL', false)).toMatchObject({ value: null, unit: null });
  });
});
