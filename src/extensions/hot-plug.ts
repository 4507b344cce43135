import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import type { AutoDetectRule, DeviceConfig } from '../config/types.ts';
import type { DriverDefinition } from '../driver-sdk/index.ts';
import { listPorts, normalizeUsbId, type PortListing } from '../transports/discovery.ts';
import { makeEvent } from './bridge.ts';
import type { Extension, Services } from './extension.ts';

/** What the hot-plug watcher needs from the device manager. */
export interface DeviceHost {
  addDevice(config: DeviceConfig): Promise<void>;
  removeDevice(id: string, reason: string): Promise<void>;
}

/** One USB device as the watcher sees it; `key` stays the same while it stays plugged in. */
export interface PresentDevice {
  key: string;
  kind: 'serial' | 'hid' | 'usb-printer';
  path: string;
  /** `/dev/serial/by-id/...`: survives re-enumeration, so it is what the session opens. */
  stablePath: string | null;
  usb: string | null;
  serialNumber: string | null;
  /** Ids of the drivers whose USB ids match, as the listing found them. */
  drivers: string[];
}

export type PortLister = () => Promise<PortListing>;

/** Why a device was or was not taken; `device` is set when it was. */
export type Decision =
  | { take: true; device: DeviceConfig }
  | { take: false; reason: 'not-allowed' | 'configured' }
  | { take: false; reason: 'ambiguous' | 'wrong-transport'; message: string };

export function presentDevices(listing: PortListing): PresentDevice[] {
  const usb = (v: string | null, p: string | null): string | null => (v && p ? `${v}:${p}` : null);
  return [
    ...listing.serial.map((p) => ({
      key: `serial:${p.path}`,
      kind: 'serial' as const,
      path: p.path,
      stablePath: p.byIdPath,
      usb: usb(p.vendorId, p.productId),
      serialNumber: p.serialNumber,
      drivers: p.drivers,
    })),
    ...listing.hid
      .filter((d): d is typeof d & { path: string } => d.path !== null)
      .map((d) => ({
        key: `hid:${d.path}`,
        kind: 'hid' as const,
        path: d.path,
        stablePath: null,
        usb: usb(d.vendorId, d.productId),
        serialNumber: d.serialNumber,
        drivers: d.drivers,
      })),
    ...(listing.printers ?? []).map((p) => ({
      key: `usb-printer:${p.path}`,
      kind: 'usb-printer' as const,
      path: p.path,
      stablePath: null,
      usb: usb(p.vendorId, p.productId),
      serialNumber: p.serialNumber,
      drivers: p.drivers,
    })),
  ];
}

