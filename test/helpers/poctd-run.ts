import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Cleanups } from './cleanups.ts';

const repo = fileURLToPath(new URL('../..', import.meta.url));

/** A `poctd run` child process: what it printed on stdout so far, and its exit code once closed. */
export interface PoctdRun {
  child: ChildProcess;
  stdout: () => string;
  exited: Promise<number | null>;
}

/**
 * `poctd run --config FILE` from the source tree as its own process (so it can be sent SIGHUP,
 * SIGTERM or SIGKILL); killed with SIGKILL by the test's cleanups if it is still running.
 */
export function runPoctd(configFile: string, cleanups: Cleanups): PoctdRun {
  const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'run', '--config', configFile], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  const exited = new Promise<number | null>((ok) => child.once('close', (code) => ok(code)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  return { child, stdout: () => stdout, exited };
}
