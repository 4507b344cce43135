/**
 * A C-ECHO / C-STORE SCU (requestor) on one association: for forwarding to a PACS, for the
 * ultrasound simulator, and for tests that need bytes no real client sends. A data set is sent as
 * its own bytes (read from a file range or given), cut into PDVs the peer's maximum allows, never
 * re-encoded; a file is read piece by piece, waiting for the socket to drain, so memory stays flat.
 */
import net from 'node:net';
import { open } from 'node:fs/promises';
import { CommandField, decodeCommand, encodeCommand, NO_DATA_SET, Priority, type Command } from './dimse.ts';
import { PduFramer } from './framer.ts';
import { ContextResult, encodePdu, pDataHeader, PduType, type AssociateAc, type AssociateRj, type Pdu } from './pdu.ts';
import { APPLICATION_CONTEXT, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, SopClass } from './uids.ts';

export interface ScuOptions {
  host: string;
  port: number;
  callingAe: string;
  calledAe: string;
  contexts: Array<{ abstractSyntax: string; transferSyntaxes: string[] }>;
  /** What we announce as our maximum PDU (0: no limit). */
  maxPduLength?: number;
  /** For connecting, negotiating and each response. */
  timeoutMs?: number;
}

export class AssociationRejected extends Error {
  constructor(readonly rj: AssociateRj) {
    super(`association rejected: result ${rj.result}, source ${rj.source}, reason ${rj.reason}`);
    this.name = 'AssociationRejected';
  }
}

export class AssociationAborted extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AssociationAborted';
  }
}

export type DataSetSource = Buffer | { path: string; offset: number; length: number };

export interface DimseResponse {
  status: number;
  errorComment?: string;
}

export class ScuAssociation {
  private readonly framer = new PduFramer(0);
  private nextMessageId = 1;
  private readonly waiting = new Map<number, { resolve: (r: DimseResponse) => void; reject: (e: Error) => void }>();
  private command: Buffer[] = [];
  private released: { resolve: () => void } | null = null;
  private ended: Error | null = null;
  private accepted = new Map<number, { abstractSyntax: string; transferSyntax: string }>();
  private peerMaxPdu = 0;

  private constructor(
    private readonly socket: net.Socket,
    private readonly timeoutMs: number,
  ) {}

