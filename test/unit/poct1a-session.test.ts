/**
 * The `poct1a` session against its simulator over an in-memory cable: the basic profile and
 * continuous mode, ACK only after the commit (AE with the reason when the commit fails), QC runs
 * never patient results, bad input answered with ESC/AR and the conversation going on, busy
 * retries, ESC on a directive answered with END, clock skew and SET_TIME; and the decision tables
 * (category, observation flags, message aliases) one branch per case.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { poct1aDriver } from '../../drivers/poct1a/definition.ts';
import { genericProfile } from '../../drivers/poct1a/profiles/generic.ts';
import { siemensDcaVantageProfile } from '../../drivers/poct1a/profiles/siemens-dca-vantage.ts';
import { canonicalType, categoryOf, decodeObservationMessage, readPoctTime } from '../../drivers/poct1a/records.ts';
import { Poct1aSimulator } from '../../drivers/poct1a/simulator.ts';
import type { Capture } from '../../src/driver-sdk/index.ts';
import { parseDocument, type XmlNode } from '../../src/protocols/poct1a/document.ts';
import type { RecordDrafts } from '../../src/records/kinds.ts';
import type { ResultRecord } from '../../src/records/types.ts';
import { captureFromBytes } from '../../src/driver-sdk/capture.ts';
import { RECORD_KINDS } from '../../src/records/kinds.ts';
import { finalize } from '../../src/records/finalize.ts';
import { hashPatientId, resolvePrivacy } from '../../src/records/privacy.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import { memoryPair } from '../../src/transports/memory.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { itShared, sharedFixture } from '../helpers/shared-fixtures.ts';
import { FakeHost } from '../helpers/fake-host.ts';
import { sessionRig } from '../helpers/session-rig.ts';
import { createSimulator, type DriverSession } from '../../src/driver-sdk/index.ts';

const cleanups = useCleanups();

/** A host whose commits can be made to fail. */
class FailingHost extends FakeHost {
  failCommits = 0;
  override async commit(records: RecordDrafts, capture: Capture): Promise<{ inserted: number; duplicates: number }> {
    if (this.failCommits > 0) {
      this.failCommits--;
      this.order.push('commit:failed');
      throw new Error('disk full');
    }
    return super.commit(records, capture);
  }
}

async function rig(sim: Record<string, unknown> = {}, options: Record<string, unknown> = {}, host?: (d: ConstructorParameters<typeof FakeHost>[0], t: ConstructorParameters<typeof FakeHost>[1]) => FakeHost) {
  const simulator = (await createSimulator(poct1aDriver.simulator, { max_chunk: 37, ...sim })) as Poct1aSimulator;
  const r = await sessionRig<Poct1aSimulator, DriverSession>({
    cable: 'poct1a',
    device: { id: 'poc-1', driver: 'poct1a', transport: { type: 'simulated' }, options },
    simulator,
    createSession: (h) => poct1aDriver.createSession(h),
    host,
    start: true,
    cleanups,
  });
  r.deviceEnd.chunkSize = 23;
  await simulator.sayHello();
  return r;
}

const records = (h: FakeHost): ResultRecord[] => h.finalized as ResultRecord[];

