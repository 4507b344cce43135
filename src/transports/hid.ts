import { DEFAULT_RECONNECT_MAX_MS, DEFAULT_RECONNECT_MIN_MS, ReconnectingTransport } from './reconnecting.ts';
import type { HidTransportOptions } from './transport.ts';

/** What Debian needs for node-hid's native part on Linux. */
export const HID_APT_HINT = 'apt-get install libusb-1.0-0 udev';

/** An open HID device as node-hid (or a test) provides it. */
export interface HidDeviceHandle {
  on(event: 'data', listener: (report: Buffer) => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  write(report: number[] | Buffer): Promise<number> | number;
  close(): Promise<void> | void;
}

/** Opens the device the options describe; rejects with a clear Error when it cannot. */
export type HidOpener = (options: HidTransportOptions) => Promise<HidDeviceHandle>;

/** Device info as node-hid's `devices()` lists it. */
export interface HidDeviceInfo {
  vendorId: number;
  productId: number;
  path?: string;
  serialNumber?: string;
  manufacturer?: string;
  product?: string;
  release?: number;
  interface?: number;
  usagePage?: number;
  usage?: number;
}

/** The part of the node-hid module this project uses. */
export interface NodeHidModule {
  devices(): HidDeviceInfo[];
  devices(vendorId: number, productId: number): HidDeviceInfo[];
  devicesAsync?: ((vendorId?: number, productId?: number) => Promise<HidDeviceInfo[]>) | undefined;
  HID: new (path: string) => HidDeviceHandle;
  HIDAsync?: { open(path: string): Promise<HidDeviceHandle> } | undefined;
}

/** node-hid is absent or its native library cannot load; the message says what to install. */
export class HidUnavailableError extends Error {
  override readonly name = 'HidUnavailableError';
}

const NATIVE_LOAD_FAILURE = /shared object|\.so\b|\.so\.|dlopen|ERR_DLOPEN|No native build|bindings|was compiled against|invalid ELF|wrong ELF/i;

function describeLoadFailure(err: unknown): HidUnavailableError {
  const text = err instanceof Error ? err.message : String(err);
  const code = typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : '';
  if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND' || /Cannot find (module|package) 'node-hid'/.test(text)) {
    return new HidUnavailableError(
      `node-hid is not installed (it is an optional dependency: npm install node-hid; on Debian it also needs: ${HID_APT_HINT})`,
      { cause: err },
    );
  }
  return new HidUnavailableError(`node-hid cannot load its native library (${text}); on Debian install: ${HID_APT_HINT}`, {
    cause: err,
  });
}

let nodeHidPromise: Promise<NodeHidModule> | undefined;

/**
 * Loads node-hid on first use, never at module load: a daemon without HID devices must start on
 * machines where libusb/udev are missing. Rejects with a HidUnavailableError naming the packages.
 */
export function loadNodeHid(): Promise<NodeHidModule> {
  nodeHidPromise ??= (async () => {
    let mod: { default?: unknown } & Record<string, unknown>;
    try {
      mod = (await import('node-hid')) as unknown as { default?: unknown } & Record<string, unknown>;
    } catch (err) {
      throw describeLoadFailure(err);
    }
    const api = (mod.default && typeof mod.default === 'object' ? mod.default : mod) as unknown as NodeHidModule;
    if (typeof api.devices !== 'function') throw new HidUnavailableError('node-hid loaded but has no devices() function');
    return api;
  })();
  // A failed load may be fixed (package installed) while the daemon runs: do not cache failures.
  nodeHidPromise.catch(() => {
    nodeHidPromise = undefined;
  });
  return nodeHidPromise;
}

/**
 * Lists HID devices through node-hid, turning native-library failures (node-hid loads its
 * binding on the first call) into HidUnavailableError.
 */
export async function listHidDevices(load: () => Promise<NodeHidModule> = loadNodeHid): Promise<HidDeviceInfo[]> {
  const hid = await load();
  try {
    return hid.devicesAsync ? await hid.devicesAsync() : hid.devices();
  } catch (err) {
    const text = err instanceof Error ? err.message : String(err);
    if (NATIVE_LOAD_FAILURE.test(text)) throw describeLoadFailure(err);
    throw new Error(`cannot list HID devices: ${text}`, { cause: err });
  }
}

/** Parses "1a61", "0x1A61" or 6753 into a number; undefined for absent or invalid input. */
export function parseUsbId(id: string | number | undefined): number | undefined {
  if (id === undefined) return undefined;
  if (typeof id === 'number') return Number.isInteger(id) && id >= 0 && id <= 0xffff ? id : undefined;
  const text = id.trim().toLowerCase().replace(/^0x/, '');
  if (!/^[0-9a-f]{1,4}$/.test(text)) return undefined;
  return Number.parseInt(text, 16);
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}

export function describeHidTarget(options: HidTransportOptions): string {
  if (options.path) return options.path;
  const ids = `${options.vendor_id ?? '????'}:${options.product_id ?? '????'}`;
  return options.serial ? `${ids} (serial ${options.serial})` : ids;
}

