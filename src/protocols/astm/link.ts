/**
 * ASTM E1381 / CLSI LIS01-A2 link layer over any byte carrier: a `ByteTransport` (serial, TCP
 * client, TCP server, memory) or a device's own packets (the Contour's 64-byte HID reports, whose
 * payloads the Contour session hands over): the receiver and the sender state machines, and the
 * same message assembly as a pure function for captures (`collectMessages`).
 *
 * Receiver: ENQ → ACK; each frame is checked (checksum, frame number 1…7,0,1…) and answered ACK,
 * or NAK when it is bad; a repeat of the previous frame number (our ACK was lost) is ACKed and
 * dropped; ETB frames are joined; EOT returns to neutral. A message ends at the ETX frame whose text
 * ends with the L record. Rule 1 of the design (acknowledge only what is stored): intermediate
 * frames are ACKed at once, but the ACK of that last frame is held until `onMessage` resolved,
 * i.e. the message is committed. A rejected commit NAKs the frame, so the device sends it again.
 * The device waits 15 s for that ACK (its sender timer), so a commit must finish within it; if it
 * does not, the device gives up with EOT and sends the message again later, and the record ids
 * (rule 3) make the resend a duplicate, not a second record. A message without its L record at EOT,
 * a receiver timeout (30 s without a frame) or a lost link discards the partial message: it was
 * never acknowledged as a whole, and the device sends it again.
 *
 * Sender (orders, query answers; the simulator plays an instrument with it): ENQ and wait 15 s for
 * the reply; NAK (busy) → wait 10 s and bid again; ENQ back (contention) → the instrument wins: a
 * host goes neutral and waits 20 s before bidding again, an instrument waits 1 s and repeats its
 * ENQ; frames of at most 240 text bytes; a NAKed frame is sent again, and after 6 NAKs the sender
 * ends with EOT; EOT in place of ACK (receiver interrupt) counts as ACK.
 *
 * Timer and retry values: research note `research/astm-urinalysis-poct1a.md` §1.4 (corroborated
 * by UniversaLIS, not checked word for word against LIS01-A2). All are options.
 */
import type { Exchange } from '../../driver-sdk/index.ts';
import {
  ACK,
  AstmFrameReader,
  type AstmFrameEvent,
  CR,
  DEFAULT_FRAME_TEXT_SIZE,
  DEFAULT_MAX_FRAME_BYTES,
  encodeFrames,
  ENQ,
  EOT,
  frameMessage,
  type FramePart,
  LF,
  NAK,
  nextFrameNumber,
} from './frame.ts';
import { EndsKept } from '../../util/ends-kept.ts';

/**
 * What the link reads from and writes to: `data` events carry the device's bytes, `close` says the
 * link went away. Every `ByteTransport` is one; a driver whose device wraps the bytes in packets of
 * its own gives the link the unwrapped bytes through an object of this shape.
 */
export interface AstmCarrier {
  readonly isOpen: boolean;
  write(bytes: Buffer): Promise<void>;
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'close', listener: () => void): unknown;
  off(event: 'data', listener: (chunk: Buffer) => void): unknown;
  off(event: 'close', listener: () => void): unknown;
  /** Stop and restart reading (a socket's backpressure), so bad input can be slowed at its source. */
  pause?(): void;
  resume?(): void;
}

export interface AstmLinkOptions {
  /** `host` (the daemon; yields on contention) or `instrument` (the simulator; wins contention). */
  role?: 'host' | 'instrument';
  /** Receiver: no frame or EOT for this long → the partial message is discarded (default 30 000). */
  receiveTimeoutMs?: number;
  /** Sender: wait this long for the reply to ENQ or a frame (default 15 000). */
  replyTimeoutMs?: number;
  /** Sender: NAKs of one frame (or busy answers to ENQ) before it gives up (default 6). */
  maxRetries?: number;
  /** Receiver: longest frame accepted (default 64 000 bytes including framing). */
  maxFrameBytes?: number;
  /** Receiver: longest message accepted (default 4 MiB), so memory stays bounded. */
  maxMessageBytes?: number;
  /** Sender: text bytes per frame (default 240). */
  frameTextSize?: number;
  /** Sender: wait after contention (default 20 000 for a host, 1 000 for an instrument). */
  contentionBackoffMs?: number;
  /** Sender: wait after a busy NAK to ENQ (default 10 000). */
  busyBackoffMs?: number;
  /** Writes bytes (default: `transport.write`); the simulator cuts them into random chunks. */
  write?: (bytes: Buffer) => Promise<void>;
  /**
   * Receiver: resist line noise (default false: every bad frame and stray byte reported alone, the
   * transmission announced at ENQ, as a driver that counts NAKs itself expects). When true:
   * consecutive bad input is one burst (`burst*` options), read at a bounded rate while it goes on,
   * reported garbled when it lasts; a transmission is announced at its first good frame (noise holds
   * ENQ bytes); and only good frames and EOT restart the receiver timer, so garbage cannot hold a
   * transmission open. The ASTM analyzer session sets it.
   */
  coalesceBadInput?: boolean;
  /** Receiver: a burst of bad input ends after this much quiet (default 1 000 ms). */
  burstQuietMs?: number;
  /** Receiver: a burst that never pauses is reported every this many ms (default 10 000). */
  burstMaxMs?: number;
  /** Receiver: bytes of a burst kept for quarantine, half from its start and half from its end (default 64 KiB). */
  burstKeepBytes?: number;
  /** Receiver: bad input with no good frame for this long marks the link garbled (default 30 000 ms). */
  garbledAfterMs?: number;
  /**
   * Receiver: while a burst of bad input goes on, the carrier (when it can pause) is read at most
   * this many bytes a second, so a flood on one connection cannot take the daemon from the others
   * (default 64 KiB/s; a wrong baud rate on a serial line gives ~1 KB/s).
   */
  burstBytesPerSecond?: number;
}

