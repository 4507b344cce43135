import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseTranscript } from '../../src/driver-sdk/capture.ts';
import {
  FrameReader,
  LINK,
  crc16,
  encodeFrame,
  naiveFromSeconds,
  secondsFromNaive,
  splitVersion,
  type FrameItem,
} from '../../drivers/glucose/lifescan-binary/codec.ts';

import { describeShared, itShared, sharedFixture } from '../helpers/shared-fixtures.ts';

const OTDMS = sharedFixture('glucose/onetouch-ultraeasy-session.txt');
const REAL = parseTranscript(OTDMS.bytesOrEmpty().toString('latin1'));
const REAL_DEVICE = REAL.filter((e) => e.dir === 'D').map((e) => e.bytes);
const REAL_HOST = REAL.filter((e) => e.dir === 'H').map((e) => e.bytes);
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Splits bytes at the given cut points. */
function chunksAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    out.push(bytes.subarray(from, p));
    from = p;
  }
  out.push(bytes.subarray(from));
  return out;
}

function readAll(chunks: Buffer[]): FrameItem[] {
  const r = new FrameReader();
  return [...chunks.flatMap((c) => r.push(c)), ...r.flush()];
}

const summary = (items: FrameItem[]): string[] =>
  items.map((i) => (i.kind === 'frame' ? `frame:${i.frame.bytes.toString('hex')}` : `${i.code}:${i.bytes.toString('hex')}`));

describe('CRC-16/CCITT-FALSE', () => {
  it('matches the documented vectors', () => {
    expect(crc16(hex('02 06 06 03'))).toBe(0x41cd); // Tidepool lib/crc.js, "from J&J's documentation"
    expect(crc16(hex('02 06 08 03'))).toBe(0x62c2); // glucometerutils test_lifescan.py
    expect(crc16(Buffer.from('123456789'))).toBe(0x29b1); // the catalogue check value of CRC-16/CCITT-FALSE
    expect(crc16(Buffer.alloc(0))).toBe(0xffff);
  });

  itShared([OTDMS], 'verifies every frame of the real UltraEasy session, both directions', () => {
    const frames = [...REAL_DEVICE, ...REAL_HOST];
    expect(frames).toHaveLength(33);
    for (const f of frames) {
      expect(f[0]).toBe(0x02);
      expect(f[1]).toBe(f.length);
      expect(f[f.length - 3]).toBe(0x03);
      expect(crc16(f.subarray(0, f.length - 2))).toBe(f.readUInt16LE(f.length - 2));
    }
  });
});

describe('encodeFrame', () => {
  it('builds the glucometerutils vectors', () => {
    expect(encodeFrame(Buffer.alloc(0), LINK.DISC).toString('hex')).toBe('02060803c262');
    expect(encodeFrame(hex('05 0d 02'), LINK.E | LINK.S).toString('hex')).toBe('020903050d0203089f');
  });

  itShared([OTDMS], 'rebuilds every real frame from its link-control byte and message', () => {
    for (const f of [...REAL_DEVICE, ...REAL_HOST]) {
      expect(encodeFrame(f.subarray(3, f.length - 3), f[2]!).equals(f)).toBe(true);
    }
  });

  it('refuses a message too long for one frame', () => {
    expect(() => encodeFrame(Buffer.alloc(100))).toThrow(RangeError);
  });

  it('builds the computed Verio IQ frames of the research note', () => {
    expect(encodeFrame(hex('03 20 02')).toString('hex')).toBe('02090003200203d492');
    expect(encodeFrame(hex('03 27 00')).toString('hex')).toBe('020900032700032671');
    expect(encodeFrame(hex('03 21 00 00')).toString('hex')).toBe('020a0003210000039dd2');
    expect(encodeFrame(hex('03 09 02 02')).toString('hex')).toBe('020a0003090202031268');
    expect(encodeFrame(hex('03 0b 01 02')).toString('hex')).toBe('020a00030b0102032adc');
  });
});

