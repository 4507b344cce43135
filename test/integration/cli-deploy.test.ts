import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { tempDir } from '../helpers/daemon.ts';
import { freePort } from '../helpers/mosquitto.ts';

/** What ships in deploy/ is what the README's Deploying section installs: the unit, the udev rules, the package. */
const repo = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const cleanups = useCleanups();
const UNIT = join(repo, 'deploy', 'poctd.service');
const RULES = readFileSync(join(repo, 'deploy', '70-poctd.rules'), 'utf8');
const unitText = readFileSync(UNIT, 'utf8');
const unitValue = (key: string): string[] => [...unitText.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!);
const hasSystemdAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;
const isRoot = process.getuid?.() === 0;

describe('deploy/poctd.service', () => {
  // Skipped (and so reported, never counted as passed) where the tool or root is missing; CI has both.
  it.runIf(hasSystemdAnalyze)('passes systemd-analyze verify (needs systemd-analyze)', () => {
    const r = spawnSync('systemd-analyze', ['verify', UNIT], { encoding: 'utf8' });
    expect(r.stderr.trim()).toBe('');
    expect(r.status).toBe(0);
  });

  it('keeps the password out of the unit, the state in StateDirectory, and the hardening on', () => {
    expect(unitValue('Environment')).toEqual([]);
    expect(unitValue('EnvironmentFile')).toEqual(['-/etc/poctd/poctd.env']);
    expect(unitValue('StateDirectory')).toEqual(['poctd']);
    expect(unitValue('ProtectSystem')).toEqual(['strict']);
    expect(unitValue('NoNewPrivileges')).toEqual(['yes']);
    expect(unitValue('DevicePolicy')).toEqual(['closed']);
    expect(unitValue('DeviceAllow')).toEqual(expect.arrayContaining(['char-ttyUSB rw', 'char-hidraw rw']));
    expect(unitValue('ExecReload')).toEqual(['/bin/kill -HUP $MAINPID']);
  });

  it.runIf(isRoot)("runs its ExecStart as an unprivileged user in a state directory it owns, and comes up (needs root to switch user)", async () => {
    // The compiled package, as installed: build when dist/ is missing or older than the source.
    const entry = join(repo, 'dist', 'cli', 'main.js');
    const newest = (p: string): number => (statSync(p).isDirectory() ? Math.max(statSync(p).mtimeMs, ...readdirSync(p).map((n) => newest(join(p, n)))) : statSync(p).mtimeMs);
    if (!existsSync(entry) || statSync(entry).mtimeMs < Math.max(...['src', 'drivers', 'cli'].map((d) => newest(join(repo, d))))) {
      const build = spawnSync('npm', ['run', 'build'], { cwd: repo, encoding: 'utf8' });
      expect(build.status, build.stderr).toBe(0);
    }
    const state = tempDir();
    chownSync(state, 65534, 65534); // nobody: StateDirectory= makes it the service user's
    const etc = tempDir();
    chmodSync(etc, 0o755); // /etc/poctd
    const [port, wsPort] = [await freePort(), await freePort()];
    const config = join(etc, 'poctd.yaml');
    writeFileSync(config, `site: deploy-test\nstore: { path: ${state}/poctd.db }\nmqtt: { embedded: { port: ${port}, ws_port: ${wsPort}, username: poctd, password: "\${POCTD_MQTT_PASSWORD}" } }\n`);
    chmodSync(config, 0o644); // root:poctd 0640 in /etc/poctd; readable by the service user either way
    const env = Object.fromEntries(readFileSync(join(repo, 'deploy', 'poctd.env.example'), 'utf8').split('\n').filter((l) => /^[A-Z_]+=/.test(l)).map((l) => l.split('=', 2) as [string, string]));
    const [execStart] = unitValue('ExecStart');
    const argv = execStart!.replaceAll('/opt/poctd', repo).replaceAll('/etc/poctd/poctd.yaml', config).split(' ');
    expect(argv[0]).toBe('/usr/bin/node');
    const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', process.execPath, ...argv.slice(1)], {
      cwd: state,
      env: { PATH: process.env.PATH, HOME: state, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((ok) => child.once('close', (code) => ok(code)));
    cleanups.push(async () => {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    });
    const started = Date.now();
    while (!out.includes('poctd running') && child.exitCode === null && Date.now() - started < 30_000) await new Promise((r) => setTimeout(r, 100));
    expect(out).toContain('poctd running');
    // The watch hint logs in as this machine's operator account, never as the daemon's own.
    // (The log line is JSON: its quotes come escaped.)
    expect(out).toContain(`-p ${port} -u operator -P \\"$(cat ${join(state, 'local-operator.secret')})\\"`);
    expect(statSync(join(state, 'poctd.db')).uid).toBe(65534);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 240_000);
});

describe('deploy/70-poctd.rules', () => {
  // A product id may be left out (every product of the vendor: a Zebra printer on the USB printer class).
  const rules = [...RULES.matchAll(/^SUBSYSTEM=="(\w+)", (?:KERNEL=="[\w[\]*-]+", )?ATTRS\{idVendor\}=="([0-9a-f]{4})"(?:, ATTRS\{idProduct\}=="([0-9a-f]{4})")?, GROUP="(\w+)", MODE="0660"$/gm)].map((m) => ({
    subsystem: m[1]!, usb: `${m[2]}:${m[3] ?? '*'}`, group: m[4]!,
  }));

  it('every rule line is well formed', () => {
    const lines = RULES.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
    expect(lines).toHaveLength(rules.length);
  });

  it('gives the service user every USB id a driver can read: serial chips to dialout, HID meters to plugdev, USB printers to lp', () => {
    for (const d of drivers) {
      const hid = d.transports.includes('hid');
      const printer = d.transports.includes('usb-printer');
      for (const u of d.usb) {
        if (u.unsupported) continue;
        const want = hid ? { subsystem: 'hidraw', group: 'plugdev' } : printer ? { subsystem: 'usbmisc', group: 'lp' } : { subsystem: 'tty', group: 'dialout' };
        expect(rules, `${d.id} ${u.vendorId}:${u.productId}`).toContainEqual({ ...want, usb: `${u.vendorId}:${u.productId}` });
      }
    }
  });

  it('names no USB id that no driver names', () => {
    const named = new Set(drivers.flatMap((d) => d.usb.filter((u) => !u.unsupported).map((u) => `${u.vendorId}:${u.productId}`)));
    expect(rules.filter((r) => !named.has(r.usb))).toEqual([]);
  });
});

describe('the package', () => {
  it('ships what it runs and the deploy files, nothing of tests, CI or lint', () => {
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: repo, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const files = (JSON.parse(r.stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path);
    expect(files).toEqual(expect.arrayContaining(['bin/poctd.js', 'deploy/poctd.service', 'deploy/70-poctd.rules', 'deploy/poctd.env.example', 'config/example.yaml', 'schemas/config.schema.json']));
    expect(files.filter((f) => /^(test|scripts|\.ci)\/|eslint|vitest|stryker|tsconfig/.test(f))).toEqual([]);
  });
});
