/**
 * `npm run bench`: results through the real pipeline (simulated Ultra 2 sessions → SQLite →
 * outbox → Mosquitto → a subscriber) against a baseline of raw mqtt.js publishes of the same
 * payloads to the same broker, measured in the same run.
 *
 *   BENCH_DEVICES (200)  BENCH_SECONDS (20)  BENCH_BURST (10000)  BENCH_DB_DIR (the OS temp dir)
 *   BENCH_PHASES (in-process,tcp,backlog,printing,dicom: which phases run besides the baseline; dicom: scripts/bench-dicom.ts)
 *
 * Paced phases: every device makes one reading a second; prints delivered results/s, the ratio
 * to the baseline, p50/p99 latency from the device's last byte to the subscriber, peak RSS. The
 * meters run once in the daemon's process (in-memory cables) and once in a process of their own
 * behind TCP ports, as meters on a terminal server would be. The targets (ratio >= 0.7, p99 < 10 ms)
 * are the daemon's, so they are judged on the second: the first adds the simulators' own work to
 * the daemon's thread. For each, a breakdown shows which stage the time went to.
 * Burst phase: a backlog of BENCH_BURST stored results drains to the broker (the case after an
 * outage) against the same number of raw publishes.
 * Printing phase: label print jobs drained after a printer outage, and request-to-printer latency
 * (scripts/bench-printing.ts, where its knobs are).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, fsyncSync, mkdtempSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import mqtt from 'mqtt';
import { drivers } from '../drivers/index.ts';
import { parseConfig } from '../src/config/load.ts';
import { Controller } from '../src/controller.ts';
import { createLogger } from '../src/logger.ts';
import { RESULT_SCHEMA, type ResultRecord } from '../src/records/types.ts';
import { MemoryTransport } from '../src/transports/memory.ts';
import { MqttConnection } from '../src/mqtt/connection.ts';
import { Store } from '../src/store/store.ts';
import { StoreWriter } from '../src/store/writer.ts';
import { Mosquitto } from '../test/helpers/mosquitto.ts';
import { glucoseDraft } from '../test/helpers/records.ts';

const DEVICES = Number(process.env.BENCH_DEVICES ?? 200);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const BURST = Number(process.env.BENCH_BURST ?? 10_000);
/** Where the databases go; the disk's sync latency is most of a result's latency (try /dev/shm). */
const DB_DIR = process.env.BENCH_DB_DIR ?? tmpdir();
const PHASES = new Set((process.env.BENCH_PHASES ?? 'in-process,tcp,backlog,printing,dicom').split(',').map((p) => p.trim()));

// The daemon's heap as bin/poctd.js sets it (the young generation keeps its first size), again
// once each worker thread runs, since Node applies V8's flags afresh when one starts.
const keepYoungGenerationSmall = (): void => setFlagsFromString('--semi-space-growth-factor=1');
keepYoungGenerationSmall();
process.on('worker', (worker) => worker.once('online', keepYoungGenerationSmall));

/** Results that arrive in the first seconds (start-up, first downloads) are not counted. */
const WARMUP_S = 2;

