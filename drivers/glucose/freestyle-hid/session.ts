/** FreeStyle HID: the live conversation with one meter (init, text commands, memory dump, clock set). */
import type { SessionHost } from '../../../src/driver-sdk/index.ts';
import {
  AbortedError,
  type Attempt,
  CLOCK_SKEW_LIMIT_S,
  type ClockSyncResult,
  MeterSession,
  type MeterSessionOptions,
  NoAnswerError,
  meterOptionsSchema,
  numberOptions,
  ProtocolError,
  retryPolicy,
  type RetryPolicy,
  type SessionCommand,
} from '../../../src/driver-sdk/meter-session.ts';
import type { DeviceConfig } from '../../../src/config/types.ts';
import { nowInZone } from '../../../src/util/time.ts';
import {
  cString,
  decodeReport,
  encodeReport,
  initSerial,
  messageLines,
  MSG,
  parseClock,
  parseMultiRecord,
  parseTextReply,
  ReportStream,
  setClockCommands,
  textCommandReport,
  TextReplyAssembler,
  trimReport,
} from './codec.ts';
import {
  configuredModel,
  DISPLAY_UNIT_COMMANDS,
  FREESTYLE_DRIVER_ID,
  type FreeStyleModel,
  type MeterSnapshot,
  MODELS,
  RECORD_COMMANDS,
  snapshotToDrafts,
} from './records.ts';

/**
 * `reply_timeout_ms` is per report (during a memory dump it restarts with every report);
 * `retries` covers a bad reply: checksum, truncation, no answer.
 */
export type FreeStyleSessionOptions = MeterSessionOptions;

const DEFAULT_SESSION_OPTIONS: FreeStyleSessionOptions = { reply_timeout_ms: 2000, retries: 1, clock_skew_limit_s: CLOCK_SKEW_LIMIT_S };

/** What `freestyleSessionOptions` and `configuredModel` read, as the config loader checks it. */
export const FREESTYLE_OPTIONS_SCHEMA = meterOptionsSchema(DEFAULT_SESSION_OPTIONS, ['retries'], {
  model: { enum: Object.keys(MODELS), description: 'the meter model, when the USB product id does not say it' },
});

/** Reads `device.options`; throws an Error that names the bad option. */
export function freestyleSessionOptions(device: DeviceConfig): FreeStyleSessionOptions {
  return numberOptions(device, DEFAULT_SESSION_OPTIONS, ['retries']);
}

type TextOutcome = { ok: true; message: Buffer } | { ok: false; code: string; timeout: boolean };

export interface DownloadResult {
  inserted: number;
  duplicates: number;
  records: number;
}

/** Progress events: at most every 25 records. */
const PROGRESS_EVERY = 25;

/** The session's items are 64-byte reports. */
export class FreeStyleSession extends MeterSession<Buffer> {
  private readonly opts: FreeStyleSessionOptions;
  private readonly tries: RetryPolicy;
  /** HID delivers one report per `data` event; a stream (TCP, in-memory) is cut into 64-byte reports. */
  private readonly stream: ReportStream | null;
  private model: FreeStyleModel | null;
  private readonly assembler = new TextReplyAssembler();

  constructor(host: SessionHost) {
    super(host, FREESTYLE_DRIVER_ID);
    this.opts = freestyleSessionOptions(host.device);
    this.tries = retryPolicy(this.opts, 250);
    this.stream = host.device.transport.type === 'hid' ? null : new ReportStream();
    this.model = configuredModel(host.device);
    this.linkClosedMessage = 'the meter was unplugged (the link closed) during the conversation';
  }

  protected frame(chunk: Buffer): Buffer[] {
    return this.stream ? this.stream.push(chunk) : [Buffer.from(chunk)];
  }

  /** The text reply in progress; the report stream is reset per conversation (`begin`). */
  protected resetFramer(): void {
    this.assembler.reset();
  }

