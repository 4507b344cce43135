/**
 * The Ultra 2 simulator: the meter's side of the protocol, for the demo, the tests and the
 * benchmark. Answers DM?, DM@, DMF, DMSU?, DMP, DMT and DMZ with checksummed lines, or a single
 * 0x00 when it is "on" (not ready), or nothing when off.
 */
import type { DeviceSimulator } from '../../../src/driver-sdk/index.ts';
import type { ByteTransport } from '../../../src/transports/transport.ts';
import { definedOnly, SimulatorOptionReader } from '../../../src/driver-sdk/simulator-options.ts';
import { seededRandom } from '../../../src/util/random.ts';
import { ChunkedWriter } from '../../../src/driver-sdk/simulator-wire.ts';
import { SimulatedClock, type SimulatedClockOptions } from '../../../src/driver-sdk/simulated-clock.ts';
import { isMeterNaiveTime } from '../../../src/util/time.ts';
import { CR, LF, NUL, ULTRA2_SERIAL_RE, naiveFromWire, ultra2Checksum, ultra2Line, type DisplayUnit, type Meal } from './codec.ts';
import { SIMULATOR_OPTION_HELP } from './simulator-help.ts';

export interface SimulatedReading {
  /** Naive meter time `YYYY-MM-DDTHH:MM:SS`, years 2000–2099. */
  time: string;
  /** mg/dL, 0–999. */
  value: number;
  control?: boolean;
  meal?: Meal;
  comment?: number;
  parity?: boolean;
}

/** What a meter holds, enough to answer every command. */
export interface Ultra2MeterState {
  serial: string;
  /** The text after `?` in the DM? reply, e.g. `P02.00.00 30/08/06`. */
  firmware: string;
  unit: DisplayUnit;
  /** The meter's clock now, naive. */
  clock: string;
  /** In any order; DMP sends them newest first. */
  memory: SimulatedReading[];
}

const DAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];

/** `2015-03-21T16:45:24` → [`SAT`, `03/21/15`, `16:45:24`]. */
function wireDateTime(naive: string): [string, string, string] {
  const m = /^20(\d{2})-(\d{2})-(\d{2})T(\d{2}:\d{2}:\d{2})$/.exec(naive);
  if (!m) throw new RangeError(`not a naive time in 2000–2099: ${naive}`);
  const dow = DAYS[new Date(`${naive}Z`).getUTCDay()]!;
  return [dow, `${m[2]}/${m[3]}/${m[1]}`, m[4]!];
}

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}

export function readingBody(r: SimulatedReading): string {
  const [dow, date, time] = wireDateTime(r.time);
  const value = `${r.control ? 'C' : ' '} ${String(r.value).padStart(3, '0')}${r.parity ? '?' : ' '}`;
  return `P "${dow}","${date}","${time}   ","${value}","${r.meal ?? 'N'}","${pad2(r.comment ?? 0)}", 00`;
}

/** The reply bodies (no checksum, no line end) the meter sends for `command`. Null if it stays silent. */
export function ultra2ReplyBodies(command: string, meter: Ultra2MeterState): string[] | null {
  const unitWire = meter.unit === 'mmol/L' ? 'MMOL/L' : 'MG/DL ';
  const clockBody = (letter: 'F' | 'T', naive: string): string => {
    const [dow, date, time] = wireDateTime(naive);
    return `${letter} "${dow}","${date}","${time}   "`;
  };
  switch (command) {
    case 'DM?':
      return [`?${meter.firmware}`];
    case 'DM@':
      return [`@ "${meter.serial}"`];
    case 'DMF':
      return [clockBody('F', meter.clock)];
    case 'DMSU?':
      return [`SU?,"${unitWire}"`];
    case 'DMZ':
      return ['Z'];
    case 'DMP': {
      const newestFirst = [...meter.memory].sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
      const count = String(newestFirst.length).padStart(3, '0');
      return [`P ${count},"${meter.serial}","${unitWire}"`, ...newestFirst.map(readingBody)];
    }
  }
  const set = parseSetClock(command);
  return set ? [clockBody('T', set)] : null;
}

