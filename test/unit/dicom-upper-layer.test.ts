import fc from 'fast-check';
import dicomParser from 'dicom-parser';
import { describe, expect, it } from 'vitest';
import { CommandField, decodeCommand, DimseError, encodeCommand, NO_DATA_SET, Status, type Command } from '../../src/protocols/dicom/dimse.ts';
import { PduFramer, type FramerEvent } from '../../src/protocols/dicom/framer.ts';
import { dataSetOffset, fileMetaHeader } from '../../src/protocols/dicom/part10.ts';
import {
  AbortReason,
  decodePdu,
  encodePdu,
  pDataHeader,
  PduError,
  PduType,
  type AssociateRq,
  type Pdu,
} from '../../src/protocols/dicom/pdu.ts';
import { APPLICATION_CONTEXT, IMPLEMENTATION_CLASS_UID, SopClass, TransferSyntax } from '../../src/protocols/dicom/uids.ts';

/** The A-ASSOCIATE-RQ DCMTK 3.6.7 `echoscu -aet US_ROOM2 -aec POCTD` sent to a loopback socket (captured here). */
const ECHOSCU_RQ = Buffer.from(
  '0100000000cd00010000504f435444202020202020202020202055535f524f4f4d322020202020202020000000000000000000000000000000000000000000000000000000000000000010000015312e322e3834302e31303030382e332e312e312e312000002e0100ff0030000011312e322e3834302e31303030382e312e3140000011312e322e3834302e31303030382e312e325000003a51000004000040005200001b312e322e3237362e302e373233303031302e332e302e332e362e375500000f4f464649535f44434d544b5f333637',
  'hex',
);

function pdus(events: FramerEvent[]): Pdu[] {
  return events.flatMap((e) => (e.kind === 'pdu' ? [e.pdu] : []));
}

function errors(events: FramerEvent[]): PduError[] {
  return events.flatMap((e) => (e.kind === 'error' ? [e.error] : []));
}

const sampleRq: AssociateRq = {
  type: PduType.AssociateRq,
  protocolVersion: 1,
  calledAe: 'POCTD',
  callingAe: 'US_ROOM2',
  applicationContext: APPLICATION_CONTEXT,
  contexts: [
    { id: 1, abstractSyntax: SopClass.Verification, transferSyntaxes: [TransferSyntax.ImplicitVRLittleEndian] },
    { id: 3, abstractSyntax: SopClass.UltrasoundImage, transferSyntaxes: [TransferSyntax.JpegBaseline, TransferSyntax.ExplicitVRLittleEndian] },
  ],
  userInfo: {
    maxPduLength: 16384,
    implementationClassUid: IMPLEMENTATION_CLASS_UID,
    implementationVersionName: 'TEST',
    asyncOps: { invoked: 1, performed: 1 },
    roles: [{ sopClass: SopClass.StorageCommitmentPush, scu: true, scp: false }],
    other: [{ type: 0x58, data: Buffer.from([1, 0, 0, 4, 0x55, 0x53, 0x45, 0x52, 0, 0]) }],
  },
};

const uid = fc.stringMatching(/^[1-9][0-9]{0,5}(\.[0-9]{1,6}){1,6}$/);
const ae = fc.stringMatching(/^[A-Z0-9_]{1,16}$/);

const arbitraryPdu: fc.Arbitrary<Pdu> = fc.oneof(
  fc.record({
    type: fc.constant(PduType.AssociateRq),
    protocolVersion: fc.constant(1),
    calledAe: ae,
    callingAe: ae,
    applicationContext: fc.constant(APPLICATION_CONTEXT),
    contexts: fc.array(
      fc.record({ id: fc.integer({ min: 0, max: 127 }).map((n) => n * 2 + 1), abstractSyntax: uid, transferSyntaxes: fc.array(uid, { minLength: 1, maxLength: 4 }) }),
      { maxLength: 5 },
    ),
    userInfo: fc.record({
      maxPduLength: fc.integer({ min: 0, max: 0xffffffff }),
      implementationClassUid: uid,
      implementationVersionName: ae,
      roles: fc.constant([]),
      other: fc.constant([]),
    }),
  }) as fc.Arbitrary<Pdu>,
  fc.record({
    type: fc.constant(PduType.PData),
    pdvs: fc.array(
      fc.record({
        contextId: fc.integer({ min: 0, max: 127 }).map((n) => n * 2 + 1),
        command: fc.boolean(),
        last: fc.boolean(),
        data: fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a)),
      }),
      { minLength: 1, maxLength: 4 },
    ),
  }) as fc.Arbitrary<Pdu>,
  fc.record({ type: fc.constant(PduType.AssociateRj), result: fc.constantFrom(1, 2), source: fc.constantFrom(1, 2, 3), reason: fc.integer({ min: 0, max: 7 }) }) as fc.Arbitrary<Pdu>,
  fc.constant({ type: PduType.ReleaseRq } as Pdu),
  fc.constant({ type: PduType.ReleaseRp } as Pdu),
  fc.record({ type: fc.constant(PduType.Abort), source: fc.constantFrom(0, 2), reason: fc.integer({ min: 0, max: 6 }) }) as fc.Arbitrary<Pdu>,
);

