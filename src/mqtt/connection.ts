import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import mqtt, { MqttClient, type IClientOptions, type IStream } from 'mqtt';
import type { Logger } from 'pino';
import { readTlsFile } from './tls-files.ts';

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
  /** A connection made in the process (the embedded broker's), instead of dialling `url`. */
  streamBuilder?: () => Duplex;
}

export interface PublishOptions {
  qos: 0 | 1;
  retain: boolean;
}

/**
 * mqtt.js behind a small surface: JSON publish that resolves on PUBACK, reconnect forever,
 * a Last Will, TLS from files. Emits `connect` ({reconnect}), `close`, `message` (topic, Buffer, retained),
 * and `error` (Error) — never throws out of the client's callbacks.
 */
export class MqttConnection extends EventEmitter {
  private client: MqttClient | undefined;
  private everConnected = false;
  /** Error messages already logged at warn since the last successful connect. */
  private readonly warned = new Set<string>();
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
      // mqtt.js gives up for good after a refused CONNACK (bad credentials, not authorized, server
      // unavailable) unless told otherwise. The broker's side is often what gets fixed (a password
      // file reloaded, an ACL added): keep trying, so stored records still reach it (design rule 2).
      reconnectOnConnackError: true,
      // mqtt-packet (shared with the embedded broker) otherwise fills a table of 65 536 two-byte
      // Buffers at the first packet it writes: 6 MB of heap held for ever, to save allocating
      // two bytes per packet id.
      writeCache: false,
      rejectUnauthorized: o.rejectUnauthorized,
      ca: o.ca ? readTlsFile('mqtt.ca', o.ca) : undefined,
      cert: o.cert ? readTlsFile('mqtt.cert', o.cert) : undefined,
      key: o.key ? readTlsFile('mqtt.key', o.key) : undefined,
      will: { topic: o.will.topic, payload: Buffer.from(o.will.payload), qos: 1, retain: true },
    };
    const build = o.streamBuilder;
    const client = build ? new MqttClient(() => build() as unknown as IStream, clientOptions) : mqtt.connect(o.url, clientOptions);
    this.client = client;
    client.on('connect', () => {
      const reconnect = this.everConnected;
      if (reconnect) this.reconnects++;
      this.everConnected = true;
      this.warned.clear();
      this.log.info({ url: redactUrl(o.url), reconnect }, 'connected to MQTT broker');
      this.emit('connect', { reconnect });
    });
    client.on('close', () => this.emit('close'));
    client.on('error', (error) => {
      // A broker that keeps refusing would otherwise add a warning every reconnect period: warn
      // once per distinct reason until the next successful connect, then only at debug.
      const fields = { url: redactUrl(o.url), err: error.message, code: (error as { code?: unknown }).code };
      if (this.warned.has(error.message)) {
        this.log.debug(fields, 'MQTT error (again)');
      } else {
        if (this.warned.size >= 32) this.warned.clear(); // messages that vary must not grow it for ever
        this.warned.add(error.message);
        this.log.warn(fields, 'MQTT error');
      }
      this.emit('error', error);
    });
    client.on('message', (topic, payload, packet) => this.emit('message', topic, payload, packet.retain));
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

  /**
   * Disconnects. Connected, it lets in-flight QoS 1 publishes be acknowledged for up to
   * `graceMs`, then closes anyway. Not connected, it closes at once: mqtt.js's graceful end waits
   * for every unacknowledged publish, which never comes while the broker is away, and the daemon
   * would hang on SIGTERM. Nothing is lost by closing: results leave the outbox only on PUBACK.
   */
  async stop(graceMs = 2000): Promise<void> {
    const client = this.client;
    if (!client) return;
    this.client = undefined;
    if (!client.connected) {
      await client.endAsync(true).catch(() => undefined);
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const ended = await Promise.race([
      client.endAsync(false).then(
        () => true,
        () => true,
      ),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs))),
    ]);
    clearTimeout(timer);
    if (!ended) {
      this.log.warn({ url: redactUrl(this.options.url) }, 'MQTT broker did not acknowledge in time; closing the connection');
      // end() is already under way (a second end() is a no-op): close its socket, which leaves
      // the client with no timer and no handle.
      client.stream?.destroy();
    }
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
