import { describe, expect, it } from 'vitest';
import { ACK, encodeFrame, ENQ, EOT, NAK, STX } from '../../src/protocols/astm/frame.ts';
import {
  ASTM_LINK_DEFAULTS,
  AstmLink,
  AstmSendError,
  collectMessages,
  endsWithTerminator,
  MessageAssembler,
  type AstmLinkIssue,
  type AstmLinkMessage,
  type AstmLinkOptions,
} from '../../src/protocols/astm/link.ts';
import { memoryPair, type MemoryTransport } from '../../src/transports/memory.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { eventually } from '../helpers/eventually.ts';

/**
 * The E1381 link's rules one branch at a time, beyond the happy paths of astm-link.test.ts: what
 * ends a message, the frame-number bookkeeping, what a capture's replay reports, every unexpected
 * byte in each link state, the receiver's transmission events, and each way a send fails.
 */

const cleanups = useCleanups();
const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const ctl = (...bytes: number[]): Buffer => Buffer.from(bytes);
const H = 'H|\\^&|||X\r';
const L = 'L|1|N\r';

describe('endsWithTerminator', () => {
  it.each([
    [`${H}${L}`, true],
    [`${H}L\r`, true],
    [`${H}${L}\n`, true],
    [`${H}L|1|N\r\r\n\n`, true],
    [`${H}l|1|N\r`, true],
    [`h|\\^&\rL|1\r`, true],
    ['H!\\^&\rL!1!N\r', true],
    ['H!\\^&\rL|1|N\r', false],
    [`${H}LX|1\r`, false],
    [`${H}R|1|^^^GLU|5\r`, false],
    [`${H}`, false],
    ['P|1\rL|1\r', true],
    ['P|1\rL!1\r', false],
    ['H|x\nL|1\n', true],
    ['L|1|N\r', true],
    ['L', true],
    ['', false],
    ['\r\n\r', false],
    [`${H}L|1|N`, true],
    [`${H}P|1\rXL|1\r`, false],
  ])('%j → %s', (text, expected) => {
    expect(endsWithTerminator(b(text))).toBe(expected);
  });
});

describe('MessageAssembler', () => {
  it('after ENQ it expects frame 1; a repeat of the last accepted number is a duplicate, others are wrong', () => {
    const asm = new MessageAssembler();
    asm.begin();
    // Nothing accepted yet: 0 (the number before 1) is not a duplicate.
    expect(asm.classify(0)).toBe('wrong-number');
    expect(asm.classify(2)).toBe('wrong-number');
    expect(asm.classify(1)).toBe('accept');
    expect(asm.take(b(H), false)).toBeNull();
    expect(asm.pendingBytes).toBe(H.length);
    expect(asm.classify(1)).toBe('duplicate');
    expect(asm.classify(3)).toBe('wrong-number');
    expect(asm.classify(0)).toBe('wrong-number');
    expect(asm.classify(2)).toBe('accept');
  });

  it('frame numbers wrap 7 → 0 → 1, and the duplicate rule follows the wrap', () => {
    const asm = new MessageAssembler();
    asm.begin();
    for (let n = 1; n <= 7; n++) {
      expect(asm.classify(n)).toBe('accept');
      asm.take(b('P|1\r'), false);
    }
    expect(asm.classify(0)).toBe('accept');
    asm.take(b('P|2\r'), false);
    expect(asm.classify(0)).toBe('duplicate');
    expect(asm.classify(7)).toBe('wrong-number');
    expect(asm.classify(1)).toBe('accept');
    expect(asm.pendingBytes).toBe(8 * 4);
  });

  it('a capture without ENQ starts at the number it holds', () => {
    const asm = new MessageAssembler();
    expect(asm.classify(5)).toBe('accept');
    asm.take(b(H), false);
    expect(asm.classify(6)).toBe('accept');
  });

  it('only a final frame that ends with the L record completes the message; taking it clears the parts', () => {
    const asm = new MessageAssembler();
    asm.begin();
    asm.take(b(H), false);
    expect(asm.preview(b(L), false)).toBeNull();
    expect(asm.preview(b('P|1\r'), true)).toBeNull();
    expect(asm.preview(b(L), true)!.toString('latin1')).toBe(H + L);
    expect(asm.take(b(L), true)!.toString('latin1')).toBe(H + L);
    expect(asm.pendingBytes).toBe(0);
    expect(asm.pending().length).toBe(0);
    // The next frame number goes on after a completed message.
    expect(asm.classify(3)).toBe('accept');
  });

  it('an ETX frame that does not end the message is kept as a part', () => {
    const asm = new MessageAssembler();
    asm.begin();
    expect(asm.take(b(H), true)).toBeNull();
    expect(asm.pending().toString('latin1')).toBe(H);
    expect(asm.take(b(L), true)!.toString('latin1')).toBe(H + L);
  });

  it('end() returns what was pending and forgets the numbering', () => {
    const asm = new MessageAssembler();
    asm.begin();
    asm.take(b(H), false);
    asm.take(b('P|1\r'), false);
    expect(asm.end().toString('latin1')).toBe(`${H}P|1\r`);
    expect(asm.pendingBytes).toBe(0);
    expect(asm.end().length).toBe(0);
    // No ENQ since: any number starts, and nothing counts as a duplicate.
    expect(asm.classify(4)).toBe('accept');
    expect(asm.classify(3)).toBe('wrong-number');
  });
});

