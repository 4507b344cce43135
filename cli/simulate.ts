import { EventEmitter } from 'node:events';
import { findDriver, drivers } from '../drivers/index.ts';
import { createSimulator, type DeviceSimulator } from '../src/driver-sdk/index.ts';
import { SerialTransport, TcpClientTransport, TcpServerTransport } from '../src/transports/index.ts';
import type { ByteTransport } from '../src/transports/transport.ts';
import { parseOption, SimulateError } from './command-line.ts';

/** The device end of a link over this process's stdin/stdout (e.g. under `socat EXEC:`). */
class StdioTransport extends EventEmitter implements ByteTransport {
  readonly description = 'stdio';
  private opened = false;
  get isOpen(): boolean {
    return this.opened;
  }
  async open(): Promise<void> {
    this.opened = true;
    process.stdin.on('data', (chunk: Buffer) => this.emit('data', chunk));
    process.stdin.on('end', () => {
      this.opened = false;
      this.emit('close');
    });
    this.emit('open');
  }
  async write(data: Buffer): Promise<void> {
    await new Promise<void>((resolve, reject) => process.stdout.write(data, (e) => (e ? reject(e) : resolve())));
  }
  async close(): Promise<void> {
    this.opened = false;
    process.stdin.pause();
  }
}

export interface SimulateOptions {
  tcp?: string;
  bind?: string;
  connect?: string;
  serial?: string;
  stdio?: boolean;
  option?: string[];
  help?: boolean;
  /** The command's own help text (commander's), printed before the simulator's options. */
  helpText?: string;
}

/** `host:port`, `[v6]:port` or `:port` (loopback). */
export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) throw new SimulateError(`--connect expects HOST:PORT (port 1-65535), got "${text}"`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

export async function runSimulator(id: string | undefined, values: SimulateOptions): Promise<number> {
  const driver = id ? findDriver(id) : undefined;
  if (values.help) {
    process.stdout.write(values.helpText ?? '');
    if (driver) {
      process.stdout.write(`\n${driver.id}: ${driver.simulator.description}\n\noptions (--option key=value):\n`);
      for (const [k, v] of Object.entries(driver.simulator.options)) process.stdout.write(`  ${k}\t${v}\n`);
    } else {
      process.stdout.write(`\nID is one of: ${drivers.map((d) => d.id).join(', ')}; \`poctd simulate ID --help\` lists its options\n`);
    }
    return 0;
  }
  if (!driver) {
    process.stderr.write(`poctd simulate: ${id ? `unknown driver "${id}"; ` : ''}name a driver (known: ${drivers.map((d) => d.id).join(', ')})\n`);
    return 1;
  }
  const chosen = [values.tcp !== undefined, values.serial !== undefined, values.stdio === true, values.connect !== undefined];
  if (chosen.filter(Boolean).length > 1) {
    throw new SimulateError('choose one of --tcp, --connect, --serial and --stdio');
  }
  if (values.serial !== undefined && !driver.transports.includes('serial')) {
    throw new SimulateError(
      `${driver.id} is not a serial device (it speaks over: ${driver.transports.join(', ')}), so its simulator cannot sit on a pty; ` +
        'use --tcp PORT or --stdio (HID reports travel there as back-to-back 64-byte blocks)',
    );
  }
  const options = Object.fromEntries((values.option ?? []).map(parseOption));
  let simulator: DeviceSimulator;
  try {
    simulator = await createSimulator(driver.simulator, options);
  } catch (error) {
    throw new SimulateError((error as Error).message);
  }
  let transport: ByteTransport;
  if (values.connect !== undefined) {
    const { host, port } = parseHostPort(values.connect);
    // Like a device on the LIS link, it dials again after a refusal or a drop.
    transport = new TcpClientTransport({ type: 'tcp', host, port, reconnect_min_ms: 200, reconnect_max_ms: 2000 });
  } else if (values.tcp !== undefined) {
    const port = Number(values.tcp);
    if (!/^\d+$/.test(values.tcp) || port < 1 || port > 65535) throw new SimulateError(`--tcp expects a port 1-65535, got "${values.tcp}"`);
    transport = new TcpServerTransport({ type: 'tcp-server', port, bind: values.bind ?? '127.0.0.1' });
  } else if (values.serial) {
    transport = new SerialTransport({
      type: 'serial',
      path: values.serial,
      ...driver.serialDefaults,
      // A simulated meter on a re-created pty should be back as soon as the pty is.
      reconnect_min_ms: 200,
      reconnect_max_ms: 1000,
    });
  } else {
    transport = new StdioTransport();
  }
  transport.on('error', (e: Error) => process.stderr.write(`poctd simulate: ${e.message}\n`));
  try {
    await transport.open();
  } catch (error) {
    throw new SimulateError((error as Error).message);
  }
  simulator.attach(transport);
  if (!(transport instanceof StdioTransport)) {
    process.stderr.write(`poctd simulate: ${driver.id} on ${transport.description}; Ctrl-C stops\n`);
  }
  // A transport waiting to reconnect holds no handle of its own: keep the process up until told.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
    if (transport instanceof StdioTransport) transport.once('close', () => resolve());
  });
  clearInterval(keepAlive);
  simulator.detach();
  await transport.close();
  return 0;
}
