/**
 * What every command shares and the dispatcher needs before any command's modules load: the
 * errors that become a one-line message and exit 1, and the `--option key=value` parser.
 */

/** A mistake in the command line: printed with the usage, exit 1. */
export class UsageError extends Error {}

/** A mistake in the command line or the simulator's options: printed as one line, exit 1. */
export class SimulateError extends Error {}

/** `key=value`; the value is JSON when it parses as JSON (numbers, booleans, arrays), else text. */
export function parseOption(pair: string): [string, unknown] {
  const eq = pair.indexOf('=');
  if (eq <= 0) throw new SimulateError(`--option expects key=value, got "${pair}"`);
  const key = pair.slice(0, eq);
  const raw = pair.slice(eq + 1);
  try {
    return [key, JSON.parse(raw)];
  } catch {
    return [key, raw];
  }
}
