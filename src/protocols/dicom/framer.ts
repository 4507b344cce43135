/**
 * Cuts a TCP byte stream into upper layer PDUs, whatever the chunking: one read is never one PDU.
 *
 * The length in a PDU header is checked against a limit before a byte of the body is buffered, so
 * a peer cannot make the node hold a 4 GiB "PDU": before an association exists the limit is the
 * largest A-ASSOCIATE-RQ we take; after it, the maximum PDU length we announced. A TCP stream
 * cannot be resynchronised after a bad PDU, so the first error is final: the association is aborted.
 */
import { AbortReason, decodePdu, PDU_HEADER_LENGTH, PduError, type Pdu } from './pdu.ts';

export type FramerEvent = { kind: 'pdu'; pdu: Pdu; length: number } | { kind: 'error'; error: PduError };

/** The largest A-ASSOCIATE-RQ taken: 128 presentation contexts of long UIDs and a user identity fit. */
export const MAX_ASSOCIATE_RQ_LENGTH = 64 * 1024;

export class PduFramer {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failed = false;

  constructor(private maxBodyLength: number = MAX_ASSOCIATE_RQ_LENGTH) {}

  /** The largest PDU body accepted from now on (the maximum PDU length we announced; 0 = none). */
  setMaxBodyLength(length: number): void {
    this.maxBodyLength = length;
  }

  /** Bytes held for a PDU not yet complete (at most the limit plus a header). */
  get pending(): number {
    return this.buffered;
  }

  push(chunk: Buffer): FramerEvent[] {
    if (this.failed) return [];
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const events: FramerEvent[] = [];
    while (this.buffered >= PDU_HEADER_LENGTH) {
      const head = this.peek(PDU_HEADER_LENGTH);
      const type = head[0]!;
      const length = head.readUInt32BE(2);
      if (type < 0x01 || type > 0x07) {
        return this.fail(events, new PduError(`unknown PDU type 0x${type.toString(16)}`, AbortReason.UnrecognizedPdu));
      }
      if (this.maxBodyLength > 0 && length > this.maxBodyLength) {
        return this.fail(
          events,
          new PduError(`PDU of ${length} bytes is longer than the ${this.maxBodyLength} allowed`, AbortReason.InvalidPduParameterValue),
        );
      }
      if (this.buffered < PDU_HEADER_LENGTH + length) break;
      const whole = this.take(PDU_HEADER_LENGTH + length);
      try {
        events.push({ kind: 'pdu', pdu: decodePdu(type, whole.subarray(PDU_HEADER_LENGTH)), length });
      } catch (error) {
        if (!(error instanceof PduError)) throw error;
        return this.fail(events, error);
      }
    }
    return events;
  }

  private fail(events: FramerEvent[], error: PduError): FramerEvent[] {
    this.failed = true;
    this.chunks = [];
    this.buffered = 0;
    events.push({ kind: 'error', error });
    return events;
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first;
    return Buffer.concat(this.chunks, Math.min(this.buffered, Math.max(n, 0))).subarray(0, n);
  }

  /** The first `n` bytes, without copying when one chunk holds them all. */
  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const parts: Buffer[] = [];
      let need = n;
      while (need > 0) {
        const c = this.chunks[0]!;
        if (c.length <= need) {
          parts.push(c);
          this.chunks.shift();
          need -= c.length;
        } else {
          parts.push(c.subarray(0, need));
          this.chunks[0] = c.subarray(need);
          need = 0;
        }
      }
      out = Buffer.concat(parts, n);
    }
    this.buffered -= n;
    return out;
  }
}