/** The link's timers and sizes when the options leave them out; the ASTM driver's device options start from these. */
export const ASTM_LINK_DEFAULTS = {
  receiveTimeoutMs: 30_000,
  replyTimeoutMs: 15_000,
  maxRetries: 6,
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  maxMessageBytes: 4 * 1024 * 1024,
  frameTextSize: DEFAULT_FRAME_TEXT_SIZE,
  busyBackoffMs: 10_000,
  burstQuietMs: 1_000,
  burstMaxMs: 10_000,
  burstKeepBytes: 64 * 1024,
  garbledAfterMs: 30_000,
  burstBytesPerSecond: 64 * 1024,
} as const;

export interface AstmLinkMessage {
  /** The message text: every frame's text joined, H … L, records ending in CR. */
  text: Buffer;
  /** The message as it crossed the wire (D frames and controls, H replies), for the capture. */
  exchanges: Exchange[];
}

export type AstmLinkIssueKind =
  | 'bad-frame'
  | 'garbage'
  | 'frame-number'
  | 'receive-timeout'
  | 'incomplete-message'
  | 'link-closed'
  | 'unexpected'
  | 'commit-failed'
  | 'message-too-long';

/** Issues about bytes that are no good frame: consecutive ones are coalesced into one burst. */
const BURST_KINDS: ReadonlySet<AstmLinkIssueKind> = new Set<AstmLinkIssueKind>(['bad-frame', 'garbage', 'unexpected']);

export interface AstmLinkIssue {
  kind: AstmLinkIssueKind;
  /** A short code (the bad-frame reason, …). */
  reason: string;
  /** What happened, from the protocol only; never the bytes as text. */
  detail: string;
  /** The bytes concerned, for quarantine. */
  bytes?: Buffer;
  /** What the link answered. */
  answer?: 'ACK' | 'NAK' | null;
  /**
   * A coalesced burst (kind `garbage`, reason `garbage-burst`): how many pieces (bad frames, stray
   * bytes, unexpected controls) and bytes it held, and how many of each reason. `bytes` then keeps
   * its first and last `burstKeepBytes / 2`.
   */
  burst?: { pieces: number; size: number; kept: number; reasons: Record<string, number>; ms: number };
  /**
   * Set when nothing but bad input has come for `garbledAfterMs`: the likely cause, in words (the
   * link is on the wrong baud rate or serial settings, or the device speaks another protocol).
   */
  garbled?: string;
}

export interface AstmLinkHandlers {
  /** A complete message. Resolve once it is stored: only then is its last frame ACKed. */
  onMessage(message: AstmLinkMessage): Promise<void>;
  onIssue(issue: AstmLinkIssue): void;
  /**
   * A transmission began (its first good frame after ENQ: an ENQ in line noise is no transmission)
   * or ended (EOT, timeout, link loss), once each.
   */
  onTransmission?(phase: 'start' | 'end'): void;
  /**
   * A good frame in sequence, as it is taken into the message (an intermediate frame just before
   * its ACK; the final one just before `onMessage`). A final frame whose commit failed is reported
   * again when the device sends it again. For progress and early checks, not for storing.
   */
  onFrame?(frame: { number: number; text: Buffer; final: boolean }): void;
}

export interface SendOptions {
  /** Frames to send as they are (the simulator's framing styles); default: the message split at `frameTextSize`. */
  frames?: FramePart[];
  /** Leave out the final EOT (simulator: a device that never sends it). */
  skipEot?: boolean;
  /** Stop after this many frames, silently (simulator: a device that stalls mid-message). */
  stallAfterFrames?: number;
  /** Replaces a frame's bytes before they are written (simulator: corruption). */
  mangle?: (frame: Buffer, info: { index: number; attempt: number }) => Buffer;
  /** Lowercase checksums for this message. */
  lowercaseChecksum?: boolean;
}

export class AstmSendError extends Error {
  constructor(
    readonly code: 'timeout' | 'busy' | 'nak-limit' | 'link-closed' | 'stopped',
    message: string,
  ) {
    super(message);
  }
}

/** Does the joined text end with an L record (after its CR)? `field` is the H record's field delimiter. */
export function endsWithTerminator(text: Buffer): boolean {
  let end = text.length;
  while (end > 0 && (text[end - 1] === CR || text[end - 1] === LF)) end--;
  if (end === 0) return false;
  let start = end - 1;
  while (start > 0 && text[start - 1] !== CR && text[start - 1] !== LF) start--;
  const first = text[start];
  if (first !== 0x4c && first !== 0x6c) return false; // L
  if (end - start === 1) return true;
  // The H record names the field delimiter: byte 1 of the message.
  const field = text[0] === 0x48 || text[0] === 0x68 ? text[1] : 0x7c;
  return text[start + 1] === field;
}

