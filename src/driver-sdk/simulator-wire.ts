/**
 * How a simulator puts bytes on the wire: as a USB-serial adapter or a TCP stack delivers them, in
 * random chunks, so every session under test meets replies cut anywhere.
 */
import type { ByteTransport } from '../transports/transport.ts';

export class ChunkedWriter {
  private queue: Promise<void> = Promise.resolve();

  /**
   * @param random the simulator's seeded generator (a seed replays the same cuts)
   * @param maxChunk chunk sizes are random from 1 to this; 0 or less writes each piece whole
   * @param stillCurrent false once the simulator has moved to another transport: what is left of a
   *   reply for the old one is dropped, as a meter unplugged mid-reply would drop it
   */
  constructor(
    private readonly random: () => number,
    private readonly maxChunk: number,
    private readonly stillCurrent: (transport: ByteTransport) => boolean,
  ) {}

  /**
   * Queues pieces (lines, frames) behind everything written before, each after a pause of
   * `pauseBeforeMs`. Resolves when they are written or dropped; a failed write drops the rest of
   * the call and never rejects, since a simulator has nobody to report it to but its peer.
   */
  write(transport: ByteTransport, pieces: readonly Buffer[], pauseBeforeMs = 0): Promise<void> {
    this.queue = this.queue
      .then(async () => {
        for (const piece of pieces) {
          if (pauseBeforeMs > 0) await new Promise((r) => setTimeout(r, pauseBeforeMs));
          for (let i = 0; i < piece.length; ) {
            if (!this.stillCurrent(transport) || !transport.isOpen) return;
            const n = this.maxChunk > 0 ? 1 + Math.floor(this.random() * this.maxChunk) : piece.length;
            await transport.write(piece.subarray(i, i + n));
            i += n;
          }
        }
      })
      .catch(() => undefined);
    return this.queue;
  }
}
