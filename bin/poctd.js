#!/usr/bin/env node
// Runs the compiled package (dist/, made by `npm run build`) with plain Node. In a development
// checkout that has no build yet, it runs the TypeScript source through tsx when tsx is installed.
import { existsSync } from 'node:fs';

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
