/**
 * The live LifeScan binary session: the dialect's link layer (the UltraEasy DISC/ACK/sequence-bit
 * handshake or the plain Verio IQ exchange), the download and the clock set. The rest (transport,
 * timeouts, one conversation at a time, events) is `MeterSession`.
 */
import type { SessionHost } from '../../../src/driver-sdk/index.ts';
import {
  type Attempt,
  CLOCK_SKEW_LIMIT_S,
  type ClockSyncResult,
  MeterSession,
  type MeterSessionOptions,
  NoAnswerError,
  meterOptionsSchema,
  numberOptions,
  ProtocolError,
  type RetryPolicy,
  retryPolicy,
  type SessionCommand,
} from '../../../src/driver-sdk/meter-session.ts';
import type { DeviceConfig } from '../../../src/config/types.ts';
import { byDeviceTime } from '../../../src/records/build.ts';
import { clockSkewSeconds, nowInZone } from '../../../src/util/time.ts';
import {
  FrameReader,
  LINK,
  encodeFrame,
  isAck,
  isData,
  isDisc,
  naiveFromSeconds,
  secondsFromNaive,
  u16,
  u32,
  type Frame,
  type FrameItem,
  type LifeScanDialect,
  type LifeScanReply,
  type LifeScanRequest,
} from './codec.ts';
import { identity, readRecord, readingToDraft, type Reading } from './records.ts';

/** `reply_timeout_ms` is per frame; on the UltraEasy each retry follows a link reset. */
export type LifeScanSessionOptions = MeterSessionOptions;

const SESSION_DEFAULTS: LifeScanSessionOptions = { reply_timeout_ms: 1000, retries: 2, clock_skew_limit_s: CLOCK_SKEW_LIMIT_S };

/** What `sessionOptions` reads, as the config loader checks it. */
export const LIFESCAN_OPTIONS_SCHEMA = meterOptionsSchema(SESSION_DEFAULTS, ['retries']);

/** Reads `device.options` (`retries` may be 0). Throws an Error that names the bad option. */
export function sessionOptions(device: DeviceConfig): LifeScanSessionOptions {
  return numberOptions(device, SESSION_DEFAULTS, ['retries']);
}

/** One failed try of one exchange; the caller decides whether to try again. */
class LinkFault extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

export interface DownloadResult {
  inserted: number;
  duplicates: number;
  records: number;
}

const REQUEST_NAMES: Record<LifeScanRequest['type'], string> = {
  version: 'read version',
  serial: 'read serial',
  'read-clock': 'read clock',
  'write-clock': 'set clock',
  unit: 'read display unit',
  count: 'read record count',
  record: 'read record',
};

/**
 * The live conversation with one meter: the dialect's link layer (the UltraEasy handshake or the
 * plain Verio IQ exchange), the download and the clock set.
 */
export class LifeScanSession extends MeterSession<FrameItem> {
  private readonly opts: LifeScanSessionOptions;
  private readonly tries: RetryPolicy;
  private readonly reader = new FrameReader();
  /** UltraEasy sequence bits: S of the host's next data frame, E = the S expected from the meter. */
  private seqS = 0;
  private seqE = 0;

  constructor(
    private readonly dialect: LifeScanDialect,
    host: SessionHost,
  ) {
    super(host, dialect.driverId);
    this.opts = sessionOptions(host.device);
    this.tries = retryPolicy(this.opts, 200);
  }

  protected frame(chunk: Buffer): FrameItem[] {
    return this.reader.push(chunk);
  }

  protected resetFramer(): void {
    this.reader.reset();
  }

  protected override commands(): Record<string, SessionCommand> {
    return { 'clock/sync': () => this.syncClock() };
  }

  private badFrame(bytes: Buffer, code: string, detail: string): void {
    this.report.badData(bytes, code, detail, 'frame');
  }

  // ── wire I/O ──

  private async sendFrame(message: Uint8Array, linkControl: number): Promise<void> {
    await this.send(encodeFrame(message, linkControl));
  }

  /**
   * The next frame from the meter. Noise before a frame is reported and skipped; a damaged frame
   * is reported and fails this try. Silence fails it with `timeout`, or `truncated` when part of
   * a frame came.
   */
  private async nextFrame(): Promise<Frame> {
    const deadline = Date.now() + this.opts.reply_timeout_ms;
    for (;;) {
      const item = await this.inbox.next(Math.max(0, deadline - Date.now()));
      if (!item) {
        const rest = this.reader.flush();
        for (const r of rest) if (r.kind === 'error') this.badFrame(r.bytes, r.code, r.detail);
        throw new LinkFault(rest.length > 0 ? 'truncated' : 'timeout');
      }
      if (item.kind === 'frame') return item.frame;
      this.badFrame(item.bytes, item.code, item.detail);
      // Noise (garbage, a bad length byte) is skipped; a frame that arrived damaged fails the try.
      // `truncated` comes only from `flush()`, above: the reader never knows a frame ended early.
      if (item.code === 'bad-crc') throw new LinkFault(item.code);
    }
  }

