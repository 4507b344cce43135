import type { DeviceConfig } from '../config/types.ts';
import { captureToBytes } from '../driver-sdk/capture.ts';
import { countsByKind } from '../records/kinds.ts';
import { createSimulator, type CommandSpec, type DeviceSimulator, type DriverDefinition, type DriverSession, type SessionHost } from '../driver-sdk/index.ts';
import type { BridgeDeviceEntry } from '../mqtt/topics.ts';
import {
  applyStatePatch,
  AVAILABLE_STATUSES,
  initialDeviceState,
  rememberedState,
  type DeviceState,
  type DeviceStatePatch,
} from '../records/device-state.ts';
import type { Availability } from '../records/types.ts';
import { usbEntry } from '../transports/discovery.ts';
import { memoryPair } from '../transports/memory.ts';
import { ListenerTransport, type ListenerConnection, type ListenerRefusal } from '../transports/listener.ts';
import { buildTransport } from '../transports/registry.ts';
import type { ByteTransport } from '../transports/transport.ts';
import { echoableTransaction, makeEvent, parseRequestPayload, transactionRefusal, validTransaction } from './bridge.ts';
import type { DeviceCommandOutcome, Extension, Services } from './extension.ts';
import { paramsProblems, PATIENT_DATA_OMITTED, redactPatientData, redactPatientParams, REQUEST_ENVELOPE_KEYS } from '../driver-sdk/commands.ts';
import type { RequestRecord, RequestResponse } from '../store/requests.ts';
import { guardTransportEvents, installSessionFaultHandlers, runInSession, type SessionContext } from './session-guard.ts';

/**
 * Device state is kept in SQLite only so a restart remembers serials and last downloads (MQTT
 * gets every change at once). Changed states are written together: within a second when the
 * device's identity or readings changed, within half a minute when only the routine fields did
 * (a meter polled every second touches those every second, and each write holds up the store's
 * writer thread, which records wait for).
 */
const STATE_SAVE_SOON_MS = 1000;
const STATE_SAVE_LATER_MS = 30_000;
const ROUTINE_STATE_FIELDS: ReadonlySet<string> = new Set([
  'status',
  'status_detail',
  'last_seen',
  'last_download',
  'clock_skew_s',
  'analyzer.last_message_at',
  'printer.status_read_at',
  'printer.queued_jobs',
  'imaging.associations_open',
  'imaging.instances_received',
  'imaging.last_association_at',
  'imaging.last_instance_at',
]);

/** Whether patching `key` with `value` changes only routine fields of `state` (a block: field by field). */
function routineChange(state: DeviceState, key: string, value: unknown): boolean {
  if (ROUTINE_STATE_FIELDS.has(key)) return true;
  const current = (state as unknown as Record<string, unknown>)[key];
  if (typeof value !== 'object' || value === null || typeof current !== 'object' || current === null) return current === value;
  return Object.entries(value).every(
    ([f, v]) => v === undefined || ROUTINE_STATE_FIELDS.has(`${key}.${f}`) || (current as Record<string, unknown>)[f] === v,
  );
}

/**
 * `last_seen` moves with every byte from a device; alone it republishes the retained state at
 * most this often (any other change goes out at once).
 */
export const LAST_SEEN_PUBLISH_MS = 60_000;

/**
 * A session that crashed is started again after this delay, doubled at each crash up to the
 * maximum; a session that then ran this long without crashing starts the count afresh.
 */
export const SESSION_RESTART = { minMs: 1000, maxMs: 60_000, resetAfterMs: 10 * 60_000 };

interface ManagedDevice {
  config: DeviceConfig;
  driver: DriverDefinition;
  transport: ByteTransport;
  simulator: DeviceSimulator | undefined;
  session: DriverSession;
  state: DeviceState;
  transportOpen: boolean;
  availability: Availability;
  lastTransportError: string | null;
  statePublishQueued: boolean;
  /** The state last published, without `last_seen`, and when it went out. */
  publishedState: string | undefined;
  publishedAt: number;
  /** A publish held back because only `last_seen` had moved. */
  lastSeenTimer: NodeJS.Timeout | undefined;
  /** Unplugged (hot-plug): no session, kept so `bridge/devices` shows it offline. */
  removed: boolean;
  /** The context the current session's code runs in (a restart makes a new one). */
  context: SessionContext;
  /** Crashes since the session last ran `SESSION_RESTART.resetAfterMs` without one; when it was last (re)started. */
  crashes: number;
  sessionStartedAt: number;
  restartTimer: NodeJS.Timeout | undefined;
  /** The device manager's own listeners on the transport (a crashed session's are taken off, these stay). */
  ownListeners: Set<unknown>;
  /** The callers a shared listener handed to this device's session (a crashed session's are hung up). */
  connections: Set<ListenerConnection>;
}

/**
 * Why a configured device cannot be read, and the model to show for it: a USB id its driver marks
 * unsupported, or what the driver tells from the config (a Libre 2 named by its model option).
 */
