import { createServer, connect as tcpConnect, Socket, type AddressInfo, type Server } from 'node:net';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EmbeddedBroker, EmbeddedBrokerRefused, isLoopbackHost } from '../../src/mqtt/embedded-broker.ts';
import type { EmbeddedBrokerConfig } from '../../src/config/types.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { connectOutcome } from '../helpers/connect-outcome.ts';

/**
 * The embedded broker's safety rules one by one: it refuses a non-loopback address without a
 * username and password, checks both of them on every connection, serves MQTT over TCP (no-delay)
 * and WebSocket, says which setting to change when it cannot listen, and stop() really closes it.
 */

const cleanups = useCleanups();

afterEach(() => {
  vi.restoreAllMocks();
});

function started(config: Partial<EmbeddedBrokerConfig>): Promise<EmbeddedBroker> {
  const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, ws_port: 0, ...config });
  cleanups.push(() => broker.stop());
  return broker.start().then(() => broker);
}

/** A loopback port that was free a moment ago. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** A server holding a loopback port, so the broker's listen fails with EADDRINUSE. */
async function occupied(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as AddressInfo).port, server };
}

function refusedConnection(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

describe('isLoopbackHost', () => {
  it.each(['127.0.0.1', '127.255.0.9', '::1', 'localhost'])('%s is loopback', (h) => expect(isLoopbackHost(h)).toBe(true));
  it.each(['0.0.0.0', '10.0.0.4', '::', '::ffff:127.0.0.1', 'fe80::1', 'broker.lan', 'localhost.example.org', '127.0.0.1.example.org', ''])(
    '%s is not',
    (h) => expect(isLoopbackHost(h)).toBe(false),
  );
});

describe('EmbeddedBroker: where it listens', () => {
  it('refuses a non-loopback host with no credentials, or with only one of them, naming the host and the settings', async () => {
    for (const creds of [{}, { username: 'u' }, { password: 'p' }, { username: '', password: 'p' }]) {
      const broker = new EmbeddedBroker({ host: '0.0.0.0', port: 0, ws_port: 0, ...creds });
      const error = await broker.start().then(
        () => null,
        (e: Error) => e,
      );
      await broker.stop();
      expect(error, JSON.stringify(creds)).toBeInstanceOf(EmbeddedBrokerRefused);
      expect(error!.message).toBe(
        'embedded broker: refusing to listen on 0.0.0.0 without authentication; set mqtt.embedded.username and mqtt.embedded.password, or keep host 127.0.0.1',
      );
    }
  });

  it('listens on a non-loopback host once both username and password are set', async () => {
    const broker = await started({ host: '0.0.0.0', username: 'u', password: 'p' });
    expect(broker.url).toBe(`mqtt://127.0.0.1:${broker.port}`);
    expect(await connectOutcome(broker.url, { username: 'u', password: 'p' })).toBe('connected');
  });

  it('listens on loopback without credentials, but lets no anonymous client in (there is no open access)', async () => {
    const broker = await started({});
    expect(await connectOutcome(broker.url, {})).toBe(4);
    expect(await connectOutcome(broker.url, { username: 'poctd', password: '' })).toBe(4);
  });

  it('the URL a local client uses: a wildcard address becomes loopback, an IPv6 host gets brackets', () => {
    const url = (host: string): string => new EmbeddedBroker({ host, port: 1999, ws_port: 0 }).url;
    expect(url('0.0.0.0')).toBe('mqtt://127.0.0.1:1999');
    expect(url('::')).toBe('mqtt://[::1]:1999');
    expect(url('::1')).toBe('mqtt://[::1]:1999');
    expect(url('127.0.0.1')).toBe('mqtt://127.0.0.1:1999');
    expect(url('192.168.1.2')).toBe('mqtt://192.168.1.2:1999');
    expect(url('localhost')).toBe('mqtt://localhost:1999');
  });

  it('before start the ports are the configured ones (no WebSocket port yet); after, the bound ones', async () => {
    const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, ws_port: 0 });
    expect(broker.port).toBe(0);
    expect(broker.wsPort).toBeNull();
    cleanups.push(() => broker.stop());
    await broker.start();
    expect(broker.port).toBeGreaterThan(0);
    expect(broker.url).toBe(`mqtt://127.0.0.1:${broker.port}`);
    expect(broker.wsPort).toBeNull(); // ws_port 0 = no WebSocket listener
  });

  it('sets no-delay on every accepted TCP socket', async () => {
    const spy = vi.spyOn(Socket.prototype, 'setNoDelay');
    const broker = await started({ username: 'u', password: 'p' });
    expect(await connectOutcome(broker.url, { username: 'u', password: 'p' })).toBe('connected');
    const serverSide = spy.mock.contexts.filter((s) => (s as Socket).localPort === broker.port);
    expect(serverSide.length).toBeGreaterThan(0);
    for (const [i, ctx] of spy.mock.contexts.entries()) {
      if ((ctx as Socket).localPort === broker.port) expect(spy.mock.calls[i]).toEqual([true]);
    }
  });
});

