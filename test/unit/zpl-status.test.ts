import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  errorStatusPatch,
  hostStatusFault,
  parseErrorStatus,
  parseHostIdentification,
  parseHostStatus,
  ZebraReplyFramer,
  type ReplyItem,
} from '../../src/protocols/zpl/status.ts';
import { decodeStatusBlocks } from '../../drivers/printers/zebra-zpl/records.ts';
import { cutAt } from '../helpers/cut-bytes.ts';

const blk = (s: string): string => `\x02${s}\x03\r\n`;
const HS = ['030,0,0,0203,000,0,0,0,000,0,0,0', '001,0,0,0,1,2,6,0,00000000,1,000', '1234,0'];
const HQES = '\r\n\r\nPRINTER STATUS            \r\n   ERRORS:          1 00000000 00000005  \r\n   WARNINGS:        0 00000000 00000000   \r\n';
const WIRE = Buffer.from(HS.map(blk).join('') + blk(HQES) + blk('ZD421-203dpi,V93.21.26Z,8,8192KB,'), 'latin1');

function frameAll(chunks: Buffer[]): ReplyItem[] {
  const framer = new ZebraReplyFramer();
  return chunks.flatMap((c) => framer.push(c));
}

describe('Zebra reply framer', () => {
  it('reads the three ~HS strings, ~HQES and ~HI whole, however the bytes are cut', () => {
    const whole = frameAll([WIRE]);
    expect(whole.map((i) => i.kind)).toEqual(['block', 'block', 'block', 'block', 'block']);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 40 }), (cuts) => {
        expect(frameAll(cutAt(WIRE, cuts))).toEqual(whole);
      }),
    );
  });

  it('hands back garbage between replies and a reply cut short, and keeps the good ones', () => {
    const noisy = Buffer.concat([Buffer.from('\xffzz', 'latin1'), Buffer.from(blk(HS[0]!), 'latin1'), Buffer.from('\x02trunc', 'latin1'), Buffer.from(blk('ZD421,V1,8,8KB'), 'latin1')]);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 20 }), (cuts) => {
        const items = frameAll(cutAt(noisy, cuts));
        expect(items.filter((i) => i.kind === 'block').map((i) => (i as { text: string }).text)).toEqual([HS[0], 'ZD421,V1,8,8KB']);
        const garbage = items.filter((i) => i.kind === 'garbage');
        expect(garbage.map((g) => g.reason)).toContain('a status reply cut short (STX before its ETX)');
        expect(Buffer.concat(garbage.map((g) => (g as { bytes: Buffer }).bytes)).toString('latin1')).toBe('\xffzz\x02trunc');
      }),
    );
  });

  it('gives up on a block with no ETX after 4 KiB', () => {
    const items = frameAll([Buffer.from([0x02, ...Buffer.alloc(5000, 0x41)])]);
    expect(items[0]).toMatchObject({ kind: 'garbage', reason: 'a status reply longer than 4096 bytes' });
  });
});

describe('~HS', () => {
  it('decodes each flag from its own field', () => {
    expect(parseHostStatus(HS)).toEqual({
      paper_out: false, paused: false, label_length_dots: 203, formats_in_buffer: 0, receive_buffer_full: false, partial_format: false,
      corrupt_ram: false, under_temperature: false, over_temperature: false, head_open: false, ribbon_out: false, print_mode: 'tear-off', labels_remaining: 0,
    });
    const set = (s: number, i: number): string[] => HS.map((str, k) => (k === s ? str.split(',').map((f, j) => (j === i ? '1' : f)).join(',') : str));
    const cases: Array<[number, number, string, string | null]> = [
      [0, 1, 'paper_out', 'paper out'],
      [0, 2, 'paused', 'paused'],
      [0, 5, 'receive_buffer_full', 'receive buffer full'],
      [0, 9, 'corrupt_ram', 'configuration lost (corrupt RAM)'],
      [0, 10, 'under_temperature', null],
      [0, 11, 'over_temperature', 'head too hot'],
      [1, 2, 'head_open', 'head open'],
      [1, 3, 'ribbon_out', 'ribbon out'],
    ];
    for (const [s, i, field, fault] of cases) {
      const parsed = parseHostStatus(set(s, i));
      expect((parsed as unknown as Record<string, unknown>)[field], field).toBe(true);
      expect(hostStatusFault(parsed), field).toBe(fault);
    }
  });

  it('refuses a reply of the wrong shape, naming the field', () => {
    expect(() => parseHostStatus(HS.slice(0, 2))).toThrow('2 strings, expected 3');
    expect(() => parseHostStatus([HS[0]!.replace('0203', 'x'), HS[1]!, HS[2]!])).toThrow('label length: "x" is not a number');
    expect(() => parseHostStatus([HS[0]!, '001,0,2,0,1,2,6,0,00000000,1,000', HS[2]!])).toThrow('head up: "2" is not 0 or 1');
  });
});

