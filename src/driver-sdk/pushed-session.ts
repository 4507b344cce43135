/**
 * A device that sends on its own and waits for our answer: an ASTM analyzer (ACK of the last
 * frame), a POCT1-A device (ACK message), a DICOM node (C-STORE status). Rule 1 of the design is
 * kept here once: a unit is answered "received" only after its records and raw bytes committed,
 * and a unit whose commit failed is never answered as stored: `refuse` is called instead (NAK, a
 * failure status, or no answer), with a `download_failed` event and status `error`.
 *
 * The base also runs a transmission's events: the first unit of a burst sets status
 * `downloading` and raises `download_started`; the end of the burst (the protocol's end, such as
 * an ASTM EOT, via `endTransmission`, or `idleMs` of silence) raises `download_finished` with the
 * totals and sets status `ok`. Units are committed one after another, in arrival order, so their
 * answers go out in order.
 *
 * A device that cannot be told "not stored" (a printer-port reader that only sends) sets
 * `commitRetryMs`: a unit whose commit failed is kept and committed again every so often, and
 * acknowledged once stored; what is still not stored at stop (a commit that failed while the stop
 * waited for it included), and what arrives after the stop, is kept in quarantine.
 */
import type { DeviceStatePatch } from '../records/device-state.ts';
import { eachDraft, type RecordDrafts } from '../records/kinds.ts';
import { factsToPatch, type Capture, type DeviceFacts, type DriverSession, type SessionHost } from './index.ts';
import { ConversationQueue, SessionReporter, type SessionCommand } from './meter-session.ts';

/** One thing the device sent that is answered as a whole (a message, an instance). */
export interface PushedUnit {
  /** Keyed by record kind, as `host.commit` takes them. */
  drafts: RecordDrafts;
  /** Its raw bytes, committed with the drafts. */
  capture: Capture;
  /** What the unit says about the device (identity from an ASTM H record, a DICOM header). */
  facts?: DeviceFacts;
  /** A state patch beside the facts (e.g. `analyzer.dialect`). */
  state?: DeviceStatePatch;
}

/** How many records a unit holds, of every kind. */
function draftCount(drafts: RecordDrafts): number {
  return eachDraft(drafts).length;
}

export type UnitOutcome = { stored: true; inserted: number; duplicates: number } | { stored: false; reason: string };

/** How the protocol answers one unit. Either may be async (a write to the device). */
export interface UnitAnswer {
  /** The unit is committed (or had nothing to store): tell the device "received". */
  acknowledge(outcome: { inserted: number; duplicates: number }): void | Promise<void>;
  /** The commit failed: tell the device it was not stored (or say nothing, if the protocol resends on silence). */
  refuse(reason: string): void | Promise<void>;
}

export interface PushedSessionOptions {
  /** Silence after which a burst without an explicit end is over (ms). Default 2000. */
  idleMs?: number;
  /** Keep and retry units whose commit failed, every this many ms (devices that cannot be refused). */
  commitRetryMs?: number;
}

/** What one transmission brought: units answered, their records, and how many were new. */
export interface TransmissionTotals {
  units: number;
  records: number;
  inserted: number;
  duplicates: number;
}

interface Waiting {
  unit: PushedUnit;
  answer: UnitAnswer;
  done: (outcome: UnitOutcome) => void;
}

export abstract class PushedSession implements DriverSession {
  protected readonly report: SessionReporter;
  protected stopped = false;
  private readonly queue: ConversationQueue;
  private readonly idleMs: number;
  private readonly commitRetryMs: number | undefined;
  private burst: TransmissionTotals | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  /** Units whose commit failed, kept for a retry (only with `commitRetryMs`). */
  private readonly kept: Waiting[] = [];
  /** The chain of commits: each unit waits for the one before it. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    protected readonly host: SessionHost,
    protected readonly tag: string,
    options: PushedSessionOptions = {},
  ) {
    this.report = new SessionReporter(host, tag);
    this.queue = new ConversationQueue(tag);
    this.idleMs = options.idleMs ?? 2000;
    this.commitRetryMs = options.commitRetryMs;
  }

  /** Wires the protocol to the transport (listeners, the link). */
  protected abstract attach(): void;
  /** Unwires it; awaited at stop, after the last answer. */
  protected abstract detach(): Promise<void>;
  /** The `download_finished` message of a transmission (a driver may name its units its own way). */
  protected describeTransmission(t: TransmissionTotals): string {
    return `received ${t.records} results in ${t.units} messages: ${t.inserted} new, ${t.duplicates} already stored`;
  }

