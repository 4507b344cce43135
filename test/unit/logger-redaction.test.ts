import { describe, expect, it } from 'vitest';
import { createLogger, isSensitiveKey, scrubForLog } from '../../src/logger.ts';
import { LogCapture } from '../helpers/daemon.ts';

/**
 * The first layer of log redaction (`scrubForLog`) on its own, key by key and branch by branch.
 * Through a logger, pino's `redact` paths censor the shallow positions a second time, which hid
 * a scrubber that forgot a key: here each key sits deeper than any redact path reaches.
 */

const SENSITIVE = [
  'patient',
  'patient_id',
  'patientId',
  'patient_name',
  'name_of_patient',
  'mrn',
  'MRN',
  'dob',
  'date_of_birth',
  'dateOfBirth',
  'birth_date',
  'specimen_id',
  'specimen-id',
  'raw_text',
  'password',
  'passwd',
  'passphrase',
];

describe('isSensitiveKey', () => {
  it.each(SENSITIVE)('%s is censored wherever it appears', (key) => {
    expect(isSensitiveKey(key)).toBe(true);
    expect(isSensitiveKey(key, 'anything')).toBe(true);
  });

  it.each(['id', 'device', 'name', 'serial', 'value', 'operator', 'specimen', 'type', ''])('%s alone is not', (key) => {
    expect(isSensitiveKey(key)).toBe(false);
  });

  it('id is censored under specimen and patient (any spelling), not under other parents or at the top', () => {
    expect(isSensitiveKey('id', 'specimen')).toBe(true);
    expect(isSensitiveKey('id', 'patient')).toBe(true);
    expect(isSensitiveKey('id', 'Patient')).toBe(true);
    expect(isSensitiveKey('id', 'device')).toBe(false);
    expect(isSensitiveKey('id', 'operator')).toBe(false);
    expect(isSensitiveKey('id')).toBe(false);
    // Only the key `id` itself: another key under specimen stays.
    expect(isSensitiveKey('type', 'specimen')).toBe(false);
  });
});

describe('scrubForLog', () => {
  it.each(SENSITIVE)('censors %s four levels down, where no redact path reaches', (key) => {
    const input = { a: { b: { c: { [key]: 'SECRET-VALUE', keep: 1 } } } };
    expect(scrubForLog(input)).toEqual({ a: { b: { c: { [key]: '[redacted]', keep: 1 } } } });
  });

  it('censors an id four levels down under patient and specimen, and keeps a device id', () => {
    const input = { a: { b: { patient: { id: 'MRN-1' }, specimen: { id: 'S-1', type: 'urine' }, device: { id: 'bench1' } } } };
    const out = scrubForLog(input) as typeof input;
    expect(out.a.b.patient).toBe('[redacted]');
    expect(out.a.b.specimen).toEqual({ id: '[redacted]', type: 'urine' });
    expect(out.a.b.device).toEqual({ id: 'bench1' });
  });

  it('a top-level id is not censored, and an object with nothing to censor comes back as itself', () => {
    const top = { id: 'bench1', list: [1, 'two', { a: 1 }, [3]], nested: { device: { id: 'x' } } };
    expect(scrubForLog(top)).toBe(top);
  });

  it('keeps null and undefined values of sensitive keys as they are (nothing to hide)', () => {
    const input = { patient: null, mrn: undefined, deep: { x: { y: { dob: null } } } };
    expect(scrubForLog(input)).toBe(input);
  });

  it('copies an array it censors inside, and leaves the caller\'s array and its elements untouched', () => {
    const first = { patient_id: 'MRN-2' };
    const list = [first, { ok: true }];
    const out = scrubForLog({ list }) as { list: unknown[] };
    expect(out.list).toEqual([{ patient_id: '[redacted]' }, { ok: true }]);
    expect(out.list).not.toBe(list);
    expect(list[0]).toBe(first);
    expect(first).toEqual({ patient_id: 'MRN-2' });
    // The unchanged element is shared, not copied.
    expect(out.list[1]).toBe(list[1]);
  });

  it('an element of an array under specimen is censored like specimen.id', () => {
    expect(scrubForLog({ specimen: [{ id: 'S-9' }] })).toEqual({ specimen: [{ id: '[redacted]' }] });
  });

  it('a back-reference becomes [Circular]; the same object reached twice without a cycle is kept both times', () => {
    const loop: Record<string, unknown> = { patient: 'MRN-3' };
    loop.self = loop;
    expect(scrubForLog(loop)).toEqual({ patient: '[redacted]', self: '[Circular]' });
    const shared = { count: 2 };
    const twice = { a: shared, b: shared, mrn: 'MRN-4' };
    expect(scrubForLog(twice)).toEqual({ a: { count: 2 }, b: { count: 2 }, mrn: '[redacted]' });
  });

  it('leaves values that serialize themselves (toJSON) and typed arrays as they are', () => {
    const date = new Date(0);
    const selfSerializing = { toJSON: () => 'as-json', patient: 'MRN-5' };
    const bytes = new Uint8Array([1, 2, 3]);
    const out = scrubForLog({ date, selfSerializing, bytes, buffer: bytes.buffer, mrn: 'x' }) as Record<string, unknown>;
    expect(out.date).toBe(date);
    expect(out.selfSerializing).toBe(selfSerializing);
    expect(out.bytes).toBe(bytes);
    expect(out.buffer).toBe(bytes.buffer);
  });

  it('a censored plain object is a plain object with the same enumerable keys (a key named message too)', () => {
    const out = scrubForLog({ message: 'hello', patient: 'MRN-6' }) as Record<string, unknown>;
    expect(Object.keys(out)).toEqual(['message', 'patient']);
    expect(JSON.parse(JSON.stringify(out))).toEqual({ message: 'hello', patient: '[redacted]' });
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.getOwnPropertyNames(out)).toEqual(['message', 'patient']);
  });

  it('a censored Error stays an Error whose message and stack are own, non-enumerable, writable properties', () => {
    const error = Object.assign(new TypeError('commit failed'), { patient: 'MRN-7', code: 'E1' });
    const out = (scrubForLog({ err: error }) as unknown as { err: TypeError & Record<string, unknown> }).err;
    expect(out).not.toBe(error);
    expect(out).toBeInstanceOf(TypeError);
    expect(out.patient).toBe('[redacted]');
    expect(out.code).toBe('E1');
    expect(Object.keys(out)).toEqual(['patient', 'code']);
    const shape = { enumerable: false, writable: true, configurable: true };
    expect(Object.getOwnPropertyDescriptor(out, 'message')).toEqual({ value: 'commit failed', ...shape });
    expect(Object.getOwnPropertyDescriptor(out, 'stack')).toEqual({ value: error.stack, ...shape });
    expect(error.patient).toBe('MRN-7');
  });
});

describe('createLogger', () => {
  it('logs at info by default', () => {
    expect(createLogger().level).toBe('info');
    const out = new LogCapture();
    const log = createLogger(undefined, out);
    log.debug('hidden');
    log.info({ a: { b: { c: { d: { mrn: 'MRN-8' } } } } }, 'shown');
    expect(out.lines.map((l) => l.msg)).toEqual(['shown']);
    expect(out.text).not.toContain('MRN-8');
  });
});
