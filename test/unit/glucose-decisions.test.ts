import { describe, expect, it } from 'vitest';
import { GLUCOSE_HI_LIMIT, GLUCOSE_LO_LIMIT, glucoseObservation, rangeGlucose } from '../../drivers/analytes/glucose.ts';
import { readingKey, readingToDraft, readRecord, type Reading } from '../../drivers/glucose/lifescan-binary/records.ts';
import { HI_CODE, LO_CODE, ultraEasyDialect } from '../../drivers/glucose/onetouch-ultraeasy/codec.ts';
import { VERIO_EPOCH_S, verioIqDialect } from '../../drivers/glucose/onetouch-verio-iq/codec.ts';
import type { DeviceIdentity } from '../../src/records/types.ts';

/**
 * Rule 5 for the LifeScan binary meters, branch by branch: the control marker and meal codes of
 * the Verio IQ record, HI/LO at both sides of each limit and the UltraEasy's out-of-range codes,
 * the observation a HI/LO reading becomes (a flag, a comparator and the limit; never a number),
 * and the category a control run gets.
 */

const device: DeviceIdentity = { id: 'm1', driver: 'onetouch-verio-iq', manufacturer: 'LifeScan', model: 'OneTouch Verio IQ', serial: 'ABC12345', firmware: null };

function verioRecord(control: number, meal: number, glucose = 0x78): ReturnType<typeof verioIqDialect.parseReply> {
  const body = Buffer.alloc(10);
  body.writeUInt32LE(0x10, 0);
  body.writeUInt16LE(glucose, 4);
  body[6] = control;
  body[7] = meal;
  return verioIqDialect.parseReply({ type: 'record', index: 0 }, Buffer.concat([Buffer.from([0x03, 0x06]), body]));
}

describe('Verio IQ record: control byte and meal byte', () => {
  it.each([
    [0, false],
    [1, true],
  ])('control byte %i → control %s', (byte, control) => {
    const r = verioRecord(byte, 0);
    expect(r).toEqual({ ok: true, reply: { type: 'record', record: { seconds: 0x10, glucose: 0x78, control, meal: 'none' } } });
  });

  it.each([2, 3, 0xff])('control byte %i is unknown: the record is reported, never stored as patient or control', (byte) => {
    const r = verioRecord(byte, 0);
    expect(r.ok && r.reply.type === 'record' && r.reply.record.problem).toBe('unknown-control-code');
  });

  it.each([
    [0, 'none'],
    [1, 'before'],
    [2, 'after'],
  ])('meal byte %i → %s', (byte, meal) => {
    const r = verioRecord(0, byte);
    expect(r.ok && r.reply.type === 'record' && r.reply.record).toEqual({ seconds: 0x10, glucose: 0x78, control: false, meal });
  });

  it.each([3, 0xff])('meal byte %i is unknown', (byte) => {
    const r = verioRecord(0, byte);
    expect(r.ok && r.reply.type === 'record' && r.reply.record.problem).toBe('unknown-meal-code');
  });

  it('an unknown control byte is named before an unknown meal byte', () => {
    const r = verioRecord(2, 3);
    expect(r.ok && r.reply.type === 'record' && r.reply.record.problem).toBe('unknown-control-code');
  });

  it('a record reply of the wrong length or prefix is refused', () => {
    expect(verioIqDialect.parseReply({ type: 'record', index: 0 }, Buffer.from('0306' + '00'.repeat(9), 'hex'))).toMatchObject({ ok: false, code: 'invalid-reply' });
    expect(verioIqDialect.parseReply({ type: 'record', index: 0 }, Buffer.from('0306' + '00'.repeat(11), 'hex'))).toMatchObject({ ok: false, code: 'invalid-reply' });
    expect(verioIqDialect.parseReply({ type: 'record', index: 0 }, Buffer.from('0506' + '00'.repeat(10), 'hex'))).toMatchObject({ ok: false, code: 'invalid-reply' });
    expect(verioIqDialect.parseReply({ type: 'record', index: 0 }, Buffer.from('0406' + '00'.repeat(10), 'hex'))).toMatchObject({ ok: true });
    expect(verioIqDialect.parseReply({ type: 'record', index: 0 }, Buffer.from('03', 'hex'))).toMatchObject({ ok: false, code: 'invalid-reply' });
  });
});

