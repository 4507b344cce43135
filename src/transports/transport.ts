import type { EventEmitter } from 'node:events';

/**
 * A transport moves bytes and nothing else. Drivers see only this interface, so a pty, a real
 * cable, a TCP socket and an in-memory pair are interchangeable.
 *
 * Events: `data` (Buffer), `open`, `close` (the link went away; a reconnecting transport may
 * open again), `error` (Error; never fatal to the process).
 */
export interface ByteTransport extends EventEmitter {
  readonly description: string;
  readonly isOpen: boolean;
  open(): Promise<void>;
  write(data: Buffer): Promise<void>;
  close(): Promise<void>;
  /** Optional line control for serial devices (CLINITEK 50 needs DTR low). */
  setSignals?(signals: { dtr?: boolean; rts?: boolean }): Promise<void>;
}

export interface SerialTransportOptions {
  type: 'serial';
  path: string;
  baud_rate?: number;
  data_bits?: 5 | 6 | 7 | 8;
  parity?: 'none' | 'even' | 'odd';
  stop_bits?: 1 | 2;
  /** Reconnect backoff when the port vanishes: first and maximum delay in ms. */
  reconnect_min_ms?: number;
  reconnect_max_ms?: number;
}

export interface TcpClientTransportOptions {
  type: 'tcp';
  host: string;
  port: number;
  reconnect_min_ms?: number;
  reconnect_max_ms?: number;
}

export interface TcpServerTransportOptions {
  type: 'tcp-server';
  port: number;
  /** Default 127.0.0.1: a device listener is opened to the clinic network only on purpose. */
  bind?: string;
  /**
   * The callers that are this device, by the identity its protocol carries (ASTM: the H record's
   * sender name, H-5.1), case-insensitive. Required on a port that several devices share.
   */
  sender?: string | string[];
  /** The peer addresses this device accepts; a caller whose address no device on the port lists is refused. */
  peers?: string[];
  /** A caller that sends nothing for this long after connecting is disconnected (default 60000). */
  idle_timeout_ms?: number;
  /** Connections open at once on the port (default 64); one more is refused. */
  max_connections?: number;
  /** A caller that spoke and then sends nothing for this long is disconnected (default 300000). */
  quiet_timeout_ms?: number;
  /** Connections one peer address may hold at once on the port (default 16); one more is refused. */
  max_connections_per_peer?: number;
}

export interface HidTransportOptions {
  type: 'hid';
  /** hidraw path, or vendor/product id (hex strings like "1a61"). */
  path?: string;
  vendor_id?: string;
  product_id?: string;
  serial?: string;
  /** Reconnect backoff while the device is unplugged: first and maximum delay in ms. */
  reconnect_min_ms?: number;
  reconnect_max_ms?: number;
}

export interface UsbPrinterTransportOptions {
  type: 'usb-printer';
  /** The printer-class node, e.g. `/dev/usb/lp0` or a udev symlink. */
  path: string;
  /** How often the node is read for replies while the link is up (ms). */
  read_interval_ms?: number;
  reconnect_min_ms?: number;
  reconnect_max_ms?: number;
}

export interface SimulatedTransportOptions {
  type: 'simulated';
  /** Options passed to the driver's simulator (e.g. memory contents). */
  simulator?: Record<string, unknown>;
}

/**
 * Options by transport kind. Open for extension: a module that registers a kind
 * (`registerTransportKind` in registry.ts) adds its options here by declaration merging:
 * `declare module '…/transports/transport.ts' { interface TransportOptionsByKind { 'dicom-scp': DicomScpOptions } }`.
 */
export interface TransportOptionsByKind {
  serial: SerialTransportOptions;
  tcp: TcpClientTransportOptions;
  'tcp-server': TcpServerTransportOptions;
  hid: HidTransportOptions;
  simulated: SimulatedTransportOptions;
  'usb-printer': UsbPrinterTransportOptions;
}

export type TransportKind = keyof TransportOptionsByKind;

export type TransportOptions = TransportOptionsByKind[TransportKind];