  /** Commands beyond `status` (e.g. ASTM `send`), run one at a time. */
  protected commands(): Record<string, SessionCommand> {
    return {};
  }

  async start(): Promise<void> {
    this.attach();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.idleTimer = this.retryTimer = null;
    await this.chain.catch(() => undefined);
    // One last try for what a failed commit left behind; what still fails is kept in quarantine.
    await this.retryKept();
    for (const w of this.kept.splice(0)) {
      for (const bytes of captureBytesOf(w.unit.capture)) this.report.quarantine(bytes, 'not-committed');
      w.done({ stored: false, reason: 'the session stopped before the store committed it' });
    }
    await this.queue.stop();
    await this.detach();
  }

  async command(verb: string, params: Record<string, unknown>): Promise<unknown> {
    if (this.stopped) throw new Error(`${this.tag}: the session is stopped`);
    if (verb === 'status') return { ...this.report.state };
    const extra = this.commands();
    const run = extra[verb];
    if (!run) throw new Error(`${this.tag}: unknown command "${verb}" (known: ${['status', ...Object.keys(extra)].join(', ')})`);
    return this.queue.run(() => run(params));
  }

  /**
   * A unit arrived complete: commit it, then answer. Resolves with what happened; never rejects.
   * A unit with no drafts is acknowledged without a commit (the caller quarantines and reports
   * it: for ASTM a message with no results is still a message received intact).
   */
  protected receive(unit: PushedUnit, answer: UnitAnswer): Promise<UnitOutcome> {
    if (this.stopped) {
      // A device that cannot be refused (commitRetryMs) will not send it again: keep its bytes.
      if (this.commitRetryMs !== undefined && draftCount(unit.drafts) > 0) {
        for (const bytes of captureBytesOf(unit.capture)) this.report.quarantine(bytes, 'not-committed');
      }
      void Promise.resolve(answer.refuse('the session is stopped')).catch(() => undefined);
      return Promise.resolve({ stored: false, reason: 'the session is stopped' });
    }
    this.beginTransmission();
    const now = this.host.now().toISOString();
    this.report.patch({ ...(unit.facts ? factsToPatch(unit.facts) : {}), ...unit.state, last_seen: now });
    return new Promise<UnitOutcome>((done) => {
      const waiting: Waiting = { unit, answer, done };
      const run = this.chain.then(() => this.commitOne(waiting));
      this.chain = run.catch(() => undefined);
    });
  }

  /** The device began a transmission (an ASTM ENQ): status `downloading`, `download_started`. Idempotent. */
  protected beginTransmission(): void {
    this.armIdle();
    if (this.burst) return;
    this.burst = { units: 0, records: 0, inserted: 0, duplicates: 0 };
    this.report.patch({ status: 'downloading', status_detail: null });
    this.report.emit('download_started', 'the device started a transmission', { trigger: 'device' });
  }

  /**
   * The transmission ended (an ASTM EOT): once every unit received so far is answered,
   * `download_finished` with the totals (when anything was stored) and status `ok`.
   */
  protected async endTransmission(): Promise<void> {
    await this.chain.catch(() => undefined);
    this.finishBurst();
  }

