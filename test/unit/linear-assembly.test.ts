import { afterEach, describe, expect, it, vi } from 'vitest';
import { encodeFrame as astmFrame, AstmFrameReader, ENQ, EOT } from '../../src/protocols/astm/frame.ts';
import { collectMessages, MessageAssembler } from '../../src/protocols/astm/link.ts';
import { collectBareMessages } from '../../drivers/analyzers/astm/bare-link.ts';
import { encodeReport, ReportStream, TextReplyAssembler, textReply } from '../../drivers/glucose/freestyle-hid/codec.ts';
import { encodeFrame as lifescanFrame, FrameReader } from '../../drivers/glucose/lifescan-binary/codec.ts';
import { LineFramer } from '../../drivers/glucose/onetouch-ultra2/codec.ts';
import { RecordLineFramer } from '../../drivers/urinalysis/clinitek-status/codec.ts';
import { PacketFramer } from '../../drivers/urinalysis/clinitek-50/codec.ts';

/**
 * Every framer and assembler costs the same per byte whatever the input's size (issue 16: each
 * ETX frame used to re-join all earlier frames, so 18 000 frames without an L record cost a minute
 * of CPU). Two measures, both within one run and never an absolute time:
 *  - the bytes the ASTM assembler copies (Buffer.concat), exact: at most twice the bytes taken, at
 *    every size from 1 KB to 4 MB;
 *  - the time per byte of every codec that buffers, at 1 KB … 4 MB of input (each size repeated to
 *    about the same total bytes, best of three): the largest size may cost at most 4× the cheapest
 *    size per byte. Quadratic work costs ~4 000× at 4 MB against 1 KB.
 */

const KB = 1024;
const SIZES = [KB, 16 * KB, 256 * KB, 4096 * KB];

afterEach(() => vi.restoreAllMocks());

/** `n` bytes of ASTM record-etx frames (each record its own ETX frame) with no L record. */
function astmFramesWithoutL(n: number): { frames: Buffer[]; texts: Buffer[]; bytes: number; next: number } {
  const frames: Buffer[] = [];
  const texts: Buffer[] = [];
  let bytes = 0;
  let fn = 1;
  for (let i = 0; bytes < n; i++) {
    const text = Buffer.from(i === 0 ? 'H|\\^&|||X\r' : `R|${i}|^^^GLU|${90 + (i % 50)}|mg/dL\r`, 'latin1');
    const frame = astmFrame(fn, text, true);
    fn = (fn + 1) % 8;
    frames.push(frame);
    texts.push(text);
    bytes += frame.length;
  }
  return { frames, texts, bytes, next: fn };
}

describe('the ASTM message assembler copies each byte a bounded number of times', () => {
  it.each(SIZES)('%i bytes of ETX frames without an L record, then the L record', (size) => {
    const { texts } = astmFramesWithoutL(size);
    const taken = texts.reduce((n, t) => n + t.length, 0);
    let copied = 0;
    const concat = Buffer.concat.bind(Buffer);
    vi.spyOn(Buffer, 'concat').mockImplementation((list: readonly Uint8Array[], total?: number) => {
      const out = concat(list, total);
      copied += out.length;
      return out;
    });
    const asm = new MessageAssembler();
    asm.begin();
    let fn = 1;
    for (const t of texts) {
      expect(asm.classify(fn)).toBe('accept');
      expect(asm.take(t, true)).toBeNull();
      fn = (fn + 1) % 8;
    }
    const done = asm.take(Buffer.from('L|1|N\r', 'latin1'), true);
    expect(done?.length).toBe(taken + 6);
    expect(copied).toBeLessThanOrEqual(2 * (taken + 6));
  });
});

interface Codec {
  name: string;
  /** About `n` bytes of input, cut into chunks as a socket delivers them. */
  input(n: number): Buffer[];
  /** Feeds the chunks to a fresh codec. */
  run(chunks: Buffer[]): void;
}

function chunked(bytes: Buffer, size = 1460): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size));
  return out;
}

function repeatTo(unit: Buffer, n: number): Buffer {
  return Buffer.concat(Array.from({ length: Math.max(1, Math.ceil(n / unit.length)) }, () => unit));
}

