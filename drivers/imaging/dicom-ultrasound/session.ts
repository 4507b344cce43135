/**
 * A `dicom-ultrasound` device's session: its calls arrive on the `dicom-scp` transport (a C-STORE
 * SCP, shared with other machines on the port); each instance streams into the blob store and the
 * instance index before the device hears Success (instance-store.ts). A study is complete when no
 * new instance of it arrived for `quiet_period_ms`; then its record is built from the stored
 * instances' headers and committed with them as its capture (a header bundle), and published on
 * `device/<id>/study`. More instances later make a new version; the same ones again, none.
 *
 * A refused C-STORE (its status and reason, never patient data) is a `bad_frame` event.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { DriverSession, SessionHost } from '../../../src/driver-sdk/index.ts';
import type { AssociationEvent } from '../../../src/protocols/dicom/association.ts';
import { DicomScpTransport } from '../../../src/protocols/dicom/scp-transport.ts';
import { DicomInstanceIndex, type DicomInstanceRow } from '../../../src/store/dicom-instances.ts';
import type { BlobStore } from '../../../src/store/blobs.ts';
import { encodeBundle, headerPart, type BundledInstance } from './bundle.ts';
import { ExportFolderWatcher } from './export-folder.ts';
import { HEADER_PREFIX_BYTES, InstanceStore, type StoredInstance } from './instance-store.ts';
import { DOCUMENT_CLASSES, readInstance, studyDraft } from './study.ts';

export const DEFAULT_QUIET_PERIOD_MS = 30_000;
/** An SR or PDF report is read whole for its tree; beyond this it is read like an image (header only). */
const MAX_DOCUMENT_BYTES = 64 * 1024 * 1024;

export interface DicomUltrasoundOptions {
  quiet_period_ms: number;
  /** An export folder (USB stick, share) polled for files, besides the C-STORE SCP. */
  export_folder: string | null;
  settle_ms: number;
  poll_ms: number;
}

/** The options as a JSON Schema, for the config loader (`check-config` and `run` alike), with the limits the parser below names. */
export const DICOM_ULTRASOUND_OPTIONS_SCHEMA: Record<string, unknown> = {
  type: 'object',
  additionalProperties: false,
  properties: {
    quiet_period_ms: { type: 'integer', minimum: 0, description: 'silence after the last instance before the study record is made' },
    export_folder: { type: 'string', minLength: 1, pattern: '\\S', description: 'a USB/share folder polled for exported files' },
    settle_ms: { type: 'integer', minimum: 0 },
    poll_ms: { type: 'integer', minimum: 50 },
  },
};

export function dicomUltrasoundOptions(device: { id: string; options?: Readonly<Record<string, unknown>> | undefined }): DicomUltrasoundOptions {
  const o = device.options ?? {};
  const known = new Set(['quiet_period_ms', 'export_folder', 'settle_ms', 'poll_ms']);
  for (const k of Object.keys(o)) if (!known.has(k)) throw new Error(`devices[${device.id}].options.${k}: not an option of dicom-ultrasound (${[...known].join(', ')})`);
  const ms = (name: string, fallback: number, min: number): number => {
    const raw = o[name];
    if (raw === undefined) return fallback;
    if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < min) {
      throw new Error(`devices[${device.id}].options.${name}: an integer number of milliseconds >= ${min}, got ${JSON.stringify(raw)}`);
    }
    return raw;
  };
  const folder = o.export_folder;
  if (folder !== undefined && (typeof folder !== 'string' || folder.trim() === '')) {
    throw new Error(`devices[${device.id}].options.export_folder: a directory path, got ${JSON.stringify(folder)}`);
  }
  return {
    quiet_period_ms: ms('quiet_period_ms', DEFAULT_QUIET_PERIOD_MS, 0),
    export_folder: typeof folder === 'string' ? folder : null,
    settle_ms: ms('settle_ms', 5000, 0),
    poll_ms: ms('poll_ms', 2000, 50),
  };
}

async function readPrefix(blobs: BlobStore, row: DicomInstanceRow): Promise<{ bytes: Buffer; whole: boolean }> {
  const whole = row.size <= HEADER_PREFIX_BYTES || (DOCUMENT_CLASSES.has(row.sop_class_uid) && row.size <= MAX_DOCUMENT_BYTES);
  const length = whole ? row.size : HEADER_PREFIX_BYTES;
  const file = await open(blobs.pathOf(row.sha256), 'r');
  try {
    const bytes = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await file.read(bytes, got, length - got, got);
      if (bytesRead === 0) throw new Error(`blob ${row.sha256} is shorter than its ${row.size} bytes`);
      got += bytesRead;
    }
    return { bytes, whole };
  } finally {
    await file.close();
  }
}

export class DicomUltrasoundSession implements DriverSession {
  private index: DicomInstanceIndex | null = null;
  private folder: ExportFolderWatcher | null = null;

  /** Passes of the export folder completed so far (0 without one). */
  get folderScans(): number {
    return this.folder?.scans ?? 0;
  }
  private transport: DicomScpTransport | null = null;
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  private openAssociations = 0;
  private instancesReceived = 0;
  private readonly options: DicomUltrasoundOptions;
  private readonly onAssociation = (event: AssociationEvent): void => this.association(event);

  constructor(private readonly host: SessionHost) {
    this.options = dicomUltrasoundOptions(host.device);
  }

