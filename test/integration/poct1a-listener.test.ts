/**
 * POCT1-A end to end, with real parts: the daemon with its SQLite store, Mosquitto as the broker,
 * POCT1-A simulators dialling the daemon's listening port over loopback TCP (as devices on the
 * clinic network do), and a subscriber reading the result topics and the bridge events. Devices
 * share one port and are routed by their HEL's DEV.device_id (`transport.sender`).
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { parseSimulatorOptions, Poct1aSimulator } from '../../drivers/poct1a/simulator.ts';
import type { ResultRecord } from '../../src/records/types.ts';
import { TcpClientTransport } from '../../src/transports/tcp.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { eventually } from '../helpers/eventually.ts';
import { listenerDaemon } from '../helpers/listener-daemon.ts';
import { REPO_ROOT } from '../helpers/shared-fixtures.ts';
import { requireTool } from '../helpers/tools.ts';

const cleanups = useCleanups();

/** A simulated device dialling the daemon, as it would from the clinic network. */
async function device(port: number, options: Record<string, unknown>): Promise<{ sim: Poct1aSimulator; reconnect: () => Promise<void> }> {
  const sim = new Poct1aSimulator(parseSimulatorOptions({ max_chunk: 41, ...options }));
  const dial = async (): Promise<void> => {
    const t = new TcpClientTransport({ type: 'tcp', host: '127.0.0.1', port, reconnect_min_ms: 100, reconnect_max_ms: 200 });
    sim.attach(t);
    cleanups.push(async () => {
      sim.detach();
      await t.close();
    });
    await t.open();
  };
  await dial();
  return { sim, reconnect: dial };
}

