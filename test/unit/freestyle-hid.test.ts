import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import pino from 'pino';
import type { Exchange } from '../../src/driver-sdk/index.ts';
import { captureFromBytes, parseTranscript } from '../../src/driver-sdk/capture.ts';
import type { DeviceConfig } from '../../src/config/types.ts';
import type { ResultDraft } from '../../src/records/types.ts';
import { memoryPair, type MemoryTransport } from '../../src/transports/memory.ts';
import { clockSkewSeconds } from '../../src/util/time.ts';
import {
  decodeReport,
  encodeReport,
  MSG,
  multiRecordMessage,
  parseArresultRecord,
  parseHistoryRecord,
  parseMultiRecord,
  parseResultRecord,
  parseTextReply,
  ReportStream,
  setClockCommands,
  textCommandReport,
  TextReplyAssembler,
  textChecksum,
  textReply,
} from '../../drivers/glucose/freestyle-hid/codec.ts';
import { decodeFreeStyle, LIBRE2_UNSUPPORTED } from '../../drivers/glucose/freestyle-hid/records.ts';
import { freestyleHid } from '../../drivers/glucose/freestyle-hid/definition.ts';
import { FreeStyleSimulator, parseSimulatorOptions, type FreeStyleSimulatorOptions } from '../../drivers/glucose/freestyle-hid/simulator.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { eventually } from '../helpers/eventually.ts';
import { FakeHost } from '../helpers/fake-host.ts';
import { sessionRig } from '../helpers/session-rig.ts';

import { itShared, sharedFixture } from '../helpers/shared-fixtures.ts';

const INSULINX = sharedFixture('glucose/freestyle-insulinx-session.txt');
const REAL_EXCHANGES = parseTranscript(INSULINX.bytesOrEmpty().toString('latin1'));
const CTX = { deviceId: 'bench1-insulinx', timezone: 'Europe/Paris' };

/** The payload text of the D reports that answer the H report holding `command`. */
function replyText(command: string): Buffer {
  const i = REAL_EXCHANGES.findIndex((e) => e.dir === 'H' && e.bytes[0] === MSG.TEXT && e.bytes.subarray(2).toString('latin1') === `${command}\r\n`);
  const parts: Buffer[] = [];
  for (const e of REAL_EXCHANGES.slice(i + 1)) {
    if (e.dir === 'H') break;
    if (e.bytes[0] === MSG.TEXT) parts.push(e.bytes.subarray(2, 2 + e.bytes[1]!));
  }
  return Buffer.concat(parts);
}

