import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useCleanups } from '../helpers/cleanups.ts';
import { tempDir } from '../helpers/daemon.ts';
import { Mosquitto } from '../helpers/mosquitto.ts';
import { runPoctd } from '../helpers/poctd-run.ts';
import { eventually, Subscriber } from '../helpers/subscriber.ts';

/**
 * Retained topics change only when their content changes: `poctd run` with 50 simulated meters on
 * Mosquitto, counted from a subscriber as a dashboard sees them.
 */
const cleanups = useCleanups();
const DEVICES = 50;

function fleetConfig(brokerUrl: string, pollS: number | undefined): string {
  const file = join(tempDir(), 'poctd.yaml');
  const lines = [`site: fleet`, `mqtt: { url: "${brokerUrl}", client_id: fleet-${process.pid}-${Date.now()} }`, 'store: { path: ./poctd.db }', 'log: { level: warn }', 'devices:'];
  for (let i = 0; i < DEVICES; i++) {
    const serial = `GMF${String(i).padStart(5, '0')}Y`;
    lines.push(`  - id: meter-${i}`, '    driver: onetouch-ultra2', ...(pollS ? [`    poll_interval: ${pollS}`] : []), `    transport: { type: simulated, simulator: { serial: ${serial} } }`);
  }
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

describe('retained messages of a 50-device daemon', () => {
  it('a clean stop publishes bridge/devices once and each device offline once', async () => {
    const broker = await Mosquitto.start();
    cleanups.push(() => broker.stop());
    const sub = await Subscriber.connect(broker.url);
    cleanups.push(() => sub.close());
    const daemon = runPoctd(fleetConfig(broker.url, undefined), cleanups);
    const online = (): number => new Set(sub.messages.filter((m) => m.topic.endsWith('/availability') && (m.payload as { state: string }).state === 'online').map((m) => m.topic)).size;
    await eventually('50 devices online', () => online() === DEVICES, 60_000);
    // Start-up is over when every meter's first download has finished and its state says so.
    const downloaded = (): number => new Set(sub.events().filter((e) => e.type === 'download_finished').map((e) => e.device)).size;
    await eventually('every meter downloaded', () => downloaded() === DEVICES, 60_000);
    const settled = (): boolean => Array.from({ length: DEVICES }, (_, i) => sub.last<{ status: string }>(`poct/device/meter-${i}`)?.status).every((s) => s === 'ok');
    await eventually('every state ok', settled, 10_000);
    await eventually('bridge online', () => sub.last<{ state: string }>('poct/bridge/state')?.state === 'online', 10_000);
    const before = sub.messages.length;
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
    await eventually('bridge offline', () => sub.messages.slice(before).some((m) => m.topic === 'poct/bridge/state'), 10_000);
    const stop = sub.messages.slice(before);
    const lists = stop.filter((m) => m.topic === 'poct/bridge/devices');
    const availability = stop.filter((m) => m.topic.endsWith('/availability'));
    process.stdout.write(`stop of ${DEVICES} devices: ${stop.length} messages, bridge/devices ${lists.length}, availability ${availability.length}\n`);
    expect(lists).toHaveLength(1);
    expect((lists[0]!.payload as Array<{ availability: string }>).every((d) => d.availability === 'offline')).toBe(true);
    expect(availability).toHaveLength(DEVICES);
    expect(new Set(availability.map((m) => m.topic)).size).toBe(DEVICES);
  }, 120_000);

  it('polls that change nothing but last_seen do not republish the device state', async () => {
    const broker = await Mosquitto.start();
    cleanups.push(() => broker.stop());
    const sub = await Subscriber.connect(broker.url);
    cleanups.push(() => sub.close());
    const daemon = runPoctd(fleetConfig(broker.url, 1), cleanups);
    const downloaded = (): number => new Set(sub.events().filter((e) => e.type === 'download_finished').map((e) => e.device)).size;
    await eventually('every meter downloaded once', () => downloaded() === DEVICES, 60_000);
    const from = sub.messages.length;
    const finishedFrom = sub.events().filter((e) => e.type === 'download_finished').length;
    // Each meter is polled every second; wait for 3 more polls of each.
    await eventually('three more polls each', () => sub.events().filter((e) => e.type === 'download_finished').length - finishedFrom >= 3 * DEVICES, 60_000);
    const window = sub.messages.slice(from);
    const states = window.filter((m) => /^poct\/device\/[^/]+$/.test(m.topic));
    const polls = window.filter((m) => m.topic === 'poct/bridge/event' && (m.payload as { type: string }).type === 'download_finished').length;
    // The rule itself: a device's state is never sent again with nothing but last_seen moved.
    const byDevice = new Map<string, Array<Record<string, unknown>>>();
    for (const m of states) byDevice.set(m.topic, [...(byDevice.get(m.topic) ?? []), m.payload as Record<string, unknown>]);
    const lastSeenOnly = [...byDevice.values()].flatMap((list) =>
      list.slice(1).flatMap((state, i) => (JSON.stringify({ ...state, last_seen: null }) === JSON.stringify({ ...list[i], last_seen: null }) ? [[list[i], state]] : [])),
    );
    expect(lastSeenOnly.map((x) => JSON.stringify(x))).toEqual([]);
    process.stdout.write(`${polls} polls changing nothing: ${states.length} device state messages\n`);
    // A poll's status passes downloading -> ok and sets last_download: that is content, two
    // messages; the one that moved last_seen alone is no longer sent (a clock skew reading that moved adds one).
    expect(states.length).toBeLessThanOrEqual(2 * polls + 2 * DEVICES);
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
  }, 180_000);
});
