/**
 * The DICOM phase of `npm run bench` (also `tsx scripts/bench-dicom.ts` alone): DCMTK storescu
 * sends the same files, on one association each run, to poctd's C-STORE SCP (its own process, the
 * real store: every instance fsynced and indexed before Success) and to DCMTK's storescp (its own
 * process, `-xf /etc/dcmtk/storescp.cfg AllDICOM +B`, writing files without a sync), both with
 * TCP_NODELAY=1 in their environment (storescp stalls ~43 ms per file on loopback without it).
 * Prints files/s, MB/s, the ratio to storescp and each receiver's peak RSS, for
 * BENCH_DICOM_FILES (500) small US images (256 x 256) and one cine of BENCH_DICOM_CINE_FRAMES
 * (400) 640 x 480 frames (123 MB). Target: >= 0.8x storescp on both.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { DEFAULT_STUDY, makeStudy } from '../drivers/imaging/dicom-ultrasound/simulator.ts';
import { freePort } from '../test/helpers/mosquitto.ts';

const run = promisify(execFile);
const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const FILES = Number(process.env.BENCH_DICOM_FILES ?? 500);
const CINE_FRAMES = Number(process.env.BENCH_DICOM_CINE_FRAMES ?? 400);
const NODELAY_ENV = { ...process.env, TCP_NODELAY: '1' };
/** Where poctd's store and storescp's output go (BENCH_DB_DIR=/dev/shm: without the disk's syncs). */
const OUT_DIR = process.env.BENCH_DB_DIR ?? tmpdir();

function peakRssMb(pid: number): number {
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))![1]);
  return kb / 1024;
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listening on ${port}`);
}

interface Receiver {
  name: string;
  child: ChildProcess;
  port: number;
  stop(): void;
}

async function poctdScp(dir: string): Promise<Receiver> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/dicom-scp-process.ts', dir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], env: NODELAY_ENV });
  const lines = createInterface({ input: child.stdout! });
  const port = await new Promise<number>((r) => lines.once('line', (l) => r((JSON.parse(l) as { port: number }).port)));
  return { name: 'poctd SCP', child, port, stop: () => child.kill('SIGTERM') };
}

async function storescp(dir: string): Promise<Receiver> {
  const port = await freePort();
  const child = spawn('storescp', ['-xf', '/etc/dcmtk/storescp.cfg', 'AllDICOM', '+B', '-od', dir, '-aet', 'POCTD', String(port)], { stdio: 'ignore', env: NODELAY_ENV });
  await waitForPort(port);
  return { name: 'DCMTK storescp', child, port, stop: () => child.kill('SIGTERM') };
}

async function send(port: number, files: string[]): Promise<number> {
  const started = process.hrtime.bigint();
  await run('storescu', ['-aet', 'US_BENCH', '-aec', 'POCTD', '-xe', '127.0.0.1', String(port), ...files], { env: NODELAY_ENV, maxBuffer: 1 << 24 });
  return Number(process.hrtime.bigint() - started) / 1e9;
}

export async function dicomBench(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'poctd-bench-dicom-'));
  try {
    const small: string[] = [];
    let smallBytes = 0;
    mkdirSync(join(work, 'in'));
    for (let i = 1; i <= FILES; i++) {
      const [image] = makeStudy({ ...DEFAULT_STUDY, studyUid: `${DEFAULT_STUDY.studyUid}.7.${i}`, rows: 256, columns: 256 });
      const path = join(work, 'in', `us-${i}.dcm`);
      writeFileSync(path, image!.bytes);
      smallBytes += image!.bytes.length;
      small.push(path);
    }
    const cine = makeStudy({ ...DEFAULT_STUDY, studyUid: `${DEFAULT_STUDY.studyUid}.6`, rows: 480, columns: 640, cineFrames: CINE_FRAMES })[1]!;
    const cinePath = join(work, 'in', 'cine.dcm');
    writeFileSync(cinePath, cine.bytes);
    const smallMb = smallBytes / 1e6;
    const cineMb = cine.bytes.length / 1e6;
    console.log(
      `DICOM: ${FILES} US images (${((smallMb / FILES) * 1000).toFixed(0)} KB each) and a ${CINE_FRAMES}-frame cine (${cineMb.toFixed(0)} MB), ` +
        `storescu -> receiver on loopback, received files under ${OUT_DIR}`,
    );
    const rows: string[] = [];
    const results = new Map<string, { smallS: number; cineS: number; rss: number }>();
    for (const make of [storescp, poctdScp]) {
      const out = mkdtempSync(join(OUT_DIR, 'poctd-bench-dicom-out-'));
      const receiver = await make(out);
      try {
        await send(receiver.port, small.slice(0, 20)); // warm-up (JIT, first blob shard directories)
        const smallS = await send(receiver.port, small);
        const cineS = await send(receiver.port, [cinePath]);
        const rss = peakRssMb(receiver.child.pid!);
        results.set(receiver.name, { smallS, cineS, rss });
        rows.push(
          `${receiver.name.padEnd(16)} ${(FILES / smallS).toFixed(0).padStart(8)} files/s ${(smallMb / smallS).toFixed(1).padStart(7)} MB/s | cine ${cineS.toFixed(2).padStart(6)} s ${(cineMb / cineS).toFixed(0).padStart(5)} MB/s | peak RSS ${rss.toFixed(0)} MB`,
        );
      } finally {
        receiver.stop();
      }
      // The received files are not kept: the next receiver starts on the same free disk.
      rmSync(out, { recursive: true, force: true });
    }
    for (const r of rows) console.log(r);
    const base = results.get('DCMTK storescp')!;
    const ours = results.get('poctd SCP')!;
    const smallRatio = base.smallS / ours.smallS;
    const cineRatio = base.cineS / ours.cineS;
    const verdict = (x: number): string => (x >= 0.8 ? 'met' : 'NOT met');
    console.log(`DICOM ratio to storescp: small images ${smallRatio.toFixed(2)}x (target >= 0.8: ${verdict(smallRatio)}), cine ${cineRatio.toFixed(2)}x (${verdict(cineRatio)})\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  void dicomBench().then(() => process.exit(0));
}
