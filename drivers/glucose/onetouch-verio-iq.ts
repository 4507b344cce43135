/**
 * LifeScan OneTouch Verio IQ: LifeScan binary frames (`lifescan-binary.ts`) with link-control 0x00,
 * one reply per request and no ACK frames, over the meter's built-in CP210x USB-serial bridge at
 * 38400 baud 8N1.
 *
 * Source: the shared research note `research/glucose-meters.md` §2.3 and §3 (facts from
 * glucometerutils `otverioiq.py`, Tidepool `oneTouchVerioIQ.js` and the glucometer-protocols
 * write-up). No real Verio IQ capture exists in the sources; the golden cases are synthetic.
 *
 *   request (message)        reply (message)
 *   03 0D 01                 03 06 <len> <version text> 00
 *   03 0B 01 02              03 06 <serial, ASCII, NUL-terminated>     (Tidepool sends 04 0B 00 02)
 *   03 20 02                 03 06 <u32le seconds since 2000-01-01, meter-local wall time>
 *   03 20 01 <u32le>         03 06                                     (sets the clock)
 *   03 09 02 02              03 06 <unit: 0 mg/dL, 1 mmol/L> 00 00 00
 *   03 27 00                 03 06 <u16le record count>
 *   03 21 <u16le n>          03 06 <u32le time> <u16le glucose mg/dL> <u8 control> <u8 meal> 00 00
 *
 * Glucose is mg/dL on the wire whatever the display unit. The control byte is 1 for a
 * control-solution run (published as category `control`); meal is 0 none, 1 before, 2 after.
 * How the meter encodes HI/LO is not documented: Tidepool marks values above 600 mg/dL high and
 * below 20 mg/dL low, so such values are published as HI/LO flags with those limits, never as a
 * number [unverified on a real meter]. A control or meal byte with another value is reported and
 * the record kept out of the results. Requests are sent with prefix 0x03; replies with 0x03 or
 * 0x04 are read (the protocol write-up says the meter takes both).
 */
import type { DriverDefinition } from '../../src/driver-sdk/index.ts';
import { NO_PARAMS } from '../../src/driver-sdk/index.ts';
import {
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
  type Meal,
  type MeterView,
  type ParsedReply,
  type SimulatorRules,
} from './lifescan-binary.ts';

export const VERIO_IQ_DRIVER_ID = 'onetouch-verio-iq';
const MODEL = 'OneTouch Verio IQ';
const PREFIX = 0x03;
const OK = 0x06;
/** Seconds from 1970-01-01 to 2000-01-01: the Verio clock's epoch. */
export const VERIO_EPOCH_S = 946_684_800;
const MEALS: Meal[] = ['none', 'before', 'after'];

const bytes = (...b: number[]): Buffer => Buffer.from(b);

function request(r: LifeScanRequest): Buffer {
  switch (r.type) {
    case 'version':
      return bytes(PREFIX, 0x0d, 0x01);
    case 'serial':
      return bytes(PREFIX, 0x0b, 0x01, 0x02);
    case 'read-clock':
      return bytes(PREFIX, 0x20, 0x02);
    case 'write-clock':
      return Buffer.concat([bytes(PREFIX, 0x20, 0x01), u32(r.seconds)]);
    case 'unit':
      return bytes(PREFIX, 0x09, 0x02, 0x02);
    case 'count':
      return bytes(PREFIX, 0x27, 0x00);
    case 'record':
      return Buffer.concat([bytes(PREFIX, 0x21), u16(r.index)]);
  }
}

function classify(m: Buffer): LifeScanRequest | null {
  if (m.length < 2 || (m[0] !== 0x03 && m[0] !== 0x04)) return null;
  const [, cmd, a, b] = m;
  if (cmd === 0x0d && a === 0x01 && m.length === 3) return { type: 'version' };
  if (cmd === 0x0b && b === 0x02 && m.length === 4) return { type: 'serial' };
  if (cmd === 0x20 && a === 0x02 && m.length === 3) return { type: 'read-clock' };
  if (cmd === 0x20 && a === 0x01 && m.length === 7) return { type: 'write-clock', seconds: m.readUInt32LE(3) };
  if (cmd === 0x09 && a === 0x02 && b === 0x02 && m.length === 4) return { type: 'unit' };
  if (cmd === 0x27 && a === 0x00 && m.length === 3) return { type: 'count' };
  if (cmd === 0x21 && m.length === 4) return { type: 'record', index: m.readUInt16LE(2) };
  return null;
}

