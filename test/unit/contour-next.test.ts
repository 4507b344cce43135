import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Capture, DeviceSimulator, DriverSession, Exchange } from '../../src/driver-sdk/index.ts';
import type { ByteTransport } from '../../src/transports/transport.ts';
import type { ResultDraft } from '../../src/records/types.ts';
import { RECORD_KINDS } from '../../src/records/kinds.ts';
import { AstmFrameReader, astmChecksum, encodeFrame, type AstmFrameEvent } from '../../src/protocols/astm/frame.ts';
import { parseMessage } from '../../src/protocols/astm/records.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { FakeHost } from '../helpers/fake-host.ts';
import { sessionRig, type SessionRig } from '../helpers/session-rig.ts';
import { decodeReport, encodeReport, encodeReports, MAX_REPORT_PAYLOAD, trimReport } from '../../drivers/glucose/contour-next/codec.ts';
import { contourNext } from '../../drivers/glucose/contour-next/definition.ts';
import { decodeContour, parseContourHeader, parseContourResult, transferToDrafts } from '../../drivers/glucose/contour-next/records.ts';
import {
  ContourSimulator,
  contourTransferRecords,
  parseContourSimulatorOptions,
  type ContourSimulatorOptions,
  type SimulatedContourReading,
} from '../../drivers/glucose/contour-next/simulator.ts';

import { itShared, sharedFixture } from '../helpers/shared-fixtures.ts';
import { buildCapture as buildConstructedCapture } from '../fixtures/contour-next/real-header-result-constructed-l/capture-recipe.ts';

const HEADER = sharedFixture('glucose/contour-next-header-frame.bin');
const RESULT = sharedFixture('glucose/contour-next-result-frame.bin');
const HEADER_FILE = HEADER.bytesOrEmpty();
const RESULT_FILE = RESULT.bytesOrEmpty();
const CTX = { deviceId: 'bench2-contour', timezone: 'Europe/Copenhagen' };
const raw = (bytes: Buffer): Capture => ({ kind: 'raw', bytes });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The text of an H record (no CR) built the way a Contour sends it. */
function headerRecord(unit: 'mg/dL' | 'mmol/L' = 'mg/dL', v = unit === 'mg/dL' ? '10600' : '06333'): string {
  return `H|\\^&||pw|Bayer7410^01.14\\01.03^7410-1112223^7410-|A=1^U=${unit === 'mg/dL' ? 0 : 1}^V=${v}^Z=1|3||||||1|202501021030`;
}

/** A whole transfer (ASTM bytes: ENQ, frames, EOT) from record texts. */
function transferBytes(records: string[]): Buffer {
  const frames = records.map((r, i) => encodeFrame((i + 1) % 8, `${r}\r`, i === records.length - 1));
  return Buffer.concat([Buffer.from([0x05]), ...frames, Buffer.from([0x04])]);
}

const MEMORY_MG: SimulatedContourReading[] = [
  { time: '2025-01-01T07:30', value: 96, markers: ['B'] },
  { time: '2025-01-01T08:02', value: 118, control: true },
  { time: '2025-01-01T12:10', value: 0, hi: true },
  { time: '2025-01-01T22:40', value: 0, lo: true, markers: ['D'] },
  { time: '2025-01-02T07:05', value: 101, markers: ['F', 'ZB'] },
];

// ── codec ───────────────────────────────────────────────────────────────────────────────────────

