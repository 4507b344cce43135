/**
 * The OneTouch Verio IQ dialect of the LifeScan binary protocol (`../lifescan-binary/`): its
 * requests and replies in both directions, its clock epoch (2000-01-01) and how its glucose field
 * reads. The command table and its sources are in this folder's README.
 */
import { rangeGlucose } from '../../analytes/glucose.ts';
import {
  badReply,
  clockReply,
  isPlainAscii,
  okReply,
  pascalString,
  serialReply,
  splitVersion,
  u16,
  u32,
  unitReply,
  type Glucose,
  type LifeScanDialect,
  type LifeScanRequest,
  type Meal,
  type MeterView,
  type ParsedReply,
} from '../lifescan-binary/codec.ts';

export const VERIO_IQ_DRIVER_ID = 'onetouch-verio-iq';
export const VERIO_IQ_MODEL = 'OneTouch Verio IQ';
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
      return serialReply(body.subarray(0, nul < 0 ? body.length : nul).toString('latin1'));
    }
    case 'read-clock':
      return clockReply(body);
    case 'write-clock':
      if (body.length !== 0) return badReply('invalid-reply', 'a set-clock reply carries data');
      return okReply({ type: 'clock-set' });
    case 'unit':
      return unitReply(body);
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
  model: VERIO_IQ_MODEL,
  linkMode: 'plain',
  epochOffsetS: VERIO_EPOCH_S,
  request,
  classify,
  parseReply,
  glucose,
  reply,
};
