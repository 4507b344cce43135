/**
 * A POCT1-A device for the demo, the tests and `poctd simulate poct1a` (the device is the TCP
 * client: `socat TCP:127.0.0.1:3001 EXEC:"poctd simulate poct1a --stdio"`, or a
 * `TcpClientTransport` in a test). It plays the basic profile from the device side: HEL, DST with
 * the number of new observations, the OBS messages one at a time once asked (REQ ROBS), each
 * resent on the next connection until it is acknowledged AA, EOT, then it answers START_CONTINUOUS,
 * SET_TIME, operator lists and END.
 *
 * Scenarios: `dca-vantage` (HEL and OBS shaped as the real DCA Vantage capture: local SIEM codes,
 * an observation time with no zone, reagent lot, calibration notes) and `glucose` (the standard
 * OBS example of the notes: a LOINC-coded glucose with limits and an operator; then a QC run as
 * OBS.R02 with a control, and one whose role_cd still says OBS, as some meters send). Values are
 * made here, not copied; the patient ids are synthetic.
 *
 * Misbehaviour on demand (`fault`): `bad-xml`, `duplicate-control-id`, `huge-message`,
 * `drop-before-ack` (the connection drops right after the first OBS is written, before its ACK),
 * `drop-mid-message` (it drops halfway through the first OBS),
 * `doctype`; `busy_once` answers the first REQ with ESC CNC; `refuse_continuous` answers the
 * START_CONTINUOUS with ESC (with `end_after_escape` it then ends the conversation itself).
 */
import { EventEmitter } from 'node:events';
import type { DeviceSimulator } from '../../src/driver-sdk/index.ts';
import { SimulatorOptionReader } from '../../src/driver-sdk/simulator-options.ts';
import { leaf, message, poctTime, wrap } from '../../src/protocols/poct1a/builders.ts';
import { element, elements, parseDocument, value } from '../../src/protocols/poct1a/document.ts';
import { Poct1aSplitter } from '../../src/protocols/poct1a/splitter.ts';
import type { ByteTransport } from '../../src/transports/transport.ts';
import { SIMULATOR_OPTIONS } from './simulator-help.ts';


export type Scenario = 'dca-vantage' | 'glucose';
export type Fault = 'none' | 'bad-xml' | 'duplicate-control-id' | 'huge-message' | 'drop-before-ack' | 'drop-mid-message' | 'doctype';

export interface Poct1aSimulatorOptions {
  scenario: Scenario;
  deviceId: string;
  serial: string;
  count: number;
  qc: boolean;
  fault: Fault;
  busyOnce: boolean;
  refuseContinuous: boolean;
  endAfterEscape: boolean;
  clockOffsetS: number;
  timezone: string;
  maxChunk: number | undefined;
  now: () => Date;
}

export function parseSimulatorOptions(raw: Record<string, unknown>): Poct1aSimulatorOptions {
  const r = new SimulatorOptionReader(raw, 'poct1a simulator', Object.keys(SIMULATOR_OPTIONS));
  const scenario = r.oneOf('scenario', ['dca-vantage', 'glucose'] as const) ?? 'dca-vantage';
  const serial = r.string('serial', /^[\w .-]{1,40}$/, 'letters, digits, spaces, ".", "-" or "_"') ?? (scenario === 'glucose' ? 'GM000001' : 'S000001');
  const now = raw.now instanceof Date ? (): Date => raw.now as Date : typeof raw.now === 'string' ? (): Date => new Date(raw.now as string) : (): Date => new Date();
  return {
    scenario,
    serial,
    deviceId: r.string('device_id', /^.{1,100}$/, 'a device id') ?? (scenario === 'glucose' ? `GLU^Meter^${serial}` : `SIEM^DCA Vantage^${serial}`),
    count: r.number('count', 0, 10_000) ?? 1,
    qc: r.boolean('qc') ?? true,
    fault: r.oneOf('fault', ['none', 'bad-xml', 'duplicate-control-id', 'huge-message', 'drop-before-ack', 'drop-mid-message', 'doctype'] as const) ?? 'none',
    busyOnce: r.boolean('busy_once') ?? false,
    refuseContinuous: r.boolean('refuse_continuous') ?? false,
    endAfterEscape: r.boolean('end_after_escape') ?? false,
    clockOffsetS: r.number('clock_offset_s') ?? 0,
    timezone: r.timezone() ?? 'Europe/Copenhagen',
    maxChunk: r.number('max_chunk', 1),
    now,
  };
}

