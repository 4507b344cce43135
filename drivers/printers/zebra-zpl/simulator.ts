/**
 * A fake Zebra printer: the printer's side of raw port 9100. It reads the byte stream the way a
 * ZPL printer does: `~` control commands run the moment they are read (inside a format too),
 * `^XA … ^XZ` formats are kept and "printed" `^PQ` times, everything else is ignored. It answers
 * `~HS` (three STX … ETX strings, and nothing at all while the media is out, the ribbon is out or
 * the head is open, as Zebra documents), `~HQES` (error bitmasks) and `~HI`. It can be switched to
 * paper out, head open, ribbon out, paused (formats wait in its buffer until the condition clears,
 * `~JA` cancels them) and, as a TCP server, unreachable.
 *
 * `ZebraSimulator` is the `DeviceSimulator` on any transport (the `simulated` transport, `poctd
 * simulate zebra-zpl --tcp 9100`); `FakeZebraPrinter` is a TCP server with the same printer behind
 * every connection, for the tests and the benchmark.
 */
import { EventEmitter } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { DeviceSimulator } from '../../../src/driver-sdk/index.ts';
import { SimulatorOptionReader } from '../../../src/driver-sdk/simulator-options.ts';
import { renderZplPng } from '../../../src/protocols/zpl/render.ts';
import type { ByteTransport } from '../../../src/transports/transport.ts';
import { join } from 'node:path';

import { SIMULATOR_OPTION_HELP } from './simulator-help.ts';

export interface PrinterConditions {
  paper_out: boolean;
  head_open: boolean;
  ribbon_out: boolean;
  paused: boolean;
}

export interface ZebraSimulatorOptions {
  model: string;
  firmware: string;
  dpmm: number;
  conditions: PrinterConditions;
  hsWhenFaulted: boolean;
  /** Where printed formats are written (ZPL and PNG); none by default. */
  labelsDir: string | null;
}

export function parseSimulatorOptions(raw: Record<string, unknown>): ZebraSimulatorOptions {
  const r = new SimulatorOptionReader(raw, 'zebra-zpl simulator', [...Object.keys(SIMULATOR_OPTION_HELP), 'timezone']);
  const dpmm = r.number('dpmm', 6, 24) ?? 8;
  if (![6, 8, 12, 24].includes(dpmm)) throw r.error('dpmm', '6, 8, 12 or 24');
  return {
    model: r.string('model', /^[\x20-\x2b\x2d-\x7e]{1,40}$/, 'printable text without commas') ?? 'ZD421-203dpi',
    firmware: r.string('firmware', /^[\x20-\x2b\x2d-\x7e]{1,40}$/, 'printable text without commas') ?? 'V93.21.26Z',
    dpmm,
    conditions: {
      paper_out: r.boolean('paper_out') ?? false,
      head_open: r.boolean('head_open') ?? false,
      ribbon_out: r.boolean('ribbon_out') ?? false,
      paused: r.boolean('paused') ?? false,
    },
    hsWhenFaulted: r.boolean('hs_when_faulted') ?? false,
    labelsDir: r.string('labels_dir') ?? null,
  };
}

export type StreamItem = { kind: 'control'; command: string } | { kind: 'format'; zpl: string };

/**
 * The printer's reading of the byte stream, cut anywhere: control commands (`HS`, `HQES`, `HI`,
 * `JA`, …) and whole formats (with the control commands inside them taken out, as the printer
 * takes them).
 */
export class ZplStreamParser {
  private pending = '';
  private format: string | null = null;

  push(chunk: Buffer): StreamItem[] {
    this.pending += chunk.toString('latin1');
    const out: StreamItem[] = [];
    let i = 0;
    const s = this.pending;
    while (i < s.length) {
      const c = s[i];
      if (c === '~') {
        if (s.length - i < 3) break;
        const head = s.slice(i + 1, i + 3).toUpperCase();
        if (head === 'HQ') {
          if (s.length - i < 5) break;
          out.push({ kind: 'control', command: `HQ${s.slice(i + 3, i + 5).toUpperCase()}` });
          i += 5;
        } else {
          out.push({ kind: 'control', command: head });
          i += 3;
        }
        continue;
      }
      if (c === '^') {
        if (s.length - i < 3) break;
        const head = s.slice(i + 1, i + 3).toUpperCase();
        if (this.format === null) {
          if (head === 'XA') this.format = '^XA';
          i += 3;
          continue;
        }
        if (head === 'XZ') {
          out.push({ kind: 'format', zpl: `${this.format}^XZ` });
          this.format = null;
          i += 3;
          continue;
        }
        this.format += s.slice(i, i + 3);
        i += 3;
        continue;
      }
      if (this.format !== null) this.format += c;
      i++;
    }
    this.pending = s.slice(i);
    return out;
  }
}

