/** Contour Next: a meter in data-transfer mode, over the report stream, for tests and `poctd simulate`. */
import type { DeviceSimulator } from '../../../src/driver-sdk/index.ts';
import type { ByteTransport } from '../../../src/transports/transport.ts';
import { ACK, encodeFrames, ENQ, EOT, NAK } from '../../../src/protocols/astm/frame.ts';
import { definedOnly, SimulatorOptionReader } from '../../../src/driver-sdk/simulator-options.ts';
import { seededRandom } from '../../../src/util/random.ts';
import { SimulatedClock, type SimulatedClockOptions } from '../../../src/driver-sdk/simulated-clock.ts';
import { decodeReport, encodeReports, MAX_REPORT_PAYLOAD, REPORT_SIZE } from './codec.ts';
import { CONTOUR_DRIVER_ID, type GlucoseUnit } from './records.ts';
import { SIMULATOR_OPTION_HELP } from './simulator-help.ts';

export interface SimulatedContourReading {
  /** Naive meter time, `YYYY-MM-DDTHH:MM` or with `:SS` (the meter keeps minutes). */
  time: string;
  /** In the meter's unit; ignored for `lo`/`hi`. */
  value: number;
  control?: boolean;
  lo?: boolean;
  hi?: boolean;
  /** Other markers as the meter writes them: B, A, F, D, I, S, X, Z1…ZC, M0, T1… */
  markers?: string[];
}

export interface ContourSimulatorOptions extends SimulatedClockOptions {
  serial?: string;
  /** Model code as in the H record (default 7410, Contour Next USB). */
  model_code?: string;
  firmware?: string;
  unit?: GlucoseUnit;
  memory?: SimulatedContourReading[];
  /** Never answers. */
  off?: boolean;
  /** Sends the next N frames with a wrong checksum (each is NAKed and sent again). */
  corrupt_next?: number;
  /** Stops sending after this many frames of a transfer (a meter that hangs mid-transfer). */
  stop_after_frames?: number;
  /** Sends one transfer per plug-in, like the real meter (a second poke gets no ENQ). */
  once_per_plug?: boolean;
  /** Records added before the L record, as given (to test unknown record types). */
  extra_records?: string[];
  /** true: each report carries a random 1…60 bytes; false (default): reports are filled to 60. */
  random_cuts?: boolean;
  /** NAKs the date and time writes in command mode and keeps its clock. */
  refuse_clock_set?: boolean;
  seed?: number;
}

/** Checks untyped options (YAML, command line) and returns them typed. */
export function parseContourSimulatorOptions(o: Record<string, unknown>): ContourSimulatorOptions {
  const read = new SimulatorOptionReader(o, `${CONTOUR_DRIVER_ID} simulator`, Object.keys(SIMULATOR_OPTION_HELP));
  return definedOnly<ContourSimulatorOptions>({
    serial: read.string('serial', /^[0-9A-Za-z-]{4,20}$/, '4-20 characters 0-9 A-Z and -'),
    model_code: read.string('model_code', /^\d{4}$/, 'four digits'),
    firmware: read.string('firmware', /^[0-9A-Za-z.]+(\/[0-9A-Za-z.]+)*$/, 'versions separated by /'),
    timezone: read.timezone(),
    clock_offset_s: read.number('clock_offset_s', -1e10),
    corrupt_next: read.number('corrupt_next', 0),
    stop_after_frames: read.number('stop_after_frames', 1),
    seed: read.number('seed', 0),
    off: read.boolean('off'),
    once_per_plug: read.boolean('once_per_plug'),
    random_cuts: read.boolean('random_cuts'),
    refuse_clock_set: read.boolean('refuse_clock_set'),
    unit: read.oneOf('unit', ['mg/dL', 'mmol/L'] as const, 'mg/dL or mmol/L'),
    memory: read.list('memory', (r, where) => parseSimulatedContourReading(read, r, where), 'a list of readings'),
    extra_records: read.list('extra_records', (r, where) => oneLineString(read, r, where), 'a list of one-line strings'),
    now: read.now(),
  });
}