/** One observation message the device holds until it is acknowledged AA. */
interface Held {
  name: string;
  body: (h: { controlId: number; now: Date; timezone: string }) => Buffer;
  delivered: boolean;
}

export class Poct1aSimulator extends EventEmitter implements DeviceSimulator {
  private transport: ByteTransport | null = null;
  private splitter = new Poct1aSplitter();
  private controlId = 10_000;
  private readonly held: Held[];
  private inFlight: { controlId: string; item: Held } | null = null;
  private requestId: string | null = null;
  private busyUsed = false;
  private dropped = false;
  /** The control id of our HEL: its ACK starts the status report. */
  private firstControl = 0;
  private readonly unwire: Array<() => void> = [];
  /** Every message the manager sent, by root name, in order. */
  readonly received: string[] = [];
  /** Acknowledgements the manager gave our messages: control id → ACK type. */
  readonly acks = new Map<string, string>();
  /** Operator ids from operator lists the manager pushed. */
  readonly operators: string[] = [];
  /** The size of each operator list message, bytes (each must fit the DSC.max_message_sz we announced). */
  readonly operatorMessageSizes: number[] = [];
  /** SET_TIME values the manager sent. */
  readonly timeSet: string[] = [];
  continuous = false;
  ended = false;
  /** The device sent its own END (end_after_escape). */
  endedByDevice = false;
  /** A device that stopped answering (switched off without closing the connection). */
  mute = false;

  constructor(readonly options: Poct1aSimulatorOptions) {
    super();
    this.held = this.observations();
  }

  /** Observation messages acknowledged AA so far. */
  get delivered(): number {
    return this.held.filter((h) => h.delivered).length;
  }

  get total(): number {
    return this.held.length;
  }

  attach(transport: ByteTransport): void {
    this.transport = transport;
    const onData = (chunk: Buffer): void => this.onData(chunk);
    const onOpen = (): void => void this.hello();
    const onClose = (): void => {
      this.splitter = new Poct1aSplitter();
      this.inFlight = null;
    };
    transport.on('data', onData);
    transport.on('open', onOpen);
    transport.on('close', onClose);
    this.unwire.push(() => {
      transport.off('data', onData);
      transport.off('open', onOpen);
      transport.off('close', onClose);
    });
    if (transport.isOpen) void this.hello();
  }

  detach(): void {
    for (const u of this.unwire.splice(0)) u();
    this.transport = null;
  }

  private deviceNow(): Date {
    return new Date(this.options.now().getTime() + this.options.clockOffsetS * 1000);
  }

  private header(): { controlId: number; now: Date; timezone: string } {
    return { controlId: ++this.controlId, now: this.deviceNow(), timezone: this.options.timezone };
  }

  private async write(bytes: Buffer): Promise<void> {
    const t = this.transport;
    if (!t?.isOpen) return;
    const size = this.options.maxChunk ?? bytes.length;
    // Every piece of one message is handed over at once, so two messages never interleave.
    const writes: Promise<void>[] = [];
    for (let i = 0; i < bytes.length; i += size) writes.push(t.write(bytes.subarray(i, i + size)).catch(() => undefined));
    await Promise.all(writes);
  }

  /** Says hello again on the attached transport (a device switched on, or docked, while connected). */
  sayHello(): Promise<void> {
    return this.hello();
  }