describe('collectMessages (a capture replayed without a link)', () => {
  const f = encodeFrame;

  it('a new ENQ before the L record: the partial message is an issue, the next message is read', () => {
    const bytes = Buffer.concat([ctl(ENQ), f(1, H, false), ctl(ENQ), f(1, H, false), f(2, L, true), ctl(EOT)]);
    const { messages, issues } = collectMessages(bytes);
    expect(messages.map((m) => m.toString('latin1'))).toEqual([H + L]);
    expect(issues).toEqual([{ kind: 'incomplete-message', reason: 'incomplete-message', detail: 'a new ENQ before the message ended', bytes: b(H) }]);
  });

  it('EOT before the L record, and a capture that ends before it, are issues with the bytes', () => {
    const eot = collectMessages(Buffer.concat([ctl(ENQ), f(1, H, false), ctl(EOT)]));
    expect(eot).toEqual({ messages: [], issues: [{ kind: 'incomplete-message', reason: 'incomplete-message', detail: 'EOT before the L record', bytes: b(H) }] });
    const cut = collectMessages(Buffer.concat([ctl(ENQ), f(1, H, false)]));
    expect(cut).toEqual({ messages: [], issues: [{ kind: 'incomplete-message', reason: 'incomplete-message', detail: 'the capture ended before the L record', bytes: b(H) }] });
  });

  it('a whole message then EOT, ENQ or the end of the capture: no issue', () => {
    expect(collectMessages(Buffer.concat([ctl(ENQ), f(1, H + L, true), ctl(EOT), ctl(ENQ)])).issues).toEqual([]);
    expect(collectMessages(Buffer.concat([ctl(ENQ), f(1, H + L, true)])).issues).toEqual([]);
  });

  it('a repeated frame is dropped silently; a wrong number is an issue with its frame', () => {
    const wrong = f(5, 'P|1\r', false);
    const { messages, issues } = collectMessages(Buffer.concat([ctl(ENQ), f(1, H, false), f(1, H, false), wrong, f(2, L, true), ctl(EOT)]));
    expect(messages.map((m) => m.toString('latin1'))).toEqual([H + L]);
    // Lenient (a file's reader): the frame is taken at its CR, the LF after it swallowed.
    expect(issues).toEqual([{ kind: 'frame-number', reason: 'frame-number', detail: 'frame number 5 out of sequence', bytes: wrong.subarray(0, wrong.length - 1) }]);
  });

  it('bad frames and garbage are issues with their bytes', () => {
    const bad = Buffer.from(f(2, 'P|1\r', false));
    bad[3] = 0x51; // 'P' → 'Q': the checksum no longer matches
    const { messages, issues } = collectMessages(Buffer.concat([ctl(ENQ), f(1, H, false), bad, b('zz'), f(2, L, true), ctl(EOT)]));
    expect(messages).toHaveLength(1);
    expect(issues.map((i) => [i.kind, i.reason])).toEqual([
      ['bad-frame', 'checksum'],
      ['garbage', 'garbage'],
    ]);
    expect(issues[0]!.bytes).toEqual(bad.subarray(0, bad.length - 1));
    expect(issues[1]).toMatchObject({ detail: '2 bytes outside any frame', bytes: b('zz') });
  });

  it('refuses frames longer than the device limit it is given, and reads them under the default', () => {
    const long = Buffer.concat([ctl(ENQ), f(1, `${H}R|1|${'9'.repeat(300)}\r${L}`, true), ctl(EOT)]);
    expect(collectMessages(long).messages).toHaveLength(1);
    const limited = collectMessages(long, 100);
    expect(limited.messages).toHaveLength(0);
    expect(limited.issues[0]).toMatchObject({ kind: 'bad-frame', reason: 'frame-too-long' });
  });

  it('is lenient about a lost line end after the checksum (stored files)', () => {
    const frame = f(1, H + L, true);
    const noLf = Buffer.concat([ctl(ENQ), frame.subarray(0, frame.length - 1)]);
    expect(collectMessages(noLf).messages).toHaveLength(1);
    const noCrLf = Buffer.concat([ctl(ENQ), frame.subarray(0, frame.length - 2)]);
    expect(collectMessages(noCrLf).messages).toHaveLength(1);
  });
});

