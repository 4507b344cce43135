/**
 * Listeners apart from devices: one listening socket per (bind, port) serves many connections at
 * once, and several devices may name the same port. Each device that names the port gets a
 * `ListenerTransport`, its handle on the shared `TcpListener`; the listener opens when the first
 * device's handle opens and closes when the last one closes.
 *
 * Which device a caller is: a device names its own callers by the identity its protocol carries
 * (`sender`: the ASTM H-5 sender name) and/or by peer address (`peers`). The listener is
 * protocol-neutral: it refuses a caller whose address no device allows as soon as it connects,
 * and it answers `route(identity, address)` for a protocol that reads the identity from the
 * caller's first message (the ASTM session does, per message, before anything is stored). A
 * protocol-aware session `serve`s connections: it runs one protocol link per connection, so a
 * slow or idle caller never holds up another. A connection that never sends a byte is closed
 * after `idle_timeout_ms`, so it holds nothing.
 *
 * Refusals are reported through the `report` hook the first device's build context gave (the
 * device manager makes a `bridge/event` of each), with `first` set once per distinct reason, peer
 * address and identity, so a caller that retries every second makes one log line, not hundreds.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { emitErrorSafely } from './reconnecting.ts';
import type { ByteTransport, TcpServerTransportOptions } from './transport.ts';

/** TCP keepalive lets a device that lost power show up as gone instead of silently connected. */
const KEEPALIVE_MS = 15_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
/** A caller that spoke and then went quiet this long is let go (its device reconnects when it has data). */
export const DEFAULT_QUIET_TIMEOUT_MS = 300_000;
export const DEFAULT_MAX_CONNECTIONS = 64;
/** Connections one peer address may hold at once on a port: one host cannot take every slot. */
export const DEFAULT_MAX_CONNECTIONS_PER_PEER = 16;
/** Listening on a port in use is tried again after this, doubling up to the maximum. */
export const LISTEN_RETRY_MIN_MS = 1_000;
export const LISTEN_RETRY_MAX_MS = 60_000;
/** Refusals of one reason, peer and identity reported in full; after that one report a minute, with the count. */
const REFUSALS_REPORTED_IN_FULL = 5;
const REFUSAL_REPORT_INTERVAL_MS = 60_000;
/** In the one-caller-at-a-time mode, a held caller silent this long yields to a new one. */
const HELD_CALLER_YIELDS_AFTER_MS = 10_000;
export const DEFAULT_BIND = '127.0.0.1';

export type ListenerRefusalReason =
  | 'peer-not-allowed'
  | 'unknown-sender'
  | 'too-many-connections'
  | 'too-many-from-peer'
  | 'device-busy'
  | 'device-not-ready';

/** A refused caller, as the device manager publishes it (no patient data: a sender is a device name). */
export interface ListenerRefusal {
  reason: ListenerRefusalReason;
  message: string;
  bind: string;
  port: number;
  peer: string;
  /** The identity the caller gave (ASTM sender name), when it gave one. */
  sender: string | null;
  /** True the first time this reason, peer address and identity come together (log it once). */
  first: boolean;
  /** Refusals of this reason, peer and identity so far, this one included. */
  count: number;
  /**
   * Whether this refusal is worth an event: the first few of a kind, then one a minute (the count
   * says how many there were). A caller retrying every second makes a handful of events, not 88 000.
   */
  due: boolean;
}

export type ListenerReport = (refusal: ListenerRefusal) => void;

/** "::ffff:10.0.0.5" (an IPv4 caller on a dual-stack socket) is 10.0.0.5. */
export function normalizeAddress(address: string): string {
  const a = address.trim().toLowerCase();
  return a.startsWith('::ffff:') && net.isIPv4(a.slice(7)) ? a.slice(7) : a;
}

/** How identities compare: case and surrounding spaces do not tell two devices apart. */
export function normalizeIdentity(identity: string): string {
  return identity.trim().toLowerCase();
}

/** The identities a device's options name (`sender`: one string or a list). */
export function identitiesOf(options: Pick<TcpServerTransportOptions, 'sender'>): string[] {
  const s = options.sender;
  if (s === undefined) return [];
  return (Array.isArray(s) ? s : [s]).map(normalizeIdentity).filter((x) => x !== '');
}

