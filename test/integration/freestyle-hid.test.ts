/**
 * The FreeStyle driver through the real daemon: the same HidTransport the daemon uses in
 * production, with node-hid replaced by an injected opener whose fake device handle carries each
 * 64-byte report to and from the driver's simulator (no HID device exists in CI). Mosquitto is the
 * broker; a subscriber checks what a dashboard would see.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { LIBRE2_UNSUPPORTED } from '../../drivers/glucose/freestyle-hid/records.ts';
import { FreeStyleSimulator, type FreeStyleSimulatorOptions } from '../../drivers/glucose/freestyle-hid/simulator.ts';
import type { Controller } from '../../src/controller.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import type { DeviceState, ResultRecord } from '../../src/records/types.ts';
import type { HidDeviceHandle, HidOpener } from '../../src/transports/hid.ts';
import type { ByteTransport } from '../../src/transports/transport.ts';
import { brokerWithSubscriber } from '../helpers/broker.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { startDaemon, testConfig, type LogCapture } from '../helpers/daemon.ts';

const cleanups = useCleanups();

/**
 * The meter's end of one plugged-in session: what the simulator reads and writes. A check that
 * fails here would throw inside the simulator's write, far from any test, so the fake writes down
 * what went wrong and the test asserts on that list.
 */
class MeterEnd extends EventEmitter implements ByteTransport {
  readonly description = 'fake-hid:meter';
  isOpen = true;
  constructor(
    private readonly handle: FakeHidDevice,
    private readonly violations: string[],
  ) {
    super();
  }
  async open(): Promise<void> {}
  async write(report: Buffer): Promise<void> {
    if (!this.isOpen) return;
    // One whole report per write, as the meter sends them.
    if (report.length !== 64) this.violations.push(`the meter wrote a ${report.length}-byte report, not 64`);
    setImmediate(() => this.handle.deliver(report));
  }
  async close(): Promise<void> {
    this.isOpen = false;
  }
}

/** What node-hid's HIDAsync would be: input reports as `data`, output reports via `write`. */
class FakeHidDevice extends EventEmitter implements HidDeviceHandle {
  readonly meter: MeterEnd;
  closed = false;
  /** Every output report as the transport wrote it (report id byte first). */
  readonly written: Buffer[] = [];

  constructor(violations: string[]) {
    super();
    this.meter = new MeterEnd(this, violations);
  }

  deliver(report: Buffer): void {
    if (!this.closed) this.emit('data', Buffer.from(report));
  }

  write(report: number[] | Buffer): number {
    if (this.closed) throw new Error('device has been closed');
    const bytes = Buffer.from(report);
    this.written.push(bytes);
    // hidapi convention: byte 0 is the report id (0: unnumbered), the 64 report bytes follow.
    setImmediate(() => this.meter.emit('data', bytes.subarray(1)));
    return bytes.length;
  }

  close(): void {
    this.closed = true;
    void this.meter.close();
  }

  /** The cable is pulled: node-hid reports a read error. */
  unplug(): void {
    this.emit('error', new Error('could not read from HID device'));
    this.close();
  }
}

interface HidMeter {
  sim: FreeStyleSimulator;
  opener: HidOpener;
  devices: FakeHidDevice[];
  plugged: { on: boolean };
  /** Every way the daemon or the simulator broke the fake's contract; a test expects none. */
  violations: string[];
}

/** An opener with a simulated meter behind it, which can be unplugged and plugged in again. */
function hidMeter(options: FreeStyleSimulatorOptions): HidMeter {
  const sim = new FreeStyleSimulator({ timezone: 'Europe/Copenhagen', seed: 3, ...options });
  const devices: FakeHidDevice[] = [];
  const plugged = { on: true };
  const violations: string[] = [];
  const opener: HidOpener = async (o) => {
    if (o.type !== 'hid' || o.vendor_id !== '1a61') violations.push(`opened ${JSON.stringify(o)}, not a hid device of vendor 1a61`);
    if (!plugged.on) throw new Error(`HID device ${o.vendor_id}:${o.product_id} is missing`);
    const device = new FakeHidDevice(violations);
    devices.push(device);
    sim.attach(device.meter);
    return device;
  };
  cleanups.push(async () => sim.detach());
  return { sim, opener, devices, plugged, violations };
}

async function daemonWithHidMeter(brokerUrl: string, opener: HidOpener, productId = '3460', extra = ''): Promise<{ controller: Controller; logs: LogCapture }> {
  const config = testConfig(`
site: clinic-a
mqtt: { url: ${brokerUrl} }
devices:
  - id: fs1
    driver: freestyle-hid
    timezone: Europe/Copenhagen
    transport: { type: hid, vendor_id: '1a61', product_id: '${productId}', reconnect_min_ms: 100, reconnect_max_ms: 300 }
    options: { reply_timeout_ms: 500 }
    ${extra}
`);
  const daemon = await startDaemon(config, { transportExtras: { hid: { hidOpener: opener } } });
  cleanups.push(() => daemon.controller.stop());
  return daemon;
}

const MEMORY = Array.from({ length: 40 }, (_, i) => ({
  time: `2026-11-${String(10 + (i % 9)).padStart(2, '0')}T${String(7 + (i % 14)).padStart(2, '0')}:${String((i * 7) % 60).padStart(2, '0')}:00`,
  value: 72 + 3 * i,
}));

