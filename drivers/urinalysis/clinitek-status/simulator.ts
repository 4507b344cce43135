/**
 * The CLINITEK Status simulator: the reader's side. It holds records and sends them all, one line
 * each, as if "Send all data" was pressed when the host connects (and again every
 * `send_all_every_s`).
 */
import type { DeviceSimulator } from '../../../src/driver-sdk/index.ts';
import type { ByteTransport } from '../../../src/transports/transport.ts';
import { definedOnly, SimulatorOptionReader } from '../../../src/driver-sdk/simulator-options.ts';
import { seededRandom } from '../../../src/util/random.ts';
import { ChunkedWriter } from '../../../src/driver-sdk/simulator-wire.ts';
import { hostTimeZone, nowInZone } from '../../../src/util/time.ts';
import { printedPad, simulatedPad as pad, type SimulatedStripResult } from '../../analytes/urine-strip.ts';
import { CLINITEK_STATUS_LOCALES } from './locales.ts';
import { SIMULATOR_OPTION_HELP } from './simulator-help.ts';


export interface SimulatedRecord {
  seq: number;
  /** Naive `YYYY-MM-DDTHH:MM:SS`. */
  time: string;
  operator?: string;
  patient?: string;
  strip?: string;
  /** A colour/clarity key from the locale table (`yellow`, `clear`) or literal text; absent = not entered. */
  colour?: string;
  clarity?: string;
  results?: SimulatedStripResult[];
  /** An error code (`E58`) in place of results. */
  error?: string;
}

/**
 * The stored samples: the records of the research note's sample lines (§3.2) as data, with made-up
 * ids in place of the ids in the public lines, plus a control run.
 */
export const SAMPLE_RECORDS: readonly SimulatedRecord[] = [
  { seq: 1565, time: '2018-06-17T09:43:00', operator: 'OP01', patient: 'P-0001', strip: 'Multistix 10 SG', colour: 'yellow', clarity: 'clear',
    results: [pad('GLU', 'negative'), pad('BIL', 'negative'), pad('KET', 'trace', true), pad('SG', '1.020'), pad('BLD', 'negative'), pad('PH', '6.0'), pad('PRO', '100 mg/dL', true), pad('UBG', '0.2 E.U./dL'), pad('NIT', 'negative'), pad('LEU', 'negative')] },
  { seq: 1568, time: '2018-06-17T10:45:00', operator: 'OP01', patient: 'P-0002', strip: 'Multistix 10 SG', error: 'E58' },
  { seq: 1577, time: '2018-06-18T10:42:00', operator: 'OP01', patient: 'P-0003', strip: 'Multistix 10 SG', colour: 'yellow', clarity: 'slightly-cloudy',
    results: [pad('GLU', '>=1000 mg/dL', true), pad('BIL', 'negative'), pad('KET', 'negative'), pad('SG', '1.015'), pad('BLD', 'negative'), pad('PH', '5.5'), pad('PRO', 'negative'), pad('UBG', '0.2 E.U./dL'), pad('NIT', 'negative'), pad('LEU', 'negative')] },
  { seq: 1583, time: '2018-06-18T11:12:00', operator: 'OP01', patient: 'P-0004', strip: 'Multistix 10 SG', colour: 'yellow', clarity: 'clear',
    results: [pad('GLU', 'negative'), pad('BIL', 'negative'), pad('KET', 'negative'), pad('SG', '1.015'), pad('BLD', 'trace-intact', true), pad('PH', '5.5'), pad('PRO', 'negative'), pad('UBG', '0.2 E.U./dL'), pad('NIT', 'negative'), pad('LEU', 'Apr 15 Leu/uL', true)] },
  { seq: 1590, time: '2018-06-18T12:00:00', operator: 'OP01', patient: 'CONTROL-1', strip: 'Multistix 10 SG', colour: 'yellow', clarity: 'clear',
    results: [pad('GLU', '100 mg/dL', true), pad('BIL', 'small', true), pad('KET', '15 mg/dL', true), pad('SG', '1.020'), pad('BLD', 'Apr 25 Hem/uL', true), pad('PH', '6.5'), pad('PRO', '30 mg/dL', true), pad('UBG', '2.0 E.U./dL', true), pad('NIT', 'positive', true), pad('LEU', 'Apr 70 Leu/uL', true)] },
  { seq: 1596, time: '2018-06-18T15:25:00', operator: 'OP01', strip: 'Multistix 10 SG', colour: 'yellow', clarity: 'clear',
    results: [pad('GLU', '500 mg/dL', true), pad('BIL', 'large', true), pad('KET', '15 mg/dL', true), pad('SG', '1.020'), pad('BLD', 'Apr 200 Hem/uL', true), pad('PH', '7.0'), pad('PRO', '>=300 mg/dL', true), pad('UBG', '4.0 E.U./dL', true), pad('NIT', 'positive', true), pad('LEU', 'Apr 500 Leu/uL', true)] },
  { seq: 1822, time: '2021-12-24T17:33:00', patient: 'P-0005', strip: 'Multistix 10 SG',
    results: [pad('GLU', 'negative'), pad('BIL', 'negative'), pad('KET', 'negative'), pad('SG', '1.020'), pad('BLD', 'trace-intact'), pad('PH', '7.0'), pad('PRO', 'negative'), pad('UBG', '3.2 umol/L'), pad('NIT', 'negative'), pad('LEU', 'negative')] },
];

