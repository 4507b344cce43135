import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { redactConfig } from '../../src/config/load.ts';
import type { PoctdConfig } from '../../src/config/types.ts';
import {
  AccessList,
  accessProblems,
  daemonAccess,
  filterMatches,
  filtersOverlap,
  hashPassword,
  mosquittoAcl,
  passwordHashProblem,
  Principal,
  redactRecord,
  verifyPassword,
} from '../../src/mqtt/access.ts';
import { EmbeddedBroker } from '../../src/mqtt/embedded-broker.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { testConfig } from '../helpers/daemon.ts';

const cleanups = useCleanups();

describe('topic filters', () => {
  it.each([
    ['a/+/c', 'a/b/c', true],
    ['a/+/c', 'a/b/d', false],
    ['a/#', 'a', true],
    ['a/#', 'a/b/c', true],
    ['a/+', 'a/b/c', false],
    ['a/b', 'a/b/c', false],
    ['a/b/c', 'a/b', false],
    ['#', 'x/y', true],
  ])('%s matches %s: %s', (filter, topic, expected) => expect(filterMatches(filter, topic)).toBe(expected));

  it.each([
    ['device/+/result', 'device/m1/#', true],
    ['device/+/result', '#', true],
    ['device/+/result', 'device/+/response/#', false],
    ['device/+', 'device/+/result', false],
    ['bridge/response/#', 'bridge/+/results/replay', true],
    ['bridge/state', 'bridge/health', false],
  ])('%s and %s overlap: %s', (a, b, expected) => {
    expect(filtersOverlap(a, b)).toBe(expected);
    expect(filtersOverlap(b, a)).toBe(expected);
  });
});

describe('Principal', () => {
  const viewer = new Principal('v', ['viewer'], 'poct');
  const operator = new Principal('o', ['operator'], 'poct');
  const both = new Principal('oc', ['operator', 'clinician'], 'poct');
  const daemon = new Principal('poctd', [], 'poct', true);

  it('a subscription is granted when it can receive something readable, refused when it cannot', () => {
    expect(viewer.maySubscribe('poct/#')).toBe(true);
    expect(viewer.maySubscribe('#')).toBe(true);
    expect(viewer.maySubscribe('poct/device/+/result')).toBe(true);
    expect(viewer.maySubscribe('poct/device/+/response/#')).toBe(false);
    expect(viewer.maySubscribe('poct/bridge/request/#')).toBe(false);
    expect(viewer.maySubscribe('other/#')).toBe(false);
    expect(viewer.maySubscribe('poct')).toBe(false);
    expect(operator.maySubscribe('poct/device/m1/response/download')).toBe(true);
    expect(operator.maySubscribe('poct/device/m1/response/send')).toBe(false);
  });

  it('reads: a role that reads results in full is not redacted by another role that redacts', () => {
    expect(viewer.read('poct/device/m1/result')).toBe('redacted');
    expect(operator.read('poct/device/m1/result')).toBe('redacted');
    expect(both.read('poct/device/m1/result')).toBe('full');
    expect(viewer.read('poct/device/m1/request/download')).toBe('none');
    expect(viewer.read('$SYS/broker/uptime')).toBe('none');
    expect(daemon.read('$SYS/broker/uptime')).toBe('none');
    expect(daemon.read('poct/device/m1/request/download')).toBe('full');
  });

  it('publish: never retained, never a wildcard or an empty level, never $SYS; the daemon anything under its base', () => {
    expect(operator.mayPublish('poct/device/m1/request/download', false)).toBe(true);
    expect(operator.mayPublish('poct/device/m1/request/download', true)).toBe(false);
    expect(operator.mayPublish('poct/device//request/download', false)).toBe(false);
    expect(operator.mayPublish('poct/device/m1/request/download/extra', false)).toBe(false);
    expect(operator.mayPublish('poct/device/m1/request/send', false)).toBe(false);
    expect(daemon.mayPublish('poct/bridge/state', true)).toBe(true);
    expect(daemon.mayPublish('$SYS/x', false)).toBe(false);
  });
});