describe('poct1a session (basic profile, continuous mode)', () => {
  it('plays the DCA Vantage conversation: HEL, DST, REQ ROBS, OBS ACKed, EOT, START_CONTINUOUS; identity on the device state', async () => {
    const { host, sim } = await rig({ scenario: 'dca-vantage', count: 2 });
    await host.until(() => sim.continuous);
    expect(sim.received).toEqual(['ACK.R01', 'ACK.R01', 'REQ.R01', 'ACK.R01', 'ACK.R01', 'DTV.R01']);
    expect(sim.delivered).toBe(2);
    const recs = records(host);
    expect(recs.map((r) => [r.category, r.observations.map((o) => [o.code, o.loinc, o.ucum])])).toEqual([
      ['patient', [['HbA1c', '59261-8', 'mmol/mol'], ['eAG', '27353-2', 'mg/dL']]],
      ['patient', [['HbA1c', '59261-8', 'mmol/mol'], ['eAG', '27353-2', 'mg/dL']]],
    ]);
    // The patient id went through the privacy policy (hash), never in the clear.
    expect(recs[0]!.patient!.id).toMatch(/^hmac:/);
    expect(host.published).toMatchObject({ manufacturer: 'Siemens Healthineers', model: 'DCA Vantage', serial: 'S000001', firmware: '4.4.0.0', analyzer: { dialect: 'siemens-dca-vantage' } });
    expect(host.published.clock_skew_s).toBeTypeOf('number');
    expect(host.types()).toContain('download_finished');
    // The capture of each record holds the HEL and the OBS, so a replay decodes the same record.
    const replay = poct1aDriver.decode(host.commits[0]!.capture, { deviceId: 'poc-1', timezone: host.timezone });
    expect(replay.drafts.result).toEqual(host.commits[0]!.drafts);
  });

  it('acknowledges an observation only after its commit finished', async () => {
    const { host, sim } = await rig({ count: 1 }, {}, (d, t) => {
      const h = new FakeHost(d, t);
      h.commitDelayMs = 150;
      return h;
    });
    sim.on('ack', (of: string, type: string) => host.order.push(`ack:${type}:${of}`));
    await host.until(() => sim.continuous);
    const commitEnd = host.order.indexOf('commit:end');
    const obsAck = host.order.findIndex((e, i) => e.startsWith('ack:AA') && i > host.order.indexOf('commit:start'));
    expect(commitEnd).toBeGreaterThan(-1);
    expect(obsAck).toBeGreaterThan(commitEnd);
  });

  it('a failed commit is answered ACK AE with the reason and nothing stored; the device sends it again, and it is stored once', async () => {
    const { host, sim } = await rig({ count: 1 }, {}, (d, t) => Object.assign(new FailingHost(d, t), { failCommits: 1 }));
    const answers: string[] = [];
    sim.on('ack', (_of: string, type: string) => answers.push(type));
    await host.until(() => sim.delivered === 1);
    expect(host.order.filter((o) => o.startsWith('commit:'))).toEqual(['commit:failed', 'commit:start', 'commit:end']);
    // HEL, DST, then the observation: AE for the failed commit, AA for the one sent again.
    expect(answers).toEqual(['AA', 'AA', 'AE', 'AA']);
    expect(host.types()).toContain('download_failed');
    expect(records(host)).toHaveLength(1);
  });

  it('glucose meter: patient results with limits and operator; QC runs as OBS.R02 and as OBS.R01 with role OBS are never patient', async () => {
    const { host, sim } = await rig({ scenario: 'glucose', count: 2 });
    await host.until(() => sim.continuous);
    const recs = records(host);
    expect(recs.map((r) => r.category)).toEqual(['patient', 'patient', 'qc', 'qc']);
    const [p1, , qc1, qc2] = recs;
    expect(p1!.observations[0]).toMatchObject({ code: '2341-6', loinc: '2341-6', value: 60, unit: 'mg/dL', ucum: 'mg/dL' });
    expect(p1!.observations[0]!.flags).toEqual(expect.arrayContaining(['method:M', 'status:A', 'normal:80;120 mg/dL', 'critical:60;140 mg/dL']));
    expect(p1!.operator).toEqual({ id: 'OP-SIM-1' });
    for (const qc of [qc1!, qc2!]) {
      expect(qc.patient).toBeNull();
      expect(qc.flags.some((f) => f.startsWith('control:QC-'))).toBe(true);
    }
    expect(qc1!.flags).toContain('role:LQC');
    expect(qc2!.flags).toContain('qc-in-obs-r01');
  });

  it('mode basic, or a device that escapes START_CONTINUOUS, gets END', async () => {
    const basic = await rig({ count: 1 }, { mode: 'basic' });
    await basic.host.until(() => basic.sim.ended);
    expect(basic.sim.received.at(-1)).toBe('END.R01');
    const refusing = await rig({ count: 1, refuse_continuous: true });
    await refusing.host.until(() => refusing.sim.ended);
    expect(refusing.sim.received.slice(-2)).toEqual(['DTV.R01', 'END.R01']);
    expect(refusing.host.events.some((e) => e.data?.reason === 'device-escape')).toBe(true);
  });

  it('a device that escapes START_CONTINUOUS and then ends the conversation itself: its observation stored once, the escape its only problem', async () => {
    const { host, sim } = await rig({ count: 1, refuse_continuous: true, end_after_escape: true });
    await host.until(() => host.events.some((e) => e.data?.reason === 'device-escape'));
    await host.until(() => sim.endedByDevice && records(host).length === 1);
    expect(sim.received.slice(0, 4)).toEqual(['ACK.R01', 'ACK.R01', 'REQ.R01', 'ACK.R01']);
    expect(sim.received.at(3 + 1)).toBe('DTV.R01');
    // Nothing but that one escape went wrong: no error event, no quarantine.
    expect(host.events.filter((e) => e.type === 'device_error' || e.type === 'bad_frame').map((e) => e.data?.reason)).toEqual(['device-escape']);
    expect(host.quarantined).toEqual([]);
    expect(records(host)).toHaveLength(1);
  });

  it('a busy device (ESC CNC to the REQ) is asked again, and sends everything', async () => {
    const { host, sim } = await rig({ count: 2, busy_once: true });
    await host.until(() => sim.continuous, 8000);
    expect(sim.received.filter((r) => r === 'REQ.R01')).toHaveLength(2);
    expect(sim.delivered).toBe(2);
  });

  it('a device clock off by more than the limit: clock_skew event, skew on the state, and SET_TIME when set_time is on', async () => {
    const { host, sim } = await rig({ count: 1, clock_offset_s: -7200 }, { set_time: true, clock_skew_limit_s: 60 });
    await host.until(() => sim.continuous);
    expect(sim.timeSet).toHaveLength(1);
    expect(host.published.clock_skew_flagged).toBe(true);
    expect(Math.abs(host.published.clock_skew_s! + 7200)).toBeLessThan(5);
    expect(host.types()).toContain('clock_skew');
  });
});

