import { kindBySchema } from '../records/kinds.ts';
import type { Extension, Services } from './extension.ts';

/** How many records may wait for PUBACK at once; bounds memory when a backlog drains. */
const MAX_IN_FLIGHT = 1000;
/** A backlog is read again once this many are left in flight, so each read fetches hundreds of rows. */
const REFILL_AT = MAX_IN_FLIGHT / 2;
/**
 * PUBACKs are written to the outbox together at most this often. Losing the marks (a crash in
 * between) only means those results are sent once more, which the record id makes harmless, so
 * they need not cost a disk sync each.
 */
const ACK_FLUSH_MS = 250;
/** How long a stop waits for outstanding PUBACKs. */
const STOP_GRACE_MS = 2000;

/**
 * Drains the outbox to each record's topic (`device/<id>/result`, and whatever topic the kind table
 * gives the record's schema) with QoS 1, oldest first, so each device's records arrive in order. A
 * row is marked published only when the broker acknowledged it. After a restart, every row not yet
 * acknowledged is sent again (at-least-once; the record id makes a repeat recognisable).
 *
 * A failed publish keeps the order per device (rule 2): that device's later rows are held until
 * the failed one, sent again, is acknowledged. A later row already on its way when the failure
 * came may reach the broker ahead of it; its PUBACK is then not taken as published, and it is sent
 * again after the failed one, so the device's records arrive (again) in seq order behind it.
 */
export class RecordPublisher implements Extension {
  readonly name = 'record-publisher';
  private queuedUpTo = 0;
  private inFlight = 0;
  private draining = false;
  /**
   * The outbox may hold rows that no commit or reconnect will announce again: the last drain
   * stopped at MAX_IN_FLIGHT, or a publish failed. Then the outbox is read again once no more
   * than REFILL_AT are in flight.
   */
  private moreToSend = false;
  private refillScheduled = false;
  private stopped = false;
  private acked: number[] = [];
  /** Sent and not yet answered, or acknowledged and not yet marked: a re-read of the outbox skips them. */
  private readonly outstanding = new Set<number>();
  /** Per device, the oldest seq whose publish failed and is not yet acknowledged: its later rows wait. */
  private readonly blockedAt = new Map<string, number>();
  private flushScheduled = false;
  private readonly unsubscribe: Array<() => void> = [];

  constructor(private readonly s: Services) {}

  async start(): Promise<void> {
    this.unsubscribe.push(this.s.bus.on('recordsStored', () => this.drain()));
    this.unsubscribe.push(this.s.bus.on('mqttConnected', () => this.drain()));
    this.drain();
  }

  /** Waits briefly for PUBACKs still on their way, so a clean stop does not send them again. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe.forEach((u) => u());
    const deadline = Date.now() + STOP_GRACE_MS;
    while (this.inFlight > 0 && this.s.mqtt.connected && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    await this.flushAcked();
  }

  private drain(): void {
    if (this.draining || this.stopped) return;
    this.draining = true;
    try {
      this.publishPending();
    } catch (error) {
      // A failed outbox read loses nothing: the rows stay, and the next drain reads them again.
      this.s.stats.errors++;
      this.s.log.error({ err: (error as Error).message }, 'could not read the outbox; will retry');
      setTimeout(() => this.drain(), 1000).unref();
    } finally {
      this.draining = false;
    }
  }

  private publishPending(): void {
    while (this.s.mqtt.connected && this.inFlight < MAX_IN_FLIGHT) {
      const batch = this.s.store.pendingOutboxJson(this.queuedUpTo, MAX_IN_FLIGHT - this.inFlight);
      if (batch.length === 0) break;
      for (const record of batch) {
        this.queuedUpTo = record.seq;
        const kind = kindBySchema(record.schema);
        if (!kind) {
          // Written by a newer daemon, or damaged: never guess a topic. It stays unpublished (and
          // is read again at the next start) while the records after it go on.
          this.s.stats.errors++;
          this.s.log.error({ seq: record.seq, schema: record.schema }, 'stored record has a schema no record kind has; not published');
          continue;
        }
        if (this.outstanding.has(record.seq)) continue;
        const blocked = this.blockedAt.get(record.device_id);
        if (blocked !== undefined && record.seq > blocked) {
          // Held behind its device's failed record, read again once that one is acknowledged. A
          // failed record this read went past without sending is no longer in the outbox: nothing to wait for.
          if (this.outstanding.has(blocked)) continue;
          this.blockedAt.delete(record.device_id);
        }
        this.inFlight++;
        this.outstanding.add(record.seq);
        this.s.mqtt
          .publish(this.s.topics.record(record.device_id, kind.topic), record.json, { qos: 1, retain: false })
          .then(
            () => this.onPuback(record.device_id, record.seq, kind.name),
            (error: Error) => {
              // The client gave the packet up (stopped or errored): send it again on the next drain.
              this.outstanding.delete(record.seq);
              this.s.log.warn({ seq: record.seq, err: error.message }, 'record publish failed; will retry');
              this.queuedUpTo = Math.min(this.queuedUpTo, record.seq - 1);
              this.blockedAt.set(record.device_id, Math.min(this.blockedAt.get(record.device_id) ?? Infinity, record.seq));
              this.moreToSend = true;
            },
          )
          .finally(() => {
            this.inFlight--;
            if (this.moreToSend && !this.stopped && this.inFlight <= REFILL_AT) this.scheduleRefill();
          });
      }
    }
    this.moreToSend = this.inFlight >= MAX_IN_FLIGHT;
  }

  private onPuback(deviceId: string, seq: number, kind: string): void {
    const blocked = this.blockedAt.get(deviceId);
    if (blocked !== undefined && seq > blocked) {
      // It reached the broker ahead of an older record of its device: not published yet, it is
      // sent again behind that one.
      this.outstanding.delete(seq);
      return;
    }
    this.acked.push(seq);
    this.s.stats.published++;
    this.s.bus.emit('recordPublished', { deviceId, kind });
    if (blocked === seq) {
      this.blockedAt.delete(deviceId);
      // The device's held rows come after it: read the outbox again from there.
      this.queuedUpTo = Math.min(this.queuedUpTo, seq);
      this.moreToSend = true;
      if (!this.stopped) this.scheduleRefill();
    }
    if (!this.stopped) this.scheduleFlush();
  }

  private scheduleRefill(): void {
    if (this.refillScheduled) return;
    this.refillScheduled = true;
    setImmediate(() => {
      this.refillScheduled = false;
      this.drain();
    });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setTimeout(() => {
      this.flushScheduled = false;
      void this.flushAcked();
    }, ACK_FLUSH_MS).unref();
  }

  /** Writes the PUBACKs received so far; the controller calls it once more after MQTT has closed. */
  flushAcked(): Promise<void> {
    if (this.acked.length === 0) return Promise.resolve();
    const seqs = this.acked;
    this.acked = [];
    return this.s.writer
      .markPublishedMany(seqs, this.s.now())
      .catch((error: Error) => {
        this.s.log.warn({ err: error.message }, 'could not mark records published; they will be sent again');
      })
      .finally(() => seqs.forEach((seq) => this.outstanding.delete(seq)));
  }
}
