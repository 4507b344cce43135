/**
 * The `astm` session: a passive receiver on the pushed-and-acknowledged base. The device bids for
 * the line (ENQ) whenever it has results; `AstmLink` (`src/protocols/astm/link.ts`) runs E1381
 * and hands over each complete message, and `commitMessage` below is the one place where a
 * message is decoded and handed to `receive`, which commits it; the link ACKs the message's last
 * frame only once that resolved stored, and NAKs it otherwise.
 *
 * On a serial line or as a TCP client there is one link. Behind a listener (`tcp-server`) every
 * caller gets a link of its own (E1381 state is per connection, and a slow caller never holds up
 * another), and each complete message is routed by its H-5 sender name (`headerSender`, read
 * before anything is decoded) to the session of the device that names it, which commits it. A
 * message no device on the port names is refused: its last frame is NAKed (never ACK what is not
 * stored), the connection is closed and the listener raises a `listener_refused` event.
 */
import type { Capture, DecodeContext, SessionHost } from '../../../src/driver-sdk/index.ts';
import type { SessionCommand } from '../../../src/driver-sdk/meter-session.ts';
import { PushedSession } from '../../../src/driver-sdk/pushed-session.ts';
import { NAK } from '../../../src/protocols/astm/frame.ts';
import { AstmLink, type AstmCarrier, type AstmLinkIssue, type AstmLinkMessage } from '../../../src/protocols/astm/link.ts';
import { splitRecords } from '../../../src/protocols/astm/records.ts';
import { ListenerTransport, type ListenerConnection } from '../../../src/transports/listener.ts';
import { BareAstmLink } from './bare-link.ts';
import { parseAstmOptions, type AstmOptions } from './options.ts';
import { ASTM_DRIVER_ID, decodeAstmMessage, headerSender } from './records.ts';

/** The session of each device behind a listener, so a caller routed to a device reaches it. */
const sessionOf = new WeakMap<ListenerTransport, AstmSession>();

/** What the session needs of a link: E1381 (`AstmLink`) or bare blocks (`BareAstmLink`, `framing: bare`). */
type ReceiverLink = Pick<AstmLink, 'start' | 'stop' | 'send'> | BareAstmLink;

/** One caller on a listener and its own link. */
interface Caller {
  conn: ListenerConnection;
  link: ReceiverLink;
  /** The session whose device the caller was last routed to. */
  owner: AstmSession | null;
  /** Its message was refused: the NAK of its last frame is the last thing it gets. */
  refused: boolean;
}

/** At most `max` lines per `windowMs`; the lines left out are counted and said in the next one. */
class LogLimit {
  private windowStart = 0;
  private used = 0;
  private suppressed = 0;

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
  ) {}

  allow(now: number): boolean {
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.used = 0;
    }
    if (this.used < this.max) {
      this.used++;
      return true;
    }
    this.suppressed++;
    return false;
  }

  takeSuppressed(): number {
    const n = this.suppressed;
    this.suppressed = 0;
    return n;
  }
}

export class AstmSession extends PushedSession {
  private readonly opts: AstmOptions;
  /** The link on a serial line or a TCP client connection; absent behind a listener. */
  private link: ReceiverLink | null = null;
  /** Callers this session runs the link of (behind a listener). */
  private readonly callers = new Set<Caller>();
  /** Link issues logged per device: a burst a line, and at most a few lines a minute. */
  private readonly logLimit = new LogLimit(6, 60_000);

  constructor(host: SessionHost) {
    const opts = parseAstmOptions(host.device.options ?? {}, `device ${host.device.id}: options`);
    super(host, ASTM_DRIVER_ID, { idleMs: opts.receive_timeout_ms });
    this.opts = opts;
  }

  private newLink(carrier: AstmCarrier, handlers: ConstructorParameters<typeof AstmLink>[1], write?: (b: Buffer) => Promise<void>): ReceiverLink {
    if (this.opts.framing === 'bare') {
      return new BareAstmLink(carrier, handlers, { receiveTimeoutMs: this.opts.receive_timeout_ms, maxFrameBytes: this.opts.max_frame_bytes, ...(write ? { write } : {}) });
    }
    return new AstmLink(carrier, handlers, {
      role: 'host',
      receiveTimeoutMs: this.opts.receive_timeout_ms,
      replyTimeoutMs: this.opts.reply_timeout_ms,
      maxFrameBytes: this.opts.max_frame_bytes,
      frameTextSize: this.opts.frame_text_size,
      // An analyzer's line can carry noise for hours: one report per burst, read at a bounded rate,
      // garbled after as long as the receiver timer of nothing but bad input.
      coalesceBadInput: true,
      garbledAfterMs: this.opts.receive_timeout_ms,
      ...(write ? { write } : {}),
    });
  }