/**
 * What `endsWithTerminator` needs of a text, kept up to date byte by byte as frames are taken: the
 * message's first two bytes (the H record names the field delimiter in byte 1), the head and length
 * of the line being read, and of the last non-empty line. Deciding whether a frame completes the
 * message then costs that frame's bytes only, never a re-join or re-scan of the earlier frames.
 */
class TerminatorScan {
  private total = 0;
  private first0 = -1;
  private first1 = -1;
  private curLen = 0;
  private cur0 = -1;
  private cur1 = -1;
  private lastLen = 0;
  private last0 = -1;
  private last1 = -1;

  copy(): TerminatorScan {
    return Object.assign(new TerminatorScan(), this);
  }

  feed(text: Uint8Array): void {
    for (const x of text) {
      if (this.total === 0) this.first0 = x;
      else if (this.total === 1) this.first1 = x;
      this.total++;
      if (x === CR || x === LF) {
        if (this.curLen > 0) {
          this.lastLen = this.curLen;
          this.last0 = this.cur0;
          this.last1 = this.cur1;
        }
        this.curLen = 0;
        this.cur0 = this.cur1 = -1;
        continue;
      }
      if (this.curLen === 0) this.cur0 = x;
      else if (this.curLen === 1) this.cur1 = x;
      this.curLen++;
    }
  }

  /** `endsWithTerminator` of everything fed so far. */
  endsWithTerminator(): boolean {
    const [len, h0, h1] = this.curLen > 0 ? [this.curLen, this.cur0, this.cur1] : [this.lastLen, this.last0, this.last1];
    if (len === 0) return false;
    if (h0 !== 0x4c && h0 !== 0x6c) return false; // L
    if (len === 1) return true;
    const field = this.first0 === 0x48 || this.first0 === 0x68 ? this.first1 : 0x7c;
    return h1 === field;
  }
}

/**
 * Joins accepted frames into messages, with the frame-number rules. Shared by the live receiver
 * and `collectMessages`, so a stored capture decodes as the session saw it. Linear in the bytes
 * taken: each frame is scanned once, and the parts are joined once, when the message is whole.
 */
export class MessageAssembler {
  private expected: number | null = null;
  private parts: Buffer[] = [];
  private size = 0;
  /** The text of the frame last taken (null: none yet): a repeat of its number is a duplicate only with this text. */
  private last: Buffer | null = null;
  /** Frames of this transmission's message are lost: it can never be whole. */
  private broken = false;
  private scan = new TerminatorScan();
  /** The scan with the frame `preview` was last asked about, so `take` does not scan it again. */
  private previewed: { text: Buffer; scan: TerminatorScan } | null = null;

  /** ENQ: a new transmission starts with frame 1. */
  begin(): void {
    this.reset(1);
  }

  /** Forgets the transmission; `expected` is the next frame number (null: whatever comes first). */
  private reset(expected: number | null): void {
    this.clear();
    this.expected = expected;
    this.last = null;
    this.broken = false;
  }

  private clear(): void {
    this.parts = [];
    this.size = 0;
    this.scan = new TerminatorScan();
    this.previewed = null;
  }

  get pendingBytes(): number {
    return this.size;
  }

  pending(): Buffer {
    return Buffer.concat(this.parts, this.size);
  }

  /**
   * Classifies a good frame. `accept` with `complete` set: the message is whole once this frame is
   * taken; the caller then calls `take()` (stored) or leaves it (rejected; the frame comes again).
   */
  classify(number: number, text?: Buffer): 'accept' | 'duplicate' | 'wrong-number' {
    // A capture that starts mid-transmission (no ENQ) starts at whatever number it holds.
    if (this.expected === null) this.expected = number;
    if (this.broken) return 'wrong-number';
    if (number === this.expected) return 'accept';
    const repeatOfLast = this.last !== null && nextFrameNumber(number) === this.expected;
    if (repeatOfLast && (text === undefined || this.last?.equals(text) === true)) return 'duplicate';
    // The last frame's number with other text is no repeat: frames were lost and the numbers came
    // round again (mod 8; after a lost frame k, frame k-1's number always comes before k's). The
    // next frame with the expected number would be joined on with a hole: nothing more is taken
    // until EOT / ENQ. (A sender that sends the missing frame right after a NAK is still taken.)
    if (repeatOfLast) this.broken = true;
    return 'wrong-number';
  }

  /** The scan of the pending text followed by `text`. */
  private scanWith(text: Buffer): TerminatorScan {
    if (this.previewed?.text === text) return this.previewed.scan;
    const scan = this.scan.copy();
    scan.feed(text);
    this.previewed = { text, scan };
    return scan;
  }

  /**
   * The finished message if this frame completes one, else null. Only a final (ETX) frame can;
   * the check scans this frame's bytes only, and the parts are joined once, for the whole message.
   */
  preview(text: Buffer, final: boolean): Buffer | null {
    if (!final) return null;
    if (!this.scanWith(text).endsWithTerminator()) return null;
    return Buffer.concat([...this.parts, text], this.size + text.length);
  }

  /**
   * Takes the frame. Returns the finished message when it completed one (the parts are then
   * cleared); `completed` is what `preview` said of this frame, when the caller already asked.
   */
  take(text: Buffer, final: boolean, completed: Buffer | null = this.preview(text, final)): Buffer | null {
    this.expected = nextFrameNumber(this.expected ?? 0);
    this.last = text;
    if (completed) {
      this.clear();
      return completed;
    }
    this.scan = this.scanWith(text);
    this.previewed = null;
    this.parts.push(text);
    this.size += text.length;
    return null;
  }