/** The stream cut at the given points (sorted, deduplicated, inside the stream). */
function cut(stream: Buffer, points: number[]): Buffer[] {
  const at = [...new Set(points.map((p) => p % (stream.length + 1)))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let from = 0;
  for (const p of at) {
    parts.push(stream.subarray(from, p));
    from = p;
  }
  parts.push(stream.subarray(from));
  return parts;
}

describe('DICOM upper layer PDUs', () => {
  it('decodes the A-ASSOCIATE-RQ DCMTK echoscu sends', () => {
    const events = new PduFramer().push(ECHOSCU_RQ);
    const [rq] = pdus(events);
    expect(errors(events)).toEqual([]);
    expect(rq).toMatchObject({
      type: PduType.AssociateRq,
      protocolVersion: 1,
      calledAe: 'POCTD',
      callingAe: 'US_ROOM2',
      applicationContext: APPLICATION_CONTEXT,
      contexts: [{ id: 1, abstractSyntax: SopClass.Verification, transferSyntaxes: [TransferSyntax.ImplicitVRLittleEndian] }],
      userInfo: { maxPduLength: 16384, implementationClassUid: '1.2.276.0.7230010.3.0.3.6.7', implementationVersionName: 'OFFIS_DCMTK_367' },
    });
  });

  it('round-trips every PDU kind and its items', () => {
    const ac: Pdu = {
      type: PduType.AssociateAc,
      protocolVersion: 1,
      calledAe: 'POCTD',
      callingAe: 'US_ROOM2',
      applicationContext: APPLICATION_CONTEXT,
      contexts: [
        { id: 1, result: 0, transferSyntax: TransferSyntax.ImplicitVRLittleEndian },
        { id: 3, result: 3, transferSyntax: TransferSyntax.JpegBaseline },
      ],
      userInfo: { maxPduLength: 262144, implementationClassUid: IMPLEMENTATION_CLASS_UID, implementationVersionName: 'POCTD', roles: [], other: [] },
    };
    const all: Pdu[] = [
      sampleRq,
      ac,
      { type: PduType.AssociateRj, result: 1, source: 1, reason: 3 },
      { type: PduType.PData, pdvs: [{ contextId: 3, command: true, last: true, data: Buffer.from('abc') }, { contextId: 3, command: false, last: false, data: Buffer.alloc(0) }] },
      { type: PduType.ReleaseRq },
      { type: PduType.ReleaseRp },
      { type: PduType.Abort, source: 2, reason: AbortReason.UnexpectedPdu },
    ];
    for (const p of all) {
      const bytes = encodePdu(p);
      expect(bytes.readUInt32BE(2)).toBe(bytes.length - 6);
      expect(decodePdu(bytes[0]!, bytes.subarray(6))).toEqual(p);
    }
  });

  it('the P-DATA-TF header for a streamed PDV matches the encoder', () => {
    const data = Buffer.from('0123456789');
    expect(Buffer.concat([pDataHeader(5, false, true, data.length), data])).toEqual(
      encodePdu({ type: PduType.PData, pdvs: [{ contextId: 5, command: false, last: true, data }] }),
    );
  });

  it('frames any sequence of PDUs cut into any chunks, the same as whole', () => {
    fc.assert(
      fc.property(fc.array(arbitraryPdu, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 30 }), (sequence, points) => {
        const stream = Buffer.concat(sequence.map(encodePdu));
        const framer = new PduFramer(0);
        const events = cut(stream, points).flatMap((chunk) => framer.push(chunk));
        expect(errors(events)).toEqual([]);
        expect(pdus(events)).toEqual(sequence);
        expect(framer.pending).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  it('a truncated PDU yields nothing and waits; the rest completes it', () => {
    const bytes = encodePdu(sampleRq);
    for (const n of [1, 5, 6, 7, bytes.length - 1]) {
      const framer = new PduFramer();
      expect(framer.push(bytes.subarray(0, n))).toEqual([]);
      expect(framer.pending).toBe(n);
      expect(pdus(framer.push(bytes.subarray(n)))).toEqual([sampleRq]);
    }
  });

  it('garbage after good PDUs: the good ones are delivered, then one unrecognized-PDU error, then silence', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 6, maxLength: 64 }).filter((g) => g[0]! < 1 || g[0]! > 7),
        fc.array(fc.nat(), { maxLength: 10 }),
        (garbage, points) => {
          const good = Buffer.concat([encodePdu({ type: PduType.ReleaseRq }), encodePdu({ type: PduType.ReleaseRp })]);
          const stream = Buffer.concat([good, Buffer.from(garbage), encodePdu({ type: PduType.ReleaseRq })]);
          const framer = new PduFramer();
          const events = cut(stream, points).flatMap((chunk) => framer.push(chunk));
          expect(pdus(events)).toEqual([{ type: PduType.ReleaseRq }, { type: PduType.ReleaseRp }]);
          expect(errors(events).map((e) => e.abortReason)).toEqual([AbortReason.UnrecognizedPdu]);
          expect(framer.push(encodePdu({ type: PduType.ReleaseRq }))).toEqual([]);
        },
      ),
    );
  });

  it('an oversized PDU is refused from its header alone, before its body is buffered', () => {
    const framer = new PduFramer(16384);
    const head = Buffer.alloc(6);
    head[0] = PduType.PData;
    head.writeUInt32BE(16385, 2);
    const events = framer.push(head);
    expect(errors(events)).toHaveLength(1);
    expect(errors(events)[0]!.message).toMatch(/16385 bytes is longer than the 16384 allowed/);
    expect(framer.pending).toBe(0);
    // The same length within the limit waits for its body.
    const ok = new PduFramer(16385);
    expect(ok.push(head)).toEqual([]);
  });

  it('before an association, a 4 GiB length is refused (the A-ASSOCIATE-RQ limit)', () => {
    const head = Buffer.from([0x01, 0, 0xff, 0xff, 0xff, 0xff]);
    expect(errors(new PduFramer().push(head))[0]!.abortReason).toBe(AbortReason.InvalidPduParameterValue);
  });

  it('malformed bodies are typed errors naming the fault', () => {
    const bad = (type: number, body: Buffer): string => {
      try {
        decodePdu(type, body);
      } catch (error) {
        expect(error).toBeInstanceOf(PduError);
        return (error as Error).message;
      }
      throw new Error('decoded');
    };
    const rqBody = encodePdu(sampleRq).subarray(6);
    expect(bad(PduType.AssociateRq, rqBody.subarray(0, 60))).toMatch(/shorter than its fixed fields/);
    expect(bad(PduType.AssociateRq, rqBody.subarray(0, rqBody.length - 3))).toMatch(/runs past its PDU/);
    expect(bad(PduType.AssociateRq, rqBody.subarray(0, 68 + 25))).toMatch(/no user information|runs past/);
    // P-DATA: a PDV longer than its PDU, a PDV length below 2, reserved bits set, no PDV at all.
    expect(bad(PduType.PData, Buffer.from([0, 0, 0, 9, 1, 3, 0]))).toMatch(/runs past its PDU/);
    expect(bad(PduType.PData, Buffer.from([0, 0, 0, 1, 1, 3]))).toMatch(/no room for its header/);
    expect(bad(PduType.PData, Buffer.from([0, 0, 0, 2, 1, 7]))).toMatch(/reserved bits/);
    expect(bad(PduType.PData, Buffer.alloc(0))).toMatch(/no PDV/);
    expect(bad(PduType.ReleaseRq, Buffer.alloc(3))).toMatch(/3 bytes/);
    expect(bad(PduType.Abort, Buffer.alloc(5))).toMatch(/5 bytes/);
    // An even presentation context id (PS3.8 9.3.2.2: odd 1-255).
    const evenCtx = encodePdu({ ...sampleRq, contexts: [{ id: 2, abstractSyntax: SopClass.Verification, transferSyntaxes: [TransferSyntax.ImplicitVRLittleEndian] }] });
    expect(bad(PduType.AssociateRq, evenCtx.subarray(6))).toMatch(/id 2 is not odd/);
  });
});

