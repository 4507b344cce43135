import type { CommitInput, CommitOutcome } from './store.ts';
import type { StoreWriter } from './writer.ts';

/**
 * Group commit. While one transaction is being written, the commits that sessions ask for
 * wait together and then go to disk in the next single transaction. Each caller's promise
 * settles only once its own transaction is committed, so a device still hears "received" only
 * for what is stored, and many meters downloading at once share disk syncs instead of queueing
 * one each.
 */
export class CommitQueue {
  private waiting: Array<{ input: CommitInput; resolve: (o: CommitOutcome) => void; reject: (e: Error) => void }> = [];
  private writing: Promise<void> | undefined;

  constructor(private readonly writer: StoreWriter) {}

  commit(input: CommitInput): Promise<CommitOutcome> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ input, resolve, reject });
      this.writing ??= this.writeAll();
    });
  }

  /** Resolves once nothing is waiting or being written. */
  async drained(): Promise<void> {
    while (this.writing) await this.writing;
  }

  private async writeAll(): Promise<void> {
    while (this.waiting.length > 0) {
      const batch = this.waiting;
      this.waiting = [];
      try {
        const outcomes = await this.writer.commitMany(batch.map((b) => b.input));
        outcomes.forEach((outcome, i) => {
          const waiter = batch[i]!;
          if (outcome instanceof Error) waiter.reject(outcome);
          else waiter.resolve(outcome);
        });
      } catch (error) {
        for (const b of batch) b.reject(error as Error);
      }
    }
    this.writing = undefined;
  }
}
