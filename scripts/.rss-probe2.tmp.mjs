import { Worker } from 'node:worker_threads';
const rss = () => (process.memoryUsage().rss / 1048576).toFixed(1);
const wait = (ms) => new Promise(r => setTimeout(r, ms));
console.log('bare', rss());
for (let i = 0; i < 3; i++) {
  await new Promise(r => { const w = new Worker(new URL('./.w.tmp.mjs', import.meta.url)); w.once('message', r); });
  await wait(500); globalThis.gc?.();
  console.log('workers', i + 1, rss());
}
process.exit(0);
