import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import { tempDir } from '../helpers/daemon.ts';

/**
 * The package as it ships: `npm run build` compiles to dist/, and `node bin/poctd.js` runs that
 * with plain Node, no TypeScript loader. Builds first when dist/ is missing or older than the
 * source, so the result does not depend on whether `.ci/run` built it already.
 */
const repo = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const COMPILED_ENTRY = join(repo, 'dist', 'cli', 'main.js');
const PROBE = join(repo, 'test', 'helpers', 'loader-probe.mjs');
const FIXTURE = 'test/fixtures/onetouch-ultra2/simulator-session-mmol-control';

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runToEnd(command: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Finished> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(command, args, { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolveRun({ code, stdout, stderr });
    });
  });
}

function newestMtime(path: string): number {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return Math.max(stat.mtimeMs, ...readdirSync(path).map((name) => newestMtime(join(path, name))));
}

function buildIsCurrent(): boolean {
  if (!existsSync(COMPILED_ENTRY)) return false;
  const sources = ['src', 'drivers', 'cli', 'tsconfig.json', 'tsconfig.build.json'].map((p) => newestMtime(join(repo, p)));
  return statSync(COMPILED_ENTRY).mtimeMs >= Math.max(...sources);
}

/** The environment of a child that must get no loader from its parent (vitest's or a shell's). */
function plainEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', ...extra };
  delete env.NODE_OPTIONS;
  return env;
}

interface ProbeReport {
  execArgv: string[];
  nodeOptions: string;
  registered: string[];
}

/** `node bin/poctd.js args` under plain Node, with how its modules were loaded. */
async function compiledPoctd(args: string[]): Promise<Finished & { loading: ProbeReport }> {
  const report = join(tempDir(), 'loader.json');
  const finished = await runToEnd(
    process.execPath,
    ['--import', PROBE, 'bin/poctd.js', ...args],
    plainEnv({ LOADER_PROBE_OUT: report }),
    30_000,
  );
  return { ...finished, loading: JSON.parse(readFileSync(report, 'utf8')) as ProbeReport };
}

function expectNoTypeScriptLoader(loading: ProbeReport): void {
  // The probe is the only preload; tsx would show as an --import/--loader or a register() call.
  expect(loading.execArgv).toEqual(['--import', PROBE]);
  expect(loading.nodeOptions).toBe('');
  expect(loading.registered).toEqual([]);
}

beforeAll(async () => {
  if (buildIsCurrent()) return;
  const build = await runToEnd('npm', ['run', 'build'], plainEnv(), 170_000);
  expect(build.code, `npm run build failed:\n${build.stdout}${build.stderr}`).toBe(0);
  expect(buildIsCurrent()).toBe(true);
}, 180_000);

describe('the compiled package under plain node', () => {
  it('--help prints the usage', async () => {
    const r = await compiledPoctd(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^usage: poctd <command>/);
    expect(r.stdout).toMatch(/^ {2}replay \[options\] \[file\]/m);
    expectNoTypeScriptLoader(r.loading);
  });

  it('drivers lists every registered driver', async () => {
    const r = await compiledPoctd(['drivers']);
    expect(r.code).toBe(0);
    const ids = r.stdout
      .trim()
      .split('\n')
      .map((line) => line.split('\t')[0]);
    expect(ids).toEqual(drivers.map((d) => d.id));
    expectNoTypeScriptLoader(r.loading);
  });

  it('replay of a simulator session prints the records the source prints, valid against their schema', async () => {
    const { timezone, device_id: deviceId } = JSON.parse(readFileSync(join(repo, FIXTURE, 'case.json'), 'utf8')) as {
      timezone: string;
      device_id: string;
    };
    const args = ['replay', '--driver', 'onetouch-ultra2', '--timezone', timezone, '--device-id', deviceId, `${FIXTURE}/capture.txt`];
    const compiled = await compiledPoctd(args);
    expect(compiled.stderr).toBe('');
    expect(compiled.code).toBe(0);
    expectNoTypeScriptLoader(compiled.loading);

    const fromSource = await runToEnd(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], plainEnv(), 30_000);
    expect(fromSource.code).toBe(0);
    const records = (text: string): Record<string, unknown>[] =>
      text
        .trim()
        .split('\n')
        .map((line) => {
          const { received_at: _receivedAt, ...rest } = JSON.parse(line) as Record<string, unknown>;
          return rest;
        });
    const compiledRecords = records(compiled.stdout);
    const expectedCount = readFileSync(join(repo, FIXTURE, 'expected.jsonl'), 'utf8').trim().split('\n').length;
    expect(compiledRecords).toHaveLength(expectedCount);
    expect(compiledRecords).toEqual(records(fromSource.stdout));
    // The session holds a control-solution run: it must come out as such, not as a patient result.
    expect(compiledRecords.map((r) => r.category)).toContain('control');
    for (const line of compiled.stdout.trim().split('\n')) {
      const record = JSON.parse(line) as { schema: string };
      expect(schemaProblems(record.schema, record)).toEqual([]);
    }
  });
});
