/**
 * One DICOM association as the SCP (acceptor) sees it, on one accepted socket (PS3.8 9.2 state
 * machine, acceptor side): A-ASSOCIATE negotiation, C-ECHO, C-STORE with its data set streamed
 * to a sink, A-RELEASE, A-ABORT and the ARTIM timer.
 *
 * Rules it keeps:
 * - a caller the policy refuses hears A-ASSOCIATE-RJ and nothing of it is read further;
 * - a PDU longer than the maximum we announced is refused with A-ABORT before it is buffered;
 * - data set bytes go to the sink PDV by PDV; when the sink says it is full the socket stops being
 *   read until it drains, so memory stays flat whatever the object's size;
 * - a C-STORE-RSP is sent only once the sink's `finish` has answered (the file fsynced and
 *   recorded), with the status it gave; responses leave in the order of the requests;
 * - an association aborted or cut mid-data set discards what its sink holds.
 */
import type { Socket } from 'node:net';
import { CommandField, decodeCommand, DimseError, encodeCommand, hasDataSet, NO_DATA_SET, Status, type Command } from './dimse.ts';
import { PduFramer, MAX_ASSOCIATE_RQ_LENGTH } from './framer.ts';
import {
  AbortReason,
  AbortSource,
  ContextResult,
  encodePdu,
  PduType,
  RejectReason,
  RejectResult,
  RejectSource,
  type AcceptedContext,
  type AssociateRq,
  type Pdu,
  type Pdv,
} from './pdu.ts';
import { APPLICATION_CONTEXT, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, SopClass } from './uids.ts';

/** What the SCP needs to know about an incoming C-STORE before its data set arrives. */
export interface StoreRequest {
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
  callingAe: string;
  calledAe: string;
  peerAddress: string;
  messageId: number;
}

export interface StoreOutcome {
  status: number;
  comment?: string;
}

/** Where one C-STORE's data set bytes go. */
export interface InstanceSink {
  /** False when no more should be written until `drained()` resolves. */
  write(chunk: Buffer): boolean;
  drained(): Promise<void>;
  /** Every byte received: make it durable and recorded, and say which status the caller hears. */
  finish(): Promise<StoreOutcome>;
  /** The data set will not complete (abort, cut connection, protocol error): remove what was written. */
  discard(): void;
}

export type CallerDecision = { accept: true; handler: StoreHandler } | { accept: false; reason: 'calling-ae' | 'called-ae' | 'busy'; message: string };

export interface StoreHandler {
  /** A sink for one data set, or a refusal status (0xA700 when there is no room). */
  begin(request: StoreRequest): InstanceSink | StoreOutcome;
}

export interface AssociationPolicy {
  /** Our AE title (what a caller must call). */
  aeTitle: string;
  /** The maximum PDU length we announce and enforce (bytes of a PDU's body). */
  maxPduLength: number;
  /** Abstract syntaxes accepted besides Verification. */
  storageClasses: readonly string[];
  /** Transfer syntaxes accepted (of a context's proposals, the first the caller lists that is here). */
  transferSyntaxes: readonly string[];
  /** ARTIM: how long to wait for an A-ASSOCIATE-RQ, and for the peer to close after RJ / RELEASE-RP. */
  artimMs: number;
  /** No PDU for this long during an association: A-ABORT. */
  idleTimeoutMs: number;
  /** Who the caller is (AE titles and address), checked before anything is accepted. */
  decide(callingAe: string, calledAe: string, peerAddress: string): CallerDecision;
}

export type AssociationEvent =
  | { type: 'rejected'; callingAe: string; calledAe: string; peer: string; reason: string; message: string }
  | { type: 'accepted'; callingAe: string; calledAe: string; peer: string; contexts: number }
  | { type: 'stored'; request: StoreRequest; outcome: StoreOutcome; bytes: number }
  | { type: 'aborted'; by: 'peer' | 'us'; peer: string; callingAe: string | null; reason: string }
  | { type: 'released'; peer: string; callingAe: string }
  | { type: 'closed'; peer: string; callingAe: string | null; wasAccepted: boolean };

