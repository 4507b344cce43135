/**
 * The `dicom-scp` transport: a device's handle on a C-STORE SCP listening socket. Several
 * ultrasound machines may name one port: the socket opens with the first device's handle and
 * closes with the last, and each association is routed to the device whose AE title it calls and
 * whose allow-list holds its calling AE title (and address, when the device lists addresses). A
 * caller no device allows is rejected (A-ASSOCIATE-RJ, calling AE not recognized) and counted
 * per reason, AE title and address like every listener's refusals (the first few reported in full as
 * `listener_refused` bridge events, then one a minute with the count).
 *
 * It carries instances, not a byte stream: `write` refuses; the session gives the store handler
 * (`setHandler`) that each routed C-STORE streams into.
 */
import { EventEmitter } from 'node:events';
import { RefusalCounter, type ListenerRefusalReason, type ListenerReport } from '../../transports/listener.ts';
import type { ByteTransport } from '../../transports/transport.ts';
import type { AssociationEvent, CallerDecision, StoreHandler } from './association.ts';
import type { DicomScpTransportOptions } from './scp-options.ts';
import { DEFAULT_DICOM_BIND, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_ASSOCIATIONS, DEFAULT_MAX_PDU_LENGTH, DicomScpServer } from './server.ts';
import { ACCEPTED_TRANSFER_SYNTAXES, ULTRASOUND_STORAGE_CLASSES } from './uids.ts';

export const DEFAULT_AE_TITLE = 'POCTD';
const ARTIM_MS = 30_000;

class SharedScp {
  readonly members = new Set<DicomScpTransport>();
  private server: DicomScpServer | null = null;
  private starting: Promise<void> | null = null;
  private readonly refusals = new RefusalCounter();

  constructor(
    readonly bind: string,
    readonly port: number,
  ) {}

  async add(member: DicomScpTransport): Promise<void> {
    this.members.add(member);
    if (!this.starting) {
      const o = member.options;
      const server = new DicomScpServer({
        bind: this.bind,
        port: this.port,
        aeTitle: o.ae_title ?? DEFAULT_AE_TITLE,
        maxPduLength: o.max_pdu_length ?? DEFAULT_MAX_PDU_LENGTH,
        maxAssociations: o.max_associations ?? DEFAULT_MAX_ASSOCIATIONS,
        storageClasses: ULTRASOUND_STORAGE_CLASSES,
        transferSyntaxes: ACCEPTED_TRANSFER_SYNTAXES,
        artimMs: ARTIM_MS,
        idleTimeoutMs: o.idle_timeout_ms ?? DEFAULT_IDLE_TIMEOUT_MS,
        decide: (calling, called, peer) => this.decide(calling, called, peer),
        onEvent: (event) => this.onEvent(event),
      });
      this.server = server;
      this.starting = server.start().catch((error: unknown) => {
        this.starting = null;
        this.server = null;
        throw error;
      });
    }
    try {
      await this.starting;
    } catch (error) {
      this.members.delete(member);
      throw error;
    }
  }

  get boundPort(): number {
    return this.server?.port ?? 0;
  }

  async remove(member: DicomScpTransport): Promise<void> {
    this.members.delete(member);
    if (this.members.size > 0) return;
    SHARED.delete(key(this.bind, this.port));
    const server = this.server;
    this.server = null;
    this.starting = null;
    await server?.stop();
  }

  private decide(callingAe: string, calledAe: string, peer: string): CallerDecision {
    const called = [...this.members].filter((m) => (m.options.ae_title ?? DEFAULT_AE_TITLE) === calledAe);
    if (called.length === 0) {
      this.refuse('unknown-sender', peer, callingAe, `called AE title ${JSON.stringify(calledAe)} is not this node's`);
      return { accept: false, reason: 'called-ae', message: `called AE title ${calledAe} unknown` };
    }
    const byTitle = called.filter((m) => m.options.allowed_callers.some((c) => c.trim() === callingAe));
    if (byTitle.length === 0) {
      this.refuse('unknown-sender', peer, callingAe, `calling AE title ${JSON.stringify(callingAe)} is on no device's allow-list`);
      return { accept: false, reason: 'calling-ae', message: `calling AE title ${callingAe} not allowed` };
    }
    const member = byTitle.find((m) => !m.options.allowed_addresses || m.options.allowed_addresses.some((a) => a.trim() === peer));
    if (!member) {
      this.refuse('peer-not-allowed', peer, callingAe, `${callingAe} called from ${peer}, an address its device does not list`);
      return { accept: false, reason: 'calling-ae', message: `address ${peer} not allowed for ${callingAe}` };
    }
    if (!member.handler) {
      this.refuse('device-not-ready', peer, callingAe, `device ${member.deviceId} has no session running`);
      return { accept: false, reason: 'busy', message: `device ${member.deviceId} not ready` };
    }
    return { accept: true, handler: member.handler };
  }

  private refuse(reason: ListenerRefusalReason, peer: string, sender: string, message: string): void {
    const { first, count, due } = this.refusals.count(reason, peer, sender);
    const reporter = [...this.members].find((m) => m.report)?.report;
    reporter?.({ reason, message, bind: this.bind, port: this.port, peer, sender, first, count, due });
  }

  private onEvent(event: AssociationEvent): void {
    for (const m of this.members) m.emit('association', event);
  }
}

const SHARED = new Map<string, SharedScp>();
const key = (bind: string, port: number): string => `${bind}|${port}`;

export class DicomScpTransport extends EventEmitter implements ByteTransport {
  readonly description: string;
  private open_ = false;
  handler: StoreHandler | null = null;
  private shared: SharedScp | null = null;

  constructor(
    readonly options: DicomScpTransportOptions,
    readonly deviceId: string,
    readonly report?: ListenerReport,
  ) {
    super();
    this.description = `dicom-scp ${options.bind ?? DEFAULT_DICOM_BIND}:${options.port} (${options.ae_title ?? DEFAULT_AE_TITLE})`;
  }

  get isOpen(): boolean {
    return this.open_;
  }

  /** The port actually bound (the configured one; tests that ask for 0 read it here). */
  get port(): number {
    return this.shared?.boundPort ?? 0;
  }

  /** Where routed C-STOREs go; until a handler is set, this device's callers are rejected as not ready. */
  setHandler(handler: StoreHandler | null): void {
    this.handler = handler;
  }

  async open(): Promise<void> {
    if (this.open_) return;
    const bind = this.options.bind ?? DEFAULT_DICOM_BIND;
    const k = key(bind, this.options.port);
    let shared = SHARED.get(k);
    if (!shared) {
      shared = new SharedScp(bind, this.options.port);
      // Port 0 (tests) is a listener of its own each time, never shared by accident.
      if (this.options.port !== 0) SHARED.set(k, shared);
    }
    await shared.add(this);
    this.shared = shared;
    this.open_ = true;
    this.emit('open');
  }

  async write(_data: Buffer): Promise<void> {
    throw new Error('a DICOM SCP receives instances over its associations; it has no byte stream to write');
  }

  async close(): Promise<void> {
    if (!this.open_) return;
    this.open_ = false;
    const shared = this.shared;
    this.shared = null;
    await shared?.remove(this);
    this.emit('close');
  }
}
