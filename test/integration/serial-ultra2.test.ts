import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Controller } from '../../src/controller.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import type { BridgeEvent, DeviceState, ResultRecord } from '../../src/records/types.ts';
import { startDaemon, tempDir, testConfig, ULTRA2_MEMORY } from '../helpers/daemon.ts';
import { Mosquitto } from '../helpers/mosquitto.ts';
import { startPtyPair } from '../helpers/socat.ts';
import { Subscriber } from '../helpers/subscriber.ts';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

/** `poctd simulate onetouch-ultra2 --serial <pty>`: the meter as a separate process on the real serialport library. */
function simulateMeter(ptyPath: string, options: Record<string, unknown>): ChildProcess {
  const args = ['--import', 'tsx', 'src/cli/main.ts', 'simulate', 'onetouch-ultra2', '--serial', ptyPath];
  for (const [k, v] of Object.entries(options)) args.push('--option', `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  cleanups.push(async () => {
    if (child.exitCode !== null) return;
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  });
  return child;
}

async function daemonOnSerial(brokerUrl: string, ptyPath: string, extra = ''): Promise<Controller> {
  const config = testConfig(`
site: clinic-a
mqtt: { url: ${brokerUrl} }
devices:
  - id: bench1
    driver: onetouch-ultra2
    timezone: Europe/Copenhagen
    transport: { type: serial, path: ${ptyPath}, reconnect_min_ms: 100, reconnect_max_ms: 500 }
    ${extra}
`);
  const { controller } = await startDaemon(config);
  cleanups.push(() => controller.stop());
  return controller;
}

describe('OneTouch Ultra 2 over a socat pty pair, Mosquitto as broker', () => {
  it('downloads the meter on the real serial stack and publishes its readings', async () => {
    const broker = await Mosquitto.start();
    cleanups.push(() => broker.stop());
    const pty = await startPtyPair();
    cleanups.push(() => pty.stop());
    const sub = await Subscriber.connect(broker.url);
    cleanups.push(() => sub.close());

    simulateMeter(pty.a, { serial: 'GMF600DCY', unit: 'mg/dL', memory: ULTRA2_MEMORY });
    await new Promise((r) => setTimeout(r, 1500)); // the simulator process opens its end
    await daemonOnSerial(broker.url, pty.b, 'poll_interval: 1');

    await sub.waitFor('3 results', () => sub.on('poct/device/bench1/result').length >= 3, 20_000);
    const results = sub.payloads<ResultRecord>('poct/device/bench1/result');
    for (const r of results) expect(schemaProblems('poct.result/1', r)).toEqual([]);
    expect(results.map((r) => [r.observations[0]!.value, r.category]).sort()).toEqual(
      [[105, 'patient'], [176, 'patient'], [81, 'control']].sort(),
    );
    await sub.waitFor('device state with serial', () => sub.last<DeviceState>('poct/device/bench1')?.serial === 'GMF600DCY');
    expect(sub.last<{ state: string }>('poct/device/bench1/availability')).toEqual({ state: 'online' });
    // Polling again downloads the same memory: nothing new is published.
    await new Promise((r) => setTimeout(r, 2500));
    expect(sub.on('poct/device/bench1/result')).toHaveLength(3);
  });

  it('a meter that answers nothing is reported, not crashed on', async () => {
    const broker = await Mosquitto.start();
    cleanups.push(() => broker.stop());
    const pty = await startPtyPair();
    cleanups.push(() => pty.stop());
    const sub = await Subscriber.connect(broker.url);
    cleanups.push(() => sub.close());

    simulateMeter(pty.a, { off: true });
    await new Promise((r) => setTimeout(r, 1500));
    const controller = await daemonOnSerial(broker.url, pty.b, 'options: { reply_timeout_ms: 300 }');
    await sub.waitFor('no_answer event', () => sub.payloads<BridgeEvent>('poct/bridge/event').some((e) => e.type === 'no_answer'), 20_000);
    await sub.waitFor('status no-answer', () => sub.last<DeviceState>('poct/device/bench1')?.status === 'no-answer');
    expect(sub.last<{ state: string }>('poct/device/bench1/availability')).toEqual({ state: 'offline' });
    expect(controller.runtime!.store.recordCount()).toBe(0);
  });

  it('a missing serial port is an event and a status, and the session starts when the port appears', async () => {
    const broker = await Mosquitto.start();
    cleanups.push(() => broker.stop());
    const sub = await Subscriber.connect(broker.url);
    cleanups.push(() => sub.close());
    const dir = tempDir();
    const links = { a: join(dir, 'meter'), b: join(dir, 'host') };
    const pty = await startPtyPair(links);
    await pty.stop(); // the cable is unplugged: the path does not exist

    await daemonOnSerial(broker.url, links.b, 'poll_interval: 1');
    await sub.waitFor('port_missing event', () => sub.payloads<BridgeEvent>('poct/bridge/event').some((e) => e.type === 'port_missing'), 10_000);
    await sub.waitFor('status port-missing', () => sub.last<DeviceState>('poct/device/bench1')?.status === 'port-missing');

    const back = await startPtyPair(links);
    cleanups.push(() => back.stop());
    simulateMeter(back.a, { serial: 'GMF600DCY', memory: ULTRA2_MEMORY });
    await sub.waitFor('3 results after plug-in', () => sub.on('poct/device/bench1/result').length >= 3, 20_000);
  });

  it('a port that disappears mid-download commits nothing partial; the next download after re-plug does', async () => {
    const broker = await Mosquitto.start();
    cleanups.push(() => broker.stop());
    const sub = await Subscriber.connect(broker.url);
    cleanups.push(() => sub.close());
    const dir = tempDir();
    const links = { a: join(dir, 'meter'), b: join(dir, 'host') };
    const pty = await startPtyPair(links);
    // A slow meter: ten readings at 150 ms a line, so the cable can be pulled halfway.
    const memory = Array.from({ length: 10 }, (_, i) => ({ time: `2026-11-20T08:0${i}:00`, value: 90 + i }));
    simulateMeter(pty.a, { serial: 'GMF600DCY', memory, line_delay_ms: 150, timezone: 'Europe/Copenhagen' });
    await new Promise((r) => setTimeout(r, 1500));
    const controller = await daemonOnSerial(broker.url, pty.b, 'poll_interval: 2');
    await sub.waitFor('download started', () => sub.payloads<BridgeEvent>('poct/bridge/event').some((e) => e.type === 'download_started'), 10_000);
    await new Promise((r) => setTimeout(r, 600));
    await pty.stop(); // the cable is pulled mid-dump

    await sub.waitFor('the download reported failed', () =>
      sub.payloads<BridgeEvent>('poct/bridge/event').some((e) => e.type === 'download_failed' || e.type === 'disconnected'),
    );
    expect(controller.runtime!.store.recordCount()).toBe(0);
    expect(sub.on('poct/device/bench1/result')).toHaveLength(0);

    const back = await startPtyPair(links);
    cleanups.push(() => back.stop());
    await sub.waitFor('all ten readings after re-plug', () => sub.on('poct/device/bench1/result').length >= 10, 25_000);
    expect(sub.on('poct/device/bench1/result')).toHaveLength(10);
  }, 60_000);
});