function parseReply(r: LifeScanRequest, m: Buffer): ParsedReply {
  if (m.length < 2 || (m[0] !== 0x03 && m[0] !== 0x04)) return badReply('invalid-reply', 'the reply does not start with the Verio prefix 0x03/0x04');
  if (m[1] !== OK) return badReply('error-status', `the meter answered status 0x${m[1]!.toString(16).padStart(2, '0')}`);
  const body = m.subarray(2);
  switch (r.type) {
    case 'version': {
      const len = body[0];
      if (len === undefined || len === 0 || len + 1 > body.length) return badReply('invalid-reply', 'the version is not a length-prefixed string');
      const text = body.subarray(1, 1 + len).toString('latin1');
      if (!isPlainAscii(text)) return badReply('invalid-reply', 'the version text is not printable ASCII');
      return okReply({ type: 'version', ...splitVersion(text) });
    }
    case 'serial': {
      const nul = body.indexOf(0);
      const serial = body.subarray(0, nul < 0 ? body.length : nul).toString('latin1');
      if (!/^[0-9A-Z]{6,16}$/.test(serial)) return badReply('invalid-serial', 'the serial number is not 6–16 characters A–Z/0–9');
      return okReply({ type: 'serial', serial });
    }
    case 'read-clock':
      if (body.length !== 4) return badReply('invalid-reply', 'a clock reply is not 4 bytes');
      return okReply({ type: 'clock', seconds: body.readUInt32LE(0) });
    case 'write-clock':
      if (body.length !== 0) return badReply('invalid-reply', 'a set-clock reply carries data');
      return okReply({ type: 'clock-set' });
    case 'unit':
      if (body.length !== 4 || body[0]! > 1) return badReply('invalid-reply', 'the display unit is not 0 (mg/dL) or 1 (mmol/L)');
      return okReply({ type: 'unit', unit: body[0] === 1 ? 'mmol/L' : 'mg/dL' });
    case 'count':
      if (body.length !== 2) return badReply('invalid-reply', 'a record-count reply is not 2 bytes');
      return okReply({ type: 'count', count: body.readUInt16LE(0) });
    case 'record': {
      if (body.length !== 10) return badReply('invalid-reply', 'a record reply is not 10 bytes');
      const control = body[6]!;
      const meal = body[7]!;
      const problem = control > 1 ? 'unknown-control-code' : meal > 2 ? 'unknown-meal-code' : undefined;
      return okReply({
        type: 'record',
        record: {
          seconds: body.readUInt32LE(0),
          glucose: body.readUInt16LE(4),
          control: control === 1,
          meal: MEALS[meal] ?? null,
          ...(problem ? { problem } : {}),
        },
      });
    }
  }
}

function glucose(raw: number): Glucose {
  return rangeGlucose(raw);
}

function reply(r: LifeScanRequest, meter: MeterView): Buffer | null {
  const ok = (...parts: Buffer[]): Buffer => Buffer.concat([bytes(PREFIX, OK), ...parts]);
  switch (r.type) {
    case 'version':
      return ok(pascalString(meter.firmware + meter.build), bytes(0));
    case 'serial':
      return ok(Buffer.from(meter.serial, 'latin1'), bytes(0));
    case 'read-clock':
      return ok(u32(meter.clockSeconds));
    case 'write-clock':
      return ok();
    case 'unit':
      return ok(bytes(meter.unit === 'mmol/L' ? 1 : 0, 0, 0, 0));
    case 'count':
      return ok(u16(meter.records.length));
    case 'record': {
      const rec = meter.records[r.index];
      if (!rec) return null; // not documented; the session never asks past the count
      return ok(u32(rec.seconds), u16(rec.glucose), bytes(rec.control ? 1 : 0, MEALS.indexOf(rec.meal ?? 'none'), 0, 0));
    }
  }
}

