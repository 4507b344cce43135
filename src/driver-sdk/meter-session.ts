/**
 * What every device session needs besides its protocol: reporting that never throws into the
 * session, an inbox of framed items to wait on, one conversation at a time with a short queue,
 * downloads on connect / on request / every `poll_interval`, and the mapping of a failed
 * conversation to state and events. `MeterSession` puts these together for host-driven devices
 * (the host asks, the meter answers); passive receivers use `SessionReporter` alone.
 */
import type { DeviceConfig } from '../config/types.ts';
import type { DeviceStatePatch } from '../records/device-state.ts';
import type { BridgeEventType, ResultDraft } from '../records/types.ts';
import type { ByteTransport } from '../transports/transport.ts';
import { clockSkewSeconds } from '../util/time.ts';
import type { Capture, DriverSession, Exchange, SessionHost } from './index.ts';

/** Nothing came back: the device is off, asleep, or not in the cable. */
export class NoAnswerError extends Error {}

/** The device answered, but not correctly, even after the retries. `code` goes into events. */
export class ProtocolError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The link closed or the session stopped in the middle of a conversation. */
export class AbortedError extends Error {}

/** The options every host-driven session takes (`device.options`); drivers add their own. */
export interface MeterSessionOptions {
  /** How long to wait for each reply from the device. */
  reply_timeout_ms: number;
  /** How many times a failed command is sent again. */
  retries: number;
  /** A device clock further than this from the host clock is flagged. */
  clock_skew_limit_s: number;
}

/** What `clock/sync` answers. */
export interface ClockSyncResult {
  /** The device's clock after the set, naive local time. */
  clock: string;
  clock_skew_s: number;
  previous_skew_s: number | null;
}

/** How a failed exchange is tried again. */
export interface RetryPolicy {
  /** Tries after the first. */
  retries: number;
  /** Before a retry, the device must have been quiet this long (ms)… */
  quietMs: number;
  /** …unless this long has passed (ms): a device that keeps talking is not waited for. */
  giveUpMs: number;
}

/** `retries` from the options; before a retry, `quietMs` of silence (at most one reply timeout), waited for at most four reply timeouts. */
export function retryPolicy(opts: MeterSessionOptions, quietMs: number): RetryPolicy {
  return { retries: opts.retries, quietMs: Math.min(quietMs, opts.reply_timeout_ms), giveUpMs: 4 * opts.reply_timeout_ms };
}

/** One try: its value, or what went wrong (kept for the error once the tries run out). */
export type Attempt<T, F> = { ok: true; value: T } | { ok: false; failure: F };

/** How a download ended: the command's answer, the `download_finished` event, and state set beside `ok`. */
export interface FinishedDownload<R> {
  result: R;
  message: string;
  data: Record<string, unknown>;
  /** Set with status `ok` and the download time, e.g. `record_count`. */
  state?: DeviceStatePatch;
}

/** 15 minutes: the clock skew beyond which a device's clock is flagged (the design's rule). */
export const CLOCK_SKEW_LIMIT_S = 900;

/**
 * The JSON Schema of a host-driven session's `options` (`DriverDefinition.optionsSchema`): the
 * numbers `numberOptions` reads (`defaults`, each >= 1, or >= 0 for `zeroAllowed`), plus the
 * driver's own `extra` properties; no other key.
 */
export function meterOptionsSchema<T extends { [K in keyof T]: number }>(
  defaults: T,
  zeroAllowed: readonly (keyof T & string)[] = [],
  extra: Readonly<Record<string, unknown>> = {},
): Record<string, unknown> {
  const numbers = Object.fromEntries(
    (Object.entries(defaults) as [keyof T & string, number][]).map(([name, value]) => [name, { type: 'number', minimum: zeroAllowed.includes(name) ? 0 : 1, default: value }]),
  );
  return { type: 'object', additionalProperties: false, properties: { ...numbers, ...extra } };
}

/**
 * Reads numeric `device.options` over their defaults. Throws an Error that names the bad option.
 * `minimums` default to 1 (0 for names in `zeroAllowed`).
 */
export function numberOptions<T extends { [K in keyof T]: number }>(device: Pick<DeviceConfig, 'id' | 'options'>, defaults: T, zeroAllowed: readonly (keyof T)[] = []): T {
  const given = device.options ?? {};
  const out = { ...defaults };
  for (const name of Object.keys(defaults) as (keyof T & string)[]) {
    const v = given[name];
    if (v === undefined) continue;
    const min = zeroAllowed.includes(name) ? 0 : 1;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) {
      throw new Error(`device ${device.id}: options.${name} must be a number >= ${min}`);
    }
    (out as Record<string, number>)[name] = v;
  }
  return out;
}

