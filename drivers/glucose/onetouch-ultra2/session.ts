/**
 * The live Ultra 2 session: DM?, DM@, DMF, DMSU? and the DMP dump, retried on a fault and committed
 * whole; `clock/sync` with DMT. The rest (transport, timeouts, one conversation at a time, events)
 * is `MeterSession`.
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
import { nowInZone } from '../../../src/util/time.ts';
import {
  LineFramer,
  decodeLine,
  encodeCommand,
  setClockCommand,
  type FramedItem,
  type Ultra2ErrorCode,
  type Ultra2Message,
  type Ultra2Reading,
} from './codec.ts';
import { ULTRA2_DRIVER_ID, ULTRA2_MODEL, readingsToDrafts, ultra2Identity } from './records.ts';

/** `reply_timeout_ms` is per line (during DMP it restarts with every line); `retries` also covers the whole DMP. */
export type Ultra2SessionOptions = MeterSessionOptions;

const DEFAULT_SESSION_OPTIONS: Ultra2SessionOptions = { reply_timeout_ms: 2000, retries: 1, clock_skew_limit_s: CLOCK_SKEW_LIMIT_S };

/** What `ultra2SessionOptions` reads, as the config loader checks it. */
export const ULTRA2_OPTIONS_SCHEMA = meterOptionsSchema(DEFAULT_SESSION_OPTIONS, ['retries']);

/** Reads `device.options`. Throws an Error that names the bad option. */
export function ultra2SessionOptions(device: DeviceConfig): Ultra2SessionOptions {
  return numberOptions(device, DEFAULT_SESSION_OPTIONS, ['retries']);
}

type Reply = { ok: true; message: Ultra2Message } | { ok: false; timeout: boolean; code: string };

/**
 * Errors found after the checksum matched: the line arrived as the meter sent it, so it is the
 * meter's content that cannot be read, and a retry cannot help.
 */
function isContentError(code: Ultra2ErrorCode): boolean {
  return code === 'invalid-response' || code === 'invalid-date' || code === 'invalid-serial';
}

export interface DownloadResult {
  inserted: number;
  duplicates: number;
  records: number;
  unreadable: number;
}

interface Dump {
  header: Extract<Ultra2Message, { type: 'dump-header' }>;
  readings: Ultra2Reading[];
  /** Lines with a good checksum that are no valid reading: quarantined, not stored. */
  unreadable: number;
}

export class Ultra2Session extends MeterSession<FramedItem> {
  private readonly opts: Ultra2SessionOptions;
  private readonly tries: RetryPolicy;
  private readonly framer = new LineFramer();

  constructor(host: SessionHost) {
    super(host, ULTRA2_DRIVER_ID);
    this.opts = ultra2SessionOptions(host.device);
    this.tries = retryPolicy(this.opts, 250);
  }

  protected frame(chunk: Buffer): FramedItem[] {
    return this.framer.push(chunk);
  }

  protected resetFramer(): void {
    this.framer.reset();
  }

  protected override commands(): Record<string, SessionCommand> {
    return { 'clock/sync': () => this.syncClock() };
  }

  private badLine(bytes: Buffer, code: string, detail: string): void {
    this.report.badData(bytes, code, detail, 'line');
  }

  private async sendCommand(command: string): Promise<void> {
    await this.send(encodeCommand(command));
  }

  /** Reads one reply line and checks that it is of the expected type. Bad lines are reported. */
  private async readReply(expected: Ultra2Message['type']): Promise<Reply> {
    const item = await this.inbox.next(this.opts.reply_timeout_ms);
    if (!item) return { ok: false, timeout: true, code: 'timeout' };
    if (item.kind === 'overflow') {
      this.badLine(item.bytes, 'line-too-long', `no line end within ${LineFramer.MAX_LINE} bytes`);
      return { ok: false, timeout: false, code: 'line-too-long' };
    }
    const r = decodeLine(item.bytes);
    if (!r.ok) {
      this.badLine(item.bytes, r.error.code, r.error.detail);
      return { ok: false, timeout: false, code: r.error.code };
    }
    if (r.garbage) this.badLine(r.garbage, 'garbage', 'noise before a valid line');
    if (r.message.type !== expected) {
      this.badLine(item.bytes, 'unexpected-reply', `expected a ${expected} line, got a ${r.message.type} line`);
      return { ok: false, timeout: false, code: 'unexpected-reply' };
    }
    return r;
  }

  /** Sends a one-line command and returns its verified reply. Sent once more on failure. */
  private async ask<T extends Ultra2Message['type']>(command: string, expected: T): Promise<Extract<Ultra2Message, { type: T }>> {
    const name = command.startsWith('DMT') ? 'DMT' : command;
    return this.retry(
      this.tries,
      async (): Promise<Attempt<Extract<Ultra2Message, { type: T }>, Extract<Reply, { ok: false }>>> => {
        this.clearInbox();
        await this.sendCommand(command);
        const reply = await this.readReply(expected);
        return reply.ok ? { ok: true, value: reply.message as Extract<Ultra2Message, { type: T }> } : { ok: false, failure: reply };
      },
      (failures) => {
        const last = failures.at(-1)!;
        if (last.timeout) {
          const nul = this.framer.nulBytes > 0;
          return new NoAnswerError(
            nul
              ? `the meter answered ${name} with a 0x00 byte only: switch it off, then seat it in the cable`
              : `no answer to ${name}: the meter is off, on when it should be off, or not in the cable`,
          );
        }
        return new ProtocolError(last.code, `no valid reply to ${name} after ${failures.length} tries (${last.code})`);
      },
    );
  }

