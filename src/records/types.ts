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

export const PRINT_JOB_SCHEMA = 'poct.print-job/1' as const;

/**
 * A print job's states. `uncertain`: the connection dropped after the label's bytes were written,
 * so the label may or may not be on the printer; an operator confirms it or reprints it marked as
 * a possible duplicate, the daemon never resends it by itself.
 */
export const PRINT_JOB_STATES = ['queued', 'printing', 'printed', 'failed', 'cancelled', 'uncertain'] as const;
export type PrintJobState = (typeof PRINT_JOB_STATES)[number];

/**
 * One step of a print job, published on `device/<id>/job`. It never carries patient data: the name
 * and MRN go to the printer and into the job's stored ZPL (the record's raw capture) only.
 */
interface PrintJobBody {
  device: DeviceIdentity;
  /** The job's id, the same in every step of it. */
  job: string;
  state: PrintJobState;
  /** Why, for failed, cancelled and uncertain (and a queued job that waits for a fault to clear). */
  reason: string | null;
  specimen_id: string;
  /** Whether the daemon issued the specimen id (the request had none). */
  specimen_id_issued: boolean;
  template: string;
  copies: number;
  /** A reprint of an uncertain job: the label says REPRINT. */
  reprint_of: string | null;
  /** Times the job's bytes were sent to the printer. */
  attempts: number;
  /** When the job entered this state. */
  at: string;
}

export interface PrintJobRecord extends PrintJobBody {
  schema: typeof PRINT_JOB_SCHEMA;
  id: string;
  seq: number;
  site: string;
  received_at: string;
  raw: RawRef;
}

/** `key`: the job and the step (`<job>:<n>:<state>`), so a step committed twice is stored once. */
export interface PrintJobDraft extends PrintJobBody {
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
