/**
 * The LifeScan link (`drivers/glucose/lifescan-binary/session.ts`), each rule with its own case:
 * the UltraEasy link reset, the ACK and the data frame with their sequence bits, the Verio IQ's
 * link-control 0, truncated and damaged frames, replies that do not parse or answer another
 * question, the give-up errors (no answer only when every try was silence), the records that
 * cannot be read, progress steps and the clock set. The real simulator sits behind a cable that
 * lets a test replace any frame it sends, so every fault is one the wire can carry.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { createSimulator, type DriverDefinition, type DriverSession } from '../../src/driver-sdk/index.ts';
import type { ByteTransport } from '../../src/transports/transport.ts';
import { memoryPair, type MemoryTransport } from '../../src/transports/memory.ts';
import { encodeFrame, FrameReader, LINK, type Frame } from '../../drivers/glucose/lifescan-binary/codec.ts';
import type { LifeScanSimulator } from '../../drivers/glucose/lifescan-binary/simulator.ts';
import { onetouchUltraEasy } from '../../drivers/glucose/onetouch-ultraeasy/definition.ts';
import { onetouchVerioIq } from '../../drivers/glucose/onetouch-verio-iq/definition.ts';
import { pushStrict, useCleanups } from '../helpers/cleanups.ts';
import { FakeHost } from '../helpers/fake-host.ts';

const ZONE = 'Europe/Copenhagen';

/**
 * The meter's side of the cable: the simulator writes here, whole frames are handed to `tamper`
 * (with their index, 0 = the first frame the meter sends), and what it returns goes on the wire.
 */
class TamperingCable extends EventEmitter implements ByteTransport {
  readonly description = 'tampering cable';
  private readonly reader = new FrameReader();
  private sent = 0;
  tamper: (frame: Frame, index: number) => Buffer[] = (f) => [f.bytes];

  /** Frame indexes count from 0 again. */
  restart(): void {
    this.sent = 0;
  }

  constructor(private readonly end: MemoryTransport) {
    super();
    end.on('data', (chunk: Buffer) => this.emit('data', chunk));
  }

  get isOpen(): boolean {
    return this.end.isOpen;
  }

  open(): Promise<void> {
    return this.end.open();
  }

  close(): Promise<void> {
    return this.end.close();
  }

  async write(data: Buffer): Promise<void> {
    for (const item of this.reader.push(data)) {
      if (item.kind !== 'frame') continue;
      for (const bytes of this.tamper(item.frame, this.sent++)) await this.end.write(bytes);
    }
  }
}

interface Rig {
  host: FakeHost;
  sim: LifeScanSimulator;
  session: DriverSession;
  cable: TamperingCable;
  /** Every frame the host sent, in order. */
  hostFrames: Frame[];
  /** The meter's end of the cable, for bytes the simulator would not send. */
  deviceEnd: MemoryTransport;
  /** Bytes the host end has received (the session's listener saw them first). */
  received: () => number;
  hostEnd: MemoryTransport;
}

const cleanups = useCleanups();

const UE_MEMORY = [
  { time: '2024-05-01T07:30:00', value: 96 },
  { time: '2024-05-01T08:10:00', value: 'HI' },
  { time: '2024-05-01T13:00:00', value: 154 },
  { time: '2024-05-01T22:05:00', value: 'LO' },
];

/**
 * The session plugged into the simulator behind a tampering cable. The download on connect runs
 * untouched and is then forgotten (events, commits, the store, the simulator's counters), so a
 * test's `download` command is the first conversation it sees, with frame indexes from 0.
 */
