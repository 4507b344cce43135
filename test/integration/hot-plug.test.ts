import { describe, expect, it } from 'vitest';
import { onetouchUltra2 } from '../../drivers/glucose/onetouch-ultra2/definition.ts';
import { drivers } from '../../drivers/index.ts';
import type { DriverDefinition } from '../../src/driver-sdk/index.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import type { DeviceState, ResultRecord } from '../../src/records/types.ts';
import { matchDrivers, type PortListing } from '../../src/transports/discovery.ts';
import { brokerWithSubscriber } from '../helpers/broker.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { startDaemon, testConfig, ULTRA2_MEMORY } from '../helpers/daemon.ts';
import { simulateMeter } from '../helpers/serial-meter.ts';
import { startPtyPair } from '../helpers/socat.ts';
import { eventually } from '../helpers/subscriber.ts';

const cleanups = useCleanups();

/**
 * The USB bus as the test wants it: `plug`/`unplug` change what the next listing shows, with the
 * drivers of `driverList` that match each USB id, as the real listing gives them.
 */
class FakeUsb {
  private listing: PortListing = { serial: [], hid: [], problems: [] };
  /** How many times the daemon has looked. */
  scans = 0;
  readonly lister = async (): Promise<PortListing> => {
    this.scans++;
    return structuredClone(this.listing);
  };

  constructor(private readonly driverList: readonly DriverDefinition[] = drivers) {}

  plugSerial(path: string, usb: string, serialNumber: string): void {
    const [vendorId, productId] = usb.split(':') as [string, string];
    const matching = matchDrivers(vendorId, productId, this.driverList);
    this.listing.serial.push({ path, vendorId, productId, manufacturer: 'Prolific', serialNumber, pnpId: null, byIdPath: null, drivers: matching });
  }

  plugHid(path: string, usb: string): void {
    const [vendorId, productId] = usb.split(':') as [string, string];
    const matching = matchDrivers(vendorId, productId, this.driverList);
    this.listing.hid.push({ path, vendorId, productId, manufacturer: 'Abbott', product: 'meter', serialNumber: null, drivers: matching });
  }

  unplug(path: string): void {
    this.listing.serial = this.listing.serial.filter((p) => p.path !== path);
    this.listing.hid = this.listing.hid.filter((d) => d.path !== path);
  }
}

