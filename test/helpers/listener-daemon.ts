import type { Controller } from '../../src/controller.ts';
import { brokerWithSubscriber } from './broker.ts';
import type { Cleanups } from './cleanups.ts';
import { startDaemon, testConfig } from './daemon.ts';
import { freePort } from './mosquitto.ts';
import type { Subscriber } from './subscriber.ts';

/**
 * The daemon of a listener test: a Mosquitto for it and a subscriber on `poct/#`, a free loopback
 * port for the devices to dial, and the daemon on the real store with `devices(port)` as the YAML
 * list under `devices:` (and `settings`, more top-level YAML, above it), stopped after the test.
 */
export async function listenerDaemon(
  cleanups: Cleanups,
  devices: (port: number) => string,
  settings = '',
): Promise<{ sub: Subscriber; port: number; controller: Controller }> {
  const { broker, sub } = await brokerWithSubscriber(cleanups);
  const port = await freePort();
  const { controller } = await startDaemon(testConfig(`site: clinic-a\nmqtt: { url: ${broker.url} }\n${settings ? `${settings}\n` : ''}devices:\n${devices(port)}\n`));
  cleanups.push(() => controller.stop());
  return { sub, port, controller };
}