  private async hello(): Promise<void> {
    // A new conversation: what was in flight on the last one was never answered, so it is sent again.
    this.inFlight = null;
    this.ended = false;
    this.continuous = false;
    const o = this.options;
    const dca = o.scenario === 'dca-vantage';
    const dev = wrap(
      'DEV',
      leaf('DEV.device_id', o.deviceId),
      leaf('DEV.vendor_id', dca ? 'SIEM' : 'GLU'),
      leaf('DEV.model_id', dca ? 'DCA Vantage' : 'Glucose Meter'),
      leaf('DEV.serial_id', o.serial),
      leaf('DEV.manufacturer_name', dca ? 'Siemens Healthcare Diagnostics' : 'Simulated Meters'),
      leaf('DEV.sw_version', dca ? '4.4.0.0' : '1.0'),
      wrap('DCP', leaf('DCP.application_timeout', 60)),
      wrap(
        'DSC',
        leaf('DSC.connection_profile_cd', 'SA'),
        leaf('DSC.topics_supported_cd', 'DTV'),
        leaf('DSC.topics_supported_cd', 'OP_LST'),
        leaf('DSC.directives_supported_cd', 'START_CONTINUOUS'),
        leaf('DSC.max_message_sz', dca ? 16000 : 1000),
      ),
    );
    const h = this.header();
    this.firstControl = h.controlId;
    await this.write(message('HEL.R01', h, dev));
  }

  /** What the device holds, in the order it sends it. */
  private observations(): Held[] {
    const o = this.options;
    const out: Held[] = [];
    const base = new Date(Date.UTC(2026, 0, 5, 8, 0, 0));
    for (let i = 0; i < o.count; i++) {
      const at = new Date(base.getTime() + i * 600_000);
      const naive = at.toISOString().slice(0, 19);
      if (o.scenario === 'dca-vantage') {
        const a1c = 40 + ((i * 7) % 40);
        const eag = Math.round(28.7 * (a1c / 10.929 + 2.15) - 46.7);
        out.push({
          name: `HbA1c ${i + 1}`,
          delivered: false,
          body: (h) =>
            message(
              'OBS.R01',
              h,
              wrap(
                'SVC',
                leaf('SVC.role_cd', 'OBS'),
                leaf('SVC.observation_dttm', naive),
                leaf('SVC.reason_cd', 'RES'),
                leaf('SVC.sequence_nbr', 100 + i),
                wrap(
                  'PT',
                  leaf('PT.patient_id', `SIM-${String(i + 1).padStart(4, '0')}`),
                  wrap(
                    'OBS',
                    `<OBS.observation_id V="HbA1c" SN="SIEM" SV="1.0"><TRANSLTN V="HbA1c"/></OBS.observation_id>`,
                    leaf('OBS.value', a1c, { U: 'mmol/mol' }),
                    leaf('OBS.method_cd', 'M'),
                    leaf('OBS.interpretation_cd', a1c > 48 ? 'H' : 'N'),
                    wrap('NTE', leaf('NTE.text', 'Reporting Units^IFCC')),
                  ),
                  wrap('OBS', `<OBS.observation_id V="eAG" SN="SIEM" SV="1.0"><TRANSLTN V="eAG"/></OBS.observation_id>`, leaf('OBS.value', eag, { U: 'mg/dL' }), leaf('OBS.method_cd', 'C')),
                ),
                wrap('RGT', leaf('RGT.name', 'DCA HbA1c'), leaf('RGT.lot_number', '0999'), leaf('RGT.expiration_date', '2027-03-31')),
              ),
            ),
        });
      } else {
        const glu = 60 + ((i * 37) % 200);
        const flag = glu > 140 ? 'HH' : glu > 120 ? 'H' : glu < 60 ? 'LL' : glu < 80 ? 'L' : 'N';
        out.push({
          name: `glucose ${i + 1}`,
          delivered: false,
          body: (h) =>
            message(
              'OBS.R01',
              h,
              wrap(
                'SVC',
                leaf('SVC.role_cd', 'OBS'),
                leaf('SVC.observation_dttm', poctTime(at, o.timezone)),
                leaf('SVC.status_cd', 'NRM'),
                wrap(
                  'PT',
                  leaf('PT.patient_id', `SIM-PT-${String(i + 1).padStart(4, '0')}`),
                  wrap(
                    'OBS',
                    leaf('OBS.observation_id', '2341-6', { DN: 'Glu', SN: 'LN' }),
                    leaf('OBS.value', glu, { U: 'mg/dL' }),
                    leaf('OBS.method_cd', 'M'),
                    leaf('OBS.status_cd', 'A'),
                    leaf('OBS.interpretation_cd', flag),
                    leaf('OBS.normal_lo-hi_limit', '[80;120]', { U: 'mg/dL' }),
                    leaf('OBS.critical_lo-hi_limit', '[60;140]', { U: 'mg/dL' }),
                  ),
                ),
                wrap('OPR', leaf('OPR.operator_id', 'OP-SIM-1')),
              ),
            ),
        });
      }
    }
    if (o.scenario === 'glucose' && o.qc) {
      const at = new Date(base.getTime() - 3600_000);
      const qcRun = (root: 'OBS.R01' | 'OBS.R02', role: string, level: string, v: number, offsetS: number): Held => ({
        name: `QC ${level} (${root}, role ${role})`,
        delivered: false,
        body: (h) =>
          message(
            root,
            h,
            wrap(
              'SVC',
              leaf('SVC.role_cd', role),
              leaf('SVC.observation_dttm', poctTime(new Date(at.getTime() + offsetS * 1000), o.timezone)),
              wrap('CTC', leaf('CTC.name', `Control ${level}`), leaf('CTC.lot_number', `QC-${level}-77`), wrap('OBS', leaf('OBS.observation_id', '2341-6', { SN: 'LN' }), leaf('OBS.value', v, { U: 'mg/dL' }), leaf('OBS.interpretation_cd', 'N'))),
              wrap('OPR', leaf('OPR.operator_id', 'OP-SIM-1')),
            ),
          ),
      });
      out.push(qcRun('OBS.R02', 'LQC', 'L1', 48, 0), qcRun('OBS.R01', 'OBS', 'L2', 310, 60));
    }
    return out;
  }

