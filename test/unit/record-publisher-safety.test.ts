/**
 * The outbox publisher (rule 2: a row is marked published only on PUBACK), on a real Store, with a
 * broker stand-in whose PUBACKs the test hands out. Cases the mutation run on
 * `src/extensions/record-publisher.ts` found unguarded: a backlog larger than the in-flight bound,
 * a broker that is not connected yet, a failed outbox read, the timed flush of PUBACK marks, a stop
 * that waits for outstanding PUBACKs, and marks that cannot be written.
 */
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { EventBus } from '../../src/event-bus.ts';
import type { Services } from '../../src/extensions/extension.ts';
import { RecordPublisher } from '../../src/extensions/record-publisher.ts';
import { Store } from '../../src/store/store.ts';
import { tempDir } from '../helpers/daemon.ts';
import { eventually } from '../helpers/eventually.ts';
import { glucoseDraft } from '../helpers/records.ts';
import { unitServices } from '../helpers/unit-services.ts';

interface Sent {
  topic: string;
  seq: number;
  puback(): void;
  fail(error: Error): void;
}

class ControlledMqtt {
  connected = true;
  readonly sent: Sent[] = [];
  publish(topic: string, payload: unknown, options: { qos: number; retain: boolean }): Promise<void> {
    expect(options).toEqual({ qos: 1, retain: false });
    const seq = (JSON.parse(payload as string) as { seq: number }).seq;
    return new Promise((resolve, reject) => this.sent.push({ topic, seq, puback: resolve, fail: reject }));
  }
}

const opened: Store[] = [];
afterEach(() => opened.splice(0).forEach((s) => s.close()));

interface Rig {
  store: Store;
  mqtt: ControlledMqtt;
  bus: EventBus;
  publisher: RecordPublisher;
  services: Services;
  warnings: string[];
  errors: string[];
  marks: { fail: boolean };
  /** Each call to the writer's markPublishedMany, with its seqs. */
  marked: number[][];
}

function rig(): Rig {
  const store = new Store(join(tempDir('poctd-publisher-safety-'), 'poctd.db'));
  opened.push(store);
  const mqtt = new ControlledMqtt();
  const bus = new EventBus();
  const warnings: string[] = [];
  const errors: string[] = [];
  const marks = { fail: false };
  const marked: number[][] = [];
  const log = pino({ level: 'silent' });
  log.warn = ((obj: unknown, msg?: string) => {
    warnings.push(`${JSON.stringify(obj)} ${msg}`);
  }) as typeof log.warn;
  log.error = ((obj: unknown, msg?: string) => {
    errors.push(`${JSON.stringify(obj)} ${msg}`);
  }) as typeof log.error;
  const services = unitServices({
    bus,
    store,
    writer: {
      markPublishedMany: async (seqs: number[], at: Date) => {
        marked.push([...seqs]);
        if (marks.fail) throw new Error('disk full');
        store.markPublishedMany(seqs, at);
      },
    },
    mqtt,
    log,
  });
  return { store, mqtt, bus, publisher: new RecordPublisher(services), services, warnings, errors, marks, marked };
}

function commitFor(store: Store, ns: number[]): void {
  store.commit({
    site: 's',
    deviceId: 'meter-a',
    driver: 'onetouch-ultra2',
    capture: store.putCaptureSync('raw', Buffer.from(`meter-a-${ns[0]}-${ns.length}`)),
    drafts: { result: ns.map((n) => glucoseDraft(n)) },
    receivedAt: new Date(),
    timezone: 'UTC',
    privacy: { patient_id: 'hash' },
  });
}

