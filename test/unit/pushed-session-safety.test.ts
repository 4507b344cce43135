/**
 * The pushed-and-acknowledged session base (`src/driver-sdk/pushed-session.ts`) over the real host
 * adapter and store (device-manager rig), for what the mutation run on it found unguarded: a unit
 * arriving after stop, a unit refused only once however often its commit is retried, the state and
 * events of a transmission, an answer that cannot be written, the quarantine of a transcript
 * capture at stop, and the idle time a driver sets.
 */
import Database from 'better-sqlite3';
import { describe, expect, it, vi } from 'vitest';
import type { Capture, SessionHost } from '../../src/driver-sdk/index.ts';
import type { SessionCommand } from '../../src/driver-sdk/meter-session.ts';
import { PushedSession, type PushedSessionOptions, type UnitOutcome } from '../../src/driver-sdk/pushed-session.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { deviceManagerRig, type DeviceManagerRig } from '../helpers/device-manager-rig.ts';
import { eventually } from '../helpers/eventually.ts';
import { LineDevice, lineDraft, LineFramer, lineDriver } from '../helpers/line-device.ts';

const cleanups = useCleanups();

/**
 * The line protocol of `line-device.ts` on the pushed base. `R <n>`: a result, raw capture; `T <n>`:
 * a result whose capture is a transcript (the device's line, then the host's prompt); `W <n>`: a
 * result whose answer cannot be written; `E`: a unit with nothing to store; `EOT` ends a burst.
 */
class LineReceiver extends PushedSession {
  readonly framer = new LineFramer();
  readonly outcomes: UnitOutcome[] = [];
  readonly acknowledged: Array<{ inserted: number; duplicates: number }> = [];
  readonly refusals: string[] = [];
  constructor(
    host: SessionHost,
    options: PushedSessionOptions,
    private readonly extraCommands?: Record<string, SessionCommand>,
  ) {
    super(host, 'line-device', options);
  }
  /** Without commands of its own, the base's (none beyond status). */
  protected override commands(): Record<string, SessionCommand> {
    return this.extraCommands ?? super.commands();
  }
  detached = 0;
  private readonly onData = (chunk: Buffer): void => {
    for (const line of this.framer.push(chunk)) this.line(line);
  };
  protected attach(): void {
    this.host.transport.on('data', this.onData);
  }
  protected async detach(): Promise<void> {
    this.detached++;
    this.host.transport.off('data', this.onData);
  }
  /** A unit as the protocol would hand it over, for the tests that call `receive` directly. */
  unit(line: string): Promise<UnitOutcome> {
    const [kind, n] = line.split(' ');
    const drafts = kind === 'E' ? [] : [lineDraft(Number(n))];
    const capture: Capture =
      kind === 'T'
        ? { kind: 'transcript', exchanges: [{ dir: 'H', bytes: Buffer.from('PROMPT') }, { dir: 'D', bytes: Buffer.from(line) }, { dir: 'D', bytes: Buffer.from('!') }] }
        : kind === 'H'
          ? { kind: 'transcript', exchanges: [{ dir: 'H', bytes: Buffer.from('PROMPT') }] }
          : { kind: 'raw', bytes: Buffer.from(line) };
    const outcome = this.receive(
      { drafts: { result: drafts }, capture },
      {
        acknowledge: async (o) => {
          this.acknowledged.push(o);
          if (kind === 'W') throw new Error('the port is gone');
          await this.host.transport.write(Buffer.from(`ACK ${n ?? '-'}\n`));
        },
        refuse: async (reason) => {
          this.refusals.push(reason);
          await this.host.transport.write(Buffer.from(`NAK ${n ?? '-'}\n`));
        },
      },
    );
    void outcome.then((o) => this.outcomes.push(o));
    return outcome;
  }
  end(): Promise<void> {
    return this.endTransmission();
  }
  private line(line: string): void {
    if (line === 'EOT') void this.endTransmission();
    else void this.unit(line);
  }
}

