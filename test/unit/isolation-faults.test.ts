/**
 * One device's fault never stops the others, and no peer can hold a device (issue 16): a bad
 * option (the driver throws in its session constructor) gives that device status `error` and an
 * event while the daemon and the other devices run on; a port in use is listened on again with
 * backoff once it is free; a store path under /proc or /sys is refused before anything touches it,
 * naming the setting; callers of a listener are let go when quiet, capped per peer, and counted
 * rather than reported per attempt; an event about the daemon is not pushed out of the held events
 * by device events.
 */
import net from 'node:net';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import { EventBus } from '../../src/event-bus.ts';
import { Bridge, makeEvent } from '../../src/extensions/bridge.ts';
import { Store } from '../../src/store/store.ts';
import { ListenerTransport, type ListenerRefusal } from '../../src/transports/listener.ts';
import type { TcpServerTransportOptions } from '../../src/transports/transport.ts';
import { checkWritableFile } from '../../src/util/paths.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { tempDir } from '../helpers/daemon.ts';
import { deviceManagerRig } from '../helpers/device-manager-rig.ts';
import { sendAstmMessage } from '../helpers/astm-tcp-sender.ts';
import { eventually } from '../helpers/eventually.ts';
import { freePort } from '../helpers/mosquitto.ts';
import { unitServices } from '../helpers/unit-services.ts';

const cleanups = useCleanups();

const MESSAGE = 'H|\\^&|||C111^Roche^c111^4.2.2.1730^1^13147\rP|1\rO|1||S1\rR|1|^^^550|95.2|U/L||N||F||||20230727162028\r';

async function holdPort(port: number): Promise<net.Server> {
  const other = net.createServer();
  await new Promise<void>((resolve) => other.listen(port, '127.0.0.1', () => resolve()));
  cleanups.push(() => new Promise<void>((resolve) => (other.listening ? other.close(() => resolve()) : resolve())));
  return other;
}

describe('one device’s fault never stops the others', () => {
  it('a bad driver option: that device is status error with the reason and an event; the other device stores its message', async () => {
    const [badPort, goodPort] = [await freePort(), await freePort()];
    // Before: the session constructor's throw went through start() and the daemon exited.
    const r = await deviceManagerRig({
      drivers,
      cleanups,
      devices: [
        { id: 'bad', driver: 'astm', transport: { type: 'tcp-server', port: badPort }, options: { dialect: 'no-such-dialect' } },
        { id: 'good', driver: 'astm', transport: { type: 'tcp-server', port: goodPort } },
      ],
    });
    await eventually('bad state', () => r.states('bad').some((s) => s.status === 'error'));
    const state = r.states('bad').at(-1)!;
    expect(state.status_detail).toMatch(/options\.dialect: must be one of/);
    expect(r.events.some((e) => e.type === 'config_error' && e.device === 'bad' && /options\.dialect/.test(e.message))).toBe(true);
    expect(r.manager.list().map((d) => [d.id, d.availability])).toEqual([
      ['bad', 'offline'],
      ['good', 'offline'],
    ]);
    // Nothing listens for the bad device.
    await expect(
      new Promise<void>((resolve, reject) => net.connect({ host: '127.0.0.1', port: badPort }).once('connect', resolve).once('error', reject)),
    ).rejects.toThrow(/ECONNREFUSED/);
    await sendAstmMessage(goodPort, MESSAGE, cleanups);
    await eventually('stored', () => r.store.recordCount() === 1);
    const response = r.response('bad', 'status');
    r.request('bad', 'status', {});
    expect(await response).toMatchObject({ status: 'error', error: expect.stringMatching(/options\.dialect/) });
  });

  it('a tcp-server port in use: port-missing, then listened on again once free, and the device works', async () => {
    const port = await freePort();
    const other = await holdPort(port);
    const r = await deviceManagerRig({ drivers, cleanups, devices: [{ id: 'chem', driver: 'astm', transport: { type: 'tcp-server', port } }] });
    await eventually('port-missing', () => r.states('chem').some((s) => s.status === 'port-missing'));
    expect(r.states('chem').at(-1)!.status_detail).toMatch(/the port is already in use/);
    await new Promise<void>((resolve) => other.close(() => resolve()));
    // Retried after 1 s, 2 s, …: before, it was never retried.
    await eventually('listening again', () => r.states('chem').at(-1)?.status === 'idle', 10_000);
    expect(r.events.some((e) => e.type === 'connected' && e.device === 'chem' && /listening/.test(e.message))).toBe(true);
    await sendAstmMessage(port, MESSAGE, cleanups);
    await eventually('stored', () => r.store.recordCount() === 1);
  });
});

