import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { useCleanups } from '../helpers/cleanups.ts';
import { tempDir } from '../helpers/daemon.ts';
import { Mosquitto } from '../helpers/mosquitto.ts';
import { runPoctd } from '../helpers/poctd-run.ts';
import { eventually, Subscriber } from '../helpers/subscriber.ts';

/** SIGHUP and `bridge/request/config/reload` on `poctd run`, with Mosquitto, as an operator uses them. */
const cleanups = useCleanups();

interface Meter {
  id: string;
  serial: string;
  extra?: string[];
}

function writeConfig(file: string, brokerUrl: string, meters: Meter[], broken = false): void {
  const lines = ['site: reload', `mqtt: { url: "${brokerUrl}", client_id: reload-${process.pid} }`, 'store: { path: ./poctd.db }', 'log: { level: info }', 'devices:'];
  for (const m of meters) {
    lines.push(`  - id: ${m.id}`, '    driver: onetouch-ultra2', ...(m.extra ?? []).map((l) => `    ${l}`), `    transport: { type: simulated, simulator: { serial: ${m.serial} } }`);
  }
  if (broken) lines.push('  - id: broken', '    driver: onetouch-ultra2', '    options: { reply_timout_ms: 5 }', '    transport: { type: serial }');
  writeFileSync(file, lines.join('\n') + '\n');
}

