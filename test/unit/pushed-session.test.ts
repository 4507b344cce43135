import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import type { SessionHost } from '../../src/driver-sdk/index.ts';
import { PushedSession, type PushedSessionOptions, type UnitOutcome } from '../../src/driver-sdk/pushed-session.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { deviceManagerRig, type DeviceManagerRig } from '../helpers/device-manager-rig.ts';
import { eventually } from '../helpers/eventually.ts';
import { LineDevice, lineDraft, LineFramer, lineDriver } from '../helpers/line-device.ts';

const cleanups = useCleanups();

/** The line protocol on the pushed base: each `R <n>` is a unit, answered ACK/NAK after the commit. */
class LineReceiver extends PushedSession {
  readonly framer = new LineFramer();
  readonly outcomes: UnitOutcome[] = [];
  /** What the store held each time an ACK went out (read through the main-thread connection). */
  readonly recordsAtAck: number[] = [];
  constructor(
    host: SessionHost,
    options: PushedSessionOptions,
    private readonly storedNow: () => number,
  ) {
    super(host, 'line-device', options);
  }
  private readonly onData = (chunk: Buffer): void => {
    for (const line of this.framer.push(chunk)) this.line(line);
  };
  protected attach(): void {
    this.host.transport.on('data', this.onData);
  }
  protected async detach(): Promise<void> {
    this.host.transport.off('data', this.onData);
  }
  /** A line handed to the session directly, as a transport event racing the stop would. */
  feed(line: string): void {
    this.line(line);
  }
  private line(line: string): void {
    if (line === 'EOT') {
      void this.endTransmission();
      return;
    }
    const [kind, n] = line.split(' ');
    const drafts = kind === 'R' ? [lineDraft(Number(n))] : [];
    const capture = { kind: 'raw' as const, bytes: Buffer.from(line) };
    void this.receive(
      { drafts: { result: drafts }, capture, facts: { serial: 'LINE-1' }, state: { analyzer: { dialect: 'line' } } },
      {
        acknowledge: async () => {
          this.recordsAtAck.push(this.storedNow());
          await this.host.transport.write(Buffer.from(`ACK ${n ?? '-'}\n`));
        },
        refuse: async () => {
          await this.host.transport.write(Buffer.from(`NAK ${n ?? '-'}\n`));
        },
      },
    ).then((o) => this.outcomes.push(o));
  }
}

/** Holds every commit of the session until the test releases it, so a test can stop the session while one is in flight. */
class CommitGate {
  readonly waiting: Array<() => void> = [];
  wrap(host: SessionHost): SessionHost {
    const commit: SessionHost['commit'] = async (drafts, capture) => {
      await new Promise<void>((release) => this.waiting.push(release));
      return host.commit(drafts, capture);
    };
    return new Proxy(host, { get: (target, key, receiver) => (key === 'commit' ? commit : Reflect.get(target, key, receiver)) });
  }
  releaseAll(): void {
    this.waiting.splice(0).forEach((release) => release());
  }
}

async function rig(
  options: PushedSessionOptions = {},
  gate?: CommitGate,
): Promise<{ r: DeviceManagerRig; device: LineDevice; session: () => LineReceiver }> {
  const device = new LineDevice();
  let session: LineReceiver | undefined;
  const opened: { store?: DeviceManagerRig['store'] } = {};
  const driver = lineDriver(
    'analyzer',
    (host) => (session = new LineReceiver(gate ? gate.wrap(host) : host, { idleMs: 60_000, ...options }, () => opened.store!.recordCount())),
    device,
  );
  const r = await deviceManagerRig({ drivers: [driver], cleanups, devices: [{ id: 'line1', driver: 'line-device', transport: { type: 'simulated' } }] });
  opened.store = r.store;
  return { r, device, session: () => session! };
}

/** Makes the real store refuse records whose JSON holds `marker` (as a full disk would refuse them all). */
function refuseRecords(dbPath: string, marker: string): () => void {
  const db = new Database(dbPath);
  db.exec(`CREATE TRIGGER refuse_test BEFORE INSERT ON records WHEN NEW.json LIKE '%${marker}%' BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END;`);
  return () => {
    db.exec('DROP TRIGGER refuse_test');
    db.close();
  };
}