  /** EOT, timeout or link loss: returns what was pending and forgets it. */
  end(): Buffer {
    const rest = this.pending();
    this.reset(null);
    return rest;
  }
}

export interface CollectedMessages {
  messages: Buffer[];
  issues: AstmLinkIssue[];
}

/**
 * The receiver's view of a capture, without a link: device bytes → complete messages. Bad frames,
 * wrong frame numbers, garbage and partial messages become issues; duplicates are dropped, as the
 * live receiver does. Lenient about a lost CR or LF after the checksum (files often lose it).
 * `maxFrameBytes` is the device's own limit, so a replay refuses exactly the frames the session did.
 */
export function collectMessages(bytes: Buffer, maxFrameBytes: number = ASTM_LINK_DEFAULTS.maxFrameBytes): CollectedMessages {
  const reader = new AstmFrameReader({ lenientLineEnd: true, maxFrameBytes });
  const asm = new MessageAssembler();
  const messages: Buffer[] = [];
  const issues: AstmLinkIssue[] = [];
  const partial = (why: string): void => {
    const rest = asm.end();
    if (rest.length > 0) issues.push({ kind: 'incomplete-message', reason: 'incomplete-message', detail: why, bytes: rest });
  };
  for (const ev of [...reader.push(bytes), ...reader.finish()]) {
    switch (ev.type) {
      case 'control':
        if (ev.byte === ENQ) {
          partial('a new ENQ before the message ended');
          asm.begin();
        } else if (ev.byte === EOT) partial('EOT before the L record');
        break;
      case 'frame': {
        const kind = asm.classify(ev.number, ev.text);
        if (kind === 'accept') {
          const done = asm.take(ev.text, ev.final);
          if (done) messages.push(done);
        } else if (kind === 'wrong-number') {
          issues.push({ kind: 'frame-number', reason: 'frame-number', detail: `frame number ${ev.number} out of sequence`, bytes: ev.raw });
        }
        break;
      }
      case 'bad-frame':
        issues.push({ kind: 'bad-frame', reason: ev.reason, detail: ev.detail, bytes: ev.raw });
        break;
      case 'garbage':
        issues.push({ kind: 'garbage', reason: 'garbage', detail: `${ev.bytes.length} bytes outside any frame`, bytes: ev.bytes });
        break;
    }
  }
  partial('the capture ended before the L record');
  return { messages, issues };
}

/**
 * Consecutive bad input (bad frames, bytes outside frames, unexpected controls) as one report: the
 * count of pieces and bytes, each reason's count, and the first and last `keep / 2` bytes. Its cost
 * is bounded per burst, whatever the flood: one issue, one quarantine entry, one log line.
 */
class Burst {
  pieces = 1;
  lastAt: number;
  readonly reasons = new Map<string, number>();
  private readonly ends: EndsKept;
  /** Bytes seen that are printable text (CR LF included), for the likely cause. */
  private printable = 0;

  constructor(
    private readonly first: AstmLinkIssue,
    readonly startedAt: number,
    keep: number,
  ) {
    this.lastAt = startedAt;
    this.ends = new EndsKept(keep);
    this.count(first);
  }

  add(i: AstmLinkIssue, at: number): void {
    this.pieces++;
    this.lastAt = at;
    this.count(i);
  }

  private count(i: AstmLinkIssue): void {
    this.reasons.set(i.reason, (this.reasons.get(i.reason) ?? 0) + 1);
    const bytes = i.bytes;
    if (!bytes || bytes.length === 0) return;
    for (const x of bytes) if ((x >= 0x20 && x < 0x7f) || x === CR || x === LF) this.printable++;
    this.ends.push(bytes);
  }

  /** Bytes in the burst so far. */
  get size(): number {
    return this.ends.size;
  }

  issue(): AstmLinkIssue {
    if (this.pieces === 1) return { ...this.first };
    const bytes = this.ends.kept();
    const reasons = Object.fromEntries(this.reasons);
    const list = [...this.reasons].map(([r, n]) => `${r} ×${n}`).join(', ');
    const cut = bytes.length < this.size ? `; the first and last ${this.ends.half} bytes are kept` : '';
    return {
      kind: 'garbage',
      reason: 'garbage-burst',
      detail: `${this.pieces} pieces of bad input, ${this.size} bytes in ${this.lastAt - this.startedAt} ms (${list})${cut}`,
      ...(bytes.length > 0 ? { bytes } : {}),
      answer: null,
      burst: { pieces: this.pieces, size: this.size, kept: bytes.length, reasons, ms: this.lastAt - this.startedAt },
    };
  }

  /** Text that is not E1381 is another protocol; bytes that are not text are a line at the wrong speed. */
  likelyCause(): string {
    if (this.size > 0 && this.printable / this.size >= 0.9) {
      return 'the device sends text that is not ASTM E1381 framing: it may speak another protocol (wrong driver, or its interface set to another mode)';
    }
    return 'the bytes are not text: likely a baud rate, parity or stop-bit mismatch on the line, or electrical noise';
  }
}

