import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  astmChecksum,
  AstmFrameReader,
  encodeFrame,
  encodeFrames,
  encodeTransmission,
  ENQ,
  EOT,
  ETB,
  ETX,
  frameMessage,
  STX,
  type AstmFrameEvent,
  type FramingStyle,
} from '../../src/protocols/astm/frame.ts';
import { collectMessages } from '../../src/protocols/astm/link.ts';

import { itShared, sharedFixture } from '../helpers/shared-fixtures.ts';

const C111 = sharedFixture('astm/roche-cobas-c111.bin');
const PENTRA = sharedFixture('astm/horiba-pentra-xlr.bin');
const DCA = sharedFixture('astm/siemens-dca-vantage.bin');
const c111 = C111.bytesOrEmpty();
const pentra = PENTRA.bytesOrEmpty();

const summary = (events: AstmFrameEvent[]): string[] =>
  events.map((e) =>
    e.type === 'frame' ? `F${e.number}${e.final ? 'x' : 'b'}:${e.text.toString('latin1')}` : e.type === 'control' ? e.name : e.type === 'bad-frame' ? `bad:${e.reason}` : `garbage:${e.bytes.toString('hex')}`,
  );

function readAll(bytes: Buffer, chunks?: number[], lenient = false): AstmFrameEvent[] {
  const r = new AstmFrameReader({ lenientLineEnd: lenient });
  const out: AstmFrameEvent[] = [];
  let i = 0;
  for (const n of chunks ?? [bytes.length]) {
    out.push(...r.push(bytes.subarray(i, i + n)));
    i += n;
  }
  out.push(...r.push(bytes.subarray(i)));
  return out;
}

describe('checksum and encoder', () => {
  itShared([C111], 'matches the real cobas c111 frames (research note §2.7-A: 2P|1||<CR><ETB> → 4B)', () => {
    expect(astmChecksum(Buffer.from('2P|1||\r\x17', 'latin1'))).toBe(0x4b);
    const frame2 = encodeFrame(2, 'P|1||\r', false);
    expect(c111.includes(frame2)).toBe(true);
    const last = encodeFrame(7, 'L|1|N\r', true);
    expect(last.toString('latin1')).toBe('\x027L|1|N\r\x030A\r\n');
    expect(c111.includes(last)).toBe(true);
  });

  it('writes lowercase hex when asked, and the reader accepts it', () => {
    const f = encodeFrame(1, 'L|1|N\r', true, { lowercaseChecksum: true });
    expect(f.toString('latin1')).toBe('\x021L|1|N\r\x0304\r\n');
    const g = encodeFrame(7, 'L|1|N\r', true, { lowercaseChecksum: true });
    expect(g.toString('latin1')).toContain('\x030a\r\n');
    const ev = readAll(g);
    expect(ev).toHaveLength(1);
    expect(ev[0]).toMatchObject({ type: 'frame', number: 7, final: true, lowercaseChecksum: true });
  });

  it('frames a message in the four styles', () => {
    const msg = Buffer.from('H|\\^&\rP|1\rR|1|^^^GLU|5.5|mmol/L\rL|1|N\r', 'latin1');
    const texts = (style: FramingStyle, size?: number): string[] => frameMessage(msg, style, size).map((p) => `${p.text.toString('latin1')}${p.final ? '<ETX>' : '<ETB>'}`);
    expect(texts('record-etx')).toEqual(['H|\\^&\r<ETX>', 'P|1\r<ETX>', 'R|1|^^^GLU|5.5|mmol/L\r<ETX>', 'L|1|N\r<ETX>']);
    expect(texts('record-etb')).toEqual(['H|\\^&\r<ETB>', 'P|1\r<ETB>', 'R|1|^^^GLU|5.5|mmol/L\r<ETB>', 'L|1|N\r<ETX>']);
    expect(texts('single')).toEqual([`${msg.toString('latin1')}<ETX>`]);
    expect(texts('split', 10).join('')).toBe(`${['H|\\^&\rP|1\r', 'R|1|^^^GLU', '|5.5|mmol/', 'L\rL|1|N\r'].join('<ETB>')}<ETX>`);
    // A record longer than the frame size is cut into ETB frames even in a per-record style.
    expect(texts('record-etb', 8).slice(2, 6)).toEqual(['R|1|^^^G<ETB>', 'LU|5.5|m<ETB>', 'mol/L\r<ETB>', 'L|1|N\r<ETX>']);
  });
});

