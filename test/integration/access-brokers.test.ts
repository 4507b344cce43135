import { execFileSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AccessList, hashPassword, mosquittoAcl, type Role } from '../../src/mqtt/access.ts';
import { EmbeddedBroker } from '../../src/mqtt/embedded-broker.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { tempDir } from '../helpers/daemon.ts';
import { Mosquitto } from '../helpers/mosquitto.ts';
import { requireTool } from '../helpers/tools.ts';
import { connectOutcome as connectOutcomeWith } from '../helpers/connect-outcome.ts';

/**
 * The access matrix, written out by hand (not derived from access.ts, so a wrong rule there
 * fails here), checked on the embedded broker and on Mosquitto running the ACL that
 * `mosquittoAcl` generates. Each role's client subscribes to every topic of the table and the
 * daemon's account publishes on each; a last message that every role reads marks the end, so
 * "not received" is known without waiting on a timer. Each publish case has a connection of its
 * own (aedes closes a client whose publish is refused) and the daemon's account listens.
 */

const cleanups = useCleanups();

const ROLES: Role[] = ['viewer', 'clinician', 'operator', 'integration', 'admin'];
const PASSWORDS: Record<Role, string> = {
  viewer: 'viewer-pass-1',
  clinician: 'clinician-pass-2',
  operator: 'operator-pass-3',
  integration: 'integration-pass-4',
  admin: 'admin-pass-5',
};
const DAEMON = { name: 'poctd-daemon', password: 'daemon-secret-0' };
/** Every role reads events: the end-of-test marker. */
const MARKER = 'poct/bridge/event';

const RESULT = {
  schema: 'poct.result/2',
  id: '5c0e0a8b0f3d4c0b9a0d7f61e2b4c3aa',
  seq: 2,
  site: 'clinic-a',
  device: { id: 'm1', driver: 'onetouch-ultra2', manufacturer: 'LifeScan', model: 'OneTouch Ultra 2', serial: 'GMF600DCY', firmware: null },
  category: 'patient',
  specimen: { id: null, type: 'capillary blood' },
  patient: { id: 'PAT-0042' },
  operator: null,
  observed_at: '2015-03-21T16:42:11+01:00',
  device_time: '2015-03-21T16:42:11',
  received_at: '2026-11-22T09:14:03.120Z',
  observations: [{ code: 'GLU', name: 'Glucose', loinc: '41653-7', value: 105, unit: 'mg/dL', ucum: 'mg/dL', flags: [], text: null, comparator: null }],
  flags: [],
  raw: { sha256: 'ab'.repeat(32), size: 10, kind: 'raw' },
};

type Seen = 'full' | 'redacted' | 'none';
const F = 'full' as const;
const R = 'redacted' as const;
const N = 'none' as const;

/** What each role receives of a message the daemon publishes there: viewer, clinician, operator, integration, admin. */
const READS: Array<[string, Seen, Seen, Seen, Seen, Seen]> = [
  ['poct/bridge/state', F, F, F, F, F],
  ['poct/bridge/info', F, F, F, F, F],
  ['poct/bridge/devices', F, F, F, F, F],
  ['poct/bridge/health', F, F, F, F, F],
  ['poct/device/m1', F, F, F, F, F],
  ['poct/device/m1/availability', F, F, F, F, F],
  ['poct/device/m1/result', R, F, R, F, F],
  ['poct/device/m1/response/download', N, N, F, N, F],
  ['poct/device/m1/response/clock/sync', N, N, F, N, F],
  ['poct/device/m1/response/print', N, N, F, N, F],
  ['poct/device/m1/response/jobs', N, N, F, N, F],
  ['poct/device/m1/response/cancel', N, N, F, N, F],
  ['poct/device/m1/response/confirm', N, N, F, N, F],
  ['poct/device/m1/response/send', N, N, N, N, F],
  ['poct/bridge/response/results/replay', N, N, N, F, F],
  ['poct/bridge/response/republish', N, N, N, N, F],
  ['poct/device/m1/request/download', N, N, N, N, N],
  ['poct/bridge/request/republish', N, N, N, N, N],
  ['elsewhere/topic', N, N, N, N, N],
];