  /** UltraEasy: DISC → DISC|ACK; both sides' sequence bits start again at 0. */
  private async linkReset(): Promise<void> {
    await this.sendFrame(Buffer.alloc(0), LINK.DISC);
    const f = await this.nextFrame();
    if ((f.linkControl & (LINK.DISC | LINK.ACK)) !== (LINK.DISC | LINK.ACK)) {
      this.badFrame(f.bytes, 'unexpected-frame', 'expected DISC|ACK after a link reset');
      throw new LinkFault('unexpected-frame');
    }
    this.seqS = 0;
    this.seqE = 0;
  }

  /** One request, one reply message, with the UltraEasy handshake or the plain Verio IQ exchange. */
  private async exchange(message: Buffer): Promise<Buffer> {
    if (this.dialect.linkMode === 'plain') {
      await this.sendFrame(message, 0);
      const f = await this.nextFrame();
      if (f.linkControl !== 0) {
        this.badFrame(f.bytes, 'unexpected-frame', `link-control 0x${f.linkControl.toString(16)} where 0x00 is expected`);
        throw new LinkFault('unexpected-frame');
      }
      return f.message;
    }
    await this.sendFrame(message, this.seqS | (this.seqE ? LINK.E : 0));
    const ack = await this.nextFrame();
    if (!isAck(ack) || isDisc(ack) || ack.message.length > 0) {
      this.badFrame(ack.bytes, 'unexpected-frame', 'expected an ACK frame');
      throw new LinkFault('unexpected-frame');
    }
    if ((ack.linkControl & LINK.S) !== this.seqE) {
      this.badFrame(ack.bytes, 'sequence', 'the ACK carries the wrong sequence bit');
      throw new LinkFault('sequence');
    }
    this.seqS ^= 1;
    const data = await this.nextFrame();
    if (!isData(data)) {
      this.badFrame(data.bytes, 'unexpected-frame', 'expected a data frame');
      throw new LinkFault('unexpected-frame');
    }
    if ((data.linkControl & LINK.S) !== this.seqE) {
      this.badFrame(data.bytes, 'sequence', 'the reply carries the wrong sequence bit');
      throw new LinkFault('sequence');
    }
    this.seqE = (data.linkControl & LINK.S) ^ 1;
    await this.sendFrame(Buffer.alloc(0), LINK.ACK | this.seqS | (this.seqE ? LINK.E : 0));
    return data.message;
  }

  /** Opens the link for a conversation: the UltraEasy link reset (with retries); nothing on the Verio IQ. */
  private async openLink(): Promise<void> {
    this.clearInbox();
    if (this.dialect.linkMode === 'plain') return;
    await this.retry(
      this.tries,
      () => this.linkFaultAsFailure(() => this.linkReset()),
      (codes) => {
        const last = codes.at(-1)!;
        if (last === 'timeout') return new NoAnswerError('no answer to a link reset: the meter is off, asleep or not in the cable');
        return new ProtocolError(last, `the meter did not accept a link reset after ${codes.length} tries (${last})`);
      },
    );
  }

  /** Sends a request and returns its verified reply. On a fault: reset the link (UltraEasy) and ask again. */
  private async ask<T extends LifeScanReply['type']>(req: LifeScanRequest, expected: T[]): Promise<Extract<LifeScanReply, { type: T }>> {
    const name = REQUEST_NAMES[req.type];
    return this.retry(
      this.tries,
      (attempt) =>
        this.linkFaultAsFailure(async () => {
          if (attempt > 0 && this.dialect.linkMode === 'ack') await this.linkReset();
          const message = this.dialect.request(req.type === 'write-clock' ? { type: 'write-clock', seconds: this.hostClockSeconds() } : req);
          const reply = await this.exchange(message);
          const parsed = this.dialect.parseReply(req, reply);
          if (!parsed.ok) {
            this.badFrame(reply, parsed.code, parsed.detail);
            throw new LinkFault(parsed.code);
          }
          if (!(expected as string[]).includes(parsed.reply.type)) {
            this.badFrame(reply, 'unexpected-reply', `a ${parsed.reply.type} reply to ${name}`);
            throw new LinkFault('unexpected-reply');
          }
          return parsed.reply as Extract<LifeScanReply, { type: T }>;
        }),
      (codes) => {
        if (codes.every((c) => c === 'timeout')) return new NoAnswerError(`no answer to ${name}: the meter stopped answering`);
        const last = codes.at(-1)!;
        return new ProtocolError(last, `no valid reply to ${name} after ${codes.length} tries (${last})`);
      },
    );
  }

