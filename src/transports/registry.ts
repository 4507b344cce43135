/**
 * Transport kinds, registered rather than listed: each kind says how its config options are
 * validated (a JSON Schema, draft 2020-12, whose `type` property is the kind's name as a const),
 * what it checks beyond the schema, and how it builds its transport. The config loader and the
 * device manager ask this registry; a new kind (a DICOM SCP, a POCT1-A listener, a USB printer)
 * is one `registerTransportKind` call in its own module, with no switch to edit. Each kind loads
 * its implementation only when a transport of it is built, so validating a config or printing
 * `--help` never loads the serial or HID native modules.
 */
import { isIP } from 'node:net';
import type { DeviceSimulator } from '../driver-sdk/index.ts';
import { DICOM_SCP_SCHEMA, dicomScpOptionProblems } from '../protocols/dicom/scp-options.ts';
import type { HidTransportExtras } from './hid.ts';
import type { ListenerReport } from './listener.ts';
import type { ByteTransport, SerialTransportOptions, TransportKind, TransportOptions, TransportOptionsByKind } from './transport.ts';

export type SerialDefaults = Omit<SerialTransportOptions, 'type' | 'path'>;

/** What building a transport may need besides its options. */
export interface TransportBuildContext {
  /** The device's id, to name in-process cables in messages. */
  deviceId?: string | undefined;
  /** The driver's serial line settings; the config's own settings win. */
  serialDefaults?: SerialDefaults | undefined;
  /** Test overrides (an HID opener). */
  extras?: { hid?: HidTransportExtras } | undefined;
  /**
   * For in-process kinds: loads and makes the driver's simulator (with the device's simulator
   * options). Rejects with an Error naming a bad option.
   */
  simulator?: ((options: Record<string, unknown>) => Promise<DeviceSimulator>) | undefined;
  /** For listening kinds: where refused callers are reported (the device manager's `bridge/event`). */
  listenerReport?: ListenerReport | undefined;
}

/** A built transport, and the simulator playing the device end when the kind runs one in-process. */
export interface BuiltTransport {
  transport: ByteTransport;
  simulator?: DeviceSimulator;
}

/** A problem a kind finds in one device's options that the schema cannot express. */
export interface TransportOptionProblem {
  /** The option's key under `transport` (e.g. `reconnect_max_ms`, or `peers[1]` for a list item). */
  field: string;
  message: string;
}

export interface TransportKindSpec<K extends string = string> {
  kind: K;
  /**
   * The options' JSON Schema: either a schema object (`properties.type.const` must be `kind`), or
   * the name of a definition in `schemas/config.schema.json`'s `$defs`, where the built-in kinds
   * are documented beside the rest of the config.
   */
  schema: { $defsName: string } | { inline: Record<string, unknown> };
  /** One line for `poctd check-config` and the README's table. */
  description: string;
  /** Checks across a kind's options that a schema cannot state. */
  check?(options: Record<string, unknown>): TransportOptionProblem[];
  build(options: K extends keyof TransportOptionsByKind ? TransportOptionsByKind[K] : TransportOptions, ctx: TransportBuildContext): Promise<BuiltTransport>;
}

const kinds = new Map<string, TransportKindSpec>();

/** Adds a transport kind; a second registration of one name is a programming error. */
export function registerTransportKind<K extends string>(spec: TransportKindSpec<K>): void {
  if (kinds.has(spec.kind)) throw new Error(`transport kind "${spec.kind}" is already registered`);
  if ('inline' in spec.schema) {
    const type = (spec.schema.inline.properties as Record<string, { const?: unknown }> | undefined)?.type?.const;
    if (type !== spec.kind) throw new Error(`transport kind "${spec.kind}": its schema must have properties.type.const "${spec.kind}"`);
  }
  kinds.set(spec.kind, spec as unknown as TransportKindSpec);
}

/** The registered kinds, in registration order. */
export function transportKinds(): readonly TransportKindSpec[] {
  return [...kinds.values()];
}

export function transportKind(kind: string): TransportKindSpec | undefined {
  return kinds.get(kind);
}

/**
 * Builds the transport a device's config asks for (and, for `simulated`, its simulator on an
 * in-memory cable). Throws an Error naming an unknown kind.
 */
export async function buildTransport(options: TransportOptions, ctx: TransportBuildContext = {}): Promise<BuiltTransport> {
  const spec = kinds.get(options.type);
  if (!spec) throw new Error(`unknown transport type ${JSON.stringify(options.type)} (known: ${[...kinds.keys()].join(', ')})`);
  return spec.build(options, ctx);
}

/** A config parser may leave `baud_rate: undefined`; that must not hide the driver's default. */
function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

