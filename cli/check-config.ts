import { drivers } from '../drivers/index.ts';
import { daemonConfigOptions, formatProblem, loadConfigFile, type ConfigError } from '../src/config/load.ts';
import { UsageError } from './command-line.ts';

/**
 * One line per problem, compiler style, so an editor or a terminal click jumps to it:
 * `config.yaml:12:7: devices[0].transport.path: required`; then how many there are.
 */
export function formatConfigError(error: ConfigError): string {
  const lines = error.problems.map((p) => {
    const text = formatProblem(p);
    if (error.file === undefined) return p.line !== undefined ? `line ${p.line}:${p.column ?? 1}: ${text}` : text;
    // "file not found: x.yaml" names the file already.
    if (p.line === undefined && text.includes(error.file)) return text;
    const at = p.line !== undefined ? `:${p.line}:${p.column ?? 1}` : '';
    return `${error.file}${at}: ${text}`;
  });
  const n = error.problems.length;
  const where = error.file ?? 'config';
  if (n > 1 || (n === 1 && error.problems[0]!.path !== '')) lines.push(`${where}: ${n} problem${n === 1 ? '' : 's'}`);
  return lines.join('\n') + '\n';
}

/** `poctd check-config [FILE] [--config FILE]`: the file either way, as `run --config` takes it. */
export function checkConfig(positional: string | undefined, options: { config?: unknown }): number {
  const flag = typeof options.config === 'string' ? options.config : undefined;
  if (positional !== undefined && flag !== undefined && positional !== flag) {
    throw new UsageError(`two config files given ("${positional}" and --config "${flag}"); name one`);
  }
  const file = flag ?? positional;
  if (!file) throw new UsageError('check-config needs a FILE (--config FILE)');
  // The same checks `run` makes before it starts anything.
  const config = loadConfigFile(file, daemonConfigOptions(drivers));
  process.stdout.write(`${file}: ok (${config.devices.length} device${config.devices.length === 1 ? '' : 's'})\n`);
  return 0;
}

