/**
 * The C-STORE SCP alone in a process of its own, on the real store, so a test (or the benchmark)
 * can read that process's peak memory from /proc while a large object streams in. Prints
 * `{"port":N}` once listening, then one JSON line per stored instance; exits on SIGTERM.
 *
 * Usage: tsx test/helpers/dicom-scp-process.ts <store dir> [max PDU]
 */
import { join } from 'node:path';
import { InstanceStore } from '../../drivers/imaging/dicom-ultrasound/instance-store.ts';
import { DicomScpServer } from '../../src/protocols/dicom/server.ts';
import { ACCEPTED_TRANSFER_SYNTAXES, ULTRASOUND_STORAGE_CLASSES } from '../../src/protocols/dicom/uids.ts';
import { DicomInstanceIndex } from '../../src/store/dicom-instances.ts';
import { Store } from '../../src/store/store.ts';

const dir = process.argv[2];
if (!dir) throw new Error('usage: dicom-scp-process.ts <store dir> [max PDU]');
const dbPath = join(dir, 'poctd.db');
const store = new Store(dbPath);
const index = new DicomInstanceIndex(dbPath);
const instances = new InstanceStore({
  blobs: store.blobs,
  index,
  deviceId: 'us-bench',
  minFreeBytes: 0,
  onStored: (s) => process.stdout.write(`${JSON.stringify({ stored: s.request.sopInstanceUid, size: s.blob.size, sha256: s.blob.sha256 })}\n`),
});
const server = new DicomScpServer({
  bind: '127.0.0.1',
  port: 0,
  aeTitle: 'POCTD',
  maxPduLength: Number(process.argv[3] ?? 262144),
  maxAssociations: 16,
  storageClasses: ULTRASOUND_STORAGE_CLASSES,
  transferSyntaxes: ACCEPTED_TRANSFER_SYNTAXES,
  artimMs: 30_000,
  idleTimeoutMs: 60_000,
  decide: () => ({ accept: true, handler: instances }),
});
await server.start();
process.stdout.write(`${JSON.stringify({ port: server.port })}\n`);
process.on('SIGTERM', () => {
  void server.stop().then(() => {
    index.close();
    store.close();
    process.exit(0);
  });
});
