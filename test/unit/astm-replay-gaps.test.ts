/**
 * A replay says and does what the live link does: a capture with one frame removed never
 * publishes a record from the message the frame belonged to (the live link would never have
 * taken it whole). Property over every generic-path golden message, each framing style, any
 * frame removed, and any number of whole messages around it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeAstm } from '../../drivers/analyzers/astm/records.ts';
import { encodeFrames, frameMessage, type FramingStyle } from '../../src/protocols/astm/frame.ts';
import { CLASS_CASES } from '../fixtures/astm/make-class-cases.ts';

const ctx = { deviceId: 'lab-1', timezone: 'UTC' };
const MESSAGES = CLASS_CASES.filter((c) => c.framing !== 'bare').map((c) => Buffer.from(c.records.join('\r') + '\r', c.bytesEncoding ?? 'latin1'));
const STYLES: FramingStyle[] = ['record-etx', 'record-etb', 'split'];

const transmission = (frames: Buffer[]): Buffer => Buffer.concat([Buffer.from([0x05]), ...frames, Buffer.from([0x04])]);

describe('a capture with a frame removed', () => {
  it('publishes nothing from that message; the whole messages around it are all published', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: MESSAGES.length - 1 }),
        fc.constantFrom(...STYLES),
        fc.integer({ min: 16, max: 90 }),
        fc.nat(),
        fc.integer({ min: 0, max: 2 }),
        fc.integer({ min: 0, max: 2 }),
        (which, style, size, pick, before, after) => {
          const frames = encodeFrames(frameMessage(MESSAGES[which]!, style, size));
          fc.pre(frames.length >= 2);
          const gone = pick % frames.length;
          const holed = transmission(frames.filter((_, i) => i !== gone));
          const whole = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => transmission(encodeFrames(frameMessage(MESSAGES[(which + i + 1) % MESSAGES.length]!, 'record-etb'))));
          const around = [whole(before), whole(after)];
          const bytes = Buffer.concat([...around[0]!, holed, ...around[1]!]);
          const alone = decodeAstm({ kind: 'raw', bytes: Buffer.concat(around.flat()) }, ctx).drafts.result ?? [];
          const got = decodeAstm({ kind: 'raw', bytes }, ctx).drafts.result ?? [];
          expect(got.length).toBe(alone.length);
          const holedDrafts = decodeAstm({ kind: 'raw', bytes: holed }, ctx);
          expect(holedDrafts.drafts.result ?? []).toEqual([]);
          expect(holedDrafts.issues.length).toBeGreaterThan(0);
        },
      ),
      { numRuns: 300 },
    );
  });
});
