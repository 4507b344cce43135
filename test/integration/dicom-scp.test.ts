/**
 * The C-STORE / C-ECHO SCP on a real loopback socket against DCMTK's echoscu, storescu and dcmsend,
 * storing into the real store (blob files + SQLite index): files byte-exact apart from our meta
 * header (dcmdump reads it), statuses for refused callers and bad data sets, other associations
 * served meanwhile.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { InstanceStore, type StoredInstance } from '../../drivers/imaging/dicom-ultrasound/instance-store.ts';
import type { AssociationEvent } from '../../src/protocols/dicom/association.ts';
import { CommandField, encodeCommand, Status } from '../../src/protocols/dicom/dimse.ts';
import { dataSetOffset } from '../../src/protocols/dicom/part10.ts';
import { encodePdu, PduType, RejectReason } from '../../src/protocols/dicom/pdu.ts';
import { AssociationRejected, ScuAssociation } from '../../src/protocols/dicom/scu.ts';
import { DicomScpServer } from '../../src/protocols/dicom/server.ts';
import { ACCEPTED_TRANSFER_SYNTAXES, SopClass, TransferSyntax, ULTRASOUND_STORAGE_CLASSES } from '../../src/protocols/dicom/uids.ts';
import { DicomInstanceIndex } from '../../src/store/dicom-instances.ts';
import { Store } from '../../src/store/store.ts';
import { makeUsFile, PYDICOM_FILES, US_STUDY_UID } from '../helpers/dicom-files.ts';
import { requireTool } from '../helpers/tools.ts';

const run = promisify(execFile);
/** How the tests wait for a positive sign: vitest retries the assertion every 25 ms for up to 10 s. */
const WAIT = { timeout: 10_000, interval: 25 };

interface Rig {
  dir: string;
  store: Store;
  index: DicomInstanceIndex;
  server: DicomScpServer;
  events: AssociationEvent[];
  stored: StoredInstance[];
  minFreeBytes: number;
}

let rig: Rig;
let files: { usJpeg: string; usRle: string; cineRle: string; usImplicit: string; second: string };

beforeAll(() => {
  for (const tool of ['echoscu', 'storescu', 'dcmsend', 'dcmdump', 'dump2dcm', 'dcmcjpeg', 'dcmcrle']) requireTool(tool, 'dcmtk');
  const dir = mkdtempSync(join(tmpdir(), 'poctd-dicom-files-'));
  files = {
    usJpeg: makeUsFile(dir, { name: 'us-jpeg', sopInstanceUid: '1.2.826.0.1.3680043.10.999.9.1.1', encoding: 'jpeg', extra: ['(0010,0010) PN [MÜLLER^JÖRG]'] }),
    usRle: makeUsFile(dir, { name: 'us-rle', sopInstanceUid: '1.2.826.0.1.3680043.10.999.9.1.3', encoding: 'rle' }),
    cineRle: makeUsFile(dir, { name: 'cine-rle', sopInstanceUid: '1.2.826.0.1.3680043.10.999.9.1.4', encoding: 'rle', frames: 12, samplesPerPixel: 3 }),
    usImplicit: makeUsFile(dir, { name: 'us-implicit', sopInstanceUid: '1.2.826.0.1.3680043.10.999.9.1.5', encoding: 'implicit' }),
    second: makeUsFile(dir, { name: 'us-second', sopInstanceUid: '1.2.826.0.1.3680043.10.999.9.1.6', encoding: 'explicit' }),
  };
});