function refusal(driver: DriverDefinition, config: DeviceConfig): { model: string; reason: string } | null {
  const t = config.transport;
  const usb = t.type === 'hid' ? usbEntry(driver, t.vendor_id, t.product_id) : undefined;
  if (usb?.unsupported) return { model: usb.description, reason: usb.unsupported };
  return driver.refuses?.(config) ?? null;
}

/** An identity key (`transport.sender`) on a device whose driver does not route callers by it. */
function listenerIdentityProblem(driver: DriverDefinition, config: DeviceConfig): string | null {
  if (config.transport.type !== 'tcp-server' || config.transport.sender === undefined) return null;
  if (driver.listenerIdentities?.includes('sender')) return null;
  return `transport.sender: ${driver.id} does not route callers by sender`;
}

/** The session of a device that cannot be read: every command says why. */
function refusingSession(reason: string): DriverSession {
  return {
    start: async () => undefined,
    stop: async () => undefined,
    command: async () => {
      throw new Error(reason);
    },
  };
}

/**
 * Holds one driver session per configured device: builds its transport (or a simulator on an
 * in-memory cable), gives the session a host to commit records through, publishes the device's
 * retained state and availability, and routes `device/<id>/request/<verb>` to the session.
 */
export class DeviceManager implements Extension {
  readonly name = 'device-manager';
  private readonly devices = new Map<string, ManagedDevice>();
  private readonly unsubscribe: Array<() => void> = [];
  private readonly dirtyStates = new Set<ManagedDevice>();
  private stateSaveTimer: NodeJS.Timeout | undefined;
  private stateSaveDue = 0;
  /** Requests with a transaction still running, by device + verb + transaction. */
  private readonly requestsRunning = new Map<string, Promise<RequestResponse>>();
  /** While above 0 (start, stop), `bridge/devices` changes are gathered into one publish at the end. */
  private deviceListHolds = 0;
  private deviceListPending = false;
  /** Set by stop(): the publishing loops that may still be running end instead of re-sending offline states. */
  private stopping = false;
  /** Whether the devices the store remembers but this daemon does not run were told offline (once, on the first connection). */
  private forgottenAnnounced = false;
  /** The devices started from the config (not hot-plugged): what a reload compares. */
  private readonly configured = new Set<string>();
  private uninstallFaultHandlers: (() => void) | undefined;
  /** Each device's transport, to tell whose session a listener's caller is fed to. */
  private readonly byTransport = new WeakMap<ByteTransport, ManagedDevice>();
  private readonly guardedConnections = new WeakSet<ListenerConnection>();

  constructor(private readonly s: Services) {}

  async start(): Promise<void> {
    const { bus } = this.s;
    this.uninstallFaultHandlers = installSessionFaultHandlers((context, error, origin) => void this.sessionCrashed(context, error, origin));
    this.unsubscribe.push(bus.on('mqttConnected', () => void this.publishAll(true)));
    this.unsubscribe.push(bus.on('republish', () => void this.publishAll(true)));
    this.unsubscribe.push(bus.on('mqttMessage', ({ topic, payload }) => void this.onMessage(topic, payload)));
    this.deviceListHolds++;
    try {
      for (const config of this.s.config.devices) {
        if (config.enabled === false) continue;
        this.configured.add(config.id);
        await this.addDevice(config);
      }
    } finally {
      this.deviceListHolds--;
      this.deviceListPending = false;
    }
    // What the sessions published while starting is not sent twice.
    void this.publishAll(false);
  }

  /**
   * Devices the store remembers but this daemon no longer runs (taken out of the config while it
   * was down, or before a crash that left their availability `online` retained) are told
   * `offline`, so a dashboard does not show them online for ever.
   */
  private async publishForgottenOffline(): Promise<void> {
    if (!this.s.mqtt.connected) return;
    let remembered: string[];
    try {
      remembered = this.s.store.deviceIds();
    } catch {
      return;
    }
    for (const id of remembered) {
      if (this.stopping) return;
      if (this.devices.has(id)) continue;
      await this.s.mqtt.publish(this.s.topics.availability(id), { state: 'offline' }, { qos: 1, retain: true }).catch(() => undefined);
    }
  }

  /**
   * A config read again: devices no longer there (or now disabled) are stopped, new ones started,
   * changed ones restarted; the others keep running untouched. Hot-plugged devices are not the
   * config's and stay as they are.
   */
  async reloadDevices(next: readonly DeviceConfig[]): Promise<{ added: string[]; removed: string[]; restarted: string[]; unchanged: number }> {
    const wanted = new Map(next.filter((d) => d.enabled !== false).map((d) => [d.id, d]));
    const out = { added: [] as string[], removed: [] as string[], restarted: [] as string[], unchanged: 0 };
    this.deviceListHolds++;
    try {
      for (const id of [...this.configured]) {
        const device = this.devices.get(id);
        const want = wanted.get(id);
        if (!want) {
          await this.stopDevice(id);
          this.configured.delete(id);
          out.removed.push(id);
        } else if (!device || JSON.stringify(want) !== JSON.stringify(device.config)) {
          await this.stopDevice(id);
          await this.addDevice(want, { offlineAnnounced: true });
          out.restarted.push(id);
        } else {
          out.unchanged++;
        }
      }
      for (const [id, config] of wanted) {
        if (this.configured.has(id)) continue;
        if (this.devices.has(id) && !this.devices.get(id)!.removed) {
          // A hot-plugged device holds the id: the config's entry waits until it is gone.
          this.event('config_error', id, `a device with id "${id}" is already running (hot-plugged); the configured one is not started`);
          continue;
        }
        this.configured.add(id);
        this.devices.delete(id);
        await this.addDevice(config);
        out.added.push(id);
      }
    } finally {
      this.deviceListHolds--;
      if (this.deviceListPending) await this.publishDeviceList();
    }
    return out;
  }