  protected attach(): void {
    const t = this.host.transport;
    if (t instanceof ListenerTransport) {
      sessionOf.set(t, this);
      t.serve((conn) => this.serveCaller(conn));
      return;
    }
    this.link = this.newLink(t, {
      onMessage: (m) => this.commitMessage(m),
      onIssue: (i) => this.onIssue(i),
      onTransmission: (phase) => this.onTransmission(phase),
    });
    this.link.start();
  }

  protected async detach(): Promise<void> {
    const t = this.host.transport;
    if (t instanceof ListenerTransport) {
      t.unserve();
      sessionOf.delete(t);
    }
    await this.link?.stop();
    const callers = [...this.callers];
    this.callers.clear();
    await Promise.all(callers.map(async (c) => {
      await c.link.stop();
      await c.conn.close();
    }));
  }

  protected override commands(): Record<string, SessionCommand> {
    return {
      send: async (params) => {
        // Host → device (orders, query answers): records as text, one per line or CR-separated.
        const text = params.message;
        if (typeof text !== 'string' || !/^H/.test(text)) throw new Error('astm: send needs {"message": "H|\\\\^&|…\\rL|1|N"} starting with an H record');
        const link = this.link ?? this.latestCallerLink();
        if (!link) throw new Error('astm: no analyzer is connected to send to');
        const records = splitRecords(text);
        await link.send(Buffer.from(records.map((r) => `${r}\r`).join(''), 'latin1'));
        return { sent: records.length };
      },
    };
  }

  /** The link of the caller most recently routed to this device (whichever session runs it). */
  private latestCallerLink(): ReceiverLink | null {
    const t = this.host.transport;
    if (!(t instanceof ListenerTransport)) return null;
    const conn = t.connections[t.connections.length - 1];
    if (!conn) return null;
    for (const member of conn.listener.members) {
      const s = sessionOf.get(member);
      for (const c of s?.callers ?? []) if (c.conn === conn) return c.link;
    }
    return null;
  }

  // ── behind a listener ──

  /** Runs a link of its own for one caller; its messages go to the device its sender names. */
  private serveCaller(conn: ListenerConnection): void {
    const caller: Caller = {
      conn,
      owner: conn.owner ? (sessionOf.get(conn.owner) ?? null) : null,
      refused: false,
      link: undefined as unknown as ReceiverLink,
    };
    caller.link = this.newLink(
      conn,
      {
        onMessage: (m) => this.routeMessage(caller, m),
        onIssue: (i) => this.callerIssue(caller, i),
        onTransmission: (phase) => {
          if (phase === 'start') caller.owner?.onTransmission('start');
          else caller.owner?.onTransmission('end');
        },
      },
      async (bytes) => {
        await conn.write(bytes);
        // The NAK of a refused message's last frame is written; then the caller is let go.
        if (caller.refused && bytes.length === 1 && bytes[0] === NAK) {
          void caller.link.stop();
          void conn.close();
        }
      },
    );
    this.callers.add(caller);
    caller.link.start();
    // The link hears the close itself (a partial message is reported, the transmission ends);
    // stopping it here would go neutral first and hide that. A closed caller's link is inert.
    conn.once('close', () => this.callers.delete(caller));
  }

  /**
   * Routes one complete message by its H-5 sender name; the owning session commits it. A message
   * no device names is refused: rejecting NAKs its last frame, and the write above then closes.
   */
  private async routeMessage(caller: Caller, m: AstmLinkMessage): Promise<void> {
    const { conn } = caller;
    const sender = headerSender(m.text)[0]?.trim() || null;
    const route = conn.listener.route(sender, conn.peerAddress);
    if ('refused' in route) {
      caller.refused = true;
      conn.listener.refuse(null, route.refused, route.message, sender, conn.peerAddress);
      throw new Error(`refused: ${route.message}`);
    }
    const owner = sessionOf.get(route.member);
    if (!owner) {
      caller.refused = true;
      conn.listener.refuse(null, 'device-not-ready', `${route.member.deviceId} has no session running`, sender, conn.peerAddress);
      throw new Error(`refused: ${route.member.deviceId} has no session running`);
    }
    if (caller.owner !== owner) {
      caller.owner = owner;
      // A caller routed mid-transmission: its device's transmission starts here.
      owner.onTransmission('start');
    }
    route.member.claim(conn);
    await owner.commitMessage(m);
  }

  /** A link problem of a caller: its device's, once known; before that, the port's log. */
  private callerIssue(caller: Caller, i: AstmLinkIssue): void {
    if (caller.refused && i.kind === 'commit-failed') return; // the refusal is its own event
    const sole = caller.conn.listener.members.length === 1 ? sessionOf.get(caller.conn.listener.members[0]!) : undefined;
    const to = caller.owner ?? sole;
    if (to) {
      to.onIssue(i);
      return;
    }
    this.host.log.warn({ reason: i.reason, kind: i.kind, peer: caller.conn.peerAddress }, 'astm: link issue from a caller not yet routed to a device');
  }

  // ── every carrier ──

