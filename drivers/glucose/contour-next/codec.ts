/** Contour Next HID codec: the 64-byte reports that carry the ASTM bytes, and the wire's size limits. Pure. */

export const REPORT_SIZE = 64;
export const REPORT_HEADER = Buffer.from('ABC', 'latin1');
export const MAX_REPORT_PAYLOAD = 60;
const REPORT_OVERHEAD = 4;

/** One report without its zero padding: `ABC`, length, payload. */
export function encodeReport(payload: Uint8Array, header: Uint8Array = REPORT_HEADER): Buffer {
  if (payload.length > MAX_REPORT_PAYLOAD) throw new RangeError(`a Contour report carries at most ${MAX_REPORT_PAYLOAD} bytes, got ${payload.length}`);
  return Buffer.concat([Buffer.from(header.subarray(0, 3)), Buffer.from([payload.length]), Buffer.from(payload)]);
}

/** Bytes → reports of at most 60 payload bytes; `cut` picks each report's size (default: full). */
export function encodeReports(bytes: Uint8Array, cut: (left: number) => number = (left) => left): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; ) {
    const left = bytes.length - i;
    const n = Math.max(1, Math.min(MAX_REPORT_PAYLOAD, left, Math.floor(cut(left))));
    out.push(encodeReport(bytes.subarray(i, i + n)));
    i += n;
  }
  return out;
}

export type ReportErrorCode = 'short-report' | 'bad-length';
export type ReportResult = { ok: true; payload: Buffer } | { ok: false; code: ReportErrorCode; detail: string };

/** One input report → its payload. The 3 header bytes are not checked (meters and hosts differ). */
export function decodeReport(report: Uint8Array): ReportResult {
  if (report.length < REPORT_OVERHEAD) {
    return { ok: false, code: 'short-report', detail: `a ${report.length}-byte report has no length byte` };
  }
  const len = report[3]!;
  if (len > MAX_REPORT_PAYLOAD) return { ok: false, code: 'bad-length', detail: `the length byte says ${len}, more than ${MAX_REPORT_PAYLOAD}` };
  if (report.length < REPORT_OVERHEAD + len) {
    return { ok: false, code: 'bad-length', detail: `the length byte says ${len} but the report holds ${report.length - REPORT_OVERHEAD}` };
  }
  return { ok: true, payload: Buffer.from(report.subarray(REPORT_OVERHEAD, REPORT_OVERHEAD + len)) };
}

/** A report as kept in a capture: without the zero padding after its payload. */
export function trimReport(report: Uint8Array): Buffer {
  const r = decodeReport(report);
  return Buffer.from(r.ok ? report.subarray(0, REPORT_OVERHEAD + r.payload.length) : report);
}

/** E1381 allows 247 bytes per frame; a little room for meters that stretch it. */
export const MAX_FRAME_BYTES = 1024;
/** A full meter memory (about 2000 readings) is ~150 kB: more than this is not a Contour. */
export const MAX_TRANSFER_BYTES = 1 << 20;
