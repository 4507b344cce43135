import { parseArgs } from 'node:util';
import { drivers } from '../drivers/index.ts';
import { ConfigError, formatProblem, listenerIdentitiesOf, loadConfigFile } from '../src/config/load.ts';
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

export function checkConfig(args: string[]): number {
  const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
  const file = positionals[0];
  if (!file) throw new UsageError('check-config needs a FILE');
  const config = loadConfigFile(file, { knownDrivers: drivers.map((d) => d.id), listenerIdentities: listenerIdentitiesOf(drivers) });
  // What only the driver can tell of a device's options (a label template naming an unknown field).
  const optionProblems = config.devices.flatMap((device, i) =>
    (drivers.find((d) => d.id === device.driver)?.optionProblems?.(device) ?? []).map((p) => ({ path: `devices[${i}].${p.path}`, message: p.message })),
  );
  if (optionProblems.length > 0) throw new ConfigError(optionProblems, file);
  process.stdout.write(`${file}: ok (${config.devices.length} device${config.devices.length === 1 ? '' : 's'})\n`);
  return 0;
}

