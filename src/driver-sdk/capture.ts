import type { Capture, Exchange } from './index.ts';

/**
 * Transcript text: `H <hex>` (host → device) and `D <hex>` (device → host) lines, `#` comments.
 * This is also how a session's capture is stored, so `poctd replay` reads what the store kept.
 */
const TRANSCRIPT_LINE = /^([HD])((?:\s+[0-9a-fA-F]{2})+|\s+[0-9a-fA-F]+)\s*$/;

export function isTranscript(text: string): boolean {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));
  return lines.length > 0 && lines.every((l) => TRANSCRIPT_LINE.test(l.trim()));
}

export function parseTranscript(text: string): Exchange[] {
  const out: Exchange[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) return;
    const m = TRANSCRIPT_LINE.exec(t);
    if (!m) throw new Error(`transcript line ${i + 1}: expected "H <hex>" or "D <hex>"`);
    const hex = m[2]!.replace(/\s+/g, '');
    if (hex.length % 2 !== 0) throw new Error(`transcript line ${i + 1}: odd number of hex digits`);
    out.push({ dir: m[1] as 'H' | 'D', bytes: Buffer.from(hex, 'hex') });
  });
  return out;
}

export function formatTranscript(exchanges: Exchange[]): string {
  return exchanges.map((e) => `${e.dir} ${e.bytes.toString('hex')}`).join('\n') + '\n';
}

/** Reads a file's bytes as a transcript when it is one, else as raw device → host bytes. */
export function captureFromBytes(bytes: Buffer): Capture {
  const text = bytes.toString('latin1');
  if (isTranscript(text)) return { kind: 'transcript', exchanges: parseTranscript(text) };
  return { kind: 'raw', bytes };
}

export function captureToBytes(capture: Capture): Buffer {
  return capture.kind === 'raw' ? capture.bytes : Buffer.from(formatTranscript(capture.exchanges), 'latin1');
}

/** Everything the device sent, in order. */
export function deviceBytes(capture: Capture): Buffer {
  if (capture.kind === 'raw') return capture.bytes;
  return Buffer.concat(capture.exchanges.filter((e) => e.dir === 'D').map((e) => e.bytes));
}
