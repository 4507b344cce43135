/**
 * The `astm` session: a passive receiver. The device bids for the line (ENQ) whenever it has
 * results; `AstmLink` (`src/protocols/astm/link.ts`) runs E1381 and hands over each complete
 * message, and `commitMessage` below is the one place where a message is decoded, stored and so
 * acknowledged.
 */
import type { Capture, DecodeContext, DriverSession, SessionHost } from '../../../src/driver-sdk/index.ts';
import { SessionReporter } from '../../../src/driver-sdk/meter-session.ts';
import { AstmLink, type AstmLinkIssue, type AstmLinkMessage } from '../../../src/protocols/astm/link.ts';
import { splitRecords } from '../../../src/protocols/astm/records.ts';
import { parseAstmOptions, type AstmOptions } from './options.ts';
import { ASTM_DRIVER_ID, decodeAstmMessage } from './records.ts';
import { factsToPatch } from '../../../src/driver-sdk/index.ts';

export class AstmSession implements DriverSession {
  private readonly opts: AstmOptions;
  private readonly link: AstmLink;
  private readonly report: SessionReporter;
  private stopped = false;
  private totals = { messages: 0, records: 0, inserted: 0, duplicates: 0 };

  constructor(private readonly host: SessionHost) {
    this.opts = parseAstmOptions(host.device.options ?? {}, `device ${host.device.id}: options`);
    this.report = new SessionReporter(host, ASTM_DRIVER_ID);
    this.link = new AstmLink(
      host.transport,
      {
        onMessage: (m) => this.commitMessage(m),
        onIssue: (i) => this.onIssue(i),
        onTransmission: (phase) => this.onTransmission(phase),
      },
      {
        role: 'host',
        receiveTimeoutMs: this.opts.receive_timeout_ms,
        replyTimeoutMs: this.opts.reply_timeout_ms,
        maxFrameBytes: this.opts.max_frame_bytes,
        frameTextSize: this.opts.frame_text_size,
      },
    );
  }

  async start(): Promise<void> {
    this.link.start();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.link.stop();
  }

  async command(verb: string, params: Record<string, unknown>): Promise<unknown> {
    if (this.stopped) throw new Error('astm: the session is stopped');
    switch (verb) {
      case 'status':
        return { ...this.report.state };
      case 'send': {
        // Host → device (orders, query answers): records as text, one per line or CR-separated.
        const text = params.message;
        if (typeof text !== 'string' || !/^H/.test(text)) throw new Error('astm: send needs {"message": "H|\\\\^&|…\\rL|1|N"} starting with an H record');
        const records = splitRecords(text);
        await this.link.send(Buffer.from(records.map((r) => `${r}\r`).join(''), 'latin1'));
        return { sent: records.length };
      }
      default:
        throw new Error(`astm: unknown command "${verb}" (known: status, send)`);
    }
  }

  /** Bytes kept for a person to look at; an empty or missing piece is not worth a quarantine entry. */
  private quarantine(bytes: Buffer | undefined, reason: string): void {
    if (bytes && bytes.length > 0) this.report.quarantine(bytes, reason);
  }

  private onTransmission(phase: 'start' | 'end'): void {
    if (this.stopped) return;
    if (phase === 'start') {
      this.totals = { messages: 0, records: 0, inserted: 0, duplicates: 0 };
      this.report.patch({ status: 'downloading', status_detail: null, last_seen: this.host.now().toISOString() });
      this.report.emit('download_started', 'the device started a transmission', { trigger: 'device' });
      return;
    }
    const t = this.totals;
    if (t.messages > 0) {
      this.report.emit('download_finished', `received ${t.records} results in ${t.messages} messages: ${t.inserted} new, ${t.duplicates} already stored`, {
        records: t.records,
        inserted: t.inserted,
        duplicates: t.duplicates,
      });
    }
    if (this.report.state.status === 'downloading') this.report.patch({ status: 'ok', status_detail: null });
  }

  private onIssue(i: AstmLinkIssue): void {
    if (this.stopped) return;
    this.quarantine(i.bytes, i.reason);
    this.host.log.warn({ reason: i.reason, kind: i.kind, answer: i.answer ?? null }, 'astm: link issue');
    if (i.kind === 'receive-timeout' || i.kind === 'incomplete-message' || i.kind === 'link-closed') {
      if (i.bytes) this.report.emit('download_failed', `${i.detail}`, { reason: i.reason });
      if (this.report.state.status === 'downloading') this.report.patch({ status: 'ok', status_detail: null });
      return;
    }
    this.report.emit('bad_frame', `${i.kind}: ${i.detail}`, { reason: i.reason, answer: i.answer ?? null });
  }

  /**
   * Receive → commit → ACK for one complete message (H … L). The link holds the ACK of the
   * message's last frame until this resolves and NAKs it when this rejects (a failed commit), so
   * the device is told "received" only for what is stored (rule 1). The H record's sender (H-5)
   * is what `decodeAstmMessage` reads the dialect and the device's model/serial from.
   */
  private async commitMessage(m: AstmLinkMessage): Promise<void> {
    const ctx: DecodeContext = { deviceId: this.host.device.id, timezone: this.host.timezone };
    const r = decodeAstmMessage(m.text, ctx, this.opts);
    const capture: Capture = { kind: 'transcript', exchanges: m.exchanges };
    for (const issue of r.issues) this.host.log.warn({ reason: issue.reason }, 'astm: message problem');
    this.report.patch({ ...factsToPatch(r.device), last_seen: this.host.now().toISOString() });
    if (r.drafts.length === 0) {
      // Nothing to store, but the message itself arrived intact: it is ACKed as E1381 requires
      // (a NAK would only make the device send the same message again, forever). The bytes are
      // kept in quarantine and the reason is an event.
      const reason = r.kind === 'query' ? 'query-unsupported' : 'no-results';
      this.quarantine(m.text, reason);
      this.report.emit(
        r.kind === 'query' ? 'device_error' : 'bad_frame',
        r.kind === 'query' ? 'the device sent a query (Q); this daemon holds no orders to answer it' : 'a message with no results in it',
        { reason },
      );
      return;
    }
    const stored = await this.host.commit({ result: r.drafts }, capture); // a rejection NAKs the last frame
    const t = this.totals;
    t.messages++;
    t.records += r.drafts.length;
    t.inserted += stored.inserted;
    t.duplicates += stored.duplicates;
    const at = this.host.now().toISOString();
    this.report.patch({ last_download: at, last_seen: at });
    if (r.issues.length > 0) {
      this.report.emit('bad_frame', `a message was stored with ${r.issues.length} problem(s)`, { reason: 'message-problems', problems: r.issues.map((i) => i.reason) });
    }
  }
}
