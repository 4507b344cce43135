/**
 * An ASTM analyzer on the wrong baud rate sends line noise all day. Through the DeviceManager on
 * the real store and a real TCP socket: the noise costs a quarantine entry, an event and a log
 * line per burst (not per fragment: issue 16 saw 60 000 rows and 80 000 log lines for 2.8 MB), the
 * log is rate-limited per device, and a link that stays garbage gets status `garbled` with the
 * likely cause; a good message afterwards is stored and the status leaves `garbled`.
 */
import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import { encodeFrame, ENQ, EOT } from '../../src/protocols/astm/frame.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { deviceManagerRig } from '../helpers/device-manager-rig.ts';
import { eventually } from '../helpers/eventually.ts';
import { lineNoise } from '../helpers/line-noise.ts';
import { freePort } from '../helpers/mosquitto.ts';

const cleanups = useCleanups();

async function socketTo(port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port, noDelay: true });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.on('data', () => undefined);
  cleanups.push(async () => void socket.destroy());
  return socket;
}

describe('astm: line noise on the real store', () => {
  it('costs one quarantine entry, event and log line per burst; the link is garbled with the likely cause; a good message recovers it', async () => {
    const port = await freePort();
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    });
    const r = await deviceManagerRig({
      drivers,
      cleanups,
      log: pino({ level: 'warn' }, sink),
      devices: [{ id: 'chem-1', driver: 'astm', transport: { type: 'tcp-server', port }, options: { receive_timeout_ms: 400 } }],
    });
    const socket = await socketTo(port);
    // 256 KiB of noise over about a fifth of a second or more, in socket-sized writes (the link then
    // reads it at its bounded rate for bad input, 64 KiB/s).
    let sent = 0;
    for (let i = 0; i < 16; i++) {
      const chunk = lineNoise(16 * 1024, i + 1);
      socket.write(chunk);
      sent += chunk.length;
      await new Promise((res) => setTimeout(res, 10));
    }
    await eventually('garbled', () => r.states('chem-1').some((s) => s.status === 'garbled'), 20_000);
    // The last burst is reported after a second of quiet, once every byte is read.
    await new Promise((res) => setTimeout(res, 1500));
    await r.writer.drained();
    const rows = r.store.quarantined();
    const events = r.events.filter((e) => e.device === 'chem-1' && (e.type === 'bad_frame' || e.type === 'device_error'));
    const warned = lines.filter((l) => l.msg === 'astm: link issue');
    expect(sent).toBe(16 * 16 * 1024);
    // A burst at most every burstMaxMs (10 s) and when the noise stops: a handful, never hundreds.
    expect(rows.length).toBeGreaterThanOrEqual(1);
    expect(rows.length).toBeLessThanOrEqual(3);
    expect(rows.every((q) => q.size <= 64 * 1024)).toBe(true);
    expect(events.length).toBe(rows.length);
    expect(rows.some((q) => q.reason === 'garbage-burst')).toBe(true);
    // A line per burst (and per transmission an ENQ in the noise began and the timer ended), at
    // most six a minute for the device.
    expect(warned.length).toBeLessThanOrEqual(6);
    const burstLine = warned.find((w) => w.reason === 'garbage-burst')!;
    expect(burstLine.pieces as number).toBeGreaterThan(100);
    expect(burstLine.bytes as number).toBeGreaterThan(100_000);
    const garbled = r.states('chem-1').find((s) => s.status === 'garbled')!;
    expect(garbled.status_detail).toMatch(/baud rate/);
    expect(r.events.some((e) => e.type === 'device_error' && e.data?.reason === 'garbled')).toBe(true);
    // The analyzer is set right: its next message is stored and the status moves on.
    const good = 'H|\\^&|||C111^Roche^c111^4.2.2.1730^1^13147\rP|1\rO|1||S1\rR|1|^^^550|95.2|U/L||N||F||||20230727162028\r';
    socket.write(Buffer.concat([Buffer.from([ENQ]), encodeFrame(1, good, false), encodeFrame(2, 'L|1|N\r', true), Buffer.from([EOT])]));
    await eventually('stored', () => r.store.recordCount() === 1, 20_000);
    // An ENQ in the noise is no transmission: download_started only for the good message.
    expect(r.events.filter((e) => e.type === 'download_started')).toHaveLength(1);
    await eventually('not garbled', () => r.states('chem-1').at(-1)?.status !== 'garbled');
  }, 60_000);
});
