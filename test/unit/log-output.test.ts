import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import { createDaemonLogger, type PrettyFactory } from '../../src/logger.ts';
import { LogCapture, tempDir } from '../helpers/daemon.ts';
import { eventually } from '../helpers/eventually.ts';

/** Text sink for pino-pretty's output (not JSON, so LogCapture's parser is not used). */
class TextCapture extends LogCapture {
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

const SECRET_FIELDS = { patient: { id: 'MRN-77' }, specimen: { id: 'S-78' }, password: 'hunter2-pw', nested: { deep: [{ patient_id: 'MRN-79' }] } };
const SECRETS = ['MRN-77', 'S-78', 'hunter2-pw', 'MRN-79'];

function problemsOf(yaml: string): string[] {
  try {
    parseConfig(yaml);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems.map((p) => `${p.path}: ${p.message}`);
    throw error;
  }
  return [];
}

describe('log outputs', () => {
  it('pretty: pino-pretty lines on stdout, with the same redaction as JSON', async () => {
    const out = new TextCapture();
    const { log, notices } = await createDaemonLogger({ level: 'info', format: 'pretty' }, { stdout: out });
    expect(notices).toEqual([]);
    log.info({ device: 'bench1', ...SECRET_FIELDS }, 'records stored');
    await eventually('the pretty line', () => out.text.includes('records stored'));
    expect(out.text).toMatch(/INFO.*records stored/);
    expect(() => JSON.parse(out.text.split('\n')[0]!)).toThrow();
    expect(out.text).toContain('[redacted]');
    for (const s of SECRETS) expect(out.text).not.toContain(s);
  });

  it('pretty without pino-pretty installed: JSON lines and a notice that says what to install', async () => {
    const out = new LogCapture();
    const missing = async (): Promise<PrettyFactory | undefined> => undefined;
    const { log, notices } = await createDaemonLogger({ level: 'info', format: 'pretty' }, { stdout: out, loadPretty: missing });
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatch(/pino-pretty.*not installed.*npm install pino-pretty.*JSON/);
    log.info({ ...SECRET_FIELDS }, 'still logging');
    expect(out.lines[0]).toMatchObject({ msg: 'still logging', patient: '[redacted]', password: '[redacted]' });
    for (const s of SECRETS) expect(out.text).not.toContain(s);
  });

  it('file: the same redacted JSON lines on stdout and in the file, rotated by size, keeping count old files', async () => {
    const dir = tempDir('poctd-log-');
    const out = new LogCapture();
    const logging = await createDaemonLogger({ level: 'info', file: { path: join(dir, 'logs', 'poctd.log'), size: '1k', count: 2 } }, { stdout: out });
    // The log directory is made when pino-roll's stream opens, which is asynchronous: none yet is no file yet.
    const files = (): string[] => (existsSync(join(dir, 'logs')) ? readdirSync(join(dir, 'logs')).filter((f) => f.endsWith('.log')) : []);
    // pino-roll checks the size as each write completes: lines go out until it has rotated past
    // the count kept (a positive sign, bounded), then more so the pruning runs again.
    let written = 0;
    const write = async (): Promise<void> => {
      logging.log.info({ i: written, ...SECRET_FIELDS, pad: 'x'.repeat(100) }, `line ${written}`);
      written++;
      await new Promise((r) => setTimeout(r, 2));
    };
    while (files().length < 3 && written < 2000) await write();
    for (let i = 0; i < 30; i++) await write();
    await logging.close();
    expect(out.lines).toHaveLength(written);
    const names = files();
    // Two rotated files beside the active one, never more.
    expect(names.length).toBe(3);
    const lines = names.flatMap((f) => readFileSync(join(dir, 'logs', f), 'utf8').split('\n').filter(Boolean));
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) {
      const entry = JSON.parse(line) as Record<string, unknown>;
      expect(entry).toMatchObject({ patient: '[redacted]', password: '[redacted]', specimen: { id: '[redacted]' } });
    }
    // The newest lines survive the pruning.
    expect(lines.some((l) => l.includes(`"line ${written - 1}"`))).toBe(true);
    for (const s of SECRETS) expect(lines.join('\n')).not.toContain(s);
  });

  it('config: log.file needs a path and size and/or frequency; a size with a bad unit or a bad format is refused; a relative path is the config file\'s', () => {
    expect(problemsOf('log: { file: { path: /tmp/x.log } }').join('\n')).toMatch(/log\.file.*size and\/or frequency/);
    expect(problemsOf('log: { file: { path: /tmp/x.log, size: 10x } }').join('\n')).toMatch(/log\.file\.size.*number of MB.*k, m or g/);
    expect(problemsOf('log: { file: { size: 10m } }').join('\n')).toMatch(/log\.file.*path/);
    expect(problemsOf('log: { format: fancy }').join('\n')).toMatch(/log\.format/);
    expect(problemsOf('log: { file: { path: /tmp/x.log, frequency: weekly } }').join('\n')).toMatch(/log\.file\.frequency/);
    expect(problemsOf('log: { format: pretty, file: { path: /tmp/x.log, size: 10m, frequency: daily, count: 3 } }')).toEqual([]);
    const config = parseConfig('log: { file: { path: logs/poctd.log, frequency: daily } }', { baseDir: '/etc/poctd' });
    expect(config.log.file?.path).toBe('/etc/poctd/logs/poctd.log');
  });
});