describe('FreeStyle HID codec', () => {
  itShared([INSULINX], 'CKSM: the real InsuLinx replies verify, and the sums are the plain 32-bit byte sums', () => {
    expect(textChecksum('JAGT241-U6242\r\n')).toBe(0x324);
    expect(textChecksum('1.40\r\n0\r\n')).toBe(0x121);
    expect(textChecksum('8,27,14\r\n')).toBe(0x175);
    expect(textChecksum('13,22\r\n')).toBe(0x10b);
    expect(textChecksum('')).toBe(0);
    for (const [command, first] of [
      ['$serlnum?', 'JAGT241-U6242'],
      ['$swver?', '1.40'],
      ['$date?', '8,27,14'],
      ['$time?', '13,22'],
    ] as const) {
      const r = parseTextReply(replyText(command));
      expect(r.ok && r.message.toString('latin1').split('\r\n')[0]).toBe(first);
    }
  });

  it('CKSM: Tidepool vectors, and CMD Fail!, a wrong or a short checksum fail', () => {
    const ok = parseTextReply(Buffer.from('DB Record Number = 226988\r\nCKSM:00000765\r\nCMD OK\r\n'));
    expect(ok.ok && ok.message.toString()).toBe('DB Record Number = 226988\r\n');
    expect(parseTextReply(Buffer.from('2.1.2\r\nCKSM:00000108\r\nCMD OK\r\n')).ok).toBe(true);
    const code = (s: string): string | null => {
      const r = parseTextReply(Buffer.from(s));
      return r.ok ? null : r.error.code;
    };
    expect(code('2.1.2\r\nCKSM:00000108\r\nCMD Fail!\r\n')).toBe('command-failed');
    expect(code('2.1.2\r\nCKSM:00000109\r\nCMD OK\r\n')).toBe('bad-checksum');
    expect(code('2.1.2\r\nCKSM:0108\r\nCMD OK\r\n')).toBe('missing-checksum');
    expect(code('2.1.2\r\nCKSM:00000108\r\n')).toBe('truncated-reply');
    // The error detail never quotes the message (it may be patient data).
    const bad = parseTextReply(Buffer.from('Xavier,Claessens,g\r\nCKSM:000006E7\r\nCMD OK\r\n'));
    expect(!bad.ok && bad.error.detail).not.toMatch(/Xavier|Claessens/);
  });

  itShared([INSULINX], '$result?: the real record list verifies (237 records, record checksum 0006FEC2, CKSM 00070167)', () => {
    const reply = replyText('$result?');
    expect(reply.toString('latin1')).toContain('237,0006FEC2\r\nCKSM:00070167\r\nCMD OK\r\n');
    const text = parseTextReply(reply);
    expect(text.ok).toBe(true);
    const list = parseMultiRecord(text.ok ? text.message : Buffer.alloc(0));
    expect(list.ok && list.records.length).toBe(237);
    expect(list.ok && list.records[0]).toBe('0,20476,8,27,14,12,47,1,0,0,0,3,0,68,0,0');
    expect(parseMultiRecord(Buffer.from('Log Empty\r\n'))).toEqual({ ok: true, records: [], count: 0 });
    const tampered = Buffer.from(text.ok ? text.message : Buffer.alloc(0));
    tampered[tampered.indexOf('68,0,0')] = '9'.charCodeAt(0); // 68 → 98 mg/dL
    expect(parseMultiRecord(tampered)).toMatchObject({ ok: false, error: { code: 'bad-record-checksum' } });
  });

  it('reports: [type][len][payload] padded to 64; a length beyond the report is refused', () => {
    const r = encodeReport(MSG.TEXT, Buffer.from('$serlnum?\r\n'));
    expect(r.length).toBe(64);
    expect(r.subarray(0, 13).toString('hex')).toBe('600b247365726c6e756d3f0d0a');
    expect(decodeReport(r)).toMatchObject({ ok: true, report: { type: 0x60 } });
    expect(decodeReport(Buffer.from([0x60, 63]))).toMatchObject({ ok: false, error: { code: 'bad-report' } });
    expect(decodeReport(Buffer.from([0x60, 5, 0x41]))).toMatchObject({ ok: false, error: { code: 'bad-report' } });
    expect(() => encodeReport(0x60, Buffer.alloc(63))).toThrow(RangeError);
  });

  itShared([INSULINX], 'a report stream cut anywhere gives back the same 64-byte reports', () => {
    const reports = REAL_EXCHANGES.filter((e) => e.dir === 'D')
      .slice(0, 300)
      .map((e) => encodeReport(e.bytes[0]!, e.bytes.subarray(2, 2 + e.bytes[1]!)));
    const all = Buffer.concat(reports);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 200 }), { maxLength: 60 }), (sizes) => {
        const s = new ReportStream();
        const out: Buffer[] = [];
        let i = 0;
        for (const n of sizes) {
          out.push(...s.push(all.subarray(i, i + n)));
          i += n;
        }
        out.push(...s.push(all.subarray(i)));
        expect(out.length).toBe(reports.length);
        expect(out.every((r, k) => r.equals(reports[k]!))).toBe(true);
        expect(s.pending()).toBe(0);
      }),
      { numRuns: 100 },
    );
  });

  it('set-clock commands have no leading zeros', () => {
    expect(setClockCommands('2014-08-27T13:40:12')).toEqual({ date: '$date,8,27,14', time: '$time,13,40' });
    expect(setClockCommands('2026-01-05T07:03:00')).toEqual({ date: '$date,1,5,26', time: '$time,7,3' });
  });

  it('record layouts: Neo control flag, ketone ÷ 18, HI/LO literals, Libre kinds and error bit', () => {
    expect(parseResultRecord('7,12,3,11,25,7,55,0,121,0,0,0,0,0,0,0,0,0,0')).toMatchObject({
      ok: true,
      record: { kind: 'reading', reading: { analyte: 'glucose', raw: 121, control: true } },
    });
    expect(parseResultRecord('7,13,3,11,25,7,56,0,HI,0,1,0,0,0,0,0,0,0,0')).toMatchObject({ ok: true, record: { reading: { raw: 'HI', control: false } } });
    expect(parseResultRecord('9,14,3,11,25,8,0,0,22,1')).toMatchObject({ ok: true, record: { reading: { analyte: 'ketone', raw: 22, control: false } } });
    expect(parseResultRecord('9,14,3,11,25,8,0,0,LO,1')).toMatchObject({ ok: false, error: { code: 'invalid-record' } });
    expect(parseResultRecord('6,20305,8,6,14,11,11,1,8,6,14,17,10')).toMatchObject({
      ok: true,
      record: { kind: 'time-change', time: '2014-08-06T11:11:00', previous: '2014-08-06T17:10:00' },
    });
    // An InsuLinx record whose undocumented fields differ from the real capture is not guessed at.
    expect(parseResultRecord('0,1,8,27,14,12,47,1,0,0,0,3,1,68,0,0')).toMatchObject({ ok: false, error: { code: 'unverified-record' } });
    expect(parseResultRecord('0,1,2,30,14,12,47,1,0,0,0,3,0,68,0,0')).toMatchObject({ ok: false, error: { code: 'invalid-date' } });
    expect(parseResultRecord('42,1,8,27,14,12,47')).toMatchObject({ ok: false, error: { code: 'unknown-record-type' } });
    expect(parseHistoryRecord('1004,12,3,11,25,8,45,10,1,0,0,0,0,139,900,0')).toMatchObject({
      ok: true,
      record: { reading: { method: 'sensor-history', raw: 139, time: '2025-03-11T08:45:10' } },
    });
    expect(parseHistoryRecord('1003,12,3,11,25,8,30,10,1,0,0,0,0,0,900,32768')).toMatchObject({ ok: true, record: { kind: 'invalid-reading' } });
    const scan = `1005,2,3,11,25,8,52,41,1,2,0,0,141,1,3,${Array(13).fill(0).join(',')},0,"","","","","",""`;
    expect(parseArresultRecord(scan)).toMatchObject({ ok: true, record: { reading: { method: 'sensor-scan', raw: 141, trend: 3 } } });
    expect(parseArresultRecord(scan.replace(/^1005,2,/, '1005,9,'))).toMatchObject({ ok: false, error: { code: 'unknown-record-type' } });
  });
});

