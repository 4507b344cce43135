import { describe, expect, it } from 'vitest';
import {
  ACK,
  astmChecksum,
  AstmFrameReader,
  CR,
  encodeFrame,
  encodeTransmission,
  ENQ,
  EOT,
  ETB,
  ETX,
  frameMessage,
  LF,
  STX,
  type AstmFrameEvent,
} from '../../src/protocols/astm/frame.ts';

/**
 * The E1381 framer's rules one branch at a time: the frame number range, the checksum digits
 * (every edge of the hex ranges, upper and lower case), each trailer defect and what follows it,
 * strict and lenient line ends, oversized frames and garbage with bounded memory, and the reader's
 * state across finish(), reset() and midFrame. Each case states the exact events, reason and
 * detail, since the link answers each bad frame with one NAK and quarantines its bytes.
 */

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const cat = (...parts: (Buffer | string | number[])[]): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'string' ? b(p) : Buffer.from(p))));
const TEXT = 'H|\\^&\r';

function read(bytes: Buffer, options: ConstructorParameters<typeof AstmFrameReader>[0] = {}, finish = false): AstmFrameEvent[] {
  const r = new AstmFrameReader(options);
  return [...r.push(bytes), ...(finish ? r.finish() : [])];
}

/** STX FN text ETX/ETB, then `trailer` as given (checksum digits and line end). */
function frameWith(fn: string, text: string, trailer: string, end = ETX): Buffer {
  return cat([STX], fn, text, [end], trailer);
}

/** The two checksum characters of a frame, uppercase. */
function checksumOf(fn: string, text: string, end = ETX): string {
  return astmChecksum(cat(fn, text, [end])).toString(16).padStart(2, '0').toUpperCase();
}

/** A frame text (starting with `TEXT`) whose FN '1' … ETX sum is `target`. */
function textWithSum(target: number): string {
  const base = astmChecksum(cat('1', TEXT, '\r', [ETX]));
  for (let c = 0x20; c < 0x7f; c++) {
    for (let d = 0x20; d < 0x7f; d++) {
      const e = (((target - base - c - d) % 256) + 512) % 256;
      if (e >= 0x20 && e < 0x7f && e !== 0x7c && e !== 0x5c && e !== 0x5e && e !== 0x26) return `${TEXT}${String.fromCharCode(c, d, e)}\r`;
    }
  }
  throw new Error(`no text sums to ${target}`);
}

const summary = (events: AstmFrameEvent[]): string[] =>
  events.map((e) =>
    e.type === 'frame'
      ? `F${e.number}${e.final ? 'x' : 'b'}${e.lowercaseChecksum ? 'l' : ''}`
      : e.type === 'control'
        ? e.name
        : e.type === 'bad-frame'
          ? `bad:${e.reason}:${e.number}`
          : `garbage:${e.bytes.toString('hex')}`,
  );

describe('encodeFrame', () => {
  it.each([-1, 8, 1.5, Number.NaN])('refuses frame number %s with a RangeError naming it', (n) => {
    expect(() => encodeFrame(n, 'x', true)).toThrow(new RangeError(`frame number ${n} is not 0–7`));
  });

  it('takes 0 and 7', () => {
    expect(encodeFrame(0, 'L|1\r', true)[1]).toBe(0x30);
    expect(encodeFrame(7, 'L|1\r', true)[1]).toBe(0x37);
  });

  it('writes string text as Latin-1, one byte per character, and bytes as they are', () => {
    const f = encodeFrame(1, 'R|1|é\r', true);
    expect(f.subarray(2, 9)).toEqual(Buffer.from([0x52, 0x7c, 0x31, 0x7c, 0xe9, 0x0d, ETX]));
    expect(encodeFrame(1, new Uint8Array([0x52, 0xe9, 0x0d]), true)).toEqual(encodeFrame(1, 'Ré\r', true));
    expect(read(f)).toMatchObject([{ type: 'frame', text: b('R|1|é\r') }]);
  });
});

