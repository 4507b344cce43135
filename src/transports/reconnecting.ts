import { EventEmitter } from 'node:events';
import type { ByteTransport } from './transport.ts';

export const DEFAULT_RECONNECT_MIN_MS = 500;
export const DEFAULT_RECONNECT_MAX_MS = 30_000;

/**
 * Delay before reconnect attempt number `attempt` (0-based): doubles from `minMs` up to `maxMs`,
 * then is scaled by a random factor in [0.5, 1) so that many devices that vanished together (a
 * USB hub reset, a switch reboot) do not all retry in the same millisecond.
 */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const min = Math.max(1, minMs);
  const max = Math.max(min, maxMs);
  const base = Math.min(max, min * 2 ** Math.min(attempt, 30));
  const jittered = base * (0.5 + 0.5 * random());
  return Math.max(1, Math.round(jittered));
}

/** Emits `error` only when someone listens: a transport error is never fatal to the process. */
export function emitErrorSafely(emitter: EventEmitter, err: Error): void {
  if (emitter.listenerCount('error') > 0) emitter.emit('error', err);
}

/**
 * Base of the transports that keep a link up by themselves (serial, TCP client, HID).
 *
 * `open()` means "keep this link up from now on": it makes one attempt and resolves whether or not
 * the device is there. A failed attempt or a lost link is reported through `lastError` and an
 * `error` event (once per distinct message, so a device that stays away does not flood the log)
 * and retried with exponential backoff and jitter. Every time the link comes up `open` is emitted,
 * every time it goes away `close` is emitted exactly once. `close()` stops all of it.
 *
 * Subclasses implement `connect()` (establish the link or reject with a clear Error) and
 * `disconnect()` (release whatever handle exists, pending or open, without emitting anything), and
 * call `linkLost()` when the link drops on its own.
 */
export abstract class ReconnectingTransport extends EventEmitter implements ByteTransport {
  abstract readonly description: string;
  /** Why the link is down (or the last thing that went wrong); cleared when the link comes up. */
  lastError: Error | undefined;

  /** Jitter source; tests may replace it. */
  random: () => number = Math.random;

  private wanted = false;
  private connected = false;
  private timer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private lastReported: string | undefined;
  private pending: Promise<void> | undefined;

  protected constructor(
    protected readonly reconnectMinMs: number,
    protected readonly reconnectMaxMs: number,
  ) {
    super();
  }

  get isOpen(): boolean {
    return this.connected;
  }

  /** True between `open()` and `close()`, whether or not the link is up right now. */
  get isActive(): boolean {
    return this.wanted;
  }

  /** Resolves after the first attempt, even when the device is absent; see the class comment. */
  async open(): Promise<void> {
    if (this.wanted) {
      await this.pending;
      return;
    }
    this.wanted = true;
    this.attempt = 0;
    this.lastReported = undefined;
    await this.runAttempt();
  }

  async close(): Promise<void> {
    if (!this.wanted) return;
    this.wanted = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const wasConnected = this.connected;
    this.connected = false;
    try {
      await this.disconnect();
    } catch {
      // releasing a handle that is already gone is not an error worth reporting
    }
    try {
      await this.pending;
    } catch {
      // runAttempt never rejects, but stay defensive
    }
    if (wasConnected) this.emit('close');
  }

  abstract write(data: Buffer): Promise<void>;

  protected abstract connect(): Promise<void>;
  protected abstract disconnect(): Promise<void>;

  /** Whether the link is up and writes may proceed. */
  protected get linkUp(): boolean {
    return this.connected && this.wanted;
  }

  /** Called by subclasses when the link dropped without `close()`: emits `close` once, retries. */
  protected linkLost(reason: Error): void {
    if (!this.connected || !this.wanted) return;
    this.connected = false;
    void this.disconnect().catch(() => undefined);
    this.emit('close');
    this.report(reason);
    this.scheduleReconnect();
  }

  /** Records an error and emits it unless the same message was the last one reported. */
  protected report(err: Error): void {
    this.lastError = err;
    if (err.message === this.lastReported) return;
    this.lastReported = err.message;
    emitErrorSafely(this, err);
  }

  private runAttempt(): Promise<void> {
    const attempt = (async () => {
      this.timer = undefined;
      if (!this.wanted || this.connected) return;
      try {
        await this.connect();
      } catch (err) {
        if (!this.wanted) return;
        this.report(err instanceof Error ? err : new Error(String(err)));
        this.scheduleReconnect();
        return;
      }
      if (!this.wanted) {
        await this.disconnect().catch(() => undefined);
        return;
      }
      this.connected = true;
      this.attempt = 0;
      this.lastReported = undefined;
      this.lastError = undefined;
      this.emit('open');
    })();
    this.pending = attempt;
    return attempt;
  }

  private scheduleReconnect(): void {
    if (!this.wanted || this.timer) return;
    const delay = backoffDelay(this.attempt, this.reconnectMinMs, this.reconnectMaxMs, this.random);
    this.attempt += 1;
    this.timer = setTimeout(() => void this.runAttempt(), delay);
    // The daemon is kept alive by its other work; a device that is away must not pin the process.
    this.timer.unref();
  }
}
