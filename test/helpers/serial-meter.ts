import { spawn, type ChildProcess } from 'node:child_process';
import type { Controller } from '../../src/controller.ts';
import type { Cleanups } from './cleanups.ts';
import { startDaemon, testConfig } from './daemon.ts';


/** `poctd simulate <driver> --serial <pty>`: the device as a separate process on the real serialport library. */
export function simulateSerialDevice(
  driverId: string,
  ptyPath: string,
  options: Record<string, unknown>,
  cleanups: Cleanups,
): ChildProcess {
  const args = ['--import', 'tsx', 'src/cli/main.ts', 'simulate', driverId, '--serial', ptyPath];
  for (const [k, v] of Object.entries(options)) args.push('--option', `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise((r) => child.once('exit', r));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  });
  return child;
}

/** The Ultra 2 simulator on a pty. */
export function simulateMeter(ptyPath: string, options: Record<string, unknown>, cleanups: Cleanups): ChildProcess {
  return simulateSerialDevice('onetouch-ultra2', ptyPath, options, cleanups);
}

/** A daemon with one serial device `bench1` (default driver: onetouch-ultra2); `extra` is more YAML for that device. */
export async function daemonOnSerial(
  brokerUrl: string,
  ptyPath: string,
  cleanups: Cleanups,
  extra = '',
  driverId = 'onetouch-ultra2',
): Promise<Controller> {
  const config = testConfig(`
site: clinic-a
mqtt: { url: ${brokerUrl} }
devices:
  - id: bench1
    driver: ${driverId}
    timezone: Europe/Copenhagen
    transport: { type: serial, path: ${ptyPath}, reconnect_min_ms: 100, reconnect_max_ms: 500 }
    ${extra}
`);
  const { controller } = await startDaemon(config);
  cleanups.push(() => controller.stop());
  return controller;
}

