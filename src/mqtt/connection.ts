import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';

export interface ConnectionOptions {
  url: string;
  clientId: string;
  username?: string;
  password?: string;
  ca?: string;
  cert?: string;
  key?: string;
  rejectUnauthorized: boolean;
  keepaliveS: number;
  reconnectMs: number;
  will: { topic: string; payload: string };
}

export interface PublishOptions {
  qos: 0 | 1;
  retain: boolean;
}

/**
 * mqtt.js behind a small surface: JSON publish that resolves on PUBACK, reconnect forever,
 * a Last Will, TLS from files. Emits `connect` ({reconnect}), `close`, `message` (topic, Buffer),
 * and `error` (Error) — never throws out of the client's callbacks.
 */
export class MqttConnection extends EventEmitter {
  private client: MqttClient | undefined;
  private everConnected = false;
  reconnects = 0;

  constructor(
    private readonly options: ConnectionOptions,
    private readonly log: Logger,
  ) {
    super();
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  start(): void {
    const o = this.options;
    const clientOptions: IClientOptions = {
      clientId: o.clientId,
      username: o.username,
      password: o.password,
      keepalive: o.keepaliveS,
      reconnectPeriod: o.reconnectMs,
      connectTimeout: 10_000,
      clean: true,
      // Results are queued by our own outbox, retained state is re-sent on connect: mqtt.js must
      // not keep a second, unbounded offline queue.
      queueQoSZero: false,
      rejectUnauthorized: o.rejectUnauthorized,
      ca: o.ca ? readFileSync(o.ca) : undefined,
      cert: o.cert ? readFileSync(o.cert) : undefined,
      key: o.key ? readFileSync(o.key) : undefined,
      will: { topic: o.will.topic, payload: Buffer.from(o.will.payload), qos: 1, retain: true },
    };
    const client = mqtt.connect(o.url, clientOptions);
    this.client = client;
    client.on('connect', () => {
      const reconnect = this.everConnected;
      if (reconnect) this.reconnects++;
      this.everConnected = true;
      this.log.info({ url: redactUrl(o.url), reconnect }, 'connected to MQTT broker');
      this.emit('connect', { reconnect });
    });
    client.on('close', () => this.emit('close'));
    client.on('error', (error) => {
      this.log.warn({ url: redactUrl(o.url), err: error.message }, 'MQTT error');
      this.emit('error', error);
    });
    client.on('message', (topic, payload) => this.emit('message', topic, payload));
    // TCP no-delay on the broker link, as for every socket the daemon opens.
    client.on('connect', () => {
      const stream = (client as unknown as { stream?: { setNoDelay?: (v: boolean) => void } }).stream;
      stream?.setNoDelay?.(true);
    });
  }

  /** Resolves when the broker acknowledged (QoS 1) or the packet was written (QoS 0). */
  publish(topic: string, payload: unknown, options: PublishOptions): Promise<void> {
    const client = this.client;
    if (!client) return Promise.reject(new Error('MQTT connection not started'));
    const body = typeof payload === 'string' ? payload : JSON.stringify(payload);
    return new Promise((resolve, reject) => {
      client.publish(topic, body, { qos: options.qos, retain: options.retain }, (error) => (error ? reject(error) : resolve()));
    });
  }

  async subscribe(filters: string[]): Promise<void> {
    const client = this.client;
    if (!client) throw new Error('MQTT connection not started');
    await client.subscribeAsync(filters, { qos: 1 });
  }

  /** Waits up to `timeoutMs` for a first connection. */
  waitConnected(timeoutMs: number): Promise<boolean> {
    if (this.connected) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.off('connect', onConnect);
        resolve(false);
      }, timeoutMs);
      const onConnect = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.once('connect', onConnect);
    });
  }

  async stop(): Promise<void> {
    const client = this.client;
    if (!client) return;
    this.client = undefined;
    await client.endAsync(false).catch(() => undefined);
  }
}

/** Never log credentials that a URL may carry. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}
