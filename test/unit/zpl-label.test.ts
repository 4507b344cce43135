import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { escapeFieldData, fitField, unescapeFieldData, zplCommands } from '../../src/protocols/zpl/fields.ts';
import { formatSpecimenId, hasValidCheckChar, mod37CheckChar, schemeProblems } from '../../src/protocols/zpl/specimen-id.ts';
import { renderTemplate, templateProblems, type LabelTemplate } from '../../src/protocols/zpl/template.ts';
import { LABEL_FIELDS, labelRequestProblems, renderLabel, siteTemplateProblems, type LabelRequest } from '../../drivers/printers/zebra-zpl/label.ts';
import { BUILTIN_TEMPLATES } from '../../drivers/printers/zebra-zpl/templates.ts';
import { fieldTexts, SPECIMEN_REQUEST } from '../helpers/specimen-label.ts';

const NOW = new Date('2026-12-04T12:00:00Z');
const REQUEST: LabelRequest = { ...SPECIMEN_REQUEST, copies: 2 };

describe('ZPL field escaping', () => {
  it('writes ^ ~ _ \\, control characters and every non-ASCII byte as _XX', () => {
    expect(escapeFieldData('A^B~C_D\\E')).toBe('A_5EB_7EC_5FD_5CE');
    expect(escapeFieldData('Ø')).toBe('_C3_98');
    expect(escapeFieldData('\r\n\x00')).toBe('_0D_0A_00');
    expect(escapeFieldData('MÜLLER-DOE, Jane')).toBe('M_C3_9CLLER-DOE, Jane'); // the research note's verified label
  });

  it('round-trips any text, and what it writes is printable ASCII with no command prefix', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        const escaped = escapeFieldData(s);
        expect(escaped).toMatch(/^[\x20-\x7e]*$/);
        expect(escaped).not.toMatch(/[\^~\\]/);
        expect(unescapeFieldData(escaped)).toBe(s);
      }),
    );
  });

  it('fits a field to its width by whole characters, control characters made spaces', () => {
    expect(fitField('Zoë\r\nÆrøe', 20)).toEqual({ text: 'Zoë Ærøe', cut: false });
    expect(fitField('ABCDEFGHIJ', 4)).toEqual({ text: 'ABCD', cut: true });
    // "é" as e + combining accent is one character: never split from its letter.
    expect(fitField('Rene\u0301e', 4)).toEqual({ text: 'Rene\u0301', cut: true });
    expect(fitField('山田太郎', 2)).toEqual({ text: '山田', cut: true });
  });
});

describe('label templates', () => {
  it('every built-in template is usable and writes ^CI28', () => {
    for (const [name, t] of Object.entries(BUILTIN_TEMPLATES)) {
      expect(templateProblems(t, LABEL_FIELDS), name).toEqual([]);
      expect(renderLabel(REQUEST, t, 'S24000123').zpl, name).toContain('^CI28');
    }
  });

  const base: LabelTemplate = { description: 't', dpmm: 8, width_mm: 50.8, height_mm: 25.4, zpl: '^XA^CI28^FO1,1^A0N,20,20^FH_^FD{{patient.name|10}}^FS^XZ' };
  it.each([
    ['an unknown field', { zpl: '^XA^CI28^FO1,1^FH_^FD{{patient.ssn|10}}^FS^XZ' }, 'references unknown field "patient.ssn"'],
    ['no ^CI28', { zpl: '^XA^FO1,1^FH_^FD{{patient.name|10}}^FS^XZ' }, 'must select UTF-8 with ^CI28'],
    ['a field without ^FH', { zpl: '^XA^CI28^FO1,1^FD{{patient.name|10}}^FS^XZ' }, 'must be inside a ^FH_^FD'],
    ['a placeholder outside a field', { zpl: '^XA^CI28^FO{{copies|2}},1^FS^XZ' }, 'must be inside a ^FH_^FD'],
    ['its own ^PQ', { zpl: '^XA^CI28^PQ3^XZ' }, 'must not set the quantity'],
    ['a control command', { zpl: '^XA^CI28~JA^XZ' }, 'must not hold control commands'],
    ['no ^XZ', { zpl: '^XA^CI28' }, 'must end with ^XZ'],
    ['a stray brace', { zpl: '^XA^CI28^FH_^FD{{patient.name}}^FS^XZ' }, 'not a placeholder'],
    ['an odd density', { dpmm: 10 }, 'dpmm: must be 8, 12 or 24'],
  ])('refuses a template with %s', (_what, change, problem) => {
    const problems = templateProblems({ ...base, ...change }, LABEL_FIELDS);
    expect(problems.join('\n')).toContain(problem);
  });

  it('names the site template that has a problem', () => {
    expect(siteTemplateProblems({ wrist: { ...base, zpl: '^XA^CI28^FH_^FD{{room|4}}^FS^XZ' } })[0]).toMatch(/^templates\.wrist: references unknown field "room"/);
  });

  it('writes the copies as ^PQ before ^XZ and cuts what does not fit', () => {
    const out = renderTemplate(base, { 'patient.name': 'Bartholomew-Featherstonehaugh' }, 3, LABEL_FIELDS);
    expect(out.zpl).toMatch(/\^PQ3,0,1,Y\n\^XZ\n$/);
    expect(out.cut).toEqual(['patient.name']);
    expect(fieldTexts(out.zpl)).toEqual(['Bartholome']);
    expect(() => renderTemplate(base, {}, 11, LABEL_FIELDS)).toThrow(/copies/);
  });

  it('prints the request as the specimen label', () => {
    const { zpl } = renderLabel(REQUEST, BUILTIN_TEMPLATES.specimen!, 'S24000123');
    expect(fieldTexts(zpl)).toEqual(['Ærøe, Zoë', 'MRN 123456  DOB 1960-08-29', 'S24000123', '', '', '2026-12-03 09:14  GLU UA']);
    expect(zpl).toContain('^PQ2,0,1,Y');
    expect(fieldTexts(renderLabel(REQUEST, BUILTIN_TEMPLATES.specimen!, 'S24000123', { reprint: true }).zpl)).toContain('REPRINT');
  });

  it('a name injects nothing: the label has exactly the template\'s commands, whatever the name', () => {
    const template = BUILTIN_TEMPLATES.specimen!;
    const expected = zplCommands(renderLabel({ ...REQUEST, patient: { ...REQUEST.patient, name: 'x' } }, template, 'S1').zpl);
    const hostile = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 60 }),
      fc.string({ unit: fc.constantFrom('^', '~', '\\', '_', 'XZ', 'XA', 'JA', 'HS', 'FS', '\r', '\n', '\x00', '\x02', 'Ł', '山', 'Ø', 'ë'), maxLength: 40 }),
    );
    fc.assert(
      fc.property(hostile, hostile, (name, mrn) => {
        const { zpl } = renderLabel({ ...REQUEST, patient: { ...REQUEST.patient, name, mrn } }, template, 'S1');
        expect(zplCommands(zpl)).toEqual(expected);
        expect(zpl).toMatch(/^[\x20-\x7e\n]*$/);
      }),
    );
    const { zpl } = renderLabel({ ...REQUEST, patient: { ...REQUEST.patient, name: 'Łukasz ^XZ~JA\\ 山田' } }, template, 'S1');
    expect(fieldTexts(zpl)[0]).toBe('Łukasz ^XZ~JA\\ 山田');
  });
});

