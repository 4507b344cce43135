// Preloaded (`node --import`) into a child process to report, when it exits, how its code was
// loaded: its execArgv and NODE_OPTIONS, and every module loader hook registered at run time
// (tsx's `register()` goes through node:module's `register`). Written as JSON to the file named by
// LOADER_PROBE_OUT. Tests use it to show that the compiled package runs with no TypeScript loader.
import { writeFileSync } from 'node:fs';
import module from 'node:module';

const registered = [];
const originalRegister = module.register;
module.register = function register(specifier, ...rest) {
  registered.push(String(specifier));
  return originalRegister.call(this, specifier, ...rest);
};
// Named imports of node:module (`import { register } from 'node:module'`) see the wrapper too.
module.syncBuiltinESMExports();

process.on('exit', () => {
  const out = process.env.LOADER_PROBE_OUT;
  if (!out) return;
  writeFileSync(out, JSON.stringify({ execArgv: process.execArgv, nodeOptions: process.env.NODE_OPTIONS ?? '', registered }));
});