describe('Contour ASTM frames (real bytes)', () => {
  itShared([HEADER, RESULT], 'the constructed golden capture is the two shared files byte for byte, then the constructed L frame', () => {
    const built = buildConstructedCapture([HEADER_FILE, RESULT_FILE]);
    expect(built.subarray(0, HEADER_FILE.length).equals(HEADER_FILE)).toBe(true);
    expect(built.subarray(HEADER_FILE.length, HEADER_FILE.length + RESULT_FILE.length).equals(RESULT_FILE)).toBe(true);
    expect(built.subarray(HEADER_FILE.length + RESULT_FILE.length).toString('latin1')).toBe('\x026L|1||N\r\x0385\r\n');
  });

  itShared([HEADER, RESULT], 'the header frame sums to D7 and the result frame to 74', () => {
    const h = HEADER_FILE.subarray(1, HEADER_FILE.length - 1); // without the EOT before and the ENQ after
    expect(astmChecksum(h.subarray(1, h.indexOf(0x17) + 1))).toBe(0xd7);
    expect(astmChecksum(RESULT_FILE.subarray(1, RESULT_FILE.indexOf(0x17) + 1))).toBe(0x74);
    const events = new AstmFrameReader().push(Buffer.concat([HEADER_FILE, RESULT_FILE]));
    expect(events.map((e) => (e.type === 'frame' ? `frame${e.number}` : e.type === 'control' ? e.name : e.type))).toEqual([
      'EOT',
      'frame1',
      'ENQ',
      'frame5',
    ]);
  });

  itShared([HEADER], 'reads serial, unit, LO/HI limits, record count and clock from the real H record', () => {
    const frame = new AstmFrameReader().push(HEADER_FILE).find((e) => e.type === 'frame') as Extract<AstmFrameEvent, { type: 'frame' }>;
    const msg = parseMessage(frame.text.toString('latin1'));
    const h = parseContourHeader(msg.header!.record);
    expect(h).toEqual({
      ok: true,
      header: {
        senderName: 'Bayer7390',
        modelCode: '7390',
        model: 'Contour USB',
        firmware: '01.24/01.04/09.02.20',
        serial: '7390-2336773',
        unit: 'mg/dL',
        limits: { lo: 10, hi: 600 },
        recordCount: 1714,
        clock: '2019-09-22T13:04:00',
      },
    });
  });

  it('refuses an H record that is not a Contour', () => {
    const msg = parseMessage('H|\\^&|||cobas c111^1.0^123|||||||P|1|20200101\r');
    expect(parseContourHeader(msg.header!.record)).toMatchObject({ ok: false, code: 'not-a-contour' });
  });
});

describe('Contour R records', () => {
  const result = (text: string): ReturnType<typeof parseContourResult> => {
    const msg = parseMessage(`${headerRecord()}\r${text}\r`);
    return parseContourResult(msg.records[1]!);
  };

  it('reads the real result: 93 mg/dL, plasma, after meal, unknown markers kept', () => {
    expect(result('R|3|^^^Glucose|93|mg/dL^P||A/M0/T1||201505261150')).toEqual({
      ok: true,
      reading: {
        seq: '3',
        time: '2015-05-26T11:50:00',
        value: 93,
        valueText: '93',
        unit: 'mg/dL',
        reference: 'P',
        markers: ['A', 'M0', 'T1'],
        control: false,
        lo: false,
        hi: false,
      },
    });
  });

  it('reads mmol/L decimals (the GGC record) and 14-digit times', () => {
    const r = result('R|5|^^^Glucose|7.9|mmol/L^P||B||201102241308');
    expect(r).toMatchObject({ ok: true, reading: { value: 7.9, unit: 'mmol/L', time: '2011-02-24T13:08:00' } });
    expect(result('R|5|^^^Glucose|7.9|mmol/L^P||B||20110224130859')).toMatchObject({ ok: true, reading: { time: '2011-02-24T13:08:59' } });
  });

  it('splits markers on / so that ZB is not B', () => {
    const text = `${headerRecord()}\rR|1|^^^Glucose|120|mg/dL^P||ZB||202501011200\rR|2|^^^Glucose|133|mg/dL^P||B/X||202501011300\rL|1||N\r`;
    const t = transferToDrafts(Buffer.from(text), 'd', 'UTC');
    expect(t.drafts.map((d) => d.flags)).toEqual([
      ['meal:minutes-after:165', 'reference:plasma'],
      ['meal:before', 'note:activity', 'reference:plasma'],
    ]);
  });

  it('refuses bad values, units and dates with a typed code, and skips logbook records', () => {
    expect(result('R|1|^^^Glucose|9x|mg/dL^P||||202501011200')).toMatchObject({ ok: false, code: 'bad-value' });
    expect(result('R|1|^^^Glucose|5.5|mg/dL^P||||202501011200')).toMatchObject({ ok: false, code: 'bad-value' });
    expect(result('R|1|^^^Glucose|99|g/L^P||||202501011200')).toMatchObject({ ok: false, code: 'unknown-unit' });
    expect(result('R|1|^^^Glucose|99|mg/dL^P||||202502301200')).toMatchObject({ ok: false, code: 'bad-date' });
    expect(result('R|1|^^^Glucose|99|mg/dL^P||</>||202501011200')).toMatchObject({ ok: false, code: 'bad-markers' });
    expect(result('R|1|^^^Carb|45|g^||||202501011200')).toEqual({ ok: false, skip: true, code: 'not-a-measurement' });
    expect(result('R|1|^^^Ketone|1.2|mmol/L^P||||202501011200')).toMatchObject({ ok: false, code: 'unknown-test' });
  });
});

