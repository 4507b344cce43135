import { drivers } from '../drivers/index.ts';
import { ConfigError, daemonConfigOptions, formatProblem, loadConfigFile, parseConfig } from '../src/config/load.ts';
import type { PoctdConfig } from '../src/config/types.ts';
import { Controller } from '../src/controller.ts';
import { makeEvent } from '../src/extensions/bridge.ts';
import type { ConfigReloadOutcome } from '../src/extensions/extension.ts';
import type { ConfigFileStatus } from '../src/mqtt/topics.ts';
import { createDaemonLogger, type Logger } from '../src/logger.ts';

/** How long `run` waits for a clean stop after SIGTERM/SIGINT before it exits anyway. */
const STOP_DEADLINE_MS = 10_000;

export async function run(options: { config?: unknown }): Promise<number> {
  const file = typeof options.config === 'string' ? options.config : undefined;
  const config: PoctdConfig = file
    ? loadConfigFile(file, daemonConfigOptions(drivers))
    : parseConfig('', daemonConfigOptions(drivers));
  const logging = await createDaemonLogger(config.log);
  const log = logging.log;
  for (const notice of logging.notices) {
    log.warn(notice);
    // Asked for on a terminal, so said on the terminal too.
    process.stderr.write(`poctd: ${notice}\n`);
  }
  let fatal: ((code: number) => void) | undefined;
  // Reloads run one after another: a second SIGHUP waits for the first.
  let reloading: Promise<unknown> = Promise.resolve();
  const reloadConfig = (): Promise<ConfigReloadOutcome> => {
    const next = reloading.then(() => reloadFrom(file!, controller, log));
    reloading = next.catch(() => undefined);
    return next;
  };
  const configFileStatus = (): ConfigFileStatus => fileStatus(file!, controller.runtime?.config ?? config);
  const controller = new Controller(config, { log, drivers, onFatal: () => fatal?.(1), ...(file ? { reloadConfig, configFileStatus } : {}) });
  if (file) {
    process.on('SIGHUP', () => {
      log.info({ file }, 'SIGHUP: reading the config again');
      reloadConfig().catch(() => undefined);
    });
  } else {
    process.on('SIGHUP', () => log.warn('SIGHUP ignored: poctd runs on its built-in defaults (no --config file to read again)'));
  }
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
    await logging.close();
    return 1;
  }
  const broker = controller.brokerUrl ?? '';
  log.info(
    { broker: redactUrl(broker), devices: config.devices.length, base_topic: config.mqtt.base_topic },
    `poctd running; watch with: ${watchCommand(config, broker, controller.localOperator)}`,
  );
  const code = await stopped;
  await logging.close();
  return code;
}

/** The URL without a password in it (for the log). */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}

const shellQuote = (s: string): string => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/**
 * How to watch the broker the daemon actually publishes to: its host and port, TLS files and
 * user name (never the password), e.g. `mosquitto_sub -h broker.clinic -p 8883 --cafile ca.pem
 * -u poctd -P <password> -t 'poct/#' -v`. mosquitto_sub speaks no WebSocket: for a `ws(s)://`
 * broker the hint names the URL for a client that does.
 */
export function watchCommand(config: PoctdConfig, brokerUrl: string, localOperator?: { name: string; file: string }): string {
  const topic = `'${config.mqtt.base_topic}/#'`;
  let url: URL;
  try {
    url = new URL(brokerUrl);
  } catch {
    return `mosquitto_sub -t ${topic} -v`;
  }
  const scheme = url.protocol.replace(/:$/, '');
  if (scheme === 'ws' || scheme === 'wss') return `a WebSocket MQTT client on ${redactUrl(brokerUrl)}, topic ${topic}`;
  const tls = scheme === 'mqtts' || scheme === 'ssl' || scheme === 'tls';
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = url.port || (tls ? '8883' : '1883');
  const parts = ['mosquitto_sub', '-h', shellQuote(host), '-p', port];
  const external = config.mqtt.url !== undefined;
  if (tls) {
    if (config.mqtt.ca) parts.push('--cafile', shellQuote(config.mqtt.ca));
    else parts.push('--capath', '/etc/ssl/certs');
    if (config.mqtt.cert) parts.push('--cert', shellQuote(config.mqtt.cert));
    if (config.mqtt.key) parts.push('--key', shellQuote(config.mqtt.key));
    if (!config.mqtt.reject_unauthorized) parts.push('--insecure');
  }
  const username = external ? (config.mqtt.username ?? (url.username ? decodeURIComponent(url.username) : undefined)) : config.mqtt.embedded.username;
  // The embedded broker has no anonymous access: the machine's own operator account when it made
  // one (its password file is the user's to read), else a user of access.users.
  if (!external && localOperator) parts.push('-u', shellQuote(localOperator.name), '-P', `"$(cat ${shellQuote(localOperator.file)})"`);
  else if (username) parts.push('-u', shellQuote(username), '-P', '<password>');
  else if (!external) parts.push('-u', '<user>', '-P', '<password>');
  parts.push('-t', topic, '-v');
  return parts.join(' ');
}

/**
 * Reads the config file again with the start-up checks and applies it. An invalid file is
 * refused whole, with its problems in the log and on `bridge/event`: the running config stays.
 */
async function reloadFrom(file: string, controller: Controller, log: Logger): Promise<ConfigReloadOutcome> {
  let next: PoctdConfig;
  try {
    next = loadConfigFile(file, daemonConfigOptions(drivers));
  } catch (error) {
    const problems = error instanceof ConfigError ? error.problems.map((p) => (p.line !== undefined ? `${file}:${p.line}:${p.column ?? 1}: ${formatProblem(p)}` : formatProblem(p))) : [(error as Error).message];
    log.error({ file, problems }, 'config reload refused; the running config stays');
    controller.bus.emit('bridgeEvent', makeEvent('config_error', null, `config reload refused: ${problems.join('; ')}`, new Date()));
    throw new Error(`config reload refused, the running config stays: ${problems.join('; ')}`);
  }
  const outcome = await controller.applyConfig(next);
  log.info({ file, ...outcome }, 'config reloaded');
  return outcome;
}

/** Whether `running` is what `file` says now: for `bridge/info`, so a dashboard sees an edit not yet reloaded. */
export function fileStatus(file: string, running: PoctdConfig): ConfigFileStatus {
  let onDisk: PoctdConfig;
  try {
    onDisk = loadConfigFile(file, { ...daemonConfigOptions(drivers), hostChecks: false });
  } catch (error) {
    const n = error instanceof ConfigError ? error.problems.length : 1;
    return { path: file, differs: true, detail: `the file does not load (${n} problem${n === 1 ? '' : 's'}; poctd check-config shows them): the running config is an older one` };
  }
  const keys = (Object.keys(onDisk) as Array<keyof PoctdConfig>).filter((k) => JSON.stringify(onDisk[k]) !== JSON.stringify(running[k]));
  if (keys.length === 0) return { path: file, differs: false, detail: 'running as the file says' };
  return { path: file, differs: true, detail: `the file differs in ${keys.join(', ')}: ${keys.some((k) => k !== 'devices') ? 'reload for devices, restart for the rest' : 'reload to apply'}` };
}
