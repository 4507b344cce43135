import { describe, expect, it } from 'vitest';
import { encodeFrame, ENQ, EOT, STX } from '../../src/protocols/astm/frame.ts';
import { AstmLink, type AstmLinkIssue, type AstmLinkMessage, type AstmLinkOptions } from '../../src/protocols/astm/link.ts';
import { memoryPair, type MemoryTransport } from '../../src/transports/memory.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { eventually } from '../helpers/eventually.ts';
import { lineNoise } from '../helpers/line-noise.ts';

/**
 * Bad input costs the link O(1) reports per burst, not one per fragment (issue 16: 2.8 MB of line
 * noise made 60 000 quarantine rows and 80 000 log lines). Consecutive bad frames, bytes outside
 * frames and stray control bytes are one burst, reported once when it ends (a good frame, quiet,
 * or its longest duration), with the first and last bytes kept; a link that carries nothing but
 * bad input for long is reported garbled with the likely cause; a stream of garbage does not hold
 * a transmission open past the receiver timer, nor grow its capture without bound.
 */

const cleanups = useCleanups();
const H = 'H|\\^&|||X\r';
const L = 'L|1|N\r';

interface Rig {
  device: MemoryTransport;
  link: AstmLink;
  issues: AstmLinkIssue[];
  messages: AstmLinkMessage[];
  replies: number[];
}

async function rig(options: AstmLinkOptions = {}): Promise<Rig> {
  const { host, device } = memoryPair('garbage');
  await host.open();
  await device.open();
  const r: Rig = { device, issues: [], messages: [], replies: [], link: undefined as unknown as AstmLink };
  r.link = new AstmLink(host, { onMessage: async (m) => void r.messages.push(m), onIssue: (i) => r.issues.push(i) }, { receiveTimeoutMs: 60_000, coalesceBadInput: true, ...options });
  r.link.start();
  cleanups.push(() => r.link.stop());
  device.on('data', (chunk: Buffer) => r.replies.push(...chunk));
  return r;
}

async function writeChunks(device: MemoryTransport, bytes: Buffer, size = 1460): Promise<void> {
  for (let i = 0; i < bytes.length; i += size) await device.write(bytes.subarray(i, i + size));
}

describe('a burst of bad input is one report', () => {
  it('1 MB of line noise: one issue per burst, its size counted, first and last bytes kept within the cap', async () => {
    const r = await rig({ burstQuietMs: 100, burstMaxMs: 60_000, burstKeepBytes: 4096 });
    const flood = lineNoise(1024 * 1024);
    await writeChunks(r.device, flood);
    await eventually('the burst reported', () => r.issues.length >= 1, 20_000);
    // Every byte was read before the burst's quiet began; stopping the link handles what it still
    // holds and reports a burst still open, so nothing more can come after this.
    await r.link.stop();
    // Noise holds ENQ and EOT bytes, so the link also goes in and out of transmissions: only
    // message-level issues (none here: nothing was ever accepted) could stand beside the burst.
    const bursts = r.issues.filter((i) => i.reason === 'garbage-burst');
    expect(r.issues).toHaveLength(1);
    expect(bursts).toHaveLength(1);
    const b = bursts[0]!;
    expect(b.burst!.pieces).toBeGreaterThan(1000);
    // Every byte except the control bytes between frames is counted.
    expect(b.burst!.size).toBeGreaterThan(flood.length * 0.95);
    expect(b.burst!.size).toBeLessThanOrEqual(flood.length);
    expect(b.bytes!.length).toBe(4096);
    expect(b.burst!.kept).toBe(4096);
    // The first kept bytes are the flood's first bytes (the flood starts with no control byte).
    expect(b.bytes!.subarray(0, 16)).toEqual(flood.subarray(0, 16));
    expect(b.detail).toMatch(/the first and last 2048 bytes are kept/);
  }, 60_000);

  it('a lone bad frame is reported as it was; a good frame ends the burst before it', async () => {
    const r = await rig();
    const bad = Buffer.from(encodeFrame(1, H, false));
    bad[4] = bad[4]! ^ 1;
    await r.device.write(Buffer.concat([Buffer.from([ENQ]), bad, encodeFrame(1, H, false), encodeFrame(2, L, true), Buffer.from([EOT])]));
    await eventually('message', () => r.messages.length === 1);
    expect(r.issues.map((i) => [i.kind, i.reason, i.answer])).toEqual([['bad-frame', 'checksum', 'NAK']]);
    expect(r.issues[0]!.burst).toBeUndefined();
  });

  it('a flood that never pauses is reported every burstMaxMs, each bad frame still NAKed at once', async () => {
    const r = await rig({ burstQuietMs: 10_000, burstMaxMs: 150 });
    const bad = Buffer.from(encodeFrame(1, H, false));
    bad[4] = bad[4]! ^ 1;
    await r.device.write(Buffer.from([ENQ]));
    const until = Date.now() + 500;
    let sent = 0;
    while (Date.now() < until) {
      await r.device.write(bad);
      sent++;
      await new Promise((res) => setTimeout(res, 5));
    }
    await eventually('every NAK', () => r.replies.length === sent + 1);
    await eventually('a report per interval', () => r.issues.length >= 2);
    expect(r.issues.length).toBeLessThanOrEqual(6);
    expect(r.issues.every((i) => i.kind === 'garbage' || i.reason === 'checksum')).toBe(true);
  });
});