describe('FreeStyle HID meter through the daemon (injected HID opener, Mosquitto)', () => {
  it('downloads an InsuLinx on plug-in, publishes schema-valid results once, and a second download adds none', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const { sim, opener, devices, violations } = hidMeter({ memory: MEMORY, patient_name: 'Sensitive,Name', patient_id: 'PATIENT-77' });
    const { controller, logs } = await daemonWithHidMeter(broker.url, opener);

    await sub.waitFor('40 results', () => sub.on('poct/device/fs1/result').length >= 40, 20_000);
    const results = sub.payloads<ResultRecord>('poct/device/fs1/result');
    for (const r of results) expect(schemaProblems('poct.result/2', r)).toEqual([]);
    expect(results.map((r) => r.observations[0]!.value).sort((a, b) => a! - b!)).toEqual(MEMORY.map((m) => m.value));
    expect(results.every((r) => r.category === 'patient' && r.observations[0]!.unit === 'mg/dL' && r.device.serial === 'JAGT241-U6242')).toBe(true);
    await sub.waitFor('device state', () => sub.last<DeviceState>('poct/device/fs1')?.status === 'ok');
    const state = sub.last<DeviceState>('poct/device/fs1')!;
    expect(schemaProblems('poct.device-state/2', state)).toEqual([]);
    expect(state).toMatchObject({ model: 'FreeStyle InsuLinx', serial: 'JAGT241-U6242', firmware: '1.40', meter: { record_count: 40 } });
    // Reports crossed the real HidTransport: report id 0 in front, 64 report bytes behind it.
    expect(devices[0]!.written.every((w) => w.length === 65 && w[0] === 0)).toBe(true);
    // Events go out in the order raised (those raised before the broker connection are held and
    // sent first); the state on its own topic, so each is awaited rather than assumed.
    await sub.waitFor('download_finished', () => sub.events('fs1').some((e) => e.type === 'download_finished'));
    const download = sub.events('fs1').filter((e) => e.type.startsWith('download_')).map((e) => e.type);
    expect(download).toEqual(['download_started', ...Array(download.length - 2).fill('download_progress'), 'download_finished']);
    expect(download).toContain('download_progress');

    const again = await sub.request<{ status: string; data: { inserted: number; duplicates: number } }>(
      'poct/device/fs1/request/download',
      'poct/device/fs1/response/download',
      {},
      15_000,
    );
    expect(again).toMatchObject({ status: 'ok', data: { inserted: 0, duplicates: 40 } });
    await new Promise((r) => setTimeout(r, 300));
    expect(sub.on('poct/device/fs1/result')).toHaveLength(40);
    expect(controller.runtime!.store.recordCount()).toBe(40);
    // The meter holds a patient name and id; the driver never asked, so they are nowhere.
    expect(sim.received.some((c) => c.startsWith('$pt'))).toBe(false);
    const everything = JSON.stringify(sub.on('poct/#').map((m) => [m.topic, m.payload])) + logs.text;
    expect(everything).not.toMatch(/Sensitive|PATIENT-77/);
    expect(violations).toEqual([]);
  });

  it('unplugged mid-download: an event, nothing partial stored; plugged back in, the whole memory arrives', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const memory = Array.from({ length: 150 }, (_, i) => ({ time: `2026-11-${String(1 + (i % 20)).padStart(2, '0')}T${String(i % 24).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}:00`, value: 60 + i }));
    const { opener, devices, plugged, sim, violations } = hidMeter({ memory, report_delay_ms: 4, max_payload: 24 });
    const { controller } = await daemonWithHidMeter(broker.url, opener);

    await sub.waitFor('progress', () => sub.events('fs1').some((e) => e.type === 'download_progress'), 15_000);
    plugged.on = false;
    devices[0]!.unplug();
    await sub.waitFor('download_failed', () => sub.events('fs1').some((e) => e.type === 'download_failed'), 10_000);
    expect(sub.events('fs1').find((e) => e.type === 'download_failed')!.data).toEqual({ reason: 'link-closed' });
    await new Promise((r) => setTimeout(r, 300));
    expect(controller.runtime!.store.recordCount()).toBe(0);
    expect(sub.on('poct/device/fs1/result')).toHaveLength(0);

    sim.detach();
    plugged.on = true;
    await sub.waitFor('150 results after re-plug', () => sub.on('poct/device/fs1/result').length >= 150, 30_000);
    expect(controller.runtime!.store.recordCount()).toBe(150);
    await sub.waitFor('online', () => sub.last<{ state: string }>('poct/device/fs1/availability')?.state === 'online');
    expect(violations).toEqual([]);
  });

  it('a Libre 2 is recognised and refused: status unsupported with the reason, an event, nothing sent, no crash', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const { opener, sim, devices, violations } = hidMeter({ model: 'libre2' });
    const { controller } = await daemonWithHidMeter(broker.url, opener, '3950');

    await sub.waitFor('unsupported state', () => sub.last<DeviceState>('poct/device/fs1')?.status === 'unsupported', 10_000);
    const state = sub.last<DeviceState>('poct/device/fs1')!;
    expect(state.status_detail).toBe(LIBRE2_UNSUPPORTED);
    expect(schemaProblems('poct.device-state/2', state)).toEqual([]);
    // The event is not retained: after a (re)connect it may arrive just after the retained state.
    const refused = (): boolean => sub.events('fs1').some((e) => e.type === 'device_error' && e.message.includes(LIBRE2_UNSUPPORTED));
    await sub.waitFor('device_error event', refused, 5_000);
    expect(refused()).toBe(true);
    const answer = await sub.request<{ status: string; error: string }>('poct/device/fs1/request/download', 'poct/device/fs1/response/download', {});
    expect(answer.status).toBe('error');
    expect(answer.error).toMatch(/encrypts/);
    await new Promise((r) => setTimeout(r, 300));
    expect(sim.received).toEqual([]);
    expect(devices).toEqual([]); // never even opened
    expect(controller.runtime!.store.recordCount()).toBe(0);
    expect(violations).toEqual([]);
  });
});
