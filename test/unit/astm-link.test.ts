import { describe, expect, it } from 'vitest';
import { ACK, encodeFrame, ENQ, EOT, frameMessage, NAK, type FramingStyle } from '../../src/protocols/astm/frame.ts';
import { AstmLink, AstmSendError, type AstmLinkIssue, type AstmLinkMessage, type AstmLinkOptions } from '../../src/protocols/astm/link.ts';
import { memoryPair, type MemoryTransport } from '../../src/transports/memory.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { eventually } from '../helpers/eventually.ts';

import { itShared, sharedFixture } from '../helpers/shared-fixtures.ts';

const C111 = sharedFixture('astm/roche-cobas-c111.bin');
const PENTRA = sharedFixture('astm/horiba-pentra-xlr.bin');
const c111 = C111.bytesOrEmpty();
const pentra = PENTRA.bytesOrEmpty();
const MESSAGE = Buffer.from('H|\\^&|||SIM\rP|1\rO|1|S1\rR|1|^^^GLU|5.5|mmol/L||N||F||||20250101120000\rL|1|N\r', 'latin1');

const stops = useCleanups();

interface HostSide {
  link: AstmLink;
  messages: AstmLinkMessage[];
  issues: AstmLinkIssue[];
  /** Replaced by a test to hold or fail the commit. */
  commit: (m: AstmLinkMessage) => Promise<void>;
}

async function pair(hostOptions: AstmLinkOptions = {}): Promise<{ host: HostSide; hostT: MemoryTransport; device: MemoryTransport; fromHost: number[] }> {
  const { host: hostT, device } = memoryPair('astm');
  await hostT.open();
  await device.open();
  const side: HostSide = {
    messages: [],
    issues: [],
    commit: async () => undefined,
    link: undefined as unknown as AstmLink,
  };
  side.link = new AstmLink(
    hostT,
    {
      onMessage: async (m) => {
        await side.commit(m);
        side.messages.push(m);
      },
      onIssue: (i) => side.issues.push(i),
    },
    { receiveTimeoutMs: 2000, replyTimeoutMs: 500, ...hostOptions },
  );
  side.link.start();
  stops.push(() => side.link.stop());
  const fromHost: number[] = [];
  device.on('data', (b: Buffer) => fromHost.push(...b));
  return { host: side, hostT, device, fromHost };
}

function instrument(t: MemoryTransport, options: AstmLinkOptions = {}): { link: AstmLink; received: AstmLinkMessage[] } {
  const received: AstmLinkMessage[] = [];
  const link = new AstmLink(t, { onMessage: async (m) => void received.push(m), onIssue: () => undefined }, { role: 'instrument', replyTimeoutMs: 500, ...options });
  link.start();
  stops.push(() => link.stop());
  return { link, received };
}

