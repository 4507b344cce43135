import { describe, expect, it } from 'vitest';
import { astmDriver } from '../../drivers/analyzers/astm/definition.ts';
import { parseAstmOptions } from '../../drivers/analyzers/astm/options.ts';
import { decodeAstm, decodeAstmMessage } from '../../drivers/analyzers/astm/records.ts';
import { parseSimulatorOptions, AstmSimulator } from '../../drivers/analyzers/astm/simulator.ts';
import { DIALECTS } from '../../drivers/analyzers/astm/dialects/index.ts';
import type { DriverSession } from '../../src/driver-sdk/index.ts';
import type { DeviceConfig } from '../../src/config/types.ts';
import { encodeTransmission } from '../../src/protocols/astm/frame.ts';
import { schemaProblems } from '../../src/records/schemas.ts';
import { memoryPair, type MemoryTransport } from '../../src/transports/memory.ts';
import { useCleanups } from '../helpers/cleanups.ts';
import { eventually } from '../helpers/eventually.ts';
import { FakeHost } from '../helpers/fake-host.ts';

const cleanups = useCleanups();

async function setup(options: Record<string, unknown> = {}, sim: Record<string, unknown> = {}): Promise<{ host: FakeHost; session: DriverSession; simulator: AstmSimulator; device: MemoryTransport }> {
  const { host: hostT, device } = memoryPair('astm');
  const host = new FakeHost({ id: 'lab-1', driver: 'astm', transport: { type: 'simulated' }, options: { receive_timeout_ms: 300, ...options } } as DeviceConfig, hostT);
  const session = astmDriver.createSession(host);
  await session.start();
  await hostT.open();
  const simulator = new AstmSimulator(parseSimulatorOptions({ seed: 1, reply_timeout_ms: 500, count: 0, ...sim }));
  simulator.attach(device);
  await device.open();
  cleanups.push(async () => {
    simulator.detach();
    await session.stop();
  });
  return { host, session, simulator, device };
}

const ctx = { deviceId: 'lab-1', timezone: 'Europe/Copenhagen' };

