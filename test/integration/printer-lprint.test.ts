/**
 * The fake Zebra driven by a ZPL client other than ours: Debian's LPrint (PAPPL) adds it as a
 * `socket://` printer, asks `~HQES` and `~HS`, and prints a PNG as a downloaded graphic. So the
 * simulator is checked against someone else's reading of the ZPL manual. LPrint runs with its own
 * HOME and TMPDIR (its state file and domain socket), so it touches nothing outside the test.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseErrorStatus, parseHostStatus, ZebraReplyFramer } from '../../src/protocols/zpl/status.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { tempDir } from '../helpers/daemon.ts';
import { eventually } from '../helpers/eventually.ts';
import { startFakeZebra } from '../helpers/fake-zebra.ts';

const run = promisify(execFile);
const cleanups = useCleanups();

/** The C-escaped reply LPrint logs (`HS returned '\002…'`) back to bytes. */
function unC(text: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== '\\') {
      out.push(text.charCodeAt(i));
      continue;
    }
    const next = text[i + 1]!;
    if (/[0-7]/.test(next)) {
      out.push(parseInt(text.slice(i + 1, i + 4), 8));
      i += 3;
    } else {
      out.push({ r: 13, n: 10, t: 9 }[next as 'r' | 'n' | 't'] ?? next.charCodeAt(0));
      i += 1;
    }
  }
  return Buffer.from(out);
}

describe('LPrint against the fake Zebra', () => {
  it('queries ~HQES and ~HS, reads the replies, and prints a label on it', async () => {
    const printer = await startFakeZebra(cleanups);
    const home = tempDir('poctd-lprint-');
    const env = { ...process.env, HOME: home, TMPDIR: home };
    const log = join(home, 'lprint.log');
    const server = spawn('lprint', ['server', '-o', 'log-level=debug', '-o', `log-file=${log}`], { env, stdio: 'ignore' });
    cleanups.push(async () => {
      await run('lprint', ['shutdown'], { env, timeout: 10_000 }).catch(() => undefined);
      if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
    });
    await eventually('lprint server up', () => existsSync(log) && readFileSync(log, 'utf8').length > 0, 15_000);
    await run('lprint', ['add', '-d', 'zfake', '-v', `socket://127.0.0.1:${printer.port}`, '-m', 'zpl_2inch-203dpi-dt'], { env, timeout: 15_000 });
    // Asking LPrint for the printer's status makes it open the device and query it.
    await run('lprint', ['status', '-d', 'zfake'], { env, timeout: 15_000 });
    await eventually('LPrint asked the status', () => printer.printer.controls.includes('HS') && printer.printer.controls.includes('HQES'), 15_000);
    const png = join(home, 'label.png');
    // A small label image made by the daemon's own renderer.
    const { renderZplPng } = await import('../../src/protocols/zpl/render.ts');
    const [image] = await renderZplPng('^XA^CI28^FO20,20^BY2^BCN,60,Y,N,N,A^FDS24000123^FS^XZ', { width_mm: 50.8, height_mm: 25.4, dpmm: 8 });
    const { writeFileSync } = await import('node:fs');
    writeFileSync(png, image!);
    await run('lprint', ['submit', '-d', 'zfake', png], { env, timeout: 15_000 });
    await eventually('a label printed', () => printer.printer.printed.length >= 1, 15_000);
    // LPrint sent the image as a graphic it recalls in a format, as a ZPL client does.
    expect(printer.printer.controls).toContain('DG');
    expect(printer.printer.printed.some((l) => l.zpl.includes('^XGR:LPRINT.GRF'))).toBe(true);
    // What LPrint read back is what our own parsers read: three ~HS strings, one ~HQES block.
    const text = readFileSync(log, 'utf8');
    const hs = /HS returned '(.*)'\./.exec(text)?.[1];
    const hq = /HQES returned '(.*)'\./.exec(text)?.[1];
    expect(hs && hq).toBeTruthy();
    const blocks = (s: string): string[] => new ZebraReplyFramer().push(unC(s)).flatMap((i) => (i.kind === 'block' ? [i.text] : []));
    expect(parseHostStatus(blocks(hs!))).toMatchObject({ paper_out: false, head_open: false });
    expect(parseErrorStatus(blocks(hq!)[0]!).errors.present).toBe(false);
  }, 60_000);
});
