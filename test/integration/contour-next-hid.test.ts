/**
 * The Contour Next driver through the real daemon: HidTransport with an injected opener (no HID
 * device exists in CI) whose fake node-hid handle carries 64-byte reports to and from the
 * driver's simulator, Mosquitto as the broker, a subscriber as the dashboard.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { ContourSimulator, type SimulatedContourReading } from '../../drivers/glucose/contour-next/simulator.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import type { BridgeEvent, DeviceState, ResultRecord } from '../../src/records/types.ts';
import type { HidDeviceHandle, HidOpener } from '../../src/transports/hid.ts';
import { memoryPair } from '../../src/transports/memory.ts';
import { brokerWithSubscriber } from '../helpers/broker.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { startDaemon, testConfig } from '../helpers/daemon.ts';

const cleanups = useCleanups();

const MEMORY: SimulatedContourReading[] = [
  { time: '2026-11-20T07:30', value: 96, markers: ['B'] },
  { time: '2026-11-20T08:02', value: 118, control: true },
  { time: '2026-11-20T12:10', value: 0, hi: true },
  { time: '2026-11-20T22:40', value: 0, lo: true },
];

/** A USB port with a Contour plugged in (or not): the opener node-hid would be. */
class FakeHidPort {
  plugged = true;
  opens = 0;
  /**
   * Every output report that broke the HID framing. A check that threw inside `write` would
   * reject the transport's write, far from the test; the test asserts this list is empty instead.
   */
  readonly violations: string[] = [];
  private current: EventEmitter | null = null;

  constructor(readonly sim: ContourSimulator) {}

  readonly opener: HidOpener = async () => {
    if (!this.plugged) throw new Error('HID device 1a79:7410 is missing');
    this.opens++;
    const { host, device } = memoryPair('fake-hid');
    await device.open();
    await host.open();
    this.sim.attach(device); // plugged in: the meter is in data-transfer mode
    const emitter = new EventEmitter();
    this.current = emitter;
    host.on('data', (report: Buffer) => emitter.emit('data', report));
    const handle: HidDeviceHandle = {
      on(event: 'data' | 'error', listener: ((report: Buffer) => void) | ((err: Error) => void)) {
        return emitter.on(event, listener);
      },
      write: async (report: number[] | Buffer) => {
        const bytes = Buffer.from(report);
        if (bytes.length !== 65) this.violations.push(`an output report of ${bytes.length} bytes, not 65 (report id 0 + 64 bytes)`);
        await host.write(bytes.subarray(1));
        return bytes.length;
      },
      async close() {
        await host.close();
        await device.close();
      },
    };
    return handle;
  };

  unplug(): void {
    this.plugged = false;
    this.sim.detach();
    this.current?.emit('error', new Error('could not read from HID device'));
  }
}

describe('Contour Next over an injected HID device, through the daemon and Mosquitto', () => {
  it('publishes schema-valid results on plug-in, and nothing twice on re-plug or on request', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const sim = new ContourSimulator({ serial: '7410-5550001', memory: MEMORY, random_cuts: true, timezone: 'Europe/Copenhagen', seed: 11 });
    const port = new FakeHidPort(sim);
    const config = testConfig(`
site: clinic-a
mqtt: { url: ${broker.url} }
devices:
  - id: contour1
    driver: contour-next
    timezone: Europe/Copenhagen
    transport: { type: hid, vendor_id: "1a79", product_id: "7410", reconnect_min_ms: 100, reconnect_max_ms: 300 }
    options: { reply_timeout_ms: 1000 }
`);
    const { controller, logs } = await startDaemon(config, { transportExtras: { hid: { hidOpener: port.opener } } });
    cleanups.push(() => controller.stop());

    const results = (): ResultRecord[] => sub.payloads<ResultRecord>('poct/device/contour1/result');
    const finished = (): BridgeEvent[] => sub.events('contour1').filter((e) => e.type === 'download_finished');

    await sub.waitFor('4 results', () => results().length >= 4, 20_000);
    for (const r of results()) expect(schemaProblems('poct.result/2', r)).toEqual([]);
    expect(results().map((r) => [r.category, r.observations[0]!.value, r.observations[0]!.flags, r.observations[0]!.limit ?? null])).toEqual([
      ['patient', 96, [], null],
      ['control', 118, [], null],
      ['patient', null, ['HI'], 600],
      ['patient', null, ['LO'], 10],
    ]);
    expect(results().every((r) => r.device.serial === '7410-5550001' && r.observations[0]!.unit === 'mg/dL')).toBe(true);
    await sub.waitFor('download_finished', () => finished().length === 1);
    expect(finished()[0]!.data).toMatchObject({ records: 4, inserted: 4, duplicates: 0 });
    // Events raised before the broker connection are held and sent first, in the order raised.
    const download = sub.events('contour1').filter((e) => e.type.startsWith('download_'));
    expect(download.map((e) => e.type)).toEqual(['download_started', ...Array(download.length - 2).fill('download_progress'), 'download_finished']);
    expect(download.at(-2)!.message).toBe('4 of 4 records');
    // The state carries the serial from the identify step on; 'ok' comes after the download.
    await sub.waitFor('device state ok', () => sub.last<DeviceState>('poct/device/contour1')?.status === 'ok');
    expect(sub.last<DeviceState>('poct/device/contour1')).toMatchObject({ model: 'Contour Next USB', serial: '7410-5550001', meter: { display_unit: 'mg/dL', record_count: 4 }, status: 'ok' });

    // Unplugged: offline. Plugged in again: the whole memory comes again, nothing new is published.
    port.unplug();
    await sub.waitFor('offline', () => sub.last<{ state: string }>('poct/device/contour1/availability')?.state === 'offline');
    port.plugged = true;
    await sub.waitFor('second download_finished', () => finished().length === 2, 20_000);
    expect(finished()[1]!.data).toMatchObject({ records: 4, inserted: 0, duplicates: 4 });
    expect(port.opens).toBe(2);

    // A download on request answers on the response topic; still nothing new.
    const response = await sub.request<{ status: string; data: { inserted: number; duplicates: number } }>(
      'poct/device/contour1/request/download',
      'poct/device/contour1/response/download',
      {},
    );
    expect(response).toMatchObject({ status: 'ok', data: { inserted: 0, duplicates: 4 } });
    await new Promise((r) => setTimeout(r, 300));
    expect(results()).toHaveLength(4);
    expect(new Set(results().map((r) => r.id)).size).toBe(4);
    expect(controller.runtime!.store.recordCount()).toBe(4);
    // The serial is device identity, not patient data; no reading value shows up in the logs.
    expect(logs.text).not.toMatch(/\^\^\^Glucose/);
    expect(port.violations).toEqual([]);
  });
});