async function rig(driver: DriverDefinition, simOptions: Record<string, unknown> = {}, options: Record<string, unknown> = {}): Promise<Rig> {
  const { host: hostEnd, device: deviceEnd } = memoryPair('lifescan-link');
  const cable = new TamperingCable(deviceEnd);
  const memory = driver === onetouchUltraEasy ? { memory: UE_MEMORY } : {};
  const sim = (await createSimulator(driver.simulator, { timezone: ZONE, seed: 1, max_chunk: 64, ...memory, ...simOptions })) as LifeScanSimulator;
  sim.attach(cable);
  await deviceEnd.open();
  const hostFrames: Frame[] = [];
  const sniff = new FrameReader();
  deviceEnd.on('data', (chunk: Buffer) => {
    for (const item of sniff.push(chunk)) if (item.kind === 'frame') hostFrames.push(item.frame);
  });
  // An option given as undefined is left out, so the driver's default applies.
  const given = Object.fromEntries(Object.entries({ reply_timeout_ms: 120, ...options }).filter(([, v]) => v !== undefined));
  const host = new FakeHost({ id: 'link1', driver: driver.id, transport: { type: 'simulated' }, options: given }, hostEnd);
  host.timezone = ZONE;
  const session = driver.createSession(host);
  pushStrict(cleanups, async () => {
    await session.stop();
    sim.detach();
    await hostEnd.close();
    await deviceEnd.close();
  });
  await session.start();
  let received = 0;
  hostEnd.on('data', (chunk: Buffer) => (received += chunk.length));
  await hostEnd.open();
  await host.until(() => host.types().includes('download_finished'));
  // The UltraEasy host's last frame, the ACK of the last record, may still be on its way.
  if (driver === onetouchUltraEasy) await host.until(() => hostFrames.length === 1 + 2 * UE_CYCLE.length);
  host.events.length = 0;
  host.commits.length = 0;
  host.quarantined.length = 0;
  host.stored.clear();
  sim.received.length = 0;
  sim.resets = 0;
  hostFrames.length = 0;
  cable.restart();
  return { host, sim, session, cable, hostFrames, deviceEnd, received: () => received, hostEnd };
}

const frame = (message: number[], linkControl: number): Buffer => encodeFrame(Buffer.from(message), linkControl);
const badFrames = (h: FakeHost): { reason: unknown; detail: string }[] =>
  h.events.filter((e) => e.type === 'bad_frame').map((e) => ({ reason: e.data?.reason, detail: String(e.data?.detail) }));

// Frames from the UltraEasy simulator: DISC|ACK for the link reset, then an ACK and a reply per request.
const ackOf = (request: number): number => 1 + 2 * request;
const replyOf = (request: number): number => 2 + 2 * request;
const UE_CYCLE = ['version', 'serial', 'read-clock', 'unit', 'count', 'record', 'record', 'record', 'record'];

describe('UltraEasy link reset', () => {
  for (const [name, linkControl] of [
    ['ACK alone', LINK.ACK],
    ['DISC alone', LINK.DISC],
    ['a data frame', 0],
  ] as const) {
    it(`a reset answered with ${name} is an unexpected frame, and the reset is tried again`, async () => {
      const r = await rig(onetouchUltraEasy);
      r.cable.tamper = (f, i) => (i === 0 ? [frame([], linkControl)] : [f.bytes]);
      expect(await r.session.command('download', {})).toEqual({ inserted: 4, duplicates: 0, records: 4 });
      expect(badFrames(r.host)).toEqual([{ reason: 'unexpected-frame', detail: expect.stringContaining('expected DISC|ACK after a link reset') }]);
      expect(r.host.quarantined.map((q) => q.reason)).toEqual(['unexpected-frame']);
      expect(r.sim.resets).toBe(2);
      expect(r.sim.received).toEqual(UE_CYCLE);
    });
  }

  it('a reset never accepted fails after every try with the last reason; no download started, nothing committed', async () => {
    const r = await rig(onetouchUltraEasy, {}, { retries: 1 });
    r.cable.tamper = (f) => (f.linkControl === (LINK.DISC | LINK.ACK) ? [frame([], LINK.ACK)] : [f.bytes]);
    await expect(r.session.command('download', {})).rejects.toThrow('the meter did not accept a link reset after 2 tries (unexpected-frame)');
    expect(r.sim.resets).toBe(2);
    expect(r.sim.received).toEqual([]);
    expect(r.host.types()).toEqual(['bad_frame', 'bad_frame', 'download_failed']);
    expect(r.host.events.at(-1)!.data).toEqual({ reason: 'unexpected-frame' });
    expect(r.host.state.status).toBe('error');
    expect(r.host.commits).toHaveLength(0);
  });

  it('the reason is the last try\'s: refused, silent, refused is a protocol error; refused, refused, silent is no answer', async () => {
    for (const [plan, outcome] of [
      [['refuse', 'drop', 'refuse'], 'the meter did not accept a link reset after 3 tries (unexpected-frame)'],
      [['refuse', 'refuse', 'drop'], 'no answer to a link reset'],
    ] as const) {
      const r = await rig(onetouchUltraEasy, {}, { retries: 2 });
      let resets = 0;
      r.cable.tamper = (f) => {
        if (f.linkControl !== (LINK.DISC | LINK.ACK)) return [f.bytes];
        return plan[resets++] === 'refuse' ? [frame([], LINK.ACK)] : [];
      };
      await expect(r.session.command('download', {})).rejects.toThrow(outcome);
    }
  });

  it('a reset that is never answered is no answer, not a protocol error', async () => {
    const r = await rig(onetouchUltraEasy, {}, { retries: 1 });
    r.sim.off = true;
    await expect(r.session.command('download', {})).rejects.toThrow('no answer to a link reset: the meter is off, asleep or not in the cable');
    expect(r.host.state.status).toBe('no-answer');
  });
});

