import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import type { DriverDefinition, UsbMatch } from '../../src/driver-sdk/index.ts';
import {
  formatPortListing,
  listPorts,
  matchDrivers,
  normalizeUsbId,
  type PortListing,
} from '../../src/transports/discovery.ts';
import { HidUnavailableError, type NodeHidModule } from '../../src/transports/hid.ts';

function fakeDriver(id: string, usb: Array<Pick<UsbMatch, 'vendorId' | 'productId' | 'unsupported'>>): DriverDefinition {
  return { id, usb: usb.map((u) => ({ ...u, description: 'test' })) } as unknown as DriverDefinition;
}

const fakeDrivers = [
  fakeDriver('onetouch-ultra2', [{ vendorId: '067b', productId: '2303' }]),
  fakeDriver('freestyle-libre', [
    { vendorId: '1a61', productId: '3650' },
    { vendorId: '1a61', productId: '3950', unsupported: 'encrypted' },
  ]),
  fakeDriver('clinitek-status', [
    { vendorId: '0403', productId: '6001' },
    { vendorId: '067B', productId: '2303' },
  ]),
  fakeDriver('no-usb', []),
];

/**
 * A sysfs tree as Linux lays one out for an FTDI cable: class/tty/ttyUSB1/device points at the
 * tty under the USB interface, and the USB device two levels up holds `product`.
 */
function fakeSysfs(): string {
  const root = mkdtempSync(join(tmpdir(), 'poctd-sysfs-'));
  const usbDevice = join(root, 'devices', 'pci0000:00', 'usb1', '1-1');
  const tty = join(usbDevice, '1-1:1.0', 'ttyUSB1');
  mkdirSync(tty, { recursive: true });
  writeFileSync(join(usbDevice, 'product'), 'FT232R USB UART\n');
  mkdirSync(join(root, 'class', 'tty', 'ttyUSB1'), { recursive: true });
  symlinkSync(tty, join(root, 'class', 'tty', 'ttyUSB1', 'device'));
  return root;
}

describe('normalizeUsbId', () => {
  it('makes lowercase 4-digit hex from strings and numbers', () => {
    expect(normalizeUsbId('1A61')).toBe('1a61');
    expect(normalizeUsbId('0x403')).toBe('0403');
    expect(normalizeUsbId('403')).toBe('0403');
    expect(normalizeUsbId(0x0403)).toBe('0403');
    expect(normalizeUsbId(undefined)).toBeNull();
    expect(normalizeUsbId('')).toBeNull();
    expect(normalizeUsbId('zz12')).toBeNull();
    expect(normalizeUsbId(0x10000)).toBeNull();
  });
});

describe('matchDrivers', () => {
  it('matches case-insensitively and zero-padded', () => {
    expect(matchDrivers('067B', '2303', fakeDrivers)).toEqual(['onetouch-ultra2', 'clinitek-status']);
    expect(matchDrivers('403', '6001', fakeDrivers)).toEqual(['clinitek-status']);
    expect(matchDrivers(0x1a61, 0x3650, fakeDrivers)).toEqual(['freestyle-libre']);
    expect(matchDrivers('0x1A61', '0x3650', fakeDrivers)).toEqual(['freestyle-libre']);
  });

  it('returns nothing for unknown or absent ids', () => {
    expect(matchDrivers('dead', 'beef', fakeDrivers)).toEqual([]);
    expect(matchDrivers(undefined, '2303', fakeDrivers)).toEqual([]);
    expect(matchDrivers('067b', null, fakeDrivers)).toEqual([]);
    expect(matchDrivers('067b', '2303', [])).toEqual([]);
  });

  it('needs both ids to match', () => {
    expect(matchDrivers('067b', '6001', fakeDrivers)).toEqual([]);
  });
});

