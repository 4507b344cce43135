/**
 * The MQTT API in one place: every topic the daemon publishes or listens to, with its payload type.
 * The daemon, the tests and any dashboard import this map instead of spelling topics by hand.
 */
import type { Availability, BridgeEvent, DeviceState, ResultRecord } from '../records/types.ts';

export interface BridgeInfo {
  version: string;
  site: string;
  drivers: Array<{ id: string; kind: string; vendor: string; models: string[] }>;
  schemas: string[];
  /** The running config with secrets replaced by `***`. */
  config: unknown;
}

export interface BridgeDeviceEntry {
  id: string;
  driver: string;
  vendor: string;
  model: string | null;
  serial: string | null;
  transport: string;
  availability: Availability;
}

export interface BridgeHealth {
  at: string;
  uptime_s: number;
  memory: { rss_bytes: number; heap_used_bytes: number };
  outbox_depth: number;
  records: { stored: number; published: number; duplicates: number };
  errors: number;
  mqtt: { connected: boolean; reconnects: number };
}

export interface Request {
  transaction?: string | number;
  [key: string]: unknown;
}

export interface Response {
  status: 'ok' | 'error';
  data: unknown;
  error: string | null;
  transaction?: string | number;
}

/** Payload type by topic pattern, relative to the base topic. `+` stands for a device id or a verb. */
export interface TopicPayloads {
  'bridge/state': { state: Availability };
  'bridge/info': BridgeInfo;
  'bridge/devices': BridgeDeviceEntry[];
  'bridge/health': BridgeHealth;
  'bridge/event': BridgeEvent;
  'bridge/request/+': Request;
  'bridge/response/+': Response;
  'device/+': DeviceState;
  'device/+/availability': { state: Availability };
  'device/+/result': ResultRecord;
  'device/+/request/+': Request;
  'device/+/response/+': Response;
}

/** Builds full topic names; the only place that knows the layout. */
export class Topics {
  constructor(readonly base: string) {}

  bridge(name: 'state' | 'info' | 'devices' | 'health' | 'event'): string {
    return `${this.base}/bridge/${name}`;
  }
  bridgeRequest(verb: string): string {
    return `${this.base}/bridge/request/${verb}`;
  }
  bridgeResponse(verb: string): string {
    return `${this.base}/bridge/response/${verb}`;
  }
  device(id: string): string {
    return `${this.base}/device/${id}`;
  }
  availability(id: string): string {
    return `${this.base}/device/${id}/availability`;
  }
  result(id: string): string {
    return `${this.base}/device/${id}/result`;
  }
  deviceRequest(id: string, verb: string): string {
    return `${this.base}/device/${id}/request/${verb}`;
  }
  deviceResponse(id: string, verb: string): string {
    return `${this.base}/device/${id}/response/${verb}`;
  }
  /** Subscriptions the daemon needs for requests (bridge and device). */
  requestFilters(): string[] {
    return [`${this.base}/bridge/request/#`, `${this.base}/device/+/request/#`];
  }

  /** Splits an incoming request topic into who it is for and the verb (which may contain `/`). */
  parseRequest(topic: string): { target: 'bridge'; verb: string } | { target: 'device'; device: string; verb: string } | null {
    const bridgePrefix = `${this.base}/bridge/request/`;
    if (topic.startsWith(bridgePrefix)) {
      const verb = topic.slice(bridgePrefix.length);
      return verb ? { target: 'bridge', verb } : null;
    }
    const devicePrefix = `${this.base}/device/`;
    if (!topic.startsWith(devicePrefix)) return null;
    const rest = topic.slice(devicePrefix.length);
    const m = /^([^/]+)\/request\/(.+)$/.exec(rest);
    return m ? { target: 'device', device: m[1]!, verb: m[2]! } : null;
  }
}
