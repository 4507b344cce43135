/**
 * A LifeScan binary meter on a byte transport, for the demo, the tests and `poctd simulate`: the
 * frames, the UltraEasy handshake and the dialect's replies. Each driver brings its dialect and
 * its `SimulatorRules` (what its memory can hold).
 */
import type { DeviceSimulator } from '../../../src/driver-sdk/index.ts';
import type { ByteTransport } from '../../../src/transports/transport.ts';
import { definedOnly, SimulatorOptionReader } from '../../../src/driver-sdk/simulator-options.ts';
import { seededRandom } from '../../../src/util/random.ts';
import { ChunkedWriter } from '../../../src/driver-sdk/simulator-wire.ts';
import { SimulatedClock, type SimulatedClockOptions } from '../../../src/driver-sdk/simulated-clock.ts';
import { isMeterNaiveTime } from '../../../src/util/time.ts';
import {
  FrameReader,
  LINK,
  encodeFrame,
  isAck,
  isDisc,
  isPlainAscii,
  naiveFromSeconds,
  secondsFromNaive,
  splitVersion,
  type DisplayUnit,
  type Frame,
  type LifeScanDialect,
  type LifeScanRequest,
  type Meal,
  type MeterView,
  type WireRecord,
} from './codec.ts';
import { SIMULATOR_OPTION_HELP } from './simulator-help.ts';

export interface SimulatedReading {
  /** Naive meter time `YYYY-MM-DDTHH:MM:SS`, years 2000–2099. */
  time: string;
  /** mg/dL, or `HI` / `LO` (the UltraEasy's 0xFFFF / 0xFFFE codes). */
  value: number | 'HI' | 'LO';
  control?: boolean;
  meal?: Meal;
}

export interface SimulatorOptions extends SimulatedClockOptions {
  serial?: string;
  firmware?: string;
  unit?: DisplayUnit;
  memory?: SimulatedReading[];
  off?: boolean;
  corrupt_next?: number;
  max_chunk?: number;
  frame_delay_ms?: number;
  seed?: number;
}

export interface SimulatorRules {
  driverId: string;
  defaultSerial: string;
  defaultFirmware: string;
  isSerial(s: string): boolean;
  /** Why a reading cannot be held by this meter, or null. */
  readingProblem(r: SimulatedReading): string | null;
  /** A reading → the meter's record (the glucose field as this meter writes it). */
  toWire(r: SimulatedReading, epochOffsetS: number): WireRecord;
  defaultMemory(clock: string): SimulatedReading[];
}

/** Checks untyped options (from YAML or the command line) and returns them typed. */
export function parseSimulatorOptions(rules: SimulatorRules, o: Record<string, unknown>): SimulatorOptions {
  const read = new SimulatorOptionReader(o, `${rules.driverId} simulator`, Object.keys(SIMULATOR_OPTION_HELP));
  return definedOnly<SimulatorOptions>({
    serial: checkedString(read, 'serial', (s) => rules.isSerial(s), 'a serial number this meter can have'),
    firmware: checkedString(read, 'firmware', (s) => isPlainAscii(s) && s.length >= 1 && s.length <= 24, 'printable ASCII, 1–24 characters'),
    unit: read.oneOf('unit', ['mg/dL', 'mmol/L'] as const, 'mg/dL or mmol/L'),
    clock_offset_s: read.number('clock_offset_s'),
    memory: read.list('memory', (r, where) => parseSimulatedReading(read, rules, r, where), 'a list of readings'),
    off: read.boolean('off'),
    corrupt_next: read.number('corrupt_next', 0),
    timezone: read.timezone(),
    max_chunk: read.number('max_chunk', 1),
    frame_delay_ms: read.number('frame_delay_ms', 0),
    seed: read.number('seed', 0),
    now: read.now(),
  });
}

/** A string option that `ok` accepts (a check the reader's pattern cannot express). */
function checkedString(read: SimulatorOptionReader, name: string, ok: (s: string) => boolean, want: string): string | undefined {
  const v = read.string(name, undefined, want);
  if (v !== undefined && !ok(v)) throw read.error(name, want);
  return v;
}

function parseSimulatedReading(read: SimulatorOptionReader, rules: SimulatorRules, r: unknown, where: string): SimulatedReading {
  if (typeof r !== 'object' || r === null) throw read.error(where, 'an object');
  const x = r as Record<string, unknown>;
  if (typeof x.time !== 'string' || !isMeterNaiveTime(x.time)) {
    throw read.error(`${where}.time`, 'YYYY-MM-DDTHH:MM:SS in 2000–2099');
  }
  if (!(x.value === 'HI' || x.value === 'LO' || (typeof x.value === 'number' && Number.isInteger(x.value) && x.value >= 0))) {
    throw read.error(`${where}.value`, 'an integer mg/dL, "HI" or "LO"');
  }
  if (x.control !== undefined && typeof x.control !== 'boolean') throw read.error(`${where}.control`, 'true or false');
  if (x.meal !== undefined && x.meal !== 'none' && x.meal !== 'before' && x.meal !== 'after') throw read.error(`${where}.meal`, 'none, before or after');
  const reading: SimulatedReading = { time: x.time, value: x.value as number | 'HI' | 'LO' };
  if (x.control !== undefined) reading.control = x.control as boolean;
  if (x.meal !== undefined) reading.meal = x.meal as Meal;
  const problem = rules.readingProblem(reading);
  if (problem) throw read.error(where, problem);
  return reading;
}

