/**
 * The contract between the daemon and a device driver. A driver is a declarative definition
 * (what it is, how to recognise it, how it is reached) plus three behaviours that share one codec:
 * `decode` (a capture → records, used by `poctd replay` and the golden tests), `createSession`
 * (the live conversation with a device) and `simulator` (the same protocol from the device side).
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { DeviceConfig } from '../config/types.ts';
import type { DeviceKind, DeviceStatePatch } from '../records/device-state.ts';
import type { RecordDrafts } from '../records/kinds.ts';
import type { BridgeEventType } from '../records/types.ts';
import type { BlobStore } from '../store/blobs.ts';
import type { ByteTransport, SerialTransportOptions, TransportKind } from '../transports/transport.ts';
import type { ParamsSchema } from './commands.ts';
import type { DeviceJob, JobWrite } from '../store/jobs.ts';

export type { DeviceJob, JobWrite } from '../store/jobs.ts';

export type { DeviceKind, DeviceStatePatch } from '../records/device-state.ts';

export interface UsbMatch {
  /** Lowercase 4-digit hex, as `lsusb` prints it. */
  vendorId: string;
  /**
   * Lowercase 4-digit hex; or `*` for any product of the vendor, which is matched only for USB
   * printer-class nodes (`poctd ports`, for drivers that speak over `usb-printer`).
   */
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
  /** The problem's code first (`garbage`, `bad-checksum`), then, in parentheses, where and what exactly. */
  reason: string;
  /** How many problems this one stands for (a run of identical ones collapsed into one); 1 when absent. */
  count?: number;
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

/**
 * What a capture says about the device, flat as a decoder finds it. A session turns it into a
 * state patch with `factsToPatch` (the meter fields go into the `meter` block).
 */
export interface DeviceFacts {
  manufacturer?: string;
  model?: string | null;
  serial?: string | null;
  firmware?: string | null;
  display_unit?: string | null;
  record_count?: number | null;
}

/** A decoder's facts as a device-state patch: identity at the top, the meter fields in `meter`. */
export function factsToPatch(facts: DeviceFacts): DeviceStatePatch {
  const { display_unit, record_count, ...identity } = facts;
  const patch: DeviceStatePatch = { ...identity };
  if (display_unit !== undefined || record_count !== undefined) {
    patch.meter = {};
    if (display_unit !== undefined) patch.meter.display_unit = display_unit;
    if (record_count !== undefined) patch.meter.record_count = record_count;
  }
  return patch;
}

export interface DecodeResult {
  /**
   * The records found, keyed by kind as `SessionHost.commit` takes them (`{ result: drafts }`), so
   * `poctd replay` and the golden tests finalize every kind a driver makes without naming one.
   */
  drafts: RecordDrafts;
  issues: DecodeIssue[];
  /** What the capture says about the device (serial, firmware, display unit...). */
  device: DeviceFacts;
  /**
   * For a device whose capture is a status conversation (a printer's `~HS` reply): the device
   * state it gives, as the live session would patch it. The golden test compares it with the
   * case's `expected-state.json`.
   */
  state?: DeviceStatePatch;
}

export { NO_PARAMS, NO_PATIENT_DATA, PATIENT_DATA_OMITTED, type ParamsSchema } from './commands.ts';

export interface CommandSpec {
  description: string;
  /**
   * JSON Schema (draft 2020-12) of the request's parameters (the payload without `transaction`
   * and `requested_by`); `NO_PARAMS` for a command that takes none. The device manager refuses a
   * request that does not fit before the session sees it. Mark patient data with
   * `"x-patient": true` on its property: the audit never keeps its value.
   */
  params: ParamsSchema;
  /**
   * JSON Schema of the answer's `data`, with its patient fields marked `"x-patient": true` as in
   * `params` (`{}` for an answer that holds none). The audit row and the outcome kept for repeats
   * store `data` redacted by it. Without one, they keep only the status and the error: an answer
   * nothing describes could carry patient data (a command that echoes its label).
   */
  response?: ParamsSchema;
}

export interface SessionHost {
  readonly device: DeviceConfig;
  /**
   * The daemon's store, for a session whose device sends files too big to hand over as a capture
   * (a DICOM cine of hundreds of MB): it streams them into the blob store itself and indexes them
   * in the database at `path` before it answers. Absent where there is no store (a fake host).
   */
  readonly store?: { readonly blobs: BlobStore; readonly path: string };
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
  commit(drafts: RecordDrafts, capture: Capture, jobs?: readonly JobWrite[]): Promise<{ inserted: number; duplicates: number }>;
  /**
   * The device's durable jobs, for a device that takes work it must not lose (a label printer):
   * a job is written by `commit` (its `jobs`) in the transaction of the record that announces it,
   * so it is stored before the request is answered and found again after a restart.
   */
  readonly jobs?: DeviceJobs;
  /**
   * Keeps bytes that could not be used, with the reason (rule 6). Resolves once the bytes are
   * stored; rejects when they could not be. A session that tells the device "received" for
   * something it only quarantined (an ASTM message with no results) awaits this first, so the
   * device hears it only once the bytes are kept.
   */
  quarantine(bytes: Buffer, reason: string): Promise<void>;
  event(type: BridgeEventType, message: string, data?: Record<string, unknown>): void;
  /**
   * Reports device state: common fields replace, the fields of the kind's block (`meter`,
   * `analyzer`, `printer`, `imaging`) merge into it. Another kind's block is refused and logged.
   */
  updateState(patch: DeviceStatePatch): void;
}

