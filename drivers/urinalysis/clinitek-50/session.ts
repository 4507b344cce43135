/**
 * The CLINITEK 50 session: host-driven. Identify (ENQ), then ask for records (XON DC2) until the
 * reader answers NAK; each record is committed, then ACKed.
 */
import type { SessionHost } from '../../../src/driver-sdk/index.ts';
import {
  CLOCK_SKEW_LIMIT_S,
  MeterSession,
  type MeterSessionOptions,
  NoAnswerError,
  meterOptionsSchema,
  numberOptions,
  ProtocolError,
} from '../../../src/driver-sdk/meter-session.ts';
import type { DeviceConfig } from '../../../src/config/types.ts';
import { dateOrderOption, type DateOrder } from '../../analytes/urine-strip.ts';
import { ACK, DC2, decodePacket, ENQ, NAK, PacketFramer, XON, type Clinitek50Identity, type Clinitek50Record, type FramedItem } from './codec.ts';
import { CLINITEK_50_DRIVER_ID, clinitek50Identity, itemIssue, MODEL, recordToDraft } from './records.ts';

/** `retries`: bad packets in a row before the download is given up. */
export interface Clinitek50SessionOptions extends MeterSessionOptions {
  date_order: DateOrder;
}

const DEFAULT_NUMBER_OPTIONS: MeterSessionOptions = { reply_timeout_ms: 3000, retries: 3, clock_skew_limit_s: CLOCK_SKEW_LIMIT_S };
const DEFAULT_SESSION_OPTIONS: Clinitek50SessionOptions = { ...DEFAULT_NUMBER_OPTIONS, date_order: 'YMD' };

/** What `clinitek50SessionOptions` reads, as the config loader checks it. */
export const CLINITEK_50_OPTIONS_SCHEMA = meterOptionsSchema(DEFAULT_NUMBER_OPTIONS, ['retries'], { date_order: { enum: ['DMY', 'MDY', 'YMD'], description: "the order of the reader's date fields" } });

export function clinitek50SessionOptions(device: Pick<DeviceConfig, 'id' | 'options'>): Clinitek50SessionOptions {
  const o = device.options ?? {};
  for (const name of Object.keys(o)) {
    if (!(name in DEFAULT_SESSION_OPTIONS)) throw new Error(`device ${device.id}: unknown option ${name} for clinitek-50`);
  }
  const dateOrder = dateOrderOption(device, DEFAULT_SESSION_OPTIONS.date_order);
  return { ...numberOptions(device, DEFAULT_NUMBER_OPTIONS, ['retries']), date_order: dateOrder };
}

export interface DownloadResult {
  records: number;
  inserted: number;
  duplicates: number;
}

/** The most records one download reads (the reader's memory is far smaller): a guard against a loop. */
const MAX_RECORDS = 10_000;

export class Clinitek50Session extends MeterSession<FramedItem> {
  private readonly opts: Clinitek50SessionOptions;
  private readonly framer = new PacketFramer();

  constructor(host: SessionHost) {
    super(host, CLINITEK_50_DRIVER_ID);
    this.opts = clinitek50SessionOptions(host.device);
  }

  protected frame(chunk: Buffer): FramedItem[] {
    return this.framer.push(chunk);
  }

  protected resetFramer(): void {
    this.framer.reset();
  }

  private async sendBytes(...bytes: number[]): Promise<void> {
    await this.send(Buffer.from(bytes));
  }

  /** The next packet or NAK; garbage and broken packets on the way are reported and skipped. */
  private async next(): Promise<FramedItem | null> {
    const deadline = Date.now() + this.opts.reply_timeout_ms;
    for (;;) {
      const item = await this.inbox.next(Math.max(0, deadline - Date.now()));
      if (!item) return null;
      const issue = itemIssue(item);
      if (issue?.bytes) {
        this.report.badData(issue.bytes, issue.reason, 'bytes outside a complete packet', 'packet');
        if (item.kind === 'garbage') continue;
      }
      return item;
    }
  }