function oneLineString(read: SimulatorOptionReader, r: unknown, where: string): string {
  if (typeof r !== 'string' || [...r].some((c) => c.charCodeAt(0) < 0x20)) throw read.error(where, 'a one-line string');
  return r;
}

function parseSimulatedContourReading(read: SimulatorOptionReader, r: unknown, where: string): SimulatedContourReading {
  if (typeof r !== 'object' || r === null) throw read.error(where, 'an object');
  const o = r as Record<string, unknown>;
  if (typeof o.time !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(o.time)) throw read.error(`${where}.time`, 'YYYY-MM-DDTHH:MM');
  if (typeof o.value !== 'number' || !Number.isFinite(o.value) || o.value < 0 || o.value > 9999) throw read.error(`${where}.value`, 'a number 0-9999');
  const out: SimulatedContourReading = { time: o.time, value: o.value };
  for (const k of ['control', 'lo', 'hi'] as const) {
    if (o[k] === undefined) continue;
    if (typeof o[k] !== 'boolean') throw read.error(`${where}.${k}`, 'true or false');
    out[k] = o[k];
  }
  if (o.markers !== undefined) {
    if (!Array.isArray(o.markers) || o.markers.some((m) => typeof m !== 'string' || !/^[0-9A-Z]{1,3}$/.test(m))) {
      throw read.error(`${where}.markers`, 'a list like ["B", "Z4"]');
    }
    out.markers = o.markers as string[];
  }
  return out;
}

/** `2015-05-26T11:50` → `201505261150`. */
function astmTime(naive: string): string {
  return naive.replace(/[-T:]/g, '').slice(0, 12);
}

/** The records (without CR) of one transfer as the simulated meter sends them. */
export function contourTransferRecords(meter: {
  serial: string;
  modelCode: string;
  firmware: string;
  unit: GlucoseUnit;
  clock: string;
  memory: SimulatedContourReading[];
  extraRecords?: string[];
}): string[] {
  const mmol = meter.unit === 'mmol/L';
  const limits = mmol ? 'V=06333' : 'V=10600';
  const config = `A=1^C=63^G=1^I=0200^R=0^S=1^U=${mmol ? 1 : 0}^${limits}^Z=1`;
  const oldestFirst = [...meter.memory].sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
  const records = [
    `H|\\^&||sim0pw|Bayer${meter.modelCode}^${meter.firmware.replace(/\//g, '\\')}^${meter.serial}^${meter.modelCode}-|${config}|${oldestFirst.length}||||||1|${astmTime(meter.clock)}`,
    'P|1',
  ];
  oldestFirst.forEach((r, i) => {
    const markers = [...(r.lo ? ['<'] : r.hi ? ['>'] : []), ...(r.control ? ['C'] : []), ...(r.markers ?? [])].join('/');
    const limitValue = mmol ? (r.lo ? '0.6' : '33.3') : r.lo ? '10' : '600';
    const value = r.lo || r.hi ? limitValue : mmol ? r.value.toFixed(1) : String(Math.round(r.value));
    records.push(`R|${i + 1}|^^^Glucose|${value}|${meter.unit}^P||${markers}||${astmTime(r.time)}`);
  });
  records.push(...(meter.extraRecords ?? []));
  records.push('L|1||N');
  return records;
}

type SimState = 'idle' | 'bid' | 'sending' | 'command';

export class ContourSimulator implements DeviceSimulator {
  serial: string;
  modelCode: string;
  firmware: string;
  unit: GlucoseUnit;
  readonly deviceClock: SimulatedClock;
  memory: SimulatedContourReading[];
  off: boolean;
  stopAfterFrames: number | null;
  extraRecords: string[];
  /** Every control byte and command text the host sent, in order (tests read it). */
  readonly received: string[] = [];
  /** Transfers completed (the host ACKed the L frame). */
  transfers = 0;
  private readonly oncePerPlug: boolean;
  private readonly randomCuts: boolean;
  private readonly refuseClockSet: boolean;
  private readonly random: () => number;
  private corruptFrames: number;
  private transport: ByteTransport | null = null;
  private state: SimState = 'idle';
  private frames: Buffer[] = [];
  private frameIndex = 0;
  private sentThisPlug = false;
  private commandText = '';
  private pendingCommand: 'date' | 'time' | null = null;
  private writeArmed = false;
  private sending: Promise<void> = Promise.resolve();