/** A transcript with every text reply re-cut into reports of the given sizes, keep-alives in between. */
function recut(exchanges: Exchange[], sizes: number[], keepalives: boolean[]): Exchange[] {
  const out: Exchange[] = [];
  let pending: Buffer[] = [];
  let k = 0;
  let s = 0;
  const flush = (): void => {
    const text = Buffer.concat(pending);
    pending = [];
    for (let i = 0; i < text.length; ) {
      const n = Math.min(62, Math.max(1, sizes.length ? sizes[s++ % sizes.length]! : 62));
      out.push({ dir: 'D', bytes: Buffer.concat([Buffer.of(MSG.TEXT, Math.min(n, text.length - i)), text.subarray(i, i + n)]) });
      if (keepalives.length && keepalives[k++ % keepalives.length]) out.push({ dir: 'D', bytes: Buffer.of(MSG.KEEPALIVE, 1, 3) });
      i += n;
    }
  };
  for (const e of exchanges) {
    if (e.dir === 'D' && e.bytes[0] === MSG.TEXT) pending.push(e.bytes.subarray(2, 2 + e.bytes[1]!));
    else if (e.dir === 'D' && e.bytes[0] === MSG.KEEPALIVE) continue;
    else {
      flush();
      out.push(e);
    }
  }
  flush();
  return out;
}

