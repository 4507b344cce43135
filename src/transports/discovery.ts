/**
 * What `poctd ports` shows: serial ports and HID devices present on this machine, with the drivers
 * whose USB ids match. Works without node-hid or udev: what cannot be listed becomes a line in
 * `problems` saying what to install, and the rest is still listed. The driver list is the caller's
 * (the driver registry, which the core does not import).
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import { SerialPort } from 'serialport';
import type { DriverDefinition, UsbMatch } from '../driver-sdk/index.ts';
import { HID_APT_HINT, listHidDevices, loadNodeHid, type HidDeviceInfo, type NodeHidModule } from './hid.ts';

export interface SerialPortListing {
  path: string;
  /** Lowercase 4-digit hex, or null when the port is not USB or udev could not tell. */
  vendorId: string | null;
  productId: string | null;
  manufacturer: string | null;
  /** The USB product string (sysfs), e.g. "USB-Serial Controller" or a meter's model name. */
  product?: string | null;
  serialNumber: string | null;
  pnpId: string | null;
  /** A stable name under /dev/serial/by-id pointing at this port, for the config (Linux). */
  byIdPath: string | null;
  /** Ids of the drivers whose USB list has this vendor:product. */
  drivers: string[];
  /** Set when a driver recognises the device but cannot read it (the reason). */
  unsupported?: string | null;
}

export interface HidDeviceListing {
  path: string | null;
  vendorId: string;
  productId: string;
  manufacturer: string | null;
  product: string | null;
  serialNumber: string | null;
  drivers: string[];
  unsupported?: string | null;
}

/** A USB printer-class node (`/dev/usb/lp*`, the usblp driver), from sysfs. */
export interface UsbPrinterListing {
  path: string;
  vendorId: string | null;
  productId: string | null;
  manufacturer: string | null;
  product: string | null;
  serialNumber: string | null;
  /** Drivers that speak over `usb-printer` and list this vendor (any product, `productId: '*'`) or this vendor:product. */
  drivers: string[];
}

export interface PortListing {
  serial: SerialPortListing[];
  hid: HidDeviceListing[];
  /** USB printer-class nodes (Linux); absent where they were not looked for. */
  printers?: UsbPrinterListing[];
  /** Why something could not be listed, each with what to do about it. */
  problems: string[];
}

/** What SerialPort.list() returns (serialport's PortInfo). */
export interface SerialPortInfo {
  path: string;
  manufacturer?: string | undefined;
  serialNumber?: string | undefined;
  pnpId?: string | undefined;
  locationId?: string | undefined;
  vendorId?: string | undefined;
  productId?: string | undefined;
}

export interface ListPortsOptions {
  /** The drivers whose USB ids are matched. */
  drivers: readonly DriverDefinition[];
  /** Replaces SerialPort.list() (tests). */
  listSerial?: () => Promise<SerialPortInfo[]>;
  /** Replaces the lazy node-hid load (tests). */
  loadHid?: () => Promise<NodeHidModule>;
  /** Directory of stable serial names; default /dev/serial/by-id. */
  byIdDir?: string;
  /** Where `class/tty/<name>` is looked up for the USB product string; default /sys. */
  sysfsRoot?: string;
  /** Where USB printer-class nodes are named (`lp0` → `<dir>/lp0`); default /dev/usb. */
  usbPrinterDir?: string;
  /**
   * Read each serial port's USB product string from sysfs (default true, for `poctd ports`).
   * Hot-plug scans every few seconds and never shows it, so it skips those reads.
   */
  productNames?: boolean;
}

/** "1A61", "0x1a61", "403" or 0x0403 → "1a61" / "0403"; null when absent or not a USB id. */
export function normalizeUsbId(id: string | number | null | undefined): string | null {
  if (id === undefined || id === null) return null;
  if (typeof id === 'number') {
    return Number.isInteger(id) && id >= 0 && id <= 0xffff ? id.toString(16).padStart(4, '0') : null;
  }
  const text = id.trim().toLowerCase().replace(/^0x/, '');
  if (!/^[0-9a-f]{1,4}$/.test(text)) return null;
  return text.padStart(4, '0');
}

