/**
 * `framing: bare`: the E1381 variant some analyzers send (Snibe Maglumi, as a public serial log
 * shows it: corpus `snibe-maglumi-astmio`): ENQ, then the message text between STX and ETX with
 * no frame number, no checksum and no CR LF after ETX, then EOT. The host answers ENQ with ACK and
 * the ETX block with ACK once the message is stored (NAK when it is not), as for framed E1381.
 *
 * There is no checksum, so nothing on the line proves the text arrived whole: a message is taken
 * only when its blocks end with the L record; EOT, a new ENQ, a timeout or a lost link before
 * that discards it with the reason, and a block longer than the limit is refused. A device is set
 * to this framing by its options, never guessed: the ordinary E1381 reader refuses such bytes
 * (`malformed-trailer`). Receive only: `send` on such a device is refused with the reason.
 *
 * The same machine reads a stored capture (`collectBareMessages`), so a replay says and does
 * what the live link did.
 */
import type { Exchange } from '../../../src/driver-sdk/index.ts';
import { ACK, ENQ, EOT, NAK } from '../../../src/protocols/astm/frame.ts';
import { MessageAssembler, type AstmCarrier, type AstmLinkHandlers, type AstmLinkIssue, type AstmLinkMessage } from '../../../src/protocols/astm/link.ts';

const STX = 0x02;
const ETX = 0x03;

export type BareEvent =
  | { type: 'enq' }
  | { type: 'eot' }
  /** A block ended (ETX) that does not end the message: the host ACKs it. */
  | { type: 'block' }
  | { type: 'message'; text: Buffer }
  | { type: 'issue'; issue: AstmLinkIssue };

/** Byte-level reader of bare blocks; pure (no timers, no I/O). */
export class BareAssembler {
  private inBlock = false;
  private inTransmission = false;
  private block: number[] = [];
  /**
   * The message's earlier blocks, joined once when it ends with its L record (the framed link's
   * assembler: each block is scanned once, so many small blocks cost no more than one large one).
   * Bare blocks carry no frame number, so its frame-number rules are not asked.
   */
  private readonly parts = new MessageAssembler();
  private garbage: number[] = [];

  constructor(private readonly maxBytes: number) {}

  get receiving(): boolean {
    return this.inTransmission;
  }

  private flushGarbage(out: BareEvent[]): void {
    if (this.garbage.length === 0) return;
    const bytes = Buffer.from(this.garbage);
    this.garbage = [];
    out.push({ type: 'issue', issue: { kind: 'garbage', reason: 'garbage', detail: `${bytes.length} bytes outside any STX … ETX block`, bytes } });
  }

  /** Ends the message in progress, if any, as incomplete (`why` says what cut it). */
  discard(why: string, out: BareEvent[]): void {
    const rest = Buffer.concat([this.parts.end(), Buffer.from(this.block)]);
    this.block = [];
    this.inBlock = false;
    if (rest.length > 0) out.push({ type: 'issue', issue: { kind: 'incomplete-message', reason: 'incomplete-message', detail: why, bytes: rest } });
  }

  push(chunk: Uint8Array): BareEvent[] {
    const out: BareEvent[] = [];
    for (const b of chunk) {
      if (this.inBlock) {
        if (b === ETX) {
          this.inBlock = false;
          const text = Buffer.from(this.block);
          this.block = [];
          const message = this.parts.take(text, true);
          if (message) out.push({ type: 'message', text: message });
          else out.push({ type: 'block' });
          continue;
        }
        if (b === ENQ || b === EOT || b === STX) {
          this.discard(`${b === STX ? 'STX' : b === ENQ ? 'ENQ' : 'EOT'} inside a block, before its ETX`, out);
          if (b === STX) this.inBlock = true;
          else this.controlOutsideBlock(b, out);
          continue;
        }
        this.block.push(b);
        if (this.parts.pendingBytes + this.block.length > this.maxBytes) {
          out.push({ type: 'issue', issue: { kind: 'message-too-long', reason: 'message-too-long', detail: `a message longer than ${this.maxBytes} bytes; discarded`, bytes: Buffer.concat([this.parts.end(), Buffer.from(this.block)]) } });
          this.block = [];
          this.inBlock = false;
        }
        continue;
      }
      if (b === STX && this.inTransmission) {
        this.flushGarbage(out);
        this.inBlock = true;
        continue;
      }
      if (b === ENQ || b === EOT) {
        this.flushGarbage(out);
        this.controlOutsideBlock(b, out);
        continue;
      }
      // ACK/NAK echoes and line noise between blocks, or a block with no ENQ before it.
      this.garbage.push(b);
    }
    return out;
  }

  private controlOutsideBlock(b: number, out: BareEvent[]): void {
    if (b === ENQ) {
      if (this.inTransmission) this.discard('a new ENQ before the message ended (no L record)', out);
      this.inTransmission = true;
      out.push({ type: 'enq' });
    } else {
      if (this.inTransmission) this.discard('EOT before the L record', out);
      this.inTransmission = false;
      out.push({ type: 'eot' });
    }
  }