/** The reply bytes for `command`, every line checksummed and ended with CR LF. */
export function ultra2Reply(command: string, meter: Ultra2MeterState): Buffer | null {
  const bodies = ultra2ReplyBodies(command, meter);
  return bodies ? Buffer.concat(bodies.map((b) => ultra2Line(b))) : null;
}

/** `DMT03/21/15 16:45:24` → `2015-03-21T16:45:24`, or null. */
function parseSetClock(command: string): string | null {
  const m = /^DMT(\d{2})\/(\d{2})\/(\d{2}) (\d{2}):(\d{2}):(\d{2})$/.exec(command);
  return m ? naiveFromWire(m.slice(1, 7)) : null;
}

export interface Ultra2SimulatorOptions extends SimulatedClockOptions {
  serial?: string;
  firmware?: string;
  unit?: DisplayUnit;
  /** What the meter remembers. When absent, a few plausible readings from the last two days. */
  memory?: SimulatedReading[];
  /** Adds a new reading every so many seconds (about 1 in 10 a control run). */
  new_reading_every_s?: number;
  /** Readings the meter keeps before the oldest is dropped (default MEMORY_SIZE, as the real meter). */
  capacity?: number;
  /** true: answers nothing. 'nul': answers every command with a single 0x00 byte. */
  off?: boolean | 'nul';
  /** Sends the next N lines with a wrong checksum. */
  corrupt_next?: number;
  /** The largest chunk written at once (default 16); chunk sizes are random from 1 up to it. */
  max_chunk?: number;
  /** Pause between lines, in ms (default 0). */
  line_delay_ms?: number;
  /** Seed of the simulator's random numbers, for reproducible runs. */
  seed?: number;
}

const SIMULATOR = 'onetouch-ultra2 simulator';

/** Checks untyped options (from YAML or the command line) and returns them typed. */
export function parseSimulatorOptions(o: Record<string, unknown>): Ultra2SimulatorOptions {
  const read = new SimulatorOptionReader(o, SIMULATOR, Object.keys(SIMULATOR_OPTION_HELP));
  return definedOnly<Ultra2SimulatorOptions>({
    serial: read.string('serial', ULTRA2_SERIAL_RE, '9 characters A-Z/0-9 ending in Y'),
    firmware: read.string('firmware', /^\S+( \S.*)?$/, 'a string like "P02.00.00 30/08/06"'),
    unit: read.oneOf('unit', ['mg/dL', 'mmol/L'] as const, 'mg/dL or mmol/L'),
    clock_offset_s: read.number('clock_offset_s'),
    memory: read.list('memory', (r, where) => parseSimulatedReading(read, r, where), 'a list of readings'),
    new_reading_every_s: read.number('new_reading_every_s', 0.001),
    capacity: read.number('capacity', 1),
    off: read.oneOf('off', [true, false, 'nul'] as const, 'true, false or "nul"'),
    corrupt_next: read.number('corrupt_next', 0),
    timezone: read.timezone(),
    max_chunk: read.number('max_chunk', 1),
    line_delay_ms: read.number('line_delay_ms', 0),
    seed: read.number('seed', 0),
    now: read.now(),
  });
}

