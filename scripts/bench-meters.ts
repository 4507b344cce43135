/**
 * `npm run bench` helper: N simulated OneTouch Ultra 2 meters in their own process, each behind a
 * TCP port on loopback (like meters on a serial-to-Ethernet terminal server). Tells the parent
 * the ports; when asked, tells it for each meter the absolute time of the last byte of each
 * reply (not as they happen: the parent is the daemon being measured).
 */
import { onetouchUltra2 } from '../drivers/glucose/onetouch-ultra2/definition.ts';
import { createSimulator } from '../src/driver-sdk/index.ts';
import { TcpServerTransport } from '../src/transports/tcp.ts';

const count = Number(process.argv[2] ?? 200);
const send = (message: unknown): void => {
  process.send?.(message);
};
/** A reply's last write is the one not followed by another within this many ms. */
const QUIET_MS = 5;

const ports: number[] = [];
const lastBytes: number[][] = [];
for (let d = 0; d < count; d++) {
  const transport = new TcpServerTransport({ type: 'tcp-server', port: 0, bind: '127.0.0.1' });
  await transport.open();
  const ends: number[] = [];
  lastBytes.push(ends);
  let last = 0;
  let timer: NodeJS.Timeout | undefined;
  const write = transport.write.bind(transport);
  transport.write = (data: Buffer) => {
    last = performance.timeOrigin + performance.now();
    clearTimeout(timer);
    timer = setTimeout(() => ends.push(last), QUIET_MS);
    return write(data);
  };
  const simulator = await createSimulator(onetouchUltra2.simulator, {
    serial: `B${String(d).padStart(7, '0')}Y`,
    memory: [],
    new_reading_every_s: 1,
    capacity: 5,
    max_chunk: 64,
    timezone: 'UTC',
  });
  simulator.attach(transport);
  ports.push(transport.address()!.port);
}
send({ ports });
process.on('message', (m) => {
  if (m === 'report') send({ lastBytes });
});
process.on('disconnect', () => process.exit(0));