  private onData(chunk: Buffer): void {
    if (this.mute) return;
    for (const ev of this.splitter.push(chunk)) {
      if (ev.kind !== 'document') continue;
      const parsed = parseDocument(ev.bytes);
      if (!parsed.ok) continue;
      void this.onMessage(parsed.message.root, parsed.message);
    }
  }

  private async onMessage(root: string, m: Exclude<ReturnType<typeof parseDocument>, { ok: false }>['message']): Promise<void> {
    this.received.push(root);
    const ack = async (type = 'AA'): Promise<void> => {
      await this.write(message('ACK.R01', this.header(), wrap('ACK', leaf('ACK.type_cd', type), leaf('ACK.ack_control_id', m.header.controlId ?? ''))));
    };
    switch (root) {
      case 'ACK.R01': {
        const a = element(m.body, 'ACK');
        const of = value(a, 'ACK.ack_control_id') ?? '';
        const type = value(a, 'ACK.type_cd') ?? '';
        this.acks.set(of, type);
        if (this.inFlight && this.inFlight.controlId === of) {
          if (type === 'AA') this.inFlight.item.delivered = true;
          this.inFlight = null;
          await this.sendNext();
        } else if (of === String(this.firstControl)) {
          await this.status();
        }
        this.emit('ack', of, type);
        return;
      }
      case 'REQ.R01':
        if (this.options.busyOnce && !this.busyUsed) {
          this.busyUsed = true;
          await this.write(message('ESC.R01', this.header(), wrap('ESC', leaf('ESC.reason_cd', 'CNC'))));
          return;
        }
        this.requestId = m.header.controlId;
        await this.sendNext();
        return;
      case 'DTV.R01': {
        const cmd = value(element(m.body, 'DTV'), 'DTV.command_cd');
        if (cmd === 'START_CONTINUOUS' && this.options.refuseContinuous) {
          await this.write(message('ESC.R01', this.header(), wrap('ESC', leaf('ESC.reason_cd', 'UNS'))));
          if (this.options.endAfterEscape) {
            // Some devices end the conversation themselves after escaping what they do not support.
            this.endedByDevice = true;
            await this.write(message('END.R01', this.header(), wrap('TRM', leaf('TRM.reason_cd', 'NRM'))));
          }
          return;
        }
        await ack();
        if (cmd === 'START_CONTINUOUS') {
          this.continuous = true;
          this.emit('continuous');
        }
        return;
      }
      case 'DTV.R02':
        this.timeSet.push(value(element(m.body, 'TM'), 'TM.dttm') ?? '');
        await ack();
        return;
      case 'OPL.R01':
      case 'OPL.R02':
        this.operatorMessageSizes.push(m.bytes.length);
        for (const o of elements(m.body, 'OPR')) this.operators.push(value(o, 'OPR.operator_id') ?? '');
        await ack();
        return;
      case 'END.R01':
        await ack();
        this.ended = true;
        this.emit('ended');
        return;
      case 'ESC.R01':
        this.emit('escape', value(element(m.body, 'ESC'), 'ESC.reason_cd'));
        return;
      default:
        await ack();
    }
  }


