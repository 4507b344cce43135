import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { drivers, findDriver } from '../../drivers/index.ts';
import { hashPatientId } from '../../src/records/privacy.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import { Store } from '../../src/store/store.ts';
import type { ResultRecord } from '../../src/records/types.ts';
import { tempDir, ULTRA2_MEMORY } from '../helpers/daemon.ts';
import { freePort, Mosquitto } from '../helpers/mosquitto.ts';
import { eventually, Subscriber } from '../helpers/subscriber.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { unreadBytesAt } from '../helpers/tcp-queue.ts';

import { itShared, sharedFixture } from '../helpers/shared-fixtures.ts';

/** `poctd …` as a user runs it: a separate process on the real entry point. */
const repo = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const ULTRA2_REPLY = sharedFixture('glucose/onetouch-ultra2-dmp-reply.txt');
/** A real meter's reply, from ../shared: the path from the repository root, where poctd runs. */
const FIXTURE = ULTRA2_REPLY.fromRepo;
/** A capture this project made: where a test needs only some readable capture file. */
const OWN_CAPTURE = 'test/fixtures/onetouch-ultra2/simulator-session-mmol-control/capture.txt';
const REPLAY = ['replay', '--driver', 'onetouch-ultra2', '--timezone', 'Europe/Copenhagen'];

const cleanups = useCleanups();

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A running `poctd` with what it wrote so far. */
interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<Finished>;
}

