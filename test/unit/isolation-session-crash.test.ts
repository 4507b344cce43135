/**
 * A session that throws at runtime, where nothing catches it (issue 16): in a handler of its
 * transport's 'data', in a timer of its own, in a promise of its own nobody awaits. That device
 * gets status `error` with the reason and a `device_error` event, its session is stopped and a new
 * one started after a backoff, and the other device stores its results all along. An error that
 * belongs to no session still ends the process with a non-zero code, as Node would.
 */
import { execFile } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import type { DriverDefinition } from '../../src/driver-sdk/index.ts';
import { ListenerTransport } from '../../src/transports/listener.ts';
import { sendAstmMessage } from '../helpers/astm-tcp-sender.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { deviceManagerRig } from '../helpers/device-manager-rig.ts';
import { eventually } from '../helpers/eventually.ts';
import { freePort } from '../helpers/mosquitto.ts';

const cleanups = useCleanups();
const astm = drivers.find((d) => d.id === 'astm')!;

const message = (sample: string): string =>
  `H|\\^&|||C111^Roche^c111^4.2.2.1730^1^13147\rP|1\rO|1||${sample}\rR|1|^^^550|95.2|U/L||N||F||||20230727162028\r`;

const send = (port: number, text: string): Promise<void> => sendAstmMessage(port, text, cleanups);

type CrashKind = 'data' | 'timer' | 'promise';

/** The ASTM driver with a bug planted in the session of device `buggy`: the first bytes it is given make it crash, once. */
function crashingDriver(kind: CrashKind): DriverDefinition & { sessions: number } {
  let armed = true;
  const bug = (): void => {
    if (!armed) return;
    armed = false;
    if (kind === 'data') throw new Error('planted bug in a data handler');
    if (kind === 'timer') setTimeout(() => {
      throw new Error('planted bug in a timer');
    }, 1);
    if (kind === 'promise') void Promise.reject(new Error('planted bug in a promise'));
  };
  const driver = {
    ...astm,
    sessions: 0,
    createSession(host: Parameters<DriverDefinition['createSession']>[0]) {
      if (host.device.id !== 'buggy') return astm.createSession(host);
      driver.sessions++;
      // The ASTM session reads each caller of its port as a connection of its own: the bug sits there.
      const t = host.transport as ListenerTransport;
      expect(t).toBeInstanceOf(ListenerTransport);
      if (driver.sessions === 1) {
        const serve = t.serve.bind(t);
        t.serve = (server) =>
          serve((conn) => {
            conn.on('data', bug);
            server(conn);
          });
      }
      return astm.createSession(host);
    },
  };
  return driver;
}

// The daemon is the process's only handler of uncaught errors, as under `poctd run`: the test
// runner's own handlers (which would count the planted bug as a failure of the test) stand aside.
let saved: { exception: NodeJS.UncaughtExceptionListener[]; rejection: NodeJS.UnhandledRejectionListener[] };
beforeEach(() => {
  saved = { exception: process.listeners('uncaughtException'), rejection: process.listeners('unhandledRejection') };
  process.removeAllListeners('uncaughtException');
  process.removeAllListeners('unhandledRejection');
});
afterEach(() => {
  process.removeAllListeners('uncaughtException');
  process.removeAllListeners('unhandledRejection');
  saved.exception.forEach((l) => process.on('uncaughtException', l));
  saved.rejection.forEach((l) => process.on('unhandledRejection', l));
});

describe('a session that crashes at runtime stops only its own device', () => {
  it.each<CrashKind>(['data', 'timer', 'promise'])('a throw in its %s: status error, an event, a restart; the other device stores', async (kind) => {
    const [badPort, goodPort] = [await freePort(), await freePort()];
    const crashing = crashingDriver(kind);
    const r = await deviceManagerRig({
      drivers: [crashing, ...drivers.filter((d) => d.id !== 'astm')],
      cleanups,
      devices: [
        { id: 'buggy', driver: 'astm', transport: { type: 'tcp-server', port: badPort } },
        { id: 'good', driver: 'astm', transport: { type: 'tcp-server', port: goodPort } },
      ],
    });
    await send(badPort, message('CRASH'));
    await eventually('the crash reported', () => r.events.some((e) => e.type === 'device_error' && e.device === 'buggy'));
    const event = r.events.find((e) => e.type === 'device_error' && e.device === 'buggy')!;
    expect(event.message).toMatch(/session crashed: planted bug/);
    expect(event.data).toMatchObject({ reason: 'session-crashed', crashes: 1, restart_in_ms: 1000 });
    await eventually('status error', () => r.states('buggy').some((s) => s.status === 'error' && /planted bug/.test(s.status_detail ?? '')));
    // The other device carries on.
    await send(goodPort, message('GOOD1'));
    const samples = (): string[] => r.store.recordsSince(0, 100).map((rec) => `${rec.device.id}:${JSON.stringify(rec)}`);
    const stored = (device: string, sample: string): boolean => samples().some((s) => s.startsWith(`${device}:`) && s.includes(sample));
    await eventually('the good device stores', () => stored('good', 'GOOD1'));
    // A new session, after the backoff, takes the crashed device's messages again.
    await eventually('restarted', () => crashing.sessions === 2 && r.states('buggy').at(-1)?.status === 'idle', 10_000);
    await send(badPort, message('AFTER'));
    await eventually('the restarted device stores', () => stored('buggy', 'AFTER'));
  });
});

describe('an error of the daemon as a whole still ends the process', () => {
  const script = (body: string): string => `
    import { installSessionFaultHandlers, runInSession } from './src/extensions/session-guard.ts';
    installSessionFaultHandlers((context, error) => console.log('fault', context.deviceId, error.message));
    ${body}
  `;
  const runScript = (body: string): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script(body)], { cwd: process.cwd(), timeout: 20_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? ((error as { code?: number }).code ?? -1) : 0, stdout, stderr }),
      );
    });

  it('outside any session: exit code 1 with the stack on stderr', async () => {
    const out = await runScript(`setTimeout(() => { throw new Error('daemon bug'); }, 1);`);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/uncaught exception: Error: daemon bug/);
    const rejected = await runScript(`void Promise.reject(new Error('daemon rejection'));`);
    expect(rejected.code).toBe(1);
    expect(rejected.stderr).toMatch(/unhandled rejection: Error: daemon rejection/);
  });

  it('inside a session: handed to the device manager, and the process runs on', async () => {
    const out = await runScript(`
      runInSession({ deviceId: 'd1', generation: 1 }, () => setTimeout(() => { throw new Error('session bug'); }, 1));
      setTimeout(() => console.log('alive'), 50);
    `);
    expect(out.code).toBe(0);
    expect(out.stdout).toBe('fault d1 session bug\nalive\n');
  });
});
