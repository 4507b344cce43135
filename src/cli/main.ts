#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { drivers, findDriver } from '../../drivers/index.ts';
import { ConfigError, formatProblem, loadConfigFile, parseConfig } from '../config/load.ts';
import type { PoctdConfig } from '../config/types.ts';
import { Controller } from '../controller.ts';
import { captureFromBytes } from '../driver-sdk/capture.ts';
import type { Capture, DecodeResult } from '../driver-sdk/index.ts';
import { createLogger } from '../logger.ts';
import { captureToBytes } from '../driver-sdk/capture.ts';
import { finalize } from '../records/finalize.ts';
import { sha256Hex } from '../records/ids.ts';
import { eachDraft } from '../records/kinds.ts';
import { resolvePrivacy } from '../records/privacy.ts';
import { formatPortListing, listPorts } from '../transports/discovery.ts';
import { assertTimeZone, hostTimeZone } from '../util/time.ts';
import { parseOption, runSimulator, SimulateError } from './simulate.ts';

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

exit codes: 0 ok, 1 usage or config error, 2 input not decodable, 3 decoded with problems`;

class UsageError extends Error {}

/** How long `run` waits for a clean stop after SIGTERM/SIGINT before it exits anyway. */
const STOP_DEADLINE_MS = 10_000;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'run':
        return await run(rest);
      case 'replay':
        return await replay(rest);
      case 'check-config':
        return checkConfig(rest);
      case 'ports':
        process.stdout.write(formatPortListing(await listPorts()) + '\n');
        return 0;
      case 'simulate':
        return await runSimulator(rest);
      case 'drivers':
        for (const d of drivers) process.stdout.write(`${d.id}\t${d.kind}\t${d.vendor} ${d.models.join(', ')}\n`);
        return 0;
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
    if (error instanceof ConfigError) {
      process.stderr.write(formatConfigError(error));
      return 1;
    }
    if (error instanceof SimulateError) {
      process.stderr.write(`poctd simulate: ${error.message}\n`);
      return 1;
    }
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`poctd: ${(error as Error).message}\n\n${USAGE}\n`);
      return 1;
    }
    throw error;
  }
}

const knownDrivers = (): string[] => drivers.map((d) => d.id);

/**
 * One line per problem, compiler style, so an editor or a terminal click jumps to it:
 * `config.yaml:12:7: devices[0].transport.path: required`; then how many there are.
 */
export function formatConfigError(error: ConfigError): string {
  const lines = error.problems.map((p) => {
    const text = formatProblem(p);
    if (error.file === undefined) return p.line !== undefined ? `line ${p.line}:${p.column ?? 1}: ${text}` : text;
    // "file not found: x.yaml" names the file already.
    if (p.line === undefined && text.includes(error.file)) return text;
    const at = p.line !== undefined ? `:${p.line}:${p.column ?? 1}` : '';
    return `${error.file}${at}: ${text}`;
  });
  const n = error.problems.length;
  const where = error.file ?? 'config';
  if (n > 1 || (n === 1 && error.problems[0]!.path !== '')) lines.push(`${where}: ${n} problem${n === 1 ? '' : 's'}`);
  return lines.join('\n') + '\n';
}

function checkConfig(args: string[]): number {
  const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
  const file = positionals[0];
  if (!file) throw new UsageError('check-config needs a FILE');
  const config = loadConfigFile(file, { knownDrivers: knownDrivers() });
  process.stdout.write(`${file}: ok (${config.devices.length} device${config.devices.length === 1 ? '' : 's'})\n`);
  return 0;
}

async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } } });
  const config: PoctdConfig = values.config
    ? loadConfigFile(values.config, { knownDrivers: knownDrivers() })
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

async function replay(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      driver: { type: 'string', short: 'd' },
      config: { type: 'string', short: 'c' },
      timezone: { type: 'string' },
      'device-id': { type: 'string' },
      site: { type: 'string' },
      option: { type: 'string', multiple: true },
    },
  });
  const config = values.config ? loadConfigFile(values.config, { knownDrivers: knownDrivers() }) : undefined;
  const configured = config?.devices.find((d) => d.id === values['device-id']);
  const driverId = values.driver ?? configured?.driver;
  if (!driverId) throw new UsageError('replay needs --driver ID (or --config and the --device-id of a configured device)');
  // The configured device's options first, then what the command line says on top.
  const options: Record<string, unknown> = { ...(configured?.options ?? {}) };
  for (const pair of values.option ?? []) {
    try {
      const [key, value] = parseOption(pair);
      options[key] = value;
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  const driver = findDriver(driverId);
  if (!driver) throw new UsageError(`unknown driver "${driverId}" (known: ${knownDrivers().join(', ')})`);
  const file = positionals[0];
  if (!file) throw new UsageError('replay needs a FILE, or - for standard input');
  let bytes: Buffer;
  try {
    bytes = file === '-' ? readFileSync(0) : readFileSync(file);
  } catch (error) {
    process.stderr.write(`poctd replay: cannot read ${file}: ${(error as Error).message}\n`);
    return 1;
  }
  const timezone = values.timezone ?? configured?.timezone ?? config?.timezone ?? hostTimeZone();
  try {
    assertTimeZone(timezone);
  } catch {
    throw new UsageError(`unknown time zone "${timezone}" (an IANA name such as Europe/Copenhagen)`);
  }
  const source = file === '-' ? 'standard input' : file;
  let capture: Capture;
  try {
    capture = captureFromBytes(bytes);
  } catch (error) {
    // It looked like a transcript (`H <hex>` / `D <hex>` lines) but is not a valid one.
    process.stderr.write(`poctd replay: ${source}: not a valid transcript: ${(error as Error).message}\n`);
    return 2;
  }
  let result: DecodeResult;
  try {
    // The device's options as its config has them (e.g. date_order), so the capture decodes as it did live.
    result = driver.decode(capture, { deviceId: values['device-id'] ?? driver.id, timezone, options });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  // The daemon's own finalize, so the lines are what it would publish. Without a config (or with
  // `hash` and no `privacy.hash_key`: the daemon's key is in its database) patient ids are omitted,
  // never printed clear.
  const privacy = resolvePrivacy(config?.privacy);
  if (config && config.privacy.patient_id === 'hash' && privacy.policy === 'omit') {
    process.stderr.write(`poctd replay: patient ids omitted: ${values.config} hashes them with its database's key (set privacy.hash_key to replay them alike)\n`);
  }
  const stored = captureToBytes(capture);
  const raw = { sha256: sha256Hex(stored), size: stored.length, kind: capture.kind };
  const receivedAt = new Date().toISOString();
  const site = values.site ?? config?.site ?? 'replay';
  eachDraft({ result: result.drafts }).forEach(({ kind, draft }, i) => {
    const record = finalize(kind, draft, { seq: i + 1, site, receivedAt, raw, timezone, privacy });
    process.stdout.write(JSON.stringify(record) + '\n');
  });
  // Reasons and sizes only: the refused bytes may hold patient data and stay out of the terminal.
  for (const issue of result.issues) {
    const size = issue.bytes ? ` (${issue.bytes.length} byte${issue.bytes.length === 1 ? '' : 's'})` : '';
    process.stderr.write(`poctd replay: ${source}: ${driver.id}: ${issue.reason}${size}\n`);
  }
  if (result.drafts.length === 0) {
    process.stderr.write(
      `poctd replay: ${source} holds no ${driver.id} records` +
        (result.issues.length ? ` (${result.issues.length} problem${result.issues.length === 1 ? '' : 's'} above)` : '') +
        '\n',
    );
    return 2;
  }
  if (result.issues.length > 0) {
    const n = result.issues.length;
    process.stderr.write(
      `poctd replay: ${source}: ${result.drafts.length} record${result.drafts.length === 1 ? '' : 's'} decoded, ` +
        `${n} problem${n === 1 ? '' : 's'} above\n`,
    );
    return 3;
  }
  return 0;
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
