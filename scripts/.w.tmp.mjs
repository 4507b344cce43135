import { parentPort } from 'node:worker_threads';
if (process.env.W_SQLITE) await import('better-sqlite3');
parentPort.postMessage(1);
setInterval(() => {}, 1e6);