function reconnectOrder(options: Record<string, unknown>): TransportOptionProblem[] {
  const min = options.reconnect_min_ms;
  const max = options.reconnect_max_ms;
  if (typeof min === 'number' && typeof max === 'number' && max < min) {
    return [{ field: 'reconnect_max_ms', message: `must be >= reconnect_min_ms (${min})` }];
  }
  return [];
}

/** Peers are addresses (a name would be resolved once and go stale); a sender list names each once. */
function listenerOptionProblems(options: Record<string, unknown>): TransportOptionProblem[] {
  const out: TransportOptionProblem[] = [];
  if (Array.isArray(options.peers)) {
    options.peers.forEach((p, i) => {
      if (typeof p === 'string' && !isIP(p.trim())) out.push({ field: `peers[${i}]`, message: `${JSON.stringify(p)} is not an IP address` });
    });
  }
  if (Array.isArray(options.sender)) {
    const seen = new Map<string, number>();
    options.sender.forEach((s, i) => {
      if (typeof s !== 'string') return;
      const key = s.trim().toLowerCase();
      const first = seen.get(key);
      if (first !== undefined) out.push({ field: `sender[${i}]`, message: `duplicate of sender[${first}]` });
      else seen.set(key, i);
    });
  }
  return out;
}

registerTransportKind({
  kind: 'serial',
  schema: { $defsName: 'serialTransport' },
  description: 'a serial port (path, baud_rate, data_bits, parity, stop_bits); line settings default to the driver’s',
  check: reconnectOrder,
  build: async (options, ctx) => {
    const { SerialTransport } = await import('./serial.ts');
    return { transport: new SerialTransport({ ...(ctx.serialDefaults ?? {}), ...withoutUndefined(options) }) };
  },
});

registerTransportKind({
  kind: 'tcp',
  schema: { $defsName: 'tcpTransport' },
  description: 'poctd connects to the device (host, port)',
  check: reconnectOrder,
  build: async (options) => {
    const { TcpClientTransport } = await import('./tcp.ts');
    return { transport: new TcpClientTransport(options) };
  },
});

registerTransportKind({
  kind: 'tcp-server',
  schema: { $defsName: 'tcpServerTransport' },
  description: 'poctd listens and devices connect (port, bind default 127.0.0.1); devices may share a port, told apart by sender and peers',
  check: listenerOptionProblems,
  build: async (options, ctx) => {
    const { ListenerTransport } = await import('./listener.ts');
    return { transport: new ListenerTransport(options, ctx.deviceId ?? `port ${options.port}`, ctx.listenerReport) };
  },
});

registerTransportKind({
  kind: 'hid',
  schema: { $defsName: 'hidTransport' },
  description: 'a USB HID device (path, or vendor_id and product_id)',
  check: reconnectOrder,
  build: async (options, ctx) => {
    const { HidTransport } = await import('./hid.ts');
    return { transport: new HidTransport(options, ctx.extras?.hid) };
  },
});

registerTransportKind({
  kind: 'simulated',
  schema: { $defsName: 'simulatedTransport' },
  description: 'the driver’s device simulator, in-process on an in-memory cable',
  build: async (options, ctx) => {
    if (!ctx.simulator) throw new Error('a simulated transport needs its driver’s simulator');
    const simulator = await ctx.simulator(options.simulator ?? {});
    const { memoryPair } = await import('./memory.ts');
    const pair = memoryPair(`sim:${ctx.deviceId ?? 'device'}`);
    await pair.device.open();
    simulator.attach(pair.device);
    return { transport: pair.host, simulator };
  },
});

registerTransportKind({
  kind: 'usb-printer',
  schema: { $defsName: 'usbPrinterTransport' },
  description: 'a USB printer-class device node (path, e.g. /dev/usb/lp0), read for status replies',
  check: reconnectOrder,
  build: async (options) => {
    const { UsbPrinterTransport } = await import('./usb-printer.ts');
    return { transport: new UsbPrinterTransport(options) };
  },
});

registerTransportKind({
  kind: 'dicom-scp',
  schema: { inline: DICOM_SCP_SCHEMA },
  description: 'a DICOM C-STORE/C-ECHO SCP (port, bind default 127.0.0.1, ae_title, allowed_callers); ultrasound machines may share a port, told apart by calling AE title',
  check: dicomScpOptionProblems,
  build: async (options, ctx) => {
    const { DicomScpTransport } = await import('../protocols/dicom/scp-transport.ts');
    return { transport: new DicomScpTransport(options, ctx.deviceId ?? `port ${options.port}`, ctx.listenerReport) };
  },
});

export type { TransportKind };
