// The store's writing connection, on its own thread: a commit waits for the disk to sync
// (synchronous=FULL), and that wait must not stall every other device's session. The parent
// sends {id, method, args}; each is run on one Store and answered {id, result} or {id, error}.
//
// Group commit: every commit that arrived while the previous transaction was being written goes
// to disk in the next single transaction, so many meters downloading at once share disk syncs
// instead of queueing one each. Their captures' bytes are written to the blob store first, for the
// whole group at once (files synced together, each directory once: Store.commitGroup), and only
// then does the transaction that names them commit (rule 1). Each caller is answered only once its
// blob and its transaction are on disk.
// Commits go first: a device is waiting for its "received" on each of them. Bookkeeping
// (publish marks, device states, audit, quarantine) waits until no commit is queued, and a big
// batch of it is written in slices, so a commit arriving meanwhile waits for one slice at most.
// Quarantined bytes go to the blob store, a slice of them synced together (see `quarantines`).
//
// Checkpoints (copying the WAL back into the database file) run here too, between group commits:
// SQLite would otherwise run one inside whichever commit crosses the WAL size limit, and that
// commit (and every device waiting on it) would wait for the database file's sync as well. Here a
// checkpoint waits until no commit is queued, so a commit waits at most for one checkpoint that had
// already begun; only if commits have not paused for two intervals does one go ahead of them, so
// that the WAL cannot grow without end under a load that never stops. (A thread of its own for
// the checkpoint cost 12 MB of memory.)
import { existsSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';

// Compiled (dist/), store.js sits beside this file and plain Node loads it. From the source (tsx,
// vitest) there is only store.ts, and this thread must register the TypeScript loader itself: a
// worker does not inherit the loader hooks of the thread that started it.
const compiledStore = new URL('./store.js', import.meta.url);
const { Store } = existsSync(compiledStore)
  ? await import(compiledStore.href)
  : await import('tsx/esm/api').then(({ register }) => (register(), import('./store.ts')));
const store = new Store(workerData.path, { checkpointElsewhere: true });

/** A checkpoint that has waited this long for a pause in the commits runs before the next group. */
const CHECKPOINT_OVERDUE_MS = 2 * workerData.checkpointIntervalMs;
/** When the checkpoint became due (undefined: not due). */
let checkpointDueSince;
const checkpointTimer = setInterval(() => {
  checkpointDueSince ??= Date.now();
  schedule();
}, workerData.checkpointIntervalMs);

/** Rows per bookkeeping transaction; each slice is well under a millisecond. */
const SLICE = 50;

/** Structured clone turns Buffers into Uint8Arrays; the store wants Buffers back. */
function toBuffer(bytes) {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function slices(items) {
  const out = [];
  for (let i = 0; i < items.length; i += SLICE) out.push(items.slice(i, i + SLICE));
  return out.length > 0 ? out : [items];
}

/** Each bookkeeping method: the steps to run, one per turn of the queue; the last step's value is the answer. */
const bookkeepingMethods = {
  markPublishedMany: (seqs, at) => slices(seqs).map((slice) => () => store.markPublishedMany(slice, at)),
  saveDeviceStates: (states, at) => slices(states).map((slice) => () => store.saveDeviceStates(slice, at)),
  recordRequest: (entry, at) => [() => store.recordRequest(entry, at)],
  nextSequence: (name) => [() => store.nextSequence(name)],
  prune: (at) => [() => prune(at)],
  stats: () => [() => ({ groups, quarantineSlices, blobSyncs: { ...store.blobs.syncs }, checkpoints: { ...checkpoints }, pruned: { ...pruned }, walBytes: store.walBytes() })],
};

/** `store.retention` (retention.ts), pruned a batch per turn of the queue, at start and then hourly. */
const RETENTION = workerData.retention;
const RETENTION_INTERVAL_MS = workerData.retentionIntervalMs ?? 3_600_000;
const pruned = { records: 0, captures: 0, quarantine: 0, blobs: 0 };

function prune(at) {
  if (!RETENTION) return { ...pruned };
  const out = store.prune(RETENTION, at ? new Date(at) : new Date());
  pruned.records += out.records;
  pruned.captures += out.captures;
  pruned.quarantine += out.quarantine;
  pruned.blobs += out.blobs;
  // The rest in later turns, behind whatever commits arrived meanwhile.
  if (out.more) bookkeeping.push({ id: undefined, steps: [() => prune(at)] });
  return { ...pruned };
}

let retentionTimer;
if (RETENTION) {
  setImmediate(() => {
    bookkeeping.push({ id: undefined, steps: [() => prune()] });
    schedule();
  });
  retentionTimer = setInterval(() => {
    bookkeeping.push({ id: undefined, steps: [() => prune()] });
    schedule();
  }, RETENTION_INTERVAL_MS);
  retentionTimer.unref();
}

/**
 * Quarantine requests, answered in batches: a slice of them has its blobs put and synced together
 * and its rows written in one transaction (Store.quarantineMany), so a burst of line noise (tens of
 * thousands of refused chunks) waits for the disk once per slice, never once per chunk. Each caller
 * is answered once its bytes and row are on disk (a driver may answer its device only then).
 */
const quarantines = [];

/** Quarantine slices written (the `stats` method). */
let quarantineSlices = 0;

async function quarantineSlice() {
  const jobs = quarantines.splice(0, SLICE);
  quarantineSlices++;
  let outcomes;
  try {
    outcomes = await store.quarantineMany(jobs.map((job) => ({ deviceId: job.deviceId, bytes: toBuffer(job.bytes), reason: job.reason, at: job.at })));
  } catch (error) {
    for (const job of jobs) parentPort.postMessage({ id: job.id, error: error instanceof Error ? error.message : String(error) });
    return;
  }
  jobs.forEach((job, i) => {
    const outcome = outcomes[i];
    parentPort.postMessage(outcome ? { id: job.id, error: outcome.message } : { id: job.id, result: null });
  });
}

/** {id, inputs} of each commitMany not yet written. */
const commits = [];
const bookkeeping = [];
let scheduled = false;
/** A group's blobs are being written (asynchronously): the next step waits for its transaction. */
let busy = false;
let closing;
let bookkeepingTurn = false;

function schedule() {
  if (scheduled || busy) return;
  scheduled = true;
  // setImmediate, not a loop: messages that arrived meanwhile are queued before the next step.
  setImmediate(runNext);
}

/** A capture sent as bytes arrives as a Uint8Array: back to a Buffer for the blob store. */
function withBuffers(input) {
  return input.capture.bytes === undefined ? input : { ...input, capture: { ...input.capture, bytes: toBuffer(input.capture.bytes) } };
}

/** Group commits made, and the blob syncs they asked for (the `stats` method; tests and the benchmark). */
let groups = 0;
/** Checkpoints run, and how long they held the thread (commits arriving meanwhile wait). */
const checkpoints = { count: 0, totalMs: 0, maxMs: 0, truncated: 0 };

/** All waiting commits in one transaction; each input that failed is rolled back alone. */
async function commitWaiting() {
  const jobs = commits.splice(0);
  let outcomes;
  try {
    groups++;
    outcomes = await store.commitGroup(jobs.flatMap((job) => job.inputs.map(withBuffers)));
  } catch (error) {
    for (const job of jobs) parentPort.postMessage({ id: job.id, error: error instanceof Error ? error.message : String(error) });
    return;
  }
  let from = 0;
  for (const job of jobs) {
    const mine = outcomes.slice(from, (from += job.inputs.length));
    parentPort.postMessage({ id: job.id, result: mine.map((o) => (o instanceof Error ? { error: o.message } : o)) });
  }
}

/** `store.wal_max_mb` in bytes: past it, a checkpoint truncates the WAL (0: never). */
const WAL_MAX_BYTES = workerData.walMaxBytes ?? 0;

/**
 * A PASSIVE checkpoint never waits for a reader: it copies what it can, and the next one goes on.
 * When the WAL file has grown past `store.wal_max_mb` (a load that never pauses, a reader that held
 * a snapshot), a TRUNCATE checkpoint copies all of it and cuts the file to zero; checked at every
 * interval, so a WAL left big by a crash is cut after the restart too.
 */
function checkpoint() {
  checkpointDueSince = undefined;
  const started = performance.now();
  try {
    store.checkpoint();
    if (WAL_MAX_BYTES > 0 && store.walBytes() > WAL_MAX_BYTES && store.checkpointTruncate()) checkpoints.truncated++;
  } catch {
    // busy or locked: the next interval tries again
  }
  const ms = performance.now() - started;
  checkpoints.count++;
  checkpoints.totalMs += ms;
  checkpoints.maxMs = Math.max(checkpoints.maxMs, ms);
}

/** One bookkeeping step; the job is answered after its last. */
function bookkeepingStep() {
  const job = bookkeeping[0];
  try {
    const result = job.steps.shift()();
    if (job.steps.length > 0) return;
    bookkeeping.shift();
    if (job.id !== undefined) parentPort.postMessage({ id: job.id, result: result ?? null });
  } catch (error) {
    bookkeeping.shift();
    if (job.id !== undefined) parentPort.postMessage({ id: job.id, error: error instanceof Error ? error.message : String(error) });
  }
}

async function runNext() {
  scheduled = false;
  busy = true;
  try {
    const checkpointOverdue = checkpointDueSince !== undefined && Date.now() - checkpointDueSince >= CHECKPOINT_OVERDUE_MS;
    if (commits.length > 0 && !checkpointOverdue) await commitWaiting();
    else if (checkpointDueSince !== undefined) checkpoint();
    else if (bookkeeping.length > 0 && (quarantines.length === 0 || bookkeepingTurn)) bookkeepingStep();
    else if (quarantines.length > 0) await quarantineSlice();
    // Quarantine slices and the other bookkeeping take turns, so neither starves the other.
    bookkeepingTurn = !bookkeepingTurn;
  } finally {
    busy = false;
  }
  if (commits.length > 0 || bookkeeping.length > 0 || quarantines.length > 0) schedule();
  else if (closing !== undefined) close(closing);
}

function close(id) {
  clearInterval(checkpointTimer);
  clearInterval(retentionTimer);
  store.close();
  parentPort.postMessage({ id, result: null });
  parentPort.close();
}

parentPort.on('message', ({ id, method, args }) => {
  if (method === 'close') {
    // Everything asked for before the close is written first.
    closing = id;
    if (commits.length === 0 && bookkeeping.length === 0 && quarantines.length === 0 && !scheduled && !busy) close(id);
    return;
  }
  if (method === 'commitMany') commits.push({ id, inputs: args[0] });
  else if (method === 'quarantine') quarantines.push({ id, deviceId: args[0], bytes: args[1], reason: args[2], at: args[3] });
  else if (bookkeepingMethods[method]) bookkeeping.push({ id, steps: bookkeepingMethods[method](...args) });
  else {
    parentPort.postMessage({ id, error: `unknown store method ${method}` });
    return;
  }
  schedule();
});
parentPort.postMessage({ ready: true });