const CODECS: Codec[] = [
  {
    name: 'ASTM frame reader',
    input: (n) => chunked(Buffer.concat([Buffer.from([ENQ]), ...astmFramesWithoutL(n).frames])),
    run: (chunks) => {
      const r = new AstmFrameReader();
      for (const c of chunks) r.push(c);
      r.finish();
    },
  },
  {
    name: 'ASTM capture replay (collectMessages), ETX frames without an L record',
    input: (n) => {
      const { frames, next } = astmFramesWithoutL(n);
      return [Buffer.concat([Buffer.from([ENQ]), ...frames, astmFrame(next, 'L|1|N\r', true), Buffer.from([EOT])])];
    },
    run: (chunks) => {
      for (const c of chunks) expect(collectMessages(c).messages).toHaveLength(1);
    },
  },
  {
    name: 'ASTM bare blocks (collectBareMessages), one record a block, the L record last',
    input: (n) => {
      const { texts } = astmFramesWithoutL(n);
      const block = (t: Buffer | string): Buffer => Buffer.concat([Buffer.from([0x02]), Buffer.from(t), Buffer.from([0x03])]);
      return [Buffer.concat([Buffer.from([ENQ]), ...texts.map(block), block('L|1|N\r'), Buffer.from([EOT])])];
    },
    run: (chunks) => {
      for (const c of chunks) expect(collectBareMessages(c, 8 * 1024 * KB).messages).toHaveLength(1);
    },
  },
  {
    name: 'ASTM frame reader, line noise',
    input: (n) => chunked(Buffer.from(Array.from({ length: n }, (_, i) => (i * 7919 + 13) & 0xff).filter((b) => b !== 0x02))),
    run: (chunks) => {
      const r = new AstmFrameReader();
      for (const c of chunks) r.push(c);
      r.finish();
    },
  },
  {
    name: 'LifeScan binary frame reader',
    input: (n) => chunked(repeatTo(lifescanFrame(Buffer.from('\x05\x0b\x02\x00\x00\x00\x00\x84\x6a', 'latin1')), n)),
    run: (chunks) => {
      const r = new FrameReader();
      for (const c of chunks) r.push(c);
      r.flush();
    },
  },
  {
    name: 'OneTouch Ultra 2 line framer',
    input: (n) => chunked(repeatTo(Buffer.from('P "WED","11/10/04","18:32:32   ","  120 ","N","00", 00 099F\r\n', 'latin1'), n)),
    run: (chunks) => {
      const f = new LineFramer();
      for (const c of chunks) f.push(c);
    },
  },
  {
    name: 'CLINITEK Status line framer',
    input: (n) => chunked(repeatTo(Buffer.from('00012,2024-03-01,10:15,GLU,NEG,,BIL,NEG,,KET,NEG,\r\n', 'latin1'), n)),
    run: (chunks) => {
      const f = new RecordLineFramer();
      for (const c of chunks) f.push(c);
    },
  },
  {
    name: 'CLINITEK 50 packet framer',
    input: (n) => chunked(repeatTo(Buffer.from('\x0200012 GLU NEG BIL NEG KET NEG\x03', 'latin1'), n)),
    run: (chunks) => {
      const f = new PacketFramer();
      for (const c of chunks) f.push(c);
      f.finish();
    },
  },
  {
    name: 'FreeStyle report stream and text reply assembler (one long reply)',
    input: (n) => {
      const body = repeatTo(Buffer.from('1,2024,3,1,10,15,0,120,0\r\n', 'latin1'), n);
      const reply = textReply(body);
      const reports: Buffer[] = [];
      for (let i = 0; i < reply.length; i += 62) reports.push(encodeReport(0x60, reply.subarray(i, i + 62)));
      return chunked(Buffer.concat(reports));
    },
    run: (chunks) => {
      const s = new ReportStream();
      const a = new TextReplyAssembler();
      let replies = 0;
      for (const c of chunks) for (const r of s.push(c)) for (const o of a.push(r.subarray(2, 2 + r[1]!))) if (o.kind === 'reply') replies++;
      expect(replies).toBeGreaterThanOrEqual(1);
    },
  },
];

/** Nanoseconds per input byte: `size`-byte inputs repeated to at least 2 MB in all, best of three. */
function nsPerByte(codec: Codec, size: number): number {
  const input = codec.input(size);
  const bytes = input.reduce((n, c) => n + c.length, 0);
  const reps = Math.max(1, Math.round((2048 * KB) / bytes));
  let best = Infinity;
  for (let round = 0; round < 3; round++) {
    const started = process.hrtime.bigint();
    for (let r = 0; r < reps; r++) codec.run(input);
    const ns = Number(process.hrtime.bigint() - started);
    best = Math.min(best, ns / (bytes * reps));
  }
  return best;
}

describe('time per byte is flat from 1 KB to 4 MB', () => {
  it.each(CODECS.map((c) => [c.name, c] as const))('%s', (_name, codec) => {
    nsPerByte(codec, 16 * KB); // warm the JIT before anything is measured
    const perByte = SIZES.map((size) => nsPerByte(codec, size));
    const cheapest = Math.min(...perByte);
    const largest = perByte[perByte.length - 1]!;
    expect(largest / cheapest, `ns/byte at ${SIZES.join(', ')} bytes: ${perByte.map((x) => x.toFixed(1)).join(', ')}`).toBeLessThan(4);
  }, 120_000);
});
