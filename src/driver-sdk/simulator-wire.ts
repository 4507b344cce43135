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
   * @param mode `quiet`: a failed write drops the rest of the call and nobody hears of it (a meter
   *   has nobody to tell); `report`: every chunk goes to the transport and the call rejects with its
   *   error, for a simulator whose own link layer retries a failed send (ASTM)
   */
  constructor(
    private readonly random: () => number,
    private readonly maxChunk: number,
    private readonly stillCurrent: (transport: ByteTransport) => boolean,
    private readonly mode: 'quiet' | 'report' = 'quiet',
  ) {}

  /**
   * Queues pieces (lines, frames) behind everything written before, each after a pause of
   * `pauseBeforeMs`. Resolves when they are written or dropped; see `mode` for a failed write. A
   * failure never stops the queue: the next call is written.
   */
  write(transport: ByteTransport, pieces: readonly Buffer[], pauseBeforeMs = 0): Promise<void> {
    const report = this.mode === 'report';
    const run = this.queue.then(async () => {
      for (const piece of pieces) {
        if (pauseBeforeMs > 0) await new Promise((r) => setTimeout(r, pauseBeforeMs));
        for (let i = 0; i < piece.length; ) {
          if (!report && (!this.stillCurrent(transport) || !transport.isOpen)) return;
          const n = this.maxChunk > 0 ? 1 + Math.floor(this.random() * this.maxChunk) : piece.length;
          await transport.write(piece.subarray(i, i + n));
          i += n;
        }
      }
    });
    this.queue = run.catch(() => undefined);
    return report ? run : this.queue;
  }
}
