import { describe, expect, it } from 'vitest';
import type { DeviceConfig } from '../../src/config/types.ts';
import type { DriverDefinition } from '../../src/driver-sdk/index.ts';
import { decide, detectedDeviceId, presentDevices, type PresentDevice } from '../../src/extensions/hot-plug.ts';
import { matchDrivers, type PortListing } from '../../src/transports/discovery.ts';
import { onetouchUltra2 } from '../../drivers/glucose/onetouch-ultra2/definition.ts';

/** Drivers that differ only in the USB ids they claim, for deterministic rule tests. */
const fake = (id: string, usb: Array<[string, string, string?]>, transports: DriverDefinition['transports'] = ['serial']): DriverDefinition => ({
  ...onetouchUltra2,
  id,
  transports,
  usb: usb.map(([vendorId, productId, unsupported]) => ({ vendorId, productId, description: id, ...(unsupported ? { unsupported } : {}) })),
});
const DRIVERS = [
  fake('meter-a', [['067b', '2303'], ['10c4', '85a7']]),
  fake('meter-b', [['067b', '2303']]),
  fake('hid-meter', [['1a61', '3460'], ['1a61', '3950', 'encrypted']], ['hid']),
];

/** A present device with the drivers the listing would give its USB id, unless `over` names them. */
const serialPort = (over: Partial<PresentDevice> = {}): PresentDevice => {
  const usb = over.usb === undefined ? '067b:2303' : over.usb;
  const [vendorId, productId] = usb?.split(':') ?? [];
  return {
    key: 'serial:/dev/ttyUSB0',
    kind: 'serial',
    path: '/dev/ttyUSB0',
    stablePath: '/dev/serial/by-id/usb-Prolific-if00-port0',
    usb,
    serialNumber: 'CAB123',
    drivers: matchDrivers(vendorId, productId, DRIVERS),
    ...over,
  };
};
const NONE: DeviceConfig[] = [];

