import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { deviceManagerRig } from '../helpers/device-manager-rig.ts';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const hooks = pathToFileURL(join(repo, 'test/helpers/module-load-hooks.mjs')).href;
const registry = pathToFileURL(join(repo, 'drivers/index.ts')).href;
const sdk = pathToFileURL(join(repo, 'src/driver-sdk/index.ts')).href;

/**
 * In a fresh Node process (tsx as loader): imports the driver registry, lists the modules loaded
 * so far, then makes one driver's simulator and lists what that added. A sentinel module marks
 * the end of each list: the hooks post in load order on one port, so when its URL arrives every
 * module loaded before it has been reported.
 */
const CHILD = `
import { register } from 'node:module';
import { MessageChannel } from 'node:worker_threads';
const { port1, port2 } = new MessageChannel();
const loaded = [];
let sentinelSeen = null;
port1.on('message', (url) => (url.startsWith('data:') && url.includes('sentinel') ? sentinelSeen?.() : loaded.push(url)));
port1.unref();
register(${JSON.stringify(hooks)}, { data: { port: port2 }, transferList: [port2] });
async function settle(n) {
  const seen = new Promise((resolve) => (sentinelSeen = resolve));
  await import('data:text/javascript,export const sentinel=' + n);
  await seen;
  return loaded.splice(0);
}
const { drivers } = await import(${JSON.stringify(registry)});
const driverIds = drivers.map((d) => d.id);
const atRegistry = await settle(1);
const { createSimulator } = await import(${JSON.stringify(sdk)});
await createSimulator(drivers.find((d) => d.id === 'clinitek-status').simulator, {});
const atSimulator = await settle(2);
process.stdout.write(JSON.stringify({ driverIds, atRegistry, atSimulator }));
`;

const isSimulatorCode = (url: string): boolean => /\/simulator(-wire)?\.ts$|\/simulated-clock\.ts$/.test(url);
const relative = (url: string): string => fileURLToPath(url).slice(repo.length);

describe('simulators load only when a simulator is used', () => {
  it('building the driver registry loads no simulator module; making a simulator loads that driver’s', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], { cwd: repo, timeout: 60_000 });
    const { driverIds, atRegistry, atSimulator } = JSON.parse(stdout) as { driverIds: string[]; atRegistry: string[]; atSimulator: string[] };
    const registryFiles = atRegistry.filter((u) => u.startsWith('file:')).map(relative);
    // The positive sign that the probe saw the registry being built: every definition it imports.
    expect(driverIds.length).toBeGreaterThan(5);
    expect(registryFiles).toContain('drivers/index.ts');
    expect(registryFiles).toContain('drivers/urinalysis/clinitek-status/definition.ts');
    expect(registryFiles.filter((f) => f.endsWith('/definition.ts'))).toHaveLength(driverIds.length);
    expect(registryFiles.filter((f) => isSimulatorCode(`file:///${f}`))).toEqual([]);
    // The probe does see simulator code when one is made (so the check above can fail).
    const simulatorFiles = atSimulator.filter((u) => u.startsWith('file:')).map(relative);
    expect(simulatorFiles).toContain('drivers/urinalysis/clinitek-status/simulator.ts');
    expect(simulatorFiles).not.toContain('drivers/urinalysis/clinitek-50/simulator.ts');
  });
});

describe('a bad simulator option, with the simulator loaded on first use', () => {
  const cleanups = useCleanups();

  it('is a config_error for the device while the daemon starts its devices, and the device is not started', async () => {
    const r = await deviceManagerRig({
      drivers,
      cleanups,
      devices: [
        { id: 'sim-bad', driver: 'onetouch-ultra2', transport: { type: 'simulated', simulator: { unit: 'stone' } } },
        { id: 'sim-good', driver: 'clinitek-status', transport: { type: 'simulated', simulator: { send_delay_ms: -1 } } },
      ],
    });
    // Reported before start() returned (the simulator is loaded inside the device's start), not later.
    const errors = r.events.filter((e) => e.type === 'config_error');
    expect(errors.map((e) => [e.device, e.message])).toEqual([
      ['sim-bad', 'onetouch-ultra2 simulator: option unit must be mg/dL or mmol/L; device not started'],
    ]);
    expect(r.manager.list().map((d) => d.id)).toEqual(['sim-good']);
    await r.stop();
  });
});
