import { Socket } from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import { brokerWithSubscriber } from '../helpers/broker.ts';
import { startDaemon, testConfig, ULTRA2_MEMORY } from '../helpers/daemon.ts';
import { freePort } from '../helpers/mosquitto.ts';
import { eventually } from '../helpers/subscriber.ts';
import { useCleanups } from '../helpers/cleanups.ts';

const cleanups = useCleanups();

/** `name{labels} value` lines of a Prometheus text exposition, comments left out. */
function samples(text: string): Array<{ name: string; labels: Record<string, string>; value: number }> {
  return text
    .split('\n')
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!m) throw new Error(`not an exposition line: ${line}`);
      const labels: Record<string, string> = {};
      for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k!] = v!;
      return { name: m[1]!, labels, value: Number(m[3]) };
    });
}

function value(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  return samples(text).find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

const meterYaml = (url: string, port: number): string => `
mqtt: { url: ${url} }
metrics: { port: ${port} }
devices:
  - id: bench1
    driver: onetouch-ultra2
    transport: { type: simulated, simulator: { serial: GMF600DCY, memory: ${JSON.stringify(ULTRA2_MEMORY)} } }
  - id: spare
    driver: onetouch-ultra2
    enabled: false
    transport: { type: simulated }
`;

describe('metrics endpoint', () => {
  it('is off unless metrics.port is set', async () => {
    const { controller } = await startDaemon(testConfig(''));
    cleanups.push(() => controller.stop());
    expect(controller.metricsUrl).toBeNull();
  });

  it('after a simulated download, a scrape over HTTP counts what was stored, published and found again, on loopback, with no record content in a label', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups, ['poct/device/bench1/result']);
    const port = await freePort();
    const { controller } = await startDaemon(testConfig(meterYaml(broker.url, port)));
    cleanups.push(() => controller.stop());
    expect(controller.metricsUrl).toBe(`http://127.0.0.1:${port}/metrics`);
    const scrape = async (): Promise<string> => {
      const response = await fetch(controller.metricsUrl!);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
      return response.text();
    };

    await eventually('3 records published', () => sub.on('poct/device/bench1/result').length === 3);
    await eventually('the outbox empty', () => controller.runtime!.store.outboxDepth() === 0);
    let text = await scrape();
    expect(value(text, 'poctd_records_stored_total', { device: 'bench1', kind: 'result' })).toBe(3);
    expect(value(text, 'poctd_records_published_total', { device: 'bench1', kind: 'result' })).toBe(3);
    expect(value(text, 'poctd_commit_seconds_count', { device: 'bench1' })).toBeGreaterThanOrEqual(1);
    expect(value(text, 'poctd_commit_seconds_bucket', { device: 'bench1', le: '+Inf' })).toBe(value(text, 'poctd_commit_seconds_count', { device: 'bench1' }));
    expect(value(text, 'poctd_outbox_depth')).toBe(0);
    expect(value(text, 'poctd_outbox_oldest_age_seconds')).toBe(0);
    expect(value(text, 'poctd_mqtt_connected')).toBe(1);
    expect(value(text, 'poctd_device_available', { device: 'bench1' })).toBe(1);
    // A disabled device is not one the daemon runs.
    expect(value(text, 'poctd_device_available', { device: 'spare' })).toBeUndefined();

    // The same memory downloaded again: nothing new is stored, all three are duplicates.
    const answer = await sub.request('poct/device/bench1/request/download', 'poct/device/bench1/response/download', {});
    expect(answer.status).toBe('ok');
    text = await scrape();
    expect(value(text, 'poctd_records_stored_total', { device: 'bench1', kind: 'result' })).toBe(3);
    expect(value(text, 'poctd_records_duplicate_total', { device: 'bench1', kind: 'result' })).toBe(3);

    // Labels name devices, record kinds, event types and buckets only; no reading reaches them.
    const ours = samples(text).filter((s) => s.name.startsWith('poctd_') && !/^poctd_(process|nodejs)_/.test(s.name));
    for (const s of ours) expect(Object.keys(s.labels).every((k) => ['device', 'kind', 'type', 'le'].includes(k)), s.name).toBe(true);
    expect(new Set(ours.flatMap((s) => (s.labels.device ? [s.labels.device] : [])))).toEqual(new Set(['bench1']));
    for (const reading of ULTRA2_MEMORY) expect(text).not.toContain(reading.time);

    // Only /metrics, only GET.
    expect((await fetch(controller.metricsUrl!.replace('/metrics', '/'))).status).toBe(404);
    expect((await fetch(controller.metricsUrl!, { method: 'POST' })).status).toBe(405);
  });

  it('sets no-delay on every accepted socket and closes its port on stop', async () => {
    const port = await freePort();
    const { controller } = await startDaemon(testConfig(`metrics: { port: ${port} }\n`));
    let stopped = false;
    cleanups.push(() => (stopped ? Promise.resolve() : controller.stop()));
    const noDelay = vi.spyOn(Socket.prototype, 'setNoDelay');
    cleanups.push(async () => noDelay.mockRestore());
    expect((await fetch(controller.metricsUrl!)).status).toBe(200);
    // The server's end of the connection is the socket whose local port is the endpoint's.
    const serverSide = noDelay.mock.contexts.filter((socket) => (socket as Socket).localPort === port);
    expect(serverSide.length).toBeGreaterThanOrEqual(1);
    expect(noDelay.mock.calls[noDelay.mock.contexts.indexOf(serverSide[0])]?.[0]).toBe(true);
    await controller.stop();
    stopped = true;
    await expect(fetch(`http://127.0.0.1:${port}/metrics`)).rejects.toThrow();
  });

  it('counts the outbox and its oldest row while the broker is away, and errors by type', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups, ['poct/device/bench1/result']);
    await sub.close();
    await broker.stop();
    const port = await freePort();
    const { controller } = await startDaemon(testConfig(meterYaml(broker.url, port)));
    cleanups.push(() => controller.stop());
    await eventually('3 records stored', () => controller.runtime!.store.recordCount() === 3);
    let text = '';
    const scrapeUntil = async (what: string, holds: () => boolean): Promise<void> => {
      const deadline = Date.now() + 10_000;
      for (;;) {
        text = await (await fetch(controller.metricsUrl!)).text();
        if (holds()) return;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${text}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await scrapeUntil('an mqtt_error counted', () => (value(text, 'poctd_errors_total', { type: 'mqtt_error' }) ?? 0) >= 1);
    expect(value(text, 'poctd_mqtt_connected')).toBe(0);
    expect(value(text, 'poctd_outbox_depth')).toBe(3);
    expect(value(text, 'poctd_outbox_oldest_age_seconds')).toBeGreaterThan(0);
    expect(value(text, 'poctd_records_stored_total', { device: 'bench1', kind: 'result' })).toBe(3);
    expect(value(text, 'poctd_records_published_total', { device: 'bench1', kind: 'result' })).toBeUndefined();
  });
});
