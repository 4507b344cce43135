/**
 * The shared TCP listener on loopback with real sockets: devices naming one port share one
 * listening socket, every caller is served on its own, idle callers are let go, and callers no
 * device allows are refused with a report.
 */
import net from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ListenerTransport, type ListenerConnection, type ListenerRefusal } from '../../src/transports/listener.ts';
import type { TcpServerTransportOptions } from '../../src/transports/transport.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { eventually } from '../helpers/eventually.ts';
import { freePort } from '../helpers/mosquitto.ts';

const cleanups = useCleanups();
afterEach(() => vi.restoreAllMocks());

async function device(id: string, options: Omit<TcpServerTransportOptions, 'type'>, refusals?: ListenerRefusal[]): Promise<ListenerTransport> {
  const t = new ListenerTransport({ type: 'tcp-server', ...options }, id, refusals ? (r) => refusals.push(r) : undefined);
  cleanups.push(() => t.close());
  return t;
}

/** A caller with what it has received and whether the listener closed it. */
async function caller(port: number): Promise<{ socket: net.Socket; received: () => string; closed: Promise<void> }> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => undefined);
  cleanups.push(async () => void socket.destroy());
  let text = '';
  socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return { socket, received: () => text, closed };
}

/** Serves each caller on its own: a line in, the line upper-cased back (after `delayMs` for lines starting "slow"). */
function echoLines(t: ListenerTransport, served: ListenerConnection[]): void {
  t.serve((conn) => {
    served.push(conn);
    let buffered = '';
    conn.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const answer = (): void => void conn.write(Buffer.from(`${line.toUpperCase()}\n`, 'latin1')).catch(() => undefined);
        if (line.startsWith('slow')) setTimeout(answer, 5000).unref();
        else answer();
      }
    });
  });
}

