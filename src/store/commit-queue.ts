import type { CommitInput, CommitOutcome, Store } from './store.ts';

/**
 * Collects the commits that sessions ask for within one event-loop turn and writes them in one
 * transaction. Each caller's promise settles only after that transaction is on disk, so a device
 * still hears "received" only for what is stored; under load (many meters downloading at once)
 * one disk sync serves all of them instead of one each.
 */
export class CommitQueue {
  private pending: Array<{ input: CommitInput; resolve: (o: CommitOutcome) => void; reject: (e: Error) => void }> = [];
  private scheduled = false;

  constructor(private readonly store: Store) {}

  commit(input: CommitInput): Promise<CommitOutcome> {
    return new Promise((resolve, reject) => {
      this.pending.push({ input, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Writes everything queued now (also called on shutdown so nothing waits forever). */
  flush(): void {
    this.scheduled = false;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    let outcomes: Array<CommitOutcome | Error>;
    try {
      outcomes = this.store.commitMany(batch.map((b) => b.input));
    } catch (error) {
      for (const b of batch) b.reject(error as Error);
      return;
    }
    outcomes.forEach((outcome, i) => {
      const waiter = batch[i]!;
      if (outcome instanceof Error) waiter.reject(outcome);
      else waiter.resolve(outcome);
    });
  }
}
