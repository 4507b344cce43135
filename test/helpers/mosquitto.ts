import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireTool } from './tools.ts';

/** A free TCP port on loopback (asked of the kernel, then released). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', () => {
        socket.destroy();
        if (Date.now() > deadline) reject(new Error(`mosquitto did not listen on ${port}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

/** A test that times out before its cleanup would otherwise leave its broker running. */
function track(child: ChildProcess): void {
  running.add(child);
  child.once('exit', () => running.delete(child));
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const c of running) c.kill('SIGKILL');
  });
}

/**
 * A real Mosquitto broker on a loopback port, with persistence so that a stop/start keeps
 * sessions and queued QoS 1 messages, as a production broker would.
 */
export class Mosquitto {
  private process: ChildProcess | undefined;
  readonly dir = mkdtempSync(join(tmpdir(), 'poctd-mosquitto-'));
  log = '';

  private constructor(
    readonly port: number,
    private readonly extraConfig: string,
  ) {
    // Run as root, Mosquitto drops to its own user and must still be able to write its database.
    chmodSync(this.dir, 0o777);
  }

  static async start(options: { extraConfig?: string } = {}): Promise<Mosquitto> {
    return Mosquitto.startOnPort(await freePort(), options);
  }

  static async startOnPort(port: number, options: { extraConfig?: string } = {}): Promise<Mosquitto> {
    requireTool('mosquitto');
    const broker = new Mosquitto(port, options.extraConfig ?? 'allow_anonymous true\n');
    await broker.restart();
    return broker;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async restart(): Promise<void> {
    const conf = join(this.dir, 'mosquitto.conf');
    writeFileSync(
      conf,
      `listener ${this.port} 127.0.0.1\n` +
        `persistence true\npersistence_location ${this.dir}/\n` +
        `log_dest stderr\n` +
        this.extraConfig,
    );
    const child = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr?.on('data', (d: Buffer) => (this.log += d.toString()));
    track(child);
    this.process = child;
    await waitForPort(this.port, 5000);
  }

  /**
   * SIGHUP: Mosquitto rereads its password and ACL files; clients whose credentials still pass
   * stay connected, the others are disconnected.
   */
  reload(): void {
    this.process?.kill('SIGHUP');
  }

  /**
   * SIGSTOP: the broker stops answering but its sockets stay open, as when the network between
   * daemon and broker is cut without either end noticing. `stop()` and `kill()` still work.
   */
  pause(): void {
    this.process?.kill('SIGSTOP');
  }

  /** SIGKILL: the broker dies without answering what it has not processed yet (a crash). */
  async kill(): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    this.process = undefined;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }

  async stop(): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null) return;
    this.process = undefined;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGCONT'); // a paused broker cannot act on SIGTERM
      child.kill('SIGTERM');
    });
  }
}