describe('frameMessage and encodeTransmission', () => {
  it('an empty message is one empty final frame when split or single', () => {
    for (const style of ['split', 'single'] as const) {
      expect(frameMessage(Buffer.alloc(0), style)).toEqual([{ text: Buffer.alloc(0), final: true }]);
    }
    expect(frameMessage(Buffer.alloc(0))).toEqual([{ text: Buffer.alloc(0), final: true }]);
  });

  it('a message of exactly two frame sizes is two frames, not three', () => {
    const parts = frameMessage(b('abcdefgh'), 'split', 4);
    expect(parts.map((p) => [p.text.toString('latin1'), p.final])).toEqual([
      ['abcd', false],
      ['efgh', true],
    ]);
    expect(frameMessage(b('ab\rcd\r'), 'record-etx', 3).map((p) => p.text.toString('latin1'))).toEqual(['ab\r', 'cd\r']);
  });

  it('a last record without its CR is still framed', () => {
    expect(frameMessage(b('H|x\rL|1'), 'record-etx').map((p) => [p.text.toString('latin1'), p.final])).toEqual([
      ['H|x\r', true],
      ['L|1', true],
    ]);
    expect(frameMessage(b('H|x\rL|1'), 'record-etb').map((p) => [p.text.toString('latin1'), p.final])).toEqual([
      ['H|x\r', false],
      ['L|1', true],
    ]);
  });

  it('the default style splits by size: a short two-record message is one frame', () => {
    const msg = b('H|\\^&\rL|1|N\r');
    expect(frameMessage(msg)).toEqual([{ text: msg, final: true }]);
    expect(encodeTransmission(msg)).toEqual(cat([ENQ], encodeFrame(1, msg, true), [EOT]));
    expect(encodeTransmission(msg, 'record-etb')).toEqual(cat([ENQ], encodeFrame(1, 'H|\\^&\r', false), encodeFrame(2, 'L|1|N\r', true), [EOT]));
  });
});

describe('checksum digits', () => {
  // Sums whose hex digits sit on each edge of 0–9, A–F.
  it.each([0x09, 0x90, 0xa0, 0x0a, 0xf0, 0x0f, 0xaf, 0xfa, 0x9f, 0xf9])('a frame with checksum %s is accepted, upper or lower case', (sum) => {
    const text = textWithSum(sum);
    const upper = checksumOf('1', text);
    expect(read(frameWith('1', text, `${upper}\r\n`))).toMatchObject([{ type: 'frame', number: 1, final: true, text: b(text), lowercaseChecksum: false }]);
    const lower = upper.toLowerCase();
    const events = read(frameWith('1', text, `${lower}\r\n`));
    expect(events).toMatchObject([{ type: 'frame', number: 1, text: b(text) }]);
    expect((events[0] as Extract<AstmFrameEvent, { type: 'frame' }>).lowercaseChecksum).toBe(lower !== upper);
  });

  it.each([
    ['a0', true],
    ['f0', true],
    ['0a', true],
    ['0f', true],
    ['A0', false],
    ['F0', false],
    ['0A', false],
    ['0F', false],
    ['90', false],
    ['09', false],
  ])('checksum written %s: lowercase %s', (written, lower) => {
    const text = textWithSum(parseInt(written, 16));
    const events = read(frameWith('1', text, `${written}\r\n`));
    expect(summary(events)).toEqual([`F1x${lower ? 'l' : ''}`]);
  });

  it.each(['/', ':', '@', 'G', '`', 'g', ' '])('a first checksum character %j is a malformed trailer, reported at once', (c) => {
    const text = textWithSum(0x00);
    const frame = frameWith('1', text, `${c}0\r\n`);
    const events = read(frame);
    expect(events[0]).toEqual({
      type: 'bad-frame',
      reason: 'malformed-trailer',
      detail: 'ETB/ETX is not followed by two hex digits and CR LF',
      number: 1,
      raw: frame.subarray(0, frame.length - 3),
    });
    // The rest of the line is the tail of that frame: garbage, never a second bad frame.
    expect(summary(events)).toEqual(['bad:malformed-trailer:1', 'garbage:300d0a']);
  });

  it.each(['/', ':', '@', 'G', '`', 'g'])('a second checksum character %j is a malformed trailer', (c) => {
    const frame = frameWith('1', TEXT, `0${c}\r\n`);
    expect(summary(read(frame))).toEqual(['bad:malformed-trailer:1', 'garbage:0d0a']);
  });

  it('a wrong checksum names both sums', () => {
    const good = checksumOf('1', TEXT);
    const wrong = good === '00' ? '01' : '00';
    const frame = frameWith('1', TEXT, `${wrong}\r\n`);
    expect(read(frame)).toEqual([
      { type: 'bad-frame', reason: 'checksum', detail: `the frame carries checksum ${wrong}, its bytes sum to ${good}`, number: 1, raw: frame },
    ]);
  });
});