/** Whether each role's publish gets through (never retained): viewer, clinician, operator, integration, admin. */
const PUBLISHES: Array<[string, boolean, boolean, boolean, boolean, boolean]> = [
  ['poct/device/m1/request/download', false, false, true, false, true],
  ['poct/device/m1/request/clock/sync', false, false, true, false, true],
  ['poct/device/m1/request/print', false, false, true, false, true],
  ['poct/device/m1/request/preview', false, false, true, false, true],
  ['poct/device/m1/request/jobs', false, false, true, false, true],
  ['poct/device/m1/request/cancel', false, false, true, false, true],
  ['poct/device/m1/request/confirm', false, false, true, false, true],
  ['poct/device/m1/request/status', false, false, true, false, true],
  ['poct/device/m1/request/send', false, false, false, false, true],
  ['poct/bridge/request/results/replay', false, false, false, true, true],
  ['poct/bridge/request/republish', false, false, false, false, true],
  ['poct/bridge/request/config/reload', false, false, false, false, true],
  ['poct/device/m1/result', false, false, false, false, false],
  ['poct/device/m1', false, false, false, false, false],
  ['poct/device/m1/availability', false, false, false, false, false],
  ['poct/device/m1/response/download', false, false, false, false, false],
  ['poct/bridge/state', false, false, false, false, false],
  ['poct/bridge/event', false, false, false, false, false],
  ['poct/bridge/response/results/replay', false, false, false, false, false],
  ['elsewhere/topic', false, false, false, false, false],
];

interface BrokerUnderTest {
  url: string;
  /** Mosquitto cannot rewrite a payload: there a redacted read is no read at all. */
  redacts: boolean;
  /** aedes also refuses a retained publish from anyone but the daemon; Mosquitto has no such rule. */
  refusesRetain: boolean;
  stop: () => Promise<unknown>;
}

function payloadFor(topic: string): string {
  return topic.endsWith('/result') ? JSON.stringify(RESULT) : JSON.stringify({ topic });
}

async function login(url: string, username: string | undefined, password: string | undefined, extra: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, username, password, ...extra });
  cleanups.push(() => client.endAsync(true));
  return client;
}

/** `connected`, or the CONNACK return code of the refusal. */
function connectOutcome(url: string, username?: string, password?: string): Promise<'connected' | number | string> {
  return connectOutcomeWith(url, { username, password });
}

/** Subscribes; a refusal (128 in the SUBACK, which mqtt.js rejects) is one of the outcomes under test. */
async function subscribeMaybe(client: MqttClient, topic: string): Promise<void> {
  await client.subscribeAsync(topic, { qos: 1 }).catch((e: Error) => {
    if (!/Subscribe error/.test(e.message)) throw e;
  });
}

/** Messages the client gets until the marker arrives. */
function collectUntilMarker(client: MqttClient): Promise<Map<string, Buffer>> {
  const got = new Map<string, Buffer>();
  return new Promise((resolve) => {
    client.on('message', (topic, payload) => {
      if (topic === MARKER) resolve(got);
      else got.set(topic, payload);
    });
  });
}

function seenAs(payload: Buffer | undefined): Seen {
  if (!payload) return 'none';
  const body = JSON.parse(payload.toString()) as { patient?: { id: string | null } };
  if (body.patient === undefined) return 'full';
  return body.patient.id === 'PAT-0042' ? 'full' : body.patient.id === null ? 'redacted' : ('other' as Seen);
}

/** Publishes once on a fresh connection; true when the daemon's listener received it. */
async function publishGetsThrough(broker: BrokerUnderTest, role: Role, topic: string, retain = false): Promise<boolean> {
  const daemon = await login(broker.url, DAEMON.name, DAEMON.password);
  await daemon.subscribeAsync(['poct/#', 'elsewhere/#'], { qos: 1 });
  const received = collectUntilMarker(daemon);
  const client = await login(broker.url, role, PASSWORDS[role]);
  // A refused publish either closes the connection (aedes) or is acknowledged and dropped (Mosquitto).
  await new Promise<void>((resolve) => {
    client.once('close', () => resolve());
    client.publish(topic, JSON.stringify({ transaction: `${role}-${topic}` }), { qos: 1, retain }, () => resolve());
  });
  await daemon.publishAsync(MARKER, '{}', { qos: 1 });
  const got = await received;
  return got.has(topic);
}

