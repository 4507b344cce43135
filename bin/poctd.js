#!/usr/bin/env node
// The package runs from TypeScript source through tsx, so there is no build step to forget.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
const code = await main(process.argv.slice(2));
process.exitCode = code;
setTimeout(() => process.exit(code), 200).unref();