  /** Ends a device's session and link and forgets it: availability offline (retained), gone from `bridge/devices`. */
  private async stopDevice(id: string): Promise<void> {
    const device = this.devices.get(id);
    if (!device) return;
    clearTimeout(device.lastSeenTimer);
    clearTimeout(device.restartTimer);
    if (!device.removed) {
      await device.session.stop().catch(() => undefined);
      device.simulator?.detach();
      await device.transport.close().catch(() => undefined);
    }
    device.removed = true;
    device.transportOpen = false;
    this.setAvailability(device, 'offline');
    this.devices.delete(id);
    this.scheduleDeviceList();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.unsubscribe.forEach((u) => u());
    // One bridge/devices for the whole stop, not one per device.
    this.deviceListHolds++;
    for (const device of this.devices.values()) {
      clearTimeout(device.lastSeenTimer);
      clearTimeout(device.restartTimer);
      if (device.removed) continue;
      await device.session.stop().catch(() => undefined);
      device.simulator?.detach();
      await device.transport.close().catch(() => undefined);
      this.setAvailability(device, 'offline');
    }
    this.deviceListHolds--;
    if (this.deviceListPending) await this.publishDeviceList();
    await this.s.writer.drained();
    await this.saveDirtyStates();
    this.devices.clear();
    this.uninstallFaultHandlers?.();
    this.uninstallFaultHandlers = undefined;
  }

  /** Current state of every managed device (for tests and `bridge/devices`). */
  list(): BridgeDeviceEntry[] {
    return [...this.devices.values()].map((d) => ({
      id: d.config.id,
      driver: d.driver.id,
      vendor: d.driver.vendor,
      model: d.state.model,
      serial: d.state.serial,
      transport: d.config.transport.type,
      availability: d.availability,
    }));
  }