describe('frame numbers', () => {
  it.each(['8', '9', '/', ':', 'A'])('FN %j with a good checksum is a bad frame number', (fn) => {
    const frame = frameWith(fn, TEXT, `${checksumOf(fn, TEXT)}\r\n`);
    expect(read(frame)).toEqual([{ type: 'bad-frame', reason: 'bad-frame-number', detail: 'the byte after STX is not a frame number 0–7', number: null, raw: frame }]);
  });

  it.each([
    ['0', 0],
    ['7', 7],
  ])('FN %s is frame %i', (fn, n) => {
    expect(read(frameWith(fn, TEXT, `${checksumOf(fn, TEXT)}\r\n`))).toMatchObject([{ type: 'frame', number: n }]);
  });

  it.each([
    ['0', 0],
    ['3', 3],
    ['7', 7],
    ['8', null],
    ['/', null],
  ])('a truncated frame with FN %j reports number %s', (fn, n) => {
    const frame = cat([STX], fn, 'H|x\r\n');
    expect(read(frame)).toEqual([{ type: 'bad-frame', reason: 'truncated', detail: 'the frame ended (LF) before ETB/ETX', number: n, raw: frame }]);
  });

  it('an STX alone then LF: truncated with no number', () => {
    expect(read(cat([STX, LF]))).toEqual([{ type: 'bad-frame', reason: 'truncated', detail: 'the frame ended (LF) before ETB/ETX', number: null, raw: cat([STX, LF]) }]);
  });
});

describe('trailer defects', () => {
  const cs = checksumOf('1', TEXT);

  it('checksum then LF with no CR is accepted on a live link too (CR stripped)', () => {
    expect(summary(read(frameWith('1', TEXT, `${cs}\n`)))).toEqual(['F1x']);
  });

  it('checksum then a byte that is neither CR nor LF: malformed at once, the line after it is its tail', () => {
    const frame = frameWith('1', TEXT, `${cs}X\n`);
    const events = read(frame);
    expect(events[0]).toMatchObject({ type: 'bad-frame', reason: 'malformed-trailer', raw: frame.subarray(0, frame.length - 1) });
    expect(summary(events)).toEqual(['bad:malformed-trailer:1', 'garbage:0a']);
  });

  it('checksum CR then a byte other than LF: malformed', () => {
    const frame = frameWith('1', TEXT, `${cs}\rX\r\n`);
    expect(summary(read(frame))).toEqual(['bad:malformed-trailer:1', 'garbage:0d0a']);
  });

  it('checksum CR CR LF: malformed at the second CR', () => {
    const frame = frameWith('1', TEXT, `${cs}\r\r\n`);
    const events = read(frame);
    expect(events[0]).toMatchObject({ type: 'bad-frame', reason: 'malformed-trailer', raw: frame.subarray(0, frame.length - 1) });
    expect(summary(events)).toEqual(['bad:malformed-trailer:1', 'garbage:0a']);
  });

  it('LF right after ETX, or after one checksum digit: malformed, and the next frame-like line is a missing STX', () => {
    const next = cat('2P|1\r', [ETX], '00\r\n');
    for (const trailer of ['\n', '0\n']) {
      const frame = frameWith('1', TEXT, trailer);
      const events = read(cat(frame, next));
      expect(events[0]).toEqual({ type: 'bad-frame', reason: 'malformed-trailer', detail: 'ETB/ETX is not followed by two hex digits and CR LF', number: 1, raw: frame });
      expect(events[1]).toEqual({ type: 'bad-frame', reason: 'missing-stx', detail: 'bytes ending like a frame (ETB/ETX, checksum, LF) arrived without STX', number: null, raw: next });
      expect(events).toHaveLength(2);
    }
  });

  it('a malformed trailer followed by ETX in the same line: the rest is that frame\'s tail (garbage), not a missing STX', () => {
    const frame = frameWith('1', TEXT, 'G');
    expect(summary(read(cat(frame, [ETX], '\r\n')))).toEqual(['bad:malformed-trailer:1', 'garbage:030d0a']);
  });

  it('the tail mark ends with the garbage it covers: a frame-like line after an ENQ is a missing STX again', () => {
    const next = cat('2P|1\r', [ETX], '00\r\n');
    const events = read(cat(frameWith('1', TEXT, 'G'), 'z', [ENQ], next));
    expect(summary(events)).toEqual(['bad:malformed-trailer:1', 'garbage:7a', 'ENQ', 'bad:missing-stx:null']);
  });

  it('two frame-like lines without STX in a row are two missing-STX frames (the first is nobody\'s tail)', () => {
    const line = cat('2P|1\r', [ETX], '00\r\n');
    expect(summary(read(cat(line, line)))).toEqual(['bad:missing-stx:null', 'bad:missing-stx:null']);
  });

  it('after a missing-STX line, the garbage collected next holds only its own bytes', () => {
    const events = read(cat('2P|1\r', [ETX], '00\r\n', 'zz'), {}, true);
    expect(summary(events)).toEqual(['bad:missing-stx:null', 'garbage:7a7a']);
  });

  it('restricted bytes in the text are refused, naming the byte with two hex digits', () => {
    const text = `H|\x01x\r`;
    const frame = frameWith('1', text, `${checksumOf('1', text)}\r\n`);
    expect(read(frame)).toEqual([{ type: 'bad-frame', reason: 'restricted-character', detail: 'the frame text holds control byte 0x01', number: 1, raw: frame }]);
  });
});

