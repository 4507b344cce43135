// Copies the WAL back into the database file on a thread of its own. SQLite would otherwise do it
// inside whichever commit crosses the WAL size limit, and that commit (and every device waiting
// for its "received") would wait for the database file's sync too. A PASSIVE checkpoint never
// blocks the writer: it copies what it can and tries again next time.
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';

const db = new Database(workerData.path);
db.pragma('busy_timeout = 1000');
db.pragma('synchronous = FULL');

let running = true;
const timer = setInterval(() => {
  if (!running) return;
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // busy or locked: the next tick tries again
  }
}, workerData.intervalMs);

parentPort.on('message', (message) => {
  if (message !== 'close') return;
  running = false;
  clearInterval(timer);
  db.close();
  parentPort.postMessage('closed');
  parentPort.close();
});
parentPort.postMessage('ready');
