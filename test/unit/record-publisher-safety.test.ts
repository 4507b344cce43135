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
import { parseConfig } from '../../src/config/load.ts';
import { EventBus } from '../../src/event-bus.ts';
import { Stats, type Services } from '../../src/extensions/extension.ts';
import { RecordPublisher } from '../../src/extensions/record-publisher.ts';
import { Topics } from '../../src/mqtt/topics.ts';
import { Store } from '../../src/store/store.ts';
import { tempDir } from '../helpers/daemon.ts';
import { eventually } from '../helpers/eventually.ts';
import { glucoseDraft } from '../helpers/records.ts';

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
  marks: { fail: boolean };
}

function rig(): Rig {
  const store = new Store(join(tempDir('poctd-publisher-safety-'), 'poctd.db'));
  opened.push(store);
  const mqtt = new ControlledMqtt();
  const bus = new EventBus();
  const warnings: string[] = [];
  const marks = { fail: false };
  const log = pino({ level: 'silent' });
  log.warn = ((obj: unknown, msg?: string) => {
    warnings.push(`${JSON.stringify(obj)} ${msg}`);
  }) as typeof log.warn;
  const services = {
    config: parseConfig('', { env: {} }),
    bus,
    store,
    writer: {
      markPublishedMany: async (seqs: number[], at: Date) => {
        if (marks.fail) throw new Error('disk full');
        store.markPublishedMany(seqs, at);
      },
    },
    mqtt,
    topics: new Topics('poct'),
    log,
    drivers: [],
    stats: new Stats(),
    now: () => new Date(),
  } as unknown as Services;
  return { store, mqtt, bus, publisher: new RecordPublisher(services), services, warnings, marks };
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
  it('a backlog beyond the in-flight bound: 1000 at once, the rest once no more than 500 wait for PUBACK', async () => {
    const { store, mqtt, publisher, services } = rig();
    commitFor(store, range(1, 1200));
    await publisher.start();
    expect(mqtt.sent).toHaveLength(1000);
    expect(mqtt.sent.map((s) => s.seq)).toEqual(range(1, 1000));

    mqtt.sent.slice(0, 499).forEach((s) => s.puback());
    await eventually('499 PUBACKs', () => services.stats.published === 499);
    await turn();
    // 501 still in flight: above the refill mark, nothing more is read.
    expect(mqtt.sent).toHaveLength(1000);

    mqtt.sent[499]!.puback();
    await eventually('the rest of the backlog sent', () => mqtt.sent.length === 1200);
    expect(mqtt.sent.slice(1000).map((s) => s.seq)).toEqual(range(1001, 200));
    mqtt.sent.slice(500).forEach((s) => s.puback());
    await eventually('every PUBACK', () => services.stats.published === 1200);
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
      for (const s of mqtt.sent) if (!answered.has(s)) answered.add(s), s.puback();
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
    bus.emit('resultsStored', { deviceId: 'meter-a', records: [] });
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
    bus.emit('resultsStored', { deviceId: 'meter-a', records: [] });
    bus.emit('mqttConnected', undefined as never);
    expect(mqtt.sent).toEqual([]);
    expect(store.outboxDepth()).toBe(1);
  });

  it('an outbox read that fails is counted, and the outbox is read again a second later', async () => {
    const { store, mqtt, publisher, services } = rig();
    commitFor(store, [1]);
    const real = store.pendingOutboxJson.bind(store);
    let failures = 1;
    store.pendingOutboxJson = (afterSeq: number, limit: number) => {
      if (failures-- > 0) throw new Error('database is locked');
      return real(afterSeq, limit);
    };
    await publisher.start();
    expect(services.stats.errors).toBe(1);
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
    const { store, mqtt, publisher } = rig();
    commitFor(store, [1, 2]);
    await publisher.start();
    const stopping = publisher.stop();
    await turn();
    mqtt.sent.forEach((s) => s.puback());
    await stopping;
    expect(store.outboxDepth()).toBe(0);
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
});
