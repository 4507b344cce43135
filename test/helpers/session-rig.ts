import type { DeviceConfig } from '../../src/config/types.ts';
import { createSimulator, type DeviceSimulator, type DriverDefinition, type DriverSession, type SessionHost } from '../../src/driver-sdk/index.ts';
import { memoryPair, type MemoryTransport } from '../../src/transports/memory.ts';
import { pushStrict, type Cleanups } from './cleanups.ts';
import { FakeHost } from './fake-host.ts';

/** A driver session on a FakeHost, wired over an in-memory cable to a simulated device. */
export interface SessionRig<Sim extends DeviceSimulator, Session extends DriverSession> {
  host: FakeHost;
  sim: Sim;
  session: Session;
  hostEnd: MemoryTransport;
  deviceEnd: MemoryTransport;
  /** Stops the session, detaches the simulator and closes both ends; later calls wait for the first. */
  teardown(): Promise<void>;
}

interface SessionRigSetup<Sim extends DeviceSimulator, Session extends DriverSession> {
  /** Names the cable in transport error messages. */
  cable: string;
  device: DeviceConfig;
  simulator: Sim;
  createSession(host: SessionHost): Session;
  /** A FakeHost subclass for tests that need more of the host (such as what the session logs); a plain FakeHost when left out. */
  host?: (device: DeviceConfig, transport: MemoryTransport) => FakeHost;
  /** The host's zone; FakeHost's default when left out. */
  timezone?: string;
  /** Host→device writes arrive in pieces of this many bytes, to exercise the simulator's framing. */
  chunkSize?: number;
  /** Device→host writes arrive in pieces of this many bytes, to exercise the session's framing. */
  deviceChunkSize?: number;
  /** Start the session in the rig, before the host end opens. Default false: the test starts it. */
  start?: boolean;
  /**
   * Open the host end in the rig (the device is plugged in). Default true; false lets a test act
   * between start and plug-in, then open `hostEnd` itself.
   */
  open?: boolean;
  /** The teardown is registered here as strict: it runs after the test even when the test fails, and a failing stop fails the test. */
  cleanups: Cleanups;
}

/**
 * The device end is open and the simulator listening before the session exists, as a meter that
 * sits in its cable waiting to be asked. An instrument that talks first on open needs the host end
 * listening before its own end opens, which this order does not give.
 */
export async function sessionRig<Sim extends DeviceSimulator, Session extends DriverSession>(
  setup: SessionRigSetup<Sim, Session>,
): Promise<SessionRig<Sim, Session>> {
  const { host: hostEnd, device: deviceEnd } = memoryPair(setup.cable);
  if (setup.chunkSize !== undefined) hostEnd.chunkSize = setup.chunkSize;
  if (setup.deviceChunkSize !== undefined) deviceEnd.chunkSize = setup.deviceChunkSize;
  const sim = setup.simulator;
  sim.attach(deviceEnd);
  await deviceEnd.open();
  const host = setup.host ? setup.host(setup.device, hostEnd) : new FakeHost(setup.device, hostEnd);
  if (setup.timezone !== undefined) host.timezone = setup.timezone;
  const session = setup.createSession(host);
  let stopped: Promise<void> | undefined;
  const teardown = (): Promise<void> =>
    (stopped ??= (async () => {
      try {
        await session.stop();
      } finally {
        sim.detach();
        await hostEnd.close();
        await deviceEnd.close();
      }
    })());
  pushStrict(setup.cleanups, teardown);
  if (setup.start === true) await session.start();
  if (setup.open !== false) await hostEnd.open();
  return { host, sim, session, hostEnd, deviceEnd, teardown };
}

/** What every rig of one driver's tests shares; each test overrides the simulator and device options. */
interface DriverRigDefaults {
  cable: string;
  deviceId: string;
  /** Driver options; a test's `deviceOptions.options` replaces them whole. */
  options: Record<string, unknown>;
  simulator: Record<string, unknown>;
  timezone?: string;
  chunkSize?: number;
}

/** Rigs a driver's own simulator (loaded through `driver.simulator.load`) to its session; not started, plugged in unless `open` is false. */
export function driverRig<Sim extends DeviceSimulator>(driver: DriverDefinition, defaults: DriverRigDefaults, cleanups: Cleanups) {
  return async (
    simOptions: Record<string, unknown> = {},
    deviceOptions: Partial<DeviceConfig> = {},
    opts: { open?: boolean } = {},
  ): Promise<SessionRig<Sim, DriverSession>> =>
    sessionRig({
      cable: defaults.cable,
      device: { id: defaults.deviceId, driver: driver.id, transport: { type: 'simulated' }, options: { ...defaults.options }, ...deviceOptions },
      simulator: (await createSimulator(driver.simulator, { ...defaults.simulator, ...simOptions })) as Sim,
      createSession: (host) => driver.createSession(host),
      timezone: defaults.timezone,
      chunkSize: defaults.chunkSize,
      open: opts.open,
      cleanups,
    });
}
