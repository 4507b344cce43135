/**
 * An export folder (a USB stick, a network share) polled for DICOM files; polled rather than
 * watched, because files another host writes to a CIFS/NFS mount raise no inotify events.
 *
 * - A file is taken only once its size and mtime have not changed for `settle_ms`, and only when
 *   it is whole: a Part-10 file whose pixel data ends where its length says (a half-copied file is
 *   never taken; it is looked at again when it changes).
 * - With a DICOMDIR at the top, the files it references are the ones taken, each path component
 *   resolved case-insensitively (FAT and ISO 9660 mounts differ); without one, every file below.
 * - A file already ingested (same SOP Instance UID and bytes) is skipped, also after a restart: the
 *   instance index knows it. Its bytes are streamed into the blob store as they are on the medium.
 */
import { createReadStream, type Dirent } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseHeader, pixelDataTruncation, uidOf } from '../../../src/protocols/dicom/header.ts';
import { dataSetOffset } from '../../../src/protocols/dicom/part10.ts';
import { ULTRASOUND_STORAGE_CLASSES } from '../../../src/protocols/dicom/uids.ts';
import type { BlobStore } from '../../../src/store/blobs.ts';
import type { DicomInstanceIndex, DicomInstanceRow } from '../../../src/store/dicom-instances.ts';
import { HEADER_PREFIX_BYTES, type StoredInstance } from './instance-store.ts';

const MAX_DEPTH = 8;

export interface ExportFolderOptions {
  dir: string;
  settleMs: number;
  pollMs: number;
  deviceId: string;
  blobs: BlobStore;
  index: DicomInstanceIndex;
  now: () => Date;
  onStored: (stored: StoredInstance) => void;
  /** A file that will not be taken as it is (not DICOM, cut short, not a storage class taken): once per path and version. */
  onRefused: (path: string, reason: string) => void;
}

interface Seen {
  size: number;
  mtimeMs: number;
  since: number;
  /** `size:mtime` of the version already taken or refused. */
  handled?: string;
}

async function readStart(path: string, length: number): Promise<Buffer> {
  const file = await open(path, 'r');
  try {
    const bytes = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await file.read(bytes, got, length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    const tail = Buffer.alloc(8);
    const { size } = await file.stat();
    if (size >= 8) await file.read(tail, 0, 8, size - 8);
    return Buffer.concat([bytes.subarray(0, got), tail]);
  } finally {
    await file.close();
  }
}

/** The entry of `dir` whose name matches `name` ignoring case (the exact one first). */
async function entryIgnoringCase(dir: string, name: string): Promise<string | undefined> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return undefined;
  }
  return entries.includes(name) ? name : entries.find((e) => e.toLowerCase() === name.toLowerCase());
}

/** The files a DICOMDIR references, as paths on this file system (missing ones as `missing`). */
export async function dicomdirFiles(path: string): Promise<{ files: string[]; missing: string[] }> {
  const bytes = await readStart(path, (await stat(path)).size);
  const { dataSet } = parseHeader(bytes.subarray(0, bytes.length - 8));
  const records = dataSet.elements['x00041220']?.items ?? [];
  const files: string[] = [];
  const missing: string[] = [];
  for (const record of records) {
    const id = record.dataSet?.string('x00041500');
    if (!id) continue;
    let at = dirname(path);
    let found = true;
    for (const component of id.trim().split('\\').filter((c) => c !== '')) {
      const entry = await entryIgnoringCase(at, component);
      if (entry === undefined) {
        found = false;
        break;
      }
      at = join(at, entry);
    }
    (found ? files : missing).push(found ? at : id.trim());
  }
  return { files, missing };
}

export class ExportFolderWatcher {
  private timer: NodeJS.Timeout | null = null;
  private readonly seen = new Map<string, Seen>();
  private scanning: Promise<void> | null = null;
  private stopped = false;
  /** Passes completed so far: "nothing new after N more passes" is something a caller can wait for. */
  scans = 0;

  constructor(private readonly o: ExportFolderOptions) {}