  /** Sets DTR low as the reader requires. A port without modem lines (a pty) only logs it. */
  private async dtrLow(): Promise<void> {
    if (!this.transport.setSignals) return;
    try {
      await this.transport.setSignals({ dtr: false });
    } catch (err) {
      this.host.log.info({ err: (err as Error).message }, 'clinitek-50: could not set DTR low');
    }
  }

  private async identify(): Promise<Clinitek50Identity> {
    let last = 'timeout';
    for (let attempt = 0; attempt <= this.opts.retries; attempt++) {
      this.clearInbox();
      await this.sendBytes(ENQ);
      const item = await this.next();
      if (!item) continue;
      if (item.kind !== 'packet') {
        last = item.kind;
        continue;
      }
      const r = decodePacket(item.bytes, this.opts.date_order);
      if (!r.ok) {
        this.report.badData(item.bytes, r.error.code, r.error.detail, 'packet');
        last = r.error.code;
        continue;
      }
      if (r.message.type === 'identity') return r.message;
      last = 'unexpected-record';
    }
    if (last === 'timeout') throw new NoAnswerError('no answer to ENQ: the reader is off, busy, or not on this port');
    throw new ProtocolError(last, `no valid identity packet after ${this.opts.retries + 1} tries (${last})`);
  }

  protected async download(trigger: string): Promise<DownloadResult> {
    this.begin();
    let started = false;
    try {
      await this.dtrLow();
      const id = await this.identify();
      started = true;
      this.report.patch({
        model: MODEL,
        firmware: id.software,
        meter: { display_unit: id.units },
        status: 'downloading',
        status_detail: null,
        last_seen: this.host.now().toISOString(),
      });
      this.report.clockRead(id.clock, this.host.timezone, this.host.now(), this.opts.clock_skew_limit_s, 'reader');
      this.report.emit('download_started', `download started (${trigger})`, { trigger });
      const identity = clinitek50Identity(this.host.device.id, id.software);
      const total = { records: 0, inserted: 0, duplicates: 0 };
      let faults = 0;
      for (let n = 0; n < MAX_RECORDS; n++) {
        // Each record's capture is its own request and answer (and any NAKed tries before it).
        this.transcript = [];
        await this.sendBytes(XON, DC2);
        const item = await this.next();
        if (!item) throw new NoAnswerError('no answer to a record request: the reader stopped answering');
        if (item.kind === 'nak') break; // no more data
        let reason: string | null = null;
        let record: Clinitek50Record | null = null;
        if (item.kind !== 'packet') reason = item.kind === 'overflow' ? 'packet-too-long' : 'truncated-packet';
        else {
          const r = decodePacket(item.bytes, this.opts.date_order);
          if (!r.ok) {
            this.report.badData(item.bytes, r.error.code, r.error.detail, 'packet');
            reason = r.error.code;
          } else if (r.message.type !== 'record') reason = 'unexpected-identity';
          else record = r.message;
        }
        if (!record) {
          await this.sendBytes(NAK);
          if (++faults > this.opts.retries) throw new ProtocolError(reason ?? 'invalid-packet', `${faults} bad packets in a row (${reason}); the records not yet ACKed stay on the reader`);
          continue;
        }
        faults = 0;
        const capture = this.takeCapture();
        let stored: { inserted: number; duplicates: number };
        try {
          stored = await this.host.commit({ result: [recordToDraft(record, identity, this.host.timezone)] }, capture);
        } catch (err) {
          await this.sendBytes(NAK).catch(() => undefined);
          throw new ProtocolError('commit-failed', `the store did not commit record ${record.seq}: ${(err as Error).message}; it was not ACKed`);
        }
        await this.sendBytes(ACK);
        total.records++;
        total.inserted += stored.inserted;
        total.duplicates += stored.duplicates;
      }
      this.transcript = null;
      const at = this.host.now().toISOString();
      this.report.patch({ status: 'ok', status_detail: null, meter: { record_count: total.records }, last_download: at, last_seen: at });
      this.report.emit('download_finished', `downloaded ${total.records} records: ${total.inserted} new, ${total.duplicates} already stored`, total);
      return total;
    } catch (err) {
      throw this.failed(err, started ? 'download_failed' : 'device_error');
    }
  }
}