/** One accepted caller: a byte transport of its own, with who it is. */
export class ListenerConnection extends EventEmitter implements ByteTransport {
  readonly description: string;
  /** The peer's address (normalized) and port. */
  readonly peerAddress: string;
  readonly peerPort: number;
  /** The device this connection was last routed to, if any. */
  owner: ListenerTransport | null = null;
  private heard = false;
  private idleTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** When the caller last sent bytes (or connected). */
  lastDataAt = Date.now();

  constructor(
    readonly listener: TcpListener,
    private readonly socket: net.Socket,
    idleTimeoutMs: number,
    quietTimeoutMs: number = DEFAULT_QUIET_TIMEOUT_MS,
  ) {
    super();
    this.peerAddress = normalizeAddress(socket.remoteAddress ?? '?');
    this.peerPort = socket.remotePort ?? 0;
    this.description = `${listener.description} (peer ${this.peer})`;
    // Silent from the start: let go after idle_timeout_ms. Spoke, then quiet: after quiet_timeout_ms.
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (!this.heard) this.socket.destroy();
    }, idleTimeoutMs);
    socket.on('data', (chunk: Buffer) => {
      this.lastDataAt = Date.now();
      if (!this.heard) {
        this.heard = true;
        if (this.idleTimer) clearTimeout(this.idleTimer);
        this.idleTimer = setTimeout(() => {
          this.idleTimer = null;
          this.socket.destroy();
        }, quietTimeoutMs);
      } else this.idleTimer?.refresh();
      this.emit('data', chunk);
    });
    socket.on('error', (err: Error) => emitErrorSafely(this, new Error(`${this.description}: ${err.message}`, { cause: err })));
    socket.on('close', () => {
      this.closed = true;
      if (this.idleTimer) clearTimeout(this.idleTimer);
      this.idleTimer = null;
      this.emit('close');
    });
  }

  get peer(): string {
    return `${this.peerAddress}:${this.peerPort}`;
  }

  get isOpen(): boolean {
    return !this.closed && !this.socket.destroyed;
  }

  /** Stops reading the caller's bytes (TCP backpressure slows it); `resume` reads on. */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Whether the caller has sent anything yet. */
  get hasSpoken(): boolean {
    return this.heard;
  }

  async open(): Promise<void> {
    // Accepted sockets are open from the start.
  }

  write(data: Buffer): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (!this.isOpen) {
        reject(new Error(`${this.description}: write after the caller disconnected`));
        return;
      }
      this.socket.write(data, (err) => (err ? reject(new Error(`${this.description}: ${err.message}`, { cause: err })) : resolve()));
    });
  }

  /** Ends the connection (after what was written has gone out) and resolves once it is closed. */
  async close(): Promise<void> {
    if (this.closed) return;
    await new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.end();
      // A peer that does not read may never let the end go out: give it a second.
      setTimeout(() => this.socket.destroy(), 1000).unref();
    });
  }
}

export type RouteOutcome = { member: ListenerTransport } | { refused: ListenerRefusalReason; message: string };

/** One listening socket, shared by the devices that name its (bind, port). */
export class TcpListener {
  readonly description: string;
  readonly members: ListenerTransport[] = [];
  readonly connections = new Set<ListenerConnection>();
  private server: net.Server | undefined;
  private listening: Promise<void> | undefined;
  private report: ListenerReport | undefined;
  private readonly refusals = new RefusalCounter();

  constructor(
    readonly bind: string,
    readonly port: number,
  ) {
    this.description = `tcp-server:${bind}:${port}`;
  }

  /** The listening address (useful with port 0), or undefined when not listening. */
  address(): net.AddressInfo | undefined {
    const addr = this.server?.address();
    return addr && typeof addr === 'object' ? addr : undefined;
  }

  async join(member: ListenerTransport, report: ListenerReport | undefined): Promise<void> {
    if (!this.members.includes(member)) this.members.push(member);
    this.report ??= report;
    this.listening ??= this.listen();
    try {
      await this.listening;
    } catch (err) {
      this.listening = undefined;
      this.members.splice(this.members.indexOf(member), 1);
      throw err;
    }
  }

