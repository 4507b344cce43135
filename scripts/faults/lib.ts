/**
 * Parts of the fault suite: the daemon as a child process (so it can be killed with SIGKILL and
 * its RSS and WAL read from outside), an ASTM analyzer over TCP that resends every message until
 * it is acknowledged (the independent sender), line noise, and the database read back.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { encodeFrame, ENQ } from '../../src/protocols/astm/frame.ts';
import { AstmLink, type AstmCarrier } from '../../src/protocols/astm/link.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function waitFor(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

export async function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Daemons still running when the suite exits are killed with it. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

/** poctd run --config, as its own process. */
export class Daemon {
  child: ChildProcess | undefined;
  log = '';
  readonly configPath: string;

  constructor(
    readonly dir: string,
    config: string,
  ) {
    this.configPath = join(dir, 'poctd.yaml');
    writeFileSync(this.configPath, config);
  }

  get dbPath(): string {
    return join(this.dir, 'poctd.db');
  }

  async start(waitPort?: number): Promise<void> {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'cli/main.ts'), 'run', '--config', this.configPath], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr?.on('data', (d: Buffer) => {
      this.log = (this.log + d.toString()).slice(-200_000);
    });
    this.child = child;
    running.add(child);
    child.once('exit', () => running.delete(child));
    if (waitPort !== undefined) await waitFor(`the daemon listening on ${waitPort}`, () => portOpen(waitPort), 60_000);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** SIGKILL, and wait until it is gone. */
  async kill9(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGKILL');
    await gone;
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    await Promise.race([gone, sleep(15_000).then(() => c.kill('SIGKILL'))]);
    await gone;
  }

  /** Resident memory of the daemon, from /proc. */
  rssBytes(): number {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
      return m ? Number(m[1]) * 1024 : 0;
    } catch {
      return 0;
    }
  }

  walBytes(): number {
    const wal = `${this.dbPath}-wal`;
    return existsSync(wal) ? statSync(wal).size : 0;
  }

  dbBytes(): number {
    return existsSync(this.dbPath) ? statSync(this.dbPath).size : 0;
  }
}

/** The analyzer's end of a TCP link as an `AstmCarrier`. */
class SocketCarrier implements AstmCarrier {
  constructor(private readonly socket: net.Socket) {}
  get isOpen(): boolean {
    return !this.socket.destroyed && this.socket.writable;
  }
  write(bytes: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!this.isOpen) return reject(new Error('closed'));
      this.socket.write(bytes, (err) => (err ? reject(err) : resolve()));
    });
  }
  on(event: 'data' | 'close', listener: (chunk: Buffer) => void): unknown {
    return this.socket.on(event, listener);
  }
  off(event: 'data' | 'close', listener: (chunk: Buffer) => void): unknown {
    return this.socket.off(event, listener);
  }
}

/** Message `i` of an analyzer whose serial is `serial`: one result, its own specimen and time. */
export function astmMessage(serial: string, i: number): Buffer {
  const t = new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString().replace(/[-:T]/g, '').slice(0, 14);
  return Buffer.from(
    `H|\\^&|||C111^Roche^c111^4.2.2.1730^1^${serial}\rP|1\rO|1||S${i}\rR|1|^^^550|${(50 + (i % 500) / 10).toFixed(1)}|U/L||N||F||||${t}\rL|1|N\r`,
    'latin1',
  );
}

/**
 * An analyzer that sends messages one after another and sends each again, on a new connection if
 * need be, until its last frame is ACKed (E1381: the host stored it). `acked` is what the daemon
 * acknowledged; `sent` counts attempts.
 */
export class ResendingAnalyzer {
  readonly acked = new Set<number>();
  attempts = 0;
  failures = 0;
  private stopped = false;
  private socket: net.Socket | undefined;
  private link: AstmLink | undefined;

  constructor(
    readonly port: number,
    readonly serial: string,
  ) {}

  private async connect(): Promise<AstmLink> {
    for (;;) {
      if (this.stopped) throw new Error('stopped');
      const socket = net.connect({ host: '127.0.0.1', port: this.port, noDelay: true });
      const ok = await new Promise<boolean>((resolve) => {
        socket.once('connect', () => resolve(true));
        socket.once('error', () => resolve(false));
      });
      if (ok) {
        socket.on('error', () => undefined);
        this.socket = socket;
        const link = new AstmLink(new SocketCarrier(socket), { onMessage: async () => undefined, onIssue: () => undefined }, { role: 'instrument', replyTimeoutMs: 3000, contentionBackoffMs: 50, busyBackoffMs: 200 });
        link.start();
        this.link = link;
        return link;
      }
      socket.destroy();
      await sleep(100);
    }
  }