describe('Contour transfer → drafts', () => {
  it('mmol/L meter: values in mmol/L, UCUM mmol/L, LOINC 14743-9; LO/HI are flags with the header limits', () => {
    const text = [
      headerRecord('mmol/L'),
      'P|1',
      'R|1|^^^Glucose|5.6|mmol/L^P||B||202501010730',
      'R|2|^^^Glucose|0.6|mmol/L^P||<||202501010800',
      'R|3|^^^Glucose|33.3|mmol/L^P||>/C||202501010900',
      'L|1||N',
    ].join('\r');
    const t = transferToDrafts(Buffer.from(`${text}\r`), 'd', 'Europe/Copenhagen');
    expect(t.fatal).toBeNull();
    const obs = t.drafts.map((d) => d.observations[0]!);
    expect(obs.map((o) => [o.value, o.unit, o.ucum, o.loinc])).toEqual([
      [5.6, 'mmol/L', 'mmol/L', '14743-9'],
      [null, 'mmol/L', 'mmol/L', '14743-9'],
      [null, 'mmol/L', 'mmol/L', '14743-9'],
    ]);
    expect(obs.map((o) => [o.flags, o.comparator, o.limit])).toEqual([
      [[], null, undefined],
      [['LO'], '<', 0.6],
      [['HI'], '>', 33.3],
    ]);
    expect(t.drafts.map((d) => d.category)).toEqual(['patient', 'patient', 'control']);
    expect(t.drafts[2]!.specimen.type).toBe('control solution');
  });

  it('mg/dL meter: LOINC 41653-7 and the mg/dL limits; no limit when the units disagree', () => {
    const text = [headerRecord('mg/dL'), 'R|1|^^^Glucose|600|mg/dL^P||>||202501010730', 'R|2|^^^Glucose|1.0|mmol/L^P||<||202501010731', 'L|1'].join('\r');
    const t = transferToDrafts(Buffer.from(`${text}\r`), 'd', 'UTC');
    expect(t.drafts.map((d) => [d.observations[0]!.loinc, d.observations[0]!.flags, d.observations[0]!.limit])).toEqual([
      ['41653-7', ['HI'], 600],
      ['14743-9', ['LO'], null],
    ]);
  });

  it('trusts nothing without the L record', () => {
    const text = [headerRecord(), 'R|1|^^^Glucose|100|mg/dL^P||||202501010730'].join('\r');
    const t = transferToDrafts(Buffer.from(`${text}\r`), 'd', 'UTC');
    expect(t.drafts).toEqual([]);
    expect(t.fatal?.code).toBe('no-L-record');
  });

  it('an unknown record type is a problem with its bytes, not a crash; the rest is kept', () => {
    const text = [headerRecord(), 'Y|1|something', 'R|1|^^^Glucose|100|mg/dL^P||||202501010730', 'L|1'].join('\r');
    const t = transferToDrafts(Buffer.from(`${text}\r`), 'd', 'UTC');
    expect(t.drafts).toHaveLength(1);
    expect(t.problems.map((p) => [p.code, p.bytes.toString()])).toEqual([['unknown-record', 'Y|1|something']]);
  });

  it('gives two identical readings in one minute two keys, and the same keys on every download', () => {
    const rec = 'R|1|^^^Glucose|140|mg/dL^P||A||202501010730';
    const text = (seqShift: number): string =>
      [headerRecord(), rec.replace('R|1', `R|${1 + seqShift}`), rec.replace('R|1', `R|${2 + seqShift}`), 'L|1'].join('\r') + '\r';
    const a = transferToDrafts(Buffer.from(text(0)), 'd', 'UTC').drafts.map(RECORD_KINDS.result.id);
    const b = transferToDrafts(Buffer.from(text(7)), 'd', 'UTC').drafts.map(RECORD_KINDS.result.id);
    expect(new Set(a).size).toBe(2);
    expect(b).toEqual(a); // the R sequence number is not part of the identity (note §7)
  });
});

