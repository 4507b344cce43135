import { UsbPrinterTransport } from '../../src/transports/usb-printer.ts';
import { DicomScpTransport } from '../../src/protocols/dicom/scp-transport.ts';
import { pbkdf2, pbkdf2Sync } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { closeSync, constants as fsConstants, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HidTransport, type HidDeviceHandle, type HidOpener } from '../../src/transports/hid.ts';
import { buildTransport, waitForOpen } from '../../src/transports/index.ts';
import { backoffDelay } from '../../src/transports/reconnecting.ts';
import { SerialTransport } from '../../src/transports/serial.ts';
import { ListenerTransport } from '../../src/transports/listener.ts';
import { TcpClientTransport, TcpServerTransport } from '../../src/transports/tcp.ts';
import type { ByteTransport } from '../../src/transports/transport.ts';
import { runningPtyPairs, startPtyPair, type PtyPair } from '../helpers/socat.ts';
import { requireTool } from '../helpers/tools.ts';
import { seededRandom } from '../../src/util/random.ts';
import { pushStrict, useCleanups } from '../helpers/cleanups.ts';
import { eventually } from '../helpers/eventually.ts';

// ---------------------------------------------------------------------------------------------
// Test plumbing: everything a test starts is registered here and torn down after it, pass or fail.

// Registered before useCleanups: after-hooks run in reverse, so this checks once everything is torn down.
afterEach(() => {
  vi.restoreAllMocks();
  expect(runningPtyPairs()).toBe(0);
});
const cleanups = useCleanups();
/** Strict: a transport that cannot be closed fails its test. */
function onCleanup(fn: () => Promise<void> | void): void {
  pushStrict(cleanups, async () => {
    await fn();
  });
}

async function ptyPair(options?: { a: string; b: string }): Promise<PtyPair> {
  const pair = await startPtyPair(options);
  onCleanup(() => pair.stop());
  return pair;
}

/** A pty pair on paths that outlive it, so that the port can vanish and come back on the same path. */
async function vanishingPtyPair(): Promise<{ links: { a: string; b: string }; vanish: () => Promise<void> }> {
  const dir = tempDir();
  const links = { a: path.join(dir, 'ttyA'), b: path.join(dir, 'ttyB') };
  const pair = await startPtyPair(links);
  let vanished = false;
  onCleanup(async () => {
    if (!vanished) await pair.stop();
  });
  const vanish = async (): Promise<void> => {
    await pair.stop();
    vanished = true;
  };
  return { links, vanish };
}

function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'poctd-transports-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function track<T extends ByteTransport>(t: T): T {
  // Errors are asserted through explicit listeners; keep a sink so none is unhandled.
  t.on('error', () => undefined);
  onCleanup(() => t.close());
  return t;
}

function once<T = unknown>(emitter: EventEmitter, event: string, timeoutMs = 5000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`no '${event}' event within ${timeoutMs} ms`));
    }, timeoutMs);
    const handler = (value: T): void => {
      clearTimeout(timer);
      resolve(value);
    };
    emitter.once(event, handler);
  });
}

/** Collects `data` until `length` bytes have arrived. */
function collect(t: ByteTransport, length: number, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let have = 0;
    const timer = setTimeout(() => {
      t.off('data', onData);
      reject(new Error(`only ${have} of ${length} bytes arrived within ${timeoutMs} ms`));
    }, timeoutMs);
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      have += chunk.length;
      if (have >= length) {
        clearTimeout(timer);
        t.off('data', onData);
        resolve(Buffer.concat(chunks));
      }
    };
    t.on('data', onData);
  });
}
function randomBytes(n: number, random: () => number): Buffer {
  const buf = Buffer.alloc(n);
  for (let i = 0; i < n; i++) buf[i] = Math.floor(random() * 256);
  return buf;
}

/** Writes `payload` in random-sized chunks (1..max bytes). */
async function writeChunked(t: ByteTransport, payload: Buffer, random: () => number, max = 700): Promise<number> {
  let writes = 0;
  for (let i = 0; i < payload.length; ) {
    const size = 1 + Math.floor(random() * max);
    await t.write(payload.subarray(i, i + size));
    i += size;
    writes++;
  }
  return writes;
}

const FAST = { reconnect_min_ms: 30, reconnect_max_ms: 200 } as const;

