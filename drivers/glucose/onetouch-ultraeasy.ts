/**
 * LifeScan OneTouch UltraEasy and UltraMini: LifeScan binary frames (`lifescan-binary.ts`) over
 * the meter's 3.5 mm TRS serial cable, 9600 baud 8N1, with the link-control handshake (DISC reset,
 * ACK frames, S/E sequence bits).
 *
 * Source: the shared research note `research/glucose-meters.md` §2.2 and §3, and the real session
 * captured by daniel-thompson/ultraeasy (`test/fixtures/onetouch-ultraeasy/`). Only facts are used.
 *
 *   request (message)                 reply (message)
 *   05 0D 02                          05 06 <len> <version text>   e.g. "P02.00.00" "25/05/07"
 *   05 0B 02 + nine 00                05 06 <serial, 9 ASCII>
 *   05 20 02 00 00 00 00              05 06 <u32le seconds since 1970, meter-local wall time>
 *   05 20 01 <u32le>                  05 06 <u32le>               (sets the clock)
 *   05 09 02 09 00 00 00 00           05 06 <unit: 0 mg/dL, 1 mmol/L> 00 00 00
 *   05 1F <u16le n>  (n = 0 newest)   05 06 <u32le time> <u32le glucose mg/dL>
 *   05 1F 00 02  (an index past the   05 0F <u16le record count>
 *     memory: 512, as the capture)
 *
 * Glucose is mg/dL on the wire whatever the display unit; 0xFFFF is HI (> 600 mg/dL) and 0xFFFE is
 * LO (< 20 mg/dL), as Tidepool's UltraMini driver reads them. Any other value outside 20–600 is
 * also published as HI/LO against the same limits, never as a number. Records carry no record
 * number, control flag, meal marker or comment. Erase (05 1A) exists; the session never sends it.
 *
 * Sections: dialect · decode · simulator · definition.
 */
import type { DriverDefinition } from '../../src/driver-sdk/index.ts';
import { NO_PARAMS } from '../../src/driver-sdk/index.ts';
import {
  GLUCOSE_HI_LIMIT,
  GLUCOSE_LO_LIMIT,
  LifeScanSession,
  LifeScanSimulator,
  MANUFACTURER,
  SIMULATOR_OPTION_HELP,
  badReply,
  decodeLifeScan,
  isPlainAscii,
  okReply,
  parseSimulatorOptions,
  pascalString,
  rangeGlucose,
  secondsFromNaive,
  splitVersion,
  u16,
  u32,
  type Glucose,
  type LifeScanDialect,
  type LifeScanRequest,
  type MeterView,
  type ParsedReply,
  type SimulatedReading,
  type SimulatorRules,
} from './lifescan-binary.ts';

export const ULTRAEASY_DRIVER_ID = 'onetouch-ultraeasy';
const MODEL = 'OneTouch UltraEasy';
const PREFIX = 0x05;
const OK = 0x06;
const COUNT_STATUS = 0x0f;
/** The record index the session asks for to learn the count (the capture's 512). */
export const COUNT_INDEX = 512;
/** UltraEasy and UltraMini keep 500 readings: an index at or past this asks for the count. */
const MEMORY_SIZE = 500;
export const HI_CODE = 0xffff;
export const LO_CODE = 0xfffe;

const bytes = (...b: number[]): Buffer => Buffer.from(b);

function request(r: LifeScanRequest): Buffer {
  switch (r.type) {
    case 'version':
      return bytes(PREFIX, 0x0d, 0x02);
    case 'serial':
      return Buffer.concat([bytes(PREFIX, 0x0b, 0x02), Buffer.alloc(9)]);
    case 'read-clock':
      return bytes(PREFIX, 0x20, 0x02, 0, 0, 0, 0);
    case 'write-clock':
      return Buffer.concat([bytes(PREFIX, 0x20, 0x01), u32(r.seconds)]);
    case 'unit':
      return bytes(PREFIX, 0x09, 0x02, 0x09, 0, 0, 0, 0);
    case 'count':
      return Buffer.concat([bytes(PREFIX, 0x1f), u16(COUNT_INDEX)]);
    case 'record':
      return Buffer.concat([bytes(PREFIX, 0x1f), u16(r.index)]);
  }
}