describe('ASTM_LINK_DEFAULTS', () => {
  it('are the E1381 / LIS01-A2 values the research note gives', () => {
    expect(ASTM_LINK_DEFAULTS).toEqual({
      receiveTimeoutMs: 30_000,
      replyTimeoutMs: 15_000,
      maxRetries: 6,
      maxFrameBytes: 64_000,
      maxMessageBytes: 4 * 1024 * 1024,
      frameTextSize: 240,
      busyBackoffMs: 10_000,
      // This daemon's own bounds on bad input (with coalesceBadInput), not the standard's.
      burstQuietMs: 1_000,
      burstMaxMs: 10_000,
      burstKeepBytes: 64 * 1024,
      garbledAfterMs: 30_000,
      burstBytesPerSecond: 64 * 1024,
    });
  });
});

// ── the live link ──

interface Receiver {
  link: AstmLink;
  hostT: MemoryTransport;
  device: MemoryTransport;
  /** Bytes the link wrote to the device. */
  replies: number[];
  messages: AstmLinkMessage[];
  issues: AstmLinkIssue[];
  phases: string[];
  commit: (m: AstmLinkMessage) => Promise<void>;
}

async function receiver(options: AstmLinkOptions = {}): Promise<Receiver> {
  const { host: hostT, device } = memoryPair('astm-safety');
  await hostT.open();
  await device.open();
  const r: Receiver = { hostT, device, replies: [], messages: [], issues: [], phases: [], commit: async () => undefined, link: undefined as unknown as AstmLink };
  r.link = new AstmLink(
    hostT,
    {
      onMessage: async (m) => {
        await r.commit(m);
        r.messages.push(m);
      },
      onIssue: (i) => r.issues.push(i),
      onTransmission: (p) => r.phases.push(p),
    },
    { receiveTimeoutMs: 2000, replyTimeoutMs: 500, ...options },
  );
  r.link.start();
  cleanups.push(() => r.link.stop());
  device.on('data', (chunk: Buffer) => r.replies.push(...chunk));
  return r;
}

describe('AstmLink receiver: bytes that do not belong', () => {
  it('a stray ACK or NAK with no transmission is reported and not answered; a stray EOT is ignored', async () => {
    const r = await receiver();
    await r.device.write(ctl(ACK, NAK, EOT, ENQ));
    await eventually('the ENQ answered', () => r.replies.length === 1);
    expect(r.replies).toEqual([ACK]);
    expect(r.issues).toEqual([
      { kind: 'unexpected', reason: 'ack-in-neutral', detail: 'ACK with no transmission going on', answer: null },
      { kind: 'unexpected', reason: 'nak-in-neutral', detail: 'NAK with no transmission going on', answer: null },
    ]);
  });

  it('a frame with no ENQ before it is reported with its bytes, not answered and not stored', async () => {
    const r = await receiver();
    const frame = encodeFrame(1, H + L, true);
    await r.device.write(Buffer.concat([frame, ctl(ENQ)]));
    await eventually('the ENQ answered', () => r.replies.length === 1);
    expect(r.replies).toEqual([ACK]);
    expect(r.issues).toEqual([{ kind: 'unexpected', reason: 'frame-without-enq', detail: 'a frame arrived with no ENQ before it; ignored', bytes: frame, answer: null }]);
    expect(r.messages).toEqual([]);
  });

  it('garbage with no transmission is reported, not answered', async () => {
    const r = await receiver();
    await r.device.write(Buffer.concat([b('noise\n'), ctl(ENQ)]));
    await eventually('the ENQ answered', () => r.replies.length === 1);
    expect(r.issues.map((i) => [i.kind, i.answer])).toEqual([['garbage', null]]);
  });

  it('ENQ or ACK in the middle of a transmission is reported and ignored; the message still arrives', async () => {
    const r = await receiver();
    await r.device.write(Buffer.concat([ctl(ENQ), encodeFrame(1, H, false), ctl(ENQ, ACK), encodeFrame(2, L, true), ctl(EOT)]));
    await eventually('message', () => r.messages.length === 1);
    await eventually('phase end', () => r.phases.length === 2);
    expect(r.replies).toEqual([ACK, ACK, ACK]);
    expect(r.issues).toEqual([
      { kind: 'unexpected', reason: 'enq-while-receiving', detail: 'ENQ in the middle of a transmission; ignored', answer: null },
      { kind: 'unexpected', reason: 'ack-while-receiving', detail: 'ACK in the middle of a transmission; ignored', answer: null },
    ]);
  });

  it('a frame cut short by a new STX gets no answer; the frame after it gets the one answer', async () => {
    const r = await receiver();
    const full = encodeFrame(1, H, false);
    const cut = full.subarray(0, 6);
    await r.device.write(Buffer.concat([ctl(ENQ), cut, full, encodeFrame(2, L, true), ctl(EOT)]));
    await eventually('message', () => r.messages.length === 1);
    expect(r.replies).toEqual([ACK, ACK, ACK]);
    expect(r.issues).toEqual([{ kind: 'bad-frame', reason: 'interrupted', detail: 'a new STX arrived before the frame ended', bytes: cut, answer: null }]);
  });

  it('garbage in a transmission is kept in the capture', async () => {
    const r = await receiver();
    await r.device.write(Buffer.concat([ctl(ENQ), encodeFrame(1, H, false), b('zz'), encodeFrame(2, L, true), ctl(EOT)]));
    await eventually('message', () => r.messages.length === 1);
    expect(r.messages[0]!.exchanges.map((e) => e.dir + e.bytes.toString('latin1'))).toContain('Dzz');
  });

  it('a message that grows past maxMessageBytes is NAKed, reported with its start, and the device starts over at frame 1', async () => {
    const r = await receiver({ maxMessageBytes: 30 });
    const p = 'P|1|0123456789\r'; // 15 bytes
    await r.device.write(Buffer.concat([ctl(ENQ), encodeFrame(1, H, false), encodeFrame(2, p, false), encodeFrame(3, p, false)]));
    await eventually('NAK', () => r.replies.length === 4);
    expect(r.replies).toEqual([ACK, ACK, ACK, NAK]);
    expect(r.issues).toEqual([
      { kind: 'message-too-long', reason: 'message-too-long', detail: 'the message grew past 30 bytes; discarded', bytes: b(H + p), answer: 'NAK' },
    ]);
    // Exactly at the limit is still taken.
    await r.device.write(Buffer.concat([encodeFrame(1, 'H|\\^&|||X\rP|1|0\r', false), encodeFrame(2, 'L|1|N\r', true), ctl(EOT)]));
    await eventually('message', () => r.messages.length === 1);
    expect(r.messages[0]!.text.length).toBe(16 + 6);
  });

  it('a message of exactly maxMessageBytes is taken', async () => {
    const r = await receiver({ maxMessageBytes: H.length + L.length });
    await r.device.write(Buffer.concat([ctl(ENQ), encodeFrame(1, H, false), encodeFrame(2, L, true), ctl(EOT)]));
    await eventually('message', () => r.messages.length === 1);
    expect(r.issues).toEqual([]);
  });
});

