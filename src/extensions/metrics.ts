/**
 * The Prometheus endpoint (`metrics.port`, opt-in; 127.0.0.1 unless `metrics.host` says
 * otherwise): what a clinic's monitoring needs to see that results flow, and nothing of a result.
 * Labels are device ids (the config's names), record kind names, availability and bridge event
 * types; no record content, patient id, specimen id or value ever becomes a label.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { BridgeEventType } from '../records/types.ts';
import { listenOn } from '../util/listen.ts';
import type { Extension, Services } from './extension.ts';

/** The bridge events that are errors, counted by type in `poctd_errors_total`. */
export const ERROR_EVENT_TYPES: ReadonlySet<BridgeEventType> = new Set([
  'download_failed',
  'bad_frame',
  'no_answer',
  'port_missing',
  'mqtt_error',
  'config_error',
  'device_error',
  'listener_refused',
]);

/** Commit latency buckets (seconds): a synced group commit is milliseconds; a slow disk shows at the top. */
const COMMIT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export class Metrics implements Extension {
  readonly name = 'metrics';
  /** Made at start, when the endpoint is on: prom-client is loaded only then. */
  private registry: Registry | undefined;
  private server: Server | undefined;
  private readonly unsubscribe: Array<() => void> = [];

  constructor(private readonly s: Services) {}

  /** Where the endpoint listens (`http://127.0.0.1:9464/metrics`), once started; null when off. */
  get url(): string | null {
    const address = this.server?.address() as AddressInfo | null | undefined;
    if (!address) return null;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return `http://${host}:${address.port}/metrics`;
  }

  async start(): Promise<void> {
    const settings = this.s.config.metrics;
    if (!settings?.port) return;
    const { bus, store, mqtt, stats } = this.s;
    const { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } = await import('prom-client');
    const registry = new Registry();
    this.registry = registry;
    const registers = [registry];
    collectDefaultMetrics({ register: registry, prefix: 'poctd_' });
    const stored = new Counter({ name: 'poctd_records_stored_total', help: 'Records stored, by device and record kind.', labelNames: ['device', 'kind'], registers });
    const duplicates = new Counter({
      name: 'poctd_records_duplicate_total',
      help: 'Records a device sent again that were stored already (not stored twice), by device and record kind.',
      labelNames: ['device', 'kind'],
      registers,
    });
    const published = new Counter({
      name: 'poctd_records_published_total',
      help: 'Stored records the broker acknowledged, by device and record kind.',
      labelNames: ['device', 'kind'],
      registers,
    });
    const commits = new Histogram({
      name: 'poctd_commit_seconds',
      help: 'Time from a session handing over its records to their commit being durable (writer thread, synced).',
      labelNames: ['device'],
      buckets: COMMIT_BUCKETS,
      registers,
    });
    const errors = new Counter({ name: 'poctd_errors_total', help: 'Errors reported on bridge/event, by event type.', labelNames: ['type'], registers });
    const available = new Gauge({ name: 'poctd_device_available', help: 'Device availability as published (1 online, 0 offline).', labelNames: ['device'], registers });
    new Gauge({
      name: 'poctd_outbox_depth',
      help: 'Stored records not yet acknowledged by the broker.',
      registers,
      collect() {
        this.set(store.outboxDepth());
      },
    });
    const now = this.s.now;
    new Gauge({
      name: 'poctd_outbox_oldest_age_seconds',
      help: 'Age of the oldest record waiting in the outbox (0 when it is empty).',
      registers,
      collect() {
        const at = store.oldestUnpublishedAt();
        this.set(at === null ? 0 : Math.max(0, (now().getTime() - Date.parse(at)) / 1000));
      },
    });
    new Gauge({
      name: 'poctd_mqtt_connected',
      help: 'Whether the daemon is connected to its MQTT broker (1) or not (0).',
      registers,
      collect() {
        this.set(mqtt.connected ? 1 : 0);
      },
    });
    new Gauge({
      name: 'poctd_internal_errors',
      help: 'Errors counted since start, reported or not on bridge/event (bridge/health `errors`).',
      registers,
      collect() {
        this.set(stats.errors);
      },
    });
    for (const device of this.s.config.devices) if (device.enabled !== false) available.set({ device: device.id }, 0);

    this.unsubscribe.push(
      bus.on('recordsCommitted', ({ deviceId, stored: byKind, duplicates: dupByKind, seconds }) => {
        for (const [kind, n] of Object.entries(byKind)) stored.inc({ device: deviceId, kind }, n);
        for (const [kind, n] of Object.entries(dupByKind)) duplicates.inc({ device: deviceId, kind }, n);
        commits.observe({ device: deviceId }, seconds);
      }),
      bus.on('recordPublished', ({ deviceId, kind }) => published.inc({ device: deviceId, kind })),
      bus.on('deviceAvailability', ({ deviceId, state }) => available.set({ device: deviceId }, state === 'online' ? 1 : 0)),
      bus.on('bridgeEvent', (e) => {
        if (ERROR_EVENT_TYPES.has(e.type)) errors.inc({ type: e.type });
        if (e.type === 'device_removed' && e.device) available.remove({ device: e.device });
      }),
    );

    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      if (path !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('poctd: metrics are at /metrics\n');
        return;
      }
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
        (error: Error) => {
          this.s.log.warn({ err: error.message }, 'metrics: could not collect');
          res.writeHead(500, { 'content-type': 'text/plain' }).end('poctd: could not collect the metrics\n');
        },
      );
    });
    server.on('connection', (socket) => socket.setNoDelay(true));
    this.server = server;
    await listenOn(server, settings.port, settings.host ?? '127.0.0.1');
    this.s.log.info({ url: this.url }, 'Prometheus metrics listening');
  }

  async stop(): Promise<void> {
    this.unsubscribe.forEach((u) => u());
    this.unsubscribe.length = 0;
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    this.registry?.clear();
  }
}