function classify(m: Buffer): LifeScanRequest | null {
  if (m.length < 2 || m[0] !== PREFIX) return null;
  const [, cmd, a, b] = m;
  if (cmd === 0x0d && a === 0x02 && m.length === 3) return { type: 'version' };
  if (cmd === 0x0b && a === 0x02) return { type: 'serial' };
  if (cmd === 0x20 && a === 0x02 && m.length === 7) return { type: 'read-clock' };
  if (cmd === 0x20 && a === 0x01 && m.length === 7) return { type: 'write-clock', seconds: m.readUInt32LE(3) };
  if (cmd === 0x09 && a === 0x02 && b === 0x09) return { type: 'unit' };
  if (cmd === 0x1f && m.length === 4) {
    const n = m.readUInt16LE(2);
    return n >= MEMORY_SIZE ? { type: 'count' } : { type: 'record', index: n };
  }
  return null;
}

function parseReply(r: LifeScanRequest, m: Buffer): ParsedReply {
  if (m.length < 2 || m[0] !== PREFIX) return badReply('invalid-reply', 'the reply does not start with the UltraEasy prefix 0x05');
  const status = m[1]!;
  const body = m.subarray(2);
  if (status === COUNT_STATUS && (r.type === 'count' || r.type === 'record')) {
    if (body.length !== 2) return badReply('invalid-reply', 'a record-count reply is not 2 bytes');
    return okReply({ type: 'count', count: body.readUInt16LE(0) });
  }
  if (status !== OK) return badReply('error-status', `the meter answered status 0x${status.toString(16).padStart(2, '0')}`);
  switch (r.type) {
    case 'version': {
      const len = body[0];
      if (len === undefined || len + 1 !== body.length) return badReply('invalid-reply', 'the version is not a length-prefixed string');
      const text = body.subarray(1).toString('latin1');
      if (!isPlainAscii(text) || text.length === 0) return badReply('invalid-reply', 'the version text is not printable ASCII');
      return okReply({ type: 'version', ...splitVersion(text) });
    }
    case 'serial': {
      const serial = body.toString('latin1').replace(/\0+$/, '');
      if (!/^[0-9A-Z]{6,16}$/.test(serial)) return badReply('invalid-serial', 'the serial number is not 6–16 characters A–Z/0–9');
      return okReply({ type: 'serial', serial });
    }
    case 'read-clock':
      if (body.length !== 4) return badReply('invalid-reply', 'a clock reply is not 4 bytes');
      return okReply({ type: 'clock', seconds: body.readUInt32LE(0) });
    case 'write-clock':
      if (body.length !== 4) return badReply('invalid-reply', 'a set-clock reply is not 4 bytes');
      return okReply({ type: 'clock-set' });
    case 'unit':
      if (body.length !== 4 || body[0]! > 1) return badReply('invalid-reply', 'the display unit is not 0 (mg/dL) or 1 (mmol/L)');
      return okReply({ type: 'unit', unit: body[0] === 1 ? 'mmol/L' : 'mg/dL' });
    case 'count':
      return badReply('invalid-reply', 'a record-count request answered with status 0x06');
    case 'record':
      if (body.length !== 8) return badReply('invalid-reply', 'a record reply is not 8 bytes');
      return okReply({ type: 'record', record: { seconds: body.readUInt32LE(0), glucose: body.readUInt32LE(4), control: false, meal: null } });
  }
}

function glucose(raw: number): Glucose {
  if (raw === HI_CODE) return { kind: 'HI', limit: GLUCOSE_HI_LIMIT };
  if (raw === LO_CODE) return { kind: 'LO', limit: GLUCOSE_LO_LIMIT };
  if (raw > 0xffff) return { kind: 'invalid' };
  return rangeGlucose(raw);
}

function reply(r: LifeScanRequest, meter: MeterView): Buffer | null {
  const ok = (...parts: Buffer[]): Buffer => Buffer.concat([bytes(PREFIX, OK), ...parts]);
  const count = (): Buffer => Buffer.concat([bytes(PREFIX, COUNT_STATUS), u16(meter.records.length)]);
  switch (r.type) {
    case 'version':
      return ok(pascalString(meter.firmware + meter.build));
    case 'serial':
      return ok(Buffer.from(meter.serial, 'latin1'));
    case 'read-clock':
      return ok(u32(meter.clockSeconds));
    case 'write-clock':
      return ok(u32(r.seconds));
    case 'unit':
      return ok(bytes(meter.unit === 'mmol/L' ? 1 : 0, 0, 0, 0));
    case 'count':
      return count();
    case 'record': {
      const rec = meter.records[r.index];
      return rec ? ok(u32(rec.seconds), u32(rec.glucose)) : count();
    }
  }
}