describe('poct1a session: the wire', () => {
  it('the same conversation cut into random chunks both ways gives the same records', async () => {
    const baseline = await rig({ scenario: 'glucose', count: 2 });
    await baseline.host.until(() => baseline.sim.continuous);
    const want = baseline.host.commits.map((c) => c.drafts);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 400 }), fc.integer({ min: 1, max: 400 }), async (fromDevice, toDevice) => {
        const r = await rig({ scenario: 'glucose', count: 2, max_chunk: fromDevice });
        r.hostEnd.chunkSize = toDevice;
        await r.host.until(() => r.sim.continuous);
        expect(r.host.commits.map((c) => c.drafts)).toEqual(want);
        await r.teardown();
      }),
      { numRuns: 6 },
    );
  });

  it('continuous mode: a silent device gets a keep-alive; one that answers nothing is no_answer and closed', async () => {
    const { host, sim } = await rig({ count: 0 }, { reply_timeout_ms: 150 });
    await host.until(() => sim.continuous);
    await host.until(() => sim.received.filter((r) => r === 'KPA.R01').length >= 2);
    expect(host.types()).not.toContain('no_answer');
    sim.mute = true;
    await host.until(() => host.types().includes('no_answer'));
  });

  for (const eventText of [false, true]) {
    it(`device events (EVS) become bridge events, acknowledged; the description text only with event_text (${eventText})`, async () => {
      const { host, sim, deviceEnd } = await rig({ count: 0 }, eventText ? { event_text: true } : {});
      await host.until(() => sim.continuous);
      await deviceEnd.write(
        Buffer.from('<EVS.R01><HDR><HDR.control_id V="555"/></HDR><EVS><EVT><EVT.event_cd V="OPL_OK"/><EVT.description V="Operator List Update Succeeded"/><EVT.severity_cd V="I"/></EVT></EVS></EVS.R01>'),
      );
      await host.until(() => sim.acks.get('555') === 'AA' && host.events.some((e) => e.data?.reason === 'device-event'));
      const ev = host.events.find((e) => e.data?.reason === 'device-event')!;
      expect(ev).toMatchObject({ type: 'device_error', data: { event_cd: 'OPL_OK', severity: 'I' } });
      if (eventText) expect(ev.message).toBe('device event: Operator List Update Succeeded');
      else expect(JSON.stringify(ev)).not.toContain('Operator List');
    });
  }
});