describe('poct1a over TCP with Mosquitto', () => {
  it('a DCA Vantage and a glucose meter on one port, routed by DEV.device_id: results published, QC never patient, patient ids hashed', async () => {
    const { sub, port, controller } = await listenerDaemon(
      cleanups,
      (p) => `
  - id: dca-1
    driver: poct1a
    timezone: Europe/Copenhagen
    transport: { type: tcp-server, port: ${p}, sender: "SIEM^DCA Vantage^S013023" }
  - id: ward-meter-4
    driver: poct1a
    timezone: Europe/Copenhagen
    transport: { type: tcp-server, port: ${p}, sender: ["GLU^Meter^GM000004", "GLU^Meter^GM000005"] }`,
      'privacy: { patient_id: hash, hash_key: "0123456789abcdef0123456789abcdef" }',
    );
    const dca = await device(port, { scenario: 'dca-vantage', serial: 'S013023', count: 2 });
    const meter = await device(port, { scenario: 'glucose', serial: 'GM000004', count: 3 });
    await sub.waitFor('2 DCA results and 5 meter results', () => sub.on('poct/device/dca-1/result').length === 2 && sub.on('poct/device/ward-meter-4/result').length === 5, 20_000);
    await eventually('both devices in continuous mode', () => dca.sim.continuous && meter.sim.continuous, 10_000);
    const dcaRecs = sub.payloads<ResultRecord>('poct/device/dca-1/result');
    expect(dcaRecs.map((r) => [r.device.serial, r.category, r.observations[0]!.loinc])).toEqual([
      ['S013023', 'patient', '59261-8'],
      ['S013023', 'patient', '59261-8'],
    ]);
    for (const r of dcaRecs) expect(r.patient!.id).toMatch(/^hmac:/);
    const meterRecs = sub.payloads<ResultRecord>('poct/device/ward-meter-4/result');
    expect(meterRecs.map((r) => r.category)).toEqual(['patient', 'patient', 'patient', 'qc', 'qc']);
    expect(meterRecs.filter((r) => r.category === 'qc').every((r) => r.patient === null)).toBe(true);
    // No patient id in any topic name or retained device state.
    expect(sub.messages.some((m) => m.topic.includes('SIM-'))).toBe(false);
    const state = sub.last<Record<string, unknown>>('poct/device/dca-1');
    expect(state).toMatchObject({ serial: 'S013023', model: 'DCA Vantage', firmware: '4.4.0.0', analyzer: { dialect: 'siemens-dca-vantage', device_id: 'SIEM^DCA Vantage^S013023' } });
    expect(JSON.stringify(state)).not.toContain('SIM-');
    expect(controller.runtime!.store.recordCount()).toBe(7);
  });

  for (const fault of ['drop-before-ack', 'drop-mid-message'] as const) {
    it(`${fault}: the observation is published once, after the device sends it again on its next connection`, async () => {
      const { sub, port, controller } = await listenerDaemon(
        cleanups,
        (p) => `
  - id: dca-1
    driver: poct1a
    transport: { type: tcp-server, port: ${p} }`,
      );
      const dev = await device(port, { scenario: 'dca-vantage', count: 1, fault });
      await new Promise<void>((resolve) => dev.sim.once('dropped', () => resolve()));
      expect(dev.sim.delivered).toBe(0);
      if (fault === 'drop-mid-message') {
        // Half a message: kept in quarantine, never stored, never answered.
        await sub.waitFor('the cut message reported', () => sub.events('dca-1').some((e) => e.type === 'bad_frame' && e.data?.reason === 'incomplete-message'), 10_000);
        await eventually('the cut message kept in quarantine', () => controller.runtime!.store.quarantineCount() === 1, 5000);
        expect(controller.runtime!.store.recordCount()).toBe(0);
      }
      await dev.reconnect();
      await eventually('the device got its observation acknowledged on the second connection', () => dev.sim.delivered === 1, 10_000);
      // The transmissions' totals (the two connections may fall into one): dropped before its ACK,
      // the observation was stored the first time and its resend is a duplicate.
      const total = (key: string): number =>
        sub.events('dca-1').filter((e) => e.type === 'download_finished').reduce((n, e) => n + Number(e.data?.[key] ?? 0), 0);
      const sent = fault === 'drop-before-ack' ? 2 : 1;
      await sub.waitFor('the transmissions finished', () => total('records') === sent, 10_000);
      expect([total('inserted'), total('duplicates')]).toEqual([1, sent - 1]);
      expect(sub.on('poct/device/dca-1/result')).toHaveLength(1);
      expect(controller.runtime!.store.recordCount()).toBe(1);
    });
  }

  it('20 devices connected at once, each served on its own connection', async () => {
    const ids = Array.from({ length: 20 }, (_, i) => i + 1);
    const { sub, port } = await listenerDaemon(
      cleanups,
      (p) => `
${ids.map((i) => `  - { id: meter-${i}, driver: poct1a, transport: { type: tcp-server, port: ${p}, max_connections_per_peer: 32, sender: "GLU^Meter^GM${String(i).padStart(6, '0')}" } }`).join('\n')}`,
    );
    const sims = await Promise.all(ids.map((i) => device(port, { scenario: 'glucose', serial: `GM${String(i).padStart(6, '0')}`, count: 2, qc: false })));
    await sub.waitFor('2 results on each of the 20 topics', () => ids.every((i) => sub.on(`poct/device/meter-${i}/result`).length === 2), 30_000);
    await eventually('every device got both observations acknowledged', () => sims.every((s) => s.sim.delivered === 2), 10_000);
    for (const i of ids) expect(sub.payloads<ResultRecord>(`poct/device/meter-${i}/result`).every((r) => r.device.id === `meter-${i}`)).toBe(true);
  });

  it('devices sending a DOCTYPE bomb, malformed XML and an oversized message are answered ESC with events and quarantine, while another device on the port is served', async () => {
    const ids = ['GM000101', 'GM000102', 'GM000103', 'GM000104'];
    const { sub, port, controller } = await listenerDaemon(
      cleanups,
      (p) => `
${ids.map((serial, i) => `  - { id: m${i}, driver: poct1a, transport: { type: tcp-server, port: ${p}, sender: "GLU^Meter^${serial}" }, options: { max_message_bytes: 65536 } }`).join('\n')}`,
    );
    const faults = ['doctype', 'bad-xml', 'huge-message', 'none'] as const;
    const devs = await Promise.all(ids.map((serial, i) => device(port, { scenario: 'glucose', serial, count: 1, qc: false, fault: faults[i] })));
    await eventually('every device, faulty or not, got its observation stored and acknowledged', () => devs.every((d) => d.sim.delivered === 1), 20_000);
    await sub.waitFor('a result on each topic', () => ids.every((_, i) => sub.on(`poct/device/m${i}/result`).length === 1), 10_000);
    const reasons = (i: number): unknown[] => sub.events(`m${i}`).filter((e) => e.type === 'bad_frame').map((e) => e.data?.reason);
    expect(reasons(0)).toContain('doctype');
    expect(reasons(1)).toContain('malformed-xml');
    expect(reasons(2)).toContain('too-large');
    expect(reasons(3)).toEqual([]);
    await eventually('the refused bytes kept', () => controller.runtime!.store.quarantineCount() >= 3, 5000);
  });

  it('a device id no device names gets ACK AR, a listener_refused event and its connection closed; a peer not on the allow-list is closed; the others are served', async () => {
    const { sub, port, controller } = await listenerDaemon(
      cleanups,
      (p) => `
  - id: dca-1
    driver: poct1a
    transport: { type: tcp-server, port: ${p}, sender: "SIEM^DCA Vantage^S000001", peers: ["127.0.0.1"] }`,
    );
    const stranger = await device(port, { scenario: 'glucose', serial: 'GM999999', count: 1 });
    await sub.waitFor('a refusal', () => sub.events().some((e) => e.type === 'listener_refused'), 10_000);
    const refusal = sub.events().find((e) => e.type === 'listener_refused')!;
    expect(refusal.data).toMatchObject({ reason: 'unknown-sender', port, peer: '127.0.0.1', sender: 'GLU^Meter^GM999999' });
    await eventually('the stranger was answered AR', () => [...stranger.sim.acks.values()].includes('AR'), 5000);
    expect(stranger.sim.delivered).toBe(0);
    // A caller from an address no device lists (127.0.0.2 is loopback too, but not on the list) is closed on connect.
    const outsider = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' });
    outsider.on('error', () => undefined);
    await new Promise<void>((resolve) => outsider.once('close', () => resolve()));
    await sub.waitFor('the outsider refused', () => sub.events().some((e) => e.type === 'listener_refused' && e.data?.reason === 'peer-not-allowed'), 10_000);
    const known = await device(port, { scenario: 'dca-vantage', count: 1 });
    await sub.waitFor('the known device is served', () => sub.on('poct/device/dca-1/result').length === 1, 10_000);
    expect(known.sim.delivered).toBe(1);
    expect(controller.runtime!.store.recordCount()).toBe(1);
  });

  it('`poctd simulate poct1a --stdio` under socat dials the daemon like a device on the network, and its results are stored', async () => {
    const socat = requireTool('socat');
    const { sub, port } = await listenerDaemon(
      cleanups,
      (p) => `
  - id: dca-cli
    driver: poct1a
    transport: { type: tcp-server, port: ${p}, sender: "SIEM^DCA Vantage^S000777" }`,
    );
    const simulate = `${process.execPath} --import tsx cli/main.ts simulate poct1a --stdio --option serial=S000777 --option count=2`;
    const child = spawn(socat, [`TCP:127.0.0.1:${port}`, `EXEC:${simulate}`], { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    cleanups.push(async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
    });
    await sub.waitFor('2 results from the CLI simulator', () => sub.on('poct/device/dca-cli/result').length === 2, 30_000);
    expect(sub.payloads<ResultRecord>('poct/device/dca-cli/result').map((r) => r.device.serial)).toEqual(['S000777', 'S000777']);
  }, 40_000);

  it('device requests over MQTT: operators/sync pushes the list to the connected device, directive sends a vendor directive, and the audit keeps no operator password', async () => {
    const { sub, port, controller } = await listenerDaemon(
      cleanups,
      (p) => `
  - id: dca-1
    driver: poct1a
    transport: { type: tcp-server, port: ${p} }`,
    );
    const dev = await device(port, { scenario: 'dca-vantage', count: 0 });
    await eventually('continuous mode', () => dev.sim.continuous, 10_000);
    const synced = await sub.request<{ status: string; data: unknown }>('poct/device/dca-1/request/operators/sync', 'poct/device/dca-1/response/operators/sync', {
      transaction: 't-ops',
      operators: [{ id: 'OP1001', name: 'R. Nurse', password: 'pin-4711' }, { id: 'OP1002' }],
    });
    expect(synced).toMatchObject({ status: 'ok', data: { pushed: true, operators: 2, messages: 1 } });
    expect(dev.sim.operators).toEqual(['OP1001', 'OP1002']);
    const directive = await sub.request<{ status: string; data: unknown }>('poct/device/dca-1/request/directive', 'poct/device/dca-1/response/directive', { transaction: 't-dtv', command: 'START_CONTINUOUS' });
    expect(directive).toMatchObject({ status: 'ok', data: { command: 'START_CONTINUOUS', answer: 'AA' } });
    const unknown = await sub.request<{ status: string; error: string }>('poct/device/dca-1/request/directive', 'poct/device/dca-1/response/directive', { transaction: 't-bad', command: 'SELF_DESTRUCT' });
    expect(unknown.status).toBe('error');
    expect(unknown.error).toContain('does not list directive SELF_DESTRUCT');
    // Only the request itself carried the password: no response, event or state repeats it, nor the audit.
    expect(JSON.stringify(sub.messages.filter((m) => !m.topic.includes('/request/')).map((m) => m.payload))).not.toContain('pin-4711');
    const audit = controller.runtime!.store.auditRows();
    expect(audit.length).toBeGreaterThan(0);
    expect(JSON.stringify(audit)).not.toContain('pin-4711');
    expect(JSON.stringify(audit)).not.toContain('R. Nurse');
  });

  it('poct/bridge/request/operators/sync sends the list to every POCT1-A device, each its own audited request, run once per transaction', async () => {
    const { sub, port, controller } = await listenerDaemon(
      cleanups,
      (p) => `
  - id: dca-1
    driver: poct1a
    transport: { type: tcp-server, port: ${p}, sender: "SIEM^DCA Vantage^S000001" }
  - id: dca-2
    driver: poct1a
    transport: { type: tcp-server, port: ${p}, sender: "SIEM^DCA Vantage^S099999" }`,
    );
    const dev = await device(port, { scenario: 'dca-vantage', count: 0 });
    await eventually('continuous mode', () => dev.sim.continuous, 10_000);
    const body = { transaction: 't-all', operators: [{ id: 'OP2001', name: 'A. Tech', password: 'pin-0815' }] };
    const answer = await sub.request<{ status: string; data: { devices: Array<{ device: string; status: string; data: unknown }> } }>(
      'poct/bridge/request/operators/sync',
      'poct/bridge/response/operators/sync',
      body,
    );
    expect(answer.status).toBe('ok');
    // The connected device got it now; the other takes it on its next connection.
    expect(answer.data.devices.map((d) => [d.device, d.status])).toEqual([
      ['dca-1', 'ok'],
      ['dca-2', 'ok'],
    ]);
    expect(answer.data.devices[0]!.data).toMatchObject({ pushed: true, operators: 1 });
    expect(dev.sim.operators).toEqual(['OP2001']);
    const auditRows = () => controller.runtime!.store.auditRows().filter((r) => r.verb === 'operators/sync');
    expect(auditRows().map((r) => r.device_id).sort()).toEqual([null, 'dca-1', 'dca-2'].sort());
    // The same transaction again: answered from the first outcomes, the devices asked nothing more.
    const again = await sub.request<{ status: string; data: { devices: Array<{ device: string; status: string }> } }>(
      'poct/bridge/request/operators/sync',
      'poct/bridge/response/operators/sync',
      body,
    );
    expect(again.data.devices.map((d) => d.status)).toEqual(['ok', 'ok']);
    expect(auditRows().filter((r) => r.device_id !== null)).toHaveLength(2);
    expect(JSON.stringify(controller.runtime!.store.auditRows())).not.toContain('pin-0815');
  });
});
