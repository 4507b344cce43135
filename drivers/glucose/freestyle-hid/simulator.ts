/** FreeStyle HID: the meter's side of the protocol, one 64-byte report per write, for tests and `poctd simulate`. */
import type { DeviceSimulator } from '../../../src/driver-sdk/index.ts';
import type { ByteTransport } from '../../../src/transports/transport.ts';
import { definedOnly, SimulatorOptionReader } from '../../../src/driver-sdk/simulator-options.ts';
import { seededRandom } from '../../../src/util/random.ts';
import { SimulatedClock, type SimulatedClockOptions } from '../../../src/driver-sdk/simulated-clock.ts';
import {
  decodeReport,
  encodeReport,
  MAX_PAYLOAD,
  MSG,
  multiRecordMessage,
  type RecordCommand,
  REPORT_SIZE,
  ReportStream,
  textChecksum,
  textReply,
} from './codec.ts';
import { type FreeStyleModel, MODELS } from './records.ts';
import { SIMULATOR_OPTION_HELP } from './simulator-help.ts';

export type SimulatedKind = 'glucose' | 'ketone' | 'scan' | 'history';

export interface SimulatedRecord {
  /** Naive meter time `YYYY-MM-DDTHH:MM:SS` (InsuLinx/Neo keep minutes only). */
  time: string;
  /** glucose (strip), ketone (strip), scan (Libre sensor scan), history (Libre 15-min reading). */
  kind?: SimulatedKind;
  /** Glucose in mg/dL, ketone in mmol/L (sent ×18), or the HI/LO literal (InsuLinx/Neo). */
  value: number | 'HI' | 'LO';
  /** A control-solution run (Neo only: the InsuLinx has no documented marker). */
  control?: boolean;
  /** Libre: the meter marks the record invalid (error bit 0x8000). */
  error?: boolean;
}

export interface FreeStyleSimulatorOptions extends SimulatedClockOptions {
  model?: FreeStyleModel;
  serial?: string;
  firmware?: string;
  memory?: SimulatedRecord[];
  /** Replies sent from now on with a wrong CKSM: the next N. */
  corrupt_next?: number;
  /** A 0x22 keep-alive report after every N reports (0: none). */
  keepalive_every?: number;
  /** Largest payload per report (1–62); replies are cut at this size, even mid-token. */
  max_payload?: number;
  /** true: never answers. */
  off?: boolean;
  report_delay_ms?: number;
  /** What the meter holds as patient name and id (patient data: the driver never asks). */
  patient_name?: string;
  patient_id?: string;
  seed?: number;
}

const DEFAULT_SERIALS: Record<FreeStyleModel, string> = {
  insulinx: 'JAGT241-U6242',
  neo: 'XCGA123-N4567',
  libre: 'JCMV112-L0042',
  'libre-pro': 'JGMP311-P0007',
  libre2: 'MAGV104-Z0099',
};

const SIMULATOR = 'freestyle-hid simulator';

const NAIVE_RE = /^20\d{2}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/;

/** Checks untyped options (from YAML or the command line) and returns them typed. */
export function parseSimulatorOptions(o: Record<string, unknown>): FreeStyleSimulatorOptions {
  const read = new SimulatorOptionReader(o, SIMULATOR, Object.keys(SIMULATOR_OPTION_HELP));
  const modelOption = read.oneOf('model', Object.keys(MODELS) as FreeStyleModel[], Object.keys(MODELS).join(', '));
  const model = modelOption ?? 'insulinx';
  return definedOnly<FreeStyleSimulatorOptions>({
    model: modelOption,
    serial: read.string('serial', /^[\x21-\x7e]{1,30}$/, '1-30 printable characters'),
    firmware: read.string('firmware'),
    clock_offset_s: read.number('clock_offset_s'),
    memory: read.list('memory', (r, where) => parseSimulatedRecord(read, r, where, model), 'a list of records'),
    corrupt_next: read.number('corrupt_next', 0),
    keepalive_every: read.number('keepalive_every', 0),
    max_payload: read.number('max_payload', 1, MAX_PAYLOAD),
    off: read.boolean('off'),
    report_delay_ms: read.number('report_delay_ms', 0),
    patient_name: read.string('patient_name'),
    patient_id: read.string('patient_id'),
    timezone: read.timezone(),
    seed: read.number('seed', 0),
    now: read.now(),
  });
}

