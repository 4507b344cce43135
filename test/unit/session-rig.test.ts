import { describe, expect, it } from 'vitest';
import type { DeviceConfig } from '../../src/config/types.ts';
import type { DeviceSimulator, DriverSession, SessionHost } from '../../src/driver-sdk/index.ts';
import type { MemoryTransport } from '../../src/transports/memory.ts';
import type { ByteTransport } from '../../src/transports/transport.ts';
import { runCleanups, type Cleanups } from '../helpers/cleanups.ts';
import { FakeHost } from '../helpers/fake-host.ts';
import { onetouchUltra2 } from '../../drivers/glucose/onetouch-ultra2/definition.ts';
import type { Ultra2Simulator } from '../../drivers/glucose/onetouch-ultra2/simulator.ts';
import { driverRig, sessionRig } from '../helpers/session-rig.ts';

/** Answers every piece it receives with the same bytes upper-cased. */
class ShoutingDevice implements DeviceSimulator {
  readonly pieces: string[] = [];
  detaches = 0;
  private transport: ByteTransport | null = null;

  attach(transport: ByteTransport): void {
    this.transport = transport;
    transport.on('data', this.onData);
  }

  detach(): void {
    this.detaches++;
    this.transport?.off('data', this.onData);
    this.transport = null;
  }

  private readonly onData = (chunk: Buffer): void => {
    this.pieces.push(chunk.toString());
    void this.transport?.write(Buffer.from(chunk.toString().toUpperCase()));
  };
}

/** Notes what the rig does to it, and whether the cable was open when it started. */
class NotingSession implements DriverSession {
  heard = '';
  readonly heardPieces: string[] = [];
  openAtStart: boolean | null = null;
  stops = 0;

  constructor(readonly host: SessionHost) {}

  async start(): Promise<void> {
    this.openAtStart = this.host.transport.isOpen;
    this.host.transport.on('data', (b: Buffer) => {
      this.heard += b.toString();
      this.heardPieces.push(b.toString());
    });
  }

  failStop = false;

  async stop(): Promise<void> {
    this.stops++;
    if (this.failStop) throw new Error('stop failed');
  }

  async command(): Promise<unknown> {
    return null;
  }
}

const DEVICE = { id: 'rig-1', driver: 'none', transport: { type: 'simulated' as const }, options: { a: 1 } };

/** A host a test extends, as one that keeps what the session logs. */
class TaggedHost extends FakeHost {
  readonly tag = 'tagged';
}

function rig(
  setup: { chunkSize?: number; deviceChunkSize?: number; start?: boolean; open?: boolean; timezone?: string; host?: (d: DeviceConfig, t: MemoryTransport) => FakeHost },
  cleanups: Cleanups,
) {
  return sessionRig({ cable: 'rig', device: DEVICE, simulator: new ShoutingDevice(), createSession: (h) => new NotingSession(h), cleanups, ...setup });
}