describe('Contour HID reports', () => {
  it('encodes ABC + length + payload, and decodes ignoring the header', () => {
    expect(encodeReport(Buffer.from([0x06])).toString('hex')).toBe('4142430106');
    expect(decodeReport(Buffer.from('0000000306aabbcc', 'hex'))).toEqual({ ok: true, payload: Buffer.from([0x06, 0xaa, 0xbb]) });
    const padded = Buffer.concat([encodeReport(Buffer.from('hello')), Buffer.alloc(55)]);
    expect(padded.length).toBe(64);
    expect(trimReport(padded).toString('latin1')).toBe('ABC\x05hello');
    expect(() => encodeReport(Buffer.alloc(61))).toThrow(RangeError);
  });

  it('returns typed errors for short reports and impossible length bytes', () => {
    expect(decodeReport(Buffer.from('ABC'))).toMatchObject({ ok: false, code: 'short-report' });
    expect(decodeReport(Buffer.concat([Buffer.from('ABC'), Buffer.from([61]), Buffer.alloc(60)]))).toMatchObject({ ok: false, code: 'bad-length' });
    expect(decodeReport(Buffer.concat([Buffer.from('ABC'), Buffer.from([10]), Buffer.alloc(3)]))).toMatchObject({ ok: false, code: 'bad-length' });
  });

  const stream = transferBytes(
    contourTransferRecords({ serial: '7410-1112223', modelCode: '7410', firmware: '1.0', unit: 'mg/dL', clock: '2025-01-02T10:30:00', memory: MEMORY_MG }),
  );
  const frameEvents = (bytes: Buffer): AstmFrameEvent[] => new AstmFrameReader().push(bytes);

  it('reassembles frames across reports cut at any point (fast-check)', () => {
    const whole = frameEvents(stream);
    const wholeDrafts = decodeContour(raw(stream), CTX).drafts.result;
    expect(wholeDrafts).toHaveLength(MEMORY_MG.length);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: MAX_REPORT_PAYLOAD }), { minLength: 1, maxLength: 50 }), (sizes) => {
        let i = 0;
        const reports = encodeReports(stream, () => sizes[i++ % sizes.length]!).map((r) => Buffer.concat([r, Buffer.alloc(64 - r.length)]));
        const reader = new AstmFrameReader();
        const events: AstmFrameEvent[] = [];
        for (const r of reports) {
          const d = decodeReport(r);
          if (!d.ok) return false;
          events.push(...reader.push(d.payload));
        }
        expect(events).toEqual(whole);
        const transcript: Capture = { kind: 'transcript', exchanges: reports.map((bytes): Exchange => ({ dir: 'D', bytes: trimReport(bytes) })) };
        expect(decodeContour(transcript, CTX).drafts.result).toEqual(wholeDrafts);
        return true;
      }),
      { numRuns: 200 },
    );
  });

  it('decode: garbage between frames is an issue, the readings are unchanged', () => {
    const frames = stream.toString('latin1').split('\x02');
    const noisy = Buffer.from(frames.join('xx\x02'), 'latin1');
    const r = decodeContour(raw(noisy), CTX);
    expect(r.drafts.result).toEqual(decodeContour(raw(stream), CTX).drafts.result);
    expect(r.issues.filter((i) => i.reason === 'garbage').length).toBeGreaterThan(0);
  });

  it('decode: a corrupted frame followed by its resend gives every reading once', () => {
    const records = contourTransferRecords({ serial: '7410-1112223', modelCode: '7410', firmware: '1.0', unit: 'mg/dL', clock: '2025-01-02T10:30:00', memory: MEMORY_MG });
    const frames = records.map((r, i) => encodeFrame((i + 1) % 8, `${r}\r`, i === records.length - 1));
    const bad = Buffer.from(frames[3]!);
    bad[5] = bad[5]! ^ 0x01; // one bit in the text
    const bytes = Buffer.concat([Buffer.from([5]), ...frames.slice(0, 3), bad, ...frames.slice(3), Buffer.from([4])]);
    const r = decodeContour(raw(bytes), CTX);
    expect(r.drafts.result).toEqual(decodeContour(raw(stream), CTX).drafts.result);
    expect(r.issues.map((i) => i.reason)).toEqual(['bad-frame:checksum']);
  });

  it('decode: a transfer cut anywhere before its L frame gives no drafts (fast-check)', () => {
    const lastStx = stream.lastIndexOf(0x02);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: lastStx + 8 }), (cut) => {
        const r = decodeContour(raw(stream.subarray(0, cut)), CTX);
        expect(r.drafts.result).toEqual([]);
      }),
      { numRuns: 100 },
    );
  });

  it('decode: random bytes never throw and give no drafts (fast-check)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        expect(decodeContour(raw(Buffer.from(bytes)), CTX).drafts.result).toEqual([]);
      }),
    );
  });
});