async function startRig(options: { maxAssociations?: number; maxPduLength?: number; idleTimeoutMs?: number; maxObjectBytes?: number } = {}): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'poctd-dicom-scp-'));
  const dbPath = join(dir, 'poctd.db');
  const store = new Store(dbPath);
  const index = new DicomInstanceIndex(dbPath);
  const events: AssociationEvent[] = [];
  const stored: StoredInstance[] = [];
  const r = { dir, store, index, events, stored, minFreeBytes: 0 } as Rig;
  const instances = new InstanceStore({
    blobs: store.blobs,
    index,
    deviceId: 'us-room-2',
    get minFreeBytes() {
      return r.minFreeBytes;
    },
    onStored: (s) => stored.push(s),
    ...(options.maxObjectBytes !== undefined ? { maxObjectBytes: options.maxObjectBytes } : {}),
  });
  const server = new DicomScpServer({
    bind: '127.0.0.1',
    port: 0,
    aeTitle: 'POCTD',
    maxPduLength: options.maxPduLength ?? 65536,
    maxAssociations: options.maxAssociations ?? 8,
    storageClasses: ULTRASOUND_STORAGE_CLASSES,
    transferSyntaxes: ACCEPTED_TRANSFER_SYNTAXES,
    artimMs: 2000,
    idleTimeoutMs: options.idleTimeoutMs ?? 10_000,
    decide: (callingAe, calledAe, peer) => {
      if (calledAe !== 'POCTD') return { accept: false, reason: 'called-ae', message: `called ${calledAe}` };
      if (!['US_ROOM2', 'ORTHANC', 'POCTD_SCU'].includes(callingAe)) return { accept: false, reason: 'calling-ae', message: `calling AE ${callingAe} not allowed` };
      if (peer !== '127.0.0.1') return { accept: false, reason: 'calling-ae', message: `address ${peer} not allowed` };
      return { accept: true, handler: instances };
    },
    onEvent: (e) => events.push(e),
  });
  await server.start();
  r.server = server;
  return r;
}

async function stopRig(r: Rig): Promise<void> {
  await r.server.stop();
  r.index.close();
  r.store.close();
  rmSync(r.dir, { recursive: true, force: true });
}

/** Our own SCU associating with a rig's SCP: Verification (implicit VR) and each storage class given (explicit VR). */
function associate(r: Rig, callingAe: string, storageClasses: string[] = [], timeoutMs?: number): Promise<ScuAssociation> {
  return ScuAssociation.connect({
    host: '127.0.0.1',
    port: r.server.port,
    callingAe,
    calledAe: 'POCTD',
    contexts: [
      { abstractSyntax: SopClass.Verification, transferSyntaxes: [TransferSyntax.ImplicitVRLittleEndian] },
      ...storageClasses.map((abstractSyntax) => ({ abstractSyntax, transferSyntaxes: [TransferSyntax.ExplicitVRLittleEndian] })),
    ],
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
  });
}

/** The data set bytes of a Part-10 file: what follows its meta group. */
function dataSetBytes(path: string): Buffer {
  const file = readFileSync(path);
  const offset = dataSetOffset(file);
  if (offset === undefined) throw new Error(`${path} is not a Part-10 file`);
  return file.subarray(offset);
}

function scu(r: Rig, callingAe = 'US_ROOM2'): string[] {
  return ['-aet', callingAe, '-aec', 'POCTD', '127.0.0.1', String(r.server.port)];
}