describe('PushedSession over the real host adapter and store', () => {
  it('answers each unit only after its records committed, in arrival order', async () => {
    const { r, device, session } = await rig();
    device.send('R 1', 'R 2', 'R 3');
    await eventually('three ACKs', () => device.received.length === 3);
    expect(device.received).toEqual(['ACK 1', 'ACK 2', 'ACK 3']);
    // Each ACK went out when the store already held its record.
    expect(session().recordsAtAck).toEqual([1, 2, 3]);
    expect(session().outcomes).toEqual([
      { stored: true, inserted: 1, duplicates: 0 },
      { stored: true, inserted: 1, duplicates: 0 },
      { stored: true, inserted: 1, duplicates: 0 },
    ]);
    await r.stop();
  });

  it('a failed commit is refused (NAK), never acknowledged, with download_failed and status error; the resend is stored', async () => {
    const { r, device, session } = await rig();
    const allow = refuseRecords(r.dbPath, '"value":105');
    device.send('R 5');
    await eventually('the NAK', () => device.received.length === 1);
    expect(device.received).toEqual(['NAK 5']);
    expect(r.store.recordCount()).toBe(0);
    expect(session().outcomes[0]).toMatchObject({ stored: false, reason: expect.stringMatching(/disk full \(test\)/) });
    const failed = r.events.find((e) => e.type === 'download_failed');
    expect(failed?.data).toEqual({ reason: 'commit-failed' });
    await eventually('status error', () => r.states('line1').at(-1)?.status === 'error');
    // The device sends the message again (as ASTM does after a NAK): now it is stored.
    allow();
    device.send('R 5');
    await eventually('the ACK', () => device.received.length === 2);
    expect(device.received).toEqual(['NAK 5', 'ACK 5']);
    expect(r.store.recordCount()).toBe(1);
    await r.stop();
  });

  it('one transmission: download_started once, download_finished with the totals at its end, then status ok', async () => {
    const { r, device } = await rig();
    device.send('R 1', 'E', 'R 1', 'R 2', 'EOT');
    await eventually('download_finished', () => r.events.some((e) => e.type === 'download_finished'));
    expect(device.received).toEqual(['ACK 1', 'ACK -', 'ACK 1', 'ACK 2']);
    expect(r.events.filter((e) => e.type === 'download_started')).toHaveLength(1);
    const finished = r.events.find((e) => e.type === 'download_finished');
    expect(finished?.data).toEqual({ records: 3, inserted: 2, duplicates: 1 });
    expect(finished?.message).toBe('received 3 results in 3 messages: 2 new, 1 already stored');
    await eventually('status ok', () => r.states('line1').at(-1)?.status === 'ok');
    expect(r.states('line1').at(-1)).toMatchObject({ kind: 'analyzer', serial: 'LINE-1', analyzer: { dialect: 'line' } });
    expect(r.states('line1').at(-1)?.last_download).not.toBeNull();
    await r.stop();
  });

  it('a burst with no end marker finishes after idleMs of silence', async () => {
    const { r, device } = await rig({ idleMs: 150 });
    device.send('R 7');
    await eventually('download_finished', () => r.events.some((e) => e.type === 'download_finished'));
    expect(r.events.find((e) => e.type === 'download_finished')?.data).toEqual({ records: 1, inserted: 1, duplicates: 0 });
    await r.stop();
  });

  it('with commitRetryMs a unit whose commit failed is kept, committed again and then acknowledged', async () => {
    const { r, device, session } = await rig({ commitRetryMs: 50 });
    const allow = refuseRecords(r.dbPath, '"value":108');
    device.send('R 8', 'R 9');
    await eventually('the refusal', () => device.received.includes('NAK 8'));
    // R 9 waits behind R 8, so the answers keep the order.
    expect(r.store.recordCount()).toBe(0);
    expect(session().outcomes).toEqual([]);
    allow();
    await eventually('both stored and acknowledged', () => device.received.filter((l) => l.startsWith('ACK')).length === 2);
    expect(device.received).toEqual(['NAK 8', 'ACK 8', 'ACK 9']);
    expect(r.store.recordCount()).toBe(2);
    expect(session().outcomes).toEqual([
      { stored: true, inserted: 1, duplicates: 0 },
      { stored: true, inserted: 1, duplicates: 0 },
    ]);
    await r.stop();
  });

  it('with commitRetryMs, what is still not stored at stop is kept in quarantine', async () => {
    const { r, device, session } = await rig({ commitRetryMs: 60_000 });
    const allow = refuseRecords(r.dbPath, '"value":110');
    device.send('R 10');
    await eventually('the refusal', () => device.received.includes('NAK 10'));
    await r.manager.stop();
    allow();
    await r.writer.drained();
    expect(r.store.quarantineCount()).toBe(1);
    expect(session().outcomes).toEqual([{ stored: false, reason: 'the session stopped before the store committed it' }]);
    await r.stop();
  });

  it('with commitRetryMs, a unit whose commit fails while stop waits for it is kept in quarantine, not lost', async () => {
    const gate = new CommitGate();
    const { r, device, session } = await rig({ commitRetryMs: 60_000 }, gate);
    const allow = refuseRecords(r.dbPath, '"value":111');
    device.send('R 11');
    await eventually('the commit in flight', () => gate.waiting.length === 1);
    const stopping = session().stop();
    gate.releaseAll();
    // The stop's last try goes through the gate too.
    await eventually('the last try at stop', () => gate.waiting.length === 1);
    gate.releaseAll();
    await stopping;
    allow();
    await r.writer.drained();
    expect(r.store.recordCount()).toBe(0);
    expect(r.store.quarantineCount()).toBe(1);
    expect(session().outcomes).toEqual([{ stored: false, reason: 'the session stopped before the store committed it' }]);
    await r.stop();
  });

  it('with commitRetryMs, a unit that arrives after stop is refused and kept in quarantine', async () => {
    const { r, session } = await rig({ commitRetryMs: 60_000 });
    await session().stop();
    session().feed('R 12');
    await eventually('the outcome', () => session().outcomes.length === 1);
    await r.writer.drained();
    expect(session().outcomes).toEqual([{ stored: false, reason: 'the session is stopped' }]);
    expect(r.store.recordCount()).toBe(0);
    expect(r.store.quarantineCount()).toBe(1);
    await r.stop();
  });
});