  async leave(member: ListenerTransport): Promise<void> {
    const i = this.members.indexOf(member);
    if (i >= 0) this.members.splice(i, 1);
    for (const c of this.connections) if (c.owner === member) c.owner = null;
    if (this.members.length > 0) return;
    pool.delete(poolKey(this.bind, this.port));
    const server = this.server;
    this.server = undefined;
    this.listening = undefined;
    await Promise.all([...this.connections].map((c) => c.close()));
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private listen(): Promise<void> {
    const server = net.createServer({ noDelay: true, keepAlive: true, keepAliveInitialDelay: KEEPALIVE_MS }, (socket) => this.accept(socket));
    this.server = server;
    return new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        this.server = undefined;
        const code = (err as { code?: string }).code;
        const why =
          code === 'EADDRINUSE'
            ? 'the port is already in use by another program'
            : code === 'EACCES'
              ? 'permission denied (ports below 1024 need privileges)'
              : code === 'EADDRNOTAVAIL'
                ? 'this machine has no such address'
                : err.message;
        reject(new Error(`tcp-server ${this.bind}:${this.port}: cannot listen: ${why}`, { cause: err }));
      };
      server.once('error', onError);
      server.listen({ host: this.bind, port: this.port }, () => {
        server.off('error', onError);
        server.on('error', (err: Error) => {
          for (const m of this.members) m.reportError(new Error(`${this.description}: ${err.message}`, { cause: err }));
        });
        resolve();
      });
    });
  }

  /** Settings shared by the port (the config loader makes its devices agree on them). */
  private setting(key: 'idle_timeout_ms' | 'quiet_timeout_ms' | 'max_connections' | 'max_connections_per_peer', fallback: number): number {
    return this.members.find((m) => m.options[key] !== undefined)?.options[key] ?? fallback;
  }

  private accept(socket: net.Socket): void {
    // Set again on the socket itself: the design's rule is that every accepted socket has no-delay.
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_MS);
    const conn = new ListenerConnection(
      this,
      socket,
      this.setting('idle_timeout_ms', DEFAULT_IDLE_TIMEOUT_MS),
      this.setting('quiet_timeout_ms', DEFAULT_QUIET_TIMEOUT_MS),
    );
    conn.on('error', () => undefined);
    if (this.connections.size >= this.setting('max_connections', DEFAULT_MAX_CONNECTIONS)) {
      this.refuse(conn, 'too-many-connections', `${this.connections.size} connections are already open on this port`, null);
      return;
    }
    const perPeer = this.setting('max_connections_per_peer', DEFAULT_MAX_CONNECTIONS_PER_PEER);
    let fromPeer = 0;
    for (const c of this.connections) if (c.peerAddress === conn.peerAddress) fromPeer++;
    if (fromPeer >= perPeer) {
      this.refuse(conn, 'too-many-from-peer', `${fromPeer} connections from ${conn.peerAddress} are already open on this port`, null);
      return;
    }
    const allowed = this.candidates(conn.peerAddress);
    if (allowed.length === 0) {
      this.refuse(conn, 'peer-not-allowed', `${conn.peerAddress} is in no device's peers list`, null);
      return;
    }
    this.connections.add(conn);
    conn.once('close', () => {
      this.connections.delete(conn);
      conn.owner?.release(conn);
    });
    // The caller is known from its address alone when one device can be it and names no identity.
    const only = allowed.length === 1 && allowed[0]!.identities.length === 0 ? allowed[0]! : null;
    const server = this.members.find((m) => m.serving);
    if (server) {
      if (only) only.claim(conn);
      server.serveConnection(conn);
      return;
    }
    // No device runs a protocol per connection: the device's handle carries one caller at a time.
    if (!only) {
      this.refuse(conn, 'device-not-ready', 'no session is ready to read who the caller is', null);
      return;
    }
    if (only.isOpen) {
      // One caller at a time: a held caller that has gone quiet yields to the new one, so an idle
      // or stalled peer cannot lock the device out; an active one keeps the device.
      const held = only.connections[only.connections.length - 1];
      if (!held || Date.now() - held.lastDataAt < Math.min(HELD_CALLER_YIELDS_AFTER_MS, this.setting('idle_timeout_ms', DEFAULT_IDLE_TIMEOUT_MS))) {
        this.refuse(conn, 'device-busy', `${only.deviceId} is already connected`, null);
        return;
      }
      only.release(held);
      void held.close();
    }
    only.claim(conn, true);
  }

  /** The devices a caller from `address` may be: all, unless some device lists peers. */
  private candidates(address: string): ListenerTransport[] {
    if (!this.members.some((m) => m.peers.length > 0)) return [...this.members];
    return this.members.filter((m) => m.peers.includes(address));
  }

  /**
   * Which device a caller is, from the identity its message names and its address. A port with
   * one device and no identity set takes every caller its peers allow.
   */
  route(identity: string | null, address: string): RouteOutcome {
    const who = identity === null ? null : normalizeIdentity(identity);
    const allowed = this.candidates(normalizeAddress(address));
    if (allowed.length === 0) return { refused: 'peer-not-allowed', message: `${address} is in no device's peers list` };
    const named = allowed.filter((m) => (m.identities.length === 0 ? allowed.length === 1 : who !== null && m.identities.includes(who)));
    if (named.length === 1) return { member: named[0]! };
    return {
      refused: 'unknown-sender',
      message:
        who === null
          ? 'the message names no sender, and this port tells its devices apart by sender'
          : `no device on this port has sender ${JSON.stringify(identity)}`,
    };
  }

  /** Reports a refusal; with `conn`, closes it (the protocol has already said no where it can). */
  refuse(conn: ListenerConnection | null, reason: ListenerRefusalReason, message: string, sender: string | null, peer?: string): void {
    const address = conn?.peerAddress ?? peer ?? '?';
    const { first, count, due } = this.refusals.count(reason, address, sender);
    try {
      this.report?.({
        reason,
        message: `${this.description}: refused ${conn?.peer ?? address}: ${message}`,
        bind: this.bind,
        port: this.port,
        peer: address,
        sender,
        first,
        count,
        due,
      });
    } catch {
      // A reporter that throws must not keep a refused caller connected.
    }
    if (conn) void conn.close();
  }
}

