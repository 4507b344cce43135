/**
 * A flood on one connection cannot take the daemon from the others (issue 16: line noise on one
 * port made another device's port fall from 18 to 2 results/s): while a burst of bad input goes
 * on, the link pauses a carrier that can pause (a TCP caller) so it is read at no more than
 * `burstBytesPerSecond`; TCP backpressure then slows the sender. Good input is never slowed.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { encodeFrame, ENQ, EOT } from '../../src/protocols/astm/frame.ts';
import { AstmLink, type AstmCarrier } from '../../src/protocols/astm/link.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { eventually } from '../helpers/eventually.ts';
import { lineNoise } from '../helpers/line-noise.ts';

const cleanups = useCleanups();

/** A carrier that delivers queued chunks only while not paused, as a socket does. */
class PausableCarrier extends EventEmitter implements AstmCarrier {
  readonly isOpen = true;
  paused = false;
  pauses = 0;
  delivered = 0;
  private readonly queue: Buffer[] = [];
  async write(): Promise<void> {}
  pause(): void {
    this.paused = true;
    this.pauses++;
  }
  resume(): void {
    this.paused = false;
    this.pump();
  }
  feed(chunks: Buffer[]): void {
    this.queue.push(...chunks);
    this.pump();
  }
  private pumping = false;
  /** One chunk a turn of the event loop, as a socket's reads come. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    const next = (): void => {
      if (this.paused || this.queue.length === 0) {
        this.pumping = false;
        return;
      }
      const c = this.queue.shift()!;
      this.delivered += c.length;
      this.emit('data', c);
      setImmediate(next);
    };
    setImmediate(next);
  }
}

describe('bad input is read at a bounded rate', () => {
  it('a flood is read no faster than burstBytesPerSecond', async () => {
    const carrier = new PausableCarrier();
    const link = new AstmLink(carrier, { onMessage: async () => undefined, onIssue: () => undefined }, { burstBytesPerSecond: 64 * 1024, coalesceBadInput: true });
    link.start();
    cleanups.push(() => link.stop());
    carrier.feed(Array.from({ length: 64 }, (_, i) => lineNoise(16 * 1024, i + 1))); // 1 MiB waiting
    await new Promise((r) => setTimeout(r, 1000));
    // About 64 KiB a second (and the first chunk, read before the burst began).
    expect(carrier.pauses).toBeGreaterThan(1);
    expect(carrier.delivered).toBeLessThanOrEqual(160 * 1024);
    expect(carrier.delivered).toBeGreaterThanOrEqual(32 * 1024);
  });

  it('good messages are never paused', async () => {
    const carrier = new PausableCarrier();
    const messages: Buffer[] = [];
    const link = new AstmLink(carrier, { onMessage: async (m) => void messages.push(m.text), onIssue: () => undefined }, { coalesceBadInput: true });
    link.start();
    cleanups.push(() => link.stop());
    const one = Buffer.concat([Buffer.from([ENQ]), encodeFrame(1, 'H|\\^&|||X\r', false), encodeFrame(2, 'L|1|N\r', true), Buffer.from([EOT])]);
    carrier.feed(Array.from({ length: 200 }, () => one));
    await eventually('every message', () => messages.length === 200);
    expect(carrier.pauses).toBe(0);
  });
});
