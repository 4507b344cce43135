/**
 * `poct.device-state/2`, retained on `poct/device/<id>`: what a dashboard needs to know about one
 * device, never patient data. The fields every device has sit at the top; what only one kind of
 * device has sits in that kind's block (`meter`, `analyzer`, `printer`, `imaging`), chosen by the
 * driver's `DeviceKind`. The closed sets here (statuses, kinds, block fields) are the ones
 * `schemas/device-state-2.schema.json` lists; a unit test holds the two equal.
 */

export const DEVICE_STATE_SCHEMA = 'poct.device-state/2' as const;

/**
 * Every status a device can be in, with its meaning (the README's table comes from here).
 * Adding one is a schema change.
 */
export const DEVICE_STATUS_MEANINGS = {
  idle: 'reachable, nothing in progress (a passive device waiting to send)',
  ok: 'the last conversation succeeded',
  downloading: 'records are being read from or received from the device',
  printing: 'a print job is being sent or printed',
  'no-answer': 'the device does not answer (switched off, asleep, out of its cable)',
  'port-missing': 'the port or address cannot be opened',
  error: 'the last conversation failed (the detail says why)',
  fault: 'the device reports a condition that stops it (paper out, head open, …)',
  unsupported: 'recognised but cannot be read; never opened',
  unplugged: 'hot-plugged device that was unplugged; kept listed until it returns',
  garbled: 'the link carries nothing the driver can read (the detail gives the likely cause: baud rate, wrong driver)',
} as const;

export type DeviceStatus = keyof typeof DEVICE_STATUS_MEANINGS;

export const DEVICE_STATUSES = Object.keys(DEVICE_STATUS_MEANINGS) as readonly DeviceStatus[];

/** Statuses in which the device is reachable and usable (availability `online`). */
export const AVAILABLE_STATUSES: ReadonlySet<DeviceStatus> = new Set<DeviceStatus>(['idle', 'ok', 'downloading', 'printing']);

export function isDeviceStatus(value: unknown): value is DeviceStatus {
  return typeof value === 'string' && Object.hasOwn(DEVICE_STATUS_MEANINGS, value);
}

/** What a driver drives; its block in the device state follows from it (`DEVICE_KIND_BLOCK`). */
export const DEVICE_KINDS = ['glucose-meter', 'urinalysis-reader', 'analyzer', 'label-printer', 'ultrasound'] as const;
export type DeviceKind = (typeof DEVICE_KINDS)[number];

/** A device whose memory is read out (glucose meters, strip readers). */
export interface MeterState {
  /** The unit the device displays (`mg/dL`, `mmol/L`, `CONV.`); records always carry their own. */
  display_unit: string | null;
  /** Records in the device's memory at the last read. */
  record_count: number | null;
}

/** A laboratory analyzer that sends its results (ASTM, POCT1-A). */
export interface AnalyzerState {
  /** The protocol dialect recognised from the device's messages (e.g. `siemens-dca-vantage`). */
  dialect: string | null;
  /** When the last complete message was stored. */
  last_message_at: string | null;
  /** The identity the device gives itself in its messages (the POCT1-A HEL's `DEV.device_id`); not patient data. */
  device_id: string | null;
}

/** Print modes of `~HS` string 2, field r. */
export const PRINT_MODES = ['rewind', 'peel-off', 'tear-off', 'cutter', 'applicator', 'delayed-cut'] as const;

/**
 * A label printer: the flags a Zebra `~HS` host status gives (a printer in MEDIA OUT, RIBBON OUT,
 * HEAD OPEN or HEAD OVER-TEMP sends no `~HS` reply at all, so a null with status `fault` or
 * `no-answer` is an answer too), and the daemon's own print queue.
 */
export interface PrinterState {
  paper_out: boolean | null;
  ribbon_out: boolean | null;
  head_open: boolean | null;
  paused: boolean | null;
  receive_buffer_full: boolean | null;
  over_temperature: boolean | null;
  under_temperature: boolean | null;
  /** The printer lost its configuration (`~HS` "corrupt RAM"). */
  corrupt_ram: boolean | null;
  /** Label length in dots. */
  label_length_dots: number | null;
  /** Formats waiting in the printer's receive buffer. */
  formats_in_buffer: number | null;
  /** Labels still to print in the current batch. */
  labels_remaining: number | null;
  print_mode: (typeof PRINT_MODES)[number] | null;
  /** When the printer last answered a status query. */
  status_read_at: string | null;
  /** Print jobs waiting in the daemon for this printer. */
  queued_jobs: number;
}

/**
 * A DICOM node (an ultrasound cart or its gateway, as a Storage SCU calling us). Counters and
 * times only: study, patient and instance identifiers stay in the records.
 */
export interface ImagingState {
  /** The calling AE title the device last used. */
  calling_ae_title: string | null;
  associations_open: number;
  /** Instances stored since the daemon started. */
  instances_received: number;
  last_association_at: string | null;
  last_instance_at: string | null;
}

export interface DeviceBlocks {
  meter: MeterState;
  analyzer: AnalyzerState;
  printer: PrinterState;
  imaging: ImagingState;
}
export type DeviceBlockName = keyof DeviceBlocks;

export const DEVICE_KIND_BLOCK: Readonly<Record<DeviceKind, DeviceBlockName>> = {
  'glucose-meter': 'meter',
  'urinalysis-reader': 'meter',
  analyzer: 'analyzer',
  'label-printer': 'printer',
  ultrasound: 'imaging',
};