describe('DIMSE command sets (implicit VR little endian)', () => {
  it('C-ECHO-RQ bytes are exactly as PS3.7 lays them out', () => {
    const bytes = encodeCommand({ commandField: CommandField.CEchoRq, messageId: 1, affectedSopClassUid: SopClass.Verification, dataSetType: NO_DATA_SET });
    const expected = Buffer.concat([
      Buffer.from('0000000004000000', 'hex'),
      Buffer.from('38000000', 'hex'), // group length: 26 + 10 + 10 + 10
      Buffer.from('0000020012000000', 'hex'),
      Buffer.from('1.2.840.10008.1.1\0', 'latin1'),
      Buffer.from('00000001020000003000', 'hex'),
      Buffer.from('00001001020000000100', 'hex'),
      Buffer.from('00000008020000000101', 'hex'),
    ]);
    expect(bytes.toString('hex')).toBe(expected.toString('hex'));
  });

  it('round-trips a C-STORE-RQ and a C-STORE-RSP with an error comment', () => {
    const rq: Command = {
      commandField: CommandField.CStoreRq,
      messageId: 7,
      affectedSopClassUid: SopClass.UltrasoundMultiFrameImage,
      affectedSopInstanceUid: '1.2.3.4.5',
      priority: 0,
      dataSetType: 0x0000,
      moveOriginatorAe: 'ORTHANC',
      moveOriginatorMessageId: 3,
    };
    expect(decodeCommand(encodeCommand(rq))).toEqual(rq);
    const rsp: Command = { commandField: CommandField.CStoreRsp, messageIdBeingRespondedTo: 7, dataSetType: NO_DATA_SET, status: Status.OutOfResources, errorComment: 'disk full' };
    expect(decodeCommand(encodeCommand(rsp))).toEqual(rsp);
  });

  it('refuses a command set that is cut short, lacks its fields or leaves group 0000', () => {
    const rq = encodeCommand({ commandField: CommandField.CEchoRq, messageId: 1, dataSetType: NO_DATA_SET });
    expect(() => decodeCommand(rq.subarray(0, rq.length - 1))).toThrow(DimseError);
    expect(() => decodeCommand(Buffer.from('000000000400000000000000', 'hex'))).toThrow(/no command field/);
    expect(() => decodeCommand(Buffer.from('0800000004000000', 'hex'))).toThrow(/outside group 0000/);
    expect(() => decodeCommand(Buffer.from('0000000103000000300000', 'hex'))).toThrow(/US is 2/);
  });
});