describe('hot-plug over a socat pty pair, Mosquitto as broker', () => {
  it('a meter plugged in gets a session and publishes; unplugged it goes offline; plugged again it resumes without duplicates', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const pty = await startPtyPair();
    cleanups.push(() => pty.stop());
    await simulateMeter(pty.a, { serial: 'GMF600DCY', memory: ULTRA2_MEMORY }, cleanups).ready;

    const usb = new FakeUsb();
    const config = testConfig(`
site: clinic-a
mqtt: { url: ${broker.url} }
auto_detect:
  interval_s: 0.2
  timezone: Europe/Copenhagen
  allow:
    - { usb: "067b:2303", driver: onetouch-ultra2 }
`);
    const { controller } = await startDaemon(config, { portLister: usb.lister });
    cleanups.push(() => controller.stop());
    await eventually('bridge online', () => sub.last<{ state: string }>('poct/bridge/state')?.state === 'online');
    expect(controller.deviceManager!.list()).toEqual([]);

    usb.plugSerial(pty.b, '067b:2303', 'CABLE-1');
    const id = 'onetouch-ultra2-CABLE-1';
    await sub.waitFor('3 results from the plugged-in meter', () => sub.on(`poct/device/${id}/result`).length >= 3, 20_000);
    for (const r of sub.payloads<ResultRecord>(`poct/device/${id}/result`)) expect(schemaProblems('poct.result/2', r)).toEqual([]);
    // Results, events, state and availability are different topics: each is awaited, not assumed from the order.
    await sub.waitFor('device_added', () => sub.events().some((e) => e.type === 'device_added'));
    expect(sub.events().find((e) => e.type === 'device_added')).toMatchObject({ device: id, data: { driver: 'onetouch-ultra2', usb: '067b:2303' } });
    await sub.waitFor('online', () => sub.last<{ state: string }>(`poct/device/${id}/availability`)?.state === 'online');
    await sub.waitFor('state with the serial', () => sub.last<DeviceState>(`poct/device/${id}`)?.serial === 'GMF600DCY');

    usb.unplug(pty.b);
    await sub.waitFor('offline after unplug', () => sub.last<{ state: string }>(`poct/device/${id}/availability`)?.state === 'offline');
    // Offline goes out when the port closes; the event and the state only once the session has ended.
    await sub.waitFor('device_removed', () => sub.events().some((e) => e.type === 'device_removed'));
    expect(sub.events().find((e) => e.type === 'device_removed')).toMatchObject({ device: id, data: { reason: 'unplugged' } });
    await sub.waitFor('status unplugged', () => sub.last<DeviceState>(`poct/device/${id}`)?.status === 'unplugged');
    expect(sub.last<DeviceState>(`poct/device/${id}`)?.status).toBe('unplugged');
    await sub.waitFor('device list showing it offline', () =>
      sub.last<Array<{ availability: string }>>('poct/bridge/devices')?.some((d) => d.availability === 'offline') === true,
    );
    const listed = sub.last<Array<{ id: string; availability: string }>>('poct/bridge/devices');
    expect(listed).toEqual([expect.objectContaining({ id, availability: 'offline' })]);
    const refused = await sub.request(`poct/device/${id}/request/download`, `poct/device/${id}/response/download`, {});
    expect(refused).toMatchObject({ status: 'error', error: expect.stringMatching(/unplugged/) });

    usb.plugSerial(pty.b, '067b:2303', 'CABLE-1');
    await sub.waitFor('online again', () => sub.last<{ state: string }>(`poct/device/${id}/availability`)?.state === 'online', 20_000);
    await eventually('a second download finished', () => sub.events(id).filter((e) => e.type === 'download_finished').length >= 2, 20_000);
    expect(sub.on(`poct/device/${id}/result`)).toHaveLength(3); // same memory: nothing new
    expect(controller.runtime!.store.recordCount()).toBe(3);
  });

  it('a FreeStyle Libre 2 (encrypted) is recognised, reported on its state and never opened', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    let opened = 0;
    const usb = new FakeUsb();
    const { controller } = await startDaemon(
      testConfig(`
mqtt: { url: ${broker.url} }
auto_detect: { interval_s: 0.2, allow: [ { driver: freestyle-hid } ] }
`),
      {
        portLister: usb.lister,
        transportExtras: {
          hid: {
            hidOpener: async () => {
              opened++;
              throw new Error('must not be opened');
            },
          },
        },
      },
    );
    cleanups.push(() => controller.stop());
    usb.plugHid('/dev/hidraw7', '1a61:3950');
    await eventually('a device state for it', () => controller.deviceManager!.list().length === 1);
    const id = controller.deviceManager!.list()[0]!.id;
    expect(id).toMatch(/^freestyle-hid-[0-9a-f]{8}$/);
    await sub.waitFor('unsupported status', () => sub.last<DeviceState>(`poct/device/${id}`)?.status === 'unsupported');
    const state = sub.last<DeviceState>(`poct/device/${id}`)!;
    expect(state.model).toBe('FreeStyle Libre 2 reader');
    expect(state.status_detail).toMatch(/encrypt/i);
    await sub.waitFor('device_error', () => sub.events().some((e) => e.type === 'device_error'));
    expect(sub.events().find((e) => e.type === 'device_error')?.message).toMatch(/cannot be read: .*encrypt/i);
    const answer = await sub.request(`poct/device/${id}/request/download`, `poct/device/${id}/response/download`, {});
    expect(answer).toMatchObject({ status: 'error', error: expect.stringMatching(/encrypt/i) });
    await sub.waitFor('availability', () => sub.on(`poct/device/${id}/availability`).length > 0);
    expect(sub.last<{ state: string }>(`poct/device/${id}/availability`)).toEqual({ state: 'offline' });
    expect(opened).toBe(0);
  });

  it('a USB id that fits several drivers is reported once and not taken', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const twin: DriverDefinition = { ...onetouchUltra2, id: 'ultra2-twin' };
    const usb = new FakeUsb([onetouchUltra2, twin]);
    const { controller } = await startDaemon(
      testConfig(`
mqtt: { url: ${broker.url} }
auto_detect: { interval_s: 0.2, allow: [ { usb: "067b:2303" } ] }
`),
      // Only these two: the registry has more drivers for this common cable chip.
      { portLister: usb.lister, drivers: [onetouchUltra2, twin] },
    );
    cleanups.push(() => controller.stop());
    usb.plugSerial('/dev/ttyUSB9', '067b:2303', 'X');
    await sub.waitFor('config_error', () => sub.events().some((e) => e.type === 'config_error'));
    const scansSoFar = usb.scans;
    await eventually('three more scans', () => usb.scans >= scansSoFar + 3);
    const errors = sub.events().filter((e) => e.type === 'config_error');
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toMatch(/fits 2 drivers \(onetouch-ultra2, ultra2-twin\)/);
    expect(controller.deviceManager!.list()).toEqual([]);
  });
});