  /**
   * Starts a session for a device: the configured ones at start, and hot-plugged ones (which may
   * come back under the id they had before they were unplugged).
   */
  async addDevice(config: DeviceConfig, options: { offlineAnnounced?: boolean } = {}): Promise<void> {
    const previous = this.devices.get(config.id);
    if (previous && !previous.removed) {
      this.event('config_error', config.id, `a device with id "${config.id}" is already running; not started twice`);
      return;
    }
    const driver = this.s.drivers.find((d) => d.id === config.driver);
    if (!driver) {
      this.event('config_error', config.id, `unknown driver "${config.driver}"; device not started`);
      return;
    }
    if (!driver.transports.includes(config.transport.type)) {
      this.event(
        'config_error',
        config.id,
        `${driver.id} does not speak over "${config.transport.type}" (it supports: ${driver.transports.join(', ')}); device not started`,
      );
      return;
    }
    const identityProblem = listenerIdentityProblem(driver, config);
    if (identityProblem) {
      this.event('config_error', config.id, `${identityProblem}; device not started`);
      return;
    }
    const optionProblems = driver.optionProblems?.(config) ?? [];
    if (optionProblems.length > 0) {
      this.event('config_error', config.id, `${optionProblems.map((p) => `${p.path}: ${p.message}`).join('; ')}; device not started`);
      return;
    }
    const log = this.s.log.child({ component: `device:${config.id}`, driver: driver.id });
    const timezone = config.timezone ?? this.s.config.timezone;
    const refused = refusal(driver, config);
    const unsupported = refused?.reason ?? null;
    let transport: ByteTransport;
    let simulator: DeviceSimulator | undefined;
    if (unsupported) {
      // Recognised but unreadable: say so on the device state; never open it or start a session.
      transport = memoryPair(`unsupported:${config.id}`).host;
    } else {
      try {
        // A simulated meter keeps the device's configured local time unless told otherwise.
        const built = await buildTransport(config.transport, {
          deviceId: config.id,
          serialDefaults: driver.serialDefaults,
          extras: this.s.transportExtras,
          // N simulated devices are N devices: each gets a serial of its own unless one is configured.
          simulator: (options) =>
            createSimulator(driver.simulator, {
              timezone,
              ...(driver.simulator.serialFor ? { serial: driver.simulator.serialFor(config.id) } : {}),
              ...options,
            }),
          listenerReport: (refusal) => this.listenerRefused(refusal),
        });
        transport = built.transport;
        simulator = built.simulator;
      } catch (error) {
        this.event('config_error', config.id, `${(error as Error).message}; device not started`);
        return;
      }
    }
    const fresh = initialDeviceState({
      kind: driver.kind,
      id: config.id,
      driver: driver.id,
      manufacturer: driver.vendor,
      model: driver.models[0] ?? null,
    });
    const remembered = rememberedState(this.s.store.deviceState(config.id), driver.id, driver.kind);
    // An unreadable device is named by what was recognised: the driver's first model would be wrong.
    if (refused) remembered.model = refused.model;
    if (unsupported) Object.assign(remembered, { status: 'unsupported', status_detail: unsupported });
    const state = applyStatePatch(fresh, remembered).state;
    const device = {
      config,
      driver,
      transport,
      simulator,
      state,
      transportOpen: false,
      availability: 'offline',
      lastTransportError: null,
      statePublishQueued: false,
      publishedState: undefined,
      publishedAt: 0,
      lastSeenTimer: undefined,
      removed: false,
      context: { deviceId: config.id, generation: 1 },
      crashes: 0,
      sessionStartedAt: Date.now(),
      restartTimer: undefined,
      ownListeners: new Set(),
      connections: new Set(),
    } as Omit<ManagedDevice, 'session'> as ManagedDevice;
    if (unsupported) {
      device.session = refusingSession(`${driver.id}: ${unsupported}`);
      this.devices.set(config.id, device);
      log.warn({ reason: unsupported }, 'device recognised but not supported');
      this.event('device_error', config.id, `${driver.id}: this device cannot be read: ${unsupported}`, { reason: 'unsupported' });
      this.updateState(device, {});
      void this.publishAvailability(device);
      this.scheduleDeviceList();
      return;
    }
    // What the session does on an event of its transport is its code: a throw there is its crash.
    this.guardSessionCode(device);
    this.keepTransportListeners(device);
    try {
      device.session = runInSession(device.context, () => driver.createSession(this.sessionHost(device, log)));
    } catch (error) {
      // A bad option of one device (the driver checks them here) stops that device, never the others.
      const reason = `${driver.id}: ${(error as Error).message}`;
      device.session = refusingSession(`${reason}; device not started`);
      this.devices.set(config.id, device);
      log.error({ err: (error as Error).message }, 'session could not be made; device not started');
      this.event('config_error', config.id, `${reason}; device not started`, { reason: 'session-failed' });
      this.updateState(device, { status: 'error', status_detail: reason });
      void this.publishAvailability(device);
      void this.publishDeviceList();
      await transport.close().catch(() => undefined);
      return;
    }
    this.devices.set(config.id, device);
    // Retained from the start, so a dashboard sees a device that never comes online as offline
    // (a restarted one was just said to be).
    if (!options.offlineAnnounced) void this.publishAvailability(device);

    const own = <A extends unknown[]>(event: string, listener: (...args: A) => void): void => {
      device.ownListeners.add(listener);
      transport.on(event, listener as (...args: unknown[]) => void);
    };
    own('open', () => {
      device.transportOpen = true;
      device.lastTransportError = null;
      this.event('connected', config.id, `${transport.description} open`);
      if (device.state.status === 'port-missing') this.updateState(device, { status: 'idle', status_detail: null });
      else this.refreshAvailability(device);
    });
    own('listening', () => {
      // A listener that found its port in use and got it on a retry.
      device.lastTransportError = null;
      this.event('connected', config.id, `${transport.description} listening`);
      if (device.state.status === 'port-missing') this.updateState(device, { status: 'idle', status_detail: null });
    });
    own('close', () => {
      device.transportOpen = false;
      this.event('disconnected', config.id, `${transport.description} closed`);
      this.refreshAvailability(device);
    });
    own('error', (error: Error) => {
      this.s.stats.errors++;
      // A vanished port retries every few seconds: report each new reason once, not each retry.
      if (device.lastTransportError === error.message) return;
      device.lastTransportError = error.message;
      log.warn({ err: error.message }, 'transport error');
      this.event('port_missing', config.id, error.message);
      this.updateState(device, { status: 'port-missing', status_detail: error.message });
    });

    const started = await runInSession(device.context, () => device.session.start()).then(
      () => true,
      (error: Error) => {
        log.error({ err: error.message }, 'session failed to start');
        this.event('device_error', config.id, `session failed to start: ${error.message}`, { reason: 'session-failed' });
        this.updateState(device, { status: 'error', status_detail: `session failed to start: ${error.message}` });
        return false;
      },
    );
    if (!started) return;
    await transport.open().catch((error: Error) => {
      log.warn({ err: error.message }, 'transport did not open');
      this.event('port_missing', config.id, error.message);
      this.updateState(device, { status: 'port-missing', status_detail: error.message });
    });
  }

  /** The listeners on the transport before a session is made are not the session's: a crash leaves them. */
  private keepTransportListeners(device: ManagedDevice): void {
    for (const event of device.transport.eventNames()) for (const listener of device.transport.listeners(event)) device.ownListeners.add(listener);
  }

