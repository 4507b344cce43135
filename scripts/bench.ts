/**
 * `npm run bench`: results through the real pipeline (simulated Ultra 2 sessions → SQLite →
 * outbox → Mosquitto → a subscriber) against a baseline of raw mqtt.js publishes of the same
 * payloads to the same broker, measured in the same run.
 *
 *   BENCH_DEVICES (200)  BENCH_SECONDS (20)  BENCH_BURST (10000)  BENCH_DB_DIR (the OS temp dir)
 *
 * Paced phases: every device makes one reading a second; prints delivered results/s, the ratio
 * to the baseline, p50/p99 latency from the device's last byte to the subscriber, peak RSS. The
 * meters run once in the daemon's process (in-memory cables) and once in a process of their own
 * behind TCP ports, as meters on a terminal server would be.
 * Burst phase: a backlog of BENCH_BURST stored results drains to the broker (the case after an
 * outage) against the same number of raw publishes.
 */
import { spawn } from 'node:child_process';
import { closeSync, fsyncSync, mkdtempSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { drivers } from '../drivers/index.ts';
import { parseConfig } from '../src/config/load.ts';
import { Controller } from '../src/controller.ts';
import { createLogger } from '../src/logger.ts';
import type { ResultRecord } from '../src/records/types.ts';
import { MemoryTransport } from '../src/transports/memory.ts';
import { Store } from '../src/store/store.ts';
import { Mosquitto } from '../test/helpers/mosquitto.ts';
import { glucoseDraft } from '../test/helpers/records.ts';

const DEVICES = Number(process.env.BENCH_DEVICES ?? 200);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const BURST = Number(process.env.BENCH_BURST ?? 10_000);
/** Where the databases go; the disk's sync latency is most of a result's latency (try /dev/shm). */
const DB_DIR = process.env.BENCH_DB_DIR ?? tmpdir();

/** Results that arrive in the first seconds (start-up, first downloads) are not counted. */
const WARMUP_S = 2;

interface PhaseResult {
  name: string;
  /** Arrival time at the subscriber and latency of each result, in arrival order. */
  arrivals: Array<{ at: number; latencyMs: number }>;
  /** The steady window [start + WARMUP_S, end] in performance.now() ms. */
  window: { from: number; to: number };
  peakRssMb: number;
  /** p99 event-loop delay of this process during the phase. */
  loopP99Ms: number;
}

function steady(r: PhaseResult): { perSecond: number; latencies: number[] } {
  const inWindow = r.arrivals.filter((a) => a.at >= r.window.from && a.at <= r.window.to);
  return {
    perSecond: inWindow.length / ((r.window.to - r.window.from) / 1000),
    latencies: inWindow.map((a) => a.latencyMs).sort((x, y) => x - y),
  };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Peak RSS, and the 99th percentile of the event loop's delay (how long a ready callback waited). */
function sampler(): { stop(): { peakRssMb: number; loopP99Ms: number } } {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  return {
    stop() {
      clearInterval(timer);
      loop.disable();
      return { peakRssMb: Math.max(peak, process.memoryUsage().rss) / 1048576, loopP99Ms: loop.percentile(99) / 1e6 };
    },
  };
}

async function subscriber(url: string, onResult: (record: ResultRecord, at: number) => void): Promise<mqtt.MqttClient> {
  const client = await mqtt.connectAsync(url, { clientId: `bench-sub-${process.pid}` });
  client.on('message', (_topic, payload) => onResult(JSON.parse(payload.toString()) as ResultRecord, performance.now()));
  await client.subscribeAsync('poct/device/+/result', { qos: 1 });
  return client;
}

function sampleRecord(device: number, n: number): ResultRecord {
  const draft = glucoseDraft(n, { device: { ...glucoseDraft(0).device, id: `bench-${device}`, serial: `B${String(device).padStart(7, '0')}Y` } });
  const { key: _key, ...body } = draft;
  return {
    schema: 'poct.result/1',
    id: `${device}-${n}`.padEnd(32, '0'),
    seq: n,
    site: 'bench',
    ...body,
    received_at: new Date().toISOString(),
    raw: { capture: 'x'.repeat(64), sha256: 'x'.repeat(64) },
  };
}

/** Runs the daemon for SECONDS; the window after warm-up and the peak RSS. */
async function runDaemon(controller: Controller): Promise<Pick<PhaseResult, 'window' | 'peakRssMb' | 'loopP99Ms'>> {
  const rss = sampler();
  const start = performance.now();
  await controller.start();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const window = { from: start + WARMUP_S * 1000, to: performance.now() };
  await controller.stop();
  await new Promise((r) => setTimeout(r, 500)); // results still on their way to the subscriber
  return { window, ...rss.stop() };
}

/** Raw mqtt.js: each device publishes one result a second, paced like the pipeline phase. */
async function baselinePaced(url: string): Promise<PhaseResult> {
  const sentAt = new Map<string, number>();
  const arrivals: PhaseResult['arrivals'] = [];
  const sub = await subscriber(url, (r, at) => {
    const t = sentAt.get(r.id);
    if (t !== undefined) arrivals.push({ at, latencyMs: at - t });
  });
  const pub = await mqtt.connectAsync(url, { clientId: `bench-pub-${process.pid}` });
  const rss = sampler();
  const start = performance.now();
  const timers: NodeJS.Timeout[] = [];
  for (let d = 0; d < DEVICES; d++) {
    let n = 0;
    const offset = (d / DEVICES) * 1000;
    timers.push(
      setTimeout(() => {
        const tick = (): void => {
          const record = sampleRecord(d, ++n);
          sentAt.set(record.id, performance.now());
          void pub.publishAsync(`poct/device/${record.device.id}/result`, JSON.stringify(record), { qos: 1 });
        };
        tick();
        timers.push(setInterval(tick, 1000));
      }, offset),
    );
  }
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const window = { from: start + WARMUP_S * 1000, to: performance.now() };
  timers.forEach((t) => clearInterval(t));
  await new Promise((r) => setTimeout(r, 500));
  const sampled = rss.stop();
  await pub.endAsync();
  await sub.endAsync();
  return { name: 'baseline: raw mqtt.js', arrivals, window, ...sampled };
}

/**
 * The daemon with DEVICES simulated meters, each making a reading a second and polled every second.
 * A real Ultra 2 sends its whole memory at 9600 baud and is polled every few minutes; here each
 * meter keeps its last 5 readings (so every poll carries 1 new and 4 already stored) and writes
 * 1–64 bytes at a time, as a USB-serial adapter delivers them. The simulators run on the daemon's
 * own thread, so their work counts against the pipeline's latency.
 */
async function pipelinePaced(url: string): Promise<PhaseResult> {
  const dir = mkdtempSync(join(DB_DIR, 'poctd-bench-'));
  const devices = Array.from({ length: DEVICES }, (_, d) => ({
    id: `bench-${d}`,
    driver: 'onetouch-ultra2',
    timezone: 'UTC',
    poll_interval: 1,
    transport: {
      type: 'simulated',
      simulator: { serial: `B${String(d).padStart(7, '0')}Y`, memory: [], new_reading_every_s: 1, capacity: 5, max_chunk: 64 },
    },
  }));
  const config = parseConfig(
    JSON.stringify({ site: 'bench', mqtt: { url }, store: { path: join(dir, 'bench.db') }, log: { level: 'warn' }, devices }),
    { knownDrivers: drivers.map((d) => d.id), env: {} },
  );

  // The device's last byte: when the simulator end of each in-memory cable last wrote.
  const lastDeviceByte = new Map<string, number>();
  const write = MemoryTransport.prototype.write;
  MemoryTransport.prototype.write = function (this: MemoryTransport, data: Buffer) {
    if (this.description.endsWith(':device')) lastDeviceByte.set(this.description, performance.now());
    return write.call(this, data);
  };
  const lastByteOfRecord = new Map<string, number>();
  const arrivals: PhaseResult['arrivals'] = [];
  const sub = await subscriber(url, (r, at) => {
    const t = lastByteOfRecord.get(r.id);
    if (t !== undefined) arrivals.push({ at, latencyMs: at - t });
  });
  const controller = new Controller(config, { log: createLogger('warn'), drivers });
  controller.bus.on('resultsStored', ({ deviceId, records }) => {
    const t = lastDeviceByte.get(`sim:${deviceId}:device`);
    if (t !== undefined) for (const r of records) lastByteOfRecord.set(r.id, t);
  });
  const sampled = await runDaemon(controller);
  await sub.endAsync();
  MemoryTransport.prototype.write = write;
  return { name: 'poctd, meters in-process', arrivals, ...sampled };
}

/**
 * The same load with the meters where real ones are: in another process, reached over TCP
 * (`bench-meters.ts`), so the daemon's thread does only the daemon's work.
 */
async function pipelineOverTcp(url: string): Promise<PhaseResult> {
  const meters = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./bench-meters.ts', import.meta.url)), String(DEVICES)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const lastBytes = new Map<number, number[]>();
  const ports = await new Promise<number[]>((resolve, reject) => {
    meters.once('exit', (code) => reject(new Error(`bench-meters exited (${code})`)));
    meters.on('message', (m: { ports?: number[]; device?: number; lastByteAt?: number }) => {
      if (m.ports) resolve(m.ports);
      else if (m.device !== undefined && m.lastByteAt !== undefined) {
        lastBytes.set(m.device, [...(lastBytes.get(m.device) ?? []), m.lastByteAt]);
      }
    });
  });
  const dir = mkdtempSync(join(DB_DIR, 'poctd-bench-'));
  const devices = ports.map((port, d) => ({
    id: `bench-${d}`,
    driver: 'onetouch-ultra2',
    timezone: 'UTC',
    poll_interval: 1,
    transport: { type: 'tcp', host: '127.0.0.1', port },
  }));
  const config = parseConfig(
    JSON.stringify({ site: 'bench', mqtt: { url }, store: { path: join(dir, 'bench.db') }, log: { level: 'warn' }, devices }),
    { knownDrivers: drivers.map((d) => d.id), env: {} },
  );
  const now = (): number => performance.timeOrigin + performance.now();
  const stored = new Map<string, { device: number; at: number }>();
  const received: Array<{ id: string; at: number }> = [];
  const sub = await subscriber(url, (r) => received.push({ id: r.id, at: now() }));
  const controller = new Controller(config, { log: createLogger('warn'), drivers });
  controller.bus.on('resultsStored', ({ deviceId, records }) => {
    const at = now();
    for (const r of records) stored.set(r.id, { device: Number(deviceId.slice('bench-'.length)), at });
  });
  const { window, peakRssMb, loopP99Ms } = await runDaemon(controller);
  await sub.endAsync();
  meters.kill();
  // The last byte of the reply a record came in: the meter's latest reply end before the commit.
  const arrivals: PhaseResult['arrivals'] = [];
  for (const { id, at } of received) {
    const s = stored.get(id);
    const ends = s ? lastBytes.get(s.device) : undefined;
    const lastByte = ends?.filter((t) => t <= s!.at).at(-1);
    if (lastByte !== undefined) arrivals.push({ at: at - performance.timeOrigin, latencyMs: at - lastByte });
  }
  return { name: 'poctd, meters over TCP', arrivals, window, peakRssMb, loopP99Ms };
}

/** A backlog of BURST stored results drains to the broker, against BURST raw publishes. */
async function burst(url: string): Promise<{ baselinePerS: number; pipelinePerS: number }> {
  let received = 0;
  let first = 0;
  let last = 0;
  const sub = await subscriber(url, (_r, at) => {
    if (received++ === 0) first = at;
    last = at;
  });
  // From the first result's arrival to the last: start-up (worker thread, connect) is not drain time.
  const drainRate = async (n: number): Promise<number> => {
    const deadline = performance.now() + 60_000;
    while (received < n) {
      if (performance.now() > deadline) throw new Error(`backlog: only ${received} of ${n} results arrived within 60 s`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return (n - 1) / ((last - first) / 1000);
  };

  const pub = await mqtt.connectAsync(url, { clientId: `bench-burst-${process.pid}` });
  const payloads = Array.from({ length: BURST }, (_, i) => sampleRecord(i % DEVICES, i + 1));
  await Promise.all(payloads.map((p) => pub.publishAsync(`poct/device/${p.device.id}/result`, JSON.stringify(p), { qos: 1 })));
  const baselinePerS = await drainRate(BURST);
  await pub.endAsync();

  const dir = mkdtempSync(join(DB_DIR, 'poctd-bench-'));
  const dbPath = join(dir, 'burst.db');
  const store = new Store(dbPath);
  for (let i = 0; i < BURST; i += 500) {
    store.commitResults({
      site: 'bench',
      deviceId: 'bench-0',
      driver: 'onetouch-ultra2',
      captureKind: 'raw',
      captureBytes: Buffer.from(`capture ${i}`),
      drafts: Array.from({ length: Math.min(500, BURST - i) }, (_, k) => glucoseDraft(i + k)),
      receivedAt: new Date(),
    });
  }
  store.close();
  received = 0;
  const config = parseConfig(JSON.stringify({ site: 'bench', mqtt: { url }, store: { path: dbPath }, log: { level: 'warn' } }), {
    env: {},
  });
  const controller = new Controller(config, { log: createLogger('warn'), drivers });
  await controller.start();
  const pipelinePerS = await drainRate(BURST);
  await controller.stop();
  await sub.endAsync();
  return { baselinePerS, pipelinePerS };
}

function row(r: PhaseResult): string {
  const { perSecond, latencies: sorted } = steady(r);
  return [
    r.name.padEnd(24),
    perSecond.toFixed(1).padStart(10),
    percentile(sorted, 50).toFixed(2).padStart(9),
    percentile(sorted, 99).toFixed(2).padStart(9),
    r.peakRssMb.toFixed(0).padStart(9),
    r.loopP99Ms.toFixed(2).padStart(14),
  ].join(' ');
}

/** The floor under every commit: how long the database's disk takes to sync 4 KiB, in this run. */
function diskSync(): { p50: number; p99: number } {
  const path = join(mkdtempSync(join(DB_DIR, 'poctd-bench-')), 'fsync-probe');
  const fd = openSync(path, 'w');
  const block = Buffer.alloc(4096, 7);
  const times: number[] = [];
  for (let i = 0; i < 500; i++) {
    const t = performance.now();
    writeSync(fd, block);
    fsyncSync(fd);
    times.push(performance.now() - t);
  }
  closeSync(fd);
  unlinkSync(path);
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p99: percentile(times, 99) };
}

async function main(): Promise<void> {
  // Mosquitto leaves Nagle on by default, and drops QoS 1 messages past 1000 queued for a slow
  // subscriber: a clinic broker carrying results should be set up like this too.
  const broker = await Mosquitto.start({
    extraConfig: 'allow_anonymous true\nset_tcp_nodelay true\nmax_queued_messages 0\n',
  });
  try {
    console.log(
      `poctd bench: ${DEVICES} devices x 1 result/s for ${SECONDS} s (first ${WARMUP_S} s not counted), ` +
        `Mosquitto on ${broker.url}, databases in ${DB_DIR}\n`,
    );
    const disk = diskSync();
    console.log(`disk under the databases: write + fsync of 4 KiB p50 ${disk.p50.toFixed(2)} ms, p99 ${disk.p99.toFixed(2)} ms\n`);
    const baseline = await baselinePaced(broker.url);
    const pipeline = await pipelinePaced(broker.url);
    const overTcp = await pipelineOverTcp(broker.url);
    console.log(`${'phase'.padEnd(24)} ${'results/s'.padStart(10)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)} ${'RSS MB'.padStart(9)} ${'loop p99 ms'.padStart(14)}`);
    console.log(row(baseline));
    console.log(row(pipeline));
    console.log(row(overTcp));
    for (const p of [pipeline, overTcp]) {
      const ratio = steady(p).perSecond / steady(baseline).perSecond;
      const p99 = percentile(steady(p).latencies, 99);
      console.log(`${p.name}: ratio to baseline ${ratio.toFixed(3)} (target >= 0.7), p99 ${p99.toFixed(2)} ms (target < 10)`);
    }
    const b = await burst(broker.url);
    console.log(
      `\nbacklog drain of ${BURST}: baseline ${b.baselinePerS.toFixed(0)} results/s, pipeline ${b.pipelinePerS.toFixed(0)} results/s, ` +
        `ratio ${(b.pipelinePerS / b.baselinePerS).toFixed(3)}`,
    );
  } finally {
    await broker.stop();
  }
  process.exit(0);
}

void main();