  /** The capture or link ended: what is pending is incomplete. */
  finish(why: string): BareEvent[] {
    const out: BareEvent[] = [];
    this.flushGarbage(out);
    this.discard(why, out);
    this.inTransmission = false;
    return out;
  }
}

/** A stored capture's bare messages, as the live link would take them. */
export function collectBareMessages(bytes: Buffer, maxBytes: number): { messages: Buffer[]; issues: AstmLinkIssue[] } {
  const asm = new BareAssembler(maxBytes);
  const messages: Buffer[] = [];
  const issues: AstmLinkIssue[] = [];
  for (const ev of [...asm.push(bytes), ...asm.finish('the capture ended before the L record')]) {
    if (ev.type === 'message') messages.push(ev.text);
    else if (ev.type === 'issue') issues.push(ev.issue);
  }
  return { messages, issues };
}

export interface BareLinkOptions {
  receiveTimeoutMs: number;
  maxFrameBytes: number;
  write?: (bytes: Buffer) => Promise<void>;
}

/** The live receiver of bare blocks: ACK to ENQ and to each block, the last one after the commit. */
export class BareAstmLink {
  private readonly asm: BareAssembler;
  private chain: Promise<void> = Promise.resolve();
  private exchanges: Exchange[] = [];
  private timer: NodeJS.Timeout | null = null;
  private started = false;
  private stopped = false;
  private readonly writeBytes: (b: Buffer) => Promise<void>;

  constructor(
    private readonly transport: AstmCarrier,
    private readonly handlers: AstmLinkHandlers,
    private readonly o: BareLinkOptions,
  ) {
    this.asm = new BareAssembler(o.maxFrameBytes);
    this.writeBytes = o.write ?? ((b) => transport.write(b));
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.transport.on('data', this.onData);
    this.transport.on('close', this.onClose);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.transport.off('data', this.onData);
    this.transport.off('close', this.onClose);
    this.clearTimer();
    await this.chain.catch(() => undefined);
  }

  send(_text: Buffer): Promise<void> {
    return Promise.reject(new Error('astm: framing bare is receive only; this device cannot be sent messages'));
  }

  private readonly onData = (chunk: Buffer): void => {
    this.exchanges.push({ dir: 'D', bytes: Buffer.from(chunk) });
    const events = this.asm.push(chunk);
    if (this.asm.receiving) this.armTimer();
    for (const ev of events) this.chain = this.chain.then(() => this.handle(ev)).catch(() => undefined);
  };

  private readonly onClose = (): void => {
    this.chain = this.chain
      .then(async () => {
        const receiving = this.asm.receiving;
        const events = this.asm.finish('the link closed in the middle of a message');
        if (receiving || events.length > 0) await this.endWith(events, 'link-closed');
      })
      .catch(() => undefined);
  };

  private async endWith(events: BareEvent[], kind: AstmLinkIssue['kind']): Promise<void> {
    this.clearTimer();
    for (const ev of events) if (ev.type === 'issue') this.handlers.onIssue({ ...ev.issue, kind: ev.issue.kind === 'incomplete-message' ? kind : ev.issue.kind, answer: null });
    this.handlers.onTransmission?.('end');
  }

  private async reply(byte: number): Promise<void> {
    this.exchanges.push({ dir: 'H', bytes: Buffer.from([byte]) });
    await this.writeBytes(Buffer.from([byte]));
  }

  private async handle(ev: BareEvent): Promise<void> {
    if (this.stopped) return;
    switch (ev.type) {
      case 'enq':
        await this.reply(ACK);
        this.handlers.onTransmission?.('start');
        return;
      case 'eot':
        this.clearTimer();
        this.handlers.onTransmission?.('end');
        return;
      case 'block':
        await this.reply(ACK);
        return;
      case 'issue':
        this.handlers.onIssue({ ...ev.issue, answer: null });
        return;
      case 'message': {
        // What crossed the wire since the last message (a chunk may run on past this one's ETX).
        const message: AstmLinkMessage = { text: ev.text, exchanges: this.exchanges };
        this.exchanges = [];
        try {
          await this.handlers.onMessage(message);
        } catch (error) {
          await this.reply(NAK);
          this.handlers.onIssue({ kind: 'commit-failed', reason: 'commit-failed', detail: (error as Error).message, answer: 'NAK' });
          return;
        }
        // Outside the try: an ACK that cannot be written is no failed commit (the message is stored).
        await this.reply(ACK);
        return;
      }
    }
  }

  private armTimer(): void {
    this.clearTimer();
    this.timer = setTimeout(() => {
      this.timer = null;
      this.chain = this.chain.then(() => this.endWith(this.asm.finish(`no block or EOT for ${this.o.receiveTimeoutMs} ms`), 'receive-timeout')).catch(() => undefined);
    }, this.o.receiveTimeoutMs);
    this.timer.unref?.();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