describe('paths are checked before use, naming the setting', () => {
  it.each([
    ['/proc/poctd/poctd.db', /store\.path: \/proc\/poctd\/poctd\.db is under \/proc, a kernel file system/],
    ['/proc/self/poctd.db', /store\.path: .* is under \/proc/],
    ['/sys/poctd.db', /store\.path: .* is under \/sys/],
    ['/dev/shm/x/../../null', /store\.path: .* is under \/dev/],
  ])('%s', (path, message) => {
    const started = Date.now();
    expect(() => checkWritableFile(path, 'store.path')).toThrow(message);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('a link that leads under /proc, a directory, and a file in the way are refused; a fresh directory is fine', () => {
    const dir = tempDir('poctd-paths-');
    symlinkSync('/proc/self', join(dir, 'link'));
    expect(() => checkWritableFile(join(dir, 'link', 'db', 'poctd.db'), 'store.path')).toThrow(/store\.path: .* leads \(through .*\) under \/proc/);
    mkdirSync(join(dir, 'adir'));
    expect(() => checkWritableFile(join(dir, 'adir'), 'store.path')).toThrow(/store\.path: .* is a directory/);
    writeFileSync(join(dir, 'afile'), 'x');
    expect(() => checkWritableFile(join(dir, 'afile', 'poctd.db'), 'store.path')).toThrow(/store\.path: .*afile is a file/);
    expect(() => checkWritableFile(join(dir, 'new', 'deeper', 'poctd.db'), 'store.path')).not.toThrow();
  });
});

async function listener(id: string, options: Omit<TcpServerTransportOptions, 'type'>, refusals?: ListenerRefusal[]): Promise<ListenerTransport> {
  const t = new ListenerTransport({ type: 'tcp-server', ...options }, id, refusals ? (x) => refusals.push(x) : undefined);
  cleanups.push(() => t.close());
  return t;
}

async function caller(port: number): Promise<{ socket: net.Socket; closed: Promise<void> }> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => undefined);
  cleanups.push(async () => void socket.destroy());
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return { socket, closed };
}

