import { Worker } from 'node:worker_threads';
import type { DeviceState } from '../records/types.ts';
import type { RequestRecord } from './requests.ts';
import type { BlobSyncCounts } from './blobs.ts';
import { retentionEnabled, type RetentionSettings } from './retention.ts';
import type { CommitOutcome, GroupCommitInput } from './store.ts';

function ready(worker: Worker, isReady: (message: unknown) => boolean): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onMessage = (m: unknown): void => {
      if (!isReady(m)) return;
      worker.off('error', reject);
      worker.off('message', onMessage);
      resolve();
    };
    worker.on('message', onMessage);
    worker.once('error', reject);
  });
}

type Pending = { resolve: (value: unknown) => void; reject: (error: Error) => void };

/** The WAL is truncated by a checkpoint once it passes this many MB (`store.wal_max_mb`). */
export const DEFAULT_WAL_MAX_MB = 64;

export interface StoreWriterOptions {
  /** `store.wal_max_mb` (default 64; 0: never truncate). */
  walMaxMb?: number;
  /** `store.retention`; pruning runs at start and every `retentionIntervalMs` (default an hour). */
  retention?: RetentionSettings;
  retentionIntervalMs?: number;
}

/**
 * Every write to the database goes through one worker thread that owns the writing connection
 * (SQLite has one writer anyway). The event loop never waits for a disk sync; callers get a
 * promise that settles once their transaction is committed. Reads stay on the main thread's
 * own connection, which WAL lets run beside the writer.
 */
export class StoreWriter {
  private readonly pending = new Map<number, Pending>();
  /** Resolved when no call is left unanswered (see `drained`). */
  private idleWaiters: Array<() => void> = [];
  private nextId = 1;
  private failure: Error | undefined;

  private closing = false;
  /** Called once if the thread dies while the daemon still needs it. */
  onFailure: ((error: Error) => void) | undefined;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (message: { id?: number; result?: unknown; error?: string }) => {
      if (message.id === undefined) return;
      const waiter = this.pending.get(message.id);
      if (!waiter) return;
      this.pending.delete(message.id);
      if (message.error !== undefined) waiter.reject(new Error(message.error));
      else waiter.resolve(message.result);
      this.wakeIfIdle();
    });
    const fail = (error: Error): void => {
      if (this.failure) return;
      this.failure = error;
      if (!this.closing) this.onFailure?.(error);
      for (const waiter of this.pending.values()) waiter.reject(error);
      this.pending.clear();
      this.wakeIfIdle();
    };
    worker.on('error', (error) => fail(new Error(`store writer failed: ${error.message}`)));
    worker.on('exit', (code) => fail(new Error(`store writer stopped (exit ${code})`)));
  }

  /**
   * Starts the writer on a database that the caller has already opened (and so migrated). The
   * same thread copies the WAL back into the database file every `checkpointIntervalMs`, between
   * group commits (writer-worker.js).
   */
  static async open(path: string, checkpointIntervalMs = 1000, options: StoreWriterOptions = {}): Promise<StoreWriter> {
    const workerData = {
      path,
      checkpointIntervalMs,
      walMaxBytes: options.walMaxMb !== undefined ? Math.round(options.walMaxMb * 1024 * 1024) : DEFAULT_WAL_MAX_MB * 1024 * 1024,
      retention: options.retention && retentionEnabled(options.retention) ? options.retention : undefined,
      retentionIntervalMs: options.retentionIntervalMs,
    };
    const worker = new Worker(new URL('./writer-worker.js', import.meta.url), { workerData });
    await ready(worker, (m) => (m as { ready?: boolean }).ready === true);
    return new StoreWriter(worker);
  }

  private call<T>(method: string, ...args: unknown[]): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ id, method, args });
    });
  }

  /** Resolves once every write asked for has been answered (committed or failed). */
  drained(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private wakeIfIdle(): void {
    if (this.pending.size === 0) this.idleWaiters.splice(0).forEach((wake) => wake());
  }

  /**
   * Stores a session's download; settles once it is committed (so only then may the device hear
   * "received"). Commits asked for while the thread is writing share its next transaction. A
   * capture given as bytes is put into the blob store by the thread, with the other captures of
   * its group, before the transaction that names it; if that fails, nothing is committed and the
   * promise rejects.
   */
  async commit(input: GroupCommitInput): Promise<CommitOutcome> {
    const [outcome] = await this.commitMany([input]);
    if (outcome instanceof Error) throw outcome;
    return outcome!;
  }

  /** One transaction for all inputs; an input that failed comes back as its Error. */
  async commitMany(inputs: GroupCommitInput[]): Promise<Array<CommitOutcome | Error>> {
    const outcomes = await this.call<Array<CommitOutcome | { error: string }>>('commitMany', inputs);
    return outcomes.map((o) => ('error' in o ? new Error(o.error) : o));
  }

  /** Group commits the thread has made, its quarantine slices, the blob-store syncs they asked for, and its checkpoints. */
  stats(): Promise<{
    groups: number;
    quarantineSlices: number;
    blobSyncs: BlobSyncCounts;
    checkpoints: { count: number; totalMs: number; maxMs: number; truncated: number };
    pruned: { records: number; captures: number; quarantine: number; blobs: number };
    walBytes: number;
  }> {
    return this.call('stats');
  }

  /** Runs `store.retention` now (at `at`); resolves with the totals pruned since the thread started. */
  prune(at: Date = new Date()): Promise<{ records: number; captures: number; quarantine: number; blobs: number }> {
    return this.call('prune', at.toISOString());
  }

  markPublishedMany(seqs: number[], at: Date): Promise<void> {
    return this.call('markPublishedMany', seqs, at);
  }

  saveDeviceStates(states: DeviceState[], at: Date): Promise<void> {
    return this.call('saveDeviceStates', states, at);
  }

  /** A device request answered: the audit row and, with a transaction, its outcome for repeats. */
  recordRequest(entry: RequestRecord, at: Date): Promise<void> {
    return this.call('recordRequest', entry, at);
  }

  /** The next number of a named sequence (jobs.ts), committed before it is answered. */
  nextSequence(name: string): Promise<number> {
    return this.call('nextSequence', name);
  }

  /**
   * Keeps refused bytes: their blob, then the row naming it; settles once both are on disk. Calls
   * made together are written in slices that share their syncs.
   */
  quarantine(deviceId: string, bytes: Buffer, reason: string, at: Date): Promise<void> {
    return this.call('quarantine', deviceId, bytes, reason, at);
  }

  /** Waits for every write already asked for, then closes the connection and the thread. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.failure) return;
    // Listen before asking: Node may deliver the answer and emit 'exit' in one turn, before a
    // listener added after the answer could exist (then the stop would wait for ever).
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    await this.call('close');
    await exited;
  }
}
