import { redactConfig } from '../config/load.ts';
import type { BridgeEvent, BridgeEventType } from '../records/types.ts';
import { EVENT_SCHEMA } from '../records/types.ts';
import type { BridgeHealth, BridgeInfo, Request, Response } from '../mqtt/topics.ts';
import { kindBySchema } from '../records/kinds.ts';
import { SCHEMA_IDS } from '../records/schemas.ts';
import { VERSION } from '../version.ts';
import type { Extension, Services } from './extension.ts';

/** The parameters of each bridge verb that the audit keeps (numbers and booleans only). */
const BRIDGE_REQUEST_PARAMS: Readonly<Record<string, readonly string[]>> = {
  'results/replay': ['since_seq'],
  republish: [],
  health: [],
  info: [],
  // The operator list itself is never kept (names and passwords): only whether it was incremental.
  'operators/sync': ['incremental'],
};

/** Largest number of records one `results/replay` request republishes; the response says where to go on. */
const REPLAY_LIMIT = 5000;
/** How long a stop waits for the broker to acknowledge `bridge/state` offline. */
const OFFLINE_PUBLISH_WAIT_MS = 2000;
/** Events raised while the broker is unreachable (start-up, outages) wait for it, up to this many. */
const PENDING_EVENT_LIMIT = 200;

/**
 * The daemon's own topics: `bridge/state` (retained, and the Last Will), `bridge/info`,
 * `bridge/health` (periodic), `bridge/event`, and the `bridge/request/<verb>` API.
 */
export class Bridge implements Extension {
  readonly name = 'bridge';
  private healthTimer: NodeJS.Timeout | undefined;
  private pendingEvents: BridgeEvent[] = [];
  private readonly unsubscribe: Array<() => void> = [];

  constructor(private readonly s: Services) {}

  async start(): Promise<void> {
    const { bus } = this.s;
    this.unsubscribe.push(
      bus.on('mqttConnected', () => {
        void this.publishRetained().then(() => this.flushPendingEvents());
      }),
    );
    this.unsubscribe.push(bus.on('republish', () => void this.publishRetained()));
    this.unsubscribe.push(bus.on('bridgeEvent', (event) => void this.publishEvent(event)));
    this.unsubscribe.push(bus.on('mqttMessage', ({ topic, payload }) => void this.onMessage(topic, payload)));
    const intervalMs = this.s.config.health_interval_s * 1000;
    this.healthTimer = setInterval(() => void this.publishHealth(), intervalMs);
    this.healthTimer.unref();
    if (this.s.mqtt.connected) await this.publishRetained();
  }

  async stop(): Promise<void> {
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.unsubscribe.forEach((u) => u());
    if (this.s.mqtt.connected) {
      // A broker that stopped answering must not hold up the stop; its Last Will says offline.
      const published = this.s.mqtt
        .publish(this.s.topics.bridge('state'), { state: 'offline' }, { qos: 1, retain: true })
        .catch(() => undefined);
      await Promise.race([published, new Promise((r) => setTimeout(r, OFFLINE_PUBLISH_WAIT_MS).unref())]);
    }
  }

  info(): BridgeInfo {
    return {
      version: VERSION,
      site: this.s.config.site,
      drivers: this.s.drivers.map((d) => ({ id: d.id, kind: d.kind, vendor: d.vendor, models: d.models })),
      schemas: [...SCHEMA_IDS],
      config: redactConfig(this.s.config),
      ...(this.s.configFileStatus ? { config_file: this.s.configFileStatus() } : {}),
    };
  }

  /** `bridge/info` again (after a config reload). */
  async publishInfo(): Promise<void> {
    if (!this.s.mqtt.connected) return;
    await this.s.mqtt.publish(this.s.topics.bridge('info'), this.info(), { qos: 1, retain: true }).catch(() => undefined);
  }

  health(): BridgeHealth {
    const mem = process.memoryUsage();
    const { stats } = this.s;
    return {
      at: this.s.now().toISOString(),
      uptime_s: Math.round((Date.now() - stats.startedAt) / 1000),
      memory: { rss_bytes: mem.rss, heap_used_bytes: mem.heapUsed },
      outbox_depth: this.s.store.outboxDepth(),
      records: { stored: stats.stored, published: stats.published, duplicates: stats.duplicates },
      errors: stats.errors,
      mqtt: { connected: this.s.mqtt.connected, reconnects: this.s.mqtt.reconnects },
    };
  }

