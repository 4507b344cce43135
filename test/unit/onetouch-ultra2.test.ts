import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Capture } from '../../src/driver-sdk/index.ts';
import type { ResultDraft } from '../../src/records/types.ts';
import { memoryPair } from '../../src/transports/memory.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { FakeHost } from '../helpers/fake-host.ts';
import { driverRig } from '../helpers/session-rig.ts';
import { clockSkewSeconds, nowInZone } from '../../src/util/time.ts';
import { LineFramer, decodeLine, encodeCommand, setClockCommand, ultra2Checksum, ultra2Line } from '../../drivers/glucose/onetouch-ultra2/codec.ts';
import { onetouchUltra2 } from '../../drivers/glucose/onetouch-ultra2/definition.ts';
import { decodeUltra2 } from '../../drivers/glucose/onetouch-ultra2/records.ts';
import {
  Ultra2Simulator,
  parseSimulatorOptions,
  readingBody,
  ultra2Reply,
  type SimulatedReading,
  type Ultra2MeterState,
} from '../../drivers/glucose/onetouch-ultra2/simulator.ts';

const CTX = { deviceId: 'bench1-ultra2', timezone: 'Europe/Copenhagen' };
const FIXTURE_LINES = [
  'P 003,"GMF600DCY","MG/DL " 05A6',
  'P "SAT","03/21/15","16:45:24   ","  081 ","N","03", 00 09B6',
  'P "SAT","03/21/15","16:42:11   ","  105 ","B","02", 00 099F',
  'P "SAT","03/21/15","16:39:46   ","  176 ","N","02", 00 09C1',
];
const raw = (bytes: Buffer): Capture => ({ kind: 'raw', bytes });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ── codec ───────────────────────────────────────────────────────────────────────────────────────

describe('Ultra 2 checksum', () => {
  it('matches the glucometerutils and research-note vectors', () => {
    expect(ultra2Checksum('T')).toBe(0x0054);
    expect(ultra2Checksum('T "SAT","08/03/13","22:12:00   "')).toBe(0x0608);
    expect(ultra2Checksum('F "SAT","08/03/13","22:12:00   "')).toBe(0x05fa);
  });

  it('matches the four lines of the real DMP reply', () => {
    for (const line of FIXTURE_LINES) {
      const body = line.slice(0, -5);
      expect(ultra2Checksum(body)).toBe(parseInt(line.slice(-4), 16));
      expect(ultra2Line(body).toString('latin1')).toBe(`${line}\r\n`);
    }
  });

  it('is a 16-bit sum that wraps', () => {
    expect(ultra2Checksum(Buffer.alloc(300, 0xff))).toBe((300 * 0xff) & 0xffff);
  });
});

describe('Ultra 2 line errors', () => {
  const code = (line: string): string | undefined => {
    const r = decodeLine(Buffer.from(line, 'latin1'));
    return r.ok ? undefined : r.error.code;
  };
  it('returns typed errors and never throws', () => {
    expect(code('% 1337')).toBe('bad-checksum');
    expect(code('% 13AZ')).toBe('missing-checksum');
    expect(code('INVALID')).toBe('missing-checksum');
    expect(code('@ "12345678O" 0297')).toBe('invalid-serial');
    expect(code('.')).toBe('invalid-response');
    // glucometerutils raises InvalidResponse for `% 2500` when it expects a serial. At the line
    // level its checksum is simply wrong (sum("%") = 0025).
    expect(code('% 2500')).toBe('bad-checksum');
    expect(code('% 0025')).toBe('invalid-response');
    expect(code('P 003,"GMF600DCX","MG/DL " 05A5')).toBe('invalid-serial');
  });

  it('refuses impossible dates and unknown comment codes even with a good checksum', () => {
    const badDate = 'P "SAT","02/30/15","16:45:24   ","  081 ","N","03", 00';
    expect(code(ultra2Line(badDate).toString('latin1').trim())).toBe('invalid-date');
    const badComment = 'P "SAT","03/21/15","16:45:24   ","  081 ","N","12", 00';
    expect(code(ultra2Line(badComment).toString('latin1').trim())).toBe('invalid-response');
    const oddTail = 'P "SAT","03/21/15","16:45:24   ","  081 ","N","03", 01';
    expect(code(ultra2Line(oddTail).toString('latin1').trim())).toBe('invalid-response');
  });

  it('accepts a lowercase checksum', () => {
    const r = decodeLine(Buffer.from('P 003,"GMF600DCY","MG/DL " 05a6'));
    expect(r.ok).toBe(true);
  });
});