describe('EmbeddedBroker: credentials on every connection', () => {
  it.each<[string, mqtt.IClientOptions]>([
    ['wrong password', { username: 'u', password: 'wrong' }],
    ['wrong username, right password', { username: 'x', password: 'p' }],
    ['right username, no password', { username: 'u' }],
    ['anonymous', {}],
    ['password differing only in case', { username: 'u', password: 'P' }],
  ])('%s: refused with return code 4 (bad username or password)', async (_what, creds) => {
    const broker = await started({ username: 'u', password: 'p' });
    expect(await connectOutcome(broker.url, creds)).toBe(4);
  });

  it('the right username and password connect and can publish', async () => {
    const broker = await started({ username: 'u', password: 'p' });
    const good = await mqtt.connectAsync(broker.url, { username: 'u', password: 'p', reconnectPeriod: 0 });
    cleanups.push(() => good.endAsync());
    await good.subscribeAsync('t');
    const got = new Promise<string>((resolve) => good.once('message', (_t, p) => resolve(p.toString())));
    await good.publishAsync('t', 'hello', { qos: 1 });
    expect(await got).toBe('hello');
  });

  it('the WebSocket listener serves MQTT with the same credential check', async () => {
    const wsPort = await freePort();
    const broker = await started({ ws_port: wsPort, username: 'u', password: 'p' });
    expect(broker.wsPort).toBe(wsPort);
    expect(await connectOutcome(`ws://127.0.0.1:${wsPort}`, { username: 'u', password: 'p' })).toBe('connected');
    expect(await connectOutcome(`ws://127.0.0.1:${wsPort}`, { username: 'u', password: 'nope' })).toBe(4);
  });
});

describe('EmbeddedBroker: cannot listen', () => {
  it('a TCP port in use names mqtt.embedded.port, with the cause', async () => {
    const { port } = await occupied();
    const broker = new EmbeddedBroker({ host: '127.0.0.1', port, ws_port: 0 });
    cleanups.push(() => broker.stop());
    const error = await broker.start().then(
      () => null,
      (e: Error) => e,
    );
    expect(error!.message).toBe(
      `embedded broker: cannot listen on 127.0.0.1:${port}: the port is already in use (another MQTT broker? set mqtt.url to use it, or choose another mqtt.embedded.port)`,
    );
    expect((error!.cause as NodeJS.ErrnoException).code).toBe('EADDRINUSE');
  });

  it('a WebSocket port in use names mqtt.embedded.ws_port', async () => {
    const { port } = await occupied();
    const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, ws_port: port });
    cleanups.push(() => broker.stop());
    await expect(broker.start()).rejects.toThrow(`embedded broker: cannot listen on 127.0.0.1:${port}: the port is already in use (another MQTT broker? set mqtt.url to use it, or choose another mqtt.embedded.ws_port)`);
  });

  it('an address this machine does not have names mqtt.embedded.host', async () => {
    // TEST-NET-1 (RFC 5737): never assigned to a host.
    const broker = new EmbeddedBroker({ host: '192.0.2.1', port: 0, ws_port: 0, username: 'u', password: 'p' });
    cleanups.push(() => broker.stop());
    const error = await broker.start().then(
      () => null,
      (e: Error) => e,
    );
    expect(error!.message).toBe('embedded broker: cannot listen on 192.0.2.1:0: this machine has no such address (mqtt.embedded.host)');
    expect((error!.cause as NodeJS.ErrnoException).code).toBe('EADDRNOTAVAIL');
  });
});

describe('EmbeddedBroker: any other listen error', () => {
  it('is passed on with the system\'s own message', async () => {
    // A name that cannot resolve (RFC 6761 .invalid): the lookup fails, with no canned explanation.
    const broker = new EmbeddedBroker({ host: 'no-such-host.invalid', port: 0, ws_port: 0, username: 'u', password: 'p' });
    cleanups.push(() => broker.stop());
    const error = await broker.start().then(
      () => null,
      (e: Error) => e,
    );
    const cause = error!.cause as NodeJS.ErrnoException;
    expect(['EADDRINUSE', 'EACCES', 'EADDRNOTAVAIL']).not.toContain(cause.code);
    expect(error!.message).toBe(`embedded broker: cannot listen on no-such-host.invalid:0: ${cause.message}`);
  });
});

describe('EmbeddedBroker: stop', () => {
  it('stop before start, and stop twice, resolve', async () => {
    const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, ws_port: 0 });
    await broker.stop();
    await broker.start();
    await broker.stop();
    await broker.stop();
  });

  it('closes the TCP and WebSocket ports at once, with clients connected and a half-sent HTTP request open', async () => {
    const wsPort = await freePort();
    const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, ws_port: wsPort, username: 'u', password: 'p' });
    await broker.start();
    const port = broker.port;
    const tcpClient = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0, username: 'u', password: 'p' });
    const wsClient = await mqtt.connectAsync(`ws://127.0.0.1:${wsPort}`, { reconnectPeriod: 0, username: 'u', password: 'p' });
    const closed = Promise.all([tcpClient, wsClient].map((c) => new Promise<void>((r) => c.once('close', () => r()))));
    // An HTTP request whose headers never end: an active connection that only closeAllConnections ends.
    const raw = tcpConnect(wsPort, '127.0.0.1');
    await new Promise<void>((r) => raw.once('connect', () => r()));
    raw.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    raw.on('error', () => undefined);
    cleanups.push(async () => {
      raw.destroy();
      tcpClient.end(true);
      wsClient.end(true);
    });
    await broker.stop();
    await closed;
    expect(await refusedConnection(port)).toBe(true);
    expect(await refusedConnection(wsPort)).toBe(true);
  });
});
