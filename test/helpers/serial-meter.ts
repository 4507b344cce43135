import { spawn, type ChildProcess } from 'node:child_process';
import type { Controller } from '../../src/controller.ts';
import type { Cleanups } from './cleanups.ts';
import { startDaemon, testConfig } from './daemon.ts';


/** `poctd simulate onetouch-ultra2 --serial <pty>`: the meter as a separate process on the real serialport library. */
export function simulateMeter(ptyPath: string, options: Record<string, unknown>, cleanups: Cleanups): ChildProcess {
  const args = ['--import', 'tsx', 'src/cli/main.ts', 'simulate', 'onetouch-ultra2', '--serial', ptyPath];
  for (const [k, v] of Object.entries(options)) args.push('--option', `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise((r) => child.once('exit', r));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  });
  return child;
}

export async function daemonOnSerial(brokerUrl: string, ptyPath: string, cleanups: Cleanups, extra = ''): Promise<Controller> {
  const config = testConfig(`
site: clinic-a
mqtt: { url: ${brokerUrl} }
devices:
  - id: bench1
    driver: onetouch-ultra2
    timezone: Europe/Copenhagen
    transport: { type: serial, path: ${ptyPath}, reconnect_min_ms: 100, reconnect_max_ms: 500 }
    ${extra}
`);
  const { controller } = await startDaemon(config);
  cleanups.push(() => controller.stop());
  return controller;
}

