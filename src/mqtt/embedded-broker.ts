import { Aedes } from 'aedes';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, isIP } from 'node:net';
import { WebSocketServer, createWebSocketStream } from 'ws';
import type { EmbeddedBrokerConfig } from '../config/types.ts';

/**
 * The zero-config broker (aedes), used when no `mqtt.url` is configured so a fresh install works
 * on its own. It listens on loopback by default; it refuses to listen anywhere else unless a
 * username and password are set, because a clinic LAN must not get an open broker by accident.
 */

export class EmbeddedBrokerRefused extends Error {}

export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1';
  return false;
}

export class EmbeddedBroker {
  private broker: Aedes | undefined;
  private tcp: NetServer | undefined;
  private http: HttpServer | undefined;
  private wss: WebSocketServer | undefined;

  constructor(private readonly config: EmbeddedBrokerConfig) {}

  /** The URL a local client uses to reach this broker. */
  get url(): string {
    // A wildcard address is where the broker listens, not where a client connects.
    const host = this.config.host === '0.0.0.0' ? '127.0.0.1' : this.config.host === '::' ? '::1' : this.config.host;
    return `mqtt://${host.includes(':') ? `[${host}]` : host}:${this.port}`;
  }

  get port(): number {
    const address = this.tcp?.address();
    return typeof address === 'object' && address ? address.port : this.config.port;
  }

  get wsPort(): number | null {
    const address = this.http?.address();
    return typeof address === 'object' && address ? address.port : null;
  }

  async start(): Promise<void> {
    const { host, username, password } = this.config;
    if (!isLoopbackHost(host) && !(username && password)) {
      throw new EmbeddedBrokerRefused(
        `embedded broker: refusing to listen on ${host} without authentication; ` +
          'set mqtt.embedded.username and mqtt.embedded.password, or keep host 127.0.0.1',
      );
    }
    this.broker = await Aedes.createBroker({
      authenticate: (_client, user, pass, done) => {
        if (!username) return done(null, true);
        const ok = user === username && pass !== undefined && Buffer.from(pass).toString() === password;
        if (ok) return done(null, true);
        const error = Object.assign(new Error('bad username or password'), { returnCode: 4 as const });
        return done(error, false);
      },
    });
    const broker = this.broker;
    this.tcp = createNetServer((socket) => {
      socket.setNoDelay(true);
      broker.handle(socket);
    });
    await listen(this.tcp, this.config.port, host, 'mqtt.embedded.port');
    if (this.config.ws_port > 0) {
      this.http = createHttpServer();
      this.wss = new WebSocketServer({ server: this.http });
      // ws re-emits the HTTP server's errors here; unheard, a busy ws_port would be thrown as an
      // uncaught exception before listen() could reject with what to change.
      this.wss.on('error', () => undefined);
      this.wss.on('connection', (ws, req) => broker.handle(createWebSocketStream(ws), req));
      await listen(this.http, this.config.ws_port, host, 'mqtt.embedded.ws_port');
    }
  }

  async stop(): Promise<void> {
    // The broker first: it disconnects its clients, so the servers can then close.
    if (this.broker) await new Promise<void>((resolve) => this.broker!.close(() => resolve()));
    this.broker = undefined;
    this.wss?.clients.forEach((c) => c.terminate());
    this.wss?.close();
    await Promise.all([closeServer(this.tcp), closeServer(this.http)]);
  }
}

/** Listens, or rejects with what to change (`setting`) when the address cannot be had. */
function listen(server: NetServer | HttpServer, port: number, host: string, setting: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      const why =
        error.code === 'EADDRINUSE'
          ? `the port is already in use (another MQTT broker? set mqtt.url to use it, or choose another ${setting})`
          : error.code === 'EACCES'
            ? 'permission denied (ports below 1024 need privileges)'
            : error.code === 'EADDRNOTAVAIL'
              ? 'this machine has no such address (mqtt.embedded.host)'
              : error.message;
      reject(new Error(`embedded broker: cannot listen on ${host}:${port}: ${why}`, { cause: error }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

function closeServer(server: NetServer | HttpServer | undefined): Promise<void> {
  if (!server || !server.listening) return Promise.resolve();
  if ('closeAllConnections' in server) server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}
