/** Deterministic line noise: every byte value, as a wire at the wrong baud rate gives (same seed, same bytes). */
export function lineNoise(n: number, seed = 7): Buffer {
  const out = Buffer.alloc(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}
