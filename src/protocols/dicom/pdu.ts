/**
 * DICOM upper layer PDUs (PS3.8 section 9.3): pure encode and decode, bytes in, typed PDUs out.
 *
 * A decode error is a `PduError` carrying the A-ABORT reason the peer should hear (PS3.8 9.3.8:
 * unrecognized PDU, invalid parameter value, ...), never a crash of the association.
 */

export const PduType = {
  AssociateRq: 0x01,
  AssociateAc: 0x02,
  AssociateRj: 0x03,
  PData: 0x04,
  ReleaseRq: 0x05,
  ReleaseRp: 0x06,
  Abort: 0x07,
} as const;

/** A-ABORT source (PS3.8 table 9-26). */
export const AbortSource = { ServiceUser: 0, ServiceProvider: 2 } as const;
/** A-ABORT reasons when the service provider aborts (PS3.8 table 9-26). */
export const AbortReason = {
  NotSpecified: 0,
  UnrecognizedPdu: 1,
  UnexpectedPdu: 2,
  UnrecognizedPduParameter: 4,
  UnexpectedPduParameter: 5,
  InvalidPduParameterValue: 6,
} as const;

/** A-ASSOCIATE-RJ result, source and reason (PS3.8 table 9-21). */
export const RejectResult = { Permanent: 1, Transient: 2 } as const;
export const RejectSource = { ServiceUser: 1, ServiceProviderAcse: 2, ServiceProviderPresentation: 3 } as const;
export const RejectReason = {
  /** source 1 */
  NoReasonGiven: 1,
  ApplicationContextNotSupported: 2,
  CallingAeNotRecognized: 3,
  CalledAeNotRecognized: 7,
  /** source 2 */
  ProtocolVersionNotSupported: 2,
  /** source 3 */
  TemporaryCongestion: 1,
  LocalLimitExceeded: 2,
} as const;

/** Presentation context result in an A-ASSOCIATE-AC (PS3.8 table 9-18). */
export const ContextResult = {
  Acceptance: 0,
  UserRejection: 1,
  NoReason: 2,
  AbstractSyntaxNotSupported: 3,
  TransferSyntaxesNotSupported: 4,
} as const;

export interface ProposedContext {
  id: number;
  abstractSyntax: string;
  transferSyntaxes: string[];
}

export interface AcceptedContext {
  id: number;
  result: number;
  /** The one transfer syntax chosen; for a rejected context a placeholder the peer ignores. */
  transferSyntax: string;
}

/** SCP/SCU role selection sub-item (PS3.7 D.3.3.4). */
export interface RoleSelection {
  sopClass: string;
  scu: boolean;
  scp: boolean;
}

export interface UserInformation {
  /** 0 means no limit (PS3.8 D.1.1). */
  maxPduLength: number;
  implementationClassUid: string;
  implementationVersionName?: string;
  /** Asynchronous operations window: invoked, performed (PS3.7 D.3.3.3). */
  asyncOps?: { invoked: number; performed: number };
  roles: RoleSelection[];
  /** Sub-items this codec does not interpret (extended negotiation, user identity, ...), kept as bytes. */
  other: Array<{ type: number; data: Buffer }>;
}

export interface AssociateRq {
  type: typeof PduType.AssociateRq;
  protocolVersion: number;
  calledAe: string;
  callingAe: string;
  applicationContext: string;
  contexts: ProposedContext[];
  userInfo: UserInformation;
}

export interface AssociateAc {
  type: typeof PduType.AssociateAc;
  protocolVersion: number;
  calledAe: string;
  callingAe: string;
  applicationContext: string;
  contexts: AcceptedContext[];
  userInfo: UserInformation;
}

export interface AssociateRj {
  type: typeof PduType.AssociateRj;
  result: number;
  source: number;
  reason: number;
}

/** One presentation data value: a fragment of a command set or of a data set. */
export interface Pdv {
  contextId: number;
  command: boolean;
  last: boolean;
  data: Buffer;
}

export interface PData {
  type: typeof PduType.PData;
  pdvs: Pdv[];
}

export interface ReleaseRq {
  type: typeof PduType.ReleaseRq;
}
export interface ReleaseRp {
  type: typeof PduType.ReleaseRp;
}
export interface Abort {
  type: typeof PduType.Abort;
  source: number;
  reason: number;
}

export type Pdu = AssociateRq | AssociateAc | AssociateRj | PData | ReleaseRq | ReleaseRp | Abort;

export class PduError extends Error {
  constructor(
    message: string,
    /** The A-ABORT reason to send (PS3.8 table 9-26). */
    readonly abortReason: number = AbortReason.InvalidPduParameterValue,
  ) {
    super(message);
    this.name = 'PduError';
  }
}