describe('hot-plug rules', () => {
  it('takes nothing without a rule that matches', () => {
    expect(decide(serialPort(), [], DRIVERS, NONE, {})).toEqual({ take: false, reason: 'not-allowed' });
    expect(decide(serialPort(), [{ usb: '1a61:3460' }], DRIVERS, NONE, {})).toEqual({ take: false, reason: 'not-allowed' });
    expect(decide(serialPort(), [{ serial: 'OTHER' }], DRIVERS, NONE, {})).toEqual({ take: false, reason: 'not-allowed' });
  });

  it('a rule naming only a driver takes the USB ids that driver claims, and opens the stable by-id path', () => {
    const d = decide(serialPort({ usb: '10c4:85a7' }), [{ driver: 'meter-a' }], DRIVERS, NONE, { timezone: 'Europe/Oslo', poll_interval: 60 });
    expect(d).toEqual({
      take: true,
      device: {
        id: 'meter-a-CAB123',
        driver: 'meter-a',
        transport: { type: 'serial', path: '/dev/serial/by-id/usb-Prolific-if00-port0' },
        timezone: 'Europe/Oslo',
        poll_interval: 60,
      },
    });
    expect(decide(serialPort({ usb: '0403:6001' }), [{ driver: 'meter-a' }], DRIVERS, NONE, {}).take).toBe(false);
  });

  it('a cable chip that fits several drivers needs the driver named', () => {
    const d = decide(serialPort(), [{ usb: '067b:2303' }], DRIVERS, NONE, {});
    expect(d).toMatchObject({ take: false, reason: 'ambiguous' });
    expect((d as { message: string }).message).toMatch(/fits 2 drivers \(meter-a, meter-b\): name the driver/);
    expect(decide(serialPort(), [{ usb: '067b:2303', driver: 'meter-b' }], DRIVERS, NONE, {})).toMatchObject({
      take: true,
      device: { driver: 'meter-b' },
    });
  });

  it('a rule by USB serial number takes that one device only', () => {
    const rules = [{ serial: 'CAB123', driver: 'meter-a' }];
    expect(decide(serialPort(), rules, DRIVERS, NONE, {})).toMatchObject({ take: true, device: { id: 'meter-a-CAB123' } });
    expect(decide(serialPort({ serialNumber: 'CAB999' }), rules, DRIVERS, NONE, {}).take).toBe(false);
  });

  it('never takes a port that a configured device uses, by its path or its by-id name', () => {
    const configured: DeviceConfig[] = [
      { id: 'bench1', driver: 'meter-a', transport: { type: 'serial', path: '/dev/serial/by-id/usb-Prolific-if00-port0' } },
    ];
    expect(decide(serialPort(), [{ driver: 'meter-a' }], DRIVERS, configured, {})).toEqual({ take: false, reason: 'configured' });
    const byVidPid: DeviceConfig[] = [{ id: 'fs', driver: 'hid-meter', transport: { type: 'hid', vendor_id: '1a61', product_id: '3460' } }];
    const hid = serialPort({ key: 'hid:/dev/hidraw0', kind: 'hid', path: '/dev/hidraw0', stablePath: null, usb: '1a61:3460' });
    expect(decide(hid, [{ driver: 'hid-meter' }], DRIVERS, byVidPid, {})).toEqual({ take: false, reason: 'configured' });
  });

  it('an HID device gets an HID transport with its ids; a driver that cannot speak the transport is refused', () => {
    const hid = serialPort({ key: 'hid:/dev/hidraw3', kind: 'hid', path: '/dev/hidraw3', stablePath: null, usb: '1a61:3950', serialNumber: null });
    const d = decide(hid, [{ usb: '1a61:3950' }], DRIVERS, NONE, {});
    expect(d).toMatchObject({
      take: true,
      device: { driver: 'hid-meter', transport: { type: 'hid', path: '/dev/hidraw3', vendor_id: '1a61', product_id: '3950' } },
    });
    // No USB serial: the id is a hash of the port, stable for the same port.
    expect((d as { device: DeviceConfig }).device.id).toMatch(/^hid-meter-[0-9a-f]{8}$/);
    expect(decide(hid, [{ usb: '1a61:3950', driver: 'meter-a' }], DRIVERS, NONE, {})).toMatchObject({ take: false, reason: 'wrong-transport' });
  });

  it("goes by the drivers the listing found for the USB id, not the id's own reading", () => {
    // The listing was made with one of the two drivers that claim 067b:2303.
    const listedForB = serialPort({ drivers: ['meter-b'] });
    expect(decide(listedForB, [{ usb: '067b:2303' }], DRIVERS, NONE, {})).toMatchObject({ take: true, device: { driver: 'meter-b' } });
    expect(decide(listedForB, [{ driver: 'meter-a' }], DRIVERS, NONE, {})).toEqual({ take: false, reason: 'not-allowed' });
    // A driver the listing names but this daemon does not run is never taken.
    const unknown = serialPort({ usb: '0403:6001', drivers: ['elsewhere'] });
    expect(decide(unknown, [{ driver: 'elsewhere' }], DRIVERS, NONE, {})).toEqual({ take: false, reason: 'not-allowed' });
    expect(decide(unknown, [{ usb: '0403:6001' }], DRIVERS, NONE, {})).toMatchObject({ take: false, reason: 'ambiguous' });
  });

  it('ids are safe topic segments whatever the USB serial holds', () => {
    expect(detectedDeviceId('meter-a', serialPort({ serialNumber: 'a/b#c+d e' }))).toBe('meter-a-a-b-c-d-e');
  });

  it('lists serial ports and HID devices with a path as present devices', () => {
    const listing: PortListing = {
      serial: [
        { path: '/dev/ttyUSB0', vendorId: '067b', productId: '2303', manufacturer: null, serialNumber: 'X', pnpId: null, byIdPath: null, drivers: ['meter-a', 'meter-b'] },
      ],
      hid: [
        { path: '/dev/hidraw0', vendorId: '1a61', productId: '3460', manufacturer: null, product: null, serialNumber: null, drivers: ['hid-meter'] },
        { path: null, vendorId: '1a61', productId: '3460', manufacturer: null, product: null, serialNumber: null, drivers: [] },
      ],
      problems: [],
    };
    expect(presentDevices(listing).map((p) => [p.key, p.usb, p.drivers])).toEqual([
      ['serial:/dev/ttyUSB0', '067b:2303', ['meter-a', 'meter-b']],
      ['hid:/dev/hidraw0', '1a61:3460', ['hid-meter']],
    ]);
  });
});