  /**
   * Makes what the device's transport delivers run as its session's code. A shared listener hands
   * each caller to a session as a connection of its own: its events run as the code of the session
   * that holds the caller at the time (a caller may be routed on to another device of the port).
   */
  private guardSessionCode(device: ManagedDevice): void {
    const { transport } = device;
    const crashed = (context: SessionContext, error: Error): void => void this.sessionCrashed(context, error, 'exception');
    this.byTransport.set(transport, device);
    guardTransportEvents(transport, () => device.context, crashed);
    if (!(transport instanceof ListenerTransport)) return;
    const serve = transport.serve.bind(transport);
    transport.serve = (server) =>
      serve((conn) => {
        if (!this.guardedConnections.has(conn)) {
          this.guardedConnections.add(conn);
          guardTransportEvents(conn, () => (conn.owner ? this.byTransport.get(conn.owner)?.context : undefined) ?? device.context, crashed);
        }
        device.connections.add(conn);
        conn.once('close', () => device.connections.delete(conn));
        const context = device.context;
        runInSession(context, () => {
          try {
            server(conn);
          } catch (error) {
            crashed(context, error instanceof Error ? error : new Error(String(error)));
          }
        });
      });
  }

  /**
   * A session threw where nobody caught it (a transport event, a timer, a promise of its own): that
   * device gets status `error` with the reason and an event, its session is stopped, its transport
   * closed, and a new session is started after a backoff. The other devices never notice.
   */
  private async sessionCrashed(context: SessionContext, error: Error, origin: 'exception' | 'rejection'): Promise<void> {
    const device = this.devices.get(context.deviceId);
    const log = this.s.log.child({ component: `device:${context.deviceId}` });
    if (!device || device.removed || this.stopping || device.context.generation !== context.generation || device.restartTimer) {
      // A session already stopped (or being restarted) whose leftover timer or promise failed.
      log.warn({ err: error.message, origin }, 'a stopped session failed after it was stopped');
      return;
    }
    this.s.stats.errors++;
    const now = Date.now();
    if (now - device.sessionStartedAt >= SESSION_RESTART.resetAfterMs) device.crashes = 0;
    device.crashes++;
    const delayMs = Math.min(SESSION_RESTART.minMs * 2 ** (device.crashes - 1), SESSION_RESTART.maxMs);
    const reason = `${device.driver.id} session crashed: ${error.message}`;
    log.error({ err: error.message, stack: error.stack, origin, crashes: device.crashes, restart_in_ms: delayMs }, 'session crashed; restarting it');
    this.event('device_error', device.config.id, `${reason}; restarting in ${Math.round(delayMs / 1000)} s`, {
      reason: 'session-crashed',
      crashes: device.crashes,
      restart_in_ms: delayMs,
    });
    this.updateState(device, { status: 'error', status_detail: reason });
    const crashed = device.session;
    device.session = refusingSession(`${reason}; the session is restarting`);
    device.restartTimer = setTimeout(() => void this.restartSession(device), delayMs);
    await Promise.resolve()
      .then(() => crashed.stop())
      .catch((stopError: Error) => log.warn({ err: stopError.message }, 'the crashed session did not stop cleanly'));
    // What the crashed session left listening on its transport must not feed the next one.
    for (const event of device.transport.eventNames()) {
      for (const listener of device.transport.listeners(event)) {
        if (!device.ownListeners.has(listener)) device.transport.off(event, listener as (...args: unknown[]) => void);
      }
    }
    // A caller it was reading from would hold the port: it is hung up and can call again.
    await Promise.all([...device.connections].map((conn) => conn.close().catch(() => undefined)));
    device.connections.clear();
    await device.transport.close().catch(() => undefined);
  }

  private async restartSession(device: ManagedDevice): Promise<void> {
    device.restartTimer = undefined;
    if (device.removed || this.stopping || this.devices.get(device.config.id) !== device) return;
    const log = this.s.log.child({ component: `device:${device.config.id}`, driver: device.driver.id });
    device.context = { deviceId: device.config.id, generation: device.context.generation + 1 };
    device.sessionStartedAt = Date.now();
    this.keepTransportListeners(device);
    try {
      device.session = runInSession(device.context, () => device.driver.createSession(this.sessionHost(device, log)));
      await runInSession(device.context, () => device.session.start());
    } catch (error) {
      await this.sessionCrashed(device.context, error instanceof Error ? error : new Error(String(error)), 'exception');
      return;
    }
    log.info({ crashes: device.crashes }, 'session restarted');
    this.updateState(device, { status: 'idle', status_detail: null });
    await device.transport.open().catch((error: Error) => {
      log.warn({ err: error.message }, 'transport did not open');
      this.event('port_missing', device.config.id, error.message);
      this.updateState(device, { status: 'port-missing', status_detail: error.message });
    });
  }

  /** Hot-plug: the device was unplugged. Its session ends; it stays listed, offline, until it returns. */
  async removeDevice(id: string, reason: string): Promise<void> {
    const device = this.devices.get(id);
    if (!device || device.removed) return;
    device.removed = true;
    await device.session.stop().catch(() => undefined);
    device.simulator?.detach();
    await device.transport.close().catch(() => undefined);
    device.transportOpen = false;
    this.event('device_removed', id, `${device.driver.id} ${reason}`, { reason });
    this.updateState(device, { status: 'unplugged', status_detail: null });
  }

