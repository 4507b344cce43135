/**
 * `tsx scripts/faults/growth.ts [seconds]`: the database's growth under the demo load
 * (config/demo.yaml's devices, simulated) measured over `seconds` (default 120) after a warm-up,
 * extrapolated per device per day: SQLite file + WAL + blob store. For the README.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { freePort } from '../../test/helpers/mosquitto.ts';
import { Daemon, ROOT, sleep, tempDir } from './lib.ts';

const SECONDS = Number(process.argv[2] ?? 120);

function bytesUnder(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    n += e.isDirectory() ? bytesUnder(p) : statSync(p).size;
  }
  return n;
}

const demo = parse(readFileSync(join(ROOT, 'config/demo.yaml'), 'utf8')) as Record<string, unknown> & { devices: unknown[] };
const dir = tempDir('poctd-growth-');
const config = {
  ...demo,
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
const devices = demo.devices.length;
const perDeviceDay = ((after - before) / SECONDS) * 86_400 / devices;
console.log(JSON.stringify({ devices, seconds: SECONDS, grew_bytes: after - before, per_device_per_day_mb: Number((perDeviceDay / 1048576).toFixed(1)) }));