  private async status(): Promise<void> {
    const pending = this.held.filter((h) => !h.delivered).length;
    const h = this.header();
    await this.write(
      message('DST.R01', h, wrap('DST', leaf('DST.status_dttm', poctTime(h.now, this.options.timezone)), leaf('DST.new_observations_qty', pending), leaf('DST.condition_cd', 'R'))),
    );
  }

  /**
   * The connection is lost: the device sends what was not acknowledged again on its next one
   * (attach the simulator to a new transport; it says hello again).
   */
  private async drop(): Promise<void> {
    const t = this.transport;
    this.detach();
    await t?.close();
    this.emit('dropped');
  }

  private async sendNext(): Promise<void> {
    const next = this.held.find((h) => !h.delivered && h !== this.inFlight?.item);
    const fault = this.options.fault;
    if (!next) {
      await this.write(message('EOT.R01', this.header(), wrap('EOT', leaf('EOT.eot_control_id', this.requestId ?? ''), leaf('EOT.topic_cd', 'OBS'))));
      return;
    }
    if (fault === 'bad-xml' && !this.dropped) {
      this.dropped = true;
      await this.write(Buffer.from('<?xml version="1.0"?><OBS.R01><HDR><HDR.control_id V="1"/></HDR><SVC></OBS.R01>'));
    }
    if (fault === 'doctype' && !this.dropped) {
      this.dropped = true;
      await this.write(Buffer.from('<?xml version="1.0"?><!DOCTYPE b [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><OBS.R01>&b;</OBS.R01>'));
    }
    if (fault === 'huge-message' && !this.dropped) {
      this.dropped = true;
      await this.write(Buffer.from(`<?xml version="1.0"?><OBS.R01>${'<NTE><NTE.text V="padding"/></NTE>'.repeat(60_000)}</OBS.R01>`));
    }
    const h = fault === 'duplicate-control-id' && this.inFlight === null && this.delivered > 0 ? { ...this.header(), controlId: this.controlId - 1 } : this.header();
    const bytes = next.body(h);
    this.inFlight = { controlId: String(h.controlId), item: next };
    if (fault === 'drop-mid-message' && !this.dropped) {
      // Half a message, then the line is gone: the manager must store nothing of it.
      this.dropped = true;
      await this.write(bytes.subarray(0, Math.floor(bytes.length / 2)));
      await this.drop();
      return;
    }
    await this.write(bytes);
    if (fault === 'drop-before-ack' && !this.dropped) {
      this.dropped = true;
      await this.drop();
    }
  }
}