interface Inbound {
  contextId: number;
  command: Buffer[];
  commandBytes: number;
  parsed?: Command;
  sink?: InstanceSink | null;
  refusal?: StoreOutcome;
  request?: StoreRequest;
  dataBytes: number;
}

const MAX_COMMAND_BYTES = 64 * 1024;

export class ScpAssociation {
  private readonly framer = new PduFramer(MAX_ASSOCIATE_RQ_LENGTH);
  private state: 'awaiting-rq' | 'associated' | 'releasing' | 'closing' | 'closed' = 'awaiting-rq';
  private artim: NodeJS.Timeout | null = null;
  private idle: NodeJS.Timeout | null = null;
  private contexts = new Map<number, { abstractSyntax: string; transferSyntax: string }>();
  private peerMaxPdu = 0;
  private callingAe: string | null = null;
  private calledAe = '';
  private handler: StoreHandler | null = null;
  private current: Inbound | null = null;
  /** Responses leave in request order: each waits for the one before. */
  private replies: Promise<void> = Promise.resolve();
  private readonly peer: string;
  private pausedForSink = 0;
  private closeEmitted = false;

  constructor(
    private readonly socket: Socket,
    private readonly policy: AssociationPolicy,
    private readonly emit: (event: AssociationEvent) => void,
  ) {
    this.peer = normalizePeer(socket.remoteAddress ?? '');
  }

  start(): void {
    this.socket.setNoDelay(true);
    this.startArtim();
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', () => this.onClosed());
    this.socket.on('close', () => this.onClosed());
  }

  private onData(chunk: Buffer): void {
    if (this.done()) return;
    this.touch();
    for (const event of this.framer.push(chunk)) {
      if (this.done()) return;
      if (event.kind === 'error') {
        this.abort(event.error.abortReason, event.error.message);
        return;
      }
      this.onPdu(event.pdu);
    }
  }

  /** Nothing more is read once the association is over or being closed. */
  private done(): boolean {
    return this.state === 'closed' || this.state === 'closing';
  }

  private onPdu(pdu: Pdu): void {
    switch (pdu.type) {
      case PduType.AssociateRq:
        if (this.state !== 'awaiting-rq') return this.abort(AbortReason.UnexpectedPdu, 'a second A-ASSOCIATE-RQ');
        return this.onAssociateRq(pdu);
      case PduType.PData:
        if (this.state !== 'associated') return this.abort(AbortReason.UnexpectedPdu, `P-DATA-TF in state ${this.state}`);
        for (const pdv of pdu.pdvs) {
          if (this.state !== 'associated') return;
          this.onPdv(pdv);
        }
        return;
      case PduType.ReleaseRq:
        if (this.state !== 'associated') return this.abort(AbortReason.UnexpectedPdu, `A-RELEASE-RQ in state ${this.state}`);
        if (this.current) return this.abort(AbortReason.UnexpectedPdu, 'A-RELEASE-RQ in the middle of a message');
        this.state = 'releasing';
        void this.replies.then(() => {
          if (this.state !== 'releasing') return;
          this.send({ type: PduType.ReleaseRp });
          this.emit({ type: 'released', peer: this.peer, callingAe: this.callingAe ?? '' });
          this.state = 'closing';
          this.startArtim();
        });
        return;
      case PduType.Abort:
        this.emit({ type: 'aborted', by: 'peer', peer: this.peer, callingAe: this.callingAe, reason: `source ${pdu.source} reason ${pdu.reason}` });
        this.discardCurrent();
        this.state = 'closed';
        this.socket.destroy();
        return;
      default:
        return this.abort(AbortReason.UnexpectedPdu, `unexpected PDU type 0x${pdu.type.toString(16)}`);
    }
  }

