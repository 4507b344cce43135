/**
 * The OneTouch UltraEasy / UltraMini dialect of the LifeScan binary protocol (`../lifescan-binary/`):
 * its requests and replies in both directions, and how its glucose field reads (0xFFFF HI,
 * 0xFFFE LO). The command table and its sources are in this folder's README.
 */
import { GLUCOSE_HI_LIMIT, GLUCOSE_LO_LIMIT, rangeGlucose } from '../../analytes/glucose.ts';
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
  type MeterView,
  type ParsedReply,
} from '../lifescan-binary/codec.ts';

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
    case 'serial':
      return serialReply(body.toString('latin1').replace(/\0+$/, ''));
    case 'read-clock':
      return clockReply(body);
    case 'write-clock':
      if (body.length !== 4) return badReply('invalid-reply', 'a set-clock reply is not 4 bytes');
      return okReply({ type: 'clock-set' });
    case 'unit':
      return unitReply(body);
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
