/**
 * DIMSE command sets (PS3.7 section 9 and 10, annex E): group 0000, always implicit VR little
 * endian whatever transfer syntax the data set travels in.
 */

export const CommandField = {
  CStoreRq: 0x0001,
  CStoreRsp: 0x8001,
  CEchoRq: 0x0030,
  CEchoRsp: 0x8030,
  NEventReportRq: 0x0100,
  NEventReportRsp: 0x8100,
  NActionRq: 0x0130,
  NActionRsp: 0x8130,
} as const;

/** (0000,0800) when no data set follows the command (PS3.7 E.1). */
export const NO_DATA_SET = 0x0101;

export const Priority = { Medium: 0x0000, High: 0x0001, Low: 0x0002 } as const;

/** C-STORE and general DIMSE statuses (PS3.7 annex C and B.2.3, PS3.4 GG.4.2). */
export const Status = {
  Success: 0x0000,
  /** Refused: out of resources (C-STORE, PS3.4 B.2.3). */
  OutOfResources: 0xa700,
  /** Error: data set does not match SOP class. */
  DataSetMismatch: 0xa900,
  /** Error: cannot understand. */
  CannotUnderstand: 0xc000,
  /** Refused: SOP class not supported (PS3.7 C.5.9). */
  SopClassNotSupported: 0x0122,
  /** Duplicate SOP instance (PS3.7 C.5.11); C-STORE treats a resend as success, see the SCP. */
  DuplicateInstance: 0x0111,
  ProcessingFailure: 0x0110,
  UnrecognizedOperation: 0x0211,
} as const;

export interface Command {
  commandField: number;
  messageId?: number;
  messageIdBeingRespondedTo?: number;
  affectedSopClassUid?: string;
  affectedSopInstanceUid?: string;
  requestedSopClassUid?: string;
  requestedSopInstanceUid?: string;
  priority?: number;
  /** 0x0101: no data set follows; anything else: one does. */
  dataSetType: number;
  status?: number;
  errorComment?: string;
  moveOriginatorAe?: string;
  moveOriginatorMessageId?: number;
  actionTypeId?: number;
  eventTypeId?: number;
}

export class DimseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DimseError';
  }
}

type Vr = 'UL' | 'US' | 'UI' | 'AE' | 'LO';

/** The command elements this codec knows, with their VR (PS3.7 E.1), in tag order. */
const ELEMENTS: ReadonlyArray<{ tag: number; key: keyof Command; vr: Vr }> = [
  { tag: 0x0002, key: 'affectedSopClassUid', vr: 'UI' },
  { tag: 0x0003, key: 'requestedSopClassUid', vr: 'UI' },
  { tag: 0x0100, key: 'commandField', vr: 'US' },
  { tag: 0x0110, key: 'messageId', vr: 'US' },
  { tag: 0x0120, key: 'messageIdBeingRespondedTo', vr: 'US' },
  { tag: 0x0700, key: 'priority', vr: 'US' },
  { tag: 0x0800, key: 'dataSetType', vr: 'US' },
  { tag: 0x0900, key: 'status', vr: 'US' },
  { tag: 0x0902, key: 'errorComment', vr: 'LO' },
  { tag: 0x1000, key: 'affectedSopInstanceUid', vr: 'UI' },
  { tag: 0x1001, key: 'requestedSopInstanceUid', vr: 'UI' },
  { tag: 0x1002, key: 'eventTypeId', vr: 'US' },
  { tag: 0x1008, key: 'actionTypeId', vr: 'US' },
  { tag: 0x1030, key: 'moveOriginatorAe', vr: 'AE' },
  { tag: 0x1031, key: 'moveOriginatorMessageId', vr: 'US' },
];
const BY_TAG = new Map(ELEMENTS.map((e) => [e.tag, e]));

function element(tag: number, value: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt16LE(0x0000, 0);
  head.writeUInt16LE(tag, 2);
  head.writeUInt32LE(value.length, 4);
  return Buffer.concat([head, value]);
}

function valueBytes(vr: Vr, value: string | number): Buffer {
  switch (vr) {
    case 'US': {
      const b = Buffer.alloc(2);
      b.writeUInt16LE(Number(value));
      return b;
    }
    case 'UL': {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(Number(value));
      return b;
    }
    case 'UI': {
      const s = String(value);
      // UIDs are padded to even length with a NUL (PS3.5 9.1), text with a space.
      return Buffer.from(s.length % 2 === 1 ? `${s}\0` : s, 'latin1');
    }
    case 'AE':
    case 'LO': {
      const s = String(value);
      return Buffer.from(s.length % 2 === 1 ? `${s} ` : s, 'latin1');
    }
  }
}

/** The command set's bytes, (0000,0000) group length first. */
export function encodeCommand(command: Command): Buffer {
  const parts: Buffer[] = [];
  for (const e of ELEMENTS) {
    const value = command[e.key];
    if (value === undefined) continue;
    parts.push(element(e.tag, valueBytes(e.vr, value)));
  }
  const body = Buffer.concat(parts);
  return Buffer.concat([element(0x0000, valueBytes('UL', body.length)), body]);
}

/** Decodes a whole command set; an element this codec does not know is skipped (PS3.7 allows retired ones). */
export function decodeCommand(bytes: Buffer): Command {
  const out: Partial<Record<keyof Command, string | number>> = {};
  let at = 0;
  while (at < bytes.length) {
    if (bytes.length - at < 8) throw new DimseError(`command set: element header cut short at byte ${at}`);
    const group = bytes.readUInt16LE(at);
    const tag = bytes.readUInt16LE(at + 2);
    const length = bytes.readUInt32LE(at + 4);
    if (group !== 0x0000) throw new DimseError(`command set holds element (${hex4(group)},${hex4(tag)}) outside group 0000`);
    if (length === 0xffffffff || at + 8 + length > bytes.length) {
      throw new DimseError(`command set: element (0000,${hex4(tag)}) of ${length} bytes runs past the command`);
    }
    const value = bytes.subarray(at + 8, at + 8 + length);
    const known = BY_TAG.get(tag);
    if (known) {
      if (known.vr === 'US') {
        if (length !== 2) throw new DimseError(`command element (0000,${hex4(tag)}) is ${length} bytes, US is 2`);
        out[known.key] = value.readUInt16LE(0);
      } else if (known.vr === 'UL') {
        if (length !== 4) throw new DimseError(`command element (0000,${hex4(tag)}) is ${length} bytes, UL is 4`);
        out[known.key] = value.readUInt32LE(0);
      } else {
        out[known.key] = value.toString('latin1').replace(/[\0 ]+$/, '').replace(/^ +/, '');
      }
    }
    at += 8 + length;
  }
  if (typeof out.commandField !== 'number') throw new DimseError('command set has no command field (0000,0100)');
  if (typeof out.dataSetType !== 'number') throw new DimseError('command set has no command data set type (0000,0800)');
  return out as unknown as Command;
}

export function hasDataSet(command: Command): boolean {
  return command.dataSetType !== NO_DATA_SET;
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}