/** PDU header: type, reserved, 32-bit big-endian length of what follows. */
export const PDU_HEADER_LENGTH = 6;

const ItemType = {
  ApplicationContext: 0x10,
  PresentationContextRq: 0x20,
  PresentationContextAc: 0x21,
  AbstractSyntax: 0x30,
  TransferSyntax: 0x40,
  UserInformation: 0x50,
  MaxLength: 0x51,
  ImplementationClassUid: 0x52,
  AsyncOps: 0x53,
  RoleSelection: 0x54,
  ImplementationVersionName: 0x55,
} as const;

// ---------- text helpers ----------

/** An AE title as the peer meant it: leading and trailing spaces are not significant (PS3.5 6.2). */
export function aeTitle(bytes: Buffer): string {
  return bytes.toString('latin1').replace(/\0+$/, '').trim();
}

function aeField(title: string): Buffer {
  const field = Buffer.alloc(16, 0x20);
  field.write(title.slice(0, 16), 'latin1');
  return field;
}

/** A UID as carried in an item: some peers pad it with a NUL or a space; neither is part of it. */
function uidText(bytes: Buffer): string {
  return bytes.toString('latin1').replace(/[\0 ]+$/, '');
}

/** Checks an AE title before it goes on the wire: 1-16 characters of the default repertoire, no backslash. */
export function validAeTitle(title: string): boolean {
  return title.trim().length > 0 && title.length <= 16 && /^[\x20-\x5b\x5d-\x7e]+$/.test(title);
}

// ---------- encode ----------

function item(type: number, body: Buffer): Buffer {
  if (body.length > 0xffff) throw new Error(`item 0x${type.toString(16)} longer than 65535 bytes`);
  const head = Buffer.alloc(4);
  head[0] = type;
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([head, body]);
}

function pdu(type: number, body: Buffer): Buffer {
  const head = Buffer.alloc(PDU_HEADER_LENGTH);
  head[0] = type;
  head.writeUInt32BE(body.length, 2);
  return Buffer.concat([head, body]);
}

function encodeUserInfo(info: UserInformation): Buffer {
  const max = Buffer.alloc(4);
  max.writeUInt32BE(info.maxPduLength >>> 0);
  const parts = [item(ItemType.MaxLength, max), item(ItemType.ImplementationClassUid, Buffer.from(info.implementationClassUid, 'latin1'))];
  if (info.asyncOps) {
    const ops = Buffer.alloc(4);
    ops.writeUInt16BE(info.asyncOps.invoked, 0);
    ops.writeUInt16BE(info.asyncOps.performed, 2);
    parts.push(item(ItemType.AsyncOps, ops));
  }
  for (const role of info.roles) {
    const uid = Buffer.from(role.sopClass, 'latin1');
    const body = Buffer.alloc(4 + uid.length);
    body.writeUInt16BE(uid.length, 0);
    uid.copy(body, 2);
    body[2 + uid.length] = role.scu ? 1 : 0;
    body[3 + uid.length] = role.scp ? 1 : 0;
    parts.push(item(ItemType.RoleSelection, body));
  }
  if (info.implementationVersionName !== undefined) {
    parts.push(item(ItemType.ImplementationVersionName, Buffer.from(info.implementationVersionName, 'latin1')));
  }
  for (const other of info.other) parts.push(item(other.type, other.data));
  return item(ItemType.UserInformation, Buffer.concat(parts));
}

/** An A-ASSOCIATE-RQ or -AC: the fixed head, the application context, the contexts, the user information. */
function associatePdu(p: AssociateRq | AssociateAc, contexts: Buffer[]): Buffer {
  const head = Buffer.alloc(68);
  head.writeUInt16BE(p.protocolVersion, 0);
  aeField(p.calledAe).copy(head, 4);
  aeField(p.callingAe).copy(head, 20);
  return pdu(p.type, Buffer.concat([head, item(ItemType.ApplicationContext, Buffer.from(p.applicationContext, 'latin1')), ...contexts, encodeUserInfo(p.userInfo)]));
}