interface PhaseResult {
  name: string;
  /** Arrival time at the subscriber and latency of each result, in arrival order. */
  arrivals: Array<{ at: number; latencyMs: number; stages?: number[] }>;
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

/** The backlog phase's subscriber: counts arrivals only (no parsing on the daemon's thread). */
async function subscriber(url: string, onArrival: (at: number) => void): Promise<mqtt.MqttClient> {
  const client = await mqtt.connectAsync(url, { clientId: `bench-sub-${process.pid}` });
  client.on('message', () => onArrival(performance.now()));
  await client.subscribeAsync('poct/device/+/result', { qos: 1 });
  return client;
}

/** A helper process of this directory, started with `args`; resolves once it sent `{ready}` or `{ports}`. */
async function helper<T>(script: string, args: string[]): Promise<{ child: ChildProcess; first: T }> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL(script, import.meta.url)), ...args], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const first = await new Promise<T>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${script} exited (${code})`)));
    child.once('message', (m) => resolve(m as T));
  });
  child.removeAllListeners('exit');
  return { child, first };
}

/** Asks a helper for its report and waits for it. */
function report<T>(child: ChildProcess): Promise<T> {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve(m as T));
    child.send('report');
  });
}

/** The paced phases' subscriber, in its own process (`bench-subscriber.ts`). */
async function remoteSubscriber(url: string): Promise<{ arrivals(): Promise<Array<[id: string, at: number]>>; stop(): void }> {
  const { child } = await helper<{ ready: true }>('./bench-subscriber.ts', [url]);
  return {
    arrivals: async () => (await report<{ arrivals: Array<[string, number]> }>(child)).arrivals,
    stop: () => child.kill(),
  };
}

function sampleRecord(device: number, n: number): ResultRecord {
  const draft = glucoseDraft(n, { device: { ...glucoseDraft(0).device, id: `bench-${device}`, serial: `B${String(device).padStart(7, '0')}Y` } });
  const { key: _key, ...body } = draft;
  return {
    schema: RESULT_SCHEMA,
    id: `${device}-${n}`.padEnd(32, '0'),
    seq: n,
    site: 'bench',
    ...body,
    received_at: new Date().toISOString(),
    raw: { sha256: 'x'.repeat(64), size: 64, kind: 'raw' },
  };
}

const now = (): number => performance.timeOrigin + performance.now();

/** The stages a result passes between the device's last byte and the subscriber. */
const STAGES = [
  'last byte → commit asked (decode, session)',
  'commit asked → stored (writer thread, disk sync)',
  'stored → handed to MQTT (outbox read)',
  'handed to MQTT → subscriber (client, broker)',
] as const;

/**
 * Timestamps (absolute ms) of each result passing each stage, taken by wrapping
 * `StoreWriter.commit` and `MqttConnection.publish` for the length of a phase.
 */
class StageClock {
  private readonly askedByDevice = new Map<string, number>();
  private readonly byId = new Map<string, { asked: number; stored: number; handed?: number }>();
  private readonly restore: Array<() => void> = [];
  /** The daemon's writer, seen on its first commit (for its thread's counters). */
  writer: StoreWriter | undefined;
  commits = 0;

  install(controller: Controller): void {
    const commit = StoreWriter.prototype.commit;
    const asked = this.askedByDevice;
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const clock = this;
    StoreWriter.prototype.commit = function (this: StoreWriter, input) {
      clock.writer = this;
      clock.commits++;
      asked.set(input.deviceId, now());
      return commit.call(this, input);
    };
    const publish = MqttConnection.prototype.publish;
    const byId = this.byId;
    MqttConnection.prototype.publish = function (this: MqttConnection, topic, payload, options) {
      if (typeof payload === 'string' && topic.endsWith('/result')) {
        const at = payload.indexOf('"id":"');
        const entry = at >= 0 ? byId.get(payload.slice(at + 6, payload.indexOf('"', at + 6))) : undefined;
        if (entry) entry.handed = now();
      }
      return publish.call(this, topic, payload, options);
    };
    this.restore.push(
      () => (StoreWriter.prototype.commit = commit),
      () => (MqttConnection.prototype.publish = publish),
      controller.bus.on('recordsStored', ({ deviceId, records }) => {
        const stored = now();
        const commitAsked = asked.get(deviceId) ?? stored;
        for (const r of records) byId.set(r.id, { asked: commitAsked, stored });
      }),
    );
  }

  uninstall(): void {
    this.restore.splice(0).forEach((r) => r());
  }

  /** The time spent in each of STAGES by the result `id` that arrived at `arrived`. */
  stages(id: string, lastByte: number, arrived: number): number[] | undefined {
    const t = this.byId.get(id);
    if (t?.handed === undefined) return undefined;
    return [t.asked - lastByte, t.stored - t.asked, t.handed - t.stored, arrived - t.handed];
  }
}

/** Runs the daemon for SECONDS; the window after warm-up and the peak RSS. */
async function runDaemon(controller: Controller, beforeStop?: () => Promise<void>): Promise<Pick<PhaseResult, 'window' | 'peakRssMb' | 'loopP99Ms'>> {
  const rss = sampler();
  const start = performance.now();
  await controller.start();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const window = { from: start + WARMUP_S * 1000, to: performance.now() };
  await beforeStop?.();
  await controller.stop();
  await new Promise((r) => setTimeout(r, 500)); // results still on their way to the subscriber
  return { window, ...rss.stop() };
}

/** Raw mqtt.js: each device publishes one result a second, paced like the pipeline phase. */
async function baselinePaced(url: string): Promise<PhaseResult> {
  const sentAt = new Map<string, number>();
  const sub = await remoteSubscriber(url);
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
          sentAt.set(record.id, now());
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
  const arrivals: PhaseResult['arrivals'] = [];
  for (const [id, at] of await sub.arrivals()) {
    const t = sentAt.get(id);
    if (t !== undefined) arrivals.push({ at: at - performance.timeOrigin, latencyMs: at - t });
  }
  sub.stop();
  return { name: 'baseline: raw mqtt.js', arrivals, window, ...sampled };
}

/** Where a paced phase's meters run: how the daemon reaches each, and when each sent its last bytes. */
interface Meters {
  name: string;
  /** The `transport` of meter `d` in the daemon's config. */
  transport(d: number): Record<string, unknown>;
  /** For each meter, the absolute times (ascending) it finished writing; asked once the daemon stopped. */
  lastBytes(): Promise<number[][]>;
  stop(): void;
}

/**
 * A real Ultra 2 sends its whole memory at 9600 baud and is polled every few minutes; here each
 * meter makes a reading a second, keeps its last 5 (so every poll carries 1 new and 4 already
 * stored) and writes 1–64 bytes at a time, as a USB-serial adapter delivers them.
 */
const METER = { memory: [], new_reading_every_s: 1, capacity: 5, max_chunk: 64 };
const meterSerial = (d: number): string => `B${String(d).padStart(7, '0')}Y`;

/**
 * The meters on in-memory cables in the daemon's process: their work counts against the
 * pipeline's latency. Their writes are timed by wrapping MemoryTransport.write until `stop`.
 */
function metersInProcess(): Meters {
  const writes = new Map<string, number[]>();
  const write = MemoryTransport.prototype.write;
  MemoryTransport.prototype.write = function (this: MemoryTransport, data: Buffer) {
    if (this.description.endsWith(':device')) {
      let times = writes.get(this.description);
      if (!times) writes.set(this.description, (times = []));
      times.push(now());
    }
    return write.call(this, data);
  };
  return {
    name: 'poctd, meters in-process',
    transport: (d) => ({ type: 'simulated', simulator: { serial: meterSerial(d), ...METER } }),
    lastBytes: async () => Array.from({ length: DEVICES }, (_, d) => writes.get(`sim:bench-${d}:device`) ?? []),
    stop: () => {
      MemoryTransport.prototype.write = write;
    },
  };
}

const OVER_TCP = 'poctd, meters over TCP';

/**
 * The meters where real ones are: in another process, reached over TCP (`bench-meters.ts`), so
 * the daemon's thread does only the daemon's work.
 */
async function metersOverTcp(): Promise<Meters> {
  const { child, first } = await helper<{ ports: number[] }>('./bench-meters.ts', [String(DEVICES)]);
  return {
    name: OVER_TCP,
    transport: (d) => ({ type: 'tcp', host: '127.0.0.1', port: first.ports[d] }),
    lastBytes: async () => (await report<{ lastBytes: number[][] }>(child)).lastBytes,
    stop: () => child.kill(),
  };
}

/**
 * The daemon with DEVICES Ultra 2 meters, each polled every second, for SECONDS. A result's
 * latency runs from the last byte its meter wrote before the commit to its arrival.
 */
async function pipelinePaced(url: string, meters: Meters): Promise<PhaseResult> {
  const dir = mkdtempSync(join(DB_DIR, 'poctd-bench-'));
  const devices = Array.from({ length: DEVICES }, (_, d) => ({
    id: `bench-${d}`,
    driver: 'onetouch-ultra2',
    timezone: 'UTC',
    poll_interval: 1,
    transport: meters.transport(d),
  }));
  const config = parseConfig(
    JSON.stringify({ site: 'bench', mqtt: { url }, store: { path: join(dir, 'bench.db') }, log: { level: 'warn' }, devices }),
    { knownDrivers: drivers.map((d) => d.id), env: {} },
  );
  const stored = new Map<string, { device: number; at: number }>();
  const sub = await remoteSubscriber(url);
  const controller = new Controller(config, { log: createLogger('warn'), drivers });
  controller.bus.on('recordsStored', ({ deviceId, records }) => {
    const at = now();
    for (const r of records) stored.set(r.id, { device: Number(deviceId.slice('bench-'.length)), at });
  });
  const clock = new StageClock();
  clock.install(controller);
  let writerNote = '';
  const sampled = await runDaemon(controller, async () => {
    const stats = await clock.writer?.stats();
    if (!stats) return;
    const c = stats.checkpoints;
    writerNote =
      `${meters.name}: writer thread: ${clock.commits} commits in ${stats.groups} group commits; blob syncs ${stats.blobSyncs.files} files, ` +
      `${stats.blobSyncs.directories} directories; ${c.count} checkpoints, ${c.totalMs.toFixed(0)} ms in all, longest ${c.maxMs.toFixed(1)} ms`;
  });
  if (writerNote) writerNotes.push(writerNote);
  clock.uninstall();
  const received = await sub.arrivals();
  sub.stop();
  const lastBytes = await meters.lastBytes();
  meters.stop();
  const arrivals: PhaseResult['arrivals'] = [];
  for (const [id, at] of received) {
    const s = stored.get(id);
    const lastByte = s ? lastBytes[s.device]?.filter((t) => t <= s.at).at(-1) : undefined;
    if (lastByte !== undefined) {
      arrivals.push({ at: at - performance.timeOrigin, latencyMs: at - lastByte, stages: clock.stages(id, lastByte, at) });
    }
  }
  return { name: meters.name, arrivals, ...sampled };
}

/** What each paced phase's writer thread did, printed with the breakdowns. */
const writerNotes: string[] = [];

/** A backlog of BURST stored results drains to the broker, against BURST raw publishes. */
async function burst(url: string): Promise<{ baselinePerS: number; pipelinePerS: number }> {
  let received = 0;
  let first = 0;
  let last = 0;
  const sub = await subscriber(url, (at) => {
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
    store.commit({
      site: 'bench',
      deviceId: 'bench-0',
      driver: 'onetouch-ultra2',
      capture: store.putCaptureSync('raw', Buffer.from(`capture ${i}`)),
      drafts: { result: Array.from({ length: Math.min(500, BURST - i) }, (_, k) => glucoseDraft(i + k)) },
      receivedAt: new Date(),
      timezone: 'UTC',
      privacy: { patient_id: 'hash' },
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

/**
 * Where a phase's time went: p50 and p99 of each stage over all results, and the mean of each
 * stage over the slowest 1 % (what makes the p99).
 */
function breakdown(r: PhaseResult): string {
  const inWindow = r.arrivals.filter((a) => a.at >= r.window.from && a.at <= r.window.to && a.stages);
  const slowest = [...inWindow].sort((a, b) => b.latencyMs - a.latencyMs).slice(0, Math.max(1, Math.ceil(inWindow.length / 100)));
  const lines = STAGES.map((name, i) => {
    const sorted = inWindow.map((a) => a.stages![i]!).sort((x, y) => x - y);
    const tail = slowest.reduce((sum, a) => sum + a.stages![i]!, 0) / slowest.length;
    return `  ${name.padEnd(52)} ${percentile(sorted, 50).toFixed(2).padStart(8)} ${percentile(sorted, 99).toFixed(2).padStart(8)} ${tail.toFixed(2).padStart(14)}`;
  });
  return [`${r.name}: where the time goes (ms)${' '.repeat(Math.max(1, 29 - r.name.length))}     p50      p99  slowest 1 %`, ...lines].join('\n');
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
    const phases: PhaseResult[] = [];
    if (PHASES.has('in-process')) phases.push(await pipelinePaced(broker.url, metersInProcess()));
    if (PHASES.has('tcp')) phases.push(await pipelinePaced(broker.url, await metersOverTcp()));
    console.log(`${'phase'.padEnd(24)} ${'results/s'.padStart(10)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)} ${'RSS MB'.padStart(9)} ${'loop p99 ms'.padStart(14)}`);
    for (const p of [baseline, ...phases]) console.log(row(p));
    console.log(`\n${phases.map(breakdown).join('\n')}\n`);
    if (writerNotes.length) console.log(`${writerNotes.join('\n')}\n`);
    for (const p of phases) {
      const ratio = steady(p).perSecond / steady(baseline).perSecond;
      const p99 = percentile(steady(p).latencies, 99);
      const verdict = (met: boolean): string => (met ? 'met' : 'NOT met');
      console.log(
        p.name === OVER_TCP
          ? `${p.name}: ratio to baseline ${ratio.toFixed(3)} (target >= 0.7: ${verdict(ratio >= 0.7)}), ` +
              `p99 ${p99.toFixed(2)} ms (target < 10: ${verdict(p99 < 10)})`
          : `${p.name}: ratio to baseline ${ratio.toFixed(3)}, p99 ${p99.toFixed(2)} ms ` +
              `(no target: ${DEVICES} simulators share the daemon's thread, as in the demo)`,
      );
    }
    if (PHASES.has('backlog')) {
      const b = await burst(broker.url);
      console.log(
        `\nbacklog drain of ${BURST}: baseline ${b.baselinePerS.toFixed(0)} results/s, pipeline ${b.pipelinePerS.toFixed(0)} results/s, ` +
          `ratio ${(b.pipelinePerS / b.baselinePerS).toFixed(3)}`,
      );
    }
    if (PHASES.has('printing')) {
      const { benchPrinting, printingReport } = await import('./bench-printing.ts');
      console.log(`\n${printingReport(await benchPrinting(broker.url))}`);
    }
    if (PHASES.has('dicom')) {
      console.log('');
      await (await import('./bench-dicom.ts')).dicomBench();
    }
  } finally {
    await broker.stop();
    process.exit(0);
  }
}

void main();