  private async publishRetained(): Promise<void> {
    const { mqtt, topics } = this.s;
    try {
      await mqtt.publish(topics.bridge('state'), { state: 'online' }, { qos: 1, retain: true });
      await mqtt.publish(topics.bridge('info'), this.info(), { qos: 1, retain: true });
      await this.publishHealth();
    } catch (error) {
      this.s.log.warn({ err: (error as Error).message }, 'could not publish bridge state');
    }
  }

  private async publishHealth(): Promise<void> {
    if (!this.s.mqtt.connected) return;
    try {
      await this.s.mqtt.publish(this.s.topics.bridge('health'), this.health(), { qos: 0, retain: true });
    } catch (error) {
      this.s.log.warn({ err: (error as Error).message }, 'could not publish health');
    }
  }

  private async publishEvent(event: BridgeEvent): Promise<void> {
    // While held events wait for the flush after a reconnect, a new one queues behind them: a
    // dashboard must not see a download finish before it started.
    if (!this.s.mqtt.connected || this.pendingEvents.length > 0) {
      if (this.pendingEvents.length >= PENDING_EVENT_LIMIT) {
        // A full queue drops its oldest device event: an event about the daemon itself (a broker
        // refusing our credentials, a config error) must not be pushed out by a chatty device.
        const routine = this.pendingEvents.findIndex((e) => e.device !== null);
        this.pendingEvents.splice(routine >= 0 ? routine : 0, 1);
      }
      this.pendingEvents.push(event);
      return;
    }
    await this.sendEvent(event);
  }

  private sendEvent(event: BridgeEvent): Promise<void> {
    return this.s.mqtt.publish(this.s.topics.bridge('event'), event, { qos: 0, retain: false }).catch(() => undefined);
  }

  /** Sends held events in order; stops if the broker goes away again (the next connect resumes). */
  private async flushPendingEvents(): Promise<void> {
    while (this.pendingEvents.length > 0 && this.s.mqtt.connected) {
      // publish() hands the packet to the client before it returns, so one shifted off here is on
      // the wire ahead of any event raised while this one is awaited.
      await this.sendEvent(this.pendingEvents.shift()!);
    }
  }

  private async onMessage(topic: string, payload: Buffer): Promise<void> {
    const parsed = this.s.topics.parseRequest(topic);
    if (!parsed || parsed.target !== 'bridge') return;
    const { verb } = parsed;
    let request: Request = {};
    let response: Response;
    try {
      request = parseRequestPayload(payload);
      // Refused before it runs, as a device request is: the answer must stay a poct.response/1.
      const problem = transactionRefusal(request.transaction);
      if (problem !== null) throw new Error(problem);
      response = { status: 'ok', data: await this.handle(verb, request), error: null };
    } catch (error) {
      response = { status: 'error', data: null, error: (error as Error).message };
    }
    // Only what the response schema can carry back is echoed (a string too long is, as the client's handle).
    const echoed = echoableTransaction(request.transaction);
    if (echoed !== undefined) response.transaction = echoed;
    await this.audit(verb, request, response);
    await this.s.mqtt
      .publish(this.s.topics.bridgeResponse(verb), response, { qos: 1, retain: false })
      .catch(() => undefined);
  }

  /**
   * Who asked the bridge what, and how it went (the answer's data is not kept: it is the store's
   * own records or state). `requested_by` is the broker's login name on the embedded broker.
   */
  private async audit(verb: string, request: Request, response: Response): Promise<void> {
    const known = BRIDGE_REQUEST_PARAMS[verb];
    const params = Object.fromEntries(
      Object.entries(request)
        .filter(([k]) => k !== 'transaction' && k !== 'requested_by')
        // Only the known verbs' own parameters, as they hold no patient data; nothing of the others.
        .map(([k, v]) => [k, known?.includes(k) && (typeof v === 'number' || typeof v === 'boolean') ? v : '[omitted]']),
    );
    const requestedBy = typeof request.requested_by === 'string' ? request.requested_by.slice(0, 200) : null;
    const tx = request.transaction;
    const transaction = (typeof tx === 'string' || typeof tx === 'number') && transactionRefusal(tx) === null ? tx : null;
    try {
      await this.s.writer.recordRequest(
        { device_id: null, verb, params, requested_by: requestedBy, transaction, response: { status: response.status, data: null, error: response.error } },
        this.s.now(),
      );
    } catch (error) {
      // The request is still answered: a store that cannot write stops the daemon by itself.
      this.s.log.error({ err: (error as Error).message, verb }, 'could not write the audit row');
    }
  }