describe('no peer can hold a listener', () => {
  it('one caller at a time: a held caller gone quiet yields to the next instead of locking it out', async () => {
    const port = await freePort();
    const refusals: ListenerRefusal[] = [];
    const t = await listener('meter', { port, idle_timeout_ms: 300 }, refusals);
    await t.open();
    const got: string[] = [];
    t.on('data', (c: Buffer) => got.push(c.toString('latin1')));
    const first = await caller(port);
    first.socket.write('one\n');
    await eventually('first heard', () => got.join('') === 'one\n');
    // Active: a second caller right away is refused.
    const busy = await caller(port);
    await busy.closed;
    expect(refusals.map((x) => x.reason)).toEqual(['device-busy']);
    // Quiet for longer than idle_timeout_ms: the next caller takes the device.
    await new Promise((res) => setTimeout(res, 400));
    const second = await caller(port);
    await first.closed;
    second.socket.write('two\n');
    await eventually('second heard', () => got.join('') === 'one\ntwo\n');
    expect(refusals).toHaveLength(1);
  });

  it('a caller that spoke and went quiet is let go after quiet_timeout_ms', async () => {
    const port = await freePort();
    const t = await listener('solo', { port, quiet_timeout_ms: 300 });
    t.serve(() => undefined);
    await t.open();
    const c = await caller(port);
    c.socket.write('hello');
    const started = Date.now();
    await c.closed;
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });

  it('connections per peer are capped', async () => {
    const port = await freePort();
    const refusals: ListenerRefusal[] = [];
    const t = await listener('solo', { port, max_connections_per_peer: 2 }, refusals);
    t.serve(() => undefined);
    await t.open();
    await caller(port);
    await caller(port);
    const third = await caller(port);
    await third.closed;
    expect(refusals.map((x) => [x.reason, x.count])).toEqual([['too-many-from-peer', 1]]);
  });

  it('a connection storm: refusals counted, only the first few due for an event', async () => {
    const port = await freePort();
    const refusals: ListenerRefusal[] = [];
    const t = await listener('solo', { port, peers: ['10.9.9.9'] }, refusals);
    t.serve(() => undefined);
    await t.open();
    await Promise.all(Array.from({ length: 40 }, async () => (await caller(port)).closed));
    expect(refusals).toHaveLength(40);
    expect(refusals.filter((x) => x.due)).toHaveLength(5);
    expect(refusals.filter((x) => x.first)).toHaveLength(1);
    expect(Math.max(...refusals.map((x) => x.count))).toBe(40);
  });

  it('through the device manager: 30 refused strangers make 5 events and never flip the device’s availability', async () => {
    const port = await freePort();
    const r = await deviceManagerRig({
      drivers,
      cleanups,
      devices: [{ id: 'chem', driver: 'astm', transport: { type: 'tcp-server', port, peers: ['10.9.9.9'] } }],
    });
    // The listener reports each refusal before it closes the caller: once all 30 are closed, all
    // 30 have been counted, so there is nothing left to wait for.
    await Promise.all(Array.from({ length: 30 }, async () => (await caller(port)).closed));
    await eventually('events', () => r.events.filter((e) => e.type === 'listener_refused').length === 5);
    expect(r.events.filter((e) => e.type === 'listener_refused')).toHaveLength(5);
    expect(r.events.filter((e) => e.type === 'listener_refused').at(-1)!.data).toMatchObject({ reason: 'peer-not-allowed', count: 5 });
    // No caller was ever the device: it stays offline throughout.
    expect(r.mqtt.on('poct/device/chem/availability')).toEqual(r.mqtt.on('poct/device/chem/availability').map(() => ({ state: 'offline' })));
    expect(r.events.filter((e) => e.type === 'connected' || e.type === 'disconnected')).toEqual([]);
  });
});

describe('held events', () => {
  it('an event about the daemon (mqtt_error) survives 300 device events raised while the broker is away', async () => {
    const store = new Store(join(tempDir('poctd-bridge-'), 'poctd.db'));
    cleanups.push(async () => store.close());
    const published: Array<{ topic: string; payload: { type?: string } }> = [];
    const bus = new EventBus();
    const mqtt = {
      connected: false,
      reconnects: 0,
      publish: async (topic: string, payload: unknown) => void published.push({ topic, payload: payload as { type?: string } }),
    };
    const services = unitServices({
      bus,
      store,
      mqtt,
    });
    const bridge = new Bridge(services);
    await bridge.start();
    cleanups.push(() => bridge.stop());
    bus.emit('bridgeEvent', makeEvent('mqtt_error', null, 'MQTT: Connection refused: Not authorized', new Date()));
    for (let i = 0; i < 300; i++) bus.emit('bridgeEvent', makeEvent('bad_frame', 'chem', `bad frame ${i}`, new Date()));
    mqtt.connected = true;
    bus.emit('mqttConnected', { reconnect: true });
    await eventually('flushed', () => published.filter((p) => p.topic === 'poct/bridge/event').length === 200);
    const events = published.filter((p) => p.topic === 'poct/bridge/event').map((p) => p.payload);
    expect(events[0]!.type).toBe('mqtt_error');
    expect(events.filter((e) => e.type === 'bad_frame')).toHaveLength(199);
  });
});