describe('Ultra 2 reply parsing', () => {
  const msg = (body: string): unknown => {
    const r = decodeLine(ultra2Line(body).subarray(0, -2));
    if (!r.ok) throw new Error(r.error.code);
    return r.message;
  };
  it('parses every reply the session asks for', () => {
    expect(msg('?P02.00.00 30/08/06')).toEqual({ type: 'firmware', firmware: 'P02.00.00', build: '30/08/06' });
    expect(msg('@ "GMF600DCY"')).toEqual({ type: 'serial', serial: 'GMF600DCY' });
    expect(msg('F "SAT","08/03/13","22:12:00   "')).toEqual({ type: 'clock', time: '2013-08-03T22:12:00' });
    expect(msg('T "SAT","08/03/13","22:12:00   "')).toEqual({ type: 'clock-set', time: '2013-08-03T22:12:00' });
    expect(msg('SU?,"MG/DL "')).toEqual({ type: 'unit', unit: 'mg/dL' });
    expect(msg('SU?,"MMOL/L"')).toEqual({ type: 'unit', unit: 'mmol/L' });
    expect(msg('P 003,"GMF600DCY","MMOL/L"')).toEqual({ type: 'dump-header', count: 3, serial: 'GMF600DCY', unit: 'mmol/L' });
    expect(msg('Z')).toEqual({ type: 'erased' });
    expect(msg('P "SAT","03/21/15","16:45:24   ","C 118?","A","11", 00')).toEqual({
      type: 'reading',
      reading: { time: '2015-03-21T16:45:24', value: 118, control: true, parity: true, meal: 'A', comment: 11 },
    });
  });

  it('encodes host commands as 0x11 0x0D CMD 0x0D', () => {
    expect(encodeCommand('DM?').toString('hex')).toBe('110d444d3f0d');
    expect(setClockCommand('2015-03-21T16:45:24')).toBe('DMT03/21/15 16:45:24');
    expect(() => setClockCommand('1999-12-31T23:59:59')).toThrow(RangeError);
  });
});

describe('LineFramer', () => {
  it('splits CR LF, bare LF and bare CR, across chunk borders', () => {
    const f = new LineFramer();
    const got = [...f.push(Buffer.from('ab\r')), ...f.push(Buffer.from('\ncd\nef')), ...f.push(Buffer.from('\r\n'))];
    expect(got.map((i) => i.bytes.toString())).toEqual(['ab', 'cd', 'ef']);
  });
  it('counts and drops NUL bytes where a line would start', () => {
    const f = new LineFramer();
    expect(f.push(Buffer.from([0]))).toEqual([]);
    expect(f.nulBytes).toBe(1);
    expect(f.pending().length).toBe(0);
  });
  it('reports an overlong line once and resynchronises at the next line end', () => {
    const f = new LineFramer();
    const items = f.push(Buffer.concat([Buffer.alloc(500, 0x41), Buffer.from('\r\nok\r\n')]));
    expect(items.map((i) => i.kind)).toEqual(['overflow', 'line']);
  });
});

// ── decode ──────────────────────────────────────────────────────────────────────────────────────

const readingArb: fc.Arbitrary<SimulatedReading> = fc.record({
  time: fc
    .integer({ min: Date.UTC(2000, 0, 1) / 1000, max: Date.UTC(2099, 11, 31, 23, 59, 59) / 1000 })
    .map((s) => new Date(s * 1000).toISOString().slice(0, 19)),
  value: fc.integer({ min: 0, max: 999 }),
  control: fc.boolean(),
  parity: fc.boolean(),
  meal: fc.constantFrom('N' as const, 'B' as const, 'A' as const),
  comment: fc.integer({ min: 0, max: 11 }),
});
const memoryArb = fc.uniqueArray(readingArb, { minLength: 1, maxLength: 25, selector: (r) => r.time });
const meterOf = (memory: SimulatedReading[], unit: 'mg/dL' | 'mmol/L' = 'mg/dL'): Ultra2MeterState => ({
  serial: 'GMF600DCY',
  firmware: 'P02.00.00 30/08/06',
  unit,
  clock: '2015-03-21T17:00:00',
  memory,
});
const dumpBytes = (memory: SimulatedReading[]): Buffer => ultra2Reply('DMP', meterOf(memory))!;
/** Splits bytes at the given cut points. */
const chunksAt = (bytes: Buffer, cuts: number[]): Buffer[] => {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    out.push(bytes.subarray(from, p));
    from = p;
  }
  out.push(bytes.subarray(from));
  return out;
};
const sameRecord = (a: ResultDraft, b: ResultDraft): boolean =>
  JSON.stringify({ ...a, device: { ...a.device, serial: null } }) === JSON.stringify({ ...b, device: { ...b.device, serial: null } }) &&
  (a.device.serial === b.device.serial || a.device.serial === null);