  /**
   * Bytes kept for a person to look at; an empty or missing piece is not worth a quarantine entry.
   * Resolves true once stored (or when there was nothing to keep), false when the store failed.
   */
  private quarantine(bytes: Buffer | undefined, reason: string): Promise<boolean> {
    return bytes && bytes.length > 0 ? this.report.quarantine(bytes, reason) : Promise.resolve(true);
  }

  private onTransmission(phase: 'start' | 'end'): void {
    if (this.stopped) return;
    if (phase === 'start') this.beginTransmission();
    else void this.endTransmission();
  }

  private onIssue(i: AstmLinkIssue): void {
    if (this.stopped) return;
    // Nothing here is ACKed (a bad frame is NAKed, a partial message never answered): no need to wait.
    // The link reports a burst of bad input once, so this is one quarantine entry per burst.
    void this.quarantine(i.bytes, i.reason);
    const burst = i.burst ? { pieces: i.burst.pieces, bytes: i.burst.size } : {};
    if (this.logLimit.allow(Date.now())) {
      this.host.log.warn({ reason: i.reason, kind: i.kind, answer: i.answer ?? null, ...burst, suppressed: this.logLimit.takeSuppressed() }, 'astm: link issue');
    }
    if (i.garbled) {
      this.report.patch({ status: 'garbled', status_detail: i.garbled });
      this.report.emit('device_error', `the link carries nothing readable: ${i.garbled}`, { reason: 'garbled', ...burst });
      return;
    }
    if (i.kind === 'receive-timeout' || i.kind === 'incomplete-message' || i.kind === 'link-closed') {
      if (i.bytes) this.report.emit('download_failed', `${i.detail}`, { reason: i.reason });
      return;
    }
    if (i.kind === 'commit-failed') return; // the base has raised download_failed (commit-failed)
    this.report.emit('bad_frame', `${i.kind}: ${i.detail}`, { reason: i.reason, answer: i.answer ?? null, ...burst });
  }

  /**
   * Receive → commit → ACK for one complete message (H … L). The link holds the ACK of the
   * message's last frame until this resolves and NAKs it when this rejects (a failed commit), so
   * the device is told "received" only for what is stored (rule 1). The H record's sender (H-5)
   * is what `decodeAstmMessage` reads the dialect and the device's model/serial from.
   */
  private async commitMessage(m: AstmLinkMessage): Promise<void> {
    if (this.stopped) throw new Error('astm: the session is stopped');
    const ctx: DecodeContext = { deviceId: this.host.device.id, timezone: this.host.timezone };
    const r = decodeAstmMessage(m.text, ctx, this.opts);
    const capture: Capture = { kind: 'transcript', exchanges: m.exchanges };
    for (const issue of r.issues) this.host.log.warn({ reason: issue.reason }, 'astm: message problem');
    const at = this.host.now().toISOString();
    const state = { analyzer: { ...(r.dialect ? { dialect: r.dialect.id } : {}), last_message_at: at } };
    if (r.kind === 'keep-alive') {
      // Only H and L: a line test. ACKed, with no quarantine entry and no event (a device that
      // sends one every minute would otherwise fill both); the device state says it was heard.
      await this.receive({ drafts: {}, capture, facts: r.device, state }, { acknowledge: () => undefined, refuse: () => undefined });
      this.host.log.debug({ dialect: r.dialect?.id ?? null }, 'astm: keep-alive message');
      return;
    }
    if (r.drafts.length === 0) {
      // Nothing to store, but the message itself arrived intact: it is ACKed as E1381 requires
      // (a NAK would only make the device send the same message again, forever). The bytes are
      // kept in quarantine and the reason is an event. The ACK goes out when this resolves, so
      // the quarantine row is awaited first (rule 6: the raw bytes are kept before "received");
      // when the store cannot keep them the message is NAKed, and the device sends it again.
      const reason = r.kind === 'query' ? 'query-unsupported' : 'no-results';
      await this.receive({ drafts: {}, capture, facts: r.device, state }, { acknowledge: () => undefined, refuse: () => undefined });
      if (!(await this.quarantine(m.text, reason))) throw new Error(`the store could not keep the message (${reason}) in quarantine`);
      this.report.emit(
        r.kind === 'query' ? 'device_error' : 'bad_frame',
        r.kind === 'query' ? 'the device sent a query (Q); this daemon holds no orders to answer it' : 'a message with no results in it',
        { reason },
      );
      return;
    }
    // The link answers (ACK, or NAK on a rejection) from this promise, so `receive`'s answers are empty.
    const o = await this.receive(
      { drafts: { result: r.drafts }, capture, facts: r.device, state },
      { acknowledge: () => undefined, refuse: () => undefined },
    );
    if (!o.stored) throw new Error(o.reason);
    if (r.issues.length > 0) {
      this.report.emit('bad_frame', `a message was stored with ${r.issues.length} problem(s)`, { reason: 'message-problems', problems: r.issues.map((i) => i.reason) });
    }
  }
}