describe('a link that stays garbage is garbled, with the likely cause', () => {
  async function flood(r: Rig, bytes: (i: number) => Buffer, ms: number): Promise<void> {
    const until = Date.now() + ms;
    for (let i = 0; Date.now() < until; i++) {
      await r.device.write(bytes(i));
      await new Promise((res) => setTimeout(res, 10));
    }
  }

  it('binary noise: a baud rate or serial setting mismatch', async () => {
    const r = await rig({ burstQuietMs: 50, burstMaxMs: 100, garbledAfterMs: 250 });
    await flood(r, (i) => Buffer.from(lineNoise(64, i).map((x) => (x === ENQ || x === STX ? 0xff : x))), 500);
    await eventually('garbled', () => r.issues.some((i) => i.garbled !== undefined));
    expect(r.issues.find((i) => i.garbled)!.garbled).toMatch(/baud rate/);
    // Not before garbledAfterMs: the first report is not garbled.
    expect(r.issues[0]!.garbled).toBeUndefined();
  });

  it('text that is not E1381: another protocol', async () => {
    const r = await rig({ burstQuietMs: 50, burstMaxMs: 100, garbledAfterMs: 250 });
    await flood(r, (i) => Buffer.from(`R,${i},GLU,5.5,mmol/L\r\n`, 'latin1'), 500);
    await eventually('garbled', () => r.issues.some((i) => i.garbled !== undefined));
    expect(r.issues.find((i) => i.garbled)!.garbled).toMatch(/another protocol/);
  });

  it('a good frame between short bursts: never garbled', async () => {
    const r = await rig({ burstQuietMs: 50, burstMaxMs: 100, garbledAfterMs: 250 });
    await flood(r, (i) => (i % 5 === 4 ? Buffer.concat([Buffer.from([ENQ]), encodeFrame(1, H + L, true), Buffer.from([EOT])]) : Buffer.from('zz\n')), 600);
    // The flood's bytes are all delivered; stopping reports the last burst (garbled or not) at once.
    await r.link.stop();
    expect(r.messages.length).toBeGreaterThan(3);
    expect(r.issues.some((i) => i.garbled !== undefined)).toBe(false);
  });
});

describe('garbage cannot hold a transmission open', () => {
  it('a slowloris sending garbage lines after ENQ is cut by the receiver timer', async () => {
    const r = await rig({ receiveTimeoutMs: 200, burstQuietMs: 50 });
    await r.device.write(Buffer.concat([Buffer.from([ENQ]), encodeFrame(1, H, false)]));
    const started = Date.now();
    let cut = false;
    await eventually('receiving', () => r.link.linkState === 'receiving');
    while (Date.now() - started < 1000 && !cut) {
      await r.device.write(Buffer.from('x\n'));
      await new Promise((res) => setTimeout(res, 40));
      cut = r.issues.some((i) => i.kind === 'receive-timeout');
    }
    expect(cut).toBe(true);
    expect(Date.now() - started).toBeLessThan(600);
    expect(r.link.linkState).toBe('neutral');
  });

  it('bad input inside a transmission is kept in its capture only up to maxMessageBytes', async () => {
    const r = await rig({ maxMessageBytes: 1000 });
    await r.device.write(Buffer.from([ENQ]));
    await writeChunks(r.device, Buffer.from('zzzzzzzzz\n'.repeat(10_000)));
    await r.device.write(Buffer.concat([encodeFrame(1, H, false), encodeFrame(2, L, true), Buffer.from([EOT])]));
    await eventually('message', () => r.messages.length === 1);
    const captured = r.messages[0]!.exchanges.reduce((n, e) => n + e.bytes.length, 0);
    expect(captured).toBeLessThan(1000 + 200);
  });
});

describe('without coalesceBadInput (a driver that counts NAKs itself, such as the Contour)', () => {
  it('each bad piece is reported alone, and the transmission is announced at ENQ', async () => {
    const { host, device } = memoryPair('plain');
    await host.open();
    await device.open();
    const issues: AstmLinkIssue[] = [];
    const phases: string[] = [];
    const link = new AstmLink(host, { onMessage: async () => undefined, onIssue: (i) => issues.push(i), onTransmission: (p) => phases.push(p) });
    link.start();
    cleanups.push(() => link.stop());
    const bad = Buffer.from(encodeFrame(1, H, false));
    bad[4] = bad[4]! ^ 1;
    await device.write(Buffer.concat([Buffer.from([ENQ]), bad, bad, bad]));
    await eventually('three issues', () => issues.length === 3);
    expect(issues.map((i) => i.reason)).toEqual(['checksum', 'checksum', 'checksum']);
    expect(phases).toEqual(['start']);
  });
});