describe('Part-10 meta header', () => {
  it('is read back by dicom-parser with the values given, and says where the data set starts', () => {
    const header = fileMetaHeader({
      sopClassUid: SopClass.UltrasoundImage,
      sopInstanceUid: '1.2.3.4.5.6',
      transferSyntaxUid: TransferSyntax.JpegBaseline,
      sourceAe: 'US_ROOM2',
      receivingAe: 'POCTD',
    });
    // A minimal explicit VR LE data set after it: (0008,0018) UI.
    const dataSet = Buffer.concat([Buffer.from([0x08, 0x00, 0x18, 0x00]), Buffer.from('UI'), Buffer.from([12, 0]), Buffer.from('1.2.3.4.5.6\0')]);
    const file = Buffer.concat([header, dataSet]);
    const parsed = dicomParser.parseDicom(new Uint8Array(file));
    expect(parsed.string('x00020002')).toBe(SopClass.UltrasoundImage);
    expect(parsed.string('x00020003')).toBe('1.2.3.4.5.6');
    expect(parsed.string('x00020010')).toBe(TransferSyntax.JpegBaseline);
    expect(parsed.string('x00020012')).toBe(IMPLEMENTATION_CLASS_UID);
    expect(parsed.string('x00020016')).toBe('US_ROOM2');
    expect(parsed.string('x00080018')).toBe('1.2.3.4.5.6');
    expect(dataSetOffset(file)).toBe(header.length);
    expect(dataSetOffset(dataSet)).toBeUndefined();
  });
});