describe('decode', () => {
  it('decodes the real DMP reply: three patient readings, oldest first, all mg/dL', () => {
    const r = decodeUltra2(raw(Buffer.from(FIXTURE_LINES.join('\r\n') + '\r\n')), CTX);
    expect(r.issues).toEqual([]);
    expect(r.device).toEqual({ serial: 'GMF600DCY', display_unit: 'mg/dL', record_count: 3 });
    expect(r.drafts.result!.map((d) => [d.device_time, d.observations[0]!.value, d.flags])).toEqual([
      ['2015-03-21T16:39:46', 176, ['comment:too-much-food']],
      ['2015-03-21T16:42:11', 105, ['meal:before', 'comment:too-much-food']],
      ['2015-03-21T16:45:24', 81, ['comment:mild-exercise']],
    ]);
    const last = r.drafts.result![2]!;
    expect(last.key).toBe('2015-03-21T16:45:24|81|P');
    expect(last.observed_at).toBe('2015-03-21T16:45:24+01:00');
    expect(last.device).toEqual({
      id: 'bench1-ultra2',
      driver: 'onetouch-ultra2',
      manufacturer: 'LifeScan',
      model: 'OneTouch Ultra 2',
      serial: 'GMF600DCY',
      firmware: null,
    });
  });

  it('marks control solution as control (never patient) and parity errors as a flag', () => {
    const memory: SimulatedReading[] = [
      { time: '2024-05-01T08:00:00', value: 112, control: true },
      { time: '2024-05-01T09:00:00', value: 95, parity: true, meal: 'A', comment: 5 },
    ];
    const r = decodeUltra2(raw(Buffer.concat([ultra2Reply('DM?', meterOf(memory))!, dumpBytes(memory)])), CTX);
    expect(r.drafts.result).toHaveLength(2);
    const [control, patient] = r.drafts.result! as [ResultDraft, ResultDraft];
    expect(control.category).toBe('control');
    expect(control.specimen).toEqual({ id: null, type: 'control solution' });
    expect(control.key).toBe('2024-05-01T08:00:00|112|C');
    expect(control.device.firmware).toBe('P02.00.00');
    expect(patient.category).toBe('patient');
    expect(patient.observations[0]!.flags).toEqual(['parity-error']);
    expect(patient.flags).toEqual(['meal:after', 'comment:medication']);
    expect(patient.observed_at).toBe('2024-05-01T09:00:00+02:00');
  });

  it('a value outside the meter range (20-600 mg/dL) is a HI or LO flag with the limit, never an exact number', () => {
    const memory: SimulatedReading[] = [
      { time: '2024-05-01T08:00:00', value: 10 },
      { time: '2024-05-01T09:00:00', value: 20 },
      { time: '2024-05-01T10:00:00', value: 600 },
      { time: '2024-05-01T11:00:00', value: 700 },
    ];
    const obs = decodeUltra2(raw(dumpBytes(memory)), CTX).drafts.result!.map((d) => d.observations[0]!);
    expect(obs[0]).toMatchObject({ value: null, unit: 'mg/dL', flags: ['LO'], comparator: '<', limit: 20, text: '10' });
    expect(obs[1]).toMatchObject({ value: 20, flags: [], comparator: null, text: null });
    expect(obs[2]).toMatchObject({ value: 600, flags: [], comparator: null, text: null });
    expect(obs[3]).toMatchObject({ value: null, unit: 'mg/dL', flags: ['HI'], comparator: '>', limit: 600, text: '700' });
    expect(obs[1]).not.toHaveProperty('limit');
  });

  it('keeps values in mg/dL on a meter that displays mmol/L', () => {
    const memory = [{ time: '2024-05-01T08:00:00', value: 144 }];
    const bytes = Buffer.concat([ultra2Reply('DMSU?', meterOf(memory, 'mmol/L'))!, ultra2Reply('DMP', meterOf(memory, 'mmol/L'))!]);
    const r = decodeUltra2(raw(bytes), CTX);
    expect(r.device.display_unit).toBe('mmol/L');
    expect(r.drafts.result![0]!.observations[0]).toMatchObject({ value: 144, unit: 'mg/dL', ucum: 'mg/dL' });
  });

  it('reports a dump shorter than its header, and returns what verified', () => {
    const bytes = Buffer.from(FIXTURE_LINES.slice(0, 3).join('\r\n') + '\r\n');
    const r = decodeUltra2(raw(bytes), CTX);
    expect(r.drafts.result).toHaveLength(2);
    expect(r.issues.map((i) => i.reason)).toEqual(['truncated-dump']);
  });

  it('reports readings without a header', () => {
    const r = decodeUltra2(raw(Buffer.from(FIXTURE_LINES.slice(1).join('\r\n'))), CTX);
    expect(r.drafts.result).toHaveLength(3);
    expect(r.drafts.result![0]!.device.serial).toBeNull();
    expect(r.issues.map((i) => i.reason)).toEqual(['missing-dump-header']);
  });

  it('reads a transcript, ignoring host lines, and merges a retried dump', () => {
    const dump = dumpBytes([
      { time: '2024-05-01T08:00:00', value: 100 },
      { time: '2024-05-01T09:00:00', value: 120 },
    ]);
    const broken = Buffer.from(dump.toString('latin1').replace(/ ([0-9A-F]{4})\r\n$/, ' FFFF\r\n'), 'latin1');
    const capture: Capture = {
      kind: 'transcript',
      exchanges: [
        { dir: 'H', bytes: encodeCommand('DMP') },
        { dir: 'D', bytes: broken },
        { dir: 'H', bytes: encodeCommand('DMP') },
        { dir: 'D', bytes: dump },
      ],
    };
    const r = decodeUltra2(capture, CTX);
    expect(r.drafts.result!.map((d) => d.key)).toEqual(['2024-05-01T08:00:00|100|P', '2024-05-01T09:00:00|120|P']);
    expect(r.issues.map((i) => i.reason).sort()).toEqual(['bad-checksum', 'truncated-dump']);
    expect(r.issues.find((i) => i.reason === 'bad-checksum')!.bytes!.length).toBeGreaterThan(0);
  });

  it('gives zero records for input that is not an Ultra 2', () => {
    for (const junk of ['', 'hello\r\n', '\x02H|\\^&|||cobas\r\x0317\r\n', '\x00', 'H 11 0d\nD 00\n']) {
      const r = decodeUltra2(raw(Buffer.from(junk, 'latin1')), CTX);
      expect(r.drafts.result).toEqual([]);
    }
  });

  it('same records however the reply is chunked', () => {
    fc.assert(
      fc.property(memoryArb, fc.array(fc.nat(), { maxLength: 40 }), (memory, cuts) => {
        const bytes = dumpBytes(memory);
        const whole = decodeUltra2(raw(bytes), CTX);
        expect(whole.issues).toEqual([]);
        expect(whole.drafts.result).toHaveLength(memory.length);
        const framer = new LineFramer();
        const lines = chunksAt(bytes, cuts).flatMap((c) => framer.push(c));
        const rejoined = Buffer.concat(lines.map((l) => Buffer.concat([l.bytes, Buffer.from('\r\n')])));
        expect(decodeUltra2(raw(rejoined), CTX).drafts.result).toEqual(whole.drafts.result);
        // A transcript of the same bytes in random D chunks decodes the same too.
        const t: Capture = { kind: 'transcript', exchanges: chunksAt(bytes, cuts).map((b) => ({ dir: 'D' as const, bytes: b })) };
        expect(decodeUltra2(t, CTX).drafts.result).toEqual(whole.drafts.result);
      }),
    );
  });

  it('noise between lines gives issues, and every valid reading is still decoded', () => {
    fc.assert(
      fc.property(
        memoryArb,
        fc.array(fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 64 })), { minLength: 1, maxLength: 5 }),
        (memory, noise) => {
          const lines = dumpBytes(memory).toString('latin1').split(/(?<=\r\n)/).map((l) => Buffer.from(l, 'latin1'));
          const parts: Buffer[] = [...lines];
          for (const [at, bytes] of noise) parts.splice(at % parts.length, 0, Buffer.from(bytes));
          const clean = decodeUltra2(raw(dumpBytes(memory)), CTX);
          const r = decodeUltra2(raw(Buffer.concat([...parts, Buffer.from('\r\n')])), CTX);
          expect(r.drafts.result).toEqual(clean.drafts.result);
          const visible = noise.some(([, b]) => b.some((x) => x !== 0x0d && x !== 0x0a && x !== 0x00));
          if (visible) expect(r.issues.length).toBeGreaterThan(0);
          for (const issue of r.issues) expect(issue.reason).not.toBe('truncated-dump');
        },
      ),
    );
  });

  it('a single corrupted byte never yields a wrong record', () => {
    fc.assert(
      fc.property(memoryArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (memory, at, delta) => {
        const bytes = Buffer.from(dumpBytes(memory));
        const i = at % bytes.length;
        bytes[i] = (bytes[i]! + delta) & 0xff;
        const clean = decodeUltra2(raw(dumpBytes(memory)), CTX).drafts.result!;
        const r = decodeUltra2(raw(bytes), CTX);
        for (const d of r.drafts.result!) expect(clean.some((c) => sameRecord(d, c))).toBe(true);
        if (r.drafts.result!.length < clean.length) {
          expect(r.issues.some((x) => ['bad-checksum', 'missing-checksum', 'invalid-response', 'truncated-line'].includes(x.reason))).toBe(true);
        }
      }),
    );
  });

  it('a truncated last line is an issue and the dump is reported short', () => {
    fc.assert(
      fc.property(memoryArb, fc.nat(), (memory, at) => {
        const bytes = dumpBytes(memory);
        const lastStart = bytes.subarray(0, bytes.length - 2).lastIndexOf(0x0a) + 1;
        // Cut anywhere from the start of the last line up to (not including) its last checksum digit.
        const cut = lastStart + (at % (bytes.length - 3 - lastStart));
        const r = decodeUltra2(raw(bytes.subarray(0, cut)), CTX);
        expect(r.drafts.result).toHaveLength(memory.length - 1);
        expect(r.issues.map((x) => x.reason)).toContain('truncated-dump');
        if (cut > lastStart) expect(r.issues.map((x) => x.reason)).toContain('truncated-line');
      }),
    );
  });
});

