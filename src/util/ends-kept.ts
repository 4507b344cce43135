/**
 * The first and last bytes of a run of any length, in fixed memory: what a framer keeps of a
 * burst of line noise (a reader on the wrong baud rate sends nothing else all day) so the burst
 * is one bounded report, whatever it holds. O(1) per byte; `size` counts everything pushed.
 */
export class EndsKept {
  private readonly head: Buffer;
  private readonly ring: Buffer;
  /** Bytes pushed since the last `clear()`. */
  size = 0;
  /** Where the ring's oldest byte is, once it is full. */
  private ringStart = 0;
  private ringLen = 0;

  /** Keeps `keep / 2` bytes from the start of the run and as many from its end. */
  constructor(keep: number) {
    const half = Math.floor(keep / 2);
    // Never read before written: kept() reads only what push() filled.
    this.head = Buffer.allocUnsafe(half);
    this.ring = Buffer.allocUnsafe(half);
  }

  get half(): number {
    return this.head.length;
  }

  pushByte(b: number): void {
    const half = this.head.length;
    if (this.size < half) this.head[this.size] = b;
    else if (half > 0) this.ringWrite(b);
    this.size++;
  }

  push(bytes: Uint8Array): void {
    const half = this.head.length;
    let from = 0;
    if (this.size < half) {
      const take = Math.min(half - this.size, bytes.length);
      this.head.set(bytes.subarray(0, take), this.size);
      from = take;
    }
    // Only the last `half` of what is beyond the head can still be in the ring.
    for (let i = Math.max(from, bytes.length - half); i < bytes.length; i++) this.ringWrite(bytes[i]!);
    this.size += bytes.length;
  }

  /** The kept bytes: the run itself when it fits, else its first and last `half`. */
  kept(): Buffer {
    const headLen = Math.min(this.size, this.head.length);
    const head = this.head.subarray(0, headLen);
    if (this.ringLen === 0) return Buffer.from(head);
    const end = this.ringStart + this.ringLen;
    const tail =
      end <= this.ring.length ? this.ring.subarray(this.ringStart, end) : Buffer.concat([this.ring.subarray(this.ringStart), this.ring.subarray(0, end - this.ring.length)]);
    return Buffer.concat([head, tail]);
  }

  clear(): void {
    this.size = 0;
    this.ringStart = 0;
    this.ringLen = 0;
  }

  private ringWrite(b: number): void {
    const n = this.ring.length;
    if (this.ringLen < n) {
      this.ring[(this.ringStart + this.ringLen) % n] = b;
      this.ringLen++;
    } else {
      this.ring[this.ringStart] = b;
      this.ringStart = (this.ringStart + 1) % n;
    }
  }
}
