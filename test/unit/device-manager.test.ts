import { describe, expect, it } from 'vitest';
import type { DriverDefinition, DriverSession, SessionHost } from '../../src/driver-sdk/index.ts';
import { NO_PARAMS, PATIENT_DATA_OMITTED } from '../../src/driver-sdk/index.ts';
import { drivers } from '../../drivers/index.ts';
import { paramsValidator } from '../../src/driver-sdk/commands.ts';
import { useCleanups, type Cleanups } from '../helpers/cleanups.ts';
import { ULTRA2_MEMORY } from '../helpers/daemon.ts';
import { deviceManagerRig } from '../helpers/device-manager-rig.ts';
import { eventually } from '../helpers/eventually.ts';

const cleanups = useCleanups();

const patientNameParams = {
  type: 'object',
  additionalProperties: false,
  properties: { patient_name: { type: 'string', 'x-patient': true } },
} as const;

/** A printer driver whose `print` a test releases by hand, counting the runs the session saw. */
function printerDriver() {
  const runs: Array<Record<string, unknown>> = [];
  const gates: Array<() => void> = [];
  let host: SessionHost | undefined;
  const session: DriverSession = {
    start: async () => undefined,
    stop: async () => undefined,
    command: async (verb, params) => {
      if (verb === 'status') return { ok: true };
      // A command whose answer repeats patient data (a lookup of the label's patient).
      if (verb === 'echo' || verb === 'lookup') return { patient_name: params.patient_name, ok: true };
      runs.push(params);
      await new Promise<void>((resolve) => gates.push(resolve));
      if (params.copies === 13) throw new Error('the printer jammed');
      host?.updateState({ status: 'ok', printer: { labels_remaining: 0, paper_out: false } });
      return { printed: params.copies };
    },
  };
  const driver: DriverDefinition = {
    id: 'probe-printer',
    kind: 'label-printer',
    vendor: 'Probe',
    models: ['P1'],
    usb: [],
    transports: ['simulated'],
    commands: {
      status: { description: 'state', params: NO_PARAMS },
      print: {
        description: 'print labels',
        params: {
          type: 'object',
          additionalProperties: false,
          required: ['copies'],
          properties: {
            copies: { type: 'integer', minimum: 1, maximum: 99 },
            label: {
              type: 'object',
              additionalProperties: false,
              properties: { patient_name: { type: 'string', 'x-patient': true }, specimen: { type: 'string' } },
            },
          },
        },
        response: { type: 'object', properties: { printed: { type: 'integer' } } },
      },
      echo: { description: 'answers with patient data; declares no response schema', params: patientNameParams },
      lookup: {
        description: 'answers with patient data, marked in its response schema',
        params: patientNameParams,
        response: { type: 'object', properties: { patient_name: { type: 'string', 'x-patient': true }, ok: { type: 'boolean' } } },
      },
    },
    decode: () => ({ drafts: {}, issues: [], device: {} }),
    createSession: (h) => {
      host = h;
      return session;
    },
    simulator: { description: 'nothing', options: {}, load: async () => ({ create: () => ({ attach: () => undefined, detach: () => undefined }) }) },
  };
  const releaseAll = (): void => gates.splice(0).forEach((g) => g());
  return { driver, runs, gates, releaseAll };
}

const printerDevice = { id: 'p1', driver: 'probe-printer', transport: { type: 'simulated' as const } };