// ── simulator ───────────────────────────────────────────────────────────────────────────────────

describe('simulator options', () => {
  it('accepts the documented options and refuses bad ones', () => {
    expect(parseSimulatorOptions({ serial: 'ABC12345Y', unit: 'mmol/L', off: 'nul', memory: [{ time: '2024-01-01T10:00:00', value: 99 }] })).toEqual({
      serial: 'ABC12345Y',
      unit: 'mmol/L',
      off: 'nul',
      memory: [{ time: '2024-01-01T10:00:00', value: 99 }],
    });
    expect(() => parseSimulatorOptions({ serial: 'ABC12345X' })).toThrow(/serial/);
    expect(() => parseSimulatorOptions({ memory: [{ time: 'yesterday', value: 99 }] })).toThrow(/memory\[0\]\.time/);
    expect(() => parseSimulatorOptions({ colour: 'red' })).toThrow(/unknown option colour/);
  });

  it('writes reading lines in the documented layout', () => {
    expect(readingBody({ time: '2015-03-21T16:45:24', value: 81, comment: 3 })).toBe('P "SAT","03/21/15","16:45:24   ","  081 ","N","03", 00');
  });

  it('answers glucometerutils-style and Tidepool-style commands (no final CR), and DMZ erases', async () => {
    const { host, device } = memoryPair();
    const sim = new Ultra2Simulator({ memory: [{ time: '2024-01-01T10:00:00', value: 99 }], seed: 3 });
    sim.attach(device);
    await device.open();
    await host.open();
    const got: Buffer[] = [];
    host.on('data', (c: Buffer) => got.push(c));
    await host.write(encodeCommand('DM@'));
    await host.write(Buffer.from([0x11, 0x0d, ...Buffer.from('DMSU?')]));
    await sleep(120);
    expect(Buffer.concat(got).toString('latin1')).toBe('@ "GMF600DCY" 02F4\r\nSU?,"MG/DL " 02CA\r\n');
    await host.write(encodeCommand('DMZ'));
    await sleep(30);
    expect(sim.memory).toEqual([]);
    expect(sim.received).toEqual(['DM@', 'DMSU?', 'DMZ']);
    sim.detach();
  });

  it('adds new readings over time', async () => {
    const sim = new Ultra2Simulator({ memory: [], new_reading_every_s: 0.02, seed: 7 });
    const { device } = memoryPair();
    sim.attach(device);
    await sleep(120);
    sim.detach();
    const n = sim.memory.length;
    expect(n).toBeGreaterThan(1);
    await sleep(60);
    expect(sim.memory.length).toBe(n);
  });
});