describe('FreeStyle HID decode()', () => {
  const expected = decodeFreeStyle({ kind: 'transcript', exchanges: REAL_EXCHANGES }, CTX);

  itShared([INSULINX], 'the real InsuLinx session: 227 glucose results of 237 records, serial JAGT241-U6242, all mg/dL, no issue', () => {
    expect(expected.issues).toEqual([]);
    expect(expected.drafts.result).toHaveLength(227);
    expect(expected.device).toMatchObject({ serial: 'JAGT241-U6242', firmware: '1.40', record_count: 237, display_unit: 'mg/dL', model: 'FreeStyle InsuLinx' });
    expect(new Set(expected.drafts.result!.map((d) => d.observations[0]!.unit))).toEqual(new Set(['mg/dL']));
    const newest = expected.drafts.result!.at(-1)!;
    expect([newest.device_time, newest.observations[0]!.value, newest.observed_at]).toEqual(['2014-08-27T12:47:00', 68, '2014-08-27T12:47:00+02:00']);
    // The patient name and id the meter holds appear nowhere in what the decoder produced.
    expect(JSON.stringify(expected)).not.toMatch(/Xavier|Claessens|iddupatient/);
  });

  itShared([INSULINX], 'replies re-cut into any report sizes, with keep-alives anywhere, decode the same', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 62 }), { minLength: 1, maxLength: 30 }), fc.array(fc.boolean(), { maxLength: 10 }), (sizes, kas) => {
        const r = decodeFreeStyle({ kind: 'transcript', exchanges: recut(REAL_EXCHANGES, sizes, kas) }, CTX);
        expect(r.issues).toEqual([]);
        expect(r.drafts.result).toEqual(expected.drafts.result);
      }),
      { numRuns: 40 },
    );
  });

  itShared([INSULINX], 'a corrupted CKSM is an issue with the bytes, and the damaged reply gives no records', () => {
    const ex = REAL_EXCHANGES.map((e) => ({ ...e, bytes: Buffer.from(e.bytes) }));
    const last = ex.findIndex((e) => e.dir === 'D' && e.bytes.includes(Buffer.from('CKSM:00070167')));
    ex[last]!.bytes.write('CKSM:00070168', ex[last]!.bytes.indexOf('CKSM:'), 'latin1');
    const r = decodeFreeStyle({ kind: 'transcript', exchanges: ex }, CTX);
    expect(r.drafts.result).toEqual([]);
    expect(r.issues.map((i) => i.reason)).toContain('bad-checksum');
    expect(r.issues.find((i) => i.reason === 'bad-checksum')!.bytes!.length).toBeGreaterThan(9000);
  });

  itShared([INSULINX], 'a capture cut inside the multi-report $result? reply: truncated-reply, no records, serial still known', () => {
    const at = REAL_EXCHANGES.findIndex((e) => e.dir === 'D' && e.bytes.includes(Buffer.from('0,20300,8,6,14')));
    const r = decodeFreeStyle({ kind: 'transcript', exchanges: REAL_EXCHANGES.slice(0, at) }, CTX);
    expect(r.drafts.result).toEqual([]);
    expect(r.issues.map((i) => i.reason)).toEqual(['truncated-reply']);
    expect(r.device.serial).toBe('JAGT241-U6242');
  });

  it('an unknown record type is an issue, not a crash; the other records still decode', () => {
    const records = ['0,2,8,27,14,12,47,1,0,0,0,3,0,68,0,0', '42,3,8,27,14,12,48,1,2,3', '0,1,8,27,14,9,39,1,0,0,0,3,0,93,0,0'];
    const exchanges: Exchange[] = [
      { dir: 'H', bytes: Buffer.from('600a24726573756c743f0d0a', 'hex') },
      ...chunkReply(textReply(multiRecordMessage(records))),
    ];
    const r = decodeFreeStyle({ kind: 'transcript', exchanges }, CTX);
    expect(r.drafts.result!.map((d) => d.observations[0]!.value)).toEqual([93, 68]);
    expect(r.issues.map((i) => i.reason)).toEqual(['unknown-record-type']);
    expect(r.issues[0]!.bytes!.toString()).toBe(records[1]);
  });

  it('garbage and raw captures give no records and never throw', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.uint8Array({ maxLength: 64 })), { maxLength: 40 }), (items) => {
        const exchanges = items.map(([h, b]) => ({ dir: h ? ('H' as const) : ('D' as const), bytes: Buffer.from(b) }));
        const r = decodeFreeStyle({ kind: 'transcript', exchanges }, CTX);
        expect(r.drafts.result!.every((d) => d.observations[0]!.unit !== null)).toBe(true);
      }),
      { numRuns: 200 },
    );
    expect(decodeFreeStyle(captureFromBytes(Buffer.from([0x60, 3, 0x41, 0x42, 0x43])), CTX)).toMatchObject({ drafts: { result: [] }, issues: [{ reason: 'not-a-transcript' }] });
  });
});

function chunkReply(reply: Buffer, size = 62): Exchange[] {
  const out: Exchange[] = [];
  for (let i = 0; i < reply.length; i += size) out.push({ dir: 'D', bytes: Buffer.concat([Buffer.of(MSG.TEXT, Math.min(size, reply.length - i)), reply.subarray(i, i + size)]) });
  return out;
}

describe('TextReplyAssembler', () => {
  it('finds CMD OK split across reports, and counts record lines', () => {
    const a = new TextReplyAssembler();
    expect(a.push(Buffer.from('1,2\r\n3,4\r\nCKSM:0000000\r\nCM'))).toEqual([]);
    expect(a.lines).toBe(3);
    const out = a.push(Buffer.from('D OK\r\n'));
    expect(out).toHaveLength(1);
    expect(out[0]!.bytes.toString()).toBe('1,2\r\n3,4\r\nCKSM:0000000\r\nCMD OK\r\n');
  });
});

describe('FreeStyle HID simulator', () => {
  it('set-clock: a day the month does not have is refused (CMD Fail!) and moves nothing; a real one is set', async () => {
    const pair = memoryPair('fs-sim');
    const now = new Date('2026-03-10T12:00:00Z');
    const sim = new FreeStyleSimulator({ timezone: 'UTC', seed: 7, memory: [], now: () => now });
    sim.attach(pair.device);
    await pair.device.open();
    await pair.host.open();
    const reports = new ReportStream();
    const text = new TextReplyAssembler();
    const replies: string[] = [];
    pair.host.on('data', (chunk: Buffer) => {
      for (const bytes of reports.push(chunk)) {
        const r = decodeReport(bytes);
        if (r.ok && r.report.type === MSG.TEXT) for (const m of text.push(r.report.payload)) replies.push(m.bytes.toString('latin1'));
      }
    });
    const ask = async (command: string): Promise<string> => {
      const before = replies.length;
      await pair.host.write(textCommandReport(command));
      await eventually(`the reply to ${command}`, () => replies.length > before);
      return replies.at(-1)!;
    };
    expect(await ask('$date,2,30,26')).toMatch(/CMD Fail!/);
    expect(sim.clock()).toBe('2026-03-10T12:00:00');
    expect(await ask('$date,2,28,26')).toMatch(/CMD OK/);
    expect(sim.clock()).toBe('2026-02-28T12:00:00');
    sim.detach();
  });
});

