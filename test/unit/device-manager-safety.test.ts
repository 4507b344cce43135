/**
 * The session host's commit path (`DeviceManager.sessionHost().commit`), on the device-manager rig:
 * the real store, the real writer thread, a driver whose session only hands its host to the test.
 * What a mutation run over that path found unguarded: the device's own time zone, the privacy
 * policy reaching the store, the counts the device is told and the stats, and `resultsStored` going
 * out only for new records, a failing listener not turning a commit into a failure.
 */
import { describe, expect, it } from 'vitest';
import type { DriverDefinition, SessionHost } from '../../src/driver-sdk/index.ts';
import { NO_PARAMS } from '../../src/driver-sdk/index.ts';
import { hashPatientId } from '../../src/records/privacy.ts';
import type { ResultRecord } from '../../src/records/types.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { deviceManagerRig, type DeviceManagerRig } from '../helpers/device-manager-rig.ts';
import { eventually } from '../helpers/eventually.ts';
import { glucoseDraft } from '../helpers/records.ts';

const cleanups = useCleanups();

/** A driver whose session does nothing but keep the host it was given. */
function hostProbe(): { driver: DriverDefinition; host: () => SessionHost } {
  let host: SessionHost | undefined;
  const driver: DriverDefinition = {
    id: 'host-probe',
    kind: 'glucose-meter',
    vendor: 'Probe',
    models: ['H1'],
    usb: [],
    transports: ['simulated'],
    commands: { status: { description: 'state', params: NO_PARAMS } },
    decode: () => ({ drafts: {}, issues: [], device: {} }),
    createSession: (h) => {
      host = h;
      return { start: async () => undefined, stop: async () => undefined, command: async () => ({}) };
    },
    simulator: { description: 'nothing', options: {}, load: async () => ({ create: () => ({ attach: () => undefined, detach: () => undefined }) }) },
  };
  return { driver, host: () => host! };
}

/** 01:30 on 2026-11-01 happens twice in New York (DST ends), once in Copenhagen. */
const NEW_YORK_REPEATED = '2026-11-01T01:30:00';

async function rigWithHost(timezone?: string): Promise<{ r: DeviceManagerRig; host: SessionHost }> {
  const probe = hostProbe();
  const r = await deviceManagerRig({
    drivers: [probe.driver],
    cleanups,
    devices: [{ id: 'h1', driver: 'host-probe', transport: { type: 'simulated' }, ...(timezone ? { timezone } : {}) }],
  });
  await eventually('the session created', () => {
    try {
      return probe.host() !== undefined;
    } catch {
      return false;
    }
  });
  return { r, host: probe.host() };
}

const patientDraft = (n: number, time?: string) =>
  glucoseDraft(n, {
    patient: { id: 'MRN-777' },
    ...(time ? { device_time: time, observed_at: `${time}-05:00` } : {}),
  });