function parseSimulatedReading(read: SimulatorOptionReader, r: unknown, where: string): SimulatedReading {
  if (typeof r !== 'object' || r === null) throw read.error(where, 'an object');
  const o = r as Record<string, unknown>;
  if (typeof o.time !== 'string' || !isMeterNaiveTime(o.time)) {
    throw read.error(`${where}.time`, 'YYYY-MM-DDTHH:MM:SS in 2000–2099');
  }
  if (typeof o.value !== 'number' || !Number.isInteger(o.value) || o.value < 0 || o.value > 999) {
    throw read.error(`${where}.value`, 'an integer 0–999 (mg/dL)');
  }
  if (o.meal !== undefined && o.meal !== 'N' && o.meal !== 'B' && o.meal !== 'A') throw read.error(`${where}.meal`, 'N, B or A');
  if (o.comment !== undefined && (typeof o.comment !== 'number' || !Number.isInteger(o.comment) || o.comment < 0 || o.comment > 11)) {
    throw read.error(`${where}.comment`, 'an integer 0–11');
  }
  if (o.control !== undefined && typeof o.control !== 'boolean') throw read.error(`${where}.control`, 'true or false');
  if (o.parity !== undefined && typeof o.parity !== 'boolean') throw read.error(`${where}.parity`, 'true or false');
  const out: SimulatedReading = { time: o.time, value: o.value };
  if (o.control !== undefined) out.control = o.control as boolean;
  if (o.meal !== undefined) out.meal = o.meal as Meal;
  if (o.comment !== undefined) out.comment = o.comment as number;
  if (o.parity !== undefined) out.parity = o.parity as boolean;
  return out;
}

/** The Ultra 2 keeps its last 500 readings. */
const MEMORY_SIZE = 500;

export class Ultra2Simulator implements DeviceSimulator {
  serial: string;
  firmware: string;
  unit: DisplayUnit;
  readonly deviceClock: SimulatedClock;
  memory: SimulatedReading[];
  off: boolean | 'nul';
  /** Lines sent from now on with a wrong checksum: 0 is the next line. */
  private readonly corruptAt = new Set<number>();
  private readonly garbleAt = new Set<number>();
  private linesSent = 0;
  /** Every command received, in order (tests read it). */
  readonly received: string[] = [];
  private readonly lineDelayMs: number;
  private readonly random: () => number;
  private readonly newReadingEveryS: number | undefined;
  private transport: ByteTransport | null = null;
  private rx: number[] = [];
  private flushTimer: NodeJS.Timeout | null = null;
  private readingTimer: NodeJS.Timeout | null = null;
  private readonly capacity: number;
  private readonly wire: ChunkedWriter;

  constructor(options: Ultra2SimulatorOptions = {}) {
    this.serial = options.serial ?? 'GMF600DCY';
    this.firmware = options.firmware ?? 'P02.00.00 30/08/06';
    this.unit = options.unit ?? 'mg/dL';
    this.deviceClock = new SimulatedClock(options);
    this.off = options.off ?? false;
    this.corruptNext(options.corrupt_next ?? 0);
    this.lineDelayMs = options.line_delay_ms ?? 0;
    this.random = seededRandom(options.seed ?? Date.now());
    this.wire = new ChunkedWriter(this.random, Math.max(1, Math.floor(options.max_chunk ?? 16)), (t) => t === this.transport);
    this.newReadingEveryS = options.new_reading_every_s;
    this.capacity = Math.floor(options.capacity ?? MEMORY_SIZE);
    this.memory = options.memory ? options.memory.map((r) => ({ ...r })) : this.defaultMemory();
  }

  /** Sends the next `n` lines with a wrong checksum. */
  corruptNext(n: number): void {
    for (let i = 0; i < n; i++) this.corruptLine(i);
  }

  /** Sends one line with a wrong checksum: the `index`-th line from now (0 = the next). */
  corruptLine(index: number): void {
    this.corruptAt.add(this.linesSent + index);
  }

  /**
   * Sends one reading line dated 30 February, with a checksum that matches: what a meter with a
   * damaged memory cell sends every time it is asked. `index` counts lines as in `corruptLine`.
   */
  garbleLine(index: number): void {
    this.garbleAt.add(this.linesSent + index);
  }

  /** The meter's naive clock now. */
  clock(): string {
    return this.deviceClock.read();
  }

