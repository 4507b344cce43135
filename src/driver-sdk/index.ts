/**
 * The contract between the daemon and a device driver. A driver is a declarative definition
 * (what it is, how to recognise it, how it is reached) plus three behaviours that share one codec:
 * `decode` (a capture → records, used by `poctd replay` and the golden tests), `createSession`
 * (the live conversation with a device) and `simulator` (the same protocol from the device side).
 */
import type { Logger } from 'pino';
import type { DeviceConfig } from '../config/types.ts';
import type { RecordDrafts } from '../records/kinds.ts';
import type { BridgeEventType, DeviceState, ResultDraft } from '../records/types.ts';
import type { ByteTransport, SerialTransportOptions, TransportKind } from '../transports/transport.ts';

export type DeviceKind = 'glucose-meter' | 'urinalysis-reader' | 'analyzer' | 'label-printer' | 'ultrasound';

export interface UsbMatch {
  /** Lowercase 4-digit hex, as `lsusb` prints it. */
  vendorId: string;
  productId: string;
  /** What the id is: the meter itself, or a cable chip that only suggests this driver. */
  description: string;
  /**
   * Set when the device is recognised but cannot be read (e.g. FreeStyle Libre 2 encrypts its
   * protocol): the reason is shown by `poctd ports` and on the device state, and no session opens.
   */
  unsupported?: string;
}

/** One write or read as it crossed the wire: `H` host → device, `D` device → host. */
export interface Exchange {
  dir: 'H' | 'D';
  bytes: Buffer;
}

export type Capture = { kind: 'transcript'; exchanges: Exchange[] } | { kind: 'raw'; bytes: Buffer };

/** A session's drafts for one commit, keyed by record kind: `host.commit({ result: drafts }, capture)`. */
export type { RecordDrafts };

/** A frame or line the codec refused, with the reason; never thrown. */
export interface DecodeIssue {
  reason: string;
  /** The offending bytes (kept in quarantine, never logged as text). */
  bytes?: Buffer;
}

export interface DecodeContext {
  deviceId: string;
  /** IANA zone of the device's naive clock. */
  timezone: string;
  /**
   * The device's `options` from its config, for drivers whose decoding depends on them (a strip
   * reader's `date_order`, an ASTM device's dialect, encoding and mappings), so a replay decodes
   * as the live session did. A driver throws an Error naming a bad option.
   */
  options?: Readonly<Record<string, unknown>>;
}

export interface DecodeResult {
  drafts: ResultDraft[];
  issues: DecodeIssue[];
  /** What the capture says about the device (serial, firmware, display unit, clock...). */
  device: Partial<DeviceState>;
}

export interface CommandSpec {
  description: string;
}

export interface SessionHost {
  readonly device: DeviceConfig;
  readonly timezone: string;
  readonly transport: ByteTransport;
  readonly log: Logger;
  now(): Date;
  /**
   * Stores the drafts (keyed by record kind: `{ result: drafts }`) and the raw capture and resolves
   * only once both are durable: the capture's bytes in the blob store, then the records in one
   * SQLite transaction. Call it before telling the device "received" (rule 1 of the design); a
   * rejection means nothing was stored. The counts are over every kind.
   */
  commit(drafts: RecordDrafts, capture: Capture): Promise<{ inserted: number; duplicates: number }>;
  /** Keeps bytes that could not be decoded, with the reason (rule 6). */
  quarantine(bytes: Buffer, reason: string): void;
  event(type: BridgeEventType, message: string, data?: Record<string, unknown>): void;
  updateState(patch: Partial<DeviceState>): void;
}

export interface DriverSession {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Runs a device command (`download`, `clock/sync`, `status`, …); rejects with a clear Error. */
  command(verb: string, params: Record<string, unknown>): Promise<unknown>;
}

/** Plays the device end of the protocol on a transport (demo, tests, benchmark). */
export interface DeviceSimulator {
  attach(transport: ByteTransport): void;
  detach(): void;
}

export interface SimulatorDefinition {
  description: string;
  /** Option names with a one-line description each, for `poctd simulate --help`. */
  options: Record<string, string>;
  create(options: Record<string, unknown>): DeviceSimulator;
}

export interface DriverDefinition {
  id: string;
  kind: DeviceKind;
  vendor: string;
  models: string[];
  usb: UsbMatch[];
  transports: TransportKind[];
  /** Serial line settings the device uses; the config may override the path only. */
  serialDefaults?: Omit<SerialTransportOptions, 'type' | 'path'>;
  commands: Record<string, CommandSpec>;
  decode(capture: Capture, ctx: DecodeContext): DecodeResult;
  /**
   * A configured device this driver recognises but cannot read, known from the config alone (a
   * model option, a simulated model): the model to show and why. The device manager then never
   * opens it nor starts a session, as for a USB entry marked `unsupported`.
   */
  refuses?(device: DeviceConfig): { model: string; reason: string } | null;
  createSession(host: SessionHost): DriverSession;
  simulator: SimulatorDefinition;
}