// ── session ─────────────────────────────────────────────────────────────────────────────────────

const cleanups = useCleanups();

const MEMORY: SimulatedReading[] = [
  { time: '2024-05-01T07:30:00', value: 96, meal: 'B' },
  { time: '2024-05-01T08:10:00', value: 118, control: true },
  { time: '2024-05-01T13:00:00', value: 154, meal: 'A', comment: 3 },
];

const rig = driverRig<Ultra2Simulator>(
  onetouchUltra2,
  { cable: 'ultra2', deviceId: 'bench1-ultra2', options: { reply_timeout_ms: 150 }, simulator: { memory: MEMORY, timezone: 'Europe/Copenhagen', seed: 1 }, chunkSize: 7 },
  cleanups,
);

describe('session', () => {
  it('downloads when the transport opens and commits all readings once, oldest first', async () => {
    const r = await rig({ firmware: 'P02.00.00 30/08/06' }, {}, { open: false });
    await r.session.start();
    expect(r.host.commits).toHaveLength(0);
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(r.sim.received).toEqual(['DM?', 'DM@', 'DMF', 'DMSU?', 'DMP']);
    expect(r.host.commits).toHaveLength(1);
    const { drafts, capture } = r.host.commits[0]!;
    expect(drafts.map((d) => d.key)).toEqual(['2024-05-01T07:30:00|96|P', '2024-05-01T08:10:00|118|C', '2024-05-01T13:00:00|154|P']);
    expect(drafts[1]!.category).toBe('control');
    expect(drafts[0]!.device).toMatchObject({ serial: 'GMF600DCY', firmware: 'P02.00.00' });
    // The stored transcript decodes to exactly what was committed.
    expect(capture.kind).toBe('transcript');
    expect(decodeUltra2(capture, { deviceId: 'bench1-ultra2', timezone: 'Europe/Copenhagen' }).drafts.result).toEqual(drafts);
    expect(r.host.state).toMatchObject({ status: 'ok', serial: 'GMF600DCY', firmware: 'P02.00.00', meter: { display_unit: 'mg/dL', record_count: 3 } });
    expect(r.host.state.clock_skew_flagged).toBe(false);
    expect(Math.abs(r.host.state.clock_skew_s!)).toBeLessThanOrEqual(2);
    expect(r.host.types()).toEqual(['download_started', 'download_progress', 'download_finished']);
    expect(r.host.events.at(-1)!.data).toEqual({ records: 3, inserted: 3, duplicates: 0, unreadable: 0 });
  });

  it('downloads at once when started on an open transport, and on the download command', async () => {
    const r = await rig({ unit: 'mmol/L' });
    await r.session.start();
    await r.host.until(() => r.host.commits.length === 1);
    const result = await r.session.command('download', {});
    // The same memory again: every reading is already stored.
    expect(result).toEqual({ inserted: 0, duplicates: 3, records: 3, unreadable: 0 });
    expect(r.host.commits).toHaveLength(2);
    expect(r.host.state.meter?.display_unit).toBe('mmol/L');
    expect(r.host.commits[1]!.drafts[0]!.observations[0]!.unit).toBe('mg/dL');
  });

  it('polls every poll_interval seconds', async () => {
    const r = await rig({}, { poll_interval: 0.15 });
    await r.session.start();
    await r.host.until(() => r.host.commits.length >= 3);
    await r.teardown();
    const n = r.host.commits.length;
    await sleep(300);
    expect(r.host.commits.length).toBe(n);
  });

  it('runs one conversation at a time', async () => {
    const r = await rig();
    await r.session.start();
    const [a, b] = await Promise.all([r.session.command('download', {}), r.session.command('download', {})]);
    expect(a).toEqual(b);
    // The download on start, then one more: the second request joined the first while it waited.
    const cycle = ['DM?', 'DM@', 'DMF', 'DMSU?', 'DMP'];
    expect(r.sim.received).toEqual([...cycle, ...cycle]);
  });

  it('requests that pile up while the meter is busy join the waiting download, and past 8 waiting commands are refused', async () => {
    const r = await rig({ line_delay_ms: 20 });
    await r.session.start();
    const downloads = Array.from({ length: 50 }, () => r.session.command('download', {}));
    const clocks = Array.from({ length: 10 }, () => r.session.command('clock/sync', {}).then(
      () => 'ok',
      (e: Error) => e.message,
    ));
    const results = await Promise.all(downloads);
    expect(new Set(results).size).toBe(1); // one download served all fifty
    const outcomes = await Promise.all(clocks);
    // Waiting: the queued download and seven clock/syncs; the other three are told the meter is busy.
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(7);
    expect(outcomes.filter((o) => /busy \(8 commands already waiting\)/.test(o))).toHaveLength(3);
    expect(r.sim.received.filter((c) => c === 'DMP')).toHaveLength(2);
  });

  it('a reading line with a good checksum but no valid reading is quarantined, and the readings around it are stored', async () => {
    const r = await rig({}, {}, { open: false });
    await r.session.start();
    r.sim.garbleLine(4 + 2); // DM?, DM@, DMF, DMSU?, then the DMP header and the 2nd reading
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_finished'));
    // Asking again would bring the same line back: the dump is read once.
    expect(r.sim.received).toEqual(['DM?', 'DM@', 'DMF', 'DMSU?', 'DMP']);
    expect(r.host.commits).toHaveLength(1);
    expect(r.host.commits[0]!.drafts).toHaveLength(2);
    expect(r.host.quarantined.map((q) => q.reason)).toEqual(['invalid-date']);
    const finished = r.host.events.find((e) => e.type === 'download_finished')!;
    expect(finished.data).toMatchObject({ records: 2, unreadable: 1 });
    expect(finished.message).toMatch(/1 unreadable lines kept in quarantine/);
    // The next download reads the same line again: the same two records, nothing new, no loop.
    await r.session.command('download', {});
    expect(r.host.commits).toHaveLength(2);
  });

  it('commands still queued when the session stops never reach the meter', async () => {
    // A slow meter (50 ms a line), so the first conversation is still going when the session stops.
    const r = await rig({ line_delay_ms: 50 });
    await r.session.start();
    const first = r.session.command('download', {});
    const queued = [r.session.command('download', {}), r.session.command('clock/sync', {})];
    await new Promise((resolve) => setTimeout(resolve, 5));
    await r.session.stop();
    await first.catch(() => undefined);
    for (const q of queued) await expect(q).rejects.toThrow(/stopped/);
    const sent = r.sim.received.length;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(r.sim.received.length).toBe(sent);
    expect(r.sim.received.filter((c) => c.startsWith('DMT'))).toEqual([]);
    expect(r.host.types()).not.toContain('no_answer');
  });

  it('a meter that does not answer: no_answer and status no-answer, nothing committed', async () => {
    const r = await rig({ off: true });
    await r.session.start();
    const t0 = Date.now();
    await r.host.until(() => r.host.state.status === 'no-answer', 2000);
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(r.host.types()).toEqual(['no_answer']);
    expect(r.sim.received).toEqual(['DM?', 'DM?']);
    await expect(r.session.command('download', {})).rejects.toThrow(/no answer/);
    expect(r.host.types()).toEqual(['no_answer']); // said once, not on every poll
    expect(r.host.commits).toHaveLength(0);
  });

  it('a single 0x00 reply is reported as a meter that is on or not in the cable', async () => {
    const r = await rig({ off: 'nul' });
    await r.session.start();
    await r.host.until(() => r.host.state.status === 'no-answer', 2000);
    expect(r.host.events[0]!.message).toMatch(/0x00/);
  });

  it('a bad checksum is quarantined, reported without the line text, retried and then committed', async () => {
    const r = await rig({ corrupt_next: 1 });
    await r.session.start();
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(r.sim.received.slice(0, 2)).toEqual(['DM?', 'DM?']);
    expect(r.host.quarantined.map((q) => q.reason)).toEqual(['bad-checksum']);
    expect(r.host.quarantined[0]!.bytes.toString('latin1')).toMatch(/^\?P02/);
    const bad = r.host.events.find((e) => e.type === 'bad_frame')!;
    expect(bad.data).toMatchObject({ reason: 'bad-checksum' });
    expect(JSON.stringify(bad)).not.toMatch(/P02/);
    expect(r.host.commits).toHaveLength(1);
    expect(r.host.commits[0]!.drafts).toHaveLength(3);
  });

  it('a bad reading line makes the whole dump be asked again before anything is committed', async () => {
    const r = await rig({}, {}, { open: false });
    await r.session.start();
    r.sim.corruptLine(4 + 2); // DM?, DM@, DMF, DMSU?, then the DMP header and the 2nd reading
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(r.sim.received).toEqual(['DM?', 'DM@', 'DMF', 'DMSU?', 'DMP', 'DMP']);
    expect(r.host.commits).toHaveLength(1);
    expect(r.host.commits[0]!.drafts).toHaveLength(3);
    expect(r.host.quarantined).toHaveLength(1);
  });

  it('never commits a dump shorter than its header', async () => {
    const { host: hostEnd, device: deviceEnd } = memoryPair('short');
    await deviceEnd.open();
    const meter = meterOf([
      { time: '2024-05-01T08:00:00', value: 100 },
      { time: '2024-05-01T09:00:00', value: 120 },
    ]);
    meter.clock = nowInZone('Europe/Copenhagen');
    let dmp = 0;
    deviceEnd.on('data', (chunk: Buffer) => {
      const cmd = chunk.toString('latin1').replace(/[\r]/g, '').replaceAll(String.fromCharCode(0x11), '');
      let reply = ultra2Reply(cmd, meter)!;
      if (cmd === 'DMP') {
        dmp++;
        reply = reply.subarray(0, reply.lastIndexOf('P "'));
      }
      void deviceEnd.write(reply);
    });
    const host = new FakeHost({ id: 'x', driver: 'onetouch-ultra2', transport: { type: 'simulated' }, options: { reply_timeout_ms: 100 } }, hostEnd);
    const session = onetouchUltra2.createSession(host);
    await hostEnd.open();
    await session.start();
    await expect(session.command('download', {})).rejects.toThrow(/truncated-dump/);
    expect(dmp).toBe(4); // twice on connect, twice on request
    expect(host.commits).toHaveLength(0);
    expect(host.state.status).toBe('error');
    expect(host.events.filter((e) => e.type === 'download_failed').map((e) => e.data)).toEqual([{ reason: 'truncated-dump' }, { reason: 'truncated-dump' }]);
    await session.stop();
  });

  it('flags a meter clock more than 15 minutes off, once', async () => {
    const r = await rig({ clock_offset_s: 3600 });
    await r.session.start();
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(r.host.state.clock_skew_flagged).toBe(true);
    expect(r.host.state.clock_skew_s).toBeGreaterThanOrEqual(3598);
    expect(r.host.state.clock_skew_s).toBeLessThanOrEqual(3602);
    await r.session.command('download', {});
    expect(r.host.types().filter((t) => t === 'clock_skew')).toHaveLength(1);
  });

  it('clock/sync sets the meter clock to host time in the device zone', async () => {
    const r = await rig({ clock_offset_s: -7200 }, {}, { open: false });
    await r.session.start();
    await r.hostEnd.open();
    const result = (await r.session.command('clock/sync', {})) as { clock: string; clock_skew_s: number };
    // The connect download ran first (the meter was 2 h behind), then the set.
    expect(r.host.state.clock_skew_flagged).toBe(false);
    expect(r.sim.received.filter((c) => c.startsWith('DMT'))).toHaveLength(1);
    expect(r.sim.received.at(-1)).toMatch(/^DMT\d{2}\/\d{2}\/\d{2} \d{2}:\d{2}:\d{2}$/);
    expect(Math.abs(clockSkewSeconds(r.sim.clock(), 'Europe/Copenhagen'))).toBeLessThanOrEqual(2);
    expect(Math.abs(result.clock_skew_s)).toBeLessThanOrEqual(2);
    expect(r.host.types()).toContain('clock_skew');
    expect(r.host.types().at(-1)).toBe('clock_set');
  });

  it('clock/sync fails with clock-not-set when the meter answers a clock away from the time sent', async () => {
    const r = await rig({ clock_offset_s: -7200 });
    await r.session.start();
    await r.host.until(() => r.host.types().includes('download_finished'));
    // A meter that takes DMT but keeps its old clock: its T reply carries a time 2 hours back.
    r.sim.detach();
    const commands: string[] = [];
    let received = '';
    r.deviceEnd.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      const lines = received.split('\r');
      received = lines.pop()!;
      for (const command of lines.filter((c) => c.startsWith('DMT'))) {
        commands.push(command);
        const kept = nowInZone('Europe/Copenhagen', new Date(Date.now() - 7200_000));
        const [, yy, mm, dd, time] = /^20(\d{2})-(\d{2})-(\d{2})T(.+)$/.exec(kept)!;
        void r.deviceEnd.write(ultra2Line(`T "MON","${mm}/${dd}/${yy}","${time}   "`));
      }
    });
    await expect(r.session.command('clock/sync', {})).rejects.toThrow(/clock \d+ s away from the time sent/);
    expect(commands).toHaveLength(1);
    expect(r.host.events.at(-1)).toMatchObject({ type: 'device_error', data: { reason: 'clock-not-set' } });
    expect(r.host.types()).not.toContain('clock_set');
    expect(r.host.state.clock_skew_flagged).toBe(true);
  });

  it('awaits the commit before download_finished', async () => {
    const r = await rig({}, {}, { open: false });
    r.host.commitDelayMs = 150;
    await r.session.start();
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_finished'));
    const tail = r.host.order.slice(r.host.order.indexOf('commit:start'));
    expect(tail).toEqual(['commit:start', 'commit:end', 'download_finished']);
  });

  it('a failing commit is a failed download, never a finished one', async () => {
    const r = await rig({}, {}, { open: false });
    r.host.commit = async () => {
      throw new Error('disk full');
    };
    await r.session.start();
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_failed'));
    expect(r.host.types()).not.toContain('download_finished');
    expect(r.host.events.at(-1)!.data).toEqual({ reason: 'commit-failed' });
    expect(r.host.state.status).toBe('error');
  });

  it('status returns the state; unknown verbs reject; event handlers that throw do not break it', async () => {
    const r = await rig();
    r.host.event = () => {
      throw new Error('boom');
    };
    await r.session.start();
    await r.session.command('download', {});
    expect(await r.session.command('status', {})).toMatchObject({ status: 'ok', serial: 'GMF600DCY', meter: { record_count: 3 } });
    await expect(r.session.command('erase', {})).rejects.toThrow(/unknown command/);
    await r.teardown();
    await expect(r.session.command('download', {})).rejects.toThrow(/stopped/);
  });

  it('refuses bad driver options', () => {
    const { host: t } = memoryPair();
    const host = new FakeHost({ id: 'x', driver: 'onetouch-ultra2', transport: { type: 'simulated' }, options: { reply_timeout_ms: 'soon' } }, t);
    expect(() => onetouchUltra2.createSession(host)).toThrow(/reply_timeout_ms/);
  });

  it('a link that closes mid-download fails the download without committing', async () => {
    const r = await rig({ line_delay_ms: 20 }, {}, { open: false });
    await r.session.start();
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_progress') || r.sim.received.includes('DMP'));
    await r.hostEnd.close();
    await r.host.until(() => r.host.types().includes('download_failed'));
    expect(r.host.commits).toHaveLength(0);
  });
});
