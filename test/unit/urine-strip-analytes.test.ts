import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  dateOrderOption,
  labelLookup,
  loincFor,
  ordinalGrade,
  parseStripValue,
  printedPad,
  simulatedPad,
  stripObservation,
  stripObservations,
  stripRecordKey,
  ucumFor,
  unitInfo,
  unitKey,
  URINE_ANALYTES,
  yearMonthDay,
  type UrineAnalyteCode,
} from '../../drivers/analytes/urine-strip.ts';

describe('urine analyte table', () => {
  it('has every analyte the readers report, each with an English name and at least one sourced code', () => {
    const codes: UrineAnalyteCode[] = ['GLU', 'BIL', 'KET', 'SG', 'BLD', 'PH', 'PRO', 'UBG', 'NIT', 'LEU', 'ALB', 'CRE', 'ACR', 'COLOR', 'CLARITY', 'ASC'];
    for (const c of codes) {
      const a = URINE_ANALYTES[c];
      expect(a.code).toBe(c);
      expect(a.name).not.toBe('');
      const all = [a.strip.ordinal, a.strip.quantitative, a.automated.ordinal, a.automated.quantitative].filter((x) => x !== null);
      expect(all.length, c).toBeGreaterThan(0);
      for (const code of all) {
        expect(code!.code).toMatch(/^\d{1,7}-\d$/);
        expect(code!.source).not.toBe('');
      }
    }
  });

  it('every LOINC code carries a valid mod-10 check digit', () => {
    // LOINC check digit: Luhn (mod 10) over the digits before the dash.
    const luhnOk = (loinc: string): boolean => {
      const [body, check] = loinc.split('-') as [string, string];
      let sum = 0;
      const digits = body.split('').reverse().map(Number);
      digits.forEach((d, i) => {
        let v = i % 2 === 0 ? d * 2 : d;
        if (v > 9) v -= 9;
        sum += v;
      });
      return (10 - (sum % 10)) % 10 === Number(check);
    };
    for (const a of Object.values(URINE_ANALYTES)) {
      for (const c of [a.strip.ordinal, a.strip.quantitative, a.automated.ordinal, a.automated.quantitative]) {
        if (c) expect(luhnOk(c.code), `${a.code} ${c.code}`).toBe(true);
      }
    }
  });
});

describe('parseStripValue', () => {
  it('derives value and comparator only where exact, and always keeps the text', () => {
    expect(parseStripValue('>=300 mg/dL')).toMatchObject({ value: 300, comparator: '>=', unit: 'mg/dL', ucum: 'mg/dL', text: '>=300 mg/dL', approximate: false });
    expect(parseStripValue('1.020')).toMatchObject({ value: 1.02, comparator: null, unit: null, text: '1.020' });
    expect(parseStripValue('<=1.005')).toMatchObject({ value: 1.005, comparator: '<=' });
    expect(parseStripValue('pH 6.5')).toMatchObject({ value: 6.5, unit: 'pH', ucum: '[pH]' });
    expect(parseStripValue('Apr 200 Hem/uL')).toMatchObject({ value: null, comparator: null, unit: 'Hem/uL', ucum: '/uL', approximate: true, text: 'Apr 200 Hem/uL' });
    expect(parseStripValue('Ca 10 Ery/uL')).toMatchObject({ value: null, unit: 'Ery/uL', approximate: true });
    expect(parseStripValue('4.0 E.U./dL')).toMatchObject({ value: 4, unit: 'E.U./dL', ucum: null });
    expect(parseStripValue('3.2 umol/L')).toMatchObject({ value: 3.2, unit: 'umol/L', ucum: 'umol/L', kind: 'substance-concentration' });
    expect(parseStripValue('25 Leu/µl')).toMatchObject({ value: 25, unit: 'Leu/µl', ucum: '/uL' });
  });

  it('keeps ordinal words as text with a grade and no number', () => {
    for (const [t, grade] of [
      ['Negative', 'negative'],
      ['Neg', 'negative'],
      ['Trace', 'trace'],
      ['Trace-intact', 'trace-intact'],
      ['Small', 'small'],
      ['Large', 'large'],
      ['1+', '1+'],
      ['Negativo', 'negative'],
      ['Indicios', 'trace'],
      ['Ind.Intactos', 'trace-intact'],
      ['Alto', 'large'],
      ['NEGATIV', 'negative'],
      ['poz', 'positive'],
    ] as const) {
      expect(parseStripValue(t), t).toMatchObject({ value: null, comparator: null, unit: null, text: t, ordinal: grade });
    }
  });

  it('gives text only for anything it cannot read exactly', () => {
    for (const t of ['+++ 250 RBC/ul', '2+ 100 mg/dL', '100 widgets', 'wodojasny', '']) {
      expect(parseStripValue(t), t).toMatchObject({ value: null, comparator: null, text: t });
    }
    expect(unitInfo('furlongs')).toBeNull();
    expect(parseStripValue('100 widgets')).toMatchObject({ unknownUnit: 'widgets' });
    expect(parseStripValue('Non-hemolyzed 10')).toMatchObject({ unknownUnit: null });
  });

  it('keys a unit spelling trimmed, lower-case, with the micro sign and the Greek mu as u', () => {
    expect(unitKey(' Leu/\u00B5L ')).toBe('leu/ul');
    expect(unitKey('\u03BCmol/L')).toBe('umol/l');
    expect(unitKey('umol/L')).toBe('umol/l');
    expect(unitKey('\u00B5\u03BCg')).toBe('uug');
    expect(unitKey('mg/dL')).toBe('mg/dl');
    expect(unitInfo('Ery/\u03BCL')).toEqual({ ucum: '/uL', kind: 'count-concentration' });
  });

  it('never throws and always returns the trimmed text', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        const v = parseStripValue(s);
        expect(v.text).toBe(s.trim());
        if (v.value !== null) expect(Number.isFinite(v.value)).toBe(true);
      }),
    );
  });
});

