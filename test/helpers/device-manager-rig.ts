import { join } from 'node:path';
import pino from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import type { DeviceConfig } from '../../src/config/types.ts';
import type { DriverDefinition } from '../../src/driver-sdk/index.ts';
import { EventBus } from '../../src/event-bus.ts';
import { DeviceManager } from '../../src/extensions/device-manager.ts';
import { Stats, type Services } from '../../src/extensions/extension.ts';
import type { MqttConnection } from '../../src/mqtt/connection.ts';
import { topicSchema, Topics } from '../../src/mqtt/topics.ts';
import type { DeviceState } from '../../src/records/device-state.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import type { BridgeEvent } from '../../src/records/types.ts';
import { Store } from '../../src/store/store.ts';
import { StoreWriter } from '../../src/store/writer.ts';
import { pushStrict, type Cleanups } from './cleanups.ts';
import { tempDir } from './daemon.ts';
import { eventually } from './eventually.ts';

const BASE = 'poct/';

export interface Published {
  topic: string;
  payload: unknown;
  retain: boolean;
}

/** An MQTT connection that is always up and keeps what was published, for the extensions' unit tests. */
export class RecordingMqtt {
  readonly connected = true;
  readonly published: Published[] = [];

  async publish(topic: string, payload: unknown, options: { retain: boolean }): Promise<void> {
    // As it goes over the wire: a copy, so later changes to the sender's object do not show here.
    this.published.push({ topic, payload: JSON.parse(JSON.stringify(payload)) as unknown, retain: options.retain });
  }

  on(topic: string): unknown[] {
    return this.published.filter((p) => p.topic === topic).map((p) => p.payload);
  }
}

export interface DeviceManagerRig {
  manager: DeviceManager;
  services: Services;
  mqtt: RecordingMqtt;
  store: Store;
  writer: StoreWriter;
  events: BridgeEvent[];
  /** The database file, to start a second manager on it (a restart). */
  dbPath: string;
  /** Every device state published so far for `id`. */
  states(id: string): DeviceState[];
  /** Sends a request as the broker would deliver it. */
  request(deviceId: string, verb: string, payload: unknown): void;
  /** Waits for the `n`th response (1-based) on a device's verb topic and returns it. */
  response(deviceId: string, verb: string, n?: number): Promise<Record<string, unknown>>;
  /** Stops the manager and closes the store (the daemon's stop); later calls wait for the first. */
  stop(): Promise<void>;
}

interface RigSetup {
  devices: DeviceConfig[];
  drivers: readonly DriverDefinition[];
  cleanups: Cleanups;
  /** An existing database (a restart); a fresh one in a temporary directory by default. */
  dbPath?: string;
  /** The daemon's logger (default: silent), for a test that counts log lines. */
  log?: Services['log'];
}

/** What is wrong with one publish: a topic outside the API, one the daemon only listens to, or a payload its schema refuses. */
function publishedProblems(p: Published): string[] {
  if (!p.topic.startsWith(BASE)) return [`not under the base topic ${BASE}`];
  const topic = topicSchema(p.topic.slice(BASE.length));
  if (!topic) return ['a topic with no schema in TOPIC_SCHEMAS'];
  if (topic.schema === null) return [`the daemon only listens on ${topic.pattern}`];
  return schemaProblems(topic.schema, p.payload).map((problem) => `${topic.schema} ${problem}`);
}

/**
 * A DeviceManager over the real store (main-thread reader, writer thread) with an MQTT stand-in
 * that records publishes. Every payload it publishes is checked against its topic's schema
 * (`topicSchema`) when the rig stops: a payload its schema refuses, or a topic with no schema,
 * fails the test.
 */
export async function deviceManagerRig(setup: RigSetup): Promise<DeviceManagerRig> {
  const dbPath = setup.dbPath ?? join(tempDir('poctd-dm-'), 'poctd.db');
  const config = parseConfig(`store: { path: ${dbPath} }\nsite: test-site\ntimezone: Europe/Copenhagen\n`);
  config.devices = setup.devices;
  const store = new Store(dbPath);
  const writer = await StoreWriter.open(dbPath);
  const mqtt = new RecordingMqtt();
  const bus = new EventBus();
  const events: BridgeEvent[] = [];
  bus.on('bridgeEvent', (e) => events.push(e));
  const services: Services = {
    config,
    bus,
    store,
    writer,
    mqtt: mqtt as unknown as MqttConnection,
    topics: new Topics(BASE.slice(0, -1)),
    log: setup.log ?? pino({ level: 'silent' }),
    drivers: setup.drivers,
    stats: new Stats(),
    now: () => new Date(),
  };
  const manager = new DeviceManager(services);
  let stopped: Promise<void> | undefined;
  const states = (id: string): DeviceState[] => mqtt.on(`poct/device/${id}`) as DeviceState[];
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      try {
        await manager.stop();
      } finally {
        await writer.close();
        store.close();
      }
      const problems = mqtt.published.flatMap((p) => publishedProblems(p).map((problem) => `${p.topic}: ${problem} in ${JSON.stringify(p.payload)}`));
      if (problems.length > 0) throw new Error(`payloads refused by their topic's schema:\n${problems.join('\n')}`);
    })());
  pushStrict(setup.cleanups, stop);
  await manager.start();
  return {
    manager,
    services,
    mqtt,
    store,
    writer,
    events,
    dbPath,
    states,
    request: (deviceId, verb, payload) =>
      bus.emit('mqttMessage', {
        topic: `poct/device/${deviceId}/request/${verb}`,
        payload: Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload)),
      }),
    response: async (deviceId, verb, n = 1) => {
      const topic = `poct/device/${deviceId}/response/${verb}`;
      await eventually(`response ${n} on ${topic}`, () => mqtt.on(topic).length >= n);
      return mqtt.on(topic)[n - 1] as Record<string, unknown>;
    },
    stop,
  };
}