describe('astm session with the simulator', () => {
  it('a simulator whose cable is down hears of the failed write at once and sends the message again', async () => {
    const { device } = memoryPair('astm-down');
    // reply_timeout_ms is long: the failure must come from the write, not from waiting for an answer.
    const simulator = new AstmSimulator(parseSimulatorOptions({ seed: 1, reply_timeout_ms: 10_000, count: 0 }));
    await device.open();
    device.write = async () => {
      throw new Error('EIO');
    };
    simulator.attach(device);
    cleanups.push(async () => simulator.detach());
    simulator.sendNext();
    await eventually('the failed write reported', () => simulator.failures.length === 1, 2000);
    expect(simulator.failures[0]).toMatch(/write failed: EIO/);
    await eventually('sent again a second later', () => simulator.failures.length === 2, 3000);
  });

  it.each(DIALECTS.map((d) => d.id))('stores a %s message; its capture decodes to the same records, valid against the schema', async (dialect) => {
    const { host, simulator } = await setup({}, { dialect, count: 1 });
    await host.until(() => host.commits.length === 1);
    await host.until(() => simulator.delivered === 1);
    const { drafts, capture } = host.commits[0]!;
    expect(drafts).toHaveLength(1);
    expect(decodeAstm(capture, ctx).drafts).toEqual(host.commits[0]!.records);
    const d = drafts[0]!;
    expect(d.device.driver).toBe('astm');
    expect(d.category).toBe('patient');
    for (const o of d.observations) if (o.value !== null) expect(o.unit).not.toBeNull();
    // The record the store would write from it (the host finalizes as the store does).
    expect(schemaProblems('poct.result/2', host.finalized[0])).toEqual([]);
    await host.until(() => host.events.some((e) => e.type === 'download_finished'));
  });

  it('a corrupted frame is NAKed, sent again and the message stored once, across random chunking and lowercase checksums', async () => {
    const { host, simulator } = await setup({}, { dialect: '77elektronika', count: 2, corrupt_frame: 3, max_chunk: 3, lowercase_checksum: true });
    await host.until(() => host.commits.length === 2);
    await host.until(() => simulator.delivered === 2);
    expect(host.events.filter((e) => e.type === 'bad_frame').map((e) => e.data?.reason)).toEqual(['checksum']);
    expect(host.quarantined.map((q) => q.reason)).toEqual(['checksum']);
    expect(host.commits.map((c) => c.drafts.length)).toEqual([1, 1]);
  });

  it('QC runs are category qc with no patient', async () => {
    const { host } = await setup({}, { dialect: 'roche-cobas-c111', count: 1, control: true });
    await host.until(() => host.commits.length === 1);
    expect(host.commits[0]!.drafts[0]).toMatchObject({ category: 'qc', patient: null });
  });

  it('a device that stalls mid-message commits nothing; the partial is quarantined after the timer, and the next message is stored', async () => {
    const { host, simulator } = await setup({}, { dialect: 'siemens-dca-vantage', stall_after_frames: 3, framing: 'record-etb' });
    simulator.sendNext();
    await host.until(() => host.events.some((e) => e.type === 'download_failed'));
    expect(host.commits).toHaveLength(0);
    expect(host.quarantined.map((q) => q.reason)).toEqual(['receive-timeout']);
    simulator.sendNext();
    await host.until(() => host.commits.length === 1);
  });

  it('a device that never sends EOT: the complete message is stored, and the link is free again after the timer', async () => {
    const { host, simulator } = await setup({}, { dialect: 'abbott-afinion2', never_eot: true });
    simulator.sendNext();
    await host.until(() => host.commits.length === 1);
    await new Promise((r) => setTimeout(r, 400)); // receive_timeout_ms 300
    simulator.sendNext();
    await host.until(() => host.commits.length === 2);
    expect(host.quarantined).toEqual([]);
  });

  it('a query message is ACKed, quarantined and reported; the session goes on', async () => {
    const { host, simulator } = await setup();
    simulator.send('H|\\^&|||C111^Roche^c111^4.2.2.1730^1^10001\rQ|1|^S0001||ALL||||||||O\rL|1|N');
    await host.until(() => host.events.some((e) => e.type === 'device_error'));
    await host.until(() => simulator.delivered === 1);
    expect(host.quarantined.map((q) => q.reason)).toEqual(['query-unsupported']);
    expect(host.commits).toHaveLength(0);
  });

  it('a keep-alive message (only H and L) is ACKed with no quarantine entry and no event; a message with more is not one', async () => {
    const { host, simulator } = await setup();
    simulator.send('H|\\^&|||XN-550^00-24^00001|||||||P|E1394-97|20250101120000\rL|1|N');
    await host.until(() => simulator.delivered === 1);
    expect(host.quarantined).toEqual([]);
    expect(host.events.filter((e) => e.type === 'bad_frame' || e.type === 'device_error')).toEqual([]);
    simulator.send('H|\\^&|||XN-550^00-24^00001|||||||P|E1394-97|20250101120000\rP|1\rL|1|N');
    await host.until(() => simulator.delivered === 2);
    expect(host.quarantined.map((q) => q.reason)).toEqual(['no-results']);
    expect(decodeAstmMessage(Buffer.from('H|\\^&|||X\rL|1|N\r', 'latin1'), ctx).kind).toBe('keep-alive');
    expect(decodeAstmMessage(Buffer.from('H|\\^&|||X\rM|1|X\rL|1|N\r', 'latin1'), ctx).kind).toBe('empty');
  });

  it('strange delimiters (H!@#$) and invalid UTF-8 from a UTF-8 device: decoded in its fallback code page, flagged, stored; the session continues', async () => {
    const { host, simulator, device } = await setup();
    simulator.send('H!@#$!!!LUP2#LUP2#1.0.11#1#UA1!!!!!!!P!LIS2-A2!20250101120000\rP!1\rO!1!S$F$7!!!!!!!!!!!!20250101115900\rR!1!###Glu!norm!mg/dl!!N\rL!1!N');
    await host.until(() => host.commits.length === 1);
    const d = host.commits[0]!.drafts[0]!;
    expect(d.specimen.id).toBe('S!7');
    expect(d.device.serial).toBe('UA1');
    expect(d.observations[0]).toMatchObject({ code: 'Glu', loinc: '50555-2', text: 'norm' });
    // Invalid UTF-8 (0xC3 0x28) in the colour text, written straight onto the link.
    await host.until(() => simulator.delivered === 1);
    simulator.detach();
    const msg = Buffer.concat([
      Buffer.from('H|\\^&|||LUP2^LUP2^1.0.11^1^UA1|||||||P|LIS2-A2|20250101120500\rP|1\rO|1|S8||||||||||||20250101120400\rR|1|^^^Col|', 'latin1'),
      Buffer.from([0xc3, 0x28]),
      Buffer.from('|||N\rL|1|N\r', 'latin1'),
    ]);
    await device.write(encodeTransmission(msg, 'single'));
    await host.until(() => host.commits.length === 2);
    const bad = host.commits[1]!.drafts[0]!;
    expect(bad.flags).toContain('encoding:fallback-windows-1250');
    expect(bad.observations[0]!.text).toBe('Ă(');
    // encoding utf-8 forced by the device's options: replacement characters, flagged.
    const forced = decodeAstmMessage(msg, ctx, parseAstmOptions({ encoding: 'utf-8' })).drafts[0]!;
    expect(forced.flags).toContain('encoding-error');
    expect(forced.observations[0]!.text).toBe('\ufffd(');
  });
});

