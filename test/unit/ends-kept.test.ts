/**
 * EndsKept: what a framer keeps of a burst of noise. Whatever the chunking, the kept bytes are the
 * run itself when it fits, else exactly its first and last halves, and the size counts everything.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EndsKept } from '../../src/util/ends-kept.ts';

function expected(run: Buffer, keep: number): Buffer {
  const half = Math.floor(keep / 2);
  return run.length <= 2 * half ? run : Buffer.concat([run.subarray(0, half), run.subarray(run.length - half)]);
}

describe('EndsKept', () => {
  it('keeps the first and last halves of any run, cut into any chunks or pushed byte by byte', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), fc.integer({ min: 0, max: 600 }), fc.array(fc.integer({ min: 1, max: 700 }), { maxLength: 20 }), (bytes, keep, cuts) => {
        const run = Buffer.from(bytes);
        const chunked = new EndsKept(keep);
        let at = 0;
        for (const n of cuts) {
          chunked.push(run.subarray(at, at + n));
          at += n;
        }
        chunked.push(run.subarray(at));
        const byByte = new EndsKept(keep);
        for (const b of run) byByte.pushByte(b);
        for (const k of [chunked, byByte]) {
          expect(k.size).toBe(run.length);
          expect(k.kept().equals(expected(run, keep))).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('starts afresh after clear', () => {
    const k = new EndsKept(4);
    k.push(Buffer.from('abcdefgh'));
    expect(k.kept().toString()).toBe('abgh');
    k.clear();
    k.push(Buffer.from('xyz'));
    expect([k.size, k.kept().toString()]).toEqual([3, 'xyz']);
  });
});
