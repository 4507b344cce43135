import mqtt, { type MqttClient } from 'mqtt';
import { onTestFinished } from 'vitest';
import { topicSchema } from '../../src/mqtt/topics.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import type { BridgeEvent } from '../../src/records/types.ts';

export { eventually } from './eventually.ts';

export interface Received {
  topic: string;
  payload: unknown;
  retain: boolean;
}

/** The base topic the tests' daemons publish under. */
const BASE = 'poct/';

/**
 * A dashboard-like subscriber on a real broker that keeps everything it hears, parsed as JSON,
 * and lets a test wait for a condition on it.
 *
 * Every message on a topic of the API (`TopicPayloads`) is checked against its topic's schema
 * (`TOPIC_SCHEMAS`); a message under the base on a topic that has none is a violation too. A
 * payload that breaks it is a failure of the test that received it: it is
 * kept in `violations`, every wait fails at once naming it, the test that connected the
 * subscriber fails when it ends, and `close()` throws it (for a subscriber a whole file shares).
 */
export class Subscriber {
  readonly messages: Received[] = [];
  /** Messages whose payload broke their topic's schema, with the problems. */
  readonly violations: Array<{ topic: string; schema: string; problems: string[] }> = [];
  private waiters: Array<() => void> = [];

  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload, packet) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(payload.toString());
      } catch {
        parsed = payload.toString();
      }
      this.check(topic, parsed);
      this.messages.push({ topic, payload: parsed, retain: packet.retain });
      this.waiters.forEach((w) => w());
    });
  }

  private check(topic: string, payload: unknown): void {
    if (!topic.startsWith(BASE)) return;
    const known = topicSchema(topic.slice(BASE.length));
    if (!known) {
      // A topic published without a schema is a gap in the API's contract, not something to skip.
      this.violations.push({ topic, schema: '(none)', problems: ['a topic with no schema in TOPIC_SCHEMAS'] });
      return;
    }
    // What the daemon only listens to (requests, which the tests themselves publish).
    if (known.schema === null) return;
    const schema = known.schema;
    // A payload that is empty (a retained message being cleared) is no message at all.
    if (payload === '') return;
    const problems = schemaProblems(schema, payload);
    if (problems.length > 0) this.violations.push({ topic, schema, problems });
  }

  /** The schema violations so far as one message, or undefined when there is none. */
  private violationReport(): string | undefined {
    if (this.violations.length === 0) return undefined;
    const lines = this.violations.slice(0, 5).map((v) => `${v.topic} breaks ${v.schema}: ${v.problems.join('; ')}`);
    const more = this.violations.length > 5 ? `\n… and ${this.violations.length - 5} more` : '';
    return `${this.violations.length} payload(s) broke their topic's schema:\n${lines.join('\n')}${more}`;
  }

  static async connect(url: string, filters: string[] = ['poct/#'], options: mqtt.IClientOptions = {}): Promise<Subscriber> {
    const client = await mqtt.connectAsync(url, { reconnectPeriod: 200, ...options });
    const subscriber = new Subscriber(client);
    try {
      onTestFinished(() => {
        const broken = subscriber.violationReport();
        if (broken) throw new Error(broken);
      });
    } catch {
      // Connected outside a test (beforeAll): the waits and close() report instead.
    }
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
    const broken = this.violationReport();
    if (broken) return Promise.reject(new Error(`while waiting for ${what}: ${broken}`));
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const report = this.violationReport();
        if (report) {
          cleanup();
          reject(new Error(`while waiting for ${what}: ${report}`));
          return;
        }
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
    // The body's own transaction when it names one (a test of repeats sends one twice), else a fresh one.
    const transaction = typeof body.transaction === 'string' || typeof body.transaction === 'number' ? body.transaction : `t-${Math.random().toString(36).slice(2)}`;
    await this.client.subscribeAsync(responseTopic, { qos: 1 });
    const answers = (): Received[] => this.on(responseTopic).filter((m) => (m.payload as { transaction?: unknown }).transaction === transaction);
    const before = answers().length;
    await this.client.publishAsync(requestTopic, JSON.stringify({ ...body, transaction }), { qos: 1 });
    await this.waitFor(`response on ${responseTopic}`, () => answers().length > before, timeoutMs);
    return answers()[before]!.payload as T;
  }

  /** Disconnects; then throws if any payload broke its topic's schema. */
  async close(): Promise<void> {
    await this.client.endAsync(true);
    const broken = this.violationReport();
    if (broken) throw new Error(broken);
  }
}