  private onAssociateRq(rq: AssociateRq): void {
    this.stopArtim();
    this.callingAe = rq.callingAe;
    this.calledAe = rq.calledAe;
    const reject = (source: number, reason: number, why: string, message: string, transient = false): void => {
      this.emit({ type: 'rejected', callingAe: rq.callingAe, calledAe: rq.calledAe, peer: this.peer, reason: why, message });
      this.send({ type: PduType.AssociateRj, result: transient ? RejectResult.Transient : RejectResult.Permanent, source, reason });
      this.state = 'closing';
      this.startArtim();
    };
    if ((rq.protocolVersion & 1) === 0) {
      return reject(RejectSource.ServiceProviderAcse, RejectReason.ProtocolVersionNotSupported, 'protocol-version', `protocol version ${rq.protocolVersion}`);
    }
    if (rq.applicationContext !== APPLICATION_CONTEXT) {
      return reject(RejectSource.ServiceUser, RejectReason.ApplicationContextNotSupported, 'application-context', `application context ${rq.applicationContext}`);
    }
    const decision = this.policy.decide(rq.callingAe, rq.calledAe, this.peer);
    if (!decision.accept) {
      if (decision.reason === 'busy') {
        return reject(RejectSource.ServiceProviderPresentation, RejectReason.LocalLimitExceeded, decision.reason, decision.message, true);
      }
      const reason = decision.reason === 'called-ae' ? RejectReason.CalledAeNotRecognized : RejectReason.CallingAeNotRecognized;
      return reject(RejectSource.ServiceUser, reason, decision.reason, decision.message);
    }
    this.handler = decision.handler;
    this.peerMaxPdu = rq.userInfo.maxPduLength;
    const accepted: AcceptedContext[] = rq.contexts.map((c) => {
      const supported = c.abstractSyntax === SopClass.Verification || this.policy.storageClasses.includes(c.abstractSyntax);
      if (!supported) return { id: c.id, result: ContextResult.AbstractSyntaxNotSupported, transferSyntax: c.transferSyntaxes[0]! };
      // The caller's own order: it proposes the syntax its file is in first, so what it sends is its
      // file's bytes, not a conversion made for us.
      const ts = c.transferSyntaxes.find((t) => this.policy.transferSyntaxes.includes(t));
      if (ts === undefined) return { id: c.id, result: ContextResult.TransferSyntaxesNotSupported, transferSyntax: c.transferSyntaxes[0]! };
      this.contexts.set(c.id, { abstractSyntax: c.abstractSyntax, transferSyntax: ts });
      return { id: c.id, result: ContextResult.Acceptance, transferSyntax: ts };
    });
    this.send({
      type: PduType.AssociateAc,
      protocolVersion: 1,
      calledAe: rq.calledAe,
      callingAe: rq.callingAe,
      applicationContext: APPLICATION_CONTEXT,
      contexts: accepted,
      userInfo: {
        maxPduLength: this.policy.maxPduLength,
        implementationClassUid: IMPLEMENTATION_CLASS_UID,
        implementationVersionName: IMPLEMENTATION_VERSION_NAME,
        roles: [],
        other: [],
      },
    });
    this.state = 'associated';
    this.framer.setMaxBodyLength(this.policy.maxPduLength);
    this.emit({ type: 'accepted', callingAe: rq.callingAe, calledAe: rq.calledAe, peer: this.peer, contexts: this.contexts.size });
    this.touch();
  }

  private onPdv(pdv: Pdv): void {
    const context = this.contexts.get(pdv.contextId);
    if (!context) return this.abort(AbortReason.InvalidPduParameterValue, `PDV on presentation context ${pdv.contextId}, not accepted`);
    let message = this.current;
    if (pdv.command) {
      if (message?.parsed) return this.abort(AbortReason.UnexpectedPdu, 'a command fragment in the middle of a data set');
      if (!message) {
        message = { contextId: pdv.contextId, command: [], commandBytes: 0, dataBytes: 0 };
        this.current = message;
      }
      if (message.contextId !== pdv.contextId) return this.abort(AbortReason.InvalidPduParameterValue, 'command fragments on two presentation contexts');
      message.commandBytes += pdv.data.length;
      if (message.commandBytes > MAX_COMMAND_BYTES) return this.abort(AbortReason.InvalidPduParameterValue, 'command set longer than 64 KiB');
      message.command.push(Buffer.from(pdv.data));
      if (pdv.last) this.onCommand(message, context);
      return;
    }
    if (!message?.parsed || !hasDataSet(message.parsed)) return this.abort(AbortReason.UnexpectedPdu, 'a data set fragment without its command');
    if (message.contextId !== pdv.contextId) return this.abort(AbortReason.InvalidPduParameterValue, 'data set on another presentation context than its command');
    message.dataBytes += pdv.data.length;
    if (message.sink) {
      if (!message.sink.write(pdv.data)) this.pauseFor(message.sink);
    }
    if (pdv.last) {
      this.current = null;
      this.onDataSetComplete(message);
    }
  }