describe('DeviceManager: device state poct.device-state/2', () => {
  it('a meter downloads over the real store: its state carries kind and the meter block, every published state valid', async () => {
    const r = await deviceManagerRig({
      drivers,
      cleanups,
      devices: [{ id: 'm1', driver: 'onetouch-ultra2', transport: { type: 'simulated', simulator: { memory: ULTRA2_MEMORY, unit: 'mmol/L' } } }],
    });
    await eventually('the meter state after its download', () => r.states('m1').some((s) => s.meter?.record_count === 3));
    const last = r.states('m1').at(-1)!;
    expect(last).toMatchObject({ schema: 'poct.device-state/2', kind: 'glucose-meter', status: 'ok', meter: { display_unit: 'mmol/L', record_count: 3 } });
    // The control-solution run is stored too, as a control.
    expect(r.store.recordCount()).toBe(3);
    await r.stop();
  });

  it('a hot-unplugged device publishes status unplugged, which its schema accepts', async () => {
    const r = await deviceManagerRig({ drivers, cleanups, devices: [{ id: 'm2', driver: 'onetouch-ultra2', transport: { type: 'simulated' } }] });
    await eventually('the first state', () => r.states('m2').length > 0);
    await r.manager.removeDevice('m2', 'unplugged');
    await eventually('status unplugged', () => r.states('m2').at(-1)?.status === 'unplugged');
    expect(r.events.map((e) => e.type)).toContain('device_removed');
    await r.stop();
  });

  it('a device its driver refuses publishes status unsupported with the reason', async () => {
    const p = printerDriver();
    const refusing: DriverDefinition = { ...p.driver, id: 'refusing', refuses: () => ({ model: 'P0', reason: 'encrypted protocol' }) };
    const r = await deviceManagerRig({ drivers: [refusing], cleanups, devices: [{ ...printerDevice, driver: 'refusing' }] });
    await eventually('status unsupported', () => r.states('p1').at(-1)?.status === 'unsupported');
    expect(r.states('p1').at(-1)).toMatchObject({ kind: 'label-printer', model: 'P0', status_detail: 'encrypted protocol', printer: { queued_jobs: 0 } });
    await r.stop();
  });

  it('a state saved by poct.device-state/1 (meter fields at the top) is read back into the meter block', async () => {
    const first = await deviceManagerRig({ drivers, cleanups, devices: [] });
    const v1 = { schema: 'poct.device-state/1', id: 'm3', driver: 'onetouch-ultra2', model: 'OneTouch Ultra 2', serial: 'OLD1', firmware: 'P1', display_unit: 'mg/dL', record_count: 7 };
    await first.writer.saveDeviceStates([v1 as never], new Date());
    await first.stop();
    const r = await deviceManagerRig({ drivers, cleanups, dbPath: first.dbPath, devices: [{ id: 'm3', driver: 'onetouch-ultra2', transport: { type: 'serial', path: '/dev/poctd-test-no-such-port' } }] });
    await eventually('a state', () => r.states('m3').length > 0);
    expect(r.states('m3')[0]).toMatchObject({ serial: 'OLD1', meter: { display_unit: 'mg/dL', record_count: 7 } });
    await r.stop();
  });
});