  meterState(): Ultra2MeterState {
    return { serial: this.serial, firmware: this.firmware, unit: this.unit, clock: this.clock(), memory: this.memory };
  }

  /** Stores a new plausible reading at the meter's clock (about 1 in 10 a control run). */
  addReading(reading?: Partial<SimulatedReading>): SimulatedReading {
    const control = reading?.control ?? this.random() < 0.1;
    const r: SimulatedReading = {
      time: reading?.time ?? this.clock(),
      value: reading?.value ?? (control ? 95 + Math.floor(this.random() * 40) : 70 + Math.floor(this.random() * 150)),
      control,
      meal: reading?.meal ?? (control ? 'N' : (['N', 'B', 'A'] as const)[Math.floor(this.random() * 3)]!),
      comment: reading?.comment ?? (control || this.random() < 0.7 ? 0 : 1 + Math.floor(this.random() * 11)),
    };
    this.memory.push(r);
    if (this.memory.length > this.capacity) {
      this.memory.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
      this.memory.splice(0, this.memory.length - this.capacity);
    }
    return r;
  }

  attach(transport: ByteTransport): void {
    this.detach();
    this.transport = transport;
    transport.on('data', this.onData);
    if (this.newReadingEveryS) {
      this.readingTimer = setInterval(() => this.addReading(), this.newReadingEveryS * 1000);
    }
  }

  detach(): void {
    if (this.transport) this.transport.off('data', this.onData);
    this.transport = null;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    if (this.readingTimer) clearInterval(this.readingTimer);
    this.flushTimer = null;
    this.readingTimer = null;
    this.rx = [];
  }

  private defaultMemory(): SimulatedReading[] {
    const start = Date.parse(`${this.clock()}Z`) - 2 * 86400_000;
    const plan: [number, number, Meal, boolean][] = [
      [7.5, 96, 'B', false],
      [13, 142, 'A', false],
      [19, 121, 'B', false],
      [24 + 8, 88, 'B', false],
      [24 + 8.2, 112, 'N', true],
      [24 + 14, 176, 'A', false],
    ];
    return plan.map(([h, value, meal, control]) => ({
      time: new Date(start + h * 3600_000).toISOString().slice(0, 19),
      value,
      meal,
      control,
      comment: 0,
    }));
  }

  private readonly onData = (chunk: Buffer): void => {
    for (const b of chunk) {
      if (b === 0x11) continue; // the wake-up byte
      if (b === CR || b === LF) this.endCommand();
      else this.rx.push(b);
    }
    // Tidepool-style commands have no final CR: treat a short pause as the end of the command.
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = this.rx.length > 0 ? setTimeout(() => this.endCommand(), 50) : null;
  };

  private endCommand(): void {
    if (this.rx.length === 0) return;
    const command = Buffer.from(this.rx).toString('latin1').trim();
    this.rx = [];
    if (command) this.handle(command);
  }

  private handle(command: string): void {
    this.received.push(command);
    if (this.off === true) return;
    if (this.off === 'nul') {
      this.enqueueWrites([Buffer.from([NUL])]);
      return;
    }
    const bodies = ultra2ReplyBodies(command, this.meterState());
    if (!bodies) return; // the meter ignores what it does not know
    const set = parseSetClock(command);
    if (set) this.deviceClock.set(set);
    if (command === 'DMZ') this.memory = [];
    this.enqueueWrites(
      bodies.map((body) => {
        const n = this.linesSent++;
        if (this.garbleAt.delete(n)) return ultra2Line(body.replace(/"\d{2}\/\d{2}\/(\d{2})"/, '"02/30/$1"'));
        if (!this.corruptAt.delete(n)) return ultra2Line(body);
        return ultra2Line(body, ultra2Checksum(body) + 1);
      }),
    );
  }

  private enqueueWrites(lines: Buffer[]): void {
    if (this.transport) void this.wire.write(this.transport, lines, this.lineDelayMs);
  }
}
