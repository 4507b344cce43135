import type { Logger } from 'pino';
import type { PoctdConfig } from '../config/types.ts';
import type { DriverDefinition } from '../driver-sdk/index.ts';
import type { EventBus } from '../event-bus.ts';
import type { MqttConnection } from '../mqtt/connection.ts';
import type { Topics } from '../mqtt/topics.ts';
import type { Store } from '../store/store.ts';
import type { StoreWriter } from '../store/writer.ts';
import type { HidTransportExtras } from '../transports/hid.ts';

/** Counters behind `bridge/health`. */
export class Stats {
  readonly startedAt = Date.now();
  stored = 0;
  published = 0;
  duplicates = 0;
  errors = 0;
}

import type { ConfigFileStatus } from '../mqtt/topics.ts';

/** What a config reload did: devices started, stopped, restarted; changed settings that need a restart. */
export interface ConfigReloadOutcome {
  added: string[];
  removed: string[];
  restarted: string[];
  unchanged: number;
  /** Top-level settings that differ from the running ones and apply only at the next start. */
  restart_needed: string[];
}

/** One device's answer to a command the bridge fanned out. */
export interface DeviceCommandOutcome {
  device: string;
  status: 'ok' | 'error';
  data: unknown;
  error: string | null;
}

/** Everything an extension may use, handed over by the controller. */
export interface Services {
  config: PoctdConfig;
  bus: EventBus;
  /** Reads (the main thread's connection). */
  store: Store;
  /** Every write, on the writer thread. */
  writer: StoreWriter;
  mqtt: MqttConnection;
  topics: Topics;
  log: Logger;
  drivers: readonly DriverDefinition[];
  stats: Stats;
  now: () => Date;
  /**
   * Reads the config file again and applies it (`bridge/request/config/reload`, SIGHUP); absent
   * when the daemon runs without a config file.
   */
  reloadConfig?: (() => Promise<ConfigReloadOutcome>) | undefined;
  /**
   * Runs one device command on every running device whose driver declares it (a bridge request
   * such as `operators/sync` fans out this way), each as a device request of its own: params
   * checked against the command's schema, audited, run once per transaction. Set by the controller
   * once the device manager exists.
   */
  commandEveryDevice?: ((verb: string, request: Record<string, unknown>) => Promise<DeviceCommandOutcome[]>) | undefined;
  /** Whether the running config is what its file says now (for `bridge/info`); absent without a file. */
  configFileStatus?: (() => ConfigFileStatus) | undefined;
  /** Transport overrides (tests inject an HID opener here); absent in production. */
  transportExtras?: { hid?: HidTransportExtras } | undefined;
}

/**
 * A piece of the daemon with a lifecycle. Constructors only store their collaborators; all work,
 * subscriptions and timers begin in `start()` and end in `stop()`.
 */
export interface Extension {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}