describe('a listener shared by the devices of one port', () => {
  it('two devices naming one port share one listening socket; each accepted socket gets no-delay and keepalive', async () => {
    const port = await freePort();
    const a = await device('a', { port, sender: 'A' });
    const b = await device('b', { port, sender: ['B', 'b2'] });
    await Promise.all([a.open(), b.open()]);
    expect(a.listener).toBe(b.listener);
    expect(a.address()!.port).toBe(port);
    expect(a.listener.members).toEqual([a, b]);

    const noDelay = vi.spyOn(net.Socket.prototype, 'setNoDelay');
    const keepAlive = vi.spyOn(net.Socket.prototype, 'setKeepAlive');
    const served: ListenerConnection[] = [];
    echoLines(a, served);
    await caller(port);
    await eventually('the caller served', () => served.length === 1);
    expect(noDelay.mock.contexts.some((s, i) => s === (served[0] as unknown as { socket: net.Socket }).socket && noDelay.mock.calls[i]![0] === true)).toBe(true);
    expect(keepAlive.mock.calls.some((c) => c[0] === true)).toBe(true);

    expect(a.route('a', '127.0.0.1')).toEqual({ member: a });
    expect(a.route(' B2 ', '127.0.0.1')).toEqual({ member: b });
    expect(a.route('c', '127.0.0.1')).toMatchObject({ refused: 'unknown-sender' });
    expect(a.route(null, '127.0.0.1')).toMatchObject({ refused: 'unknown-sender' });

    // The listener closes when its last device leaves: the port is free again.
    await a.close();
    expect(b.address()!.port).toBe(port);
    await b.close();
    const probe = net.createServer();
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen(port, '127.0.0.1', () => resolve());
    });
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  });

  it('serves many callers at once, each on its own: a slow one never holds up the others', async () => {
    const port = await freePort();
    const t = await device('solo', { port });
    const served: ListenerConnection[] = [];
    echoLines(t, served);
    await t.open();
    const opened = new Promise<void>((resolve) => t.once('open', () => resolve()));

    const slow = await caller(port);
    slow.socket.write('slow one\n');
    await opened; // one device, no sender: every caller is that device from the start
    const fast = await Promise.all(Array.from({ length: 8 }, () => caller(port)));
    fast.forEach((c, i) => c.socket.write(`caller ${i}\n`));
    await eventually('every fast caller answered', () => fast.every((c, i) => c.received() === `CALLER ${i}\n`));
    expect(slow.received()).toBe('');
    expect(t.connections).toHaveLength(9);
    expect(t.isOpen).toBe(true);
  });

  it('a caller that sends nothing is let go after idle_timeout_ms; one that spoke stays', async () => {
    const port = await freePort();
    const t = await device('solo', { port, idle_timeout_ms: 300 });
    const served: ListenerConnection[] = [];
    echoLines(t, served);
    await t.open();
    const talker = await caller(port);
    talker.socket.write('hello\n');
    await eventually('the talker answered', () => talker.received() === 'HELLO\n');
    const silent = await caller(port);
    await silent.closed;
    expect(served).toHaveLength(2);
    expect(talker.socket.destroyed).toBe(false);
    talker.socket.write('still here\n');
    await eventually('the talker answered again', () => talker.received() === 'HELLO\nSTILL HERE\n');
  });

  it('refuses a caller whose address no device lists as it connects, reported once per distinct reason', async () => {
    const port = await freePort();
    const refusals: ListenerRefusal[] = [];
    const t = await device('solo', { port, peers: ['10.0.0.5', '::ffff:10.0.0.6'] }, refusals);
    const served: ListenerConnection[] = [];
    echoLines(t, served);
    await t.open();
    expect(t.peers).toEqual(['10.0.0.5', '10.0.0.6']);
    for (let i = 0; i < 3; i++) {
      const c = await caller(port);
      c.socket.write('let me in\n');
      await c.closed;
      expect(c.received()).toBe('');
    }
    expect(served).toHaveLength(0);
    expect(refusals.map((r) => [r.reason, r.peer, r.port, r.sender, r.first])).toEqual([
      ['peer-not-allowed', '127.0.0.1', port, null, true],
      ['peer-not-allowed', '127.0.0.1', port, null, false],
      ['peer-not-allowed', '127.0.0.1', port, null, false],
    ]);
    expect(refusals[0]!.message).toMatch(new RegExp(`^tcp-server:127\\.0\\.0\\.1:${port}: refused 127\\.0\\.0\\.1:\\d+: 127\\.0\\.0\\.1 is in no device's peers list$`));
    expect(t.route(null, '::ffff:10.0.0.6')).toEqual({ member: t });
  });

  it('refuses one caller more than max_connections', async () => {
    const port = await freePort();
    const refusals: ListenerRefusal[] = [];
    const t = await device('solo', { port, max_connections: 2 }, refusals);
    echoLines(t, []);
    await t.open();
    await caller(port);
    await caller(port);
    const third = await caller(port);
    await third.closed;
    expect(refusals.map((r) => r.reason)).toEqual(['too-many-connections']);
  });

  it('a session that does not serve callers itself gets the bytes of one caller at a time', async () => {
    const port = await freePort();
    const refusals: ListenerRefusal[] = [];
    const t = await device('solo', { port }, refusals);
    await t.open();
    const opened = new Promise<void>((resolve) => t.once('open', () => resolve()));
    let got = '';
    t.on('data', (c: Buffer) => (got += c.toString()));
    const first = await caller(port);
    await opened;
    const second = await caller(port);
    await second.closed;
    expect(refusals.map((r) => r.reason)).toEqual(['device-busy']);
    first.socket.write('ping');
    await eventually('the bytes of the first caller', () => got === 'ping');
    await t.write(Buffer.from('pong'));
    await eventually('the answer', () => first.received() === 'pong');
    const closed = new Promise<void>((resolve) => t.once('close', () => resolve()));
    first.socket.destroy();
    await closed;
    expect(t.isOpen).toBe(false);
    await expect(t.write(Buffer.from('x'))).rejects.toThrow(/no device is connected/);
  });

  it('open() rejects clearly when the port is taken by another program', async () => {
    const port = await freePort();
    const other = net.createServer();
    await new Promise<void>((resolve) => other.listen(port, '127.0.0.1', () => resolve()));
    cleanups.push(() => new Promise<void>((resolve) => other.close(() => resolve())));
    const t = await device('solo', { port });
    await expect(t.open()).rejects.toThrow(`tcp-server 127.0.0.1:${port}: cannot listen: the port is already in use`);
  });
});