describe('DICOM C-STORE SCP against DCMTK', () => {
  beforeEach(async () => {
    rig = await startRig();
    return () => stopRig(rig);
  });

  it('answers C-ECHO from echoscu for an allowed caller, on a socket with no-delay set', async () => {
    const noDelay = vi.spyOn(net.Socket.prototype, 'setNoDelay');
    await run('echoscu', ['-to', '5', ...scu(rig)]);
    expect(noDelay.mock.calls.some((c) => c[0] === true)).toBe(true);
    noDelay.mockRestore();
    await vi.waitFor(() => expect(rig.events.map((e) => e.type)).toEqual(expect.arrayContaining(['accepted', 'released', 'closed'])), WAIT);
  });

  it('rejects a caller not on the allow-list (calling AE not recognized) and a wrong called AE', async () => {
    await expect(run('echoscu', ['-to', '5', '-aet', 'STRANGER', '-aec', 'POCTD', '127.0.0.1', String(rig.server.port)])).rejects.toThrow(/Association Rejected|rejected/i);
    await expect(run('echoscu', ['-to', '5', '-aet', 'US_ROOM2', '-aec', 'OTHER', '127.0.0.1', String(rig.server.port)])).rejects.toThrow();
    const rejected = rig.events.filter((e) => e.type === 'rejected');
    expect(rejected.map((e) => e.type === 'rejected' && e.reason)).toEqual(['calling-ae', 'called-ae']);
    // Our own SCU sees the reason code itself.
    const error = await associate(rig, 'STRANGER').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AssociationRejected);
    expect((error as AssociationRejected).rj).toMatchObject({ result: 1, source: 1, reason: RejectReason.CallingAeNotRecognized });
    expect(rig.index.count()).toBe(0);
  });

  it('stores what dcmsend sends in each file\'s own transfer syntax, byte-exact, with a meta header dcmdump reads', async () => {
    // dcmsend proposes each file's own syntax; for an uncompressed file it lists explicit little
    // endian first and converts (its log says so), and it writes reportsi.dcm's data set anew
    // (dropping its group lengths), so those three are compared by value: they are not the file's
    // bytes when they leave DCMTK. What a sender sends is stored exactly (the scripted SCU below).
    const asIs = [files.usJpeg, files.usRle, files.cineRle, files.second, join(PYDICOM_FILES, 'SC_rgb_jpeg_dcmtk.dcm'), join(PYDICOM_FILES, 'test-SR.dcm')];
    const converted = [files.usImplicit, join(PYDICOM_FILES, 'ExplVR_BigEnd.dcm'), join(PYDICOM_FILES, 'reportsi.dcm')];
    await run('dcmsend', [...scu(rig), ...asIs, ...converted]);
    // dcmsend has exited after its last Success: every row and file is there already (rule 1).
    expect(rig.index.count()).toBe(asIs.length + converted.length);
    expect(rig.stored).toHaveLength(asIs.length + converted.length);
    // The data set's elements and values as dcmdump prints them, without how they were encoded
    // (sequence and item lengths, delimiters, the transfer syntax line, the lengths column).
    const dataPart = (dump: string): string[] =>
      dump
        .slice(dump.indexOf('# Dicom-Data-Set'))
        .split('\n')
        .filter((line) => !line.trimStart().startsWith('#') && !/^\s*\(fffe,e0[0d]d\)/.test(line))
        .map((line) => line.replace(/\((Sequence|Item) with [^)]*\)/, '').replace(/\s*#.*$/, '').trim());
    for (const path of [...asIs, ...converted]) {
      const { stdout: originalDump } = await run('dcmdump', ['-q', path]);
      const sopInstance = /\(0008,0018\) UI \[([0-9.]+)\]/.exec(originalDump)![1]!;
      const stored = rig.stored.find((s) => s.request.sopInstanceUid === sopInstance)!;
      expect(stored, path).toBeDefined();
      const storedPath = rig.store.blobs.pathOf(stored.blob.sha256);
      expect(statSync(storedPath).size).toBe(stored.blob.size);
      if (asIs.includes(path)) expect(dataSetBytes(storedPath).equals(dataSetBytes(path)), `${path} byte-exact`).toBe(true);
      const { stdout } = await run('dcmdump', ['-q', storedPath]);
      // The data set as dcmdump prints it is the same; only the meta group is ours.
      expect(dataPart(stdout)).toEqual(dataPart(originalDump));
      expect(stdout).toContain('(0002,0016) AE [US_ROOM2]');
      expect(stdout).toContain('(0002,0018) AE [POCTD]');
    }
    // The transfer syntax stored is the file's own (RLE stays RLE, JPEG stays JPEG, fragments untouched).
    const rle = rig.stored.find((s) => s.request.sopInstanceUid === '1.2.826.0.1.3680043.10.999.9.1.4')!;
    expect(rle.row.transfer_syntax_uid).toBe(TransferSyntax.RleLossless);
    expect(rle.row.sop_class_uid).toBe(SopClass.UltrasoundMultiFrameImage);
    expect(rle.row.study_instance_uid).toBe(US_STUDY_UID);
    expect(rig.stored.find((s) => s.request.sopInstanceUid === '1.2.826.0.1.3680043.10.999.9.1.1')!.row.transfer_syntax_uid).toBe(TransferSyntax.JpegBaseline);
  });

  it('implicit VR and big endian files proposed only in their own syntax (storescu -xi, -xb) are stored byte-exact', async () => {
    await run('storescu', [...scu(rig), '-xi', files.usImplicit]);
    await run('storescu', [...scu(rig), '-xb', join(PYDICOM_FILES, 'ExplVR_BigEnd.dcm')]);
    await vi.waitFor(() => expect(rig.stored).toHaveLength(2), WAIT);
    expect(rig.stored.map((s) => s.row.transfer_syntax_uid)).toEqual([TransferSyntax.ImplicitVRLittleEndian, TransferSyntax.ExplicitVRBigEndian]);
    expect(dataSetBytes(rig.store.blobs.pathOf(rig.stored[0]!.blob.sha256)).equals(dataSetBytes(files.usImplicit))).toBe(true);
    expect(dataSetBytes(rig.store.blobs.pathOf(rig.stored[1]!.blob.sha256)).equals(dataSetBytes(join(PYDICOM_FILES, 'ExplVR_BigEnd.dcm')))).toBe(true);
  });

  it('storescu sending many files on one association, with small PDUs, gets Success for each', async () => {
    await run('storescu', [...scu(rig), '-xy', '-pdu', '4096', files.usJpeg, files.second]);
    await run('storescu', [...scu(rig), '-xr', '-pdu', '4096', files.usRle, files.cineRle]);
    await vi.waitFor(() => expect(rig.index.count()).toBe(4), WAIT);
    expect(rig.stored.every((s) => s.outcome === 'new')).toBe(true);
  });

  it('the same instance sent again is Success and no second row; different bytes under one UID is a new version', async () => {
    await run('storescu', [...scu(rig), '-xy', files.usJpeg]);
    await run('storescu', [...scu(rig), '-xy', files.usJpeg]);
    await vi.waitFor(() => expect(rig.stored).toHaveLength(2), WAIT);
    expect(rig.stored.map((s) => s.outcome)).toEqual(['new', 'same-bytes-again']);
    expect(rig.index.count()).toBe(1);
  });

  it('a full disk: 0xA700 (out of resources) and nothing stored; the next association is served once there is room', async () => {
    rig.minFreeBytes = Number.MAX_SAFE_INTEGER;
    const refused = await run('storescu', ['-v', ...scu(rig), '-xy', files.usJpeg]).catch((e: { stdout: string; stderr: string }) => e);
    expect(`${refused.stdout}${refused.stderr}`).toMatch(/Refused: OutOfResources|0xa700/i);
    expect(rig.index.count()).toBe(0);
    rig.minFreeBytes = 0;
    await run('storescu', [...scu(rig), '-xy', files.usJpeg]);
    await vi.waitFor(() => expect(rig.index.count()).toBe(1), WAIT);
  });

  it('an SOP class not on the accept-list is not accepted (CT): storescu fails, the node keeps serving', async () => {
    await expect(run('storescu', [...scu(rig), join(PYDICOM_FILES, 'CT_small.dcm')])).rejects.toThrow();
    await run('echoscu', ['-to', '5', ...scu(rig)]);
    expect(rig.index.count()).toBe(0);
  });
});