// ── session ──

const ZONE = 'Europe/Berlin';

/** FakeHost logs nothing; these tests read what the session logs (patient data must never reach it). */
class LoggingHost extends FakeHost {
  override readonly log;

  constructor(device: DeviceConfig, transport: MemoryTransport, lines: string[]) {
    super(device, transport);
    this.log = pino({ level: 'debug' }, { write: (s: string) => lines.push(s) });
  }
}

const cleanups = useCleanups();

/** A started session; the host end opens (the meter is plugged in) unless `connect` is false. */
async function harness(simOptions: FreeStyleSimulatorOptions = {}, device: Partial<DeviceConfig> = {}, opts: { connect?: boolean } = {}) {
  const logs: string[] = [];
  const r = await sessionRig({
    cable: 'fs',
    device: {
      id: 'bench-fs',
      driver: 'freestyle-hid',
      transport: { type: 'simulated', simulator: { model: simOptions.model ?? 'insulinx' } },
      options: { reply_timeout_ms: 150 },
      ...device,
    },
    simulator: new FreeStyleSimulator({ timezone: ZONE, seed: 7, ...simOptions }),
    createSession: (host) => freestyleHid.createSession(host),
    host: (d, transport) => new LoggingHost(d, transport, logs),
    timezone: ZONE,
    deviceChunkSize: 19, // a stream link: the session must reassemble 64-byte reports
    start: true,
    open: opts.connect !== false,
    cleanups,
  });
  return Object.assign(r, { logs });
}