describe('formatPortListing', () => {
  it('says so when nothing is present', () => {
    const text = formatPortListing({ serial: [], hid: [], problems: [] });
    expect(text).toContain('Serial ports:\n  no serial ports found');
    expect(text).toContain('HID devices:\n  no HID devices found');
    expect(text).not.toContain('Problems');
  });

  it('prints a table with USB ids, drivers, stable names and problems', () => {
    const listing: PortListing = {
      serial: [
        {
          path: '/dev/ttyUSB0',
          vendorId: '067b',
          productId: '2303',
          manufacturer: 'Prolific',
          product: 'USB-Serial Controller',
          serialNumber: null,
          pnpId: 'usb-Prolific_USB-Serial-if00-port0',
          byIdPath: '/dev/serial/by-id/usb-Prolific_USB-Serial-if00-port0',
          drivers: ['onetouch-ultra2', 'clinitek-status'],
        },
        {
          path: '/dev/ttyS0',
          vendorId: null,
          productId: null,
          manufacturer: null,
          serialNumber: null,
          pnpId: null,
          byIdPath: null,
          drivers: [],
        },
      ],
      hid: [
        {
          path: '/dev/hidraw0',
          vendorId: '1a61',
          productId: '3650',
          manufacturer: 'Abbott',
          product: 'FreeStyle Libre',
          serialNumber: 'JCMV1234',
          drivers: ['freestyle-libre'],
        },
        {
          path: '/dev/hidraw1',
          vendorId: '1a61',
          productId: '3950',
          manufacturer: 'Abbott',
          product: 'FreeStyle Libre 2',
          serialNumber: null,
          drivers: ['freestyle-libre'],
          unsupported: 'freestyle-libre: the Libre 2 protocol is encrypted',
        },
      ],
      problems: ['udev is not running'],
    };
    const text = formatPortListing(listing);
    const lines = text.split('\n');
    const header = lines.find((l) => l.includes('PATH') && l.includes('DRIVERS'))!;
    const usb0 = lines.find((l) => l.startsWith('  /dev/ttyUSB0'))!;
    expect(usb0).toContain('067b:2303');
    expect(usb0).toContain('Prolific');
    expect(usb0).toContain('onetouch-ultra2, clinitek-status');
    // columns line up with the header
    expect(usb0.indexOf('067b:2303')).toBe(header.indexOf('USB ID'));
    const s0 = lines.find((l) => l.startsWith('  /dev/ttyS0'))!;
    expect(s0).toMatch(/\/dev\/ttyS0\s+-\s+-\s+-\s+-\s+-$/);
    expect(usb0).toContain('USB-Serial Controller');
    expect(usb0.indexOf('USB-Serial Controller')).toBe(header.indexOf('PRODUCT'));
    expect(text).toContain('/dev/ttyUSB0 = /dev/serial/by-id/usb-Prolific_USB-Serial-if00-port0');
    const hidLine = lines.find((l) => l.startsWith('  /dev/hidraw0'))!;
    expect(hidLine).toContain('1a61:3650');
    expect(hidLine).toContain('FreeStyle Libre');
    expect(hidLine).toContain('freestyle-libre');
    expect(lines.find((l) => l.startsWith('  /dev/hidraw1'))).toMatch(/freestyle-libre \(not supported\)$/);
    expect(text).toContain('Recognised but cannot be read:\n  /dev/hidraw1 1a61:3950: freestyle-libre: the Libre 2 protocol is encrypted');
    expect(text).toContain('Problems:\n  - udev is not running');
    expect(text).not.toContain('No device matches');
  });
});