  private onCommand(message: Inbound, context: { abstractSyntax: string; transferSyntax: string }): void {
    let command: Command;
    try {
      command = decodeCommand(Buffer.concat(message.command));
    } catch (error) {
      if (!(error instanceof DimseError)) throw error;
      return this.abort(AbortReason.InvalidPduParameterValue, error.message);
    }
    message.parsed = command;
    message.command = [];
    const messageId = command.messageId ?? 0;
    if (command.commandField === CommandField.CEchoRq) {
      this.current = null;
      if (hasDataSet(command)) return this.abort(AbortReason.InvalidPduParameterValue, 'C-ECHO-RQ announces a data set');
      this.reply(message.contextId, Promise.resolve({ status: Status.Success }), CommandField.CEchoRsp, messageId, SopClass.Verification);
      return;
    }
    if (command.commandField !== CommandField.CStoreRq) {
      // Not a service this node offers on any context; answered, never guessed at.
      if (!hasDataSet(command)) this.current = null;
      else message.refusal = { status: Status.UnrecognizedOperation, comment: `command 0x${command.commandField.toString(16)}` };
      if (!hasDataSet(command)) {
        this.reply(message.contextId, Promise.resolve({ status: Status.UnrecognizedOperation }), command.commandField | 0x8000, messageId, command.affectedSopClassUid);
      }
      return;
    }
    if (!hasDataSet(command)) {
      this.current = null;
      this.reply(
        message.contextId,
        Promise.resolve({ status: Status.CannotUnderstand, comment: 'C-STORE-RQ without a data set' }),
        CommandField.CStoreRsp,
        messageId,
        command.affectedSopClassUid,
        command.affectedSopInstanceUid,
      );
      return;
    }
    const request: StoreRequest = {
      sopClassUid: command.affectedSopClassUid ?? '',
      sopInstanceUid: command.affectedSopInstanceUid ?? '',
      transferSyntaxUid: context.transferSyntax,
      callingAe: this.callingAe ?? '',
      calledAe: this.calledAe,
      peerAddress: this.peer,
      messageId,
    };
    message.request = request;
    if (!isUid(request.sopClassUid) || !isUid(request.sopInstanceUid)) {
      message.refusal = { status: Status.CannotUnderstand, comment: 'C-STORE-RQ without a valid affected SOP class or instance UID' };
      message.sink = null;
      return;
    }
    if (request.sopClassUid !== context.abstractSyntax) {
      message.refusal = { status: Status.DataSetMismatch, comment: `SOP class ${request.sopClassUid} sent on a context for ${context.abstractSyntax}` };
      message.sink = null;
      return;
    }
    let begun: InstanceSink | StoreOutcome;
    try {
      begun = this.handler!.begin(request);
    } catch (error) {
      begun = { status: Status.OutOfResources, comment: (error as Error).message };
    }
    if ('status' in begun) {
      message.refusal = begun;
      message.sink = null;
    } else {
      message.sink = begun;
    }
  }

  private onDataSetComplete(message: Inbound): void {
    const command = message.parsed!;
    const request = message.request;
    let outcome: Promise<StoreOutcome>;
    if (message.refusal) outcome = Promise.resolve(message.refusal);
    else if (message.sink) {
      const sink = message.sink;
      outcome = sink.finish().catch((error: unknown) => ({ status: Status.OutOfResources, comment: (error as Error).message }));
    } else outcome = Promise.resolve({ status: Status.ProcessingFailure });
    if (request) {
      void outcome.then((o) => this.emit({ type: 'stored', request, outcome: o, bytes: message.dataBytes }));
    }
    const field = command.commandField === CommandField.CStoreRq ? CommandField.CStoreRsp : command.commandField | 0x8000;
    this.reply(message.contextId, outcome, field, command.messageId ?? 0, command.affectedSopClassUid, command.affectedSopInstanceUid);
  }