type Reply = 'ACK' | 'NAK' | 'EOT' | 'ENQ' | 'timeout';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One E1381 link end on a transport. */
export class AstmLink {
  readonly role: 'host' | 'instrument';
  private readonly o: Required<Omit<AstmLinkOptions, 'write' | 'role'>>;
  private burst: Burst | null = null;
  private burstTimer: NodeJS.Timeout | null = null;
  private staleFrameTimer: NodeJS.Timeout | null = null;
  /** The transmission being received has had a good frame, and its start was reported. */
  private announced = false;
  /** When bytes last arrived (a burst is quiet only when they stop, not when its handling lags). */
  private lastBytesAt = 0;
  private paused = false;
  /** When the current run of bad input began (no good frame since); null after a good frame. */
  private badSince: number | null = null;
  /** Bytes of the current transmission's capture, so a flood cannot grow it without end. */
  private exchangeBytes = 0;
  private readonly reader: AstmFrameReader;
  private readonly asm = new MessageAssembler();
  private state: 'neutral' | 'receiving' | 'sending' = 'neutral';
  private chain: Promise<void> = Promise.resolve();
  private exchanges: Exchange[] = [];
  private receiveTimer: NodeJS.Timeout | null = null;
  private replyWaiter: ((r: Reply) => void) | null = null;
  private neutralWaiters: Array<() => void> = [];
  private sendQueue: Promise<unknown> = Promise.resolve();
  private started = false;
  private stopped = false;
  /** Bumped on every transmission reset, so a late event of an old one is ignored. */
  private epoch = 0;

  constructor(
    private readonly transport: AstmCarrier,
    private readonly handlers: AstmLinkHandlers,
    options: AstmLinkOptions = {},
  ) {
    this.role = options.role ?? 'host';
    this.o = {
      receiveTimeoutMs: options.receiveTimeoutMs ?? ASTM_LINK_DEFAULTS.receiveTimeoutMs,
      replyTimeoutMs: options.replyTimeoutMs ?? ASTM_LINK_DEFAULTS.replyTimeoutMs,
      maxRetries: options.maxRetries ?? ASTM_LINK_DEFAULTS.maxRetries,
      maxFrameBytes: options.maxFrameBytes ?? ASTM_LINK_DEFAULTS.maxFrameBytes,
      maxMessageBytes: options.maxMessageBytes ?? ASTM_LINK_DEFAULTS.maxMessageBytes,
      frameTextSize: options.frameTextSize ?? ASTM_LINK_DEFAULTS.frameTextSize,
      contentionBackoffMs: options.contentionBackoffMs ?? (this.role === 'host' ? 20_000 : 1_000),
      busyBackoffMs: options.busyBackoffMs ?? ASTM_LINK_DEFAULTS.busyBackoffMs,
      burstQuietMs: options.burstQuietMs ?? ASTM_LINK_DEFAULTS.burstQuietMs,
      burstMaxMs: options.burstMaxMs ?? ASTM_LINK_DEFAULTS.burstMaxMs,
      burstKeepBytes: Math.max(2, options.burstKeepBytes ?? ASTM_LINK_DEFAULTS.burstKeepBytes),
      garbledAfterMs: options.garbledAfterMs ?? ASTM_LINK_DEFAULTS.garbledAfterMs,
      burstBytesPerSecond: options.burstBytesPerSecond ?? ASTM_LINK_DEFAULTS.burstBytesPerSecond,
      coalesceBadInput: options.coalesceBadInput ?? false,
    };
    this.writeBytes = options.write ?? ((b) => this.transport.write(b));
    this.reader = new AstmFrameReader({ maxFrameBytes: this.o.maxFrameBytes });
  }

  private readonly writeBytes: (b: Buffer) => Promise<void>;

  get linkState(): 'neutral' | 'receiving' | 'sending' {
    return this.state;
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
    this.clearReceiveTimer();
    if (this.staleFrameTimer) clearTimeout(this.staleFrameTimer);
    this.staleFrameTimer = null;
    this.replyWaiter?.('timeout');
    this.toNeutral();
    await this.chain.catch(() => undefined);
    this.flushBurst();
  }

  // ── input ──

  private readonly onData = (chunk: Buffer): void => {
    this.lastBytesAt = Date.now();
    if (this.burst && this.transport.pause && this.transport.resume && !this.paused) {
      // Bad input is being read: read it no faster than burstBytesPerSecond.
      this.paused = true;
      this.transport.pause();
      const resumeAfter = Math.ceil((chunk.length * 1000) / this.o.burstBytesPerSecond);
      setTimeout(() => {
        this.paused = false;
        if (!this.stopped) this.transport.resume?.();
      }, resumeAfter).unref?.();
    }
    const events = this.reader.push(chunk);
    for (const ev of events) this.chain = this.chain.then(() => this.handle(ev)).catch(() => undefined);
    if (this.reader.midFrame && this.state !== 'receiving') this.armStaleFrameTimer();
  };

