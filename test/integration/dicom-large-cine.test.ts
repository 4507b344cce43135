/**
 * A several-hundred-MB US multi-frame cine sent by DCMTK storescu to the SCP running in a process of
 * its own: that process's peak resident memory (VmHWM) stays under 150 MB, and the stored file is
 * the sent one byte for byte (its data set's sha256), so the object was streamed, never held.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/shared-fixtures.ts';
import { makeUsFile } from '../helpers/dicom-files.ts';
import { requireTool } from '../helpers/tools.ts';

const run = promisify(execFile);
/** 640 x 480 RGB x 400 frames: 368 MB of pixel data. */
const FRAMES = 400;
const RSS_LIMIT_MB = 150;

let dir: string;
let child: ChildProcess;
let lines: AsyncIterableIterator<string>;

async function sha256OfRange(path: string, start: number): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { start })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Where the data set starts: after the preamble, DICM and the meta group (0002,0000) measures. */
function metaEnd(path: string): number {
  const head = Buffer.alloc(144);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, head, 0, 144, 0);
  } finally {
    closeSync(fd);
  }
  return 144 + head.readUInt32LE(140);
}

function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]);
  return kb / 1024;
}

describe('DICOM SCP memory with a large cine', () => {
  beforeAll(async () => {
    requireTool('storescu', 'dcmtk');
    dir = mkdtempSync(join(tmpdir(), 'poctd-dicom-cine-'));
    child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/dicom-scp-process.ts', join(dir, 'store')], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  }, 120_000);

  afterAll(() => {
    child?.kill('SIGTERM');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`stores a ${FRAMES}-frame 640x480 RGB cine byte-exact with the SCP's peak RSS under ${RSS_LIMIT_MB} MB`, async () => {
    const cine = makeUsFile(dir, { name: 'cine-big', sopInstanceUid: '1.2.826.0.1.3680043.10.999.9.2.1', encoding: 'explicit', frames: FRAMES, rows: 480, columns: 640, samplesPerPixel: 3 });
    rmSync(join(dir, 'cine-big.raw'));
    const { port } = JSON.parse((await lines.next()).value as string) as { port: number };
    const before = peakRssMb(child.pid!);
    await run('storescu', ['-aet', 'US_ROOM2', '-aec', 'POCTD', '-xe', '127.0.0.1', String(port), cine], { maxBuffer: 1 << 20 });
    const stored = JSON.parse((await lines.next()).value as string) as { stored: string; size: number; sha256: string };
    const peak = peakRssMb(child.pid!);
    console.log(`large cine: SCP peak RSS ${peak.toFixed(1)} MB (${before.toFixed(1)} MB before the transfer)`);
    expect(stored.stored).toBe('1.2.826.0.1.3680043.10.999.9.2.1');
    expect(stored.size).toBeGreaterThan(FRAMES * 640 * 480 * 3);
    expect(peak).toBeLessThan(RSS_LIMIT_MB);
    const storedPath = join(dir, 'store', 'blobs', stored.sha256.slice(0, 2), stored.sha256);
    expect(await sha256OfRange(storedPath, metaEnd(storedPath))).toBe(await sha256OfRange(cine, metaEnd(cine)));
  }, 180_000);
});