  /** A capture keeps whole reports without their padding, as `decodeFreeStyle` reads them. */
  protected override transcribeReceived(_chunk: Buffer, reports: readonly Buffer[]): Buffer[] {
    return reports.map(trimReport);
  }

  protected override linkClosed(): void {
    this.stream?.reset();
  }

  protected override commands(): Record<string, SessionCommand> {
    return { 'clock/sync': () => this.syncClock() };
  }

  /** Bad bytes: quarantined, logged and announced by reason only (the text may be patient data). */
  private badFrame(bytes: Buffer, code: string, detail: string): void {
    this.report.badData(bytes, code, detail);
  }

  // ── wire I/O ──

  /** Records the report without its padding; a failed write ends the conversation as a closed link. */
  protected override async send(report: Buffer): Promise<void> {
    this.inbox.check();
    this.transcript?.push({ dir: 'H', bytes: trimReport(report) });
    try {
      await this.transport.write(report);
    } catch (err) {
      this.inbox.check();
      throw new AbortedError(`the meter could not be written to: ${(err as Error).message}`);
    }
  }

  /** A binary init step: sends `type`, waits for `replyType`; keep-alives are skipped. */
  private async binary(type: number, replyType: number): Promise<Buffer> {
    const name = `0x${type.toString(16).padStart(2, '0')}`;
    return this.retry(
      this.tries,
      async (): Promise<Attempt<Buffer, 'timeout'>> => {
        this.clearInbox();
        await this.send(encodeReport(type));
        for (;;) {
          const report = await this.inbox.next(this.opts.reply_timeout_ms);
          if (!report) return { ok: false, failure: 'timeout' };
          const r = decodeReport(report);
          if (!r.ok) {
            this.badFrame(report, r.error.code, r.error.detail);
            continue;
          }
          if (r.report.type === replyType) return { ok: true, value: r.report.payload };
          if (r.report.type === MSG.UNKNOWN_COMMAND) throw new ProtocolError('unknown-command', `the meter does not know init message ${name}`);
          // Keep-alives and stray reports are not the reply: wait on.
        }
      },
      () => new NoAnswerError(`no answer to init message ${name}: the meter is off, asleep or not a FreeStyle HID meter`),
    );
  }

  /** One text command and its whole reply, or why it failed. */
  private async exchangeText(command: string, progress?: (lines: number) => void): Promise<TextOutcome> {
    this.clearInbox();
    await this.send(textCommandReport(command));
    for (;;) {
      const report = await this.inbox.next(this.opts.reply_timeout_ms);
      if (!report) {
        const partial = this.assembler.pending();
        if (partial.length > 0) {
          this.badFrame(partial, 'truncated-reply', `the reply to ${command} stopped after ${partial.length} bytes`);
          return { ok: false, code: 'truncated-reply', timeout: false };
        }
        return { ok: false, code: 'timeout', timeout: true };
      }
      const r = decodeReport(report);
      if (!r.ok) {
        this.badFrame(report, r.error.code, r.error.detail);
        return { ok: false, code: r.error.code, timeout: false };
      }
      const { type, payload } = r.report;
      if (type === MSG.KEEPALIVE) continue;
      if (type === MSG.UNKNOWN_COMMAND) return { ok: false, code: 'unknown-command', timeout: false };
      if (type !== MSG.TEXT) {
        this.badFrame(report, 'unexpected-report', `a 0x${type.toString(16).padStart(2, '0')} report during a text reply`);
        continue;
      }
      const outs = this.assembler.push(payload);
      progress?.(this.assembler.lines);
      for (const out of outs) {
        if (out.kind === 'overflow') {
          this.badFrame(out.bytes.subarray(0, 256), 'reply-too-long', `no CMD OK within ${TextReplyAssembler.MAX_REPLY} bytes`);
          return { ok: false, code: 'reply-too-long', timeout: false };
        }
        const reply = parseTextReply(out.bytes);
        if (reply.ok) return { ok: true, message: reply.message };
        if (reply.error.code === 'command-failed') return { ok: false, code: 'command-failed', timeout: false };
        this.badFrame(out.bytes, reply.error.code, reply.error.detail);
        return { ok: false, code: reply.error.code, timeout: false };
      }
    }
  }

