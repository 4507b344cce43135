import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDocument } from 'yaml';
import { describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import { ConfigError, daemonConfigOptions, parseConfig, type ParseConfigOptions } from '../../src/config/load.ts';
import { isLoopbackHost } from '../../src/mqtt/embedded-broker.ts';
import { tempDir } from '../helpers/daemon.ts';

const repo = resolve(fileURLToPath(new URL('../..', import.meta.url)));
/** What `run` and `check-config` load a config with; the host checks are exercised on their own below. */
const schemaOnly: ParseConfigOptions = { ...daemonConfigOptions(drivers), hostChecks: false, env: { POCTD_MQTT_PASSWORD: 'x', POCTD_BROKER_PASSWORD: 'y' } };

function problems(yaml: string, opts: ParseConfigOptions = schemaOnly): string[] {
  try {
    parseConfig(yaml, opts);
    return [];
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return error.problems.map((p) => `${p.line ?? '-'}:${p.column ?? '-'} ${p.path}: ${p.message}`);
  }
}

const device = (driver: string, extra: string[], transport = '{ type: serial, path: /dev/ttyUSB0 }'): string =>
  ['devices:', '  - id: d1', `    driver: ${driver}`, `    transport: ${transport}`, ...extra.map((l) => `    ${l}`), ''].join('\n');

describe('driver options are checked against the driver\'s schema, with line, column and did-you-mean', () => {
  it('every driver declares a schema for its options', () => {
    expect(drivers.filter((d) => !d.optionsSchema).map((d) => d.id)).toEqual([]);
  });

  it('an unknown key, with the key it was probably meant to be', () => {
    expect(problems(device('onetouch-ultra2', ['options:', '  reply_timout_ms: 500']))).toEqual([
      '6:7 devices[0].options.reply_timout_ms: unknown key (did you mean "reply_timeout_ms"?)',
    ]);
  });

  it('a wrong type and a value below the minimum', () => {
    expect(problems(device('onetouch-ultraeasy', ['options: { reply_timeout_ms: soon, retries: -1 }']))).toEqual([
      '5:16 devices[0].options.reply_timeout_ms: must be a number',
      '5:40 devices[0].options.retries: must be >= 0',
    ]);
  });

  it('a CLINITEK date_order that is not one of the three', () => {
    expect(problems(device('clinitek-status', ['options: { date_order: DDMM }']))).toEqual([
      '5:16 devices[0].options.date_order: must be one of DMY, MDY, YMD',
    ]);
    expect(problems(device('clinitek-50', ['options: { date_order: MDY }']))).toEqual([]);
  });

  it('an ASTM dialect that does not exist, and a mapping without its name', () => {
    const found = problems(device('astm', ['options:', '  dialect: cobas', '  mappings: { "550": { loinc: 1920-8 } }']));
    expect(found[0]).toMatch(/^6:7 devices\[0\]\.options\.dialect: must be one of roche-cobas-c111, /);
    expect(found[1]).toBe('7:19 devices[0].options.mappings["550"].name: required');
    expect(found).toHaveLength(2);
  });

  it('a FreeStyle model that does not exist', () => {
    expect(problems(device('freestyle-hid', ['options: { model: libre3 }'], '{ type: hid, vendor_id: "1a61", product_id: "3650" }'))[0]).toMatch(
      /devices\[0\]\.options\.model: must be one of insulinx, neo, libre/,
    );
  });

  it("a simulator option the driver's simulator does not have", () => {
    expect(problems(device('onetouch-ultra2', [], '{ type: simulated, simulator: { serail: GMF600DCY } }'))).toEqual([
      '4:48 devices[0].transport.simulator.serail: unknown key (did you mean "serial"?)',
    ]);
    expect(problems(device('onetouch-ultra2', [], '{ type: simulated, simulator: { serial: GMF600DCY, timezone: UTC } }'))).toEqual([]);
  });
});

describe('what start-up refuses on this host is refused by the loader too', () => {
  const withHost: ParseConfigOptions = { ...schemaOnly, hostChecks: true };

  it('TLS files that are not there', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'ca.pem'), 'x');
    const found = problems(
      `store: { path: ./p.db }\nmqtt:\n  url: mqtts://b:8883\n  ca: ca.pem\n  cert: missing.crt\n  key: missing.key\n`,
      { ...withHost, baseDir: dir },
    );
    expect(found).toEqual([
      `5:3 mqtt.cert: cannot read ${join(dir, 'missing.crt')}: ENOENT (no such file)`,
      `6:3 mqtt.key: cannot read ${join(dir, 'missing.key')}: ENOENT (no such file)`,
    ]);
  });

  it('an embedded broker on 0.0.0.0 without credentials; with them it passes', () => {
    const dir = tempDir();
    expect(problems('store: { path: ./p.db }\nmqtt: { embedded: { host: 0.0.0.0 } }\n', { ...withHost, baseDir: dir })).toEqual([
      '2:21 mqtt.embedded.host: the embedded broker would listen on 0.0.0.0 with no credentials; set mqtt.embedded.username and mqtt.embedded.password, or keep host 127.0.0.1',
    ]);
    expect(problems('store: { path: ./p.db }\nmqtt: { embedded: { host: 0.0.0.0, username: u, password: pw } }\n', { ...withHost, baseDir: dir })).toEqual([]);
  });

  it('the loader and the embedded broker agree on what loopback is', () => {
    const dir = tempDir();
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', '0.0.0.0', '::', '10.0.0.5', 'broker.lan']) {
      const refused = problems(`store: { path: ./p.db }\nmqtt: { embedded: { host: "${host}" } }\n`, { ...withHost, baseDir: dir }).length > 0;
      expect(refused, host).toBe(!isLoopbackHost(host));
    }
  });

  it('a store path that cannot be opened: under a file, a directory, :memory:', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'plain-file'), '');
    mkdirSync(join(dir, 'a-directory.db'));
    expect(problems('store: { path: ./plain-file/poctd.db }\n', { ...withHost, baseDir: dir })).toEqual([
      `1:10 store.path: cannot open ${join(dir, 'plain-file/poctd.db')}: ENOTDIR (a path component is not a directory)`,
    ]);
    expect(problems('store: { path: ./a-directory.db }\n', { ...withHost, baseDir: dir })).toEqual([`1:10 store.path: ${join(dir, 'a-directory.db')} is not a file`]);
    expect(problems('store: { path: ":memory:" }\n', { ...withHost, baseDir: dir })).toEqual(['1:10 store.path: the daemon needs a database file, not :memory:']);
    expect(problems('store: { path: ./new/sub/poctd.db }\n', { ...withHost, baseDir: dir })).toEqual([]);
  });
});