  private sessionHost(device: ManagedDevice, log: Services['log']): SessionHost {
    const s = this.s;
    const timezone = device.config.timezone ?? s.config.timezone;
    return {
      device: device.config,
      timezone,
      transport: device.transport,
      store: { blobs: s.store.blobs, path: s.config.store.path },
      log,
      now: s.now,
      jobs: {
        open: () => s.store.jobs.open(device.config.id),
        recent: (limit) => s.store.jobs.recent(device.config.id, limit),
        get: (id) => s.store.jobs.get(device.config.id, id),
        byTransaction: (verb, transaction) => s.store.jobs.byTransaction(device.config.id, verb, transaction),
        payload: (job) => s.store.blobs.read(job.payload_sha256),
        nextSequence: (name) => s.writer.nextSequence(name),
      },
      commit: async (drafts, capture, jobs) => {
        // The writer thread puts the bytes in the blob store with the rest of its group, synced,
        // and only then commits the rows that name them.
        const started = process.hrtime.bigint();
        const outcome = await s.writer.commit({
          site: s.config.site,
          deviceId: device.config.id,
          driver: device.driver.id,
          capture: { kind: capture.kind, bytes: captureToBytes(capture) },
          drafts,
          timezone,
          receivedAt: s.now(),
          privacy: s.config.privacy,
          ...(jobs && jobs.length > 0 ? { jobs } : {}),
        });
        s.stats.stored += outcome.inserted.length;
        s.stats.duplicates += outcome.duplicates;
        s.bus.emit('recordsCommitted', { deviceId: device.config.id, ...countsByKind(drafts, outcome.inserted), seconds: Number(process.hrtime.bigint() - started) / 1e9 });
        if (outcome.inserted.length > 0) {
          try {
            s.bus.emit('recordsStored', { deviceId: device.config.id, records: outcome.inserted });
          } catch (error) {
            // The records are committed: a listener's failure must not make the device think otherwise.
            log.error({ err: (error as Error).message }, 'a listener failed on stored records');
          }
        }
        return { inserted: outcome.inserted.length, duplicates: outcome.duplicates };
      },
      quarantine: (bytes, reason) => {
        s.stats.errors++;
        // Settles when the writer has stored the row: a session may answer the device after it.
        return s.writer.quarantine(device.config.id, bytes, reason, s.now()).catch((error: Error) => {
          log.error({ err: error.message }, 'could not keep quarantined bytes');
          throw error;
        });
      },
      event: (type, message, data) => {
        this.event(type, device.config.id, message, data);
        if (type === 'no_answer' && device.config.transport.type === 'serial') void this.reopenTransport(device, log);
      },
      updateState: (patch) => this.updateState(device, patch),
    };
  }

  /**
   * A serial port that went away and came back can leave us holding the old, dead file
   * descriptor, which reports nothing: to the session it looks like a meter that is switched off.
   * When a device stops answering, the port is opened afresh once, which costs nothing if the
   * meter really is off.
   */
  private async reopenTransport(device: ManagedDevice, log: Services['log']): Promise<void> {
    log.info('no answer: opening the serial port afresh');
    await device.transport.close().catch(() => undefined);
    if (!this.devices.has(device.config.id)) return;
    await device.transport.open().catch((error: Error) => log.warn({ err: error.message }, 'reopen failed'));
  }

  private updateState(device: ManagedDevice, patch: DeviceStatePatch): void {
    const before = device.state;
    const { state, refused } = applyStatePatch(before, patch);
    if (refused.length > 0) this.s.log.warn({ device: device.config.id, refused }, 'state fields refused (not in poct.device-state/2 for this kind)');
    device.state = state;
    this.dirtyStates.add(device);
    const routine = Object.entries(patch).every(([k, v]) => routineChange(before, k, v));
    this.scheduleStateSave(routine ? STATE_SAVE_LATER_MS : STATE_SAVE_SOON_MS);
    // Several patches in one tick become one retained message.
    if (!device.statePublishQueued) {
      device.statePublishQueued = true;
      setImmediate(() => {
        device.statePublishQueued = false;
        void this.publishDeviceState(device);
      });
    }
    if (before.serial !== device.state.serial || before.model !== device.state.model) this.scheduleDeviceList();
    this.refreshAvailability(device);
  }

  private scheduleStateSave(delayMs: number): void {
    const due = Date.now() + delayMs;
    if (this.stateSaveTimer && this.stateSaveDue <= due) return;
    clearTimeout(this.stateSaveTimer);
    this.stateSaveDue = due;
    this.stateSaveTimer = setTimeout(() => void this.saveDirtyStates(), delayMs);
  }

  private async saveDirtyStates(): Promise<void> {
    clearTimeout(this.stateSaveTimer);
    this.stateSaveTimer = undefined;
    const states = [...this.dirtyStates].map((d) => d.state);
    this.dirtyStates.clear();
    if (states.length === 0) return;
    await this.s.writer.saveDeviceStates(states, this.s.now()).catch((error: Error) => {
      this.s.log.warn({ err: error.message }, 'could not save device states');
    });
  }

  private refreshAvailability(device: ManagedDevice): void {
    const online = !device.removed && device.transportOpen && AVAILABLE_STATUSES.has(device.state.status);
    this.setAvailability(device, online ? 'online' : 'offline');
  }