describe('E1381 receiver', () => {
  it.each<FramingStyle>(['record-etx', 'record-etb', 'single', 'split'])('receives a message framed %s', async (style) => {
    const { host, device } = await pair();
    const { link } = instrument(device);
    await link.send(MESSAGE, { frames: frameMessage(MESSAGE, style, 17) });
    await eventually('message', () => host.messages.length === 1);
    expect(host.messages[0]!.text.equals(MESSAGE)).toBe(true);
    expect(host.issues).toEqual([]);
  });

  itShared([PENTRA], 'reads the real Pentra stream (frame numbers wrap 7 → 0) and answers every frame with ACK', async () => {
    const { host, device, fromHost } = await pair();
    await device.write(pentra);
    await eventually('message', () => host.messages.length === 1);
    await eventually('replies', () => fromHost.length === 29);
    expect(fromHost.every((b) => b === ACK)).toBe(true);
    expect(host.messages[0]!.text.toString('latin1')).toMatch(/^H\|\\\^&\|\|\|ABX.*\rL\|1\|N\r$/s);
    expect(host.link.linkState).toBe('neutral');
  });

  it('ACKs a repeated frame (our ACK was lost) and drops it', async () => {
    const { host, device, fromHost } = await pair();
    const f1 = encodeFrame(1, 'H|\\^&|||X\r', false);
    await device.write(Buffer.concat([Buffer.from([ENQ]), f1, f1, encodeFrame(2, 'L|1|N\r', true), Buffer.from([EOT])]));
    await eventually('replies', () => fromHost.length === 4);
    expect(fromHost).toEqual([ACK, ACK, ACK, ACK]);
    expect(host.messages.map((m) => m.text.toString('latin1'))).toEqual(['H|\\^&|||X\rL|1|N\r']);
  });

  it('NAKs a bad checksum and a wrong frame number; lowercase checksums are accepted', async () => {
    const { host, device, fromHost } = await pair();
    const good = encodeFrame(1, 'H|\\^&\r', false, { lowercaseChecksum: true });
    const bad = Buffer.from(good);
    bad[3] = bad[3]! ^ 1;
    await device.write(Buffer.concat([Buffer.from([ENQ]), bad, encodeFrame(3, 'X\r', false), good, encodeFrame(2, 'L|1|N\r', true), Buffer.from([EOT])]));
    await eventually('replies', () => fromHost.length === 5);
    expect(fromHost).toEqual([ACK, NAK, NAK, ACK, ACK]);
    expect(host.issues.map((i) => [i.kind, i.reason, i.answer])).toEqual([
      ['bad-frame', 'checksum', 'NAK'],
      ['frame-number', 'frame-number', 'NAK'],
    ]);
    expect(host.messages).toHaveLength(1);
  });

  itShared([C111], 'holds the ACK of the message\'s last frame until the commit resolves', async () => {
    const { host, device, fromHost } = await pair();
    let release!: () => void;
    host.commit = () => new Promise<void>((r) => (release = r));
    await device.write(c111.subarray(0, c111.length - 1)); // without EOT
    await eventually('intermediate ACKs', () => fromHost.length === 7);
    await new Promise((r) => setTimeout(r, 100));
    expect(fromHost).toHaveLength(7); // ENQ + 6 ETB frames; the L frame waits
    expect(host.messages).toHaveLength(0);
    release();
    await eventually('final ACK', () => fromHost.length === 8);
    expect(fromHost.at(-1)).toBe(ACK);
    expect(host.messages).toHaveLength(1);
    // The capture holds the message as it crossed the wire, up to the last frame.
    expect(host.messages[0]!.exchanges[0]).toEqual({ dir: 'D', bytes: Buffer.from([ENQ]) });
    expect(host.messages[0]!.exchanges.filter((e) => e.dir === 'D')).toHaveLength(8);
  });

  it('a failed commit NAKs the last frame; the resend is stored', async () => {
    const { host, device, fromHost } = await pair();
    let fail = true;
    host.commit = async () => {
      if (fail) {
        fail = false;
        throw new Error('disk full');
      }
    };
    const { link } = instrument(device);
    await link.send(MESSAGE, { frames: frameMessage(MESSAGE, 'record-etb') });
    expect(host.messages).toHaveLength(1);
    expect(host.issues.map((i) => i.kind)).toEqual(['commit-failed']);
    expect(fromHost.filter((b) => b === NAK)).toHaveLength(1);
  });

  it('the receiver timer discards a partial message', async () => {
    const { host, device } = await pair({ receiveTimeoutMs: 150 });
    await device.write(Buffer.concat([Buffer.from([ENQ]), encodeFrame(1, 'H|\\^&\r', false), encodeFrame(2, 'P|1\r', false)]));
    await eventually('timeout issue', () => host.issues.some((i) => i.kind === 'receive-timeout'));
    expect(host.messages).toHaveLength(0);
    expect(host.issues.find((i) => i.kind === 'receive-timeout')!.bytes!.toString('latin1')).toBe('H|\\^&\rP|1\r');
    expect(host.link.linkState).toBe('neutral');
    // The next transmission is received normally.
    const { link } = instrument(device);
    await link.send(MESSAGE);
    expect(host.messages).toHaveLength(1);
  });

  it('EOT before the L record, or the link closing, discards the partial message', async () => {
    const { host, device, hostT } = await pair();
    await device.write(Buffer.concat([Buffer.from([ENQ]), encodeFrame(1, 'H|\\^&\r', false), Buffer.from([EOT])]));
    await eventually('incomplete', () => host.issues.some((i) => i.kind === 'incomplete-message'));
    await device.write(Buffer.concat([Buffer.from([ENQ]), encodeFrame(1, 'H|\\^&\r', false)]));
    await new Promise((r) => setTimeout(r, 30));
    hostT.emit('close');
    await eventually('link-closed', () => host.issues.some((i) => i.kind === 'link-closed'));
    expect(host.messages).toHaveLength(0);
  });

  it('an oversized frame is NAKed and reported; the session goes on', async () => {
    const { host, device, fromHost } = await pair({ maxFrameBytes: 200 });
    const huge = encodeFrame(1, `H|\\^&|||${'x'.repeat(1000)}\r`, false);
    await device.write(Buffer.concat([Buffer.from([ENQ]), huge, encodeFrame(1, 'H|\\^&\r', false), encodeFrame(2, 'L|1|N\r', true), Buffer.from([EOT])]));
    await eventually('replies', () => fromHost.length === 4);
    expect(fromHost).toEqual([ACK, NAK, ACK, ACK]);
    expect(host.issues.map((i) => i.reason)).toEqual(['frame-too-long']);
    expect(host.issues[0]!.bytes!.length).toBeLessThanOrEqual(200);
    expect(host.messages).toHaveLength(1);
  });

  it('garbage between frames is reported, not answered', async () => {
    const { host, device, fromHost } = await pair();
    await device.write(Buffer.concat([Buffer.from([ENQ]), encodeFrame(1, 'H|\\^&\r', false), Buffer.from('zz'), encodeFrame(2, 'L|1|N\r', true), Buffer.from([EOT])]));
    await eventually('message', () => host.messages.length === 1);
    expect(fromHost).toEqual([ACK, ACK, ACK]);
    expect(host.issues.map((i) => [i.kind, i.answer])).toEqual([['garbage', null]]);
  });
});

