import { describe, expect, it } from 'vitest';
import { createSimulator, type Capture } from '../../src/driver-sdk/index.ts';
import { captureFromBytes, parseTranscript } from '../../src/driver-sdk/capture.ts';
import { RECORD_KINDS } from '../../src/records/kinds.ts';
import { memoryPair } from '../../src/transports/memory.ts';
import { clockSkewSeconds } from '../../src/util/time.ts';
import { encodeFrame } from '../../drivers/glucose/lifescan-binary/codec.ts';
import type { LifeScanSimulator, SimulatedReading } from '../../drivers/glucose/lifescan-binary/simulator.ts';
import { ultraEasyDialect } from '../../drivers/glucose/onetouch-ultraeasy/codec.ts';
import { onetouchUltraEasy } from '../../drivers/glucose/onetouch-ultraeasy/definition.ts';
import { decodeUltraEasy } from '../../drivers/glucose/onetouch-ultraeasy/records.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { FakeHost } from '../helpers/fake-host.ts';
import { driverRig } from '../helpers/session-rig.ts';

import { itShared, sharedFixture } from '../helpers/shared-fixtures.ts';

const ZONE = 'Europe/Copenhagen';
const CTX = { deviceId: 'bench1-ultraeasy', timezone: 'Europe/London' };
const OTDMS = sharedFixture('glucose/onetouch-ultraeasy-session.txt');
const REAL_TEXT = OTDMS.bytesOrEmpty();
const REAL = parseTranscript(REAL_TEXT.toString('latin1'));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ── decode ──────────────────────────────────────────────────────────────────────────────────────

