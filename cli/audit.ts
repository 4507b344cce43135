import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { drivers } from '../drivers/index.ts';
import { listenerIdentitiesOf, loadConfigFile, parseConfig } from '../src/config/load.ts';
import { ResultReader } from '../src/store/query.ts';
import type { AuditRow } from '../src/store/requests.ts';
import { UsageError } from './command-line.ts';
import type { CommandIo } from './user.ts';

function line(row: AuditRow): string {
  const outcome = row.status === 'ok' ? 'ok' : `error: ${typeof row.detail === 'string' ? row.detail : JSON.stringify(row.detail)}`;
  const params = row.params && typeof row.params === 'object' && Object.keys(row.params).length > 0 ? ` ${JSON.stringify(row.params)}` : '';
  const tx = row.transaction === null ? '' : ` transaction=${JSON.stringify(row.transaction)}`;
  return `${row.at}  ${row.requested_by ?? '(unknown)'}  ${row.device_id ?? 'bridge'}  ${row.verb}${params}  ${outcome}${tx}`;
}

/**
 * `poctd audit [--config FILE] [--since ISO] [--json]`: who asked which device or the bridge for
 * what, when, and how it went, oldest first. Params are as the audit keeps them (patient data
 * already omitted when they were written).
 */
export function auditCommand(args: string[], io: Pick<CommandIo, 'stdout' | 'stderr'> = process): number {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, since: { type: 'string' }, json: { type: 'boolean' } } });
  const config = values.config
    ? loadConfigFile(values.config, { knownDrivers: drivers.map((d) => d.id), listenerIdentities: listenerIdentitiesOf(drivers) })
    : parseConfig('', { knownDrivers: drivers.map((d) => d.id) });
  let since: string | undefined;
  if (values.since !== undefined) {
    const t = Date.parse(values.since);
    if (Number.isNaN(t)) throw new UsageError(`audit: --since "${values.since}" is not a date (e.g. 2026-12-01 or 2026-12-01T08:00:00Z)`);
    since = new Date(t).toISOString();
  }
  if (!existsSync(config.store.path)) {
    io.stderr.write(`poctd audit: no database at ${config.store.path} (store.path)\n`);
    return 1;
  }
  // Read-only, as `poctd results`: never migrates or writes the database a running daemon holds.
  let store: ResultReader;
  try {
    store = new ResultReader(config.store.path);
  } catch (error) {
    io.stderr.write(`poctd audit: ${(error as Error).message}\n`);
    return 1;
  }
  try {
    for (const row of store.auditRows()) {
      if (since !== undefined && row.at < since) continue;
      io.stdout.write(values.json ? `${JSON.stringify(row)}\n` : `${line(row)}\n`);
    }
  } finally {
    store.close();
  }
  return 0;
}
