import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { PoctdConfig } from './config/types.ts';
import type { DriverDefinition } from './driver-sdk/index.ts';
import { ActivityLog } from './activity-log.ts';
import { EventBus } from './event-bus.ts';
import { Bridge, echoableTransaction, makeEvent, parseRequestPayload } from './extensions/bridge.ts';
import { Dashboard, type DashboardBroker } from './extensions/dashboard.ts';
import { DeviceManager } from './extensions/device-manager.ts';
import { HotPlug, type PortLister } from './extensions/hot-plug.ts';
import { Stats, type ConfigReloadOutcome, type Extension, type Services } from './extensions/extension.ts';
import { Metrics } from './extensions/metrics.ts';
import { RecordPublisher } from './extensions/record-publisher.ts';
import { MqttConnection } from './mqtt/connection.ts';
import { daemonAccess } from './mqtt/access.ts';
import type { EmbeddedBroker } from './mqtt/embedded-broker.ts';
import { Topics, type ConfigFileStatus } from './mqtt/topics.ts';
import { Store } from './store/store.ts';
import { StoreWriter } from './store/writer.ts';
import type { HidTransportExtras } from './transports/hid.ts';
import { sameOrigin } from './util/hosts.ts';
import { checkWritableFile } from './util/paths.ts';

export interface ControllerOptions {
  log: Logger;
  drivers: readonly DriverDefinition[];
  now?: () => Date;
  /** Called when the daemon cannot go on (the store's writer died): the caller should exit non-zero. */
  onFatal?: (error: Error) => void;
  /** Transport overrides for tests, e.g. an injected HID opener (no HID device exists in CI). */
  transportExtras?: { hid?: HidTransportExtras };
  /** Replaces the USB device listing that hot-plug polls (tests plug and unplug devices with it). */
  portLister?: PortLister;
  /** Reads the config again (the CLI's, from its file); answers `bridge/request/config/reload`. */
  reloadConfig?: () => Promise<ConfigReloadOutcome>;
  /** Whether the running config still is what its file says (`bridge/info`). */
  configFileStatus?: () => ConfigFileStatus;
}

/**
 * Wires the daemon: store, broker connection, event bus and extensions. Start order puts the
 * store first (nothing is accepted before it can be kept) and stop order is the reverse, ending
 * with `bridge/state` offline and the database closed.
 */
export class Controller {
  private store: Store | undefined;
  private writer: StoreWriter | undefined;
  private broker: EmbeddedBroker | undefined;
  private localOperatorAccount: { name: string; file: string } | undefined;
  private mqtt: MqttConnection | undefined;
  private extensions: Extension[] = [];
  readonly bus = new EventBus();
  private services: Services | undefined;
  private stopping: Promise<void> | undefined;
  private dashboard: Dashboard | undefined;

  constructor(
    private readonly config: PoctdConfig,
    private readonly options: ControllerOptions,
  ) {}

  /** The URL the daemon publishes to (the embedded broker's when none is configured). */
  get brokerUrl(): string | undefined {
    return this.config.mqtt.url ?? this.broker?.url;
  }

  /** The account made for this machine on the embedded broker (no `access.users`), and its password file. */
  get localOperator(): { name: string; file: string } | undefined {
    return this.localOperatorAccount;
  }

  get deviceManager(): DeviceManager | undefined {
    return this.extensions.find((e): e is DeviceManager => e instanceof DeviceManager);
  }