/** The driver's entry for vendorId:productId (hex, any case, any padding), if it lists one. */
export function usbEntry(
  driver: DriverDefinition,
  vendorId: string | number | null | undefined,
  productId: string | number | null | undefined,
): UsbMatch | undefined {
  const vid = normalizeUsbId(vendorId);
  const pid = normalizeUsbId(productId);
  if (vid === null || pid === null) return undefined;
  return driver.usb.find((m) => normalizeUsbId(m.vendorId) === vid && normalizeUsbId(m.productId) === pid);
}

/** Ids of the drivers whose `usb` list contains vendorId:productId (hex, any case, any padding). */
export function matchDrivers(
  vendorId: string | number | null | undefined,
  productId: string | number | null | undefined,
  driverList: readonly DriverDefinition[],
): string[] {
  return driverList.filter((d) => usbEntry(d, vendorId, productId)).map((d) => d.id);
}

/** The reason a matching driver gives for not reading this USB id, if any. */
export function unsupportedReason(
  vendorId: string | number | null | undefined,
  productId: string | number | null | undefined,
  driverList: readonly DriverDefinition[],
): string | null {
  for (const driver of driverList) {
    const reason = usbEntry(driver, vendorId, productId)?.unsupported;
    if (reason) return `${driver.id}: ${reason}`;
  }
  return null;
}

/**
 * The drivers for a USB printer-class device: those that speak over `usb-printer` and list its
 * vendor for any product (`productId: '*'`, a printer class device of that maker) or its exact id.
 */
export function printerDrivers(vendorId: string | null, productId: string | null, driverList: readonly DriverDefinition[]): string[] {
  const vid = normalizeUsbId(vendorId);
  if (vid === null) return [];
  const pid = normalizeUsbId(productId);
  return driverList
    .filter((d) => d.transports.includes('usb-printer'))
    .filter((d) => d.usb.some((m) => normalizeUsbId(m.vendorId) === vid && (m.productId === '*' || (pid !== null && normalizeUsbId(m.productId) === pid))))
    .map((d) => d.id);
}

/** USB printer-class nodes from `<sysfs>/class/usbmisc/lp*`, with the USB ids of the device above each. */
async function listUsbPrinters(sysfsRoot: string, devDir: string, driverList: readonly DriverDefinition[]): Promise<UsbPrinterListing[]> {
  let names: string[];
  try {
    names = (await readdir(path.join(sysfsRoot, 'class', 'usbmisc'))).filter((n) => /^lp\d+$/.test(n));
  } catch {
    return []; // no usblp device, or not Linux
  }
  const out: UsbPrinterListing[] = [];
  for (const name of names.sort()) {
    const attrs: Record<string, string | null> = { idVendor: null, idProduct: null, manufacturer: null, product: null, serial: null };
    try {
      let dir = await realpath(path.join(sysfsRoot, 'class', 'usbmisc', name, 'device'));
      for (let up = 0; up < 4 && attrs.idVendor === null && dir !== path.dirname(dir); up++, dir = path.dirname(dir)) {
        for (const key of Object.keys(attrs)) {
          attrs[key] = await readFile(path.join(dir, key), 'utf8').then((t) => t.trim() || null, () => attrs[key] ?? null);
        }
      }
    } catch {
      // the device went away while it was being read
    }
    const vendorId = normalizeUsbId(attrs.idVendor);
    const productId = normalizeUsbId(attrs.idProduct);
    out.push({
      path: path.join(devDir, name),
      vendorId,
      productId,
      manufacturer: attrs.manufacturer ?? null,
      product: attrs.product ?? null,
      serialNumber: attrs.serial ?? null,
      drivers: printerDrivers(vendorId, productId, driverList),
    });
  }
  return out;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The USB product string of a serial port's device, read from sysfs: the tty's device directory
 * is the USB interface (or the tty below it), and the USB device holding `product` is a parent.
 */
async function usbProduct(portPath: string, sysfsRoot: string): Promise<string | null> {
  let dir: string;
  try {
    dir = await realpath(path.join(sysfsRoot, 'class', 'tty', path.basename(portPath), 'device'));
  } catch {
    return null; // not Linux, or not a USB port
  }
  for (let up = 0; up < 4 && dir !== path.dirname(dir); up++, dir = path.dirname(dir)) {
    try {
      const text = (await readFile(path.join(dir, 'product'), 'utf8')).trim();
      if (text) return text;
    } catch {
      // not at this level
    }
  }
  return null;
}

async function stableSerialNames(dir: string): Promise<Map<string, string>> {
  const byTarget = new Map<string, string>();
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return byTarget; // no USB serial devices, or not Linux
  }
  for (const name of names.sort()) {
    const link = path.join(dir, name);
    try {
      const target = await realpath(link);
      if (!byTarget.has(target)) byTarget.set(target, link);
    } catch {
      // dangling link of a device that just went away
    }
  }
  return byTarget;
}

