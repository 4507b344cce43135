import { parseArgs } from 'node:util';
import { drivers } from '../drivers/index.ts';
import { listenerIdentitiesOf, loadConfigFile, parseConfig } from '../src/config/load.ts';
import type { PoctdConfig } from '../src/config/types.ts';
import { Controller } from '../src/controller.ts';
import { createLogger } from '../src/logger.ts';

/** How long `run` waits for a clean stop after SIGTERM/SIGINT before it exits anyway. */
const STOP_DEADLINE_MS = 10_000;

const knownDrivers = (): string[] => drivers.map((d) => d.id);

export async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } } });
  const config: PoctdConfig = values.config
    ? loadConfigFile(values.config, { knownDrivers: knownDrivers(), listenerIdentities: listenerIdentitiesOf(drivers) })
    : parseConfig('', { knownDrivers: knownDrivers() });
  const log = createLogger(config.log.level);
  let fatal: ((code: number) => void) | undefined;
  const controller = new Controller(config, { log, drivers, onFatal: () => fatal?.(1) });
  const stopped = new Promise<number>((resolve) => {
    fatal = resolve;
    const onSignal = (signal: string): void => {
      log.info({ signal }, 'stopping');
      // A broker that holds the connection open but never answers would keep the goodbye
      // publishes waiting for ever. Exiting without them loses nothing: every record is committed
      // before a device is acknowledged and is published from the outbox on the next start, and
      // the broker publishes the offline Last Will. (A second signal ends the process at once.)
      const deadline = setTimeout(() => {
        log.error({ signal, deadline_s: STOP_DEADLINE_MS / 1000 }, 'stop did not finish in time; exiting anyway');
        resolve(1);
      }, STOP_DEADLINE_MS);
      controller.stop().then(
        () => {
          clearTimeout(deadline);
          resolve(0);
        },
        (error: Error) => {
          clearTimeout(deadline);
          log.error({ err: error.message }, 'stop failed');
          resolve(1);
        },
      );
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
  try {
    await controller.start();
  } catch (error) {
    log.fatal({ err: (error as Error).message }, 'could not start');
    // The log may go to a collector; whoever started the command sees why on the terminal too.
    process.stderr.write(`poctd: could not start: ${(error as Error).message}\n`);
    await controller.stop().catch(() => undefined);
    return 1;
  }
  log.info(
    { broker: controller.brokerUrl, devices: config.devices.length, base_topic: config.mqtt.base_topic },
    `poctd running; watch with: mosquitto_sub -h 127.0.0.1 -t '${config.mqtt.base_topic}/#' -v`,
  );
  return stopped;
}

