/**
 * The zebra-zpl session on the real store (device manager, writer thread, SQLite) against the fake
 * Zebra on a loopback TCP port: durable jobs, once per transaction, waits on a fault, uncertain
 * when the connection drops after the label was written, cancel and confirm, status on the state.
 */
import Database from 'better-sqlite3';
import { createServer, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import { FakeZebraPrinter } from '../../drivers/printers/zebra-zpl/simulator.ts';
import type { DeviceConfig } from '../../src/config/types.ts';
import type { PrintJobRecord } from '../../src/records/types.ts';
import { hasValidCheckChar } from '../../src/protocols/zpl/specimen-id.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { deviceManagerRig, type DeviceManagerRig } from '../helpers/device-manager-rig.ts';
import { eventually } from '../helpers/eventually.ts';
import { fieldTexts, SPECIMEN_REQUEST } from '../helpers/specimen-label.ts';
import { startFakeZebra } from '../helpers/fake-zebra.ts';

const cleanups = useCleanups();
const ID = 'draw-printer-1';

const REQUEST = SPECIMEN_REQUEST;

async function printerRig(printer: FakeZebraPrinter, dbPath?: string, options: Record<string, unknown> = {}): Promise<DeviceManagerRig> {
  const device: DeviceConfig = {
    id: ID,
    driver: 'zebra-zpl',
    transport: { type: 'tcp', host: '127.0.0.1', port: printer.port, reconnect_min_ms: 50, reconnect_max_ms: 200 },
    options: { status_poll_ms: 150, status_timeout_ms: 250, ...options },
  };
  return deviceManagerRig({ devices: [device], drivers, cleanups, ...(dbPath ? { dbPath } : {}) });
}

const fakePrinter = (options: Parameters<typeof startFakeZebra>[1] = {}): Promise<FakeZebraPrinter> => startFakeZebra(cleanups, options);

const jobRecords = (r: DeviceManagerRig): PrintJobRecord[] => r.mqtt.on(`poct/device/${ID}/job`) as PrintJobRecord[];
const storedJobSteps = (r: DeviceManagerRig, job: string): string[] =>
  (r.store.recordsSince(0, 1000) as unknown as PrintJobRecord[]).filter((x) => x.schema === 'poct.print-job/1' && x.job === job).map((x) => x.state);

/**
 * Waits until the printer has been asked `~HS` `count` more times. A send is one conversation in
 * the session's queue (its `~HS`, the format, then `~HS` again on the same connection), so after
 * three more queries any send already queued has reached the printer: the positive sign that
 * "nothing more was sent" can be checked, instead of a sleep.
 */
async function morePolls(printer: FakeZebraPrinter, count: number): Promise<void> {
  const polls = (): number => printer.printer.controls.filter((c) => c === 'HS').length;
  const target = polls() + count;
  await eventually(`${count} more status polls`, () => polls() >= target);
}

describe('zebra-zpl session', () => {
  it('stores the job before it answers, prints it, and publishes each step without patient data', async () => {
    const printer = await fakePrinter();
    const r = await printerRig(printer);
    r.request(ID, 'print', { ...REQUEST, copies: 2, transaction: 't1' });
    const response = await r.response(ID, 'print');
    expect(response).toMatchObject({ status: 'ok', transaction: 't1', data: { specimen_id: 'S24000123', state: 'queued' } });
    const job = (response.data as { job: string }).job;
    // Answered only once stored: the job row and its queued record are already there.
    expect(r.store.jobs.get(ID, job)).toMatchObject({ verb: 'print', transaction: 't1' });
    expect(storedJobSteps(r, job)[0]).toBe('queued');
    await eventually('two labels printed', () => printer.printer.printed.length === 2);
    expect(fieldTexts(printer.printer.printed[0]!.zpl)).toContain('Ærøe, Zoë');
    await eventually('job printed', () => r.store.jobs.get(ID, job)?.state === 'printed');
    expect(storedJobSteps(r, job)).toEqual(['queued', 'printing', 'printed']);
    // What goes out (the job records the outbox publishes, states, events) holds no name or MRN.
    const records = JSON.stringify(r.store.recordsSince(0, 100));
    const published = JSON.stringify(r.mqtt.published);
    for (const text of [records, published, JSON.stringify(r.events), JSON.stringify(r.store.auditRows())]) {
      expect(text).not.toContain('123456');
      expect(text).not.toContain('Zo');
    }
    expect(jobRecords(r)).toEqual([]); // the record publisher is not in this rig: the integration test sees the topic
  });

  it('the same transaction twice prints once and answers the first job', async () => {
    const printer = await fakePrinter();
    const r = await printerRig(printer);
    r.request(ID, 'print', { ...REQUEST, transaction: 'same' });
    const first = await r.response(ID, 'print', 1);
    await eventually('printed', () => printer.printer.printed.length === 1);
    r.request(ID, 'print', { ...REQUEST, transaction: 'same' });
    const second = await r.response(ID, 'print', 2);
    expect((second.data as { job: string }).job).toBe((first.data as { job: string }).job);
    await morePolls(printer, 3); // a second label would have been sent by now
    expect(printer.printer.formatsReceived).toBe(1);
  });

  it('a job accepted while the printer is unreachable prints once when it is back, also after a restart', async () => {
    const printer = await fakePrinter();
    await printer.setUnreachable(true);
    const r = await printerRig(printer);
    r.request(ID, 'print', { ...REQUEST, transaction: 'offline-1' });
    const response = await r.response(ID, 'print');
    expect(response).toMatchObject({ status: 'ok', data: { state: 'queued' } });
    const job = (response.data as { job: string }).job;
    await r.stop();
    // A new daemon on the same database: the job is still there and is sent when the printer is.
    const again = await printerRig(printer, r.dbPath);
    await printer.setUnreachable(false);
    await eventually('the label once', () => printer.printer.printed.length === 1);
    await eventually('job printed', () => again.store.jobs.get(ID, job)?.state === 'printed');
    again.request(ID, 'print', { ...REQUEST, transaction: 'offline-1' });
    expect(((await again.response(ID, 'print')).data as { job: string }).job).toBe(job);
    await morePolls(printer, 3);
    expect(printer.printer.formatsReceived).toBe(1);
  });

  it('paper out: the state says so, the job waits unsent, and prints when paper is loaded', async () => {
    const printer = await fakePrinter({ conditions: { paper_out: true, head_open: false, ribbon_out: false, paused: false } });
    const r = await printerRig(printer);
    await eventually('paper out on the state', () => r.states(ID).some((s) => s.status === 'fault' && s.printer?.paper_out === true));
    expect(r.states(ID).at(-1)!.status_detail).toBe('media out');
    r.request(ID, 'print', REQUEST);
    const job = ((await r.response(ID, 'print')).data as { job: string }).job;
    await eventually('queued on the state', () => r.states(ID).at(-1)!.printer?.queued_jobs === 1);
    await morePolls(printer, 3);
    expect(printer.printer.formatsReceived).toBe(0);
    expect(r.store.jobs.get(ID, job)!.state).toBe('queued');
    printer.printer.set({ paper_out: false });
    await eventually('printed after paper is loaded', () => r.store.jobs.get(ID, job)?.state === 'printed');
    expect(printer.printer.printed).toHaveLength(1);
    await eventually('queue empty on the state', () => r.states(ID).at(-1)!.printer?.queued_jobs === 0);
  });

  it('a connection that drops after the label was written leaves the job uncertain, never resent; confirm settles it', async () => {
    const printer = await fakePrinter();
    const r = await printerRig(printer);
    await eventually('online', () => r.states(ID).some((s) => s.status === 'ok'));
    printer.dropAfterNextFormat();
    r.request(ID, 'print', { ...REQUEST, transaction: 'drop' });
    const job = ((await r.response(ID, 'print')).data as { job: string }).job;
    await eventually('uncertain', () => r.store.jobs.get(ID, job)?.state === 'uncertain');
    expect(r.store.jobs.get(ID, job)!.reason).toMatch(/sent but the printer did not confirm|connection failed/);
    await morePolls(printer, 3);
    expect(printer.printer.formatsReceived).toBe(1);
    // Not on the tube: reprinted, the label marked REPRINT.
    r.request(ID, 'confirm', { job, printed: false });
    const confirmed = await r.response(ID, 'confirm');
    expect(confirmed).toMatchObject({ status: 'ok', data: { state: 'failed' } });
    await eventually('the reprint', () => printer.printer.printed.length === 2);
    expect(fieldTexts(printer.printer.printed[1]!.zpl)).toContain('REPRINT');
    expect(fieldTexts(printer.printer.printed[0]!.zpl)).not.toContain('REPRINT');
    expect(storedJobSteps(r, job)).toEqual(['queued', 'printing', 'uncertain', 'failed']);
  });

  it('cancels a queued job and refuses to cancel a printed one', async () => {
    const printer = await fakePrinter({ conditions: { paper_out: false, head_open: false, ribbon_out: false, paused: true } });
    const r = await printerRig(printer);
    r.request(ID, 'print', REQUEST);
    const job = ((await r.response(ID, 'print')).data as { job: string }).job;
    r.request(ID, 'cancel', { job });
    expect(await r.response(ID, 'cancel')).toMatchObject({ status: 'ok', data: { state: 'cancelled' } });
    printer.printer.set({ paused: false });
    r.request(ID, 'print', REQUEST);
    const second = ((await r.response(ID, 'print', 2)).data as { job: string }).job;
    await eventually('second printed', () => r.store.jobs.get(ID, second)?.state === 'printed');
    expect(printer.printer.printed).toHaveLength(1);
    r.request(ID, 'cancel', { job: second });
    expect(await r.response(ID, 'cancel', 2)).toMatchObject({ status: 'error', error: expect.stringContaining('only a queued job can be cancelled') });
    r.request(ID, 'jobs', {});
    const listed = (await r.response(ID, 'jobs')).data as { jobs: Array<{ job: string; state: string }> };
    expect(listed.jobs.map((j) => [j.job, j.state])).toEqual([[second, 'printed'], [job, 'cancelled']]);
  });

  it('issues a specimen id with a check character when the request has none, never the same twice across a restart', async () => {
    const printer = await fakePrinter();
    const r = await printerRig(printer, undefined, { specimen_ids: { prefix: 'D1', digits: 6 } });
    const { specimen_id: _none, ...withoutId } = REQUEST;
    r.request(ID, 'print', withoutId);
    const first = (await r.response(ID, 'print')).data as { specimen_id: string };
    expect(first.specimen_id).toMatch(/^D1000001.$/);
    expect(hasValidCheckChar(first.specimen_id)).toBe(true);
    await r.stop();
    const again = await printerRig(printer, r.dbPath, { specimen_ids: { prefix: 'D1', digits: 6 } });
    again.request(ID, 'print', withoutId);
    expect(((await again.response(ID, 'print')).data as { specimen_id: string }).specimen_id).toMatch(/^D1000002.$/);
  });

  it('answers a bad request with the field named, and stores no job', async () => {
    const printer = await fakePrinter();
    const r = await printerRig(printer);
    r.request(ID, 'print', { ...REQUEST, patient: { ...REQUEST.patient, dob: '1960-13-01' } });
    expect(await r.response(ID, 'print')).toMatchObject({ status: 'error', error: 'patient.dob: not a date (YYYY-MM-DD)' });
    r.request(ID, 'print', { ...REQUEST, copies: 50 });
    expect(await r.response(ID, 'print', 2)).toMatchObject({ status: 'error', error: 'print: copies: must be <= 10' });
    r.request(ID, 'print', { ...REQUEST, template: 'nope' });
    expect((await r.response(ID, 'print', 3)).error).toMatch(/^template: unknown template "nope"/);
    expect(r.store.jobs.recent(ID, 10)).toEqual([]);
    // The audit keeps no patient data of the refused requests.
    expect(JSON.stringify(r.store.auditRows())).not.toContain('Zo');
  });

  it('a printer that never answers: the job waits unsent, the state says no-answer, the other printer prints', async () => {
    const received: Buffer[] = [];
    const sockets = new Set<Socket>();
    const mute = createServer((socket) => {
      sockets.add(socket);
      socket.on('data', (d: Buffer) => received.push(d));
    });
    await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', () => resolve()));
    cleanups.push(() => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      mute.close(() => resolve());
    }));
    const good = await fakePrinter();
    const devices: DeviceConfig[] = [
      { id: 'mute', driver: 'zebra-zpl', transport: { type: 'tcp', host: '127.0.0.1', port: (mute.address() as { port: number }).port }, options: { status_poll_ms: 150, status_timeout_ms: 150 } },
      { id: ID, driver: 'zebra-zpl', transport: { type: 'tcp', host: '127.0.0.1', port: good.port }, options: { status_poll_ms: 150, status_timeout_ms: 250 } },
    ];
    const r = await deviceManagerRig({ devices, drivers, cleanups });
    r.request('mute', 'print', REQUEST);
    const job = ((await r.response('mute', 'print')).data as { job: string }).job;
    r.request(ID, 'print', REQUEST);
    const other = ((await r.response(ID, 'print')).data as { job: string }).job;
    await eventually('the other printer printed', () => r.store.jobs.get(ID, other)?.state === 'printed');
    await eventually('no-answer on the state', () => r.states('mute').some((st) => st.status === 'no-answer'));
    expect(r.events.some((e) => e.type === 'no_answer' && e.device === 'mute')).toBe(true);
    expect(r.store.jobs.get('mute', job)!.state).toBe('queued');
    // Only status queries went to the silent printer, never the label.
    expect(Buffer.concat(received).toString('latin1')).not.toContain('^XA');
  });

  it('a backlog from an outage drains in batches, every job printed exactly once', async () => {
    const printer = await fakePrinter();
    await printer.setUnreachable(true);
    const r = await printerRig(printer);
    const jobs: string[] = [];
    for (let n = 1; n <= 30; n++) {
      r.request(ID, 'print', { ...REQUEST, specimen_id: `S${1000 + n}`, transaction: `b${n}` });
      jobs.push(((await r.response(ID, 'print', n)).data as { job: string }).job);
    }
    await printer.setUnreachable(false);
    await eventually('all printed', () => jobs.every((j) => r.store.jobs.get(ID, j)?.state === 'printed'));
    expect(printer.printer.formatsReceived).toBe(30);
    // In the order they were accepted.
    expect(printer.printer.printed.map((l) => fieldTexts(l.zpl)[2])).toEqual(jobs.map((_, i) => `S${1001 + i}`));
    for (const j of jobs) expect(storedJobSteps(r, j)).toEqual(['queued', 'printing', 'printed']);
  });

  it('a fault reported right after the label was written leaves the job uncertain with the reason', async () => {
    const printer = await fakePrinter();
    const r = await printerRig(printer);
    await eventually('online', () => r.states(ID).some((s) => s.status === 'ok'));
    // The head is opened as the format arrives: it stays in the printer's buffer.
    printer.printer.once('format', () => printer.printer.set({ head_open: true }));
    r.request(ID, 'print', REQUEST);
    const job = ((await r.response(ID, 'print')).data as { job: string }).job;
    await eventually('uncertain', () => r.store.jobs.get(ID, job)?.state === 'uncertain');
    expect(r.store.jobs.get(ID, job)!.reason).toBe('the printer reported head open after the label was sent');
    expect(r.events.some((e) => e.type === 'device_error' && e.data?.reason === 'print-uncertain' && e.data?.job === job)).toBe(true);
    // Closed again: the printer prints what it held; the daemon sends nothing more.
    printer.printer.set({ head_open: false });
    // Two more ~HS polls answered with the head closed: the daemon has seen the fault clear.
    await morePolls(printer, 2);
    expect(printer.printer.formatsReceived).toBe(1);
    r.request(ID, 'confirm', { job, printed: true });
    expect(await r.response(ID, 'confirm')).toMatchObject({ status: 'ok', data: { state: 'printed' } });
    expect(storedJobSteps(r, job)).toEqual(['queued', 'printing', 'uncertain', 'printed']);
  });

  it('a job the daemon was sending when it died is uncertain after the restart, never sent again', async () => {
    const printer = await fakePrinter();
    await printer.setUnreachable(true);
    const r = await printerRig(printer);
    r.request(ID, 'print', REQUEST);
    const job = ((await r.response(ID, 'print')).data as { job: string }).job;
    await r.stop();
    // As a kill -9 between the write and the printer's answer leaves it.
    const db = new Database(r.dbPath);
    db.prepare(`UPDATE device_jobs SET state = 'printing', attempts = 1 WHERE id = ?`).run(job);
    db.close();
    await printer.setUnreachable(false);
    const again = await printerRig(printer, r.dbPath);
    await eventually('uncertain', () => again.store.jobs.get(ID, job)?.state === 'uncertain');
    expect(again.store.jobs.get(ID, job)!.reason).toBe('the daemon stopped while the label was being sent');
    await eventually('printer polled', () => printer.printer.controls.filter((c) => c === 'HS').length >= 2);
    expect(printer.printer.formatsReceived).toBe(0);
  });

  it('prints on the simulated transport (the in-process fake Zebra), and a paper-out simulator keeps the job queued', async () => {
    const devices: DeviceConfig[] = [
      { id: 'sim-ok', driver: 'zebra-zpl', transport: { type: 'simulated', simulator: { model: 'ZD621' } }, options: { status_poll_ms: 150, status_timeout_ms: 200 } },
      { id: 'sim-out', driver: 'zebra-zpl', transport: { type: 'simulated', simulator: { paper_out: true } }, options: { status_poll_ms: 150, status_timeout_ms: 200 } },
    ];
    const r = await deviceManagerRig({ devices, drivers, cleanups });
    r.request('sim-ok', 'print', REQUEST);
    const ok = ((await r.response('sim-ok', 'print')).data as { job: string }).job;
    r.request('sim-out', 'print', REQUEST);
    const out = ((await r.response('sim-out', 'print')).data as { job: string }).job;
    await eventually('printed', () => r.store.jobs.get('sim-ok', ok)?.state === 'printed');
    await eventually('model from ~HI', () => r.states('sim-ok').some((st) => st.model === 'ZD621'));
    await eventually('paper out', () => r.states('sim-out').some((st) => st.printer?.paper_out === true));
    expect(r.store.jobs.get('sim-out', out)!.state).toBe('queued');
  });
});