function spawnPoctd(args: string[], options: { input?: Buffer | string } = {}): Running {
  const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], {
    cwd: repo,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<Finished>((resolveExit) =>
    child.once('close', (code, signal) => resolveExit({ code, signal, stdout, stderr })),
  );
  child.stdin!.on('error', () => undefined);
  if (options.input !== undefined) child.stdin!.end(options.input);
  else child.stdin!.end();
  cleanups.push(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await exited;
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Runs `poctd args` to the end (killed after `timeoutMs`). */
async function poctd(args: string[], options: { input?: Buffer | string; timeoutMs?: number } = {}): Promise<Finished> {
  const running = spawnPoctd(args, options);
  const timer = setTimeout(() => running.child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
  try {
    return await running.exited;
  } finally {
    clearTimeout(timer);
  }
}


/** A config file for one simulated Ultra 2 (`bench1`); returns its path. Lines are YAML as written. */
function meterConfigFile(o: { site: string; mqtt: string; top?: string[]; device?: string[]; simulator: string }): string {
  const file = join(tempDir(), 'poctd.yaml');
  const lines = [
    `site: ${o.site}`,
    `mqtt: { ${o.mqtt} }`,
    'store: { path: ./poctd.db }',
    ...(o.top ?? []),
    'devices:',
    '  - id: bench1',
    '    driver: onetouch-ultra2',
    ...(o.device ?? []).map((l) => `    ${l}`),
    '    transport:',
    '      type: simulated',
    `      simulator: { ${o.simulator} }`,
    '',
  ];
  writeFileSync(file, lines.join('\n'));
  return file;
}

function jsonLines(text: string): unknown[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as unknown);
}

/** No stack trace in what the user sees: errors are one clear line each. */
function expectNoStack(text: string): void {
  expect(text).not.toMatch(/\n\s+at .+\(.+:\d+:\d+\)/);
}

function expectGlucose(stdout: string, values: number[]): ResultRecord[] {
  const records = jsonLines(stdout) as ResultRecord[];
  for (const r of records) expect(schemaProblems('poct.result/2', r)).toEqual([]);
  expect(records.map((r) => r.observations[0]!.value).sort((a, b) => Number(a) - Number(b))).toEqual(values);
  expect(records.every((r) => r.observations[0]!.unit === 'mg/dL')).toBe(true);
  return records;
}

/** A deterministic stand-in for "some binary file": a PNG signature and pseudo-random bytes. */
function garbageBytes(length: number): Buffer {
  const out = Buffer.alloc(length);
  Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex').copy(out);
  let x = 0x2545f491;
  for (let i = 16; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

describe('poctd replay', () => {
  itShared([ULTRA2_REPLY], 'decodes a capture file into poct.result/2 JSON lines', async () => {
    const r = await poctd([...REPLAY, FIXTURE]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const records = expectGlucose(r.stdout, [81, 105, 176]);
    expect(records).toHaveLength(3);
    // The device's naive clock read in the zone given: 21 March 2015 is winter time, +01:00.
    expect(records.find((x) => x.observations[0]!.value === 105)!.observed_at).toBe('2015-03-21T16:42:11+01:00');
    expect(new Set(records.map((x) => x.id)).size).toBe(3);
  });

  it('flags a reading made in the repeated hour of a DST change', async () => {
    const r = await poctd([
      'replay',
      '--driver',
      'onetouch-ultra2',
      '--timezone',
      'Europe/Copenhagen',
      'test/fixtures/onetouch-ultra2/simulator-session-mmol-control/capture.txt',
    ]);
    expect(r.code).toBe(0);
    const records = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as ResultRecord);
    const flagged = records.filter((x) => x.flags.includes('device-time:repeated-hour'));
    expect(flagged.map((x) => x.device_time)).toEqual(['2025-10-26T02:30:00']);
  });

  itShared([ULTRA2_REPLY], 'reads standard input with -', async () => {
    const r = await poctd([...REPLAY, '-'], { input: ULTRA2_REPLY.bytes() });
    expect(r.code).toBe(0);
    const records = expectGlucose(r.stdout, [81, 105, 176]);
    const fromFile = expectGlucose((await poctd([...REPLAY, FIXTURE])).stdout, [81, 105, 176]);
    // Same bytes, same record ids and capture hash.
    expect(records.map((x) => [x.id, x.raw.sha256])).toEqual(fromFile.map((x) => [x.id, x.raw.sha256]));
  });

  it('exits 2 on a file that holds no records, naming the driver, with nothing on stdout', async () => {
    const dir = tempDir();
    const png = join(dir, 'photo.png');
    writeFileSync(png, garbageBytes(4096));
    const r = await poctd([...REPLAY, png]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('onetouch-ultra2');
    expect(r.stderr).toMatch(/holds no onetouch-ultra2 records/);
    expectNoStack(r.stderr);

    const empty = await poctd([...REPLAY, '-'], { input: '' });
    expect(empty.code).toBe(2);
    expect(empty.stdout).toBe('');
    expect(empty.stderr).toMatch(/standard input holds no onetouch-ultra2 records/);
  });

  it('exits 2 with a clear message on a malformed transcript', async () => {
    const r = await poctd([...REPLAY, '-'], { input: 'H 444d40\nD 4050a\n' });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/not a valid transcript: transcript line 2: odd number of hex digits/);
    expectNoStack(r.stderr);
  });

  itShared([ULTRA2_REPLY], 'exits 3 on a capture with one corrupted line: the good records out, the problem on stderr', async () => {
    const text = ULTRA2_REPLY.bytes().toString('latin1');
    // The 81 mg/dL line with its checksum off by one.
    const corrupted = text.replace(/(" {2}081 ".*) 09B6/, '$1 09B7');
    expect(corrupted).not.toBe(text);
    const file = join(tempDir(), 'corrupted.txt');
    writeFileSync(file, corrupted, 'latin1');
    const r = await poctd([...REPLAY, file]);
    expect(r.code).toBe(3);
    const records = expectGlucose(r.stdout, [105, 176]);
    expect(records).toHaveLength(2);
    expect(r.stderr).toMatch(/onetouch-ultra2: bad-checksum/);
    expect(r.stderr).toMatch(/2 records decoded, \d+ problems? above/);
    expectNoStack(r.stderr);
  });

  it('exits 1 on usage mistakes: unknown driver, missing FILE, unreadable path, bad time zone', async () => {
    const unknown = await poctd(['replay', '--driver', 'glucotron-9000', OWN_CAPTURE]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain(`unknown driver "glucotron-9000" (known: ${drivers.map((d) => d.id).join(', ')})`);
    expect(unknown.stdout).toBe('');

    const noFile = await poctd(['replay', '--driver', 'onetouch-ultra2']);
    expect(noFile.code).toBe(1);
    expect(noFile.stderr).toMatch(/replay needs a FILE, or - for standard input/);

    const noDriver = await poctd(['replay', OWN_CAPTURE]);
    expect(noDriver.code).toBe(1);
    expect(noDriver.stderr).toMatch(/replay needs --driver ID/);

    const missing = await poctd([...REPLAY, '/nonexistent/capture.txt']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/cannot read \/nonexistent\/capture\.txt: ENOENT/);

    const directory = await poctd([...REPLAY, tempDir()]);
    expect(directory.code).toBe(1);
    expect(directory.stderr).toMatch(/cannot read .*: EISDIR/);

    const zone = await poctd(['replay', '--driver', 'onetouch-ultra2', '--timezone', 'Mars/Olympus', OWN_CAPTURE]);
    expect(zone.code).toBe(1);
    expect(zone.stderr).toMatch(/unknown time zone "Mars\/Olympus"/);
    for (const r of [unknown, noFile, noDriver, missing, directory, zone]) expectNoStack(r.stderr);
  });

  it('--option gives the device options its config has: a CLINITEK Status set to MDY replays as it decoded live', async () => {
    const file = join(tempDir(), 'clinitek.txt');
    // One record dated 05-06-2021: 5 June in the reader's default DMY, 6 May when it is set to MDY.
    writeFileSync(
      file,
      '1822,05-06-2021, 5:33PM,,2756,,,,,Multistix 10 SG,Not Entered,Not Entered,GLU,Negative,,BIL,Negative,,KET,Negative,,SG ,1.020,,BLD,Negative,,pH ,7.0,,PRO,Negative,,UBG,0.2 E.U./dL,,NIT,Negative,,LEU,Negative,\r\n',
    );
    const base = ['replay', '--driver', 'clinitek-status', '--timezone', 'UTC'];
    const dmy = await poctd([...base, file]);
    const mdy = await poctd([...base, '--option', 'date_order=MDY', file]);
    expect((jsonLines(dmy.stdout) as ResultRecord[])[0]!.device_time).toBe('2021-06-05T17:33:00');
    expect((jsonLines(mdy.stdout) as ResultRecord[])[0]!.device_time).toBe('2021-05-06T17:33:00');
    const bad = await poctd([...base, '--option', 'date_order=DDMM', file]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/options\.date_order must be DMY, MDY or YMD/);
    const malformed = await poctd([...base, '--option', 'date_order', file]);
    expect(malformed.code).toBe(1);
    expect(malformed.stderr).toMatch(/--option expects key=value/);
    for (const r of [bad, malformed]) expectNoStack(r.stderr);
  });
});

describe('poctd replay: problems and pipes', () => {
  it('a binary file prints one line per distinct problem, with its count, not one per garbage chunk', async () => {
    const file = join(tempDir(), 'photo.png');
    writeFileSync(file, garbageBytes(20_000));
    const r = await poctd(['replay', '--driver', 'astm', file]);
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n');
    const reasons = lines.slice(0, -1).map((l) => /: astm: ([a-z-]+)/.exec(l)?.[1]);
    expect(reasons.every((x) => x !== undefined)).toBe(true);
    expect(new Set(reasons).size).toBe(reasons.length);
    expect(lines.length).toBeLessThan(12);
    expect(r.stderr).toMatch(/ \(\d+ times, \d+ bytes\)/);
    const total = Number(/holds no astm records \((\d+) problems above\)/.exec(lines.at(-1)!)?.[1]);
    const counted = lines.slice(0, -1).reduce((sum, l) => sum + Number(/\((\d+) times/.exec(l)?.[1] ?? 1), 0);
    expect(total).toBeGreaterThan(reasons.length);
    expect(counted).toBe(total);
  });

  it('`replay … | head -1` ends quietly: no EPIPE trace, exit 0', () => {
    const dir = tempDir();
    const file = join(dir, 'many.txt');
    // 3000 strips, each its own record number: megabytes of JSON lines, far past a pipe's buffer.
    const strips = Array.from({ length: 3000 }, (_, i) =>
      `${1000 + i},05-06-2021, 5:33PM,,2756,,,,,Multistix 10 SG,Not Entered,Not Entered,GLU,Negative,,BIL,Negative,,KET,Negative,,SG ,1.020,,BLD,Negative,,pH ,7.0,,PRO,Negative,,UBG,0.2 E.U./dL,,NIT,Negative,,LEU,Negative,\r\n`);
    writeFileSync(file, strips.join(''));
    const script = `node --import tsx cli/main.ts replay --driver clinitek-status --timezone UTC ${file} | head -1; echo "poctd exit \${PIPESTATUS[0]}" >&2`;
    const r = spawnSync('bash', ['-c', script], { cwd: repo, encoding: 'utf8', timeout: 60_000 });
    expect(r.stdout.split('\n').filter(Boolean)).toHaveLength(1);
    expect(JSON.parse(r.stdout) as { schema: string }).toMatchObject({ schema: 'poct.result/2' });
    expect(r.stderr.trim()).toBe('poctd exit 0');
  });
});

describe('poctd replay: privacy and --config', () => {
  const URINE = 'test/fixtures/clinitek-status/simulator-send-all-en-crlf/capture.bin';
  const URINE_BASE = ['replay', '--driver', 'clinitek-status', '--timezone', 'Europe/Madrid', '--device-id', 'urine-1'];
  const patientIds = (stdout: string): Array<string | null> => (jsonLines(stdout) as ResultRecord[]).map((r) => r.patient?.id ?? null);

  function urineConfig(privacy: string, extra: string[] = []): string {
    const file = join(tempDir(), 'poctd.yaml');
    writeFileSync(
      file,
      ['site: clinic-replay', 'timezone: UTC', `privacy: ${privacy}`, 'devices:', '  - id: urine-1', '    driver: clinitek-status',
        '    timezone: Europe/Madrid', ...extra, '    transport: { type: serial, path: /dev/ttyUSB9 }', ''].join('\n'),
    );
    return file;
  }

  it('without --config prints no clear patient id: with no key to hash with, ids are omitted', async () => {
    const r = await poctd([...URINE_BASE, URINE]);
    expect(r.code).toBe(3); // the capture also holds the reader's E58 error record
    expect(r.stdout).not.toMatch(/P-000\d/);
    const records = jsonLines(r.stdout) as ResultRecord[];
    expect(records.length).toBeGreaterThan(3);
    expect(records.filter((x) => x.patient !== null).every((x) => x.patient!.id === null)).toBe(true);
    expect(records.every((x) => x.site === 'replay')).toBe(true);
  });

  it('with --config prints what the daemon would publish: its site, and each privacy policy as configured', async () => {
    const key = 'a-site-wide-secret-key';
    const hashed = await poctd([...URINE_BASE, '--config', urineConfig(`{ patient_id: hash, hash_key: ${key} }`), URINE]);
    expect(hashed.stderr).not.toMatch(/omitted|P-000/);
    expect(hashed.code).toBe(3);
    expect(hashed.stdout).not.toMatch(/P-000\d/);
    const records = jsonLines(hashed.stdout) as ResultRecord[];
    expect(records.every((x) => x.site === 'clinic-replay')).toBe(true);
    const ids = records.map((x) => x.patient?.id).filter((id): id is string => typeof id === 'string');
    expect(ids).toContain(hashPatientId('P-0001', key));
    expect(ids.every((id) => /^hmac:[0-9a-f]{32}$/.test(id))).toBe(true);

    const published = await poctd([...URINE_BASE, '--config', urineConfig('{ patient_id: publish }'), URINE]);
    expect(patientIds(published.stdout)).toContain('P-0001');
    const omitted = await poctd([...URINE_BASE, '--config', urineConfig('{ patient_id: omit }'), URINE]);
    expect(omitted.stdout).not.toMatch(/P-000\d/);
    // hash without a configured key: the daemon's key is in its database, so replay omits and says why.
    const noKey = await poctd([...URINE_BASE, '--config', urineConfig('{ patient_id: hash }'), URINE]);
    expect(noKey.code).toBe(3);
    expect(noKey.stdout).not.toMatch(/P-000\d/);
    expect(noKey.stderr).toMatch(/patient ids omitted: .*privacy\.hash_key/);
  });

  it("takes a configured device's driver, zone and options from --config when --device-id names it", async () => {
    const file = join(tempDir(), 'clinitek.txt');
    writeFileSync(
      file,
      '1822,05-06-2021, 5:33PM,,2756,,,,,Multistix 10 SG,Not Entered,Not Entered,GLU,Negative,,BIL,Negative,,KET,Negative,,SG ,1.020,,BLD,Negative,,pH ,7.0,,PRO,Negative,,UBG,0.2 E.U./dL,,NIT,Negative,,LEU,Negative,\r\n',
    );
    const config = urineConfig('{ patient_id: omit }', ['    options: { date_order: MDY }']);
    const r = await poctd(['replay', '--config', config, '--device-id', 'urine-1', file]);
    expect(r.stderr).toBe('');
    const [record] = jsonLines(r.stdout) as ResultRecord[];
    expect(record!.device_time).toBe('2021-05-06T17:33:00');
    expect(record!.observed_at).toBe('2021-05-06T17:33:00+02:00'); // Europe/Madrid in May, not the top-level UTC
    // The command line still wins over the config.
    const dmy = await poctd(['replay', '--config', config, '--device-id', 'urine-1', '--option', 'date_order=DMY', '--timezone', 'UTC', file]);
    expect((jsonLines(dmy.stdout) as ResultRecord[])[0]!.observed_at).toBe('2021-06-05T17:33:00+00:00');
    const broken = join(tempDir(), 'broken.yaml');
    writeFileSync(broken, 'privacy: { patient_id: sometimes }\n');
    const bad = await poctd(['replay', '--config', broken, '--driver', 'clinitek-status', file]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('privacy.patient_id: must be one of publish, hash, omit');
    expectNoStack(bad.stderr);
  });

  it('replays exactly what the store committed: same ids, raw reference and privacy', async () => {
    const bytes = readFileSync(join(repo, URINE));
    const store = new Store(join(tempDir(), 'poctd.db'));
    const capture = store.putCaptureSync('raw', bytes);
    const decoded = findDriver('clinitek-status')!.decode({ kind: 'raw', bytes }, { deviceId: 'urine-1', timezone: 'Europe/Madrid' });
    const key = 'a-site-wide-secret-key';
    const committed = store.commit({
      site: 'clinic-replay', deviceId: 'urine-1', driver: 'clinitek-status', capture, drafts: decoded.drafts,
      receivedAt: new Date(), timezone: 'Europe/Madrid', privacy: { patient_id: 'hash', hash_key: key },
    }).inserted as ResultRecord[];
    store.close();
    const r = await poctd([...URINE_BASE, '--config', urineConfig(`{ patient_id: hash, hash_key: ${key} }`), URINE]);
    const replayed = jsonLines(r.stdout) as ResultRecord[];
    const comparable = (x: ResultRecord): unknown => ({ ...x, received_at: null });
    expect(replayed.map(comparable)).toEqual(committed.map(comparable));
  });
});

describe('poctd check-config', () => {
  it('accepts the demo config', async () => {
    const r = await poctd(['check-config', 'config/demo.yaml']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/config\/demo\.yaml: ok \(4 devices\)/);
  });

  const BROKEN = [
    'site: clinic-a', //                       1
    'mqtt:', //                                2
    '  url: mqtt://127.0.0.1:1883', //         3
    '  keepalive: 30', //                      4  unknown key (keepalive_s)
    'privacy:', //                             5
    '  patient_id: sometimes', //              6  bad enum
    'devices:', //                             7
    '  - id: bench1', //                       8
    '    driver: onetouch-ultra2', //          9
    '    transport:', //                       10
    '      type: serial', //                   11 path missing
    '',
  ].join('\n');

  it('prints every problem of a broken file with file:line:col and its path; exit 1', async () => {
    const file = join(tempDir(), 'broken.yaml');
    writeFileSync(file, BROKEN);
    const r = await poctd(['check-config', file]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toEqual([
      `${file}:4:3: mqtt.keepalive: unknown key (did you mean "keepalive_s"?)`,
      `${file}:6:3: privacy.patient_id: must be one of publish, hash, omit`,
      `${file}:10:5: devices[0].transport.path: required`,
      `${file}: 3 problems`,
    ]);
  });

  it('reports a missing file and a YAML syntax error with their location', async () => {
    const missing = await poctd(['check-config', '/nonexistent/poctd.yaml']);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim()).toBe('file not found: /nonexistent/poctd.yaml');

    const file = join(tempDir(), 'syntax.yaml');
    writeFileSync(file, 'site: a\nmqtt: { url: mqtt://x\n');
    const syntax = await poctd(['check-config', file]);
    expect(syntax.code).toBe(1);
    expect(syntax.stderr).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:\\d+:\\d+: YAML syntax error`));
    expectNoStack(syntax.stderr);

    const usage = await poctd(['check-config']);
    expect(usage.code).toBe(1);
    expect(usage.stderr).toMatch(/check-config needs a FILE/);
  });

  it('takes the file as --config FILE, like run, or as the argument; two different files are refused', async () => {
    const flag = await poctd(['check-config', '--config', 'config/demo.yaml']);
    expect(flag.code).toBe(0);
    expect(flag.stdout).toMatch(/config\/demo\.yaml: ok \(4 devices\)/);
    const short = await poctd(['check-config', '-c', 'config/demo.yaml']);
    expect(short.stdout).toBe(flag.stdout);
    const both = await poctd(['check-config', '--config', 'config/demo.yaml', 'config/example.yaml']);
    expect(both.code).toBe(1);
    expect(both.stderr).toMatch(/two config files given/);
  });

  it('refuses what run refuses, with the same lines: driver options, simulator options, TLS files, the store path', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'plain-file'), '');
    const file = join(dir, 'whole.yaml');
    writeFileSync(
      file,
      [
        'store: { path: ./plain-file/poctd.db }', //           1
        'mqtt: { url: "mqtts://127.0.0.1:1", ca: ca.pem }', //  2
        'devices:', //                                          3
        '  - id: a1', //                                        4
        '    driver: astm', //                                  5
        '    options: { dialect: nonesuch }', //                6
        '    transport: { type: tcp-server, port: 45123 }', //  7
        '  - id: m1', //                                        8
        '    driver: onetouch-ultra2', //                       9
        '    options: { reply_timout_ms: 5 }', //               10
        '    transport: { type: simulated, simulator: { units: mg/dL } }', // 11
        '',
      ].join('\n'),
    );
    const check = await poctd(['check-config', file]);
    const run = await poctd(['run', '--config', file]);
    expect(check.code).toBe(1);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(check.stderr);
    const lines = check.stderr.trim().split('\n');
    expect(lines).toEqual([
      `${file}:1:10: store.path: cannot open ${join(dir, 'plain-file/poctd.db')}: ENOTDIR (a path component is not a directory)`,
      `${file}:2:37: mqtt.ca: cannot read ${join(dir, 'ca.pem')}: ENOENT (no such file)`,
      expect.stringMatching(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:6:16: devices\\[0\\]\\.options\\.dialect: must be one of `)),
      `${file}:10:16: devices[1].options.reply_timout_ms: unknown key (did you mean "reply_timeout_ms"?)`,
      `${file}:11:48: devices[1].transport.simulator.units: unknown key (did you mean "unit"?)`,
      `${file}: 5 problems`,
    ]);
  });

  it('run --config with a broken file exits 1 with the problems, not a stack trace', async () => {
    const file = join(tempDir(), 'broken.yaml');
    writeFileSync(file, BROKEN);
    const r = await poctd(['run', '--config', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${file}:10:5: devices[0].transport.path: required`);
    expect(r.stderr).toContain('privacy.patient_id: must be one of publish, hash, omit');
    expectNoStack(r.stderr);
    expect(r.stdout).toBe('');
  });

  it('run with a missing ${ENV} secret names the variable and its place', async () => {
    const file = join(tempDir(), 'env.yaml');
    writeFileSync(file, 'mqtt:\n  url: mqtt://127.0.0.1:1\n  username: poctd\n  password: ${POCTD_TEST_UNSET_PASSWORD}\n');
    const r = await poctd(['run', '--config', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${file}:4:3: mqtt.password: environment variable POCTD_TEST_UNSET_PASSWORD is not set`);
  });
});

describe('poctd drivers, simulate --help, ports, usage', () => {
  it('lists the drivers', async () => {
    const r = await poctd(['drivers']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^onetouch-ultra2\tglucose-meter\tLifeScan OneTouch Ultra 2$/m);
  });

  it('lists a simulator\'s options', async () => {
    const r = await poctd(['simulate', 'onetouch-ultra2', '--help']);
    expect(r.code).toBe(0);
    for (const option of ['serial', 'unit', 'memory', 'off', 'corrupt_next', 'timezone']) expect(r.stdout).toMatch(new RegExp(`^  ${option}\\t`, 'm'));
    const unknown = await poctd(['simulate', 'glucotron-9000']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/known: onetouch-ultra2/);
  });

  it('ports lists what this machine has and does not crash without udev', async () => {
    const r = await poctd(['ports']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Serial ports:$/m);
    expect(r.stdout).toMatch(/^HID devices:$/m);
    expectNoStack(r.stdout + r.stderr);
  });

  it('a mistyped command or option is answered with its message and a suggestion, not the whole usage; exit 1', async () => {
    const unknown = await poctd(['frobnicate']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe("poctd: unknown command 'frobnicate'\n(see `poctd --help`)\n");
    const typo = await poctd(['chek-config', 'config/demo.yaml']);
    expect(typo.code).toBe(1);
    expect(typo.stderr).toMatch(/unknown command 'chek-config'\n\(Did you mean check-config\?\)/);
    const option = await poctd(['check-config', '--cnfig', 'config/demo.yaml']);
    expect(option.code).toBe(1);
    expect(option.stderr).toMatch(/^poctd check-config: unknown option '--cnfig'\n\(Did you mean --config\?\)/);
    const badOption = await poctd(['replay', '--frob', OWN_CAPTURE]);
    expect(badOption.code).toBe(1);
    expect(badOption.stderr).toBe("poctd replay: unknown option '--frob'\n(see `poctd replay --help`)\n");
    for (const r of [unknown, typo, option, badOption]) {
      expect(r.stdout).toBe('');
      expect(r.stderr).not.toMatch(/usage:/i);
    }
  });

  it('extra arguments are refused', async () => {
    const drivers = await poctd(['drivers', 'extra']);
    expect(drivers.code).toBe(1);
    expect(drivers.stderr).toMatch(/^poctd drivers: too many arguments/);
    expect(drivers.stdout).toBe('');
    const replay = await poctd([...REPLAY, OWN_CAPTURE, OWN_CAPTURE]);
    expect(replay.code).toBe(1);
    expect(replay.stderr).toMatch(/too many arguments for 'replay'/);
    expect(replay.stdout).toBe('');
  });

  it('--version, --help, help CMD; poctd alone prints the usage and exits 1', async () => {
    const version = await poctd(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout).toBe(`${(JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string }).version}\n`);
    const help = await poctd(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: poctd <command> \[options\]/);
    expect(help.stdout).toMatch(/exit codes: 0 ok, 1 usage or config error, 2 input not decodable, 3 decoded with problems/);
    const helpReplay = await poctd(['help', 'replay']);
    expect(helpReplay.code).toBe(0);
    expect(helpReplay.stdout).toMatch(/^usage: poctd replay \[options\] \[file\]/);
    expect(helpReplay.stdout).toContain('--device-id <id>');
    expect((await poctd(['replay', '--help'])).stdout).toBe(helpReplay.stdout);
    const bare = await poctd([]);
    expect(bare.code).toBe(1);
    expect(bare.stderr).toMatch(/^usage: poctd <command>/);
  });

  it("every command in the README's command table answers --help with its own usage", async () => {
    const readme = readFileSync(join(repo, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Command line'), readme.indexOf('## Configuration'));
    const names = [...section.matchAll(/^\| `poctd ([a-z-]+)/gm)].map((m) => m[1]!);
    expect(names).toEqual(expect.arrayContaining(['run', 'replay', 'check-config', 'ports', 'simulate', 'drivers']));
    const listed = (await poctd(['--help'])).stdout;
    for (const name of names) {
      const r = await poctd([name, '--help']);
      expect(r.code, `${name} --help: ${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^usage: poctd ${name}\\b`));
      expect(listed).toMatch(new RegExp(`^  ${name}\\b`, 'm'));
    }
  });
});

describe('poctd run', () => {
  it('runs on a config with Mosquitto, logs JSON lines, and SIGTERM stops it cleanly with bridge/state offline', async () => {
    const broker = await Mosquitto.start();
    cleanups.push(() => broker.stop());
    const file = meterConfigFile({
      site: 'cli-test',
      mqtt: `url: "${broker.url}", client_id: cli-test-${process.pid}`,
      top: ['log: { level: info }'],
      device: ['timezone: Europe/Copenhagen'],
      simulator: `serial: GMF600DCY, memory: ${JSON.stringify(ULTRA2_MEMORY)}`,
    });
    const sub = await Subscriber.connect(broker.url);
    cleanups.push(() => sub.close());

    const daemon = spawnPoctd(['run', '--config', file]);
    await eventually('"poctd running" in the log', () => daemon.stdout().includes('poctd running'), 15_000);
    await sub.waitFor('3 results', () => sub.on('poct/device/bench1/result').length >= 3);
    await sub.waitFor('bridge online', () => sub.last<{ state: string }>('poct/bridge/state')?.state === 'online');

    const stoppedAt = Date.now();
    daemon.child.kill('SIGTERM');
    const done = await daemon.exited;
    expect(Date.now() - stoppedAt).toBeLessThan(5000);
    expect(done.signal).toBeNull();
    expect(done.code).toBe(0);
    expect(done.stderr).toBe('');

    // Every line on stdout is a pino JSON line; none carries an error.
    const lines = jsonLines(done.stdout) as Array<{ level: number; msg: string; app: string }>;
    expect(lines.length).toBeGreaterThan(3);
    expect(lines.every((l) => l.app === 'poctd' && typeof l.msg === 'string')).toBe(true);
    expect(lines.filter((l) => l.level >= 50)).toEqual([]);
    expect(lines.map((l) => l.msg)).toEqual(expect.arrayContaining(['stopping', 'stopped']));

    const late = await Subscriber.connect(broker.url);
    cleanups.push(() => late.close());
    await late.waitFor('retained bridge/state', () => late.on('poct/bridge/state').length > 0);
    expect(late.last('poct/bridge/state')).toEqual({ state: 'offline' });
    expect(late.on('poct/bridge/state')[0]!.retain).toBe(true);
  });

  it('SIGTERM after the broker went away mid-publish stops within 5 s, exit 0', async () => {
    const broker = await Mosquitto.start();
    cleanups.push(() => broker.stop());
    const file = meterConfigFile({
      site: 'cli-broker-down',
      mqtt: `url: "${broker.url}", client_id: cli-down-${process.pid}, reconnect_ms: 200`,
      device: ['poll_interval: 1'],
      simulator: `new_reading_every_s: 1, memory: ${JSON.stringify(ULTRA2_MEMORY)}`,
    });
    const sub = await Subscriber.connect(broker.url);
    const daemon = spawnPoctd(['run', '--config', file]);
    await sub.waitFor('3 results', () => sub.on('poct/device/bench1/result').length >= 3);
    await sub.close();
    // The broker stops answering while new readings are published (QoS 1, never acknowledged),
    // then dies without acknowledging them.
    broker.pause();
    await new Promise((r) => setTimeout(r, 2500));
    await broker.kill();
    await eventually('the daemon noticed', () => /connect ECONNREFUSED/.test(daemon.stdout()), 10_000);

    const stoppedAt = Date.now();
    daemon.child.kill('SIGTERM');
    const timer = setTimeout(() => daemon.child.kill('SIGKILL'), 20_000);
    const done = await daemon.exited;
    clearTimeout(timer);
    expect(done.signal, 'killed after hanging on SIGTERM').toBeNull();
    expect(Date.now() - stoppedAt).toBeLessThan(5000);
    expect(done.code).toBe(0);
    expect(done.stdout).toContain('"msg":"stopped"');
  });

  it('SIGTERM while the broker hangs (network cut, no answer) still ends the process on its own', async () => {
    const broker = await Mosquitto.start();
    cleanups.push(() => broker.stop());
    const file = meterConfigFile({
      site: 'cli-broker-hung',
      mqtt: `url: "${broker.url}", client_id: cli-hung-${process.pid}, reconnect_ms: 200`,
      top: ['health_interval_s: 1'],
      simulator: `memory: ${JSON.stringify(ULTRA2_MEMORY)}`,
    });
    const sub = await Subscriber.connect(broker.url);
    const daemon = spawnPoctd(['run', '--config', file]);
    await sub.waitFor('3 results', () => sub.on('poct/device/bench1/result').length >= 3);
    await sub.close();
    broker.pause();
    // A health publish reaches the paused broker and sits there unread, never acknowledged.
    await eventually('a publish unread at the paused broker', () => unreadBytesAt(broker.port) > 0, 10_000);

    const stoppedAt = Date.now();
    daemon.child.kill('SIGTERM');
    const timer = setTimeout(() => daemon.child.kill('SIGKILL'), 20_000);
    const done = await daemon.exited;
    clearTimeout(timer);
    expect(done.signal, 'killed after hanging on SIGTERM').toBeNull();
    // Within the CLI's 10 s stop deadline (a clean stop would be quicker: the goodbye publish to a
    // broker that never answers is what waits). Exit 1: the stop was not clean.
    expect(Date.now() - stoppedAt).toBeLessThan(12_000);
    if (done.code !== 0) {
      expect(done.code).toBe(1);
      expect(done.stdout).toContain('stop did not finish in time; exiting anyway');
    }
  }, 40_000);

  it('refuses an embedded broker on 0.0.0.0 without credentials: exit 1, the setting named', async () => {
    const dir = tempDir();
    const file = join(dir, 'open.yaml');
    const [port, wsPort] = [await freePort(), await freePort()];
    writeFileSync(file, `store: { path: ./poctd.db }\nmqtt:\n  embedded: { host: 0.0.0.0, port: ${port}, ws_port: ${wsPort} }\n`);
    const r = await poctd(['run', '--config', file]);
    expect(r.code).toBe(1);
    // Refused by the config check, before anything is opened: check-config says the same.
    expect(r.stderr).toMatch(/^.*open\.yaml:3:\d+: mqtt\.embedded\.host: the embedded broker would listen on 0\.0\.0\.0 with no credentials; set mqtt\.embedded\.username/);
    const check = await poctd(['check-config', file]);
    expect(check.code).toBe(1);
    expect(check.stderr).toBe(r.stderr);
    expectNoStack(r.stderr);
  });
});

describe('poctd simulate --tcp', () => {
  it('plays the meter on a TCP port: DM@ is answered with the serial number line', async () => {
    const port = await freePort();
    const sim = spawnPoctd(['simulate', 'onetouch-ultra2', '--tcp', String(port), '--option', 'serial=GMF600DCY']);
    await eventually('simulator listening', () => sim.stderr().includes('Ctrl-C stops'), 15_000);
    expect(sim.stderr()).toContain(`tcp-server:127.0.0.1:${port}`);

    const socket = connect(port, '127.0.0.1');
    cleanups.push(async () => socket.destroy());
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    await new Promise<void>((ok, fail) => {
      socket.once('connect', () => ok());
      socket.once('error', fail);
    });
    socket.write('\x11\rDM@\r');
    await eventually('serial number line', () => received.includes('\r\n'), 5000);
    const line = /^(@ "GMF600DCY") ([0-9A-F]{4})\r\n$/.exec(received);
    expect(line, JSON.stringify(received)).not.toBeNull();
    // The checksum is the 16-bit byte sum of what precedes it.
    const sum = [...Buffer.from(line![1]!, 'latin1')].reduce((a, b) => a + b, 0) & 0xffff;
    expect(line![2]).toBe(sum.toString(16).toUpperCase().padStart(4, '0'));
    socket.destroy();

    sim.child.kill('SIGTERM');
    const done = await sim.exited;
    expect(done.code).toBe(0);
  });

  it('says why it cannot start: a port in use, a bad port, a bad option', async () => {
    const port = await freePort();
    const first = spawnPoctd(['simulate', 'onetouch-ultra2', '--tcp', String(port)]);
    await eventually('first simulator listening', () => first.stderr().includes('Ctrl-C stops'), 15_000);
    const busy = await poctd(['simulate', 'onetouch-ultra2', '--tcp', String(port)]);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/cannot listen: the port is already in use/);
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);

    const badPort = await poctd(['simulate', 'onetouch-ultra2', '--tcp', 'eighty']);
    expect(badPort.code).toBe(1);
    expect(badPort.stderr).toMatch(/--tcp expects a port/);
    const badOption = await poctd(['simulate', 'onetouch-ultra2', '--tcp', String(port), '--option', 'unit=stone']);
    expect(badOption.code).toBe(1);
    expect(badOption.stderr).toMatch(/option unit must be mg\/dL or mmol\/L/);
    for (const r of [busy, badPort, badOption]) expectNoStack(r.stderr);
  });
});

describe('poctd simulate --connect', () => {
  it('dials out to a listening daemon port and is the device there (the Ultra 2 answers DM@)', async () => {
    const connections: Socket[] = [];
    const server = createServer((socket) => connections.push(socket));
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    cleanups.push(async () => {
      for (const c of connections) c.destroy();
      await new Promise((ok) => server.close(ok));
    });
    const port = (server.address() as { port: number }).port;
    const sim = spawnPoctd(['simulate', 'onetouch-ultra2', '--connect', `127.0.0.1:${port}`, '--option', 'serial=GMF600DCY']);
    await eventually('the simulator connected', () => connections.length === 1, 15_000);
    expect(sim.stderr()).toContain(`tcp:127.0.0.1:${port}`);
    let received = '';
    connections[0]!.on('data', (d: Buffer) => (received += d.toString('latin1')));
    connections[0]!.write('\x11\rDM@\r');
    await eventually('serial number line', () => received.includes('\r\n'), 5000);
    expect(received).toMatch(/^@ "GMF600DCY" [0-9A-F]{4}\r\n$/);
    sim.child.kill('SIGTERM');
    expect((await sim.exited).code).toBe(0);
  });

  it('refuses a malformed HOST:PORT and a second link choice', async () => {
    const bad = await poctd(['simulate', 'onetouch-ultra2', '--connect', 'localhost']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--connect expects HOST:PORT/);
    const two = await poctd(['simulate', 'onetouch-ultra2', '--connect', '127.0.0.1:5000', '--tcp', '5001']);
    expect(two.code).toBe(1);
    expect(two.stderr).toMatch(/choose one of --tcp, --connect, --serial and --stdio/);
  });
});