function describeBroker(name: string, setUp: () => Promise<BrokerUnderTest>): void {
  describe(name, () => {
    let broker: BrokerUnderTest;
    beforeAll(async () => {
      broker = await setUp();
    });
    afterAll(() => broker?.stop());

    it.each(ROLES.map((role, i) => [role, i] as const))('%s reads what the matrix says, and nothing else', async (role, i) => {
      const client = await login(broker.url, role, PASSWORDS[role]);
      const got = collectUntilMarker(client);
      // One subscription per topic (refused ones are 128 in the SUBACK), then the marker's.
      for (const [topic] of READS) await subscribeMaybe(client, topic);
      await client.subscribeAsync(MARKER, { qos: 1 });
      const daemon = await login(broker.url, DAEMON.name, DAEMON.password);
      for (const [topic] of READS) await daemon.publishAsync(topic, payloadFor(topic), { qos: 1 });
      await daemon.publishAsync(MARKER, '{}', { qos: 1 });
      const received = await got;
      const expected = READS.map(([topic, ...seen]) => [topic, seen[i] === 'redacted' && !broker.redacts ? 'none' : seen[i]]);
      expect(READS.map(([topic]) => [topic, seenAs(received.get(topic))])).toEqual(expected);
    });

    it.each(ROLES.map((role, i) => [role, i] as const))('%s publishes only where the matrix says', async (role, i) => {
      const outcome: Array<[string, boolean]> = [];
      for (const [topic] of PUBLISHES) outcome.push([topic, await publishGetsThrough(broker, role, topic)]);
      expect(outcome).toEqual(PUBLISHES.map(([topic, ...allowed]) => [topic, allowed[i]]));
    });

    it('a label preview (a picture of the patient\'s name) reaches only the user who asked on aedes; on Mosquitto, every role that reads the responses', async () => {
      const seen = async (role: Role): Promise<{ client: MqttClient; got: Promise<string[]> }> => {
        const client = await login(broker.url, role, PASSWORDS[role]);
        const got = new Promise<string[]>((resolve) => {
          const list: string[] = [];
          client.on('message', (topic, payload) => {
            if (topic === MARKER) resolve(list);
            else list.push(`${topic.split('/').pop()}:${(JSON.parse(payload.toString()) as { transaction?: string }).transaction}`);
          });
        });
        await client.subscribeAsync(['poct/device/m1/response/#', MARKER], { qos: 1 });
        return { client, got };
      };
      const asker = await seen('operator');
      const other = await seen('admin');
      // The broker notes who asked when it takes the request (PUBACK), before any answer exists.
      await asker.client.publishAsync('poct/device/m1/request/preview', JSON.stringify({ transaction: 'pv-1', template: 'specimen' }), { qos: 1 });
      const daemon = await login(broker.url, DAEMON.name, DAEMON.password);
      await daemon.publishAsync('poct/device/m1/response/preview', JSON.stringify({ status: 'ok', data: { png: 'iVBOR' }, error: null, transaction: 'pv-1' }), { qos: 1 });
      await daemon.publishAsync('poct/device/m1/response/preview', JSON.stringify({ status: 'ok', data: { png: 'iVBOR' }, error: null, transaction: 'nobody-asked' }), { qos: 1 });
      await daemon.publishAsync('poct/device/m1/response/print', JSON.stringify({ status: 'ok', data: null, error: null, transaction: 'pr-1' }), { qos: 1 });
      await daemon.publishAsync(MARKER, '{}', { qos: 1 });
      if (broker.redacts) {
        expect(await asker.got).toEqual(['preview:pv-1', 'print:pr-1']);
        expect(await other.got).toEqual(['print:pr-1']);
      } else {
        // Mosquitto routes by topic only: the README says to keep such users on the embedded broker.
        expect(await asker.got).toEqual(['preview:pv-1', 'preview:nobody-asked', 'print:pr-1']);
        expect(await other.got).toEqual(['preview:pv-1', 'preview:nobody-asked', 'print:pr-1']);
      }
    });

    it('a retained request from an unprivileged client is refused and never kept', async () => {
      expect(await publishGetsThrough(broker, 'viewer', 'poct/device/m1/request/download', true)).toBe(false);
      expect(await publishGetsThrough(broker, 'integration', 'poct/device/m1/request/download', true)).toBe(false);
      // A client that subscribes afterwards gets no retained request.
      const admin = await login(broker.url, 'admin', PASSWORDS.admin);
      const got = collectUntilMarker(admin);
      await subscribeMaybe(admin, 'poct/device/m1/request/#');
      await admin.subscribeAsync(MARKER, { qos: 1 });
      const daemon = await login(broker.url, DAEMON.name, DAEMON.password);
      await daemon.publishAsync(MARKER, '{}', { qos: 1 });
      expect([...(await got).keys()]).toEqual([]);
    });

    it('a retained request from an operator: refused where the broker can tell (aedes)', async () => {
      const through = await publishGetsThrough(broker, 'operator', 'poct/device/m1/request/download', true);
      expect(through).toBe(!broker.refusesRetain);
    });

    it('a wrong password, an unknown user and a client with no user are refused (return code 4 or 5)', async () => {
      expect(await connectOutcome(broker.url, 'admin', 'not-the-password')).toSatisfy((c) => c === 4 || c === 5);
      expect(await connectOutcome(broker.url, 'nobody', 'whatever-1')).toSatisfy((c) => c === 4 || c === 5);
      expect(await connectOutcome(broker.url)).toSatisfy((c) => c === 4 || c === 5);
      expect(await connectOutcome(broker.url, 'viewer')).toSatisfy((c) => c === 4 || c === 5);
      expect(await connectOutcome(broker.url, 'viewer', PASSWORDS.viewer)).toBe('connected');
    });
  });
}

