/**
 * Reads a simulator's untyped options (from YAML or `--option key=value`) with one wording for
 * every driver: `<owner>: unknown option x`, `<owner>: option x must be <what>`. Each getter
 * returns undefined when the option is absent, so a parser reads as a list of its options.
 */
import { assertTimeZone } from '../util/time.ts';

export class SimulatorOptionReader {
  /**
   * @param owner e.g. "onetouch-ultra2 simulator"
   * @param known the documented option names (the simulator's help table); `now` (a test clock)
   *   is always allowed
   */
  constructor(
    readonly options: Record<string, unknown>,
    readonly owner: string,
    known: Iterable<string>,
  ) {
    const allowed = new Set([...known, 'now']);
    for (const name of Object.keys(options)) if (!allowed.has(name)) throw new Error(`${owner}: unknown option ${name}`);
  }

  error(name: string, want: string): Error {
    return new Error(`${this.owner}: option ${name} must be ${want}`);
  }

  /** A finite number in [min, max]. */
  number(name: string, min = -Infinity, max = Infinity): number | undefined {
    const v = this.options[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
      const range = min > -Infinity && max < Infinity ? ` from ${min} to ${max}` : min > -Infinity ? ` >= ${min}` : max < Infinity ? ` <= ${max}` : '';
      throw this.error(name, `a number${range}`);
    }
    return v;
  }

  boolean(name: string): boolean | undefined {
    const v = this.options[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') throw this.error(name, 'true or false');
    return v;
  }

  string(name: string, pattern?: RegExp, want = 'a string'): string | undefined {
    const v = this.options[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || (pattern && !pattern.test(v))) throw this.error(name, want);
    return v;
  }

  oneOf<T extends string | boolean>(name: string, values: readonly T[], want = values.map(String).join(', ')): T | undefined {
    const v = this.options[name];
    if (v === undefined) return undefined;
    if (!values.includes(v as T)) throw this.error(name, want);
    return v as T;
  }

  /** An IANA zone name. */
  timezone(name = 'timezone'): string | undefined {
    const v = this.string(name, undefined, 'an IANA zone name');
    if (v === undefined) return undefined;
    try {
      assertTimeZone(v);
    } catch {
      throw this.error(name, 'an IANA zone name');
    }
    return v;
  }

  /** A list, each item read by `item` (which names its position in errors). */
  list<T>(name: string, item: (value: unknown, where: string) => T, want = 'a list'): T[] | undefined {
    const v = this.options[name];
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) throw this.error(name, want);
    return v.map((x, i) => item(x, `${name}[${i}]`));
  }

  /** The test clock (`now: () => Date`), which only code can pass. */
  now(): (() => Date) | undefined {
    const v = this.options.now;
    if (v === undefined) return undefined;
    if (typeof v !== 'function') throw this.error('now', 'a function returning a Date');
    return v as () => Date;
  }
}

/** The same object without the keys whose value is undefined (for `exactOptionalPropertyTypes`-style options). */
export function definedOnly<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}