describe('print request validation', () => {
  const templates = BUILTIN_TEMPLATES;
  const problems = (change: Record<string, unknown>, patient: Record<string, unknown> = {}): string[] =>
    labelRequestProblems({ ...REQUEST, ...change, patient: { ...REQUEST.patient, ...patient } }, templates, NOW);

  it('accepts the issue\'s example request', () => {
    expect(problems({})).toEqual([]);
  });

  it.each([
    [{}, { dob: '1960-02-30' }, 'patient.dob: not a date'],
    [{}, { dob: '29.08.1960' }, 'patient.dob: not a date'],
    [{}, { dob: '2027-01-01' }, 'patient.dob: in the future'],
    [{ collected_at: '2026-12-03 09:14' }, {}, 'collected_at: not a date-time'],
    [{ collected_at: '2026-12-03T25:14:00Z' }, {}, 'collected_at: not a date-time'],
    [{ template: 'wristband' }, {}, 'template: unknown template "wristband"'],
    [{ copies: 11 }, {}, 'copies: must be <= 10'],
    [{ copies: 0 }, {}, 'copies: must be >= 1'],
    [{ specimen_id: 'S 1^2' }, {}, 'specimen_id: must match pattern'],
    [{}, { name: 'x'.repeat(201) }, 'patient.name: must NOT have more than 200 characters'],
    [{ colour: 'red' }, {}, 'colour: unknown parameter'],
  ])('refuses %j %j: %s', (change, patient, problem) => {
    expect(problems(change, patient).join('\n')).toContain(problem);
  });

  it('names a missing field', () => {
    expect(labelRequestProblems({ template: 'specimen', patient: { name: 'A' } }, templates, NOW)).toEqual(['patient.mrn: required']);
  });
});

describe('specimen ids', () => {
  it('carries a MOD 37-2 check character that catches a changed or swapped character', () => {
    const id = formatSpecimenId({ prefix: 'S24', digits: 6 }, 123);
    expect(id.slice(0, -1)).toBe('S24000123');
    expect(hasValidCheckChar(id)).toBe(true);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 99_999_999 }), fc.nat(8), fc.integer({ min: 1, max: 9 }), (n, pos, delta) => {
        const good = formatSpecimenId({ prefix: 'S', digits: 8 }, n);
        expect(hasValidCheckChar(good)).toBe(true);
        const chars = [...good];
        const i = 1 + (pos % 8);
        chars[i] = String((Number(chars[i]) + delta) % 10);
        expect(hasValidCheckChar(chars.join(''))).toBe(false);
        const swapped = [...good];
        if (swapped[i] !== swapped[i + 1] && i + 1 < good.length - 1) {
          [swapped[i], swapped[i + 1]] = [swapped[i + 1]!, swapped[i]!];
          expect(hasValidCheckChar(swapped.join(''))).toBe(false);
        }
      }),
    );
  });

  it('the check character satisfies the ISO 7064 pure-system sum (weights 2^k mod 37, total 1)', () => {
    const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*';
    for (const body of ['0', 'S24000123', 'AB12', 'ZZZZZZ9']) {
      const all = [...(body + mod37CheckChar(body))].reverse();
      const sum = all.reduce((s, c, k) => (s + alphabet.indexOf(c) * Number(2n ** BigInt(k) % 37n)) % 37, 0);
      expect(sum, body).toBe(1);
    }
  });

  it('refuses a sequence that no longer fits, and a bad scheme', () => {
    expect(() => formatSpecimenId({ prefix: 'S', digits: 4 }, 10_000)).toThrow(/does not fit/);
    expect(schemeProblems({ prefix: 's-1', digits: 3 })).toEqual([
      'specimen_ids.prefix: 1 to 6 upper-case letters or digits',
      'specimen_ids.digits: an integer from 4 to 10',
    ]);
  });
});
