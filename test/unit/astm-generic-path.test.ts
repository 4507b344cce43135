/**
 * The generic ASTM path (issue 10): the rule behind each golden case of `make-class-cases.ts`,
 * stated on its own so a broken rule fails a test that names it (the golden test only says the
 * output changed). Each case's bytes are the ones the generator writes.
 */
import { describe, expect, it } from 'vitest';
import { decodeAstm } from '../../drivers/analyzers/astm/records.ts';
import { isLoinc, testCode } from '../../drivers/analyzers/astm/test-id.ts';
import { encodeTransmission } from '../../src/protocols/astm/frame.ts';
import type { ResultDraft } from '../../src/records/types.ts';
import { CLASS_CASES, caseBytes } from '../fixtures/astm/make-class-cases.ts';

const ctx = { deviceId: 'lab-astm-1', timezone: 'UTC' };

function decodeCase(name: string): readonly ResultDraft[] {
  const c = CLASS_CASES.find((x) => x.name === name)!;
  return decodeAstm({ kind: 'raw', bytes: caseBytes(c) }, { ...ctx, ...(c.options ? { options: c.options } : {}) }).drafts.result!;
}

const one = (name: string): ResultDraft => {
  const drafts = decodeCase(name);
  expect(drafts).toHaveLength(1);
  return drafts[0]!;
};

describe('test identity: the whole universal test id, never one fixed component', () => {
  it('testCode keeps every component between the first and last non-empty one', () => {
    expect(testCode(['', '', '', '550'])).toBe('550');
    expect(testCode(['', '', '', '', 'WBC', '1'])).toBe('WBC^1');
    expect(testCode(['P', 'Phosphorus', '', 'F'])).toBe('P^Phosphorus^^F');
    expect(testCode(['', 'MTB-RIF', '', 'Xpert', '', '', 'rpoB1', 'Ct'])).toBe('MTB-RIF^^Xpert^^^rpoB1^Ct');
    expect(testCode([' ', ' A ', ' '])).toBe('A');
    expect(testCode([])).toBe('');
  });

  it('final, interpretation and raw-signal aspects of one assay get three codes', () => {
    const codes = one('identity-result-aspects-synthetic').observations.map((o) => o.code);
    expect(new Set(codes).size).toBe(3);
    expect(codes.every((c) => c.startsWith('0021^B-hCG^'))).toBe(true);
  });

  it('ARCHITECT dialect: reagent lots left out of the code, aspects kept; a control lot makes a control run', () => {
    const [patient, control] = decodeCase('architect-dialect-synthetic');
    expect(patient!.observations.map((o) => [o.code, o.name])).toEqual([
      ['0021^UNDILUTED^P^F', 'B-hCG'],
      ['0021^UNDILUTED^P^I', 'B-hCG'],
      ['0021^UNDILUTED^P^P', 'B-hCG'],
    ]);
    expect(patient!.category).toBe('patient');
    expect(control).toMatchObject({ category: 'control', patient: null });
    expect(control!.observations[0]!.code).toBe('0021^UNDILUTED^P^F');
  });

  it('a calculated result with only a name and an aspect does not share the aspect as its code', () => {
    const codes = one('identity-code-component-1-synthetic').observations.map((o) => o.code);
    expect(codes).toEqual(['P^Phosphorus^^F', 'Glo^^F', 'A/G^^F']);
  });

  it('the component after a code in component 5 (a dilution) stays in the code', () => {
    expect(one('identity-code-component-5-synthetic').observations.map((o) => o.code)).toEqual(['WBC^1', 'WBC^2', 'MCV^1']);
  });

  it('a LOINC code the device sends is taken only with its check digit right', () => {
    const [mcv, rbc] = one('identity-loinc-check-digit-synthetic').observations;
    expect(mcv!.loinc).toBe('787-2');
    expect(rbc!.loinc).toBeNull();
    expect(rbc!.flags).toContain('unmapped-code');
  });

  it('77 Elektronika: a pad index in component 1 is the same pad, a LOINC code there another quantity', () => {
    const text = 'H|\\^&|||LUP2^LUP2^1.0.11^1^UA300000001|||||||P|LIS2-A2|20250601120000\rP|1\rO|1|S1||^^^Bil|R||||||N||||||||||||||F\r'
      + 'R|1|1^^^Bil|neg|mg/dl||N||F||||20250601115900\rR|2|46419-8^^^RBC|14.2|p/HPF||N||F||||20250601115900\rR|3|798-9^^^RBC|64|p/ul||N||F||||20250601115900\rL|1|N\r';
    const [d] = decodeAstm({ kind: 'raw', bytes: encodeTransmission(Buffer.from(text, 'utf8'), 'single') }, ctx).drafts.result!;
    expect(d!.observations.map((o) => [o.code, o.name, o.loinc])).toEqual([
      ['Bil', 'Bilirubin', '50551-1'],
      ['46419-8^^^RBC', 'Erythrocytes (sediment)', '46419-8'],
      ['798-9^^^RBC', 'Erythrocytes (sediment)', '798-9'],
    ]);
  });

  it.each([
    ['2345-7', true],
    ['787-2', true],
    ['21000-5', true],
    ['789-9', false],
    ['2100-5', false],
    ['2345-8', false],
    ['12345678-1', false],
    ['2345', false],
  ])('isLoinc(%j) = %s', (code, ok) => {
    expect(isLoinc(code)).toBe(ok);
  });
});