const BLOCKS = new Set(['meter', 'analyzer', 'printer', 'imaging']);

/** Folds `p` into `into` as the host folds it into the state: blocks merge field by field. */
export function mergePatch(into: DeviceStatePatch, p: DeviceStatePatch): void {
  const target = into as Record<string, unknown>;
  for (const [k, v] of Object.entries(p)) {
    if (v === undefined) continue;
    target[k] = BLOCKS.has(k) ? { ...((target[k] as object | undefined) ?? {}), ...(v as object) } : v;
  }
}

/**
 * The session's side of the host: events, state patches and quarantine. A listener that throws
 * is logged and never reaches the session, whose conversation must go on.
 */
export class SessionReporter {
  /** The state this session has reported so far (what `status` answers). */
  readonly state: DeviceStatePatch = {};

  constructor(
    private readonly host: SessionHost,
    /** Prefix for log lines: the driver id. */
    readonly tag: string,
  ) {}

  emit(type: BridgeEventType, message: string, data?: Record<string, unknown>): void {
    try {
      this.host.event(type, message, data);
    } catch (err) {
      this.host.log.error({ err: String(err) }, `${this.tag}: event handler threw`);
    }
  }

  patch(p: DeviceStatePatch): void {
    mergePatch(this.state, p);
    try {
      this.host.updateState(p);
    } catch (err) {
      this.host.log.error({ err: String(err) }, `${this.tag}: updateState threw`);
    }
  }

  /**
   * Keeps bytes in quarantine under `code`, with no event (the caller reports them its own way).
   * Resolves true once they are stored, false when they could not be (logged); never rejects, so a
   * caller that answers nothing for them may leave it, and one that answers the device awaits it.
   */
  async quarantine(bytes: Buffer, code: string): Promise<boolean> {
    try {
      await this.host.quarantine(bytes, code);
      return true;
    } catch (err) {
      this.host.log.error({ err: String(err), reason: code }, `${this.tag}: quarantine failed`);
      return false;
    }
  }

  /**
   * Bytes the codec refused: quarantined, logged and announced by reason only, never by content
   * (it may be patient data). `what` names them in the message ("line", "frame", "packet").
   */
  badData(bytes: Buffer, code: string, detail: string, what = 'data'): void {
    this.quarantine(bytes, code);
    this.host.log.warn({ reason: code, detail }, `${this.tag}: bad ${what} from the device`);
    this.emit('bad_frame', `bad ${what} from the device: ${code}`, { reason: code, detail });
  }

  /**
   * A clock read from the device (naive local time in `timezone`): the skew goes on the device
   * state, flagged beyond `limitS`, with one `clock_skew` event when it becomes flagged. `who`
   * names the device in the event ("meter", "reader"). Returns the skew in seconds.
   */
  clockRead(deviceNaive: string, timezone: string, now: Date, limitS: number, who = 'meter'): number {
    const skew = clockSkewSeconds(deviceNaive, timezone, now);
    const flagged = Math.abs(skew) > limitS;
    const wasFlagged = this.state.clock_skew_flagged === true;
    this.patch({ clock_skew_s: skew, clock_skew_flagged: flagged });
    if (flagged && !wasFlagged) {
      this.emit('clock_skew', `the ${who} clock is ${skew} s off the host clock (limit ${limitS} s)`, { clock_skew_s: skew, limit_s: limitS });
    }
    return skew;
  }

  /**
   * The device clock was just set and reads `deviceNaive` (or, for a device that cannot read it
   * back, the time sent): the new skew on the state and a `clock_set` event; the `clock/sync` answer.
   */
  clockSet(
    deviceNaive: string,
    timezone: string,
    now: Date,
    limitS: number,
    message = 'the meter clock was set to the host time',
  ): ClockSyncResult {
    const previous = this.state.clock_skew_s ?? null;
    const skew = clockSkewSeconds(deviceNaive, timezone, now);
    this.patch({ clock_skew_s: skew, clock_skew_flagged: Math.abs(skew) > limitS, last_seen: now.toISOString() });
    this.emit('clock_set', message, { previous_skew_s: previous, clock_skew_s: skew });
    return { clock: deviceNaive, clock_skew_s: skew, previous_skew_s: previous };
  }