describe('config/example.yaml and the README name only what exists', () => {
  const example = readFileSync(join(repo, 'config', 'example.yaml'), 'utf8');

  it('config/example.yaml passes the whole check, every device with a registered driver', () => {
    expect(problems(example)).toEqual([]);
    const doc = parseDocument(example).toJS() as { devices: Array<{ driver: string }> };
    const ids = drivers.map((d) => d.id);
    for (const d of doc.devices) expect(ids).toContain(d.driver);
    expect(doc.devices.length).toBeGreaterThan(3);
  });

  it('the check is not blind: a misspelt key or driver in the example is found', () => {
    expect(problems(example.replace('keepalive_s:', 'keepalive:'))[0]).toMatch(/mqtt\.keepalive: unknown key/);
    expect(problems(example.replace('driver: clinitek-status', 'driver: clinitek-stat'))[0]).toMatch(/unknown driver "clinitek-stat"/);
    expect(problems(example.replace('date_order: DMY', 'date_order: DM'))[0]).toMatch(/date_order: must be one of/);
  });

  it("the README's configuration example passes the same check", () => {
    const readme = readFileSync(join(repo, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Configuration'));
    const yaml = /```yaml\n([\s\S]*?)```/.exec(section)![1]!;
    expect(problems(yaml)).toEqual([]);
    expect(yaml).toMatch(/driver: /);
  });
});
