import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ActivityLog } from '../../src/activity-log.ts';
import { EventBus } from '../../src/event-bus.ts';
import { makeEvent } from '../../src/extensions/bridge.ts';
import { Stats, type Services } from '../../src/extensions/extension.ts';
import { createLogger } from '../../src/logger.ts';
import type { BridgeEvent } from '../../src/records/types.ts';

/** The activity log (what `poctd run` writes at info about devices) on a real bus and logger. */
function rig(): { bus: EventBus; stats: Stats; lines: () => Array<Record<string, unknown>>; log: ActivityLog } {
  const out: string[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _e, done) => (out.push(chunk.toString()), done()) });
  const bus = new EventBus();
  const stats = new Stats();
  const services = { bus, stats, log: createLogger('info', sink), store: { outboxDepth: () => 7 } } as unknown as Services;
  const log = new ActivityLog(services);
  return { bus, stats, log, lines: () => out.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const at = new Date('2026-12-04T10:00:00Z');
const ev = (type: BridgeEvent['type'], device: string | null, message: string, data?: Record<string, unknown>): BridgeEvent => makeEvent(type, device, message, at, data);

describe('the activity log says what devices did, once per change, without patient data', () => {
  it('a cable drop is one line, however many reconnect attempts follow; connected again is one line', async () => {
    const { bus, lines, log } = rig();
    await log.start();
    bus.emit('bridgeEvent', ev('connected', 'm1', 'serial:/dev/ttyUSB0 open'));
    for (let i = 0; i < 5; i++) bus.emit('bridgeEvent', ev('disconnected', 'm1', 'serial:/dev/ttyUSB0 closed'));
    for (let i = 0; i < 5; i++) bus.emit('bridgeEvent', ev('port_missing', 'm1', 'cannot open /dev/ttyUSB0: ENOENT'));
    bus.emit('bridgeEvent', ev('connected', 'm1', 'serial:/dev/ttyUSB0 open'));
    await log.stop();
    expect(lines().map((l) => [l.level, l.msg])).toEqual([
      [30, 'device connected: serial:/dev/ttyUSB0 open'],
      [40, 'device link lost: serial:/dev/ttyUSB0 closed'],
      [40, 'cannot open /dev/ttyUSB0: ENOENT'],
      [30, 'device connected: serial:/dev/ttyUSB0 open'],
    ]);
    expect(lines().every((l) => l.device === 'm1')).toBe(true);
  });

  it('downloads with their counts, clock skew as a warning, the same failure once until the device works again', async () => {
    const { bus, lines, log } = rig();
    await log.start();
    bus.emit('bridgeEvent', ev('download_started', 'm1', 'download started'));
    bus.emit('bridgeEvent', ev('download_finished', 'm1', '3 records, 1 new', { inserted: 1, duplicates: 2 }));
    bus.emit('bridgeEvent', ev('clock_skew', 'm1', 'the meter clock is 1200 s off', { clock_skew_s: 1200, limit_s: 900 }));
    bus.emit('bridgeEvent', ev('no_answer', 'm1', 'no answer to DM?'));
    bus.emit('bridgeEvent', ev('no_answer', 'm1', 'no answer to DM?'));
    bus.emit('bridgeEvent', ev('download_finished', 'm1', '3 records, 0 new', { inserted: 0, duplicates: 3 }));
    bus.emit('bridgeEvent', ev('no_answer', 'm1', 'no answer to DM?'));
    await log.stop();
    const got = lines();
    expect(got.map((l) => l.msg)).toEqual(['download started', '3 records, 1 new', 'the meter clock is 1200 s off', 'no answer to DM?', '3 records, 0 new', 'no answer to DM?']);
    expect(got[1]).toMatchObject({ level: 30, device: 'm1', event: 'download_finished', inserted: 1, duplicates: 2 });
    expect(got[2]).toMatchObject({ level: 40, clock_skew_s: 1200, limit_s: 900 });
  });

  it('records stored: counts by kind and category, never their contents; totals when they moved', async () => {
    const { bus, stats, lines, log } = rig();
    await log.start();
    const record = { schema: 'poct.result/2', category: 'patient', patient: { id: 'P-0001' }, observations: [{ value: 105 }] };
    bus.emit('recordsStored', { deviceId: 'u1', records: [record, { ...record, category: 'control' }] as never });
    stats.stored = 2;
    stats.published = 2;
    log.summary();
    log.summary(); // nothing moved: no second line
    await log.stop();
    const got = lines();
    expect(got.map((l) => l.msg)).toEqual(['records stored', 'records stored and published so far']);
    expect(got[0]).toMatchObject({ device: 'u1', stored: 2, kinds: 'result 2', categories: 'patient 1, control 1' });
    expect(got[1]).toMatchObject({ stored: 2, published: 2, duplicates: 0, outbox: 7 });
    expect(JSON.stringify(got)).not.toContain('P-0001');
    expect(JSON.stringify(got)).not.toContain('105');
  });
});
