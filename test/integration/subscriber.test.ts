import { describe, expect, it } from 'vitest';
import { makeEvent } from '../../src/extensions/bridge.ts';
import { brokerWithSubscriber } from '../helpers/broker.ts';
import { useCleanups } from '../helpers/cleanups.ts';

const cleanups = useCleanups();

describe('the test subscriber', () => {
  it("events() are the bridge events in arrival order; events(device) only that device's", async () => {
    const { sub } = await brokerWithSubscriber(cleanups);
    const at = new Date('2026-11-20T10:00:00Z');
    const published = [
      makeEvent('download_started', 'meter-a', 'download started (poll)', at, { trigger: 'poll' }),
      makeEvent('mqtt_error', null, 'MQTT: refused', at),
      makeEvent('no_answer', 'meter-b', 'no answer', at),
      makeEvent('download_finished', 'meter-a', 'downloaded', at, { records: 1, inserted: 1, duplicates: 0 }),
    ];
    for (const event of published) await sub.client.publishAsync('poct/bridge/event', JSON.stringify(event), { qos: 1 });
    // Same payload shape on another topic (one the daemon only listens to, so no schema check): not an event.
    await sub.client.publishAsync('poct/device/meter-a/request/elsewhere', JSON.stringify(published[0]), { qos: 1 });

    await sub.waitFor('everything published', () => sub.messages.length === published.length + 1);
    expect(sub.events()).toEqual(published);
    expect(sub.events('meter-a').map((e) => e.type)).toEqual(['download_started', 'download_finished']);
    expect(sub.events('meter-b').map((e) => e.type)).toEqual(['no_answer']);
    expect(sub.events('meter-c')).toEqual([]);
  });

  it('checks every payload against its topic schema: one that breaks it fails the waits and is kept', async () => {
    const { sub } = await brokerWithSubscriber(cleanups);
    const availability = 'poct/device/meter-a/availability';
    await sub.client.publishAsync(availability, JSON.stringify({ state: 'online' }), { qos: 1 });
    await sub.client.publishAsync('poct/bridge/response/results/replay', JSON.stringify({ status: 'ok', data: {}, error: null }), { qos: 1 });
    await sub.waitFor('the two valid payloads', () => sub.messages.length === 2);
    expect(sub.violations).toEqual([]);
    await sub.client.publishAsync(availability, JSON.stringify({ state: 'unplugged' }), { qos: 1 });
    await expect(sub.waitFor('a message that will not come', () => sub.messages.length === 4)).rejects.toThrow(
      /poct\/device\/meter-a\/availability breaks poct\.availability\/1/,
    );
    expect(sub.violations.map((v) => [v.topic, v.schema])).toEqual([[availability, 'poct.availability/1']]);
    // What this test provoked on purpose must not fail it at its end.
    sub.violations.splice(0);
  });

  it('a message under the base on a topic with no schema is a violation, not skipped', async () => {
    const { sub } = await brokerWithSubscriber(cleanups);
    await sub.client.publishAsync('poct/device/meter-a/something-new', JSON.stringify({ hello: 1 }), { qos: 1 });
    await expect(sub.waitFor('a message that will not come', () => sub.messages.length === 2)).rejects.toThrow(
      /poct\/device\/meter-a\/something-new breaks \(none\): a topic with no schema in TOPIC_SCHEMAS/,
    );
    expect(sub.violations.map((v) => [v.topic, v.schema])).toEqual([['poct/device/meter-a/something-new', '(none)']]);
    // What this test provoked on purpose must not fail it at its end.
    sub.violations.splice(0);
  });
});
