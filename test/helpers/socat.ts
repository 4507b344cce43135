/**
 * Real serial links for tests: `socat` joins two pseudo-terminals, and each end is opened with the
 * real `serialport` library as if it were a cable. Tests fail — never skip — when socat is missing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { requireTool } from './tools.ts';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface PtyPair {
  /** Symlink to one pty end. */
  a: string;
  /** Symlink to the other end. */
  b: string;
  /** The /dev/pts names socat reported (for diagnostics). */
  devices: string[];
  /** Kills socat, waits for it to exit and removes the links (and the temp dir it created). */
  stop(): Promise<void>;
}

export interface PtyPairOptions {
  /** Link paths to use; reuse a stopped pair's paths to make "the same port" come back. */
  a?: string;
  b?: string;
  timeoutMs?: number;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last line of defence against stray socat processes when a test run dies half-way.
  process.once('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * Starts `socat -d -d pty,raw,echo=0,link=A pty,raw,echo=0,link=B` and resolves once both links
 * exist. Without explicit paths the links are made in a fresh temp directory.
 */
export async function startPtyPair(options: PtyPairOptions = {}): Promise<PtyPair> {
  const socat = requireTool('socat');
  let ownDir: string | undefined;
  if (!options.a || !options.b) ownDir = mkdtempSync(path.join(os.tmpdir(), 'poctd-pty-'));
  const a = options.a ?? path.join(ownDir!, 'a');
  const b = options.b ?? path.join(ownDir!, 'b');
  const timeoutMs = options.timeoutMs ?? 5000;

  installExitHook();
  const child = spawn(socat, ['-d', '-d', `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  running.add(child);
  let stderr = '';
  const devices: string[] = [];
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => {
    stderr += text;
    for (const m of text.matchAll(/PTY is (\/dev\/\S+)/g)) if (m[1]) devices.push(m[1]);
  });
  let spawnError: Error | undefined;
  child.once('error', (err) => {
    spawnError = err;
  });
  child.once('exit', () => running.delete(child));

  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await waitForExit(child, 2000);
    }
    running.delete(child);
    // socat removes its links on SIGTERM; make sure of it so the next pair can reuse the paths.
    rmSync(a, { force: true });
    rmSync(b, { force: true });
    if (ownDir) await rm(ownDir, { recursive: true, force: true });
  };

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (existsSync(a) && existsSync(b)) break;
    const exited = child.exitCode !== null || child.signalCode !== null;
    if (spawnError || exited || Date.now() > deadline) {
      await stop();
      const why = spawnError ? spawnError.message : exited ? `socat exited (${child.exitCode ?? child.signalCode})` : `timed out after ${timeoutMs} ms`;
      throw new Error(`socat pty pair did not come up: ${why}\n${stderr.trim()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return { a, b, devices, stop };
}

/** How many socat processes this helper started that are still running (tests assert 0). */
export function runningPtyPairs(): number {
  return running.size;
}