describeBroker('embedded broker (aedes)', async () => {
  const users = ROLES.map((role) => ({ name: role, roles: [role], hashed_password: hashPassword(PASSWORDS[role]) }));
  const broker = new EmbeddedBroker(
    { host: '127.0.0.1', port: 0, ws_port: 0 },
    { access: new AccessList('poct', DAEMON, users), configuredUsers: users.length },
  );
  await broker.start();
  return { url: broker.url, redacts: true, refusesRetain: true, stop: () => broker.stop() };
});

describeBroker('Mosquitto with the generated ACL', async () => {
  const passwd = requireTool('mosquitto_passwd', 'mosquitto');
  const dir = tempDir('poctd-acl-');
  chmodSync(dir, 0o755);
  const passwordFile = join(dir, 'passwd');
  writeFileSync(passwordFile, '');
  for (const [name, password] of [[DAEMON.name, DAEMON.password], ...ROLES.map((r) => [r, PASSWORDS[r]])] as Array<[string, string]>) {
    execFileSync(passwd, ['-b', passwordFile, name, password]);
  }
  const aclFile = join(dir, 'acl');
  writeFileSync(aclFile, mosquittoAcl('poct', DAEMON.name, ROLES.map((role) => ({ name: role, roles: [role] }))));
  for (const f of [passwordFile, aclFile]) chmodSync(f, 0o644);
  const mosquitto = await Mosquitto.start({ extraConfig: `allow_anonymous false\npassword_file ${passwordFile}\nacl_file ${aclFile}\n` });
  return { url: mosquitto.url, redacts: false, refusesRetain: false, stop: () => mosquitto.stop() };
});

describe('the embedded broker and persistent sessions', () => {
  it('a role that reads results redacted is refused a persistent session (queued messages would skip the redaction); others keep theirs', async () => {
    const users = (['viewer', 'operator', 'clinician'] as Role[]).map((role) => ({ name: role, roles: [role], password: PASSWORDS[role] }));
    const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, ws_port: 0 }, { access: new AccessList('poct', DAEMON, users), configuredUsers: users.length });
    await broker.start();
    cleanups.push(() => broker.stop());
    const outcome = async (role: Role, clean: boolean): Promise<string | number> => {
      const client = mqtt.connect(broker.url, { username: role, password: PASSWORDS[role], clean, clientId: `${role}-${clean}`, reconnectPeriod: 0 });
      try {
        return await new Promise((resolve) => {
          client.once('connect', () => resolve('connected'));
          client.once('error', (e: Error & { code?: number }) => resolve(e.code ?? e.message));
        });
      } finally {
        client.end(true);
      }
    };
    expect(await outcome('viewer', false)).toBe(5);
    expect(await outcome('operator', false)).toBe(5);
    expect(await outcome('viewer', true)).toBe('connected');
    expect(await outcome('clinician', false)).toBe('connected');
  });
});

describe('the embedded broker stamps requests with the user who sent them', () => {
  it('requested_by is the login name, whatever the client wrote', async () => {
    const users = [{ name: 'op1', roles: ['operator' as Role], password: 'op1-password' }];
    const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, ws_port: 0 }, { access: new AccessList('poct', DAEMON, users), configuredUsers: 1 });
    await broker.start();
    cleanups.push(() => broker.stop());
    const daemon = await login(broker.url, DAEMON.name, DAEMON.password);
    await daemon.subscribeAsync('poct/device/+/request/#', { qos: 1 });
    const got = new Promise<unknown>((resolve) => daemon.once('message', (_t, p) => resolve(JSON.parse(p.toString()))));
    const op = await login(broker.url, 'op1', 'op1-password');
    await op.publishAsync('poct/device/m1/request/download', JSON.stringify({ transaction: 't1', requested_by: 'someone-else' }), { qos: 1 });
    expect(await got).toEqual({ transaction: 't1', requested_by: 'op1' });
  });
});