describe('UltraEasy ACK and data frames', () => {
  const cases: { name: string; at: (n: number) => number; replace: (f: Frame) => Buffer; reason: string; detail: string }[] = [
    { name: 'the ACK replaced by a data frame', at: ackOf, replace: (f) => frame([], f.linkControl & ~LINK.ACK), reason: 'unexpected-frame', detail: 'expected an ACK frame' },
    { name: 'an ACK that also carries DISC', at: ackOf, replace: (f) => frame([], f.linkControl | LINK.DISC), reason: 'unexpected-frame', detail: 'expected an ACK frame' },
    { name: 'an ACK that carries a message', at: ackOf, replace: (f) => frame([0x05], f.linkControl), reason: 'unexpected-frame', detail: 'expected an ACK frame' },
    { name: 'an ACK with the wrong sequence bit', at: ackOf, replace: (f) => frame([], f.linkControl ^ LINK.S), reason: 'sequence', detail: 'the ACK carries the wrong sequence bit' },
    { name: 'the reply replaced by an ACK', at: replyOf, replace: (f) => frame([...f.message], f.linkControl | LINK.ACK), reason: 'unexpected-frame', detail: 'expected a data frame' },
    { name: 'the reply marked DISC', at: replyOf, replace: (f) => frame([...f.message], f.linkControl | LINK.DISC), reason: 'unexpected-frame', detail: 'expected a data frame' },
    { name: 'the reply with the wrong sequence bit', at: replyOf, replace: (f) => frame([...f.message], f.linkControl ^ LINK.S), reason: 'sequence', detail: 'the reply carries the wrong sequence bit' },
  ];
  // Request 1 (serial) has S=1 on both sides of the link; request 2 (read clock) S=0: each fault at both.
  for (const c of cases) {
    for (const request of [1, 2]) {
      it(`${c.name} (request ${request}): bad_frame ${c.reason}, the link is reset and the request asked again`, async () => {
        const r = await rig(onetouchUltraEasy);
        r.cable.tamper = (f, i) => (i === c.at(request) ? [c.replace(f)] : [f.bytes]);
        expect(await r.session.command('download', {})).toEqual({ inserted: 4, duplicates: 0, records: 4 });
        expect(badFrames(r.host)).toEqual([{ reason: c.reason, detail: expect.stringContaining(c.detail) }]);
        expect(r.sim.resets).toBe(2);
        // The meter took the request both times (it is the link frame around it that was bad).
        expect(r.sim.received.filter((x) => x === UE_CYCLE[request])).toHaveLength(2);
        expect(r.host.commits).toHaveLength(1);
      });
    }
  }

  for (const c of cases) {
    it(`${c.name} with no retries: the download fails with ${c.reason}`, async () => {
      const r = await rig(onetouchUltraEasy, {}, { retries: 0 });
      r.cable.tamper = (f, i) => (i === c.at(1) ? [c.replace(f)] : [f.bytes]);
      await expect(r.session.command('download', {})).rejects.toThrow(`no valid reply to read serial after 1 tries (${c.reason})`);
    });
  }

  it('the host keeps the sequence bits of the handshake: data frame k has S = E = k mod 2, its ACK the next S', async () => {
    const r = await rig(onetouchUltraEasy);
    await r.session.command('download', {});
    await r.host.until(() => r.hostFrames.length === 1 + 2 * UE_CYCLE.length);
    const frames = r.hostFrames.map((f) => f.linkControl);
    expect(frames[0]).toBe(LINK.DISC);
    const expected: number[] = [];
    for (let k = 0; k < UE_CYCLE.length; k++) {
      expected.push(k % 2 ? LINK.S | LINK.E : 0);
      expected.push(LINK.ACK | ((k + 1) % 2 ? LINK.S | LINK.E : 0));
    }
    expect(frames.slice(1)).toEqual(expected);
    // A second conversation starts again from S = E = 0 after its reset.
    r.hostFrames.length = 0;
    await r.session.command('download', {});
    expect(r.hostFrames.map((f) => f.linkControl).slice(0, 3)).toEqual([LINK.DISC, 0, LINK.ACK | LINK.S | LINK.E]);
  });

  it('after a reset in the middle of a download the bits start again at 0', async () => {
    const r = await rig(onetouchUltraEasy);
    r.cable.tamper = (f, i) => (i === replyOf(1) ? [frame([...f.message], f.linkControl ^ LINK.S)] : [f.bytes]);
    await r.session.command('download', {});
    const lc = r.hostFrames.map((f) => f.linkControl);
    // reset, version (S0) + ACK, serial (S1) + ACK... no: the bad reply gets no ACK; then a reset and serial again with S0.
    expect(lc.slice(0, 7)).toEqual([LINK.DISC, 0, LINK.ACK | LINK.S | LINK.E, LINK.S | LINK.E, LINK.DISC, 0, LINK.ACK | LINK.S | LINK.E]);
  });
});