describe('AstmLink receiver: transmissions, the capture, the commit', () => {
  it('reports a transmission start after ENQ and its end at EOT, once each', async () => {
    const r = await receiver();
    await r.device.write(ctl(ENQ));
    await eventually('start', () => r.phases.length === 1);
    expect(r.phases).toEqual(['start']);
    expect(r.link.linkState).toBe('receiving');
    await r.device.write(Buffer.concat([encodeFrame(1, H + L, true), ctl(EOT)]));
    await eventually('end', () => r.phases.length === 2);
    expect(r.phases).toEqual(['start', 'end']);
    expect(r.link.linkState).toBe('neutral');
    // A second EOT in neutral ends nothing.
    await r.device.write(ctl(EOT, ENQ));
    await eventually('second start', () => r.phases.length === 3);
    expect(r.phases).toEqual(['start', 'end', 'start']);
  });

  it('the capture of a message is every byte each way up to its last frame; the next message in the transmission starts its own', async () => {
    const r = await receiver();
    const f1 = encodeFrame(1, H, false);
    const f2 = encodeFrame(2, L, true);
    const f3 = encodeFrame(3, H + L, true);
    await r.device.write(Buffer.concat([ctl(ENQ), f1, f2, f3, ctl(EOT)]));
    await eventually('two messages', () => r.messages.length === 2);
    expect(r.messages[0]!.exchanges).toEqual([
      { dir: 'D', bytes: ctl(ENQ) },
      { dir: 'H', bytes: ctl(ACK) },
      { dir: 'D', bytes: f1 },
      { dir: 'H', bytes: ctl(ACK) },
      { dir: 'D', bytes: f2 },
    ]);
    expect(r.messages[1]!.exchanges).toEqual([
      { dir: 'H', bytes: ctl(ACK) },
      { dir: 'D', bytes: f3 },
    ]);
  });

  it('a bad frame is in the capture and NAKed, and the NAK is in the capture too', async () => {
    const r = await receiver();
    const bad = Buffer.from(encodeFrame(1, H, false));
    bad[3] = bad[3]! ^ 1;
    await r.device.write(Buffer.concat([ctl(ENQ), bad, encodeFrame(1, H + L, true), ctl(EOT)]));
    await eventually('message', () => r.messages.length === 1);
    expect(r.messages[0]!.exchanges.slice(0, 4)).toEqual([
      { dir: 'D', bytes: ctl(ENQ) },
      { dir: 'H', bytes: ctl(ACK) },
      { dir: 'D', bytes: bad },
      { dir: 'H', bytes: ctl(NAK) },
    ]);
  });

  it('a commit that outlasts the receive timer is not cut off by it; the timer runs again after the ACK', async () => {
    const r = await receiver({ receiveTimeoutMs: 100 });
    let release!: () => void;
    let committing = false;
    r.commit = () =>
      new Promise<void>((resolve) => {
        committing = true;
        release = resolve;
      });
    await r.device.write(Buffer.concat([ctl(ENQ), encodeFrame(1, H + L, true)]));
    await eventually('commit started', () => committing);
    // Three receive-timer periods pass while the commit waits.
    const startedAt = Date.now();
    await eventually('300 ms of commit', () => Date.now() - startedAt >= 300);
    expect(r.issues).toEqual([]);
    expect(r.link.linkState).toBe('receiving');
    release();
    await eventually('ACK', () => r.replies.length === 2);
    expect(r.replies).toEqual([ACK, ACK]);
    // No EOT follows: the re-armed timer ends the transmission, with nothing to discard.
    await eventually('timeout', () => r.issues.length === 1);
    expect(r.issues[0]).toEqual({ kind: 'receive-timeout', reason: 'receive-timeout', detail: 'no frame or EOT for 100 ms; back to neutral', bytes: undefined });
    expect(r.phases).toEqual(['start', 'end']);
  });

  it('a partial message at the receive timeout is discarded with its bytes, and the detail says so', async () => {
    const r = await receiver({ receiveTimeoutMs: 100 });
    await r.device.write(Buffer.concat([ctl(ENQ), encodeFrame(1, H, false)]));
    await eventually('timeout', () => r.issues.length === 1);
    expect(r.issues[0]).toEqual({ kind: 'receive-timeout', reason: 'receive-timeout', detail: 'no frame or EOT for 100 ms; the partial message is discarded', bytes: b(H) });
    expect(r.phases).toEqual(['start', 'end']);
    // A half-read frame is dropped with it: the next ENQ starts clean.
    await r.device.write(Buffer.concat([ctl(ENQ), encodeFrame(1, H + L, true), ctl(EOT)]));
    await eventually('message', () => r.messages.length === 1);
  });

  it('a half-read frame at the receive timeout does not spoil the next transmission', async () => {
    const r = await receiver({ receiveTimeoutMs: 100 });
    await r.device.write(Buffer.concat([ctl(ENQ), encodeFrame(1, H, false).subarray(0, 5)]));
    await eventually('timeout', () => r.issues.length === 1);
    await r.device.write(Buffer.concat([ctl(ENQ), encodeFrame(1, H + L, true), ctl(EOT)]));
    await eventually('message', () => r.messages.length === 1);
    expect(r.issues).toHaveLength(1);
  });

  it('the link closing while the commit runs: no ACK and no NAK go out for that frame', async () => {
    const r = await receiver();
    let release!: () => void;
    let committing = false;
    r.commit = () =>
      new Promise<void>((resolve) => {
        committing = true;
        release = resolve;
      });
    await r.device.write(Buffer.concat([ctl(ENQ), encodeFrame(1, H + L, true)]));
    await eventually('commit started', () => committing);
    r.hostT.emit('close');
    release();
    await eventually('stored', () => r.messages.length === 1);
    await r.device.write(ctl(ENQ));
    await eventually('the next ENQ answered', () => r.replies.length === 2);
    // The ENQ's ACK, then the next ENQ's ACK: nothing for the frame whose link closed.
    expect(r.replies).toEqual([ACK, ACK]);
  });

  it('the link closing between frames discards the partial message and ends the transmission; closing in neutral reports nothing', async () => {
    const r = await receiver();
    r.hostT.emit('close');
    await r.device.write(ctl(ENQ));
    await eventually('ENQ answered', () => r.replies.length === 1);
    expect(r.issues).toEqual([]);
    await r.device.write(encodeFrame(1, H, false));
    await eventually('frame ACKed', () => r.replies.length === 2);
    r.hostT.emit('close');
    await eventually('link-closed', () => r.issues.length === 1);
    expect(r.issues[0]).toEqual({
      kind: 'link-closed',
      reason: 'link-closed',
      detail: 'the link closed in the middle of a transmission; the partial message is discarded',
      bytes: b(H),
    });
    expect(r.phases).toEqual(['start', 'end']);
    expect(r.link.linkState).toBe('neutral');
  });

  it('the link closing in the middle of a frame in neutral is reported, with no bytes', async () => {
    const r = await receiver();
    await r.device.write(encodeFrame(1, H, false).subarray(0, 5));
    await eventually('bytes delivered', () => (r.link as unknown as { reader: { midFrame: boolean } }).reader.midFrame);
    r.hostT.emit('close');
    await eventually('link-closed', () => r.issues.length === 1);
    expect(r.issues[0]).toMatchObject({ kind: 'link-closed', bytes: undefined });
    expect(r.phases).toEqual([]);
  });

  it('an answer the transport cannot write is reported as write-failed; the link goes on', async () => {
    const r = await receiver();
    const write = r.hostT.write.bind(r.hostT);
    let failNext = true;
    r.hostT.write = async (data: Buffer) => {
      if (failNext) {
        failNext = false;
        throw new Error('EIO');
      }
      return write(data);
    };
    await r.device.write(ctl(ENQ));
    await eventually('write-failed', () => r.issues.length === 1);
    expect(r.issues[0]).toEqual({ kind: 'link-closed', reason: 'write-failed', detail: 'could not answer the device: EIO' });
    await r.device.write(Buffer.concat([encodeFrame(1, H + L, true), ctl(EOT)]));
    await eventually('message', () => r.messages.length === 1);
  });

  it('a handler that throws does not break the link', async () => {
    const { host: hostT, device } = memoryPair('throwing');
    await hostT.open();
    await device.open();
    const messages: AstmLinkMessage[] = [];
    const link = new AstmLink(hostT, {
      onMessage: async (m) => void messages.push(m),
      onIssue: () => {
        throw new Error('listener bug');
      },
      onTransmission: () => {
        throw new Error('listener bug');
      },
    });
    link.start();
    cleanups.push(() => link.stop());
    await device.write(Buffer.concat([ctl(ACK, ENQ), encodeFrame(1, H + L, true), ctl(EOT)]));
    await eventually('message', () => messages.length === 1);
  });

  it('stops listening once stopped, and start() twice subscribes once', async () => {
    const r = await receiver();
    r.link.start();
    await r.device.write(ctl(ENQ));
    await eventually('one ACK', () => r.replies.length === 1);
    await r.device.write(ctl(EOT));
    await eventually('end', () => r.phases.length === 2);
    expect(r.replies).toEqual([ACK]);
    await r.link.stop();
    await r.link.stop();
    await r.device.write(ctl(ENQ));
    await r.device.write(encodeFrame(1, H + L, true));
    // The ENQ of a live link would be answered within a tick; give it a round trip of the cable.
    const probe = memoryPair('probe');
    await probe.host.open();
    await probe.device.open();
    const arrived = new Promise<void>((resolve) => probe.device.once('data', () => resolve()));
    await probe.host.write(ctl(ENQ));
    await arrived;
    expect(r.replies).toEqual([ACK]);
    expect(r.messages).toEqual([]);
  });
});