/** Keeps every libuv threadpool thread busy for about `ms`, so that file reads queued now wait. */
function occupyThreadpool(ms: number): Promise<void> {
  const sample = 5000;
  let msPerIteration = Infinity;
  for (let i = 0; i < 3; i++) {
    const start = performance.now();
    pbkdf2Sync('poctd', 'salt', sample, 32, 'sha256');
    msPerIteration = Math.min(msPerIteration, (performance.now() - start) / sample);
  }
  const iterations = Math.ceil(ms / msPerIteration);
  const threads = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  const jobs = Array.from(
    { length: threads },
    () => new Promise<void>((resolve, reject) => pbkdf2('poctd', 'salt', iterations, 32, 'sha256', (err) => (err ? reject(err) : resolve()))),
  );
  return Promise.all(jobs).then(() => undefined);
}

// ---------------------------------------------------------------------------------------------

describe('backoff', () => {
  it('doubles from min to max with jitter in [0.5, 1)', () => {
    expect(backoffDelay(0, 500, 30_000, () => 0.999999)).toBe(500);
    expect(backoffDelay(0, 500, 30_000, () => 0)).toBe(250);
    expect(backoffDelay(3, 500, 30_000, () => 0.999999)).toBe(4000);
    expect(backoffDelay(20, 500, 30_000, () => 0.999999)).toBe(30_000);
    expect(backoffDelay(1000, 500, 30_000, () => 0)).toBe(15_000);
  });
});

describe('test tools', () => {
  it('requireTool finds socat and names the apt package for a missing tool', () => {
    expect(requireTool('socat')).toMatch(/socat$/);
    expect(() => requireTool('poctd-no-such-tool', 'poctd-pkg')).toThrow(
      'poctd-no-such-tool not found: run apt-get install -y poctd-pkg',
    );
  });
});