describe('E1381 sender', () => {
  it('sends ENQ, frames and EOT; a NAKed frame is sent again', async () => {
    const { host, device } = await pair();
    const { link } = instrument(device);
    let first = true;
    await link.send(MESSAGE, {
      mangle: (f) => {
        if (!first) return f;
        first = false;
        const b = Buffer.from(f);
        b[4] = b[4]! ^ 2;
        return b;
      },
    });
    expect(host.messages.map((m) => m.text.equals(MESSAGE))).toEqual([true]);
    expect(host.issues.map((i) => i.reason)).toEqual(['checksum']);
  });

  it('gives up after 6 NAKs of one frame and ends with EOT', async () => {
    const { host: hostT, device } = memoryPair('nak');
    await hostT.open();
    await device.open();
    const seen: Buffer[] = [];
    device.on('data', (b: Buffer) => {
      seen.push(b);
      if (b[0] === ENQ) void device.write(Buffer.from([ACK]));
      else if (b[0] === 0x02) void device.write(Buffer.from([NAK]));
    });
    const sender = new AstmLink(hostT, { onMessage: async () => undefined, onIssue: () => undefined }, { replyTimeoutMs: 500 });
    sender.start();
    stops.push(() => sender.stop());
    const err = await sender.send(MESSAGE).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AstmSendError);
    expect((err as AstmSendError).code).toBe('nak-limit');
    await eventually('EOT', () => seen.some((b) => b[0] === EOT));
    expect(seen.filter((b) => b[0] === 0x02)).toHaveLength(6);
  });

  it('no answer to ENQ within the reply timer: EOT and a timeout error', async () => {
    const { host: hostT, device } = memoryPair('silent');
    await hostT.open();
    await device.open();
    const seen: number[] = [];
    device.on('data', (b: Buffer) => seen.push(...b));
    const sender = new AstmLink(hostT, { onMessage: async () => undefined, onIssue: () => undefined }, { replyTimeoutMs: 100 });
    sender.start();
    stops.push(() => sender.stop());
    await expect(sender.send(MESSAGE)).rejects.toMatchObject({ code: 'timeout' });
    await eventually('EOT', () => seen.length === 2);
    expect(seen).toEqual([ENQ, EOT]);
  });

  it('contention: both ends bid at once, the host yields, both messages get through', async () => {
    const { host, device } = await pair({ contentionBackoffMs: 150 });
    const inst = instrument(device, { contentionBackoffMs: 30 });
    const hostMsg = Buffer.from('H|\\^&|||LIS\rO|1|S9||^^^GLU\rL|1|N\r', 'latin1');
    await Promise.all([host.link.send(hostMsg), inst.link.send(MESSAGE)]);
    expect(host.messages.map((m) => m.text.equals(MESSAGE))).toEqual([true]);
    await eventually('order at the instrument', () => inst.received.length === 1);
    expect(inst.received[0]!.text.equals(hostMsg)).toBe(true);
  });

  it('long messages go out in frames of at most frameTextSize bytes (ETB), the last ETX', async () => {
    const { host, device, hostT } = await pair();
    const seen: Buffer[] = [];
    hostT.on('data', (b: Buffer) => seen.push(b));
    const { link } = instrument(device, { frameTextSize: 240 });
    const long = Buffer.from(`H|\\^&\rR|1|^^^X|${'9'.repeat(600)}|U\rL|1|N\r`, 'latin1');
    await link.send(long);
    expect(host.messages[0]!.text.equals(long)).toBe(true);
    const frames = seen.filter((b) => b[0] === 0x02);
    expect(frames).toHaveLength(3);
    expect(frames.every((f) => f.length <= 247)).toBe(true);
  });
});
