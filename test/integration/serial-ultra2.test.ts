import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { schemaProblems } from '../../src/records/schemas.ts';
import type { DeviceState, ResultRecord } from '../../src/records/types.ts';
import { tempDir, ULTRA2_MEMORY } from '../helpers/daemon.ts';
import { daemonOnSerial, simulateMeter } from '../helpers/serial-meter.ts';
import { startPtyPair } from '../helpers/socat.ts';
import { brokerWithSubscriber } from '../helpers/broker.ts';
import { useCleanups } from '../helpers/cleanups.ts';

const cleanups = useCleanups();

describe('OneTouch Ultra 2 over a socat pty pair, Mosquitto as broker', () => {
  it('downloads the meter on the real serial stack and publishes its readings', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const pty = await startPtyPair();
    cleanups.push(() => pty.stop());

    await simulateMeter(pty.a, { serial: 'GMF600DCY', unit: 'mg/dL', memory: ULTRA2_MEMORY }, cleanups).ready;
    await daemonOnSerial(broker.url, pty.b, cleanups, 'poll_interval: 1');

    await sub.waitFor('3 results', () => sub.on('poct/device/bench1/result').length >= 3, 20_000);
    const results = sub.payloads<ResultRecord>('poct/device/bench1/result');
    for (const r of results) expect(schemaProblems('poct.result/2', r)).toEqual([]);
    expect(results.map((r) => [r.observations[0]!.value, r.category]).sort()).toEqual(
      [[105, 'patient'], [176, 'patient'], [81, 'control']].sort(),
    );
    await sub.waitFor('device state with serial', () => sub.last<DeviceState>('poct/device/bench1')?.serial === 'GMF600DCY');
    // Availability is its own topic: awaited, not assumed from the order of the others.
    await sub.waitFor('device online', () => sub.last<{ state: string }>('poct/device/bench1/availability')?.state === 'online');
    expect(sub.last<{ state: string }>('poct/device/bench1/availability')).toEqual({ state: 'online' });
    // Polling again downloads the same memory: nothing new is published.
    await new Promise((r) => setTimeout(r, 2500));
    expect(sub.on('poct/device/bench1/result')).toHaveLength(3);
  });

  it('a meter that answers nothing is reported, not crashed on', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const pty = await startPtyPair();
    cleanups.push(() => pty.stop());

    await simulateMeter(pty.a, { off: true }, cleanups).ready;
    const controller = await daemonOnSerial(broker.url, pty.b, cleanups, 'options: { reply_timeout_ms: 300 }');
    await sub.waitFor('no_answer event', () => sub.events().some((e) => e.type === 'no_answer'), 20_000);
    await sub.waitFor('status no-answer', () => sub.last<DeviceState>('poct/device/bench1')?.status === 'no-answer');
    await sub.waitFor('device offline', () => sub.last<{ state: string }>('poct/device/bench1/availability')?.state === 'offline');
    expect(sub.last<{ state: string }>('poct/device/bench1/availability')).toEqual({ state: 'offline' });
    expect(controller.runtime!.store.recordCount()).toBe(0);
  });

  it('a missing serial port is an event and a status, and the session starts when the port appears', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const dir = tempDir();
    const links = { a: join(dir, 'meter'), b: join(dir, 'host') };
    const pty = await startPtyPair(links);
    await pty.stop(); // the cable is unplugged: the path does not exist

    await daemonOnSerial(broker.url, links.b, cleanups, 'poll_interval: 1');
    await sub.waitFor('port_missing event', () => sub.events().some((e) => e.type === 'port_missing'), 10_000);
    await sub.waitFor('status port-missing', () => sub.last<DeviceState>('poct/device/bench1')?.status === 'port-missing');

    const back = await startPtyPair(links);
    cleanups.push(() => back.stop());
    simulateMeter(back.a, { serial: 'GMF600DCY', memory: ULTRA2_MEMORY }, cleanups);
    await sub.waitFor('3 results after plug-in', () => sub.on('poct/device/bench1/result').length >= 3, 20_000);
    // The link is back: the device is available again and its status no longer says port-missing.
    await sub.waitFor('device online', () => sub.last<{ state: string }>('poct/device/bench1/availability')?.state === 'online');
    // Availability goes out at once, the state a moment later.
    await sub.waitFor('status past port-missing', () => sub.last<DeviceState>('poct/device/bench1')?.status !== 'port-missing');
    expect(sub.last<DeviceState>('poct/device/bench1')?.status).not.toBe('port-missing');
  });
});
