/**
 * The `usb-printer` transport: a USB printer-class device node (`/dev/usb/lp0`, made by the Linux
 * `usblp` driver; give it a stable name with a udev rule). Bytes written to it go to the printer;
 * a bidirectional printer (every Zebra) answers status queries on the same node, which is read
 * without blocking and polled, since the node has no readiness notification Node can wait on.
 * A printer that is unplugged makes the node fail (ENODEV) or vanish: the link is lost and the
 * node opened again with backoff until the printer is back.
 *
 * A built-in kind (registry.ts), loaded only when a device uses it.
 */
import { constants, promises as fs } from 'node:fs';
import { DEFAULT_RECONNECT_MAX_MS, DEFAULT_RECONNECT_MIN_MS, ReconnectingTransport } from './reconnecting.ts';
import type { UsbPrinterTransportOptions } from './transport.ts';

const DEFAULT_READ_INTERVAL_MS = 20;

export class UsbPrinterTransport extends ReconnectingTransport {
  readonly description: string;
  private handle: fs.FileHandle | undefined;
  private reader: NodeJS.Timeout | undefined;
  private reading = false;
  private readonly buffer = Buffer.alloc(4096);

  constructor(readonly options: UsbPrinterTransportOptions) {
    super(options.reconnect_min_ms ?? DEFAULT_RECONNECT_MIN_MS, options.reconnect_max_ms ?? DEFAULT_RECONNECT_MAX_MS);
    this.description = `usb-printer:${options.path}`;
  }

  protected async connect(): Promise<void> {
    try {
      this.handle = await fs.open(this.options.path, constants.O_RDWR | constants.O_NONBLOCK | constants.O_NOCTTY);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such device (is the printer plugged in and the usblp driver loaded?)' : code === 'EACCES' ? 'permission denied (add the user to the lp group)' : (code ?? (error as Error).message);
      throw new Error(`${this.options.path}: ${why}`);
    }
    this.reader = setInterval(() => void this.readAvailable(), this.options.read_interval_ms ?? DEFAULT_READ_INTERVAL_MS);
  }

  /** Reads what the printer has sent, without blocking; a failure means the printer went away. */
  private async readAvailable(): Promise<void> {
    const handle = this.handle;
    if (this.reading || !handle || !this.linkUp) return;
    this.reading = true;
    try {
      for (;;) {
        const { bytesRead } = await handle.read(this.buffer, 0, this.buffer.length, null);
        if (bytesRead === 0) break;
        this.emit('data', Buffer.from(this.buffer.subarray(0, bytesRead)));
      }
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK' && this.handle === handle) this.linkLost(new Error(`${this.options.path}: ${code ?? (error as Error).message}`));
    } finally {
      this.reading = false;
    }
  }

  async write(data: Buffer): Promise<void> {
    const handle = this.handle;
    if (!handle || !this.linkUp) throw new Error(`${this.description}: not open`);
    let offset = 0;
    while (offset < data.length) {
      try {
        const { bytesWritten } = await handle.write(data, offset, data.length - offset, null);
        offset += bytesWritten;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
          await new Promise((resolve) => setTimeout(resolve, 5));
          continue;
        }
        const lost = new Error(`${this.options.path}: ${code ?? (error as Error).message}`);
        if (this.handle === handle) this.linkLost(lost);
        throw lost;
      }
    }
  }

  protected async disconnect(): Promise<void> {
    clearInterval(this.reader);
    this.reader = undefined;
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close().catch(() => undefined);
  }
}