  private setAvailability(device: ManagedDevice, state: Availability): void {
    if (device.availability === state) return;
    device.availability = state;
    this.s.bus.emit('deviceAvailability', { deviceId: device.config.id, state });
    void this.publishAvailability(device);
    this.scheduleDeviceList();
  }

  /**
   * A caller a shared listener refused: a log line once per distinct reason, an event for the
   * first few and then one a minute with the count (a caller retrying every second is not 88 000).
   */
  private listenerRefused(r: ListenerRefusal): void {
    if (r.first) this.s.log.warn({ port: r.port, bind: r.bind, peer: r.peer, sender: r.sender, reason: r.reason }, r.message);
    if (!r.due) return;
    this.s.bus.emit(
      'bridgeEvent',
      makeEvent('listener_refused', null, r.message, this.s.now(), { reason: r.reason, bind: r.bind, port: r.port, peer: r.peer, sender: r.sender, count: r.count }),
    );
  }

  private event(type: Parameters<SessionHost['event']>[0], deviceId: string, message: string, data?: Record<string, unknown>): void {
    // A device that is not started must be plain in the log too, not only on the event topic.
    if (type === 'config_error') this.s.log.warn({ device: deviceId }, message);
    this.s.bus.emit('bridgeEvent', makeEvent(type, deviceId, message, this.s.now(), data));
  }

  /**
   * Every retained topic of the devices. `resend` (a reconnect, a republish request): each state
   * counts as not yet published, so it goes out once, unless a change sends it first while this
   * loop works through the others; availability is sent again too.
   */
  private async publishAll(resend: boolean): Promise<void> {
    if (!this.s.mqtt.connected || this.stopping) return;
    if (resend) for (const device of this.devices.values()) device.publishedState = undefined;
    await this.publishDeviceList();
    for (const device of this.devices.values()) {
      if (this.stopping) return;
      await this.publishDeviceState(device);
      // Availability went out as it changed; only a reconnect or a republish sends it all again.
      if (resend) await this.publishAvailability(device);
    }
    if (!this.forgottenAnnounced) {
      this.forgottenAnnounced = true;
      await this.publishForgottenOffline();
    }
  }

  /**
   * The retained state, when its content changed: a state that differs from the one last
   * published only in `last_seen` waits until `LAST_SEEN_PUBLISH_MS` after that one.
   */
  private async publishDeviceState(device: ManagedDevice): Promise<void> {
    if (!this.s.mqtt.connected) return;
    const content = JSON.stringify({ ...device.state, last_seen: null });
    if (content === device.publishedState) {
      const wait = device.publishedAt + LAST_SEEN_PUBLISH_MS - Date.now();
      if (wait > 0) {
        device.lastSeenTimer ??= setTimeout(() => {
          device.lastSeenTimer = undefined;
          if (this.devices.get(device.config.id) === device) void this.publishDeviceState(device);
        }, wait);
        device.lastSeenTimer.unref();
        return;
      }
    }
    clearTimeout(device.lastSeenTimer);
    device.lastSeenTimer = undefined;
    device.publishedState = content;
    device.publishedAt = Date.now();
    await this.s.mqtt
      .publish(this.s.topics.device(device.config.id), device.state, { qos: 1, retain: true })
      .catch(() => undefined);
  }

  /** `bridge/devices` once for every change made in this turn of the event loop (or at the end of a start or stop). */
  private scheduleDeviceList(): void {
    if (this.deviceListPending) return;
    this.deviceListPending = true;
    if (this.deviceListHolds > 0) return;
    setImmediate(() => {
      if (this.deviceListHolds > 0) return;
      void this.publishDeviceList();
    });
  }

  private async publishAvailability(device: ManagedDevice): Promise<void> {
    if (!this.s.mqtt.connected) return;
    await this.s.mqtt
      .publish(this.s.topics.availability(device.config.id), { state: device.availability }, { qos: 1, retain: true })
      .catch(() => undefined);
  }

  private async publishDeviceList(): Promise<void> {
    this.deviceListPending = false;
    if (!this.s.mqtt.connected) return;
    await this.s.mqtt.publish(this.s.topics.bridge('devices'), this.list(), { qos: 1, retain: true }).catch(() => undefined);
  }

  private async onMessage(topic: string, payload: Buffer): Promise<void> {
    const parsed = this.s.topics.parseRequest(topic);
    if (!parsed || parsed.target !== 'device') return;
    const { device: deviceId, verb } = parsed;
    let request: ReturnType<typeof parseRequestPayload> | undefined;
    let refusal: string | null = null;
    try {
      request = parseRequestPayload(payload);
    } catch (error) {
      refusal = (error as Error).message;
    }
    const transaction = validTransaction(request?.transaction);
    let response: RequestResponse;
    let echoed: string | number | undefined = transaction;
    const transactionProblem = request && transaction === undefined ? transactionRefusal(request.transaction) : null;
    if (refusal !== null || !request) {
      response = { status: 'error', data: null, error: refusal };
    } else if (transactionProblem !== null) {
      response = { status: 'error', data: null, error: transactionProblem };
      // Not one to run once by, but still the client's handle on this answer where JSON can carry it back.
      echoed = echoableTransaction(request.transaction);
    } else {
      response = await this.requestOnce(deviceId, verb, request, transaction);
    }
    const published: RequestResponse & { transaction?: string | number } = { ...response };
    if (echoed !== undefined) published.transaction = echoed;
    await this.s.mqtt
      .publish(this.s.topics.deviceResponse(deviceId, verb), published, { qos: 1, retain: false })
      .catch(() => undefined);
  }