describe('poct1a session: operator lists and directives', () => {
  const operators = Array.from({ length: 30 }, (_, i) => ({ id: `OP${i}`, name: `Nurse Number ${i}`, password: `secret-${i}`, permission: '1' }));

  it('pushes the configured operator list after the observations, split to the device max_message_sz, and flags observations by operators not on it', async () => {
    const { host, sim } = await rig({ scenario: 'glucose', count: 1, qc: false }, { operators });
    await host.until(() => sim.continuous);
    expect(sim.operators).toEqual(operators.map((o) => o.id));
    expect(sim.operatorMessageSizes.length).toBeGreaterThan(1);
    for (const size of sim.operatorMessageSizes) expect(size).toBeLessThanOrEqual(1000);
    // The list goes before START_CONTINUOUS, and is followed by its EOT.
    expect(sim.received.indexOf('OPL.R01')).toBeLessThan(sim.received.indexOf('DTV.R01'));
    expect(sim.received[sim.received.indexOf('DTV.R01') - 1]).toBe('EOT.R01');
    // OP-SIM-1 (the simulator's operator) is not on the list.
    expect(records(host)[0]!.flags).toContain('operator-unknown');
  });

  it('an operator on the list is not flagged; with no list nothing is pushed and nobody flagged', async () => {
    const listed = await rig({ scenario: 'glucose', count: 1, qc: false }, { operators: [{ id: 'op-sim-1' }] });
    await listed.host.until(() => listed.sim.continuous);
    expect(records(listed.host)[0]!.flags).not.toContain('operator-unknown');
    const none = await rig({ scenario: 'glucose', count: 1, qc: false });
    await none.host.until(() => none.sim.continuous);
    expect(none.sim.received).not.toContain('OPL.R01');
    expect(records(none.host)[0]!.flags).not.toContain('operator-unknown');
  });

  it('operators/sync pushes a new list to a device in continuous mode and answers once it is acknowledged; directive sends a listed DTV', async () => {
    const { host, sim, session } = await rig({ scenario: 'dca-vantage', count: 0 });
    await host.until(() => sim.continuous);
    const r = await session.command('operators/sync', { operators: [{ id: 'A1' }, { id: 'B2', password: 'pw' }] });
    expect(r).toEqual({ pushed: true, queued: false, operators: 2, messages: 1 });
    expect(sim.operators).toEqual(['A1', 'B2']);
    expect(await session.command('directive', { command: 'START_CONTINUOUS' })).toEqual({ command: 'START_CONTINUOUS', answer: 'AA' });
    await expect(session.command('directive', { command: 'LOCK' })).rejects.toThrow(/does not list directive LOCK/);
  });

  it('operators/sync with no device connected is queued for the next connection', async () => {
    const { host, sim, session } = await rig({ scenario: 'dca-vantage', count: 0 }, { mode: 'basic' });
    await host.until(() => sim.ended);
    expect(await session.command('operators/sync', { operators: [{ id: 'Z9' }] })).toEqual({ pushed: false, queued: true, operators: 1 });
    await sim.sayHello();
    await host.until(() => sim.operators.includes('Z9'));
  });
});

