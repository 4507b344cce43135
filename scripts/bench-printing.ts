/**
 * The printing phase of `npm run bench` (BENCH_PHASES=printing), also runnable alone:
 * `tsx scripts/bench-printing.ts`.
 *
 *   BENCH_PRINT_JOBS (1000)  BENCH_PRINT_LATENCY_N (200)  BENCH_DB_DIR (the OS temp dir)
 *
 * Drain: BENCH_PRINT_JOBS print requests (each with its transaction) are accepted over MQTT while
 * the fake Zebra is unreachable; then it comes up and the jobs drain. Jobs/s is counted from the
 * first label's arrival at the printer to the last, against raw socket writes of the same ZPL
 * labels to the same fake printer in the same run (the median of three; target >= 0.8x).
 * Latency: with the printer up, one request at a time; from the publish of the request to the
 * printer having read the whole format (a label is one segment on loopback, so this is its first
 * byte too); p50 / p99 (target p99 < 20 ms).
 */
import { connect } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { drivers } from '../drivers/index.ts';
import { renderLabel } from '../drivers/printers/zebra-zpl/label.ts';
import { FakeZebraPrinter } from '../drivers/printers/zebra-zpl/simulator.ts';
import { BUILTIN_TEMPLATES } from '../drivers/printers/zebra-zpl/templates.ts';
import { parseConfig } from '../src/config/load.ts';
import { Controller } from '../src/controller.ts';
import { createLogger } from '../src/logger.ts';
import { Mosquitto } from '../test/helpers/mosquitto.ts';

const JOBS = Number(process.env.BENCH_PRINT_JOBS ?? 1000);
const LATENCY_N = Number(process.env.BENCH_PRINT_LATENCY_N ?? 200);
const DB_DIR = process.env.BENCH_DB_DIR ?? tmpdir();
const ID = 'bench-printer';

const request = (n: number): Record<string, unknown> => ({
  template: 'specimen',
  specimen_id: `S${String(n).padStart(8, '0')}`,
  patient: { name: `Bench, Patient ${n}`, mrn: String(100000 + n), dob: '1960-08-29' },
  collected_at: '2026-12-03T09:14:00+01:00',
  tests: ['GLU'],
});

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

function waitFor(what: string, predicate: () => boolean, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (predicate()) return resolve();
      if (Date.now() > deadline) return reject(new Error(`bench: timed out waiting for ${what}`));
      setTimeout(tick, 1);
    };
    tick();
  });
}

/** Raw socket writes of the same labels to a fake printer: labels/s from its first label to its last. */
async function rawBaseline(labels: string[]): Promise<number> {
  const printer = new FakeZebraPrinter();
  const port = await printer.start();
  const times: number[] = [];
  printer.printer.on('format', () => times.push(performance.now()));
  const socket = connect({ host: '127.0.0.1', port, noDelay: true });
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  for (const zpl of labels) socket.write(zpl);
  await waitFor('raw labels', () => times.length === labels.length);
  socket.destroy();
  await printer.stop();
  return (labels.length - 1) / ((times.at(-1)! - times[0]!) / 1000);
}

export interface PrintingBenchResult {
  jobs: number;
  pipelineJobsPerS: number;
  rawJobsPerS: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
}

