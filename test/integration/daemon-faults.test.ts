import type { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import { Controller } from '../../src/controller.ts';
import { createLogger } from '../../src/logger.ts';
import { brokerWithSubscriber } from '../helpers/broker.ts';
import { startDaemon, testConfig, ULTRA2_MEMORY } from '../helpers/daemon.ts';
import { makeEvent } from '../../src/extensions/bridge.ts';
import type { DeviceState } from '../../src/records/types.ts';
import { Mosquitto } from '../helpers/mosquitto.ts';
import { eventually, Subscriber } from '../helpers/subscriber.ts';
import { useCleanups } from '../helpers/cleanups.ts';

const cleanups = useCleanups();

const meterYaml = (url: string): string => `
mqtt: { url: ${url} }
devices:
  - id: bench1
    driver: onetouch-ultra2
    transport: { type: simulated, simulator: { serial: GMF600DCY, memory: ${JSON.stringify(ULTRA2_MEMORY)} } }
`;

describe('daemon faults', () => {
  it('a retained request is not run (it would run again at every reconnect)', async () => {
    const { broker, sub: publisher } = await brokerWithSubscriber(cleanups, ['poct/device/+/response/#']);
    await publisher.client.publishAsync('poct/device/bench1/request/clock/sync', '{"transaction":"old"}', { qos: 1, retain: true });
    cleanups.push(() => publisher.client.publishAsync('poct/device/bench1/request/clock/sync', '', { qos: 1, retain: true }));

    const { controller, logs } = await startDaemon(testConfig(meterYaml(broker.url)));
    cleanups.push(() => controller.stop());
    await eventually('3 records stored', () => controller.runtime!.store.recordCount() === 3);
    await eventually('the retained request was seen and refused in the log', () => logs.text.includes('ignoring a retained request'));
    // Its sender is told why, with its transaction; nothing ran (no audit row).
    await eventually('the refusal on the response topic', () => publisher.on('poct/device/bench1/response/clock/sync').length === 1);
    expect(publisher.payloads('poct/device/bench1/response/clock/sync')).toEqual([
      { status: 'error', data: null, error: expect.stringContaining('published with the retain flag'), transaction: 'old' },
    ]);
    expect(controller.runtime!.store.auditRows()).toEqual([]);
    // A live request still works.
    const live = await publisher.request('poct/device/bench1/request/status', 'poct/device/bench1/response/status', {});
    expect(live.status).toBe('ok');
  });

  it('refuses an in-memory database: the reader and the writer thread need one file', async () => {
    const config = testConfig('');
    config.store.path = ':memory:';
    const controller = new Controller(config, { log: createLogger('silent'), drivers });
    await expect(controller.start()).rejects.toThrow(/store\.path: .*database file/);
    await controller.stop();
  });

  it('stops and reports a fatal error when the store writer dies', async () => {
    const broker = await Mosquitto.start();
    cleanups.push(() => broker.stop());
    let fatal: Error | undefined;
    const { controller, logs } = await startDaemon(testConfig(meterYaml(broker.url)), { onFatal: (error) => (fatal = error) });
    cleanups.push(() => controller.stop());
    await eventually('3 records stored', () => controller.runtime!.store.recordCount() === 3);
    const worker = (controller.runtime!.writer as unknown as { worker: Worker }).worker;
    await worker.terminate();
    await eventually('onFatal called', () => fatal !== undefined);
    expect(fatal!.message).toMatch(/store writer stopped/);
    expect(logs.lines.some((l) => l.level === 60 && String(l.msg).includes('store writer died'))).toBe(true);
  });

  it('events held while the broker was away go out before any raised after it is back, in the order they were raised', async () => {
    // QoS 0 events are queued for an offline persistent subscriber only with queue_qos0_messages.
    const broker = await Mosquitto.start({ extraConfig: 'allow_anonymous true\nqueue_qos0_messages true\n' });
    cleanups.push(() => broker.stop());
    const sub = await Subscriber.connect(broker.url, ['poct/bridge/event'], { clientId: 'held-events', clean: false });
    cleanups.push(() => sub.close());
    await broker.stop();

    const { controller } = await startDaemon(testConfig(`mqtt: { url: ${broker.url}, reconnect_ms: 200 }\n`));
    cleanups.push(() => controller.stop());
    const raise = (n: string): void => controller.bus.emit('bridgeEvent', makeEvent('device_error', null, `event ${n}`, new Date()));
    for (const n of ['1', '2', '3']) raise(n);
    // Raised in the same turn as the reconnect, while the bridge is still sending its retained state.
    controller.bus.on('mqttConnected', () => raise('4'));
    await broker.restart();
    await sub.waitFor('4 events', () => sub.events().filter((e) => /^event \d$/.test(e.message)).length === 4, 15_000);
    expect(sub.events().map((e) => e.message).filter((m) => /^event \d$/.test(m))).toEqual(['event 1', 'event 2', 'event 3', 'event 4']);
  });

  it('a device its driver refuses from the config alone (a simulated Libre 2) is reported, never started, and refuses requests', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const { controller } = await startDaemon(testConfig(`
mqtt: { url: ${broker.url} }
devices:
  - { id: fs2, driver: freestyle-hid, transport: { type: simulated, simulator: { model: libre2 } } }
`));
    cleanups.push(() => controller.stop());
    await sub.waitFor('unsupported state', () => sub.last<DeviceState>('poct/device/fs2')?.status === 'unsupported');
    expect(sub.last<DeviceState>('poct/device/fs2')).toMatchObject({ model: 'FreeStyle Libre 2', status_detail: expect.stringMatching(/encrypts/) });
    await sub.waitFor('device_error', () => sub.events('fs2').some((e) => e.type === 'device_error' && e.data?.reason === 'unsupported'));
    const response = await sub.request<{ status: string; error: string }>('poct/device/fs2/request/download', 'poct/device/fs2/response/download', {});
    expect(response).toMatchObject({ status: 'error', error: expect.stringMatching(/encrypts/) });
    expect(sub.last<{ state: string }>('poct/device/fs2/availability')).toEqual({ state: 'offline' });
    expect(sub.events('fs2').map((e) => e.type)).not.toContain('download_started');
  });
});
