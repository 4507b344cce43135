#!/usr/bin/env node
// Idle memory of the daemon: writes a config with N simulated OneTouch Ultra 2 meters (no
// poll_interval, so they sit idle once connected), the embedded broker on free loopback ports and
// the store in a temporary directory; starts `poctd run` on it, waits for the "poctd running" log
// line, lets it settle, then prints VmRSS from /proc/<pid>/status a few times. Linux only.
//
// Two figures: VmRSS 3 s after the "running" line (start-up: the heap still holds what start-up
// left, e.g. what 50 first downloads allocated), and the idle figure after `--settle-ms`. V8 gives
// that back by itself once the process is quiet: its memory reducer runs about 8 s after the last
// full collection of start-up. The default settle waits past it.
//
//   node scripts/measure-idle-rss.mjs [--devices 50] [--samples 5] [--settle-ms 12000] [-- COMMAND...]
//
// COMMAND starts poctd and gets `run --config FILE` appended; the default is the compiled
// package under plain Node (`node bin/poctd.js`, after `npm run build`). For the source under tsx:
//   node scripts/measure-idle-rss.mjs -- node --import tsx cli/main.ts
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const repo = resolve(fileURLToPath(new URL('..', import.meta.url)));
const split = process.argv.indexOf('--');
const own = split === -1 ? process.argv.slice(2) : process.argv.slice(2, split);
const command = split === -1 ? [process.execPath, 'bin/poctd.js'] : process.argv.slice(split + 1);
const { values } = parseArgs({
  args: own,
  options: {
    devices: { type: 'string', default: '50' },
    samples: { type: 'string', default: '5' },
    'settle-ms': { type: 'string', default: '12000' },
    'timeout-ms': { type: 'string', default: '60000' },
  },
});
const deviceCount = Number(values.devices);
const sampleCount = Number(values.samples);
const settleMs = Number(values['settle-ms']);
const timeoutMs = Number(values['timeout-ms']);
if (!Number.isInteger(deviceCount) || deviceCount < 0) throw new Error(`--devices must be a whole number, not ${values.devices}`);
if (!Number.isInteger(sampleCount) || sampleCount < 1) throw new Error(`--samples must be at least 1, not ${values.samples}`);
if (command.length === 0) throw new Error('nothing after --: give the command that starts poctd');

function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

function vmRssKiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const dir = mkdtempSync(join(tmpdir(), 'poctd-idle-rss-'));
const devices = Array.from({ length: deviceCount }, (_, i) => {
  const n = String(i + 1).padStart(3, '0');
  // The meter's serial format: 9 characters A-Z/0-9 ending in Y.
  const serial = `SIM${String(i + 1).padStart(5, '0')}Y`;
  return [
    `  - id: idle-ultra2-${n}`,
    `    driver: onetouch-ultra2`,
    `    timezone: Europe/Copenhagen`,
    `    transport:`,
    `      type: simulated`,
    `      simulator: { serial: ${serial}, timezone: Europe/Copenhagen }`,
  ].join('\n');
});
const config = join(dir, 'poctd.yaml');
writeFileSync(
  config,
  [
    'site: idle-rss',
    'mqtt:',
    `  embedded: { port: ${await freePort()}, ws_port: 0 }`,
    'store: { path: poctd.db }',
    // The dashboard too, on a free port: it is part of what a default daemon holds in memory.
    `http: { port: ${await freePort()} }`,
    'log: { level: info }',
    deviceCount ? 'devices:' : 'devices: []',
    ...devices,
    '',
  ].join('\n'),
);

const [file, ...args] = command;
const child = spawn(file, [...args, 'run', '--config', config], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
let stdout = '';
let stderr = '';
child.stderr.on('data', (d) => (stderr += d.toString()));
const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));

let code = 0;
try {
  const started = Date.now();
  const running = await new Promise((resolveRunning, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "poctd running" line within ${timeoutMs} ms`)), timeoutMs);
    child.stdout.on('data', (d) => {
      stdout += d.toString();
      if (stdout.includes('poctd running')) {
        clearTimeout(timer);
        resolveRunning(Date.now() - started);
      }
    });
    exited.then(({ code: c, signal }) => {
      clearTimeout(timer);
      reject(new Error(`poctd exited (${signal ?? c}) before it was running:\n${stderr}${stdout}`));
    });
  });
  const startUpAfterMs = Math.min(3000, settleMs);
  await sleep(startUpAfterMs);
  const startUp = vmRssKiB(child.pid);
  await sleep(settleMs - startUpAfterMs);
  // A device that did not start would make the figure look better than it is.
  const complaints = stdout.split('\n').filter((line) => /"level":(4|5|6)\d/.test(line));
  if (complaints.length) throw new Error(`poctd logged warnings or errors:\n${complaints.join('\n')}`);
  const samples = [];
  for (let i = 0; i < sampleCount; i++) {
    if (i > 0) await sleep(1000);
    samples.push(vmRssKiB(child.pid));
  }
  const mib = (kib) => (kib / 1024).toFixed(1);
  const sorted = [...samples].sort((a, b) => a - b);
  console.log(`command: ${command.join(' ')} run --config <${deviceCount} simulated onetouch-ultra2>`);
  console.log(`running after ${running} ms; VmRSS ${startUpAfterMs} ms after that (start-up): ${mib(startUp)} MiB`);
  console.log(`VmRSS samples 1 s apart after ${settleMs} ms: ${samples.map(mib).join(' ')} MiB`);
  console.log(`idle VmRSS: median ${mib(sorted[Math.floor(sorted.length / 2)])} MiB, max ${mib(sorted[sorted.length - 1])} MiB`);
} catch (error) {
  console.error(`measure-idle-rss: ${error.message}`);
  code = 1;
} finally {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    const stop = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(stop);
  }
  rmSync(dir, { recursive: true, force: true });
}
process.exitCode = code;