/**
 * How often one reason, peer and identity was refused, and whether this refusal is worth an event:
 * the first few in full, then one a minute with the count. Shared by every listener (ASTM/POCT1-A
 * TCP, the DICOM SCP) so a caller retrying every second makes a handful of events, not thousands.
 */
export class RefusalCounter {
  private readonly seen = new Map<string, { count: number; lastDueAt: number }>();

  count(reason: ListenerRefusalReason, peer: string, sender: string | null, now = Date.now()): { first: boolean; count: number; due: boolean } {
    const key = `${reason}\u0000${peer}\u0000${sender ?? ''}`;
    let seen = this.seen.get(key);
    const first = !seen;
    if (!seen) {
      // Bounded: a port scanned from many addresses must not grow this without end.
      if (this.seen.size >= 10_000) this.seen.clear();
      seen = { count: 0, lastDueAt: 0 };
      this.seen.set(key, seen);
    }
    seen.count++;
    const due = seen.count <= REFUSALS_REPORTED_IN_FULL || now - seen.lastDueAt >= REFUSAL_REPORT_INTERVAL_MS;
    if (due) seen.lastDueAt = now;
    return { first, count: seen.count, due };
  }
}

function portInUse(err: unknown): boolean {
  return ((err as { cause?: { code?: string } }).cause?.code ?? (err as { code?: string }).code) === 'EADDRINUSE';
}

const pool = new Map<string, TcpListener>();

function poolKey(bind: string, port: number): string {
  return `${normalizeAddress(bind)}|${port}`;
}

/** The listener of (bind, port), made when first asked for. Port 0 is never shared (a test's own). */
function listenerFor(bind: string, port: number): TcpListener {
  if (port === 0) return new TcpListener(bind, port);
  const key = poolKey(bind, port);
  let l = pool.get(key);
  if (!l) {
    l = new TcpListener(bind, port);
    pool.set(key, l);
  }
  return l;
}

/** Serves a connection: the protocol link a session runs on one caller. */
export type ConnectionServer = (conn: ListenerConnection) => void;

/**
 * A device's handle on the listener of its port. As a `ByteTransport`, `open` joins the listener
 * (listening when the first device joins; rejects when the port cannot be listened on), `close`
 * leaves it, `open`/`close` events say when the device's first caller was routed to it and when
 * its last one left, and `isOpen` is true while one is connected. A session that runs its
 * protocol per connection calls `serve`; others get the bytes of one caller at a time.
 */
