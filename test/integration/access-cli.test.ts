import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { aclCommand } from '../../cli/acl.ts';
import { main } from '../../cli/main.ts';
import { userCommand } from '../../cli/user.ts';
import { verifyPassword } from '../../src/mqtt/access.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { startDaemon, tempDir, testConfig } from '../helpers/daemon.ts';
import { freePort } from '../helpers/mosquitto.ts';

/** `poctd user add` and `poctd acl --mosquitto`: what they print works in the daemon and for Mosquitto. */

const cleanups = useCleanups();

function io(stdinText: string): { stdin: Readable; stdout: { text: string; write(t: string): void }; stderr: { text: string; write(t: string): void } } {
  const sink = () => ({ text: '', write(t: string) { this.text += t; } });
  return { stdin: Readable.from([Buffer.from(stdinText)]), stdout: sink(), stderr: sink() };
}

describe('poctd user add', () => {
  it('prints an access.users entry whose hash verifies the password from stdin; the daemon lets that user in', async () => {
    const out = io('bench-password-7\nignored second line\n');
    expect(await userCommand(['add', 'ann', '--role', 'clinician', '--role', 'operator'], out)).toBe(0);
    const entry = out.stdout.text.split('\n').find((l) => l.includes('name: ann'))!;
    expect(entry).toMatch(/^ {4}- \{ name: ann, roles: \[clinician, operator\], hashed_password: "scrypt\$16384\$8\$1\$/);
    expect(out.stdout.text).not.toContain('bench-password-7');
    const hash = /hashed_password: "([^"]+)"/.exec(entry)![1]!;
    expect(verifyPassword('bench-password-7', hash)).toBe(true);

    const port = await freePort();
    const config = testConfig(`mqtt: { embedded: { port: ${port}, ws_port: 0 } }\nhttp: { port: 0 }\naccess:\n  users:\n${entry}\n`);
    const { controller } = await startDaemon(config);
    cleanups.push(() => controller.stop());
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { username: 'ann', password: 'bench-password-7', reconnectPeriod: 0 });
    cleanups.push(() => client.endAsync(true));
    expect(client.connected).toBe(true);
  });

  it('refuses a short password, an unknown role, no role and a bad name, naming each', async () => {
    const short = io('short\n');
    expect(await userCommand(['add', 'ann', '--role', 'viewer'], short)).toBe(1);
    expect(short.stderr.text).toBe('poctd user add: the password (first line of stdin) must have at least 8 characters\n');
    await expect(userCommand(['add', 'ann', '--role', 'king'], io('long-enough-1\n'))).rejects.toThrow('user add: unknown role "king" (viewer, clinician, operator, integration, admin)');
    await expect(userCommand(['add', 'ann'], io('long-enough-1\n'))).rejects.toThrow('user add: give at least one --role');
    await expect(userCommand(['add', 'a b', '--role', 'viewer'], io('long-enough-1\n'))).rejects.toThrow("user add: NAME must be");
    await expect(userCommand(['remove', 'ann'], io(''))).rejects.toThrow('user: unknown action "remove" (only "add")');
  });

  it('through the command dispatcher a usage mistake is exit 1', async () => {
    expect(await main(['user', 'add'])).toBe(1);
    expect(await main(['acl'])).toBe(1);
  });
});

describe('poctd acl --mosquitto', () => {
  it('prints the daemon (mqtt.username) with the whole base and each user with its roles', () => {
    const dir = tempDir();
    const file = join(dir, 'poctd.yaml');
    writeFileSync(
      file,
      'mqtt: { url: "mqtt://broker:1883", username: poctd-bench1, password: x, base_topic: site-a }\n' +
        'access:\n  users:\n    - { name: lis, roles: [integration], password: "${LIS_PW:-placeholder-pw}" }\n',
    );
    const out = io('');
    expect(aclCommand(['--mosquitto', '--config', file], out)).toBe(0);
    expect(out.stdout.text).toContain('user poctd-bench1\ntopic readwrite site-a/#\n');
    expect(out.stdout.text).toContain('user lis\ntopic read site-a/bridge/state\n');
    expect(out.stdout.text).toContain('topic read site-a/device/+/result\n');
    expect(out.stdout.text).toContain('topic write site-a/bridge/request/results/replay\n');
    expect(out.stdout.text).not.toContain('placeholder-pw');
  });

  it('a config without mqtt.username, or a user named like the daemon, is refused', () => {
    const dir = tempDir();
    const file = join(dir, 'poctd.yaml');
    writeFileSync(file, 'mqtt: { url: "mqtt://broker:1883" }\n');
    const out = io('');
    expect(aclCommand(['--mosquitto', '--config', file], out)).toBe(1);
    expect(out.stderr.text).toBe(`poctd acl: ${file}: mqtt.username is not set; the daemon needs its own account on the broker\n`);
    writeFileSync(file, 'mqtt: { url: "mqtt://broker:1883", username: d }\naccess:\n  users:\n    - { name: d, roles: [viewer], password: "12345678" }\n');
    const clash = io('');
    expect(aclCommand(['--mosquitto', '--config', file], clash)).toBe(1);
    expect(clash.stderr.text).toContain('access.users has "d"');
  });
});