describe('a whole transmission', () => {
  it('numbers frames 1…7, 0, 1… and passes the checksum case on', () => {
    const parts = Array.from({ length: 10 }, (_, i) => ({ text: Buffer.from(`R|${i}\r`), final: i === 9 }));
    const frames = encodeFrames(parts, { lowercaseChecksum: true });
    expect(frames.map((f) => f[1]! - 0x30)).toEqual([1, 2, 3, 4, 5, 6, 7, 0, 1, 2]);
    expect(frames[9]).toEqual(encodeFrame(2, 'R|9\r', true, { lowercaseChecksum: true }));
    expect(frames[0]).toEqual(encodeFrame(1, 'R|0\r', false, { lowercaseChecksum: true }));
  });

  it('is ENQ, the frames of the chosen style and EOT, and reads back as the message', () => {
    const msg = Buffer.from('H|\\^&\rP|1\rR|1|^^^GLU|5.5|mmol/L\rL|1|N\r', 'latin1');
    const bytes = encodeTransmission(msg, 'record-etb');
    expect(summary(readAll(bytes))).toEqual(['ENQ', 'F1b:H|\\^&\r', 'F2b:P|1\r', 'F3b:R|1|^^^GLU|5.5|mmol/L\r', 'F4x:L|1|N\r', 'EOT']);
    expect(encodeTransmission(msg, 'split', 10)).toEqual(Buffer.concat([Buffer.from([ENQ]), ...encodeFrames(frameMessage(msg, 'split', 10)), Buffer.from([EOT])]));
    expect(collectMessages(encodeTransmission(msg)).messages).toEqual([msg]);
  });
});