function parseSimulatedRecord(read: SimulatorOptionReader, r: unknown, where: string, model: FreeStyleModel): SimulatedRecord {
  if (typeof r !== 'object' || r === null) throw read.error(where, 'an object');
  const o = r as Record<string, unknown>;
  if (typeof o.time !== 'string' || !NAIVE_RE.test(o.time)) throw read.error(`${where}.time`, 'YYYY-MM-DDTHH:MM:SS in 2000–2099');
  const libre = MODELS[model].family === 'libre';
  const kinds: SimulatedKind[] = libre ? ['glucose', 'ketone', 'scan', 'history'] : model === 'neo' ? ['glucose', 'ketone'] : ['glucose'];
  const kind = (o.kind ?? (libre ? 'history' : 'glucose')) as SimulatedKind;
  if (!kinds.includes(kind)) throw read.error(`${where}.kind`, `one of ${kinds.join(', ')} for model ${model}`);
  const hiLo = !libre && (o.value === 'HI' || (o.value === 'LO' && kind === 'glucose'));
  if (!hiLo && (typeof o.value !== 'number' || !Number.isFinite(o.value) || o.value < 0 || o.value > (kind === 'ketone' ? 30 : 999))) {
    throw read.error(`${where}.value`, kind === 'ketone' ? 'mmol/L 0–30 or "HI"' : `mg/dL 0–999${libre ? '' : ' or "HI"/"LO"'}`);
  }
  if (o.control !== undefined && (typeof o.control !== 'boolean' || (o.control && model !== 'neo'))) {
    throw read.error(`${where}.control`, 'true or false, and true only for model neo (the only documented control marker)');
  }
  if (o.error !== undefined && (typeof o.error !== 'boolean' || (o.error && !libre))) throw read.error(`${where}.error`, 'true or false, true only for Libre models');
  const out: SimulatedRecord = { time: o.time, kind, value: o.value as SimulatedRecord['value'] };
  if (o.control) out.control = true;
  if (o.error) out.error = true;
  return out;
}

const f2 = (n: number): string => String(n);

function civil(naive: string): [number, number, number, number, number, number] {
  const m = /^20(\d{2})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})$/.exec(naive)!;
  return [Number(m[2]), Number(m[3]), Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6])];
}

/** The wire line of one record, as the model writes it (fields as `codec.ts` parses them). */
export function simulatedRecordLine(model: FreeStyleModel, id: number, r: SimulatedRecord): { command: RecordCommand; line: string } {
  const [mo, d, yy, h, mi, s] = civil(r.time);
  const kind = r.kind ?? (MODELS[model].family === 'libre' ? 'history' : 'glucose');
  const wire = (v: SimulatedRecord['value']): string => (typeof v === 'number' ? f2(kind === 'ketone' ? Math.round(v * 18) : Math.round(v)) : v);
  if (model === 'insulinx') return { command: '$result?', line: [0, id, mo, d, yy, h, mi, 1, 0, 0, 0, 3, 0, wire(r.value), 0, 0].join(',') };
  if (model === 'neo') {
    const flag = r.control ? 0 : 1;
    if (kind === 'ketone') return { command: '$result?', line: [9, id, mo, d, yy, h, mi, 0, wire(r.value), flag].join(',') };
    return { command: '$result?', line: [7, id, mo, d, yy, h, mi, 0, wire(r.value), 0, flag, 0, 0, 0, 0, 0, 0, 0, 0].join(',') };
  }
  const errors = r.error ? 0x8000 : 0;
  if (kind === 'history') return { command: '$history?', line: [id, 12, mo, d, yy, h, mi, s, 1, 0, 0, 0, 0, wire(r.value), 900, errors].join(',') };
  const readingKind = kind === 'glucose' ? 0 : kind === 'ketone' ? 1 : 2;
  const fields: (string | number)[] = [id, 2, mo, d, yy, h, mi, s, 1, readingKind, 0, 0, wire(r.value), kind === 'scan' ? 1 : 0, kind === 'scan' ? 3 : 0];
  while (fields.length < 28) fields.push(0);
  fields.push(errors, '""', '""', '""', '""', '""', '""');
  return { command: '$arresult?', line: fields.join(',') };
}

export class FreeStyleSimulator implements DeviceSimulator {
  readonly model: FreeStyleModel;
  serial: string;
  firmware: string;
  readonly deviceClock: SimulatedClock;
  memory: SimulatedRecord[];
  off: boolean;
  /** Every text command received, in order (tests read it). */
  readonly received: string[] = [];
  private corrupt: number;
  private readonly corruptFor = new Map<string, number>();
  private readonly keepaliveEvery: number;
  private readonly maxPayload: number;
  private readonly reportDelayMs: number;
  private readonly patientName: string;
  private readonly patientId: string;
  private readonly random: () => number;
  private transport: ByteTransport | null = null;
  private readonly stream = new ReportStream();
  private sinceKeepalive = 0;
  private replying: Promise<void> = Promise.resolve();