describe('DeviceManager: commands', () => {
  it("every registered driver's command params and response schema compiles", () => {
    for (const d of drivers) {
      for (const spec of Object.values(d.commands)) {
        expect(() => paramsValidator(spec.params)).not.toThrow();
        if (spec.response) expect(() => paramsValidator(spec.response!)).not.toThrow();
      }
    }
  });

  it('refuses params that do not fit the schema, naming the field, before the session sees them', async () => {
    const p = printerDriver();
    const r = await deviceManagerRig({ drivers: [p.driver], cleanups, devices: [printerDevice] });
    r.request('p1', 'print', { copies: 0 });
    expect(await r.response('p1', 'print', 1)).toEqual({ status: 'error', data: null, error: 'print: copies: must be >= 1' });
    r.request('p1', 'print', { copies: 2, colour: 'red' });
    expect((await r.response('p1', 'print', 2)).error).toBe('print: colour: unknown parameter');
    r.request('p1', 'print', {});
    expect((await r.response('p1', 'print', 3)).error).toBe('print: copies: required');
    r.request('p1', 'print', { copies: 'two', label: { specimen: 5 } });
    expect((await r.response('p1', 'print', 4)).error).toBe('print: copies: must be integer; label.specimen: must be string');
    r.request('p1', 'status', { verbose: true });
    expect((await r.response('p1', 'status', 1)).error).toBe('status: verbose: unknown parameter');
    expect(p.runs).toEqual([]);
    await r.stop();
  });

  it('a repeated transaction runs once: a repeat while running waits for the first outcome, a later one reads it', async () => {
    const p = printerDriver();
    const r = await deviceManagerRig({ drivers: [p.driver], cleanups, devices: [printerDevice] });
    r.request('p1', 'print', { copies: 2, transaction: 't1' });
    await eventually('the first run to start', () => p.runs.length === 1);
    r.request('p1', 'print', { copies: 2, transaction: 't1' });
    // Another transaction is a request of its own.
    r.request('p1', 'print', { copies: 3, transaction: 't2' });
    await eventually('the second transaction to start', () => p.runs.length === 2);
    p.releaseAll();
    const answers = [await r.response('p1', 'print', 1), await r.response('p1', 'print', 2), await r.response('p1', 'print', 3)];
    const t1 = answers.filter((a) => a.transaction === 't1');
    expect(t1).toEqual([
      { status: 'ok', data: { printed: 2 }, error: null, transaction: 't1' },
      { status: 'ok', data: { printed: 2 }, error: null, transaction: 't1' },
    ]);
    r.request('p1', 'print', { copies: 2, transaction: 't1' });
    expect(await r.response('p1', 'print', 4)).toEqual(t1[0]);
    expect(p.runs).toEqual([{ copies: 2 }, { copies: 3 }]);
    // The same transaction on another verb is another request.
    r.request('p1', 'status', { transaction: 't1' });
    expect(await r.response('p1', 'status', 1)).toEqual({ status: 'ok', data: { ok: true }, error: null, transaction: 't1' });
    await r.stop();
  });

  it('a redelivery after a restart is answered from the store, errors included, and not run again', async () => {
    const p = printerDriver();
    const first = await deviceManagerRig({ drivers: [p.driver], cleanups, devices: [printerDevice] });
    first.request('p1', 'print', { copies: 13, transaction: 42 });
    await eventually('the run', () => p.runs.length === 1);
    p.releaseAll();
    const failed = await first.response('p1', 'print');
    expect(failed).toEqual({ status: 'error', data: null, error: 'the printer jammed', transaction: 42 });
    await first.stop();

    const again = printerDriver();
    const r = await deviceManagerRig({ drivers: [again.driver], cleanups, dbPath: first.dbPath, devices: [printerDevice] });
    r.request('p1', 'print', { copies: 13, transaction: 42 });
    expect(await r.response('p1', 'print')).toEqual(failed);
    // The string "42" is not the number 42.
    r.request('p1', 'print', { copies: 1, transaction: '42' });
    await eventually('the run of "42"', () => again.runs.length === 1);
    again.releaseAll();
    expect(await r.response('p1', 'print', 2)).toEqual({ status: 'ok', data: { printed: 1 }, error: null, transaction: '42' });
    expect(again.runs).toEqual([{ copies: 1 }]);
    await r.stop();
  });

  it('the audit keeps who asked, the verb, params without patient data, the outcome and the transaction', async () => {
    const p = printerDriver();
    const r = await deviceManagerRig({ drivers: [p.driver], cleanups, devices: [printerDevice] });
    r.request('p1', 'print', { copies: 1, label: { patient_name: 'DOE^JANE', specimen: 'S1' }, requested_by: 'ward-3-dashboard', transaction: 'a1' });
    await eventually('the run', () => p.runs.length === 1);
    expect(p.runs[0]).toEqual({ copies: 1, label: { patient_name: 'DOE^JANE', specimen: 'S1' } });
    p.releaseAll();
    await r.response('p1', 'print');
    r.request('p1', 'print', { copies: 0 });
    await r.response('p1', 'print', 2);
    r.request('p1', 'reboot', { patient_id: 'P123' });
    await r.response('p1', 'reboot');
    r.request('p1', 'print', { copies: 1, requested_by: 7 });
    expect((await r.response('p1', 'print', 3)).error).toBe('requested_by: must be a string');
    await r.writer.drained();
    const rows = r.store.auditRows().map(({ at: _at, ...row }) => row);
    expect(rows).toEqual([
      {
        device_id: 'p1',
        verb: 'print',
        params: { copies: 1, label: { patient_name: PATIENT_DATA_OMITTED, specimen: 'S1' } },
        status: 'ok',
        detail: { printed: 1 },
        requested_by: 'ward-3-dashboard',
        transaction: 'a1',
      },
      { device_id: 'p1', verb: 'print', params: { copies: 0 }, status: 'error', detail: 'print: copies: must be >= 1', requested_by: null, transaction: null },
      {
        device_id: 'p1',
        verb: 'reboot',
        params: { patient_id: PATIENT_DATA_OMITTED },
        status: 'error',
        detail: 'probe-printer has no command "reboot" (known: status, print, echo, lookup)',
        requested_by: null,
        transaction: null,
      },
      { device_id: 'p1', verb: 'print', params: { copies: 1 }, status: 'error', detail: 'requested_by: must be a string', requested_by: null, transaction: null },
    ]);
    expect(JSON.stringify(r.store.auditRows())).not.toContain('DOE');
    await r.stop();
  });

  it('a response that carries patient data is not stored word for word: redacted by its schema, or only status and error without one', async () => {
    const p = printerDriver();
    const r = await deviceManagerRig({ drivers: [p.driver], cleanups, devices: [printerDevice] });
    r.request('p1', 'echo', { patient_name: 'DOE^JANE', transaction: 'e1' });
    // The client that asked gets the answer as the command gave it.
    expect(await r.response('p1', 'echo')).toEqual({ status: 'ok', data: { patient_name: 'DOE^JANE', ok: true }, error: null, transaction: 'e1' });
    r.request('p1', 'lookup', { patient_name: 'DOE^JOHN', transaction: 'l1' });
    expect((await r.response('p1', 'lookup')).data).toEqual({ patient_name: 'DOE^JOHN', ok: true });
    await r.writer.drained();
    const rows = r.store.auditRows();
    expect(rows.map((row) => [row.verb, row.status, row.detail])).toEqual([
      ['echo', 'ok', null],
      ['lookup', 'ok', { patient_name: PATIENT_DATA_OMITTED, ok: true }],
    ]);
    expect(JSON.stringify(rows)).not.toContain('DOE');
    // A repeat is answered from the stored outcome, which holds no patient data either.
    r.request('p1', 'echo', { patient_name: 'DOE^JANE', transaction: 'e1' });
    expect(await r.response('p1', 'echo', 2)).toEqual({ status: 'ok', data: null, error: null, transaction: 'e1' });
    r.request('p1', 'lookup', { patient_name: 'DOE^JOHN', transaction: 'l1' });
    expect((await r.response('p1', 'lookup', 2)).data).toEqual({ patient_name: PATIENT_DATA_OMITTED, ok: true });
    expect(JSON.stringify(r.store.requestOutcome('p1', 'echo', 'e1', new Date()))).not.toContain('DOE');
    await r.stop();
  });

  it('a request that is not JSON, or whose transaction is neither string nor number, gets a clear error', async () => {
    const p = printerDriver();
    const r = await deviceManagerRig({ drivers: [p.driver], cleanups, devices: [printerDevice] });
    r.request('p1', 'print', '{not json');
    expect(await r.response('p1', 'print')).toEqual({ status: 'error', data: null, error: 'request payload is not valid JSON' });
    r.request('p1', 'print', { copies: 1, transaction: { id: 1 } });
    expect(await r.response('p1', 'print', 2)).toEqual({ status: 'error', data: null, error: 'transaction: must be a string or a number' });
    expect(p.runs).toEqual([]);
    await r.stop();
  });

  it('a transaction longer than 200 characters is refused saying so, and echoed so the client can match the error', async () => {
    const p = printerDriver();
    const r = await deviceManagerRig({ drivers: [p.driver], cleanups, devices: [printerDevice] });
    const long = 'x'.repeat(201);
    r.request('p1', 'print', { copies: 1, transaction: long });
    expect(await r.response('p1', 'print')).toEqual({ status: 'error', data: null, error: 'transaction: at most 200 characters', transaction: long });
    // A number JSON cannot carry back (1e999 parses as Infinity) is refused, and not echoed.
    r.request('p1', 'print', '{"copies":1,"transaction":1e999}');
    expect(await r.response('p1', 'print', 2)).toEqual({ status: 'error', data: null, error: 'transaction: must be a finite number' });
    // 200 characters is still a transaction.
    r.request('p1', 'status', { transaction: long.slice(1) });
    expect((await r.response('p1', 'status')).transaction).toBe(long.slice(1));
    expect(p.runs).toEqual([]);
    await r.stop();
  });
});