  static async connect(options: ScuOptions): Promise<ScuAssociation> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    const socket = net.connect({ host: options.host, port: options.port, noDelay: true });
    socket.setNoDelay(true);
    const scu = new ScuAssociation(socket, timeoutMs);
    const ac = await new Promise<AssociateAc>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no A-ASSOCIATE answer within ${timeoutMs} ms`));
      }, timeoutMs);
      const fail = (error: Error): void => {
        clearTimeout(timer);
        reject(error);
      };
      socket.once('error', fail);
      socket.once('close', () => fail(new AssociationAborted('connection closed during negotiation')));
      socket.on('data', (chunk: Buffer) => {
        for (const event of scu.framer.push(chunk)) {
          if (event.kind === 'error') return fail(new AssociationAborted(event.error.message));
          const pdu = event.pdu;
          if (pdu.type === PduType.AssociateAc) {
            clearTimeout(timer);
            socket.removeAllListeners('data');
            socket.removeAllListeners('close');
            socket.removeListener('error', fail);
            scu.attach();
            // Anything after the AC in the same chunk is read by the attached handler.
            return resolve(pdu);
          }
          if (pdu.type === PduType.AssociateRj) {
            socket.destroy();
            return fail(new AssociationRejected(pdu));
          }
          if (pdu.type === PduType.Abort) return fail(new AssociationAborted(`aborted: source ${pdu.source} reason ${pdu.reason}`));
        }
      });
      socket.once('connect', () => {
        socket.write(
          encodePdu({
            type: PduType.AssociateRq,
            protocolVersion: 1,
            calledAe: options.calledAe,
            callingAe: options.callingAe,
            applicationContext: APPLICATION_CONTEXT,
            contexts: options.contexts.map((c, i) => ({ id: i * 2 + 1, ...c })),
            userInfo: {
              maxPduLength: options.maxPduLength ?? 262144,
              implementationClassUid: IMPLEMENTATION_CLASS_UID,
              implementationVersionName: IMPLEMENTATION_VERSION_NAME,
              roles: [],
              other: [],
            },
          }),
        );
      });
    });
    scu.peerMaxPdu = ac.userInfo.maxPduLength;
    for (const c of ac.contexts) {
      if (c.result !== ContextResult.Acceptance) continue;
      const proposed = options.contexts[(c.id - 1) / 2];
      if (proposed) scu.accepted.set(c.id, { abstractSyntax: proposed.abstractSyntax, transferSyntax: c.transferSyntax });
    }
    return scu;
  }

  /** The accepted context for an abstract syntax (and transfer syntax, if given). */
  contextFor(abstractSyntax: string, transferSyntax?: string): { id: number; transferSyntax: string } | undefined {
    for (const [id, c] of this.accepted) {
      if (c.abstractSyntax === abstractSyntax && (transferSyntax === undefined || c.transferSyntax === transferSyntax)) return { id, transferSyntax: c.transferSyntax };
    }
    return undefined;
  }

  async echo(): Promise<DimseResponse> {
    const ctx = this.contextFor(SopClass.Verification);
    if (!ctx) throw new Error('Verification was not accepted');
    const messageId = this.nextMessageId++;
    const answer = this.expect(messageId);
    this.sendCommand(ctx.id, { commandField: CommandField.CEchoRq, messageId, affectedSopClassUid: SopClass.Verification, dataSetType: NO_DATA_SET });
    return answer;
  }

  async store(request: { contextId: number; sopClassUid: string; sopInstanceUid: string; dataSet: DataSetSource }): Promise<DimseResponse> {
    const messageId = this.nextMessageId++;
    const answer = this.expect(messageId);
    this.sendCommand(request.contextId, {
      commandField: CommandField.CStoreRq,
      messageId,
      affectedSopClassUid: request.sopClassUid,
      affectedSopInstanceUid: request.sopInstanceUid,
      priority: Priority.Medium,
      dataSetType: 0x0000,
    });
    await this.sendDataSet(request.contextId, request.dataSet);
    return answer;
  }

  async release(): Promise<void> {
    if (this.ended) throw this.ended;
    const done = new Promise<void>((resolve) => (this.released = { resolve }));
    this.socket.write(encodePdu({ type: PduType.ReleaseRq }));
    await withTimeout(done, this.timeoutMs, 'no A-RELEASE-RP');
    this.socket.end();
  }

  abort(): void {
    if (!this.socket.destroyed) this.socket.write(encodePdu({ type: PduType.Abort, source: 0, reason: 0 }));
    this.socket.destroy();
  }

  /** Raw bytes onto the association's socket (tests: a PDU no correct SCU sends). */
  writeRaw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  private attach(): void {
    this.socket.on('data', (chunk: Buffer) => {
      for (const event of this.framer.push(chunk)) {
        if (event.kind === 'error') return this.end(new AssociationAborted(event.error.message));
        this.onPdu(event.pdu);
      }
    });
    this.socket.on('error', (error) => this.end(error));
    this.socket.on('close', () => this.end(new AssociationAborted('connection closed')));
  }

  private onPdu(pdu: Pdu): void {
    if (pdu.type === PduType.PData) {
      for (const pdv of pdu.pdvs) {
        if (!pdv.command) continue;
        this.command.push(Buffer.from(pdv.data));
        if (!pdv.last) continue;
        const rsp = decodeCommand(Buffer.concat(this.command));
        this.command = [];
        const waiter = this.waiting.get(rsp.messageIdBeingRespondedTo ?? -1);
        if (waiter) {
          this.waiting.delete(rsp.messageIdBeingRespondedTo!);
          waiter.resolve({ status: rsp.status ?? 0xffff, ...(rsp.errorComment ? { errorComment: rsp.errorComment } : {}) });
        }
      }
    } else if (pdu.type === PduType.ReleaseRp) {
      this.released?.resolve();
    } else if (pdu.type === PduType.Abort) {
      this.end(new AssociationAborted(`aborted by the peer: source ${pdu.source} reason ${pdu.reason}`));
      this.socket.destroy();
    }
  }

  private end(error: Error): void {
    if (this.ended) return;
    this.ended = error;
    for (const w of this.waiting.values()) w.reject(error);
    this.waiting.clear();
  }

  private expect(messageId: number): Promise<DimseResponse> {
    if (this.ended) return Promise.reject(this.ended);
    const p = new Promise<DimseResponse>((resolve, reject) => this.waiting.set(messageId, { resolve, reject }));
    return withTimeout(p, this.timeoutMs, `no response to message ${messageId}`);
  }

  private sendCommand(contextId: number, command: Command): void {
    const bytes = encodeCommand(command);
    this.socket.write(encodePdu({ type: PduType.PData, pdvs: [{ contextId, command: true, last: true, data: bytes }] }));
  }

  private get pdvRoom(): number {
    const max = this.peerMaxPdu === 0 ? 1024 * 1024 : this.peerMaxPdu;
    return max - 6;
  }

  private async write(bytes: Buffer): Promise<void> {
    if (this.ended) throw this.ended;
    if (!this.socket.write(bytes)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.socket.off('drain', done);
          this.socket.off('close', done);
          resolve();
        };
        this.socket.on('drain', done);
        this.socket.on('close', done);
      });
    }
  }

  private async sendDataSet(contextId: number, source: DataSetSource): Promise<void> {
    const room = this.pdvRoom;
    if (Buffer.isBuffer(source)) {
      for (let at = 0; at < source.length || at === 0; at += room) {
        const part = source.subarray(at, at + room);
        const last = at + room >= source.length;
        await this.write(Buffer.concat([pDataHeader(contextId, false, last, part.length), part]));
        if (last) break;
      }
      return;
    }
    const file = await open(source.path, 'r');
    try {
      let sent = 0;
      do {
        const n = Math.min(room, source.length - sent);
        const part = Buffer.allocUnsafe(n);
        let got = 0;
        while (got < n) {
          const { bytesRead } = await file.read(part, got, n - got, source.offset + sent + got);
          if (bytesRead === 0) throw new Error(`${source.path} ended before ${source.offset + source.length} bytes`);
          got += bytesRead;
        }
        sent += n;
        await this.write(Buffer.concat([pDataHeader(contextId, false, sent >= source.length, n), part]));
      } while (sent < source.length);
    } finally {
      await file.close();
    }
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${message} within ${ms} ms`)), ms);
    timer.unref();
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