async function rig(
  options: PushedSessionOptions = { idleMs: 60_000 },
  commands?: Record<string, SessionCommand>,
): Promise<{ r: DeviceManagerRig; device: LineDevice; session: () => LineReceiver }> {
  const device = new LineDevice();
  let session: LineReceiver | undefined;
  const driver = lineDriver('analyzer', (host) => (session = new LineReceiver(host, options, commands)), device);
  const r = await deviceManagerRig({ drivers: [driver], cleanups, devices: [{ id: 'line1', driver: 'line-device', transport: { type: 'simulated' } }] });
  await eventually('the session', () => session !== undefined);
  return { r, device, session: () => session! };
}

/** Makes the real store refuse records whose JSON holds `marker` until the returned function is called. */
function refuseRecords(dbPath: string, marker: string): () => void {
  const db = new Database(dbPath);
  db.exec(`CREATE TRIGGER refuse_test BEFORE INSERT ON records WHEN NEW.json LIKE '%${marker}%' BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END;`);
  return () => {
    db.exec('DROP TRIGGER refuse_test');
    db.close();
  };
}

const types = (r: DeviceManagerRig) => r.events.map((e) => e.type);

/** The session's timers, read where the base keeps them (what a stopped session must not leave behind). */
const timers = (s: LineReceiver) => s as unknown as { idleTimer: NodeJS.Timeout | null; retryTimer: NodeJS.Timeout | null };

/** Counts the commits the session asks of its host, by how many records each held. */
function countCommits(s: LineReceiver): number[] {
  const host = (s as unknown as { host: SessionHost }).host;
  const commit = host.commit.bind(host);
  const sizes: number[] = [];
  host.commit = (drafts, capture) => {
    sizes.push(drafts.result?.length ?? 0);
    return commit(drafts, capture);
  };
  return sizes;
}