/** Each block with nothing known yet: the shape a new device starts with. */
export function emptyBlock<B extends DeviceBlockName>(name: B): DeviceBlocks[B] {
  const blocks: DeviceBlocks = {
    meter: { display_unit: null, record_count: null },
    analyzer: { dialect: null, last_message_at: null, device_id: null },
    printer: {
      paper_out: null,
      ribbon_out: null,
      head_open: null,
      paused: null,
      receive_buffer_full: null,
      over_temperature: null,
      under_temperature: null,
      corrupt_ram: null,
      label_length_dots: null,
      formats_in_buffer: null,
      labels_remaining: null,
      print_mode: null,
      status_read_at: null,
      queued_jobs: 0,
    },
    imaging: { calling_ae_title: null, associations_open: 0, instances_received: 0, last_association_at: null, last_instance_at: null },
  };
  return blocks[name];
}

/** The fields every device has. */
export interface CommonDeviceState {
  schema: typeof DEVICE_STATE_SCHEMA;
  kind: DeviceKind;
  id: string;
  driver: string;
  manufacturer: string;
  model: string | null;
  serial: string | null;
  firmware: string | null;
  status: DeviceStatus;
  status_detail: string | null;
  last_seen: string | null;
  last_download: string | null;
  /** Device clock minus host clock in seconds, from the last clock read (any kind with a clock). */
  clock_skew_s: number | null;
  clock_skew_flagged: boolean;
  battery: string | null;
}

/** The published state: the common fields plus exactly the block of the device's kind. */
export type DeviceState = CommonDeviceState & Partial<DeviceBlocks>;

/** The fields the daemon owns; a session never patches them. */
type OwnedField = 'schema' | 'kind' | 'id' | 'driver';

/** What a session reports: common fields, and fields of its kind's block (merged into the block). */
export type DeviceStatePatch = Partial<Omit<CommonDeviceState, OwnedField>> & { [B in DeviceBlockName]?: Partial<DeviceBlocks[B]> };

export interface NewDeviceState {
  kind: DeviceKind;
  id: string;
  driver: string;
  manufacturer: string;
  model: string | null;
}

/** A device's state before anything is known about it. */
export function initialDeviceState(d: NewDeviceState): DeviceState {
  const block = DEVICE_KIND_BLOCK[d.kind];
  return {
    schema: DEVICE_STATE_SCHEMA,
    kind: d.kind,
    id: d.id,
    driver: d.driver,
    manufacturer: d.manufacturer,
    model: d.model,
    serial: null,
    firmware: null,
    status: 'idle',
    status_detail: null,
    last_seen: null,
    last_download: null,
    clock_skew_s: null,
    clock_skew_flagged: false,
    battery: null,
    [block]: emptyBlock(block),
  };
}

const BLOCK_NAMES: ReadonlySet<string> = new Set<DeviceBlockName>(['meter', 'analyzer', 'printer', 'imaging']);
const OWNED_FIELDS: ReadonlySet<string> = new Set<OwnedField>(['schema', 'kind', 'id', 'driver']);

/**
 * `state` with `patch` applied: common fields replaced, the kind's block merged field by field.
 * What does not belong (another kind's block, a field the daemon owns, a status outside the
 * closed set) is left out and named in `refused`, so the caller can log it; the result is always
 * a valid state.
 */
export function applyStatePatch(state: DeviceState, patch: DeviceStatePatch): { state: DeviceState; refused: string[] } {
  const own = DEVICE_KIND_BLOCK[state.kind];
  const next: Record<string, unknown> = { ...state };
  const refused: string[] = [];
  for (const [key, value] of Object.entries(patch)) {
    if (value === undefined) continue;
    if (BLOCK_NAMES.has(key)) {
      if (key !== own) {
        refused.push(`${key} (a ${state.kind} has a "${own}" block)`);
        continue;
      }
      const block = { ...(state[own] ?? emptyBlock(own)) } as Record<string, unknown>;
      for (const [field, v] of Object.entries(value as Record<string, unknown>)) {
        if (v === undefined) continue;
        if (!Object.hasOwn(block, field)) refused.push(`${key}.${field} (no such field)`);
        else block[field] = v;
      }
      next[key] = block;
    } else if (OWNED_FIELDS.has(key)) {
      refused.push(`${key} (owned by the daemon)`);
    } else if (key === 'status' && !isDeviceStatus(value)) {
      refused.push(`status ${JSON.stringify(value)} (not one of ${DEVICE_STATUSES.join(', ')})`);
    } else if (!Object.hasOwn(state, key)) {
      refused.push(`${key} (no such field)`);
    } else {
      next[key] = value;
    }
  }
  return { state: next as unknown as DeviceState, refused };
}

/**
 * What a state saved by an earlier daemon remembers (identity, downloads, the meter block),
 * whatever its schema version: `poct.device-state/1` kept the meter fields at the top.
 */
export function rememberedState(saved: unknown, driver: string, kind: DeviceKind): DeviceStatePatch {
  if (typeof saved !== 'object' || saved === null) return {};
  const s = saved as Record<string, unknown>;
  const text = (v: unknown): string | null => (typeof v === 'string' ? v : null);
  const count = (v: unknown): number | null => (typeof v === 'number' && Number.isInteger(v) ? v : null);
  const out: DeviceStatePatch = { last_seen: text(s.last_seen), last_download: text(s.last_download) };
  if (s.driver !== driver) return out;
  Object.assign(out, { model: text(s.model), serial: text(s.serial), firmware: text(s.firmware) });
  if (DEVICE_KIND_BLOCK[kind] === 'meter') {
    const meter = (typeof s.meter === 'object' && s.meter !== null ? s.meter : s) as Record<string, unknown>;
    out.meter = { display_unit: text(meter.display_unit), record_count: count(meter.record_count) };
  }
  return out;
}
