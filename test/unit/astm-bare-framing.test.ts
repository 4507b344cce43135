/**
 * `framing: bare` (drivers/analyzers/astm/bare-link.ts): STX … ETX blocks with no frame number or
 * checksum (Snibe Maglumi). A message is taken only when it ends with its L record; anything cut
 * short is discarded with its reason; the same bytes in any chunks give the same messages; the
 * live link ACKs the last block only once the message is stored. Without the option the E1381
 * reader refuses such bytes, so a device is never read this way by guess.
 */
import { EventEmitter } from 'node:events';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BareAssembler, BareAstmLink, collectBareMessages } from '../../drivers/analyzers/astm/bare-link.ts';
import { decodeAstm } from '../../drivers/analyzers/astm/records.ts';
import { parseAstmOptions } from '../../drivers/analyzers/astm/options.ts';
import type { AstmLinkIssue, AstmLinkMessage } from '../../src/protocols/astm/link.ts';

const ENQ = 0x05;
const EOT = 0x04;
const ACK = 0x06;
const NAK = 0x15;
const msg = (specimen: string): string =>
  `H|\\^&||PSWD|Maglumi User|||||Lis||P|E1394-97|20250601\rP|1\rO|1|${specimen}||^^^TSH II\rR|1|^^^TSH II|3.007|uIU/mL|0.3 to 4.5|N||||||20250601101500\rL|1|N\r`;
const block = (text: string): Buffer => Buffer.concat([Buffer.from([0x02]), Buffer.from(text, 'latin1'), Buffer.from([0x03])]);
const transmission = (...blocks: Buffer[]): Buffer => Buffer.concat([Buffer.from([ENQ]), ...blocks, Buffer.from([EOT])]);

describe('collectBareMessages', () => {
  it('one message per L-terminated run of blocks', () => {
    const bytes = Buffer.concat([transmission(block(msg('S1'))), transmission(block(msg('S2').slice(0, 40)), block(msg('S2').slice(40)))]);
    const { messages, issues } = collectBareMessages(bytes, 64000);
    expect(messages.map((m) => m.toString('latin1'))).toEqual([msg('S1'), msg('S2')]);
    expect(issues).toEqual([]);
  });

  it.each([
    ['EOT before the L record', transmission(block(msg('S1').replace('L|1|N\r', '')))],
    ['a new ENQ before the message ended (no L record)', Buffer.concat([Buffer.from([ENQ]), block(msg('S1').replace('L|1|N\r', '')), transmission(block(msg('S2')))])],
    ['EOT inside a block, before its ETX', Buffer.concat([Buffer.from([ENQ, 0x02]), Buffer.from(msg('S1').slice(0, 30), 'latin1'), Buffer.from([EOT])])],
    ['the capture ended before the L record', Buffer.concat([Buffer.from([ENQ, 0x02]), Buffer.from(msg('S1'), 'latin1')])],
  ])('%s: nothing published from it, the reason named', (why, bytes) => {
    const { messages, issues } = collectBareMessages(bytes, 64000);
    expect(messages.map((m) => m.toString('latin1')).filter((m) => m.includes('S1'))).toEqual([]);
    expect(issues.some((i) => i.kind === 'incomplete-message' && i.detail === why)).toBe(true);
  });

  it('a message longer than the limit is refused', () => {
    const { messages, issues } = collectBareMessages(transmission(block(msg('S1'))), 64);
    expect(messages).toEqual([]);
    expect(issues.map((i) => i.kind)).toContain('message-too-long');
  });

  it('bytes outside a transmission are garbage, a block with no ENQ is not taken', () => {
    const { messages, issues } = collectBareMessages(Buffer.concat([block(msg('S0')), Buffer.from('noise'), transmission(block(msg('S1')))]), 64000);
    expect(messages.map((m) => m.toString('latin1'))).toEqual([msg('S1')]);
    expect(issues.map((i) => i.kind)).toEqual(['garbage']);
  });

  it('the same bytes cut into any chunks give the same messages and issues', () => {
    const bytes = Buffer.concat([transmission(block(msg('S1'))), Buffer.from([ENQ]), block('H|\\^&\rP|1\r'), transmission(block(msg('S3')))]);
    const whole = collectBareMessages(bytes, 64000);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: bytes.length }), { maxLength: 12 }), (cuts) => {
        const asm = new BareAssembler(64000);
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const events = [];
        let at = 0;
        for (const p of [...points, bytes.length]) {
          events.push(...asm.push(bytes.subarray(at, p)));
          at = p;
        }
        events.push(...asm.finish('the capture ended before the L record'));
        const messages = events.flatMap((e) => (e.type === 'message' ? [e.text.toString('latin1')] : []));
        const issues = events.flatMap((e) => (e.type === 'issue' ? [e.issue.detail] : []));
        expect(messages).toEqual(whole.messages.map((m) => m.toString('latin1')));
        expect(issues).toEqual(whole.issues.map((i) => i.detail));
      }),
    );
  });
});

