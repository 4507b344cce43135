#!/usr/bin/env node
// The composition root: the only code that imports both the core (src/) and the driver registry
// (drivers/). Each command's modules load only when it runs, so `poctd --help` or `poctd drivers`
// start without SQLite, MQTT or the broker; commander itself is loaded behind import() too, so the
// only module this file names up front is the plain-data command-line.ts.
import { SimulateError, UsageError, usageLine, type CommandSpec } from './command-line.ts';

type Commander = typeof import('commander');
type CommanderCommand = import('commander').Command;

const OPTION = { flags: '--option <key=value>', description: "a device option as its config's `options` has it (repeatable)", repeatable: true };
const CONFIG = { flags: '-c, --config <file>', description: 'the config file (YAML)' };
/** Where `results` and `export` find the database: the daemon's config, or the file itself. */
const STORE = [
  { flags: '-c, --config <file>', description: "the daemon's config (its store.path)" },
  { flags: '--store <db>', description: 'the database file itself' },
];

/** Every `poctd` command, in the order `poctd --help` lists them. A new command is one entry. */
export const COMMANDS: CommandSpec[] = [
  {
    name: 'run',
    summary: 'run the daemon (embedded defaults without --config)',
    options: [CONFIG],
    details: 'SIGTERM/SIGINT stop it cleanly (devices and bridge/state offline, the database closed).',
    run: async ({ options }) => (await import('./run.ts')).run(options),
  },
  {
    name: 'replay',
    summary: 'decode a capture or transcript; records as JSON lines, as the daemon would publish them',
    arguments: ['[file]'],
    options: [
      { flags: '-d, --driver <id>', description: 'the driver that decodes it (see `poctd drivers`)' },
      { flags: '-c, --config <file>', description: "site, privacy and, with --device-id, the device's driver, zone and options" },
      { flags: '--device-id <id>', description: 'the device id records carry (a configured device with --config)' },
      { flags: '--timezone <tz>', description: "IANA zone of the device's clock" },
      { flags: '--site <site>', description: 'the site records carry' },
      OPTION,
    ],
    details: 'FILE is a capture (device bytes) or a transcript (`H <hex>` / `D <hex>` lines); - reads standard input.',
    run: async ({ args, options }) => (await import('./replay.ts')).replay(args[0], options),
  },
  {
    name: 'check-config',
    summary: 'validate a config file and list every problem',
    arguments: ['[file]'],
    options: [CONFIG],
    details: 'The file by --config FILE (as `run` takes it) or as the argument.',
    run: async ({ args, options }) => (await import('./check-config.ts')).checkConfig(args[0], options),
  },
  {
    name: 'results',
    summary: 'print stored results from the database (no broker needed): table, JSON lines, CSV or FHIR R4',
    options: [
      ...STORE,
      { flags: '--device <id>', description: 'only this device (repeatable)', repeatable: true },
      { flags: '--category <c>', description: 'patient, control, qc, calibration or proficiency (repeatable)', repeatable: true },
      { flags: '--since <time>', description: 'observed at or after: 2026-12-01, 2026-12-01T08:00, or an age (30m, 24h, 7d)' },
      { flags: '--until <time>', description: 'observed before (same forms)' },
      { flags: '--seq <range>', description: 'seq N, N-M, N- or -M' },
      { flags: '--loinc <code>', description: 'records with an observation of this LOINC code (repeatable)', repeatable: true },
      { flags: '--limit <n>', description: 'the first N records' },
      { flags: '--last <n>', description: 'the newest N records' },
      { flags: '-f, --format <format>', description: 'table, jsonl, csv or fhir (a Bundle of Observations, patient results only)', default: 'table' },
    ],
    details:
      'Reads the database read-only: safe beside a running daemon. Without --config or --store, ./data/poctd.db.\n' +
      'Patient ids are shown as stored (hashed or omitted by the privacy policy).',
    run: async ({ options }) => (await import('./results.ts')).results(options),
  },
  {
    name: 'export',
    summary: 'write a stored capture (the bytes a record came from) to a file for `poctd replay`',
    arguments: ['[sha256]'],
    options: [
      ...STORE,
      { flags: '--seq <n>', description: 'the capture of the record with this seq' },
      { flags: '-o, --output <file>', description: 'where to write it (default: standard output)' },
    ],
    details: 'SHA256 is the capture\'s `raw.sha256` (8 or more leading hex digits will do).',
    run: async ({ args, options }) => (await import('./results.ts')).exportCapture(args[0], options),
  },
  {
    name: 'ports',
    summary: 'list serial and HID devices and the drivers that match',
    run: async () => {
      const [{ formatPortListing, listPorts }, { drivers }] = await Promise.all([
        import('../src/transports/discovery.ts'),
        import('../drivers/index.ts'),
      ]);
      process.stdout.write(formatPortListing(await listPorts({ drivers })) + '\n');
      return 0;
    },
  },
  {
    name: 'simulate',
    summary: 'run a device simulator',
    arguments: ['[id]'],
    options: [
      { flags: '--tcp <port>', description: 'listen on this TCP port for the daemon to connect' },
      { flags: '--bind <address>', description: 'the address --tcp listens on', default: '127.0.0.1' },
      { flags: '--connect <host:port>', description: 'dial out to the daemon (a device on a `tcp-server` transport)' },
      { flags: '--serial <path>', description: 'sit on a serial port or pty' },
      { flags: '--stdio', description: 'speak over standard input and output (under socat EXEC:)' },
      OPTION,
      { flags: '-h, --help', description: "this help; with an ID, the simulator's options too" },
    ],
    run: async ({ args, options }) => (await import('./simulate.ts')).runSimulator(args[0], options),
  },
  {
    name: 'label',
    summary: "make a print request's label offline (PNG preview, ZPL)",
    ownArgv: true,
    usage: '--data FILE.json [--template NAME] [--png FILE] [--zpl FILE|-] [--config FILE --device-id ID]',
    run: async ({ argv }) => (await import('./label.ts')).label(argv),
  },
  {
    name: 'user',
    summary: 'print an access.users entry (user add NAME --role ROLE …; the password read from stdin)',
    ownArgv: true,
    usage: 'add NAME --role ROLE [--role ROLE …]   (the password is read from stdin)',
    run: async ({ argv }) => (await import('./user.ts')).userCommand(argv),
  },
  {
    name: 'acl',
    summary: "print the Mosquitto ACL file for the config's users",
    ownArgv: true,
    usage: '--mosquitto --config FILE',
    run: async ({ argv }) => (await import('./acl.ts')).aclCommand(argv),
  },
  {
    name: 'audit',
    summary: 'print the audit trail: who asked which device or the bridge what, and the outcome',
    ownArgv: true,
    usage: '[--config FILE] [--since DATE] [--json]',
    run: async ({ argv }) => (await import('./audit.ts')).auditCommand(argv),
  },
  {
    name: 'drivers',
    summary: 'list the known drivers',
    run: async () => {
      const { drivers } = await import('../drivers/index.ts');
      for (const d of drivers) process.stdout.write(`${d.id}\t${d.kind}\t${d.vendor} ${d.models.join(', ')}\n`);
      return 0;
    },
  },
];

