import pino from 'pino';
import type { Capture, SessionHost } from '../../src/driver-sdk/index.ts';
import type { DeviceConfig } from '../../src/config/types.ts';
import type { BridgeEventType, DeviceState, ResultDraft } from '../../src/records/types.ts';
import { resultId } from '../../src/records/ids.ts';
import type { ByteTransport } from '../../src/transports/transport.ts';

export interface SeenEvent {
  type: BridgeEventType;
  message: string;
  data?: Record<string, unknown>;
}

/**
 * A SessionHost for driver session unit tests: keeps events, state, quarantined bytes and commits,
 * and stores drafts by their record id like the real store (so duplicates are counted).
 */
export class FakeHost implements SessionHost {
  readonly log = pino({ level: 'silent' });
  timezone = 'Europe/Copenhagen';
  readonly events: SeenEvent[] = [];
  readonly state: Partial<DeviceState> = {};
  readonly quarantined: { bytes: Buffer; reason: string }[] = [];
  readonly commits: { drafts: ResultDraft[]; capture: Capture }[] = [];
  /** Stored drafts by record id. */
  readonly stored = new Map<string, ResultDraft>();
  /** Event types and commit start/end, in order. */
  readonly order: string[] = [];
  commitDelayMs = 0;
  private waiters: (() => void)[] = [];

  constructor(
    readonly device: DeviceConfig,
    readonly transport: ByteTransport,
  ) {}

  now(): Date {
    return new Date();
  }

  async commit(drafts: ResultDraft[], capture: Capture): Promise<{ inserted: number; duplicates: number }> {
    this.order.push('commit:start');
    if (this.commitDelayMs > 0) await new Promise((r) => setTimeout(r, this.commitDelayMs));
    this.commits.push({ drafts, capture });
    let inserted = 0;
    for (const d of drafts) {
      const id = resultId(d);
      if (!this.stored.has(id)) inserted++;
      this.stored.set(id, d);
    }
    this.order.push('commit:end');
    this.notify();
    return { inserted, duplicates: drafts.length - inserted };
  }

  quarantine(bytes: Buffer, reason: string): void {
    this.quarantined.push({ bytes, reason });
  }

  event(type: BridgeEventType, message: string, data?: Record<string, unknown>): void {
    this.events.push({ type, message, data });
    this.order.push(type);
    this.notify();
  }

  updateState(patch: Partial<DeviceState>): void {
    Object.assign(this.state, patch);
    this.notify();
  }

  types(): BridgeEventType[] {
    return this.events.map((e) => e.type);
  }

  /** Resolves once `pred` holds, or fails after `ms`. */
  async until(pred: () => boolean, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out; events so far: ${this.types().join(', ')}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 20);
      });
    }
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }
}
