/**
 * The `astm` driver end to end with real parts: the simulator as its own `poctd simulate astm`
 * process on a socat pty pair (real serialport library on both ends) or behind a TCP port, the
 * daemon with its store, Mosquitto as the broker and a subscriber reading the result topic.
 */
import { describe, expect, it } from 'vitest';
import { AstmSimulator, parseSimulatorOptions } from '../../drivers/analyzers/astm/simulator.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import type { DeviceState, ResultRecord } from '../../src/records/types.ts';
import { TcpClientTransport } from '../../src/transports/tcp.ts';
import { brokerWithSubscriber } from '../helpers/broker.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { startDaemon, testConfig } from '../helpers/daemon.ts';
import { freePort } from '../helpers/mosquitto.ts';
import { daemonOnSerial, simulateDevice, simulateSerialDevice } from '../helpers/serial-meter.ts';
import { startPtyPair } from '../helpers/socat.ts';

const cleanups = useCleanups();
const RESULT = 'poct/device/bench1/result';

const DCA_MESSAGE =
  'H|\\^&|||DCA VANTAGE^04.04.00.00^S000042|||||||P||20250314151746\rP|1|PAT1\rO|1||660^0090\rR|1|^^^Alb|63.7|mg/L||||F|||20250314151030\rR|2|^^^Crt|230.8|mg/dL||||F|||20250314151030\rR|3|^^^Ratio|27.6|mg/g||||F|||20250314151030\rL|1|N';

describe('astm over a socat pty pair, Mosquitto as broker', () => {
  it('receives messages from the simulator process (ETB splits, random chunks, a corrupted frame) and publishes schema-valid results', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const pty = await startPtyPair();
    cleanups.push(() => pty.stop());
    await daemonOnSerial(broker.url, pty.b, cleanups, 'options: { receive_timeout_ms: 1000 }', 'astm');
    simulateSerialDevice('astm', pty.a, { dialect: '77elektronika', count: 3, framing: 'split', split_at: 40, max_chunk: 7, corrupt_frame: 2, seed: 3 }, cleanups);

    await sub.waitFor('3 results', () => sub.on(RESULT).length >= 3, 20_000);
    const results = sub.payloads<ResultRecord>(RESULT);
    for (const r of results) expect(schemaProblems('poct.result/2', r)).toEqual([]);
    expect(results.map((r) => [r.device.driver, r.device.manufacturer, r.category, r.specimen.type])).toEqual(
      Array(3).fill(['astm', '77 Elektronika', 'patient', 'urine']),
    );
    expect(new Set(results.map((r) => r.id)).size).toBe(3);
    await sub.waitFor('bad_frame for the corrupted frame', () => sub.events().some((e) => e.type === 'bad_frame' && e.data?.reason === 'checksum'));
    await sub.waitFor('device state', () => sub.last<DeviceState>('poct/device/bench1')?.serial === 'UA300000001');
  });

  it('a device that stops mid-message without EOT: nothing published, partial discarded after the timer, the next message published once', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const pty = await startPtyPair();
    cleanups.push(() => pty.stop());
    const controller = await daemonOnSerial(broker.url, pty.b, cleanups, 'options: { receive_timeout_ms: 500 }', 'astm');
    simulateSerialDevice('astm', pty.a, { dialect: 'siemens-dca-vantage', count: 2, stall_after_frames: 3, reply_timeout_ms: 1000, seed: 5 }, cleanups);

    await sub.waitFor('download_failed', () => sub.events().some((e) => e.type === 'download_failed'), 15_000);
    expect(sub.on(RESULT)).toHaveLength(0);
    await sub.waitFor('the second message', () => sub.on(RESULT).length === 1, 15_000);
    await new Promise((r) => setTimeout(r, 1000));
    expect(sub.on(RESULT)).toHaveLength(1);
    expect(controller.runtime!.store.recordCount()).toBe(1);
  });
});

