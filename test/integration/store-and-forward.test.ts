import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import type { ResultRecord } from '../../src/records/types.ts';
import { Store } from '../../src/store/store.ts';
import { brokerWithSubscriber } from '../helpers/broker.ts';
import { startDaemon, tempDir, testConfig, ULTRA2_MEMORY } from '../helpers/daemon.ts';
import { freePort, Mosquitto } from '../helpers/mosquitto.ts';
import { eventually, Subscriber } from '../helpers/subscriber.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { glucoseDraft } from '../helpers/records.ts';

const cleanups = useCleanups();

function assertExactlyOnceInOrder(results: ResultRecord[], expectedIds: string[]): void {
  const ids = results.map((r) => r.id);
  expect(new Set(ids).size).toBe(ids.length);
  const stored = new Set(expectedIds);
  expect(ids.filter((id) => !stored.has(id))).toEqual([]);
  const byDevice = new Map<string, number[]>();
  for (const r of results) byDevice.set(r.device.id, [...(byDevice.get(r.device.id) ?? []), r.seq]);
  for (const seqs of byDevice.values()) expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
}

describe('store and forward', () => {
  it('readings made while the broker is down all arrive once it is back, once each, in order per device', async () => {
    const broker = await Mosquitto.start();
    cleanups.push(() => broker.stop());
    // A persistent session, so the broker queues for this subscriber across its own restart.
    const sub = await Subscriber.connect(broker.url, ['poct/device/+/result'], { clientId: 'saf-dashboard', clean: false });
    cleanups.push(() => sub.close());
    await broker.stop();

    const memory = (n: number) => JSON.stringify(ULTRA2_MEMORY.slice(0, n));
    const config = testConfig(`
mqtt: { url: ${broker.url}, reconnect_ms: 200 }
devices:
  - { id: meter-a, driver: onetouch-ultra2, poll_interval: 0.3,
      transport: { type: simulated, simulator: { serial: AAA00001Y, memory: ${memory(3)}, new_reading_every_s: 0.2 } } }
  - { id: meter-b, driver: onetouch-ultra2, poll_interval: 0.3,
      transport: { type: simulated, simulator: { serial: BBB00002Y, memory: ${memory(1)}, new_reading_every_s: 0.25 } } }
`);
    const { controller } = await startDaemon(config);
    cleanups.push(() => controller.stop());
    const store = controller.runtime!.store;
    await eventually('readings stored while offline', () => store.recordCount() >= 10, 15_000);
    expect(controller.runtime!.mqtt.connected).toBe(false);
    // The writer thread commits between any two reads: compare the counts of a moment with no commit in it.
    let counts: { outbox: number; records: number } | undefined;
    await eventually('both counts read with no commit between', () => {
      const records = store.recordCount();
      const outbox = store.outboxDepth();
      counts = store.recordCount() === records ? { outbox, records } : undefined;
      return counts !== undefined;
    });
    expect(counts!.outbox).toBe(counts!.records);

    await broker.restart();
    await eventually('outbox drained', () => store.outboxDepth() === 0 && controller.runtime!.mqtt.connected, 15_000);
    // Stop producing so the set of stored records is fixed, then compare with what arrived.
    await controller.stop();
    const reopened = new Store(config.store.path);
    const stored = reopened.recordsSince(0, 10_000);
    const unacknowledged = new Set(reopened.pendingOutbox(0, 10_000).map((r) => r.id));
    reopened.close();
    const acknowledged = stored.filter((r) => !unacknowledged.has(r.id));
    expect(acknowledged.length).toBeGreaterThanOrEqual(10);
    const received = (): ResultRecord[] =>
      sub.payloads<ResultRecord>('poct/device/meter-a/result').concat(sub.payloads('poct/device/meter-b/result'));
    const ackedIds = new Set(acknowledged.map((r) => r.id));
    await sub.waitFor('every acknowledged record', () => received().filter((r) => ackedIds.has(r.id)).length === ackedIds.size, 15_000);
    await new Promise((r) => setTimeout(r, 300));
    assertExactlyOnceInOrder(received(), stored.map((r) => r.id));
  });

  it('a backlog larger than the publish window (1000 in flight) drains completely, in seq order', async () => {
    // Mosquitto's default drops QoS 1 messages past 1000 queued for one subscriber; a test
    // subscriber can fall that far behind a drain, so the broker queues without limit here.
    const broker = await Mosquitto.start({ extraConfig: 'allow_anonymous true\nmax_queued_messages 0\n' });
    cleanups.push(() => broker.stop());
    const sub = await Subscriber.connect(broker.url, ['poct/device/+/result']);
    cleanups.push(() => sub.close());
    const config = testConfig(`mqtt: { url: ${broker.url} }`);
    const store = new Store(config.store.path);
    for (let i = 0; i < 2500; i += 500) {
      store.commit({
        site: 'poctd',
        deviceId: 'bench1',
        driver: 'onetouch-ultra2',
        capture: store.putCaptureSync('raw', Buffer.from(`capture ${i}`)),
        drafts: { result: Array.from({ length: 500 }, (_, k) => glucoseDraft(i + k)) },
        receivedAt: new Date(),
        timezone: 'UTC',
        privacy: config.privacy,
      });
    }
    store.close();
    const { controller } = await startDaemon(config);
    cleanups.push(() => controller.stop());
    await sub.waitFor('2500 results', () => sub.messages.length >= 2500, 30_000);
    const seqs = sub.payloads<ResultRecord>('poct/device/bench1/result').map((r) => r.seq);
    expect(seqs).toEqual(Array.from({ length: 2500 }, (_, i) => i + 1));
    await eventually('every row marked published', () => controller.runtime!.store.outboxDepth() === 0, 5000);
  });

  it('a reading committed before SIGKILL is published after restart', async () => {
    const dir = tempDir();
    const port = await freePort();
    const dbPath = join(dir, 'poctd.db');
    const configPath = join(dir, 'poctd.yaml');
    writeFileSync(
      configPath,
      `store: { path: ${dbPath} }
mqtt: { url: mqtt://127.0.0.1:${port}, reconnect_ms: 200 }
devices:
  - { id: bench1, driver: onetouch-ultra2,
      transport: { type: simulated, simulator: { serial: GMF600DCY, memory: ${JSON.stringify(ULTRA2_MEMORY)} } } }
`,
    );
    const runDaemon = (): ChildProcess => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'run', '--config', configPath], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      cleanups.push(async () => child.exitCode === null && child.kill('SIGKILL'));
      return child;
    };

    // First life: no broker at all; the meter is downloaded and the records committed.
    const first = runDaemon();
    const committed = (): number => {
      try {
        const db = new Database(dbPath, { readonly: true, fileMustExist: true });
        try {
          return (db.prepare('SELECT COUNT(*) AS n FROM records').get() as { n: number }).n;
        } finally {
          db.close();
        }
      } catch {
        return 0;
      }
    };
    await eventually('3 records committed', () => committed() === 3, 20_000);
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));

    // Second life: the broker is there; what the first life committed goes out.
    const broker = await Mosquitto.startOnPort(port);
    cleanups.push(() => broker.stop());
    const sub = await Subscriber.connect(broker.url, ['poct/device/+/result']);
    cleanups.push(() => sub.close());
    const second = runDaemon();
    await sub.waitFor('3 results after restart', () => sub.messages.length >= 3, 20_000);
    second.kill('SIGTERM');
    await new Promise((r) => second.once('exit', r));
    const results = sub.payloads<ResultRecord>('poct/device/bench1/result');
    expect(results.map((r) => r.observations[0]!.value).sort()).toEqual([105, 176, 81].sort());
    expect(new Set(results.map((r) => r.id)).size).toBe(3);
  });
});