describe('poct1a session: bad input', () => {
  for (const [fault, reason, options] of [
    ['bad-xml', 'malformed-xml', {}],
    ['doctype', 'doctype', {}],
    ['huge-message', 'too-large', { max_message_bytes: 65_536 }],
  ] as const) {
    it(`${fault}: ESC to the device, a bad_frame event, the bytes kept, and the observations still stored`, async () => {
      const { host, sim } = await rig({ count: 1, fault }, options);
      const escapes: unknown[] = [];
      sim.on('escape', (r: unknown) => escapes.push(r));
      await host.until(() => sim.continuous, 8000);
      expect(escapes.length).toBeGreaterThan(0);
      expect(host.events.filter((e) => e.type === 'bad_frame').map((e) => e.data?.reason)).toContain(reason);
      expect(host.quarantined.map((q) => q.reason)).toContain(reason);
      expect(sim.delivered).toBe(1);
      expect(records(host)).toHaveLength(1);
      if (fault === 'huge-message') expect(Math.max(...host.quarantined.map((q) => q.bytes.length))).toBeLessThanOrEqual(65_536);
    });
  }

  it('a control id used twice in one connection is an event; both observations are stored', async () => {
    const { host, sim } = await rig({ count: 2, fault: 'duplicate-control-id' });
    await host.until(() => sim.continuous);
    expect(host.events.some((e) => e.data?.reason === 'duplicate-control-id')).toBe(true);
    expect(records(host)).toHaveLength(2);
  });

  it('an unknown message type gets ESC and an event; an ACK for an id we never sent is an event; a message before HEL is refused AR', async () => {
    const { host, sim, deviceEnd } = await rig({ count: 0 });
    await host.until(() => sim.continuous || sim.ended);
    await deviceEnd.write(Buffer.from('<?xml version="1.0"?><FOO.R01><HDR><HDR.control_id V="77"/></HDR></FOO.R01>'));
    await host.until(() => host.events.some((e) => e.data?.reason === 'unsupported-message'));
    await deviceEnd.write(Buffer.from('<ACK.R01><HDR><HDR.control_id V="78"/></HDR><ACK><ACK.type_cd V="AA"/><ACK.ack_control_id V="999999"/></ACK></ACK.R01>'));
    await host.until(() => host.events.some((e) => e.data?.reason === 'wrong-ack-id'));
    expect(sim.received).toContain('ESC.R01');
  });
});

describe('poct1a: the real DCA Vantage conversation', () => {
  const file = sharedFixture('poct1a/siemens-dca-vantage-conversation.txt');
  itShared([file], 'HbA1c 64 mmol/mol and eAG 183 mg/dL, reagent lot 0852, and the patient id only as the privacy policy says', () => {
    const r = poct1aDriver.decode(captureFromBytes(file.bytes()), { deviceId: 'dca-1', timezone: 'America/Los_Angeles' });
    const [draft] = r.drafts.result!;
    expect(draft!.observations.map((o) => [o.code, o.value, o.ucum, o.loinc])).toEqual([
      ['HbA1c', 64, 'mmol/mol', '59261-8'],
      ['eAG', 183, 'mg/dL', '27353-2'],
    ]);
    expect(draft!.flags).toContain('reagent-lot:0852');
    const raw = { sha256: '0'.repeat(64), size: 1, kind: 'raw' as const };
    const fin = (privacy: Parameters<typeof resolvePrivacy>[0]) =>
      finalize(RECORD_KINDS.result, draft!, { seq: 1, site: 's', receivedAt: new Date().toISOString(), raw, timezone: 'America/Los_Angeles', privacy: resolvePrivacy(privacy) });
    const key = 'k'.repeat(32);
    expect(fin({ patient_id: 'hash', hash_key: key }).patient).toEqual({ id: hashPatientId('1', key) });
    expect(fin({ patient_id: 'omit' }).patient).toEqual({ id: null });
    // No key at hand (a replay without a config): fails closed, omitted.
    expect(fin({ patient_id: 'hash' }).patient).toEqual({ id: null });
    expect(fin({ patient_id: 'publish' }).patient).toEqual({ id: '1' });
    expect(schemaProblems(RECORD_KINDS.result.schema, fin({ patient_id: 'omit' }))).toEqual([]);
  });
});