/** The real opener: node-hid, HIDAsync when the installed version has it. */
export const nodeHidOpener: HidOpener = async (options) => {
  const hid = await loadNodeHid();
  const target = describeHidTarget(options);
  let path = options.path;
  try {
    if (!path) {
      const vid = parseUsbId(options.vendor_id);
      const pid = parseUsbId(options.product_id);
      if (vid === undefined || pid === undefined) {
        throw new Error(`HID transport needs a path or vendor_id and product_id as hex (got ${target})`);
      }
      const list = hid.devicesAsync ? await hid.devicesAsync(vid, pid) : hid.devices(vid, pid);
      const match = list.find((d) => d.path && (!options.serial || d.serialNumber === options.serial));
      if (!match?.path) throw new Error(`HID device ${hex4(vid)}:${hex4(pid)}${options.serial ? ` serial ${options.serial}` : ''} is missing`);
      path = match.path;
    }
    return hid.HIDAsync ? await hid.HIDAsync.open(path) : new hid.HID(path);
  } catch (err) {
    const text = err instanceof Error ? err.message : String(err);
    if (NATIVE_LOAD_FAILURE.test(text)) throw describeLoadFailure(err);
    if (/is missing|needs a path/.test(text)) throw err;
    if (/no such file|ENOENT/i.test(text)) throw new Error(`HID device ${target} is missing`, { cause: err });
    throw new Error(
      `HID device ${target} is missing or not accessible (${text}); check that it is plugged in and that a udev rule lets this user open it`,
      { cause: err },
    );
  }
};

export interface HidTransportExtras {
  /** Opens the device; defaults to node-hid. Tests inject reports through a fake here. */
  hidOpener?: HidOpener;
  /** Bytes per output report, without the report id (default 64). */
  reportSize?: number;
  /** Report id byte put in front of every output report (default 0: unnumbered reports). */
  reportId?: number;
  /** Backoff defaults when the options do not set them. */
  reconnect_min_ms?: number;
  reconnect_max_ms?: number;
}

/**
 * A USB HID device (FreeStyle meters and the like) through node-hid, loaded only when opened.
 *
 * Every input report arrives as one `data` Buffer. `write(report)` sends one output report: the
 * bytes are zero-padded to `reportSize` (64) and prefixed with the report id byte (0) that hidapi
 * expects as the first byte of every write; a write longer than one report is rejected, because
 * HID protocols frame per report.
 *
 * Availability follows the serial transport: `open()` resolves even when the device is unplugged
 * or node-hid cannot load (then `lastError` and the `error` event say which Debian packages to
 * install), and it keeps retrying with backoff until `close()`.
 */
export class HidTransport extends ReconnectingTransport {
  readonly description: string;
  readonly options: Readonly<HidTransportOptions>;
  readonly reportSize: number;
  readonly reportId: number;
  private readonly opener: HidOpener;
  private device: HidDeviceHandle | undefined;

  constructor(options: HidTransportOptions, extras: HidTransportExtras = {}) {
    super(
      options.reconnect_min_ms ?? extras.reconnect_min_ms ?? DEFAULT_RECONNECT_MIN_MS,
      options.reconnect_max_ms ?? extras.reconnect_max_ms ?? DEFAULT_RECONNECT_MAX_MS,
    );
    this.options = { ...options };
    this.description = `hid:${describeHidTarget(options)}`;
    this.opener = extras.hidOpener ?? nodeHidOpener;
    this.reportSize = extras.reportSize ?? 64;
    this.reportId = extras.reportId ?? 0;
  }

  protected async connect(): Promise<void> {
    const device = await this.opener(this.options);
    if (this.device) await Promise.resolve(this.device.close()).catch(() => undefined);
    this.device = device;
    device.on('data', (report: Buffer) => {
      if (this.device === device && this.linkUp) this.emit('data', Buffer.from(report));
    });
    device.on('error', (err: Error) => {
      if (this.device !== device) return;
      this.linkLost(new Error(`HID device ${describeHidTarget(this.options)} was disconnected: ${err.message}`, { cause: err }));
    });
  }

  protected async disconnect(): Promise<void> {
    const device = this.device;
    this.device = undefined;
    if (!device) return;
    try {
      await device.close();
    } catch {
      // an unplugged device may refuse to close; it is gone either way
    }
  }

  async write(report: Buffer): Promise<void> {
    const device = this.device;
    if (!this.linkUp || !device) {
      throw new Error(`${this.description}: write while the device is not open${this.lastError ? ` (${this.lastError.message})` : ''}`);
    }
    if (report.length > this.reportSize) {
      throw new Error(`${this.description}: a report is at most ${this.reportSize} bytes, got ${report.length}`);
    }
    const out = Buffer.alloc(this.reportSize + 1);
    out[0] = this.reportId;
    report.copy(out, 1);
    try {
      await device.write(out);
    } catch (err) {
      const error = new Error(`${this.description}: write failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      this.report(error);
      throw error;
    }
  }
}
