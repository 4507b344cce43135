/**
 * The listening socket of a C-STORE / C-ECHO SCP: binds one address (loopback unless told
 * otherwise), sets no-delay on every accepted socket, caps the associations open at once and runs
 * one `ScpAssociation` per connection, so a slow caller never holds up another.
 */
import net from 'node:net';
import { ScpAssociation, type AssociationEvent, type AssociationPolicy, type CallerDecision } from './association.ts';
import { listenOn } from '../../util/listen.ts';

export const DEFAULT_DICOM_BIND = '127.0.0.1';
export const DEFAULT_MAX_PDU_LENGTH = 256 * 1024;
export const DEFAULT_MAX_ASSOCIATIONS = 16;
export const DEFAULT_ARTIM_MS = 30_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;

export interface ScpServerOptions extends Omit<AssociationPolicy, 'decide'> {
  bind: string;
  /** 0: any free port (tests). */
  port: number;
  /** Associations open at once; one more is rejected (transient, local limit exceeded). */
  maxAssociations: number;
  decide: AssociationPolicy['decide'];
  onEvent?: (event: AssociationEvent) => void;
}

export class DicomScpServer {
  private server: net.Server | null = null;
  private readonly open = new Set<net.Socket>();
  private associated = 0;

  constructor(private readonly options: ScpServerOptions) {}

  /** The port bound (the one asked for, or the one the system gave for 0). */
  get port(): number {
    const address = this.server?.address();
    return address && typeof address === 'object' ? address.port : 0;
  }

  get openAssociations(): number {
    return this.open.size;
  }

  async start(): Promise<void> {
    const server = net.createServer({ noDelay: true }, (socket) => this.onConnection(socket));
    this.server = server;
    await listenOn(server, this.options.port, this.options.bind);
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const socket of this.open) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private onConnection(socket: net.Socket): void {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 15_000);
    this.open.add(socket);
    socket.on('close', () => this.open.delete(socket));
    let counted = false;
    const decide = (callingAe: string, calledAe: string, peer: string): CallerDecision => {
      if (this.associated >= this.options.maxAssociations) {
        return { accept: false, reason: 'busy', message: `${this.associated} associations open, the limit is ${this.options.maxAssociations}` };
      }
      const decision = this.options.decide(callingAe, calledAe, peer);
      if (decision.accept) {
        this.associated += 1;
        counted = true;
      }
      return decision;
    };
    socket.on('close', () => {
      if (counted) this.associated -= 1;
      counted = false;
    });
    const association = new ScpAssociation(socket, { ...this.options, decide }, (event) => this.options.onEvent?.(event));
    association.start();
  }
}