describe('strict and lenient line ends', () => {
  const cs = checksumOf('1', TEXT);
  const noLineEnd = frameWith('1', TEXT, cs);
  const next = encodeFrame(2, 'L|1\r', true);

  it('strict (the default): a frame without CR LF cut by the next STX is interrupted, with its detail', () => {
    const events = read(cat(noLineEnd, next));
    expect(events[0]).toEqual({ type: 'bad-frame', reason: 'interrupted', detail: 'a new STX arrived before the frame ended', number: 1, raw: noLineEnd });
    expect(summary(events)).toEqual(['bad:interrupted:1', 'F2x']);
    expect(summary(read(cat(noLineEnd, next), { lenientLineEnd: false }))).toEqual(['bad:interrupted:1', 'F2x']);
  });

  it('lenient: a frame that lacks only its line end is complete when the next STX comes', () => {
    expect(summary(read(cat(noLineEnd, next), { lenientLineEnd: true }))).toEqual(['F1x', 'F2x']);
  });

  it('lenient: one checksum digit then STX is still interrupted; so is a frame with no ETX yet', () => {
    expect(summary(read(cat(frameWith('1', TEXT, cs[0]!), next), { lenientLineEnd: true }))).toEqual(['bad:interrupted:1', 'F2x']);
    expect(summary(read(cat([STX], '1H|x', next), { lenientLineEnd: true }))).toEqual(['bad:interrupted:1', 'F2x']);
  });

  it('lenient: the frame is taken at its CR (raw ends there); the LF after it is swallowed, anything else is read', () => {
    const withCr = frameWith('1', TEXT, `${cs}\r`);
    expect(read(cat(withCr, [LF]), { lenientLineEnd: true })).toMatchObject([{ type: 'frame', raw: withCr }]);
    expect(summary(read(cat(withCr, [ENQ]), { lenientLineEnd: true }))).toEqual(['F1x', 'ENQ']);
    expect(summary(read(cat(withCr, [LF, LF]), { lenientLineEnd: true }))).toEqual(['F1x', 'garbage:0a']);
  });

  it('strict: the frame is taken at its LF, raw through the LF', () => {
    const frame = frameWith('1', TEXT, `${cs}\r\n`);
    expect(read(frame)).toMatchObject([{ type: 'frame', raw: frame }]);
  });

  it('an LF at the very start is garbage, not swallowed', () => {
    expect(summary(read(cat([LF])))).toEqual(['garbage:0a']);
    expect(summary(read(cat([LF]), { lenientLineEnd: true }))).toEqual(['garbage:0a']);
  });
});

