/**
 * One ASTM listening port shared by several analyzers, with real parts: the daemon with its store,
 * Mosquitto as the broker, ASTM simulators connecting over loopback TCP at the same time, and a
 * subscriber reading each device's result topic and the bridge events.
 */
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { AstmSimulator, parseSimulatorOptions } from '../../drivers/analyzers/astm/simulator.ts';
import { ACK, ENQ, NAK } from '../../src/protocols/astm/frame.ts';
import type { ResultRecord } from '../../src/records/types.ts';
import { TcpClientTransport } from '../../src/transports/tcp.ts';
import { brokerWithSubscriber } from '../helpers/broker.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { startDaemon, testConfig } from '../helpers/daemon.ts';
import { eventually } from '../helpers/eventually.ts';
import { freePort } from '../helpers/mosquitto.ts';

const cleanups = useCleanups();

/** A simulated analyzer calling the daemon's port, as `poctd simulate` would from another host. */
async function analyzer(port: number, options: Record<string, unknown>): Promise<AstmSimulator> {
  const t = new TcpClientTransport({ type: 'tcp', host: '127.0.0.1', port, reconnect_min_ms: 100, reconnect_max_ms: 200 });
  const sim = new AstmSimulator(parseSimulatorOptions({ reply_timeout_ms: 3000, max_chunk: 9, ...options }));
  sim.attach(t);
  cleanups.push(async () => {
    sim.detach();
    await t.close();
  });
  await t.open();
  return sim;
}

/** A caller that connects and never sends anything (a port scanner, a hung client). */
async function idlePeer(port: number): Promise<net.Socket> {
  const s = net.connect({ host: '127.0.0.1', port });
  s.on('error', () => undefined);
  cleanups.push(async () => void s.destroy());
  await new Promise<void>((resolve) => s.once('connect', () => resolve()));
  return s;
}