describe('SerialTransport over a socat pty pair', () => {
  it('carries 10 kB of random chunks each way, byte for byte', async () => {
    const pair = await ptyPair();
    const left = track(new SerialTransport({ type: 'serial', path: pair.a, baud_rate: 115200 }));
    const right = track(new SerialTransport({ type: 'serial', path: pair.b, baud_rate: 115200 }));
    await left.open();
    await right.open();
    expect(left.isOpen).toBe(true);
    expect(right.isOpen).toBe(true);

    const random = seededRandom(0x5eed);
    const there = randomBytes(10 * 1024, random);
    const arrivedThere = collect(right, there.length);
    const writes = await writeChunked(left, there, random);
    expect(writes).toBeGreaterThan(10);
    expect((await arrivedThere).equals(there)).toBe(true);

    const back = randomBytes(10 * 1024, random);
    const arrivedBack = collect(left, back.length);
    await writeChunked(right, back, random);
    expect((await arrivedBack).equals(back)).toBe(true);
  });

  it('reports a vanished port, then reopens by itself when it comes back on the same path', async () => {
    const { links, vanish } = await vanishingPtyPair();

    const host = track(new SerialTransport({ type: 'serial', path: links.a, ...FAST }));
    const device = track(new SerialTransport({ type: 'serial', path: links.b, ...FAST }));
    await host.open();
    await device.open();
    expect(host.isOpen).toBe(true);

    const closes: number[] = [];
    host.on('close', () => closes.push(Date.now()));
    const errors: Error[] = [];
    host.on('error', (err: Error) => errors.push(err));

    const closed = once(host, 'close');
    const errored = once<Error>(host, 'error');
    await vanish();
    await closed;
    const err = await errored;
    expect(err.message).toBe(`serial port ${links.a} is missing`);
    expect(host.isOpen).toBe(false);
    expect(host.lastError?.message).toBe(`serial port ${links.a} is missing`);
    await expect(host.write(Buffer.from('x'))).rejects.toThrow(/not open/);

    // Several reconnect attempts fail while it is away: still one close and one error.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(closes).toHaveLength(1);
    expect(errors).toHaveLength(1);

    const reopened = once(host, 'open');
    const deviceReopened = once(device, 'open');
    await ptyPair(links);
    await reopened;
    await deviceReopened;
    expect(host.isOpen).toBe(true);
    expect(host.lastError).toBeUndefined();

    const payload = Buffer.from('\x02after reconnect\x03\r\n');
    const arrived = collect(device, payload.length);
    await host.write(payload);
    expect((await arrived).equals(payload)).toBe(true);

    // close() stops reconnecting: no open event after it even though the port is there.
    await host.close();
    const lateOpen = vi.fn();
    host.on('open', lateOpen);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(lateOpen).not.toHaveBeenCalled();
    expect(closes).toHaveLength(2);
  });

  it('notices a port that hung up under a read already on its way, and reopens it', async () => {
    const { links, vanish } = await vanishingPtyPair();
    const device = track(new SerialTransport({ type: 'serial', path: links.b, ...FAST }));
    await device.open();
    expect(device.isOpen).toBe(true);

    // Bytes arrive while every threadpool thread is busy: the read they wake waits in the queue
    // until after the pty has hung up, and a hung-up tty gives that read 0 bytes, not an error.
    const otherEnd = openSync(links.a, fsConstants.O_RDWR | fsConstants.O_NOCTTY | fsConstants.O_NONBLOCK);
    onCleanup(() => closeSync(otherEnd));
    const threadpoolFree = occupyThreadpool(500);
    writeSync(otherEnd, Buffer.from('x'));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const closed = once(device, 'close', 10_000);
    await vanish();
    await threadpoolFree;
    await closed;
    expect(device.isOpen).toBe(false);
    expect(device.lastError?.message).toBe(`serial port ${links.b} is missing`);

    const reopened = once(device, 'open');
    await ptyPair(links);
    await reopened;
    expect(device.isOpen).toBe(true);
  });

  it('open() resolves when the port is absent and opens once it appears', async () => {
    const dir = tempDir();
    const links = { a: path.join(dir, 'later-a'), b: path.join(dir, 'later-b') };
    const host = track(new SerialTransport({ type: 'serial', path: links.a, ...FAST }));
    const errored = once<Error>(host, 'error');
    await host.open(); // must not reject
    expect(host.isOpen).toBe(false);
    expect((await errored).message).toBe(`serial port ${links.a} is missing`);
    expect(host.lastError?.message).toBe(`serial port ${links.a} is missing`);
    await expect(host.write(Buffer.from('x'))).rejects.toThrow(/is missing/);

    const opened = once(host, 'open');
    await ptyPair(links);
    await opened;
    expect(host.isOpen).toBe(true);

    const device = track(new SerialTransport({ type: 'serial', path: links.b }));
    await device.open();
    const arrived = collect(host, 5);
    await device.write(Buffer.from('hello'));
    expect((await arrived).toString()).toBe('hello');
  });

  it('setSignals reports a clear error on a pty (no modem lines) instead of throwing elsewhere', async () => {
    const pair = await ptyPair();
    const host = track(new SerialTransport({ type: 'serial', path: pair.a }));
    await expect(host.setSignals({ dtr: false })).rejects.toThrow(/not open/);
    await host.open();
    await expect(host.setSignals({ dtr: false })).rejects.toThrow(`serial port ${pair.a}: cannot set DTR/RTS`);
    expect(host.isOpen).toBe(true);
  });

  it('buildTransport puts the driver serial defaults under the user options, and builds each registered kind', async () => {
    const { transport: t } = await buildTransport(
      { type: 'serial', path: '/dev/ttyUSB9', baud_rate: 19200 },
      { serialDefaults: { baud_rate: 9600, data_bits: 7, parity: 'even' } },
    );
    expect(t).toBeInstanceOf(SerialTransport);
    expect((t as SerialTransport).options).toMatchObject({ path: '/dev/ttyUSB9', baud_rate: 19200, data_bits: 7, parity: 'even' });
    await expect(buildTransport({ type: 'simulated' })).rejects.toThrow(/simulator/);
    expect((await buildTransport({ type: 'tcp', host: '127.0.0.1', port: 9100 })).transport).toBeInstanceOf(TcpClientTransport);
    // A device's tcp-server is its handle on a listener that devices naming the same port share.
    expect((await buildTransport({ type: 'tcp-server', port: 0 })).transport).toBeInstanceOf(ListenerTransport);
    expect((await buildTransport({ type: 'hid', vendor_id: '1a61', product_id: '3410' })).transport).toBeInstanceOf(HidTransport);
    expect((await buildTransport({ type: 'usb-printer', path: '/dev/usb/lp0' })).transport).toBeInstanceOf(UsbPrinterTransport);
    expect((await buildTransport({ type: 'dicom-scp', port: 0, allowed_callers: ['US_ROOM2'] })).transport).toBeInstanceOf(DicomScpTransport);
    await expect(buildTransport({ type: 'usb-lp' } as never)).rejects.toThrow(/unknown transport type "usb-lp" \(known: serial, tcp, tcp-server, hid, simulated, usb-printer, dicom-scp\)/);
  });
});