/** Reads of a device's durable jobs (src/store/jobs.ts); writes go through `SessionHost.commit`. */
export interface DeviceJobs {
  /** The jobs the device still owes, oldest first. */
  open(): DeviceJob[];
  /** The newest jobs, newest first. */
  recent(limit: number): DeviceJob[];
  get(id: string): DeviceJob | undefined;
  /** The job a request with this transaction made, if any (a repeat must not make a second). */
  byTransaction(verb: string, transaction: string | number): DeviceJob | undefined;
  /** The bytes a job sends (its capture, from the blob store). */
  payload(job: DeviceJob): Buffer;
  /** The next number of a named sequence, stored before it is given: never the same twice. */
  nextSequence(name: string): Promise<number>;
}

/** What the device manager knows of a request beside its parameters. */
export interface CommandContext {
  /** The request's `transaction` (validated), null without one. */
  transaction: string | number | null;
  requestedBy: string | null;
}

export interface DriverSession {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Runs a device command (`download`, `clock/sync`, `status`, …); rejects with a clear Error. */
  command(verb: string, params: Record<string, unknown>, context?: CommandContext): Promise<unknown>;
}

/** Plays the device end of the protocol on a transport (demo, tests, benchmark). */
export interface DeviceSimulator {
  attach(transport: ByteTransport): void;
  detach(): void;
}

/** A driver's simulator code, loaded only when a simulator is used. */
export interface SimulatorImplementation {
  /** Makes a simulator; throws an Error naming a bad option. */
  create(options: Record<string, unknown>): DeviceSimulator;
}

/**
 * What a driver declares about its simulator. The description and options are here, for
 * `poctd simulate --help`; the code is not: `load` imports it on first use (the module cache
 * keeps it), so a daemon with no simulated device never loads simulator code.
 */
export interface SimulatorDefinition {
  description: string;
  /** Option names with a one-line description each, for `poctd simulate --help`. */
  options: Record<string, string>;
  /** e.g. `() => import('./simulator.ts').then((m) => ({ create: (o) => new m.MySimulator(m.parseOptions(o)) }))` */
  load(): Promise<SimulatorImplementation>;
  /**
   * The `serial` option a simulated device gets when its config sets none, derived from the
   * device id (`derivedSerial`) in the form this device's serials take: record ids come from the
   * driver and the serial, so N simulated devices must be N serials, not one default.
   */
  serialFor?(deviceId: string): string;
}

/**
 * A serial made from a device id: `length` characters of `alphabet` from the id's SHA-256, the same
 * for the same id and different for different ids (to one chance in alphabet^length).
 */
export function derivedSerial(deviceId: string, length: number, alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ'): string {
  const digest = createHash('sha256').update(deviceId, 'utf8').digest();
  let n = BigInt(`0x${digest.toString('hex')}`);
  const base = BigInt(alphabet.length);
  let out = '';
  for (let i = 0; i < length; i++) {
    out += alphabet[Number(n % base)];
    n /= base;
  }
  return out;
}

/** Loads a driver's simulator and makes one; rejects with the simulator's Error for a bad option. */
export async function createSimulator(simulator: SimulatorDefinition, options: Record<string, unknown>): Promise<DeviceSimulator> {
  const implementation = await simulator.load();
  return implementation.create(options);
}

export interface DriverDefinition {
  id: string;
  kind: DeviceKind;
  vendor: string;
  models: string[];
  usb: UsbMatch[];
  transports: TransportKind[];
  /**
   * The listener identity keys the driver routes callers by (`['sender']` for ASTM: the H-5
   * sender name), for devices that share a listening port. A device may set only these.
   */
  listenerIdentities?: readonly string[];
  /**
   * JSON Schema (draft 2020-12) of the device's `options` in the config: the config loader checks
   * them with it (`run` and `check-config` alike), so a wrong type or an unknown key is named with
   * its line in the file before any session starts. Without one, the options pass unchecked to the
   * session's own parser.
   */
  optionsSchema?: Readonly<Record<string, unknown>>;
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
  /**
   * The problems of a device's `options` for this driver (a label template naming an unknown
   * field), each `{ path, message }` with the path under the device (`options.templates.wrist`).
   * `poctd check-config` prints them; the device manager does not start a device that has any.
   */
  optionProblems?(device: DeviceConfig): Array<{ path: string; message: string }>;
  createSession(host: SessionHost): DriverSession;
  simulator: SimulatorDefinition;
}