describe('frames on the wire', () => {
  it('a reply cut short and then silence is truncated, not a timeout: a protocol error after the tries', async () => {
    const r = await rig(onetouchUltraEasy, {}, { retries: 1 });
    r.cable.tamper = (f, i) => (i >= replyOf(1) && f.message.length > 0 ? [f.bytes.subarray(0, 5)] : [f.bytes]);
    await expect(r.session.command('download', {})).rejects.toThrow('no valid reply to read serial after 2 tries (truncated)');
    expect(r.host.events.at(-1)).toMatchObject({ type: 'download_failed', data: { reason: 'truncated' } });
    expect(r.host.quarantined.map((q) => q.reason)).toEqual(['truncated', 'truncated']);
    expect(r.host.state.status).toBe('error');
  });

  it('a frame with a bad CRC fails the try at once, with its own reason (not a timeout)', async () => {
    const r = await rig(onetouchVerioIq, {}, { retries: 0 });
    r.cable.tamper = (f, i) => {
      if (i !== 1) return [f.bytes];
      const bad = Buffer.from(f.bytes);
      bad[bad.length - 1]! ^= 0xff;
      return [bad];
    };
    await expect(r.session.command('download', {})).rejects.toThrow('no valid reply to read serial after 1 tries (bad-crc)');
    expect(badFrames(r.host).map((b) => b.reason)).toEqual(['bad-crc']);
  });

  it('garbage before a frame is reported and skipped: the frame is still read, on the one try there is', async () => {
    const r = await rig(onetouchVerioIq, {}, { retries: 0 });
    r.cable.tamper = (f, i) => (i === 1 ? [Buffer.from('zz'), f.bytes] : [f.bytes]);
    expect(await r.session.command('download', {})).toMatchObject({ records: 5 });
    expect(badFrames(r.host).map((b) => b.reason)).toEqual(['garbage']);
    expect(r.sim.received.slice(0, 3)).toEqual(['version', 'serial', 'read-clock']);
  });

  it('a bad CRC with part of another frame behind it: the part is dropped before the retry, which reads clean', async () => {
    const r = await rig(onetouchVerioIq, {}, { retries: 1 });
    r.cable.tamper = (f, i) => {
      if (i !== 1) return [f.bytes];
      const bad = Buffer.from(f.bytes);
      bad[bad.length - 1]! ^= 0xff;
      return [Buffer.concat([bad, f.bytes.subarray(0, 4)])];
    };
    expect(await r.session.command('download', {})).toMatchObject({ records: 5 });
    expect(badFrames(r.host).map((b) => b.reason)).toEqual(['bad-crc']);
    expect(r.host.events.find((e) => e.type === 'bad_frame')!.message).toBe('bad frame from the device: bad-crc');
  });

  it('a stray STX holding back a good frame until the timeout: only the stray bytes are reported, the request asked again', async () => {
    const r = await rig(onetouchVerioIq, {}, { retries: 1 });
    // STX with a length of 32: the reader waits for 32 bytes, and the reply frame behind it is shorter.
    r.cable.tamper = (f, i) => (i === 1 ? [Buffer.from([0x02, 0x20]), f.bytes] : [f.bytes]);
    expect(await r.session.command('download', {})).toMatchObject({ records: 5 });
    expect(r.host.quarantined.map((q) => q.reason)).toEqual(['bad-length']);
    expect(r.sim.received.slice(0, 3)).toEqual(['version', 'serial', 'serial']);
  });

  it('unplugged with no retries left: link-closed, not a protocol error', async () => {
    const r = await rig(onetouchVerioIq, {}, { retries: 0 });
    r.cable.tamper = (f) => {
      if (r.sim.received.at(-1) !== 'count') return [f.bytes];
      void r.hostEnd.close();
      return [];
    };
    await expect(r.session.command('download', {})).rejects.toThrow(/unplugged|closed/);
    expect(r.host.events.at(-1)).toMatchObject({ type: 'download_failed', data: { reason: 'link-closed' } });
    expect(r.host.commits).toHaveLength(0);
  });

  it('silence on every try is no answer, naming the request', async () => {
    const r = await rig(onetouchUltraEasy, {}, { retries: 1 });
    r.cable.tamper = (f, i) => (i >= ackOf(2) && f.linkControl !== (LINK.DISC | LINK.ACK) ? [] : [f.bytes]);
    await expect(r.session.command('download', {})).rejects.toThrow('no answer to read clock: the meter stopped answering');
    expect(r.host.events.at(-1)).toMatchObject({ type: 'download_failed', data: { reason: 'no-answer' } });
  });

  it('silence on one try and a bad frame on another is a protocol error with the last reason, not no answer', async () => {
    const r = await rig(onetouchVerioIq, {}, { retries: 2 });
    let serials = 0;
    r.cable.tamper = (f) => {
      if (f.message.length > 0 && r.sim.received.at(-1) === 'serial') {
        serials++;
        if (serials < 3) return [];
        const bad = Buffer.from(f.bytes);
        bad[bad.length - 1]! ^= 0xff;
        return [bad];
      }
      return [f.bytes];
    };
    await expect(r.session.command('download', {})).rejects.toThrow('no valid reply to read serial after 3 tries (bad-crc)');
    expect(r.host.state.status).toBe('error');
  });
});