export interface PrintedLabel {
  /** The format as the printer received it. */
  zpl: string;
  /** Which copy of the format's `^PQ` quantity this label is (1-based). */
  copy: number;
  at: Date;
}

/** The quantity of a format: `^PQq,…`, 1 when absent. */
export function formatQuantity(zpl: string): number {
  const m = /\^PQ(\d+)/i.exec(zpl);
  return m ? Math.max(1, Number(m[1])) : 1;
}

/**
 * The printer: its conditions, the formats waiting in its buffer, what it printed. Every
 * connection to it shares one model, as every host talking to one printer does.
 */
export class ZebraPrinterModel extends EventEmitter {
  readonly conditions: PrinterConditions;
  readonly printed: PrintedLabel[] = [];
  /** Formats received and not yet printed (waiting for a condition to clear). */
  readonly buffered: string[] = [];
  /** Every control command received, in order (`HS`, `HQES`, …). */
  readonly controls: string[] = [];
  formatsReceived = 0;

  constructor(readonly options: ZebraSimulatorOptions) {
    super();
    this.conditions = { ...options.conditions };
  }

  get faulted(): boolean {
    const c = this.conditions;
    return c.paper_out || c.head_open || c.ribbon_out;
  }

  /** Changes conditions; formats waiting print once nothing stops the printer. */
  set(change: Partial<PrinterConditions>): void {
    Object.assign(this.conditions, change);
    this.drain();
  }

  /** The reply to one stream item (empty when the printer says nothing). */
  handle(item: StreamItem): Buffer {
    if (item.kind === 'format') {
      this.formatsReceived++;
      this.buffered.push(item.zpl);
      this.emit('format', item.zpl);
      this.drain();
      return Buffer.alloc(0);
    }
    this.controls.push(item.command);
    switch (item.command) {
      case 'HS':
        return this.faulted && !this.options.hsWhenFaulted ? Buffer.alloc(0) : this.hostStatus();
      case 'HQES':
        return this.errorStatus();
      case 'HI':
        return block(`${this.options.model},${this.options.firmware},${this.options.dpmm},8192KB,`);
      case 'JA':
        this.buffered.length = 0;
        return Buffer.alloc(0);
      default:
        return Buffer.alloc(0);
    }
  }

  private drain(): void {
    while (this.buffered.length > 0 && !this.faulted && !this.conditions.paused) {
      const zpl = this.buffered.shift()!;
      const copies = formatQuantity(zpl);
      for (let copy = 1; copy <= copies; copy++) {
        const label = { zpl, copy, at: new Date() };
        this.printed.push(label);
        this.emit('label', label);
      }
    }
  }

  private hostStatus(): Buffer {
    const c = this.conditions;
    const b = (v: boolean): string => (v ? '1' : '0');
    const formats = String(this.buffered.length).padStart(3, '0');
    const one = `030,${b(c.paper_out)},${b(c.paused)},0203,${formats},0,0,0,000,0,0,0`;
    const two = `001,0,${b(c.head_open)},${b(c.ribbon_out)},1,2,6,0,${'0'.repeat(8)},1,000`;
    return Buffer.concat([block(one), block(two), block('1234,0')]);
  }

  private errorStatus(): Buffer {
    const c = this.conditions;
    const bits = (c.paper_out ? 0x1 : 0) | (c.ribbon_out ? 0x2 : 0) | (c.head_open ? 0x4 : 0) | (c.paused ? 0x10000 : 0);
    const hex = bits.toString(16).toUpperCase().padStart(8, '0');
    const text = `\r\n\r\nPRINTER STATUS            \r\n   ERRORS:          ${bits ? 1 : 0} 00000000 ${hex}  \r\n   WARNINGS:        0 00000000 00000000   \r\n`;
    return block(text);
  }
}