/** `2018-06-18T15:25:00` → [`18-06-2018`, `15:25` or ` 3:25PM`]. */
function wireDateTime(naive: string, clock: '12h' | '24h'): [string, string] {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):\d{2}$/.exec(naive);
  if (!m) throw new RangeError(`not a naive time: ${naive}`);
  const date = `${m[3]}-${m[2]}-${m[1]}`;
  const h = Number(m[4]);
  if (clock === '24h') return [date, `${m[4]}:${m[5]}`];
  const h12 = h % 12 === 0 ? 12 : h % 12;
  return [date, `${String(h12).padStart(2, ' ')}:${m[5]}${h < 12 ? 'AM' : 'PM'}`];
}

/** One record as the reader prints it in `locale` (no line end). */
export function formatRecordLine(rec: SimulatedRecord, localeName: string): string {
  const locale = CLINITEK_STATUS_LOCALES[localeName];
  if (!locale) throw new RangeError(`no CLINITEK Status locale "${localeName}"`);
  const [date, time] = wireDateTime(rec.time, locale.clock);
  const head = [
    String(rec.seq),
    date,
    time,
    rec.operator ?? '',
    rec.patient ?? '',
    '',
    '',
    '',
    '',
    rec.strip ?? '',
    rec.colour === undefined ? locale.notEntered : (locale.colours[rec.colour] ?? rec.colour),
    rec.clarity === undefined ? locale.notEntered : (locale.clarities[rec.clarity] ?? rec.clarity),
  ];
  if (rec.error) return [...head, rec.error].join(',');
  const triplets = (rec.results ?? []).flatMap((s) => {
    const { label, value } = printedPad(locale, s);
    return [label, value, s.abnormal ? '*' : ''];
  });
  return [...head, ...triplets].join(',');
}

export type LineEnd = 'cr' | 'crlf' | 'lf';
const LINE_ENDS: Record<LineEnd, string> = { cr: '\r', crlf: '\r\n', lf: '\n' };

export interface ClinitekStatusSimulatorOptions {
  locale?: string;
  memory?: SimulatedRecord[];
  /** Leave the error record(s) out of the default memory. */
  no_error_record?: boolean;
  line_end?: LineEnd;
  /** Send all records this long after attach (default 300 ms); negative: never on attach. */
  send_delay_ms?: number;
  send_all_every_s?: number;
  new_record_every_s?: number;
  /** Insert a line of noise between records. */
  garbage?: boolean;
  /** Cut the last record of each send short, with no line end. */
  truncate_last?: boolean;
  max_chunk?: number;
  seed?: number;
  timezone?: string;
}

const SIMULATOR = 'clinitek-status simulator';

/** Checks untyped options (from YAML or the command line) and returns them typed. */
export function parseSimulatorOptions(o: Record<string, unknown>): ClinitekStatusSimulatorOptions {
  const read = new SimulatorOptionReader(o, SIMULATOR, Object.keys(SIMULATOR_OPTION_HELP));
  const locales = Object.keys(CLINITEK_STATUS_LOCALES);
  return definedOnly<ClinitekStatusSimulatorOptions>({
    locale: read.oneOf('locale', locales, locales.join(' or ')),
    memory: read.list('memory', (v, where) => parseSimulatedRecord(read, v, where), 'a list of records'),
    no_error_record: read.boolean('no_error_record'),
    line_end: read.oneOf('line_end', ['cr', 'crlf', 'lf'] as const, 'cr, crlf or lf'),
    send_delay_ms: read.number('send_delay_ms', -1),
    send_all_every_s: read.number('send_all_every_s', 0.01),
    new_record_every_s: read.number('new_record_every_s', 0.01),
    garbage: read.boolean('garbage'),
    truncate_last: read.boolean('truncate_last'),
    max_chunk: read.number('max_chunk', 1),
    seed: read.number('seed', 0),
    timezone: read.timezone(),
  });
}

function parseSimulatedRecord(read: SimulatorOptionReader, v: unknown, where: string): SimulatedRecord {
  if (typeof v !== 'object' || v === null) throw read.error(where, 'an object');
  const o = v as Record<string, unknown>;
  if (typeof o.seq !== 'number' || !Number.isInteger(o.seq) || o.seq < 0) throw read.error(`${where}.seq`, 'a whole number');
  if (typeof o.time !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/.test(o.time)) throw read.error(`${where}.time`, 'YYYY-MM-DDTHH:MM:SS');
  const out: SimulatedRecord = { seq: o.seq, time: o.time };
  for (const k of ['operator', 'patient', 'strip', 'colour', 'clarity', 'error'] as const) {
    if (o[k] === undefined) continue;
    if (typeof o[k] !== 'string' || /[,\r\n]/.test(o[k])) throw read.error(`${where}.${k}`, 'text without commas or line ends');
    out[k] = o[k];
  }
  if (o.results !== undefined) {
    if (!Array.isArray(o.results)) throw read.error(`${where}.results`, 'a list');
    out.results = o.results.map((x, i) => {
      const s = x as Record<string, unknown>;
      if (typeof s?.code !== 'string' || typeof s.value !== 'string' || /[,\r\n]/.test(s.code + s.value)) {
        throw read.error(`${where}.results[${i}]`, '{code, value} without commas');
      }
      return { code: s.code, value: s.value, abnormal: s.abnormal === true };
    });
  }
  if (!out.error && (!out.results || out.results.length === 0)) throw read.error(where, 'a record with results or an error');
  return out;
}

