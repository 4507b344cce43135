import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Capture, DriverSession } from '../../src/driver-sdk/index.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { FakeHost } from '../helpers/fake-host.ts';
import { sessionRig, type SessionRig } from '../helpers/session-rig.ts';
import { RecordLineFramer, parseRecordLine } from '../../drivers/urinalysis/clinitek-status/codec.ts';
import { clinitekStatus } from '../../drivers/urinalysis/clinitek-status/definition.ts';
import { decodeClinitekStatus } from '../../drivers/urinalysis/clinitek-status/records.ts';
import { ClinitekStatusSimulator, formatRecordLine, parseSimulatorOptions, SAMPLE_RECORDS } from '../../drivers/urinalysis/clinitek-status/simulator.ts';

import { describeShared, itShared, sharedFixture } from '../helpers/shared-fixtures.ts';

const CTX = { deviceId: 'urine-1', timezone: 'Europe/Madrid' };
const SAMPLES = sharedFixture('urinalysis/clinitek-status-samples.txt');
const SHARED = SAMPLES.bytesOrEmpty();
const EN_LINE = SHARED.toString('latin1').split('\n').find((l) => l.startsWith('1822,'))!;
const ES_LINE = SHARED.toString('latin1').split('\n').find((l) => l.startsWith('1596,'))!;
const E58_LINE = SHARED.toString('latin1').split('\n').find((l) => l.startsWith('1568,'))!;
const raw = (bytes: Buffer): Capture => ({ kind: 'raw', bytes });
const line = (s: string): Buffer => Buffer.from(s, 'latin1');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('CLINITEK Status record parsing', () => {
  itShared([SAMPLES], 'finds analytes by label in an English record, including padded labels and a 12-hour time', () => {
    const r = parseRecordLine(line(EN_LINE));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.record).toMatchObject({ seq: 1822, time: '2021-12-24T17:33:00', operator: null, patient: '2756', strip: 'Multistix 10 SG', colour: null, clarity: null, error: null });
    expect(r.record.results.map((x) => x.analyte)).toEqual(['GLU', 'BIL', 'KET', 'SG', 'BLD', 'PH', 'PRO', 'UBG', 'NIT', 'LEU']);
  });

  itShared([SAMPLES], 'maps the Spanish labels to the same analytes and reads the abnormal markers', () => {
    const r = parseRecordLine(line(ES_LINE));
    if (!r.ok) throw new Error(r.error.code);
    expect(r.record.results.map((x) => x.analyte)).toEqual(['GLU', 'BIL', 'KET', 'SG', 'BLD', 'PH', 'PRO', 'UBG', 'NIT', 'LEU']);
    expect(r.record.results.filter((x) => x.abnormal).map((x) => x.analyte)).toEqual(['GLU', 'BIL', 'KET', 'BLD', 'PRO', 'UBG', 'NIT', 'LEU']);
    expect(r.record).toMatchObject({ operator: '06178', patient: null, colour: 'Amarillo', clarity: 'Claro' });
  });

  itShared([SAMPLES], 'does not depend on the position of an analyte', () => {
    // The same record with the analytes in reverse order decodes to the same observations.
    const f = ES_LINE.split(',');
    const head = f.slice(0, 12);
    const trip: string[][] = [];
    for (let i = 12; i < f.length; i += 3) trip.push(f.slice(i, i + 3));
    const reversed = [...head, ...trip.reverse().flat()].join(',');
    const a = decodeClinitekStatus(raw(line(`${ES_LINE}\r`)), CTX).drafts.result![0]!;
    const b = decodeClinitekStatus(raw(line(`${reversed}\r`)), CTX).drafts.result![0]!;
    const byCode = (d: typeof a): unknown => Object.fromEntries(d.observations.map((o) => [o.code, o]));
    expect(byCode(b)).toEqual(byCode(a));
  });

  itShared([SAMPLES], 'reads an E58 record as a device error, not a result', () => {
    const r = parseRecordLine(line(E58_LINE));
    expect(r.ok && r.record.error).toBe('E58');
    const d = decodeClinitekStatus(raw(line(`${E58_LINE}\r\n`)), CTX);
    expect(d.drafts.result).toEqual([]);
    expect(d.issues.map((i) => i.reason)).toEqual(['device-error:E58']);
  });

  itShared([SAMPLES], 'keeps an unknown label as an observation with its label as code, no LOINC and a flag', () => {
    // The English line ends with the empty marker of LEU; one more triplet follows it.
    const withUnknown = `${EN_LINE},XYZ,12 mg/dL,*`;
    const d = decodeClinitekStatus(raw(line(`${withUnknown}\r`)), CTX).drafts.result![0]!;
    expect(d.observations.at(-1)).toEqual({
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
    expect(d.observations).toHaveLength(11);
  });

  itShared([SAMPLES], 'refuses broken records with typed errors and never throws', () => {
    const code = (s: string): string | null => {
      const r = parseRecordLine(line(s));
      return r.ok ? null : r.error.code;
    };
    expect(code('hello')).toBe('not-a-record');
    expect(code('1822,24-12-2021, 5:33PM,,2756')).toBe('not-a-record');
    expect(code(EN_LINE.replace('24-12-2021', '31-02-2021'))).toBe('invalid-date');
    expect(code(EN_LINE.replace(' 5:33PM', '25:33'))).toBe('invalid-date');
    expect(code(EN_LINE.slice(0, EN_LINE.indexOf('LEU') + 3))).toBe('incomplete-record');
    expect(code(EN_LINE.replace('Negative,,BIL', 'Negative,X,BIL'))).toBe('invalid-field');
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (b) => void parseRecordLine(b)));
  });

  it('puts a control run (id CONTROL-…) in category control, never patient', () => {
    const ctl = formatRecordLine(SAMPLE_RECORDS.find((x) => x.patient === 'CONTROL-1')!, 'en');
    const d = decodeClinitekStatus(raw(line(`${ctl}\r\n`)), CTX).drafts.result![0]!;
    expect(d.category).toBe('control');
    expect(d.patient).toBeNull();
    expect(d.specimen).toEqual({ id: 'CONTROL-1', type: 'control solution' });
  });
});