describe('poct1a vendor quirks in a conversation', () => {
  it('HEL.R02 is a hello; SET.R01 is acknowledged and not interpreted; an OBS before any HEL is refused AR', async () => {
    const { host, sim, deviceEnd } = await rig({ count: 0 });
    await host.until(() => sim.continuous);
    const hel2 = '<HEL.R02><HDR><HDR.control_id V="901"/><HDR.creation_dttm V="2026-01-05T09:00:00+01:00"/></HDR><DEV><DEV.device_id V="NOVA^StatStrip^77"/><DEV.model_id V="StatStrip"/></DEV></HEL.R02>';
    await deviceEnd.write(Buffer.from(hel2 + '<SET.R01><HDR><HDR.control_id V="902"/></HDR></SET.R01>'));
    await host.until(() => sim.acks.get('901') === 'AA' && sim.acks.get('902') === 'AA');
    expect(host.published.model).toBe('StatStrip');
  });

  it('an observation before any HEL is refused AR (the device is not identified) and nothing is stored', async () => {
    const { host: hostEnd, device: deviceEnd } = memoryPair('poct1a-no-hello');
    const host = new FakeHost({ id: 'poc-1', driver: 'poct1a', transport: { type: 'simulated' }, options: {} }, hostEnd);
    const session = poct1aDriver.createSession(host);
    cleanups.push(async () => {
      await session.stop();
      await hostEnd.close();
      await deviceEnd.close();
    });
    await session.start();
    await hostEnd.open();
    await deviceEnd.open();
    const heard: Buffer[] = [];
    deviceEnd.on('data', (b: Buffer) => heard.push(b));
    await deviceEnd.write(Buffer.from('<OBS.R01><HDR><HDR.control_id V="5"/></HDR><SVC><SVC.observation_dttm V="2026-01-05T08:00:00Z"/><PT><OBS><OBS.observation_id V="2341-6" SN="LN"/><OBS.value V="90" U="mg/dL"/></OBS></PT></SVC></OBS.R01>'));
    await host.until(() => Buffer.concat(heard).includes('</ACK.R01>'));
    const reply = parseDocument(Buffer.concat(heard));
    expect(reply.ok && reply.message.root).toBe('ACK.R01');
    const text = Buffer.concat(heard).toString();
    expect(text).toContain('<ACK.type_cd V="AR"/><ACK.ack_control_id V="5"/>');
    expect(text).toContain('HEL.R01 first');
    expect(host.commits).toHaveLength(0);
    expect(host.events.map((e) => e.data?.reason)).toContain('hello-expected');
  });
});

// ── decision tables, one branch per case ──

function svc(xml: string): XmlNode {
  const r = parseDocument(Buffer.from(`<OBS.R01>${xml}</OBS.R01>`));
  if (!r.ok) throw new Error(r.reason);
  return (r.message.body.SVC as XmlNode[])[0]!;
}

describe('poct1a category', () => {
  const pt = '<PT><OBS><OBS.observation_id V="x"/></OBS></PT>';
  const ctc = '<CTC><OBS><OBS.observation_id V="x"/></OBS></CTC>';
  it.each([
    ['OBS.R01', `<SVC><SVC.role_cd V="OBS"/>${pt}</SVC>`, 'patient'],
    ['OBS.R01', `<SVC>${pt}</SVC>`, 'patient'],
    ['OBS.R01', `<SVC><SVC.role_cd V="OBS"/>${ctc}</SVC>`, 'qc'],
    ['OBS.R01', `<SVC><SVC.role_cd V="LQC"/>${pt}</SVC>`, 'qc'],
    ['OBS.R01', `<SVC><SVC.role_cd V="CAL"/>${pt}</SVC>`, 'calibration'],
    ['OBS.R02', `<SVC><SVC.role_cd V="OBS"/>${pt}</SVC>`, 'qc'],
    ['OBS.R02', `<SVC><SVC.role_cd V="PRF"/>${ctc}</SVC>`, 'proficiency'],
    ['OBS.R02', `<SVC><SVC.role_cd V="EQC"/>${ctc}</SVC>`, 'qc'],
    ['OBS.R02', `<SVC><SVC.role_cd V="???"/>${ctc}</SVC>`, 'qc'],
    ['OBS.R03', `<SVC><SVC.role_cd V="OBS"/>${pt}</SVC>`, 'qc'],
  ])('%s %s → %s', (type, xml, want) => {
    expect(categoryOf(type, svc(xml), genericProfile)).toBe(want);
  });
});

