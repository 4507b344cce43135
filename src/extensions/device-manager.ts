import type { DeviceConfig } from '../config/types.ts';
import { captureToBytes } from '../driver-sdk/capture.ts';
import type { DeviceSimulator, DriverDefinition, DriverSession, SessionHost } from '../driver-sdk/index.ts';
import type { BridgeDeviceEntry } from '../mqtt/topics.ts';
import { DEVICE_STATE_SCHEMA, type Availability, type DeviceState } from '../records/types.ts';
import { usbEntry } from '../transports/discovery.ts';
import { createTransport } from '../transports/index.ts';
import { memoryPair } from '../transports/memory.ts';
import type { ByteTransport } from '../transports/transport.ts';
import { makeEvent, parseRequestPayload } from './bridge.ts';
import type { Extension, Services } from './extension.ts';

/**
 * Device state is kept in SQLite only so a restart remembers serials and last downloads (MQTT
 * gets every change at once). Changed states are written together: within a second when the
 * device's identity or readings changed, within half a minute when only the routine fields did
 * (a meter polled every second touches those every second, and each write holds up the store's
 * writer thread, which records wait for).
 */
const STATE_SAVE_SOON_MS = 1000;
const STATE_SAVE_LATER_MS = 30_000;
const ROUTINE_STATE_FIELDS: ReadonlySet<string> = new Set(['status', 'status_detail', 'last_seen', 'last_download', 'clock_skew_s']);

