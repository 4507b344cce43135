import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Capture, DriverSession } from '../../src/driver-sdk/index.ts';
import { captureFromBytes } from '../../src/driver-sdk/capture.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { sessionRig, type SessionRig } from '../helpers/session-rig.ts';
import {
  ACK,
  DC2,
  ENQ,
  NAK,
  PacketFramer,
  XON,
  clinitek50Checksum,
  decodePacket,
  encodePacket,
  verifyPacket,
} from '../../drivers/urinalysis/clinitek-50/codec.ts';
import { clinitek50 } from '../../drivers/urinalysis/clinitek-50/definition.ts';
import { decodeClinitek50 } from '../../drivers/urinalysis/clinitek-50/records.ts';
import { Clinitek50Simulator, SAMPLE_RECORDS, parseSimulatorOptions, recordLines } from '../../drivers/urinalysis/clinitek-50/simulator.ts';

import { itShared, sharedFixture } from '../helpers/shared-fixtures.ts';
import { buildCapture as buildDocumentedCapture } from '../fixtures/clinitek-50/gnumed-documented-packets/capture-recipe.ts';

const CTX = { deviceId: 'urine-c50', timezone: 'Europe/Berlin' };
const PACKETS = sharedFixture('urinalysis/clinitek50-packets.txt');
const DOCUMENTED = buildDocumentedCapture([PACKETS.bytesOrEmpty()]);
const SESSION = readFileSync(new URL('../fixtures/clinitek-50/simulator-session-nak-retry/capture.txt', import.meta.url));
const raw = (bytes: Buffer): Capture => ({ kind: 'raw', bytes });

function packetsOf(bytes: Buffer): Buffer[] {
  return new PacketFramer().push(bytes).flatMap((i) => (i.kind === 'packet' ? [i.bytes] : []));
}

describe('CLINITEK 50 packets', () => {
  const [identity, data] = packetsOf(DOCUMENTED) as [Buffer, Buffer];

  itShared([PACKETS], 'verifies the documented identity packet checksum (0x48) and reads it', () => {
    expect(clinitek50Checksum(identity.subarray(1, identity.length - 3))).toBe(0x48);
    const r = decodePacket(identity);
    expect(r.ok && r.message).toEqual({
      type: 'identity',
      revision: '  ',
      software: '01.02',
      clock: '1997-06-20T13:49:00',
      language: 'DEUTSCH',
      units: 'CONV.',
      strip: 'MULTISTIX 8 SG',
    });
  });

  itShared([PACKETS], 'refuses the documented data packet: it says 4C, its bytes sum to 29', () => {
    const r = verifyPacket(data);
    expect(r.ok ? null : r.error.code).toBe('bad-checksum');
    // The same lines with their real checksum are the simulator's first record, byte for byte.
    const lines = data.subarray(3, data.length - 5).toString('latin1').split('\r\n');
    expect(encodePacket(lines).subarray(0, -3)).toEqual(data.subarray(0, -3));
    expect(lines).toEqual(recordLines(SAMPLE_RECORDS[0]!, '01.02', 'de'));
  });

  it('accepts a lowercase checksum and refuses every single-byte corruption', () => {
    const good = encodePacket(recordLines(SAMPLE_RECORDS[1]!, '01.02', 'de'));
    const lower = Buffer.from(good);
    lower.write(lower.subarray(-3, -1).toString('latin1').toLowerCase(), lower.length - 3, 'latin1');
    expect(decodePacket(lower).ok).toBe(true);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: good.length - 2 }), fc.integer({ min: 1, max: 255 }), (at, delta) => {
        const bad = Buffer.from(good);
        bad[at] = (bad[at]! + delta) & 0xff;
        // A changed byte either breaks the frame or the checksum; it never decodes to a record.
        // The one exception is no corruption at all: a checksum letter in the other case (accepted
        // above) gives the very same record.
        const r = decodeClinitek50(raw(bad), CTX);
        const caseOnly = at >= good.length - 3 && bad.toString('latin1').toUpperCase() === good.toString('latin1').toUpperCase();
        expect(r.drafts.result).toEqual(caseOnly ? decodeClinitek50(raw(good), CTX).drafts.result! : []);
      }),
      // The case-only change is 1 in about 68 000: make sure it is among the runs.
      { numRuns: 300, examples: [[good.length - 2, 32]] },
    );
  });

  it('frames the same packets however the stream is chunked, dropping XON/XOFF', () => {
    const stream = Buffer.concat([
      Buffer.from([0x11]),
      ...SAMPLE_RECORDS.map((r) => encodePacket(recordLines(r, '01.02', 'de'))),
      Buffer.from([0x13, NAK]),
    ]);
    const whole = decodeClinitek50(raw(stream), CTX);
    expect(whole.drafts.result).toHaveLength(3);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 30 }), (sizes) => {
        const framer = new PacketFramer();
        const items = [];
        let i = 0;
        let k = 0;
        while (i < stream.length) {
          const n = sizes[k++ % sizes.length]!;
          items.push(...framer.push(stream.subarray(i, i + n)));
          i += n;
        }
        items.push(...framer.finish());
        expect(items.map((x) => x.kind)).toEqual(['packet', 'packet', 'packet', 'nak']);
        const again = decodeClinitek50(raw(Buffer.concat(items.flatMap((x) => (x.kind === 'packet' ? [x.bytes] : [])))), CTX);
        expect(again.drafts.result).toEqual(whole.drafts.result);
      }),
      { numRuns: 80 },
    );
  });

  it('reports garbage between packets, a truncated packet and an unknown label without losing the rest', () => {
    const p1 = encodePacket(recordLines(SAMPLE_RECORDS[1]!, '01.02', 'de'));
    const p2 = encodePacket(recordLines({ ...SAMPLE_RECORDS[2]!, results: [...SAMPLE_RECORDS[2]!.results, { code: 'XYZ', value: '12 mg/dL', abnormal: true }] }, '01.02', 'de'));
    const stream = Buffer.concat([Buffer.from('noise'), p1, Buffer.from('\x00\xff'), p2, p1.subarray(0, 30)]);
    const d = decodeClinitek50(raw(stream), CTX);
    expect(d.drafts.result!.map((x) => x.key)).toEqual(['9|1997-03-03T11:20:00', '10|1997-03-03T11:31:00']);
    expect(d.issues.map((i) => i.reason)).toEqual(['garbage', 'garbage', 'truncated-packet']);
    expect(d.drafts.result![1]!.observations.at(-1)).toMatchObject({ code: 'XYZ', loinc: null, value: 12, flags: ['abnormal', 'unknown-label'] });
  });

  it('decodes the stored session transcript: each record once though one was sent twice', () => {
    const d = decodeClinitek50(captureFromBytes(SESSION), CTX);
    expect(d.drafts.result!.map((x) => x.key)).toEqual(['8|1997-03-03T11:11:00', '9|1997-03-03T11:20:00', '10|1997-03-03T11:31:00']);
    expect(d.issues.map((i) => i.reason)).toEqual(['bad-checksum']);
  });
});

