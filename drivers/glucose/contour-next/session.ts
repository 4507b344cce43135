/**
 * Contour Next: the live session with one meter. A download pokes the meter (EOT), and its ENQ
 * starts one transfer, received by the shared ASTM link (`src/protocols/astm/link.ts`, the one the
 * `astm` driver uses) over the payloads of the HID reports; `clock/sync` uses command mode after a
 * transfer. Protocol notes: README.md beside this file.
 */
import { EventEmitter } from 'node:events';
import type { SessionHost } from '../../../src/driver-sdk/index.ts';
import {
  AbortedError,
  CLOCK_SKEW_LIMIT_S,
  type ClockSyncResult,
  MeterSession,
  type MeterSessionOptions,
  NoAnswerError,
  meterOptionsSchema,
  numberOptions,
  ProtocolError,
  type SessionCommand,
} from '../../../src/driver-sdk/meter-session.ts';
import type { DeviceConfig } from '../../../src/config/types.ts';
import { ACK, type AstmFrameEvent, AstmFrameReader, ENQ, EOT, NAK } from '../../../src/protocols/astm/frame.ts';
import { AstmLink, type AstmLinkIssue } from '../../../src/protocols/astm/link.ts';
import { parseMessage } from '../../../src/protocols/astm/records.ts';
import { nowInZone } from '../../../src/util/time.ts';
import { decodeReport, encodeReports, MAX_FRAME_BYTES, MAX_TRANSFER_BYTES, trimReport } from './codec.ts';
import {
  CONTOUR_DRIVER_ID,
  type ContourHeader,
  headerState,
  linkIssueCode,
  NO_EOT_BEFORE_COMMAND_MODE,
  parseContourHeader,
  transferToDrafts,
} from './records.ts';
import { factsToPatch } from '../../../src/driver-sdk/index.ts';

/**
 * `reply_timeout_ms`: for the meter's ENQ after the poke, and the link's receive timeout between
 * frames of a transfer; `retries`: pokes sent before the meter counts as not answering.
 */
export interface ContourSessionOptions extends MeterSessionOptions {
  /** Bad frames in a row (each NAKed) before the transfer is given up (E1381: 6). */
  max_naks: number;
}

const DEFAULT_SESSION_OPTIONS: ContourSessionOptions = { reply_timeout_ms: 5000, max_naks: 6, retries: 1, clock_skew_limit_s: CLOCK_SKEW_LIMIT_S };

/** What `contourSessionOptions` reads, as the config loader checks it. */
export const CONTOUR_OPTIONS_SCHEMA = meterOptionsSchema(DEFAULT_SESSION_OPTIONS, ['retries']);

/** Reads `device.options`. Throws an Error that names the bad option. */
export function contourSessionOptions(device: DeviceConfig): ContourSessionOptions {
  return numberOptions(device, DEFAULT_SESSION_OPTIONS, ['retries']);
}

export interface ContourDownloadResult {
  inserted: number;
  duplicates: number;
  records: number;
  /** Records kept aside in quarantine (unknown type, unreadable value). */
  unreadable: number;
}

const TAG = CONTOUR_DRIVER_ID;

/** What the ASTM link reports during a transfer, queued in the session's inbox in the order it happened. */
type LinkEvent =
  /** The meter's ENQ, which the link has answered ACK. */
  | { type: 'bid' }
  /** A good frame in sequence. */
  | { type: 'accepted'; text: Buffer }
  | { type: 'issue'; issue: AstmLinkIssue }
  /** The whole transfer (H … L): the link ACKs its last frame once `stored` resolves. */
  | { type: 'message'; text: Buffer; stored: Deferred }
  /** EOT, or the link gave the transmission up. */
  | { type: 'ended' };

type Item = AstmFrameEvent | LinkEvent;

interface Deferred {
  resolve(): void;
  reject(err: Error): void;
}

/**
 * The ASTM link's carrier for a Contour: the session emits the payload bytes of the meter's HID
 * reports as `data`; what the link writes goes out through the session, as reports.
 */
class ReportCarrier extends EventEmitter {
  constructor(
    private readonly linkOpen: () => boolean,
    readonly write: (bytes: Buffer) => Promise<void>,
  ) {
    super();
  }

  get isOpen(): boolean {
    return this.linkOpen();
  }
}

/** One transfer's link: lives from the poke to the end of the transfer. */
interface TransferLink {
  link: AstmLink;
  carrier: ReportCarrier;
  /** The message the link waits on, until the session settles it. */
  unsettled: { current: Deferred | null };
}