describe('TCP transports on loopback', () => {
  async function server(port = 0): Promise<TcpServerTransport> {
    const s = track(new TcpServerTransport({ type: 'tcp-server', port }));
    await s.open();
    return s;
  }

  it('carries data both ways and sets no-delay on both sockets', async () => {
    const noDelay = vi.spyOn(net.Socket.prototype, 'setNoDelay');
    const srv = await server();
    const port = srv.address()!.port;
    expect(srv.address()!.address).toBe('127.0.0.1');

    const serverOpen = once(srv, 'open');
    const client = track(new TcpClientTransport({ type: 'tcp', host: '127.0.0.1', port }));
    await client.open();
    await serverOpen;
    expect(client.isOpen).toBe(true);
    expect(srv.isOpen).toBe(true);
    const calledWithTrue = noDelay.mock.calls.filter((c) => c[0] === true || c[0] === undefined).length;
    expect(calledWithTrue).toBeGreaterThanOrEqual(2); // the client's socket and the accepted one

    const random = seededRandom(42);
    const up = randomBytes(10 * 1024, random);
    const gotUp = collect(srv, up.length);
    await writeChunked(client, up, random);
    expect((await gotUp).equals(up)).toBe(true);

    const down = randomBytes(10 * 1024, random);
    const gotDown = collect(client, down.length);
    await writeChunked(srv, down, random);
    expect((await gotDown).equals(down)).toBe(true);
  });

  it('refuses a second concurrent connection with an error event and keeps the first', async () => {
    const srv = await server();
    const port = srv.address()!.port;
    const client = track(new TcpClientTransport({ type: 'tcp', host: '127.0.0.1', port }));
    const serverOpen = once(srv, 'open');
    await client.open();
    await serverOpen;

    const refused = once<Error>(srv, 'error');
    const intruder = net.connect({ host: '127.0.0.1', port });
    intruder.on('error', () => undefined);
    onCleanup(() => void intruder.destroy());
    const intruderClosed = once(intruder, 'close');
    expect((await refused).message).toMatch(/refused a second connection from 127\.0\.0\.1:\d+; 127\.0\.0\.1:\d+ is already connected/);
    await intruderClosed;

    expect(srv.isOpen).toBe(true);
    const got = collect(srv, 4);
    await client.write(Buffer.from('ping'));
    expect((await got).toString()).toBe('ping');

    // When the first device leaves, the next may connect.
    const serverClosed = once(srv, 'close');
    await client.close();
    await serverClosed;
    const again = once(srv, 'open');
    const second = track(new TcpClientTransport({ type: 'tcp', host: '127.0.0.1', port }));
    await second.open();
    await again;
  });

  it('the client reconnects by itself after the server restarts', async () => {
    const srv = await server();
    const port = srv.address()!.port;
    const client = track(new TcpClientTransport({ type: 'tcp', host: '127.0.0.1', port, ...FAST }));
    const serverOpen = once(srv, 'open');
    await client.open();
    await serverOpen;

    const clientClosed = once(client, 'close');
    const clientError = once<Error>(client, 'error');
    await srv.close();
    await clientClosed;
    expect((await clientError).message).toMatch(new RegExp(`tcp 127\\.0\\.0\\.1:${port}: `));
    expect(client.isOpen).toBe(false);
    await eventually('a refused reconnect attempt', () => /connection refused/.test(client.lastError?.message ?? ''), 5000);

    const restarted = track(new TcpServerTransport({ type: 'tcp-server', port }));
    const serverOpenAgain = once(restarted, 'open');
    const clientOpenAgain = once(client, 'open');
    await restarted.open();
    await clientOpenAgain;
    await serverOpenAgain;
    const got = collect(restarted, 5);
    await client.write(Buffer.from('again'));
    expect((await got).toString()).toBe('again');
  });

  it('client open() resolves with nobody listening; waitForOpen reports why', async () => {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));

    const client = track(new TcpClientTransport({ type: 'tcp', host: '127.0.0.1', port, ...FAST }));
    await client.open();
    expect(client.isOpen).toBe(false);
    await expect(waitForOpen(client, 100)).rejects.toThrow(/connection refused/);
    await expect(client.write(Buffer.from('x'))).rejects.toThrow(/not connected/);
  });

  it('server open() rejects clearly when the port is taken', async () => {
    const srv = await server();
    const port = srv.address()!.port;
    const other = new TcpServerTransport({ type: 'tcp-server', port });
    await expect(other.open()).rejects.toThrow(`tcp-server 127.0.0.1:${port}: cannot listen: the port is already in use`);
    await expect(srv.write(Buffer.from('x'))).rejects.toThrow(/no device is connected/);
  });
});

