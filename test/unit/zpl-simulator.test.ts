import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseSimulatorOptions, ZebraPrinterModel, ZplStreamParser, type StreamItem } from '../../drivers/printers/zebra-zpl/simulator.ts';
import { parseErrorStatus, parseHostIdentification, parseHostStatus, ZebraReplyFramer } from '../../src/protocols/zpl/status.ts';
import { cutAt } from '../helpers/cut-bytes.ts';

const LABEL = '^XA^CI28^FO10,10^A0N,20,20^FH_^FDM_C3_9CLLER ~ not a command^FS^PQ2,0,1,Y^XZ';

function parseAll(chunks: Buffer[]): StreamItem[] {
  const p = new ZplStreamParser();
  return chunks.flatMap((c) => p.push(c));
}

const blocks = (reply: Buffer): string[] => new ZebraReplyFramer().push(reply).flatMap((i) => (i.kind === 'block' ? [i.text] : []));

describe('the fake Zebra reads the stream as a printer does', () => {
  it('finds the control commands and the formats however the bytes are cut', () => {
    const wire = Buffer.from(`~HI${'^XA^FO1,1^FDa^FS^XZ'}~HQES junk ${'^XA^FO2,2^FDb^FS~HS^XZ'}`, 'latin1');
    const whole = parseAll([wire]);
    expect(whole).toEqual([
      { kind: 'control', command: 'HI' },
      { kind: 'format', zpl: '^XA^FO1,1^FDa^FS^XZ' },
      { kind: 'control', command: 'HQES' },
      // A control command inside a format runs at once and is not part of it.
      { kind: 'control', command: 'HS' },
      { kind: 'format', zpl: '^XA^FO2,2^FDb^FS^XZ' },
    ]);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 30 }), (cuts) => {
        expect(parseAll(cutAt(wire, cuts))).toEqual(whole);
      }),
    );
  });

  it('prints ^PQ copies, answers ~HS in three strings and ~HI', () => {
    const printer = new ZebraPrinterModel(parseSimulatorOptions({ model: 'ZD421-203dpi', dpmm: 8 }));
    printer.handle({ kind: 'format', zpl: LABEL });
    expect(printer.printed.map((l) => l.copy)).toEqual([1, 2]);
    expect(parseHostStatus(blocks(printer.handle({ kind: 'control', command: 'HS' })))).toMatchObject({ paper_out: false, paused: false, formats_in_buffer: 0 });
    expect(parseHostIdentification(blocks(printer.handle({ kind: 'control', command: 'HI' }))[0]!)).toMatchObject({ model: 'ZD421-203dpi', dpmm: 8 });
  });

  it('is silent to ~HS in media out and head open, answers ~HQES, holds formats until the fault clears', () => {
    const printer = new ZebraPrinterModel(parseSimulatorOptions({ paper_out: true, head_open: true }));
    expect(printer.handle({ kind: 'control', command: 'HS' })).toHaveLength(0);
    const hqes = parseErrorStatus(blocks(printer.handle({ kind: 'control', command: 'HQES' }))[0]!);
    expect(hqes.errors.names).toEqual(['media_out', 'head_open']);
    printer.handle({ kind: 'format', zpl: LABEL });
    expect(printer.printed).toHaveLength(0);
    printer.set({ paper_out: false });
    expect(printer.printed).toHaveLength(0);
    printer.set({ head_open: false });
    expect(printer.printed).toHaveLength(2);
  });

  it('paused: answers ~HS with the pause flag and formats waiting; ~JA cancels them', () => {
    const printer = new ZebraPrinterModel(parseSimulatorOptions({ paused: true }));
    printer.handle({ kind: 'format', zpl: LABEL });
    expect(parseHostStatus(blocks(printer.handle({ kind: 'control', command: 'HS' })))).toMatchObject({ paused: true, formats_in_buffer: 1 });
    expect(parseErrorStatus(blocks(printer.handle({ kind: 'control', command: 'HQES' }))[0]!).errors.names).toEqual(['paused']);
    printer.handle({ kind: 'control', command: 'JA' });
    printer.set({ paused: false });
    expect(printer.printed).toHaveLength(0);
  });

  it('refuses an unknown option and a bad density', () => {
    expect(() => parseSimulatorOptions({ paper: true })).toThrow('zebra-zpl simulator: unknown option paper');
    expect(() => parseSimulatorOptions({ dpmm: 10 })).toThrow('option dpmm must be 6, 8, 12 or 24');
  });
});

describe('labels_dir', () => {
  it('keeps each printed format as ZPL and its offline rendering as PNG', async () => {
    const { mkdtempSync, readFileSync, existsSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { ZebraSimulator } = await import('../../drivers/printers/zebra-zpl/simulator.ts');
    const dir = join(mkdtempSync(join(tmpdir(), 'poctd-zsim-')), 'labels');
    const sim = new ZebraSimulator(parseSimulatorOptions({ labels_dir: dir }));
    sim.printer.handle({ kind: 'format', zpl: '^XA^PW406^LL203^FO20,20^BY2^BCN,60,Y,N,N,A^FDS1234^FS^PQ2^XZ' });
    expect(readFileSync(join(dir, 'label-1.zpl'), 'latin1')).toContain('^FDS1234^FS');
    expect(existsSync(join(dir, 'label-2.zpl'))).toBe(false); // two copies, one format
    const { eventually } = await import('../helpers/eventually.ts');
    await eventually('png written', () => existsSync(join(dir, 'label-1.png')));
    expect(readFileSync(join(dir, 'label-1.png')).subarray(1, 4).toString()).toBe('PNG');
  });
});
