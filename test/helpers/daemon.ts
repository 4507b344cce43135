import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { drivers } from '../../drivers/index.ts';
import { parseConfig } from '../../src/config/load.ts';
import type { PoctdConfig } from '../../src/config/types.ts';
import { Controller, type ControllerOptions } from '../../src/controller.ts';
import { createLogger } from '../../src/logger.ts';

/** Three readings as a meter holds them, newest first on the wire; one is a control run. */
export const ULTRA2_MEMORY = [
  { time: '2026-11-20T16:39:46', value: 176, meal: 'N', comment: 2 },
  { time: '2026-11-20T16:42:11', value: 105, meal: 'B', comment: 2 },
  { time: '2026-11-20T16:45:24', value: 81, control: true },
];

export function tempDir(prefix = 'poctd-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * A config from YAML text, with the store in a fresh temporary directory and the dashboard off
 * unless the YAML has an `http` section. `${NAME}` references
 * read `env` (empty by default: the test's own environment never leaks in).
 */
export function testConfig(yaml: string, env: NodeJS.ProcessEnv = {}): PoctdConfig {
  const dir = tempDir();
  // No dashboard on its fixed default port unless the test asks for one (tests never bind fixed ports).
  const http = /^http:/m.test(yaml) ? '' : 'http: { port: 0 }\n';
  return parseConfig(`store: { path: ${join(dir, 'poctd.db')} }\n${http}${yaml}`, {
    knownDrivers: drivers.map((d) => d.id),
    env,
  });
}

/** Log lines the daemon wrote, for assertions on what it says (and never says). */
export class LogCapture extends Writable {
  lines: Array<Record<string, unknown>> = [];
  text = '';
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    this.text += chunk.toString();
    for (const line of chunk.toString().split('\n')) {
      if (line.trim()) this.lines.push(JSON.parse(line) as Record<string, unknown>);
    }
    done();
  }
}

export async function startDaemon(
  config: PoctdConfig,
  extra: Partial<Pick<ControllerOptions, 'transportExtras' | 'portLister' | 'drivers' | 'onFatal'>> = {},
): Promise<{ controller: Controller; logs: LogCapture }> {
  const logs = new LogCapture();
  const controller = new Controller(config, { log: createLogger('debug', logs), drivers, ...extra });
  await controller.start();
  return { controller, logs };
}