const EXIT_CODES = '\nexit codes: 0 ok, 1 usage or config error, 2 input not decodable, 3 decoded with problems\n';

/** The program commander parses `argv` with; `setExit` receives the command's exit code. */
function buildProgram(commander: Commander, version: string, setExit: (code: number) => void): CommanderCommand {
  const { Command, Option } = commander;
  const output = (name?: string) => ({
    writeOut: (s: string) => void process.stdout.write(s),
    writeErr: (s: string) => void process.stderr.write(s),
    outputError: (s: string, write: (s: string) => void) => write(usageLine(name, s.trimEnd())),
  });
  const program = new Command('poctd')
    .usage('<command> [options]')
    .description('point-of-care testing middleware daemon')
    .version(version, '-V, --version', 'print the version')
    .helpCommand('help [command]', 'help for a command')
    .configureHelp({ styleTitle: (title) => title.toLowerCase() })
    .configureOutput(output())
    .showSuggestionAfterError(true)
    .exitOverride()
    .addHelpText('after', EXIT_CODES);

  for (const spec of COMMANDS) {
    const command = program.command(spec.name).description(spec.summary).configureOutput(output(spec.name));
    if (spec.ownArgv) {
      // Its own parser reads everything, --help included.
      command.helpOption(false).allowUnknownOption().allowExcessArguments().argument('[args...]');
    } else {
      for (const argument of spec.arguments ?? []) command.argument(argument);
      for (const o of spec.options ?? []) {
        const option = new Option(o.flags, o.description);
        if (o.repeatable) option.argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]);
        if (o.default !== undefined) option.default(o.default);
        command.addOption(option);
      }
      if (spec.options?.some((o) => o.flags.includes('--help'))) command.helpOption(false);
    }
    if (spec.details) command.addHelpText('after', `\n${spec.details}\n`);
    command.action(async (...received: unknown[]) => {
      const self = received.at(-1) as CommanderCommand;
      const args = spec.ownArgv ? self.args : (self.processedArgs as unknown[]).filter((a): a is string => typeof a === 'string');
      if (spec.ownArgv && spec.usage !== undefined && self.args.some((a) => a === '--help' || a === '-h')) {
        process.stdout.write(`usage: poctd ${spec.name} ${spec.usage}\n\n${spec.summary}\n${spec.details ? `\n${spec.details}\n` : ''}`);
        setExit(0);
        return;
      }
      const options = self.opts();
      if (options.help === true) options.helpText = self.helpInformation();
      setExit(await spec.run({ args, options, argv: self.args }));
    });
  }
  return program;
}

let quietOnEpipe = false;

export async function main(argv: string[]): Promise<number> {
  if (!quietOnEpipe) {
    quietOnEpipe = true;
    // `poctd replay … | head`: the reader went away; there is nobody left to tell.
    process.stdout.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(0);
      throw error;
    });
  }
  const [commander, { VERSION }] = await Promise.all([import('commander'), import('../src/version.ts')]);
  let exitCode = 0;
  const program = buildProgram(commander, VERSION, (code) => (exitCode = code));
  // `poctd help CMD` of a command that reads its own argv is its own `--help`.
  if (argv[0] === 'help' && COMMANDS.some((c) => c.ownArgv && c.name === argv[1])) argv = [argv[1]!, '--help', ...argv.slice(2)];
  const commandName = COMMANDS.find((c) => c.name === argv.find((a) => !a.startsWith('-')))?.name;
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof commander.CommanderError) {
      // Help and version are exit 0; `poctd` alone prints the help and exits 1. The message is out.
      return error.exitCode;
    }
    if (error instanceof SimulateError) {
      process.stderr.write(`poctd simulate: ${error.message}\n`);
      return 1;
    }
    if (error instanceof UsageError) {
      process.stderr.write(usageLine(commandName, error.message));
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