describe('AstmFrameReader', () => {
  itShared([C111, PENTRA], 'reads the real cobas c111 and Pentra XLR streams (frame numbers wrap 7 → 0)', () => {
    expect(summary(readAll(c111)).map((s) => s.slice(0, 3))).toEqual(['ENQ', 'F1b', 'F2b', 'F3b', 'F4b', 'F5b', 'F6b', 'F7x', 'EOT']);
    const numbers = readAll(pentra).flatMap((e) => (e.type === 'frame' ? [e.number] : []));
    expect(numbers).toHaveLength(28);
    expect(numbers.slice(5, 10)).toEqual([6, 7, 0, 1, 2]);
  });

  it('any chunking of a valid stream gives the same events', () => {
    const record = fc.stringMatching(/^[A-Za-z0-9|^\\&. -]{1,60}$/);
    const message = fc.array(record, { minLength: 1, maxLength: 8 }).map((rs) => Buffer.from(['H|\\^&', ...rs, 'L|1|N'].map((r) => `${r}\r`).join(''), 'latin1'));
    const style = fc.constantFrom<FramingStyle>('record-etx', 'record-etb', 'single', 'split');
    fc.assert(
      fc.property(fc.array(fc.tuple(message, style, fc.integer({ min: 3, max: 50 })), { minLength: 1, maxLength: 3 }), fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 80 }), (msgs, cuts) => {
        const stream = Buffer.concat(msgs.map(([m, s, size]) => encodeTransmission(m, s, size)));
        const whole = summary(readAll(stream));
        expect(summary(readAll(stream, cuts))).toEqual(whole);
        expect(whole.some((s) => s.startsWith('bad') || s.startsWith('garbage'))).toBe(false);
        // And the messages collected are exactly the ones sent.
        expect(collectMessages(stream).messages.map((b) => b.toString('latin1'))).toEqual(msgs.map(([m]) => m.toString('latin1')));
      }),
      { numRuns: 200, seed: 4242 },
    );
  });

  it('any single-byte corruption of a frame is never accepted as different text, and is reported as a bad frame', () => {
    const frames = [encodeFrame(3, 'R|1|^^^550|95.2|U/L||N||F||$SYS$||20230727162028\r', false), encodeFrame(7, 'L|1|N\r', true)];
    fc.assert(
      fc.property(fc.constantFrom(...frames), fc.nat(), fc.integer({ min: 0, max: 255 }), (frame, at, byte) => {
        const i = at % frame.length;
        fc.pre(frame[i] !== byte);
        const bad = Buffer.from(frame);
        bad[i] = byte;
        // A case change of a checksum hex letter is not a corruption: lowercase is accepted.
        const endAt = frame.findIndex((b) => b === ETX || b === ETB);
        fc.pre(!(i > endAt && i <= endAt + 2 && String.fromCharCode(byte).toUpperCase() === String.fromCharCode(frame[i]!)));
        const events = readAll(bad);
        const good = events.filter((e) => e.type === 'frame');
        for (const g of good) {
          // Only a lost CR before LF is tolerated, and then the text is the original.
          expect(g.type === 'frame' && g.text.equals(frame.subarray(2, endAt))).toBe(true);
        }
        if (good.length === 0) expect(events.some((e) => e.type === 'bad-frame')).toBe(true);
        // The link answers every bad frame but an `interrupted` one with NAK: at most one NAK per frame.
        expect(events.filter((e) => e.type === 'bad-frame' && e.reason !== 'interrupted').length).toBeLessThanOrEqual(1);
      }),
      { numRuns: 3000, seed: 7 },
    );
  });

  it('reports garbage between frames and goes on', () => {
    const f1 = encodeFrame(1, 'H|\\^&\r', false);
    const f2 = encodeFrame(2, 'L|1|N\r', true);
    const ev = summary(readAll(Buffer.concat([Buffer.from('noise'), f1, Buffer.from([0xff, 0x00]), f2])));
    expect(ev).toEqual(['garbage:6e6f697365', 'F1b:H|\\^&\r', 'garbage:ff00', 'F2x:L|1|N\r']);
  });

  it('a truncated frame then its good retransmission gives one good frame', () => {
    const f = encodeFrame(2, 'P|1||\r', false);
    const ev = summary(readAll(Buffer.concat([f.subarray(0, 5), f])));
    expect(ev).toEqual(['bad:interrupted', 'F2b:P|1||\r']);
    const ev2 = summary(readAll(Buffer.concat([f.subarray(0, 5), Buffer.from('\n'), f])));
    expect(ev2).toEqual(['bad:truncated', 'F2b:P|1||\r']);
  });

  it('an oversized frame is one typed error, with bounded memory, and the next frame is read', () => {
    const r = new AstmFrameReader({ maxFrameBytes: 100 });
    const huge = encodeFrame(1, 'R|1|' + 'x'.repeat(5000) + '\r', false);
    const ev = [...r.push(huge), ...r.push(encodeFrame(2, 'L|1|N\r', true))];
    expect(ev.map((e) => e.type)).toEqual(['bad-frame', 'frame']);
    expect(ev[0]).toMatchObject({ reason: 'frame-too-long' });
    expect((ev[0] as { raw: Buffer }).raw.length).toBeLessThanOrEqual(100);
  });

  it('a frame without STX (the STX lost) is a bad frame, not garbage; restricted bytes in text are refused', () => {
    const f = encodeFrame(1, 'L|1|N\r', true);
    expect(summary(readAll(f.subarray(1)))).toEqual(['bad:missing-stx']);
    const withDc1 = encodeFrame(1, 'L|1\x11|N\r', true);
    expect(summary(readAll(withDc1))).toEqual(['bad:restricted-character']);
  });

  itShared([DCA], 'the stored single-frame files (no LF at the end) are read in lenient mode at the end of input', () => {
    const dca = DCA.bytes();
    const r = new AstmFrameReader({ lenientLineEnd: true });
    const ev = [...r.push(dca), ...r.finish()];
    expect(ev.map((e) => e.type)).toEqual(['frame']);
    expect(dca[0]).toBe(STX);
  });
});