// ── sending ──

interface ScriptedDevice {
  seen: Buffer[];
  /** Resolves once the device has received `count` writes (the cable delivers on a later tick). */
  settled(count: number): Promise<void>;
  /** The link's bytes flattened, one entry per write. */
  kinds(): string[];
}

/** A device end that answers each ENQ and each frame by `answer` (null = silence). */
function scripted(device: MemoryTransport, answer: (what: 'ENQ' | 'frame' | 'EOT', n: number) => number | null): ScriptedDevice {
  const seen: Buffer[] = [];
  let enqs = 0;
  let frames = 0;
  device.on('data', (chunk: Buffer) => {
    seen.push(chunk);
    const what = chunk[0] === ENQ ? 'ENQ' : chunk[0] === STX ? 'frame' : chunk[0] === EOT ? 'EOT' : null;
    if (!what) return;
    const n = what === 'ENQ' ? ++enqs : what === 'frame' ? ++frames : 0;
    const reply = answer(what, n);
    if (reply !== null) void device.write(ctl(reply));
  });
  return {
    seen,
    settled: (count: number) => eventually(`${count} writes at the device`, () => seen.length >= count, 3000),
    kinds: () => seen.map((c) => (c[0] === ENQ ? 'ENQ' : c[0] === EOT ? 'EOT' : c[0] === STX ? `F${String.fromCharCode(c[1]!)}` : c.toString('hex'))),
  };
}

