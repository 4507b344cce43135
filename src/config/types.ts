import type { TransportOptions } from '../transports/transport.ts';

/** A configured device. `options` is driver-specific and validated by the driver. */
export interface DeviceConfig {
  id: string;
  driver: string;
  transport: TransportOptions;
  /** IANA zone of the device's naive local clock; defaults to the daemon's `timezone`. */
  timezone?: string;
  /** Seconds between automatic downloads; absent = only on connect and on request. */
  poll_interval?: number;
  enabled?: boolean;
  options?: Record<string, unknown>;
}

export interface EmbeddedBrokerConfig {
  host: string;
  port: number;
  /** WebSocket listener for browser dashboards; 0 disables it. */
  ws_port: number;
  username?: string;
  password?: string;
  /** PEM files (absolute paths): the TCP and WebSocket listeners speak TLS (mqtts://, wss://). */
  tls?: { cert: string; key: string };
}

export interface MqttConfig {
  /** Absent → the embedded broker is started and used. */
  url?: string;
  base_topic: string;
  client_id?: string;
  username?: string;
  password?: string;
  /** File paths for TLS (mqtts://). */
  ca?: string;
  cert?: string;
  key?: string;
  reject_unauthorized: boolean;
  keepalive_s: number;
  reconnect_ms: number;
  embedded: EmbeddedBrokerConfig;
}

export type PatientIdPolicy = 'publish' | 'hash' | 'omit';

/** Every field given must match; see `auto_detect.allow` in the config schema. */
export interface AutoDetectRule {
  driver?: string;
  /** `vvvv:pppp`, lowercase hex after loading. */
  usb?: string;
  serial?: string;
}

export interface AutoDetectConfig {
  interval_s: number;
  timezone?: string;
  poll_interval?: number;
  allow: AutoDetectRule[];
}

export type AccessRole = 'viewer' | 'clinician' | 'operator' | 'integration' | 'admin';

export interface AccessUser {
  name: string;
  roles: AccessRole[];
  /** `scrypt$N$r$p$salt$hash`. */
  hashed_password?: string;
  /** Plain, from `${ENV}`. */
  password?: string;
}

export interface AccessConfigSection {
  users?: AccessUser[];
  local_operator?: boolean;
}

export interface HttpConfig {
  port?: number;
  host?: string;
  base_path?: string;
  allowed_origins?: string[];
  broker_url?: string;
}

export interface PoctdConfig {
  site: string;
  /** Default zone for devices that keep naive local time. */
  timezone: string;
  mqtt: MqttConfig;
  store: {
    path: string;
    /** The WAL is truncated by a checkpoint past this size (default 64 MB; 0: never). */
    wal_max_mb?: number;
    /** What is pruned (src/store/retention.ts); unset: everything is kept. */
    retention?: { max_age_days?: number; max_records?: number; quarantine_max_age_days?: number };
  };
  privacy: { patient_id: PatientIdPolicy; hash_key?: string };
  log: {
    level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
    /** stdout format (default json); `pretty` needs the optional pino-pretty. */
    format?: 'json' | 'pretty';
    /** Also JSON lines to this file, rotated (src/logger.ts). */
    file?: { path: string; size?: string | number; frequency?: 'daily' | 'hourly'; count?: number };
  };
  health_interval_s: number;
  devices: DeviceConfig[];
  auto_detect: AutoDetectConfig;
  /** Users and roles (see src/mqtt/access.ts); absent = no users. */
  access?: AccessConfigSection;
  /** The dashboard's HTTP server; absent = defaults (127.0.0.1:8080, `/`). */
  http?: HttpConfig;
  /** The Prometheus endpoint; absent or `port: 0`: off. */
  metrics?: { port?: number; host?: string };
}