describe('Verio IQ plain exchange', () => {
  for (const linkControl of [LINK.ACK, LINK.S, LINK.E]) {
    it(`a reply with link-control 0x${linkControl.toString(16)} is an unexpected frame; the request is sent again with no reset`, async () => {
      const r = await rig(onetouchVerioIq);
      r.cable.tamper = (f, i) => (i === 1 ? [frame([...f.message], linkControl)] : [f.bytes]);
      expect(await r.session.command('download', {})).toMatchObject({ duplicates: 0 });
      expect(badFrames(r.host)).toEqual([{ reason: 'unexpected-frame', detail: expect.stringContaining(`link-control 0x${linkControl.toString(16)} where 0x00 is expected`) }]);
      expect(r.sim.received.slice(0, 3)).toEqual(['version', 'serial', 'serial']);
      expect(r.hostFrames.every((f) => f.linkControl === 0)).toBe(true);
    });
  }
  it('Verio IQ, no retries: a reply with link-control 0x4 fails the download with unexpected-frame', async () => {
    const r = await rig(onetouchVerioIq, {}, { retries: 0 });
    r.cable.tamper = (f, i) => (i === 1 ? [frame([...f.message], LINK.ACK)] : [f.bytes]);
    await expect(r.session.command('download', {})).rejects.toThrow('no valid reply to read serial after 1 tries (unexpected-frame)');
  });
});