  constructor(options: ContourSimulatorOptions = {}) {
    this.serial = options.serial ?? '7410-1234567';
    this.modelCode = options.model_code ?? '7410';
    this.firmware = options.firmware ?? '01.14/01.03/04.18';
    this.unit = options.unit ?? 'mg/dL';
    this.deviceClock = new SimulatedClock(options);
    this.off = options.off ?? false;
    this.corruptFrames = Math.floor(options.corrupt_next ?? 0);
    this.stopAfterFrames = options.stop_after_frames ?? null;
    this.extraRecords = options.extra_records ?? [];
    this.oncePerPlug = options.once_per_plug ?? false;
    this.randomCuts = options.random_cuts ?? false;
    this.refuseClockSet = options.refuse_clock_set ?? false;
    this.random = seededRandom(options.seed ?? Date.now());
    this.memory = options.memory ? options.memory.map((r) => ({ ...r })) : this.defaultMemory();
  }

  /** Sends the next `n` frames with a wrong checksum. */
  corruptNext(n: number): void {
    this.corruptFrames += n;
  }

  /** The meter's naive clock now. */
  clock(): string {
    return this.deviceClock.read();
  }

  attach(transport: ByteTransport): void {
    this.detach();
    this.transport = transport;
    this.state = 'idle';
    this.sentThisPlug = false;
    transport.on('data', this.onReport);
  }

  detach(): void {
    if (this.transport) this.transport.off('data', this.onReport);
    this.transport = null;
    this.state = 'idle';
    this.frames = [];
  }

  private defaultMemory(): SimulatedContourReading[] {
    const start = Date.parse(`${this.clock()}Z`) - 2 * 86400_000;
    const mmol = this.unit === 'mmol/L';
    const plan: [number, number, string[], boolean][] = [
      [7.5, 96, ['B'], false],
      [13, 142, ['A', 'Z8'], false],
      [24 + 8, 88, ['F'], false],
      [24 + 8.2, 112, [], true],
      [24 + 14, 176, ['A'], false],
    ];
    return plan.map(([h, mg, markers, control]) => ({
      time: new Date(start + h * 3600_000).toISOString().slice(0, 16),
      value: mmol ? Math.round((mg / 18) * 10) / 10 : mg,
      markers,
      control,
    }));
  }

  private readonly onReport = (report: Buffer): void => {
    if (this.off) return;
    // Hosts write `ABC` or zeros as the header; the length byte says how much is payload.
    const r = decodeReport(report);
    if (!r.ok) return;
    for (const b of r.payload) this.byte(b);
  };

  private byte(b: number): void {
    if (this.state === 'command' && b !== EOT && b !== ENQ) {
      this.commandText += String.fromCharCode(b);
      this.commandStep();
      return;
    }
    this.received.push(CONTROL_TEXT[b] ?? String.fromCharCode(b));
    switch (this.state) {
      case 'idle':
        if (b === EOT || b === ACK || b === 0x58 /* X */) {
          if (this.oncePerPlug && this.sentThisPlug) return;
          this.state = 'bid';
          this.send(Buffer.from([ENQ]));
        } else if (b === NAK) this.send(Buffer.from([EOT]));
        else if (b === ENQ) {
          this.state = 'command';
          this.commandText = '';
          this.writeArmed = false;
          this.pendingCommand = null;
          this.send(Buffer.from([ACK]));
        }
        return;
      case 'bid':
        if (b === ACK) {
          this.frames = this.buildFrames();
          this.frameIndex = 0;
          this.state = 'sending';
          this.sendFrame();
        } else if (b === NAK) {
          this.state = 'idle';
          this.send(Buffer.from([EOT]));
        } else if (b === EOT) this.send(Buffer.from([ENQ]));
        return;
      case 'sending':
        if (b === ACK) {
          this.frameIndex++;
          if (this.frameIndex >= this.frames.length) {
            this.state = 'idle';
            this.sentThisPlug = true;
            this.transfers++;
            this.send(Buffer.from([EOT]));
          } else this.sendFrame();
        } else if (b === NAK) this.sendFrame();
        else if (b === EOT) this.state = 'idle';
        return;
      case 'command':
        if (b === EOT) this.state = 'idle';
        else this.send(Buffer.from([NAK])); // ENQ inside command mode
        return;
    }
  }