  async start(): Promise<void> {
    const { config, options } = this;
    const log = options.log;
    const now = options.now ?? (() => new Date());
    if (config.store.path === ':memory:') {
      // The reader and the writer thread are two connections: an in-memory database would be two.
      throw new Error('store.path: the daemon needs a database file, not :memory:');
    }
    // Before anything touches it: a path under /proc hangs mkdir, a read-only one fails later.
    checkWritableFile(config.store.path, 'store.path');
    // The main thread's connection opens (and migrates) the database before the writer thread.
    this.store = new Store(config.store.path);
    this.writer = await StoreWriter.open(config.store.path, undefined, { walMaxMb: config.store.wal_max_mb, retention: config.store.retention });
    this.writer.onFailure = (error) => {
      // Nothing can be stored any more, so nothing may be acknowledged: stop and let the service
      // manager restart the daemon, rather than run on looking healthy.
      log.fatal({ err: error.message }, 'the store writer died; stopping');
      this.bus.emit('bridgeEvent', makeEvent('device_error', null, `store writer died: ${error.message}; poctd is stopping`, now()));
      void this.stop().finally(() => this.options.onFatal?.(error));
    };
    log.info({ path: config.store.path }, 'store open');

    let url = config.mqtt.url;
    let username = config.mqtt.username;
    let password = config.mqtt.password;
    let dashboardBroker: DashboardBroker | undefined;
    if (!url) {
      const access = daemonAccess(config);
      // Loaded only here: a daemon on the clinic's broker (mqtt.url) never needs aedes and ws.
      const { EmbeddedBroker } = await import('./mqtt/embedded-broker.ts');
      this.broker = new EmbeddedBroker(config.mqtt.embedded, {
        access: access.list,
        configuredUsers: access.configuredUsers,
        // No page is served on ws_port: only the dashboard's own origins and the configured ones
        // (a same-origin rule there would let a DNS-rebound page in).
        allowOrigin: (origin) => this.pageOriginAllowed(origin),
      });
      await this.broker.start();
      const broker = this.broker;
      dashboardBroker = {
        access: access.list,
        configuredUsers: access.configuredUsers,
        upgrade: (req, socket, head) => broker.handleUpgrade(req, socket, head),
      };
      url = this.broker.url;
      ({ name: username, password } = access.daemon);
      log.info({ url, ws_port: this.broker.wsPort }, 'embedded MQTT broker listening');
      if (access.localOperator) {
        this.localOperatorAccount = access.localOperator;
        const { name, file } = access.localOperator;
        log.info(
          { user: name, password_file: file },
          `local operator account: log in as "${name}" with the password in ${file}; watch with: ` +
            `mosquitto_sub -h 127.0.0.1 -p ${this.broker.port} -u ${name} -P "$(cat ${file})" -t '${config.mqtt.base_topic}/#' -v`,
        );
      }
    }
    const topics = new Topics(config.mqtt.base_topic);
    const embedded = this.broker;
    // Behind TLS the broker's certificate names the clinic's host name, not loopback: the daemon
    // talks to its own broker inside the process instead.
    const streamBuilder = embedded && config.mqtt.embedded.tls ? () => embedded.connectInProcess() : undefined;
    this.mqtt = new MqttConnection(
      {
        url,
        clientId: config.mqtt.client_id ?? `poctd-${config.site}-${hostname()}`.slice(0, 64),
        username,
        password,
        ca: config.mqtt.ca,
        cert: config.mqtt.cert,
        key: config.mqtt.key,
        rejectUnauthorized: config.mqtt.reject_unauthorized,
        keepaliveS: config.mqtt.keepalive_s,
        reconnectMs: config.mqtt.reconnect_ms,
        will: { topic: topics.bridge('state'), payload: JSON.stringify({ state: 'offline' }) },
        ...(streamBuilder ? { streamBuilder } : {}),
      },
      log.child({ component: 'mqtt' }),
    );
    const services: Services = {
      config,
      bus: this.bus,
      store: this.store,
      writer: this.writer,
      mqtt: this.mqtt,
      topics,
      log,
      drivers: options.drivers,
      stats: new Stats(),
      now,
      transportExtras: options.transportExtras,
      reloadConfig: options.reloadConfig,
      configFileStatus: options.configFileStatus,
    };
    this.services = services;
    const mqtt = this.mqtt;
    let lastMqttError = '';
    mqtt.on('connect', ({ reconnect }: { reconnect: boolean }) => {
      lastMqttError = '';
      mqtt.subscribe(topics.requestFilters()).catch((error: Error) => log.warn({ err: error.message }, 'subscribe failed'));
      this.bus.emit('mqttConnected', { reconnect });
    });
    mqtt.on('message', (topic: string, payload: Buffer, retained: boolean) => {
      // A retained request would run again at every reconnect (and print a label twice): a
      // request is a command for now, so only live messages count.
      if (retained) {
        log.warn({ topic }, 'ignoring a retained request; publish requests without the retain flag');
        this.refuseRetained(topic, payload);
        return;
      }
      this.bus.emit('mqttMessage', { topic, payload });
    });
    mqtt.on('error', (error: Error) => {
      services.stats.errors++;
      // Reported once per distinct reason: a broker refusing credentials would otherwise flood.
      if (error.message === lastMqttError) return;
      lastMqttError = error.message;
      this.bus.emit('bridgeEvent', makeEvent('mqtt_error', null, `MQTT: ${error.message}`, now()));
    });

    const deviceManager = new DeviceManager(services);
    services.commandEveryDevice = (verb, request) => deviceManager.commandEvery(verb, request);
    this.dashboard = new Dashboard(services, dashboardBroker, (origin, host) => sameOrigin(origin, host) || this.pageOriginAllowed(origin));
    this.extensions = [
      // First, so it is stopped last and logs the final totals.
      new ActivityLog(services),
      // Before the publisher and devices, so it counts from their first record.
      new Metrics(services),
      new Bridge(services),
      new RecordPublisher(services),
      deviceManager,
      new HotPlug(services, deviceManager, options.portLister),
      this.dashboard,
    ];
    mqtt.start();
    for (const extension of this.extensions) {
      await extension.start();
      log.debug({ extension: extension.name }, 'extension started');
    }
  }

