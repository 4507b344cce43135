import { execFileSync } from 'node:child_process';

/** Fails (never skips) when a real component the tests need is missing, naming the fix. */
export function requireTool(command: string, debianPackage: string): void {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
  } catch {
    throw new Error(`${command} not found: run  apt-get install -y ${debianPackage}`);
  }
}