  /**
   * Outside a transmission (where the receiver timer does this), a frame left half-read by noise
   * (an STX with no line end after it) is dropped after the receiver timeout of quiet, so it cannot
   * swallow the ENQ of a device set right again.
   */
  private armStaleFrameTimer(): void {
    if (this.staleFrameTimer) {
      this.staleFrameTimer.refresh();
      return;
    }
    this.staleFrameTimer = setTimeout(() => {
      this.staleFrameTimer = null;
      this.chain = this.chain
        .then(() => {
          if (this.stopped || this.state === 'receiving' || !this.reader.midFrame) return;
          const bytes = this.reader.drop();
          this.issue({
            kind: 'garbage',
            reason: 'stale-frame',
            detail: `a frame begun outside a transmission had no end for ${this.o.receiveTimeoutMs} ms; dropped`,
            bytes,
            answer: null,
          });
        })
        .catch(() => undefined);
    }, this.o.receiveTimeoutMs);
    this.staleFrameTimer.unref?.();
  }

  private readonly onClose = (): void => {
    this.chain = this.chain
      .then(() => {
        const midFrame = this.reader.midFrame;
        this.reader.reset();
        if (this.state === 'receiving' || midFrame) {
          const rest = this.asm.end();
          this.issue({
            kind: 'link-closed',
            reason: 'link-closed',
            detail: 'the link closed in the middle of a transmission; the partial message is discarded',
            bytes: rest.length ? rest : undefined,
          });
          this.endTransmission();
        }
        this.replyWaiter?.('timeout');
      })
      .catch(() => undefined);
  };

  private async handle(ev: AstmFrameEvent): Promise<void> {
    if (this.stopped) return;
    if (ev.type === 'frame') {
      // A frame whose checksum holds: the line carries E1381 again, the burst of bad input is over.
      this.flushBurst();
      this.badSince = null;
    }
    if (this.state === 'sending') {
      if (ev.type === 'control') {
        this.deliverReply(ev.name);
        return;
      }
      this.report(ev, null);
      return;
    }
    if (this.state === 'neutral') {
      if (ev.type === 'control' && ev.byte === ENQ) {
        this.state = 'receiving';
        this.asm.begin();
        this.exchanges = [];
        this.exchangeBytes = 0;
        this.keep({ dir: 'D', bytes: Buffer.from([ENQ]) });
        await this.reply(ACK);
        this.armReceiveTimer();
        // Resisting noise, the start is announced at the first good frame: noise holds ENQ bytes too.
        this.announced = false;
        if (!this.o.coalesceBadInput) this.announce();
        return;
      }
      if (ev.type === 'control') {
        // A stray ACK/NAK (a late answer), or EOT with no transmission: nothing to do.
        if (ev.byte !== EOT) this.issue({ kind: 'unexpected', reason: `${ev.name.toLowerCase()}-in-neutral`, detail: `${ev.name} with no transmission going on`, answer: null });
        return;
      }
      if (ev.type === 'frame') {
        this.issue({ kind: 'unexpected', reason: 'frame-without-enq', detail: 'a frame arrived with no ENQ before it; ignored', bytes: ev.raw, answer: null });
        return;
      }
      this.report(ev, null);
      return;
    }
    // Receiving. The receiver timer restarts on a good frame or an EOT only: a stream of garbage or
    // bad frames is no sender making progress, and must not hold the transmission open for ever.
    if (!this.o.coalesceBadInput || ev.type === 'frame' || (ev.type === 'control' && ev.byte === EOT)) this.armReceiveTimer();
    switch (ev.type) {
      case 'control':
        if (ev.byte === EOT) {
          this.keep({ dir: 'D', bytes: Buffer.from([EOT]) });
          const rest = this.asm.end();
          if (rest.length > 0) {
            this.issue({
              kind: 'incomplete-message',
              reason: 'incomplete-message',
              detail: 'EOT arrived before the message\'s L record; the partial message is discarded',
              bytes: rest,
            });
          }
          this.endTransmission();
          return;
        }
        this.issue({ kind: 'unexpected', reason: `${ev.name.toLowerCase()}-while-receiving`, detail: `${ev.name} in the middle of a transmission; ignored`, answer: null });
        return;
      case 'garbage':
        this.keep({ dir: 'D', bytes: ev.bytes });
        this.report(ev, null);
        return;
      case 'bad-frame': {
        this.keep({ dir: 'D', bytes: ev.raw });
        // A frame cut short by a new STX gets no answer: the sender is still sending, and the new
        // frame gets the one answer the sender waits for.
        const answer = ev.reason === 'interrupted' ? null : 'NAK';
        this.report(ev, answer);
        if (answer) await this.reply(NAK);
        return;
      }
      case 'frame':
        await this.onFrame(ev);
    }
  }

