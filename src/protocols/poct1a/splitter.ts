/**
 * POCT1-A message splitter. A POCT1-A2 message is one whole XML document with no framing bytes and
 * no length prefix (research note `research/astm-urinalysis-poct1a.md` §4.4), so the stream is
 * cut where the root element closes, as seen by a real XML tokenizer: a fresh `saxes` parser runs
 * per document (one parser refuses a second prolog or root), and the document ends at the `>` of
 * the root's close tag. A `</OBS.R01>` inside a comment or a CDATA section is text, not an end.
 *
 * The tokenizer reads the bytes as Latin-1, one character per byte, so its position is the byte
 * offset and each document comes out byte-exact whatever its encoding; the document parser
 * (`document.ts`) decodes it as UTF-8 afterwards. Between documents, whitespace and comments are
 * skipped (a device may end each message with a newline; a transcript annotates with comments).
 *
 * Refused, each as a `problem` event with the bytes (never an exception): a DOCTYPE (and with it
 * every entity declaration, so no entity expansion bomb), malformed XML, text outside a root, and
 * a document over `maxBytes`. After a problem inside a root the splitter skips to that root's
 * close tag, the next `<?xml` or the same root opening again, whichever comes first; after one before any root (a stray `<`),
 * to the next `<`; and goes on.
 */
import { SaxesParser } from 'saxes';

export const DEFAULT_MAX_MESSAGE_BYTES = 1_000_000;

export interface SplitDocument {
  kind: 'document';
  /** The root element's name (`HEL.R01`, `OBS.R01`, a vendor's `NOVA.REAG`). */
  root: string;
  /** The document's bytes exactly as they came, prolog included. */
  bytes: Buffer;
}

export type SplitProblemReason = 'doctype' | 'malformed-xml' | 'too-large' | 'garbage';

export interface SplitProblem {
  kind: 'problem';
  reason: SplitProblemReason;
  detail: string;
  /** The root element's name when the tokenizer had read it. */
  root: string | null;
  /** The refused bytes (at most `maxBytes` of them), kept in quarantine. */
  bytes: Buffer;
}

export type SplitEvent = SplitDocument | SplitProblem;

/** Thrown from inside a saxes handler to stop it at the end of a document or at a problem. */
class Stop extends Error {}

type Mode = 'between' | 'comment' | 'document' | 'resync';

const XML_DECL = Buffer.from('<?xml', 'latin1');
const COMMENT_END = Buffer.from('-->', 'latin1');

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
}

export interface SplitterOptions {
  /** The largest document accepted, in bytes. */
  maxBytes?: number;
}

export class Poct1aSplitter {
  private readonly maxBytes: number;
  private mode: Mode = 'between';
  /** Bytes not consumed yet (between documents, or a comment not closed yet). */
  private pending: Buffer = Buffer.alloc(0);
  private parser: SaxesParser | null = null;
  private depth = 0;
  private root: string | null = null;
  /** The current document's bytes so far (fed to the parser). */
  private doc: Buffer[] = [];
  private docLength = 0;
  /** Set by a handler: where the document ended (byte offset in it) or what went wrong. */
  private ended: number | null = null;
  private failure: { reason: SplitProblemReason; detail: string } | null = null;
  /** The document is refused but read to its end (a DOCTYPE). */
  private refusal: { reason: SplitProblemReason; detail: string } | null = null;
  /** While resyncing: the close tag that ends the refused document, when its root is known. */
  private resyncClose: Buffer | null = null;
  /** While resyncing: how the same root opens again (a resend of a message that was cut short). */
  private resyncOpen: Buffer[] = [];
  /**
   * The current push's bytes from the first document step on, as Latin-1 text, and their length
   * (the steps see suffixes of them); null until a document step needs them, so bytes skipped
   * between documents, in comments or while resyncing are never converted.
   */
  private text: string | null = null;
  private textLength = 0;
  /** Garbage bytes being skipped (reported once per run). */
  private garbage: Buffer[] = [];
  private garbageLength = 0;

  constructor(options: SplitterOptions = {}) {
    this.maxBytes = options.maxBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  }

  /** Bytes of a document (or comment) begun and not finished: a dropped connection loses them. */
  get partial(): Buffer {
    if (this.mode === 'document') return Buffer.concat(this.doc);
    return this.mode === 'comment' ? this.pending : Buffer.alloc(0);
  }