export class ContourSession extends MeterSession<Item> {
  private readonly opts: ContourSessionOptions;
  /** Control bytes outside a transfer (the poke's answer before a link exists, command mode). */
  private readonly reader = new AstmFrameReader({ maxFrameBytes: MAX_FRAME_BYTES });
  /** While a download runs, the meter's bytes go to this link instead of `reader`. */
  private transferLink: TransferLink | null = null;
  /** A transfer ran to its end since the link opened (the meter then accepts command mode). */
  private transferDone = false;
  private header: ContourHeader | null = null;

  constructor(host: SessionHost) {
    super(host, TAG);
    this.opts = contourSessionOptions(host.device);
    this.linkClosedMessage = 'the meter was unplugged (the link closed) during the transfer';
  }

  /** One HID report per `data` event → its payload, for the transfer's link or as control events. */
  protected frame(report: Buffer): Item[] {
    const r = decodeReport(report);
    if (!r.ok) {
      // Its payload is lost: the frame it belonged to fails its check and is NAKed.
      this.badInput(Buffer.from(report), r.code, r.detail);
      return [];
    }
    if (this.transferLink) {
      this.transferLink.carrier.emit('data', r.payload);
      return [];
    }
    return this.reader.push(r.payload);
  }

  protected resetFramer(): void {
    this.reader.reset();
  }

  /** A capture keeps each report without its zero padding. */
  protected override transcribeReceived(report: Buffer): Buffer[] {
    return [trimReport(report)];
  }

  protected override linkOpened(): void {
    this.transferDone = false;
  }

  protected override linkClosed(): void {
    this.transferDone = false;
    this.transferLink?.carrier.emit('close');
  }

  protected override commands(): Record<string, SessionCommand> {
    return { 'clock/sync': () => this.syncClock() };
  }

  private badInput(bytes: Buffer, code: string, detail: string): void {
    this.report.badData(bytes, code, detail, 'input');
  }

  // ── wire I/O ──

  private sendControl(byte: number): Promise<void> {
    return this.sendBytes(Buffer.from([byte]));
  }

  /** Bytes to the meter as reports of at most 60 bytes, each recorded in the transcript. */
  private async sendBytes(bytes: Buffer): Promise<void> {
    for (const report of encodeReports(bytes)) await this.send(report);
  }

