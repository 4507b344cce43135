/**
 * The MQTT API in one place: every topic the daemon publishes or listens to, with its payload type.
 * The daemon, the tests and any dashboard import this map instead of spelling topics by hand.
 */
import { RECORD_KIND_NAMES, RECORD_KINDS } from '../records/kinds.ts';
import {
  AVAILABILITY_SCHEMA,
  BRIDGE_DEVICES_SCHEMA,
  BRIDGE_HEALTH_SCHEMA,
  BRIDGE_INFO_SCHEMA,
  RESPONSE_SCHEMA,
} from '../records/schemas.ts';
import { DEVICE_STATE_SCHEMA, EVENT_SCHEMA, type Availability, type BridgeEvent, type DeviceState, type PrintJobRecord, type ResultRecord, type StudyRecord } from '../records/types.ts';

export interface BridgeInfo {
  version: string;
  site: string;
  drivers: Array<{ id: string; kind: string; vendor: string; models: string[] }>;
  schemas: string[];
  /** The running config with secrets replaced by `***`. */
  config: unknown;
  /** The config file the daemon runs from, and whether the running config still is what it says. */
  config_file?: ConfigFileStatus;
}

export interface ConfigFileStatus {
  path: string;
  /** The file no longer loads, or says something else than what runs (edited, not reloaded; or a setting that needs a restart). */
  differs: boolean;
  detail: string;
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
  'device/+/job': PrintJobRecord;
  'device/+/study': StudyRecord;
  'device/+/request/+': Request;
  'device/+/response/+': Response;
}

/** Record topics and their schemas, from the kind table: a new kind's topic is here without an edit. */
const RECORD_TOPIC_SCHEMAS: Readonly<Record<string, string>> = Object.fromEntries(
  RECORD_KIND_NAMES.map((name) => [`device/+/${RECORD_KINDS[name].topic}`, RECORD_KINDS[name].schema]),
);

/**
 * The schema of each topic's payload (`schemas/`), by the same patterns as `TopicPayloads`; null
 * for what the daemon only listens to.
 */
export const TOPIC_SCHEMAS: Readonly<Record<string, string | null>> = {
  ...({
    'bridge/state': AVAILABILITY_SCHEMA,
    'bridge/info': BRIDGE_INFO_SCHEMA,
    'bridge/devices': BRIDGE_DEVICES_SCHEMA,
    'bridge/health': BRIDGE_HEALTH_SCHEMA,
    'bridge/event': EVENT_SCHEMA,
    'bridge/request/+': null,
    'bridge/response/+': RESPONSE_SCHEMA,
    'device/+': DEVICE_STATE_SCHEMA,
    'device/+/availability': AVAILABILITY_SCHEMA,
    'device/+/request/+': null,
    'device/+/response/+': RESPONSE_SCHEMA,
  } satisfies Record<Exclude<keyof TopicPayloads, RecordTopicPattern>, string | null>),
  ...RECORD_TOPIC_SCHEMAS,
};

/** The record kinds' entries of `TopicPayloads` (their schemas come from the kind table). */
type RecordTopicPattern = 'device/+/result' | 'device/+/job' | 'device/+/study';

/** A pattern as a regular expression: `+` is one level, but a verb (after request/ or response/) may have several. */
function patternRegExp(pattern: string): RegExp {
  const levels = pattern.split('/');
  const body = levels
    .map((level, i) => {
      if (level !== '+') return level.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      return levels[i - 1] === 'request' || levels[i - 1] === 'response' ? '.+' : '[^/]+';
    })
    .join('/');
  return new RegExp(`^${body}$`);
}

const TOPIC_PATTERNS = Object.keys(TOPIC_SCHEMAS).map((pattern) => ({ pattern, re: patternRegExp(pattern) }));

/**
 * The pattern and schema of a topic relative to the base (`device/m1/result`); undefined for a
 * topic that is not part of the API.
 */
export function topicSchema(relativeTopic: string): { pattern: string; schema: string | null } | undefined {
  const hit = TOPIC_PATTERNS.find(({ re }) => re.test(relativeTopic));
  return hit ? { pattern: hit.pattern, schema: TOPIC_SCHEMAS[hit.pattern] ?? null } : undefined;
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
  /** Where a device's records of one kind go: `device/<id>/<kind's topic>`. */
  record(id: string, kindTopic: string): string {
    return `${this.base}/device/${id}/${kindTopic}`;
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
