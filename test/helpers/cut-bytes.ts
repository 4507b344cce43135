/**
 * `bytes` cut at the given points (each taken modulo the length + 1, sorted, deduplicated), as a
 * property test's chunks: the same stream as the wire may deliver it. A chunk may be empty.
 */
export function cutAt(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of [...points, bytes.length]) {
    out.push(bytes.subarray(from, p));
    from = p;
  }
  return out;
}
