/**
 * Where a C-STORE's data set goes: streamed into the blob store as a Part-10 file (our meta header,
 * then the data set bytes exactly as received), checked, made durable, then indexed in SQLite; only
 * then is the status Success. Memory holds one PDU in flight and the header prefix, whatever the
 * object's size.
 *
 * Statuses (PS3.4 B.2.3):
 * - 0xA700 out of resources: less free space than `minFreeBytes` before the data set starts, or a
 *   write / sync / index failure (a full disk): the temp file is removed, nothing looks stored;
 * - 0xA900 data set does not match SOP class: the data set's own SOP class or instance UID is not
 *   the one its command announced;
 * - 0xC000 cannot understand: the bytes are not a data set dicom-parser can read, or lack the UIDs.
 */
import { statfsSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { Status } from '../../../src/protocols/dicom/dimse.ts';
import { HeaderError, parseHeader, pixelDataTruncation, uidOf, type ParsedHeader } from '../../../src/protocols/dicom/header.ts';
import { fileMetaHeader } from '../../../src/protocols/dicom/part10.ts';
import type { InstanceSink, StoreOutcome, StoreRequest } from '../../../src/protocols/dicom/association.ts';
import type { BlobRef, BlobStore } from '../../../src/store/blobs.ts';
import type { DicomInstanceIndex, DicomInstanceRow, IndexOutcome } from '../../../src/store/dicom-instances.ts';

/** The data set bytes kept in memory for the header check: group 0008 and 0020 come well within it. */
export const HEADER_PREFIX_BYTES = 256 * 1024;
/** The stream between the socket and the blob file: big enough that a PDU rarely waits for the disk. */
const STREAM_HIGH_WATER_MARK = 1024 * 1024;

export interface StoredInstance {
  request: StoreRequest;
  blob: BlobRef;
  row: DicomInstanceRow;
  outcome: IndexOutcome;
}

export interface InstanceStoreOptions {
  blobs: BlobStore;
  index: DicomInstanceIndex;
  deviceId: string;
  /** Refuse a data set (0xA700) when the blob store's file system has less free space than this. */
  minFreeBytes: number;
  /**
   * A data set longer than this is not stored (0xA700): a sender that never ends its object cannot
   * fill the disk. Absent: no limit but the disk's.
   */
  maxObjectBytes?: number;
  /** Called once an instance is durable and indexed, after its Success status is decided. */
  onStored?: (stored: StoredInstance) => void;
  /** How free space is asked (tests give their own). */
  freeBytes?: (dir: string) => number;
  now?: () => Date;
}

export function freeBytesOf(dir: string): number {
  const s = statfsSync(dir);
  return Number(s.bavail) * Number(s.bsize);
}

export class InstanceStore {
  constructor(private readonly options: InstanceStoreOptions) {}

  begin(request: StoreRequest): InstanceSink | StoreOutcome {
    const { blobs, minFreeBytes } = this.options;
    const free = (this.options.freeBytes ?? freeBytesOf)(blobs.dir);
    if (free < minFreeBytes) {
      return { status: Status.OutOfResources, comment: `${free} bytes free, ${minFreeBytes} required` };
    }
    return new BlobSink(request, this.options);
  }
}

class BlobSink implements InstanceSink {
  private readonly stream = new PassThrough({ highWaterMark: STREAM_HIGH_WATER_MARK });
  private readonly put: Promise<BlobRef>;
  private readonly prefix: Buffer[] = [];
  private prefixBytes = 0;
  private totalBytes = 0;
  /** The last 8 bytes written: an encapsulated data set must end with its sequence delimiter. */
  private tail: Buffer = Buffer.alloc(0);
  private failure: Error | null = null;

  constructor(
    private readonly request: StoreRequest,
    private readonly options: InstanceStoreOptions,
  ) {
    // A discarded data set destroys the stream with an error; `put` sees it and removes its temp file.
    this.stream.on('error', () => undefined);
    this.put = options.blobs.put(this.stream);
    // Observed here so a failure before `finish` is not an unhandled rejection; finish reads it again.
    this.put.catch((error: unknown) => {
      this.failure ??= error instanceof Error ? error : new Error(String(error));
    });
    this.write(
      fileMetaHeader({
        sopClassUid: request.sopClassUid,
        sopInstanceUid: request.sopInstanceUid,
        transferSyntaxUid: request.transferSyntaxUid,
        sourceAe: request.callingAe,
        receivingAe: request.calledAe,
      }),
    );
  }

  write(chunk: Buffer): boolean {
    this.totalBytes += chunk.length;
    const max = this.options.maxObjectBytes;
    if (max !== undefined && this.totalBytes > max && !this.failure) {
      // The rest of the data set is read and dropped, so the association can still be answered.
      this.failure = new Error(`data set longer than the ${max} bytes allowed`);
      this.discard();
    }
    this.tail = chunk.length >= 8 ? chunk.subarray(chunk.length - 8) : Buffer.concat([this.tail, chunk]).subarray(-8);
    if (this.prefixBytes < HEADER_PREFIX_BYTES) {
      const part = chunk.subarray(0, HEADER_PREFIX_BYTES - this.prefixBytes);
      this.prefix.push(Buffer.from(part));
      this.prefixBytes += part.length;
    }
    if (this.failure) return true;
    return this.stream.write(chunk);
  }

  drained(): Promise<void> {
    if (this.failure || this.stream.destroyed || !this.stream.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.stream.off('drain', done);
        this.stream.off('close', done);
        resolve();
      };
      this.stream.on('drain', done);
      this.stream.on('close', done);
    });
  }

  async finish(): Promise<StoreOutcome> {
    if (this.failure) {
      this.discard();
      await this.put.catch(() => undefined);
      return { status: Status.OutOfResources, comment: `not stored: ${this.failure.message}` };
    }
    const prefix = Buffer.concat(this.prefix);
    const checked = this.check(prefix);
    if ('refusal' in checked) {
      this.discard();
      await this.put.catch(() => undefined);
      return checked.refusal;
    }
    this.stream.end();
    let blob: BlobRef;
    try {
      blob = await this.put;
    } catch (error) {
      return { status: Status.OutOfResources, comment: `not stored: ${(error as Error).message}` };
    }
    const { dataSet } = checked;
    const row: DicomInstanceRow = {
      sop_instance_uid: this.request.sopInstanceUid,
      sha256: blob.sha256,
      size: blob.size,
      device_id: this.options.deviceId,
      sop_class_uid: this.request.sopClassUid,
      transfer_syntax_uid: this.request.transferSyntaxUid,
      study_instance_uid: uidOf(dataSet, 'x0020000d')!,
      series_instance_uid: uidOf(dataSet, 'x0020000e')!,
      calling_ae: this.request.callingAe,
      peer: this.request.peerAddress,
      source: 'c-store',
      received_at: (this.options.now?.() ?? new Date()).toISOString(),
    };
    let outcome: IndexOutcome;
    try {
      outcome = this.options.index.record(row);
    } catch (error) {
      // The blob stays (content-addressed, named by no row): the caller hears it is not stored.
      return { status: Status.OutOfResources, comment: `not recorded: ${(error as Error).message}` };
    }
    this.options.onStored?.({ request: this.request, blob, row, outcome });
    return { status: Status.Success };
  }

  discard(): void {
    if (!this.stream.destroyed) this.stream.destroy(new Error('data set discarded'));
  }

  /** The reason to refuse the data set, from its header; else the parsed header (parsed once per instance). */
  private check(prefix: Buffer): { refusal: StoreOutcome } | { dataSet: ParsedHeader['dataSet'] } {
    const refusal = (status: number, comment: string): { refusal: StoreOutcome } => ({ refusal: { status, comment } });
    let dataSet;
    try {
      dataSet = parseHeader(prefix, { prefixOnly: this.totalBytes > prefix.length }).dataSet;
    } catch (error) {
      if (!(error instanceof HeaderError)) throw error;
      return refusal(Status.CannotUnderstand, `not a readable data set: ${error.message}`);
    }
    const sopClass = uidOf(dataSet, 'x00080016');
    const sopInstance = uidOf(dataSet, 'x00080018');
    if (sopClass === undefined || sopInstance === undefined) {
      return refusal(Status.CannotUnderstand, 'the data set has no SOP class or instance UID');
    }
    if (sopClass !== this.request.sopClassUid) {
      return refusal(Status.DataSetMismatch, `data set SOP class ${sopClass}, command ${this.request.sopClassUid}`);
    }
    if (sopInstance !== this.request.sopInstanceUid) {
      return refusal(Status.DataSetMismatch, 'data set SOP instance UID is not the one its command announced');
    }
    if (uidOf(dataSet, 'x0020000d') === undefined || uidOf(dataSet, 'x0020000e') === undefined) {
      return refusal(Status.CannotUnderstand, 'the data set has no study or series instance UID');
    }
    const truncated = pixelDataTruncation(dataSet, this.totalBytes, Buffer.from(this.tail));
    if (truncated) return refusal(Status.CannotUnderstand, truncated);
    return { dataSet };
  }
}