describe('decode with and without the option', () => {
  const ctx = { deviceId: 'maglumi-1', timezone: 'UTC' };
  const bytes = Buffer.concat([transmission(block(msg('S1'))), transmission(block(msg('S2')))]);

  it('framing bare: every message decoded', () => {
    const r = decodeAstm({ kind: 'raw', bytes }, { ...ctx, options: { framing: 'bare' } });
    expect(r.drafts.result!.map((d) => d.specimen.id)).toEqual(['S1', 'S2']);
    expect(r.drafts.result![0]!.observations[0]).toMatchObject({ code: 'TSH II', value: 3.007, ucum: 'u[IU]/mL' });
  });

  it('default E1381 framing: nothing published, each block refused with its reason', () => {
    const r = decodeAstm({ kind: 'raw', bytes }, ctx);
    expect(r.drafts.result ?? []).toEqual([]);
    expect(r.issues.length).toBeGreaterThan(0);
  });

  it('the option is checked', () => {
    expect(() => parseAstmOptions({ framing: 'stx' })).toThrow(/options\.framing: must be one of e1381, bare/);
    expect(parseAstmOptions({}).framing).toBe('e1381');
  });
});

class Wire extends EventEmitter {
  readonly isOpen = true;
  readonly written: number[] = [];
  write(bytes: Buffer): Promise<void> {
    this.written.push(...bytes);
    this.emit('wrote');
    return Promise.resolve();
  }
}

const until = async (check: () => boolean): Promise<void> => {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setImmediate(r));
  expect(check()).toBe(true);
};

describe('BareAstmLink', () => {
  it('ACKs ENQ, holds the last ACK until the message is stored, NAKs a failed commit', async () => {
    const wire = new Wire();
    const got: AstmLinkMessage[] = [];
    const issues: AstmLinkIssue[] = [];
    let release: (() => void) | null = null;
    let fail = false;
    const link = new BareAstmLink(
      wire,
      {
        onMessage: (m) => {
          got.push(m);
          if (fail) return Promise.reject(new Error('store down'));
          return new Promise<void>((r) => (release = r));
        },
        onIssue: (i) => issues.push(i),
      },
      { receiveTimeoutMs: 30000, maxFrameBytes: 64000 },
    );
    link.start();
    wire.emit('data', Buffer.from([ENQ]));
    await until(() => wire.written.length === 1);
    expect(wire.written).toEqual([ACK]);
    wire.emit('data', block(msg('S1')));
    await until(() => got.length === 1);
    expect(wire.written).toEqual([ACK]); // not yet stored: no ACK
    release!();
    await until(() => wire.written.length === 2);
    expect(wire.written).toEqual([ACK, ACK]);
    fail = true;
    wire.emit('data', block(msg('S2')));
    await until(() => wire.written.length === 3);
    expect(wire.written.at(-1)).toBe(NAK);
    expect(issues.map((i) => i.kind)).toEqual(['commit-failed']);
    expect(got[0]!.text.toString('latin1')).toBe(msg('S1'));
    await expect(link.send(Buffer.from('H|\\^&\rL|1|N\r'))).rejects.toThrow(/receive only/);
    await link.stop();
  });

  it('a lost link mid-message discards it with link-closed', async () => {
    const wire = new Wire();
    const issues: AstmLinkIssue[] = [];
    const link = new BareAstmLink(wire, { onMessage: () => Promise.resolve(), onIssue: (i) => issues.push(i) }, { receiveTimeoutMs: 30000, maxFrameBytes: 64000 });
    link.start();
    wire.emit('data', Buffer.concat([Buffer.from([ENQ, 0x02]), Buffer.from(msg('S1').slice(0, 50), 'latin1')]));
    wire.emit('close');
    await until(() => issues.length === 1);
    expect(issues[0]).toMatchObject({ kind: 'link-closed' });
    await link.stop();
  });
});
