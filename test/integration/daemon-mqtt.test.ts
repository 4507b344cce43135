import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Controller } from '../../src/controller.ts';
import type { BridgeDeviceEntry, BridgeInfo } from '../../src/mqtt/topics.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import type { DeviceState, ResultRecord } from '../../src/records/types.ts';
import { LogCapture, startDaemon, testConfig, ULTRA2_MEMORY } from '../helpers/daemon.ts';
import { Mosquitto } from '../helpers/mosquitto.ts';
import { Subscriber } from '../helpers/subscriber.ts';

/** The daemon's MQTT API against a real Mosquitto, with a simulated Ultra 2 on an in-memory cable. */
describe('daemon MQTT API (Mosquitto)', () => {
  let broker: Mosquitto;
  let sub: Subscriber;
  let controller: Controller;
  let logs: LogCapture;

  beforeAll(async () => {
    broker = await Mosquitto.start();
    sub = await Subscriber.connect(broker.url);
    const config = testConfig(`
site: clinic-a
mqtt: { url: ${broker.url} }
privacy: { patient_id: hash }
devices:
  - id: bench1
    driver: onetouch-ultra2
    timezone: Europe/Copenhagen
    transport:
      type: simulated
      simulator: { serial: GMF600DCY, unit: mmol/L, memory: ${JSON.stringify(ULTRA2_MEMORY)} }
`);
    ({ controller, logs } = await startDaemon(config));
  });

  afterAll(async () => {
    await controller?.stop();
    await sub?.close();
    await broker?.stop();
  });

  it('publishes every reading as a valid poct.result/2, control runs as control', async () => {
    await sub.waitFor('3 results', () => sub.on('poct/device/bench1/result').length >= 3);
    const results = sub.payloads<ResultRecord>('poct/device/bench1/result');
    for (const r of results) expect(schemaProblems('poct.result/2', r)).toEqual([]);
    const byValue = new Map(results.map((r) => [r.observations[0]!.value, r]));
    expect(byValue.get(81)!.category).toBe('control');
    expect(byValue.get(105)!.category).toBe('patient');
    // mg/dL on the wire even though the meter displays mmol/L.
    expect(results.every((r) => r.observations[0]!.unit === 'mg/dL' && r.observations[0]!.loinc === '41653-7')).toBe(true);
    expect(byValue.get(176)!.observed_at).toBe('2026-11-20T16:39:46+01:00');
    expect(results.map((r) => r.seq).sort()).toEqual([1, 2, 3]);
    expect(results.every((r) => r.site === 'clinic-a' && r.device.serial === 'GMF600DCY')).toBe(true);
  });

  it('keeps bridge and device state retained', async () => {
    await sub.waitFor('device online', () => sub.last<{ state: string }>('poct/device/bench1/availability')?.state === 'online');
    const late = await Subscriber.connect(broker.url);
    try {
      // Retained messages of different topics need not arrive together; each asserted one is awaited.
      for (const topic of ['poct/bridge/state', 'poct/bridge/info', 'poct/bridge/devices', 'poct/bridge/health']) {
        await late.waitFor(`retained ${topic}`, () => late.on(topic).length > 0);
      }
      // The state carries the serial from the identify step on; the record count only after the commit.
      await late.waitFor('device state after the download', () => late.last<DeviceState>('poct/device/bench1')?.meter?.record_count === 3);
      expect(late.last('poct/bridge/state')).toEqual({ state: 'online' });
      const info = late.last<BridgeInfo>('poct/bridge/info')!;
      expect(info.drivers.map((d) => d.id)).toContain('onetouch-ultra2');
      expect(info.schemas).toContain('poct.result/2');
      const devices = late.last<BridgeDeviceEntry[]>('poct/bridge/devices')!;
      expect(devices).toEqual([
        expect.objectContaining({ id: 'bench1', driver: 'onetouch-ultra2', serial: 'GMF600DCY', transport: 'simulated', availability: 'online' }),
      ]);
      const state = late.last<DeviceState>('poct/device/bench1')!;
      expect(schemaProblems('poct.device-state/2', state)).toEqual([]);
      expect(state).toMatchObject({ serial: 'GMF600DCY', meter: { display_unit: 'mmol/L', record_count: 3 } });
      expect(late.on('poct/bridge/health')[0]?.retain).toBe(true);
      // Results are never retained.
      expect(late.on('poct/device/bench1/result')).toEqual([]);
    } finally {
      await late.close();
    }
  });

  it('answers a download request; a second download of the same memory publishes nothing new', async () => {
    const response = await sub.request<{ status: string; data: { inserted: number; duplicates: number } }>(
      'poct/device/bench1/request/download',
      'poct/device/bench1/response/download',
      {},
    );
    expect(response.status).toBe('ok');
    expect(response.data).toMatchObject({ inserted: 0, duplicates: 3 });
    await new Promise((r) => setTimeout(r, 200));
    expect(sub.on('poct/device/bench1/result')).toHaveLength(3);
    expect(controller.runtime!.store.auditRows().map((a) => a.verb)).toContain('download');
  });

  it('sets the meter clock on request and keeps an audit row', async () => {
    const response = await sub.request<{ status: string; data: { clock: string } }>(
      'poct/device/bench1/request/clock/sync',
      'poct/device/bench1/response/clock/sync',
      {},
    );
    expect(response.status).toBe('ok');
    expect(response.data.clock).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/);
    await new Promise((r) => setTimeout(r, 100));
    const audit = controller.runtime!.store.auditRows().filter((a) => a.verb === 'clock/sync');
    expect(audit).toEqual([expect.objectContaining({ device_id: 'bench1', status: 'ok' })]);
  });

  it('replays stored results from a seq on request', async () => {
    const before = sub.on('poct/device/bench1/result').length;
    const response = await sub.request<{ status: string; data: { count: number; last_seq: number } }>(
      'poct/bridge/request/results/replay',
      'poct/bridge/response/results/replay',
      { since_seq: 1 },
    );
    expect(response).toMatchObject({ status: 'ok', data: { count: 2, last_seq: 3 } });
    await sub.waitFor('2 replayed results', () => sub.on('poct/device/bench1/result').length === before + 2);
    const replayed = sub.payloads<ResultRecord>('poct/device/bench1/result').slice(before);
    expect(replayed.map((r) => r.seq)).toEqual([2, 3]);
  });

  it('answers bad requests with a clear error and keeps running', async () => {
    const unknownVerb = await sub.request('poct/device/bench1/request/explode', 'poct/device/bench1/response/explode', {});
    expect(unknownVerb.status).toBe('error');
    expect(unknownVerb.error).toMatch(/no command "explode".*download/);
    const unknownDevice = await sub.request('poct/device/nope/request/download', 'poct/device/nope/response/download', {});
    expect(unknownDevice.error).toMatch(/unknown device "nope"/);
    const badSince = await sub.request('poct/bridge/request/results/replay', 'poct/bridge/response/results/replay', { since_seq: -4 });
    expect(badSince.error).toMatch(/since_seq/);
    await sub.client.publishAsync('poct/bridge/request/health', '{not json', { qos: 1 });
    await sub.waitFor('error for invalid JSON', () =>
      sub.payloads<{ error: string | null }>('poct/bridge/response/health').some((r) => /not valid JSON/.test(r.error ?? '')),
    );
    const health = await sub.request<{ data: { outbox_depth: number } }>('poct/bridge/request/health', 'poct/bridge/response/health', {});
    expect(health.data.outbox_depth).toBe(0);
  });

  it('publishes download events without patient data, and logs none', async () => {
    // Events raised before the broker connection wait for it and go out first, in the order raised.
    const has = (type: string) => (): boolean => sub.events().some((e) => e.type === type);
    await sub.waitFor('download_started', has('download_started'));
    await sub.waitFor('download_finished', has('download_finished'));
    const events = sub.events();
    const types = events.map((e) => e.type);
    expect(types.filter((t) => t.startsWith('download_'))[0]).toBe('download_started');
    expect(types).toContain('download_finished');
    for (const e of events) expect(schemaProblems('poct.event/1', e)).toEqual([]);
    expect(logs.lines.length).toBeGreaterThan(0);
  });

  it('goes offline cleanly on stop: availability and bridge/state retained offline', async () => {
    await controller.stop();
    const late = await Subscriber.connect(broker.url);
    try {
      await late.waitFor('retained offline state', () => late.last<{ state: string }>('poct/bridge/state')?.state === 'offline');
      await late.waitFor('device offline', () => late.last<{ state: string }>('poct/device/bench1/availability')?.state === 'offline');
    } finally {
      await late.close();
    }
  });
});