describe('decode', () => {
  itShared([OTDMS], 'decodes the real session: serial CGWA1E5CR, mmol/L display, 3 readings in mg/dL, oldest first', () => {
    const r = decodeUltraEasy(captureFromBytes(REAL_TEXT), CTX);
    expect(r.issues).toEqual([]);
    expect(r.device).toEqual({ serial: 'CGWA1E5CR', firmware: 'P02.00.00', display_unit: 'mmol/L', record_count: 3 });
    expect(r.drafts.result!.map((d) => [d.device_time, d.observations[0]!.value, d.observations[0]!.unit, d.category])).toEqual([
      ['2011-09-03T12:07:07', 172, 'mg/dL', 'patient'],
      ['2011-09-05T06:48:05', 80, 'mg/dL', 'patient'],
      ['2011-09-05T13:41:41', 196, 'mg/dL', 'patient'],
    ]);
    expect(r.drafts.result![2]!.observed_at).toBe('2011-09-05T13:41:41+01:00');
    expect(r.drafts.result![2]!.key).toBe('2011-09-05T13:41:41|196|P');
    expect(r.drafts.result![2]!.device).toEqual({
      id: 'bench1-ultraeasy',
      driver: 'onetouch-ultraeasy',
      manufacturer: 'LifeScan',
      model: 'OneTouch UltraEasy',
      serial: 'CGWA1E5CR',
      firmware: 'P02.00.00',
    });
  });

  itShared([OTDMS], 'a raw capture of device bytes alone is refused with a reason (replies need their requests)', () => {
    const device = Buffer.concat(REAL.filter((e) => e.dir === 'D').map((e) => e.bytes));
    const r = decodeUltraEasy({ kind: 'raw', bytes: device }, CTX);
    expect(r.drafts.result).toEqual([]);
    expect(r.issues.map((i) => i.reason)).toEqual(['needs-transcript']);
  });

  itShared([OTDMS], 'reports a session that stopped before the last record, and returns the records it has', () => {
    const cut: Capture = { kind: 'transcript', exchanges: REAL.slice(0, REAL.length - 1) };
    const r = decodeUltraEasy(cut, CTX);
    expect(r.drafts.result).toHaveLength(2);
    expect(r.issues.map((i) => i.reason)).toEqual(['incomplete-download']);
  });

  it('HI and LO codes are flags with the meter limit, never 65535 or 65534 mg/dL', () => {
    const t = (s: number): number => Date.UTC(2024, 4, 1, s) / 1000;
    const record = (n: number, seconds: number, glucose: number): Buffer =>
      encodeFrame(Buffer.concat([Buffer.from([5, 6]), u32(seconds), u32(glucose)]), n);
    const capture: Capture = {
      kind: 'transcript',
      exchanges: [
        { dir: 'H', bytes: encodeFrame(ultraEasyDialect.request({ type: 'record', index: 0 }), 0) },
        { dir: 'D', bytes: record(0x02, t(9), 0xffff) },
        { dir: 'H', bytes: encodeFrame(ultraEasyDialect.request({ type: 'record', index: 1 }), 3) },
        { dir: 'D', bytes: record(0x01, t(8), 0xfffe) },
        { dir: 'H', bytes: encodeFrame(ultraEasyDialect.request({ type: 'record', index: 2 }), 0) },
        { dir: 'D', bytes: record(0x02, t(7), 0x1_0000) },
      ],
    };
    const r = decodeUltraEasy(capture, CTX);
    expect(r.drafts.result!.map((d) => d.observations[0])).toEqual([
      { code: 'GLU', name: 'Glucose', loinc: '41653-7', value: null, unit: 'mg/dL', ucum: 'mg/dL', flags: ['LO'], text: null, comparator: '<', limit: 20 },
      { code: 'GLU', name: 'Glucose', loinc: '41653-7', value: null, unit: 'mg/dL', ucum: 'mg/dL', flags: ['HI'], text: null, comparator: '>', limit: 600 },
    ]);
    expect(r.drafts.result!.map((d) => d.key)).toEqual(['2024-05-01T08:00:00|LO|P', '2024-05-01T09:00:00|HI|P']);
    // A value the meter cannot have sent as a reading is an issue, not a record.
    expect(r.issues.map((i) => i.reason)).toEqual(['invalid-value']);
  });

  it('gives zero records for bytes that are not an UltraEasy session', () => {
    const verio: Capture = {
      kind: 'transcript',
      exchanges: [
        { dir: 'H', bytes: encodeFrame(Buffer.from([3, 0x21, 0, 0])) },
        { dir: 'D', bytes: encodeFrame(Buffer.from([3, 6, 1, 2, 3, 4, 100, 0, 0, 0, 0, 0])) },
      ],
    };
    for (const c of [verio, captureFromBytes(Buffer.from('H 110d444d500d\nD 5020303033\n')), captureFromBytes(Buffer.from([0x02, 0x31, 0x48]))]) {
      expect(decodeUltraEasy(c, CTX).drafts.result).toEqual([]);
    }
  });
});

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

// ── session ─────────────────────────────────────────────────────────────────────────────────────

const cleanups = useCleanups();

const MEMORY: SimulatedReading[] = [
  { time: '2024-05-01T07:30:00', value: 96 },
  { time: '2024-05-01T08:10:00', value: 'HI' },
  { time: '2024-05-01T13:00:00', value: 154 },
  { time: '2024-05-01T22:05:00', value: 'LO' },
];

const rig = driverRig<LifeScanSimulator>(
  onetouchUltraEasy,
  { cable: 'ultraeasy', deviceId: 'bench1-ultraeasy', options: { reply_timeout_ms: 150 }, simulator: { memory: MEMORY, timezone: ZONE, seed: 1, max_chunk: 7 }, timezone: ZONE, chunkSize: 5 },
  cleanups,
);

const CYCLE = ['version', 'serial', 'read-clock', 'unit', 'count', 'record', 'record', 'record', 'record'];