// ── session ─────────────────────────────────────────────────────────────────────────────────────

const cleanups = useCleanups();

type Rig = SessionRig<ContourSimulator, DriverSession>;

/** Started, and plugged in unless `open` is false. */
function rig(sim: ContourSimulatorOptions = {}, options: Record<string, unknown> = {}, open = true): Promise<Rig> {
  return sessionRig({
    cable: 'contour',
    device: { id: 'bench2-contour', driver: 'contour-next', transport: { type: 'simulated' }, options: { reply_timeout_ms: 300, ...options } },
    simulator: new ContourSimulator({ timezone: CTX.timezone, seed: 7, memory: MEMORY_MG, ...sim }),
    createSession: (host) => contourNext.createSession(host),
    timezone: CTX.timezone,
    start: true,
    open,
    cleanups,
  });
}

const allDrafts = (host: FakeHost): ResultDraft[] => host.commits.flatMap((c) => c.drafts);

describe('Contour session', () => {
  it('downloads on plug-in: started, progress, finished; control, HI/LO and meal flags; ACKs the L frame only after the commit', async () => {
    const r = await rig({ random_cuts: true });
    let ackedBeforeCommitEnd: number | null = null;
    const commit = r.host.commit.bind(r.host);
    r.host.commit = async (drafts, capture) => {
      const out = await commit(drafts, capture);
      await sleep(50); // a slow disk: the meter must still be waiting for the last ACK
      ackedBeforeCommitEnd = r.sim.transfers;
      return out;
    };
    await r.host.until(() => r.host.types().includes('download_finished'));
    await r.host.until(() => r.sim.transfers === 1);
    expect(ackedBeforeCommitEnd).toBe(0);
    expect(r.host.types()).toEqual(['download_started', 'download_progress', 'download_finished']);
    expect(r.host.events[1]).toMatchObject({ message: '5 of 5 records', data: { received: 5, total: 5 } });
    const drafts = allDrafts(r.host);
    expect(drafts.map((d) => [d.category, d.observations[0]!.value, d.observations[0]!.flags, d.observations[0]!.limit ?? null])).toEqual([
      ['patient', 96, [], null],
      ['control', 118, [], null],
      ['patient', null, ['HI'], 600],
      ['patient', null, ['LO'], 10],
      ['patient', 101, [], null],
    ]);
    expect(drafts[0]!.flags).toContain('meal:before');
    expect(drafts[4]!.flags).toEqual(['meal:fasting', 'meal:minutes-after:165', 'reference:plasma']);
    expect(r.host.state).toMatchObject({ status: 'ok', serial: '7410-1234567', model: 'Contour Next USB', meter: { display_unit: 'mg/dL', record_count: 5 } });
    // The committed capture decodes to the same drafts (rule 4: re-decodable).
    expect(decodeContour(r.host.commits[0]!.capture, { deviceId: 'bench2-contour', timezone: r.host.timezone }).drafts.result).toEqual(drafts);
  });

  it('NAKs a frame with a bad checksum, takes the resent one and stores everything once', async () => {
    const r = await rig({ corrupt_next: 2 });
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(r.sim.received.filter((x) => x === 'NAK')).toHaveLength(2);
    expect(r.host.quarantined.map((q) => q.reason)).toEqual(['bad-frame:checksum', 'bad-frame:checksum']);
    expect(r.host.events.filter((e) => e.type === 'bad_frame').map((e) => e.data?.reason)).toEqual(['bad-frame:checksum', 'bad-frame:checksum']);
    expect(allDrafts(r.host)).toHaveLength(5);
  });

  it('gives up after too many bad frames in a row, storing nothing', async () => {
    const r = await rig({ corrupt_next: 50 }, { max_naks: 3 });
    await r.host.until(() => r.host.types().includes('download_failed'));
    expect(r.host.commits).toEqual([]);
    expect(r.host.events.at(-1)!.data).toEqual({ reason: 'too-many-naks' });
  });

  it('garbage between frames is quarantined and the transfer still completes', async () => {
    const r = await rig();
    const origin = r.host.event.bind(r.host);
    r.host.event = (type, message, data) => {
      origin(type, message, data);
      if (type === 'download_started') void r.deviceEnd.write(Buffer.concat([encodeReport(Buffer.from('~~noise~~')), Buffer.alloc(51)]));
    };
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(r.host.quarantined.length).toBeGreaterThan(0);
    expect(allDrafts(r.host)).toHaveLength(5);
  });

  it('a meter that stops before the L record: download_failed, nothing committed', async () => {
    const r = await rig({ stop_after_frames: 4 });
    await r.host.until(() => r.host.types().includes('download_failed'));
    expect(r.host.commits).toEqual([]);
    expect(r.host.events.at(-1)!.data).toEqual({ reason: 'timeout' });
    expect(r.host.state.status).toBe('error');
  });

  it('unplugged mid-transfer: download_failed, nothing committed; the next plug-in downloads everything', async () => {
    const r = await rig({}, {}, false);
    let frames = 0;
    r.hostEnd.on('data', (rep: Buffer) => {
      if (rep.includes(0x02) && ++frames === 3) void r.hostEnd.close();
    });
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_failed'));
    expect(r.host.events.at(-1)!.data).toEqual({ reason: 'link-closed' });
    expect(r.host.commits).toEqual([]);
    r.sim.attach(r.deviceEnd); // plugged in again: the meter is in data-transfer mode once more
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(allDrafts(r.host)).toHaveLength(5);
  });

  it('an unknown record type is quarantined with a bad_frame event; the readings are stored', async () => {
    const r = await rig({ extra_records: ['Y|1|vendor'] });
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(r.host.quarantined.map((q) => [q.reason, q.bytes.toString()])).toEqual([['unknown-record', 'Y|1|vendor']]);
    expect(r.host.events.find((e) => e.type === 'download_finished')!.data).toMatchObject({ records: 5, unreadable: 1 });
    // The event says why, never the record text.
    expect(JSON.stringify(r.host.events)).not.toContain('vendor');
  });

  it('mmol/L meter: values, units and LOINC in mmol/L', async () => {
    const r = await rig({
      unit: 'mmol/L',
      memory: [
        { time: '2025-01-01T07:30', value: 5.4, markers: ['B'] },
        { time: '2025-01-01T08:30', value: 0, lo: true },
      ],
    });
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(allDrafts(r.host).map((d) => d.observations[0]!)).toEqual([
      { code: 'GLU', name: 'Glucose', loinc: '14743-9', value: 5.4, unit: 'mmol/L', ucum: 'mmol/L', flags: [], text: null, comparator: null },
      { code: 'GLU', name: 'Glucose', loinc: '14743-9', value: null, unit: 'mmol/L', ucum: 'mmol/L', flags: ['LO'], text: null, comparator: '<', limit: 0.6 },
    ]);
    expect(r.host.state.meter?.display_unit).toBe('mmol/L');
  });

  it('repeated downloads give the same ids and store nothing twice', async () => {
    const r = await rig();
    await r.host.until(() => r.host.commits.length === 1);
    const second = (await r.session.command('download', {})) as { inserted: number; duplicates: number };
    expect(second).toMatchObject({ inserted: 0, duplicates: 5 });
    expect(r.host.commits[1]!.drafts.map(RECORD_KINDS.result.id)).toEqual(r.host.commits[0]!.drafts.map(RECORD_KINDS.result.id));
    expect(r.host.stored.size).toBe(5);
  });

  it('a meter not in data-transfer mode: no-answer status and event, nothing committed', async () => {
    const r = await rig({ off: true });
    await r.host.until(() => r.host.types().includes('no_answer'));
    expect(r.host.state.status).toBe('no-answer');
    expect(r.host.commits).toEqual([]);
  });

  it('one transfer per plug-in: a second download gets no ENQ and says to re-plug', async () => {
    const r = await rig({ once_per_plug: true });
    await r.host.until(() => r.host.commits.length === 1);
    await expect(r.session.command('download', {})).rejects.toThrow(/not in data-transfer mode/);
    expect(r.host.state.status).toBe('no-answer');
  });

  it('flags a meter clock more than 15 minutes off', async () => {
    const r = await rig({ clock_offset_s: 3600 });
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(r.host.types()).toContain('clock_skew');
    expect(r.host.state.clock_skew_flagged).toBe(true);
    expect(Math.abs(r.host.state.clock_skew_s! - 3600)).toBeLessThanOrEqual(60);
  });

  it('clock/sync sets the meter clock in command mode after a transfer', async () => {
    const r = await rig({ clock_offset_s: -7200, once_per_plug: true });
    await r.host.until(() => r.host.commits.length === 1);
    const res = (await r.session.command('clock/sync', {})) as { clock_skew_s: number; previous_skew_s: number };
    expect(Math.abs(res.previous_skew_s + 7200)).toBeLessThanOrEqual(60);
    expect(Math.abs(res.clock_skew_s)).toBeLessThanOrEqual(60);
    expect(Math.abs(r.sim.deviceClock.offsetS)).toBeLessThanOrEqual(60);
    expect(r.sim.received).toEqual(expect.arrayContaining(['W|', 'D|', 'T|']));
    expect(r.host.types()).toContain('clock_set');
  });

  it('clock/sync fails with clock-not-set when the meter NAKs the date write; the clock is not reported as set', async () => {
    const r = await rig({ clock_offset_s: -7200, once_per_plug: true, refuse_clock_set: true });
    await r.host.until(() => r.host.commits.length === 1);
    await expect(r.session.command('clock/sync', {})).rejects.toThrow(/the meter did not accept the date \(NAK\)/);
    expect(r.sim.received).toEqual(expect.arrayContaining(['W|', 'D|']));
    expect(r.sim.received).not.toContain('T|');
    expect(r.host.events.at(-1)).toMatchObject({ type: 'device_error', data: { reason: 'clock-not-set' } });
    expect(r.host.types()).not.toContain('clock_set');
    expect(r.host.state.clock_skew_flagged).toBe(true);
    expect(Math.abs(r.sim.deviceClock.offsetS + 7200)).toBeLessThanOrEqual(1);
  });

  it('a Contour Next Link that NAKs the date write is reported as taking its clock from the pump', async () => {
    const r = await rig({ model_code: '6200', once_per_plug: true, refuse_clock_set: true });
    await r.host.until(() => r.host.commits.length === 1);
    await expect(r.session.command('clock/sync', {})).rejects.toThrow(/takes its clock from the pump/);
    expect(r.host.events.at(-1)).toMatchObject({ type: 'device_error', data: { reason: 'clock-set-by-pump' } });
    expect(r.host.types()).not.toContain('clock_set');
  });

  it('rejects unknown commands with a clear error', async () => {
    const r = await rig({ off: true });
    await expect(r.session.command('print', {})).rejects.toThrow(/unknown command "print"/);
  });
});

