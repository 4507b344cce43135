import { spawn, type ChildProcess } from 'node:child_process';
import type { Controller } from '../../src/controller.ts';
import type { Cleanups } from './cleanups.ts';
import { startDaemon, testConfig } from './daemon.ts';

/** A `poctd simulate` child process. */
export interface SimulatedDevice {
  child: ChildProcess;
  /**
   * Resolves once the simulator has its transport open (it says "Ctrl-C stops" on stderr); rejects
   * if the process ends first or after 15 s. Left unawaited, a rejection goes unreported.
   */
  ready: Promise<void>;
}

/** Where the simulator sits: on a pty (`--serial`) or listening on a loopback TCP port (`--tcp`). */
export type SimulatorEndpoint = { serial: string } | { tcp: number };

/** `poctd simulate <driver> --serial <pty> | --tcp <port>`: the device as a separate process, on the real transports. */
export function simulateDevice(
  driverId: string,
  endpoint: SimulatorEndpoint,
  options: Record<string, unknown>,
  cleanups: Cleanups,
): SimulatedDevice {
  const where = 'serial' in endpoint ? ['--serial', endpoint.serial] : ['--tcp', String(endpoint.tcp)];
  const args = ['--import', 'tsx', 'cli/main.ts', 'simulate', driverId, ...where];
  for (const [k, v] of Object.entries(options)) args.push('--option', `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise((r) => child.once('exit', r));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  });
  const ready = new Promise<void>((resolve, reject) => {
    let stderr = '';
    const timer = setTimeout(() => reject(new Error(`poctd simulate ${driverId} did not start within 15 s; stderr: ${stderr}`)), 15_000);
    child.stderr!.on('data', (b: Buffer) => {
      stderr += b.toString();
      if (stderr.includes('Ctrl-C stops')) {
        clearTimeout(timer);
        resolve();
      }
    });
    // 'close', not 'exit': by then everything the process wrote to stderr has been read.
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`poctd simulate ${driverId} ended (${signal ?? `exit ${code}`}) before it was ready; stderr: ${stderr}`));
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
  ready.catch(() => undefined); // only a test that awaits `ready` hears of a failed start
  return { child, ready };
}

/** `poctd simulate <driver> --serial <pty>`: the device as a separate process on the real serialport library. */
export function simulateSerialDevice(
  driverId: string,
  ptyPath: string,
  options: Record<string, unknown>,
  cleanups: Cleanups,
): SimulatedDevice {
  return simulateDevice(driverId, { serial: ptyPath }, options, cleanups);
}

/** The Ultra 2 simulator on a pty. */
export function simulateMeter(ptyPath: string, options: Record<string, unknown>, cleanups: Cleanups): SimulatedDevice {
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