describe('DICOM C-STORE SCP: bad data sets and bad PDUs from a scripted SCU', () => {
  beforeEach(async () => {
    rig = await startRig({ idleTimeoutMs: 1500 });
    return () => stopRig(rig);
  });

  const scripted = (): Promise<ScuAssociation> => associate(rig, 'POCTD_SCU', [SopClass.UltrasoundImage, SopClass.ComprehensiveSR], 5000);

  it('garbage as a data set: 0xC000; a data set of another SOP class: 0xA900; a wrong instance UID: 0xA900; then a good one: Success', async () => {
    const a = await scripted();
    const us = a.contextFor(SopClass.UltrasoundImage)!;
    const sr = a.contextFor(SopClass.ComprehensiveSR)!;
    const good = dataSetBytes(files.second);
    const garbage = await a.store({ contextId: us.id, sopClassUid: SopClass.UltrasoundImage, sopInstanceUid: '1.2.3.4', dataSet: Buffer.from('this is not DICOM at all, not even close to it'.repeat(20)) });
    expect(garbage.status).toBe(Status.CannotUnderstand);
    const mismatch = await a.store({ contextId: sr.id, sopClassUid: SopClass.ComprehensiveSR, sopInstanceUid: '1.2.826.0.1.3680043.10.999.9.1.6', dataSet: good });
    expect(mismatch.status).toBe(Status.DataSetMismatch);
    const wrongUid = await a.store({ contextId: us.id, sopClassUid: SopClass.UltrasoundImage, sopInstanceUid: '1.2.3.999', dataSet: good });
    expect(wrongUid.status).toBe(Status.DataSetMismatch);
    const truncated = await a.store({ contextId: us.id, sopClassUid: SopClass.UltrasoundImage, sopInstanceUid: '1.2.826.0.1.3680043.10.999.9.1.6', dataSet: good.subarray(0, 40) });
    expect(truncated.status).toBe(Status.CannotUnderstand);
    // Cut inside its pixel data: the header reads well, the object is not whole.
    const cutPixels = await a.store({ contextId: us.id, sopClassUid: SopClass.UltrasoundImage, sopInstanceUid: '1.2.826.0.1.3680043.10.999.9.1.6', dataSet: good.subarray(0, good.length - 100) });
    expect(cutPixels).toMatchObject({ status: Status.CannotUnderstand, errorComment: expect.stringMatching(/cut short/) });
    expect(rig.index.count()).toBe(0);
    const ok = await a.store({ contextId: us.id, sopClassUid: SopClass.UltrasoundImage, sopInstanceUid: '1.2.826.0.1.3680043.10.999.9.1.6', dataSet: good });
    expect(ok.status).toBe(Status.Success);
    // Success came after the row and the file: both are there the moment it arrives.
    expect(rig.index.count()).toBe(1);
    expect(rig.store.blobs.sizeOf(rig.stored[0]!.blob.sha256)).toBe(rig.stored[0]!.blob.size);
    await a.release();
    expect(rig.index.count()).toBe(1);
    expect(dataSetBytes(rig.store.blobs.pathOf(rig.stored[0]!.blob.sha256)).equals(good)).toBe(true);
    // Nothing refused left a blob behind in the temp folder.
    expect(readdirNames(join(rig.store.blobs.dir, 'tmp'))).toEqual([]);
  });

  it('an association cut mid data set leaves no file and no row; another association is served meanwhile', async () => {
    const a = await scripted();
    const b = await scripted();
    const us = a.contextFor(SopClass.UltrasoundImage)!;
    const good = dataSetBytes(files.second);
    // Half a data set (not the last PDV), then the connection is aborted.
    a.writeRaw(
      encodePdu({
        type: PduType.PData,
        pdvs: [
          {
            contextId: us.id,
            command: true,
            last: true,
            data: encodeCommand({
              commandField: CommandField.CStoreRq,
              messageId: 9,
              affectedSopClassUid: SopClass.UltrasoundImage,
              affectedSopInstanceUid: '1.2.826.0.1.3680043.10.999.9.1.6',
              priority: 0,
              dataSetType: 0,
            }),
          },
          { contextId: us.id, command: false, last: false, data: good.subarray(0, 1000) },
        ],
      }),
    );
    await vi.waitFor(() => expect(readdirNames(join(rig.store.blobs.dir, 'tmp'))).toHaveLength(1), WAIT);
    expect((await b.echo()).status).toBe(Status.Success);
    a.abort();
    await vi.waitFor(() => expect(rig.events.some((e) => e.type === 'aborted' && e.by === 'peer')).toBe(true), WAIT);
    const bus = b.contextFor(SopClass.UltrasoundImage)!;
    expect((await b.store({ contextId: bus.id, sopClassUid: SopClass.UltrasoundImage, sopInstanceUid: '1.2.826.0.1.3680043.10.999.9.1.6', dataSet: good })).status).toBe(Status.Success);
    await b.release();
    await vi.waitFor(() => expect(readdirNames(join(rig.store.blobs.dir, 'tmp'))).toEqual([]), WAIT);
    expect(rig.index.count()).toBe(1);
  });

  it('a PDU longer than the maximum we announced is refused with A-ABORT before it is read', async () => {
    const a = await scripted();
    const head = Buffer.alloc(6);
    head[0] = 0x04;
    head.writeUInt32BE(65537, 2);
    a.writeRaw(head);
    await vi.waitFor(() => expect(rig.events.some((e) => e.type === 'aborted' && e.by === 'us' && /longer than the 65536/.test(e.reason))).toBe(true), WAIT);
    await expect(a.echo()).rejects.toThrow();
  });

  it('a caller that never sends an A-ASSOCIATE-RQ is dropped by ARTIM; a silent association by the idle timeout', async () => {
    const socket = net.connect({ host: '127.0.0.1', port: rig.server.port });
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.on('error', () => undefined);
    await closed;
    expect(rig.events.some((e) => e.type === 'aborted' && /ARTIM/.test(e.reason))).toBe(true);
    const a = await scripted();
    await vi.waitFor(() => expect(rig.events.some((e) => e.type === 'aborted' && /no PDU for 1500 ms/.test(e.reason))).toBe(true), { ...WAIT, timeout: 5000 });
    await expect(a.echo()).rejects.toThrow();
  });
});