describe('device state in the store', () => {
  it('a restart remembers serial and last download; identity changes are saved within a second, routine ones later', async () => {
    const broker = await Mosquitto.start();
    cleanups.push(() => broker.stop());
    const config = testConfig(`
mqtt: { url: ${broker.url} }
devices:
  - { id: bench1, driver: onetouch-ultra2, poll_interval: 0.2,
      transport: { type: simulated, simulator: { serial: GMF600DCY, memory: ${JSON.stringify(ULTRA2_MEMORY)} } } }
`);
    const { controller } = await startDaemon(config);
    cleanups.push(() => controller.stop());
    const reader = new Store(config.store.path);
    cleanups.push(async () => reader.close());
    // The serial is new, and the record count too: saved within about a second of the first download
    // (in one save or two, when the download takes longer than the second).
    await eventually('the serial and the record count saved', () => {
      const saved = reader.deviceState('bench1');
      return saved?.serial === 'GMF600DCY' && saved.meter?.record_count === 3;
    }, 3000);
    const firstSaved = reader.deviceState('bench1')!.last_seen;
    // Polled five times a second, the meter touches only routine fields (last_seen, status, clock skew): those wait.
    await new Promise((r) => setTimeout(r, 2500));
    const live = controller.deviceManager!.list();
    expect(live[0]!.serial).toBe('GMF600DCY');
    expect(reader.deviceState('bench1')!.last_seen).toBe(firstSaved);
    // A stop writes everything still waiting.
    await controller.stop();
    const saved = reader.deviceState('bench1')!;
    expect(saved.last_seen).not.toBe(firstSaved);
    expect(saved).toMatchObject({ serial: 'GMF600DCY', meter: { record_count: 3, display_unit: 'mg/dL' } });
    expect(saved.last_download).not.toBeNull();
  });
});

describe('what the daemon adds to a driver draft', () => {
  it('a reading in the repeated hour of a DST change is stored and published with device-time:repeated-hour', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups, ['poct/device/+/result']);
    const memory = [
      { time: '2025-10-26T01:30:00', value: 99 },
      { time: '2025-10-26T02:30:00', value: 101 },
    ];
    const config = testConfig(`
mqtt: { url: ${broker.url} }
devices:
  - { id: bench1, driver: onetouch-ultra2, timezone: Europe/Copenhagen,
      transport: { type: simulated, simulator: { serial: GMF600DCY, memory: ${JSON.stringify(memory)} } } }
`);
    const { controller } = await startDaemon(config);
    cleanups.push(() => controller.stop());
    await sub.waitFor('2 results', () => sub.on('poct/device/bench1/result').length === 2);
    const byTime = new Map(sub.payloads<ResultRecord>('poct/device/bench1/result').map((r) => [r.device_time, r]));
    expect(byTime.get('2025-10-26T02:30:00')!.flags).toContain('device-time:repeated-hour');
    expect(byTime.get('2025-10-26T01:30:00')!.flags).not.toContain('device-time:repeated-hour');
  });
});