  /**
   * Reports a failed conversation as state and events, and returns the Error for the caller.
   * `eventType` null: the failure came before anything started (no download event).
   */
  failed(err: unknown, eventType: 'download_failed' | 'device_error' | null, stopped: boolean): Error {
    const e = err instanceof Error ? err : new Error(String(err));
    // Once stopped, a conversation cut short is the stop itself, not news about the device.
    if (stopped) return e;
    if (e instanceof NoAnswerError) {
      if (this.state.status !== 'no-answer') this.emit('no_answer', e.message);
      if (eventType === 'download_failed') this.emit('download_failed', e.message, { reason: 'no-answer' });
      this.patch({ status: 'no-answer', status_detail: e.message });
      return e;
    }
    if (e instanceof AbortedError) {
      if (eventType) this.emit(eventType, e.message, { reason: 'link-closed' });
      this.patch({ status: 'error', status_detail: e.message });
      return e;
    }
    const reason = e instanceof ProtocolError ? e.code : 'error';
    this.host.log.warn({ reason, err: e.message }, `${this.tag}: conversation failed`);
    this.emit(eventType ?? 'download_failed', e.message, { reason });
    this.patch({ status: 'error', status_detail: e.message });
    return e;
  }
}

/** Framed items waiting to be read by the conversation, with a timed, abortable wait. */
export class Inbox<T> {
  private items: T[] = [];
  private wake: (() => void) | null = null;
  private abortError: Error | null = null;

  push(...items: T[]): void {
    if (items.length === 0) return;
    this.items.push(...items);
    this.wake?.();
  }

  /** Makes the current and every later `next()` throw `err` until `resume()`. */
  abort(err: Error): void {
    this.abortError = err;
    this.wake?.();
  }

  resume(): void {
    this.abortError = null;
  }

  /** Throws the abort error, if any (call before writing to the device). */
  check(): void {
    if (this.abortError) throw this.abortError;
  }

  clear(): void {
    this.items = [];
  }

  /** The next item, or null once `timeoutMs` passes with none. */
  async next(timeoutMs: number): Promise<T | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.check();
      if (this.items.length > 0) return this.items.shift()!;
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.wake = null;
          resolve();
        }, left);
        this.wake = () => {
          clearTimeout(timer);
          this.wake = null;
          resolve();
        };
      });
    }
  }
}

/** Commands that may wait behind the conversation in progress; more are refused as busy. */
export const MAX_WAITING_COMMANDS = 8;

/**
 * One conversation at a time: every job waits for the one before it. The line is short, so a
 * dashboard that repeats a request while the device is slow gets "busy", not a growing queue; and
 * a download already waiting serves every later download request (the whole memory is read each
 * time, so a second one would only repeat it).
 */
export class ConversationQueue {
  private chain: Promise<unknown> = Promise.resolve();
  private waiting = 0;
  private pendingDownload: Promise<unknown> | null = null;
  private stopped = false;

  constructor(private readonly tag: string) {}