/**
 * A meter that sends the given frames one after another, each after the host's answer to the one
 * before (ACK or NAK alike), then EOT: it shows what the host answered to each frame.
 */
class ScriptedContour implements DeviceSimulator {
  /** The host's answer to each frame, in order. */
  readonly answers: ('ACK' | 'NAK')[] = [];
  /** Every byte the meter sent, as one stream (a raw capture of the transfer). */
  readonly sent: Buffer[] = [];
  private transport: ByteTransport | null = null;
  private nextFrame = 0;
  private bid = false;
  private writes: Promise<void> = Promise.resolve();

  constructor(private readonly frames: Buffer[]) {}

  attach(transport: ByteTransport): void {
    this.transport = transport;
    transport.on('data', this.onReport);
  }

  detach(): void {
    this.transport?.off('data', this.onReport);
    this.transport = null;
  }

  private readonly onReport = (report: Buffer): void => {
    const r = decodeReport(report);
    if (r.ok) for (const b of r.payload) this.onByte(b);
  };

  private onByte(b: number): void {
    if (b === 0x04 && !this.bid && this.nextFrame === 0) {
      this.bid = true;
      this.send(Buffer.from([0x05]));
      return;
    }
    if (b !== 0x06 && b !== 0x15) return;
    if (this.nextFrame > 0) this.answers.push(b === 0x06 ? 'ACK' : 'NAK');
    if (this.nextFrame < this.frames.length) this.send(this.frames[this.nextFrame++]!);
    else if (this.nextFrame++ === this.frames.length) this.send(Buffer.from([0x04]));
  }