async function sender(options: AstmLinkOptions = {}, answer: Parameters<typeof scripted>[1] = () => ACK): Promise<{ link: AstmLink; dev: ScriptedDevice; hostT: MemoryTransport; issues: AstmLinkIssue[] }> {
  const { host: hostT, device } = memoryPair('astm-send');
  await hostT.open();
  await device.open();
  const dev = scripted(device, answer);
  const issues: AstmLinkIssue[] = [];
  const link = new AstmLink(hostT, { onMessage: async () => undefined, onIssue: (i) => issues.push(i) }, { replyTimeoutMs: 300, ...options });
  link.start();
  cleanups.push(() => link.stop());
  return { link, dev, hostT, issues };
}

const MESSAGE = b(`${H}P|1\rO|1|S1\r${L}`);

describe('AstmLink sender', () => {
  it('sends ENQ, one frame per 240 text bytes by default, and EOT, and goes back to neutral', async () => {
    const { link, dev } = await sender();
    await link.send(MESSAGE);
    await dev.settled(3);
    expect(dev.kinds()).toEqual(['ENQ', 'F1', 'EOT']);
    expect(link.linkState).toBe('neutral');
    expect(link.role).toBe('host');
  });

  it('busy (NAK to ENQ): waits busyBackoffMs and bids again; gives up after maxRetries with a busy error and no EOT', async () => {
    const { link, dev } = await sender({ maxRetries: 3, busyBackoffMs: 20 }, (what) => (what === 'ENQ' ? NAK : ACK));
    const error = (await link.send(MESSAGE).catch((e: unknown) => e)) as AstmSendError;
    expect(error).toBeInstanceOf(AstmSendError);
    expect(error.code).toBe('busy');
    expect(error.message).toBe('the receiver answered ENQ with NAK (busy) 3 times');
    await dev.settled(3);
    expect(dev.kinds()).toEqual(['ENQ', 'ENQ', 'ENQ']);
    expect(link.linkState).toBe('neutral');
  });

  it('busy once, then accepted: the message goes out after the second ENQ', async () => {
    const { link, dev } = await sender({ busyBackoffMs: 20 }, (what, n) => (what === 'ENQ' && n === 1 ? NAK : ACK));
    await link.send(MESSAGE);
    await dev.settled(4);
    expect(dev.kinds()).toEqual(['ENQ', 'ENQ', 'F1', 'EOT']);
  });

  it('EOT in answer to ENQ: a timeout error, and the sender ends with EOT', async () => {
    const { link, dev } = await sender({}, (what) => (what === 'ENQ' ? EOT : null));
    const error = (await link.send(MESSAGE).catch((e: unknown) => e)) as AstmSendError;
    expect(error.code).toBe('timeout');
    expect(error.message).toBe('EOT in answer to ENQ');
    await dev.settled(2);
    expect(dev.kinds()).toEqual(['ENQ', 'EOT']);
  });

  it('no answer to ENQ: the error names the reply timer', async () => {
    const { link } = await sender({ replyTimeoutMs: 80 }, () => null);
    await expect(link.send(MESSAGE)).rejects.toThrow('no answer to ENQ within 80 ms');
  });

  it('EOT in answer to a frame (receiver interrupt) counts as ACK', async () => {
    const { link, dev } = await sender({ frameTextSize: 10 }, (what, n) => (what === 'frame' && n === 1 ? EOT : ACK));
    await link.send(MESSAGE);
    await eventually('EOT', () => dev.kinds().at(-1) === 'EOT');
    const frames = dev.kinds().filter((k) => k.startsWith('F'));
    expect(frames).toEqual(['F1', 'F2', 'F3', 'F4', 'F5', 'F6', 'F7', 'F0', 'F1', 'F2'].slice(0, frames.length));
    expect(frames.length).toBe(Math.ceil(MESSAGE.length / 10));
    expect(dev.kinds().at(-1)).toBe('EOT');
  });

  it('ENQ in answer to a frame counts as NAK: the frame is sent again', async () => {
    const { link, dev } = await sender({}, (what, n) => (what === 'frame' && n === 1 ? ENQ : ACK));
    await link.send(MESSAGE);
    await dev.settled(4);
    expect(dev.kinds()).toEqual(['ENQ', 'F1', 'F1', 'EOT']);
  });

  it('a frame refused maxRetries times: nak-limit, naming the frame, and EOT', async () => {
    const { link, dev } = await sender({ maxRetries: 2 }, (what) => (what === 'frame' ? NAK : ACK));
    const error = (await link.send(MESSAGE).catch((e: unknown) => e)) as AstmSendError;
    expect(error.code).toBe('nak-limit');
    expect(error.message).toBe('frame 1 was refused 2 times');
    await dev.settled(4);
    expect(dev.kinds()).toEqual(['ENQ', 'F1', 'F1', 'EOT']);
  });

  it('no answer to a frame: a timeout naming the frame, and EOT', async () => {
    const { link, dev } = await sender({ replyTimeoutMs: 80, frameTextSize: 20 }, (what, n) => (what === 'ENQ' || n === 1 ? ACK : null));
    const error = (await link.send(MESSAGE).catch((e: unknown) => e)) as AstmSendError;
    expect(error.code).toBe('timeout');
    expect(error.message).toBe('no answer to frame 2 within 80 ms');
    await dev.settled(4);
    expect(dev.kinds()).toEqual(['ENQ', 'F1', 'F2', 'EOT']);
    expect(link.linkState).toBe('neutral');
  });

  it('stallAfterFrames stops after that many frames, with no EOT; skipEot leaves out only the EOT', async () => {
    const stall = await sender({ frameTextSize: 10 });
    await stall.link.send(MESSAGE, { stallAfterFrames: 2 });
    await stall.dev.settled(3);
    expect(stall.dev.kinds()).toEqual(['ENQ', 'F1', 'F2']);
    expect(stall.link.linkState).toBe('neutral');
    const skip = await sender();
    await skip.link.send(MESSAGE, { skipEot: true });
    await skip.dev.settled(2);
    expect(skip.dev.kinds()).toEqual(['ENQ', 'F1']);
    const zero = await sender();
    await zero.link.send(MESSAGE, { stallAfterFrames: 0 });
    await zero.dev.settled(1);
    expect(zero.dev.kinds()).toEqual(['ENQ']);
  });

  it('mangle sees each frame with its index and attempt; lowercaseChecksum writes lowercase hex', async () => {
    const seen: string[] = [];
    const { link, dev } = await sender({}, (what, n) => (what === 'frame' && n === 1 ? NAK : ACK));
    await link.send(b(`H|\\^&\r${L}`), {
      lowercaseChecksum: true,
      mangle: (frame, info) => {
        seen.push(`${info.index}:${info.attempt}`);
        return frame;
      },
    });
    expect(seen).toEqual(['0:0', '0:1']);
    const frame = dev.seen.find((c) => c[0] === STX)!;
    expect(frame.toString('latin1')).toBe(encodeFrame(1, `H|\\^&\r${L}`, true, { lowercaseChecksum: true }).toString('latin1'));
    expect(frame.toString('latin1')).toMatch(/[a-f]/);
  });

  it('refuses to send on a closed transport or a stopped link', async () => {
    const { link, hostT } = await sender();
    await hostT.close();
    await expect(link.send(MESSAGE)).rejects.toMatchObject({ code: 'link-closed', message: 'the link is not open' });
    await link.stop();
    await expect(link.send(MESSAGE)).rejects.toMatchObject({ code: 'stopped', message: 'the link is stopped' });
  });

  it('a write that fails: link-closed with the reason, and the link is neutral again', async () => {
    const { link, hostT } = await sender();
    hostT.write = async () => {
      throw new Error('EPIPE');
    };
    await expect(link.send(MESSAGE)).rejects.toMatchObject({ code: 'link-closed', message: 'write failed: EPIPE' });
    expect(link.linkState).toBe('neutral');
  });

  it('sends queue one after another; a failed send does not block the next', async () => {
    let refuse = true;
    const { link, dev } = await sender({ maxRetries: 1 }, (what) => {
      if (what === 'ENQ' && refuse) {
        refuse = false;
        return NAK;
      }
      return ACK;
    });
    const first = link.send(MESSAGE).catch((e: AstmSendError) => e.code);
    const second = link.send(MESSAGE);
    expect(await first).toBe('busy');
    await second;
    await dev.settled(4);
    expect(dev.kinds()).toEqual(['ENQ', 'ENQ', 'F1', 'EOT']);
  });

  it('a frame that arrives while this end sends is reported, not answered', async () => {
    const { host: hostT, device } = memoryPair('send-frame');
    await hostT.open();
    await device.open();
    const issues: AstmLinkIssue[] = [];
    const link = new AstmLink(hostT, { onMessage: async () => undefined, onIssue: (i) => issues.push(i) }, { replyTimeoutMs: 300 });
    link.start();
    cleanups.push(() => link.stop());
    const stray = encodeFrame(1, H, false);
    device.on('data', (c: Buffer) => {
      if (c[0] === ENQ) void device.write(Buffer.concat([stray, ctl(ACK)]));
      else if (c[0] === STX) void device.write(ctl(ACK));
    });
    await link.send(MESSAGE);
    expect(issues).toEqual([{ kind: 'unexpected', reason: 'frame-while-sending', detail: 'a frame arrived while this end was sending', bytes: stray, answer: null }]);
  });

  it('a send waits while a transmission is being received, and goes out after its EOT', async () => {
    const r = await receiver();
    await r.device.write(ctl(ENQ));
    await eventually('receiving', () => r.link.linkState === 'receiving');
    let sent = false;
    const sending = r.link.send(MESSAGE).then(() => (sent = true));
    r.device.on('data', (c: Buffer) => {
      if (c[0] === ENQ || c[0] === STX) void r.device.write(ctl(ACK));
    });
    await r.device.write(Buffer.concat([encodeFrame(1, H + L, true)]));
    await eventually('stored', () => r.messages.length === 1);
    expect(sent).toBe(false);
    expect(r.replies).toEqual([ACK, ACK]);
    await r.device.write(ctl(EOT));
    await sending;
    await eventually('EOT of the send', () => r.replies.at(-1) === EOT);
    expect(r.replies[2]).toBe(ENQ);
    expect(r.replies[3]).toBe(STX);
  });

  it('contention: an instrument repeats its ENQ after its own short default backoff, a host waits its long one', async () => {
    const { host: hostT, device } = memoryPair('contention');
    await hostT.open();
    await device.open();
    const inst = new AstmLink(device, { onMessage: async () => undefined, onIssue: () => undefined }, { role: 'instrument', replyTimeoutMs: 300 });
    inst.start();
    cleanups.push(() => inst.stop());
    expect(inst.role).toBe('instrument');
    const seen: number[] = [];
    let enqs = 0;
    hostT.on('data', (c: Buffer) => {
      seen.push(c[0]!);
      // The other end bids at the same moment once, then accepts.
      if (c[0] === ENQ) void hostT.write(ctl(++enqs === 1 ? ENQ : ACK));
      else if (c[0] === STX) void hostT.write(ctl(ACK));
    });
    const started = Date.now();
    await inst.send(MESSAGE);
    const took = Date.now() - started;
    await eventually('EOT', () => seen.length === 4);
    expect(seen).toEqual([ENQ, ENQ, STX, EOT]);
    // The instrument's default is 1 s; the host's would be 20 s.
    expect(took).toBeGreaterThanOrEqual(950);
    expect(took).toBeLessThan(5000);
  });
});