describe('astm: several analyzers on one tcp-server port', () => {
  it('routes each message by its H-5 sender to its own device, with the callers connected at once while an idle peer and a stalled analyzer hold connections', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const port = await freePort();
    const { controller } = await startDaemon(
      testConfig(`
site: clinic-a
mqtt: { url: ${broker.url} }
devices:
  - id: c111-bench1
    driver: astm
    timezone: Europe/Copenhagen
    transport: { type: tcp-server, port: ${port}, sender: "C111-BENCH1", idle_timeout_ms: 1500 }
    options: { dialect: roche-cobas-c111 }
  - id: c111-bench2
    driver: astm
    timezone: Europe/Copenhagen
    transport: { type: tcp-server, port: ${port}, sender: [c111-bench2, c111-spare], idle_timeout_ms: 1500 }
    options: { dialect: roche-cobas-c111 }
  - id: dca
    driver: astm
    timezone: Europe/Copenhagen
    transport: { type: tcp-server, port: ${port}, sender: DCA VANTAGE, idle_timeout_ms: 1500 }
`),
    );
    cleanups.push(() => controller.stop());

    // The idle peer connects first: under the old one-connection transport it locked everyone out.
    const idle = await idlePeer(port);
    const idleClosed = new Promise<void>((resolve) => idle.once('close', () => resolve()));
    // And an analyzer that bids, sends two frames and stalls mid-message: its transmission stays
    // open on its own connection, and no other caller waits for it.
    const stalled = await analyzer(port, { dialect: 'roche-cobas-c111', sender: 'C111-BENCH1^Roche^c111^4.2.2.1730^1^10001', count: 1, stall_after_frames: 2, framing: 'split', split_at: 20 });
    await eventually('the stalled analyzer got its frames ACKed', () => stalled.received.filter((b) => b === ACK).length >= 3, 5000);
    const sims = await Promise.all([
      analyzer(port, { dialect: 'roche-cobas-c111', sender: 'C111-BENCH1^Roche^c111^4.2.2.1730^1^10001', count: 2, seed: 1 }),
      analyzer(port, { dialect: 'roche-cobas-c111', sender: 'c111-bench2^Roche^c111^4.2.2.1730^1^10002', count: 2, seed: 2 }),
      analyzer(port, { dialect: 'siemens-dca-vantage', count: 2, seed: 3, framing: 'split', split_at: 30 }),
    ]);

    const topics = ['c111-bench1', 'c111-bench2', 'dca'].map((id) => `poct/device/${id}/result`);
    await sub.waitFor('2 results on each device topic', () => topics.every((t) => sub.on(t).length === 2), 20_000);
    await eventually('every message acknowledged', () => sims.every((s) => s.delivered === 2), 10_000);
    expect(topics.map((t) => sub.payloads<ResultRecord>(t).map((r) => [r.device.id, r.device.serial]))).toEqual([
      [['c111-bench1', '10001'], ['c111-bench1', '10001']],
      [['c111-bench2', '10002'], ['c111-bench2', '10002']],
      [['dca', 'S000001'], ['dca', 'S000001']],
    ]);
    expect(controller.runtime!.store.recordCount()).toBe(6);
    expect(sub.events().filter((e) => e.type === 'listener_refused')).toEqual([]);

    // The idle peer never sent a byte: it is let go after idle_timeout_ms.
    await idleClosed;
    expect(idle.bytesRead).toBe(0);
  });

  it('a message whose sender no device names: its last frame is NAKed, the caller closed, a listener_refused event raised, nothing stored; one log line for the retries', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const port = await freePort();
    const { controller, logs } = await startDaemon(
      testConfig(`
site: clinic-a
mqtt: { url: ${broker.url} }
devices:
  - id: c111
    driver: astm
    transport: { type: tcp-server, port: ${port}, sender: C111 }
`),
    );
    cleanups.push(() => controller.stop());

    const stranger = await analyzer(port, { dialect: 'siemens-dca-vantage', count: 1, seed: 4 });
    await sub.waitFor('two refusals (the analyzer retries)', () => sub.events().filter((e) => e.type === 'listener_refused').length >= 2, 15_000);
    const refusal = sub.events().find((e) => e.type === 'listener_refused')!;
    expect(refusal.device).toBeNull();
    expect(refusal.data).toMatchObject({ reason: 'unknown-sender', port, peer: '127.0.0.1', sender: 'DCA VANTAGE' });
    expect(refusal.message).toContain('no device on this port has sender "DCA VANTAGE"');
    // The analyzer was told NAK for its last frame and never ACK for the message.
    expect(stranger.received).toContain(NAK);
    expect(stranger.delivered).toBe(0);
    expect(stranger.failures.length).toBeGreaterThan(0);
    expect(sub.on('poct/device/c111/result')).toHaveLength(0);
    expect(controller.runtime!.store.recordCount()).toBe(0);
    expect(logs.lines.filter((l) => l.reason === 'unknown-sender')).toHaveLength(1);
  });

  it('a caller whose address no device lists is closed as it connects, with an event, and nothing is answered', async () => {
    const { broker, sub } = await brokerWithSubscriber(cleanups);
    const port = await freePort();
    const { controller } = await startDaemon(
      testConfig(`
site: clinic-a
mqtt: { url: ${broker.url} }
devices:
  - id: c111
    driver: astm
    transport: { type: tcp-server, port: ${port}, peers: [10.0.0.5] }
`),
    );
    cleanups.push(() => controller.stop());

    const caller = await idlePeer(port);
    const answered: number[] = [];
    caller.on('data', (chunk: Buffer) => answered.push(...chunk));
    const closed = new Promise<void>((resolve) => caller.once('close', () => resolve()));
    caller.write(Buffer.from([ENQ]));
    await closed;
    await sub.waitFor('listener_refused', () => sub.events().some((e) => e.type === 'listener_refused'));
    const refusal = sub.events().find((e) => e.type === 'listener_refused')!;
    expect(refusal.data).toMatchObject({ reason: 'peer-not-allowed', port, peer: '127.0.0.1', sender: null });
    expect(answered).not.toContain(ACK);
    expect(controller.runtime!.store.recordCount()).toBe(0);
  });
});
