import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EventBus } from '../../src/event-bus.ts';
import { Bridge } from '../../src/extensions/bridge.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import { Store } from '../../src/store/store.ts';
import { tempDir } from '../helpers/daemon.ts';
import { eventually } from '../helpers/eventually.ts';
import { unitServices } from '../helpers/unit-services.ts';

/** What the bridge published, as the broker would deliver it to a client. */
interface Published {
  topic: string;
  payload: Record<string, unknown>;
}

const stops: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

async function bridgeRig(): Promise<{ bus: EventBus; published: Published[] }> {
  const store = new Store(join(tempDir('poctd-bridge-'), 'poctd.db'));
  stops.push(() => store.close());
  const published: Published[] = [];
  const bus = new EventBus();
  const services = unitServices({
    bus,
    store,
    mqtt: {
      connected: false,
      reconnects: 0,
      publish: async (topic: string, payload: unknown) => {
        // Through JSON, as on the wire: what cannot be carried there shows here.
        published.push({ topic, payload: JSON.parse(typeof payload === 'string' ? payload : JSON.stringify(payload)) });
      },
    },
  });
  const bridge = new Bridge(services);
  await bridge.start();
  stops.push(() => bridge.stop());
  return { bus, published };
}

async function ask(rig: { bus: EventBus; published: Published[] }, verb: string, request: unknown): Promise<Record<string, unknown>> {
  const before = rig.published.length;
  rig.bus.emit('mqttMessage', { topic: `poct/bridge/request/${verb}`, payload: Buffer.from(JSON.stringify(request)) });
  await eventually(`the ${verb} response`, () => rig.published.slice(before).some((p) => p.topic === `poct/bridge/response/${verb}`));
  return rig.published.slice(before).find((p) => p.topic === `poct/bridge/response/${verb}`)!.payload;
}

describe('Bridge requests: the transaction', () => {
  it('echoes a string or a finite number', async () => {
    const rig = await bridgeRig();
    for (const transaction of ['t-1', 42]) {
      const response = await ask(rig, 'republish', { transaction });
      expect(response).toEqual({ status: 'ok', data: { republished: true }, error: null, transaction });
      expect(schemaProblems('poct.response/1', response)).toEqual([]);
    }
  });

  it('refuses one that is not a string of at most 200 characters or a finite number, naming the field, and the answer stays a poct.response/1', async () => {
    const rig = await bridgeRig();
    const cases: Array<{ transaction: unknown; error: RegExp; echoed?: unknown }> = [
      { transaction: { id: 1 }, error: /^transaction: must be a string or a number$/ },
      { transaction: [1, 2], error: /^transaction: must be a string or a number$/ },
      { transaction: true, error: /^transaction: must be a string or a number$/ },
      { transaction: null, error: /^transaction: must be a string or a number$/ },
      { transaction: 'x'.repeat(201), error: /^transaction: at most 200 characters$/, echoed: 'x'.repeat(201) },
    ];
    for (const { transaction, error, echoed } of cases) {
      const response = await ask(rig, 'republish', { transaction });
      expect(response.status).toBe('error');
      expect(response.data).toBeNull();
      expect(response.error).toMatch(error);
      expect(response.transaction).toEqual(echoed);
      expect(schemaProblems('poct.response/1', response)).toEqual([]);
    }
    // Refused, the request did not run: a republish asked for with a bad transaction is not made.
    expect(rig.published.filter((p) => p.topic === 'poct/bridge/state')).toEqual([]);
  });
});
