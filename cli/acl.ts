import { parseArgs } from 'node:util';
import { drivers } from '../drivers/index.ts';
import { listenerIdentitiesOf, loadConfigFile } from '../src/config/load.ts';
import { mosquittoAcl } from '../src/mqtt/access.ts';
import { UsageError } from './command-line.ts';
import type { CommandIo } from './user.ts';

/**
 * `poctd acl --mosquitto --config FILE`: the Mosquitto ACL file for the config's users, the
 * daemon's account being `mqtt.username` (the one it logs in to the external broker with).
 */
export function aclCommand(args: string[], io: Pick<CommandIo, 'stdout' | 'stderr'> = process): number {
  const { values } = parseArgs({ args, options: { mosquitto: { type: 'boolean' }, config: { type: 'string', short: 'c' } } });
  if (!values.mosquitto) throw new UsageError('acl: say which broker the file is for: --mosquitto');
  if (!values.config) throw new UsageError('acl --mosquitto needs --config FILE (its users and mqtt.username)');
  const config = loadConfigFile(values.config, { knownDrivers: drivers.map((d) => d.id), listenerIdentities: listenerIdentitiesOf(drivers) });
  const daemon = config.mqtt.username;
  if (!daemon) {
    io.stderr.write(`poctd acl: ${values.config}: mqtt.username is not set; the daemon needs its own account on the broker\n`);
    return 1;
  }
  const clash = (config.access?.users ?? []).find((u) => u.name === daemon);
  if (clash) {
    io.stderr.write(`poctd acl: ${values.config}: access.users has "${daemon}", the daemon's own account (mqtt.username)\n`);
    return 1;
  }
  io.stdout.write(mosquittoAcl(config.mqtt.base_topic, daemon, config.access?.users ?? []));
  return 0;
}
