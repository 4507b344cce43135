import { Aedes, type Client } from 'aedes';
import { randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { createServer as createTlsServer } from 'node:tls';
import { WebSocketServer, createWebSocketStream } from 'ws';
import type { EmbeddedBrokerConfig } from '../config/types.ts';
import { AccessList, jsonObject, type Principal, redactRecord, requesterOnlyTopic } from './access.ts';
import { readTlsFile } from './tls-files.ts';
import { isLoopbackHost, sameOrigin } from '../util/hosts.ts';
import { listenOn } from '../util/listen.ts';

export { isLoopbackHost, sameOrigin };

/**
 * The zero-config broker (aedes), used when no `mqtt.url` is configured so a fresh install works
 * on its own. It listens on loopback by default; it refuses to listen anywhere else unless a
 * username and password are set, because a clinic LAN must not get an open broker by accident.
 *
 * It is never open: every client logs in (the daemon with its own account, people and programs
 * with the users of `access.users`), and each publish, subscription and delivered message is
 * checked against the user's roles (`access.ts`). A browser may reach the WebSocket listener only
 * from the daemon's own page: a foreign `Origin` is refused before the upgrade.
 */

export interface EmbeddedBrokerOptions {
  /** Who may log in; default: only the account of `config.username`/`password` (or none). */
  access?: AccessList;
  /**
   * Whether a browser page at `origin` may open the `ws_port` WebSocket. Default: only a page of
   * the same origin as the request (`Host`); a request without `Origin` is not from a browser page.
   */
  allowOrigin?: (origin: string, host: string | undefined) => boolean;
  /** Users configured besides the daemon; a listener off loopback needs at least one. */
  configuredUsers?: number;
}

const PRINCIPAL = Symbol('poctd principal');
type WithPrincipal = Client & { [PRINCIPAL]?: Principal };

/** Requests carry who sent them as the broker knows it; what the client claimed is replaced. */
function stampRequester(payload: Buffer, name: string): Buffer {
  const body = jsonObject(payload);
  return body ? Buffer.from(JSON.stringify({ ...body, requested_by: name })) : payload;
}

export class EmbeddedBrokerRefused extends Error {}

export class EmbeddedBroker {
  private broker: Aedes | undefined;
  private tcp: NetServer | undefined;
  private http: HttpServer | undefined;
  private wss: WebSocketServer | undefined;
  /** For upgrades handed over by the daemon's HTTP server (the page's own origin). */
  private upgrades: WebSocketServer | undefined;
  private readonly access: AccessList;

  constructor(
    private readonly config: EmbeddedBrokerConfig,
    private readonly options: EmbeddedBrokerOptions = {},
  ) {
    this.access =
      options.access ??
      new AccessList('poct', { name: config.username ?? 'poctd', password: config.password ?? randomBytes(32).toString('base64url') }, []);
  }

  /** Who asked, by device, verb and transaction, for the answers only the requester may read (bounded). */
  private readonly requesters = new Map<string, string>();

  private static requestKey(device: string, verb: string, payload: Buffer): string | undefined {
    const transaction = jsonObject(payload)?.transaction;
    if (typeof transaction !== 'string' && typeof transaction !== 'number') return undefined;
    return JSON.stringify([device, verb, transaction]);
  }

  private noteRequester(device: string, verb: string, payload: Buffer, name: string): void {
    const key = EmbeddedBroker.requestKey(device, verb, payload);
    if (key === undefined) return;
    // Another user's request under the same transaction does not take the answer over.
    if (this.requesters.has(key)) return;
    if (this.requesters.size >= 10_000) this.requesters.delete(this.requesters.keys().next().value!);
    this.requesters.set(key, name);
  }

  private requesterOf(device: string, verb: string, payload: Buffer): string | undefined {
    const key = EmbeddedBroker.requestKey(device, verb, payload);
    return key === undefined ? undefined : this.requesters.get(key);
  }

  /**
   * Each message's redacted payload, made once: aedes wraps the message in a new packet for each
   * subscription but they all carry the one payload buffer, so a message several redacting
   * principals read is parsed and redacted once, not once each.
   */
  private readonly redactions = new WeakMap<Buffer, Buffer | null>();

  private redactedPayload(payload: Buffer | string): Buffer | undefined {
    if (typeof payload === 'string') return redactRecord(Buffer.from(payload));
    let redacted = this.redactions.get(payload);
    if (redacted === undefined) {
      redacted = redactRecord(payload) ?? null;
      this.redactions.set(payload, redacted);
    }
    return redacted ?? undefined;
  }

  /** The URL a local client uses to reach this broker. */
  get url(): string {
    // A wildcard address is where the broker listens, not where a client connects.
    const host = this.config.host === '0.0.0.0' ? '127.0.0.1' : this.config.host === '::' ? '::1' : this.config.host;
    return `${this.config.tls ? 'mqtts' : 'mqtt'}://${host.includes(':') ? `[${host}]` : host}:${this.port}`;
  }

  /**
   * A connection inside the process (one end of a stream pair handed to the broker), for the
   * daemon's own client when the listeners speak TLS: its certificate names the host the clinic
   * reaches, not loopback, and the daemon needs no TLS to talk to itself.
   */
  connectInProcess(): Duplex {
    const broker = this.broker;
    const [client, server] = streamPair();
    if (broker) broker.handle(server);
    else server.destroy();
    return client;
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
    if (!isLoopbackHost(host) && this.options.configuredUsers === 0) {
      throw new EmbeddedBrokerRefused(
        `embedded broker: refusing to listen on ${host} without users; add access.users (poctd user add), or keep host 127.0.0.1`,
      );
    }
    const access = this.access;
    this.broker = await Aedes.createBroker({
      authenticate: (client, user, pass, done) => {
        const principal = access.authenticate(user, pass === undefined ? undefined : Buffer.from(pass).toString());
        if (principal?.redacts && client.clean === false) {
          // aedes sends what a persistent session queued while offline without asking
          // authorizeForward for a new payload: those records would skip the redaction.
          const error = Object.assign(new Error('a role that reads results without patient ids needs a clean session'), { returnCode: 5 as const });
          return done(error, false);
        }
        if (principal) {
          (client as WithPrincipal)[PRINCIPAL] = principal;
          return done(null, true);
        }
        // 4 is "bad user name or password", also for a client that gave none: there is no anonymous access.
        const error = Object.assign(new Error('bad username or password'), { returnCode: 4 as const });
        return done(error, false);
      },
      authorizePublish: (client, packet, done) => {
        const principal = client ? (client as WithPrincipal)[PRINCIPAL] : undefined;
        if (!principal || !principal.mayPublish(packet.topic, packet.retain)) {
          // aedes closes the connection of a client whose publish is refused (MQTT 3.1.1 has no negative PUBACK).
          return done(new Error(`not authorized to publish on ${packet.topic}${packet.retain ? ' (retained)' : ''}`));
        }
        if (!principal.isDaemon) {
          packet.payload = stampRequester(Buffer.from(packet.payload), principal.name);
          const only = requesterOnlyTopic(this.access.base, packet.topic);
          if (only?.direction === 'request') this.noteRequester(only.device, only.verb, Buffer.from(packet.payload), principal.name);
        }
        return done(null);
      },
      authorizeSubscribe: (client, subscription, done) => {
        const principal = (client as WithPrincipal)[PRINCIPAL];
        // null = refused with return code 128 in the SUBACK; the connection stays.
        done(null, principal?.maySubscribe(subscription.topic) ? subscription : null);
      },
      authorizeForward: (client, packet) => {
        const principal = (client as WithPrincipal)[PRINCIPAL];
        const only = principal && !principal.isDaemon ? requesterOnlyTopic(this.access.base, packet.topic) : undefined;
        // Fails closed: an answer whose request the broker did not see goes to nobody but the daemon.
        if (only?.direction === 'response' && this.requesterOf(only.device, only.verb, Buffer.from(packet.payload)) !== principal!.name) return null;
        const decision = principal ? principal.read(packet.topic) : 'none';
        if (decision === 'full') return packet;
        if (decision === 'none') return null;
        const payload = this.redactedPayload(packet.payload);
        // A new packet: the one given is shared by every subscriber.
        return payload ? Object.assign(Object.create(Object.getPrototypeOf(packet) as object) as typeof packet, packet, { payload }) : null;
      },
    });
    const broker = this.broker;
    const tls = this.config.tls ? { cert: readTlsFile('mqtt.embedded.tls.cert', this.config.tls.cert), key: readTlsFile('mqtt.embedded.tls.key', this.config.tls.key) } : undefined;
    const onSocket = (socket: Socket): void => {
      socket.setNoDelay(true);
      broker.handle(socket);
    };
    if (tls) {
      const server = createTlsServer(tls, onSocket);
      // A client that fails the handshake (plain MQTT on the TLS port) is its own problem.
      server.on('tlsClientError', (_error, socket) => socket.destroy());
      this.tcp = server;
    } else {
      this.tcp = createNetServer(onSocket);
    }
    await listen(this.tcp, this.config.port, host, 'mqtt.embedded.port');
    const verifyClient = (info: { origin: string; req: IncomingMessage }, answer: (ok: boolean, code?: number, message?: string) => void): void =>
      this.originAllowed(info.req) ? answer(true) : answer(false, 403, 'page origin not allowed');
    // Upgrades handed over by the dashboard's server, which has checked Host and Origin itself.
    this.upgrades = new WebSocketServer({ noServer: true });
    this.upgrades.on('connection', (ws, req) => broker.handle(createWebSocketStream(ws), req));
    if (this.config.ws_port > 0) {
      // A plain request gets an answer rather than a connection that hangs.
      const notAPage = (_req: IncomingMessage, res: import('node:http').ServerResponse): void => {
        res.writeHead(426, { 'content-type': 'text/plain; charset=utf-8', upgrade: 'websocket', connection: 'close' });
        res.end('This port speaks MQTT over WebSocket only; the dashboard is on http.port.\n');
      };
      this.http = tls ? createHttpsServer(tls, notAPage) : createHttpServer(notAPage);
      this.http.on('connection', (socket: Socket) => socket.setNoDelay(true));
      this.wss = new WebSocketServer({ server: this.http, verifyClient });
      // ws re-emits the HTTP server's errors here; unheard, a busy ws_port would be thrown as an
      // uncaught exception before listen() could reject with what to change.
      this.wss.on('error', () => undefined);
      this.wss.on('connection', (ws, req) => broker.handle(createWebSocketStream(ws), req));
      await listen(this.http, this.config.ws_port, host, 'mqtt.embedded.ws_port');
    }
  }

  private originAllowed(req: IncomingMessage): boolean {
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    const allow = this.options.allowOrigin ?? sameOrigin;
    return allow(origin, req.headers.host);
  }

  /**
   * Takes over an HTTP upgrade from the daemon's page at `<base path>mqtt`. The caller has checked
   * its Host and Origin (it knows the page's own origin, the listener here does not).
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const upgrades = this.upgrades;
    if (!upgrades || !this.broker) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n');
      return;
    }
    upgrades.handleUpgrade(req, socket, head, (ws) => upgrades.emit('connection', ws, req));
  }

  async stop(): Promise<void> {
    // The broker first: it disconnects its clients, so the servers can then close.
    if (this.broker) await new Promise<void>((resolve) => this.broker!.close(() => resolve()));
    this.broker = undefined;
    for (const server of [this.wss, this.upgrades]) {
      server?.clients.forEach((c) => c.terminate());
      server?.close();
    }
    this.upgrades = undefined;
    await Promise.all([closeServer(this.tcp), closeServer(this.http)]);
  }
}

/** Two connected in-memory streams: what one writes, the other reads; closing one closes both. */
function streamPair(): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const make = (other: () => Duplex): Duplex =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        other().push(chunk);
        callback();
      },
      final(callback) {
        other().push(null);
        callback();
      },
      destroy(error, callback) {
        const peer = other();
        if (!peer.destroyed) peer.destroy();
        callback(error);
      },
    });
  ends.push(make(() => ends[1]!), make(() => ends[0]!));
  return [ends[0]!, ends[1]!];
}


/** Listens, or rejects with what to change (`setting`) when the address cannot be had. */
function listen(server: NetServer | HttpServer, port: number, host: string, setting: string): Promise<void> {
  return listenOn(server, port, host).catch((error: NodeJS.ErrnoException) => {
    const why =
      error.code === 'EADDRINUSE'
        ? `the port is already in use (another MQTT broker? set mqtt.url to use it, or choose another ${setting})`
        : error.code === 'EACCES'
          ? 'permission denied (ports below 1024 need privileges)'
          : error.code === 'EADDRNOTAVAIL'
            ? 'this machine has no such address (mqtt.embedded.host)'
            : error.message;
    throw new Error(`embedded broker: cannot listen on ${host}:${port}: ${why}`, { cause: error });
  });
}

function closeServer(server: NetServer | HttpServer | undefined): Promise<void> {
  if (!server || !server.listening) return Promise.resolve();
  if ('closeAllConnections' in server) server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}