describe('CLINITEK 50 session', () => {
  const cleanups = useCleanups();

  /** Not started, not plugged in; the host's writes are noted in `host.order` next to the commits. */
  async function rig(simOptions: Record<string, unknown> = {}, options: Record<string, unknown> = {}): Promise<SessionRig<Clinitek50Simulator, DriverSession>> {
    const r = await sessionRig({
      cable: 'c50',
      device: { id: 'urine-c50', driver: 'clinitek-50', transport: { type: 'simulated' }, options: { reply_timeout_ms: 300, ...options } },
      simulator: new Clinitek50Simulator(parseSimulatorOptions({ seed: 9, max_chunk: 5, timezone: 'Europe/Berlin', ...simOptions })),
      createSession: (host) => clinitek50.createSession(host),
      timezone: 'Europe/Berlin',
      open: false,
      cleanups,
    });
    const write = r.hostEnd.write.bind(r.hostEnd);
    r.hostEnd.write = async (b: Buffer) => {
      r.host.order.push(`write:${b.toString('hex')}`);
      return write(b);
    };
    return r;
  }

  it('downloads on connect: ENQ, then XON DC2 per record, each committed before its ACK', async () => {
    const r = await rig();
    await r.session.start();
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(r.host.commits.map((c) => c.drafts[0]!.key)).toEqual(SAMPLE_RECORDS.map((x) => `${x.seq}|${x.time}`));
    const order = r.host.order.filter((x) => x.startsWith('commit') || x === `write:${ACK.toString(16).padStart(2, '0')}`);
    expect(order).toEqual(Array(3).fill(['commit:start', 'commit:end', 'write:06']).flat());
    expect(r.sim.received.slice(0, 3)).toEqual([ENQ, XON, DC2]);
    expect(r.host.events.find((e) => e.type === 'download_finished')!.data).toEqual({ records: 3, inserted: 3, duplicates: 0 });
    expect(r.host.state).toMatchObject({ status: 'ok', model: 'CLINITEK 50', firmware: '01.02', meter: { display_unit: 'CONV.' } });
    for (const c of r.host.commits) expect(decodeClinitek50(c.capture, CTX).drafts).toEqual(c.records);
    // A second download reads the records the reader has left: none.
    await r.session.command('download', {});
    expect(r.host.commits).toHaveLength(3);
  });

  it('NAKs a packet with a bad checksum, asks again and stores it once; the session goes on', async () => {
    const r = await rig({ corrupt_next: 2, garbage: true });
    await r.session.start();
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_finished'));
    expect(r.host.stored.size).toBe(3);
    expect(r.sim.received.filter((b) => b === NAK)).toHaveLength(2);
    expect(r.host.quarantined.map((q) => q.reason).filter((x) => x === 'bad-checksum')).toHaveLength(2);
    expect(r.host.types().filter((t) => t === 'bad_frame').length).toBeGreaterThanOrEqual(2);
  });

  it('gives up after too many bad packets without ACKing anything unstored', async () => {
    const r = await rig({ corrupt_next: 10 }, { retries: 2 });
    await r.session.start();
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_failed'));
    expect(r.host.commits).toHaveLength(0);
    expect(r.sim.received).not.toContain(ACK);
    expect(r.host.events.find((e) => e.type === 'download_failed')!.data).toEqual({ reason: 'bad-checksum' });
    expect(r.sim.next).toBe(0);
  });

  it('does not ACK a record the store did not commit', async () => {
    const r = await rig();
    r.host.commit = async () => {
      throw new Error('disk full');
    };
    await r.session.start();
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('download_failed'));
    expect(r.sim.received).not.toContain(ACK);
    expect(r.sim.next).toBe(0);
  });

  it('reports a reader that does not answer', async () => {
    const r = await rig({ off: true });
    await r.session.start();
    await r.hostEnd.open();
    await r.host.until(() => r.host.types().includes('no_answer'));
    expect(r.host.state.status).toBe('no-answer');
  });
});