describe('the device-manager rig checks every payload it sees', () => {
  it('a payload its topic schema refuses, a topic with no schema and a listen-only topic each fail the stop', async () => {
    const own: Cleanups = [];
    const r = await deviceManagerRig({ drivers, cleanups: own, devices: [] });
    const mqtt = r.services.mqtt;
    await mqtt.publish('poct/device/m9/response/print', { status: 'done' }, { qos: 1, retain: false });
    await mqtt.publish('poct/device/m9/availability', { state: 'online' }, { qos: 1, retain: true });
    await mqtt.publish('poct/device/m9/something-new', { hello: 1 }, { qos: 1, retain: false });
    await mqtt.publish('poct/device/m9/request/print', {}, { qos: 1, retain: false });
    const failure = await r.stop().then(
      () => undefined,
      (error: Error) => error.message,
    );
    own.splice(0);
    expect(failure).toMatch(/poct\/device\/m9\/response\/print: poct\.response\/1 /);
    expect(failure).toMatch(/poct\/device\/m9\/something-new: a topic with no schema in TOPIC_SCHEMAS/);
    expect(failure).toMatch(/poct\/device\/m9\/request\/print: the daemon only listens on device\/\+\/request\/\+/);
    expect(failure).not.toMatch(/availability/);
  });
});
