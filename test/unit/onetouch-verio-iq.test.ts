import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createSimulator, type Capture } from '../../src/driver-sdk/index.ts';
import { RECORD_KINDS } from '../../src/records/kinds.ts';
import { clockSkewSeconds } from '../../src/util/time.ts';
import { FrameReader, encodeFrame } from '../../drivers/glucose/lifescan-binary/codec.ts';
import type { LifeScanSimulator, SimulatedReading } from '../../drivers/glucose/lifescan-binary/simulator.ts';
import { VERIO_EPOCH_S, verioIqDialect } from '../../drivers/glucose/onetouch-verio-iq/codec.ts';
import { onetouchVerioIq } from '../../drivers/glucose/onetouch-verio-iq/definition.ts';
import { decodeVerioIq } from '../../drivers/glucose/onetouch-verio-iq/records.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { driverRig } from '../helpers/session-rig.ts';

const ZONE = 'Europe/Copenhagen';
const CTX = { deviceId: 'bench1-verio', timezone: ZONE };
const hex = (s: string): string => s.replace(/\s+/g, '');

describe('Verio IQ dialect', () => {
  it('sends the requests of the research note, in frames with link-control 0', () => {
    const f = (r: Parameters<typeof verioIqDialect.request>[0]): string => encodeFrame(verioIqDialect.request(r), 0).toString('hex');
    expect(f({ type: 'read-clock' })).toBe(hex('02 09 00 03 20 02 03 d4 92'));
    expect(f({ type: 'count' })).toBe(hex('02 09 00 03 27 00 03 26 71'));
    expect(f({ type: 'record', index: 0 })).toBe(hex('02 0a 00 03 21 00 00 03 9d d2'));
    expect(f({ type: 'unit' })).toBe(hex('02 0a 00 03 09 02 02 03 12 68'));
    expect(f({ type: 'serial' })).toBe(hex('02 0a 00 03 0b 01 02 03 2a dc'));
    expect(verioIqDialect.request({ type: 'version' }).toString('hex')).toBe('030d01');
    expect(verioIqDialect.request({ type: 'write-clock', seconds: 0x01020304 }).toString('hex')).toBe('03200104030201');
  });

  it("recognises Tidepool's 0x04-prefixed serial request", () => {
    expect(verioIqDialect.classify(Buffer.from('040b0002', 'hex'))).toEqual({ type: 'serial' });
    expect(verioIqDialect.classify(Buffer.from('050d02', 'hex'))).toBeNull();
  });

  it('reads a record: time since 2000-01-01, mg/dL, control byte, meal byte', () => {
    const msg = Buffer.from('0306' + '10000000' + '7800' + '01' + '02' + '0000', 'hex');
    const r = verioIqDialect.parseReply({ type: 'record', index: 0 }, msg);
    expect(r).toEqual({ ok: true, reply: { type: 'record', record: { seconds: 16, glucose: 120, control: true, meal: 'after' } } });
    const odd = verioIqDialect.parseReply({ type: 'record', index: 0 }, Buffer.from('0306' + '10000000' + '7800' + '07' + '00' + '0000', 'hex'));
    expect(odd.ok && odd.reply.type === 'record' && odd.reply.record.problem).toBe('unknown-control-code');
    expect(verioIqDialect.parseReply({ type: 'record', index: 0 }, Buffer.from('0315', 'hex'))).toMatchObject({ ok: false, code: 'error-status' });
    expect(verioIqDialect.parseReply({ type: 'unit' }, Buffer.from('030602000000', 'hex'))).toMatchObject({ ok: false, code: 'invalid-reply' });
    expect(verioIqDialect.parseReply({ type: 'serial' }, Buffer.from('0306414243313233343500', 'hex'))).toEqual({ ok: true, reply: { type: 'serial', serial: 'ABC12345' } });
  });

  it('values outside 20–600 mg/dL are HI/LO flags with the limit', () => {
    expect(verioIqDialect.glucose(601)).toEqual({ kind: 'HI', limit: 600 });
    expect(verioIqDialect.glucose(600)).toEqual({ kind: 'value', mgdl: 600 });
    expect(verioIqDialect.glucose(20)).toEqual({ kind: 'value', mgdl: 20 });
    expect(verioIqDialect.glucose(19)).toEqual({ kind: 'LO', limit: 20 });
  });
});

// ── session ─────────────────────────────────────────────────────────────────────────────────────

const cleanups = useCleanups();