  /** At least once, run once: a repeat of a transaction waits for the first run, or reads its outcome. */
  private async requestOnce(deviceId: string, verb: string, request: Record<string, unknown>, transaction: string | number | undefined): Promise<RequestResponse> {
    if (transaction === undefined || !this.devices.has(deviceId)) return this.runRequest(deviceId, verb, request, null);
    const key = JSON.stringify([deviceId, verb, transaction]);
    const running = this.requestsRunning.get(key);
    if (running) return running;
    const kept = this.s.store.requestOutcome(deviceId, verb, transaction, this.s.now());
    if (kept) return kept;
    const run = this.runRequest(deviceId, verb, request, transaction);
    this.requestsRunning.set(key, run);
    try {
      return await run;
    } finally {
      this.requestsRunning.delete(key);
    }
  }

  /**
   * A command for every running device whose driver declares it (the bridge's fan-out), each run
   * as that device's own request, one after another, in device order.
   */
  async commandEvery(verb: string, request: Record<string, unknown>): Promise<DeviceCommandOutcome[]> {
    const transaction = validTransaction(request.transaction);
    const targets = [...this.devices.values()].filter((d) => !d.removed && d.driver.commands[verb] !== undefined).map((d) => d.config.id);
    const outcomes: DeviceCommandOutcome[] = [];
    for (const id of targets.sort()) {
      const response = await this.requestOnce(id, verb, request, transaction);
      outcomes.push({ device: id, status: response.status, data: response.data ?? null, error: response.error ?? null });
    }
    return outcomes;
  }

  /**
   * Runs one device request: params validated against the command's schema, then the session;
   * the audit row (params without patient data) and, with a transaction, the outcome are stored
   * before the answer goes out, so a repeat after a restart is answered from the store.
   */
  private async runRequest(
    deviceId: string,
    verb: string,
    request: Record<string, unknown>,
    transaction: string | number | null,
  ): Promise<RequestResponse> {
    const device = this.devices.get(deviceId);
    const params = Object.fromEntries(Object.entries(request).filter(([k]) => !REQUEST_ENVELOPE_KEYS.has(k)));
    const requestedBy = typeof request.requested_by === 'string' ? request.requested_by.slice(0, 200) : null;
    const spec = device?.driver.commands[verb];
    let response: RequestResponse;
    try {
      if (!device) throw new Error(`unknown device "${deviceId}"`);
      if (request.requested_by !== undefined && typeof request.requested_by !== 'string') {
        throw new Error('requested_by: must be a string');
      }
      if (device.removed) throw new Error(`device "${deviceId}" is unplugged`);
      if (!spec) {
        throw new Error(`${device.driver.id} has no command "${verb}" (known: ${Object.keys(device.driver.commands).join(', ')})`);
      }
      const problems = paramsProblems(spec.params, params);
      if (problems.length > 0) throw new Error(`${verb}: ${problems.join('; ')}`);
      const data = await runInSession(device.context, () => device.session.command(verb, params, { transaction, requestedBy }));
      response = { status: 'ok', data: data ?? null, error: null };
    } catch (error) {
      response = { status: 'error', data: null, error: (error as Error).message };
    }
    // Who asked for what and how it ended; the params and the answer may hold patient data and stay out.
    const outcome = { device: deviceId, verb, requested_by: requestedBy, status: response.status, ...(response.error ? { error: response.error } : {}) };
    if (response.status === 'ok') this.s.log.info(outcome, `device command ${verb}`);
    else this.s.log.warn(outcome, `device command ${verb} refused or failed`);
    if (device) {
      const entry: RequestRecord = {
        device_id: deviceId,
        verb,
        // Without a schema (an unknown verb) nothing says which keys are patient data: keep none.
        params: spec ? redactPatientParams(spec.params, params) : Object.fromEntries(Object.keys(params).map((k) => [k, PATIENT_DATA_OMITTED])),
        requested_by: requestedBy,
        transaction,
        response: storableResponse(spec, response),
      };
      await this.s.writer
        .recordRequest(entry, this.s.now())
        .catch((error: Error) => this.s.log.error({ err: error.message, verb }, 'could not write the audit row'));
    }
    return response;
  }
}

/**
 * The response as the audit and the kept outcome hold it: `data` redacted by the command's
 * response schema, or dropped when the command declares none (fails closed: an answer nothing
 * describes could echo patient data). The client that asked still gets the answer as it was.
 */
function storableResponse(spec: CommandSpec | undefined, response: RequestResponse): RequestResponse {
  if (response.data === null || response.data === undefined) return { ...response, data: null };
  return { ...response, data: spec?.response ? redactPatientData(spec.response, response.data) : null };
}