describe('poct1a observations', () => {
  const decode = (inner: string, profile = genericProfile) => {
    const r = parseDocument(Buffer.from(`<OBS.R02><SVC><SVC.observation_dttm V="2026-01-05T08:00:00+01:00"/><CTC>${inner}</CTC></SVC></OBS.R02>`));
    if (!r.ok) throw new Error(r.reason);
    return decodeObservationMessage(r.message, 'OBS.R02', null, profile, { deviceId: 'd', timezone: 'UTC' }).drafts[0]!.observations[0]!;
  };
  it('off-range values are flags with the device limit, never a made-up number', () => {
    expect(decode('<OBS><OBS.observation_id V="2341-6" SN="LN"/><OBS.value V="&gt;600" U="mg/dL"/></OBS>')).toMatchObject({ value: null, comparator: '>', limit: 600, flags: ['HI'] });
    expect(decode('<OBS><OBS.observation_id V="2341-6" SN="LN"/><OBS.value V="<20" U="mg/dL"/></OBS>'.replace('<20', '&lt;20'))).toMatchObject({ value: null, comparator: '<', limit: 20, flags: ['LO'] });
    expect(decode('<OBS><OBS.observation_id V="2341-6" SN="LN"/><OBS.value V="HI" U="mg/dL"/></OBS>')).toMatchObject({ value: null, comparator: '>', limit: null, flags: ['HI'], text: 'HI' });
    expect(decode('<OBS><OBS.observation_id V="2341-6" SN="LN"/><OBS.value V="LO" U="mg/dL"/></OBS>')).toMatchObject({ value: null, comparator: '<', flags: ['LO'] });
  });
  it('interpretation codes N/L/H/LL/HH, qualitative values, identifiers with spaces, a number without a unit', () => {
    for (const [cd, flag] of [['N', []], ['L', ['L']], ['H', ['H']], ['LL', ['LL']], ['HH', ['HH']]] as const) {
      expect(decode(`<OBS><OBS.observation_id V="2341-6" SN="LN"/><OBS.value V="5" U="mmol/L"/><OBS.interpretation_cd V="${cd}"/></OBS>`).flags).toEqual(flag);
    }
    expect(decode('<OBS><OBS.observation_id V=" Strep A " SN="VND"/><OBS.qualitative_value V="Negative"/></OBS>')).toMatchObject({ code: 'Strep A', text: 'Negative', value: null, flags: ['unmapped-code'] });
    expect(decode('<OBS><OBS.observation_id V="2341-6" SN="LN"/><OBS.value V="5"/></OBS>')).toMatchObject({ value: null, text: '5', flags: ['no-unit'] });
  });
  it('a profile code in a unit its table does not have keeps its unit and loses the LOINC code', () => {
    expect(decode('<OBS><OBS.observation_id V="HbA1c" SN="SIEM"/><OBS.value V="6.1" U="%"/></OBS>', siemensDcaVantageProfile)).toMatchObject({ loinc: '4548-4', ucum: '%' });
    expect(decode('<OBS><OBS.observation_id V="HbA1c" SN="SIEM"/><OBS.value V="6.1" U="mg/dL"/></OBS>', siemensDcaVantageProfile)).toMatchObject({ loinc: null, flags: ['unit-mismatch'] });
  });
  it('HEL.R02 is read as HEL.R01; times without a zone take the device zone', () => {
    expect(canonicalType('HEL.R02', genericProfile)).toBe('HEL.R01');
    expect(canonicalType('obs.r01', genericProfile)).toBe('OBS.R01');
    expect(readPoctTime('2018-07-26T15:51:26', 'America/Los_Angeles')).toEqual({ at: '2018-07-26T15:51:26-07:00', wall: '2018-07-26T15:51:26', zoned: false });
    expect(readPoctTime('2001-11-01T16:29:54-0500', 'UTC')).toEqual({ at: '2001-11-01T16:29:54-05:00', wall: '2001-11-01T16:29:54', zoned: true });
    expect(readPoctTime('yesterday', 'UTC')).toBeNull();
  });
});