describe('listPorts', () => {
  it('runs on this machine and returns arrays', async () => {
    const listing = await listPorts({ drivers });
    expect(Array.isArray(listing.serial)).toBe(true);
    expect(Array.isArray(listing.hid)).toBe(true);
    expect(Array.isArray(listing.problems)).toBe(true);
    for (const p of listing.serial) {
      expect(typeof p.path).toBe('string');
      expect(Array.isArray(p.drivers)).toBe(true);
    }
    expect(formatPortListing(listing)).toMatch(/^Serial ports:/);
  });

  it('matches drivers and still lists serial ports when node-hid cannot load', async () => {
    const listing = await listPorts({
      drivers: fakeDrivers,
      listSerial: async () => [
        { path: '/dev/ttyUSB1', vendorId: '0403', productId: '6001', manufacturer: 'FTDI', serialNumber: 'A123' },
        { path: '/dev/ttyS0' },
      ],
      loadHid: async () => {
        throw new HidUnavailableError(
          'node-hid cannot load its native library (libusb-1.0.so.0: cannot open shared object file); on Debian install: apt-get install libusb-1.0-0 udev',
        );
      },
      byIdDir: '/nonexistent/poctd/by-id',
      sysfsRoot: fakeSysfs(),
    });
    expect(listing.serial.map((p) => p.path)).toEqual(['/dev/ttyS0', '/dev/ttyUSB1']);
    const usb1 = listing.serial.find((p) => p.path === '/dev/ttyUSB1')!;
    expect(usb1).toMatchObject({
      vendorId: '0403',
      productId: '6001',
      manufacturer: 'FTDI',
      product: 'FT232R USB UART',
      serialNumber: 'A123',
      drivers: ['clinitek-status'],
    });
    expect(listing.serial.find((p) => p.path === '/dev/ttyS0')!.product).toBeNull();
    expect(listing.hid).toEqual([]);
    expect(listing.problems).toHaveLength(1);
    expect(listing.problems[0]).toContain('apt-get install libusb-1.0-0 udev');
    expect(formatPortListing(listing)).toContain('apt-get install libusb-1.0-0 udev');
  });

  it('skips the sysfs product lookup when asked (hot-plug scans), matching drivers all the same', async () => {
    const listing = await listPorts({
      drivers: fakeDrivers,
      listSerial: async () => [{ path: '/dev/ttyUSB1', vendorId: '0403', productId: '6001', serialNumber: 'A123' }],
      loadHid: async () => ({ devices: () => [] }) as unknown as NodeHidModule,
      byIdDir: '/nonexistent/poctd/by-id',
      sysfsRoot: fakeSysfs(),
      productNames: false,
    });
    expect(listing.serial[0]).toMatchObject({ product: null, drivers: ['clinitek-status'] });
  });

  it('turns a failing native call in node-hid into a problem line naming the packages', async () => {
    const brokenHid = {
      devices: () => {
        throw new Error('libudev.so.1: cannot open shared object file: No such file or directory');
      },
    } as unknown as NodeHidModule;
    const listing = await listPorts({ drivers: fakeDrivers, listSerial: async () => [], loadHid: async () => brokenHid });
    expect(listing.serial).toEqual([]);
    expect(listing.problems.join('\n')).toMatch(/HID devices cannot be listed: .*apt-get install libusb-1\.0-0 udev/);
    expect(formatPortListing(listing)).toContain('no serial ports found');
  });

  it('lists HID devices with hex ids and matching drivers', async () => {
    const hid = {
      devices: () => [
        { vendorId: 0x1a61, productId: 0x3650, path: '/dev/hidraw1', manufacturer: 'Abbott', product: 'Libre', serialNumber: 'X1', release: 0, interface: 0 },
        { vendorId: 0x1a61, productId: 0x3950, path: '/dev/hidraw2', manufacturer: 'Abbott', product: 'Libre 2', release: 0, interface: 0 },
      ],
    } as unknown as NodeHidModule;
    const listing = await listPorts({ drivers: fakeDrivers, listSerial: async () => [], loadHid: async () => hid });
    expect(listing.hid).toEqual([
      {
        path: '/dev/hidraw1',
        vendorId: '1a61',
        productId: '3650',
        manufacturer: 'Abbott',
        product: 'Libre',
        serialNumber: 'X1',
        drivers: ['freestyle-libre'],
        unsupported: null,
      },
      {
        path: '/dev/hidraw2',
        vendorId: '1a61',
        productId: '3950',
        manufacturer: 'Abbott',
        product: 'Libre 2',
        serialNumber: null,
        drivers: ['freestyle-libre'],
        unsupported: 'freestyle-libre: encrypted',
      },
    ]);
    expect(listing.problems).toEqual([]);
  });

  it('reports a missing udevadm for serial listing with the apt command', async () => {
    const listing = await listPorts({
      drivers: fakeDrivers,
      listSerial: async () => {
        throw Object.assign(new Error('spawn udevadm ENOENT'), { code: 'ENOENT' });
      },
      loadHid: async () => ({ devices: () => [] }) as unknown as NodeHidModule,
    });
    expect(listing.problems).toEqual([expect.stringContaining('apt-get install udev')]);
  });
});