  /** Feeds one chunk; returns the documents and problems it completed, in stream order. */
  push(chunk: Buffer): SplitEvent[] {
    const out: SplitEvent[] = [];
    let data = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);
    // Every step below returns a suffix of `data`, so one conversion (in `feed`) serves every document in it.
    this.text = null;
    while (data.length > 0) {
      if (this.mode === 'between') data = this.between(data, out);
      else if (this.mode === 'comment') data = this.comment(data);
      else if (this.mode === 'document') data = this.feed(data, out);
      else data = this.resync(data);
    }
    this.text = null;
    return out;
  }

  /** The stream ended: what was begun is reported (a message cut off by a dropped connection). */
  end(): SplitEvent[] {
    const out: SplitEvent[] = [];
    this.flushGarbage(out);
    if (this.mode === 'document' && this.docLength > 0) {
      out.push({ kind: 'problem', reason: 'malformed-xml', detail: 'the stream ended inside a message', root: this.root, bytes: Buffer.concat(this.doc) });
    }
    this.reset();
    this.mode = 'between';
    this.pending = Buffer.alloc(0);
    return out;
  }

  private flushGarbage(out: SplitEvent[]): void {
    if (this.garbageLength === 0) return;
    out.push({ kind: 'problem', reason: 'garbage', detail: `${this.garbageLength} byte(s) outside any XML document`, root: null, bytes: Buffer.concat(this.garbage) });
    this.garbage = [];
    this.garbageLength = 0;
  }

  private addGarbage(bytes: Buffer): void {
    if (this.garbageLength < this.maxBytes) this.garbage.push(bytes.subarray(0, this.maxBytes - this.garbageLength));
    this.garbageLength += bytes.length;
  }

  /** Between documents: whitespace and comments are skipped, `<` starts a document. */
  private between(data: Buffer, out: SplitEvent[]): Buffer {
    let i = 0;
    while (i < data.length && isSpace(data[i]!)) i++;
    if (i === data.length) return Buffer.alloc(0);
    if (data[i] !== 0x3c) {
      const next = data.indexOf(0x3c, i);
      const end = next < 0 ? data.length : next;
      this.addGarbage(data.subarray(i, end));
      return data.subarray(end);
    }
    // `<!--` needs four bytes to be told from `<!DOCTYPE` or `<A`: wait for them.
    const rest = data.subarray(i);
    if (rest.length < 4 && Buffer.from('<!--', 'latin1').subarray(0, rest.length).equals(rest)) {
      this.pending = Buffer.from(rest);
      return Buffer.alloc(0);
    }
    this.flushGarbage(out);
    if (rest.subarray(0, 4).toString('latin1') === '<!--') {
      this.mode = 'comment';
      return rest.subarray(4);
    }
    this.startDocument();
    return rest;
  }

  private comment(data: Buffer): Buffer {
    const end = data.indexOf(COMMENT_END);
    if (end < 0) {
      // Keep the last two bytes: `-->` may straddle the next chunk. A comment is not kept whole.
      this.pending = Buffer.from(data.subarray(Math.max(0, data.length - 2)));
      return Buffer.alloc(0);
    }
    this.mode = 'between';
    return data.subarray(end + 3);
  }

  private startDocument(): void {
    this.reset();
    this.mode = 'document';
    const p = new SaxesParser({ position: true });
    p.on('opentag', (tag) => {
      if (this.depth === 0) this.root = tag.name;
      this.depth++;
    });
    p.on('closetag', () => {
      this.depth--;
      if (this.depth === 0) {
        this.ended = p.position;
        throw new Stop();
      }
    });
    p.on('doctype', () => {
      // Refused, but read to its root's end so the next message is found where it starts. The
      // tokenizer never expands a declared entity (it reports an undefined one), so no bomb goes off.
      this.refusal = { reason: 'doctype', detail: 'a DOCTYPE (and any entity declaration in it) is refused' };
    });
    p.on('error', (err) => {
      if (this.refusal) return; // the entities the DOCTYPE declared: already refused
      this.failure = { reason: 'malformed-xml', detail: err.message };
      throw new Stop();
    });
    this.parser = p;
  }

  private reset(): void {
    this.parser = null;
    this.depth = 0;
    this.root = null;
    this.doc = [];
    this.docLength = 0;
    this.ended = null;
    this.failure = null;
    this.refusal = null;
  }

  /** Feeds the parser; returns what follows the document when it ended in `data`. */
  private feed(data: Buffer, out: SplitEvent[]): Buffer {
    const start = this.docLength;
    const room = this.maxBytes - start;
    // Never more than the cap reaches the tokenizer: a document that would pass it is refused.
    const piece = data.length > room ? data.subarray(0, Math.max(0, room)) : data;
    if (this.text === null) {
      this.text = data.toString('latin1');
      this.textLength = data.length;
    }
    try {
      const at = this.textLength - data.length;
      if (piece.length > 0) this.parser!.write(this.text.slice(at, at + piece.length));
    } catch (err) {
      if (!(err instanceof Stop)) {
        this.failure = { reason: 'malformed-xml', detail: (err as Error).message };
      }
    }
    if (this.ended !== null) {
      const used = this.ended - start;
      this.doc.push(data.subarray(0, used));
      this.docLength += used;
      const bytes = Buffer.concat(this.doc);
      out.push(this.refusal ? { kind: 'problem', reason: this.refusal.reason, detail: this.refusal.detail, root: this.root, bytes } : { kind: 'document', root: this.root!, bytes });
      this.reset();
      this.mode = 'between';
      return data.subarray(used);
    }
    if (this.failure) {
      // What the tokenizer read up to the error is kept; the rest is skipped to the next message.
      const at = Math.min(piece.length, Math.max(0, this.parser!.position - start));
      this.doc.push(data.subarray(0, at));
      const why = this.refusal ?? this.failure;
      const problem: SplitProblem = { kind: 'problem', reason: why.reason, detail: why.detail, root: this.root, bytes: Buffer.concat(this.doc) };
      out.push(problem);
      if (this.root === null) {
        // Broken before any root opened (a stray `<`, a bad prolog): the next `<` may start a message.
        this.reset();
        this.mode = 'between';
        return data.subarray(Math.max(1, at));
      }
      this.beginResync();
      return data.subarray(at);
    }
    this.doc.push(piece);
    this.docLength += piece.length;
    if (piece.length < data.length) {
      out.push({ kind: 'problem', reason: this.refusal?.reason ?? 'too-large', detail: `the message is over ${this.maxBytes} bytes${this.refusal ? ` and ${this.refusal.detail}` : ''}`, root: this.root, bytes: Buffer.concat(this.doc) });
      this.beginResync();
      return data.subarray(piece.length);
    }
    return Buffer.alloc(0);
  }

  private beginResync(): void {
    this.resyncClose = this.root ? Buffer.from(`</${this.root}>`, 'latin1') : null;
    this.resyncOpen = this.root ? ['>', ' ', '/', '\r', '\n', '\t'].map((c) => Buffer.from(`<${this.root}${c}`, 'latin1')) : [];
    this.reset();
    this.mode = 'resync';
  }

  /** After a refused document: skip to its root's close tag or to the next prolog, whichever comes first. */
  private resync(data: Buffer): Buffer {
    // Where the next message may start: a prolog, or the same root opening again (a device that
    // resends a message it cut short, without a prolog; POCT1-A roots never nest).
    const starts = [data.indexOf(XML_DECL), ...this.resyncOpen.map((m) => data.indexOf(m))].filter((i) => i >= 0);
    const start = starts.length > 0 ? Math.min(...starts) : -1;
    const close = this.resyncClose ? data.indexOf(this.resyncClose) : -1;
    if (close >= 0 && (start < 0 || close < start)) {
      this.mode = 'between';
      return data.subarray(close + this.resyncClose!.length);
    }
    if (start >= 0) {
      this.mode = 'between';
      return data.subarray(start);
    }
    // Keep a tail that may be the start of a marker.
    const keep = Math.max(XML_DECL.length, (this.resyncClose?.length ?? 0), (this.resyncOpen[0]?.length ?? 0)) - 1;
    this.pending = Buffer.from(data.subarray(Math.max(0, data.length - keep)));
    return Buffer.alloc(0);
  }
}