describeShared([SAMPLES], 'CLINITEK Status framing', () => {
  const stream = Buffer.concat([SHARED, line('\r\n'), new ClinitekStatusSimulator({ locale: 'es', line_end: 'cr', seed: 3 }).sendAllBytes()]);
  const whole = decodeClinitekStatus(raw(stream), CTX);

  it('decodes the same records however the bytes are chunked', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 40 }), (sizes) => {
        const framer = new RecordLineFramer();
        const lines: Buffer[] = [];
        let i = 0;
        let k = 0;
        while (i < stream.length) {
          const n = sizes[k++ % sizes.length]!;
          for (const item of framer.push(stream.subarray(i, i + n))) if (item.kind === 'line') lines.push(item.bytes);
          i += n;
        }
        const again = decodeClinitekStatus(raw(Buffer.concat(lines.map((l) => Buffer.concat([l, line('\n')])))), CTX);
        expect(again.drafts.result).toEqual(whole.drafts.result);
      }),
      { numRuns: 60 },
    );
    // 6 real records + 6 simulated ones, of which 5 have the same record number and time as a real
    // one (the simulator's samples are those records) and count once: 7.
    expect(whole.drafts.result!.length).toBe(7);
  });

  it('reports garbage between records and glued to a record start, and keeps the records', () => {
    const noisy = Buffer.concat([line('\x00\xff~~\r\n'), line(`@@${EN_LINE}\r\n`), line('\x07\x07\r\n'), line(`${ES_LINE}\r\n`)]);
    const d = decodeClinitekStatus(raw(noisy), CTX);
    expect(d.drafts.result!.map((x) => x.key)).toEqual(['1822|2021-12-24T17:33:00', '1596|2018-06-18T15:25:00']);
    expect(d.issues.map((i) => i.reason)).toEqual(['not-a-record', 'garbage', 'not-a-record']);
  });

  it('reports a record cut off at the end as truncated and makes no draft of it', () => {
    const cut = Buffer.concat([line(`${EN_LINE}\r\n`), line(ES_LINE.slice(0, 60))]);
    const d = decodeClinitekStatus(raw(cut), CTX);
    expect(d.drafts.result).toHaveLength(1);
    expect(d.issues.map((i) => i.reason)).toEqual(['truncated-line']);
  });
});

