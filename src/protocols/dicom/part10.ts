/**
 * The Part-10 file header the node writes in front of a received data set (PS3.10 7.1): a 128-byte
 * preamble, `DICM`, and the file meta group 0002 in explicit VR little endian. The data set bytes
 * follow exactly as they came off the wire, so nothing of the sender's encoding is changed.
 */
import { IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME } from './uids.ts';

export interface FileMeta {
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
  /** The calling AE title: (0002,0016) Source Application Entity Title. */
  sourceAe?: string;
  /** Our own AE title: (0002,0018) Receiving Application Entity Title. */
  receivingAe?: string;
}

const LONG_VRS = new Set(['OB', 'OW', 'OF', 'SQ', 'UT', 'UN']);

function explicit(element: number, vr: string, value: Buffer): Buffer {
  const long = LONG_VRS.has(vr);
  const head = Buffer.alloc(long ? 12 : 8);
  head.writeUInt16LE(0x0002, 0);
  head.writeUInt16LE(element, 2);
  head.write(vr, 4, 'latin1');
  if (long) head.writeUInt32LE(value.length, 8);
  else head.writeUInt16LE(value.length, 6);
  return Buffer.concat([head, value]);
}

function uid(value: string): Buffer {
  return Buffer.from(value.length % 2 === 1 ? `${value}\0` : value, 'latin1');
}

function text(value: string): Buffer {
  return Buffer.from(value.length % 2 === 1 ? `${value} ` : value, 'latin1');
}

export function fileMetaHeader(meta: FileMeta): Buffer {
  const elements = [
    explicit(0x0001, 'OB', Buffer.from([0x00, 0x01])),
    explicit(0x0002, 'UI', uid(meta.sopClassUid)),
    explicit(0x0003, 'UI', uid(meta.sopInstanceUid)),
    explicit(0x0010, 'UI', uid(meta.transferSyntaxUid)),
    explicit(0x0012, 'UI', uid(IMPLEMENTATION_CLASS_UID)),
    explicit(0x0013, 'SH', text(IMPLEMENTATION_VERSION_NAME)),
  ];
  if (meta.sourceAe) elements.push(explicit(0x0016, 'AE', text(meta.sourceAe)));
  if (meta.receivingAe) elements.push(explicit(0x0018, 'AE', text(meta.receivingAe)));
  const group = Buffer.concat(elements);
  const length = Buffer.alloc(4);
  length.writeUInt32LE(group.length);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'latin1'), explicit(0x0000, 'UL', length), group]);
}

/**
 * Where the data set starts in a Part-10 file: after the preamble, `DICM` and the meta group whose
 * length (0002,0000) gives. Undefined when the bytes are not a Part-10 file this way.
 */
export function dataSetOffset(file: Buffer): number | undefined {
  if (file.length < 144 || file.toString('latin1', 128, 132) !== 'DICM') return undefined;
  if (file.readUInt16LE(132) !== 0x0002 || file.readUInt16LE(134) !== 0x0000 || file.toString('latin1', 136, 138) !== 'UL') return undefined;
  return 144 + file.readUInt32LE(140);
}