describe('FreeStyle HID session on an in-memory link', () => {
  it('downloads on connect: init, identity, clock, records; commits, then reports; never asks for patient data', async () => {
    const memory = Array.from({ length: 60 }, (_, i) => ({ time: `2026-01-0${1 + (i % 5)}T${String(7 + (i % 12)).padStart(2, '0')}:${String(i).padStart(2, '0')}:00`, value: 80 + i }));
    const h = await harness({ memory, patient_name: 'Patient,Secret', patient_id: 'PID-SECRET-1' });
    await eventually('download_finished', () => h.host.types().includes('download_finished'));
    await h.teardown();
    expect(h.host.commits).toHaveLength(1);
    expect(h.host.commits[0]!.drafts).toHaveLength(60);
    expect(h.host.commits[0]!.drafts.every((d) => d.category === 'patient' && d.observations[0]!.unit === 'mg/dL')).toBe(true);
    expect(h.sim.received.slice(0, 4)).toEqual(['#04', '#05', '#15', '#01']);
    expect(h.sim.received).toEqual(expect.arrayContaining(['$serlnum?', '$swver?', '$date?', '$time?', '$result?']));
    expect(h.sim.received.some((c) => c.startsWith('$pt'))).toBe(false);
    expect(h.host.types()).toEqual(['download_started', 'download_progress', 'download_progress', 'download_progress', 'download_finished']);
    expect(h.host.events.at(-2)!.data).toEqual({ received: 60, total: 60 });
    expect(h.host.state).toMatchObject({ status: 'ok', serial: 'JAGT241-U6242', firmware: '1.40', model: 'FreeStyle InsuLinx', meter: { record_count: 60, display_unit: 'mg/dL' } });
    expect(Math.abs(h.host.state.clock_skew_s!)).toBeLessThan(61);
    expect(JSON.stringify([h.host.events, h.host.state, h.logs])).not.toMatch(/Secret|SECRET/);
    // The committed transcript decodes to the same drafts (rule 4: replay).
    const replay = decodeFreeStyle(h.host.commits[0]!.capture, { deviceId: 'bench-fs', timezone: ZONE });
    expect(replay.drafts).toEqual(h.host.commits[0]!.records);
  });

  it('a Neo control run is category control; ketone in mmol/L; HI/LO flags with the limits', async () => {
    const h = await harness({
      model: 'neo',
      memory: [
        { time: '2026-01-02T08:00:00', kind: 'glucose', value: 118, control: true },
        { time: '2026-01-02T09:00:00', kind: 'ketone', value: 1.5 },
        { time: '2026-01-02T10:00:00', kind: 'glucose', value: 'HI' },
      ],
    });
    await eventually('download_finished', () => h.host.types().includes('download_finished'));
    await h.teardown();
    const [control, ketone, hi] = h.host.commits[0]!.drafts;
    expect([control!.category, control!.specimen.type]).toEqual(['control', 'control solution']);
    expect(ketone!.observations[0]).toMatchObject({ code: 'BHB', loinc: '66441-7', value: 1.5, unit: 'mmol/L', ucum: 'mmol/L' });
    expect(hi!.observations[0]).toMatchObject({ value: null, flags: ['HI'], comparator: '>', limit: 500, unit: 'mg/dL' });
  });

  it('a bad CKSM is retried once and the download goes on', async () => {
    const h = await harness({ memory: [{ time: '2026-01-02T08:00:00', value: 99 }] });
    h.sim.corruptReplyTo('$result?', 1);
    await eventually('download_finished', () => h.host.types().includes('download_finished'));
    await h.teardown();
    expect(h.sim.received.filter((c) => c === '$result?')).toHaveLength(2);
    expect(h.host.quarantined.map((q) => q.reason)).toEqual(['bad-checksum']);
    expect(h.host.types()).toContain('bad_frame');
    expect(h.host.commits[0]!.drafts.map((d) => d.observations[0]!.value)).toEqual([99]);
  });

  it('a bad CKSM twice: download_failed, nothing committed, the session goes on', async () => {
    const h = await harness({ memory: [{ time: '2026-01-02T08:00:00', value: 99 }] });
    h.sim.corruptReplyTo('$result?', 2);
    await eventually('download_failed', () => h.host.types().includes('download_failed'));
    expect(h.host.commits).toEqual([]);
    expect(h.host.events.find((e) => e.type === 'download_failed')!.data).toEqual({ reason: 'bad-checksum' });
    expect(h.host.state.status).toBe('error');
    // The next download works.
    await expect(h.session.command('download', {})).resolves.toEqual({ inserted: 1, duplicates: 0, records: 1 });
  });

  it('a meter that answers nothing: no_answer and status no-answer', async () => {
    const h = await harness({ off: true });
    await eventually('no_answer', () => h.host.types().includes('no_answer'));
    await h.teardown();
    expect(h.host.state.status).toBe('no-answer');
    expect(h.host.commits).toEqual([]);
  });

  it('unplugged in the middle of the dump: download_failed, nothing partial committed', async () => {
    const memory = Array.from({ length: 120 }, (_, i) => ({ time: `2026-01-02T${String(i % 24).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}:00`, value: 70 + i }));
    const h = await harness({ memory, report_delay_ms: 3, max_payload: 30 });
    await eventually('a few records', () => h.host.types().includes('download_progress'));
    await h.hostEnd.close();
    await eventually('download_failed', () => h.host.types().includes('download_failed'));
    await h.teardown();
    expect(h.host.commits).toEqual([]);
    expect(h.host.events.find((e) => e.type === 'download_failed')!.data).toEqual({ reason: 'link-closed' });
  });

  it('clock skew beyond 15 min is flagged; clock/sync sets it with $date, and $time,', async () => {
    const h = await harness({ clock_offset_s: 3600, memory: [] });
    await eventually('download_finished', () => h.host.types().includes('download_finished'));
    expect(h.host.state.clock_skew_flagged).toBe(true);
    expect(h.host.types()).toContain('clock_skew');
    const r = (await h.session.command('clock/sync', {})) as { clock: string; clock_skew_s: number };
    expect(Math.abs(r.clock_skew_s)).toBeLessThan(61);
    expect(Math.abs(clockSkewSeconds(h.sim.clock(), ZONE))).toBeLessThan(61);
    expect(h.sim.received.some((c) => /^\$date,\d{1,2},\d{1,2},\d{2}$/.test(c))).toBe(true);
    expect(h.sim.received.some((c) => /^\$time,\d{1,2},\d{1,2}$/.test(c))).toBe(true);
    expect(h.host.state.clock_skew_flagged).toBe(false);
    expect(h.host.types()).toContain('clock_set');
  });

  it('clock/sync fails with clock-not-set when the clock read back after the set is still off', async () => {
    const h = await harness({ clock_offset_s: 3600, memory: [] });
    await eventually('download_finished', () => h.host.types().includes('download_finished'));
    h.sim.deviceClock.set = () => undefined; // a meter that answers CMD OK to the set and keeps its clock
    await expect(h.session.command('clock/sync', {})).rejects.toThrow(/the meter reports a clock \d+ s away from the time sent/);
    expect(h.sim.received.filter((c) => /^\$(date|time),/.test(c))).toHaveLength(2);
    expect(h.host.events.at(-1)).toMatchObject({ type: 'device_error', data: { reason: 'clock-not-set' } });
    expect(h.host.types()).not.toContain('clock_set');
    expect(h.host.state.clock_skew_flagged).toBe(true);
  });

  it('Libre: $sn?, $history? and $arresult?; sensor results flagged by source; invalid records are not results', async () => {
    const h = await harness({ model: 'libre' });
    await eventually('download_finished', () => h.host.types().includes('download_finished'));
    await h.teardown();
    expect(h.sim.received).toEqual(expect.arrayContaining(['$sn?', '$history?', '$arresult?']));
    expect(h.sim.received).not.toContain('$serlnum?');
    const drafts = h.host.commits[0]!.drafts;
    expect(drafts).toHaveLength(11); // 8 history + scan + strip glucose + ketone; the invalid one is left out
    expect(new Set(drafts.map((d) => d.flags[0]))).toEqual(new Set(['source:sensor-history', 'source:sensor-scan', 'source:strip']));
    expect(drafts.filter((d) => d.specimen.type === 'interstitial fluid').every((d) => d.observations[0]!.loinc === '99504-3')).toBe(true);
    expect(h.host.events.find((e) => e.type === 'download_finished')!.data).toMatchObject({ invalid: 1, records: 11 });
  });

  it('an unknown model is probed: $serlnum? refused → $sn? → the Libre commands', async () => {
    const h = await harness({ model: 'libre' }, { transport: { type: 'tcp', host: '127.0.0.1', port: 1 } });
    await eventually('download_finished', () => h.host.types().includes('download_finished'));
    await h.teardown();
    expect(h.sim.received.filter((c) => c.startsWith('$')).slice(0, 2)).toEqual(['$serlnum?', '$sn?']);
    expect(h.host.state.model).toBe('FreeStyle Libre');
  });

  it('the driver refuses a Libre 2 named by its model option or simulated model, before any session', () => {
    const device = (over: Partial<DeviceConfig>): DeviceConfig => ({ id: 'fs', driver: 'freestyle-hid', transport: { type: 'tcp', host: '127.0.0.1', port: 1 }, ...over }) as DeviceConfig;
    const refusal = { model: 'FreeStyle Libre 2', reason: LIBRE2_UNSUPPORTED };
    expect(freestyleHid.refuses!(device({ options: { model: 'libre2' } }))).toEqual(refusal);
    expect(freestyleHid.refuses!(device({ transport: { type: 'simulated', simulator: { model: 'libre2' } } }))).toEqual(refusal);
    expect(freestyleHid.refuses!(device({ options: { model: 'libre' } }))).toBeNull();
    expect(freestyleHid.refuses!(device({ transport: { type: 'hid', vendor_id: '1a61', product_id: '3650' } }))).toBeNull();
    // A bad model option is the session's config error, not a refusal.
    expect(freestyleHid.refuses!(device({ options: { model: 'libre9' } }))).toBeNull();
  });

  it('simulator options are checked', () => {
    expect(() => parseSimulatorOptions({ model: 'libre9' })).toThrow(/model/);
    expect(() => parseSimulatorOptions({ memory: [{ time: '2026-01-01T00:00:00', value: 90, control: true }] })).toThrow(/control/);
    expect(() => parseSimulatorOptions({ bogus: 1 })).toThrow(/unknown option/);
    expect(() => parseSimulatorOptions({ max_payload: 63 })).toThrow('freestyle-hid simulator: option max_payload must be a number from 1 to 62');
    expect(() => parseSimulatorOptions({ timezone: 'Mars/Olympus' })).toThrow('freestyle-hid simulator: option timezone must be an IANA zone name');
    expect(parseSimulatorOptions({ model: 'neo', memory: [{ time: '2026-01-01T00:00:00', kind: 'ketone', value: 'HI' }] }).memory).toHaveLength(1);
  });
});

