/** `poctd ports` lists USB printer-class nodes (`/dev/usb/lp*`) from sysfs; a Zebra (0a5f) gets zebra-zpl. */
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import { formatPortListing, listPorts, printerDrivers } from '../../src/transports/discovery.ts';
import { tempDir } from '../helpers/daemon.ts';

/** A sysfs tree with lp0 (a Zebra GK420d) and lp1 (a Brother, no driver), as usblp lays it out. */
function fakeSysfs(): string {
  const root = tempDir('poctd-sysfs-');
  const device = (name: string, attrs: Record<string, string>): string => {
    const usbDevice = join(root, 'devices', 'pci0000:00', 'usb1', name);
    const iface = join(usbDevice, `${name}:1.0`, 'usbmisc');
    mkdirSync(iface, { recursive: true });
    for (const [k, v] of Object.entries(attrs)) writeFileSync(join(usbDevice, k), `${v}\n`);
    return join(usbDevice, `${name}:1.0`);
  };
  mkdirSync(join(root, 'class', 'usbmisc'), { recursive: true });
  const lp = (n: number, target: string): void => {
    const dir = join(root, 'class', 'usbmisc', `lp${n}`);
    mkdirSync(dir);
    symlinkSync(target, join(dir, 'device'));
  };
  lp(0, device('1-1', { idVendor: '0a5f', idProduct: '0080', manufacturer: 'Zebra Technologies', product: 'ZTC GK420d', serial: '28J123456789' }));
  lp(1, device('1-2', { idVendor: '04f9', idProduct: '2042', manufacturer: 'Brother', product: 'QL-700' }));
  return root;
}

describe('USB printers in poctd ports', () => {
  it('lists each printer-class node with its USB ids and the drivers that speak over usb-printer', async () => {
    const listing = await listPorts({ drivers, listSerial: async () => [], loadHid: async () => ({ devices: () => [] }) as never, sysfsRoot: fakeSysfs(), byIdDir: '/nonexistent' });
    expect(listing.printers).toEqual([
      { path: '/dev/usb/lp0', vendorId: '0a5f', productId: '0080', manufacturer: 'Zebra Technologies', product: 'ZTC GK420d', serialNumber: '28J123456789', drivers: ['zebra-zpl'] },
      { path: '/dev/usb/lp1', vendorId: '04f9', productId: '2042', manufacturer: 'Brother', product: 'QL-700', serialNumber: null, drivers: [] },
    ]);
    const text = formatPortListing(listing);
    expect(text).toContain('USB printers (printer class, transport usb-printer):');
    expect(text).toMatch(/\/dev\/usb\/lp0\s+0a5f:0080\s+Zebra Technologies\s+ZTC GK420d\s+28J123456789\s+zebra-zpl/);
  });

  it('matches the vendor for printer-class nodes only: a serial or HID device of 0a5f gets no printer driver by it', async () => {
    expect(printerDrivers('0a5f', '0009', drivers)).toEqual(['zebra-zpl']);
    expect(printerDrivers('0A5F', null, drivers)).toEqual(['zebra-zpl']);
    expect(printerDrivers('04f9', '2042', drivers)).toEqual([]);
    const { matchDrivers } = await import('../../src/transports/discovery.ts');
    expect(matchDrivers('0a5f', '0080', drivers)).toEqual([]);
  });
});