  async start(): Promise<void> {
    const transport = this.host.transport;
    if (!(transport instanceof DicomScpTransport)) throw new Error(`dicom-ultrasound needs a dicom-scp transport, not ${transport.description}`);
    const store = this.host.store;
    if (!store) throw new Error('dicom-ultrasound needs the daemon store (its instances are streamed into the blob store)');
    this.index = new DicomInstanceIndex(store.path);
    const instances = new InstanceStore({
      blobs: store.blobs,
      index: this.index,
      deviceId: this.host.device.id,
      minFreeBytes: (transport.options.min_free_mb ?? 512) * 1024 * 1024,
      maxObjectBytes: (transport.options.max_object_mb ?? 4096) * 1024 * 1024,
      onStored: (stored) => this.stored(stored),
      now: () => this.host.now(),
    });
    this.transport = transport;
    transport.on('association', this.onAssociation);
    transport.setHandler(instances);
    if (this.options.export_folder) {
      this.folder = new ExportFolderWatcher({
        dir: this.options.export_folder,
        settleMs: this.options.settle_ms,
        pollMs: this.options.poll_ms,
        deviceId: this.host.device.id,
        blobs: store.blobs,
        index: this.index,
        now: () => this.host.now(),
        onStored: (stored) => this.stored(stored),
        // A path may name a patient: the event carries a digest of it, never the path.
        onRefused: (path, reason) =>
          this.host.event('bad_frame', `export folder file not taken: ${reason}`, { file: createHash('sha256').update(path).digest('hex').slice(0, 12) }),
      });
      this.folder.start();
    }
    this.host.updateState({ status: 'idle' });
    // Instances stored before a kill inside their study's quiet period: recorded now.
    for (const study of this.index.unrecordedStudies(this.host.device.id)) this.enqueue(study);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.transport?.setHandler(null);
    this.transport?.off('association', this.onAssociation);
    await this.folder?.stop();
    // Studies still in their quiet period are recorded now: their instances are already stored.
    await this.flush();
    this.index?.close();
    this.index = null;
  }

  async command(verb: string): Promise<unknown> {
    if (verb === 'status') return { pending_studies: this.timers.size };
    throw new Error(`dicom-ultrasound has no command "${verb}"`);
  }

  /** Commits the record of every study whose quiet period is running, now (tests, a stop). */
  async flush(): Promise<void> {
    const pending = [...this.timers.keys()];
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    for (const study of pending) this.enqueue(study);
    await this.chain;
  }

  private ours(callingAe: string): boolean {
    return this.transport?.options.allowed_callers.some((c) => c.trim() === callingAe) ?? false;
  }

  private association(event: AssociationEvent): void {
    if (event.type === 'accepted' && this.ours(event.callingAe)) {
      this.openAssociations += 1;
      const at = this.host.now().toISOString();
      this.host.updateState({ last_seen: at, imaging: { calling_ae_title: event.callingAe, associations_open: this.openAssociations, last_association_at: at } });
      return;
    }
    if (event.type === 'closed' && event.wasAccepted && event.callingAe !== null && this.ours(event.callingAe)) {
      this.openAssociations = Math.max(0, this.openAssociations - 1);
      this.host.updateState({ imaging: { associations_open: this.openAssociations } });
      return;
    }
    if (event.type !== 'stored' || event.outcome.status === 0 || !this.ours(event.request.callingAe)) return;
    this.host.event('bad_frame', `C-STORE refused with status 0x${event.outcome.status.toString(16).padStart(4, '0')}: ${event.outcome.comment ?? 'no reason given'}`, {
      status: event.outcome.status,
      sop_class: event.request.sopClassUid,
      calling_ae: event.request.callingAe,
    });
  }

  private stored(stored: StoredInstance): void {
    if (this.stopped) return;
    this.instancesReceived += 1;
    this.host.updateState({ last_seen: stored.row.received_at, imaging: { instances_received: this.instancesReceived, last_instance_at: stored.row.received_at } });
    const study = stored.row.study_instance_uid;
    const running = this.timers.get(study);
    if (running) clearTimeout(running);
    else this.host.event('download_started', 'receiving a study', { calling_ae: stored.row.calling_ae });
    const timer = setTimeout(() => {
      this.timers.delete(study);
      this.enqueue(study);
    }, this.options.quiet_period_ms);
    timer.unref();
    this.timers.set(study, timer);
  }

  private enqueue(studyUid: string): void {
    this.chain = this.chain.then(() =>
      this.record(studyUid).catch((error: unknown) => {
        this.host.log.error({ err: (error as Error).message }, 'could not record a study');
        this.host.event('download_failed', `study record not stored: ${(error as Error).message}`);
      }),
    );
  }

  private async record(studyUid: string): Promise<void> {
    const index = this.index;
    const store = this.host.store;
    if (!index || !store) return;
    const rows = index.study(this.host.device.id, studyUid);
    if (rows.length === 0) return;
    const bundled: BundledInstance[] = [];
    for (const row of rows) {
      const { bytes, whole } = await readPrefix(store.blobs, row);
      bundled.push({
        sha256: row.sha256,
        size: row.size,
        transfer_syntax_uid: row.transfer_syntax_uid,
        calling_ae: row.source === 'folder' ? null : row.calling_ae,
        address: row.source === 'folder' ? null : row.peer,
        source: row.source,
        header: headerPart(bytes, { prefixOnly: !whole }),
      });
    }
    const draft = studyDraft(bundled.map(readInstance), { deviceId: this.host.device.id, timezone: this.host.timezone });
    const outcome = await this.host.commit({ study: [draft] }, { kind: 'raw', bytes: encodeBundle(bundled) });
    this.host.updateState({ status: 'ok', manufacturer: draft.device.manufacturer, model: draft.device.model, serial: draft.device.serial });
    this.host.event('download_finished', `study with ${draft.instances} instances in ${draft.series.length} series: ${outcome.inserted > 0 ? 'recorded' : 'already recorded'}`, {
      instances: draft.instances,
      version: draft.version,
    });
  }
}
