import pino from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import { Stats, type Services } from '../../src/extensions/extension.ts';
import { Topics } from '../../src/mqtt/topics.ts';

/**
 * The `Services` an extension's unit test hands it: the default config, base topic `poct`, a
 * silent logger, no drivers, fresh stats and the real clock, with what the test gives (its bus,
 * store, MQTT stand-in, writer, logger…) on top. Only what the test passes is typed loosely: an
 * extension reads nothing else.
 */
export function unitServices(parts: Partial<Record<keyof Services, unknown>>): Services {
  return {
    config: parseConfig('', { env: {} }),
    topics: new Topics('poct'),
    log: pino({ level: 'silent' }),
    drivers: [],
    stats: new Stats(),
    now: () => new Date(),
    ...parts,
  } as unknown as Services;
}
