import type { DeviceConfig } from '../config/types.ts';
import { captureToBytes } from '../driver-sdk/capture.ts';
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
import type { ListenerRefusal } from '../transports/listener.ts';
import { buildTransport } from '../transports/registry.ts';
import type { ByteTransport } from '../transports/transport.ts';
import { echoableTransaction, makeEvent, parseRequestPayload, transactionRefusal, validTransaction } from './bridge.ts';
import type { Extension, Services } from './extension.ts';
import { paramsProblems, PATIENT_DATA_OMITTED, redactPatientData, redactPatientParams, REQUEST_ENVELOPE_KEYS } from '../driver-sdk/commands.ts';
import type { RequestRecord, RequestResponse } from '../store/requests.ts';

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
    const identityProblem = listenerIdentityProblem(driver, config);
    if (identityProblem) {
      this.event('config_error', config.id, `${identityProblem}; device not started`);
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
    try {
      device.session = driver.createSession(this.sessionHost(device, log));
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
    // Retained from the start, so a dashboard sees a device that never comes online as offline.
    void this.publishAvailability(device);

    transport.on('open', () => {
      device.transportOpen = true;
      device.lastTransportError = null;
      this.event('connected', config.id, `${transport.description} open`);
      if (device.state.status === 'port-missing') this.updateState(device, { status: 'idle', status_detail: null });
      else this.refreshAvailability(device);
    });
    transport.on('listening', () => {
      // A listener that found its port in use and got it on a retry.
      device.lastTransportError = null;
      this.event('connected', config.id, `${transport.description} listening`);
      if (device.state.status === 'port-missing') this.updateState(device, { status: 'idle', status_detail: null });
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

    const started = await device.session.start().then(
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
      log,
      now: s.now,
      commit: async (drafts, capture) => {
        // The writer thread puts the bytes in the blob store with the rest of its group, synced,
        // and only then commits the rows that name them.
        const outcome = await s.writer.commit({
          site: s.config.site,
          deviceId: device.config.id,
          driver: device.driver.id,
          capture: { kind: capture.kind, bytes: captureToBytes(capture) },
          drafts,
          timezone,
          receivedAt: s.now(),
          privacy: s.config.privacy,
        });
        s.stats.stored += outcome.inserted.length;
        s.stats.duplicates += outcome.duplicates;
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
    } else if (transaction === undefined || !this.devices.has(deviceId)) {
      response = await this.runRequest(deviceId, verb, request, null);
    } else {
      // At least once: a repeat of a transaction waits for the first run, or reads its outcome.
      const key = JSON.stringify([deviceId, verb, transaction]);
      const running = this.requestsRunning.get(key);
      const kept = running ? undefined : this.s.store.requestOutcome(deviceId, verb, transaction, this.s.now());
      if (running) response = await running;
      else if (kept) response = kept;
      else {
        const run = this.runRequest(deviceId, verb, request, transaction);
        this.requestsRunning.set(key, run);
        try {
          response = await run;
        } finally {
          this.requestsRunning.delete(key);
        }
      }
    }
    const published: RequestResponse & { transaction?: string | number } = { ...response };
    if (echoed !== undefined) published.transaction = echoed;
    await this.s.mqtt
      .publish(this.s.topics.deviceResponse(deviceId, verb), published, { qos: 1, retain: false })
      .catch(() => undefined);
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
      const data = await device.session.command(verb, params);
      response = { status: 'ok', data: data ?? null, error: null };
    } catch (error) {
      response = { status: 'error', data: null, error: (error as Error).message };
    }
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