  /** DMP: the header, then exactly `count` readings. The whole dump is asked again on any fault. */
  private async readDump(): Promise<Dump> {
    return this.retry(
      this.tries,
      () => this.readDumpOnce(),
      (codes) => {
        const last = codes.at(-1)!;
        if (last === 'timeout') return new NoAnswerError('no answer to DMP: the meter stopped answering');
        return new ProtocolError(last, `no complete DMP dump after ${codes.length} tries (${last}); nothing was stored`);
      },
    );
  }

  /** One DMP: the dump, or the code of the first fault that spoils it. */
  private async readDumpOnce(): Promise<Attempt<Dump, string>> {
    this.clearInbox();
    await this.sendCommand('DMP');
    const head = await this.readReply('dump-header');
    if (!head.ok) return { ok: false, failure: head.code };
    const header = head.message as Extract<Ultra2Message, { type: 'dump-header' }>;
    const total = header.count;
    // At most ~10 progress events per download, none for a few new readings.
    const step = Math.max(50, Math.ceil(total / 10));
    const readings: Ultra2Reading[] = [];
    let unreadable = 0;
    let fault: string | null = null;
    for (let i = 0; i < total; i++) {
      const item = await this.inbox.next(this.opts.reply_timeout_ms);
      if (!item) {
        fault = 'truncated-dump';
        this.host.log.warn({ received: i, total }, 'onetouch-ultra2: the dump stopped short');
        break;
      }
      if (item.kind === 'overflow') {
        this.badLine(item.bytes, 'line-too-long', `no line end within ${LineFramer.MAX_LINE} bytes`);
        fault = 'line-too-long';
        continue;
      }
      const r = decodeLine(item.bytes);
      if (!r.ok) {
        this.badLine(item.bytes, r.error.code, r.error.detail);
        if (isContentError(r.error.code)) {
          // The checksum holds, so this is what the meter has in memory: asking again brings
          // the same line back. It stays in quarantine; the readings around it are stored.
          unreadable++;
          continue;
        }
        fault = r.error.code;
        continue;
      }
      if (r.garbage) this.badLine(r.garbage, 'garbage', 'noise before a valid line');
      if (r.message.type !== 'reading') {
        this.badLine(item.bytes, 'unexpected-reply', `expected a reading line, got a ${r.message.type} line`);
        fault = 'unexpected-reply';
        continue;
      }
      readings.push(r.message.reading);
      const n = i + 1;
      if (n === total || n % step === 0) {
        this.report.emit('download_progress', `${n} of ${total} readings`, { received: n, total });
      }
    }
    return fault ? { ok: false, failure: fault } : { ok: true, value: { header, readings, unreadable } };
  }

  // ── conversations ──

  protected download(trigger: string): Promise<DownloadResult> {
    return this.downloadConversation(
      trigger,
      () => this.ask('DM?', 'firmware'),
      async (fw) => {
        const sn = await this.ask('DM@', 'serial');
        const clock = await this.ask('DMF', 'clock');
        const unit = await this.ask('DMSU?', 'unit');
        this.report.patch({
          model: ULTRA2_MODEL,
          serial: sn.serial,
          firmware: fw.firmware,
          meter: { display_unit: unit.unit },
          last_seen: this.host.now().toISOString(),
        });
        this.report.clockRead(clock.time, this.host.timezone, this.host.now(), this.opts.clock_skew_limit_s);

        const dump = await this.readDump();
        const identity = ultra2Identity(this.host.device.id, dump.header.serial, fw.firmware);
        const drafts = readingsToDrafts(dump.readings, identity, this.host.timezone);
        const stored = await this.commitDownload(drafts);
        const skipped = dump.unreadable ? `; ${dump.unreadable} unreadable lines kept in quarantine` : '';
        return {
          result: { inserted: stored.inserted, duplicates: stored.duplicates, records: drafts.length, unreadable: dump.unreadable },
          message: `downloaded ${drafts.length} readings: ${stored.inserted} new, ${stored.duplicates} already stored${skipped}`,
          data: { records: drafts.length, inserted: stored.inserted, duplicates: stored.duplicates, unreadable: dump.unreadable },
          state: { meter: { record_count: dump.header.count } },
        };
      },
    );
  }

  private async syncClock(): Promise<ClockSyncResult> {
    if (!this.transport.isOpen) throw new Error('onetouch-ultra2: the transport is not open');
    this.inbox.resume();
    try {
      const target = nowInZone(this.host.timezone, this.host.now());
      const reply = await this.ask(setClockCommand(target), 'clock-set');
      const off = Math.abs(Date.parse(`${reply.time}Z`) - Date.parse(`${target}Z`)) / 1000;
      if (off > 2) {
        throw new ProtocolError('clock-not-set', `the meter reports a clock ${Math.round(off)} s away from the time sent`);
      }
      return this.report.clockSet(reply.time, this.host.timezone, this.host.now(), this.opts.clock_skew_limit_s);
    } catch (err) {
      throw this.failed(err, 'device_error');
    }
  }

}
