import mqtt, { type MqttClient } from 'mqtt';
import type { BridgeEvent } from '../../src/records/types.ts';

export { eventually } from './eventually.ts';

export interface Received {
  topic: string;
  payload: unknown;
  retain: boolean;
}

/**
 * A dashboard-like subscriber on a real broker that keeps everything it hears, parsed as JSON,
 * and lets a test wait for a condition on it.
 */
export class Subscriber {
  readonly messages: Received[] = [];
  private waiters: Array<() => void> = [];

  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload, packet) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(payload.toString());
      } catch {
        parsed = payload.toString();
      }
      this.messages.push({ topic, payload: parsed, retain: packet.retain });
      this.waiters.forEach((w) => w());
    });
  }

  static async connect(url: string, filters: string[] = ['poct/#'], options: mqtt.IClientOptions = {}): Promise<Subscriber> {
    const client = await mqtt.connectAsync(url, { reconnectPeriod: 200, ...options });
    const subscriber = new Subscriber(client);
    await client.subscribeAsync(filters, { qos: 1 });
    return subscriber;
  }

  on(topic: string): Received[] {
    return this.messages.filter((m) => m.topic === topic);
  }

  payloads<T>(topic: string): T[] {
    return this.on(topic).map((m) => m.payload as T);
  }

  last<T>(topic: string): T | undefined {
    return this.on(topic).at(-1)?.payload as T | undefined;
  }

  /** The daemon's events (`bridge/event`) so far; only those about `device` when it is given. */
  events(device?: string): BridgeEvent[] {
    const all = this.payloads<BridgeEvent>('poct/bridge/event');
    return device === undefined ? all : all.filter((e) => e.device === device);
  }

  /** Resolves when `predicate` holds, rejects after `timeoutMs` with `what` in the message. */
  waitFor(what: string, predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!predicate()) return;
        cleanup();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
      };
      this.waiters.push(check);
    });
  }

  /** Publishes a request and waits for the response with the same transaction. */
  async request<T = { status: string; data: unknown; error: string | null; transaction?: unknown }>(
    requestTopic: string,
    responseTopic: string,
    body: Record<string, unknown>,
    timeoutMs = 10_000,
  ): Promise<T> {
    const transaction = `t-${Math.random().toString(36).slice(2)}`;
    await this.client.subscribeAsync(responseTopic, { qos: 1 });
    await this.client.publishAsync(requestTopic, JSON.stringify({ ...body, transaction }), { qos: 1 });
    const match = (): Received | undefined =>
      this.on(responseTopic).find((m) => (m.payload as { transaction?: unknown }).transaction === transaction);
    await this.waitFor(`response on ${responseTopic}`, () => match() !== undefined, timeoutMs);
    return match()!.payload as T;
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}
