import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EventBus } from '../../src/event-bus.ts';
import type { Services } from '../../src/extensions/extension.ts';
import { RecordPublisher } from '../../src/extensions/record-publisher.ts';
import { Store } from '../../src/store/store.ts';
import { tempDir } from '../helpers/daemon.ts';
import { eventually } from '../helpers/eventually.ts';
import { glucoseDraft } from '../helpers/records.ts';
import { unitServices } from '../helpers/unit-services.ts';

/** One publish the publisher asked for, answered by the test as the broker would (PUBACK or failure). */
interface Sent {
  topic: string;
  seq: number;
  puback(): void;
  fail(error: Error): void;
}

/** A broker connection whose PUBACKs the test hands out one by one. */
class ControlledMqtt {
  connected = true;
  reconnects = 0;
  readonly sent: Sent[] = [];
  publish(topic: string, payload: unknown, options: { qos: number; retain: boolean }): Promise<void> {
    expect(options).toEqual({ qos: 1, retain: false });
    const seq = (JSON.parse(payload as string) as { seq: number }).seq;
    return new Promise((resolve, reject) => this.sent.push({ topic, seq, puback: resolve, fail: reject }));
  }
}

const opened: Store[] = [];
afterEach(() => opened.splice(0).forEach((s) => s.close()));

function rig(): { store: Store; mqtt: ControlledMqtt; bus: EventBus; publisher: RecordPublisher; services: Services } {
  const store = new Store(join(tempDir('poctd-publisher-'), 'poctd.db'));
  opened.push(store);
  const mqtt = new ControlledMqtt();
  const bus = new EventBus();
  const services = unitServices({
    bus,
    store,
    // The marks go to the same database, synchronously: what the writer thread would do.
    writer: { markPublishedMany: async (seqs: number[], at: Date) => store.markPublishedMany(seqs, at) },
    mqtt,
  });
  return { store, mqtt, bus, publisher: new RecordPublisher(services), services };
}

function commitFor(store: Store, deviceId: string, ns: number[]): void {
  store.commit({
    site: 's',
    deviceId,
    driver: 'onetouch-ultra2',
    capture: store.putCaptureSync('raw', Buffer.from(`${deviceId}-${ns.join(',')}`)),
    drafts: { result: ns.map((n) => glucoseDraft(n, { device: { ...glucoseDraft(n).device, id: deviceId, serial: `S-${deviceId}` } })) },
    receivedAt: new Date(),
    timezone: 'UTC',
    privacy: { patient_id: 'hash' },
  });
}

