/**
 * Devices behind a shared listener, through the DeviceManager over the real store: refusals
 * become schema-valid `listener_refused` events, a device whose driver does not route by sender
 * may not name one, and two ASTM devices on one port each store their own messages.
 */
import { describe, expect, it } from 'vitest';
import { AstmSimulator, parseSimulatorOptions } from '../../drivers/analyzers/astm/simulator.ts';
import { drivers } from '../../drivers/index.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import { TcpClientTransport } from '../../src/transports/tcp.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { deviceManagerRig } from '../helpers/device-manager-rig.ts';
import { eventually } from '../helpers/eventually.ts';
import { freePort } from '../helpers/mosquitto.ts';

const cleanups = useCleanups();

async function analyzer(port: number, options: Record<string, unknown>): Promise<AstmSimulator> {
  const t = new TcpClientTransport({ type: 'tcp', host: '127.0.0.1', port, reconnect_min_ms: 100, reconnect_max_ms: 200 });
  const sim = new AstmSimulator(parseSimulatorOptions({ reply_timeout_ms: 3000, seed: 7, ...options }));
  sim.attach(t);
  cleanups.push(async () => {
    sim.detach();
    await t.close();
  });
  await t.open();
  return sim;
}

describe('devices on a shared listener, through the device manager', () => {
  it('a sender on a device whose driver does not route by sender is a config_error naming the field; the device is not started', async () => {
    const port = await freePort();
    // A listening driver that reads no caller identity (as a DICOM or POCT1-A driver might not).
    const astm = drivers.find((d) => d.id === 'astm')!;
    expect(astm.listenerIdentities).toEqual(['sender']);
    const plain = { ...astm, id: 'plain-listener', listenerIdentities: undefined };
    const r = await deviceManagerRig({
      drivers: [plain],
      cleanups,
      devices: [{ id: 'p1', driver: 'plain-listener', transport: { type: 'tcp-server', port, sender: 'x' } }],
    });
    expect(r.events.map((e) => [e.type, e.device, e.message])).toEqual([
      ['config_error', 'p1', 'transport.sender: plain-listener does not route callers by sender; device not started'],
    ]);
  });

  it('two ASTM devices on one port: each message is stored under the device its sender names; an unknown sender is a valid listener_refused event', async () => {
    const port = await freePort();
    const r = await deviceManagerRig({
      drivers,
      cleanups,
      devices: [
        { id: 'dca', driver: 'astm', transport: { type: 'tcp-server', port, sender: 'DCA VANTAGE' } },
        { id: 'afinion', driver: 'astm', transport: { type: 'tcp-server', port, sender: 'Afinion 2 Analyzer' } },
      ],
    });
    const dca = await analyzer(port, { dialect: 'siemens-dca-vantage', count: 2 });
    const afinion = await analyzer(port, { dialect: 'abbott-afinion2', count: 1 });
    const stranger = await analyzer(port, { dialect: 'horiba-pentra', count: 1 });
    await eventually('both analyzers acknowledged', () => dca.delivered === 2 && afinion.delivered === 1, 10_000);
    await eventually('the stranger refused', () => r.events.some((e) => e.type === 'listener_refused'), 10_000);
    const stored = r.store.recordsSince(0, 100).map((rec) => [(rec as { device: { id: string; model: string | null } }).device.id, (rec as { device: { model: string | null } }).device.model]);
    expect(stored.sort()).toEqual([
      ['afinion', 'Afinion 2'],
      ['dca', 'DCA Vantage'],
      ['dca', 'DCA Vantage'],
    ]);
    expect(stranger.delivered).toBe(0);
    const refusal = r.events.find((e) => e.type === 'listener_refused')!;
    expect(schemaProblems('poct.event/1', refusal)).toEqual([]);
    expect(refusal.data).toMatchObject({ reason: 'unknown-sender', port, sender: 'ABX' });
    expect(r.states('dca').at(-1)).toMatchObject({ serial: 'S000001', analyzer: { dialect: 'siemens-dca-vantage' } });

    // Host → device goes to the caller routed to that device (its link, whichever session runs it).
    const enqs = (sim: AstmSimulator): number => sim.received.filter((b) => b === 0x05).length;
    expect([enqs(afinion), enqs(dca)]).toEqual([0, 0]);
    r.request('afinion', 'send', { message: 'H|\\^&|||poctd\rL|1|N', transaction: 't1' });
    expect(await r.response('afinion', 'send')).toMatchObject({ status: 'ok', data: { sent: 2 }, transaction: 't1' });
    expect([enqs(afinion), enqs(dca)]).toEqual([1, 0]);
    r.request('dca', 'send', { message: 'H|\\^&|||poctd\rL|1|N', transaction: 't2' });
    expect(await r.response('dca', 'send')).toMatchObject({ status: 'ok', data: { sent: 2 } });
    expect([enqs(afinion), enqs(dca)]).toEqual([1, 1]);
  });
});
