/**
 * The CLINITEK Status session: passive, on the pushed-and-acknowledged base. The reader pushes
 * records when "Send all data" is pressed and has no handshake, so nothing is acknowledged and
 * nothing can be refused: each complete record line is one unit (the line plus CR as its raw
 * capture), committed in arrival order; a unit whose commit failed is kept and committed again
 * every `commit_retry_ms` (the base's `commitRetryMs`), because the reader cannot be asked to send
 * again, and what is still not stored at stop is kept in quarantine. A burst ends after
 * `burst_idle_ms` of silence.
 */
import type { SessionHost } from '../../../src/driver-sdk/index.ts';
import { meterOptionsSchema, numberOptions } from '../../../src/driver-sdk/meter-session.ts';
import { PushedSession, type TransmissionTotals, type UnitAnswer } from '../../../src/driver-sdk/pushed-session.ts';
import type { DeviceConfig } from '../../../src/config/types.ts';
import type { DeviceIdentity } from '../../../src/records/types.ts';
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

/** What `clinitekStatusSessionOptions` reads, as the config loader checks it. */
export const CLINITEK_STATUS_OPTIONS_SCHEMA = meterOptionsSchema(DEFAULT_NUMBER_OPTIONS, [], { date_order: { enum: ['DMY', 'MDY', 'YMD'], description: "the order of the reader's date fields" } });

export function clinitekStatusSessionOptions(device: Pick<DeviceConfig, 'id' | 'options'>): ClinitekStatusSessionOptions {
  const o = device.options ?? {};
  for (const name of Object.keys(o)) {
    if (!(name in DEFAULT_SESSION_OPTIONS)) throw new Error(`device ${device.id}: unknown option ${name} for clinitek-status`);
  }
  return { date_order: dateOrderOption(device, DEFAULT_SESSION_OPTIONS.date_order), ...numberOptions(device, DEFAULT_NUMBER_OPTIONS) };
}

/** The reader has no ACK and cannot be told "not stored": a kept unit is the only answer. */
const NO_ANSWER: UnitAnswer = { acknowledge: () => undefined, refuse: () => undefined };

const CR = Buffer.from('\r');

export class ClinitekStatusSession extends PushedSession {
  private readonly opts: ClinitekStatusSessionOptions;
  private readonly transport: ByteTransport;
  private readonly framer = new RecordLineFramer();
  private readonly identity: DeviceIdentity;

  constructor(host: SessionHost) {
    const opts = clinitekStatusSessionOptions(host.device);
    super(host, CLINITEK_STATUS_DRIVER_ID, { commitRetryMs: opts.commit_retry_ms, idleMs: opts.burst_idle_ms });
    this.opts = opts;
    this.transport = host.transport;
    this.identity = clinitekStatusIdentity(host.device.id);
  }

  private readonly onData = (chunk: Buffer): void => {
    for (const item of this.framer.push(chunk)) this.take(item);
  };
  private readonly onClose = (): void => this.dropPartial('the link closed in the middle of a record');
  private readonly onError = (err: Error): void => this.host.log.warn({ err: err.message }, 'clinitek-status: transport error');

  protected attach(): void {
    this.transport.on('data', this.onData);
    this.transport.on('close', this.onClose);
    this.transport.on('error', this.onError);
    this.report.patch({ model: MODEL, status: 'idle', status_detail: 'waiting for "Send all data" on the reader' });
  }

  override async stop(): Promise<void> {
    // Take nothing more once stopping: a line taken now could only be dropped, never resent.
    this.transport.off('data', this.onData);
    await super.stop();
  }

  protected async detach(): Promise<void> {
    this.transport.off('data', this.onData);
    this.transport.off('close', this.onClose);
    this.transport.off('error', this.onError);
    this.dropPartial('the session stopped in the middle of a record');
  }

  protected override describeTransmission(t: TransmissionTotals): string {
    return `received ${t.records} records: ${t.inserted} new, ${t.duplicates} already stored`;
  }

  override async command(verb: string, params: Record<string, unknown>): Promise<unknown> {
    if (verb === 'download') {
      throw new Error('clinitek-status: the reader cannot be asked for data; press "Send all data" on the reader');
    }
    return super.command(verb, params);
  }

  private take(item: FramedLine): void {
    const d = classifyLine(item, this.opts.date_order);
    if (d.garbage) this.report.badData(d.garbage, 'garbage', 'noise before a record', 'line');
    if (d.kind === 'bad') {
      this.report.badData(d.issue!.bytes!, d.issue!.reason, d.detail!, 'line');
      return;
    }
    const record = d.record!;
    if (d.kind === 'device-error') {
      this.report.patch({ last_seen: this.host.now().toISOString() });
      // The code and the record number only: the record also holds ids, which stay out of events.
      this.report.quarantine(item.bytes, `device-error:${record.error}`);
      this.report.emit('device_error', `the reader reported error ${record.error} for record ${record.seq}`, { code: record.error, record: record.seq });
      return;
    }
    const draft = recordToDraft(record, this.identity, this.host.timezone);
    void this.receive({ drafts: { result: [draft] }, capture: { kind: 'raw', bytes: Buffer.concat([item.bytes, CR]) } }, NO_ANSWER);
  }

  private dropPartial(detail: string): void {
    const partial = this.framer.pending();
    this.framer.reset();
    if (partial.length > 0) this.report.badData(partial, 'truncated-line', detail, 'line');
  }
}