export class ClinitekStatusSimulator implements DeviceSimulator {
  memory: SimulatedRecord[];
  locale: string;
  private readonly lineEnd: string;
  private readonly sendDelayMs: number;
  private readonly wire: ChunkedWriter;
  private readonly random: () => number;
  private readonly timezone: string;
  private readonly opts: ClinitekStatusSimulatorOptions;
  private transport: ByteTransport | null = null;
  private timers: NodeJS.Timeout[] = [];

  constructor(options: ClinitekStatusSimulatorOptions = {}) {
    this.opts = options;
    this.locale = options.locale ?? 'en';
    this.lineEnd = LINE_ENDS[options.line_end ?? 'crlf'];
    this.sendDelayMs = options.send_delay_ms ?? 300;
    this.random = seededRandom(options.seed ?? Date.now());
    this.wire = new ChunkedWriter(this.random, Math.max(1, Math.floor(options.max_chunk ?? 16)), (t) => t === this.transport);
    this.timezone = options.timezone ?? hostTimeZone();
    const base = options.memory ?? SAMPLE_RECORDS.map((x) => structuredClone(x));
    this.memory = options.no_error_record ? base.filter((x) => !x.error) : base;
  }

  /** The bytes of one "Send all data". */
  sendAllBytes(): Buffer {
    const lines = this.memory.map((rec) => formatRecordLine(rec, this.locale) + this.lineEnd);
    if (this.opts.garbage) for (let i = lines.length - 1; i > 0; i--) lines.splice(i, 0, `\u0000~#noise#~\u00ff${this.lineEnd}`);
    if (this.opts.truncate_last && lines.length > 0) {
      const last = lines[lines.length - 1]!;
      lines[lines.length - 1] = last.slice(0, Math.floor(last.length / 2));
    }
    return Buffer.from(lines.join(''), 'latin1');
  }

  addRecord(): SimulatedRecord {
    const seq = Math.max(0, ...this.memory.map((x) => x.seq)) + 1;
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(this.random() * xs.length)]!;
    const glu = pick(['negative', 'negative', 'negative', '100 mg/dL', '250 mg/dL']);
    const rec: SimulatedRecord = {
      seq,
      time: nowInZone(this.timezone).replace(/\d{2}$/, '00'),
      operator: 'OP01',
      patient: `P-${String(1000 + seq).slice(-4)}`,
      strip: 'Multistix 10 SG',
      colour: pick(['yellow', 'straw', 'amber']),
      clarity: pick(['clear', 'clear', 'slightly-cloudy']),
      results: [
        pad('GLU', glu, glu !== 'negative'),
        pad('BIL', 'negative'),
        pad('KET', pick(['negative', 'negative', 'trace'])),
        pad('SG', pick(['1.005', '1.010', '1.015', '1.020', '1.025'])),
        pad('BLD', pick(['negative', 'negative', 'trace-intact'])),
        pad('PH', pick(['5.5', '6.0', '6.5', '7.0'])),
        pad('PRO', pick(['negative', 'negative', '30 mg/dL'])),
        pad('UBG', '0.2 E.U./dL'),
        pad('NIT', 'negative'),
        pad('LEU', pick(['negative', 'negative', 'Apr 15 Leu/uL'])),
      ],
    };
    for (const x of rec.results!) if (x.value !== 'negative' && !/^[\d.]+$/.test(x.value) && x.value !== '0.2 E.U./dL') x.abnormal = true;
    this.memory.push(rec);
    return rec;
  }

  attach(transport: ByteTransport): void {
    this.detach();
    this.transport = transport;
    if (this.sendDelayMs >= 0) this.timers.push(setTimeout(() => this.sendAll(), this.sendDelayMs));
    if (this.opts.send_all_every_s) this.timers.push(setInterval(() => this.sendAll(), this.opts.send_all_every_s * 1000));
    if (this.opts.new_record_every_s) this.timers.push(setInterval(() => this.addRecord(), this.opts.new_record_every_s * 1000));
  }

  detach(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    this.transport = null;
  }

  /** Writes one "Send all data" in random chunks, as a USB-serial adapter delivers it. */
  sendAll(): Promise<void> {
    if (!this.transport) return Promise.resolve();
    return this.wire.write(this.transport, [this.sendAllBytes()]);
  }
}