/** Writes each format printed (its first copy) to `dir` as ZPL, and as PNG once rendered offline. */
function keepLabels(printer: ZebraPrinterModel, dir: string): void {
  mkdirSync(dir, { recursive: true });
  let n = 0;
  printer.on('label', (label: PrintedLabel) => {
    if (label.copy !== 1) return;
    const name = join(dir, `label-${++n}`);
    writeFileSync(`${name}.zpl`, label.zpl, 'latin1');
    const dpmm = printer.options.dpmm;
    const width = Number(/\^PW(\d+)/.exec(label.zpl)?.[1] ?? 406) / dpmm;
    const height = Number(/\^LL(\d+)/.exec(label.zpl)?.[1] ?? 203) / dpmm;
    void renderZplPng(label.zpl, { width_mm: width, height_mm: height, dpmm })
      .then(([png]) => png && writeFileSync(`${name}.png`, png))
      .catch(() => undefined);
  });
}

function block(text: string): Buffer {
  return Buffer.concat([Buffer.from([0x02]), Buffer.from(text, 'latin1'), Buffer.from([0x03, 0x0d, 0x0a])]);
}

/** The printer on one transport (the `DeviceSimulator` the daemon and `poctd simulate` use). */
export class ZebraSimulator implements DeviceSimulator {
  readonly printer: ZebraPrinterModel;
  private transport: ByteTransport | null = null;
  private parser = new ZplStreamParser();

  constructor(options: ZebraSimulatorOptions | ZebraPrinterModel) {
    this.printer = options instanceof ZebraPrinterModel ? options : new ZebraPrinterModel(options);
    const dir = this.printer.options.labelsDir;
    if (dir) keepLabels(this.printer, dir);
  }

  private readonly onData = (chunk: Buffer): void => {
    for (const item of this.parser.push(chunk)) {
      const reply = this.printer.handle(item);
      if (reply.length > 0) void this.transport?.write(reply).catch(() => undefined);
    }
  };
  private readonly onClose = (): void => {
    this.parser = new ZplStreamParser();
  };

  attach(transport: ByteTransport): void {
    this.detach();
    this.transport = transport;
    transport.on('data', this.onData);
    transport.on('close', this.onClose);
  }

  detach(): void {
    this.transport?.off('data', this.onData);
    this.transport?.off('close', this.onClose);
    this.transport = null;
  }
}

/**
 * The printer as a TCP server on 127.0.0.1 (port 0: a free one). `setUnreachable(true)` closes
 * the port and drops every connection, as a printer switched off or unplugged from the network;
 * `false` listens again on the same port. `dropAfterNextFormat()` closes the connection right after
 * the next format is read (the label is printed, the host never hears the end of its write): the
 * case the daemon must mark `uncertain`.
 */
export class FakeZebraPrinter {
  readonly printer: ZebraPrinterModel;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private dropAfterFormat = false;
  port = 0;
  connections = 0;

  constructor(options: Partial<ZebraSimulatorOptions> = {}) {
    const defaults = parseSimulatorOptions({});
    this.printer = new ZebraPrinterModel({ ...defaults, ...options, conditions: { ...defaults.conditions, ...options.conditions } });
  }

  async start(port = this.port, host = '127.0.0.1'): Promise<number> {
    const server = createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    this.port = (server.address() as { port: number }).port;
    return this.port;
  }

  private accept(socket: Socket): void {
    this.connections++;
    socket.setNoDelay(true);
    this.sockets.add(socket);
    const parser = new ZplStreamParser();
    socket.on('data', (chunk: Buffer) => {
      for (const item of parser.push(chunk)) {
        const reply = this.printer.handle(item);
        if (reply.length > 0 && !socket.destroyed) socket.write(reply);
        if (item.kind === 'format' && this.dropAfterFormat) {
          this.dropAfterFormat = false;
          socket.destroy();
          return;
        }
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => this.sockets.delete(socket));
  }

  dropAfterNextFormat(): void {
    this.dropAfterFormat = true;
  }

  async setUnreachable(unreachable: boolean): Promise<void> {
    if (unreachable) await this.stop();
    else if (!this.server) await this.start(this.port);
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