describe('HidTransport with an injected opener', () => {
  it('no transport module imports node-hid statically (it must load only when a HID device is opened)', () => {
    const dir = path.join(import.meta.dirname, '../../src/transports');
    for (const name of readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
      const source = readFileSync(path.join(dir, name), 'utf8');
      expect(source, name).not.toMatch(/^\s*import\s+[^(]*['"]node-hid['"]/m);
      expect(source, name).not.toMatch(/require\(['"]node-hid['"]\)/);
    }
  });

  class FakeHid extends EventEmitter implements HidDeviceHandle {
    written: Buffer[] = [];
    closed = false;
    write(report: number[] | Buffer): number {
      this.written.push(Buffer.from(report));
      return report.length;
    }
    close(): void {
      this.closed = true;
    }
  }

  it('turns input reports into data events and writes 64-byte reports behind report id 0', async () => {
    const fake = new FakeHid();
    const opener = vi.fn<HidOpener>(async () => fake);
    const hid = track(new HidTransport({ type: 'hid', vendor_id: '1a61', product_id: '3410' }, { hidOpener: opener }));
    const opened = once(hid, 'open');
    await hid.open();
    await opened;
    expect(opener).toHaveBeenCalledWith({ type: 'hid', vendor_id: '1a61', product_id: '3410' });
    expect(hid.isOpen).toBe(true);

    const report = Buffer.alloc(64, 0);
    report.write('\x06\x04$sn?', 0, 'latin1');
    const received = once<Buffer>(hid, 'data');
    fake.emit('data', report);
    expect((await received).equals(report)).toBe(true);

    await hid.write(Buffer.from([0x04, 0x02, 0x31, 0x32]));
    expect(fake.written).toHaveLength(1);
    const out = fake.written[0]!;
    expect(out.length).toBe(65);
    expect(out[0]).toBe(0);
    expect([...out.subarray(1, 5)]).toEqual([0x04, 0x02, 0x31, 0x32]);
    expect(out.subarray(5).every((b) => b === 0)).toBe(true);

    await expect(hid.write(Buffer.alloc(65))).rejects.toThrow('a report is at most 64 bytes, got 65');
    await hid.close();
    expect(fake.closed).toBe(true);
    await expect(hid.write(Buffer.from([1]))).rejects.toThrow(/not open/);
  });

  it('keeps retrying while the device is absent and recovers from an unplug', async () => {
    const devices: FakeHid[] = [];
    let available = false;
    const opener: HidOpener = async () => {
      if (!available) throw new Error('HID device 1a61:3410 is missing');
      const d = new FakeHid();
      devices.push(d);
      return d;
    };
    const hid = track(new HidTransport({ type: 'hid', vendor_id: '1a61', product_id: '3410' }, { hidOpener: opener, ...FAST }));
    const errored = once<Error>(hid, 'error');
    await hid.open();
    expect(hid.isOpen).toBe(false);
    expect((await errored).message).toBe('HID device 1a61:3410 is missing');
    expect(hid.lastError?.message).toBe('HID device 1a61:3410 is missing');

    const opened = once(hid, 'open');
    available = true;
    await opened;

    const closed = once(hid, 'close');
    const unplugged = once<Error>(hid, 'error');
    const reopened = new Promise<void>((resolve) => hid.once('close', () => hid.once('open', () => resolve())));
    devices[0]!.emit('error', new Error('could not read from HID device'));
    await closed;
    expect((await unplugged).message).toMatch(/was disconnected: could not read from HID device/);
    expect(devices[0]!.closed).toBe(true);
    await reopened;
    expect(devices).toHaveLength(2);
    const got = once<Buffer>(hid, 'data');
    devices[1]!.emit('data', Buffer.alloc(64, 7));
    expect((await got).length).toBe(64);
  });

  it('with real node-hid, an absent device leaves open() resolved and says why', async () => {
    const hid = track(new HidTransport({ type: 'hid', path: '/dev/hidraw-poctd-none' }, { reconnect_min_ms: 5000 }));
    const errored = once<Error>(hid, 'error');
    await hid.open();
    expect(hid.isOpen).toBe(false);
    const err = await errored;
    // Either node-hid loads and the device is missing, or it cannot load and names the packages.
    expect(err.message).toMatch(/^HID device \/dev\/hidraw-poctd-none is missing$|apt-get install libusb-1\.0-0 udev/);
    expect(hid.lastError).toBe(err);
  });
});