describe('passwords', () => {
  it('a salted scrypt hash verifies its password only; two hashes of one password differ', () => {
    const a = hashPassword('s3cret-password');
    const b = hashPassword('s3cret-password');
    expect(a).not.toBe(b);
    expect(a).toMatch(/^scrypt\$16384\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    expect(verifyPassword('s3cret-password', a)).toBe(true);
    expect(verifyPassword('s3cret-passworD', a)).toBe(false);
    expect(verifyPassword('', a)).toBe(false);
  });

  it('a malformed or weak hash is named and never verifies', () => {
    expect(passwordHashProblem('plain-text')).toMatch(/scrypt\$N\$r\$p\$salt\$hash/);
    const weak = hashPassword('x').replace('scrypt$16384$', 'scrypt$16$');
    expect(passwordHashProblem(weak)).toMatch(/power of two/);
    expect(verifyPassword('x', weak)).toBe(false);
    expect(passwordHashProblem(hashPassword('x'))).toBeUndefined();
  });

  it('the access list: wrong password, unknown user, no password are all refused', () => {
    const list = new AccessList('poct', { name: 'poctd', password: 'daemon-pw' }, [
      { name: 'ann', roles: ['clinician'], hashed_password: hashPassword('ann-password') },
      { name: 'lis', roles: ['integration'], password: 'lis-password' },
    ]);
    expect(list.authenticate('ann', 'ann-password')?.roles).toEqual(['clinician']);
    expect(list.authenticate('ann', 'ann-password')?.roles).toEqual(['clinician']); // the remembered check
    expect(list.authenticate('ann', 'lis-password')).toBeUndefined();
    expect(list.authenticate('lis', 'lis-password')?.isDaemon).toBe(false);
    expect(list.authenticate('poctd', 'daemon-pw')?.isDaemon).toBe(true);
    expect(list.authenticate('poctd', 'daemon-pW')).toBeUndefined();
    expect(list.authenticate('nobody', 'x')).toBeUndefined();
    expect(list.authenticate(undefined, undefined)).toBeUndefined();
    expect(list.authenticate('lis', undefined)).toBeUndefined();
  });

  it('config problems name the entry', () => {
    expect(
      accessProblems(
        [
          { name: 'poctd', roles: ['admin'], password: 'x'.repeat(8) },
          { name: 'a', roles: ['viewer'] },
          { name: 'a', roles: ['viewer'], password: 'p'.repeat(8), hashed_password: hashPassword('p') },
          { name: 'b', roles: ['viewer'], hashed_password: 'scrypt$3$8$1$AAAA$AAAA' },
        ],
        'poctd',
      ),
    ).toEqual([
      `access.users[0].name: "poctd" is the daemon's own account (mqtt.embedded.username)`,
      'access.users[1]: give exactly one of hashed_password (poctd user add) or password (from ${ENV})',
      'access.users[2].name: "a" is listed twice',
      'access.users[2]: give exactly one of hashed_password (poctd user add) or password (from ${ENV})',
      'access.users[3].hashed_password: N must be a power of two from 1024 to 1048576',
    ]);
  });
});

describe('redaction for roles without patient ids', () => {
  const record = { schema: 'poct.result/2', id: 'x', patient: { id: 'PAT-1' }, specimen: { id: 'S1', type: null }, category: 'control' };

  it('takes the patient id out and keeps everything else, category included', () => {
    const out = JSON.parse(redactRecord(Buffer.from(JSON.stringify(record)))!.toString()) as typeof record;
    expect(out).toEqual({ ...record, patient: { id: null } });
  });

  it('a payload that is not a known record is not forwarded at all (undefined)', () => {
    expect(redactRecord(Buffer.from('not json'))).toBeUndefined();
    expect(redactRecord(Buffer.from('[1]'))).toBeUndefined();
    expect(redactRecord(Buffer.from(JSON.stringify({ ...record, schema: 'poct.result/9' })))).toBeUndefined();
  });
});

describe('the zero-config accounts', () => {
  it('no users: a local operator whose password is made once, kept 0600 beside the database, and reused', () => {
    const config = testConfig('');
    const first = daemonAccess(config);
    expect(first.localOperator?.name).toBe('operator');
    const file = first.localOperator!.file;
    expect(file).toBe(join(config.store.path, '..', 'local-operator.secret'));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const password = readFileSync(file, 'utf8').trim();
    expect(password.length).toBeGreaterThanOrEqual(16);
    expect(first.list.authenticate('operator', password)?.roles).toEqual(['operator']);
    const second = daemonAccess(config);
    expect(second.list.authenticate('operator', password)).toBeDefined();
    // The daemon's own password is new at every start and works only for that start.
    expect(second.list.authenticate('poctd', first.daemon.password)).toBeUndefined();
    expect(second.list.authenticate('poctd', second.daemon.password)?.isDaemon).toBe(true);
  });

  it('configured users, or local_operator false: no local operator account', () => {
    const withUsers = testConfig('access:\n  users:\n    - { name: ann, roles: [viewer], password: "${PW}" }\n', { PW: 'ann-password' });
    expect(daemonAccess(withUsers).localOperator).toBeUndefined();
    expect(daemonAccess(withUsers).list.authenticate('operator', 'anything')).toBeUndefined();
    const off: PoctdConfig = testConfig('access: { local_operator: false }\n');
    expect(daemonAccess(off).localOperator).toBeUndefined();
  });

  it('a password file too short to be one of ours is replaced', () => {
    const config = testConfig('');
    writeFileSync(join(config.store.path, '..', 'local-operator.secret'), 'short\n');
    const access = daemonAccess(config);
    expect(readFileSync(access.localOperator!.file, 'utf8').trim()).not.toBe('short');
  });
});

describe('bridge/info', () => {
  it('shows users and roles, never a password or its hash', () => {
    const hash = hashPassword('ann-password');
    const config = testConfig(
      `access:\n  users:\n    - { name: ann, roles: [clinician], hashed_password: "${hash}" }\n    - { name: lis, roles: [integration], password: "\${PW}" }\n`,
      { PW: 'lis-password' },
    );
    const shown = JSON.stringify(redactConfig(config));
    expect(shown).not.toContain(hash.split('$')[5]);
    expect(shown).not.toContain('lis-password');
    expect(redactConfig(config).access?.users).toEqual([
      { name: 'ann', roles: ['clinician'], hashed_password: '***' },
      { name: 'lis', roles: ['integration'], password: '***' },
    ]);
  });
});

describe('Mosquitto ACL', () => {
  it('the daemon gets the base, each user its roles; a redacted read is left out (Mosquitto cannot redact)', () => {
    const acl = mosquittoAcl('poct', 'poctd', [{ name: 'v1', roles: ['viewer'] }]);
    expect(acl).toContain('user poctd\ntopic readwrite poct/#\n');
    expect(acl).toContain('user v1\ntopic read poct/bridge/state\n');
    expect(acl).not.toContain('poct/device/+/result');
    expect(acl).not.toMatch(/user v1[\s\S]*topic write/);
  });
});

describe('the WebSocket listener checks the page origin', () => {
  async function upgradeStatus(url: string, origin?: string): Promise<number | 'open'> {
    const ws = new WebSocket(url, 'mqtt', origin ? { origin } : {});
    return new Promise((resolve) => {
      ws.once('open', () => {
        ws.close();
        resolve('open');
      });
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('error', () => undefined);
    });
  }

  it('a foreign Origin gets 403; no Origin (not a browser page) or an allowed one opens', async () => {
    const { freePort } = await import('../helpers/mosquitto.ts');
    const wsPort = await freePort();
    const broker = new EmbeddedBroker(
      { host: '127.0.0.1', port: 0, ws_port: wsPort, username: 'u', password: 'p' },
      { allowOrigin: (origin) => origin === 'http://127.0.0.1:8080' },
    );
    await broker.start();
    cleanups.push(() => broker.stop());
    const url = `ws://127.0.0.1:${wsPort}`;
    expect(await upgradeStatus(url, 'http://evil.example')).toBe(403);
    expect(await upgradeStatus(url, 'http://127.0.0.1:8081')).toBe(403);
    expect(await upgradeStatus(url, 'null')).toBe(403);
    expect(await upgradeStatus(url, 'http://127.0.0.1:8080')).toBe('open');
    expect(await upgradeStatus(url)).toBe('open');
    // A plain request is answered (426), not left hanging.
    const plain = await fetch(`http://127.0.0.1:${wsPort}/`);
    expect(plain.status).toBe(426);
    expect(await plain.text()).toBe('This port speaks MQTT over WebSocket only; the dashboard is on http.port.\n');
  });

  it('by default only a page of the request\'s own origin', async () => {
    const { freePort } = await import('../helpers/mosquitto.ts');
    const wsPort = await freePort();
    const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, ws_port: wsPort, username: 'u', password: 'p' });
    await broker.start();
    cleanups.push(() => broker.stop());
    const url = `ws://127.0.0.1:${wsPort}`;
    expect(await upgradeStatus(url, `http://127.0.0.1:${wsPort}`)).toBe('open');
    expect(await upgradeStatus(url, `http://localhost:${wsPort}`)).toBe(403);
    expect(await upgradeStatus(url, 'http://evil.example')).toBe(403);
  });
});

