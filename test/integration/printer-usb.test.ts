/**
 * zebra-zpl over the `usb-printer` transport (a printer-class node such as `/dev/usb/lp0`). No
 * USB printer exists in CI, so the node is one end of a socat pty pair and the fake Zebra sits on
 * the other end under the real `serialport` library: the transport's non-blocking reads and
 * writes of a character device are what is tested; the usblp driver's own behaviour is not.
 */
import { describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import { parseSimulatorOptions, ZebraSimulator } from '../../drivers/printers/zebra-zpl/simulator.ts';
import type { DeviceConfig } from '../../src/config/types.ts';
import { SerialTransport } from '../../src/transports/serial.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { deviceManagerRig } from '../helpers/device-manager-rig.ts';
import { eventually } from '../helpers/eventually.ts';
import { startPtyPair } from '../helpers/socat.ts';

const cleanups = useCleanups();
const ID = 'usb-printer-1';

describe('zebra-zpl on a USB printer-class node (socat pty pair)', () => {
  it('reads the status and prints a label through the node', async () => {
    const pty = await startPtyPair();
    cleanups.push(() => pty.stop());
    const printerEnd = new SerialTransport({ type: 'serial', path: pty.a, baud_rate: 9600 });
    const simulator = new ZebraSimulator(parseSimulatorOptions({ model: 'GK420d', dpmm: 8 }));
    await printerEnd.open();
    simulator.attach(printerEnd);
    cleanups.push(async () => {
      simulator.detach();
      await printerEnd.close();
    });
    const device: DeviceConfig = {
      id: ID,
      driver: 'zebra-zpl',
      transport: { type: 'usb-printer', path: pty.b, reconnect_min_ms: 50, reconnect_max_ms: 200 },
      options: { status_poll_ms: 200, status_timeout_ms: 500 },
    };
    const r = await deviceManagerRig({ devices: [device], drivers, cleanups });
    await eventually('status read over the node', () => r.states(ID).some((s) => s.status === 'ok' && s.model === 'GK420d'));
    r.request(ID, 'print', { template: 'specimen', specimen_id: 'S1234567', patient: { name: 'Doe, Jane', mrn: '42' }, copies: 2 });
    const job = ((await r.response(ID, 'print')).data as { job: string }).job;
    await eventually('printed', () => r.store.jobs.get(ID, job)?.state === 'printed');
    expect(simulator.printer.printed).toHaveLength(2);
  });

  it('a node that is not there is port-missing with the reason, and the job waits', async () => {
    const device: DeviceConfig = {
      id: ID,
      driver: 'zebra-zpl',
      transport: { type: 'usb-printer', path: '/dev/usb/lp-not-here', reconnect_min_ms: 50, reconnect_max_ms: 200 },
    };
    const r = await deviceManagerRig({ devices: [device], drivers, cleanups });
    await eventually('port-missing', () => r.states(ID).some((s) => s.status === 'port-missing'));
    expect(r.states(ID).at(-1)!.status_detail).toMatch(/lp-not-here: no such device/);
    r.request(ID, 'print', { template: 'specimen', patient: { name: 'Doe, Jane', mrn: '42' } });
    expect(await r.response(ID, 'print')).toMatchObject({ status: 'ok', data: { state: 'queued' } });
  });
});