function resolved(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** True when a configured device already owns this port (it has its own session). */
function configuredFor(present: PresentDevice, configured: readonly DeviceConfig[]): boolean {
  const mine = new Set([present.path, resolved(present.path), ...(present.stablePath ? [present.stablePath] : [])]);
  return configured.some((d) => {
    const t = d.transport;
    if (present.kind === 'serial') return t.type === 'serial' && (mine.has(t.path) || mine.has(resolved(t.path)));
    if (present.kind === 'usb-printer') return t.type === 'usb-printer' && (mine.has(t.path) || mine.has(resolved(t.path)));
    if (t.type !== 'hid') return false;
    if (t.path) return mine.has(t.path);
    const ids = t.vendor_id && t.product_id ? `${normalizeUsbId(t.vendor_id)}:${normalizeUsbId(t.product_id)}` : null;
    return ids === present.usb && (!t.serial || t.serial === present.serialNumber);
  });
}

function slug(text: string): string {
  return text.replace(/[^A-Za-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40);
}

/**
 * The id a detected device gets: driver and USB serial number when the device has one (so the
 * same meter keeps its id, its retained state and its records' ids across plug-ins), else a short
 * hash of its port.
 */
export function detectedDeviceId(driver: string, present: PresentDevice): string {
  const serial = present.serialNumber ? slug(present.serialNumber) : '';
  if (serial) return `${driver}-${serial}`;
  const port = present.stablePath ?? present.path;
  return `${driver}-${createHash('sha256').update(port).digest('hex').slice(0, 8)}`;
}

function ruleMatches(rule: AutoDetectRule, present: PresentDevice, drivers: readonly DriverDefinition[]): boolean {
  if (rule.usb !== undefined && rule.usb !== present.usb) return false;
  if (rule.serial !== undefined && rule.serial !== present.serialNumber) return false;
  if (rule.driver !== undefined && rule.usb === undefined && rule.serial === undefined) {
    // A rule with only a driver takes what that driver's USB ids say is its device.
    return present.drivers.includes(rule.driver) && drivers.some((d) => d.id === rule.driver);
  }
  return true;
}

/**
 * Decides whether a device that just appeared gets a session, and with which driver. Pure, so the
 * rules can be tested without hardware.
 */
export function decide(
  present: PresentDevice,
  rules: readonly AutoDetectRule[],
  drivers: readonly DriverDefinition[],
  configured: readonly DeviceConfig[],
  defaults: { timezone?: string | undefined; poll_interval?: number | undefined },
): Decision {
  if (configuredFor(present, configured)) return { take: false, reason: 'configured' };
  const rule = rules.find((r) => ruleMatches(r, present, drivers));
  if (!rule) return { take: false, reason: 'not-allowed' };
  let driver: DriverDefinition | undefined;
  if (rule.driver !== undefined) {
    driver = drivers.find((d) => d.id === rule.driver);
  } else {
    const candidates = drivers.filter((d) => present.drivers.includes(d.id));
    if (candidates.length !== 1) {
      const names = candidates.map((d) => d.id).join(', ') || 'none';
      return {
        take: false,
        reason: 'ambiguous',
        message: `USB ${present.usb ?? 'device'} at ${present.path} fits ${candidates.length} drivers (${names}): name the driver in an auto_detect rule`,
      };
    }
    driver = candidates[0];
  }
  if (!driver) return { take: false, reason: 'not-allowed' };
  if (!driver.transports.includes(present.kind)) {
    return {
      take: false,
      reason: 'wrong-transport',
      message: `${driver.id} does not speak over ${present.kind}; ${present.path} was not taken`,
    };
  }
  const id = detectedDeviceId(driver.id, present);
  const [vendorId, productId] = present.usb ? present.usb.split(':') : [undefined, undefined];
  const device: DeviceConfig = {
    id,
    driver: driver.id,
    transport:
      present.kind === 'serial'
        ? { type: 'serial', path: present.stablePath ?? present.path }
        : present.kind === 'usb-printer'
          ? { type: 'usb-printer', path: present.path }
          : {
            type: 'hid',
            path: present.path,
            ...(vendorId ? { vendor_id: vendorId } : {}),
            ...(productId ? { product_id: productId } : {}),
            ...(present.serialNumber ? { serial: present.serialNumber } : {}),
          },
    ...(defaults.timezone ? { timezone: defaults.timezone } : {}),
    ...(defaults.poll_interval ? { poll_interval: defaults.poll_interval } : {}),
  };
  return { take: true, device };
}

/**
 * Hot-plug: looks at the USB serial and HID devices present every `auto_detect.interval_s`, gives
 * a session to each new one that an `auto_detect.allow` rule takes, and stops it (availability
 * offline) when it is unplugged. Polling rather than udev events: it needs nothing but what
 * `poctd ports` already uses, and a meter docked a second later than it could be costs nothing.
 */
export class HotPlug implements Extension {
  readonly name = 'hot-plug';
  private timer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private stopped = false;
  /** Present device key → id of the session it got (absent: seen but not taken). */
  private readonly present = new Map<string, string | null>();
  private lastListError = '';

  constructor(
    private readonly s: Services,
    private readonly devices: DeviceHost,
    private readonly lister: PortLister = () => listPorts({ drivers: s.drivers, productNames: false }),
  ) {}

  async start(): Promise<void> {
    if (this.s.config.auto_detect.allow.length === 0) return;
    this.stopped = false;
    await this.scan();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.scanning;
  }

  /** One look at the devices present; a scan asked for while one runs joins it. */
  private scan(): Promise<void> {
    this.scanning ??= this.scanOnce().finally(() => {
      this.scanning = undefined;
      if (!this.stopped) this.timer = setTimeout(() => void this.scan(), this.s.config.auto_detect.interval_s * 1000);
    });
    return this.scanning;
  }

  private async scanOnce(): Promise<void> {
    clearTimeout(this.timer);
    let listing: PortListing;
    try {
      listing = await this.lister();
    } catch (error) {
      this.listFailed((error as Error).message);
      return;
    }
    // Problems (no udev, no libusb) are said once; devices that can be listed are still handled.
    if (listing.problems.length) this.listFailed(listing.problems.join('; '));
    else this.lastListError = '';
    const now = new Map(presentDevices(listing).map((p) => [p.key, p]));
    for (const [key, id] of [...this.present]) {
      if (now.has(key)) continue;
      this.present.delete(key);
      if (id !== null && !this.stopped) await this.devices.removeDevice(id, 'unplugged');
    }
    for (const [key, p] of now) {
      if (this.present.has(key) || this.stopped) continue;
      await this.arrived(p);
    }
  }

  private async arrived(p: PresentDevice): Promise<void> {
    const { auto_detect } = this.s.config;
    const decision = decide(p, auto_detect.allow, this.s.drivers, this.s.config.devices, {
      timezone: auto_detect.timezone,
      poll_interval: auto_detect.poll_interval,
    });
    if (!decision.take) {
      this.present.set(p.key, null);
      if (decision.reason === 'ambiguous' || decision.reason === 'wrong-transport') {
        this.s.log.warn({ path: p.path, usb: p.usb }, decision.message);
        this.s.bus.emit('bridgeEvent', makeEvent('config_error', null, decision.message, this.s.now(), { path: p.path, usb: p.usb }));
      } else if (decision.reason === 'not-allowed') {
        this.s.log.debug({ path: p.path, usb: p.usb }, 'a USB device appeared that no auto_detect rule takes');
      }
      return;
    }
    const { device } = decision;
    this.present.set(p.key, device.id);
    this.s.log.info({ device: device.id, driver: device.driver, path: p.path }, 'device plugged in');
    this.s.bus.emit(
      'bridgeEvent',
      makeEvent('device_added', device.id, `${device.driver} plugged in at ${p.path}`, this.s.now(), {
        driver: device.driver,
        path: p.path,
        usb: p.usb,
      }),
    );
    await this.devices.addDevice(device);
  }

  private listFailed(message: string): void {
    if (message === this.lastListError) return;
    this.lastListError = message;
    this.s.log.warn({ err: message }, 'hot-plug: cannot list every USB device');
    this.s.bus.emit('bridgeEvent', makeEvent('device_error', null, `hot-plug: ${message}`, this.s.now()));
  }
}