  /**
   * A text command, sent once more when the reply is damaged or missing. `check` may refuse a
   * verified message (a record list whose own checksum fails), which also counts as damage.
   * Returns null for `CMD Fail!` when `mayFail`.
   */
  private async askText(
    command: string,
    opts: { mayFail?: boolean; check?: (m: Buffer) => string | null; progress?: (lines: number) => void } = {},
  ): Promise<Buffer | null> {
    return this.retry(
      this.tries,
      async (): Promise<Attempt<Buffer | null, Extract<TextOutcome, { ok: false }>>> => {
        const outcome = await this.exchangeText(command, opts.progress);
        if (outcome.ok) {
          const problem = opts.check?.(outcome.message) ?? null;
          if (!problem) return { ok: true, value: outcome.message };
          this.badFrame(outcome.message, problem, `the reply to ${command} failed its record check`);
          return { ok: false, failure: { ok: false, code: problem, timeout: false } };
        }
        if (outcome.code === 'command-failed' || outcome.code === 'unknown-command') {
          if (opts.mayFail) return { ok: true, value: null };
          throw new ProtocolError(outcome.code, `the meter refused ${command} (${outcome.code})`);
        }
        return { ok: false, failure: outcome };
      },
      (failures) => {
        const last = failures.at(-1)!;
        if (last.timeout) return new NoAnswerError(`no answer to ${command}: the meter stopped answering`);
        return new ProtocolError(last.code, `no valid reply to ${command} after ${failures.length} tries (${last.code})`);
      },
    );
  }

  private async readClock(): Promise<string | null> {
    const date = await this.askText('$date?');
    const time = await this.askText('$time?');
    const c = parseClock(messageLines(date!)[0] ?? '', messageLines(time!)[0] ?? '');
    return c.ok ? c.time : null;
  }

  /** Init sequence as Abbott's software sends it: 0x04, 0x05 (serial), 0x15 (version), 0x01. */
  private async init(): Promise<{ serial: string | null; firmware: string | null }> {
    await this.binary(MSG.X04, MSG.X04_REPLY);
    const serial = initSerial(await this.binary(MSG.SERIAL, MSG.SERIAL_REPLY));
    const firmware = cString(await this.binary(MSG.SWVER, MSG.SWVER_REPLY)).trim() || null;
    await this.binary(MSG.INIT, MSG.INIT_REPLY);
    return { serial, firmware };
  }

  // ── conversations ──