describe('session host commit path over the real store', () => {
  it("finalizes in the device's own time zone, with the site, driver, capture kind and the configured privacy policy", async () => {
    const { r, host } = await rigWithHost('America/New_York');
    r.services.config.privacy = { patient_id: 'hash', hash_key: 'site-secret-of-the-clinic' };
    const stored: ResultRecord[][] = [];
    r.services.bus.on('recordsStored', (e) => stored.push(e.records as ResultRecord[]));

    const outcome = await host.commit({ result: [patientDraft(1, NEW_YORK_REPEATED)] }, { kind: 'raw', bytes: Buffer.from('probe capture 1') });
    expect(outcome).toEqual({ inserted: 1, duplicates: 0 });

    const [record] = r.store.recordsSince(0, 10) as ResultRecord[];
    expect(record).toMatchObject({ site: 'test-site', device: { id: 'bench1' }, raw: { kind: 'raw', size: 15 } });
    expect(record!.flags).toContain('device-time:repeated-hour');
    expect(record!.patient).toEqual({ id: hashPatientId('MRN-777', 'site-secret-of-the-clinic') });
    expect(r.store.capture(record!.raw.sha256)?.bytes.toString()).toBe('probe capture 1');
    expect(r.store.capture(record!.raw.sha256)).toMatchObject({ device_id: 'h1', driver: 'host-probe', kind: 'raw' });
    expect(stored).toEqual([[record]]);
    await r.stop();
  });

  it("a device without a zone of its own uses the daemon's", async () => {
    const { r, host } = await rigWithHost();
    // Europe/Copenhagen (the rig's): 2026-10-25 02:30 is its repeated hour, New York's is not.
    await host.commit({ result: [patientDraft(1, '2026-10-25T02:30:00'), patientDraft(2, NEW_YORK_REPEATED)] }, { kind: 'raw', bytes: Buffer.from('c') });
    const records = r.store.recordsSince(0, 10) as ResultRecord[];
    expect(records.map((x) => x.flags.includes('device-time:repeated-hour'))).toEqual([true, false]);
    await r.stop();
  });

  it('omit reaches the store: no patient id in the stored record', async () => {
    const { r, host } = await rigWithHost();
    r.services.config.privacy = { patient_id: 'omit' };
    await host.commit({ result: [patientDraft(1)] }, { kind: 'raw', bytes: Buffer.from('omit') });
    const [record] = r.store.recordsSince(0, 10) as ResultRecord[];
    expect(JSON.stringify(record)).not.toContain('MRN-777');
    await r.stop();
  });

  it('counts new and repeated records for the device and the stats; resultsStored only when something is new', async () => {
    const { r, host } = await rigWithHost();
    let announced = 0;
    r.services.bus.on('recordsStored', (e) => {
      announced++;
      expect(e.deviceId).toBe('h1');
    });
    expect(await host.commit({ result: [patientDraft(1), patientDraft(2)] }, { kind: 'raw', bytes: Buffer.from('first') })).toEqual({ inserted: 2, duplicates: 0 });
    expect(await host.commit({ result: [patientDraft(1), patientDraft(2), patientDraft(3)] }, { kind: 'raw', bytes: Buffer.from('second') })).toEqual({
      inserted: 1,
      duplicates: 2,
    });
    expect(await host.commit({ result: [patientDraft(3)] }, { kind: 'raw', bytes: Buffer.from('third') })).toEqual({ inserted: 0, duplicates: 1 });
    expect(r.services.stats.stored).toBe(3);
    expect(r.services.stats.duplicates).toBe(3);
    expect(announced).toBe(2);
    await r.stop();
  });

  it('a listener that throws on recordsStored does not turn a stored commit into a failure', async () => {
    const { r, host } = await rigWithHost();
    const errors: string[] = [];
    const log = host.log as unknown as { error: (...args: unknown[]) => void };
    const original = log.error.bind(log);
    log.error = (obj: unknown, msg?: unknown) => {
      errors.push(`${JSON.stringify(obj)} ${String(msg)}`);
      original(obj, msg);
    };
    r.services.bus.on('recordsStored', () => {
      throw new Error('listener broke');
    });
    await expect(host.commit({ result: [patientDraft(1)] }, { kind: 'raw', bytes: Buffer.from('x') })).resolves.toEqual({ inserted: 1, duplicates: 0 });
    expect(r.store.recordCount()).toBe(1);
    expect(errors).toEqual(['{"err":"listener broke"} a listener failed on stored records']);
    await r.stop();
  });

  it('a commit the store refuses rejects, so the session cannot answer "stored"', async () => {
    const { r, host } = await rigWithHost();
    const bad = { result: [patientDraft(1)], studdy: [] } as unknown as Parameters<SessionHost['commit']>[0];
    await expect(host.commit(bad, { kind: 'raw', bytes: Buffer.from('refused') })).rejects.toThrow(/unknown record kind/);
    expect(r.store.recordCount()).toBe(0);
    expect(r.services.stats.stored).toBe(0);
    await r.stop();
  });

  it('quarantined bytes are kept in the store and counted as an error', async () => {
    const { r, host } = await rigWithHost();
    host.quarantine(Buffer.from('garbled'), 'bad-frame');
    expect(r.services.stats.errors).toBe(1);
    await eventually('the quarantined bytes stored', () => r.store.quarantineCount() === 1);
    await r.stop();
  });
});
