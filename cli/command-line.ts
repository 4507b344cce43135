/**
 * What every command shares and the dispatcher needs before any command's modules load: the
 * shape of a command in the list `cli/main.ts` hands to commander, the errors that become a
 * one-line message and exit 1, and the `--option key=value` parser. Nothing here imports a
 * module: `poctd --help` loads no driver, SQLite or MQTT.
 */

/** A mistake in the command line: printed as one line (with where to get help), exit 1. */
export class UsageError extends Error {}

/** A mistake in the command line or the simulator's options: printed as one line, exit 1. */
export class SimulateError extends Error {}

/** One option of a command, as commander declares it. */
export interface OptionSpec {
  /** Commander's flags, e.g. `-c, --config <file>` or `--stdio`. */
  flags: string;
  description: string;
  /** May be given several times; the values are collected in order into an array. */
  repeatable?: boolean;
  default?: string;
}

/** What a command's run() gets: its arguments in order and its options by camel-cased name. */
export interface ParsedCommand {
  args: string[];
  options: Record<string, unknown>;
}

/**
 * One `poctd` command. Adding a command is adding one of these to the list in `cli/main.ts`; its
 * module is loaded inside `run`, only when the command runs.
 */
export interface CommandSpec {
  name: string;
  /** One line, for `poctd --help`. */
  summary: string;
  /** Commander's argument syntax: `<file>`, `[file]`, `<id>`. */
  arguments?: string[];
  options?: OptionSpec[];
  /** Printed after the options in `poctd help CMD`. */
  details?: string;
  /**
   * The command reads its own argv (a `cli/<command>.ts` that exports `(argv) => exit code`):
   * commander passes every argument through untouched, `--help` included.
   */
  ownArgv?: boolean;
  /**
   * With `ownArgv`: the command's argument syntax. When given, `CMD --help` (and `help CMD`) print
   * `usage: poctd CMD <usage>` and the summary without running the command, so a command whose own
   * parser knows no --help still answers it.
   */
  usage?: string;
  run(parsed: ParsedCommand & { argv: string[] }): Promise<number> | number;
}

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

/** Commander's errors start "error: "; poctd's say which program and command they come from. */
export function usageLine(command: string | undefined, message: string): string {
  const text = message.replace(/^error: /, '');
  const where = command ? `poctd ${command}` : 'poctd';
  return `${where}: ${text}\n(see \`${where} --help\`)\n`;
}