describe('RecordPublisher', () => {
  it("sends each stored record to its kind's topic, in seq order, at QoS 1", async () => {
    const { store, mqtt, publisher } = rig();
    commitFor(store, 'meter-a', [1, 2]);
    commitFor(store, 'meter-b', [3]);
    commitFor(store, 'meter-a', [4]);
    await publisher.start();
    expect(mqtt.sent.map((s) => [s.topic, s.seq])).toEqual([
      ['poct/device/meter-a/result', 1],
      ['poct/device/meter-a/result', 2],
      ['poct/device/meter-b/result', 3],
      ['poct/device/meter-a/result', 4],
    ]);
    mqtt.sent.forEach((s) => s.puback());
    await publisher.stop();
  });

  it('marks a record published only once the broker acknowledged it', async () => {
    const { store, mqtt, publisher, services } = rig();
    commitFor(store, 'meter-a', [1, 2, 3]);
    await publisher.start();
    expect(mqtt.sent).toHaveLength(3);
    await publisher.flushAcked();
    expect(store.outboxDepth()).toBe(3);
    mqtt.sent[1]!.puback();
    await eventually('the PUBACK of seq 2', () => services.stats.published === 1);
    await publisher.flushAcked();
    expect(store.pendingOutbox(0, 10).map((r) => r.seq)).toEqual([1, 3]);
    // A publish the client gave up is sent again on the next drain, the acknowledged one is not.
    mqtt.sent[0]!.fail(new Error('connection closed'));
    mqtt.sent[2]!.fail(new Error('connection closed'));
    // The device's oldest failed record first; the later one waits for its PUBACK (order per device).
    await eventually('the oldest failed publish sent again', () => mqtt.sent.length === 4);
    expect(mqtt.sent[3]!.seq).toBe(1);
    mqtt.sent[3]!.puback();
    await eventually('the other failed publish sent again', () => mqtt.sent.length === 5);
    expect(mqtt.sent[4]!.seq).toBe(3);
    mqtt.sent[4]!.puback();
    await eventually('every PUBACK', () => services.stats.published === 3);
    await publisher.stop();
    expect(store.outboxDepth()).toBe(0);
  });

  it('never guesses a topic for a stored row whose schema no kind has: it stays unpublished, the others go on', async () => {
    const { store, mqtt, publisher, services } = rig();
    commitFor(store, 'meter-a', [1]);
    const db = (store as unknown as { db: import('better-sqlite3').Database }).db;
    const capture = db.prepare(`SELECT id FROM captures`).pluck().get() as string;
    db.prepare(`INSERT INTO records (seq, id, device_id, schema, category, capture_id, json, received_at) VALUES (2, 'x', 'meter-a', 'poct.future/9', 'x', ?, '{"seq":2}', 'now')`).run(capture);
    db.prepare(`INSERT INTO outbox (seq, device_id) VALUES (2, 'meter-a')`).run();
    commitFor(store, 'meter-a', [3]);
    await publisher.start();
    expect(mqtt.sent.map((s) => [s.topic, s.seq])).toEqual([
      ['poct/device/meter-a/result', 1],
      ['poct/device/meter-a/result', 3],
    ]);
    expect(services.stats.errors).toBe(1);
    mqtt.sent.forEach((s) => s.puback());
    await publisher.stop();
    expect(store.pendingOutbox(0, 10).map((r) => r.seq)).toEqual([2]);
  });

  it('drains what a commit stored while it runs, when told so on the bus', async () => {
    const { store, mqtt, bus, publisher } = rig();
    await publisher.start();
    expect(mqtt.sent).toEqual([]);
    commitFor(store, 'meter-a', [1]);
    bus.emit('recordsStored', { deviceId: 'meter-a', records: [] });
    expect(mqtt.sent.map((s) => s.seq)).toEqual([1]);
    mqtt.sent[0]!.puback();
    await publisher.stop();
  });

  it("keeps each device's records in seq order across a failed publish: its later rows wait until the failed one is acknowledged", async () => {
    const { store, mqtt, bus, publisher, services } = rig();
    commitFor(store, 'meter-a', [1, 2, 3]);
    commitFor(store, 'meter-b', [4]);
    commitFor(store, 'meter-a', [5]);
    await publisher.start();
    expect(mqtt.sent.map((s) => s.seq)).toEqual([1, 2, 3, 4, 5]);
    const first = mqtt.sent.splice(0);
    // seq 1 fails; seq 2, published after it and still on its way, reaches the broker first.
    first[0]!.fail(new Error('packet refused'));
    first[1]!.puback();
    first[3]!.puback();
    await eventually('seq 1 sent again', () => mqtt.sent.some((s) => s.seq === 1));
    first[2]!.puback();
    first[4]!.fail(new Error('packet refused'));
    // Once the publisher has seen those answers (setImmediate runs after their handlers), a drain
    // sends nothing of meter-a beyond the failed seq while that one waits for its PUBACK.
    await new Promise((resolve) => setImmediate(resolve));
    bus.emit('recordsStored', { deviceId: 'meter-a', records: [] });
    // Only meter-b's PUBACK counts: meter-a's later ones reached the broker ahead of seq 1.
    expect(services.stats.published).toBe(1);
    expect(mqtt.sent.map((s) => [s.topic, s.seq])).toEqual([['poct/device/meter-a/result', 1]]);
    mqtt.sent.splice(0)[0]!.puback();
    // Then the rest of meter-a, in order; what reached the broker ahead of seq 1 is sent again after it.
    await eventually("meter-a's later rows", () => mqtt.sent.length === 3);
    expect(mqtt.sent.map((s) => [s.topic, s.seq])).toEqual([
      ['poct/device/meter-a/result', 2],
      ['poct/device/meter-a/result', 3],
      ['poct/device/meter-a/result', 5],
    ]);
    mqtt.sent.forEach((s) => s.puback());
    await publisher.stop();
    expect(store.outboxDepth()).toBe(0);
  });
});