  private send(bytes: Buffer): void {
    const transport = this.transport;
    if (!transport) return;
    this.sent.push(bytes);
    const reports = encodeReports(bytes).map((r) => Buffer.concat([r, Buffer.alloc(64 - r.length)]));
    this.writes = this.writes.then(async () => {
      for (const report of reports) await transport.write(report);
    });
  }
}

describe('Contour session on the shared ASTM link: frame sequence', () => {
  const records = [
    headerRecord(),
    'P|1',
    'R|1|^^^Glucose|96|mg/dL^P||B||202501010730',
    'R|2|^^^Glucose|118|mg/dL^P||||202501010802',
    'R|3|^^^Glucose|101|mg/dL^P||F||202501020705',
    'L|1||N',
  ];
  const frame = (n: number): Buffer => encodeFrame(n % 8, `${records[n - 1]}\r`, n === records.length);

  async function scriptedRig(frames: Buffer[]): Promise<SessionRig<ScriptedContour, DriverSession>> {
    return sessionRig({
      cable: 'contour',
      device: { id: 'bench2-contour', driver: 'contour-next', transport: { type: 'simulated' }, options: { reply_timeout_ms: 300 } },
      simulator: new ScriptedContour(frames),
      createSession: (host) => contourNext.createSession(host),
      timezone: CTX.timezone,
      start: true,
      cleanups,
    });
  }

  it('NAKs a frame after a gap in the numbers, and every later one; stores nothing of that transfer, and a replay says the same', async () => {
    // Frame 4 never comes: frames 5 and 6 complete the transfer's records only with a hole in it.
    const r = await scriptedRig([frame(1), frame(2), frame(3), frame(5), frame(6)]);
    await r.host.until(() => r.host.types().includes('download_failed'));
    expect(r.sim.answers).toEqual(['ACK', 'ACK', 'ACK', 'NAK', 'NAK']);
    expect(r.host.commits).toEqual([]);
    expect(r.host.quarantined.map((q) => q.reason)).toEqual(['frame-number', 'frame-number']);
    expect(r.host.events.at(-1)).toMatchObject({ type: 'download_failed', data: { reason: 'incomplete-transfer' } });
    // The replay of the bytes the meter sent: no record, and the same problems in the same order.
    const replay = decodeContour(raw(Buffer.concat(r.sim.sent)), CTX);
    expect(replay.drafts.result).toEqual([]);
    expect(replay.issues.map((i) => i.reason)).toEqual(['frame-number', 'frame-number', 'incomplete-transfer']);
  });

  it('takes the transfer once the meter sends the missing frame after the NAK, and stores it whole', async () => {
    const r = await scriptedRig([frame(1), frame(2), frame(4), frame(3), frame(4), frame(5), frame(6)]);
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(r.sim.answers).toEqual(['ACK', 'ACK', 'NAK', 'ACK', 'ACK', 'ACK', 'ACK']);
    expect(allDrafts(r.host).map((d) => d.observations[0]!.value)).toEqual([96, 118, 101]);
    expect(r.host.quarantined.map((q) => q.reason)).toEqual(['frame-number']);
    expect(decodeContour(raw(Buffer.concat(r.sim.sent)), CTX).drafts.result).toEqual(allDrafts(r.host));
  });
});

describe('Contour simulator options', () => {
  it('refuse_clock_set takes true or false only', () => {
    expect(parseContourSimulatorOptions({ refuse_clock_set: true })).toEqual({ refuse_clock_set: true });
    expect(() => parseContourSimulatorOptions({ refuse_clock_set: 'yes' })).toThrow(/refuse_clock_set/);
  });

  it('checks untyped options', () => {
    expect(parseContourSimulatorOptions({ unit: 'mmol/L', serial: '7410-1', memory: [{ time: '2025-01-01T10:00', value: 5.5, markers: ['B'] }] })).toMatchObject({
      unit: 'mmol/L',
    });
    expect(() => parseContourSimulatorOptions({ unit: 'g/L' })).toThrow(/unit/);
    expect(() => parseContourSimulatorOptions({ bogus: 1 })).toThrow(/unknown option bogus/);
    expect(() => parseContourSimulatorOptions({ memory: [{ time: 'yesterday', value: 1 }] })).toThrow(/memory\[0\]\.time/);
    expect(() => parseContourSimulatorOptions({ extra_records: ['Q|1', 'a\nb'] })).toThrow('contour-next simulator: option extra_records[1] must be a one-line string');
  });
});
