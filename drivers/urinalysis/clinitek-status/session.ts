/**
 * The CLINITEK Status session: passive. The reader pushes records when "Send all data" is pressed
 * and has no handshake, so there is nothing to acknowledge: each record is committed as soon as
 * its line is complete (`take` → `scheduleFlush` → `flushOnce`, the one commit path), and a
 * failed commit is retried, because the reader cannot be asked to send again.
 */
import type { Capture, DriverSession, SessionHost } from '../../../src/driver-sdk/index.ts';
import { numberOptions, SessionReporter } from '../../../src/driver-sdk/meter-session.ts';
import type { DeviceConfig } from '../../../src/config/types.ts';
import type { DeviceIdentity, ResultDraft } from '../../../src/records/types.ts';
import type { ByteTransport } from '../../../src/transports/transport.ts';
import { dateOrderOption, type DateOrder } from '../../analytes/urine-strip.ts';
import { RecordLineFramer, type FramedLine } from './codec.ts';
import { CLINITEK_STATUS_DRIVER_ID, classifyLine, clinitekStatusIdentity, MODEL, recordToDraft } from './records.ts';


export interface ClinitekStatusSessionOptions {
  /** Field order of the record's date (follows the reader's date setting). */
  date_order: DateOrder;
  /** Quiet time after the last record that ends one "Send all data" burst. */
  burst_idle_ms: number;
  /** Delay before a failed commit is tried again (the reader cannot resend on request). */
  commit_retry_ms: number;
}

const DEFAULT_NUMBER_OPTIONS = { burst_idle_ms: 2000, commit_retry_ms: 1000 };
const DEFAULT_SESSION_OPTIONS: ClinitekStatusSessionOptions = { date_order: 'DMY', ...DEFAULT_NUMBER_OPTIONS };

export function clinitekStatusSessionOptions(device: Pick<DeviceConfig, 'id' | 'options'>): ClinitekStatusSessionOptions {
  const o = device.options ?? {};
  for (const name of Object.keys(o)) {
    if (!(name in DEFAULT_SESSION_OPTIONS)) throw new Error(`device ${device.id}: unknown option ${name} for clinitek-status`);
  }
  return { date_order: dateOrderOption(device, DEFAULT_SESSION_OPTIONS.date_order), ...numberOptions(device, DEFAULT_NUMBER_OPTIONS) };
}

interface PendingRecord {
  draft: ResultDraft;
  bytes: Buffer;
}

export class ClinitekStatusSession implements DriverSession {
  private readonly opts: ClinitekStatusSessionOptions;
  private readonly transport: ByteTransport;
  private readonly framer = new RecordLineFramer();
  private readonly identity: DeviceIdentity;
  private readonly report: SessionReporter;
  private pending: PendingRecord[] = [];
  private committing: Promise<void> | null = null;
  private burst: { records: number; inserted: number; duplicates: number } | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private started = false;
  private stopped = false;

  constructor(private readonly host: SessionHost) {
    this.opts = clinitekStatusSessionOptions(host.device);
    this.transport = host.transport;
    this.identity = clinitekStatusIdentity(host.device.id);
    this.report = new SessionReporter(host, CLINITEK_STATUS_DRIVER_ID);
  }

