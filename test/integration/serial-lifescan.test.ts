import { describe, expect, it } from 'vitest';
import { schemaProblems } from '../../src/records/schemas.ts';
import type { DeviceState, ResultRecord } from '../../src/records/types.ts';
import { brokerWithSubscriber } from '../helpers/broker.ts';
import { daemonOnSerial, simulateSerialDevice } from '../helpers/serial-meter.ts';
import { startPtyPair } from '../helpers/socat.ts';
import { useCleanups } from '../helpers/cleanups.ts';

const cleanups = useCleanups();

interface Case {
  driver: string;
  serial: string;
  memory: { time: string; value: number | 'HI' | 'LO'; control?: boolean; meal?: string }[];
  /** [value, flags, category] of each published result, in any order. */
  expected: [number | null, string[], string][];
}

const CASES: Case[] = [
  {
    driver: 'onetouch-ultraeasy',
    serial: 'CGWA1E5CR',
    memory: [
      { time: '2024-05-01T07:30:00', value: 96 },
      { time: '2024-05-01T08:10:00', value: 'HI' },
      { time: '2024-05-01T13:00:00', value: 154 },
    ],
    expected: [
      [96, [], 'patient'],
      [null, ['HI'], 'patient'],
      [154, [], 'patient'],
    ],
  },
  {
    driver: 'onetouch-verio-iq',
    serial: 'VIQ0042AB',
    memory: [
      { time: '2024-05-01T07:30:00', value: 96, meal: 'before' },
      { time: '2024-05-01T08:10:00', value: 118, control: true },
      { time: '2024-05-01T13:00:00', value: 12 },
    ],
    expected: [
      [96, [], 'patient'],
      [118, [], 'control'],
      [null, ['LO'], 'patient'],
    ],
  },
];

describe.each(CASES)('$driver over a socat pty pair, simulator in its own process, Mosquitto', (c) => {
  it('publishes the readings, never twice, and clock/sync over MQTT sets the meter clock', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const pty = await startPtyPair();
    cleanups.push(() => pty.stop());

    await simulateSerialDevice(c.driver, pty.a, { serial: c.serial, unit: 'mmol/L', memory: c.memory, clock_offset_s: 3600, timezone: 'Europe/Copenhagen', max_chunk: 5 }, cleanups).ready;
    await daemonOnSerial(broker.url, pty.b, cleanups, 'poll_interval: 1', c.driver);

    await sub.waitFor('3 results', () => sub.on('poct/device/bench1/result').length >= 3, 20_000);
    const results = sub.payloads<ResultRecord>('poct/device/bench1/result');
    for (const r of results) {
      expect(schemaProblems('poct.result/2', r)).toEqual([]);
      expect(r.device).toMatchObject({ driver: c.driver, serial: c.serial, manufacturer: 'LifeScan' });
      expect(r.observations[0]!.unit).toBe('mg/dL');
    }
    const got = results.map((r) => [r.observations[0]!.value, r.observations[0]!.flags, r.category]);
    expect(got.map((g) => JSON.stringify(g)).sort()).toEqual(c.expected.map((e) => JSON.stringify(e)).sort());
    const hiLo = results.find((r) => r.observations[0]!.value === null)!;
    expect(hiLo.observations[0]!.limit).toBe(hiLo.observations[0]!.flags[0] === 'HI' ? 600 : 20);

    // The meter clock runs an hour fast: flagged on the retained device state. The flag is set
    // when the clock is read, before the records; the record count comes with the state after the commit.
    await sub.waitFor(
      'clock skew flagged, after the download',
      () => sub.last<DeviceState>('poct/device/bench1')?.clock_skew_flagged === true && sub.last<DeviceState>('poct/device/bench1')?.meter?.record_count === 3,
      10_000,
    );
    const state = sub.last<DeviceState>('poct/device/bench1')!;
    expect(schemaProblems('poct.device-state/2', state)).toEqual([]);
    expect(state).toMatchObject({ serial: c.serial, meter: { display_unit: 'mmol/L', record_count: 3 } });

    const response = await sub.request<{ status: string; data: { clock_skew_s: number } }>(
      'poct/device/bench1/request/clock/sync',
      'poct/device/bench1/response/clock/sync',
      {},
      20_000,
    );
    expect(response.status).toBe('ok');
    expect(Math.abs(response.data.clock_skew_s)).toBeLessThanOrEqual(3);
    // The next poll reads the meter's clock again: the flag stays clear, so the meter really kept the time.
    const askedAt = new Date().toISOString();
    const download = await sub.request<{ status: string; data: { inserted: number; duplicates: number } }>(
      'poct/device/bench1/request/download',
      'poct/device/bench1/response/download',
      {},
      20_000,
    );
    expect(download).toMatchObject({ status: 'ok', data: { inserted: 0, duplicates: 3 } });
    // The response and the state are different topics: wait for the state of a download that ended after the request.
    await sub.waitFor('the state after that download', () => (sub.last<DeviceState>('poct/device/bench1')?.last_download ?? '') >= askedAt);
    const after = sub.last<DeviceState>('poct/device/bench1')!;
    expect(after.clock_skew_flagged).toBe(false);
    expect(Math.abs(after.clock_skew_s!)).toBeLessThanOrEqual(3);
    // Polling downloads the same memory again and again: nothing new is published.
    expect(sub.on('poct/device/bench1/result')).toHaveLength(3);
  });
});
