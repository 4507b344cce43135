/**
 * An ASTM message with no results is ACKed (E1381: it arrived intact) and its bytes are kept in
 * quarantine (rule 6). Through the DeviceManager over the real store, with the test playing the
 * analyzer byte for byte on a TCP socket: the ACK of the message's last frame goes out only once
 * the quarantine row is stored, and a store that cannot keep it makes that frame a NAK.
 */
import Database from 'better-sqlite3';
import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import { ACK, ENQ, EOT, NAK, encodeFrame } from '../../src/protocols/astm/frame.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { deviceManagerRig, type DeviceManagerRig } from '../helpers/device-manager-rig.ts';
import { eventually } from '../helpers/eventually.ts';
import { freePort } from '../helpers/mosquitto.ts';

const cleanups = useCleanups();

const QUERY = 'H|\\^&|||C111^Roche^c111^4.2.2.1730^1^10001\rQ|1|^S0001||ALL||||||||O\rL|1|N\r';

/** The analyzer's end of one connection: what it writes, and each control byte the host answers. */
async function analyzer(port: number): Promise<{ socket: Socket; answers: number[]; nextAnswer(): Promise<number> }> {
  const socket = connect({ host: '127.0.0.1', port, noDelay: true });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  cleanups.push(async () => {
    socket.destroy();
  });
  const answers: number[] = [];
  let waiter: ((b: number) => void) | null = null;
  socket.on('data', (chunk: Buffer) => {
    for (const b of chunk) {
      answers.push(b);
      const w = waiter;
      waiter = null;
      w?.(b);
    }
  });
  let read = 0;
  const nextAnswer = (): Promise<number> =>
    read < answers.length ? Promise.resolve(answers[read++]!) : new Promise((resolve) => (waiter = (b) => resolve((read++, b))));
  return { socket, answers, nextAnswer };
}

async function rig(): Promise<{ r: DeviceManagerRig; port: number; rows: () => number }> {
  const port = await freePort();
  // The manager's start opens the listener before it resolves.
  const r = await deviceManagerRig({ drivers, cleanups, devices: [{ id: 'chem-1', driver: 'astm', transport: { type: 'tcp-server', port } }] });
  // Read through the main-thread connection, as another process would see the database.
  return { r, port, rows: () => r.store.quarantineCount() };
}

describe('astm: a message with no results, on the real store', () => {
  it('its last frame is ACKed only once the quarantine row is stored', async () => {
    const { r, port, rows } = await rig();
    // A slow disk: the writer stores the row, but only after the session has had every chance to answer first.
    const order: string[] = [];
    const store = r.writer.quarantine.bind(r.writer);
    r.writer.quarantine = async (...args) => {
      order.push('quarantine asked');
      await new Promise((resolve) => setTimeout(resolve, 200));
      await store(...args);
      order.push(`quarantine stored (${rows()} row)`);
    };
    const device = await analyzer(port);
    device.socket.write(Buffer.from([ENQ]));
    expect(await device.nextAnswer()).toBe(ACK);
    device.socket.write(encodeFrame(1, QUERY, true));
    const answer = await device.nextAnswer();
    order.push(`answer ${answer === ACK ? 'ACK' : answer} with ${rows()} quarantine row`);
    device.socket.write(Buffer.from([EOT]));
    expect(order).toEqual(['quarantine asked', 'quarantine stored (1 row)', 'answer ACK with 1 quarantine row']);
    await eventually('the query reported', () => r.events.some((e) => e.type === 'device_error' && e.device === 'chem-1'), 5000);
  });

  it('a store that cannot keep the bytes makes the last frame a NAK: never "received" for what is not kept', async () => {
    const { r, port, rows } = await rig();
    const db = new Database(r.dbPath);
    db.exec(`CREATE TRIGGER refuse_quarantine BEFORE INSERT ON quarantine BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END;`);
    cleanups.push(async () => {
      db.close();
    });
    const device = await analyzer(port);
    device.socket.write(Buffer.from([ENQ]));
    expect(await device.nextAnswer()).toBe(ACK);
    device.socket.write(encodeFrame(1, QUERY, true));
    expect(await device.nextAnswer()).toBe(NAK);
    expect(rows()).toBe(0);
    // The disk has room again: the analyzer sends the frame again, and now it is kept and ACKed.
    db.exec('DROP TRIGGER refuse_quarantine');
    device.socket.write(encodeFrame(1, QUERY, true));
    expect(await device.nextAnswer()).toBe(ACK);
    expect(rows()).toBe(1);
    expect(device.answers).toEqual([ACK, NAK, ACK]);
  });
});