  /** One try of `exchange`: a LinkFault becomes its failure code, any other error ends the tries. */
  private async linkFaultAsFailure<T>(exchange: () => Promise<T>): Promise<Attempt<T, string>> {
    try {
      return { ok: true, value: await exchange() };
    } catch (err) {
      if (!(err instanceof LinkFault)) throw err;
      return { ok: false, failure: err.code };
    }
  }

  private hostClockSeconds(): number {
    return secondsFromNaive(nowInZone(this.host.timezone, this.host.now()), this.dialect.epochOffsetS);
  }

  private clockNaive(seconds: number): string {
    const t = naiveFromSeconds(seconds, this.dialect.epochOffsetS);
    if (!t) throw new ProtocolError('invalid-date', 'the meter clock reads a time outside 2000–2099');
    return t;
  }

  private checkSkew(clock: string): number {
    return this.report.clockRead(clock, this.host.timezone, this.host.now(), this.opts.clock_skew_limit_s);
  }

  // ── conversations ──

  protected download(trigger: string): Promise<DownloadResult> {
    return this.downloadConversation(
      trigger,
      async () => {
        await this.openLink();
        return this.ask({ type: 'version' }, ['version']);
      },
      async (version) => {
        const sn = await this.ask({ type: 'serial' }, ['serial']);
        const clock = await this.ask({ type: 'read-clock' }, ['clock']);
        const unit = await this.ask({ type: 'unit' }, ['unit']);
        this.report.patch({
          model: this.dialect.model,
          serial: sn.serial,
          firmware: version.firmware,
          meter: { display_unit: unit.unit },
          last_seen: this.host.now().toISOString(),
        });
        this.checkSkew(this.clockNaive(clock.seconds));
        const { count } = await this.ask({ type: 'count' }, ['count']);
        const step = Math.max(25, Math.ceil(count / 10));
        const readings: Reading[] = [];
        for (let i = 0; i < count; i++) {
          const { record } = await this.ask({ type: 'record', index: i }, ['record']);
          const r = readRecord(this.dialect, record);
          if (r.ok) readings.push(r.reading);
          // A record that verified (CRC) but holds no real time or value is kept in quarantine and
          // reported; the meter sends it the same way every time, so asking again cannot help.
          else this.badFrame(Buffer.concat([u16(i), u32(record.seconds), u32(record.glucose)]), r.code, `record ${i} cannot be read (${r.code})`);
          const n = i + 1;
          if (n === count || n % step === 0) this.report.emit('download_progress', `${n} of ${count} records`, { received: n, total: count });
        }
        const id = identity(this.dialect, this.host.device.id, sn.serial, version.firmware);
        const seen = new Set<string>();
        const drafts = byDeviceTime(
          readings.map((r) => readingToDraft(r, id, this.host.timezone)).filter((d) => (seen.has(d.key) ? false : (seen.add(d.key), true))),
        );
        const stored = await this.commitDownload(drafts);
        return {
          result: { inserted: stored.inserted, duplicates: stored.duplicates, records: drafts.length },
          message: `downloaded ${drafts.length} records: ${stored.inserted} new, ${stored.duplicates} already stored`,
          data: { records: drafts.length, inserted: stored.inserted, duplicates: stored.duplicates },
          state: { meter: { record_count: count } },
        };
      },
    );
  }

  private async syncClock(): Promise<ClockSyncResult> {
    if (!this.transport.isOpen) throw new Error(`${this.tag}: the transport is not open`);
    // No transcript: a clock set stores no records.
    this.inbox.resume();
    try {
      await this.openLink();
      await this.ask({ type: 'write-clock', seconds: 0 }, ['clock-set']);
      const back = await this.ask({ type: 'read-clock' }, ['clock']);
      const clock = this.clockNaive(back.seconds);
      const skew = clockSkewSeconds(clock, this.host.timezone, this.host.now());
      if (Math.abs(skew) > 5) throw new ProtocolError('clock-not-set', `the meter clock reads ${skew} s off the host time after the set`);
      return this.report.clockSet(clock, this.host.timezone, this.host.now(), this.opts.clock_skew_limit_s);
    } catch (err) {
      throw this.failed(err, 'device_error');
    }
  }
}