describe('CLINITEK Status session', () => {
  const cleanups = useCleanups();

  function rig(simOptions: Record<string, unknown> = {}): Promise<SessionRig<ClinitekStatusSimulator, DriverSession>> {
    return sessionRig({
      cable: 'clinitek',
      device: { id: 'urine-1', driver: 'clinitek-status', transport: { type: 'simulated' }, options: { burst_idle_ms: 100 } },
      simulator: new ClinitekStatusSimulator(parseSimulatorOptions({ seed: 5, send_delay_ms: -1, ...simOptions })),
      createSession: (host) => clinitekStatus.createSession(host),
      timezone: 'Europe/Madrid',
      start: true,
      cleanups,
    });
  }

  it('commits every record of a "Send all data", reports the E58 record as a device_error, and a resend adds nothing', async () => {
    const r = await rig({ locale: 'es', max_chunk: 7 });
    await r.sim.sendAll();
    await r.host.until(() => r.host.types().includes('download_finished'));
    const drafts = r.host.commits.flatMap((c) => c.drafts);
    expect(drafts.map((d) => d.key)).toEqual(SAMPLE_RECORDS.filter((x) => !x.error).map((x) => `${x.seq}|${x.time}`));
    const err = r.host.events.find((e) => e.type === 'device_error')!;
    expect(err.data).toEqual({ code: 'E58', record: 1568 });
    expect(JSON.stringify(r.host.events)).not.toMatch(/P-000|OP01|CONTROL/); // no ids in events
    expect(r.host.quarantined.map((q) => q.reason)).toEqual(['device-error:E58']);
    expect(r.host.events.find((e) => e.type === 'download_finished')!.data).toEqual({ records: 6, inserted: 6, duplicates: 0 });
    // Each committed capture decodes to exactly what was committed.
    for (const c of r.host.commits) expect(decodeClinitekStatus(c.capture, { deviceId: 'urine-1', timezone: 'Europe/Madrid' }).drafts).toEqual(c.records);

    await r.sim.sendAll();
    await r.host.until(() => r.host.types().filter((t) => t === 'download_finished').length === 2);
    expect(r.host.events.filter((e) => e.type === 'download_finished')[1]!.data).toEqual({ records: 6, inserted: 0, duplicates: 6 });
    expect(r.host.stored.size).toBe(6);
  });

  it('English and Spanish sends of the same strips give the same records', async () => {
    const en = await rig({ locale: 'en' });
    await en.sim.sendAll();
    await en.host.until(() => en.host.types().includes('download_finished'));
    const es = await rig({ locale: 'es' });
    await es.sim.sendAll();
    await es.host.until(() => es.host.types().includes('download_finished'));
    const strip = (host: FakeHost): unknown =>
      host.commits.flatMap((c) => c.drafts).map((d) => ({ ...d, observations: d.observations.map((o) => ({ ...o, text: null })) }));
    // Only the device's words differ (Negative / Negativo, Yellow / Amarillo).
    expect(strip(es.host)).toEqual(strip(en.host));
  });

  it('quarantines garbage lines and a record cut off when the link closes, and keeps the rest', async () => {
    const r = await rig({ locale: 'en', garbage: true, truncate_last: true, no_error_record: true });
    await r.sim.sendAll();
    await r.host.until(() => r.host.commits.flatMap((c) => c.drafts).length === 5);
    await sleep(50);
    await r.hostEnd.close();
    await r.host.until(() => r.host.quarantined.some((q) => q.reason === 'truncated-line'));
    expect(r.host.quarantined.filter((q) => q.reason === 'not-a-record')).toHaveLength(5);
    expect(r.host.types().filter((t) => t === 'bad_frame')).toHaveLength(6);
    for (const e of r.host.events.filter((x) => x.type === 'bad_frame')) expect(Object.keys(e.data!)).toEqual(['reason', 'detail']);
  });

  it('a failed commit is retried; the records are not lost', async () => {
    const r = await rig({ locale: 'en', no_error_record: true });
    let fail = 2;
    const commit = r.host.commit.bind(r.host);
    r.host.commit = async (drafts, capture) => {
      if (fail-- > 0) throw new Error('disk full');
      return commit(drafts, capture);
    };
    await r.sim.sendAll();
    await r.host.until(() => r.host.stored.size === 6, 8000);
    expect(r.host.types()).toContain('download_failed');
  });

  it('refuses a download request with a clear error', async () => {
    const r = await rig();
    await expect(r.session.command('download', {})).rejects.toThrow(/Send all data/);
  });
});

describe('CLINITEK Status simulator options', () => {
  it('checks its options', () => {
    expect(() => parseSimulatorOptions({ locale: 'fr' })).toThrow(/locale/);
    expect(() => parseSimulatorOptions({ bogus: 1 })).toThrow(/unknown option/);
    expect(() => parseSimulatorOptions({ memory: [{ seq: 1, time: '2024-01-01T10:00:00' }] })).toThrow(/results or an error/);
    expect(parseSimulatorOptions({ locale: 'es', line_end: 'cr' })).toEqual({ locale: 'es', line_end: 'cr' });
  });
});