describe('~HQES', () => {
  it('decodes every error bit of group 1 by the guide\'s table, and names a bit it does not know', () => {
    const s = parseErrorStatus(HQES);
    expect(s.errors).toMatchObject({ present: true, group1: 5, names: ['media_out', 'head_open'] });
    expect(errorStatusPatch(s)).toEqual({ paper_out: true, ribbon_out: false, head_open: true, paused: false, over_temperature: false });
    const bits: Array<[string, string]> = [
      ['00000002', 'ribbon_out'], ['00000008', 'cutter_fault'], ['00000010', 'head_over_temperature'], ['00000020', 'motor_over_temperature'],
      ['00000040', 'bad_printhead_element'], ['00000080', 'printhead_detection_error'], ['00000100', 'invalid_firmware_config'],
      ['00000200', 'printhead_thermistor_open'], ['00001000', 'paper_jam_during_retract'], ['00010000', 'paused'],
    ];
    for (const [hex, name] of bits) expect(parseErrorStatus(HQES.replace('00000005', hex)).errors.names, hex).toEqual([name]);
    expect(parseErrorStatus(HQES.replace('00000005', '00400001')).errors.texts).toEqual(['media out', 'unknown bit 0x00400000']);
    expect(parseErrorStatus(HQES.replace('0 00000000 00000000', '1 00000000 0000000A')).warnings.names).toEqual(['clean_printhead', 'paper_near_end']);
  });

  it('refuses a reply without its lines', () => {
    expect(() => parseErrorStatus('PRINTER STATUS\r\n ERRORS: 1 0000')).toThrow('no "ERRORS: f gggggggg hhhhhhhh" line');
    expect(() => parseErrorStatus('hello')).toThrow('no "PRINTER STATUS" heading');
  });
});

describe('~HI', () => {
  it('decodes model, firmware and density', () => {
    expect(parseHostIdentification('ZD421-203dpi,V93.21.26Z,8,8192KB,')).toEqual({ model: 'ZD421-203dpi', firmware: 'V93.21.26Z', dpmm: 8, memory: '8192KB', options: null });
    expect(() => parseHostIdentification('ZD421,V93,7,8192KB')).toThrow('dots per millimetre "7"');
  });
});

describe('status blocks as device state', () => {
  it('a silent ~HS followed by ~HQES media out is a fault with the reason', () => {
    expect(decodeStatusBlocks([HQES]).patch).toMatchObject({ status: 'fault', status_detail: 'media out, head open', printer: { paper_out: true, head_open: true } });
  });
  it('a ready ~HS is ok, and ~HI names the model', () => {
    expect(decodeStatusBlocks([...HS, 'ZD421,V9,8,8KB']).patch).toMatchObject({ status: 'ok', status_detail: null, model: 'ZD421', firmware: 'V9' });
  });
});

describe('a ~HS reply with a bad field', () => {
  it('is one issue naming the field, and the rest of the capture still decodes', async () => {
    const { decodeZebraCapture } = await import('../../drivers/printers/zebra-zpl/records.ts');
    const bytes = Buffer.from('\xff\x00noise' + blk('030,X,0,0203,000,0,0,0,000,0,0,0') + HS.slice(1).map(blk).join('') + blk('ZT411-300dpi,V92.21.07Z,12,2104KB'), 'latin1');
    const result = decodeZebraCapture({ kind: 'raw', bytes });
    expect(result.issues.map((i) => i.reason)).toEqual(['bytes outside a status reply', '~HS string 1 paper out: "X" is not 0 or 1']);
    expect(result.device).toEqual({ manufacturer: 'Zebra Technologies', model: 'ZT411-300dpi', firmware: 'V92.21.07Z' });
    expect(result.drafts).toEqual({});
  });
});
