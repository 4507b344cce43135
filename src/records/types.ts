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

export const STUDY_SCHEMA = 'poct.study/1' as const;

/** A code triplet as DICOM gives it (CodeValue, CodingSchemeDesignator, CodeMeaning). */
export interface StudyCode {
  code: string;
  scheme: string;
  meaning: string;
}

/** One measurement flattened out of an SR content tree, with the context that tells one FL from another. */
export interface StudyMeasurement {
  sop_instance_uid: string;
  code: string;
  scheme: string;
  meaning: string;
  loinc: string | null;
  value: number | null;
  unit: string | null;
  ucum: string | null;
  text: string | null;
  path: string[];
  fetus: string | null;
  finding_site: StudyCode | null;
  laterality: StudyCode | null;
  derivation: string | null;
  equation: string | null;
  selection: string | null;
}

export interface StudySeries {
  instance_uid: string;
  number: number | null;
  modality: string | null;
  description: string | null;
  body_part: string | null;
  laterality: string | null;
  instances: number;
  frames: number;
  sop_classes: string[];
}

/** One stored instance: where its Part-10 file is (the blob store, by sha256). */
export interface StudyInstance {
  sop_instance_uid: string;
  sop_class_uid: string;
  series_instance_uid: string;
  transfer_syntax_uid: string;
  frames: number;
  sha256: string;
  size: number;
}

/** What a driver knows about one imaging study (ultrasound), never its pixel data. */
interface StudyBody {
  device: DeviceIdentity;
  /** The same for every version of the study: derived from the device identity and the Study Instance UID. */
  study_key: string;
  /** How many instance versions this record covers; a later version covers more. */
  version: number;
  study: {
    instance_uid: string;
    study_id: string | null;
    accession_number: string | null;
    description: string | null;
    /** Absolute, with the sender's own offset or the device's zone; null when the study has no date. */
    started_at: string | null;
    modalities: string[];
  };
  patient: { id: string | null; name: string | null; birth_date: string | null; sex: string | null } | null;
  operator: { name: string | null } | null;
  /** Who sent it: the calling AE title and address (C-STORE) or the folder (an export). */
  sender: { calling_ae: string | null; address: string | null; station_name: string | null; source: 'c-store' | 'folder' };
  series: StudySeries[];
  instances: number;
  frames: number;
  reports: Array<{ sop_instance_uid: string; title: StudyCode | null; template: string | null; completion: string | null; verification: string | null }>;
  measurements: StudyMeasurement[];
  storage: StudyInstance[];
  /** The study's start on the device's own clock, for the DST check. */
  device_time: string | null;
  flags: string[];
}

export interface StudyRecord extends StudyBody {
  schema: typeof STUDY_SCHEMA;
  id: string;
  seq: number;
  site: string;
  received_at: string;
  raw: RawRef;
}

/** `key`: the study and which instance versions this draft covers, so a re-send is the same record. */
export interface StudyDraft extends StudyBody {
  key: string;
}