const logLines = (text: string): Array<Record<string, unknown>> => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('config reload', () => {
  it('SIGHUP starts, stops and restarts only the devices that changed; an invalid file is refused and the old config keeps running', async () => {
    const broker = await Mosquitto.start();
    cleanups.push(() => broker.stop());
    const sub = await Subscriber.connect(broker.url);
    cleanups.push(() => sub.close());
    const file = join(tempDir(), 'poctd.yaml');
    const a = { id: 'meter-a', serial: 'GMF00001Y' };
    const b = { id: 'meter-b', serial: 'GMF00002Y' };
    const c = { id: 'meter-c', serial: 'GMF00003Y' };
    writeConfig(file, broker.url, [a, b, c]);
    const daemon = runPoctd(file, cleanups);
    const availability = (id: string): string | undefined => sub.last<{ state: string }>(`poct/device/${id}/availability`)?.state;
    await eventually('a, b, c online', () => [a, b, c].every((m) => availability(m.id) === 'online'), 30_000);
    await eventually('first downloads done', () => new Set(sub.events().filter((e) => e.type === 'download_finished').map((e) => e.device)).size === 3, 30_000);

    // b removed, c changed (now polled), d added; a as it was.
    const d = { id: 'meter-d', serial: 'GMF00004Y' };
    writeConfig(file, broker.url, [a, { ...c, extra: ['poll_interval: 300'] }, d]);
    const from = sub.messages.length;
    daemon.child.kill('SIGHUP');
    await eventually('reloaded', () => daemon.stdout().includes('"msg":"config reloaded"'), 20_000);
    await eventually('d online, b offline', () => availability(d.id) === 'online' && availability(b.id) === 'offline', 20_000);
    await eventually('c online again', () => availability(c.id) === 'online', 20_000);
    const reloaded = logLines(daemon.stdout()).find((l) => l.msg === 'config reloaded')!;
    expect(reloaded).toMatchObject({ added: ['meter-d'], removed: ['meter-b'], restarted: ['meter-c'], unchanged: 1, restart_needed: [] });
    const after = sub.messages.slice(from);
    // meter-a was not touched: no availability change, no link event.
    expect(after.filter((m) => m.topic === 'poct/device/meter-a/availability')).toEqual([]);
    expect(after.filter((m) => m.topic === 'poct/bridge/event' && (m.payload as { device: string }).device === 'meter-a' && /connected/.test((m.payload as { type: string }).type))).toEqual([]);
    expect(after.filter((m) => m.topic === 'poct/device/meter-c/availability').map((m) => (m.payload as { state: string }).state)).toEqual(['offline', 'online']);
    await eventually('bridge/devices lists a, c, d', () => JSON.stringify(sub.last<Array<{ id: string }>>('poct/bridge/devices')?.map((x) => x.id).sort()) === JSON.stringify(['meter-a', 'meter-c', 'meter-d']), 10_000);

    type Info = { data: { config_file: { path: string; differs: boolean; detail: string } } };
    const info = (): Promise<Info> => sub.request<Info>('poct/bridge/request/info', 'poct/bridge/response/info', {});
    expect((await info()).data.config_file).toEqual({ path: file, differs: false, detail: 'running as the file says' });

    // A broken file: refused with its problems, nothing stopped.
    writeConfig(file, broker.url, [a], true);
    const beforeBroken = sub.messages.length;
    daemon.child.kill('SIGHUP');
    await eventually('refused', () => daemon.stdout().includes('config reload refused'), 20_000);
    const refused = logLines(daemon.stdout()).find((l) => l.msg === 'config reload refused; the running config stays')!;
    expect((refused.problems as string[]).join('\n')).toMatch(/reply_timout_ms: unknown key \(did you mean "reply_timeout_ms"\?\)/);
    expect((refused.problems as string[]).join('\n')).toMatch(/devices\[1\]\.transport\.path: required/);
    await sub.waitFor('config_error event', () => sub.events().some((e) => e.type === 'config_error' && /config reload refused/.test(e.message)));
    expect(sub.messages.slice(beforeBroken).filter((m) => m.topic.endsWith('/availability'))).toEqual([]);
    expect(['meter-a', 'meter-c', 'meter-d'].map(availability)).toEqual(['online', 'online', 'online']);
    expect((await info()).data.config_file).toMatchObject({ differs: true, detail: expect.stringMatching(/^the file does not load \(2 problems/) });

    // The same over MQTT, with its answer: the file fixed, d removed.
    writeConfig(file, broker.url, [a, { ...c, extra: ['poll_interval: 300'] }]);
    const response = await sub.request('poct/bridge/request/config/reload', 'poct/bridge/response/config/reload', {}, 20_000);
    expect(response).toMatchObject({ status: 'ok', data: { added: [], removed: ['meter-d'], restarted: [], unchanged: 2 } });
    await eventually('d offline', () => availability(d.id) === 'offline', 10_000);

    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
    await eventually('all offline', () => ['meter-a', 'meter-c'].every((id) => availability(id) === 'offline'), 10_000);
  }, 120_000);

  it('a start after a crash sets the devices it no longer has offline', async () => {
    const broker = await Mosquitto.start();
    cleanups.push(() => broker.stop());
    const file = join(tempDir(), 'poctd.yaml');
    const a = { id: 'meter-a', serial: 'GMF00001Y' };
    const b = { id: 'meter-b', serial: 'GMF00002Y' };
    writeConfig(file, broker.url, [a, b]);
    const sub = await Subscriber.connect(broker.url);
    cleanups.push(() => sub.close());
    const first = runPoctd(file, cleanups);
    await eventually('a, b online', () => ['meter-a', 'meter-b'].every((id) => sub.last<{ state: string }>(`poct/device/${id}/availability`)?.state === 'online'), 30_000);
    // Both devices' states in the store (the device manager saves them within a second of a change).
    const remembered = (): string[] => {
      try {
        const db = new Database(join(dirname(file), 'poctd.db'), { readonly: true, fileMustExist: true });
        try {
          return db.prepare('SELECT id FROM devices ORDER BY id').pluck().all() as string[];
        } finally {
          db.close();
        }
      } catch {
        return [];
      }
    };
    await eventually('both states saved', () => remembered().length === 2, 30_000);
    first.child.kill('SIGKILL'); // a crash: b stays "online" retained
    await first.exited;
    writeConfig(file, broker.url, [a]);
    const second = runPoctd(file, cleanups);
    const late = await Subscriber.connect(broker.url);
    cleanups.push(() => late.close());
    await eventually('b offline', () => late.last<{ state: string }>('poct/device/meter-b/availability')?.state === 'offline', 30_000);
    await eventually('a online', () => late.last<{ state: string }>('poct/device/meter-a/availability')?.state === 'online', 30_000);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 120_000);
});