describe('loincFor', () => {
  it('picks the quantitative code for a quantity of its kind and the presence code for an ordinal', () => {
    expect(loincFor('GLU', parseStripValue('500 mg/dL'))?.code).toBe('53328-1');
    expect(loincFor('GLU', parseStripValue('Negative'))?.code).toBe('50555-2');
    expect(loincFor('GLU', parseStripValue('Negative'), 'strip')?.code).toBe('25428-4');
    expect(loincFor('GLU', parseStripValue('500 mg/dL'), 'strip')?.code).toBe('5792-7');
    expect(loincFor('SG', parseStripValue('>=1.030'))?.code).toBe('53326-5');
    expect(loincFor('PH', parseStripValue('7.0'))?.code).toBe('50560-2');
    // No automated count code is known for blood: the strip one.
    expect(loincFor('BLD', parseStripValue('Apr 200 Hem/uL'))?.code).toBe('20409-9');
    expect(loincFor('BLD', parseStripValue('Trace-intact'))?.code).toBe('57751-0');
  });

  it('gives no code rather than a wrong one', () => {
    expect(loincFor('UBG', parseStripValue('3.2 umol/L'))).toBeNull(); // mass/volume codes only
    expect(loincFor('GLU', parseStripValue('100'))).toBeNull(); // a number without a unit
    expect(loincFor('GLU', parseStripValue('5 mmol/L'))).toBeNull();
    expect(loincFor('PCR', parseStripValue('Negative'))).toBeNull();
    // A quantity in a unit no table knows is not a presence result (LEU 60026-2 would claim one).
    expect(loincFor('LEU', parseStripValue('12 U/L'))).toBeNull();
    expect(loincFor('GLU', parseStripValue('5 mmol/mol'))).toBeNull();
    expect(loincFor('BLD', parseStripValue('Non-hemolyzed 10'))?.code).toBe('57751-0');
  });

  it('ucumFor gives unitless SG and pH their UCUM', () => {
    expect(ucumFor('SG', parseStripValue('1.020'))).toBe('1');
    expect(ucumFor('PH', parseStripValue('6.0'))).toBe('[pH]');
    expect(ucumFor('GLU', parseStripValue('Negative'))).toBeNull();
  });
});

describe('stripObservation', () => {
  it('keeps an unknown label with its label as code, no LOINC and a flag', () => {
    expect(stripObservation(null, ' XYZ ', '12 mg/dL', true)).toEqual({
      code: 'XYZ',
      name: 'XYZ',
      loinc: null,
      value: 12,
      unit: 'mg/dL',
      ucum: 'mg/dL',
      flags: ['abnormal', 'unknown-label'],
      text: '12 mg/dL',
      comparator: null,
    });
  });

  it('flags a known analyte whose result fits no code', () => {
    expect(stripObservation('LEU', 'LEU', '12 U/L', false)).toMatchObject({ loinc: null, value: null, unit: null, text: '12 U/L', flags: ['loinc-unmapped', 'unit-unknown'] });
    expect(stripObservation('UBG', 'UBG', '3.2 umol/L', false)).toMatchObject({ loinc: null, value: 3.2, flags: ['loinc-unmapped'] });
  });

  it('publishes a number only with a unit: SG gets UCUM 1, a bare number elsewhere stays text', () => {
    expect(stripObservation('SG', 'SG', '1.020', false)).toMatchObject({ value: 1.02, unit: '1', ucum: '1' });
    expect(stripObservation('GLU', 'GLU', '100', false)).toMatchObject({ value: null, unit: null, text: '100', loinc: null });
    expect(stripObservation(null, 'ABC', '>5', false)).toMatchObject({ value: null, comparator: null, text: '>5' });
  });

  it('keeps colour as text with the colour code', () => {
    expect(stripObservation('COLOR', 'Colour', 'Amarillo', false)).toMatchObject({ code: 'COLOR', loinc: '5778-6', value: null, text: 'Amarillo' });
  });

  it('maps ordinal grades in every language to the same code', () => {
    expect(ordinalGrade('negativo')).toBe(ordinalGrade('NEGATIVE'));
    expect(stripObservation('KET', 'CET', 'Indicios', true).loinc).toBe(stripObservation('KET', 'KET', 'Trace', true).loinc);
  });
});