export async function benchPrinting(brokerUrl: string): Promise<PrintingBenchResult> {
  const printer = new FakeZebraPrinter();
  await printer.start();
  await printer.setUnreachable(true);
  const dir = mkdtempSync(join(DB_DIR, 'poctd-bench-print-'));
  const config = parseConfig(`
site: bench
mqtt: { url: ${brokerUrl} }
store: { path: ${join(dir, 'poctd.db')} }
log: { level: warn }
devices:
  - id: ${ID}
    driver: zebra-zpl
    transport: { type: tcp, host: 127.0.0.1, port: ${printer.port}, reconnect_min_ms: 100, reconnect_max_ms: 200 }
    options: { status_poll_ms: 60000, status_timeout_ms: 1000 }
`);
  const controller = new Controller(config, { log: createLogger('warn'), drivers });
  await controller.start();
  const client = await mqtt.connectAsync(brokerUrl);
  // No-delay, as the daemon's own broker link: a request behind an unacknowledged PUBACK would
  // otherwise wait about 40 ms for the broker's delayed ACK (Nagle).
  (client as unknown as { stream?: { setNoDelay?: (v: boolean) => void } }).stream?.setNoDelay?.(true);
  const answered = new Map<string, number>();
  await client.subscribeAsync(`poct/device/${ID}/response/print`, { qos: 1 });
  client.on('message', (_topic, payload) => {
    const r = JSON.parse(payload.toString()) as { transaction?: string; status: string; error: string | null };
    if (r.status !== 'ok') throw new Error(`bench: print refused: ${r.error}`);
    if (r.transaction) answered.set(r.transaction, performance.now());
  });
  try {
    // Drain: all accepted while the printer is off, then it comes up.
    for (let n = 1; n <= JOBS; n++) await client.publishAsync(`poct/device/${ID}/request/print`, JSON.stringify({ ...request(n), transaction: `q${n}` }), { qos: 1 });
    await waitFor('every job accepted', () => answered.size === JOBS);
    const arrivals: number[] = [];
    const onFormat = (): void => void arrivals.push(performance.now());
    printer.printer.on('format', onFormat);
    await printer.setUnreachable(false);
    await waitFor('every job printed', () => arrivals.length === JOBS, 600_000);
    printer.printer.off('format', onFormat);
    const pipelineJobsPerS = (JOBS - 1) / ((arrivals.at(-1)! - arrivals[0]!) / 1000);
    const labels = Array.from({ length: JOBS }, (_, i) => {
      const r = request(i + 1) as never;
      return renderLabel(r, BUILTIN_TEMPLATES.specimen!, (r as { specimen_id: string }).specimen_id).zpl;
    });
    // A burst of writes lasts milliseconds, so one run is noisy: the median of three.
    const raws = [await rawBaseline(labels), await rawBaseline(labels), await rawBaseline(labels)].sort((a, b) => a - b);
    const rawJobsPerS = raws[1]!;

    // Latency: one request at a time, printer up.
    const latencies: number[] = [];
    for (let n = 1; n <= LATENCY_N; n++) {
      const before = printer.printer.formatsReceived;
      const sent = performance.now();
      let got = 0;
      const onOne = (): void => void (got = performance.now());
      printer.printer.once('format', onOne);
      await client.publishAsync(`poct/device/${ID}/request/print`, JSON.stringify({ ...request(JOBS + n), transaction: `l${n}` }), { qos: 1 });
      await waitFor('the label', () => printer.printer.formatsReceived > before && got > 0);
      latencies.push(got - sent);
      // Let the job finish (its `printed` step) before the next, as a draw station would.
      await waitFor('answered', () => answered.has(`l${n}`));
      await new Promise((r) => setTimeout(r, 5));
    }
    latencies.sort((a, b) => a - b);
    return { jobs: JOBS, pipelineJobsPerS, rawJobsPerS, latencyP50Ms: percentile(latencies, 50), latencyP99Ms: percentile(latencies, 99) };
  } finally {
    await client.endAsync();
    await controller.stop();
    await printer.stop();
  }
}

export function printingReport(r: PrintingBenchResult): string {
  const ratio = r.pipelineJobsPerS / r.rawJobsPerS;
  const verdict = (met: boolean): string => (met ? 'met' : 'NOT met');
  return (
    `printing: ${r.jobs} jobs queued while the printer was unreachable drained at ${r.pipelineJobsPerS.toFixed(1)} jobs/s; ` +
    `raw socket writes of the same ZPL ${r.rawJobsPerS.toFixed(0)} labels/s; ratio ${ratio.toFixed(4)} (target >= 0.8: ${verdict(ratio >= 0.8)})\n` +
    `printing: request to the printer reading the label, one at a time: p50 ${r.latencyP50Ms.toFixed(2)} ms, ` +
    `p99 ${r.latencyP99Ms.toFixed(2)} ms (target < 20: ${verdict(r.latencyP99Ms < 20)})`
  );
}

const invokedDirectly = process.argv[1]?.endsWith('bench-printing.ts');
if (invokedDirectly) {
  const broker = await Mosquitto.start({ extraConfig: 'allow_anonymous true\nset_tcp_nodelay true\nmax_queued_messages 0\n' });
  try {
    console.log(printingReport(await benchPrinting(broker.url)));
  } finally {
    await broker.stop();
    process.exit(0);
  }
}