export const verioIqDialect: LifeScanDialect = {
  driverId: VERIO_IQ_DRIVER_ID,
  model: MODEL,
  linkMode: 'plain',
  epochOffsetS: VERIO_EPOCH_S,
  request,
  classify,
  parseReply,
  glucose,
  reply,
};

export const decodeVerioIq: DriverDefinition['decode'] = (capture, ctx) => decodeLifeScan(verioIqDialect, capture, ctx);

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Simulator
// ────────────────────────────────────────────────────────────────────────────────────────────────

export const verioIqSimulatorRules: SimulatorRules = {
  driverId: VERIO_IQ_DRIVER_ID,
  defaultSerial: 'VIQSIM0001',
  defaultFirmware: 'SIM01.00.00',
  isSerial: (s) => /^[0-9A-Z]{6,16}$/.test(s),
  readingProblem: (r) => {
    if (typeof r.value !== 'number') return 'a number: the Verio IQ has no documented HI/LO code (use > 600 or < 20 mg/dL)';
    if (r.value > 0xffff) return 'a value up to 65535';
    return null;
  },
  toWire: (r, epoch) => ({
    seconds: secondsFromNaive(r.time, epoch),
    glucose: r.value as number,
    control: r.control ?? false,
    meal: r.meal ?? 'none',
  }),
  defaultMemory: (clock) => {
    const start = Date.parse(`${clock}Z`) - 2 * 86400_000;
    const plan: [number, number, Meal, boolean][] = [
      [7.5, 98, 'before', false],
      [8, 121, 'none', true],
      [13, 162, 'after', false],
      [24 + 8, 87, 'before', false],
      [24 + 14, 171, 'after', false],
    ];
    return plan.map(([h, value, meal, control]) => ({ time: new Date(start + h * 3600_000).toISOString().slice(0, 19), value, meal, control }));
  },
};

export function createVerioIqSimulator(options: Record<string, unknown> = {}): LifeScanSimulator {
  return new LifeScanSimulator(verioIqDialect, verioIqSimulatorRules, parseSimulatorOptions(verioIqSimulatorRules, options));
}

// ────────────────────────────────────────────────────────────────────────────────────────────────
// Definition
// ────────────────────────────────────────────────────────────────────────────────────────────────

export const onetouchVerioIq: DriverDefinition = {
  id: VERIO_IQ_DRIVER_ID,
  kind: 'glucose-meter',
  vendor: MANUFACTURER,
  models: [MODEL],
  usb: [
    {
      vendorId: '10c4',
      productId: '85a7',
      description: "Silicon Labs CP210x id used by the Verio IQ's built-in USB-serial bridge; a cable chip id that other devices may share, so it only suggests this driver",
    },
  ],
  transports: ['serial', 'tcp', 'simulated'],
  serialDefaults: { baud_rate: 38400, data_bits: 8, parity: 'none', stop_bits: 1 },
  commands: {
    download: { description: 'read version, serial, clock, display unit, record count and every record; store new readings; returns {inserted, duplicates, records}', params: NO_PARAMS },
    'clock/sync': { description: "set the meter clock to the host time in the device's zone (03 20 01), then read it back; returns the new clock", params: NO_PARAMS },
    status: { description: 'the current device state: serial, firmware, display unit, clock skew, record count, last download', params: NO_PARAMS },
  },
  decode: decodeVerioIq,
  createSession: (host) => new LifeScanSession(verioIqDialect, host),
  simulator: {
    description: 'a OneTouch Verio IQ meter: LifeScan binary frames with link-control 0, clock counted from 2000-01-01',
    options: {
      ...SIMULATOR_OPTION_HELP,
      serial: 'serial number, 6-16 characters A-Z/0-9 (default VIQSIM0001)',
      memory: 'readings: [{time: "YYYY-MM-DDTHH:MM:SS", value: mg/dL (> 600 shows HI, < 20 LO), control?, meal?: none|before|after}]',
    },
    create: (options) => createVerioIqSimulator(options),
  },
};