  run<T>(job: () => Promise<T>): Promise<T> {
    if (this.waiting >= MAX_WAITING_COMMANDS) {
      return Promise.reject(new Error(`${this.tag}: the device is busy (${this.waiting} commands already waiting)`));
    }
    this.waiting++;
    // A job still waiting when the session stops must not talk to the device afterwards.
    const guarded = (): Promise<T> => {
      this.waiting--;
      return this.stopped ? Promise.reject(new AbortedError('the session stopped')) : job();
    };
    const run = this.chain.then(guarded, guarded);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Queues `job` unless a download is already waiting to start, which is then returned instead. */
  download<T>(job: () => Promise<T>): Promise<T> {
    if (this.pendingDownload) return this.pendingDownload as Promise<T>;
    const pending = this.run(() => {
      this.pendingDownload = null;
      return job();
    });
    this.pendingDownload = pending;
    pending.catch(() => {
      if (this.pendingDownload === pending) this.pendingDownload = null;
    });
    return pending;
  }

  /** Refuses every waiting job and resolves once the one in progress has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.chain.catch(() => undefined);
  }
}

/** A device command beyond `download` and `status`: run in the queue, one at a time. */
export type SessionCommand = (params: Record<string, unknown>) => Promise<unknown>;

/**
 * A host-driven device session: the host asks, the device answers. Subclasses bring the framer
 * (`frame`), the download conversation and any extra commands; this class wires the transport,
 * the inbox, the queue, automatic downloads (on connect and every `poll_interval`, at a random
 * phase so meters configured alike spread out) and the capture of each conversation.
 */
export abstract class MeterSession<Item> implements DriverSession {
  protected readonly transport: ByteTransport;
  protected readonly report: SessionReporter;
  protected readonly inbox = new Inbox<Item>();
  /** When the device last sent anything (ms since epoch). */
  protected lastDataAt = 0;
  /** The exchanges of the conversation in progress; it becomes the capture committed with its records. */
  protected transcript: Exchange[] | null = null;
  /** What a closed link mid-conversation is called in events. */
  protected linkClosedMessage = 'the link closed during the conversation';
  private readonly queue: ConversationQueue;
  private pollTimer: NodeJS.Timeout | null = null;
  private started = false;
  protected stopped = false;

  constructor(
    protected readonly host: SessionHost,
    protected readonly tag: string,
  ) {
    this.transport = host.transport;
    this.report = new SessionReporter(host, tag);
    this.queue = new ConversationQueue(tag);
  }

  /** The codec: received bytes in, framed items out (partial frames kept for the next chunk). */
  protected abstract frame(chunk: Buffer): Item[];
  /** Drops the codec's partial frame, before a retry. */
  protected abstract resetFramer(): void;
  /**
   * Reads the device's memory and commits it; `trigger` says why (connected, poll, request).
   * The queue calls it only while the transport is open.
   */
  protected abstract download(trigger: string): Promise<unknown>;
  /** Extra commands (e.g. `clock/sync`), each run in the queue. */
  protected commands(): Record<string, SessionCommand> {
    return {};
  }

  /**
   * What the transcript keeps of received bytes: by default each chunk as it came. `items` are
   * what `frame` made of it (a driver that records whole reports returns those).
   */
  protected transcribeReceived(chunk: Buffer, _items: readonly Item[]): Buffer[] {
    return [Buffer.from(chunk)];
  }
  /** Called when the link opens, before the automatic download. */
  protected linkOpened(): void {}
  /** Called when the link closes, before the conversation in progress is aborted. */
  protected linkClosed(): void {}

  // Bound listeners, so stop() can remove exactly these.
  private readonly onData = (chunk: Buffer): void => {
    this.lastDataAt = Date.now();
    const items = this.frame(chunk);
    if (this.transcript) for (const bytes of this.transcribeReceived(chunk, items)) this.transcript.push({ dir: 'D', bytes });
    this.inbox.push(...items);
  };
  private readonly onOpen = (): void => {
    this.linkOpened();
    this.autoDownload('connected');
  };
  private readonly onClose = (): void => {
    this.linkClosed();
    this.inbox.abort(new AbortedError(this.linkClosedMessage));
  };
  private readonly onError = (err: Error): void => this.host.log.warn({ err: err.message }, `${this.tag}: transport error`);

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.transport.on('data', this.onData);
    this.transport.on('open', this.onOpen);
    this.transport.on('close', this.onClose);
    this.transport.on('error', this.onError);
    const every = this.host.device.poll_interval;
    if (every && every > 0) {
      this.pollTimer = setTimeout(() => {
        this.pollTimer = setInterval(() => this.autoDownload('poll'), every * 1000);
        this.autoDownload('poll');
      }, Math.random() * every * 1000);
    }
    if (this.transport.isOpen) this.autoDownload('connected');
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
    this.transport.off('data', this.onData);
    this.transport.off('open', this.onOpen);
    this.transport.off('close', this.onClose);
    this.transport.off('error', this.onError);
    this.inbox.abort(new AbortedError('the session stopped'));
    await this.queue.stop();
  }

  async command(verb: string, params: Record<string, unknown>): Promise<unknown> {
    if (this.stopped) throw new Error(`${this.tag}: the session is stopped`);
    if (verb === 'download') return this.queueDownload('request');
    if (verb === 'status') return { ...this.report.state };
    const extra = this.commands();
    const run = extra[verb];
    if (!run) {
      throw new Error(`${this.tag}: unknown command "${verb}" (known: ${['download', 'status', ...Object.keys(extra)].join(', ')})`);
    }
    return this.queue.run(() => run(params));
  }

  private queueDownload(trigger: string): Promise<unknown> {
    return this.queue.download(() => {
      if (this.stopped || !this.transport.isOpen) {
        return trigger === 'request' ? Promise.reject(new Error(`${this.tag}: the transport is not open`)) : Promise.resolve(null);
      }
      return this.download(trigger);
    });
  }

  /** Connect and poll triggers: failures are reported as events only. */
  protected autoDownload(trigger: string): void {
    if (this.stopped || !this.transport.isOpen) return;
    this.queueDownload(trigger).catch(() => undefined);
  }

  /** Starts a conversation: clears an old abort and starts its transcript. */
  protected begin(): void {
    this.inbox.resume();
    this.transcript = [];
  }

  /** Ends the conversation's transcript and returns it as the capture to commit with its records. */
  protected takeCapture(): Capture {
    const capture: Capture = { kind: 'transcript', exchanges: this.transcript ?? [] };
    this.transcript = null;
    return capture;
  }

  /**
   * Commits a download's records with the conversation's transcript (`takeCapture`) as their
   * capture. A store that does not commit fails the download with `commit-failed`.
   */
  protected async commitDownload(drafts: ResultDraft[]): Promise<{ inserted: number; duplicates: number }> {
    const capture = this.takeCapture();
    try {
      return await this.host.commit({ result: drafts }, capture);
    } catch (err) {
      throw new ProtocolError('commit-failed', `the store did not commit the download: ${(err as Error).message}`);
    }
  }

  /** Drops what was received and the codec's partial frame. */
  protected clearInbox(): void {
    this.inbox.clear();
    this.resetFramer();
  }

  /** Writes to the device, recording it in the transcript; throws if the conversation was aborted. */
  protected async send(bytes: Buffer): Promise<void> {
    this.inbox.check();
    this.transcript?.push({ dir: 'H', bytes });
    await this.transport.write(bytes);
  }

  /** Waits until the device has been quiet for `quietMs` (at most `giveUpMs`), then drops what it sent. */
  protected async drain(quietMs: number, giveUpMs: number): Promise<void> {
    const giveUp = Date.now() + giveUpMs;
    for (;;) {
      this.inbox.check();
      const since = Date.now() - this.lastDataAt;
      if (since >= quietMs || Date.now() >= giveUp) break;
      await new Promise((r) => setTimeout(r, quietMs - since));
    }
    this.clearInbox();
  }

  /**
   * Runs `once` (given the try's index, 0 first) until it succeeds, at most `1 + policy.retries`
   * times; before each retry, waits for the device to go quiet and drops what it sent. When the
   * tries run out, throws what `giveUp` makes of their failures, in order. An exception from
   * `once` ends the tries at once.
   */
  protected async retry<T, F>(policy: RetryPolicy, once: (attempt: number) => Promise<Attempt<T, F>>, giveUp: (failures: F[]) => Error): Promise<T> {
    const failures: F[] = [];
    for (let attempt = 0; attempt <= policy.retries; attempt++) {
      if (attempt > 0) await this.drain(policy.quietMs, policy.giveUpMs);
      const outcome = await once(attempt);
      if (outcome.ok) return outcome.value;
      failures.push(outcome.failure);
    }
    throw giveUp(failures);
  }

  /**
   * The events around a download. The transcript begins and `greet` opens the conversation: a
   * failure there is reported without a download event, as nothing started. Then the state
   * `downloading` and `download_started`; `run`; the state `ok` and `download_finished`. A
   * failure after the start is a `download_failed`.
   */
  protected async downloadConversation<G, R>(trigger: string, greet: () => Promise<G>, run: (greeting: G) => Promise<FinishedDownload<R>>): Promise<R> {
    this.begin();
    let started = false;
    try {
      const greeting = await greet();
      started = true;
      this.report.patch({ status: 'downloading', status_detail: null });
      this.report.emit('download_started', `download started (${trigger})`, { trigger });
      const done = await run(greeting);
      const at = this.host.now().toISOString();
      this.report.patch({ status: 'ok', status_detail: null, ...done.state, last_download: at, last_seen: at });
      this.report.emit('download_finished', done.message, done.data);
      return done.result;
    } catch (err) {
      throw this.failed(err, started ? 'download_failed' : null);
    }
  }

  /** Reports a failed conversation (see SessionReporter.failed). */
  protected failed(err: unknown, eventType: 'download_failed' | 'device_error' | null): Error {
    this.transcript = null;
    return this.report.failed(err, eventType, this.stopped);
  }
}
