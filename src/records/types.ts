/**
 * Record payloads that leave the daemon. Each has a JSON Schema under `schemas/` with the same
 * version suffix; a change to a shape is a new schema version, never an edit in place.
 */

export const RESULT_SCHEMA = 'poct.result/2' as const;
export const EVENT_SCHEMA = 'poct.event/1' as const;

/** What a capture's bytes are: device bytes as they came, or an `H`/`D` transcript of both directions. */
export type CaptureKind = 'raw' | 'transcript';

/**
 * The raw bytes a record came from (rule 4), named once: the blob store holds them under `sha256`.
 * `kind` says how to read them again (`poctd replay` decodes either).
 */
export interface RawRef {
  sha256: string;
  size: number;
  kind: CaptureKind;
}

export type ResultCategory = 'patient' | 'control' | 'qc' | 'calibration' | 'proficiency';

export interface DeviceIdentity {
  id: string;
  driver: string;
  manufacturer: string;
  model: string;
  serial: string | null;
  firmware: string | null;
}

export interface Observation {
  /** The device's own code for the analyte. */
  code: string;
  name: string;
  loinc: string | null;
  /** Numeric value in `unit`; null when the device gave none (HI/LO, ordinal text only). */
  value: number | null;
  unit: string | null;
  ucum: string | null;
  /** e.g. "HI", "LO", "abnormal", "parity-error"; HI/LO carry the device limit in `limit`. */
  flags: string[];
  text: string | null;
  comparator: '<' | '<=' | '>' | '>=' | null;
  /** The device's measuring limit that a HI/LO flag refers to, in `unit`. */
  limit?: number | null;
}

/** What a driver knows about one measured sample. */
interface ResultBody {
  device: DeviceIdentity;
  category: ResultCategory;
  specimen: { id: string | null; type: string | null };
  patient: { id: string | null } | null;
  operator: { id: string | null } | null;
  /** Absolute time with the device's configured UTC offset. */
  observed_at: string;
  /** The meter's own naive local time, exactly as it keeps it. */
  device_time: string | null;
  observations: Observation[];
  /** Record-level notes such as meal markers (`meal:before`) and comment codes. */
  flags: string[];
}

/** A stored, published result: the driver's body plus what the daemon owns. */
export interface ResultRecord extends ResultBody {
  schema: typeof RESULT_SCHEMA;
  id: string;
  seq: number;
  site: string;
  received_at: string;
  raw: RawRef;
}

/**
 * What a driver produces: a result without the fields the daemon owns (seq, site, received_at,
 * raw) and with `key`, the device's own identity for this record (rule 3 of the design: the id is
 * derived from device identity + key so that re-downloads never duplicate).
 */
export interface ResultDraft extends ResultBody {
  key: string;
}

export type Availability = 'online' | 'offline';

export {
  DEVICE_STATE_SCHEMA,
  DEVICE_STATUSES,
  type DeviceKind,
  type DeviceState,
  type DeviceStatePatch,
  type DeviceStatus,
} from './device-state.ts';

export type BridgeEventType =
  | 'connected'
  | 'disconnected'
  | 'download_started'
  | 'download_progress'
  | 'download_finished'
  | 'download_failed'
  | 'bad_frame'
  | 'no_answer'
  | 'port_missing'
  | 'clock_skew'
  | 'clock_set'
  | 'mqtt_error'
  | 'config_error'
  | 'device_error'
  | 'device_added'
  | 'device_removed'
  /** A listener refused a caller (address not allowed, unknown sender): port, peer address, sender name. */
  | 'listener_refused';

/** Published on `poct/bridge/event`: a reason, never patient data. */
export interface BridgeEvent {
  schema: typeof EVENT_SCHEMA;
  type: BridgeEventType;
  device: string | null;
  at: string;
  message: string;
  data?: Record<string, unknown>;
}
