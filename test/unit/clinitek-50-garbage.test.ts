/**
 * The CLINITEK 50 framer under line noise (issue 16): a burst of bytes between packets is held
 * bounded (its first and last bytes and a count, not every byte), costs the same per byte from
 * 1 KB to 4 MB, is reported once with how much was dropped, and does not depend on how the wire
 * cut it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PacketFramer, type FramedItem } from '../../drivers/urinalysis/clinitek-50/codec.ts';
import { itemIssue } from '../../drivers/urinalysis/clinitek-50/records.ts';
import { lineNoise } from '../helpers/line-noise.ts';

const PACKET = Buffer.from('\x02\r\n6510 test packet\r\n\x03', 'latin1');
const KEEP = PacketFramer.GARBAGE_KEEP;

/** Line noise with no STX, NAK, XON or XOFF in it (so it is one burst). */
function noise(n: number, seed = 7): Buffer {
  return Buffer.from(lineNoise(n, seed).map((b) => (b === 0x02 || b === 0x15 || b === 0x11 || b === 0x13 ? 0x20 : b)));
}

function frame(chunks: Buffer[]): FramedItem[] {
  const f = new PacketFramer();
  return [...chunks.flatMap((c) => f.push(c)), ...f.finish()];
}

describe('CLINITEK 50 framer: garbage is bounded', () => {
  it('4 MB of noise without a packet: the framer holds at most GARBAGE_KEEP bytes of it all along', () => {
    const f = new PacketFramer();
    const bytes = noise(4 << 20);
    let most = 0;
    for (let i = 0; i < bytes.length; i += 4096) {
      f.push(bytes.subarray(i, i + 4096));
      most = Math.max(most, f.held);
    }
    // Before: every byte was kept until an STX came (4 MB held).
    expect(most).toBe(KEEP);
    const items = [...f.push(PACKET), ...f.finish()];
    expect(items.map((i) => i.kind)).toEqual(['garbage', 'packet']);
    const burst = items[0] as Extract<FramedItem, { kind: 'garbage' }>;
    expect(burst.size).toBe(bytes.length);
    expect(burst.bytes).toEqual(Buffer.concat([bytes.subarray(0, KEEP / 2), bytes.subarray(bytes.length - KEEP / 2)]));
  });

  it('the burst is reported once, saying how many bytes were dropped; a short one as before', () => {
    const long = frame([noise(10_000), PACKET]);
    expect(long.filter((i) => i.kind === 'garbage')).toHaveLength(1);
    expect(itemIssue(long[0]!)).toEqual({
      reason: `garbage (10000 bytes, ${10_000 - KEEP} dropped; the first and last ${KEEP / 2} kept)`,
      bytes: (long[0] as { bytes: Buffer }).bytes,
    });
    const short = noise(KEEP);
    const items = frame([short, PACKET]);
    expect(items[0]).toEqual({ kind: 'garbage', bytes: short, size: KEEP });
    expect(itemIssue(items[0]!)).toEqual({ reason: 'garbage', bytes: short });
  });

  it('the same items however the wire cuts noise and packets', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.integer({ min: 1, max: 2000 }).map((n) => noise(n, n)), fc.constant(PACKET)), { maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 20 }),
        (parts, cuts) => {
          const all = Buffer.concat(parts);
          const whole = frame([all]);
          const chunks: Buffer[] = [];
          for (let at = 0, i = 0; at < all.length; i++) {
            const n = cuts[i % cuts.length]!;
            chunks.push(all.subarray(at, at + n));
            at += n;
          }
          expect(frame(chunks)).toEqual(whole);
          for (const item of whole) if (item.kind === 'garbage') expect(item.bytes.length).toBeLessThanOrEqual(KEEP);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('time per byte of noise stays flat from 1 KB to 4 MB', () => {
    const perByte = (n: number): number => {
      const bytes = noise(n);
      let best = Infinity;
      for (let run = 0; run < 3; run++) {
        const started = process.hrtime.bigint();
        const f = new PacketFramer();
        for (let i = 0; i < bytes.length; i += 1024) f.push(bytes.subarray(i, i + 1024));
        f.finish();
        best = Math.min(best, Number(process.hrtime.bigint() - started) / n);
      }
      return best;
    };
    perByte(64 << 10); // warm-up
    const sizes = [16 << 10, 256 << 10, 4 << 20];
    const costs = sizes.map(perByte);
    expect(Math.max(...costs) / Math.min(...costs)).toBeLessThan(4);
  });
});
