import { EventEmitter } from 'node:events';
import type { ByteTransport } from './transport.ts';

/**
 * One end of an in-memory cable. Bytes written on one end arrive as `data` on the other on a
 * later tick, like a real link, optionally cut into chunks to exercise the framers.
 */
export class MemoryTransport extends EventEmitter implements ByteTransport {
  peer: MemoryTransport | undefined;
  private opened = false;
  /** When set, each write is delivered in chunks of this many bytes. */
  chunkSize: number | undefined;

  constructor(readonly description: string) {
    super();
  }

  get isOpen(): boolean {
    return this.opened;
  }

  async open(): Promise<void> {
    if (this.opened) return;
    this.opened = true;
    this.emit('open');
  }

  async write(data: Buffer): Promise<void> {
    if (!this.opened) throw new Error(`${this.description}: write on a closed transport`);
    const peer = this.peer;
    if (!peer || !peer.opened) return; // nobody listening: bytes fall on the floor, as on a real wire
    const copy = Buffer.from(data);
    const size = this.chunkSize ?? copy.length;
    for (let i = 0; i < copy.length; i += Math.max(1, size)) {
      const chunk = copy.subarray(i, i + Math.max(1, size));
      setImmediate(() => {
        if (peer.opened) peer.emit('data', chunk);
      });
    }
  }

  async close(): Promise<void> {
    if (!this.opened) return;
    this.opened = false;
    this.emit('close');
  }
}

/** Two connected ends: `host` for the driver session, `device` for the simulator. */
export function memoryPair(name = 'memory'): { host: MemoryTransport; device: MemoryTransport } {
  const host = new MemoryTransport(`${name}:host`);
  const device = new MemoryTransport(`${name}:device`);
  host.peer = device;
  device.peer = host;
  return { host, device };
}
