import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import { auditCommand } from '../../cli/audit.ts';
import { loadConfigFile } from '../../src/config/load.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { startDaemon, tempDir, ULTRA2_MEMORY } from '../helpers/daemon.ts';
import { freePort } from '../helpers/mosquitto.ts';

/**
 * Every device command and bridge request is audited under the user the embedded broker knows
 * (not the name the client claims), with the outcome; `poctd audit` prints the trail.
 */

const cleanups = useCleanups();

/** stdout and stderr into one text, as a terminal shows them. */
function sink(): { text: string; stdout: { write(t: string): void }; stderr: { write(t: string): void } } {
  const io = { text: '', stdout: { write: (t: string) => void (io.text += t) }, stderr: { write: (t: string) => void (io.text += t) } };
  return io;
}

describe('audit of who asked what', () => {
  it('a device command and a bridge request, each under its login; poctd audit prints them', async () => {
    const dir = tempDir('poctd-audit-');
    const port = await freePort();
    const file = join(dir, 'poctd.yaml');
    writeFileSync(
      file,
      `store: { path: ./poctd.db }\nhttp: { port: 0 }\nmqtt: { embedded: { port: ${port}, ws_port: 0 } }\n` +
        'access:\n  users:\n    - { name: op, roles: [operator], password: "op-password" }\n    - { name: lis, roles: [integration], password: "lis-password" }\n' +
        'devices:\n  - id: m1\n    driver: onetouch-ultra2\n    timezone: Europe/Copenhagen\n' +
        `    transport: { type: simulated, simulator: { serial: GMF600DCY, memory: ${JSON.stringify(ULTRA2_MEMORY)} } }\n`,
    );
    const config = loadConfigFile(file, { knownDrivers: drivers.map((d) => d.id) });
    const { controller } = await startDaemon(config);
    cleanups.push(() => controller.stop());

    const answer = async (user: string, password: string, request: string, response: string, body: unknown): Promise<unknown> => {
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { username: user, password, reconnectPeriod: 0 });
      cleanups.push(() => client.endAsync(true));
      await client.subscribeAsync(response, { qos: 1 });
      const got = new Promise<unknown>((resolve) => client.once('message', (_t, p) => resolve(JSON.parse(p.toString()))));
      await client.publishAsync(request, JSON.stringify(body), { qos: 1 });
      return got;
    };
    expect(await answer('op', 'op-password', 'poct/device/m1/request/download', 'poct/device/m1/response/download', { transaction: 't1', requested_by: 'mallory' })).toMatchObject({ status: 'ok', transaction: 't1' });
    expect(await answer('lis', 'lis-password', 'poct/bridge/request/results/replay', 'poct/bridge/response/results/replay', { since_seq: 0, transaction: 'r1', note: 'PAT-123' })).toMatchObject({ status: 'ok' });
    await controller.stop();

    const out = sink();
    expect(auditCommand(['--config', file], out)).toBe(0);
    const lines = out.text.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT\S+Z {2}op {2}m1 {2}download {2}ok transaction="t1"$/);
    expect(lines[1]).toMatch(/^\S+ {2}lis {2}bridge {2}results\/replay \{"since_seq":0,"note":"\[omitted\]"\} {2}ok transaction="r1"$/);
    expect(out.text).not.toContain('mallory');
    expect(out.text).not.toContain('PAT-123');

    const json = sink();
    expect(auditCommand(['--config', file, '--json', '--since', '2000-01-01'], json)).toBe(0);
    expect(JSON.parse(json.text.split('\n')[0]!)).toMatchObject({ device_id: 'm1', verb: 'download', requested_by: 'op', status: 'ok' });
    const future = sink();
    expect(auditCommand(['--config', file, '--since', '2999-01-01'], future)).toBe(0);
    expect(future.text).toBe('');
    expect(() => auditCommand(['--config', file, '--since', 'yesterday-ish'], sink())).toThrow('audit: --since "yesterday-ish" is not a date');
  });

  it('says which setting when there is no database', () => {
    const dir = tempDir('poctd-audit-');
    const file = join(dir, 'poctd.yaml');
    writeFileSync(file, 'store: { path: ./none.db }\n');
    const err = sink();
    expect(auditCommand(['--config', file], err)).toBe(1);
    expect(err.text).toBe(`poctd audit: no database at ${join(dir, 'none.db')} (store.path)\n`);
  });
});