  private readonly onData = (chunk: Buffer): void => {
    for (const item of this.framer.push(chunk)) this.take(item);
    if (this.burst) this.armIdle();
  };
  private readonly onClose = (): void => this.dropPartial('the link closed in the middle of a record');
  private readonly onError = (err: Error): void => this.host.log.warn({ err: err.message }, 'clinitek-status: transport error');

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.transport.on('data', this.onData);
    this.transport.on('close', this.onClose);
    this.transport.on('error', this.onError);
    this.report.patch({ model: MODEL, status: 'idle', status_detail: 'waiting for "Send all data" on the reader' });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.transport.off('data', this.onData);
    this.transport.off('close', this.onClose);
    this.transport.off('error', this.onError);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.idleTimer = this.retryTimer = null;
    await this.committing?.catch(() => undefined);
    // One last try for records a failed commit left behind; what still fails is kept in quarantine.
    if (this.pending.length > 0) await this.flushOnce().catch(() => undefined);
    for (const p of this.pending.splice(0)) this.report.quarantine(p.bytes, 'not-committed');
    this.dropPartial('the session stopped in the middle of a record');
  }

  async command(verb: string): Promise<unknown> {
    if (verb === 'status') return { ...this.report.state };
    if (verb === 'download') {
      throw new Error('clinitek-status: the reader cannot be asked for data; press "Send all data" on the reader');
    }
    throw new Error(`clinitek-status: unknown command "${verb}" (known: status)`);
  }

  // ── records ──

  private take(item: FramedLine): void {
    const d = classifyLine(item, this.opts.date_order);
    if (d.garbage) this.report.badData(d.garbage, 'garbage', 'noise before a record', 'line');
    if (d.kind === 'bad') {
      this.report.badData(d.issue!.bytes!, d.issue!.reason, d.detail!, 'line');
      return;
    }
    const record = d.record!;
    this.report.patch({ last_seen: this.host.now().toISOString() });
    if (d.kind === 'device-error') {
      // The code and the record number only: the record also holds ids, which stay out of events.
      this.report.quarantine(item.bytes, `device-error:${record.error}`);
      this.report.emit('device_error', `the reader reported error ${record.error} for record ${record.seq}`, { code: record.error, record: record.seq });
      return;
    }
    if (!this.burst) {
      this.burst = { records: 0, inserted: 0, duplicates: 0 };
      this.report.patch({ status: 'downloading', status_detail: null });
      this.report.emit('download_started', 'the reader is sending records', { trigger: 'device' });
    }
    this.burst.records++;
    this.pending.push({ draft: recordToDraft(record, this.identity, this.host.timezone), bytes: item.bytes });
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.committing || this.retryTimer || this.pending.length === 0) return;
    this.committing = this.flushOnce()
      .then(
        () => undefined,
        (err: Error) => {
          this.host.log.error({ err: err.message }, 'clinitek-status: commit failed; will retry');
          this.report.emit('download_failed', `the store did not commit ${this.pending.length} record(s); retrying`, { reason: 'commit-failed' });
          this.report.patch({ status: 'error', status_detail: 'commit failed; retrying' });
          if (!this.stopped) {
            this.retryTimer = setTimeout(() => {
              this.retryTimer = null;
              this.scheduleFlush();
            }, this.opts.commit_retry_ms);
          }
        },
      )
      .finally(() => {
        this.committing = null;
        if (!this.stopped) this.scheduleFlush();
        else this.armIdle();
      });
  }

  /** Commits everything pending in one transaction; on failure the records stay pending. */
  private async flushOnce(): Promise<void> {
    const batch = this.pending.slice();
    if (batch.length === 0) return;
    const capture: Capture = { kind: 'raw', bytes: Buffer.concat(batch.flatMap((p) => [p.bytes, Buffer.from('\r')])) };
    const stored = await this.host.commit(
      { result: batch.map((p) => p.draft) },
      capture,
    );
    this.pending.splice(0, batch.length);
    if (this.burst) {
      this.burst.inserted += stored.inserted;
      this.burst.duplicates += stored.duplicates;
    }
    this.report.patch({ status: 'ok', status_detail: null, last_download: this.host.now().toISOString() });
    this.armIdle();
  }

  /** Ends a burst once the reader has been quiet and everything is committed. */
  private armIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    if (!this.burst || this.stopped) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (!this.burst || this.pending.length > 0 || this.committing) return;
      const b = this.burst;
      this.burst = null;
      this.report.emit('download_finished', `received ${b.records} records: ${b.inserted} new, ${b.duplicates} already stored`, b);
    }, this.opts.burst_idle_ms);
  }

  private dropPartial(detail: string): void {
    const partial = this.framer.pending();
    this.framer.reset();
    if (partial.length > 0) this.report.badData(partial, 'truncated-line', detail, 'line');
  }
}
