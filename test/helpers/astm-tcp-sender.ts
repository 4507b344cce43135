import net from 'node:net';
import { encodeFrame, ENQ, EOT } from '../../src/protocols/astm/frame.ts';
import type { Cleanups } from './cleanups.ts';

/**
 * An analyzer's one ASTM message sent to a listener on loopback `port` in one write: ENQ, `records`
 * in frame 1, the terminator in frame 2, EOT, not waiting for the ACKs (the receiver's answers are
 * ignored). The connection stays open until the test's cleanups run.
 */
export async function sendAstmMessage(port: number, records: string, cleanups: Cleanups): Promise<void> {
  const socket = net.connect({ host: '127.0.0.1', port, noDelay: true });
  socket.on('error', () => undefined);
  socket.on('data', () => undefined);
  cleanups.push(async () => void socket.destroy());
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.write(Buffer.concat([Buffer.from([ENQ]), encodeFrame(1, records, false), encodeFrame(2, 'L|1|N\r', true), Buffer.from([EOT])]));
}