  start(): void {
    const tick = (): void => {
      if (this.stopped) return;
      this.scanning = this.scan()
        .catch(() => undefined)
        .finally(() => {
          this.scans++;
          this.scanning = null;
          if (!this.stopped) this.timer = setTimeout(tick, this.o.pollMs);
        });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.scanning;
  }

  /** One pass: what is there, what settled, what is taken. */
  async scan(): Promise<void> {
    const top = await entryIgnoringCase(this.o.dir, 'DICOMDIR');
    let candidates: string[];
    if (top) {
      const { files, missing } = await dicomdirFiles(join(this.o.dir, top)).catch(() => ({ files: [] as string[], missing: [] as string[] }));
      for (const m of missing) this.refuseOnce(`${join(this.o.dir, m)}#missing`, 0, 0, `DICOMDIR names ${m}, which is not on the medium`);
      candidates = files;
    } else {
      candidates = await this.walk(this.o.dir, 0);
    }
    const now = Date.now();
    for (const path of candidates) {
      if (this.stopped) return;
      let s;
      try {
        s = await stat(path);
      } catch {
        continue;
      }
      if (!s.isFile()) continue;
      const prior = this.seen.get(path);
      if (!prior || prior.size !== s.size || prior.mtimeMs !== s.mtimeMs) {
        this.seen.set(path, { size: s.size, mtimeMs: s.mtimeMs, since: now });
        continue;
      }
      const version = `${s.size}:${s.mtimeMs}`;
      if (prior.handled === version || now - prior.since < this.o.settleMs) continue;
      prior.handled = version;
      await this.take(path, s.size, s.mtimeMs);
    }
  }

  private async walk(dir: string, depth: number): Promise<string[]> {
    if (depth > MAX_DEPTH) return [];
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return [];
    }
    const out: string[] = [];
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (e.name.startsWith('.')) continue;
      const path = join(dir, e.name);
      if (e.isDirectory()) out.push(...(await this.walk(path, depth + 1)));
      else if (e.isFile()) out.push(path);
    }
    return out;
  }

  private refuseOnce(key: string, size: number, mtimeMs: number, reason: string): void {
    const s = this.seen.get(key);
    const version = `${size}:${mtimeMs}`;
    if (s?.handled === version) return;
    this.seen.set(key, { size, mtimeMs, since: 0, handled: version });
    this.o.onRefused(key.replace(/#missing$/, ''), reason);
  }

  private async take(path: string, size: number, mtimeMs: number): Promise<void> {
    const start = await readStart(path, Math.min(size, HEADER_PREFIX_BYTES));
    const prefix = start.subarray(0, start.length - 8);
    const tail = start.subarray(start.length - 8);
    if (dataSetOffset(prefix) === undefined) return this.o.onRefused(path, 'not a Part-10 DICOM file');
    let dataSet;
    try {
      dataSet = parseHeader(prefix, { prefixOnly: size > prefix.length }).dataSet;
    } catch (error) {
      return this.o.onRefused(path, `not readable DICOM: ${(error as Error).message}`);
    }
    const sopClass = uidOf(dataSet, 'x00020002') ?? uidOf(dataSet, 'x00080016');
    const sopInstance = uidOf(dataSet, 'x00080018');
    const study = uidOf(dataSet, 'x0020000d');
    const series = uidOf(dataSet, 'x0020000e');
    if (!sopClass || !ULTRASOUND_STORAGE_CLASSES.includes(sopClass)) return this.o.onRefused(path, `SOP class ${sopClass ?? 'none'} is not one this driver takes`);
    if (!sopInstance || !study || !series) return this.o.onRefused(path, 'no SOP instance, study or series UID');
    const truncated = pixelDataTruncation(dataSet, size, tail);
    if (truncated) {
      // Perhaps still being copied: looked at again when its size or mtime changes.
      return this.o.onRefused(path, truncated);
    }
    const blob = await this.o.blobs.put(createReadStream(path));
    const after = await stat(path);
    if (blob.size !== size || after.size !== size || after.mtimeMs !== mtimeMs) {
      // It changed while it was read: not taken now; the next pass sees the new version.
      this.seen.delete(path);
      return;
    }
    const row: DicomInstanceRow = {
      sop_instance_uid: sopInstance,
      sha256: blob.sha256,
      size: blob.size,
      device_id: this.o.deviceId,
      sop_class_uid: sopClass,
      transfer_syntax_uid: uidOf(dataSet, 'x00020010') ?? '',
      study_instance_uid: study,
      series_instance_uid: series,
      calling_ae: '',
      // A folder's path may name a patient (a share laid out by name): it is kept nowhere.
      peer: '',
      source: 'folder',
      received_at: this.o.now().toISOString(),
    };
    const outcome = this.o.index.record(row);
    if (outcome === 'same-bytes-again') return;
    this.o.onStored({
      request: { sopClassUid: sopClass, sopInstanceUid: sopInstance, transferSyntaxUid: row.transfer_syntax_uid, callingAe: '', calledAe: '', peerAddress: '', messageId: 0 },
      blob,
      row,
      outcome,
    });
  }
}
