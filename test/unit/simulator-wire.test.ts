import { describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import { ChunkedWriter } from '../../src/driver-sdk/simulator-wire.ts';
import type { ByteTransport } from '../../src/transports/transport.ts';
import { seededRandom } from '../../src/util/random.ts';

/** Records every write; `failAt` makes the n-th write (0-based) throw. */
class RecordingTransport extends EventEmitter implements ByteTransport {
  readonly description = 'recording';
  readonly writes: Buffer[] = [];
  isOpen = true;
  failAt = -1;
  async open(): Promise<void> {}
  async close(): Promise<void> {
    this.isOpen = false;
  }
  async write(data: Buffer): Promise<void> {
    if (this.writes.length === this.failAt) {
      this.failAt = -1;
      throw new Error('EIO');
    }
    this.writes.push(Buffer.from(data));
  }
}

describe('ChunkedWriter', () => {
  const pieces = [Buffer.from('first line\r\n'), Buffer.from('a second, longer line of text\r\n')];

  it('writes every byte in order, in chunks from 1 to maxChunk, and calls queue behind each other', async () => {
    const t = new RecordingTransport();
    const wire = new ChunkedWriter(seededRandom(7), 5, () => true);
    void wire.write(t, pieces);
    await wire.write(t, [Buffer.from('third')]);
    expect(Buffer.concat(t.writes).toString()).toBe('first line\r\na second, longer line of text\r\nthird');
    expect(t.writes.every((w) => w.length >= 1 && w.length <= 5)).toBe(true);
    expect(new Set(t.writes.map((w) => w.length)).size).toBeGreaterThan(1); // really random cuts
  });

  it('the same seed cuts the same way; maxChunk 0 writes each piece whole', async () => {
    const cuts = async (seed: number): Promise<number[]> => {
      const t = new RecordingTransport();
      await new ChunkedWriter(seededRandom(seed), 4, () => true).write(t, pieces);
      return t.writes.map((w) => w.length);
    };
    expect(await cuts(3)).toEqual(await cuts(3));
    const t = new RecordingTransport();
    await new ChunkedWriter(seededRandom(3), 0, () => true).write(t, pieces);
    expect(t.writes.map(String)).toEqual(pieces.map(String));
  });

  it('drops the rest of a reply once the transport closes or is no longer current, and goes on for the new one', async () => {
    // The simulator moves to another transport after the old one took three chunks of the reply.
    const next = new RecordingTransport();
    class Unplugged extends RecordingTransport {
      override async write(data: Buffer): Promise<void> {
        await super.write(data);
        if (this.writes.length === 3) current = next;
      }
    }
    const old = new Unplugged();
    let current: ByteTransport = old;
    const wire = new ChunkedWriter(seededRandom(1), 1, (t) => t === current);
    await wire.write(old, pieces);
    expect(Buffer.concat(old.writes).toString()).toBe('fir');
    await wire.write(next, [Buffer.from('ok')]);
    expect(Buffer.concat(next.writes).toString()).toBe('ok');

    const closed = new RecordingTransport();
    closed.isOpen = false;
    await new ChunkedWriter(seededRandom(1), 3, () => true).write(closed, pieces);
    expect(closed.writes).toEqual([]);
  });

  it('a failed write drops the rest of that call without rejecting, and later calls are written', async () => {
    const t = new RecordingTransport();
    t.failAt = 1;
    const wire = new ChunkedWriter(seededRandom(5), 2, () => true);
    await expect(wire.write(t, pieces)).resolves.toBeUndefined();
    expect(t.writes).toHaveLength(1);
    await wire.write(t, [Buffer.from('next')]);
    expect(Buffer.concat(t.writes.slice(1)).toString()).toBe('next');
  });

  it("in 'report' mode a failed write rejects the call with the transport's error, and the queue goes on", async () => {
    const t = new RecordingTransport();
    t.failAt = 1;
    const wire = new ChunkedWriter(seededRandom(5), 2, () => false, 'report');
    await expect(wire.write(t, pieces)).rejects.toThrow('EIO');
    await wire.write(t, [Buffer.from('next')]); // not current and yet written: the caller decides
    expect(Buffer.concat(t.writes.slice(1)).toString()).toBe('next');
    t.isOpen = false;
    t.failAt = t.writes.length;
    await expect(wire.write(t, [Buffer.from('x')])).rejects.toThrow('EIO');
  });

  it('pauses before each piece', async () => {
    const t = new RecordingTransport();
    const started = Date.now();
    await new ChunkedWriter(seededRandom(5), 0, () => true).write(t, pieces, 30);
    expect(t.writes).toHaveLength(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(55);
  });
});