describe('replies', () => {
  it('a reply that does not parse is quarantined with its reason and asked again; every try bad: the parse reason', async () => {
    const r = await rig(onetouchUltraEasy, {}, { retries: 1 });
    // The serial reply with status 0x15 instead of 0x06.
    r.cable.tamper = (f, i) => (f.message.length > 0 && r.sim.received.at(-1) === 'serial' && i > 0 ? [frame([0x05, 0x15, ...f.message.subarray(2)], f.linkControl)] : [f.bytes]);
    await expect(r.session.command('download', {})).rejects.toThrow('no valid reply to read serial after 2 tries (error-status)');
    expect(badFrames(r.host).map((b) => b.reason)).toEqual(['error-status', 'error-status']);
    expect(r.host.quarantined.map((q) => q.reason)).toEqual(['error-status', 'error-status']);
    // The quarantined bytes are the reply message, as the meter sent it.
    expect(r.host.quarantined[0]!.bytes[1]).toBe(0x15);
  });

  it('a reply to another question (a record count for a record) is an unexpected reply, asked again', async () => {
    const r = await rig(onetouchUltraEasy);
    let swapped = false;
    r.cable.tamper = (f) => {
      if (!swapped && f.message.length > 0 && r.sim.received.at(-1) === 'record') {
        swapped = true;
        return [frame([0x05, 0x0f, 0x04, 0x00], f.linkControl)];
      }
      return [f.bytes];
    };
    expect(await r.session.command('download', {})).toEqual({ inserted: 4, duplicates: 0, records: 4 });
    expect(badFrames(r.host)).toEqual([{ reason: 'unexpected-reply', detail: expect.stringContaining('a count reply to read record') }]);
    expect(r.sim.received.filter((x) => x === 'record')).toHaveLength(5);
  });
});