  /**
   * Applies a config read again: devices added, removed or changed are started, stopped or
   * restarted, the others are not touched. Other settings (broker, store, site, privacy, …) are
   * kept as they run and named in `restart_needed`.
   */
  async applyConfig(next: PoctdConfig): Promise<ConfigReloadOutcome> {
    const manager = this.deviceManager;
    if (!this.services || !manager || this.stopping) throw new Error('poctd is not running');
    const running = this.services.config;
    const restartNeeded = (Object.keys(next) as Array<keyof PoctdConfig>).filter(
      (k) => k !== 'devices' && JSON.stringify(next[k]) !== JSON.stringify(running[k]),
    );
    const outcome = await manager.reloadDevices(next.devices);
    running.devices = next.devices;
    await this.extensions.find((e): e is Bridge => e instanceof Bridge)?.publishInfo();
    return { ...outcome, restart_needed: restartNeeded };
  }

  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  /**
   * A retained request is never run (it would run again at every reconnect and print a label
   * twice); its sender is told so on the verb's response topic, with its transaction.
   */
  private refuseRetained(topic: string, payload: Buffer): void {
    const topics = this.services?.topics;
    const parsed = topics?.parseRequest(topic);
    if (!topics || !parsed || !this.mqtt) return;
    let transaction: string | number | undefined;
    try {
      transaction = echoableTransaction(parseRequestPayload(payload).transaction);
    } catch {
      // Not even JSON: the refusal goes out without a transaction.
    }
    const responseTopic = parsed.target === 'bridge' ? topics.bridgeResponse(parsed.verb) : topics.deviceResponse(parsed.device, parsed.verb);
    const response = {
      status: 'error',
      data: null,
      error: 'refused: the request was published with the retain flag (it would run again at every reconnect); publish it without',
      ...(transaction !== undefined ? { transaction } : {}),
    };
    this.mqtt.publish(responseTopic, response, { qos: 1, retain: false }).catch(() => undefined);
  }

  private async doStop(): Promise<void> {
    const log = this.options.log;
    for (const extension of this.extensions) if (extension instanceof ActivityLog) extension.stopping = true;
    for (const extension of [...this.extensions].reverse()) {
      await extension.stop().catch((error: Error) => log.warn({ extension: extension.name, err: error.message }, 'stop failed'));
    }
    await this.mqtt?.stop();
    // PUBACKs that arrived while the connection closed are still worth writing down.
    await this.extensions.find((e): e is RecordPublisher => e instanceof RecordPublisher)?.flushAcked();
    await this.broker?.stop();
    await this.writer?.close().catch((error: Error) => log.error({ err: error.message }, 'store writer did not close cleanly'));
    this.store?.close();
    log.info('stopped');
  }

  /** A browser page may open the broker's WebSocket from the daemon's own page or a configured origin. */
  private pageOriginAllowed(origin: string): boolean {
    return (this.config.http?.allowed_origins ?? []).includes(origin) || this.pageOrigins().includes(origin);
  }

  /** Where the daemon's own page is served (none until its HTTP server listens). */
  private pageOrigins(): string[] {
    return this.dashboard?.origins() ?? [];
  }

  /** The Prometheus endpoint's URL once it listens (null when `metrics.port` is unset or 0). */
  get metricsUrl(): string | null {
    return this.extensions.find((e): e is Metrics => e instanceof Metrics)?.url ?? null;
  }

  /** The dashboard's URL once it listens (null when `http.port` is 0). */
  get dashboardUrl(): string | null {
    return this.dashboard?.url ?? null;
  }

  /** For tests and the CLI: the live services once started. */
  get runtime(): Services | undefined {
    return this.services;
  }
}
