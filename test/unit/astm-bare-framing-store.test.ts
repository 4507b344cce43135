/**
 * `framing: bare` through the DeviceManager over the real store, the test playing a Maglumi-like
 * analyzer byte for byte on a TCP socket: the block's ACK goes out only once its record is
 * stored, and a message cut short by EOT stores nothing.
 */
import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { deviceManagerRig } from '../helpers/device-manager-rig.ts';
import { eventually } from '../helpers/eventually.ts';
import { freePort } from '../helpers/mosquitto.ts';

const cleanups = useCleanups();
const ENQ = 0x05;
const EOT = 0x04;
const ACK = 0x06;
const MESSAGE = 'H|\\^&||PSWD|Maglumi User|||||Lis||P|E1394-97|20250601\rP|1\rO|1|S-BARE-1||^^^TSH II\rR|1|^^^TSH II|3.007|uIU/mL|0.3 to 4.5|N||||||20250601101500\rL|1|N\r';
const block = (text: string): Buffer => Buffer.concat([Buffer.from([0x02]), Buffer.from(text, 'latin1'), Buffer.from([0x03])]);

async function analyzer(port: number): Promise<{ socket: Socket; nextAnswer(): Promise<number> }> {
  const socket = connect({ host: '127.0.0.1', port, noDelay: true });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  cleanups.push(async () => {
    socket.destroy();
  });
  const answers: number[] = [];
  let waiter: (() => void) | null = null;
  socket.on('data', (chunk: Buffer) => {
    answers.push(...chunk);
    waiter?.();
  });
  let read = 0;
  const nextAnswer = async (): Promise<number> => {
    while (read >= answers.length) await new Promise<void>((r) => (waiter = r));
    return answers[read++]!;
  };
  return { socket, nextAnswer };
}

describe('astm framing bare, on the real store', () => {
  it('the ACK of the block comes after its record is stored; a message cut by EOT stores nothing', async () => {
    const port = await freePort();
    const r = await deviceManagerRig({ drivers, cleanups, devices: [{ id: 'immuno-1', driver: 'astm', transport: { type: 'tcp-server', port }, options: { framing: 'bare' } }] });
    const device = await analyzer(port);
    device.socket.write(Buffer.from([ENQ]));
    expect(await device.nextAnswer()).toBe(ACK);
    device.socket.write(block(MESSAGE));
    expect(await device.nextAnswer()).toBe(ACK);
    expect(r.store.recordCount()).toBe(1);
    const [record] = r.store.recordsSince(0, 10) as unknown as Array<{ specimen: { id: string }; observations: Array<{ code: string; value: number; ucum: string }> }>;
    expect(record!.specimen.id).toBe('S-BARE-1');
    expect(record!.observations[0]).toMatchObject({ code: 'TSH II', value: 3.007, ucum: 'u[IU]/mL' });
    device.socket.write(Buffer.from([EOT]));

    device.socket.write(Buffer.from([ENQ]));
    expect(await device.nextAnswer()).toBe(ACK);
    device.socket.write(Buffer.concat([Buffer.from([0x02]), Buffer.from(MESSAGE.replace('S-BARE-1', 'S-BARE-2').slice(0, 80), 'latin1'), Buffer.from([EOT])]));
    await eventually('the cut message reported', () => r.events.some((e) => e.type === 'download_failed' && e.device === 'immuno-1'), 5000);
    expect(r.store.recordCount()).toBe(1);
  });
});