const MEMORY: SimulatedReading[] = [
  { time: '2024-05-01T07:30:00', value: 96, meal: 'before' },
  { time: '2024-05-01T08:10:00', value: 118, control: true },
  { time: '2024-05-01T13:00:00', value: 700, meal: 'after' },
  { time: '2024-05-01T22:05:00', value: 15 },
];

const rig = driverRig<LifeScanSimulator>(
  onetouchVerioIq,
  { cable: 'verio', deviceId: 'bench1-verio', options: { reply_timeout_ms: 150 }, simulator: { memory: MEMORY, timezone: ZONE, seed: 4, max_chunk: 5 }, timezone: ZONE, chunkSize: 3 },
  cleanups,
);

describe('session', () => {
  it('downloads on connect: control is category control, HI/LO flags, mg/dL with the display unit separate', async () => {
    const r = await rig({ unit: 'mmol/L' });
    await r.session.start();
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(r.sim.received).toEqual(['version', 'serial', 'read-clock', 'unit', 'count', 'record', 'record', 'record', 'record']);
    expect(r.sim.resets).toBe(0);
    const { drafts, capture } = r.host.commits[0]!;
    expect(drafts.map((d) => [d.key, d.category, d.specimen.type, d.flags])).toEqual([
      ['2024-05-01T07:30:00|96|P', 'patient', 'capillary blood', ['meal:before']],
      ['2024-05-01T08:10:00|118|C', 'control', 'control solution', []],
      ['2024-05-01T13:00:00|HI|P', 'patient', 'capillary blood', ['meal:after']],
      ['2024-05-01T22:05:00|LO|P', 'patient', 'capillary blood', []],
    ]);
    expect(drafts[2]!.observations[0]).toMatchObject({ value: null, unit: 'mg/dL', flags: ['HI'], comparator: '>', limit: 600 });
    expect(drafts[3]!.observations[0]).toMatchObject({ value: null, unit: 'mg/dL', flags: ['LO'], comparator: '<', limit: 20 });
    expect(drafts[0]!.observations[0]).toMatchObject({ value: 96, unit: 'mg/dL', ucum: 'mg/dL' });
    expect(r.host.state).toMatchObject({ status: 'ok', serial: 'VIQSIM0001', meter: { display_unit: 'mmol/L', record_count: 4 }, model: 'OneTouch Verio IQ' });
    expect(decodeVerioIq(capture, CTX).drafts.result).toEqual(drafts);
    // Every frame either side sent has link-control 0.
    if (capture.kind !== 'transcript') throw new Error('no transcript');
    for (const dir of ['H', 'D'] as const) {
      const reader = new FrameReader();
      const items = capture.exchanges.filter((e) => e.dir === dir).flatMap((e) => reader.push(e.bytes));
      expect(items.every((i) => i.kind === 'frame' && i.frame.linkControl === 0)).toBe(true);
    }
  });

  it('the clock counts from 2000-01-01: the simulator clock is read without skew', async () => {
    const r = await rig();
    await r.session.start();
    await r.host.until(() => r.host.commits.length === 1);
    expect(Math.abs(r.host.state.clock_skew_s!)).toBeLessThanOrEqual(2);
    const secs = r.sim.view().clockSeconds;
    expect(Math.abs(secs + VERIO_EPOCH_S - Date.parse(`${r.sim.clock()}Z`) / 1000)).toBe(0);
  });

  it('repeated downloads: same ids, nothing stored twice', async () => {
    const r = await rig();
    await r.session.start();
    await r.host.until(() => r.host.commits.length === 1);
    expect(await r.session.command('download', {})).toEqual({ inserted: 0, duplicates: 4, records: 4 });
    expect(r.host.commits[1]!.drafts.map(RECORD_KINDS.result.id)).toEqual(r.host.commits[0]!.drafts.map(RECORD_KINDS.result.id));
  });

  it('a bad CRC: quarantined, bad_frame, the request sent again (no link reset on this meter)', async () => {
    const r = await rig({}, {}, { open: false });
    await r.session.start();
    r.sim.corruptFrame(6); // the reply to record 1
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(r.sim.received).toEqual(['version', 'serial', 'read-clock', 'unit', 'count', 'record', 'record', 'record', 'record', 'record']);
    expect(r.host.quarantined.map((q) => q.reason)).toEqual(['bad-crc']);
    expect(r.host.types().filter((t) => t === 'bad_frame')).toHaveLength(1);
    expect(r.host.commits[0]!.drafts).toHaveLength(4);
  });

  it('garbage on the line before a reply is reported and the reply still read', async () => {
    const r = await rig({}, {}, { open: false });
    await r.session.start();
    // Noise injected into the host's receive path just after the serial request.
    const origWrite = r.hostEnd.write.bind(r.hostEnd);
    let injected = false;
    r.hostEnd.write = async (data: Buffer): Promise<void> => {
      await origWrite(data);
      if (!injected && data.includes(Buffer.from([0x03, 0x0b, 0x01, 0x02]))) {
        injected = true;
        r.hostEnd.emit('data', Buffer.from('noise!', 'latin1'));
      }
    };
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(r.host.quarantined.map((q) => q.reason)).toEqual(['garbage']);
    expect(r.sim.received.filter((x) => x === 'serial')).toHaveLength(1);
  });

  it('stops answering mid-download: failed + no_answer, nothing committed; the next download works', async () => {
    const r = await rig({}, {}, { open: false });
    await r.session.start();
    const push = r.sim.received.push.bind(r.sim.received);
    r.sim.received.push = (...items) => {
      const n = push(...items);
      if (r.sim.received.filter((x) => x === 'record').length === 2) r.sim.off = true;
      return n;
    };
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_failed'));
    // The shared SessionReporter announces no_answer first, then ends the started download.
    expect(r.host.types()).toEqual(['download_started', 'no_answer', 'download_failed']);
    expect(r.host.commits).toHaveLength(0);
    r.sim.off = false;
    r.sim.received.push = push;
    expect(await r.session.command('download', {})).toEqual({ inserted: 4, duplicates: 0, records: 4 });
  });

  it('unplug during the download: link-closed, nothing committed', async () => {
    const r = await rig({ frame_delay_ms: 15 }, {}, { open: false });
    await r.session.start();
    await r.hostEnd.open();
    await r.host.until(() => r.sim.received.includes('record'));
    await r.hostEnd.close();
    await r.host.until(() => r.host.types().includes('download_failed'));
    expect(r.host.events.find((e) => e.type === 'download_failed')!.data).toEqual({ reason: 'link-closed' });
    expect(r.host.commits).toHaveLength(0);
  });

  it('clock skew is flagged; clock/sync sets the meter clock and clears it', async () => {
    const r = await rig({ clock_offset_s: 3600 });
    await r.session.start();
    await r.host.until(() => r.host.commits.length === 1);
    expect(r.host.state.clock_skew_flagged).toBe(true);
    expect(r.host.types()).toContain('clock_skew');
    const res = (await r.session.command('clock/sync', {})) as { clock_skew_s: number };
    expect(Math.abs(res.clock_skew_s)).toBeLessThanOrEqual(2);
    expect(Math.abs(clockSkewSeconds(r.sim.clock(), ZONE))).toBeLessThanOrEqual(2);
    expect(r.host.state.clock_skew_flagged).toBe(false);
  });

  it('a meter that is off: no_answer, status no-answer', async () => {
    const r = await rig({ off: true });
    await r.session.start();
    await r.host.until(() => r.host.state.status === 'no-answer', 3000);
    expect(r.host.types()).toEqual(['no_answer']);
  });
});