describe('sessionRig', () => {
  it('opens the host end and leaves the start to the test by default; bytes cross both ways, host→device in chunkSize pieces', async () => {
    const cleanups: Cleanups = [];
    const r = await rig({ chunkSize: 3, timezone: 'Asia/Tokyo' }, cleanups);
    expect(r.hostEnd.isOpen).toBe(true);
    expect(r.deviceEnd.isOpen).toBe(true);
    expect(r.session.openAtStart).toBeNull();
    expect(r.host.device).toBe(DEVICE);
    expect(r.host.timezone).toBe('Asia/Tokyo');
    expect(r.session.host).toBe(r.host);
    await r.session.start();
    await r.hostEnd.write(Buffer.from('hello'));
    await r.host.until(() => r.session.heard === 'HELLO');
    expect(r.sim.pieces).toEqual(['hel', 'lo']);
    await r.teardown();
  });

  it("puts the session on the test's own host when given one, with the timezone set on it; device→host bytes arrive in deviceChunkSize pieces", async () => {
    const cleanups: Cleanups = [];
    const r = await rig({ host: (d, t) => new TaggedHost(d, t), deviceChunkSize: 2, timezone: 'Asia/Tokyo' }, cleanups);
    expect(r.host).toBeInstanceOf(TaggedHost);
    expect(r.host.device).toBe(DEVICE);
    expect(r.host.transport).toBe(r.hostEnd);
    expect(r.host.timezone).toBe('Asia/Tokyo');
    expect(r.session.host).toBe(r.host);
    await r.session.start();
    await r.hostEnd.write(Buffer.from('hello'));
    await r.host.until(() => r.session.heard === 'HELLO');
    expect(r.sim.pieces).toEqual(['hello']);
    expect(r.session.heardPieces).toEqual(['HE', 'LL', 'O']);
    await runCleanups(cleanups);
  });

  it('starts the session before it opens the host end, or leaves the end closed for the test to plug in', async () => {
    const cleanups: Cleanups = [];
    const started = await rig({ start: true }, cleanups);
    expect(started.session.openAtStart).toBe(false);
    expect(started.hostEnd.isOpen).toBe(true);
    const unplugged = await rig({ start: true, open: false }, cleanups);
    expect(unplugged.session.openAtStart).toBe(false);
    expect(unplugged.hostEnd.isOpen).toBe(false);
    expect(unplugged.deviceEnd.isOpen).toBe(true);
    await runCleanups(cleanups);
  });

  it('registers one teardown that stops the session, detaches the simulator and closes both ends, once however often it is called', async () => {
    const cleanups: Cleanups = [];
    const r = await rig({}, cleanups);
    expect(cleanups).toHaveLength(1);
    await Promise.all([r.teardown(), cleanups[0]!()]);
    await r.teardown();
    expect(r.session.stops).toBe(1);
    expect(r.sim.detaches).toBe(1);
    expect(r.hostEnd.isOpen).toBe(false);
    expect(r.deviceEnd.isOpen).toBe(false);
  });

  it('a session whose stop fails still has its simulator detached and both ends closed', async () => {
    const r = await rig({}, []);
    r.session.failStop = true;
    await expect(r.teardown()).rejects.toThrow(/stop failed/);
    expect(r.sim.detaches).toBe(1);
    expect(r.hostEnd.isOpen).toBe(false);
    expect(r.deviceEnd.isOpen).toBe(false);
  });

  it("registers its teardown as strict: a failing stop fails the test's cleanup, and the steps registered before it still run", async () => {
    const cleanups: Cleanups = [];
    let brokerStopped = false;
    cleanups.push(async () => (brokerStopped = true));
    const r = await rig({}, cleanups);
    r.session.failStop = true;
    await expect(runCleanups(cleanups)).rejects.toThrow(/stop failed/);
    expect(brokerStopped).toBe(true);
    expect(r.hostEnd.isOpen).toBe(false);
  });
});

describe('driverRig', () => {
  const MEMORY = [{ time: '2024-05-01T07:30:00', value: 96 }];
  const DEFAULTS = { cable: 'u2', deviceId: 'rig-u2', options: { reply_timeout_ms: 150 }, simulator: { memory: MEMORY, seed: 1 }, timezone: 'Europe/Paris', chunkSize: 2 };

  it("rigs the driver's own simulator to its session on the defaults; a test's options override them", async () => {
    const cleanups: Cleanups = [];
    const rig = driverRig<Ultra2Simulator>(onetouchUltra2, DEFAULTS, cleanups);
    const plain = await rig();
    expect(plain.host.device).toEqual({ id: 'rig-u2', driver: 'onetouch-ultra2', transport: { type: 'simulated' }, options: { reply_timeout_ms: 150 } });
    expect(plain.host.timezone).toBe('Europe/Paris');
    expect(plain.hostEnd.chunkSize).toBe(2);
    expect(plain.hostEnd.isOpen).toBe(true);
    await plain.session.start();
    await plain.host.until(() => plain.host.types().includes('download_finished'));
    expect(plain.host.commits[0]!.drafts.map((d) => d.key)).toEqual(['2024-05-01T07:30:00|96|P']);

    const varied = await rig({ memory: [] }, { options: { reply_timeout_ms: 90 }, poll_interval: 5 }, { open: false });
    expect(varied.sim.memory).toEqual([]);
    expect(varied.host.device).toMatchObject({ options: { reply_timeout_ms: 90 }, poll_interval: 5 });
    expect(varied.hostEnd.isOpen).toBe(false);
    expect(DEFAULTS.options).toEqual({ reply_timeout_ms: 150 });
    expect(plain.host.device.options).not.toBe(DEFAULTS.options);
    expect(cleanups).toHaveLength(2);
    await runCleanups(cleanups);
  });
});