  private async commitOne(w: Waiting): Promise<void> {
    const { unit } = w;
    if (this.kept.length > 0) {
      // Behind a unit still waiting for the store: answered after it, to keep the order.
      this.kept.push(w);
      return;
    }
    if (draftCount(unit.drafts) === 0) {
      await this.answer(() => w.answer.acknowledge({ inserted: 0, duplicates: 0 }));
      w.done({ stored: true, inserted: 0, duplicates: 0 });
      return;
    }
    let stored: { inserted: number; duplicates: number };
    try {
      stored = await this.host.commit(unit.drafts, unit.capture);
    } catch (err) {
      const reason = `the store did not commit ${draftCount(unit.drafts)} record(s): ${(err as Error).message}`;
      this.host.log.error({ err: (err as Error).message }, `${this.tag}: commit failed`);
      this.report.emit('download_failed', this.commitRetryMs ? `${reason}; retrying` : reason, { reason: 'commit-failed' });
      this.report.patch({ status: 'error', status_detail: this.commitRetryMs ? 'commit failed; retrying' : 'commit failed' });
      // Refused once: a kept unit is retried by retryKept, which only ever acknowledges.
      await this.answer(() => w.answer.refuse(reason));
      if (this.commitRetryMs !== undefined) {
        // Kept even while stopping: the stop is waiting on this chain, and tries it once more
        // or quarantines it (scheduleRetry does nothing once stopped).
        this.kept.push(w);
        this.scheduleRetry();
      } else {
        w.done({ stored: false, reason });
      }
      return;
    }
    this.count(unit, stored);
    await this.answer(() => w.answer.acknowledge(stored));
    w.done({ stored: true, ...stored });
  }

  private count(unit: PushedUnit, stored: { inserted: number; duplicates: number }): void {
    const at = this.host.now().toISOString();
    this.report.patch({ status: 'downloading', status_detail: null, last_download: at, last_seen: at });
    if (this.burst) {
      this.burst.units++;
      this.burst.records += draftCount(unit.drafts);
      this.burst.inserted += stored.inserted;
      this.burst.duplicates += stored.duplicates;
    }
    this.armIdle();
  }

  /** Runs an answer to the device; a failed write is logged, never thrown into the commit chain. */
  private async answer(write: () => void | Promise<void>): Promise<void> {
    try {
      await write();
    } catch (err) {
      this.host.log.warn({ err: (err as Error).message }, `${this.tag}: could not answer the device`);
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      const run = this.chain.then(() => this.retryKept());
      this.chain = run.catch(() => undefined);
    }, this.commitRetryMs);
  }

  /** Commits the kept units again, oldest first; stops at the first that still fails. */
  private async retryKept(): Promise<void> {
    while (this.kept.length > 0) {
      const w = this.kept[0]!;
      let stored = { inserted: 0, duplicates: 0 };
      try {
        if (draftCount(w.unit.drafts) > 0) stored = await this.host.commit(w.unit.drafts, w.unit.capture);
      } catch {
        this.scheduleRetry();
        return;
      }
      this.kept.shift();
      this.count(w.unit, stored);
      await this.answer(() => w.answer.acknowledge(stored));
      w.done({ stored: true, ...stored });
    }
  }

  private armIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    if (this.stopped) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      void this.chain.then(() => {
        if (this.kept.length === 0) this.finishBurst();
        else this.armIdle();
      });
    }, this.idleMs);
  }

  private finishBurst(): void {
    const b = this.burst;
    if (!b || this.stopped) return;
    if (this.kept.length > 0) return; // still not stored: the burst is not over for the store
    this.burst = null;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    if (b.units > 0) {
      this.report.emit('download_finished', this.describeTransmission(b), {
        records: b.records,
        inserted: b.inserted,
        duplicates: b.duplicates,
      });
    }
    if (this.report.state.status === 'downloading') this.report.patch({ status: 'ok', status_detail: null });
  }
}

function captureBytesOf(capture: Capture): Buffer[] {
  if (capture.kind === 'raw') return [capture.bytes];
  const device = capture.exchanges.filter((e) => e.dir === 'D').map((e) => e.bytes);
  return device.length > 0 ? [Buffer.concat(device)] : [];
}