describe('embedded broker: one message, several readers', () => {
  it('each redacting subscriber gets the redacted record, a full reader the original, from the same publish', async () => {
    const mqtt = (await import('mqtt')).default;
    const access = new AccessList('poct', { name: 'poctd', password: 'daemon-pw' }, [
      { name: 'v1', roles: ['viewer'], password: 'viewer-pw-1' },
      { name: 'v2', roles: ['viewer'], password: 'viewer-pw-2' },
      { name: 'doc', roles: ['clinician'], password: 'doc-password' },
    ]);
    const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, ws_port: 0 }, { access });
    await broker.start();
    cleanups.push(() => broker.stop());
    const record = { schema: 'poct.result/2', id: 'x', patient: { id: 'PAT-1' }, specimen: { id: 'S1', type: null }, category: 'patient' };
    const readers = await Promise.all(
      (
        [
          ['v1', 'viewer-pw-1'],
          ['v2', 'viewer-pw-2'],
          ['doc', 'doc-password'],
        ] as const
      ).map(async ([username, password]) => {
        const client = await mqtt.connectAsync(broker.url, { username, password, reconnectPeriod: 0 });
        cleanups.push(() => client.endAsync(true));
        const got = new Promise<unknown>((resolve) => client.once('message', (_topic, payload: Buffer) => resolve(JSON.parse(payload.toString()))));
        await client.subscribeAsync('poct/device/m1/result', { qos: 1 });
        // Wrapped: an async function returning the promise itself would wait for the message.
        return { got };
      }),
    );
    const daemon = await mqtt.connectAsync(broker.url, { username: 'poctd', password: 'daemon-pw', reconnectPeriod: 0 });
    cleanups.push(() => daemon.endAsync(true));
    await daemon.publishAsync('poct/device/m1/result', JSON.stringify(record), { qos: 1 });
    expect(await Promise.all(readers.map((r) => r.got))).toEqual([{ ...record, patient: { id: null } }, { ...record, patient: { id: null } }, record]);
  });
});
