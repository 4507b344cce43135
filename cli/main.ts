#!/usr/bin/env node
// The composition root: the only code that imports both the core (src/) and the driver registry
// (drivers/). Each command's modules load only when it runs, so `poctd --help` or `poctd drivers`
// start without SQLite, MQTT or the broker.
import { SimulateError, UsageError } from './command-line.ts';

const USAGE = `usage: poctd <command> [options]

commands:
  run [--config FILE]                     run the daemon (embedded defaults without --config)
  replay --driver ID [--config FILE] [--device-id ID] [--timezone TZ] [--site S] [--option key=value ...] FILE|-
                                          decode a capture or transcript; records as JSON lines,
                                          as the daemon would publish them (site, privacy and the
                                          device's zone and options from --config)
  check-config FILE                       validate a config file and list every problem
  ports                                   list serial and HID devices and the drivers that match
  simulate ID [--tcp PORT | --serial PATH | --stdio] [--option key=value ...]
                                          run a device simulator
  drivers                                 list the known drivers
  user add NAME --role ROLE [--role ...]  print an access.users entry (password read from stdin)
  acl --mosquitto --config FILE           print the Mosquitto ACL file for the config's users
  audit [--config FILE] [--since ISO] [--json]
                                          print the audit trail: who asked which device or the bridge what, and the outcome
  label --data FILE.json [--template NAME] [--png FILE] [--zpl FILE|-] [--config FILE --device-id ID]
                                          make a print request's label offline (PNG preview, ZPL)

exit codes: 0 ok, 1 usage or config error, 2 input not decodable, 3 decoded with problems`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'run':
        return await (await import('./run.ts')).run(rest);
      case 'replay':
        return await (await import('./replay.ts')).replay(rest);
      case 'check-config':
        return (await import('./check-config.ts')).checkConfig(rest);
      case 'ports': {
        const [{ formatPortListing, listPorts }, { drivers }] = await Promise.all([
          import('../src/transports/discovery.ts'),
          import('../drivers/index.ts'),
        ]);
        process.stdout.write(formatPortListing(await listPorts({ drivers })) + '\n');
        return 0;
      }
      case 'user':
        return await (await import('./user.ts')).userCommand(rest);
      case 'acl':
        return (await import('./acl.ts')).aclCommand(rest);
      case 'audit':
        return (await import('./audit.ts')).auditCommand(rest);
      case 'label':
        return await (await import('./label.ts')).label(rest);
      case 'simulate':
        return await (await import('./simulate.ts')).runSimulator(rest);
      case 'drivers': {
        const { drivers } = await import('../drivers/index.ts');
        for (const d of drivers) process.stdout.write(`${d.id}\t${d.kind}\t${d.vendor} ${d.models.join(', ')}\n`);
        return 0;
      }
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE + '\n');
        return command === undefined ? 1 : 0;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (error) {
    if (error instanceof SimulateError) {
      process.stderr.write(`poctd simulate: ${error.message}\n`);
      return 1;
    }
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`poctd: ${(error as Error).message}\n\n${USAGE}\n`);
      return 1;
    }
    // Only a command that loaded the config module can throw a ConfigError, so this import is
    // already in the module cache whenever it matters.
    const [{ ConfigError }, { formatConfigError }] = await Promise.all([
      import('../src/config/load.ts'),
      import('./check-config.ts'),
    ]);
    if (error instanceof ConfigError) {
      process.stderr.write(formatConfigError(error));
      return 1;
    }
    throw error;
  }
}

const invokedDirectly = process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '\0');
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // `run` ends by itself once stopped; other commands must not wait on stray handles.
      setTimeout(() => process.exit(code), 200).unref();
    },
    (error: Error) => {
      process.stderr.write(`poctd: ${error.stack ?? error.message}\n`);
      process.exit(1);
    },
  );
}