describe('download', () => {
  it('a record with no real time is quarantined as index, seconds and value, reported, and the others committed', async () => {
    const r = await rig(onetouchVerioIq, {
      memory: [
        { time: '2024-05-01T07:30:00', value: 96 },
        { time: '2024-05-01T08:30:00', value: 120 },
      ],
    });
    // The newer record (index 0) with a time past 2099.
    r.cable.tamper = (f) => {
      if (f.message.length > 0 && r.sim.received.at(-1) === 'record' && r.sim.received.filter((x) => x === 'record').length === 1) {
        const m = Buffer.from(f.message);
        m.writeUInt32LE(0xfffffff0, 2); // seconds since 2000: beyond 2099
        return [encodeFrame(m, f.linkControl)];
      }
      return [f.bytes];
    };
    const result = await r.session.command('download', {});
    expect(result).toEqual({ inserted: 1, duplicates: 0, records: 1 });
    expect(r.host.quarantined).toHaveLength(1);
    const q = r.host.quarantined[0]!;
    expect(q.bytes).toHaveLength(10);
    expect(q.bytes.readUInt16LE(0)).toBe(0);
    expect(q.bytes.readUInt32LE(2)).toBe(0xfffffff0);
    expect(q.bytes.readUInt32LE(6)).toBe(120);
    expect(badFrames(r.host)[0]!.detail).toMatch(/record 0 cannot be read/);
    expect(r.host.commits[0]!.drafts.map((d) => d.observations[0]!.value)).toEqual([96]);
  });

  it('progress comes every 25 records up to 250, then every tenth of the count, and at the last', async () => {
    const memory = (n: number): { time: string; value: number }[] =>
      Array.from({ length: n }, (_, i) => ({ time: new Date(Date.UTC(2024, 0, 1) + i * 3_600_000).toISOString().slice(0, 19), value: 80 + (i % 50) }));
    const progress = (h: FakeHost): unknown[] => h.events.filter((e) => e.type === 'download_progress').map((e) => (e.data as { received: number }).received);
    const small = await rig(onetouchVerioIq, { memory: memory(60) });
    await small.session.command('download', {});
    expect(progress(small.host)).toEqual([25, 50, 60]);
    expect(small.host.events.find((e) => e.type === 'download_progress')!.message).toBe('25 of 60 records');
    const large = await rig(onetouchVerioIq, { memory: memory(261) });
    await large.session.command('download', {});
    expect(progress(large.host)).toEqual([27, 54, 81, 108, 135, 162, 189, 216, 243, 261]);
  }, 20_000);

  it('two records the same in memory are one record in the commit', async () => {
    const r = await rig(onetouchVerioIq, {
      memory: [
        { time: '2024-05-01T07:30:00', value: 96 },
        { time: '2024-05-01T07:30:00', value: 96 },
        { time: '2024-05-01T09:30:00', value: 101 },
      ],
    });
    expect(await r.session.command('download', {})).toEqual({ inserted: 2, duplicates: 0, records: 2 });
    expect(r.host.commits[0]!.drafts.map((d) => d.device_time)).toEqual(['2024-05-01T07:30:00', '2024-05-01T09:30:00']);
    expect(r.host.events.at(-1)!.message).toBe('downloaded 2 records: 2 new, 0 already stored');
  });
});

describe('conversations', () => {
  it('the default options: three tries (retries 2) with a one-second reply timeout', async () => {
    const r = await rig(onetouchUltraEasy, {}, { reply_timeout_ms: undefined });
    r.cable.tamper = (f) => (f.linkControl === (LINK.DISC | LINK.ACK) ? [frame([], LINK.ACK)] : [f.bytes]);
    await expect(r.session.command('download', {})).rejects.toThrow('the meter did not accept a link reset after 3 tries (unexpected-frame)');
    expect(r.sim.resets).toBe(3);
  });

  for (const driver of [onetouchUltraEasy, onetouchVerioIq]) {
    it(`${driver.id}: a frame left from before the conversation is dropped when it opens`, async () => {
      const r = await rig(driver);
      const before = r.received();
      await r.deviceEnd.write(frame([0x05, 0x06], LINK.ACK));
      await r.host.until(() => r.received() === before + 8);
      expect(await r.session.command('download', {})).toMatchObject({ duplicates: 0 });
      expect(r.host.events.filter((e) => e.type === 'bad_frame')).toEqual([]);
      expect(r.sim.resets).toBe(driver === onetouchUltraEasy ? 1 : 0);
    });
  }

  const requests: [string, string][] = [
    ['version', 'read version'],
    ['serial', 'read serial'],
    ['read-clock', 'read clock'],
    ['unit', 'read display unit'],
    ['count', 'read record count'],
    ['record', 'read record'],
  ];
  for (const [type, name] of requests) {
    it(`a meter silent after "${type}" is no answer to ${name}`, async () => {
      const r = await rig(onetouchVerioIq, {}, { retries: 0 });
      const at = new Date(Date.UTC(2030, 0, 1, 12, 0, 0));
      r.host.now = () => at;
      r.cable.tamper = (f) => (r.sim.received.at(-1) === type ? [] : [f.bytes]);
      await expect(r.session.command('download', {})).rejects.toThrow(`no answer to ${name}: the meter stopped answering`);
      expect(r.host.state.status).toBe('no-answer');
      expect(r.host.commits).toHaveLength(0);
      if (type === 'count' || type === 'record') {
        // What the meter said of itself before it went silent is on the device state.
        expect(r.host.state.last_seen).toBe(at.toISOString());
        expect(r.host.state).toMatchObject({ model: 'OneTouch Verio IQ', meter: { display_unit: 'mg/dL' } });
      }
    });
  }
});