  private async onFrame(ev: Extract<AstmFrameEvent, { type: 'frame' }>): Promise<void> {
    this.keep({ dir: 'D', bytes: ev.raw }, true);
    this.announce();
    const kind = this.asm.classify(ev.number, ev.text);
    if (kind === 'duplicate') {
      await this.reply(ACK);
      return;
    }
    if (kind === 'wrong-number') {
      this.issue({ kind: 'frame-number', reason: 'frame-number', detail: `frame number ${ev.number} is out of sequence`, bytes: ev.raw, answer: 'NAK' });
      await this.reply(NAK);
      return;
    }
    if (this.asm.pendingBytes + ev.text.length > this.o.maxMessageBytes) {
      const rest = this.asm.end();
      this.asm.begin();
      this.issue({
        kind: 'message-too-long',
        reason: 'message-too-long',
        detail: `the message grew past ${this.o.maxMessageBytes} bytes; discarded`,
        bytes: rest.subarray(0, 65536),
        answer: 'NAK',
      });
      await this.reply(NAK);
      return;
    }
    this.safe(() => this.handlers.onFrame?.({ number: ev.number, text: ev.text, final: ev.final }));
    const message = this.asm.preview(ev.text, ev.final);
    if (!message) {
      this.asm.take(ev.text, ev.final, null);
      await this.reply(ACK);
      return;
    }
    // The last frame of a message: store it, then ACK (rule 1). The receiver timer does not run
    // while we wait: the wait is ours, not the device's.
    this.clearReceiveTimer();
    const epoch = this.epoch;
    const exchanges = this.exchanges;
    let stored = false;
    try {
      await this.handlers.onMessage({ text: message, exchanges });
      stored = true;
    } catch (err) {
      this.issue({ kind: 'commit-failed', reason: 'commit-failed', detail: `the message was not stored: ${(err as Error).message}`, answer: 'NAK' });
    }
    if (this.stopped || epoch !== this.epoch || this.state !== 'receiving') return;
    if (stored) {
      this.asm.take(ev.text, ev.final, message);
      this.exchanges = [];
      this.exchangeBytes = 0;
      await this.reply(ACK);
    } else {
      await this.reply(NAK);
    }
    this.armReceiveTimer();
  }

  private report(ev: AstmFrameEvent, answer: 'NAK' | null): void {
    if (ev.type === 'bad-frame') {
      this.issue({ kind: 'bad-frame', reason: ev.reason, detail: ev.detail, bytes: ev.raw, answer });
    } else if (ev.type === 'garbage') {
      this.issue({ kind: 'garbage', reason: 'garbage', detail: `${ev.bytes.length} bytes outside any frame`, bytes: ev.bytes, answer: null });
    } else if (ev.type === 'frame') {
      this.issue({ kind: 'unexpected', reason: 'frame-while-sending', detail: 'a frame arrived while this end was sending', bytes: ev.raw, answer: null });
    }
  }

  private async reply(byte: number): Promise<void> {
    if (this.state === 'receiving') this.keep({ dir: 'H', bytes: Buffer.from([byte]) }, true);
    try {
      await this.writeBytes(Buffer.from([byte]));
    } catch (err) {
      this.issue({ kind: 'link-closed', reason: 'write-failed', detail: `could not answer the device: ${(err as Error).message}` });
    }
  }

  private armReceiveTimer(): void {
    this.clearReceiveTimer();
    const epoch = this.epoch;
    this.receiveTimer = setTimeout(() => {
      this.chain = this.chain
        .then(() => {
          if (epoch !== this.epoch || this.state !== 'receiving') return;
          const rest = this.asm.end();
          this.reader.reset();
          this.issue({
            kind: 'receive-timeout',
            reason: 'receive-timeout',
            detail: `no frame or EOT for ${this.o.receiveTimeoutMs} ms; ${rest.length ? 'the partial message is discarded' : 'back to neutral'}`,
            bytes: rest.length ? rest : undefined,
          });
          this.endTransmission();
        })
        .catch(() => undefined);
    }, this.o.receiveTimeoutMs);
  }

  private clearReceiveTimer(): void {
    if (this.receiveTimer) clearTimeout(this.receiveTimer);
    this.receiveTimer = null;
  }

  private endTransmission(): void {
    const was = this.state;
    this.toNeutral();
    if (was === 'receiving' && this.announced) this.safe(() => this.handlers.onTransmission?.('end'));
    this.announced = false;
  }

  private announce(): void {
    if (this.announced) return;
    this.announced = true;
    this.safe(() => this.handlers.onTransmission?.('start'));
  }

  private toNeutral(): void {
    this.clearReceiveTimer();
    this.epoch++;
    this.state = 'neutral';
    this.exchanges = [];
    this.exchangeBytes = 0;
    const waiters = this.neutralWaiters.splice(0);
    for (const w of waiters) w();
  }

  private issue(i: AstmLinkIssue): void {
    // Bad frames, stray bytes and stray control bytes are what line noise is made of; a frame whose
    // checksum holds (one with no ENQ before it, one while sending) is a protocol slip, reported alone.
    if (this.o.coalesceBadInput && BURST_KINDS.has(i.kind) && (i.kind !== 'unexpected' || i.bytes === undefined)) {
      this.addToBurst(i);
      return;
    }
    // Kept in order: the burst before it is reported first.
    this.flushBurst();
    this.safe(() => this.handlers.onIssue(i));
  }

  /** A piece of the capture of the transmission being received; bad input only up to a bound. */
  private keep(e: Exchange, always = false): void {
    if (!always && this.exchangeBytes >= this.o.maxMessageBytes) return;
    this.exchanges.push(e);
    this.exchangeBytes += e.bytes.length;
  }

  // ── bursts of bad input ──

  private addToBurst(i: AstmLinkIssue): void {
    const now = Date.now();
    this.badSince ??= now;
    let b = this.burst;
    if (!b) {
      b = this.burst = new Burst(i, now, this.o.burstKeepBytes);
      this.armBurstTimer();
    } else b.add(i, now);
    if (now - b.startedAt >= this.o.burstMaxMs) this.flushBurst();
  }

