/**
 * N simulated devices are N devices (issue 16): record ids come from the driver and the serial, so
 * when every simulator of a driver had one default serial, 40 simulated analyzers stored as one
 * and 39 devices' results counted as "already stored". Each simulated device now gets a serial
 * derived from its id unless its config sets one.
 */
import { describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import type { DeviceConfig } from '../../src/config/types.ts';
import { derivedSerial } from '../../src/driver-sdk/index.ts';
import { DIALECTS } from '../../drivers/analyzers/astm/dialects/index.ts';
import { senderWithSerial } from '../../drivers/analyzers/astm/simulator.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { ULTRA2_MEMORY } from '../helpers/daemon.ts';
import { deviceManagerRig } from '../helpers/device-manager-rig.ts';
import { eventually } from '../helpers/eventually.ts';

const cleanups = useCleanups();

describe('simulated devices get serials of their own', () => {
  it('derivedSerial is stable per id, distinct across ids, in the alphabet and length asked', () => {
    const ids = Array.from({ length: 1000 }, (_, i) => `meter-${i}`);
    const serials = ids.map((id) => derivedSerial(id, 8));
    expect(new Set(serials).size).toBe(1000);
    expect(serials.every((s) => /^[0-9A-Z]{8}$/.test(s))).toBe(true);
    expect(derivedSerial('meter-1', 8)).toBe(serials[1]);
    expect(derivedSerial('meter-1', 7, '0123456789')).toMatch(/^\d{7}$/);
  });

  it('every driver whose simulator takes a serial derives one its simulator accepts', async () => {
    const withSerial = drivers.filter((d) => d.simulator.serialFor);
    expect(withSerial.map((d) => d.id).sort()).toEqual(['astm', 'contour-next', 'freestyle-hid', 'onetouch-ultra2', 'onetouch-ultraeasy', 'onetouch-verio-iq']);
    for (const d of withSerial) {
      const impl = await d.simulator.load();
      for (const id of ['a', 'bench-2', 'ward 7 meter']) expect(() => impl.create({ serial: d.simulator.serialFor!(id) }), `${d.id} ${id}`).not.toThrow();
    }
  });

  it('three simulated Ultra 2 meters with the same memory store three times the records, under three serials; a configured serial is kept', async () => {
    const memory = ULTRA2_MEMORY;
    const r = await deviceManagerRig({
      drivers,
      cleanups,
      devices: [
        ...['m1', 'm2', 'm3'].map((id): DeviceConfig => ({ id, driver: 'onetouch-ultra2', transport: { type: 'simulated', simulator: { memory } } })),
        { id: 'm4', driver: 'onetouch-ultra2', transport: { type: 'simulated', simulator: { serial: 'GMF600DCY', memory } } },
      ],
    });
    for (const id of ['m1', 'm2', 'm3', 'm4']) r.request(id, 'download', {});
    await eventually('all downloaded', () => r.store.recordCount() === 4 * memory.length, 20_000);
    const serials = ['m1', 'm2', 'm3', 'm4'].map((id) => r.states(id).at(-1)?.serial);
    expect(new Set(serials).size).toBe(4);
    expect(serials[0]).toBe(`${derivedSerial('m1', 8)}Y`);
    expect(serials[3]).toBe('GMF600DCY');
  }, 30_000);

  it('the ASTM simulator puts the serial into each dialect’s sender where the dialect reads it', () => {
    const serial = derivedSerial('chem-2', 8, '0123456789');
    for (const d of DIALECTS) {
      const sender = senderWithSerial(d, serial);
      if (d.identify(d.sample.sender.split('^')).serial) expect(d.identify(sender!.split('^')).serial, d.id).toBe(serial);
      // A dialect whose sender names no serial keeps its sender: its records go by the device id.
      else expect(sender, d.id).toBeUndefined();
    }
  });

  it('three simulated analyzers sending the same message store three results under three serials; a configured sender is kept', async () => {
    const simulator = { count: 1, seed: 42, timezone: 'UTC' };
    const r = await deviceManagerRig({
      drivers,
      cleanups,
      devices: [
        ...['a1', 'a2', 'a3'].map((id): DeviceConfig => ({ id, driver: 'astm', transport: { type: 'simulated', simulator } })),
        { id: 'a4', driver: 'astm', transport: { type: 'simulated', simulator: { ...simulator, sender: 'C111^Roche^c111^4.2.2.1730^1^77777' } } },
      ],
    });
    // Before: all four sent the dialect's sample serial and three results were "already stored".
    await eventually('all stored', () => r.store.recordCount() === 4, 40_000);
    const serials = r.store.recordsSince(0, 10).map((rec) => [rec.device.id, rec.device.serial]);
    expect(new Set(serials.map(([, s]) => s)).size).toBe(4);
    expect(serials).toContainEqual(['a1', derivedSerial('a1', 8, '0123456789')]);
    expect(serials).toContainEqual(['a4', '77777']);
  }, 60_000);

  it('two simulated CLINITEK Status readers sending the same strips store them twice: no serial, so the device id tells them apart', async () => {
    const simulator = { seed: 5, no_error_record: true, send_delay_ms: 50 };
    const r = await deviceManagerRig({
      drivers,
      cleanups,
      devices: ['u1', 'u2'].map((id): DeviceConfig => ({ id, driver: 'clinitek-status', transport: { type: 'simulated', simulator }, options: { burst_idle_ms: 100 } })),
    });
    await eventually('both downloaded', () => r.events.filter((e) => e.type === 'download_finished').length === 2, 20_000);
    const byDevice = (id: string): number => r.store.recordsSince(0, 100).filter((rec) => rec.device.id === id).length;
    expect(byDevice('u1')).toBeGreaterThan(0);
    expect(byDevice('u2')).toBe(byDevice('u1'));
    expect(r.events.filter((e) => e.type === 'download_finished').every((e) => (e.data as { duplicates: number }).duplicates === 0)).toBe(true);
  }, 30_000);
});