describe('session', () => {
  it('downloads on connect: link reset, handshake, all records, one commit, progress n of m', async () => {
    const r = await rig({ unit: 'mmol/L', serial: 'CGWA1E5CR' }, {}, { open: false });
    await r.session.start();
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(r.sim.received).toEqual(CYCLE);
    expect(r.sim.resets).toBe(1);
    expect(r.host.commits).toHaveLength(1);
    const { drafts, capture } = r.host.commits[0]!;
    expect(drafts.map((d) => d.key)).toEqual([
      '2024-05-01T07:30:00|96|P',
      '2024-05-01T08:10:00|HI|P',
      '2024-05-01T13:00:00|154|P',
      '2024-05-01T22:05:00|LO|P',
    ]);
    expect(drafts[1]!.observations[0]).toMatchObject({ value: null, flags: ['HI'], comparator: '>', limit: 600, unit: 'mg/dL' });
    expect(drafts[3]!.observations[0]).toMatchObject({ value: null, flags: ['LO'], comparator: '<', limit: 20, unit: 'mg/dL' });
    // Values stay mg/dL; the mmol/L display unit is on the device state only.
    expect(drafts[0]!.observations[0]).toMatchObject({ value: 96, unit: 'mg/dL', ucum: 'mg/dL' });
    expect(r.host.state).toMatchObject({ status: 'ok', serial: 'CGWA1E5CR', firmware: 'P02.00.00', meter: { display_unit: 'mmol/L', record_count: 4 }, model: 'OneTouch UltraEasy' });
    expect(r.host.state.clock_skew_flagged).toBe(false);
    expect(r.host.types()).toEqual(['download_started', 'download_progress', 'download_finished']);
    expect(r.host.events[1]).toMatchObject({ message: '4 of 4 records', data: { received: 4, total: 4 } });
    expect(r.host.events.at(-1)!.data).toEqual({ records: 4, inserted: 4, duplicates: 0 });
    // The stored transcript decodes to exactly what was committed.
    expect(decodeUltraEasy(capture, { deviceId: 'bench1-ultraeasy', timezone: ZONE }).drafts.result).toEqual(drafts);
  });

  itShared([OTDMS], 'speaks the link layer byte for byte like the real capture (reset, version, serial)', async () => {
    const r = await rig({ serial: 'CGWA1E5CR', firmware: 'P02.00.0025/05/07' });
    await r.session.start();
    await r.host.until(() => r.host.commits.length === 1);
    const sent = r.host.commits[0]!.capture;
    if (sent.kind !== 'transcript') throw new Error('no transcript');
    const hostFrames = sent.exchanges.filter((e) => e.dir === 'H').map((e) => e.bytes.toString('hex'));
    const realHost = REAL.filter((e) => e.dir === 'H').map((e) => e.bytes.toString('hex'));
    expect(hostFrames.slice(0, 5)).toEqual(realHost.slice(0, 5));
    // The simulator's replies to them are the real meter's bytes too.
    const meterBytes = Buffer.concat(sent.exchanges.filter((e) => e.dir === 'D').map((e) => e.bytes)).toString('hex');
    const realMeter = REAL.filter((e) => e.dir === 'D').slice(0, 5).map((e) => e.bytes.toString('hex')).join('');
    expect(meterBytes.startsWith(realMeter)).toBe(true);
  });

  it('repeated downloads give the same ids and store nothing twice', async () => {
    const r = await rig();
    await r.session.start();
    await r.host.until(() => r.host.commits.length === 1);
    expect(await r.session.command('download', {})).toEqual({ inserted: 0, duplicates: 4, records: 4 });
    r.sim.memory.push({ time: '2024-05-02T07:00:00', value: 111 });
    expect(await r.session.command('download', {})).toEqual({ inserted: 1, duplicates: 4, records: 5 });
    const ids = r.host.commits.map((c) => c.drafts.map(RECORD_KINDS.result.id));
    expect(ids[1]).toEqual(ids[0]);
    expect(ids[2]!.slice(0, 4)).toEqual(ids[0]);
    expect(r.host.stored.size).toBe(5);
  });

  it('a bad CRC is quarantined and reported without its bytes, the link is reset and the command asked again', async () => {
    const r = await rig({}, {}, { open: false });
    await r.session.start();
    // Frames from the meter: DISC|ACK, then an ACK and a reply per command; frame 14 is the reply to record 1.
    r.sim.corruptFrame(1 + 2 * 6 + 1);
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(r.sim.received).toEqual([...CYCLE.slice(0, 7), 'record', ...CYCLE.slice(7)]);
    expect(r.sim.resets).toBe(2);
    expect(r.host.quarantined.map((q) => q.reason)).toEqual(['bad-crc']);
    const bad = r.host.events.find((e) => e.type === 'bad_frame')!;
    expect(bad.data).toMatchObject({ reason: 'bad-crc' });
    expect(JSON.stringify(bad)).not.toContain(r.host.quarantined[0]!.bytes.toString('hex'));
    expect(r.host.commits).toHaveLength(1);
    expect(r.host.commits[0]!.drafts).toHaveLength(4);
    // The transcript with the damaged frame and the retry still decodes to the same records.
    const d = decodeUltraEasy(r.host.commits[0]!.capture, { deviceId: 'bench1-ultraeasy', timezone: ZONE });
    expect(d.drafts.result).toEqual(r.host.commits[0]!.drafts);
    expect(d.issues.map((i) => i.reason)).toEqual(['bad-crc']);
  });

  it('a meter that keeps sending bad frames fails the download after the retries, nothing committed', async () => {
    const r = await rig({}, { options: { reply_timeout_ms: 150, retries: 1 } }, { open: false });
    await r.session.start();
    r.sim.corruptFrame(1 + 2 * 4 + 1); // the count reply
    r.sim.corruptFrame(1 + 2 * 4 + 2 + 1 + 1); // after the reset, its repeat
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_failed'));
    expect(r.host.events.at(-1)!.data).toEqual({ reason: 'bad-crc' });
    expect(r.host.state.status).toBe('error');
    expect(r.host.commits).toHaveLength(0);
    // The next download starts clean and succeeds.
    expect(await r.session.command('download', {})).toEqual({ inserted: 4, duplicates: 0, records: 4 });
  });

  it('a meter that is off: no_answer once, status no-answer, nothing committed', async () => {
    const r = await rig({ off: true });
    await r.session.start();
    await r.host.until(() => r.host.state.status === 'no-answer', 3000);
    expect(r.host.types()).toEqual(['no_answer']);
    await expect(r.session.command('download', {})).rejects.toThrow(/no answer/);
    expect(r.host.types()).toEqual(['no_answer']);
    expect(r.host.commits).toHaveLength(0);
  });

  it('a meter that stops answering mid-download: download_failed + no_answer, nothing committed; the next download resumes cleanly', async () => {
    const r = await rig({}, {}, { open: false });
    await r.session.start();
    const original = r.sim.received.push.bind(r.sim.received);
    // The meter goes silent when asked for record 2.
    r.sim.received.push = (...items) => {
      const n = original(...items);
      if (r.sim.received.filter((x) => x === 'record').length === 3) r.sim.off = true;
      return n;
    };
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_failed'), 5000);
    // The shared SessionReporter announces no_answer first, then ends the started download.
    expect(r.host.types()).toEqual(['download_started', 'no_answer', 'download_failed']);
    expect(r.host.events[2]!.data).toEqual({ reason: 'no-answer' });
    expect(r.host.commits).toHaveLength(0);
    expect(r.host.state.status).toBe('no-answer');
    r.sim.off = false;
    r.sim.received.push = original;
    expect(await r.session.command('download', {})).toEqual({ inserted: 4, duplicates: 0, records: 4 });
    expect(r.host.state.status).toBe('ok');
  });

  it('unplugged during the download: download_failed (link-closed), nothing committed; re-plug downloads again', async () => {
    const r = await rig({ frame_delay_ms: 15 }, {}, { open: false });
    await r.session.start();
    await r.hostEnd.open();
    await r.host.until(() => r.sim.received.includes('count'));
    await r.hostEnd.close();
    await r.host.until(() => r.host.types().includes('download_failed'));
    expect(r.host.events.find((e) => e.type === 'download_failed')!.data).toEqual({ reason: 'link-closed' });
    expect(r.host.commits).toHaveLength(0);
    await sleep(50);
    await r.hostEnd.open();
    await r.host.until(() => r.host.commits.length === 1, 5000);
    expect(r.host.commits[0]!.drafts).toHaveLength(4);
  });

  it('flags a meter clock more than 15 minutes off, once; clock/sync sets it and the flag clears', async () => {
    const r = await rig({ clock_offset_s: -7200 });
    await r.session.start();
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(r.host.state.clock_skew_flagged).toBe(true);
    expect(r.host.state.clock_skew_s).toBeGreaterThanOrEqual(-7202);
    expect(r.host.state.clock_skew_s).toBeLessThanOrEqual(-7198);
    await r.session.command('download', {});
    expect(r.host.types().filter((t) => t === 'clock_skew')).toHaveLength(1);
    const result = (await r.session.command('clock/sync', {})) as { clock: string; clock_skew_s: number; previous_skew_s: number };
    expect(Math.abs(result.clock_skew_s)).toBeLessThanOrEqual(2);
    expect(result.previous_skew_s).toBeLessThanOrEqual(-7198);
    expect(Math.abs(clockSkewSeconds(r.sim.clock(), ZONE))).toBeLessThanOrEqual(2);
    expect(r.sim.received.slice(-2)).toEqual(['write-clock', 'read-clock']);
    expect(r.host.state.clock_skew_flagged).toBe(false);
    expect(r.host.types().at(-1)).toBe('clock_set');
  });

  it('clock/sync fails with clock-not-set when the clock read back after the set is still off', async () => {
    const r = await rig({ clock_offset_s: -7200 });
    await r.session.start();
    await r.host.until(() => r.host.types().includes('download_finished'));
    r.sim.deviceClock.set = () => undefined; // a meter that acknowledges the set and keeps its clock
    await expect(r.session.command('clock/sync', {})).rejects.toThrow(/the meter clock reads -7\d{3} s off the host time after the set/);
    expect(r.sim.received.slice(-2)).toEqual(['write-clock', 'read-clock']);
    expect(r.host.events.at(-1)).toMatchObject({ type: 'device_error', data: { reason: 'clock-not-set' } });
    expect(r.host.types()).not.toContain('clock_set');
    expect(r.host.state.clock_skew_flagged).toBe(true);
  });

  it('awaits the commit before download_finished; a failing commit is a failed download', async () => {
    const r = await rig({}, {}, { open: false });
    r.host.commitDelayMs = 100;
    await r.session.start();
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(r.host.order.slice(r.host.order.indexOf('commit:start'))).toEqual(['commit:start', 'commit:end', 'download_finished']);
    r.host.commit = async () => {
      throw new Error('disk full');
    };
    await expect(r.session.command('download', {})).rejects.toThrow(/did not commit/);
    expect(r.host.events.at(-1)).toMatchObject({ type: 'download_failed', data: { reason: 'commit-failed' } });
  });

  it('polls every poll_interval seconds; one conversation at a time; status; unknown verbs; stop', async () => {
    const r = await rig({}, { poll_interval: 0.2 });
    await r.session.start();
    await r.host.until(() => r.host.commits.length >= 2, 5000);
    const [a, b] = await Promise.all([r.session.command('download', {}), r.session.command('download', {})]);
    expect(a).toEqual(b);
    expect(await r.session.command('status', {})).toMatchObject({ status: 'ok', meter: { record_count: 4 } });
    await expect(r.session.command('erase', {})).rejects.toThrow(/unknown command/);
    await r.teardown();
    const n = r.host.commits.length;
    await sleep(400);
    expect(r.host.commits.length).toBe(n);
    await expect(r.session.command('download', {})).rejects.toThrow(/stopped/);
  });

  it('refuses bad driver options and bad simulator options', async () => {
    const { host: t } = memoryPair();
    expect(() => onetouchUltraEasy.createSession(new FakeHost({ id: 'x', driver: 'onetouch-ultraeasy', transport: { type: 'simulated' }, options: { retries: -1 } }, t))).toThrow(/retries/);
    await expect(createSimulator(onetouchUltraEasy.simulator, { memory: [{ time: '2024-01-01T10:00:00', value: 99, control: true }] })).rejects.toThrow(/control/);
    await expect(createSimulator(onetouchUltraEasy.simulator, { serial: 'short' })).rejects.toThrow(/serial/);
    await expect(createSimulator(onetouchUltraEasy.simulator, { colour: 'red' })).rejects.toThrow(/unknown option colour/);
  });
});
