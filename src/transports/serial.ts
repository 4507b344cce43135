import { SerialPort } from 'serialport';
import { DEFAULT_RECONNECT_MAX_MS, DEFAULT_RECONNECT_MIN_MS, ReconnectingTransport } from './reconnecting.ts';
import type { SerialTransportOptions } from './transport.ts';

type Signals = { dtr: boolean; rts: boolean };

/**
 * A serial port through the `serialport` library (a real UART, a USB serial cable, or a pty).
 *
 * Availability: `open()` resolves even when the port is absent or cannot be opened — a meter's
 * cable is plugged in when the technician docks it, not when the daemon starts. The state is
 * visible through `isOpen`, `lastError` and the events: `open` whenever the port comes up, `close`
 * once per loss of the port, `error` with a clear message (`serial port /dev/ttyUSB0 is missing`).
 * While absent it is retried with exponential backoff between `reconnect_min_ms` (500) and
 * `reconnect_max_ms` (30000), with jitter. `close()` stops retrying.
 *
 * A port can hang up without the library noticing: a read that reaches the tty after the hang-up
 * gets 0 bytes, which serialport retries for ever instead of reporting, so the port would look
 * open on a dead file descriptor and never be reopened (a pty whose socat exits, a USB cable pulled
 * mid-transfer). While the port is up it is therefore probed every `reconnect_min_ms` (at most
 * every second) with a modem-status query, which a hung-up tty answers with EIO.
 *
 * Line settings default to 9600 8N1.
 */
/** The probe follows `reconnect_min_ms`, but a site that slows its retries still learns of a hang-up this soon. */
const HANGUP_PROBE_MAX_MS = 1000;

export class SerialTransport extends ReconnectingTransport {
  readonly description: string;
  readonly options: Readonly<SerialTransportOptions>;
  private port: SerialPort | undefined;
  /** Line signals the driver asked for; re-applied after every reconnect. */
  private signals: Signals | undefined;
  private hangupProbe: NodeJS.Timeout | undefined;

  constructor(options: SerialTransportOptions) {
    super(options.reconnect_min_ms ?? DEFAULT_RECONNECT_MIN_MS, options.reconnect_max_ms ?? DEFAULT_RECONNECT_MAX_MS);
    this.options = { ...options };
    this.description = `serial:${options.path}`;
  }

  get path(): string {
    return this.options.path;
  }

  protected connect(): Promise<void> {
    const { path } = this.options;
    const port = new SerialPort({
      path,
      baudRate: this.options.baud_rate ?? 9600,
      dataBits: this.options.data_bits ?? 8,
      parity: this.options.parity ?? 'none',
      stopBits: this.options.stop_bits ?? 1,
      autoOpen: false,
    });
    this.port = port;
    port.on('data', (chunk: Buffer) => {
      if (this.port === port && this.linkUp) this.emit('data', chunk);
    });
    port.on('close', (err: (Error & { disconnected?: boolean }) | null) => {
      if (this.port !== port) return;
      this.linkLost(missingError(path, err ?? undefined));
    });
    port.on('error', (err: Error) => {
      if (this.port !== port) return;
      this.report(new Error(`serial port ${path}: ${err.message}`, { cause: err }));
    });
    return new Promise<void>((resolve, reject) => {
      port.open((err) => {
        if (this.port !== port) {
          // close() or a newer attempt took over while the OS was opening the port
          if (!err) port.close(() => undefined);
          reject(new Error(`serial port ${path}: open abandoned`));
          return;
        }
        if (err) {
          this.port = undefined;
          reject(openError(path, err));
          return;
        }
        this.probeForHangup(port);
        resolve();
      });
    }).then(() => this.reapplySignals());
  }

  protected async disconnect(): Promise<void> {
    clearInterval(this.hangupProbe);
    this.hangupProbe = undefined;
    const port = this.port;
    this.port = undefined;
    if (!port) return;
    await new Promise<void>((resolve) => {
      if (!port.isOpen) {
        resolve();
        return;
      }
      port.close(() => resolve());
    });
  }

  async write(data: Buffer): Promise<void> {
    const port = this.port;
    if (!this.linkUp || !port) {
      throw new Error(`${this.description}: write while the port is not open${this.lastError ? ` (${this.lastError.message})` : ''}`);
    }
    await new Promise<void>((resolve, reject) => {
      port.write(data, (err) => (err ? reject(new Error(`serial port ${this.path}: write failed: ${err.message}`, { cause: err })) : resolve()));
    });
  }

  /**
   * Sets DTR/RTS. A signal not given keeps its last value (both start asserted, as the OS opens
   * the port). The values are re-applied whenever the port reopens. Rejects when the port is not
   * open or the device does not support modem lines (a pty answers "Inappropriate ioctl").
   */
  async setSignals(signals: { dtr?: boolean; rts?: boolean }): Promise<void> {
    const next: Signals = {
      dtr: signals.dtr ?? this.signals?.dtr ?? true,
      rts: signals.rts ?? this.signals?.rts ?? true,
    };
    this.signals = next;
    const port = this.port;
    if (!this.linkUp || !port) {
      throw new Error(`${this.description}: cannot set line signals while the port is not open`);
    }
    await applySignals(port, next, this.path);
  }

  /** See the class comment: the one way to learn that the port hung up while a read was on its way. */
  private probeForHangup(port: SerialPort): void {
    clearInterval(this.hangupProbe);
    let inFlight = false;
    this.hangupProbe = setInterval(() => {
      if (inFlight || this.port !== port) return;
      inFlight = true;
      port.get((err) => {
        inFlight = false;
        // A live pty has no modem lines and answers ENOTTY; only EIO means the tty hung up.
        if (err && this.port === port && /Input\/output error|EIO/.test(err.message)) {
          this.linkLost(missingError(this.path, err));
        }
      });
    }, Math.max(20, Math.min(this.reconnectMinMs, HANGUP_PROBE_MAX_MS)));
    // Like the reconnect timer: a port must not keep the process alive by itself.
    this.hangupProbe.unref();
  }

  private async reapplySignals(): Promise<void> {
    if (!this.signals || !this.port) return;
    try {
      await applySignals(this.port, this.signals, this.path);
    } catch (err) {
      this.report(err as Error);
    }
  }
}

function applySignals(port: SerialPort, signals: Signals, path: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    port.set({ dtr: signals.dtr, rts: signals.rts }, (err) =>
      err ? reject(new Error(`serial port ${path}: cannot set DTR/RTS: ${err.message}`, { cause: err })) : resolve(),
    );
  });
}

function missingError(path: string, cause?: Error): Error {
  return new Error(`serial port ${path} is missing`, cause ? { cause } : undefined);
}

/** Turns the library's open errors into messages a technician can act on. */
function openError(path: string, err: Error): Error {
  const text = err.message;
  if (/no such file|ENOENT|cannot find|not found/i.test(text)) return missingError(path, err);
  if (/permission denied|EACCES/i.test(text)) {
    return new Error(
      `serial port ${path}: permission denied (add the daemon's user to the "dialout" group)`,
      { cause: err },
    );
  }
  if (/lock|busy|EBUSY|temporarily unavailable/i.test(text)) {
    return new Error(`serial port ${path} is in use by another program`, { cause: err });
  }
  return new Error(`serial port ${path} cannot be opened: ${text}`, { cause: err });
}
