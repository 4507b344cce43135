#!/usr/bin/env node
// Runs the compiled package (dist/, made by `npm run build`) with plain Node. In a development
// checkout that has no build yet, it runs the TypeScript source through tsx when tsx is installed.
import { existsSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';

// V8 doubles the young generation whenever a scavenge finds much of it still alive, up to 16 MB a
// semi-space (32 MB in all); 50 meters downloading at start-up get it there, and it is handed back
// only if V8's memory reducer happens to run later. A daemon that handles a few hundred results a
// second gains nothing from it, so the young generation keeps its first size. V8 reads this flag
// each time it would grow the young generation, so it works set at run time (`--max-semi-space-size`
// is read once, when the heap is made: it would need Node's command line, i.e. a second process;
// on the command line V8 raises a factor below 2 to 2). Node applies V8's flags afresh when a worker
// thread starts (the store's writer), which undoes this: so it is set again once each is running.
const keepYoungGenerationSmall = () => setFlagsFromString('--semi-space-growth-factor=1');
keepYoungGenerationSmall();
process.on('worker', (worker) => worker.once('online', keepYoungGenerationSmall));

const compiled = new URL('../dist/cli/main.js', import.meta.url);
let main;
if (existsSync(compiled)) {
  ({ main } = await import(compiled.href));
} else {
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch {
    process.stderr.write('poctd: no compiled code in dist/ (and tsx is not installed to run the source): run `npm run build`\n');
    process.exit(1);
  }
  register();
  ({ main } = await import('../cli/main.ts'));
}
const code = await main(process.argv.slice(2));
process.exitCode = code;
// `run` ends by itself once stopped; other commands must not wait on stray handles.
setTimeout(() => process.exit(code), 200).unref();
