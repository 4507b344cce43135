import { describe, expect, it } from 'vitest';
import { componentLogger, createLogger, scrubForLog } from '../../src/logger.ts';
import { LogCapture } from '../helpers/daemon.ts';
import { glucoseDraft } from '../helpers/records.ts';

/** Values that are patient identifiers or secrets: none may appear in any log line. */
const SECRETS = ['MRN-1', 'MRN-2', 'S-3', 'MRN-4', 'S-5', 'MRN-6', 'MRN-7', 'S-8', 'MRN-9', 'hunter2-pw', '1961-04-12', 'Jensen, Karen'];

function capture(level = 'debug'): { log: ReturnType<typeof createLogger>; out: LogCapture } {
  const out = new LogCapture();
  return { log: createLogger(level, out), out };
}

function expectNoSecrets(text: string): void {
  for (const s of SECRETS) expect(text, `log output contains ${s}`).not.toContain(s);
}

describe('logger: no patient identifier or secret in a log line', () => {
  it('censors the documented keys at the top level and one level down', () => {
    const { log, out } = capture();
    log.info({ patient: { id: 'MRN-1' } }, 'a');
    log.info({ record: { patient: { id: 'MRN-2' }, specimen: { id: 'S-3' } } }, 'b');
    log.warn({ password: 'hunter2-pw', dob: '1961-04-12', patient_name: 'Jensen, Karen' }, 'c');
    expectNoSecrets(out.text);
    expect(out.lines).toHaveLength(3);
    expect(out.lines[0]).toMatchObject({ msg: 'a', patient: '[redacted]' });
    expect(out.lines[1]).toMatchObject({ msg: 'b', record: { patient: '[redacted]', specimen: { id: '[redacted]' } } });
    expect(out.lines[2]).toMatchObject({ password: '[redacted]', dob: '[redacted]', patient_name: '[redacted]', level: 40 });
  });

  it('censors records nested deeply and in arrays', () => {
    const { log, out } = capture();
    const record = (patient: string, specimen: string): Record<string, unknown> => ({
      ...glucoseDraft(1),
      patient: { id: patient },
      specimen: { id: specimen, type: 'capillary blood' },
    });
    log.info({ batch: { device: { last: record('MRN-4', 'S-5') } } }, 'three deep');
    log.info({ records: [record('MRN-6', 'x'), record('MRN-7', 'S-8')] }, 'array of records');
    log.info({ a: { b: { c: { d: { e: [[{ patient_id: 'MRN-9' }]] } } } } }, 'very deep');
    log.info({ commit: { drafts: [{ draft: { dateOfBirth: '1961-04-12', patientName: 'Jensen, Karen' } }] } }, 'camelCase');
    expectNoSecrets(out.text);
    // What is not patient data is still there.
    expect(out.lines[1]).toMatchObject({ records: [{ observations: [{ value: 101, unit: 'mg/dL' }] }, { specimen: { type: 'capillary blood' } }] });
  });

  it('censors child-logger bindings and error properties', () => {
    const { log, out } = capture();
    log.child({ session: { patient: { id: 'MRN-1' } } }).info('bound');
    const error = Object.assign(new Error('commit failed'), { record: { specimen: { id: 'S-3' } } });
    log.error({ err: error }, 'with error');
    log.error(error);
    expectNoSecrets(out.text);
    expect(out.lines[1]).toMatchObject({ err: { message: 'commit failed', type: 'Error' } });
    expect(String((out.lines[1]!.err as { stack: string }).stack)).toContain('commit failed');
  });

  it('leaves the caller\'s objects untouched and copes with cycles', () => {
    const { log, out } = capture();
    const record = { patient: { id: 'MRN-2' }, specimen: { id: 'S-3' }, seq: 4 };
    const loop: Record<string, unknown> = { record };
    loop.self = loop;
    log.info({ loop }, 'cyclic');
    expect(record).toEqual({ patient: { id: 'MRN-2' }, specimen: { id: 'S-3' }, seq: 4 });
    expectNoSecrets(out.text);
    expect(out.lines[0]).toMatchObject({ loop: { record: { seq: 4 } } });
    const clean = { device: 'bench1', count: 3 };
    expect(scrubForLog(clean)).toBe(clean);
  });

  it('keeps what is not patient data: component, ids of devices, observations', () => {
    const { log, out } = capture();
    const mqttLog = componentLogger(log, 'mqtt');
    mqttLog.info({ url: 'mqtt://127.0.0.1:1883', device: { id: 'bench1' } }, 'connected');
    expect(out.lines[0]).toMatchObject({ component: 'mqtt', app: 'poctd', device: { id: 'bench1' }, msg: 'connected' });
    componentLogger(mqttLog, 'inner').debug('nested');
    expect(out.lines[1]).toMatchObject({ component: 'inner', level: 20 });
  });

  it('respects the level', () => {
    const { log, out } = capture('warn');
    log.info({ patient: { id: 'MRN-1' } }, 'dropped');
    log.warn('kept');
    expect(out.lines.map((l) => l.msg)).toEqual(['kept']);
  });
});