describe('HI/LO limits', () => {
  it.each([
    [GLUCOSE_HI_LIMIT + 1, { kind: 'HI', limit: 600 }],
    [GLUCOSE_HI_LIMIT, { kind: 'value', mgdl: 600 }],
    [GLUCOSE_LO_LIMIT, { kind: 'value', mgdl: 20 }],
    [GLUCOSE_LO_LIMIT - 1, { kind: 'LO', limit: 20 }],
    [0, { kind: 'LO', limit: 20 }],
    [105, { kind: 'value', mgdl: 105 }],
  ])('Verio IQ (range only): %i mg/dL → %j', (raw, g) => {
    expect(rangeGlucose(raw)).toEqual(g);
    expect(verioIqDialect.glucose(raw)).toEqual(g);
  });

  it.each([
    [HI_CODE, { kind: 'HI', limit: 600 }],
    [LO_CODE, { kind: 'LO', limit: 20 }],
    [0x10000, { kind: 'invalid' }],
    [0xffffffff, { kind: 'invalid' }],
    [0xfffd, { kind: 'HI', limit: 600 }],
    [601, { kind: 'HI', limit: 600 }],
    [600, { kind: 'value', mgdl: 600 }],
    [20, { kind: 'value', mgdl: 20 }],
    [19, { kind: 'LO', limit: 20 }],
  ])('UltraEasy: wire value 0x%s → %j', (raw, g) => {
    expect(ultraEasyDialect.glucose(raw)).toEqual(g);
  });

  it('the codes are the documented ones: 0xFFFF HI, 0xFFFE LO', () => {
    expect([HI_CODE, LO_CODE]).toEqual([0xffff, 0xfffe]);
  });
});

describe('glucose observation of a LifeScan reading', () => {
  const base = { code: 'GLU', name: 'Glucose', loinc: '41653-7', unit: 'mg/dL', ucum: 'mg/dL', text: null };

  it('a value in range: the number in mg/dL, no flags', () => {
    expect(glucoseObservation({ kind: 'value', mgdl: 105 })).toEqual({ ...base, value: 105, flags: [], comparator: null });
  });

  it('HI: no value, flag HI, comparator >, the limit', () => {
    expect(glucoseObservation({ kind: 'HI', limit: 600 })).toEqual({ ...base, value: null, flags: ['HI'], comparator: '>', limit: 600 });
  });

  it('LO: no value, flag LO, comparator <, the limit', () => {
    expect(glucoseObservation({ kind: 'LO', limit: 20 })).toEqual({ ...base, value: null, flags: ['LO'], comparator: '<', limit: 20 });
  });
});

describe('LifeScan wire record → reading → draft', () => {
  const wire = (over: Partial<Parameters<typeof readRecord>[1]> = {}): Parameters<typeof readRecord>[1] => ({ seconds: 3600, glucose: 110, control: false, meal: 'none', ...over });

  it('a record with a problem, a date that does not exist, or an invalid value is not a reading', () => {
    expect(readRecord(verioIqDialect, wire({ problem: 'unknown-control-code' }))).toEqual({ ok: false, code: 'unknown-control-code' });
    expect(readRecord(ultraEasyDialect, wire({ seconds: 1_700_000_000, glucose: 0x10000 }))).toEqual({ ok: false, code: 'invalid-value' });
    expect(readRecord(verioIqDialect, wire({ seconds: Number.NaN }))).toEqual({ ok: false, code: 'invalid-date' });
  });

  it('a good record keeps its control marker and meal, the time counted from the meter\'s epoch', () => {
    const r = readRecord(verioIqDialect, wire({ control: true, meal: 'after' }));
    expect(r).toEqual({ ok: true, reading: { time: new Date((VERIO_EPOCH_S + 3600) * 1000).toISOString().slice(0, 19), glucose: { kind: 'value', mgdl: 110 }, control: true, meal: 'after' } });
  });

  const reading = (over: Partial<Reading> = {}): Reading => ({ time: '2025-01-01T08:00:00', glucose: { kind: 'value', mgdl: 110 }, control: false, meal: null, ...over });

  it('a control run: category control, specimen control solution, key marked C', () => {
    const d = readingToDraft(reading({ control: true }), device, 'Europe/Copenhagen');
    expect(d.category).toBe('control');
    expect(d.specimen).toEqual({ id: null, type: 'control solution' });
    expect(d.key).toBe('2025-01-01T08:00:00|110|C');
  });

  it('a patient reading: category patient, capillary blood, key marked P', () => {
    const d = readingToDraft(reading(), device, 'Europe/Copenhagen');
    expect(d.category).toBe('patient');
    expect(d.specimen).toEqual({ id: null, type: 'capillary blood' });
    expect(d.patient).toBeNull();
    expect(d.key).toBe('2025-01-01T08:00:00|110|P');
    expect(d.observed_at).toBe('2025-01-01T08:00:00+01:00');
  });

  it('a control run and a patient reading of the same time and value have different ids', () => {
    expect(readingKey(reading({ control: true }))).not.toBe(readingKey(reading()));
  });

  it('HI and LO readings are keyed by their kind, not by a number', () => {
    expect(readingKey(reading({ glucose: { kind: 'HI', limit: 600 } }))).toBe('2025-01-01T08:00:00|HI|P');
    expect(readingKey(reading({ glucose: { kind: 'LO', limit: 20 } }))).toBe('2025-01-01T08:00:00|LO|P');
  });

  it.each([
    ['before', ['meal:before']],
    ['after', ['meal:after']],
    ['none', []],
    [null, []],
  ] as const)('meal %s → flags %j', (meal, flags) => {
    expect(readingToDraft(reading({ meal }), device, 'Europe/Copenhagen').flags).toEqual(flags);
  });
});