const range = (from: number, count: number): number[] => Array.from({ length: count }, (_, i) => from + i);
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('RecordPublisher (safety)', () => {
  it('a backlog beyond the in-flight bound: 1000 at once, then no more than the bound once 500 or fewer wait for PUBACK', async () => {
    const { store, mqtt, publisher, services } = rig();
    expect(publisher.name).toBe('record-publisher');
    commitFor(store, range(1, 1600));
    await publisher.start();
    expect(mqtt.sent).toHaveLength(1000);
    expect(mqtt.sent.map((s) => s.seq)).toEqual(range(1, 1000));

    mqtt.sent.slice(0, 499).forEach((s) => s.puback());
    await eventually('499 PUBACKs', () => services.stats.published === 499);
    await turn();
    // 501 still in flight: above the refill mark, nothing more is read.
    expect(mqtt.sent).toHaveLength(1000);

    mqtt.sent[499]!.puback();
    await eventually('the first refill sent', () => mqtt.sent.length >= 1500);
    await turn();
    // 500 in flight: the refill reads up to the bound again, not beyond it.
    expect(mqtt.sent.slice(1000).map((s) => s.seq)).toEqual(range(1001, 500));

    // A second refill, once 500 are left in flight again.
    mqtt.sent.slice(500, 1000).forEach((s) => s.puback());
    await eventually('the rest of the backlog sent', () => mqtt.sent.length === 1600);
    expect(mqtt.sent.slice(1500).map((s) => s.seq)).toEqual(range(1501, 100));
    mqtt.sent.slice(1000).forEach((s) => s.puback());
    await eventually('every PUBACK', () => services.stats.published === 1600);
    await publisher.stop();
    expect(store.outboxDepth()).toBe(0);
  });

  it('a failed publish while the bound was reached is read again once the in-flight count drops', async () => {
    const { store, mqtt, publisher, services } = rig();
    commitFor(store, range(1, 1001));
    await publisher.start();
    expect(mqtt.sent).toHaveLength(1000);
    // The client gives up the first one: the outbox is read again after it, from its seq.
    mqtt.sent[0]!.fail(new Error('connection closed'));
    mqtt.sent.slice(1, 500).forEach((s) => s.puback());
    await eventually('the failed one and the one left behind sent', () => mqtt.sent.slice(1000).some((s) => s.seq === 1));
    // Every row ends published once each copy sent is acknowledged.
    const answered = new Set<Sent>([mqtt.sent[0]!, ...mqtt.sent.slice(1, 500)]);
    await eventually('the outbox empty', () => {
      for (const s of mqtt.sent) {
        if (answered.has(s)) continue;
        answered.add(s);
        s.puback();
      }
      void publisher.flushAcked();
      return store.outboxDepth() === 0 && services.stats.published >= 1001;
    });
    await publisher.stop();
  });

  it('sends nothing while the broker is not connected, and drains when it connects', async () => {
    const { store, mqtt, bus, publisher } = rig();
    mqtt.connected = false;
    commitFor(store, [1, 2]);
    await publisher.start();
    bus.emit('recordsStored', { deviceId: 'meter-a', records: [] });
    expect(mqtt.sent).toEqual([]);
    mqtt.connected = true;
    bus.emit('mqttConnected', undefined as never);
    expect(mqtt.sent.map((s) => s.seq)).toEqual([1, 2]);
    mqtt.sent.forEach((s) => s.puback());
    await publisher.stop();
  });

  it('after stop, a commit announced on the bus is not published', async () => {
    const { store, mqtt, bus, publisher } = rig();
    await publisher.start();
    await publisher.stop();
    commitFor(store, [1]);
    bus.emit('recordsStored', { deviceId: 'meter-a', records: [] });
    bus.emit('mqttConnected', undefined as never);
    expect(mqtt.sent).toEqual([]);
    expect(store.outboxDepth()).toBe(1);
  });

  it('an outbox read that fails is counted, and the outbox is read again a second later', async () => {
    const r = rig();
    const { store, mqtt, publisher, services } = r;
    commitFor(store, [1]);
    const real = store.pendingOutboxJson.bind(store);
    let failures = 1;
    store.pendingOutboxJson = (afterSeq: number, limit: number) => {
      if (failures-- > 0) throw new Error('database is locked');
      return real(afterSeq, limit);
    };
    const { errors } = r;
    await publisher.start();
    expect(services.stats.errors).toBe(1);
    expect(errors).toEqual(['{"err":"database is locked"} could not read the outbox; will retry']);
    expect(mqtt.sent).toEqual([]);
    await eventually('the retry sent the record', () => mqtt.sent.length === 1, 5000);
    mqtt.sent[0]!.puback();
    await publisher.stop();
    expect(store.outboxDepth()).toBe(0);
  });

  it('PUBACK marks are written on their own shortly after, without a flush being asked for', async () => {
    const { store, mqtt, publisher } = rig();
    commitFor(store, [1, 2]);
    await publisher.start();
    mqtt.sent.forEach((s) => s.puback());
    await eventually('the marks written by the timed flush', () => store.outboxDepth() === 0, 5000);
    await publisher.stop();
  });

  it('stop waits for PUBACKs still on their way and writes their marks', async () => {
    const { store, mqtt, publisher, marked } = rig();
    commitFor(store, [1, 2]);
    await publisher.start();
    const stopping = publisher.stop();
    await turn();
    mqtt.sent.forEach((s) => s.puback());
    await stopping;
    expect(store.outboxDepth()).toBe(0);
    expect(marked).toEqual([[1, 2]]);
  });

  it('stop gives up waiting for a PUBACK that does not come after its grace; the row stays unpublished', async () => {
    const { store, mqtt, publisher } = rig();
    commitFor(store, [1]);
    await publisher.start();
    expect(mqtt.sent).toHaveLength(1);
    const started = Date.now();
    await publisher.stop();
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
    expect(store.outboxDepth()).toBe(1);
  });

  it('publishes the client gives up while stopping are not sent again by this publisher', async () => {
    const { store, mqtt, publisher, warnings } = rig();
    commitFor(store, [1, 2]);
    await publisher.start();
    const stopping = publisher.stop();
    await turn();
    mqtt.sent.forEach((s) => s.fail(new Error('client stopped')));
    await stopping;
    await turn();
    await turn();
    expect(mqtt.sent.map((s) => s.seq)).toEqual([1, 2]);
    expect(warnings).toEqual(['{"seq":1,"err":"client stopped"} record publish failed; will retry', '{"seq":2,"err":"client stopped"} record publish failed; will retry']);
    expect(store.outboxDepth()).toBe(2);
  });

  it('marks that cannot be written leave the rows to be sent again, with a warning, not a failure', async () => {
    const { store, mqtt, publisher, warnings, marks } = rig();
    commitFor(store, [1]);
    await publisher.start();
    marks.fail = true;
    mqtt.sent[0]!.puback();
    await eventually('the PUBACK', () => mqtt.sent.length === 1 && warnings.length === 0);
    await turn();
    await expect(publisher.flushAcked()).resolves.toBeUndefined();
    expect(warnings).toEqual(['{"err":"disk full"} could not mark records published; they will be sent again']);
    expect(store.outboxDepth()).toBe(1);
    // Nothing is left to write: a second flush does not write (or warn) again.
    await publisher.flushAcked();
    expect(warnings).toHaveLength(1);
    await publisher.stop();
  });
  it('a stored row no record kind has is logged with its seq and schema (and no more of it)', async () => {
    const { store, mqtt, publisher, errors } = rig();
    commitFor(store, [1]);
    const db = (store as unknown as { db: import('better-sqlite3').Database }).db;
    const capture = db.prepare(`SELECT id FROM captures`).pluck().get() as string;
    db.prepare(`INSERT INTO records (seq, id, device_id, schema, category, capture_id, json, received_at) VALUES (2, 'x', 'meter-a', 'poct.future/9', 'x', ?, '{"seq":2}', 'now')`).run(capture);
    db.prepare(`INSERT INTO outbox (seq, device_id) VALUES (2, 'meter-a')`).run();
    await publisher.start();
    expect(errors).toEqual(['{"seq":2,"schema":"poct.future/9"} stored record has a schema no record kind has; not published']);
    mqtt.sent.forEach((s) => s.puback());
    await publisher.stop();
  });
  it('the timed flush runs again for PUBACKs after the first flush', async () => {
    const { store, mqtt, publisher } = rig();
    commitFor(store, [1, 2]);
    await publisher.start();
    mqtt.sent[0]!.puback();
    await eventually('the first timed flush', () => store.outboxDepth() === 1, 5000);
    mqtt.sent[1]!.puback();
    await eventually('the second timed flush', () => store.outboxDepth() === 0, 5000);
    await publisher.stop();
  });

  it('after stop, a late PUBACK waits for the final flush the controller asks for, with no timer of its own', async () => {
    const { store, mqtt, publisher, marked } = rig();
    commitFor(store, [1]);
    await publisher.start();
    // The connection is gone: stop does not wait for the PUBACK.
    mqtt.connected = false;
    await publisher.stop();
    mqtt.sent[0]!.puback();
    // A timer set after the PUBACK's, longer than the flush delay: any timed flush would have run before it.
    await new Promise((r) => setTimeout(r, 400));
    expect(marked).toEqual([]);
    await publisher.flushAcked();
    expect(marked).toEqual([[1]]);
    expect(store.outboxDepth()).toBe(0);
  });

  it('the retry of a failed outbox read does not publish once the publisher stopped', async () => {
    const { store, mqtt, publisher } = rig();
    commitFor(store, [1]);
    let reads = 0;
    store.pendingOutboxJson = () => {
      reads++;
      throw new Error('database is locked');
    };
    await publisher.start();
    expect(reads).toBe(1);
    await publisher.stop();
    // Set after the publisher's one-second retry timer, with the same delay: it fires after it.
    await new Promise((r) => setTimeout(r, 1000));
    expect(reads).toBe(1);
    expect(mqtt.sent).toEqual([]);
  });
});