describe('clock set', () => {
  it('clock/sync on a closed transport is refused before anything is sent', async () => {
    const { host: hostEnd } = memoryPair('closed');
    const host = new FakeHost({ id: 'c1', driver: 'onetouch-verio-iq', transport: { type: 'simulated' }, options: {} }, hostEnd);
    const session = onetouchVerioIq.createSession(host);
    pushStrict(cleanups, () => session.stop());
    await session.start();
    await expect(session.command('clock/sync', {})).rejects.toThrow(/the transport is not open/);
  });

  it('a meter that answers the set but reads back a clock 30 s ahead: clock-not-set', async () => {
    const r = await rig(onetouchVerioIq);
    const at = new Date(Date.UTC(2024, 5, 1, 10, 0, 0));
    r.host.now = () => at;
    const set = r.sim.deviceClock.set.bind(r.sim.deviceClock);
    r.sim.deviceClock.set = (naive) => {
      set(naive);
      r.sim.deviceClock.offsetS += 30;
    };
    await expect(r.session.command('clock/sync', {})).rejects.toThrow('the meter clock reads 30 s off the host time after the set');
    expect(r.host.events.at(-1)).toMatchObject({ type: 'device_error', data: { reason: 'clock-not-set' } });
  });

  it('a meter silent after the set: no answer to set clock', async () => {
    const r = await rig(onetouchVerioIq, {}, { retries: 0 });
    r.cable.tamper = (f) => (r.sim.received.at(-1) === 'write-clock' ? [] : [f.bytes]);
    await expect(r.session.command('clock/sync', {})).rejects.toThrow('no answer to set clock: the meter stopped answering');
  });

  for (const [ahead, fails] of [
    [5, false],
    [6, true],
    [-5, false],
    [-6, true],
  ] as const) {
    it(`a clock read back ${ahead} s off after the set ${fails ? 'is clock-not-set' : 'is set'}`, async () => {
      const r = await rig(onetouchVerioIq);
      // A fixed host time on a whole second: the meter clock is set to it and read back to the second.
      const at = new Date(Date.UTC(2024, 5, 1, 10, 0, 0));
      r.host.now = () => at;
      const set = r.sim.deviceClock.set.bind(r.sim.deviceClock);
      r.sim.deviceClock.set = (naive) => {
        set(naive);
        r.sim.deviceClock.offsetS += ahead;
      };
      const sync = r.session.command('clock/sync', {});
      if (fails) await expect(sync).rejects.toThrow(`the meter clock reads ${ahead} s off the host time after the set`);
      else expect(await sync).toMatchObject({ clock_skew_s: ahead });
    });
  }

  it('a clock that reads outside 2000–2099 after the set is invalid-date', async () => {
    const r = await rig(onetouchVerioIq);
    r.cable.tamper = (f) => (f.message.length > 0 && r.sim.received.at(-1) === 'read-clock' ? [rewriteClock(f, 0xfffffff0)] : [f.bytes]);
    await expect(r.session.command('clock/sync', {})).rejects.toThrow('the meter clock reads a time outside 2000–2099');
    expect(r.host.events.at(-1)).toMatchObject({ type: 'device_error', data: { reason: 'invalid-date' } });
  });
});

/** The Verio IQ clock reply with its 4-byte seconds replaced. */
function rewriteClock(f: Frame, seconds: number): Buffer {
  const m = Buffer.from(f.message);
  m.writeUInt32LE(seconds, m.length - 4);
  return encodeFrame(m, f.linkControl);
}