export async function listPorts(options: ListPortsOptions): Promise<PortListing> {
  const driverList = options.drivers;
  const problems: string[] = [];
  const serial: SerialPortListing[] = [];
  const hid: HidDeviceListing[] = [];

  if (process.platform === 'linux' && !options.listSerial && !existsSync('/run/udev')) {
    problems.push(
      'udev is not running (no /run/udev): USB vendor/product ids and serial numbers may be missing; install and start it (apt-get install udev)',
    );
  }

  let serialInfos: SerialPortInfo[] = [];
  try {
    serialInfos = await (options.listSerial ?? (() => SerialPort.list()))();
  } catch (err) {
    const text = errorText(err);
    problems.push(
      /udevadm|ENOENT/.test(text)
        ? `cannot list serial ports: udevadm is missing (${text}); on Debian install: apt-get install udev`
        : `cannot list serial ports: ${text}`,
    );
  }
  const byId = await stableSerialNames(options.byIdDir ?? '/dev/serial/by-id');
  for (const info of serialInfos) {
    const vendorId = normalizeUsbId(info.vendorId);
    const productId = normalizeUsbId(info.productId);
    let resolved = info.path;
    try {
      resolved = await realpath(info.path);
    } catch {
      // keep the listed path
    }
    serial.push({
      path: info.path,
      vendorId,
      productId,
      manufacturer: info.manufacturer ?? null,
      product: options.productNames === false ? null : await usbProduct(info.path, options.sysfsRoot ?? '/sys'),
      serialNumber: info.serialNumber ?? null,
      pnpId: info.pnpId ?? null,
      byIdPath: byId.get(resolved) ?? null,
      drivers: matchDrivers(vendorId, productId, driverList),
      unsupported: unsupportedReason(vendorId, productId, driverList),
    });
  }

  let hidInfos: HidDeviceInfo[] = [];
  try {
    hidInfos = await listHidDevices(options.loadHid ?? loadNodeHid);
  } catch (err) {
    const text = errorText(err);
    problems.push(
      text.includes('apt-get')
        ? `HID devices cannot be listed: ${text}`
        : `HID devices cannot be listed: ${text} (on Debian node-hid needs: ${HID_APT_HINT})`,
    );
  }
  for (const info of hidInfos) {
    const vendorId = normalizeUsbId(info.vendorId) ?? '????';
    const productId = normalizeUsbId(info.productId) ?? '????';
    hid.push({
      path: info.path ?? null,
      vendorId,
      productId,
      manufacturer: info.manufacturer ?? null,
      product: info.product ?? null,
      serialNumber: info.serialNumber ?? null,
      drivers: matchDrivers(vendorId, productId, driverList),
      unsupported: unsupportedReason(vendorId, productId, driverList),
    });
  }

  serial.sort((a, b) => a.path.localeCompare(b.path));
  hid.sort((a, b) => (a.path ?? '').localeCompare(b.path ?? ''));
  const printers = await listUsbPrinters(options.sysfsRoot ?? '/sys', options.usbPrinterDir ?? '/dev/usb', driverList);
  return { serial, hid, printers, problems };
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

const dash = (v: string | null): string => (v === null || v === '' ? '-' : v);
const usbId = (vid: string | null, pid: string | null): string => (vid && pid ? `${vid}:${pid}` : '-');
const driverCell = (ids: string[], unsupported?: string | null): string =>
  ids.length ? ids.join(', ') + (unsupported ? ' (not supported)' : '') : '-';

/** A human table for `poctd ports`; always says something, even when nothing is present. */
export function formatPortListing(listing: PortListing): string {
  const out: string[] = [];
  out.push('Serial ports:');
  if (listing.serial.length === 0) {
    out.push('  no serial ports found');
  } else {
    const rows = listing.serial.map((p) => [
      p.path,
      usbId(p.vendorId, p.productId),
      dash(p.manufacturer),
      dash(p.product ?? null),
      dash(p.serialNumber),
      driverCell(p.drivers, p.unsupported),
    ]);
    out.push(...table(['PATH', 'USB ID', 'MANUFACTURER', 'PRODUCT', 'SERIAL', 'DRIVERS'], rows).map((l) => `  ${l}`));
    const stable = listing.serial.filter((p) => p.byIdPath);
    if (stable.length) {
      out.push('  stable names for the config:');
      for (const p of stable) out.push(`    ${p.path} = ${p.byIdPath}`);
    }
  }
  out.push('');
  out.push('HID devices:');
  if (listing.hid.length === 0) {
    out.push('  no HID devices found');
  } else {
    const rows = listing.hid.map((d) => [
      dash(d.path),
      usbId(d.vendorId, d.productId),
      dash(d.manufacturer),
      dash(d.product),
      dash(d.serialNumber),
      driverCell(d.drivers, d.unsupported),
    ]);
    out.push(...table(['PATH', 'USB ID', 'MANUFACTURER', 'PRODUCT', 'SERIAL', 'DRIVERS'], rows).map((l) => `  ${l}`));
  }
  if (listing.printers && listing.printers.length > 0) {
    out.push('');
    out.push('USB printers (printer class, transport usb-printer):');
    const rows = listing.printers.map((p) => [p.path, usbId(p.vendorId, p.productId), dash(p.manufacturer), dash(p.product), dash(p.serialNumber), driverCell(p.drivers)]);
    out.push(...table(['PATH', 'USB ID', 'MANUFACTURER', 'PRODUCT', 'SERIAL', 'DRIVERS'], rows).map((l) => `  ${l}`));
  }
  const unsupported = [...listing.serial, ...listing.hid].filter((d) => d.unsupported);
  if (unsupported.length) {
    out.push('');
    out.push('Recognised but cannot be read:');
    for (const d of unsupported) out.push(`  ${d.path ?? '-'} ${usbId(d.vendorId, d.productId)}: ${d.unsupported}`);
  }
  const matched = listing.serial.some((p) => p.drivers.length) || listing.hid.some((d) => d.drivers.length);
  const anyUsb = listing.serial.some((p) => p.vendorId !== null) || listing.hid.length > 0;
  if (anyUsb && !matched) {
    out.push('');
    out.push('No device matches a known driver by USB id (a driver can still be configured by hand).');
  }
  if (listing.problems.length) {
    out.push('');
    out.push('Problems:');
    for (const p of listing.problems) out.push(`  - ${p}`);
  }
  return `${out.join('\n')}\n`;
}