describe('PushedSession (safety)', () => {
  it('a unit that arrives after stop is refused and never committed', async () => {
    const { r, session } = await rig();
    const s = session();
    await s.stop();
    await expect(s.unit('R 1')).resolves.toEqual({ stored: false, reason: 'the session is stopped' });
    await eventually('the refusal', () => s.refusals.length === 1);
    expect(s.refusals).toEqual(['the session is stopped']);
    expect(s.acknowledged).toEqual([]);
    expect(r.store.recordCount()).toBe(0);
    await expect(s.command('status', {})).rejects.toThrow('line-device: the session is stopped');
    // A second stop is a no-op, not a second detach.
    await s.stop();
    await r.stop();
  });

  it('commands: status answers the reported state, an unknown verb names the known ones', async () => {
    const { r, device, session } = await rig();
    device.send('R 1');
    await eventually('the ACK', () => device.received.length === 1);
    expect(await session().command('status', {})).toMatchObject({ status: 'downloading' });
    await expect(session().command('print', {})).rejects.toThrow('line-device: unknown command "print" (known: status)');
    await r.stop();
  });

  it('a transmission starts as status downloading with download_started from the device; a unit with nothing to store is acknowledged as stored', async () => {
    const { r, session } = await rig();
    const outcome = await session().unit('E');
    expect(outcome).toEqual({ stored: true, inserted: 0, duplicates: 0 });
    expect(session().acknowledged).toEqual([{ inserted: 0, duplicates: 0 }]);
    const started = r.events.find((e) => e.type === 'download_started');
    expect(started?.message).toBe('the device started a transmission');
    expect(started?.data).toEqual({ trigger: 'device' });
    await eventually('status downloading', () => r.states('line1').at(-1)?.status === 'downloading');
    // Only an empty unit: the burst ends without download_finished, and the status is ok again.
    await session().end();
    await eventually('status ok', () => r.states('line1').at(-1)?.status === 'ok');
    expect(types(r)).not.toContain('download_finished');
    await r.stop();
  });

  it('a failed commit: the event and state say why, and the device is refused once', async () => {
    const { r, session } = await rig();
    const allow = refuseRecords(r.dbPath, '"value":105');
    const outcome = await session().unit('R 5');
    expect(outcome).toMatchObject({ stored: false, reason: expect.stringMatching(/^the store did not commit 1 record\(s\): .*disk full \(test\)/) });
    const failed = r.events.find((e) => e.type === 'download_failed');
    expect(failed?.message).toMatch(/^the store did not commit 1 record\(s\): .*disk full \(test\)$/);
    await eventually('status error', () => r.states('line1').at(-1)?.status === 'error');
    expect(r.states('line1').at(-1)?.status_detail).toBe('commit failed');
    expect(session().refusals).toHaveLength(1);
    allow();
    await r.stop();
  });

  it('with commitRetryMs: refused once however many retries fail; once stored, status downloading then ok with the totals', async () => {
    const { r, session } = await rig({ idleMs: 60_000, commitRetryMs: 30 });
    const allow = refuseRecords(r.dbPath, '"value":108');
    const host = (session() as unknown as { host: SessionHost }).host;
    const commit = host.commit.bind(host);
    let attempts = 0;
    host.commit = (drafts, capture) => {
      attempts++;
      return commit(drafts, capture);
    };
    const stored = session().unit('R 8');
    await eventually('status error, retrying', () => r.states('line1').at(-1)?.status_detail === 'commit failed; retrying');
    expect(r.events.find((e) => e.type === 'download_failed')?.message).toMatch(/; retrying$/);
    const before = r.events.length;
    await eventually('three more commits tried', () => attempts >= 4);
    expect(session().refusals).toHaveLength(1);
    expect(r.events.length).toBe(before);
    allow();
    await expect(stored).resolves.toEqual({ stored: true, inserted: 1, duplicates: 0 });
    await eventually('status downloading after the retry', () => r.states('line1').at(-1)?.status === 'downloading');
    await session().end();
    await eventually('download_finished', () => types(r).includes('download_finished'));
    expect(r.events.find((e) => e.type === 'download_finished')?.data).toEqual({ records: 1, inserted: 1, duplicates: 0 });
    await eventually('status ok', () => r.states('line1').at(-1)?.status === 'ok');
    await r.stop();
  });

  it('an answer that cannot be written is logged; the next unit is still committed and answered', async () => {
    const { r, device, session } = await rig();
    const warnings: string[] = [];
    const host = (session() as unknown as { host: SessionHost }).host;
    const original = host.log.warn.bind(host.log);
    host.log.warn = ((obj: unknown, msg?: string) => {
      warnings.push(`${JSON.stringify(obj)} ${msg}`);
      original(obj as object, msg);
    }) as typeof host.log.warn;
    await expect(session().unit('W 1')).resolves.toEqual({ stored: true, inserted: 1, duplicates: 0 });
    expect(warnings).toContain('{"err":"the port is gone"} line-device: could not answer the device');
    device.send('R 2');
    await eventually('the ACK of the next unit', () => device.received.includes('ACK 2'));
    expect(r.store.recordCount()).toBe(2);
    await r.stop();
  });

  it("at stop, a transcript unit never stored is quarantined as the device's bytes only", async () => {
    const { r, session } = await rig({ idleMs: 60_000, commitRetryMs: 60_000 });
    const allow = refuseRecords(r.dbPath, '"value":110');
    void session().unit('T 10');
    await eventually('the refusal', () => session().refusals.length === 1);
    await r.manager.stop();
    allow();
    await r.writer.drained();
    expect(r.store.quarantined().map((q) => [q.reason, q.bytes.toString()])).toEqual([['not-committed', 'T 10!']]);
    await r.stop();
  });

  it('a driver that sets idleMs has its burst end after that silence, not after the default 2 s', async () => {
    const { r, device } = await rig({ idleMs: 40 });
    const sent = Date.now();
    device.send('R 7');
    await eventually('download_finished', () => types(r).includes('download_finished'), 1500);
    expect(Date.now() - sent).toBeLessThan(1500);
    await r.stop();
  });

  it('stop cancels the pending retry and idle timers and schedules no retry of its own, even when its last try fails', async () => {
    const { r, session } = await rig({ idleMs: 60_000, commitRetryMs: 60_000 });
    const allow = refuseRecords(r.dbPath, '"value":111');
    void session().unit('R 11');
    await eventually('the refusal', () => session().refusals.length === 1);
    const { idleTimer, retryTimer } = timers(session());
    expect(idleTimer).not.toBeNull();
    expect(retryTimer).not.toBeNull();
    const cleared = vi.spyOn(globalThis, 'clearTimeout');
    try {
      await r.manager.stop();
      expect(cleared).toHaveBeenCalledWith(idleTimer);
      expect(cleared).toHaveBeenCalledWith(retryTimer);
    } finally {
      cleared.mockRestore();
    }
    expect(timers(session()).idleTimer).toBeNull();
    expect(timers(session()).retryTimer).toBeNull();
    allow();
    await r.stop();
  });

  it('each unit re-arms the idle timer (the old one is cancelled), and the end of a transmission cancels it', async () => {
    const { r, device, session } = await rig({ idleMs: 60_000 });
    device.send('R 21');
    await eventually('ACK 21', () => device.received.includes('ACK 21'));
    const first = timers(session()).idleTimer;
    expect(first).not.toBeNull();
    const cleared = vi.spyOn(globalThis, 'clearTimeout');
    try {
      device.send('R 22');
      await eventually('ACK 22', () => device.received.includes('ACK 22'));
      expect(cleared).toHaveBeenCalledWith(first);
      const second = timers(session()).idleTimer;
      expect(second).not.toBeNull();
      expect(second).not.toBe(first);
      await session().end();
      expect(cleared).toHaveBeenCalledWith(second);
    } finally {
      cleared.mockRestore();
    }
    expect(timers(session()).idleTimer).toBeNull();
    await r.stop();
  });

  it('an unknown command names every known one, separated by commas', async () => {
    const { r, session } = await rig({ idleMs: 60_000 }, { send: async () => 'sent', reset: async () => 'reset' });
    await expect(session().command('bogus', {})).rejects.toThrow('line-device: unknown command "bogus" (known: status, send, reset)');
    await expect(session().command('send', {})).resolves.toBe('sent');
    await r.stop();
  });

  it('a unit after stop: quarantined as not-committed only when the device cannot be refused and it holds records', async () => {
    const plain = await rig({ idleMs: 60_000 });
    await plain.r.manager.stop();
    await expect(plain.session().unit('R 31')).resolves.toEqual({ stored: false, reason: 'the session is stopped' });
    await plain.r.writer.drained();
    expect(plain.r.store.quarantined()).toEqual([]);
    await plain.r.stop();

    const keeping = await rig({ idleMs: 60_000, commitRetryMs: 60_000 });
    await keeping.r.manager.stop();
    await expect(keeping.session().unit('E')).resolves.toEqual({ stored: false, reason: 'the session is stopped' });
    await keeping.r.writer.drained();
    expect(keeping.r.store.quarantined()).toEqual([]);
    await keeping.session().unit('R 32');
    await keeping.r.writer.drained();
    expect(keeping.r.store.quarantined().map((q) => [q.reason, q.bytes.toString()])).toEqual([['not-committed', 'R 32']]);
    await keeping.r.stop();
  });

  it('a failed commit is logged as an error with the store message', async () => {
    const { r, session } = await rig();
    const host = (session() as unknown as { host: SessionHost }).host;
    const errors: string[] = [];
    const original = host.log.error.bind(host.log);
    host.log.error = ((obj: unknown, msg?: string) => {
      errors.push(`${JSON.stringify(obj)} ${msg}`);
      original(obj as object, msg);
    }) as typeof host.log.error;
    const allow = refuseRecords(r.dbPath, '"value":141');
    await session().unit('R 41');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^\{"err":".*disk full \(test\)"\} line-device: commit failed$/);
    allow();
    await r.stop();
  });

  it('retrying kept units: a unit with nothing to store behind them is acknowledged with zeros and never committed; no retry is left once all are stored', async () => {
    const { r, session } = await rig({ idleMs: 60_000, commitRetryMs: 30 });
    const sizes = countCommits(session());
    const allow = refuseRecords(r.dbPath, '"value":151');
    const kept = session().unit('R 51');
    await eventually('the refusal', () => session().refusals.length === 1);
    const empty = session().unit('E');
    await eventually('a retry tried', () => sizes.length >= 2);
    allow();
    await expect(kept).resolves.toEqual({ stored: true, inserted: 1, duplicates: 0 });
    await expect(empty).resolves.toEqual({ stored: true, inserted: 0, duplicates: 0 });
    expect(session().acknowledged).toEqual([
      { inserted: 1, duplicates: 0 },
      { inserted: 0, duplicates: 0 },
    ]);
    expect(sizes.every((n) => n === 1)).toBe(true);
    expect(timers(session()).retryTimer).toBeNull();
    await session().end();
    expect(r.events.find((e) => e.type === 'download_finished')?.data).toEqual({ records: 1, inserted: 1, duplicates: 0 });
    await r.stop();
  });

  it('the end of a transmission while a unit is still kept does not finish the burst; the next end after it is stored does', async () => {
    const { r, session } = await rig({ idleMs: 60_000, commitRetryMs: 30 });
    const allow = refuseRecords(r.dbPath, '"value":161');
    const kept = session().unit('R 61');
    await eventually('the refusal', () => session().refusals.length === 1);
    await session().end();
    expect(types(r)).not.toContain('download_finished');
    allow();
    await kept;
    await session().end();
    expect(r.events.filter((e) => e.type === 'download_finished').map((e) => e.data)).toEqual([{ records: 1, inserted: 1, duplicates: 0 }]);
    await eventually('status ok', () => r.states('line1').at(-1)?.status === 'ok');
    await r.stop();
  });

  it('a transmission whose commit failed (no retry) ends with status error, not ok', async () => {
    const { r, session } = await rig();
    const allow = refuseRecords(r.dbPath, '"value":171');
    await expect(session().unit('R 71')).resolves.toMatchObject({ stored: false });
    await eventually('status error', () => r.states('line1').at(-1)?.status === 'error');
    await session().end();
    expect(types(r)).not.toContain('download_finished');
    // The session's own state, as it stands when the end has run (publishing it is asynchronous).
    expect((session() as unknown as { report: { state: { status: string } } }).report.state.status).toBe('error');
    allow();
    await r.stop();
  });

  it('at stop, a kept transcript unit with no device bytes quarantines nothing', async () => {
    const { r, session } = await rig({ idleMs: 60_000, commitRetryMs: 60_000 });
    const host = (session() as unknown as { host: SessionHost }).host;
    const quarantine = host.quarantine.bind(host);
    let asked = 0;
    host.quarantine = (bytes, reason) => {
      asked++;
      return quarantine(bytes, reason);
    };
    const allow = refuseRecords(r.dbPath, '"value":181');
    void session().unit('H 81');
    await eventually('the refusal', () => session().refusals.length === 1);
    await r.manager.stop();
    allow();
    await r.writer.drained();
    expect(asked).toBe(0);
    expect(r.store.quarantined()).toEqual([]);
    await r.stop();
  });

  it('a second stop does nothing (the protocol is unwired once); a unit stored by the stop\'s last try leaves no idle timer behind', async () => {
    const { r, session } = await rig({ idleMs: 60_000, commitRetryMs: 60_000 });
    const allow = refuseRecords(r.dbPath, '"value":191');
    const kept = session().unit('R 91');
    await eventually('the refusal', () => session().refusals.length === 1);
    allow();
    await r.manager.stop();
    await expect(kept).resolves.toEqual({ stored: true, inserted: 1, duplicates: 0 });
    expect(timers(session()).idleTimer).toBeNull();
    await session().stop();
    expect(session().detached).toBe(1);
    await r.stop();
  });
});