  private async handle(verb: string, request: Request): Promise<unknown> {
    switch (verb) {
      case 'results/replay':
        return this.replayResults(request);
      case 'republish':
        this.s.bus.emit('republish', {});
        return { republished: true };
      case 'health':
        return this.health();
      case 'info':
        return this.info();
      case 'config/reload':
        if (!this.s.reloadConfig) throw new Error('config/reload: poctd runs on its built-in defaults (no --config file), so there is nothing to read again');
        return this.s.reloadConfig();
      case 'operators/sync':
        return this.everyDevice(verb, request);
      default:
        throw new Error(`unknown request "${verb}" (known: results/replay, republish, health, info, config/reload, operators/sync)`);
    }
  }

  /**
   * A device command sent to every device that takes it (`operators/sync`: the POCT1-A devices'
   * operator list), each as its own audited device request; the answer lists each device's outcome.
   */
  private async everyDevice(verb: string, request: Request): Promise<unknown> {
    if (!this.s.commandEveryDevice) throw new Error(`${verb}: no device manager is running`);
    const outcomes = await this.s.commandEveryDevice(verb, request);
    if (outcomes.length === 0) throw new Error(`${verb}: no running device takes this command`);
    return { devices: outcomes };
  }

  /**
   * Sends stored records again from `since_seq` on, in order, each to its kind's topic, for a
   * subscriber that missed them. A row whose schema no kind has is skipped, never sent elsewhere.
   */
  private async replayResults(request: Request): Promise<unknown> {
    const since = request.since_seq ?? 0;
    if (typeof since !== 'number' || !Number.isInteger(since) || since < 0) {
      throw new Error('since_seq: must be a non-negative integer');
    }
    const rows = this.s.store.recordRowsSince(since, REPLAY_LIMIT);
    let count = 0;
    await Promise.all(
      rows.map((row) => {
        const kind = kindBySchema(row.schema);
        if (!kind) return undefined;
        count++;
        return this.s.mqtt.publish(this.s.topics.record(row.device_id, kind.topic), row.json, { qos: 1, retain: false });
      }),
    );
    const last = rows.at(-1)?.seq ?? since;
    return { count, since_seq: since, last_seq: last, more: rows.length === REPLAY_LIMIT };
  }
}

/** Longest `transaction` a request may carry (the device manager keys its outcomes by it). */
export const MAX_TRANSACTION_CHARS = 200;

/** A request's `transaction`, when it is one that requests may be deduplicated by. */
export function validTransaction(value: unknown): string | number | undefined {
  if (typeof value === 'string' && value.length <= MAX_TRANSACTION_CHARS) return value;
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  return undefined;
}

/** What a response may repeat of a `transaction`: any string (a refused long one is still the client's handle) or a finite number. */
export function echoableTransaction(value: unknown): string | number | undefined {
  return typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value)) ? value : undefined;
}

/** Why a request's `transaction` is refused; null when it is absent, a string of at most 200 characters or a finite number. */
export function transactionRefusal(value: unknown): string | null {
  if (value === undefined || validTransaction(value) !== undefined) return null;
  if (typeof value === 'string') return `transaction: at most ${MAX_TRANSACTION_CHARS} characters`;
  if (typeof value === 'number') return 'transaction: must be a finite number';
  return 'transaction: must be a string or a number';
}

export function parseRequestPayload(payload: Buffer): Request {
  const text = payload.toString('utf8').trim();
  if (text === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error('request payload is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error('request payload must be a JSON object');
  }
  return value as Request;
}

export function makeEvent(
  type: BridgeEventType,
  device: string | null,
  message: string,
  at: Date,
  data?: Record<string, unknown>,
): BridgeEvent {
  return { schema: EVENT_SCHEMA, type, device, at: at.toISOString(), message, ...(data ? { data } : {}) };
}
