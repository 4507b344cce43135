import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/daemon.ts';
import { eventually } from '../helpers/eventually.ts';
import { Mosquitto } from '../helpers/mosquitto.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { runPoctd } from '../helpers/poctd-run.ts';

const cleanups = useCleanups();

describe('poctd run with log.format: pretty and log.file', () => {
  it('prints pino-pretty lines on stdout and keeps JSON lines in the rotated file, up to the last line of a clean stop', async () => {
    const broker = await Mosquitto.start();
    cleanups.push(() => broker.stop());
    const dir = tempDir('poctd-logrun-');
    const file = join(dir, 'poctd.yaml');
    writeFileSync(
      file,
      [
        `mqtt: { url: "${broker.url}", client_id: logrun-${process.pid} }`,
        'store: { path: ./poctd.db }',
        'http: { port: 0 }',
        'log: { level: info, format: pretty, file: { path: logs/poctd.log, size: 10m, count: 3 } }',
        'devices:',
        '  - { id: bench1, driver: onetouch-ultra2, transport: { type: simulated, simulator: { serial: GMF600DCY } } }',
      ].join('\n') + '\n',
    );
    const { child, stdout: stdoutSoFar, exited } = runPoctd(file, cleanups);
    const logFile = (): string | undefined => {
      const logs = join(dir, 'logs');
      const name = existsSync(logs) ? readdirSync(logs).find((f) => f.endsWith('.log')) : undefined;
      return name ? join(logs, name) : undefined;
    };
    // The log file sits beside the config file (a relative path is the config's).
    await eventually('records stored, in the file', () => {
      const f = logFile();
      return f !== undefined && readFileSync(f, 'utf8').includes('"records stored"');
    }, 30_000);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const stdout = stdoutSoFar();

    const lines = readFileSync(logFile()!, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l.msg)).toContain('store open');
    expect(lines.some((l) => String(l.msg).startsWith('poctd running'))).toBe(true);
    expect(lines.at(-1)?.msg).toBe('stopped');
    // stdout: the same events, pretty (no JSON object lines), with no colour codes off a terminal.
    expect(stdout).toMatch(/INFO: poctd running/);
    expect(stdout).toMatch(/INFO: stopped/);
    expect(stdout.split('\n').some((l) => l.startsWith('{'))).toBe(false);
    expect(stdout).not.toContain('\u001b[');
  });
});
