/** `poctd label`: a print request's label made offline, as PNG (its barcode decoded by zbarimg) and ZPL. */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/daemon.ts';
import { SPECIMEN_REQUEST } from '../helpers/specimen-label.ts';

const run = promisify(execFile);
const repo = resolve(fileURLToPath(new URL('../..', import.meta.url)));

async function poctd(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], { cwd: repo, timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('poctd label', () => {
  const dir = tempDir('poctd-label-cli-');
  const request = { ...SPECIMEN_REQUEST, copies: 2, transaction: 't1' };

  it('writes the PNG (the barcode decodes to the specimen id) and the ZPL', async () => {
    const data = join(dir, 'request.json');
    writeFileSync(data, JSON.stringify(request));
    const png = join(dir, 'out.png');
    const zplFile = join(dir, 'out.zpl');
    const out = await poctd(['label', '--template', 'tube-wrap', '--data', data, '--png', png, '--zpl', zplFile]);
    expect(out).toMatchObject({ code: 0, stderr: '' });
    expect((await run('zbarimg', ['--quiet', '--raw', png])).stdout.trim()).toBe('S24000123');
    const zpl = readFileSync(zplFile, 'utf8');
    expect(zpl).toContain('^CI28');
    expect(zpl).toContain('^PW406\n^LL102');
    expect(zpl).toContain('^PQ2,0,1,Y');
  });

  it('names the field of a bad request and exits 1', async () => {
    const data = join(dir, 'bad.json');
    writeFileSync(data, JSON.stringify({ ...request, patient: { ...request.patient, dob: '29.08.1960' }, copies: 3 }));
    const out = await poctd(['label', '--data', data, '--zpl', '-']);
    expect(out.code).toBe(1);
    expect(out.stderr).toBe('poctd label: patient.dob: not a date (YYYY-MM-DD)\n');
    expect(out.stdout).toBe('');
  });
});