export function encodePdu(p: Pdu): Buffer {
  switch (p.type) {
    case PduType.AssociateRq: {
      const contexts = p.contexts.map((c) => {
        const subs = [
          item(ItemType.AbstractSyntax, Buffer.from(c.abstractSyntax, 'latin1')),
          ...c.transferSyntaxes.map((ts) => item(ItemType.TransferSyntax, Buffer.from(ts, 'latin1'))),
        ];
        return item(ItemType.PresentationContextRq, Buffer.concat([Buffer.from([c.id, 0, 0, 0]), ...subs]));
      });
      return associatePdu(p, contexts);
    }
    case PduType.AssociateAc: {
      const contexts = p.contexts.map((c) =>
        item(
          ItemType.PresentationContextAc,
          Buffer.concat([Buffer.from([c.id, 0, c.result, 0]), item(ItemType.TransferSyntax, Buffer.from(c.transferSyntax, 'latin1'))]),
        ),
      );
      return associatePdu(p, contexts);
    }
    case PduType.AssociateRj:
      return pdu(p.type, Buffer.from([0, p.result, p.source, p.reason]));
    case PduType.PData: {
      const parts: Buffer[] = [];
      for (const v of p.pdvs) {
        const head = Buffer.alloc(6);
        head.writeUInt32BE(v.data.length + 2, 0);
        head[4] = v.contextId;
        head[5] = (v.command ? 1 : 0) | (v.last ? 2 : 0);
        parts.push(head, v.data);
      }
      return pdu(p.type, Buffer.concat(parts));
    }
    case PduType.ReleaseRq:
    case PduType.ReleaseRp:
      return pdu(p.type, Buffer.alloc(4));
    case PduType.Abort:
      return pdu(p.type, Buffer.from([0, 0, p.source, p.reason]));
  }
}

/** The header of a P-DATA-TF carrying one PDV of `length` bytes (the data follows it on the wire). */
export function pDataHeader(contextId: number, command: boolean, last: boolean, length: number): Buffer {
  const head = Buffer.alloc(PDU_HEADER_LENGTH + 6);
  head[0] = PduType.PData;
  head.writeUInt32BE(length + 6, 2);
  head.writeUInt32BE(length + 2, 6);
  head[10] = contextId;
  head[11] = (command ? 1 : 0) | (last ? 2 : 0);
  return head;
}

// ---------- decode ----------

interface RawItem {
  type: number;
  body: Buffer;
}

function items(body: Buffer, where: string): RawItem[] {
  const out: RawItem[] = [];
  let at = 0;
  while (at < body.length) {
    if (body.length - at < 4) throw new PduError(`${where}: item header cut short at byte ${at}`);
    const type = body[at]!;
    const length = body.readUInt16BE(at + 2);
    if (at + 4 + length > body.length) throw new PduError(`${where}: item 0x${type.toString(16)} of ${length} bytes runs past its PDU`);
    out.push({ type, body: body.subarray(at + 4, at + 4 + length) });
    at += 4 + length;
  }
  return out;
}

function decodeUserInfo(body: Buffer): UserInformation {
  const info: UserInformation = { maxPduLength: 0, implementationClassUid: '', roles: [], other: [] };
  let sawMax = false;
  for (const sub of items(body, 'user information')) {
    switch (sub.type) {
      case ItemType.MaxLength:
        if (sub.body.length !== 4) throw new PduError('maximum length sub-item is not 4 bytes');
        info.maxPduLength = sub.body.readUInt32BE(0);
        sawMax = true;
        break;
      case ItemType.ImplementationClassUid:
        info.implementationClassUid = uidText(sub.body);
        break;
      case ItemType.ImplementationVersionName:
        info.implementationVersionName = sub.body.toString('latin1').trim();
        break;
      case ItemType.AsyncOps:
        if (sub.body.length !== 4) throw new PduError('asynchronous operations window sub-item is not 4 bytes');
        info.asyncOps = { invoked: sub.body.readUInt16BE(0), performed: sub.body.readUInt16BE(2) };
        break;
      case ItemType.RoleSelection: {
        if (sub.body.length < 2) throw new PduError('role selection sub-item cut short');
        const uidLength = sub.body.readUInt16BE(0);
        if (sub.body.length !== uidLength + 4) throw new PduError('role selection sub-item length does not match its UID');
        info.roles.push({ sopClass: uidText(sub.body.subarray(2, 2 + uidLength)), scu: sub.body[2 + uidLength] === 1, scp: sub.body[3 + uidLength] === 1 });
        break;
      }
      default:
        info.other.push({ type: sub.type, data: Buffer.from(sub.body) });
    }
  }
  if (!sawMax) throw new PduError('user information has no maximum length sub-item');
  if (info.implementationClassUid === '') throw new PduError('user information has no implementation class UID');
  return info;
}