describe('decode', () => {
  it('same records however the session bytes are chunked', async () => {
    const r = await rig();
    await r.session.start();
    await r.host.until(() => r.host.commits.length === 1);
    await r.teardown();
    const capture = r.host.commits[0]!.capture;
    if (capture.kind !== 'transcript') throw new Error('no transcript');
    const expected = decodeVerioIq(capture, CTX).drafts.result;
    expect(expected).toHaveLength(4);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 30 }), (sizes) => {
        // Re-chunk each direction's bytes, keeping the order of the exchanges.
        const exchanges: Capture & { kind: 'transcript' } = { kind: 'transcript', exchanges: [] };
        let k = 0;
        for (const e of capture.exchanges) {
          for (let i = 0; i < e.bytes.length; ) {
            const n = sizes[k++ % sizes.length]!;
            exchanges.exchanges.push({ dir: e.dir, bytes: e.bytes.subarray(i, i + n) });
            i += n;
          }
        }
        expect(decodeVerioIq(exchanges, CTX).drafts.result).toEqual(expected);
      }),
      { numRuns: 100 },
    );
  });

  it('refuses options the meter cannot hold', async () => {
    await expect(createSimulator(onetouchVerioIq.simulator, { memory: [{ time: '2024-01-01T10:00:00', value: 'HI' }] })).rejects.toThrow(/HI\/LO/);
    await expect(createSimulator(onetouchVerioIq.simulator, { memory: [{ time: '2024-01-01T10:00:00', value: 90, meal: 'lunch' }] })).rejects.toThrow(/meal/);
  });
});