  private armBurstTimer(): void {
    if (this.burstTimer) clearTimeout(this.burstTimer);
    const b = this.burst;
    if (!b) return;
    const now = Date.now();
    const due = Math.min(Math.max(b.lastAt, this.lastBytesAt) + this.o.burstQuietMs, b.startedAt + this.o.burstMaxMs);
    this.burstTimer = setTimeout(() => {
      this.burstTimer = null;
      const current = this.burst;
      if (!current) return;
      const at = Date.now();
      const last = Math.max(current.lastAt, this.lastBytesAt);
      if (at - last >= this.o.burstQuietMs || at - current.startedAt >= this.o.burstMaxMs) {
        // Through the chain, so it is reported after the events already read.
        this.chain = this.chain.then(() => this.flushBurst()).catch(() => undefined);
      } else this.armBurstTimer();
    }, Math.max(1, due - now));
    this.burstTimer.unref?.();
  }

  /** Reports the burst being collected, if any: a lone piece as it was, more as one issue. */
  private flushBurst(): void {
    if (this.burstTimer) clearTimeout(this.burstTimer);
    this.burstTimer = null;
    const b = this.burst;
    if (!b) return;
    this.burst = null;
    const issue = b.issue();
    if (this.badSince !== null && b.lastAt - this.badSince >= this.o.garbledAfterMs) issue.garbled = b.likelyCause();
    this.safe(() => this.handlers.onIssue(issue));
  }

  private safe(f: () => void): void {
    try {
      f();
    } catch {
      // A handler that throws must not break the link.
    }
  }

  // ── sending ──

  private deliverReply(r: Reply): void {
    const w = this.replyWaiter;
    this.replyWaiter = null;
    w?.(r);
  }

  private waitReply(): Promise<Reply> {
    return new Promise<Reply>((resolve) => {
      const timer = setTimeout(() => {
        this.replyWaiter = null;
        resolve('timeout');
      }, this.o.replyTimeoutMs);
      this.replyWaiter = (r) => {
        clearTimeout(timer);
        resolve(r);
      };
    });
  }

  private async whenNeutral(): Promise<void> {
    while (this.state !== 'neutral') {
      await new Promise<void>((r) => this.neutralWaiters.push(r));
    }
  }

  /**
   * Sends one message (CR-terminated records) as this end of the link. Messages queue behind each
   * other and behind a transmission being received. Rejects with `AstmSendError` when it fails.
   */
  send(message: Buffer, options: SendOptions = {}): Promise<void> {
    const run = this.sendQueue.then(() => this.sendNow(message, options));
    this.sendQueue = run.catch(() => undefined);
    return run;
  }

  private async sendNow(message: Buffer, options: SendOptions): Promise<void> {
    const frames = options.frames ?? frameMessage(message, 'split', this.o.frameTextSize);
    let busy = 0;
    for (;;) {
      if (this.stopped) throw new AstmSendError('stopped', 'the link is stopped');
      await this.whenNeutral();
      if (!this.transport.isOpen) throw new AstmSendError('link-closed', 'the link is not open');
      this.state = 'sending';
      const wait = this.waitReply();
      await this.writeOrFail(Buffer.from([ENQ]));
      const r = await wait;
      if (r === 'ACK') break;
      if (r === 'NAK') {
        this.toNeutral();
        if (++busy >= this.o.maxRetries) throw new AstmSendError('busy', `the receiver answered ENQ with NAK (busy) ${busy} times`);
        await sleep(this.o.busyBackoffMs);
        continue;
      }
      if (r === 'ENQ') {
        // Contention: the instrument wins. A host yields (the instrument repeats its ENQ within a
        // second and is then received) and bids again later; an instrument repeats its ENQ.
        this.toNeutral();
        await sleep(this.o.contentionBackoffMs);
        continue;
      }
      await this.abort();
      throw new AstmSendError('timeout', r === 'timeout' ? `no answer to ENQ within ${this.o.replyTimeoutMs} ms` : `EOT in answer to ENQ`);
    }
    const encoded = encodeFrames(frames, { lowercaseChecksum: options.lowercaseChecksum });
    for (let i = 0; i < frames.length; i++) {
      if (options.stallAfterFrames !== undefined && i >= options.stallAfterFrames) {
        this.toNeutral();
        return;
      }
      const bytes = encoded[i]!;
      let naks = 0;
      for (let attempt = 0; ; attempt++) {
        const wait = this.waitReply();
        await this.writeOrFail(options.mangle ? options.mangle(bytes, { index: i, attempt }) : bytes);
        const r = await wait;
        if (r === 'ACK' || r === 'EOT') break; // EOT: receiver interrupt, taken as ACK
        if (r === 'NAK' || r === 'ENQ') {
          if (++naks >= this.o.maxRetries) {
            await this.abort();
            throw new AstmSendError('nak-limit', `frame ${i + 1} was refused ${naks} times`);
          }
          continue;
        }
        await this.abort();
        throw new AstmSendError('timeout', `no answer to frame ${i + 1} within ${this.o.replyTimeoutMs} ms`);
      }
    }
    if (!options.skipEot) await this.writeOrFail(Buffer.from([EOT]));
    this.toNeutral();
  }

  private async writeOrFail(bytes: Buffer): Promise<void> {
    try {
      await this.writeBytes(bytes);
    } catch (err) {
      this.toNeutral();
      throw new AstmSendError('link-closed', `write failed: ${(err as Error).message}`);
    }
  }

  private async abort(): Promise<void> {
    await this.writeBytes(Buffer.from([EOT])).catch(() => undefined);
    this.toNeutral();
  }
}