export class ListenerTransport extends EventEmitter implements ByteTransport {
  readonly description: string;
  readonly options: Readonly<TcpServerTransportOptions>;
  readonly identities: string[];
  readonly peers: string[];
  readonly listener: TcpListener;
  lastError: Error | undefined;
  private server: ConnectionServer | null = null;
  private readonly held: ListenerConnection[] = [];
  private joined = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryDelayMs = 0;
  private closing = false;

  constructor(
    options: TcpServerTransportOptions,
    readonly deviceId: string,
    private readonly report?: ListenerReport,
  ) {
    super();
    this.options = { ...options };
    const bind = options.bind ?? DEFAULT_BIND;
    this.description = `tcp-server:${bind}:${options.port}`;
    this.identities = identitiesOf(options);
    this.peers = (options.peers ?? []).map(normalizeAddress);
    this.listener = listenerFor(bind, options.port);
  }

  get isOpen(): boolean {
    return this.held.length > 0;
  }

  /** The callers routed to this device, oldest first. */
  get connections(): readonly ListenerConnection[] {
    return this.held;
  }

  get serving(): boolean {
    return this.server !== null;
  }

  address(): net.AddressInfo | undefined {
    return this.listener.address();
  }

  /** The session runs its protocol on each connection itself (one link per caller). */
  serve(server: ConnectionServer): void {
    this.server = server;
  }

  unserve(): void {
    this.server = null;
  }

  /** Hands a caller to this device's session (it may route it to another device on the port). */
  serveConnection(conn: ListenerConnection): void {
    this.server?.(conn);
  }

  route(identity: string | null, address: string): RouteOutcome {
    return this.listener.route(identity, address);
  }

  /** The caller is this device (its address, or the identity in its message, says so). */
  claim(conn: ListenerConnection, carryBytes = false): void {
    if (conn.owner === this) return;
    conn.owner?.release(conn);
    conn.owner = this;
    this.held.push(conn);
    this.lastError = undefined;
    if (carryBytes) {
      const forward = (chunk: Buffer): void => void this.emit('data', chunk);
      conn.on('data', forward);
      conn.once('close', () => conn.off('data', forward));
    }
    if (this.held.length === 1) this.emit('open');
  }

  release(conn: ListenerConnection): void {
    const i = this.held.indexOf(conn);
    if (i < 0) return;
    this.held.splice(i, 1);
    if (conn.owner === this) conn.owner = null;
    if (this.held.length === 0) this.emit('close');
  }

  /**
   * Joins the listener. When the port is in use by another program, rejects (the device is shown
   * port-missing) and keeps trying in the background, 1 s, 2 s, … up to a minute apart; once it
   * listens, a `listening` event says so.
   */
  async open(): Promise<void> {
    if (this.joined) return;
    this.closing = false;
    try {
      await this.listener.join(this, this.report);
      this.joined = true;
    } catch (err) {
      this.lastError = err as Error;
      if (portInUse(err)) this.scheduleRetry();
      throw err;
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.closing || this.joined) return;
    this.retryDelayMs = this.retryDelayMs === 0 ? LISTEN_RETRY_MIN_MS : Math.min(this.retryDelayMs * 2, LISTEN_RETRY_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.closing || this.joined) return;
      this.listener.join(this, this.report).then(
        () => {
          if (this.closing) {
            void this.listener.leave(this);
            return;
          }
          this.joined = true;
          this.retryDelayMs = 0;
          this.lastError = undefined;
          this.emit('listening');
        },
        (err: Error) => {
          if (this.lastError?.message !== err.message) this.reportError(err);
          this.lastError = err;
          if (portInUse(err)) this.scheduleRetry();
        },
      );
    }, this.retryDelayMs);
    this.retryTimer.unref?.();
  }

  /** Writes to the device's latest caller (a host → device message). */
  async write(data: Buffer): Promise<void> {
    const conn = this.held[this.held.length - 1];
    if (!conn) throw new Error(`${this.description}: write while no device is connected`);
    await conn.write(data);
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryDelayMs = 0;
    const held = this.held.splice(0);
    for (const c of held) if (c.owner === this) c.owner = null;
    if (this.joined) {
      this.joined = false;
      await this.listener.leave(this);
    }
    await Promise.all(held.map((c) => c.close()));
    if (held.length > 0) this.emit('close');
  }

  reportError(err: Error): void {
    this.lastError = err;
    emitErrorSafely(this, err);
  }
}