describe('non-patient runs: every marker that is not a plain patient run', () => {
  it.each([
    ['run-processing-qr-synthetic', 'qc', 'processing:qc-result'],
    ['run-processing-cr-synthetic', 'calibration', 'processing:calibration-result'],
    ['run-processing-unknown-synthetic', 'qc', 'processing:unrecognised:Z'],
    ['run-descriptor-ctrl-synthetic', 'control', null],
  ])('%s: %s, no patient', (name, category, flag) => {
    const d = one(name);
    expect(d.category).toBe(category);
    expect(d.patient).toBeNull();
    if (flag) expect(d.flags).toContain(flag);
  });
});

describe('units: valid UCUM kept and normalised, other spellings kept as sent', () => {
  it('reads each unit of the case', () => {
    const obs = one('units-ucum-synthetic').observations.map((o) => [o.code, o.value, o.unit, o.ucum, o.flags.includes('unit-unknown')]);
    expect(obs).toEqual([
      ['PLT', 250, '10*3/uL', '10*3/uL', false],
      ['MCV', 88, 'fL', 'fL', false],
      ['ALT', 22.4, 'U/l', 'U/L', false],
      ['TSH', 3.1, 'uIU/mL', 'u[IU]/mL', false],
      ['SIG', 41234, 'RLU', null, true],
      ['WBC', 10.1, '10)/mm)', null, true],
    ]);
  });
});

describe('times: the precedence, and the field used named in the flags', () => {
  it.each([
    ['time-reported-o23-synthetic', '2025-06-01T12:30:11', 'time:reported'],
    ['time-started-r12-synthetic', '2025-06-01T12:15:00', 'time:started'],
    ['time-message-h14-synthetic', '2025-06-01T13:00:00', 'time:message'],
    ['units-ucum-synthetic', '2025-06-01T11:00:00', 'time:completed'],
  ])('%s: %s from %s', (name, time, flag) => {
    const d = one(name);
    expect(d.device_time).toBe(time);
    expect(d.flags.filter((f) => f.startsWith('time:'))).toEqual([flag]);
  });

  it('specimen_id_at names the place for a device no dialect knows; a bad value is refused naming the option', () => {
    const c = CLASS_CASES.find((x) => x.name === 'identity-code-component-1-synthetic')!;
    const at = (v: string): string | null => decodeAstm({ kind: 'raw', bytes: caseBytes(c) }, { ...ctx, options: { specimen_id_at: v } }).drafts.result![0]!.specimen.id;
    expect(at('O-4.1')).toBe('SYN0001');
    expect(at('O-3.3')).toBe('12');
    expect(at('O-3.2')).toBe('1');
    // Nothing at the named place: the generic place.
    expect(at('O-4.5')).toBe('12');
    expect(() => at('O-5.1')).toThrow(/options\.specimen_id_at: must be O-3/);
  });

  it('specimen ids: cobas c311 O-3 component 2, Sysmex O-4 component 3, Mindray O-3 component 1', () => {
    expect(one('time-reported-o23-synthetic').specimen.id).toBe('SYN-C311-1');
    expect(one('identity-code-component-5-synthetic').specimen.id).toBe('42');
    expect(one('identity-code-component-1-synthetic').specimen.id).toBe('12');
  });
});

describe('out of range and qualitative results', () => {
  it('comparators, limits, interpretation^value pairs and R-7 < with text', () => {
    const [hcg, mtb, hiv, pro] = one('range-qualitative-synthetic').observations;
    expect(hcg).toMatchObject({ value: null, comparator: '<', limit: 1.2, text: '< 1.20', ucum: 'm[IU]/mL' });
    expect(hcg!.flags).toEqual(expect.arrayContaining(['LO', 'flag:EXP']));
    expect(mtb).toMatchObject({ value: null, comparator: null, text: 'DETECTED VERY LOW' });
    expect(mtb!.flags).toContain('LO');
    expect(hiv).toMatchObject({ value: 0.435, ucum: '{COI}', text: '-1', comparator: null });
    expect(pro).toMatchObject({ value: null, comparator: '>=', limit: 300 });
    expect(pro!.flags).toContain('HI');
  });
});

describe('framing variants', () => {
  it('framing bare: both messages read with the option, none without it', () => {
    const c = CLASS_CASES.find((x) => x.name === 'framing-bare-synthetic')!;
    expect(decodeCase(c.name).map((d) => d.specimen.id)).toEqual(['S-B-1', 'S-B-2']);
    expect(decodeAstm({ kind: 'raw', bytes: caseBytes(c) }, ctx).drafts.result ?? []).toEqual([]);
  });
});

describe('text encoding', () => {
  it('auto reads a single-byte message in the fallback code page and says so', () => {
    const d = one('encoding-auto-fallback-synthetic');
    expect(d.flags).toContain('encoding:fallback-latin1');
    expect(d.observations[0]).toMatchObject({ unit: 'µmol/L', ucum: 'umol/L', value: 78 });
    expect(JSON.stringify(d)).not.toContain('\uFFFD');
  });
});
