import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import { Controller } from '../../src/controller.ts';
import { createLogger } from '../../src/logger.ts';
import type { BridgeInfo } from '../../src/mqtt/topics.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import type { ResultRecord } from '../../src/records/types.ts';
import { LogCapture, startDaemon, tempDir, testConfig, ULTRA2_MEMORY } from '../helpers/daemon.ts';
import { freePort, Mosquitto } from '../helpers/mosquitto.ts';
import { eventually, Subscriber } from '../helpers/subscriber.ts';
import { requireTool } from '../helpers/tools.ts';
import { useCleanups } from '../helpers/cleanups.ts';

/**
 * The daemon against brokers that check who it is: Mosquitto with a password file, Mosquitto
 * with TLS (server certificate, then mutual TLS), and the embedded broker's own rules.
 */

const cleanups = useCleanups();

/** A simulated Ultra 2 holding ULTRA2_MEMORY (3 readings), with its own client id per daemon. */
function daemonYaml(name: string, mqttYaml: string): string {
  return `
site: ${name}
mqtt:
  client_id: ${name}-${process.pid}
  reconnect_ms: 200
${mqttYaml
  .trim()
  .split('\n')
  .map((l) => `  ${l}`)
  .join('\n')}
devices:
  - id: ${name}
    driver: onetouch-ultra2
    timezone: Europe/Copenhagen
    transport:
      type: simulated
      simulator: { serial: GMF600DCY, memory: ${JSON.stringify(ULTRA2_MEMORY)} }
`;
}

/** A daemon stopped after the test, or after `until` runs (for one that spans several tests). */
async function daemon(
  yaml: string,
  env: NodeJS.ProcessEnv = {},
  until: Array<() => Promise<unknown>> = cleanups,
): Promise<{ controller: Controller; logs: LogCapture }> {
  const started = await startDaemon(testConfig(yaml, env));
  until.push(() => started.controller.stop());
  return started;
}

/** A directory Mosquitto (which drops root for its own user) can read. */
function readableDir(prefix: string): string {
  const dir = tempDir(prefix);
  chmodSync(dir, 0o755);
  return dir;
}

function makeWorldReadable(dir: string): void {
  for (const f of readdirSync(dir)) chmodSync(join(dir, f), 0o644);
}

function warnings(logs: LogCapture, msg: string): Array<Record<string, unknown>> {
  return logs.lines.filter((l) => l.level === 40 && l.msg === msg);
}

const MEMORY_SIZE = ULTRA2_MEMORY.length;