  constructor(options: FreeStyleSimulatorOptions = {}) {
    this.model = options.model ?? 'insulinx';
    this.serial = options.serial ?? DEFAULT_SERIALS[this.model];
    this.firmware = options.firmware ?? '1.40';
    this.deviceClock = new SimulatedClock(options);
    this.off = options.off ?? false;
    this.corrupt = options.corrupt_next ?? 0;
    this.keepaliveEvery = Math.floor(options.keepalive_every ?? 3);
    this.maxPayload = Math.floor(options.max_payload ?? MAX_PAYLOAD);
    this.reportDelayMs = options.report_delay_ms ?? 0;
    this.patientName = options.patient_name ?? 'Doe,Jane';
    this.patientId = options.patient_id ?? 'PID-000042';
    this.random = seededRandom(options.seed ?? Date.now());
    this.memory = options.memory ? options.memory.map((r) => ({ ...r })) : this.defaultMemory();
  }

  /** Sends the next `n` text replies with a wrong checksum. */
  corruptNext(n: number): void {
    this.corrupt += n;
  }

  /** Sends the next `n` replies to `command` (e.g. `$history?`) with a wrong checksum. */
  corruptReplyTo(command: string, n = 1): void {
    this.corruptFor.set(command, (this.corruptFor.get(command) ?? 0) + n);
  }

  /** The meter's naive clock now. */
  clock(): string {
    return this.deviceClock.read();
  }

  attach(transport: ByteTransport): void {
    this.detach();
    this.transport = transport;
    transport.on('data', this.onData);
  }

  detach(): void {
    if (this.transport) this.transport.off('data', this.onData);
    this.transport = null;
    this.stream.reset();
  }

  /** Record lines per command, newest first with descending record numbers, as the meters send them. */
  recordLists(): Partial<Record<RecordCommand, string[]>> {
    const sorted = [...this.memory].sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
    const lists: Partial<Record<RecordCommand, string[]>> = {};
    sorted.forEach((r, i) => {
      const { command, line } = simulatedRecordLine(this.model, 1000 + sorted.length - i, r);
      (lists[command] ??= []).push(line);
    });
    return lists;
  }

  private defaultMemory(): SimulatedRecord[] {
    const start = Date.parse(`${this.clock().slice(0, 16)}:00Z`) - 2 * 86400_000;
    const at = (h: number): string => new Date(start + h * 3600_000).toISOString().slice(0, 19);
    const libre = MODELS[this.model].family === 'libre';
    if (libre) {
      const history: SimulatedRecord[] = Array.from({ length: 8 }, (_, i) => ({ time: at(8 + i * 0.25), kind: 'history', value: 100 + 5 * i }));
      return [
        ...history,
        { time: at(9.1), kind: 'scan', value: 131 },
        { time: at(12), kind: 'glucose', value: 96 },
        { time: at(12.5), kind: 'ketone', value: 0.6 },
        { time: at(13), kind: 'history', value: 0, error: true },
      ];
    }
    if (this.model === 'neo') {
      return [
        { time: at(7.5), kind: 'glucose', value: 96 },
        { time: at(8), kind: 'glucose', value: 118, control: true },
        { time: at(13), kind: 'ketone', value: 0.6 },
        { time: at(19), kind: 'glucose', value: 'HI' },
        { time: at(26), kind: 'glucose', value: 'LO' },
      ];
    }
    return [
      { time: at(7.5), value: 96 },
      { time: at(13), value: 142 },
      { time: at(19), value: 121 },
      { time: at(32), value: 88 },
    ];
  }

  private readonly onData = (chunk: Buffer): void => {
    for (const report of this.stream.push(chunk)) this.handle(report);
  };

