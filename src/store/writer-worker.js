// The store's writing connection, on its own thread: a commit waits for the disk to sync
// (synchronous=FULL), and that wait must not stall every other device's session. The parent
// sends {id, method, args}; each is run on one Store and answered {id, result} or {id, error}.
import { parentPort, workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { Store } = await import('./store.ts');
const store = new Store(workerData.path, { checkpointElsewhere: true });

/** Structured clone turns Buffers into Uint8Arrays; the store wants Buffers back. */
function toBuffer(bytes) {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

const methods = {
  commitMany: (inputs) => store.commitMany(inputs.map((i) => ({ ...i, captureBytes: toBuffer(i.captureBytes) })))
    .map((outcome) => (outcome instanceof Error ? { error: outcome.message } : outcome)),
  markPublishedMany: (seqs, at) => store.markPublishedMany(seqs, at),
  saveDeviceStates: (states, at) => store.saveDeviceStates(states, at),
  audit: (entry, at) => store.audit(entry, at),
  quarantine: (deviceId, bytes, reason, at) => store.quarantine(deviceId, toBuffer(bytes), reason, at),
  checkpointInline: () => store.checkpointInline(),
};

parentPort.on('message', ({ id, method, args }) => {
  if (method === 'close') {
    store.close();
    parentPort.postMessage({ id, result: null });
    parentPort.close();
    return;
  }
  try {
    parentPort.postMessage({ id, result: methods[method](...args) });
  } catch (error) {
    parentPort.postMessage({ id, error: error instanceof Error ? error.message : String(error) });
  }
});
parentPort.postMessage({ ready: true });
