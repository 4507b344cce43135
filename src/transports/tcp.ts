import { EventEmitter } from 'node:events';
import net from 'node:net';
import {
  DEFAULT_RECONNECT_MAX_MS,
  DEFAULT_RECONNECT_MIN_MS,
  emitErrorSafely,
  ReconnectingTransport,
} from './reconnecting.ts';
import type { ByteTransport, TcpClientTransportOptions, TcpServerTransportOptions } from './transport.ts';

/** A connect attempt to a device that does not answer at all is abandoned after this long. */
const CONNECT_TIMEOUT_MS = 10_000;
/** TCP keepalive lets a printer that lost power show up as gone instead of silently idle. */
const KEEPALIVE_MS = 15_000;

function errorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

function describeSocketError(where: string, err: Error): Error {
  switch (errorCode(err)) {
    case 'ECONNREFUSED':
      return new Error(`${where}: connection refused (is the device on and listening on that port?)`, { cause: err });
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return new Error(`${where}: host unreachable (check the network and the device's address)`, { cause: err });
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new Error(`${where}: host name does not resolve`, { cause: err });
    case 'ETIMEDOUT':
      return new Error(`${where}: no answer (timed out)`, { cause: err });
    case 'ECONNRESET':
      return new Error(`${where}: connection reset by the device`, { cause: err });
    default:
      return new Error(`${where}: ${err.message}`, { cause: err });
  }
}

function writeTo(socket: net.Socket, data: Buffer, where: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    socket.write(data, (err) => (err ? reject(describeSocketError(where, err)) : resolve()));
  });
}

/**
 * Connects to a device that listens (a label printer on port 9100, an analyzer's LIS port).
 *
 * Like the serial transport, `open()` resolves after the first attempt whether or not the device
 * answered; the link is kept up with exponential backoff (`reconnect_min_ms` 500 …
 * `reconnect_max_ms` 30000, with jitter), `open`/`close` are emitted as it comes and goes and
 * `lastError` says why it is down. Every socket gets no-delay (see the design: Nagle plus delayed
 * ACK costs ~40 ms per request/response exchange).
 */
export class TcpClientTransport extends ReconnectingTransport {
  readonly description: string;
  readonly options: Readonly<TcpClientTransportOptions>;
  private socket: net.Socket | undefined;

  constructor(options: TcpClientTransportOptions) {
    super(options.reconnect_min_ms ?? DEFAULT_RECONNECT_MIN_MS, options.reconnect_max_ms ?? DEFAULT_RECONNECT_MAX_MS);
    this.options = { ...options };
    this.description = `tcp:${options.host}:${options.port}`;
  }

  protected connect(): Promise<void> {
    const { host, port } = this.options;
    const where = `tcp ${host}:${port}`;
    return new Promise<void>((resolve, reject) => {
      const socket = net.connect({ host, port, noDelay: true });
      this.socket = socket;
      let connected = false;
      socket.setTimeout(CONNECT_TIMEOUT_MS, () => {
        if (!connected) socket.destroy(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' }));
      });
      socket.once('connect', () => {
        connected = true;
        socket.setTimeout(0);
        socket.setNoDelay(true);
        socket.setKeepAlive(true, KEEPALIVE_MS);
        if (this.socket !== socket) {
          socket.destroy();
          reject(new Error(`${where}: connect abandoned`));
          return;
        }
        resolve();
      });
      socket.on('data', (chunk: Buffer) => {
        if (this.socket === socket && this.linkUp) this.emit('data', chunk);
      });
      let failure: Error | undefined;
      socket.on('error', (err: Error) => {
        failure = describeSocketError(where, err);
        if (!connected) {
          if (this.socket === socket) this.socket = undefined;
          reject(failure);
        }
      });
      socket.on('close', () => {
        if (!connected) {
          if (this.socket === socket) this.socket = undefined;
          reject(failure ?? new Error(`${where}: connection closed before it was established`));
          return;
        }
        if (this.socket !== socket) return;
        this.linkLost(failure ?? new Error(`${where}: connection closed by the device`));
      });
    });
  }

  protected async disconnect(): Promise<void> {
    const socket = this.socket;
    this.socket = undefined;
    if (!socket || socket.destroyed) return;
    await new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.destroy();
    });
  }

  async write(data: Buffer): Promise<void> {
    const socket = this.socket;
    if (!this.linkUp || !socket) {
      throw new Error(`${this.description}: write while not connected${this.lastError ? ` (${this.lastError.message})` : ''}`);
    }
    await writeTo(socket, data, `tcp ${this.options.host}:${this.options.port}`);
  }
}

