/**
 * A device that takes commands (label printers): jobs queued one at a time per device, so two
 * labels never interleave on the wire, and a status query asked every `statusPollMs` through the
 * same queue (never in the middle of a job). The queue is short (`MAX_WAITING_COMMANDS`): a
 * dashboard that keeps sending while the printer is stuck gets "busy" rather than a backlog
 * that would print long after anyone wanted it. The number of jobs waiting or printing is on the
 * device state (`printer.queued_jobs` by default).
 *
 * Subclasses bring the framer, `readStatus` (one status conversation that returns the state it
 * read: `status: 'fault'` with the reason for a printer out of paper) and their jobs.
 */
import type { DeviceStatePatch } from '../records/device-state.ts';
import type { ByteTransport } from '../transports/transport.ts';
import type { DriverSession, SessionHost } from './index.ts';
import { AbortedError, ConversationQueue, Inbox, SessionReporter, type SessionCommand } from './meter-session.ts';

export interface CommandSessionOptions {
  /** How often the device is asked for its status while the link is open (ms); 0 = only on open and on `status`. */
  statusPollMs?: number;
}

export abstract class CommandSession<Item> implements DriverSession {
  protected readonly transport: ByteTransport;
  protected readonly report: SessionReporter;
  protected readonly inbox = new Inbox<Item>();
  protected stopped = false;
  private readonly queue: ConversationQueue;
  private readonly statusPollMs: number;
  private pollTimer: NodeJS.Timeout | null = null;
  private pollQueued = false;
  private pollsDue = 0;
  private queuedJobs = 0;
  private started = false;

  constructor(
    protected readonly host: SessionHost,
    protected readonly tag: string,
    options: CommandSessionOptions = {},
  ) {
    this.transport = host.transport;
    this.report = new SessionReporter(host, tag);
    this.queue = new ConversationQueue(tag);
    this.statusPollMs = options.statusPollMs ?? 0;
  }

  /** The codec: received bytes in, framed items out. */
  protected abstract frame(chunk: Buffer): Item[];
  /** One status conversation; returns the state read. Throw `NoAnswerError` when the device is silent. */
  protected abstract readStatus(): Promise<DeviceStatePatch>;
  /** The jobs the device takes (`print`, …), each run alone in the queue. */
  protected abstract jobs(): Record<string, SessionCommand>;
  /** The state patch that reports `n` jobs waiting or running. */
  protected queuePatch(n: number): DeviceStatePatch {
    return { printer: { queued_jobs: n } };
  }

  private readonly onData = (chunk: Buffer): void => {
    this.inbox.push(...this.frame(chunk));
  };
  private readonly onOpen = (): void => {
    this.inbox.resume();
    this.poll();
  };
  private readonly onClose = (): void => {
    this.inbox.abort(new AbortedError('the link closed during the conversation'));
  };

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.transport.on('data', this.onData);
    this.transport.on('open', this.onOpen);
    this.transport.on('close', this.onClose);
    if (this.statusPollMs > 0) this.pollTimer = setInterval(() => this.poll(), this.statusPollMs);
    if (this.transport.isOpen) this.poll();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
    this.transport.off('data', this.onData);
    this.transport.off('open', this.onOpen);
    this.transport.off('close', this.onClose);
    this.inbox.abort(new AbortedError('the session stopped'));
    await this.queue.stop();
  }

  async command(verb: string, params: Record<string, unknown>): Promise<unknown> {
    if (this.stopped) throw new Error(`${this.tag}: the session is stopped`);
    if (verb === 'status') {
      await this.queue.run(() => this.statusConversation());
      return { ...this.report.state };
    }
    const jobs = this.jobs();
    const job = jobs[verb];
    if (!job) throw new Error(`${this.tag}: unknown command "${verb}" (known: ${['status', ...Object.keys(jobs)].join(', ')})`);
    const run = this.queue.run(() => this.jobConversation(() => job(params)));
    this.setQueued(this.queuedJobs + 1);
    try {
      return await run;
    } finally {
      this.setQueued(this.queuedJobs - 1);
    }
  }

  private setQueued(n: number): void {
    this.queuedJobs = n;
    this.report.patch(this.queuePatch(n));
  }

  private async jobConversation(job: () => Promise<unknown>): Promise<unknown> {
    if (!this.transport.isOpen) throw new Error(`${this.tag}: the transport is not open`);
    this.inbox.resume();
    this.inbox.clear();
    try {
      const result = await job();
      this.report.patch({ last_seen: this.host.now().toISOString() });
      return result;
    } catch (err) {
      throw this.report.failed(err, 'device_error', this.stopped);
    } finally {
      this.inbox.clear();
    }
  }

  /** Status polls that came due while the link was open, including those merged into one already waiting. */
  get statusPollsDue(): number {
    return this.pollsDue;
  }

  /** Asks for the status unless a poll is already waiting in the queue. */
  private poll(): void {
    if (this.stopped || !this.transport.isOpen) return;
    this.pollsDue++;
    if (this.pollQueued) return;
    this.pollQueued = true;
    let ran = false;
    this.queue
      .run(() => {
        ran = true;
        this.pollQueued = false;
        return this.statusConversation();
      })
      .catch(() => {
        // Refused without running (the queue was full): the next tick must try again.
        if (!ran) this.pollQueued = false;
      });
  }

  private async statusConversation(): Promise<void> {
    if (!this.transport.isOpen) throw new Error(`${this.tag}: the transport is not open`);
    this.inbox.resume();
    this.inbox.clear();
    try {
      const patch = await this.readStatus();
      this.report.patch({ status: 'ok', status_detail: null, ...patch, last_seen: this.host.now().toISOString() });
    } catch (err) {
      throw this.report.failed(err, 'device_error', this.stopped);
    } finally {
      this.inbox.clear();
    }
  }

  /** Writes to the device; throws if the conversation was aborted (link closed, session stopped). */
  protected async send(bytes: Buffer): Promise<void> {
    this.inbox.check();
    await this.transport.write(bytes);
  }
}
