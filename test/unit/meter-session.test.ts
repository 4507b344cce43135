import { describe, expect, it } from 'vitest';
import {
  type Attempt,
  type FinishedDownload,
  MeterSession,
  NoAnswerError,
  ProtocolError,
  type RetryPolicy,
  retryPolicy,
} from '../../src/driver-sdk/meter-session.ts';
import { memoryPair, type MemoryTransport } from '../../src/transports/memory.ts';
import { pushStrict, useCleanups } from '../helpers/cleanups.ts';
import { FakeHost } from '../helpers/fake-host.ts';

/** A session whose download and tries are given by the test. */
class ProbeSession extends MeterSession<Buffer> {
  greet: () => Promise<string> = async () => 'hello';
  run: (greeting: string) => Promise<FinishedDownload<string>> = async (greeting) => ({ result: greeting, message: 'done', data: {} });

  protected frame(chunk: Buffer): Buffer[] {
    return [Buffer.from(chunk)];
  }

  protected resetFramer(): void {}

  protected download(trigger: string): Promise<string> {
    return this.downloadConversation(trigger, () => this.greet(), (greeting) => this.run(greeting));
  }

  tryWith<T, F>(policy: RetryPolicy, once: (attempt: number) => Promise<Attempt<T, F>>, giveUp: (failures: F[]) => Error): Promise<T> {
    return this.retry(policy, once, giveUp);
  }

  /** What the device sent that is still waiting to be read. */
  async waiting(): Promise<Buffer | null> {
    return this.inbox.next(0);
  }
}

interface Rig {
  host: FakeHost;
  session: ProbeSession;
  deviceEnd: MemoryTransport;
}

const cleanups = useCleanups();

/** A started session on an open in-memory link, its connect download already over. */
async function rig(): Promise<Rig> {
  const { host: hostEnd, device: deviceEnd } = memoryPair('probe');
  await deviceEnd.open();
  await hostEnd.open();
  const host = new FakeHost({ id: 'probe', driver: 'probe', transport: { type: 'simulated' }, options: {} }, hostEnd);
  const session = new ProbeSession(host, 'probe');
  pushStrict(cleanups, () => session.stop());
  await session.start();
  await host.until(() => host.types().includes('download_finished'));
  host.events.length = 0;
  return { host, session, deviceEnd };
}

const POLICY: RetryPolicy = { retries: 2, quietMs: 20, giveUpMs: 500 };

describe('MeterSession.retry', () => {
  it('the policy takes the retries from the options and waits for quiet within the reply timeout', () => {
    expect(retryPolicy({ retries: 3, reply_timeout_ms: 1000, clock_skew_limit_s: 900 }, 250)).toEqual({ retries: 3, quietMs: 250, giveUpMs: 4000 });
    expect(retryPolicy({ retries: 0, reply_timeout_ms: 100, clock_skew_limit_s: 900 }, 250)).toEqual({ retries: 0, quietMs: 100, giveUpMs: 400 });
  });

  it('tries again until one succeeds, and drops what the device sent after a failed try', async () => {
    const r = await rig();
    const attempts: number[] = [];
    const leftovers: (Buffer | null)[] = [];
    const value = await r.session.tryWith(
      POLICY,
      async (attempt) => {
        attempts.push(attempt);
        leftovers.push(await r.session.waiting());
        if (attempt < 2) {
          await r.deviceEnd.write(Buffer.from('late reply'));
          await new Promise((done) => setTimeout(done, 5));
          return { ok: false, failure: `fault ${attempt}` };
        }
        return { ok: true, value: 'answer' };
      },
      () => new Error('should not give up'),
    );
    expect(value).toBe('answer');
    expect(attempts).toEqual([0, 1, 2]);
    expect(leftovers).toEqual([null, null, null]);
  });

  it('gives up after 1 + retries tries with every failure, in order', async () => {
    const r = await rig();
    let tries = 0;
    const failure = r.session.tryWith(
      POLICY,
      async (attempt): Promise<Attempt<string, string>> => {
        tries++;
        return { ok: false, failure: `fault ${attempt}` };
      },
      (failures) => new ProtocolError('gave-up', failures.join(', ')),
    );
    await expect(failure).rejects.toThrow('fault 0, fault 1, fault 2');
    expect(tries).toBe(3);
  });

  it('an exception from a try ends the tries at once', async () => {
    const r = await rig();
    let tries = 0;
    const failure = r.session.tryWith(
      POLICY,
      async (): Promise<Attempt<string, string>> => {
        tries++;
        throw new ProtocolError('refused', 'the device refused');
      },
      () => new Error('should not give up'),
    );
    await expect(failure).rejects.toThrow('the device refused');
    expect(tries).toBe(1);
  });
});

describe('MeterSession.downloadConversation', () => {
  it('a download: downloading, download_started, the run, then ok with download_finished and its data', async () => {
    const r = await rig();
    const statuses: unknown[] = [];
    r.session.run = async (greeting) => {
      statuses.push(r.host.state.status);
      r.host.event('download_progress', 'midway', { greeting });
      return { result: `${greeting}!`, message: 'downloaded 3 records', data: { records: 3, inserted: 2, duplicates: 1 }, state: { meter: { record_count: 7 } } };
    };
    await expect(r.session.command('download', {})).resolves.toBe('hello!');
    expect(statuses).toEqual(['downloading']);
    expect(r.host.events).toEqual([
      { type: 'download_started', message: 'download started (request)', data: { trigger: 'request' } },
      { type: 'download_progress', message: 'midway', data: { greeting: 'hello' } },
      { type: 'download_finished', message: 'downloaded 3 records', data: { records: 3, inserted: 2, duplicates: 1 } },
    ]);
    expect(r.host.state).toMatchObject({ status: 'ok', status_detail: null, meter: { record_count: 7 } });
    expect(r.host.state.last_download).toBe(r.host.state.last_seen);
  });

  it('a greeting that fails starts no download: no_answer only', async () => {
    const r = await rig();
    let ran = false;
    r.session.greet = async () => {
      throw new NoAnswerError('the device is off');
    };
    r.session.run = async () => {
      ran = true;
      return { result: '', message: '', data: {} };
    };
    await expect(r.session.command('download', {})).rejects.toThrow('the device is off');
    expect(ran).toBe(false);
    expect(r.host.types()).toEqual(['no_answer']);
    expect(r.host.state.status).toBe('no-answer');
  });

  it('a failure after the start is download_failed with its reason', async () => {
    const r = await rig();
    r.session.run = async () => {
      throw new ProtocolError('bad-dump', 'the dump came up short');
    };
    await expect(r.session.command('download', {})).rejects.toThrow('the dump came up short');
    expect(r.host.types()).toEqual(['download_started', 'download_failed']);
    expect(r.host.events[1]!.data).toEqual({ reason: 'bad-dump' });
    expect(r.host.state).toMatchObject({ status: 'error', status_detail: 'the dump came up short' });
  });
});