  private handle(bytes: Buffer): void {
    const r = decodeReport(bytes);
    if (!r.ok) return; // the meter drops what it cannot read
    const { type, payload } = r.report;
    const text = type === MSG.TEXT || type === MSG.TEXT_ALT ? payload.toString('latin1').replace(/\r\n$/, '') : null;
    if (text !== null) this.received.push(text);
    else this.received.push(`#${type.toString(16).padStart(2, '0')}`);
    if (this.off) return;
    if (this.model === 'libre2' && type !== MSG.SERIAL) {
      // Encrypted from here on: 62 bytes of noise behind the type byte, the length byte unreadable.
      const noise = Buffer.alloc(REPORT_SIZE);
      for (let i = 0; i < noise.length; i++) noise[i] = Math.floor(this.random() * 256);
      noise[0] = MSG.TEXT;
      this.enqueue([noise]);
      return;
    }
    switch (type) {
      case MSG.X04:
        return this.enqueue([encodeReport(MSG.X04_REPLY, Buffer.of(0x0c))]);
      case MSG.SERIAL:
        return this.enqueue([encodeReport(MSG.SERIAL_REPLY, Buffer.from(`${this.serial}\0`, 'latin1'))]);
      case MSG.SWVER:
        return this.enqueue([encodeReport(MSG.SWVER_REPLY, Buffer.from(`${this.firmware}\0`, 'latin1'))]);
      case MSG.INIT:
        return this.enqueue([encodeReport(MSG.INIT_REPLY, Buffer.of(0x01))]);
      case MSG.TEXT:
      case MSG.TEXT_ALT:
        return this.enqueue(this.textReports(this.answer(text!)));
      default:
        return this.enqueue([encodeReport(MSG.UNKNOWN_COMMAND, Buffer.of(0x85))]);
    }
  }

  /** The reply text for a command, or a refusal. */
  private answer(command: string): Buffer {
    const libre = MODELS[this.model].family === 'libre';
    const ok = (message: string | Buffer): Buffer => {
      const forCommand = this.corruptFor.get(command) ?? 0;
      if (this.corrupt > 0 || forCommand > 0) {
        if (forCommand > 0) this.corruptFor.set(command, forCommand - 1);
        else this.corrupt--;
        return textReply(message, true, textChecksum(message) + 1);
      }
      return textReply(message);
    };
    const refuse = (): Buffer => textReply('', false);
    const [mo, d, yy, h, mi] = civil(this.clock());
    switch (command) {
      case '$serlnum?':
        return libre ? refuse() : ok(`${this.serial}\r\n`);
      case '$sn?':
        return libre ? ok(`${this.serial}\r\n`) : refuse();
      case '$swver?':
        return ok(`${this.firmware}\r\n`);
      case '$date?':
        return ok(`${mo},${d},${yy}\r\n`);
      case '$time?':
        return ok(`${h},${mi}\r\n`);
      case '$ptname?':
        return ok(`${this.patientName}\r\n`);
      case '$ptid?':
        return ok(`${this.patientId}\r\n`);
      case '$gunits?':
        return libre ? refuse() : ok('1\r\n');
      case '$uom?':
        return libre ? ok('1\r\n') : refuse();
      case '$result?':
      case '$history?':
      case '$arresult?': {
        if (libre !== (command !== '$result?')) return refuse();
        return ok(multiRecordMessage(this.recordLists()[command] ?? []));
      }
    }
    const set = /^\$(date|time),(\d{1,2}),(\d{1,2})(?:,(\d{1,2}))?$/.exec(command);
    if (set) {
      const [a, b, c] = [Number(set[2]), Number(set[3]), set[4] === undefined ? null : Number(set[4])];
      const accepted = set[1] === 'date' ? c !== null && this.deviceClock.setDate(c, a, b) : c === null && this.deviceClock.setTime(a, b);
      return accepted ? ok('') : refuse();
    }
    return refuse();
  }

  /** Cuts a reply into 0x60 reports of at most `max_payload` bytes, with keep-alives between. */
  private textReports(reply: Buffer): Buffer[] {
    const reports: Buffer[] = [];
    for (let i = 0; i < reply.length; i += this.maxPayload) {
      reports.push(encodeReport(MSG.TEXT, reply.subarray(i, i + this.maxPayload)));
    }
    return reports;
  }

  private enqueue(reports: Buffer[]): void {
    const transport = this.transport;
    if (!transport) return;
    this.replying = this.replying
      .then(async () => {
        for (const report of reports) {
          if (this.transport !== transport || !transport.isOpen) return;
          if (this.keepaliveEvery > 0 && ++this.sinceKeepalive > this.keepaliveEvery) {
            this.sinceKeepalive = 1;
            await transport.write(encodeReport(MSG.KEEPALIVE, Buffer.of(0x03)));
          }
          await transport.write(report);
          if (this.reportDelayMs > 0) await new Promise((r) => setTimeout(r, this.reportDelayMs));
        }
      })
      .catch(() => undefined);
  }
}