describe('broker with a password file (allow_anonymous false)', () => {
  const DAEMON_PASSWORD = 'c0rrect-h0rse-battery';
  const WRONG_PASSWORD = 'wr0ng-stap1e-guess';
  const DASHBOARD = { username: 'dashboard', password: 'dash-board-pw' };
  let broker: Mosquitto;
  let dir: string;
  let dashboard: Subscriber;
  const afterDescribe: Array<() => Promise<unknown>> = [];

  function setPassword(user: string, password: string, create = false): void {
    const passwd = requireTool('mosquitto_passwd', 'mosquitto');
    execFileSync(passwd, ['-b', ...(create ? ['-c'] : []), join(dir, 'passwd'), user, password], { stdio: 'pipe' });
    makeWorldReadable(dir);
  }

  beforeAll(async () => {
    dir = readableDir('poctd-passwd-');
    setPassword(DASHBOARD.username, DASHBOARD.password, true);
    broker = await Mosquitto.start({ extraConfig: `allow_anonymous false\npassword_file ${join(dir, 'passwd')}\n` });
    dashboard = await Subscriber.connect(broker.url, ['poct/#'], DASHBOARD);
  });

  afterAll(async () => {
    for (const c of afterDescribe.splice(0).reverse()) await c().catch(() => undefined);
    await dashboard?.close();
    await broker?.stop();
  });

  it('refuses anonymous clients (the broker really checks)', async () => {
    await expect(mqtt.connectAsync(broker.url, { reconnectPeriod: 0 })).rejects.toThrow(/Not authorized|Bad username or password/);
  });

  let refused: { controller: Controller; logs: LogCapture };

  it('a refused daemon keeps running and storing, warns once, and never logs the password', async () => {
    refused = await daemon(
      daemonYaml('refused', `url: ${broker.url}\nusername: poctd\npassword: \${POCTD_MQTT_PASSWORD}`),
      { POCTD_MQTT_PASSWORD: WRONG_PASSWORD },
      afterDescribe,
    );
    const { controller, logs } = refused;
    await eventually('every reading stored', () => controller.runtime!.store.recordCount() === MEMORY_SIZE);
    await eventually('an MQTT warning', () => warnings(logs, 'MQTT error').length > 0);
    const warning = warnings(logs, 'MQTT error')[0]!;
    expect(warning).toMatchObject({ component: 'mqtt', err: expect.stringMatching(/Connection refused: (Not authorized|Bad username or password)/) });
    // It keeps trying (reconnect_ms 200) but says so at warn level only once per reason.
    await eventually('retries after the refusal', () => logs.lines.filter((l) => l.msg === 'MQTT error (again)').length >= 3, 10_000);
    expect(warnings(logs, 'MQTT error')).toHaveLength(1);
    expect(controller.runtime!.mqtt.connected).toBe(false);
    expect(controller.runtime!.store.recordCount()).toBe(MEMORY_SIZE);
    expect(logs.text).not.toContain(WRONG_PASSWORD);
    expect(dashboard.on('poct/device/refused/result')).toEqual([]);
  });

  it('publishes what it stored as soon as the broker accepts its credentials, without a restart', async () => {
    const { controller, logs } = refused;
    // The operator fixes the broker's side: the daemon's password is added and Mosquitto reloads.
    setPassword('poctd', WRONG_PASSWORD);
    broker.reload();
    await dashboard.waitFor('3 results from the once-refused daemon', () => dashboard.on('poct/device/refused/result').length >= MEMORY_SIZE, 15_000);
    expect(controller.runtime!.mqtt.connected).toBe(true);
    const results = dashboard.payloads<ResultRecord>('poct/device/refused/result');
    expect(results.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(logs.text).not.toContain(WRONG_PASSWORD);
  });

  it('with the right password from ${POCTD_MQTT_PASSWORD}, results arrive and the password is published nowhere', async () => {
    setPassword('poctd', DAEMON_PASSWORD);
    broker.reload();
    const { logs } = await daemon(daemonYaml('authorized', `url: ${broker.url}\nusername: poctd\npassword: \${POCTD_MQTT_PASSWORD}`), {
      POCTD_MQTT_PASSWORD: DAEMON_PASSWORD,
    });
    await dashboard.waitFor('3 results', () => dashboard.on('poct/device/authorized/result').length >= MEMORY_SIZE);
    for (const r of dashboard.payloads<ResultRecord>('poct/device/authorized/result')) expect(schemaProblems('poct.result/2', r)).toEqual([]);
    await dashboard.waitFor('bridge/info', () =>
      dashboard.payloads<BridgeInfo>('poct/bridge/info').some((i) => JSON.stringify(i).includes('authorized')),
    );
    expect(warnings(logs, 'MQTT error')).toEqual([]);
    expect(logs.text).not.toContain(DAEMON_PASSWORD);
    const everything = JSON.stringify(dashboard.messages);
    expect(everything).not.toContain(DAEMON_PASSWORD);
    expect(everything).not.toContain(WRONG_PASSWORD);
  });
});

describe('TLS to Mosquitto', () => {
  let pki: string;
  let tls: Mosquitto;
  let mutual: Mosquitto;
  const ca = (): string => join(pki, 'ca.pem');

  /** A throwaway CA, a server certificate for IP 127.0.0.1 and a client certificate. */
  function makePki(dir: string): void {
    const openssl = requireTool('openssl');
    writeFileSync(
      join(dir, 'openssl.cnf'),
      [
        '[req]',
        'distinguished_name = dn',
        'prompt = no',
        '[dn]',
        'CN = poctd test',
        '[ca]',
        'basicConstraints = critical, CA:TRUE',
        'keyUsage = critical, keyCertSign, cRLSign',
        'subjectKeyIdentifier = hash',
        '[server]',
        'basicConstraints = CA:FALSE',
        'subjectAltName = IP:127.0.0.1',
        'extendedKeyUsage = serverAuth',
        '[client]',
        'basicConstraints = CA:FALSE',
        'extendedKeyUsage = clientAuth',
        '',
      ].join('\n'),
    );
    const run = (...args: string[]): void => {
      execFileSync(openssl, args, { cwd: dir, stdio: 'pipe' });
    };
    const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    run('req', '-x509', ...newKey, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=poctd test CA', '-config', 'openssl.cnf', '-extensions', 'ca');
    for (const [name, cn] of [['server', '127.0.0.1'], ['client', 'poctd-bench1']] as const) {
      run('req', '-new', ...newKey, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`, '-config', 'openssl.cnf');
      run('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', name === 'server' ? '2' : '3',
        '-days', '2', '-out', `${name}.pem`, '-extfile', 'openssl.cnf', '-extensions', name);
    }
    makeWorldReadable(dir);
  }

  const tlsListener = (extra = ''): string =>
    `allow_anonymous true\ncafile ${join(pki, 'ca.pem')}\ncertfile ${join(pki, 'server.pem')}\nkeyfile ${join(pki, 'server.key')}\n${extra}`;
  const mqtts = (broker: Mosquitto): string => `mqtts://127.0.0.1:${broker.port}`;

  beforeAll(async () => {
    pki = readableDir('poctd-pki-');
    makePki(pki);
    tls = await Mosquitto.start({ extraConfig: tlsListener() });
    mutual = await Mosquitto.start({ extraConfig: tlsListener('require_certificate true\n') });
  });

  afterAll(async () => {
    await tls?.stop();
    await mutual?.stop();
  });

  it('publishes over mqtts:// when given the CA that signed the broker', async () => {
    const sub = await Subscriber.connect(mqtts(tls), ['poct/#'], { ca: readFileSync(ca()) });
    cleanups.push(() => sub.close());
    const { controller, logs } = await daemon(daemonYaml('tls-ok', `url: ${mqtts(tls)}\nca: ${ca()}`));
    await sub.waitFor('3 results over TLS', () => sub.on('poct/device/tls-ok/result').length >= MEMORY_SIZE);
    await sub.waitFor('bridge/state', () => sub.on('poct/bridge/state').length > 0);
    expect(sub.last('poct/bridge/state')).toEqual({ state: 'online' });
    expect(controller.runtime!.mqtt.connected).toBe(true);
    expect(warnings(logs, 'MQTT error')).toEqual([]);
  });

  it('without the CA (system trust only) it does not connect, logs the certificate error, keeps every record', async () => {
    const sub = await Subscriber.connect(mqtts(tls), ['poct/#'], { ca: readFileSync(ca()) });
    cleanups.push(() => sub.close());
    const { controller, logs } = await daemon(daemonYaml('tls-noca', `url: ${mqtts(tls)}`));
    await eventually('every reading stored', () => controller.runtime!.store.recordCount() === MEMORY_SIZE);
    await eventually('a certificate warning', () => warnings(logs, 'MQTT error').length > 0);
    expect(String(warnings(logs, 'MQTT error')[0]!.err)).toMatch(/certificate/i);
    await new Promise((r) => setTimeout(r, 1000));
    expect(controller.runtime!.mqtt.connected).toBe(false);
    expect(sub.on('poct/device/tls-noca/result')).toEqual([]);
    expect(controller.runtime!.store.recordCount()).toBe(MEMORY_SIZE);
  });

  it('mutual TLS: with a client certificate it publishes; without one the broker keeps it out', async () => {
    const clientTls = { ca: readFileSync(ca()), cert: readFileSync(join(pki, 'client.pem')), key: readFileSync(join(pki, 'client.key')) };
    const sub = await Subscriber.connect(mqtts(mutual), ['poct/#'], clientTls);
    cleanups.push(() => sub.close());

    const anonymous = await daemon(daemonYaml('mtls-nocert', `url: ${mqtts(mutual)}\nca: ${ca()}`));
    const { controller } = await daemon(
      daemonYaml('mtls-ok', `url: ${mqtts(mutual)}\nca: ${ca()}\ncert: ${join(pki, 'client.pem')}\nkey: ${join(pki, 'client.key')}`),
    );
    await sub.waitFor('3 results over mutual TLS', () => sub.on('poct/device/mtls-ok/result').length >= MEMORY_SIZE);
    expect(controller.runtime!.mqtt.connected).toBe(true);

    await eventually('every reading stored without a client cert', () => anonymous.controller.runtime!.store.recordCount() === MEMORY_SIZE);
    await new Promise((r) => setTimeout(r, 1000));
    expect(anonymous.controller.runtime!.mqtt.connected).toBe(false);
    expect(sub.on('poct/device/mtls-nocert/result')).toEqual([]);
  });

  it('a TLS file that cannot be read stops the start with the setting named', async () => {
    const config = testConfig(daemonYaml('tls-missing', `url: ${mqtts(tls)}\nca: ${join(pki, 'nope.pem')}`));
    const controller = new Controller(config, { log: createLogger('silent'), drivers });
    cleanups.push(() => controller.stop());
    await expect(controller.start()).rejects.toThrow(/mqtt\.ca: cannot read .*nope\.pem: no such file/);
  });
});

describe('embedded broker', () => {
  it('serves MQTT over WebSocket: retained bridge/state online, results live', async () => {
    const [port, wsPort] = [await freePort(), await freePort()];
    const viewer = { username: 'bench-screen', password: 'bench-screen-pw' };
    const { controller } = await daemon(
      daemonYaml('embedded', `embedded: { port: ${port}, ws_port: ${wsPort} }`) +
        `access:\n  users:\n    - { name: ${viewer.username}, roles: [viewer], password: "\${VIEWER_PW}" }\n`,
      { VIEWER_PW: viewer.password },
    );
    expect(controller.brokerUrl).toBe(`mqtt://127.0.0.1:${port}`);
    const ws = await Subscriber.connect(`ws://127.0.0.1:${wsPort}`, ['poct/#'], viewer);
    cleanups.push(() => ws.close());
    await ws.waitFor('retained bridge/state', () => ws.on('poct/bridge/state').length > 0);
    expect(ws.on('poct/bridge/state')[0]).toMatchObject({ payload: { state: 'online' }, retain: true });
    // The plain TCP listener serves the same broker.
    const tcp = await Subscriber.connect(`mqtt://127.0.0.1:${port}`, ['poct/#'], viewer);
    cleanups.push(() => tcp.close());
    await tcp.waitFor('retained bridge/state over TCP', () => tcp.last<{ state: string }>('poct/bridge/state')?.state === 'online');
  });

  it('with embedded credentials it refuses clients that lack them, and the daemon itself logs in', async () => {
    const [port, wsPort] = [await freePort(), await freePort()];
    const password = 'emb3dded-secret';
    const { controller, logs } = await daemon(
      daemonYaml('embedded-auth', `embedded: { port: ${port}, ws_port: ${wsPort}, username: poctd, password: "\${EMBEDDED_PW}" }`),
      { EMBEDDED_PW: password },
    );
    await eventually('daemon connected to its own broker', () => controller.runtime!.mqtt.connected);
    await expect(mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 })).rejects.toThrow(/Connection refused/);
    await expect(
      mqtt.connectAsync(`ws://127.0.0.1:${wsPort}`, { reconnectPeriod: 0, username: 'poctd', password: 'guess' }),
    ).rejects.toThrow(/Connection refused/);
    const sub = await Subscriber.connect(`ws://127.0.0.1:${wsPort}`, ['poct/#'], { username: 'poctd', password });
    cleanups.push(() => sub.close());
    await sub.waitFor('bridge/state online', () => sub.last<{ state: string }>('poct/bridge/state')?.state === 'online');
    expect(logs.text).not.toContain(password);
  });

  it('refuses to listen on 0.0.0.0 without credentials, naming mqtt.embedded.username', async () => {
    const port = await freePort();
    const config = testConfig(daemonYaml('embedded-open', `embedded: { host: 0.0.0.0, port: ${port}, ws_port: 0 }`));
    const controller = new Controller(config, { log: createLogger('silent'), drivers });
    cleanups.push(() => controller.stop());
    await expect(controller.start()).rejects.toThrow(/mqtt\.embedded\.username/);
    // Nothing was left listening.
    await expect(
      new Promise((resolveConnect, rejectConnect) => {
        const socket = connect(port, '127.0.0.1');
        socket.once('connect', () => {
          socket.destroy();
          resolveConnect('connected');
        });
        socket.once('error', rejectConnect);
      }),
    ).rejects.toThrow(/ECONNREFUSED/);
  });

  it('a port already taken is a clear error naming the setting', async () => {
    const taken = await Mosquitto.start();
    cleanups.push(() => taken.stop());
    const config = testConfig(daemonYaml('embedded-busy', `embedded: { port: ${taken.port}, ws_port: 0 }`));
    const controller = new Controller(config, { log: createLogger('silent'), drivers });
    cleanups.push(() => controller.stop());
    await expect(controller.start()).rejects.toThrow(/cannot listen on 127\.0\.0\.1:\d+: the port is already in use .*mqtt\.embedded\.port/);
  });
});