  private reply(contextId: number, outcome: Promise<StoreOutcome>, field: number, messageId: number, sopClass?: string, sopInstance?: string): void {
    this.replies = this.replies.then(async () => {
      const o = await outcome;
      if (this.state !== 'associated' && this.state !== 'releasing') return;
      const rsp: Command = {
        commandField: field,
        messageIdBeingRespondedTo: messageId,
        dataSetType: NO_DATA_SET,
        status: o.status,
        ...(sopClass ? { affectedSopClassUid: sopClass } : {}),
        ...(sopInstance ? { affectedSopInstanceUid: sopInstance } : {}),
        ...(o.comment && o.status !== Status.Success ? { errorComment: o.comment.slice(0, 64) } : {}),
      };
      this.sendCommand(contextId, encodeCommand(rsp));
    });
  }

  private sendCommand(contextId: number, bytes: Buffer): void {
    // The peer's maximum bounds each PDU we send; 0 means it set none.
    const room = this.peerMaxPdu > 12 ? this.peerMaxPdu - 6 : bytes.length;
    for (let at = 0; at < bytes.length || at === 0; at += room) {
      const part = bytes.subarray(at, at + room);
      this.send({ type: PduType.PData, pdvs: [{ contextId, command: true, last: at + room >= bytes.length, data: part }] });
      if (at + room >= bytes.length) break;
    }
  }

  private pauseFor(sink: InstanceSink): void {
    this.pausedForSink += 1;
    this.socket.pause();
    void sink.drained().then(() => {
      this.pausedForSink -= 1;
      if (this.pausedForSink === 0 && this.state !== 'closed') this.socket.resume();
    });
  }

  private send(pdu: Pdu): void {
    if (this.socket.destroyed) return;
    this.socket.write(encodePdu(pdu));
  }

  /** A-ABORT from our side (service provider), then close. */
  private abort(reason: number, message: string): void {
    if (this.state === 'closed') return;
    this.emit({ type: 'aborted', by: 'us', peer: this.peer, callingAe: this.callingAe, reason: message });
    this.discardCurrent();
    this.send({ type: PduType.Abort, source: AbortSource.ServiceProvider, reason });
    this.state = 'closed';
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  private discardCurrent(): void {
    const sink = this.current?.sink;
    this.current = null;
    if (sink) sink.discard();
  }

  private onClosed(): void {
    if (this.closeEmitted) return;
    this.closeEmitted = true;
    this.discardCurrent();
    this.stopArtim();
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    this.state = 'closed';
    this.emit({ type: 'closed', peer: this.peer, callingAe: this.callingAe, wasAccepted: this.handler !== null });
  }

  private touch(): void {
    if (this.state !== 'associated') return;
    if (this.idle) clearTimeout(this.idle);
    this.idle = setTimeout(() => {
      // A sink that is still writing is not the caller's silence.
      if (this.pausedForSink > 0) return this.touch();
      this.abort(AbortReason.NotSpecified, `no PDU for ${this.policy.idleTimeoutMs} ms`);
    }, this.policy.idleTimeoutMs);
    this.idle.unref();
  }

  private startArtim(): void {
    this.stopArtim();
    this.artim = setTimeout(() => {
      this.artim = null;
      if (this.state === 'awaiting-rq') this.emit({ type: 'aborted', by: 'us', peer: this.peer, callingAe: null, reason: 'ARTIM expired before an A-ASSOCIATE-RQ' });
      this.state = 'closed';
      this.socket.destroy();
    }, this.policy.artimMs);
    this.artim.unref();
  }

  private stopArtim(): void {
    if (this.artim) clearTimeout(this.artim);
    this.artim = null;
  }
}

function isUid(value: string): boolean {
  return value.length > 0 && value.length <= 64 && /^[0-9]+(\.[0-9]+)*$/.test(value);
}

function normalizePeer(address: string): string {
  const a = address.toLowerCase();
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}