describe('astm options and decoding', () => {
  it('validates options and names the bad field', () => {
    expect(() => parseAstmOptions({ dialect: 'nope' })).toThrow(/options\.dialect: must be one of/);
    expect(() => parseAstmOptions({ encoding: 'ebcdic' })).toThrow(/options\.encoding/);
    expect(() => parseAstmOptions({ mappings: { '550': { loinc: '1920-8' } } })).toThrow(/options\.mappings\["550"\]\.name: required/);
    expect(() => parseAstmOptions({ mappings: { '550': { name: 'AST', loinc: 'AST' } } })).toThrow(/options\.mappings\["550"\]\.loinc: must be a LOINC code/);
    expect(() => parseAstmOptions({ mappings: { '550': { name: 'AST', colour: 1 } } })).toThrow(/mappings\["550"\]\.colour: unknown field/);
    expect(() => parseAstmOptions({ receive_timeout_ms: -1 })).toThrow(/receive_timeout_ms/);
    expect(() => parseAstmOptions({ bogus: 1 })).toThrow(/options\.bogus: unknown option/);
    const { host: t } = memoryPair();
    expect(() => astmDriver.createSession(new FakeHost({ id: 'x', driver: 'astm', transport: { type: 'simulated' }, options: { dialect: 'x' } } as DeviceConfig, t))).toThrow(/device x: options\.dialect/);
  });

  it('options.mappings adds a code; a unit the mapping does not expect drops the LOINC', () => {
    const msg = Buffer.from('H|\\^&|||C111^Roche^c111^4.2.2.1730^1^13147\rP|1\rO|1||S1\rR|1|^^^550|95.2|U/L||N||F||||20230727162028\rR|2|^^^551|5|mmol/L||N||F||||20230727162028\rL|1|N\r', 'latin1');
    const opts = parseAstmOptions({ mappings: { '550': { name: 'Site test 550', loinc: '1920-8', ucum: 'U/L' }, '551': { name: 'Site test 551', loinc: '2345-7', ucum: 'mg/dL' } } });
    const r = decodeAstmMessage(msg, ctx, opts);
    expect(r.drafts[0]!.observations.map((o) => [o.code, o.name, o.loinc, o.flags])).toEqual([
      ['550', 'Site test 550', '1920-8', []],
      ['551', 'Site test 551', null, ['unit-mismatch']],
    ]);
    // decode() of a capture takes the same options from its context, as a replay passes them.
    const capture = { kind: 'raw' as const, bytes: encodeTransmission(msg, 'single') };
    const replayed = decodeAstm(capture, { ...ctx, options: { mappings: { '550': { name: 'Site test 550', loinc: '1920-8', ucum: 'U/L' } } } });
    expect(replayed.drafts.result![0]!.observations[0]).toMatchObject({ code: '550', loinc: '1920-8' });
    expect(() => decodeAstm(capture, { ...ctx, options: { bogus: 1 } })).toThrow(/options\.bogus: unknown option/);
    // The device's frame limit applies to a replay as it did to the live session.
    expect(decodeAstm(capture, { ...ctx, options: { max_frame_bytes: 64 } })).toMatchObject({ drafts: { result: [] }, issues: [{ reason: expect.stringMatching(/^frame-too-long \(at byte 1; /) }] });
    // Without the mapping: kept, flagged, never dropped.
    expect(decodeAstmMessage(msg, ctx).drafts[0]!.observations.map((o) => [o.code, o.loinc, o.flags])).toEqual([
      ['550', null, ['unmapped-code']],
      ['551', null, ['unmapped-code']],
    ]);
  });

  it('reads micro as the micro sign, the Greek mu or a plain u', () => {
    const units = ['µmol/L', 'μmol/L', 'umol/L'].map((unit) => {
      const msg = Buffer.from(`H|\\^&|||C111^Roche^c111^4.2.2.1730^1^13147\rP|1\rO|1||S1\rR|1|^^^550|95.2|${unit}||N||F||||20230727162028\rL|1|N\r`, 'utf8');
      const o = decodeAstmMessage(msg, ctx, parseAstmOptions({ mappings: { '550': { name: 'Site test 550', ucum: 'umol/L' } } })).drafts[0]!.observations[0]!;
      return [o.unit, o.ucum, o.flags];
    });
    expect(units).toEqual([
      ['µmol/L', 'umol/L', []],
      ['μmol/L', 'umol/L', []],
      ['umol/L', 'umol/L', []],
    ]);
  });

  it('options.dialect and options.encoding override what the H record says', () => {
    const msg = Buffer.from('H|\\^&|||LUP2^LUP2^1^1^UA9|||||||P|LIS2-A2|20250101120000\rP|1\rO|1|S1\rR|1|^^^Ery|300|Ery/µl||A||F\rL|1|N\r', 'utf8');
    expect(decodeAstmMessage(msg, ctx).drafts[0]!.observations[0]!.unit).toBe('Ery/µl');
    // Read as Latin-1, the unit is the mojibake the research note saw, and no longer a known unit.
    expect(decodeAstmMessage(msg, ctx, { encoding: 'latin1' }).drafts[0]!.observations[0]).toMatchObject({ unit: null, value: null, text: '300 Ery/Âµl' });
    const generic = decodeAstmMessage(msg, ctx, { dialect: 'generic' });
    expect(generic.dialect!.id).toBe('generic');
    expect(generic.drafts[0]!.observations[0]!.flags).toContain('unmapped-code');
  });

  it('encoding auto: 77 Elektronika text that is not UTF-8 is read as windows-1250, another dialect as Latin-1', () => {
    // "mętny" (cloudy) in windows-1250: ę is 0xEA, which is not valid UTF-8 here.
    const cloudy = (sender: string): Buffer =>
      Buffer.concat([Buffer.from(`H|\\^&|||${sender}|||||||P|LIS2-A2|20250101120000\rP|1\rO|1|S1\rR|1|^^^Cla|m`, 'latin1'), Buffer.from([0xea]), Buffer.from('tny|||N\rL|1|N\r', 'latin1')]);
    const lup = decodeAstmMessage(cloudy('LUP2^LUP2^1^1^UA9'), ctx, { encoding: 'auto' }).drafts[0]!;
    expect(lup.observations[0]!.text).toBe('mętny');
    expect(lup.flags).not.toContain('encoding-error');
    const other = decodeAstmMessage(cloudy('C111^Roche^c111^4.2.2.1730^1^13147'), ctx, { encoding: 'auto' }).drafts[0]!;
    expect(other.observations[0]!.text).toBe('mêtny');
  });

  it('the same message sent again gives the same keys (rule 3), even with a new header time', () => {
    const a = Buffer.from('H|\\^&|||Afinion 2 Analyzer^^AF1|||||||P|1|20250101120000\rP|1\rO|1||5|^^^HbA1c\rR|1|^^^HbA1c|5.9|%||||F||1||20250101115500\rL|1|N\r', 'latin1');
    const b = Buffer.from(a.toString('latin1').replace('20250101120000', '20250101130000'), 'latin1');
    expect(decodeAstmMessage(a, ctx).drafts.map((d) => d.key)).toEqual(decodeAstmMessage(b, ctx).drafts.map((d) => d.key));
  });

  it('HI/LO results carry the device limit, never a number in value', () => {
    const msg = Buffer.from('H|\\^&|||GEN\rP|1\rO|1|S1\rR|1|^^^GLU|>600|mg/dL||H||F||||20250101120000\rR|2|^^^GLU2|LO|mg/dL||||F||||20250101120000\rL|1|N\r', 'latin1');
    const obs = decodeAstmMessage(msg, ctx).drafts[0]!.observations;
    expect(obs.map((o) => [o.value, o.comparator, o.limit, o.flags.filter((f) => f === 'HI' || f === 'LO')])).toEqual([
      [null, '>', 600, ['HI']],
      [null, '<', null, ['LO']],
    ]);
  });

  it('options left out take the E1381 link defaults, for the session and the simulator alike', () => {
    expect(parseAstmOptions({})).toEqual({ framing: 'e1381', receive_timeout_ms: 30_000, reply_timeout_ms: 15_000, max_frame_bytes: 64_000, frame_text_size: 240 });
    expect(parseAstmOptions({ reply_timeout_ms: 500 })).toMatchObject({ receive_timeout_ms: 30_000, reply_timeout_ms: 500 });
    expect(parseSimulatorOptions({})).toMatchObject({ split_at: 240, reply_timeout_ms: 15_000 });
  });

  it('simulator options are checked', () => {
    expect(() => parseSimulatorOptions({ framing: 'zigzag' })).toThrow(/framing/);
    expect(() => parseSimulatorOptions({ dialect: 'nope' })).toThrow(/dialect/);
    expect(() => parseSimulatorOptions({ wat: 1 })).toThrow(/unknown option wat/);
    expect(() => parseSimulatorOptions({ messages: ['P|1'] })).toThrow(/messages/);
  });
});

describe('astm: results that must not be published as plain patient values', () => {
  const decode = (text: string) => decodeAstmMessage(Buffer.from(text, 'latin1'), ctx).drafts;

  it.each([
    ['T', 'processing:training'],
    ['D', 'processing:debugging'],
  ])('H-12 processing id %s: category qc, no patient, flag %s', (pid, flag) => {
    const [d] = decode(`H|\\^&|||Afinion 2 Analyzer^^AF1|||||||${pid}|1|20250101120000\rP|1|PAT1\rO|1||5|^^^HbA1c\rR|1|^^^HbA1c|5.9|%||||F||1||20250101115500\rL|1|N\r`);
    expect(d).toMatchObject({ category: 'qc', patient: null });
    expect(d!.flags).toContain(flag);
    // Production (P) stays a patient result with no processing flag.
    const [p] = decode('H|\\^&|||Afinion 2 Analyzer^^AF1|||||||P|1|20250101120000\rP|1|PAT1\rO|1||5|^^^HbA1c\rR|1|^^^HbA1c|5.9|%||||F||1||20250101115500\rL|1|N\r');
    expect(p!.category).toBe('patient');
    expect(p!.flags.filter((f) => f.startsWith('processing:'))).toEqual([]);
  });

  it.each([
    ['O-12 action code C', 'O|1|S1||^^^GLU|R||||||C||||||||||||||F', 'order:cancelled'],
    ['O-26 report type X', 'O|1|S1||^^^GLU|R||||||N||||||||||||||X', 'order:cannot-be-done'],
  ])('%s: the record is kept and flagged, every observation value null with the raw text', (_what, order, flag) => {
    const [d] = decode(`H|\\^&|||GEN|||||||P|1|20250101120000\rP|1\r${order}\rR|1|^^^GLU|95|mg/dL||N||F||||20250101120000\rR|2|^^^CRP|>200|mg/L||>||F||||20250101120000\rL|1|N\r`);
    expect(d!.flags).toContain(flag);
    expect(d!.observations.map((o) => [o.code, o.value, o.comparator, o.limit, o.text])).toEqual([
      ['GLU', null, null, undefined, '95'],
      ['CRP', null, null, undefined, '>200'],
    ]);
  });

  it('R-9 X (cannot be done) with a number in R-4: value and comparator null, raw in text, flag cannot-be-done', () => {
    const [d] = decode('H|\\^&|||GEN\rP|1\rO|1|S1\rR|1|^^^GLU|95|mg/dL||N||X||||20250101120000\rR|2|^^^CRP|>200|mg/L||>||X||||20250101120000\rL|1|N\r');
    expect(d!.observations.map((o) => [o.value, o.comparator, o.limit, o.text, o.flags.includes('cannot-be-done')])).toEqual([
      [null, null, undefined, '95', true],
      [null, null, undefined, '>200', true],
    ]);
  });

  it('a strip result with R-7 > or < is off the range: value null, HI/LO, comparator, limit the number', () => {
    const [d] = decode('H|\\^&|||LUP2^LUP2^1.0.11^1^UA1|||||||P|LIS2-A2|20250101120000\rP|1\rO|1|S1\rR|1|^^^Glu|1000|mg/dl||>||F\rR|2|^^^Pro|10|mg/dl||<||F\rR|3|^^^Ket|5|mg/dl||A||F\rL|1|N\r');
    expect(d!.observations.map((o) => [o.code, o.value, o.comparator, o.limit, o.flags.filter((f) => f === 'HI' || f === 'LO')])).toEqual([
      ['Glu', null, '>', 1000, ['HI']],
      ['Pro', null, '<', 10, ['LO']],
      ['Ket', 5, null, undefined, []],
    ]);
  });

  it('the DCA Vantage specimen type follows the analytes: urine for albumin/creatinine, whole blood for HbA1c, null and a flag when mixed', () => {
    const dca = (rs: string) => decode(`H|\\^&|||DCA VANTAGE^04.04.00.00^S1|||||||P||20250101120000\rP|1\rO|1||660^0090\r${rs}L|1|N\r`)[0]!;
    const urine = dca('R|1|^^^Alb|63.7|mg/L||||F|||20250101120000\rR|2|^^^Crt|230.8|mg/dL||||F|||20250101120000\rR|3|^^^Ratio|27.6|mg/g||||F|||20250101120000\r');
    expect(urine.specimen.type).toBe('urine');
    const blood = dca('R|1|^^^HbA1c|6.1|%||||F|||20250101120000\r');
    expect(blood.specimen.type).toBe('whole blood');
    expect(blood.flags).not.toContain('specimen:mixed');
    const mixed = dca('R|1|^^^HbA1c|6.1|%||||F|||20250101120000\rR|2|^^^Alb|63.7|mg/L||||F|||20250101120000\r');
    expect(mixed.specimen.type).toBeNull();
    expect(mixed.flags).toContain('specimen:mixed');
  });

  it('the Afinion 2 specimen type: whole blood for HbA1c; no type for a code it does not map', () => {
    const af = (r: string) => decode(`H|\\^&|||Afinion 2 Analyzer^^AF1|||||||P|1|20250101120000\rP|1\rO|1||5\r${r}L|1|N\r`)[0]!;
    expect(af('R|1|^^^HbA1c|5.9|%||||F||1||20250101115500\r').specimen.type).toBe('whole blood');
    expect(af('R|1|^^^ACR|12|mg/g||||F||1||20250101115500\r').specimen.type).toBeNull();
  });

  it('Horiba Pentra unit code 1 (meaning unknown): value, unit and ucum null, the number in text, flag unit-unknown', () => {
    const [d] = decode('H|\\^&|||ABX|||||||P|E1394-97|20220727121551\rP|1\rO|1|S1234^00^00||^^^DIF\rR|1|^^^WBC^804-5^1|8.5|1||||F||NNE NNEMT||20220727121550\rL|1|N\r');
    expect(d!.observations[0]).toMatchObject({ code: 'WBC', loinc: '804-5', value: null, unit: null, ucum: null, text: '8.5', comparator: null });
    expect(d!.observations[0]!.flags).toContain('unit-unknown');
  });
});

describe('astm comments: published flags never carry what may name a patient', () => {
  // LIS2-A2: a C record belongs to the record before it; C-3 says who wrote it (P practice, L LIS, I instrument).
  const message = [
    'H|\\^&|||C111^Roche^c111^4.2.2.1730^1^13147|||||||P|1|20230727162500',
    'C|1|I|MAINT_DONE^7|G',
    'C|2|I|daily maintenance done|G',
    'P|1|PID-77',
    'C|1|I|Jane Doe, born 1961-04-02|G',
    'C|2|P|call her daughter on 555-0199|G',
    'O|1|S77',
    'C|1|L|pt Jane Doe fasting|G',
    'C|2|I|Notes^^Id# 118176 Jane Doe CDU|I',
    'C|3|I|RERUN|G',
    'R|1|^^^550|95.2|U/L||N||F||||20230727162028',
    'C|1|I|Alarm_WBC^LMNE-^BASO+|I',
    'C|2|I|above measuring range|I',
    'C|2|L|result phoned to Jane Doe|G',
    'C|3||Doe J. asked for a copy|G',
    'L|1|N',
  ].join('\r');
  const patientWords = /Jane|Doe|1961|555-0199|daughter/;

  it('a comment under the patient record is never copied (only comment-withheld:patient); others only when the instrument wrote them and all of it is coded', () => {
    const [d] = decodeAstm({ kind: 'raw', bytes: encodeTransmission(Buffer.from(message + '\r', 'latin1'), 'single') }, ctx).drafts.result!;
    expect(d!.flags).toEqual(['comment:MAINT_DONE^7', 'comment-withheld:header', 'comment-withheld:patient', 'comment-withheld:order', 'comment:RERUN', 'time:completed']);
    expect(d!.observations[0]!.flags).toEqual(['unmapped-code', 'comment:Alarm_WBC^LMNE-^BASO+', 'comment-withheld:result']);
    expect(JSON.stringify(d)).not.toMatch(patientWords);
  });

  for (const policy of ['publish', 'hash', 'omit'] as const) {
    it(`the live session commits none of the patient's comment text, privacy ${policy}`, async () => {
      const { host, simulator } = await setup();
      host.privacy = { ...host.privacy, patient_id: policy };
      simulator.send(message);
      await host.until(() => host.finalized.length === 1);
      const record = JSON.stringify(host.finalized[0]);
      expect(record).toContain('comment-withheld:patient');
      expect(record).not.toMatch(patientWords);
      expect(record.includes('PID-77')).toBe(policy === 'publish');
    });
  }
});
