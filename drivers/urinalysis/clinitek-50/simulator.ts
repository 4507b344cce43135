/**
 * The CLINITEK 50 simulator: the reader's side. It answers ENQ with its identity packet and XON DC2
 * with the next record (a lone NAK when there is none), and moves on only on ACK.
 */
import type { DeviceSimulator } from '../../../src/driver-sdk/index.ts';
import type { ByteTransport } from '../../../src/transports/transport.ts';
import { definedOnly, SimulatorOptionReader } from '../../../src/driver-sdk/simulator-options.ts';
import { seededRandom } from '../../../src/util/random.ts';
import { ChunkedWriter } from '../../../src/driver-sdk/simulator-wire.ts';
import { hostTimeZone, nowInZone } from '../../../src/util/time.ts';
import { printedPad, simulatedPad as pad, type SimulatedStripResult } from '../../analytes/urine-strip.ts';
import { ACK, clinitek50Checksum, DC2, encodePacket, ENQ, NAK, PRODUCT_ID } from './codec.ts';
import { CLINITEK_50_LOCALES } from './locales.ts';
import { SIMULATOR_OPTION_HELP } from './simulator-help.ts';

export interface SimulatedC50Record {
  seq: number;
  /** Naive `YYYY-MM-DDTHH:MM:SS` (seconds are not sent). */
  time: string;
  colour?: string;
  results: SimulatedStripResult[];
}

/** The GNUmed documentation's record (record 008), then two made-up ones. */
export const SAMPLE_RECORDS: readonly SimulatedC50Record[] = [
  {
    seq: 8,
    time: '1997-03-03T11:11:00',
    colour: 'HELL GELB',
    results: [pad('GLU', 'negative'), pad('BIL', 'negative'), pad('KET', 'negative'), pad('SG', '>=1.030'), pad('PH', '5.0'), pad('PRO', 'negative'), pad('UBG', '0.2 mg/dL'), pad('NIT', 'negative'), pad('BLD', 'Ca 10 Ery/uL', true), pad('LEU', '0 Leu/uL')],
  },
  {
    seq: 9,
    time: '1997-03-03T11:20:00',
    colour: 'GELB',
    results: [pad('GLU', '100 mg/dL', true), pad('BIL', 'negative'), pad('KET', '15 mg/dL', true), pad('SG', '1.015'), pad('PH', '6.5'), pad('PRO', '30 mg/dL', true), pad('UBG', '0.2 mg/dL'), pad('NIT', 'positive', true), pad('BLD', 'negative'), pad('LEU', 'Ca 75 Leu/uL', true)],
  },
  {
    seq: 10,
    time: '1997-03-03T11:31:00',
    colour: 'GELB',
    results: [pad('GLU', 'negative'), pad('BIL', 'negative'), pad('KET', 'negative'), pad('SG', '1.020'), pad('PH', '6.0'), pad('PRO', 'negative'), pad('UBG', '0.2 mg/dL'), pad('NIT', 'negative'), pad('BLD', 'negative'), pad('LEU', '0 Leu/uL')],
  },
];

/** `1997-03-03T11:11:00` → `9703031111` (YYMMDD). */
function wireStamp(naive: string): string {
  const m = /^\d{2}(\d{2})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(naive);
  if (!m) throw new RangeError(`not a naive time: ${naive}`);
  return `${m[1]}${m[2]}${m[3]}${m[4]}${m[5]}`;
}

export interface Clinitek50ReaderInfo {
  software: string;
  language: string;
  units: string;
  strip: string;
}

export function identityLines(info: Clinitek50ReaderInfo, clock: string): string[] {
  const locale = CLINITEK_50_LOCALES[info.language]!;
  return [`${PRODUCT_ID}  ${info.software} ${wireStamp(clock)}`, `${locale.name} - ${info.units}`, info.strip];
}

export function recordLines(rec: SimulatedC50Record, software: string, language: string): string[] {
  const locale = CLINITEK_50_LOCALES[language];
  if (!locale) throw new RangeError(`no CLINITEK 50 locale "${language}"`);
  const lines = [`${PRODUCT_ID}  ${software} ${wireStamp(rec.time)}`, `${String(rec.seq).padStart(3, '0')} ${(rec.colour ?? '').padEnd(14)}`];
  for (const s of rec.results) {
    const { label, value } = printedPad(locale, s);
    lines.push(`${(label + (s.abnormal ? '*' : '')).padEnd(4)} ${value.padEnd(15)}`);
  }
  return lines;
}

export interface Clinitek50SimulatorOptions {
  language?: string;
  units?: string;
  strip?: string;
  software?: string;
  memory?: SimulatedC50Record[];
  /** Send the next N data packets with a wrong checksum. */
  corrupt_next?: number;
  /** Noise bytes before every data packet. */
  garbage?: boolean;
  /** true: never answers. */
  off?: boolean;
  max_chunk?: number;
  seed?: number;
  timezone?: string;
}

const SIMULATOR = 'clinitek-50 simulator';