/**
 * Listens for one peer at a time: what a simulator playing a listening device (`poctd simulate
 * --tcp`) or a benchmark needs. A configured `tcp-server` device does not use this: its handle is
 * a `ListenerTransport` (listener.ts), on a listener that serves many callers and devices at once.
 *
 * Listens on `bind` (default 127.0.0.1 — opening a device port to the clinic network is a
 * deliberate config choice) and `port`. One device at a time: `open` is emitted when it connects,
 * `close` when it disconnects, and the listener stays up for the next one. A second connection
 * while one is active is refused (destroyed) with an `error` event saying who tried. `isOpen` is
 * true while a device is connected.
 *
 * Unlike the client transports, `open()` rejects if the port cannot be listened on (in use, no
 * permission): that is a configuration problem retrying will not fix.
 */
export class TcpServerTransport extends EventEmitter implements ByteTransport {
  readonly description: string;
  readonly options: Readonly<TcpServerTransportOptions>;
  lastError: Error | undefined;
  private server: net.Server | undefined;
  private socket: net.Socket | undefined;
  private peerName: string | undefined;

  constructor(options: TcpServerTransportOptions) {
    super();
    this.options = { ...options };
    this.description = `tcp-server:${options.bind ?? '127.0.0.1'}:${options.port}`;
  }

  get isOpen(): boolean {
    return this.socket !== undefined;
  }

  /** The listening address (useful with port 0), or undefined when not listening. */
  address(): net.AddressInfo | undefined {
    const addr = this.server?.address();
    return addr && typeof addr === 'object' ? addr : undefined;
  }

  async open(): Promise<void> {
    if (this.server) return;
    const bind = this.options.bind ?? '127.0.0.1';
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        this.server = undefined;
        const code = errorCode(err);
        const why =
          code === 'EADDRINUSE'
            ? 'the port is already in use by another program'
            : code === 'EACCES'
              ? 'permission denied (ports below 1024 need privileges)'
              : code === 'EADDRNOTAVAIL'
                ? 'this machine has no such address'
                : err.message;
        this.lastError = new Error(`tcp-server ${bind}:${this.options.port}: cannot listen: ${why}`, { cause: err });
        reject(this.lastError);
      };
      server.once('error', onError);
      server.listen({ host: bind, port: this.options.port }, () => {
        server.off('error', onError);
        server.on('error', (err: Error) => this.report(new Error(`${this.description}: ${err.message}`, { cause: err })));
        resolve();
      });
    });
  }

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    if (this.socket) {
      socket.on('error', () => undefined);
      socket.destroy();
      this.report(
        new Error(`${this.description}: refused a second connection from ${peer}; ${this.peerName ?? 'a device'} is already connected`),
      );
      return;
    }
    socket.setKeepAlive(true, KEEPALIVE_MS);
    this.socket = socket;
    this.peerName = peer;
    this.lastError = undefined;
    socket.on('data', (chunk: Buffer) => {
      if (this.socket === socket) this.emit('data', chunk);
    });
    socket.on('error', (err: Error) => {
      if (this.socket === socket) this.report(describeSocketError(`${this.description} (device ${peer})`, err));
    });
    socket.on('close', () => {
      if (this.socket !== socket) return;
      this.socket = undefined;
      this.peerName = undefined;
      this.emit('close');
    });
    this.emit('open');
  }

  async write(data: Buffer): Promise<void> {
    const socket = this.socket;
    if (!socket) throw new Error(`${this.description}: write while no device is connected`);
    await writeTo(socket, data, `${this.description} (device ${this.peerName ?? '?'})`);
  }

  async close(): Promise<void> {
    const server = this.server;
    const socket = this.socket;
    this.server = undefined;
    this.socket = undefined;
    this.peerName = undefined;
    if (socket) {
      if (!socket.destroyed) {
        await new Promise<void>((resolve) => {
          socket.once('close', () => resolve());
          socket.destroy();
        });
      }
      this.emit('close');
    }
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private report(err: Error): void {
    this.lastError = err;
    emitErrorSafely(this, err);
  }
}