  /** Waits for one of `wanted` control bytes; other events are reported or dropped. */
  private async expectControl(wanted: number[], timeoutMs: number): Promise<number | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = await this.inbox.next(Math.max(0, deadline - Date.now()));
      if (!e) return null;
      if (e.type === 'control' && wanted.includes(e.byte)) return e.byte;
      if (e.type === 'garbage') this.badInput(e.bytes, 'garbage', 'bytes outside a frame');
      else if (e.type === 'bad-frame') this.badInput(e.raw, `bad-frame:${e.reason}`, e.detail);
    }
  }

  /** Waits for a link event of `type`; other items are dropped. False when `timeoutMs` passes first. */
  private async expectLink(type: 'bid' | 'ended', timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = await this.inbox.next(Math.max(0, deadline - Date.now()));
      if (!e) return false;
      if (e.type === type) return true;
    }
  }

  // ── the transfer, on the shared ASTM link ──

  /** From here on the meter's bytes go to a new ASTM link, which answers its ENQ and frames. */
  private openTransferLink(): TransferLink {
    const carrier = new ReportCarrier(
      () => this.transport.isOpen,
      (bytes) => this.sendBytes(bytes),
    );
    const unsettled: TransferLink['unsettled'] = { current: null };
    const link = new AstmLink(
      carrier,
      {
        onTransmission: (phase) => this.inbox.push(phase === 'start' ? { type: 'bid' } : { type: 'ended' }),
        onFrame: (f) => this.inbox.push({ type: 'accepted', text: f.text }),
        onIssue: (issue) => this.inbox.push({ type: 'issue', issue }),
        onMessage: (m) =>
          new Promise<void>((resolve, reject) => {
            const stored: Deferred = {
              resolve: () => {
                unsettled.current = null;
                resolve();
              },
              reject: (err) => {
                unsettled.current = null;
                reject(err);
              },
            };
            unsettled.current = stored;
            this.inbox.push({ type: 'message', text: m.text, stored });
          }),
      },
      { role: 'host', receiveTimeoutMs: this.opts.reply_timeout_ms, maxFrameBytes: MAX_FRAME_BYTES, maxMessageBytes: MAX_TRANSFER_BYTES },
    );
    link.start();
    this.transferLink = { link, carrier, unsettled };
    return this.transferLink;
  }

  /**
   * Back to control bytes. The link stops first, so a message it still holds (the transfer failed
   * elsewhere, or the session stopped) is neither ACKed nor NAKed, and the meter's own timeout
   * ends its side; nothing of it was stored. A commit that failed was NAKed by the link already:
   * its continuation runs as soon as the commit is rejected, before the failure reaches here.
   */
  private async closeTransferLink(t: TransferLink): Promise<void> {
    if (this.transferLink === t) this.transferLink = null;
    const stopped = t.link.stop();
    t.unsettled.current?.reject(new AbortedError('the transfer was given up'));
    await stopped;
  }

  /** Poke → ENQ (answered ACK by the link). False when the meter never bids (not in data-transfer mode). */
  private async poke(link: AstmLink): Promise<boolean> {
    for (let attempt = 0; attempt <= this.opts.retries; attempt++) {
      this.clearInbox();
      await this.sendControl(EOT);
      if (await this.expectLink('bid', this.opts.reply_timeout_ms)) return true;
      // An ENQ that came just after the wait was answered all the same: the transfer is on.
      if (link.linkState === 'receiving') return true;
    }
    return false;
  }

  /**
   * Receives the transfer the link has accepted: the link ACKs each good frame and NAKs a bad or
   * out-of-sequence one; the transfer is committed when its L record arrives, and the link ACKs
   * that last frame only after the commit. Too many bad frames in a row, a timeout, EOT before L,
   * an oversized transfer or a header that is not a Contour's end it with nothing stored.
   */
  private async receiveTransfer(): Promise<ContourDownloadResult> {
    let naks = 0;
    let results = 0;
    let total: number | null = null;
    let step = 25;
    let first = true;
    for (;;) {
      // The link's receive timer ends a silent transfer; this only guards the wait itself.
      const e = await this.inbox.next(2 * this.opts.reply_timeout_ms);
      if (!e) throw this.stalled(results);
      switch (e.type) {
        case 'accepted':
          naks = 0;
          if (first && e.text[0] === 0x48 /* H */) {
            const msg = parseMessage(e.text.toString('latin1'), 'latin1');
            const h = msg.header ? parseContourHeader(msg.header.record) : null;
            if (h && !h.ok) throw new ProtocolError(h.code, `${h.detail}; nothing was stored`);
            if (h?.ok) {
              total = h.header.recordCount;
              step = Math.max(25, Math.ceil((total ?? 0) / 10));
              this.onHeader(h.header);
            }
          } else if (e.text[0] === 0x52 /* R */) {
            results++;
            if (total !== null && total > 0 && (results % step === 0 || results === total)) {
              this.report.emit('download_progress', `${results} of ${total} records`, { received: results, total });
            }
          }
          first = false;
          break;
        case 'issue':
          if (this.onLinkIssue(e.issue, results) === 'nak' && ++naks > this.opts.max_naks) {
            throw new ProtocolError('too-many-naks', `the meter sent ${naks} bad frames in a row (${e.issue.reason}); nothing was stored`);
          }
          break;
        case 'message': {
          const result = await this.commitTransfer(e.text, e.stored);
          // The link ACKs the L frame now; the meter answers with EOT.
          await this.expectLink('ended', Math.min(1000, this.opts.reply_timeout_ms));
          return result;
        }
        case 'ended':
          throw new ProtocolError('incomplete-transfer', 'the meter ended the transfer before the L record; nothing was stored');
        default:
          break;
      }
    }
  }

  /** Reports what the link found; says whether the link NAKed a frame. Ends the transfer when the link gave it up. */
  private onLinkIssue(issue: AstmLinkIssue, results: number): 'nak' | null {
    switch (issue.kind) {
      case 'bad-frame':
      case 'garbage':
      case 'frame-number':
        this.badInput(issue.bytes ?? Buffer.alloc(0), linkIssueCode(issue), issue.detail);
        return issue.answer === 'NAK' ? 'nak' : null;
      case 'receive-timeout':
        throw this.stalled(results);
      case 'incomplete-message':
        throw new ProtocolError('incomplete-transfer', 'the meter ended the transfer before the L record; nothing was stored');
      case 'message-too-long':
        throw new ProtocolError('transfer-too-long', `the transfer passed ${MAX_TRANSFER_BYTES} bytes; nothing was stored`);
      case 'link-closed':
        throw new AbortedError(this.linkClosedMessage);
      default:
        // 'unexpected' (a stray control byte, ignored by the link) and 'commit-failed' (our own refusal).
        return null;
    }
  }

  private stalled(results: number): ProtocolError {
    return new ProtocolError('timeout', `the meter stopped sending after ${results} results, before the L record; nothing was stored`);
  }

  /** The whole transfer → drafts, committed; only then may the link ACK its last frame. */
  private async commitTransfer(text: Buffer, stored: Deferred): Promise<ContourDownloadResult> {
    try {
      const t = transferToDrafts(text, this.host.device.id, this.host.timezone);
      if (t.fatal) throw new ProtocolError(t.fatal.code, `${t.fatal.detail}; nothing was stored`);
      for (const p of t.problems) this.badInput(p.bytes, p.code, p.detail);
      const done = await this.commitDownload(t.drafts);
      stored.resolve();
      return { inserted: done.inserted, duplicates: done.duplicates, records: t.drafts.length, unreadable: t.problems.length };
    } catch (err) {
      stored.reject(err as Error);
      throw err;
    }
  }

  private onHeader(h: ContourHeader): void {
    this.header = h;
    this.report.patch({ ...factsToPatch(headerState(h)), last_seen: this.host.now().toISOString() });
    if (h.clock) this.report.clockRead(h.clock, this.host.timezone, this.host.now(), this.opts.clock_skew_limit_s);
  }

  // ── conversations ──

  protected async download(trigger: string): Promise<ContourDownloadResult> {
    const t = this.openTransferLink();
    try {
      return await this.downloadConversation(
        trigger,
        async () => {
          if (!(await this.poke(t.link))) {
            throw new NoAnswerError(
              'the meter sent no ENQ: it is not in data-transfer mode (unplug it and plug it in again; a Contour sends its memory once per plug-in)',
            );
          }
        },
        async () => {
          const r = await this.receiveTransfer();
          this.transcript = null;
          this.transferDone = true;
          const skipped = r.unreadable ? `; ${r.unreadable} unreadable records kept in quarantine` : '';
          return {
            result: r,
            message: `downloaded ${r.records} readings: ${r.inserted} new, ${r.duplicates} already stored${skipped}`,
            data: { records: r.records, inserted: r.inserted, duplicates: r.duplicates, unreadable: r.unreadable },
          };
        },
      );
    } finally {
      await this.closeTransferLink(t);
    }
  }

  /**
   * Command mode, as the note documents it from Tidepool: only after a transfer in this plug-in
   * (the meter must have sent its memory first), so a download runs first when none has.
   */
  private async syncClock(): Promise<ClockSyncResult> {
    if (!this.transport.isOpen) throw new Error(`${TAG}: the meter is not plugged in`);
    if (!this.transferDone) await this.download('clock-sync');
    this.inbox.resume();
    try {
      const target = nowInZone(this.host.timezone, this.host.now()).slice(0, 16) + ':00';
      const m = /^\d{2}(\d{2})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(target)!;
      this.clearInbox();
      await this.sendControl(ACK);
      await this.expectControl([ENQ, EOT, ACK], Math.min(300, this.opts.reply_timeout_ms));
      if (!NO_EOT_BEFORE_COMMAND_MODE.has(this.header?.modelCode ?? '')) {
        await this.sendControl(EOT);
        await this.expectControl([ENQ, EOT, ACK, NAK], this.opts.reply_timeout_ms);
      }
      let eot = false;
      for (let i = 0; i < this.opts.max_naks && !eot; i++) {
        await this.sendControl(NAK);
        eot = (await this.expectControl([EOT], this.opts.reply_timeout_ms)) === EOT;
      }
      if (!eot) throw new ProtocolError('no-command-mode', 'the meter did not leave data-transfer mode (no EOT after NAK)');
      const step = async (text: string, what: string): Promise<void> => {
        await this.sendBytes(Buffer.from(text, 'latin1'));
        const reply = await this.expectControl([ACK, NAK], this.opts.reply_timeout_ms);
        if (reply === ACK) return;
        if (reply === NAK && what === 'date' && /Link/.test(this.header?.model ?? '')) {
          throw new ProtocolError('clock-set-by-pump', 'the meter refused the date: a Contour Next Link paired with a pump takes its clock from the pump');
        }
        throw new ProtocolError('clock-not-set', `the meter did not accept the ${what} (${reply === NAK ? 'NAK' : 'no answer'})`);
      };
      await this.sendControl(ENQ);
      if ((await this.expectControl([ACK, NAK], this.opts.reply_timeout_ms)) !== ACK) {
        throw new ProtocolError('no-command-mode', 'the meter did not accept command mode (no ACK to ENQ)');
      }
      await step('W|', 'write command');
      await step('D|', 'date command');
      await step(`${m[1]}${m[2]}${m[3]}|\r`, 'date');
      await step('W|', 'write command');
      await step('T|', 'time command');
      await step(`${m[4]}${m[5]}|\r`, 'time');
      await this.sendControl(EOT);
      // The Contour cannot read its clock back: the time sent stands for it until the next download.
      return this.report.clockSet(
        target,
        this.host.timezone,
        this.host.now(),
        this.opts.clock_skew_limit_s,
        'the meter clock was set to the host time (minutes; the next download reads it back)',
      );
    } catch (err) {
      throw this.failed(err, 'device_error');
    }
  }
}