/** A transcript of text commands, each followed by its (multi-record) reply. */
function recordTranscript(lists: Array<[string, string[]]>): Exchange[] {
  return lists.flatMap(([command, records]) => [
    { dir: 'H' as const, bytes: Buffer.concat([Buffer.of(MSG.TEXT, command.length + 2), Buffer.from(`${command}\r\n`, 'latin1')]) },
    ...chunkReply(textReply(multiRecordMessage(records))),
  ]);
}

const recordId = (d: ResultDraft): number => Number(d.key.split('|')[1]);
const clockFlags = (d: ResultDraft): string[] => d.flags.filter((f) => f.startsWith('device-clock-changed'));

describe('FreeStyle HID meter clock changes', () => {
  itShared([INSULINX], 'the real InsuLinx capture: the 122 readings before the 2014-08-06 change 17:10 → 11:11 carry it, times untouched', () => {
    const r = decodeFreeStyle({ kind: 'transcript', exchanges: REAL_EXCHANGES }, CTX);
    expect(r.issues).toEqual([]);
    const flagged = r.drafts.result!.filter((d) => clockFlags(d).length > 0);
    // Type-6 record 20305 is `6,20305,8,6,14,11,11,1,8,6,14,17,10`: new clock 11:11, old 17:10.
    // Its neighbours confirm the order: 20303 (before it) reads 15:59, 20307 (after it) 13:00.
    expect(flagged).toHaveLength(122);
    expect(flagged.map(recordId).every((id) => id >= 20175 && id <= 20303)).toBe(true);
    expect(r.drafts.result!.filter((d) => recordId(d) <= 20303)).toHaveLength(122);
    for (const d of flagged) expect(clockFlags(d)).toEqual(['device-clock-changed', 'device-clock-changed:-21540s']);
    for (const d of r.drafts.result!.filter((x) => recordId(x) > 20305)) expect(clockFlags(d)).toEqual([]);
    // No silent correction: the meter's own time stays.
    const d20303 = r.drafts.result!.find((d) => recordId(d) === 20303)!;
    expect([d20303.device_time, d20303.observed_at, d20303.observations[0]!.flags]).toEqual(['2014-08-06T15:59:00', '2014-08-06T15:59:00+02:00', []]);
  });

  it('two changes and more: a reading carries every change after it, in the order they happened; 0 s moves nothing', () => {
    const records = [
      '0,9,8,2,14,8,0,1,0,0,0,3,0,101,0,0',
      '6,8,8,2,14,7,0,1,8,2,14,7,0', // 0 s: the clock was confirmed, not moved
      '0,7,8,1,14,22,0,1,0,0,0,3,0,102,0,0',
      '6,6,8,1,14,9,0,1,8,1,14,11,0', // set back 2 h
      '0,5,8,1,14,10,30,1,0,0,0,3,0,103,0,0',
      '6,4,8,1,14,10,0,1,8,1,14,9,0', // set forward 1 h
      '0,3,8,1,14,8,0,1,0,0,0,3,0,104,0,0',
      '6,2,8,1,14,7,0,1,255,255,255,255,255', // the clock had lost power: size unknown
      '0,1,1,1,14,0,5,1,0,0,0,3,0,105,0,0',
    ];
    const r = decodeFreeStyle({ kind: 'transcript', exchanges: recordTranscript([['$result?', records]]) }, CTX);
    expect(r.issues).toEqual([]);
    const byId = new Map(r.drafts.result!.map((d) => [recordId(d), d]));
    expect(clockFlags(byId.get(9)!)).toEqual([]);
    expect(clockFlags(byId.get(7)!)).toEqual([]);
    expect(clockFlags(byId.get(5)!)).toEqual(['device-clock-changed', 'device-clock-changed:-7200s']);
    expect(clockFlags(byId.get(3)!)).toEqual(['device-clock-changed', 'device-clock-changed:+3600s', 'device-clock-changed:-7200s']);
    expect(clockFlags(byId.get(1)!)).toEqual([
      'device-clock-changed',
      'device-clock-changed:unknown',
      'device-clock-changed:+3600s',
      'device-clock-changed:-7200s',
    ]);
    expect(byId.get(1)!.flags[0]).toBe('source:strip');
    expect(byId.get(3)!.device_time).toBe('2014-08-01T08:00:00');
  });

  it('Libre: an $arresult? time change flags the $arresult? readings numbered before it', () => {
    const tail = `${Array(13).fill(0).join(',')},0,"","","","","",""`;
    const arresult = [
      `31,2,3,11,25,9,30,0,1,0,0,0,96,0,0,${tail}`,
      '30,5,3,11,25,9,0,0,1,3,11,25,8,0,0', // new 09:00:00, old 08:00:00
      `29,2,3,11,25,7,45,0,1,1,0,0,22,0,0,${tail}`,
    ];
    const history = ['1001,12,3,11,25,7,30,10,1,0,0,0,0,139,900,0'];
    const r = decodeFreeStyle({ kind: 'transcript', exchanges: recordTranscript([['$history?', history], ['$arresult?', arresult]]) }, CTX);
    expect(r.issues).toEqual([]);
    const flags = new Map(r.drafts.result!.map((d) => [d.key.split('|').slice(0, 2).join('|'), clockFlags(d)]));
    expect(flags.get('$arresult?|29')).toEqual(['device-clock-changed', 'device-clock-changed:+3600s']);
    expect(flags.get('$arresult?|31')).toEqual([]);
    // $history? numbers its records on its own: an $arresult? number says nothing about them.
    expect(flags.get('$history?|1001')).toEqual([]);
  });

  it('the session: flagged results, clock_changes in download_finished, nothing in the device state', async () => {
    const h = await harness({}, {}, { connect: false });
    const lines = ['0,4,8,1,14,10,30,1,0,0,0,3,0,103,0,0', '6,3,8,1,14,10,0,1,8,1,14,9,0', '0,2,8,1,14,8,0,1,0,0,0,3,0,104,0,0', '6,1,8,1,14,7,0,1,8,1,14,7,0'];
    h.sim.recordLists = () => ({ '$result?': lines });
    await h.hostEnd.open();
    await eventually('download_finished', () => h.host.types().includes('download_finished'));
    await h.teardown();
    const finished = h.host.events.find((e) => e.type === 'download_finished')!;
    expect(finished.data).toMatchObject({ records: 2, meter_records: 4, clock_changes: 2 });
    const [before, after] = h.host.commits[0]!.drafts;
    expect([before!.device_time, clockFlags(before!)]).toEqual(['2014-08-01T08:00:00', ['device-clock-changed', 'device-clock-changed:+3600s']]);
    expect(clockFlags(after!)).toEqual([]);
    expect(JSON.stringify(h.host.state)).not.toMatch(/clock_change|clock-change/);
  });
});