  /** Sends message `i` until acknowledged. */
  async send(i: number): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      const link = this.link && this.socket && !this.socket.destroyed ? this.link : await this.connect().catch(() => undefined);
      if (!link) return;
      this.attempts++;
      try {
        await link.send(astmMessage(this.serial, i));
        this.acked.add(i);
        return;
      } catch {
        this.failures++;
        await link.stop();
        this.socket?.destroy();
        this.link = undefined;
        await sleep(50);
      }
    }
  }

  /** Sends messages from `from` on until `until()` says stop or `count` are acknowledged; returns the next index. */
  async run(from: number, until: () => boolean, count = Infinity): Promise<number> {
    let i = from;
    while (!this.stopped && !until() && i - from < count) await this.send(i++);
    return i;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.link?.stop();
    this.socket?.destroy();
  }
}

/** Line noise, every byte value, as a wire at the wrong baud rate gives. */
export function noise(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** A connection to `port` whose errors and incoming bytes are ignored; undefined when it fails. */
async function quietConnect(port: number): Promise<net.Socket | undefined> {
  const s = net.connect({ host: '127.0.0.1', port });
  s.on('error', () => undefined);
  s.on('data', () => undefined);
  const ok = await new Promise<boolean>((r) => s.once('connect', () => r(true)).once('error', () => r(false)));
  return ok ? s : undefined;
}

/** Writes noise to `port` as fast as the socket drains, until stopped; counts the bytes. */
export function flood(port: number): { stop: () => void; bytes: () => number; connections: () => number } {
  let stopped = false;
  let bytes = 0;
  let connections = 0;
  // Made once: the suite's own CPU goes to sending, not to making noise beside the good analyzer.
  const pool = Array.from({ length: 16 }, (_, i) => noise(16 * 1024, port * 100 + i + 1));
  let seed = 0;
  const loop = async (): Promise<void> => {
    while (!stopped) {
      const s = await quietConnect(port);
      if (!s) {
        await sleep(100);
        continue;
      }
      connections++;
      while (!stopped && !s.destroyed) {
        const chunk = pool[seed++ % pool.length]!;
        bytes += chunk.length;
        if (!s.write(chunk)) await new Promise<void>((r) => (s.once('drain', () => r()), s.once('close', () => r())));
      }
      s.destroy();
    }
  };
  void loop();
  return { stop: () => (stopped = true), bytes: () => bytes, connections: () => connections };
}

/** Callers that open a frame and then send a byte every `everyMs`, never finishing it. */
export function slowloris(port: number, count: number, everyMs = 1000): { stop: () => void; reconnects: () => number } {
  let stopped = false;
  let reconnects = 0;
  const one = async (): Promise<void> => {
    while (!stopped) {
      const s = await quietConnect(port);
      if (s) {
        s.write(Buffer.from([ENQ]));
        await sleep(everyMs);
        s.write(encodeFrame(1, 'H|\\^&|||SLOW\r', false).subarray(0, 3));
        while (!stopped && !s.destroyed) {
          s.write('x');
          await sleep(everyMs);
        }
      }
      const cut = !stopped;
      s?.destroy();
      if (cut) reconnects++;
      await sleep(200);
    }
  };
  for (let i = 0; i < count; i++) void one();
  return { stop: () => (stopped = true), reconnects: () => reconnects };
}

export interface StoreCheck {
  records: number;
  seqGapFree: boolean;
  integrity: string;
  quarantineRows: number;
  quarantineReasons: Record<string, number>;
  captures: number;
  specimens: Set<number>;
}

/** The database as the daemon left it (read only). */
export function checkStore(dbPath: string, deviceId?: string): StoreCheck {
  const db = new Database(dbPath, { readonly: true });
  try {
    const seqs = db.prepare(`SELECT seq FROM records ORDER BY seq`).pluck().all() as number[];
    const rows = db.prepare(`SELECT json FROM records ${deviceId ? 'WHERE device_id = ?' : ''}`).pluck().all(...(deviceId ? [deviceId] : [])) as string[];
    const specimens = new Set<number>();
    for (const j of rows) {
      const r = JSON.parse(j) as { specimen?: { id?: string | null } };
      const m = /^S(\d+)$/.exec(r.specimen?.id ?? '');
      if (m) specimens.add(Number(m[1]));
    }
    return {
      records: seqs.length,
      seqGapFree: seqs.every((s, i) => s === i + 1),
      integrity: db.pragma('integrity_check', { simple: true }) as string,
      quarantineRows: (db.prepare(`SELECT COUNT(*) AS n FROM quarantine`).get() as { n: number }).n,
      quarantineReasons: Object.fromEntries(
        (db.prepare(`SELECT device_id || '/' || reason AS reason, COUNT(*) AS n FROM quarantine GROUP BY 1`).all() as Array<{ reason: string; n: number }>).map((r) => [r.reason, r.n]),
      ),
      captures: (db.prepare(`SELECT COUNT(*) AS n FROM captures`).get() as { n: number }).n,
      specimens,
    };
  } finally {
    db.close();
  }
}