describe('astm over TCP, Mosquitto as broker', () => {
  it('device connects to the daemon (tcp-server): a peer that disconnects mid-message publishes nothing; the resent message is published exactly once', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const port = await freePort();
    const { controller } = await startDaemon(
      testConfig(`
site: clinic-a
mqtt: { url: ${broker.url} }
devices:
  - id: bench1
    driver: astm
    timezone: Europe/Copenhagen
    transport: { type: tcp-server, port: ${port}, bind: 127.0.0.1 }
    options: { receive_timeout_ms: 2000 }
`),
    );
    cleanups.push(() => controller.stop());

    const connect = async (options: Record<string, unknown>): Promise<{ sim: AstmSimulator; close: () => Promise<void> }> => {
      const t = new TcpClientTransport({ type: 'tcp', host: '127.0.0.1', port, reconnect_min_ms: 100, reconnect_max_ms: 200 });
      const sim = new AstmSimulator(parseSimulatorOptions({ messages: [DCA_MESSAGE], reply_timeout_ms: 2000, seed: 9, ...options }));
      sim.attach(t);
      await t.open();
      const close = async (): Promise<void> => {
        sim.detach();
        await t.close();
      };
      cleanups.push(close);
      return { sim, close };
    };

    // First connection: 3 frames of 6, then the cable is pulled (the socket closes).
    const first = await connect({ stall_after_frames: 3, framing: 'record-etb' });
    await sub.waitFor('connected', () => sub.events().some((e) => e.type === 'download_started'), 10_000);
    await new Promise((r) => setTimeout(r, 300));
    await first.close();
    await sub.waitFor('download_failed (link closed)', () => sub.events().some((e) => e.type === 'download_failed' && e.data?.reason === 'link-closed'), 10_000);
    expect(sub.on(RESULT)).toHaveLength(0);

    // The device comes back and sends the whole message; then once more (its last ACK was lost).
    const second = await connect({ framing: 'record-etb' });
    await sub.waitFor('the result', () => sub.on(RESULT).length === 1, 10_000);
    second.sim.send(DCA_MESSAGE);
    await sub.waitFor('delivered twice', () => second.sim.delivered === 2, 10_000);
    await new Promise((r) => setTimeout(r, 500));
    expect(sub.on(RESULT)).toHaveLength(1);
    const r = sub.payloads<ResultRecord>(RESULT)[0]!;
    expect(schemaProblems('poct.result/2', r)).toEqual([]);
    expect(r.observations.map((o) => [o.code, o.value, o.unit, o.loinc])).toEqual([
      ['Alb', 63.7, 'mg/L', '14957-5'],
      ['Crt', 230.8, 'mg/dL', '2161-8'],
      ['Ratio', 27.6, 'mg/g', '9318-7'],
    ]);
    expect(controller.runtime!.store.recordCount()).toBe(1);
  });

  it('daemon as TCP client to a listening simulator process (poctd simulate astm --tcp)', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const port = await freePort();
    await simulateDevice('astm', { tcp: port }, { dialect: 'horiba-pentra', count: 2, framing: 'record-etx', lowercase_checksum: true }, cleanups).ready;
    const { controller } = await startDaemon(
      testConfig(`
site: clinic-a
mqtt: { url: ${broker.url} }
devices:
  - id: bench1
    driver: astm
    timezone: Europe/Copenhagen
    transport: { type: tcp, host: 127.0.0.1, port: ${port}, reconnect_min_ms: 100, reconnect_max_ms: 500 }
`),
    );
    cleanups.push(() => controller.stop());
    await sub.waitFor('2 results', () => sub.on(RESULT).length >= 2, 20_000);
    const results = sub.payloads<ResultRecord>(RESULT);
    for (const r of results) {
      expect(schemaProblems('poct.result/2', r)).toEqual([]);
      expect(r.device.model).toBe('Pentra XLR');
      // The Pentra sends 789-9 for RBC, which fails the LOINC check digit: published with no LOINC.
      expect(r.observations.map((o) => o.loinc)).toEqual(['804-5', null, '717-9', '777-3']);
    }
  });
});