function decodeAssociate(type: 0x01 | 0x02, body: Buffer): AssociateRq | AssociateAc {
  const name = type === PduType.AssociateRq ? 'A-ASSOCIATE-RQ' : 'A-ASSOCIATE-AC';
  if (body.length < 68) throw new PduError(`${name} shorter than its fixed fields`);
  const protocolVersion = body.readUInt16BE(0);
  const calledAe = aeTitle(body.subarray(4, 20));
  const callingAe = aeTitle(body.subarray(20, 36));
  let applicationContext: string | undefined;
  let userInfo: UserInformation | undefined;
  const proposed: ProposedContext[] = [];
  const accepted: AcceptedContext[] = [];
  for (const it of items(body.subarray(68), name)) {
    switch (it.type) {
      case ItemType.ApplicationContext:
        applicationContext = uidText(it.body);
        break;
      case ItemType.PresentationContextRq: {
        if (type !== PduType.AssociateRq) throw new PduError(`${name} carries a proposed presentation context`, AbortReason.UnexpectedPduParameter);
        if (it.body.length < 4) throw new PduError('presentation context item cut short');
        const ctx: ProposedContext = { id: it.body[0]!, abstractSyntax: '', transferSyntaxes: [] };
        for (const sub of items(it.body.subarray(4), 'presentation context')) {
          if (sub.type === ItemType.AbstractSyntax) ctx.abstractSyntax = uidText(sub.body);
          else if (sub.type === ItemType.TransferSyntax) ctx.transferSyntaxes.push(uidText(sub.body));
          else throw new PduError(`presentation context has an unknown sub-item 0x${sub.type.toString(16)}`, AbortReason.UnrecognizedPduParameter);
        }
        if (ctx.id % 2 === 0) throw new PduError(`presentation context id ${ctx.id} is not odd`);
        if (ctx.abstractSyntax === '') throw new PduError(`presentation context ${ctx.id} has no abstract syntax`);
        if (ctx.transferSyntaxes.length === 0) throw new PduError(`presentation context ${ctx.id} has no transfer syntax`);
        proposed.push(ctx);
        break;
      }
      case ItemType.PresentationContextAc: {
        if (type !== PduType.AssociateAc) throw new PduError(`${name} carries an accepted presentation context`, AbortReason.UnexpectedPduParameter);
        if (it.body.length < 4) throw new PduError('presentation context item cut short');
        const subs = items(it.body.subarray(4), 'presentation context');
        const ts = subs.find((s) => s.type === ItemType.TransferSyntax);
        accepted.push({ id: it.body[0]!, result: it.body[2]!, transferSyntax: ts ? uidText(ts.body) : '' });
        break;
      }
      case ItemType.UserInformation:
        userInfo = decodeUserInfo(it.body);
        break;
      default:
        throw new PduError(`${name} has an unknown item 0x${it.type.toString(16)}`, AbortReason.UnrecognizedPduParameter);
    }
  }
  if (applicationContext === undefined) throw new PduError(`${name} has no application context item`);
  if (userInfo === undefined) throw new PduError(`${name} has no user information item`);
  if (type === PduType.AssociateRq) {
    return { type, protocolVersion, calledAe, callingAe, applicationContext, contexts: proposed, userInfo };
  }
  return { type, protocolVersion, calledAe, callingAe, applicationContext, contexts: accepted, userInfo };
}

function decodePData(body: Buffer): PData {
  const pdvs: Pdv[] = [];
  let at = 0;
  while (at < body.length) {
    if (body.length - at < 6) throw new PduError(`P-DATA-TF: PDV header cut short at byte ${at}`);
    const length = body.readUInt32BE(at);
    if (length < 2) throw new PduError(`P-DATA-TF: PDV length ${length} leaves no room for its header`);
    if (at + 4 + length > body.length) throw new PduError(`P-DATA-TF: PDV of ${length} bytes runs past its PDU`);
    const control = body[at + 5]!;
    if ((control & 0xfc) !== 0) throw new PduError(`P-DATA-TF: message control header 0x${control.toString(16)} has reserved bits set`);
    pdvs.push({ contextId: body[at + 4]!, command: (control & 1) === 1, last: (control & 2) === 2, data: body.subarray(at + 6, at + 4 + length) });
    at += 4 + length;
  }
  if (pdvs.length === 0) throw new PduError('P-DATA-TF carries no PDV');
  return { type: PduType.PData, pdvs };
}

/** Decodes one whole PDU: its type byte and its body (what follows the 6-byte header). */
export function decodePdu(type: number, body: Buffer): Pdu {
  switch (type) {
    case PduType.AssociateRq:
    case PduType.AssociateAc:
      return decodeAssociate(type, body);
    case PduType.AssociateRj:
      if (body.length !== 4) throw new PduError(`A-ASSOCIATE-RJ of ${body.length} bytes (4 expected)`);
      return { type, result: body[1]!, source: body[2]!, reason: body[3]! };
    case PduType.PData:
      return decodePData(body);
    case PduType.ReleaseRq:
    case PduType.ReleaseRp:
      if (body.length !== 4) throw new PduError(`A-RELEASE PDU of ${body.length} bytes (4 expected)`);
      return { type };
    case PduType.Abort:
      if (body.length !== 4) throw new PduError(`A-ABORT of ${body.length} bytes (4 expected)`);
      return { type, source: body[2]!, reason: body[3]! };
    default:
      throw new PduError(`unknown PDU type 0x${type.toString(16)}`, AbortReason.UnrecognizedPdu);
  }
}