describe('reader records', () => {
  it('keys a record by its number and time, so a resend is the same record', () => {
    expect(stripRecordKey({ seq: 8, time: '1997-03-03T11:11:00' })).toBe('8|1997-03-03T11:11:00');
    expect(stripRecordKey({ seq: 8, time: '1997-03-03T11:12:00' })).not.toBe(stripRecordKey({ seq: 8, time: '1997-03-03T11:11:00' }));
  });

  it('turns colour, clarity and every pad into observations in the reader order, skipping what was not entered', () => {
    const results = [
      { label: 'GLU', analyte: 'GLU' as const, text: '100 mg/dL', abnormal: true },
      { label: 'XYZ', analyte: null, text: 'Negative', abnormal: false },
    ];
    const all = stripObservations({ seq: 1, time: '2018-06-18T15:25:00', colour: 'Amarillo', clarity: 'Claro', results });
    expect(all.map((o) => o.code)).toEqual(['COLOR', 'CLARITY', 'GLU', 'XYZ']);
    expect(all[2]).toEqual(stripObservation('GLU', 'GLU', '100 mg/dL', true));
    expect(all[3]!.flags).toEqual(['unknown-label']);
    const bare = stripObservations({ seq: 1, time: '2018-06-18T15:25:00', colour: null, clarity: null, results });
    expect(bare.map((o) => o.code)).toEqual(['GLU', 'XYZ']);
    // A reader with no clarity entry leaves the field out.
    expect(stripObservations({ seq: 1, time: '2018-06-18T15:25:00', colour: 'GELB', results }).map((o) => o.code)).toEqual(['COLOR', 'GLU', 'XYZ']);
  });

  it('finds an analyte by its label in any locale, trimmed and in any case', () => {
    const analyteFor = labelLookup([{ SG: 'SG ', BLD: 'BLD' }, { SG: 'DEN', BLD: 'OBL' }]);
    expect(analyteFor('sg')).toBe('SG');
    expect(analyteFor(' den ')).toBe('SG');
    expect(analyteFor('OBL')).toBe('BLD');
    expect(analyteFor('XYZ')).toBeNull();
  });

  it('prints a simulated pad in a language, passing through what it has no word for', () => {
    const wording = { labels: { BLD: 'OBL' }, words: { negative: 'NEGATIV' } } as const;
    expect(printedPad(wording, simulatedPad('BLD', 'negative'))).toEqual({ label: 'OBL', value: 'NEGATIV' });
    expect(printedPad(wording, simulatedPad('XYZ', '500 mg/dL', true))).toEqual({ label: 'XYZ', value: '500 mg/dL' });
  });
});

describe('reader dates', () => {
  it('reads the date fields in the order the reader prints them', () => {
    expect(yearMonthDay([18, 6, 2018], 'DMY')).toEqual([2018, 6, 18]);
    expect(yearMonthDay([6, 18, 2018], 'MDY')).toEqual([2018, 6, 18]);
    expect(yearMonthDay([97, 3, 4], 'YMD')).toEqual([97, 3, 4]);
  });

  it('takes date_order from the options, the reader default when unset, and names the device on anything else', () => {
    expect(dateOrderOption({ id: 'r1' }, 'DMY')).toBe('DMY');
    expect(dateOrderOption({ id: 'r1', options: { date_order: 'MDY' } }, 'YMD')).toBe('MDY');
    expect(() => dateOrderOption({ id: 'r1', options: { date_order: 'DDMM' } }, 'DMY')).toThrow('device r1: options.date_order must be DMY, MDY or YMD');
    expect(() => dateOrderOption({ id: 'r2', options: { date_order: 5 } }, 'YMD')).toThrow('device r2: options.date_order must be YMD, DMY or MDY');
  });
});
