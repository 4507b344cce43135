/**
 * The database's growth (SQLite file + WAL + blob store), per device per day, for the README.
 *
 *   tsx scripts/faults/growth.ts [seconds]                       config/demo.yaml's devices
 *   tsx scripts/faults/growth.ts [seconds] --load=clinic [--speed=K] [--meters=10] [--analyzers=2]
 *       [--download-min=15] [--new-per-download=3] [--results-per-hour=100] [--memory=150]
 *
 * `clinic` is a realistic day compressed K times (default 60: one hour in a minute): `meters`
 * simulated Ultra 2 meters, each with `memory` readings already stored, downloaded every
 * `download-min` minutes with `new-per-download` new readings each time, and `analyzers` simulated
 * ASTM analyzers each sending `results-per-hour` results. Measured over `seconds` of wall time
 * after a warm-up (which takes the meters' first downloads), extrapolated to a day of the load.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { freePort } from '../../test/helpers/mosquitto.ts';
import { Daemon, ROOT, sleep, tempDir } from './lib.ts';

const args = process.argv.slice(2);
const flag = (name: string, fallback: number): number => {
  const hit = args.find((a) => a.startsWith(`--${name}=`));
  const value = hit ? Number(hit.slice(name.length + 3)) : fallback;
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name}: a positive number`);
  return value;
};
const SECONDS = Number(args.find((a) => !a.startsWith('--')) ?? 120);
const load = args.find((a) => a.startsWith('--load='))?.slice(7) ?? 'demo';
if (load !== 'demo' && load !== 'clinic') throw new Error('--load: demo or clinic');
const speed = load === 'clinic' ? flag('speed', 60) : 1;

function bytesUnder(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    n += e.isDirectory() ? bytesUnder(p) : statSync(p).size;
  }
  return n;
}

/** A meter's stored readings: one every few hours going back from 2026-01-12, a tenth control runs. */
function meterMemory(n: number, seed: number): Array<{ time: string; value: number; control?: boolean }> {
  const start = Date.UTC(2026, 0, 12, 8, 0, 0);
  return Array.from({ length: n }, (_, i) => {
    const time = new Date(start - (n - i) * 5 * 3600_000 - seed * 60_000).toISOString().slice(0, 19);
    return { time, value: 70 + ((i * 37 + seed * 11) % 160), ...(i % 10 === 9 ? { control: true } : {}) };
  });
}

function clinicDevices(): unknown[] {
  const meters = flag('meters', 10);
  const analyzers = flag('analyzers', 2);
  const downloadS = (flag('download-min', 15) * 60) / speed;
  const newPerDownload = flag('new-per-download', 3);
  const resultsPerHour = flag('results-per-hour', 100);
  const memory = flag('memory', 150);
  return [
    ...Array.from({ length: meters }, (_, i) => ({
      id: `ward-meter-${i + 1}`,
      driver: 'onetouch-ultra2',
      timezone: 'Europe/Copenhagen',
      poll_interval: downloadS,
      transport: {
        type: 'simulated',
        simulator: { unit: 'mg/dL', timezone: 'Europe/Copenhagen', new_reading_every_s: downloadS / newPerDownload, memory: meterMemory(memory, i) },
      },
    })),
    ...Array.from({ length: analyzers }, (_, i) => ({
      id: `lab-analyzer-${i + 1}`,
      driver: 'astm',
      transport: { type: 'simulated', simulator: { dialect: 'roche-cobas-c111', count: 0, every_s: 3600 / resultsPerHour / speed, seed: i + 1, timezone: 'UTC' } },
    })),
  ];
}

const demo = parse(readFileSync(join(ROOT, 'config/demo.yaml'), 'utf8')) as Record<string, unknown> & { devices: unknown[] };
const devices = load === 'clinic' ? clinicDevices() : demo.devices;
const dir = tempDir('poctd-growth-');
const config = {
  ...demo,
  devices,
  store: { path: join(dir, 'poctd.db') },
  log: { level: 'warn' },
  mqtt: { base_topic: 'poct', embedded: { port: await freePort(), ws_port: await freePort() } },
};
const daemon = new Daemon(dir, stringify(config));
await daemon.start(config.mqtt.embedded.port);
const size = (): number => bytesUnder(dir);
await sleep(20_000);
const before = size();
await sleep(SECONDS * 1000);
const after = size();
await daemon.stop();
const loadDays = (SECONDS * speed) / 86_400;
const perDeviceDay = (after - before) / loadDays / devices.length;
console.log(
  JSON.stringify({
    load,
    devices: devices.length,
    seconds: SECONDS,
    speed,
    grew_bytes: after - before,
    per_device_per_day_mb: Number((perDeviceDay / 1048576).toFixed(2)),
    all_devices_per_day_mb: Number(((perDeviceDay * devices.length) / 1048576).toFixed(1)),
  }),
);