describe('DICOM SCP association limit', () => {
  let limited: Rig;
  beforeAll(async () => {
    limited = await startRig({ maxAssociations: 1 });
  });
  afterAll(async () => {
    await stopRig(limited);
  });

  it('one association more than the limit is rejected as transient (local limit exceeded), and served once the first ends', async () => {
    const first = await associate(limited, 'US_ROOM2');
    const second = await associate(limited, 'US_ROOM2').catch((e: unknown) => e);
    expect((second as AssociationRejected).rj).toMatchObject({ result: 2, source: 3, reason: RejectReason.LocalLimitExceeded });
    await first.release();
    await vi.waitFor(async () => {
      await run('echoscu', ['-to', '5', '-aet', 'US_ROOM2', '-aec', 'POCTD', '127.0.0.1', String(limited.server.port)]);
    }, WAIT);
  });
});

function readdirNames(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

describe('DICOM SCP object size limit', () => {
  let small: Rig;
  beforeAll(async () => {
    small = await startRig({ maxObjectBytes: 2000 });
  });
  afterAll(async () => {
    await stopRig(small);
  });

  it('a data set longer than the limit is read to its end, refused with 0xA700 and not kept; the association goes on', async () => {
    const a = await associate(small, 'POCTD_SCU', [SopClass.UltrasoundImage]);
    const us = a.contextFor(SopClass.UltrasoundImage)!;
    const refused = await a.store({ contextId: us.id, sopClassUid: SopClass.UltrasoundImage, sopInstanceUid: '1.2.826.0.1.3680043.10.999.9.1.6', dataSet: dataSetBytes(files.second) });
    expect(refused).toMatchObject({ status: Status.OutOfResources, errorComment: expect.stringMatching(/longer than the 2000 bytes/) });
    expect((await a.echo()).status).toBe(Status.Success);
    await a.release();
    expect(small.index.count()).toBe(0);
    await vi.waitFor(() => expect(readdirNames(join(small.store.blobs.dir, 'tmp'))).toEqual([]), WAIT);
  });
});