describeShared([OTDMS], 'FrameReader', () => {
  const whole = Buffer.concat(REAL_DEVICE);

  it('reads the real session: 17 frames from the meter, no errors', () => {
    const items = readAll([whole]);
    expect(items).toHaveLength(17);
    expect(items.every((i) => i.kind === 'frame')).toBe(true);
    expect(items).toHaveLength(REAL_DEVICE.length);
    expect(items.map((i) => (i.kind === 'frame' ? i.frame.bytes.toString('hex') : ''))).toEqual(REAL_DEVICE.map((b) => b.toString('hex')));
    const version = items[2]!;
    expect(version.kind === 'frame' && version.frame.linkControl).toBe(0x02);
    expect(version.kind === 'frame' && version.frame.message.toString('latin1')).toBe('\x05\x06\x11P02.00.0025/05/07');
  });

  it('gives the same frames however the real session is chunked', () => {
    const expected = summary(readAll([whole]));
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 60 }), (cuts) => {
        expect(summary(readAll(chunksAt(whole, cuts)))).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('one byte at a time gives the same frames', () => {
    expect(summary(readAll([...whole].map((b) => Buffer.from([b]))))).toEqual(summary(readAll([whole])));
  });

  it('a corrupted CRC is a typed bad-crc error with the whole frame, and the next frame still reads', () => {
    const bad = Buffer.from(REAL_DEVICE[2]!);
    bad[bad.length - 1]! ^= 0xff;
    const items = readAll([bad, REAL_DEVICE[3]!]);
    expect(items.map((i) => i.kind === 'error' ? i.code : 'frame')).toEqual(['bad-crc', 'frame']);
    expect(items[0]!.kind === 'error' && items[0]!.bytes.equals(bad)).toBe(true);
    expect(items[0]!.kind === 'error' && items[0]!.detail).toMatch(/CRC/);
  });

  it('any single corrupted byte never yields a wrong frame', () => {
    fc.assert(
      fc.property(fc.nat(), fc.integer({ min: 1, max: 255 }), fc.array(fc.nat(), { maxLength: 10 }), (at, delta, cuts) => {
        const bytes = Buffer.from(whole);
        const i = at % bytes.length;
        bytes[i] = (bytes[i]! + delta) & 0xff;
        const items = readAll(chunksAt(bytes, cuts));
        const good = new Set(REAL_DEVICE.map((b) => b.toString('hex')));
        const frames = items.filter((x) => x.kind === 'frame');
        for (const f of frames) expect(good.has(f.frame.bytes.toString('hex'))).toBe(true);
        expect(items.some((x) => x.kind === 'error')).toBe(true);
        // Only the damaged frame is lost: a damaged length byte does not swallow the frames after it.
        expect(frames.length).toBeGreaterThanOrEqual(REAL_DEVICE.length - 1);
      }),
      { numRuns: 300 },
    );
  });

  it('garbage between frames is reported and every frame is still read', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 20 })), { minLength: 1, maxLength: 5 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        (noise, cuts) => {
          const parts: Buffer[] = [...REAL_DEVICE];
          for (const [at, bytes] of noise) parts.splice(at % (parts.length + 1), 0, Buffer.from(bytes));
          const items = readAll(chunksAt(Buffer.concat(parts), cuts));
          const frames = items.filter((x) => x.kind === 'frame').map((x) => x.frame.bytes.toString('hex'));
          const errors = items.filter((x) => x.kind === 'error');
          // Noise could by chance spell a valid frame (CRC included); then it would be an extra frame.
          expect(frames.filter((f) => REAL_DEVICE.some((d) => d.toString('hex') === f))).toEqual(REAL_DEVICE.map((d) => d.toString('hex')));
          expect(errors.length).toBeGreaterThan(0);
          for (const e of errors) expect(['garbage', 'bad-length', 'truncated', 'bad-crc']).toContain(e.code);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('names garbage and a bad length byte', () => {
    const items = readAll([hex('41 42 43'), REAL_DEVICE[0]!, hex('02 02 00'), REAL_DEVICE[1]!]);
    expect(items.map((i) => (i.kind === 'error' ? i.code : 'frame'))).toEqual(['garbage', 'frame', 'bad-length', 'frame']);
  });

  it('a truncated frame is reported at the end of the stream, never as a frame', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 25 }), (keep) => {
        const frame = REAL_DEVICE[2]!; // 26 bytes
        const items = readAll([REAL_DEVICE[1]!, frame.subarray(0, keep)]);
        expect(items[0]!.kind).toBe('frame');
        expect(items.slice(1).map((i) => (i.kind === 'error' ? i.code : 'frame'))).toEqual(['truncated']);
      }),
    );
  });

  it('a stray STX with a large length does not swallow the frames after it at the end of a capture', () => {
    const items = readAll([hex('02 30'), ...REAL_DEVICE.slice(0, 3)]);
    expect(items.map((i) => (i.kind === 'error' ? i.code : 'frame'))).toEqual(['bad-length', 'frame', 'frame', 'frame']);
  });

  it('reports what it holds and resets', () => {
    const r = new FrameReader();
    expect(r.push(REAL_DEVICE[2]!.subarray(0, 10))).toEqual([]);
    expect(r.pendingBytes).toBe(10);
    r.reset();
    expect(r.pendingBytes).toBe(0);
    expect(r.flush()).toEqual([]);
  });
});

describe('time and version helpers', () => {
  it('reads meter seconds as naive local time, from 1970 or from 2000', () => {
    expect(naiveFromSeconds(0x4e653516, 0)).toBe('2011-09-05T20:46:14');
    expect(naiveFromSeconds(0, 946684800)).toBe('2000-01-01T00:00:00');
    expect(naiveFromSeconds(5, 0)).toBeNull();
    expect(secondsFromNaive('2011-09-05T20:46:14', 0)).toBe(0x4e653516);
  });

  it('splits the version text and its build date', () => {
    expect(splitVersion('P02.00.0025/05/07')).toEqual({ firmware: 'P02.00.00', build: '25/05/07' });
    expect(splitVersion('SIM01')).toEqual({ firmware: 'SIM01', build: null });
  });
});