/** Device statuses in which the device is reachable and answering. */
const AVAILABLE_STATUSES = new Set(['idle', 'ok', 'downloading']);

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
  /** Unplugged (hot-plug): no session, kept so `bridge/devices` shows it offline. */
  removed: boolean;
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

  constructor(private readonly s: Services) {}

  async start(): Promise<void> {
    const { bus } = this.s;
    this.unsubscribe.push(bus.on('mqttConnected', () => void this.publishAll()));
    this.unsubscribe.push(bus.on('republish', () => void this.publishAll()));
    this.unsubscribe.push(bus.on('mqttMessage', ({ topic, payload }) => void this.onMessage(topic, payload)));
    for (const config of this.s.config.devices) {
      if (config.enabled === false) continue;
      await this.addDevice(config);
    }
    void this.publishAll();
  }

  async stop(): Promise<void> {
    this.unsubscribe.forEach((u) => u());
    for (const device of this.devices.values()) {
      if (device.removed) continue;
      await device.session.stop().catch(() => undefined);
      device.simulator?.detach();
      await device.transport.close().catch(() => undefined);
      this.setAvailability(device, 'offline');
    }
    await this.s.writer.drained();
    await this.saveDirtyStates();
    this.devices.clear();
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
  async addDevice(config: DeviceConfig): Promise<void> {
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
    const log = this.s.log.child({ component: `device:${config.id}`, driver: driver.id });
    const timezone = config.timezone ?? this.s.config.timezone;
    const refused = refusal(driver, config);
    const unsupported = refused?.reason ?? null;
    let transport: ByteTransport;
    let simulator: DeviceSimulator | undefined;
    if (unsupported) {
      // Recognised but unreadable: say so on the device state; never open it or start a session.
      transport = memoryPair(`unsupported:${config.id}`).host;
    } else if (config.transport.type === 'simulated') {
      const pair = memoryPair(`sim:${config.id}`);
      try {
        // A simulated meter keeps the device's configured local time unless told otherwise.
        simulator = driver.simulator.create({ timezone, ...config.transport.simulator });
      } catch (error) {
        this.event('config_error', config.id, `${(error as Error).message}; device not started`);
        return;
      }
      await pair.device.open();
      simulator.attach(pair.device);
      transport = pair.host;
    } else {
      transport = createTransport(config.transport, driver.serialDefaults, this.s.transportExtras);
    }
    const stored = this.s.store.deviceState(config.id);
    const state: DeviceState = {
      schema: DEVICE_STATE_SCHEMA,
      id: config.id,
      driver: driver.id,
      manufacturer: driver.vendor,
      // An unreadable device is named by what was recognised: the driver's first model would be wrong.
      model: refused ? refused.model : stored?.driver === driver.id ? stored.model : (driver.models[0] ?? null),
      serial: stored?.driver === driver.id ? stored.serial : null,
      firmware: stored?.driver === driver.id ? stored.firmware : null,
      status: unsupported ? 'unsupported' : 'idle',
      status_detail: unsupported,
      last_seen: stored?.last_seen ?? null,
      last_download: stored?.last_download ?? null,
      clock_skew_s: null,
      clock_skew_flagged: false,
      display_unit: stored?.display_unit ?? null,
      record_count: stored?.record_count ?? null,
      battery: null,
    };
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
      removed: false,
    } as Omit<ManagedDevice, 'session'> as ManagedDevice;
    if (unsupported) {
      device.session = refusingSession(`${driver.id}: ${unsupported}`);
      this.devices.set(config.id, device);
      log.warn({ reason: unsupported }, 'device recognised but not supported');
      this.event('device_error', config.id, `${driver.id}: this device cannot be read: ${unsupported}`, { reason: 'unsupported' });
      this.updateState(device, {});
      void this.publishAvailability(device);
      void this.publishDeviceList();
      return;
    }
    device.session = driver.createSession(this.sessionHost(device, log));
    this.devices.set(config.id, device);
    // Retained from the start, so a dashboard sees a device that never comes online as offline.
    void this.publishAvailability(device);

    transport.on('open', () => {
      device.transportOpen = true;
      device.lastTransportError = null;
      this.event('connected', config.id, `${transport.description} open`);
      if (device.state.status === 'port-missing') this.updateState(device, { status: 'idle', status_detail: null });
      else this.refreshAvailability(device);
    });
    transport.on('close', () => {
      device.transportOpen = false;
      this.event('disconnected', config.id, `${transport.description} closed`);
      this.refreshAvailability(device);
    });
    transport.on('error', (error: Error) => {
      this.s.stats.errors++;
      // A vanished port retries every few seconds: report each new reason once, not each retry.
      if (device.lastTransportError === error.message) return;
      device.lastTransportError = error.message;
      log.warn({ err: error.message }, 'transport error');
      this.event('port_missing', config.id, error.message);
      this.updateState(device, { status: 'port-missing', status_detail: error.message });
    });

    await device.session.start().catch((error: Error) => {
      log.error({ err: error.message }, 'session failed to start');
      this.event('device_error', config.id, `session failed to start: ${error.message}`);
    });
    await transport.open().catch((error: Error) => {
      log.warn({ err: error.message }, 'transport did not open');
      this.event('port_missing', config.id, error.message);
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
    this.updateState(device, { status: reason, status_detail: null });
  }

  private sessionHost(device: ManagedDevice, log: Services['log']): SessionHost {
    const s = this.s;
    const timezone = device.config.timezone ?? s.config.timezone;
    return {
      device: device.config,
      timezone,
      transport: device.transport,
      log,
      now: s.now,
      commit: async (drafts, capture) => {
        // The bytes first, synced off the event loop: the rows that name them commit only after.
        const blob = await s.store.blobs.put(captureToBytes(capture));
        const outcome = await s.writer.commit({
          site: s.config.site,
          deviceId: device.config.id,
          driver: device.driver.id,
          capture: { ...blob, kind: capture.kind },
          drafts,
          timezone,
          receivedAt: s.now(),
          privacy: s.config.privacy,
        });
        s.stats.stored += outcome.inserted.length;
        s.stats.duplicates += outcome.duplicates;
        if (outcome.inserted.length > 0) {
          try {
            s.bus.emit('resultsStored', { deviceId: device.config.id, records: outcome.inserted });
          } catch (error) {
            // The records are committed: a listener's failure must not make the device think otherwise.
            log.error({ err: (error as Error).message }, 'a listener failed on stored results');
          }
        }
        return { inserted: outcome.inserted.length, duplicates: outcome.duplicates };
      },
      quarantine: (bytes, reason) => {
        s.stats.errors++;
        s.writer.quarantine(device.config.id, bytes, reason, s.now()).catch((error: Error) => {
          log.error({ err: error.message }, 'could not keep quarantined bytes');
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

  private updateState(device: ManagedDevice, patch: Partial<DeviceState>): void {
    const before = device.state;
    device.state = { ...before, ...patch, schema: DEVICE_STATE_SCHEMA, id: before.id, driver: before.driver };
    this.dirtyStates.add(device);
    const routine = Object.entries(patch).every(
      ([k, v]) => ROUTINE_STATE_FIELDS.has(k) || before[k as keyof DeviceState] === v,
    );
    this.scheduleStateSave(routine ? STATE_SAVE_LATER_MS : STATE_SAVE_SOON_MS);
    // Several patches in one tick become one retained message.
    if (!device.statePublishQueued) {
      device.statePublishQueued = true;
      setImmediate(() => {
        device.statePublishQueued = false;
        void this.publishDeviceState(device);
      });
    }
    if (before.serial !== device.state.serial || before.model !== device.state.model) void this.publishDeviceList();
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
    void this.publishDeviceList();
  }

  private event(type: Parameters<SessionHost['event']>[0], deviceId: string, message: string, data?: Record<string, unknown>): void {
    // A device that is not started must be plain in the log too, not only on the event topic.
    if (type === 'config_error') this.s.log.warn({ device: deviceId }, message);
    this.s.bus.emit('bridgeEvent', makeEvent(type, deviceId, message, this.s.now(), data));
  }

  private async publishAll(): Promise<void> {
    if (!this.s.mqtt.connected) return;
    await this.publishDeviceList();
    for (const device of this.devices.values()) {
      await this.publishDeviceState(device);
      await this.publishAvailability(device);
    }
  }

  private async publishDeviceState(device: ManagedDevice): Promise<void> {
    if (!this.s.mqtt.connected) return;
    await this.s.mqtt
      .publish(this.s.topics.device(device.config.id), device.state, { qos: 1, retain: true })
      .catch(() => undefined);
  }

  private async publishAvailability(device: ManagedDevice): Promise<void> {
    if (!this.s.mqtt.connected) return;
    await this.s.mqtt
      .publish(this.s.topics.availability(device.config.id), { state: device.availability }, { qos: 1, retain: true })
      .catch(() => undefined);
  }

  private async publishDeviceList(): Promise<void> {
    if (!this.s.mqtt.connected) return;
    await this.s.mqtt.publish(this.s.topics.bridge('devices'), this.list(), { qos: 1, retain: true }).catch(() => undefined);
  }

  private async onMessage(topic: string, payload: Buffer): Promise<void> {
    const parsed = this.s.topics.parseRequest(topic);
    if (!parsed || parsed.target !== 'device') return;
    const { device: deviceId, verb } = parsed;
    const device = this.devices.get(deviceId);
    let transaction: string | number | undefined;
    let response: { status: 'ok' | 'error'; data: unknown; error: string | null; transaction?: string | number };
    let params: Record<string, unknown> = {};
    try {
      const request = parseRequestPayload(payload);
      transaction = request.transaction;
      const { transaction: _t, ...rest } = request;
      params = rest;
      if (!device) throw new Error(`unknown device "${deviceId}"`);
      if (device.removed) throw new Error(`device "${deviceId}" is unplugged`);
      if (!(verb in device.driver.commands)) {
        throw new Error(`${device.driver.id} has no command "${verb}" (known: ${Object.keys(device.driver.commands).join(', ')})`);
      }
      const data = await device.session.command(verb, params);
      response = { status: 'ok', data, error: null };
    } catch (error) {
      response = { status: 'error', data: null, error: (error as Error).message };
    }
    if (device) {
      await this.s.writer
        .audit({ device_id: deviceId, verb, params, status: response.status, detail: response.error ?? response.data }, this.s.now())
        .catch((error: Error) => this.s.log.error({ err: error.message, verb }, 'could not write the audit row'));
    }
    if (transaction !== undefined) response.transaction = transaction;
    await this.s.mqtt
      .publish(this.s.topics.deviceResponse(deviceId, verb), response, { qos: 1, retain: false })
      .catch(() => undefined);
  }
}