export const ultraEasyDialect: LifeScanDialect = {
  driverId: ULTRAEASY_DRIVER_ID,
  model: MODEL,
  linkMode: 'ack',
  epochOffsetS: 0,
  request,
  classify,
  parseReply,
  glucose,
  reply,
};

export const decodeUltraEasy: DriverDefinition['decode'] = (capture, ctx) => decodeLifeScan(ultraEasyDialect, capture, ctx);

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Simulator
// ────────────────────────────────────────────────────────────────────────────────────────────────

export const ultraEasySimulatorRules: SimulatorRules = {
  driverId: ULTRAEASY_DRIVER_ID,
  defaultSerial: 'UESIM0001',
  defaultFirmware: 'P02.00.0025/05/07',
  isSerial: (s) => /^[0-9A-Z]{9}$/.test(s),
  readingProblem: (r) => {
    if (r.control) return 'a reading without control: the UltraEasy records no control flag';
    if (r.meal && r.meal !== 'none') return 'a reading without meal: the UltraEasy records no meal marker';
    if (typeof r.value === 'number' && r.value >= LO_CODE) return 'a value below 65534 (0xFFFE/0xFFFF are the LO/HI codes)';
    return null;
  },
  toWire: (r, epoch) => ({
    seconds: secondsFromNaive(r.time, epoch),
    glucose: r.value === 'HI' ? HI_CODE : r.value === 'LO' ? LO_CODE : r.value,
    control: false,
    meal: null,
  }),
  defaultMemory: (clock) => {
    const start = Date.parse(`${clock}Z`) - 2 * 86400_000;
    const plan: [number, number | 'HI' | 'LO'][] = [
      [7.5, 104],
      [13, 151],
      [19, 127],
      [24 + 8, 92],
      [24 + 14, 183],
    ];
    return plan.map(([h, value]) => ({ time: new Date(start + h * 3600_000).toISOString().slice(0, 19), value }));
  },
};

export function createUltraEasySimulator(options: Record<string, unknown> = {}): LifeScanSimulator {
  return new LifeScanSimulator(ultraEasyDialect, ultraEasySimulatorRules, parseSimulatorOptions(ultraEasySimulatorRules, options));
}

export type { SimulatedReading };

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Definition
// ────────────────────────────────────────────────────────────────────────────────────────────────

export const onetouchUltraEasy: DriverDefinition = {
  id: ULTRAEASY_DRIVER_ID,
  kind: 'glucose-meter',
  vendor: MANUFACTURER,
  models: ['OneTouch UltraEasy', 'OneTouch UltraMini'],
  usb: [
    { vendorId: '067b', productId: '2303', description: 'Prolific PL2303 USB-serial cable (the LifeScan cable); a cable chip id, only suggests this driver' },
    { vendorId: '0403', productId: '6001', description: 'FTDI FT232 USB-serial cable; a cable chip id, only suggests this driver' },
    { vendorId: '1a86', productId: '7523', description: 'WCH CH340 USB-serial cable; a cable chip id, only suggests this driver' },
  ],
  transports: ['serial', 'tcp', 'simulated'],
  serialDefaults: { baud_rate: 9600, data_bits: 8, parity: 'none', stop_bits: 1 },
  commands: {
    download: { description: 'read version, serial, clock, display unit, record count and every record; store new readings; returns {inserted, duplicates, records}', params: NO_PARAMS },
    'clock/sync': { description: "set the meter clock to the host time in the device's zone (05 20 01), then read it back; returns the new clock", params: NO_PARAMS },
    status: { description: 'the current device state: serial, firmware, display unit, clock skew, record count, last download', params: NO_PARAMS },
  },
  decode: decodeUltraEasy,
  createSession: (host) => new LifeScanSession(ultraEasyDialect, host),
  simulator: {
    description: 'a OneTouch UltraEasy/UltraMini meter: LifeScan binary frames with the DISC/ACK/sequence-bit handshake',
    options: { ...SIMULATOR_OPTION_HELP, serial: 'serial number, 9 characters A-Z/0-9 (default UESIM0001)', memory: 'readings: [{time: "YYYY-MM-DDTHH:MM:SS", value: mg/dL | "HI" | "LO"}] (no control or meal on this meter)' },
    create: (options) => createUltraEasySimulator(options),
  },
};