  protected download(trigger: string): Promise<DownloadResult> {
    return this.downloadConversation(
      trigger,
      () => {
        this.stream?.reset();
        return this.init();
      },
      async (boot) => {
        const snapshot: MeterSnapshot = { serial: null, firmware: null, clock: null, displayUnit: null, records: {} };
        // The serial: `$serlnum?` (InsuLinx, Neo) or `$sn?` (Libre). An unknown model is probed.
        let family = this.model ? MODELS[this.model].family : null;
        let serialReply: Buffer | null;
        if (family === 'libre') serialReply = await this.askText('$sn?');
        else {
          serialReply = await this.askText('$serlnum?', { mayFail: family === null });
          if (serialReply === null) {
            serialReply = await this.askText('$sn?');
            family = 'libre';
          } else family ??= 'result';
        }
        snapshot.serial = messageLines(serialReply!)[0] || boot.serial;
        snapshot.firmware = messageLines((await this.askText('$swver?'))!)[0] || boot.firmware;
        snapshot.clock = await this.readClock();
        const unitCommand = family === 'libre' ? '$uom?' : '$gunits?';
        const unit = await this.askText(unitCommand, { mayFail: true });
        snapshot.displayUnit = unit ? DISPLAY_UNIT_COMMANDS[unitCommand]!(messageLines(unit)[0] ?? '') : null;
        this.checkClock(snapshot.clock);
        this.report.patch({
          model: this.model ? MODELS[this.model].name : (this.report.state.model ?? null),
          serial: snapshot.serial,
          firmware: snapshot.firmware,
          meter: { display_unit: snapshot.displayUnit },
          last_seen: this.host.now().toISOString(),
        });

        let received = 0;
        let lastProgress = 0;
        for (const command of RECORD_COMMANDS[family]) {
          const before = received;
          const message = await this.askText(command, {
            check: (m) => {
              const list = parseMultiRecord(m);
              return list.ok ? null : list.error.code;
            },
            progress: (lines) => {
              received = before + lines;
              if (received - lastProgress >= PROGRESS_EVERY) {
                lastProgress = received;
                this.report.emit('download_progress', `${received} records received`, { received, total: null });
              }
            },
          });
          const list = parseMultiRecord(message!);
          if (list.ok) snapshot.records[command] = list.records;
          received = before + (list.ok ? list.records.length : 0);
        }

        const out = snapshotToDrafts(snapshot, { deviceId: this.host.device.id, timezone: this.host.timezone }, this.model);
        if (!this.model && out.model) this.report.patch({ model: MODELS[out.model].name });
        this.report.emit('download_progress', `${out.summary.records} of ${out.summary.records} records`, {
          received: out.summary.records,
          total: out.summary.records,
        });
        for (const issue of out.issues) {
          this.badFrame(issue.bytes ?? Buffer.alloc(0), issue.reason, 'a record that cannot be used as a result; it is kept in quarantine');
        }
        const stored = await this.commitDownload(out.drafts);
        return {
          result: { inserted: stored.inserted, duplicates: stored.duplicates, records: out.drafts.length },
          message: `downloaded ${out.drafts.length} results (${out.summary.records} records): ${stored.inserted} new, ${stored.duplicates} already stored`,
          data: {
            records: out.drafts.length,
            inserted: stored.inserted,
            duplicates: stored.duplicates,
            meter_records: out.summary.records,
            controls: out.summary.controls,
            not_results: out.summary.other,
            clock_changes: out.summary.clockChanges,
            invalid: out.summary.invalid,
            rejected: out.summary.rejected,
          },
          state: { meter: { record_count: out.summary.records } },
        };
      },
    );
  }

  private checkClock(clock: string | null): void {
    if (clock === null) {
      this.report.patch({ clock_skew_s: null, clock_skew_flagged: true });
      this.report.emit('clock_skew', 'the meter clock is not set (it reports 255: its clock lost power)', { clock_skew_s: null, limit_s: this.opts.clock_skew_limit_s });
      return;
    }
    this.report.clockRead(clock, this.host.timezone, this.host.now(), this.opts.clock_skew_limit_s);
  }

  private async syncClock(): Promise<ClockSyncResult> {
    if (!this.transport.isOpen) throw new Error('freestyle-hid: the transport is not open');
    this.inbox.resume();
    this.stream?.reset();
    try {
      await this.init();
      const target = nowInZone(this.host.timezone, this.host.now());
      const cmds = setClockCommands(target);
      await this.askText(cmds.date);
      await this.askText(cmds.time);
      const clock = await this.readClock();
      // The meter keeps minutes only: its clock may read up to a minute behind the time sent.
      const off = clock === null ? Infinity : Math.abs(Date.parse(`${clock}Z`) - Date.parse(`${target.slice(0, 16)}:00Z`)) / 1000;
      if (clock === null || off > 120) {
        throw new ProtocolError('clock-not-set', `the meter reports a clock ${clock === null ? 'that is not set' : `${Math.round(off)} s away from the time sent`}`);
      }
      return this.report.clockSet(clock, this.host.timezone, this.host.now(), this.opts.clock_skew_limit_s);
    } catch (err) {
      throw this.failed(err, 'device_error');
    }
  }
}
