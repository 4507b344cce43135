import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import { createSimulator } from '../../src/driver-sdk/index.ts';
import {
  ConfigError,
  DEFAULT_CONFIG,
  formatProblem,
  listenerIdentitiesOf,
  loadConfigFile,
  parseConfig,
  redactConfig,
  substituteEnv,
  transportTypes,
  type ParseConfigOptions,
} from '../../src/config/load.ts';

const repo = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const DRIVERS = ['onetouch-ultra2'];

/** The ConfigError thrown for `yaml`, or a failed expectation. */
function problemsOf(yaml: string, opts: ParseConfigOptions = {}): ConfigError {
  try {
    parseConfig(yaml, { env: {}, ...opts });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

function lines(err: ConfigError): string[] {
  return err.message.split('\n');
}

const device = (extra: string): string => `devices:\n  - id: m1\n    driver: onetouch-ultra2\n${extra}`;

describe('defaults', () => {
  it('an empty document gives the embedded defaults', () => {
    for (const text of ['', '\n', '# only a comment\n', '---\n']) {
      const cfg = parseConfig(text, { env: {} });
      expect(cfg).toEqual({
        ...DEFAULT_CONFIG,
        store: { path: resolve(process.cwd(), 'data/poctd.db') },
      });
    }
  });

  it('has the documented default values', () => {
    expect(DEFAULT_CONFIG).toMatchObject({
      site: 'poctd',
      timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
      mqtt: {
        base_topic: 'poct',
        reject_unauthorized: true,
        keepalive_s: 30,
        reconnect_ms: 2000,
        embedded: { host: '127.0.0.1', port: 1883, ws_port: 8083 },
      },
      store: { path: './data/poctd.db' },
      privacy: { patient_id: 'hash' },
      log: { level: 'info' },
      health_interval_s: 60,
      devices: [],
    });
    expect(DEFAULT_CONFIG.mqtt.url).toBeUndefined();
    expect(Object.isFrozen(DEFAULT_CONFIG.mqtt.embedded)).toBe(true);
  });

  it('deep-merges a partial config over the defaults and leaves DEFAULT_CONFIG alone', () => {
    const cfg = parseConfig('mqtt:\n  embedded: { port: 11883 }\nlog: { level: debug }\n', { env: {} });
    expect(cfg.mqtt.embedded).toEqual({ host: '127.0.0.1', port: 11883, ws_port: 8083 });
    expect(cfg.mqtt.keepalive_s).toBe(30);
    expect(cfg.log.level).toBe('debug');
    expect(DEFAULT_CONFIG.mqtt.embedded.port).toBe(1883);
  });

  it('treats an empty value as absent', () => {
    const cfg = parseConfig('site:\nmqtt:\ndevices:\n', { env: {} });
    expect(cfg.site).toBe('poctd');
    expect(cfg.mqtt.base_topic).toBe('poct');
    expect(cfg.devices).toEqual([]);
  });

  it('resolves relative paths in the file against baseDir, keeps absolute ones', () => {
    const cfg = parseConfig(
      'store: { path: ../data/x.db }\nmqtt: { url: "mqtts://b:8883", ca: tls/ca.pem, cert: /etc/poctd/c.pem, key: k.pem }\n',
      { env: {}, baseDir: '/opt/poctd/config' },
    );
    expect(cfg.store.path).toBe('/opt/poctd/data/x.db');
    expect(cfg.mqtt.ca).toBe('/opt/poctd/config/tls/ca.pem');
    expect(cfg.mqtt.cert).toBe('/etc/poctd/c.pem');
    expect(cfg.mqtt.key).toBe('/opt/poctd/config/k.pem');
    expect(parseConfig('store: { path: ":memory:" }', { env: {} }).store.path).toBe(':memory:');
  });
});

describe('shipped configs', () => {
  it('config/demo.yaml validates: embedded broker, two simulated Ultra 2 meters, an ASTM analyzer, a urine reader', async () => {
    const cfg = loadConfigFile(join(repo, 'config/demo.yaml'), { env: {}, knownDrivers: drivers.map((d) => d.id) });
    expect(cfg.site).toBe('demo-clinic');
    expect(cfg.mqtt.url).toBeUndefined();
    expect(cfg.store.path).toBe(join(repo, 'data/poctd-demo.db'));
    expect(cfg.devices.map((d) => d.driver)).toEqual(['onetouch-ultra2', 'onetouch-ultra2', 'astm', 'clinitek-status']);
    for (const d of cfg.devices) {
      expect(d.transport.type).toBe('simulated');
      expect(d.timezone).toBe('Europe/Copenhagen');
    }
    const meters = cfg.devices.filter((d) => d.driver === 'onetouch-ultra2');
    for (const d of meters) expect(d.poll_interval).toBe(5);
    const sims = meters.map((d) => (d.transport.type === 'simulated' ? d.transport.simulator : undefined));
    expect(sims.map((s) => s?.serial)).toEqual(['GMF600DCY', 'GMF601ABY']);
    expect(sims.map((s) => s?.unit)).toEqual(['mg/dL', 'mmol/L']);
    for (const s of sims) expect((s?.memory as { control?: boolean }[]).some((r) => r.control === true)).toBe(true);
    // Every simulator accepts its options as the daemon passes them (with the device's timezone).
    for (const d of cfg.devices) {
      const driver = drivers.find((x) => x.id === d.driver)!;
      const options = d.transport.type === 'simulated' ? d.transport.simulator : {};
      await expect(createSimulator(driver.simulator, { timezone: d.timezone, ...options })).resolves.toBeDefined();
    }
  });

  it('config/example.yaml validates with POCTD_MQTT_PASSWORD set', () => {
    const cfg = loadConfigFile(join(repo, 'config/example.yaml'), {
      env: { POCTD_MQTT_PASSWORD: 's3cret' },
      // Every driver the example names is a registered one (config-whole.test.ts checks its options too).
      knownDrivers: drivers.map((d) => d.id),
    });
    expect(cfg.mqtt.url).toMatch(/^mqtts:\/\//);
    expect(cfg.mqtt.password).toBe('s3cret');
    expect(cfg.devices[0]?.transport).toMatchObject({ type: 'serial', path: '/dev/ttyUSB0' });
  });

  it('config/example.yaml names the missing secret, with file and line', () => {
    const file = join(repo, 'config/example.yaml');
    let err: unknown;
    try {
      loadConfigFile(file, { env: {} });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const ce = err as ConfigError;
    expect(ce.message).toBe('mqtt.password: environment variable POCTD_MQTT_PASSWORD is not set');
    expect(ce.file).toBe(file);
    const line = readFileSync(file, 'utf8').split('\n').findIndex((l) => l.includes('${POCTD_MQTT_PASSWORD}')) + 1;
    expect(ce.problems[0]?.line).toBe(line);
  });
});

describe('error messages', () => {
  it('missing required key: devices[2].transport.path: required', () => {
    const err = problemsOf(
      'devices:\n' +
        '  - { id: a, driver: onetouch-ultra2, transport: { type: simulated } }\n' +
        '  - { id: b, driver: onetouch-ultra2, transport: { type: simulated } }\n' +
        '  - { id: c, driver: onetouch-ultra2, transport: { type: serial } }\n',
    );
    // positioned at the nearest key that exists: `transport` on line 4
    expect(err.problems).toEqual([{ path: 'devices[2].transport.path', message: 'required', line: 4, column: 39 }]);
    expect(err.message).toBe('devices[2].transport.path: required');
  });

  it('missing device keys are each reported', () => {
    const err = problemsOf('devices:\n  - id: a\n');
    expect(lines(err)).toEqual(['devices[0].driver: required', 'devices[0].transport: required']);
  });

  it('unknown key, with a suggestion when close to a known one', () => {
    const err = problemsOf(device('    transprot: { type: simulated }\n'));
    expect(lines(err)).toContain('devices[0].transprot: unknown key (did you mean "transport"?)');
    expect(lines(err)).toContain('devices[0].transport: required');
    expect(problemsOf('colour: blue\n').message).toBe('colour: unknown key');
    expect(problemsOf(device('    transport: { type: tcp, host: h, port: 1, baud_rate: 9600 }\n')).message).toBe(
      'devices[0].transport.baud_rate: unknown key',
    );
  });

  it('wrong enum value lists the allowed values', () => {
    expect(problemsOf('privacy: { patient_id: hashed }\n').message).toBe(
      'privacy.patient_id: must be one of publish, hash, omit',
    );
    expect(problemsOf('privacy: { hash_key: short }\n').message).toMatch(/^privacy\.hash_key: .*16/);
    expect(problemsOf('log: { level: verbose }\n').message).toBe(
      'log.level: must be one of trace, debug, info, warn, error, fatal, silent',
    );
    expect(problemsOf(device('    transport: { type: serial, path: /dev/ttyS0, parity: mark }\n')).message).toBe(
      'devices[0].transport.parity: must be one of none, even, odd',
    );
  });

  it('unknown transport type names the valid ones; a known type reports its own errors only', () => {
    expect(transportTypes()).toEqual(['serial', 'tcp', 'tcp-server', 'hid', 'simulated', 'usb-printer', 'dicom-scp']);
    expect(problemsOf(device('    transport: { type: usb, path: /dev/x }\n')).message).toBe(
      'devices[0].transport.type: must be one of serial, tcp, tcp-server, hid, simulated, usb-printer, dicom-scp',
    );
    expect(problemsOf(device('    transport: { path: /dev/x }\n')).message).toBe('devices[0].transport.type: required');
    // tcp branch: only tcp's complaints, not serial's or hid's
    expect(lines(problemsOf(device('    transport: { type: tcp, port: 70000 }\n')))).toEqual([
      'devices[0].transport.host: required',
      'devices[0].transport.port: must be <= 65535',
    ]);
    expect(problemsOf(device('    transport: simulated\n')).message).toBe('devices[0].transport: must be a mapping');
  });

  it('hid needs a path or both USB ids, quoted', () => {
    expect(problemsOf(device('    transport: { type: hid, vendor_id: "1a61" }\n')).message).toBe(
      'devices[0].transport: needs `path`, or `vendor_id` and `product_id`',
    );
    expect(problemsOf(device('    transport: { type: hid, vendor_id: 0483, product_id: "3748" }\n')).message).toMatch(
      /^devices\[0\]\.transport\.vendor_id: must be 4 hex digits in quotes/,
    );
    const cfg = parseConfig(device('    transport: { type: hid, vendor_id: "1A61", product_id: "3650" }\n'), { env: {} });
    expect(cfg.devices[0]?.transport).toEqual({ type: 'hid', vendor_id: '1a61', product_id: '3650' });
    const rc = parseConfig(device('    transport: { type: hid, path: /dev/hidraw0, reconnect_min_ms: 500, reconnect_max_ms: 8000 }\n'), {
      env: {},
    });
    expect(rc.devices[0]?.transport).toMatchObject({ reconnect_min_ms: 500, reconnect_max_ms: 8000 });
  });

  it('device id, site and base_topic must be safe in topic names', () => {
    expect(problemsOf('devices:\n  - { id: Bench/1, driver: d, transport: { type: simulated } }\n').message).toBe(
      "devices[0].id: must be lowercase letters, digits, '_' or '-', starting with a letter or digit",
    );
    expect(problemsOf('site: "clinic #1"\n').message).toBe("site: must not contain '+', '#', '/' or whitespace");
    for (const bad of ['/poct', 'poct/', 'a//b', 'poct/+', 'po ct']) {
      expect(problemsOf(`mqtt: { base_topic: "${bad}" }\n`).problems[0]?.path).toBe('mqtt.base_topic');
    }
    expect(parseConfig('mqtt: { base_topic: clinic/a/poct }\n', { env: {} }).mqtt.base_topic).toBe('clinic/a/poct');
  });

  it('mqtt.url must be an MQTT or WebSocket URL', () => {
    expect(problemsOf('mqtt: { url: "http://broker:1883" }\n').message).toBe(
      'mqtt.url: must be a URL starting with mqtt://, mqtts://, ws:// or wss://',
    );
    for (const ok of ['mqtt://localhost', 'mqtts://b.example:8883', 'ws://b:8083/mqtt', 'wss://b/mqtt']) {
      expect(parseConfig(`mqtt: { url: "${ok}" }\n`, { env: {} }).mqtt.url).toBe(ok);
    }
  });

  it('wrong scalar types', () => {
    expect(lines(problemsOf('health_interval_s: soon\nmqtt: { reject_unauthorized: "no" }\n'))).toEqual([
      'health_interval_s: must be a whole number',
      'mqtt.reject_unauthorized: must be true or false',
    ]);
    expect(problemsOf(device('    transport: { type: simulated }\n    poll_interval: 0\n')).message).toBe(
      'devices[0].poll_interval: must be > 0',
    );
    expect(problemsOf('- a\n- b\n').message).toBe('the config must be a mapping');
  });

  it('duplicate device id names the first one', () => {
    const sim = 'transport: { type: simulated } }';
    const err = problemsOf(
      'devices:\n' +
        `  - { id: a, driver: onetouch-ultra2, ${sim}\n` +
        `  - { id: b, driver: onetouch-ultra2, ${sim}\n` +
        `  - { id: c, driver: onetouch-ultra2, ${sim}\n` +
        `  - { id: b, driver: onetouch-ultra2, ${sim}\n`,
    );
    expect(err.message).toBe('devices[3].id: duplicate of devices[1]');
    expect(err.problems[0]?.line).toBe(5);
  });

  it('two devices on one serial port or one listening port', () => {
    const err = problemsOf(
      'devices:\n' +
        '  - { id: a, driver: d, transport: { type: serial, path: /dev/ttyUSB0 } }\n' +
        '  - { id: b, driver: d, transport: { type: serial, path: /dev/ttyUSB0 } }\n' +
        '  - { id: c, driver: d, transport: { type: tcp-server, port: 5100 } }\n' +
        '  - { id: e, driver: d, transport: { type: tcp-server, port: 5100, bind: 0.0.0.0 } }\n' +
        '  - { id: f, driver: d, transport: { type: tcp-server, port: 5101, bind: 10.0.0.5 } }\n' +
        '  - { id: g, driver: d, transport: { type: tcp-server, port: 5101, bind: 127.0.0.1 } }\n',
    );
    expect(lines(err)).toEqual([
      'devices[1].transport.path: /dev/ttyUSB0 is already used by devices[0]',
      'devices[3].transport.bind: port 5100 is listened on by devices[2] with bind 127.0.0.1; devices that share a port must name the same bind',
    ]);
  });

  it('devices sharing a listening port: one bind, one driver, the same listener settings, each its own senders', () => {
    const err = problemsOf(
      'devices:\n' +
        '  - { id: a, driver: astm, transport: { type: tcp-server, port: 5100, sender: "cobas c111" } }\n' +
        '  - { id: b, driver: astm, transport: { type: tcp-server, port: 5100, sender: [DCA Vantage, "COBAS C111 "] } }\n' +
        '  - { id: c, driver: astm, transport: { type: tcp-server, port: 5100 } }\n' +
        '  - { id: d, driver: other, transport: { type: tcp-server, port: 5100, sender: x, idle_timeout_ms: 5000 } }\n' +
        '  - { id: e, driver: astm, transport: { type: tcp-server, port: 5100, bind: 0.0.0.0, sender: y } }\n' +
        '  - { id: f, driver: astm, transport: { type: tcp-server, port: 5200, peers: [10.0.0.5, printer.local], sender: [a, A] } }\n' +
        '  - { id: g, driver: astm, transport: { type: tcp-server, port: 5300 } }\n' +
        '  - { id: h, driver: astm, transport: { type: tcp-server, port: 5300, sender: z } }\n' +
        '  - { id: i, driver: astm, transport: { type: serial, path: /dev/ttyS0, sender: z } }\n',
    );
    expect(lines(err)).toEqual([
      'devices[1].transport.sender: sender "cobas c111" is already devices[0]\'s on port 5100',
      'devices[2].transport.sender: required: port 5100 is shared with devices[0], so each device there names its sender',
      'devices[3].driver: port 5100 is shared with devices[0] (driver astm); devices that share a port must use one driver',
      "devices[3].transport.idle_timeout_ms: must equal devices[0]'s (default): they share port 5100",
      'devices[4].transport.bind: port 5100 is listened on by devices[0] with bind 127.0.0.1; devices that share a port must name the same bind',
      'devices[5].transport.peers[1]: "printer.local" is not an IP address',
      'devices[5].transport.sender[1]: duplicate of sender[0]',
      'devices[7].transport.sender: devices[6] on port 5300 names no sender, so every caller would be it; name a sender on each device of a shared port',
      // Identity keys only on the kinds that route by them: a serial line has one device.
      'devices[8].transport.sender: unknown key',
    ]);
  });

  it('a sender on a device whose driver does not route by sender, when the drivers say which do', () => {
    const text = 'devices:\n  - { id: a, driver: onetouch-ultra2, transport: { type: tcp-server, port: 5100, sender: x } }\n';
    expect(problemsOf(text, { listenerIdentities: listenerIdentitiesOf(drivers) }).message).toBe(
      'devices[0].transport.sender: driver "onetouch-ultra2" does not route callers by sender (drivers that do: astm, poct1a)',
    );
    const ok = parseConfig('devices:\n  - { id: a, driver: astm, transport: { type: tcp-server, port: 5100, sender: x, peers: ["::ffff:10.0.0.5"] } }\n', {
      env: {},
      listenerIdentities: { astm: ['sender'] },
    });
    expect(ok.devices[0]!.transport).toMatchObject({ sender: 'x', peers: ['::ffff:10.0.0.5'] });
  });

  it('reconnect_max_ms below reconnect_min_ms', () => {
    expect(
      problemsOf(device('    transport: { type: serial, path: /dev/x, reconnect_min_ms: 5000, reconnect_max_ms: 1000 }\n')).message,
    ).toBe('devices[0].transport.reconnect_max_ms: must be >= reconnect_min_ms (5000)');
  });

  it('unknown time zone, for the daemon and for a device', () => {
    expect(problemsOf('timezone: Mars/Olympus\n').message).toBe('timezone: unknown time zone "Mars/Olympus"');
    expect(problemsOf(device('    transport: { type: simulated }\n    timezone: Europe/Copenhagn\n')).message).toBe(
      'devices[0].timezone: unknown time zone "Europe/Copenhagn"',
    );
    expect(parseConfig('timezone: America/New_York\n', { env: {} }).timezone).toBe('America/New_York');
  });

  it('unknown driver, only when the caller passes the known ones', () => {
    const text =
      'devices:\n' +
      '  - { id: a, driver: a, transport: { type: simulated } }\n' +
      '  - { id: b, driver: x, transport: { type: simulated } }\n';
    expect(problemsOf(text, { knownDrivers: ['b', 'a'] }).message).toBe('devices[1].driver: unknown driver "x" (known: a, b)');
    expect(parseConfig(text, { env: {} }).devices).toHaveLength(2);
  });

  it('auto_detect: rules name a known driver, a vendor:product id or a serial; ids are lowercased', () => {
    const text = 'auto_detect:\n  allow:\n    - { usb: "1A61:3460" }\n    - { driver: nope }\n';
    expect(problemsOf(text, { knownDrivers: ['a'] }).message).toBe('auto_detect.allow[1].driver: unknown driver "nope" (known: a)');
    expect(parseConfig('auto_detect: { allow: [ { usb: "1A61:3460" } ] }\n', { env: {} }).auto_detect).toEqual({
      interval_s: 2,
      allow: [{ usb: '1a61:3460' }],
    });
    expect(problemsOf('auto_detect: { allow: [ { usb: "1a61-3460" } ] }\n').message).toMatch(/^auto_detect\.allow\[0\]\.usb: /);
    expect(problemsOf('auto_detect: { allow: [ {} ] }\n').message).toMatch(/^auto_detect\.allow\[0\]: /);
    expect(parseConfig('', { env: {} }).auto_detect).toEqual({ interval_s: 2, allow: [] });
  });

  it('TLS cert and key come together; embedded broker credentials too', () => {
    expect(problemsOf('mqtt: { url: "mqtts://b", cert: c.pem }\n').message).toBe('mqtt.key: required when cert is set');
    expect(problemsOf('mqtt: { embedded: { username: dash } }\n').message).toBe(
      'mqtt.embedded.password: required when username is set',
    );
    expect(problemsOf('mqtt: { embedded: { port: 1883, ws_port: 1883 } }\n').message).toBe(
      'mqtt.embedded.ws_port: must differ from port (1883)',
    );
  });

  it('YAML syntax error gives line and column', () => {
    const err = problemsOf('site: a\nmqtt:\n  url: "mqtt://x\n  base_topic: p\n');
    expect(err.problems[0]?.path).toBe('');
    expect(err.problems[0]?.line).toBeGreaterThanOrEqual(3);
    expect(err.message).toMatch(/^YAML syntax error at line \d+, column \d+: /);

    const bad = problemsOf('site: a\ndevices: [\n  { id: a }\n  bad\n');
    expect(bad.message).toMatch(/YAML syntax error at line \d+, column \d+/);

    const dup = problemsOf('site: a\nlog: {}\nsite: b\n');
    expect(dup.message).toMatch(/^YAML syntax error at line 3, column 1: .*unique/);
    expect(problemsOf('site: a\n---\nsite: b\n').message).toMatch(/single YAML document/);
  });

  it('reports every problem at once, in file order, with positions', () => {
    const err = problemsOf(
      [
        'site: a b',
        'mqtt:',
        '  url: ftp://x',
        '  password: ${NOPE}',
        'privacy: { patient_id: hashed }',
        'devices:',
        '  - id: a',
        '    driver: x',
        '    transport: { type: serial }',
        '  - id: a',
        '    driver: onetouch-ultra2',
        '    transprot: { type: simulated }',
        '    timezone: Nowhere/City',
        '',
      ].join('\n'),
      { knownDrivers: DRIVERS },
    );
    expect(lines(err)).toEqual([
      "site: must not contain '+', '#', '/' or whitespace",
      'mqtt.url: must be a URL starting with mqtt://, mqtts://, ws:// or wss://',
      'mqtt.password: environment variable NOPE is not set',
      'privacy.patient_id: must be one of publish, hash, omit',
      'devices[0].driver: unknown driver "x" (known: onetouch-ultra2)',
      'devices[0].transport.path: required',
      'devices[1].transport: required',
      'devices[1].id: duplicate of devices[0]',
      'devices[1].transprot: unknown key (did you mean "transport"?)',
      'devices[1].timezone: unknown time zone "Nowhere/City"',
    ]);
    expect(err.problems.map((p) => p.line)).toEqual([1, 3, 4, 5, 8, 9, 10, 10, 12, 13]);
    expect(err.problems.every((p) => formatProblem(p) === `${p.path}: ${p.message}`)).toBe(true);
  });
});

describe('${ENV} substitution', () => {
  it('substitutes variables and defaults in string values', () => {
    const env = { HOST: 'broker.lan', PW: 'pw' };
    expect(substituteEnv('mqtt://${HOST}:1883', env)).toBe('mqtt://broker.lan:1883');
    expect(substituteEnv('${MISSING:-fallback}', env)).toBe('fallback');
    expect(substituteEnv('${EMPTY:-fallback}', { EMPTY: '' })).toBe('fallback');
    expect(substituteEnv('${PW:-x}', env)).toBe('pw');
    expect(substituteEnv('${MISSING:-}', env)).toBe('');
    expect(substituteEnv('a$b $${HOST} ${HOST}', env)).toBe('a$b ${HOST} broker.lan');
    expect(substituteEnv('no refs', env)).toBe('no refs');
  });

  it('a missing variable is a problem at the path where it is used', () => {
    expect(() => substituteEnv('${NOPE}', {}, 'mqtt.password')).toThrow('mqtt.password: environment variable NOPE is not set');
    const err = problemsOf(device('    transport: { type: tcp, host: "${ANALYZER_HOST}", port: 5000 }\n'));
    expect(err.message).toBe('devices[0].transport.host: environment variable ANALYZER_HOST is not set');
    expect(err.problems[0]?.line).toBe(4);
  });

  it('malformed references are reported', () => {
    expect(problemsOf('site: "${}"\n').message).toMatch(/^site: invalid variable reference/);
    expect(problemsOf('site: "${A B}"\n').message).toMatch(/^site: invalid variable reference/);
    expect(problemsOf('site: "x${A"\n').message).toMatch(/^site: unterminated/);
  });

  it('works on parsed values: a variable cannot inject YAML', () => {
    const cfg = parseConfig('mqtt:\n  username: ${U}\n  password: "${PW}"\n', {
      env: { U: 'x\nlog: { level: trace }', PW: 'a: b, "c"' },
    });
    expect(cfg.mqtt.username).toBe('x\nlog: { level: trace }');
    expect(cfg.mqtt.password).toBe('a: b, "c"');
    expect(cfg.log.level).toBe('info');
  });

  it('an unquoted ${...} inside a flow mapping is a YAML error with a hint', () => {
    const err = problemsOf('mqtt: { password: ${PW} }\n', { env: { PW: 'x' } });
    expect(lines(err)).toHaveLength(1);
    expect(err.message).toMatch(/^YAML syntax error at line 1, .*quote values that use \$\{\.\.\.\}/);
  });

  it('${VAR:-default} in the config, and whole-value numbers/booleans for numeric keys', () => {
    const cfg = parseConfig(
      'site: ${SITE:-bench-7}\nmqtt:\n  url: ${URL:-mqtt://127.0.0.1:1883}\n  keepalive_s: ${KA}\n  reject_unauthorized: ${RU:-false}\n' +
        '  username: ${USER_NUM}\n',
      { env: { KA: '45', USER_NUM: '1234' } },
    );
    expect(cfg.site).toBe('bench-7');
    expect(cfg.mqtt.url).toBe('mqtt://127.0.0.1:1883');
    expect(cfg.mqtt.keepalive_s).toBe(45);
    expect(cfg.mqtt.reject_unauthorized).toBe(false);
    expect(cfg.mqtt.username).toBe('1234'); // stays a string where a string is wanted
    expect(problemsOf('mqtt: { keepalive_s: "${KA}" }\n', { env: { KA: 'often' } }).message).toBe(
      'mqtt.keepalive_s: must be a whole number',
    );
  });

  it('substitutes inside driver options and simulator settings too, keeping their nulls', () => {
    const cfg = parseConfig(
      device('    transport: { type: simulated, simulator: { serial: "${SN}", extra: null } }\n    options: { token: "${T:-t0}", none: ~ }\n'),
      { env: { SN: 'GMF1' } },
    );
    const d = cfg.devices[0];
    expect(d?.transport).toEqual({ type: 'simulated', simulator: { serial: 'GMF1', extra: null } });
    expect(d?.options).toEqual({ token: 't0', none: null });
  });
});

describe('redactConfig', () => {
  it('hides passwords, keys, tokens and URL credentials, in a copy', () => {
    const cfg = parseConfig(
      [
        'mqtt:',
        '  url: "mqtts://poctd:urlpass@broker:8883"',
        '  username: poctd',
        '  password: ${PW}',
        '  cert: /etc/poctd/c.pem',
        '  key: /etc/poctd/k.pem',
        '  embedded: { username: dash, password: dashpw }',
        'privacy: { patient_id: hash, hash_key: "${HK}" }',
        'devices:',
        '  - id: a',
        '    driver: onetouch-ultra2',
        '    transport: { type: simulated }',
        '    options: { api_key: abc, station_password: def, label: keep }',
        '',
      ].join('\n'),
      { env: { PW: 'hunter2', HK: 'site-wide-hash-key-0123' } },
    );
    const red = redactConfig(cfg);
    expect(red.privacy.hash_key).toBe('***');
    expect(red.mqtt.password).toBe('***');
    expect(red.mqtt.key).toBe('***');
    expect(red.mqtt.embedded.password).toBe('***');
    expect(red.mqtt.url).toBe('mqtts://poctd:***@broker:8883');
    expect(red.devices[0]?.options).toEqual({ api_key: '***', station_password: '***', label: 'keep' });
    expect(red.mqtt.username).toBe('poctd');
    expect(red.mqtt.cert).toBe('/etc/poctd/c.pem');
    const text = JSON.stringify(red);
    for (const secret of ['hunter2', 'urlpass', 'dashpw', 'abc', 'def', 'site-wide-hash-key']) expect(text).not.toContain(secret);
    // the original is untouched
    expect(cfg.mqtt.password).toBe('hunter2');
    expect(cfg.mqtt.url).toContain('urlpass');
  });

  it('leaves absent secrets absent', () => {
    const red = redactConfig(parseConfig('', { env: {} }));
    expect(red.mqtt.password).toBeUndefined();
    expect(red).toEqual(parseConfig('', { env: {} }));
  });
});

describe('loadConfigFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'poctd-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a missing file is a ConfigError', () => {
    const file = join(dir, 'nope.yaml');
    expect(() => loadConfigFile(file)).toThrow(ConfigError);
    expect(() => loadConfigFile(file)).toThrow(`file not found: ${file}`);
  });

  it('resolves relative paths against the file directory and records the file on errors', () => {
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'store: { path: db/p.db }\n');
    expect(loadConfigFile(file, { env: {} }).store.path).toBe(join(dir, 'db/p.db'));
    writeFileSync(file, 'site: ok\nlog: { level: loud }\n');
    try {
      loadConfigFile(file, { env: {} });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).file).toBe(file);
      expect((err as ConfigError).problems).toEqual([
        { path: 'log.level', message: 'must be one of trace, debug, info, warn, error, fatal, silent', line: 2, column: 8 },
      ]);
    }
  });
});

describe('schema file', () => {
  it('documents every property', () => {
    const schema = JSON.parse(readFileSync(join(repo, 'schemas/config.schema.json'), 'utf8')) as unknown;
    const missing: string[] = [];
    const walk = (node: unknown, path: string): void => {
      if (!node || typeof node !== 'object') return;
      const n = node as Record<string, unknown>;
      if (n.properties && typeof n.properties === 'object') {
        for (const [k, v] of Object.entries(n.properties as Record<string, Record<string, unknown>>)) {
          if (typeof v.description !== 'string' || v.description.length < 5) missing.push(`${path}.${k}`);
          walk(v, `${path}.${k}`);
        }
      }
      for (const [k, v] of Object.entries(n)) if (k !== 'properties' && typeof v === 'object') walk(v, `${path}/${k}`);
    };
    walk(schema, '#');
    expect(missing).toEqual([]);
  });
});