describe('finish, reset, midFrame', () => {
  const cs = checksumOf('1', TEXT);

  it('finish() evaluates a pending frame as it is: complete up to its checksum is a frame', () => {
    const r = new AstmFrameReader();
    expect(r.push(frameWith('1', TEXT, cs))).toEqual([]);
    expect(r.midFrame).toBe(true);
    expect(summary(r.finish())).toEqual(['F1x']);
    expect(r.midFrame).toBe(false);
  });

  it('finish() on a frame with no ETX: truncated, with its own detail', () => {
    const r = new AstmFrameReader();
    r.push(cat([STX], '1H|x'));
    expect(r.finish()).toEqual([{ type: 'bad-frame', reason: 'truncated', detail: 'the frame ended before ETB/ETX', number: 1, raw: cat([STX], '1H|x') }]);
  });

  it('finish() reports pending garbage and leaves a clean reader', () => {
    const r = new AstmFrameReader();
    r.push(b('zz'));
    expect(summary(r.finish())).toEqual(['garbage:7a7a']);
    expect(r.finish()).toEqual([]);
  });

  it('reset() drops a half-read frame: the next frame is read with no interrupted report', () => {
    const r = new AstmFrameReader();
    r.push(cat([STX], '1H|x'));
    expect(r.midFrame).toBe(true);
    r.reset();
    expect(r.midFrame).toBe(false);
    expect(summary(r.push(encodeFrame(1, TEXT, true)))).toEqual(['F1x']);
  });

  it('reset() drops pending garbage and the tail mark, and swallows no LF', () => {
    const r = new AstmFrameReader({ lenientLineEnd: true });
    r.push(cat(frameWith('1', TEXT, `${cs}\r`)));
    r.reset();
    expect(summary(r.push(cat([LF])))).toEqual(['garbage:0a']);
    const s = new AstmFrameReader();
    s.push(cat(frameWith('1', TEXT, 'G'), 'zz'));
    s.reset();
    expect(summary(s.push(cat('2P|1\r', [ETX], '00\r\n')))).toEqual(['bad:missing-stx:null']);
    expect(s.finish()).toEqual([]);
  });

  it('midFrame is true while an oversized frame is being discarded', () => {
    const r = new AstmFrameReader({ maxFrameBytes: 16 });
    r.push(cat([STX], '1', 'x'.repeat(20)));
    expect(r.midFrame).toBe(true);
    r.push(cat([LF]));
    expect(r.midFrame).toBe(false);
  });
});

describe('oversized frames and garbage: bounded memory', () => {
  it('a frame past maxFrameBytes is one error naming the limit; the rest up to LF is dropped', () => {
    const r = new AstmFrameReader({ maxFrameBytes: 16 });
    const events = r.push(cat([STX], '1', 'x'.repeat(30), [ETX], '00\r\n', [ENQ]));
    expect(events[0]).toMatchObject({ type: 'bad-frame', reason: 'frame-too-long', detail: 'no frame end within 16 bytes', number: 1 });
    expect((events[0] as Extract<AstmFrameEvent, { type: 'bad-frame' }>).raw.length).toBe(16);
    expect(summary(events)).toEqual(['bad:frame-too-long:1', 'ENQ']);
  });

  it('an STX while discarding starts the next frame', () => {
    const r = new AstmFrameReader({ maxFrameBytes: 16 });
    expect(summary(r.push(cat([STX], '1', 'x'.repeat(30), encodeFrame(2, 'L|1\r', true))))).toEqual(['bad:frame-too-long:1', 'F2x']);
  });

  it('when the byte past the limit is the LF itself, nothing is left to discard', () => {
    const r = new AstmFrameReader({ maxFrameBytes: 16 });
    expect(summary(r.push(cat([STX], '1', 'x'.repeat(14), [LF, ENQ, ACK])))).toEqual(['bad:frame-too-long:1', 'ENQ', 'ACK']);
  });

  it('garbage is flushed in pieces of maxFrameBytes', () => {
    const r = new AstmFrameReader({ maxFrameBytes: 16 });
    const events = r.push(b('z'.repeat(20)));
    expect(events).toEqual([{ type: 'garbage', bytes: b('z'.repeat(16)) }]);
    expect(r.finish()).toEqual([{ type: 'garbage', bytes: b('zzzz') }]);
  });

  it('maxFrameBytes is at least 16 and whole', () => {
    expect(new AstmFrameReader({ maxFrameBytes: 3 }).maxFrameBytes).toBe(16);
    expect(new AstmFrameReader({ maxFrameBytes: 100.7 }).maxFrameBytes).toBe(100);
    expect(new AstmFrameReader().maxFrameBytes).toBe(64_000);
  });
});

describe('ETB frames', () => {
  it('an ETB frame is not final; its checksum covers ETB', () => {
    const frame = frameWith('1', TEXT, `${checksumOf('1', TEXT, ETB)}\r\n`, ETB);
    expect(read(frame)).toMatchObject([{ type: 'frame', number: 1, final: false, text: b(TEXT) }]);
    expect(frame).toEqual(encodeFrame(1, TEXT, false));
    expect(CR).toBe(0x0d);
  });
});