  /** Command mode: `W|` arms a write, `D|`/`T|` choose the field, `YYMMDD|\r`/`HHmm|\r` set it. */
  private commandStep(): void {
    const t = this.commandText;
    if (t === 'W|' || t === 'D|' || t === 'T|' || t.endsWith('\r')) this.received.push(t.replace('\r', '\\r'));
    if (t === 'W|') {
      this.writeArmed = true;
      this.commandText = '';
      this.send(Buffer.from([ACK]));
    } else if ((t === 'D|' || t === 'T|') && this.writeArmed) {
      this.pendingCommand = t === 'D|' ? 'date' : 'time';
      this.commandText = '';
      this.send(Buffer.from([ACK]));
    } else if (t.endsWith('\r')) {
      this.commandText = '';
      const ok = !this.refuseClockSet && this.applySet(t.slice(0, -1));
      this.writeArmed = false;
      this.pendingCommand = null;
      this.send(Buffer.from([ok ? ACK : NAK]));
    } else if (t.length > 16) {
      this.commandText = '';
      this.send(Buffer.from([NAK]));
    }
  }

  private applySet(text: string): boolean {
    if (this.pendingCommand === 'date') {
      const m = /^(\d{2})(\d{2})(\d{2})\|$/.exec(text);
      return m !== null && this.deviceClock.setDate(Number(m[1]), Number(m[2]), Number(m[3]));
    }
    if (this.pendingCommand === 'time') {
      const m = /^(\d{2})(\d{2})\|$/.exec(text);
      return m !== null && this.deviceClock.setTime(Number(m[1]), Number(m[2]));
    }
    return false;
  }

  private buildFrames(): Buffer[] {
    const records = contourTransferRecords({
      serial: this.serial,
      modelCode: this.modelCode,
      firmware: this.firmware,
      unit: this.unit,
      clock: this.clock(),
      memory: this.memory,
      extraRecords: this.extraRecords,
    });
    return encodeFrames(records.map((r, i) => ({ text: Buffer.from(`${r}\r`, 'latin1'), final: i === records.length - 1 })));
  }

  private sendFrame(): void {
    if (this.stopAfterFrames !== null && this.frameIndex >= this.stopAfterFrames) return;
    let frame = this.frames[this.frameIndex]!;
    if (this.corruptFrames > 0) {
      this.corruptFrames--;
      frame = Buffer.from(frame);
      const at = frame.length - 4; // the first checksum digit (… C1 C2 CR LF)
      frame[at] = frame[at] === 0x30 ? 0x31 : 0x30;
    }
    this.send(frame);
  }

  /** Writes bytes as 64-byte input reports, in order. */
  private send(bytes: Buffer): void {
    const transport = this.transport;
    if (!transport) return;
    const cut = this.randomCuts ? () => 1 + Math.floor(this.random() * MAX_REPORT_PAYLOAD) : undefined;
    const reports = encodeReports(bytes, cut).map((r) => Buffer.concat([r, Buffer.alloc(REPORT_SIZE - r.length)]));
    this.sending = this.sending
      .then(async () => {
        for (const report of reports) {
          if (this.transport !== transport || !transport.isOpen) return;
          await transport.write(report);
        }
      })
      .catch(() => undefined);
  }
}

const CONTROL_TEXT: Record<number, string> = { [ACK]: 'ACK', [NAK]: 'NAK', [EOT]: 'EOT', [ENQ]: 'ENQ' };