/** A LifeScan meter on a byte transport: the frames, the UltraEasy handshake, and the dialect's replies. */
export class LifeScanSimulator implements DeviceSimulator {
  serial: string;
  firmware: string;
  build: string;
  unit: DisplayUnit;
  readonly deviceClock: SimulatedClock;
  memory: SimulatedReading[];
  off: boolean;
  /** Every request received, in order (tests read it). */
  readonly received: LifeScanRequest['type'][] = [];
  /** Link resets received. */
  resets = 0;
  private readonly corruptAt = new Set<number>();
  private framesSent = 0;
  private readonly wire: ChunkedWriter;
  private readonly frameDelayMs: number;
  private readonly random: () => number;
  private readonly reader = new FrameReader();
  private transport: ByteTransport | null = null;
  // UltraEasy link state: the meter's S, the host S it expects next, and its last reply (resent on a duplicate).
  private meterS = 0;
  private expectS = 0;
  private awaitingAck = false;
  private lastReply: Buffer | null = null;

  constructor(
    private readonly dialect: LifeScanDialect,
    private readonly rules: SimulatorRules,
    options: SimulatorOptions = {},
  ) {
    this.serial = options.serial ?? rules.defaultSerial;
    const v = splitVersion(options.firmware ?? rules.defaultFirmware);
    this.firmware = v.firmware;
    this.build = v.build ?? '';
    this.unit = options.unit ?? 'mg/dL';
    this.deviceClock = new SimulatedClock(options);
    this.off = options.off ?? false;
    this.corruptNext(options.corrupt_next ?? 0);
    this.frameDelayMs = options.frame_delay_ms ?? 0;
    this.random = seededRandom(options.seed ?? Date.now());
    this.wire = new ChunkedWriter(this.random, Math.max(1, Math.floor(options.max_chunk ?? 16)), (t) => t === this.transport);
    this.memory = options.memory ? options.memory.map((r) => ({ ...r })) : rules.defaultMemory(this.clock());
  }

  /** Sends the next `n` frames with a wrong CRC. */
  corruptNext(n: number): void {
    for (let i = 0; i < n; i++) this.corruptFrame(i);
  }

  /** Sends one frame with a wrong CRC: the `index`-th frame from now (0 = the next). */
  corruptFrame(index: number): void {
    this.corruptAt.add(this.framesSent + index);
  }

  /** The meter's naive clock now. */
  clock(): string {
    return this.deviceClock.read();
  }

  view(): MeterView {
    const newestFirst = [...this.memory].sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
    return {
      serial: this.serial,
      firmware: this.firmware,
      build: this.build,
      unit: this.unit,
      clockSeconds: secondsFromNaive(this.clock(), this.dialect.epochOffsetS),
      records: newestFirst.map((r) => this.rules.toWire(r, this.dialect.epochOffsetS)),
    };
  }

  attach(transport: ByteTransport): void {
    this.detach();
    this.transport = transport;
    transport.on('data', this.onData);
  }

  detach(): void {
    if (this.transport) this.transport.off('data', this.onData);
    this.transport = null;
    this.reader.reset();
  }

  private readonly onData = (chunk: Buffer): void => {
    for (const item of this.reader.push(chunk)) {
      // A damaged frame from the host is ignored: the host hears nothing and asks again.
      if (item.kind === 'frame') this.handle(item.frame);
    }
  };

  private handle(f: Frame): void {
    if (this.off) return;
    if (this.dialect.linkMode === 'plain') {
      const reply = this.serve(f.message);
      if (reply) this.send(reply, 0);
      return;
    }
    if (isDisc(f)) {
      this.resets++;
      this.meterS = 0;
      this.expectS = 0;
      this.awaitingAck = false;
      this.lastReply = null;
      this.send(Buffer.alloc(0), LINK.DISC | LINK.ACK);
      return;
    }
    if (isAck(f)) {
      if (this.awaitingAck) {
        this.awaitingAck = false;
        this.meterS ^= 1;
      }
      return;
    }
    const s = f.linkControl & LINK.S;
    if (s !== this.expectS) {
      // The host sent its last frame again (it missed our reply): acknowledge and repeat the reply.
      if (this.lastReply) {
        this.send(Buffer.alloc(0), LINK.ACK | this.meterS | (this.expectS ? LINK.E : 0));
        this.send(this.lastReply, this.meterS | (this.expectS ? LINK.E : 0));
      }
      return;
    }
    this.expectS = s ^ 1;
    this.send(Buffer.alloc(0), LINK.ACK | this.meterS | (this.expectS ? LINK.E : 0));
    const reply = this.serve(f.message);
    if (!reply) return;
    this.lastReply = reply;
    this.awaitingAck = true;
    this.send(reply, this.meterS | (this.expectS ? LINK.E : 0));
  }

  /** The dialect's reply to a request, with its side effect on the meter. */
  private serve(message: Buffer): Buffer | null {
    const req = this.dialect.classify(message);
    if (!req) return null;
    this.received.push(req.type);
    if (req.type === 'write-clock') {
      const target = naiveFromSeconds(req.seconds, this.dialect.epochOffsetS);
      if (target) this.deviceClock.set(target);
    }
    return this.dialect.reply(req, this.view());
  }

  private send(message: Buffer, linkControl: number): void {
    const transport = this.transport;
    if (!transport) return;
    const frame = encodeFrame(message, linkControl);
    if (this.corruptAt.delete(this.framesSent++)) frame[frame.length - 1] = frame[frame.length - 1]! ^ 0x5a;
    void this.wire.write(transport, [frame], this.frameDelayMs);
  }
}