/** Checks untyped options (from YAML or the command line) and returns them typed. */
export function parseSimulatorOptions(o: Record<string, unknown>): Clinitek50SimulatorOptions {
  const read = new SimulatorOptionReader(o, SIMULATOR, Object.keys(SIMULATOR_OPTION_HELP));
  const languages = Object.keys(CLINITEK_50_LOCALES);
  const printable = /^[\x20-\x7e]*$/;
  return definedOnly<Clinitek50SimulatorOptions>({
    language: read.oneOf('language', languages, languages.join(' or ')),
    units: read.string('units', printable, 'one line of printable ASCII'),
    strip: read.string('strip', printable, 'one line of printable ASCII'),
    software: read.string('software', /^\d{2}\.\d{2}$/, 'NN.NN'),
    memory: read.list('memory', (v, where) => parseSimulatedRecord(read, v, where), 'a list of records'),
    corrupt_next: read.number('corrupt_next', 0),
    garbage: read.boolean('garbage'),
    off: read.boolean('off'),
    max_chunk: read.number('max_chunk', 1),
    seed: read.number('seed', 0),
    timezone: read.timezone(),
  });
}

function parseSimulatedRecord(read: SimulatorOptionReader, v: unknown, where: string): SimulatedC50Record {
  const rec = v as Record<string, unknown>;
  if (typeof rec?.seq !== 'number' || !Number.isInteger(rec.seq) || rec.seq < 0 || rec.seq > 999) throw read.error(`${where}.seq`, 'a whole number 0-999');
  if (typeof rec.time !== 'string' || !/^(19[7-9]\d|20[0-6]\d)-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/.test(rec.time)) throw read.error(`${where}.time`, 'YYYY-MM-DDTHH:MM:SS in 1970-2069');
  if (!Array.isArray(rec.results) || rec.results.length === 0) throw read.error(`${where}.results`, 'a non-empty list');
  const results = rec.results.map((s: Record<string, unknown>, j: number) => {
    if (typeof s?.code !== 'string' || !/^[A-Za-z]{2,4}$/.test(s.code) || typeof s.value !== 'string' || /[\r\n]/.test(s.value)) {
      throw read.error(`${where}.results[${j}]`, '{code: 2-4 letters, value: text}');
    }
    return { code: s.code, value: s.value, abnormal: s.abnormal === true };
  });
  const r: SimulatedC50Record = { seq: rec.seq, time: rec.time, results };
  if (typeof rec.colour === 'string') r.colour = rec.colour;
  return r;
}

export class Clinitek50Simulator implements DeviceSimulator {
  memory: SimulatedC50Record[];
  /** Index of the record the next DC2 sends; moves on ACK only. */
  next = 0;
  corruptNext: number;
  off: boolean;
  readonly received: number[] = [];
  private readonly info: Clinitek50ReaderInfo;
  private readonly garbage: boolean;
  private readonly wire: ChunkedWriter;
  private readonly random: () => number;
  private readonly timezone: string;
  private transport: ByteTransport | null = null;
  private outstanding = false;

  constructor(options: Clinitek50SimulatorOptions = {}) {
    this.info = {
      software: options.software ?? '01.02',
      language: options.language ?? 'de',
      units: options.units ?? 'CONV.',
      strip: options.strip ?? 'MULTISTIX 10 SG',
    };
    this.memory = options.memory ?? SAMPLE_RECORDS.map((x) => structuredClone(x));
    this.corruptNext = options.corrupt_next ?? 0;
    this.garbage = options.garbage ?? false;
    this.off = options.off ?? false;
    this.random = seededRandom(options.seed ?? Date.now());
    this.wire = new ChunkedWriter(this.random, Math.max(1, Math.floor(options.max_chunk ?? 16)), (t) => t === this.transport);
    this.timezone = options.timezone ?? hostTimeZone();
  }

  attach(transport: ByteTransport): void {
    this.detach();
    this.transport = transport;
    transport.on('data', this.onData);
  }

  detach(): void {
    if (this.transport) this.transport.off('data', this.onData);
    this.transport = null;
  }

  private readonly onData = (chunk: Buffer): void => {
    for (const b of chunk) this.handle(b);
  };

  private handle(b: number): void {
    this.received.push(b);
    if (this.off) return;
    switch (b) {
      case ENQ:
        this.write(encodePacket(identityLines(this.info, nowInZone(this.timezone))));
        return;
      case DC2: {
        const rec = this.memory[this.next];
        if (!rec) {
          this.write(Buffer.from([NAK]));
          return;
        }
        this.outstanding = true;
        const lines = recordLines(rec, this.info.software, this.info.language);
        let packet = encodePacket(lines);
        if (this.corruptNext > 0) {
          this.corruptNext--;
          packet = encodePacket(lines, clinitek50Checksum(packet.subarray(1, packet.length - 3)) + 1);
        }
        this.write(this.garbage ? Buffer.concat([Buffer.from('~\x00noise\xff', 'latin1'), packet]) : packet);
        return;
      }
      case ACK:
        if (this.outstanding) this.next++;
        this.outstanding = false;
        return;
      case NAK:
        this.outstanding = false; // the same record goes again on the next DC2
        return;
      default:
        return; // XON, XOFF and anything else: nothing to answer
    }
  }

  private write(bytes: Buffer): void {
    if (this.transport) void this.wire.write(this.transport, [bytes]);
  }
}
