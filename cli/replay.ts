import { readFileSync } from 'node:fs';
import { drivers, findDriver } from '../drivers/index.ts';
import { captureFromBytes } from '../src/driver-sdk/capture.ts';
import type { Capture, DecodeResult } from '../src/driver-sdk/index.ts';
import { captureToBytes } from '../src/driver-sdk/capture.ts';
import { loadConfigFile } from '../src/config/load.ts';
import { finalize } from '../src/records/finalize.ts';
import { sha256Hex } from '../src/records/ids.ts';
import { eachDraft } from '../src/records/kinds.ts';
import { resolvePrivacy } from '../src/records/privacy.ts';
import { assertTimeZone, hostTimeZone } from '../src/util/time.ts';
import { parseOption, UsageError } from './command-line.ts';

const knownDrivers = (): string[] => drivers.map((d) => d.id);

export interface ReplayOptions {
  driver?: string;
  config?: string;
  timezone?: string;
  deviceId?: string;
  site?: string;
  option?: string[];
}

export async function replay(file: string | undefined, values: ReplayOptions): Promise<number> {
  const config = values.config ? loadConfigFile(values.config, { knownDrivers: knownDrivers() }) : undefined;
  const configured = config?.devices.find((d) => d.id === values.deviceId);
  const driverId = values.driver ?? configured?.driver;
  if (!driverId) throw new UsageError('replay needs --driver ID (or --config and the --device-id of a configured device)');
  // The configured device's options first, then what the command line says on top.
  const options: Record<string, unknown> = { ...(configured?.options ?? {}) };
  for (const pair of values.option ?? []) {
    try {
      const [key, value] = parseOption(pair);
      options[key] = value;
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  const driver = findDriver(driverId);
  if (!driver) throw new UsageError(`unknown driver "${driverId}" (known: ${knownDrivers().join(', ')})`);
  if (!file) throw new UsageError('replay needs a FILE, or - for standard input');
  let bytes: Buffer;
  try {
    bytes = file === '-' ? readFileSync(0) : readFileSync(file);
  } catch (error) {
    process.stderr.write(`poctd replay: cannot read ${file}: ${(error as Error).message}\n`);
    return 1;
  }
  const timezone = values.timezone ?? configured?.timezone ?? config?.timezone ?? hostTimeZone();
  try {
    assertTimeZone(timezone);
  } catch {
    throw new UsageError(`unknown time zone "${timezone}" (an IANA name such as Europe/Copenhagen)`);
  }
  const source = file === '-' ? 'standard input' : file;
  let capture: Capture;
  try {
    capture = captureFromBytes(bytes);
  } catch (error) {
    // It looked like a transcript (`H <hex>` / `D <hex>` lines) but is not a valid one.
    process.stderr.write(`poctd replay: ${source}: not a valid transcript: ${(error as Error).message}\n`);
    return 2;
  }
  let result: DecodeResult;
  try {
    // The device's options as its config has them (e.g. date_order), so the capture decodes as it did live.
    result = driver.decode(capture, { deviceId: values.deviceId ?? driver.id, timezone, options });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  // The daemon's own finalize, so the lines are what it would publish. Without a config (or with
  // `hash` and no `privacy.hash_key`: the daemon's key is in its database) patient ids are omitted,
  // never printed clear.
  const privacy = resolvePrivacy(config?.privacy);
  if (config && config.privacy.patient_id === 'hash' && privacy.policy === 'omit') {
    process.stderr.write(`poctd replay: patient ids omitted: ${values.config} hashes them with its database's key (set privacy.hash_key to replay them alike)\n`);
  }
  const stored = captureToBytes(capture);
  const raw = { sha256: sha256Hex(stored), size: stored.length, kind: capture.kind };
  const receivedAt = new Date().toISOString();
  const site = values.site ?? config?.site ?? 'replay';
  // Every kind the driver made, in the order the store gives them seqs; the kind table, not this
  // command, knows each kind's id, privacy fields and record shape.
  const drafts = eachDraft(result.drafts);
  drafts.forEach(({ kind, draft }, i) => {
    const record = finalize(kind, draft, { seq: i + 1, site, receivedAt, raw, timezone, privacy });
    process.stdout.write(JSON.stringify(record) + '\n');
  });
  // Reasons and sizes only: the refused bytes may hold patient data and stay out of the terminal.
  // One line per distinct reason, with how often and how many bytes: a binary file fed to a
  // text protocol's driver is thousands of garbage chunks, one problem.
  for (const line of summarizeIssues(result.issues)) process.stderr.write(`poctd replay: ${source}: ${driver.id}: ${line}\n`);
  if (drafts.length === 0) {
    process.stderr.write(
      `poctd replay: ${source} holds no ${driver.id} records` +
        (result.issues.length ? ` (${plural(issueTotal(result.issues), 'problem')} above)` : '') +
        '\n',
    );
    return 2;
  }
  if (result.issues.length > 0) {
    process.stderr.write(`poctd replay: ${source}: ${plural(drafts.length, 'record')} decoded, ${plural(issueTotal(result.issues), 'problem')} above\n`);
    return 3;
  }
  return 0;
}


const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/**
 * `bad-checksum (3 times, 120 bytes) (first at byte 310; frame 2)`: the driver's problems grouped
 * by their code (the reason up to its parenthesised place), in first-seen order; a code seen once
 * keeps its whole text, place included.
 */
export function summarizeIssues(issues: readonly { reason: string; count?: number; bytes?: Uint8Array }[]): string[] {
  const byCode = new Map<string, { first: string; count: number; bytes: number; sized: boolean }>();
  for (const issue of issues) {
    const code = issueCode(issue.reason);
    const entry = byCode.get(code) ?? { first: issue.reason, count: 0, bytes: 0, sized: false };
    entry.count += issue.count ?? 1;
    if (issue.bytes) {
      entry.bytes += issue.bytes.length;
      entry.sized = true;
    }
    byCode.set(code, entry);
  }
  return [...byCode].map(([code, { first, count, bytes, sized }]) => {
    const size = sized ? plural(bytes, 'byte') : undefined;
    if (count === 1) return size ? `${first} (${size})` : first;
    const where = first.length > code.length ? ` (first ${first.slice(code.length).trim().replace(/^\(|\)$/g, '')})` : '';
    return `${code} (${[`${count} times`, ...(size ? [size] : [])].join(', ')})${where}`;
  });
}

/** How many problems the issues stand for (a collapsed run counts as each of its problems). */
export function issueTotal(issues: readonly { count?: number }[]): number {
  return issues.reduce((n, i) => n + (i.count ?? 1), 0);
}

function issueCode(reason: string): string {
  const paren = reason.indexOf(' (');
  return paren < 0 ? reason : reason.slice(0, paren);
}

