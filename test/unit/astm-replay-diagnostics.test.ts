/**
 * What `poctd replay` says about an ASTM capture: each problem with its place (byte offset, message,
 * record), a run of identical problems as one line with its count, the bytes of the whole run kept.
 */
import { describe, expect, it } from 'vitest';
import { collapseIssues, decodeAstm } from '../../drivers/analyzers/astm/records.ts';
import { encodeFrame, encodeTransmission } from '../../src/protocols/astm/frame.ts';

const ctx = { deviceId: 'lab-1', timezone: 'UTC' };

describe('collapseIssues', () => {
  it('one line per run of the same reason, with the count, the span and the first detail', () => {
    const out = collapseIssues([
      { reason: 'checksum', detail: 'frame 1', at: 10, bytes: Buffer.from('a') },
      { reason: 'checksum', detail: 'frame 2', at: 40, bytes: Buffer.from('b') },
      { reason: 'checksum', detail: 'frame 3', at: 70, bytes: Buffer.from('c') },
      { reason: 'garbage', at: 90 },
      { reason: 'checksum', detail: 'frame 5', at: 120 },
    ]);
    expect(out.map((i) => i.reason)).toEqual([
      'checksum (×3; bytes 10…70; first: frame 1)',
      'garbage (at byte 90)',
      'checksum (at byte 120; frame 5)',
    ]);
    expect(out[0]!.bytes!.toString()).toBe('abc');
    expect(out[1]!.bytes).toBeUndefined();
  });

  it('sorts by place, names the message, and leaves an unplaced issue without a place', () => {
    const out = collapseIssues([
      { reason: 'late', at: 50, message: 2 },
      { reason: 'early', at: 5, message: 1 },
      { reason: 'nowhere', at: -1 },
    ]);
    expect(out.map((i) => i.reason)).toEqual(['nowhere', 'early (message 1; at byte 5)', 'late (message 2; at byte 50)']);
  });
});

describe('decodeAstm issues carry their place', () => {
  it('bad frames by byte offset, record problems by message and record number', () => {
    const good = 'H|\\^&|||GEN^1\rR|1|^^^GLU|95|mg/dL||N||F||||20250101120000\rL|1|N\r';
    const bad = Buffer.from(encodeFrame(1, 'H|\\^&|||GEN\r', true));
    bad[bad.length - 4] = 0x30; // break the checksum
    const bytes = Buffer.concat([Buffer.from([0x05]), bad, bad, bad, Buffer.from([0x04]), encodeTransmission(Buffer.from(good, 'latin1'), 'single')]);
    // ENQ, three 19-byte bad frames (bytes 1…57), EOT, ENQ, STX, frame number: the H record is at byte 62.
    const { issues, drafts } = decodeAstm({ kind: 'raw', bytes }, ctx);
    expect(drafts.result).toHaveLength(1);
    const reasons = issues.map((i) => i.reason);
    expect(reasons[0]).toMatch(/^checksum \(×3; bytes 1…\d+; first: /);
    expect(reasons).toContain('record 2 (R): a result arrived with no order (O) record before it (message 1; at byte 62)');
  });
});
