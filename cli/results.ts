/**
 * `poctd results`: stored results out of the database, without the daemon or a broker, as a
 * table, JSON lines (the records as published), CSV (one row per observation) or a FHIR R4
 * Observation bundle. `poctd export`: the capture a record came from, back to a file that
 * `poctd replay` decodes.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { loadConfigFile, parseConfig } from '../src/config/load.ts';
import type { Observation, ResultRecord } from '../src/records/types.ts';
import { sha256Hex } from '../src/records/ids.ts';
import { ResultReader, type ResultQuery, type StoredCapture } from '../src/store/query.ts';
import { UsageError } from './command-line.ts';
import { FHIR_CATEGORIES, fhirBundle } from './results-fhir.ts';

export interface StoreOptions {
  config?: string;
  store?: string;
}

export interface ResultsOptions extends StoreOptions {
  device?: string[];
  category?: string[];
  since?: string;
  until?: string;
  seq?: string;
  loinc?: string[];
  limit?: string;
  last?: string;
  format?: string;
}

const FORMATS = ['table', 'jsonl', 'csv', 'fhir'] as const;
const CATEGORIES = ['patient', 'control', 'qc', 'calibration', 'proficiency'];

/** The database: `--store PATH`, else the config's `store.path`, else the default `./data/poctd.db`. */
export function storePath(options: StoreOptions): string {
  if (options.store !== undefined && options.config !== undefined) throw new UsageError('give --store or --config, not both');
  if (options.store !== undefined) return options.store;
  // The config's own checks (drivers, listeners) are not this command's business: only store.path is read.
  return (options.config !== undefined ? loadConfigFile(options.config) : parseConfig('')).store.path;
}

const UNITS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000 };

/** An ISO date or date-time (a date alone is local midnight), or `30m` / `24h` / `7d` before `now`. */
export function parseTime(text: string, option: string, now: Date): Date {
  const relative = /^(\d+)([mhd])$/.exec(text);
  if (relative) return new Date(now.getTime() - Number(relative[1]) * UNITS[relative[2]!]!);
  const withTime = /^\d{4}-\d{2}-\d{2}$/.test(text) ? `${text}T00:00:00` : text;
  const at = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$/.test(withTime) ? new Date(withTime) : new Date(NaN);
  if (Number.isNaN(at.getTime())) throw new UsageError(`${option} expects a date (2026-12-01), a date-time (2026-12-01T08:00, Z or an offset allowed) or an age (30m, 24h, 7d), got "${text}"`);
  return at;
}

/** `12`, `10-20`, `10-` or `-20`. */
export function parseSeqRange(text: string): { seqFrom?: number; seqTo?: number } {
  const m = /^(\d+)?(-)?(\d+)?$/.exec(text);
  if (!m || (m[1] === undefined && m[3] === undefined) || (m[2] === undefined && m[3] !== undefined && m[1] !== undefined)) {
    throw new UsageError(`--seq expects N, N-M, N- or -M, got "${text}"`);
  }
  if (m[2] === undefined) return { seqFrom: Number(m[1]), seqTo: Number(m[1]) };
  return { ...(m[1] !== undefined ? { seqFrom: Number(m[1]) } : {}), ...(m[3] !== undefined ? { seqTo: Number(m[3]) } : {}) };
}

function count(text: string | undefined, option: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new UsageError(`${option} expects a whole number >= 1, got "${text}"`);
  return Number(text);
}

export function queryOf(o: ResultsOptions, now: Date): ResultQuery {
  for (const c of o.category ?? []) if (!CATEGORIES.includes(c)) throw new UsageError(`--category must be one of ${CATEGORIES.join(', ')}, got "${c}"`);
  for (const l of o.loinc ?? []) if (!/^\d{1,7}-\d$/.test(l)) throw new UsageError(`--loinc expects a LOINC code such as 2345-7, got "${l}"`);
  const limit = count(o.limit, '--limit');
  const last = count(o.last, '--last');
  if (limit !== undefined && last !== undefined) throw new UsageError('give --limit (the first N) or --last (the newest N), not both');
  return {
    ...(o.device ? { devices: o.device } : {}),
    ...(o.category ? { categories: o.category } : {}),
    ...(o.since !== undefined ? { since: parseTime(o.since, '--since', now) } : {}),
    ...(o.until !== undefined ? { until: parseTime(o.until, '--until', now) } : {}),
    ...(o.seq !== undefined ? parseSeqRange(o.seq) : {}),
    ...(o.loinc ? { loinc: o.loinc } : {}),
    ...(limit !== undefined ? { limit } : {}),
    ...(last !== undefined ? { limit: last, newestFirst: true } : {}),
  };
}

/** `>= 300`, `> 600` (HI with its limit), `105`, or the device's text. */
function shownValue(o: Observation): string {
  const number = o.value ?? (o.comparator !== null && typeof o.limit === 'number' ? o.limit : null);
  if (number !== null) return `${o.comparator ? `${o.comparator} ` : ''}${number}`;
  return o.text ?? '';
}

const CSV_COLUMNS = [
  'seq', 'record_id', 'observed_at', 'received_at', 'site', 'device_id', 'driver', 'serial', 'category', 'patient_id',
  'specimen_type', 'code', 'name', 'loinc', 'comparator', 'value', 'limit', 'unit', 'ucum', 'text', 'flags', 'record_flags',
] as const;

function csvCell(v: unknown): string {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function csvRows(r: ResultRecord): string[] {
  return r.observations.map((o) =>
    [
      r.seq, r.id, r.observed_at, r.received_at, r.site, r.device.id, r.device.driver, r.device.serial, r.category, r.patient?.id,
      r.specimen.type, o.code, o.name, o.loinc, o.comparator, o.value, o.limit, o.unit, o.ucum, o.text, o.flags.join(' '), r.flags.join(' '),
    ].map(csvCell).join(','),
  );
}

function table(records: ResultRecord[]): string {
  const header = ['seq', 'observed at', 'device', 'category', 'analyte', 'loinc', 'value', 'unit', 'flags'];
  const rows = records.flatMap((r) =>
    r.observations.map((o) => [String(r.seq), r.observed_at, r.device.id, r.category, o.name || o.code, o.loinc ?? '', shownValue(o), o.unit ?? '', [...o.flags, ...r.flags].join(' ')]),
  );
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

export function results(options: ResultsOptions, now: Date = new Date()): number {
  const format = options.format ?? 'table';
  if (!(FORMATS as readonly string[]).includes(format)) throw new UsageError(`--format must be one of ${FORMATS.join(', ')}, got "${format}"`);
  const query = queryOf(options, now);
  const reader = openReader(options);
  try {
    let found = [...reader.results(query)];
    if (query.newestFirst) found = found.reverse();
    const out = process.stdout;
    if (format === 'jsonl') for (const r of found) out.write(JSON.stringify(r) + '\n');
    else if (format === 'csv') out.write([CSV_COLUMNS.join(','), ...found.flatMap(csvRows)].join('\r\n') + '\r\n');
    else if (format === 'fhir') {
      out.write(JSON.stringify(fhirBundle(found, now), null, 2) + '\n');
      // A control or QC run is not a patient's result: it never goes into a clinical bundle.
      const left = found.filter((r) => !FHIR_CATEGORIES.has(r.category)).length;
      if (left > 0) process.stderr.write(`poctd results: ${left} control/QC/calibration record${left === 1 ? '' : 's'} left out of the FHIR bundle (patient results only)\n`);
    } else if (found.length > 0) out.write(table(found));
    if (found.length === 0) process.stderr.write(`poctd results: no results match in ${reader.path}\n`);
    return 0;
  } finally {
    reader.close();
  }
}

function openReader(options: StoreOptions): ResultReader {
  try {
    return new ResultReader(storePath(options));
  } catch (error) {
    if (error instanceof UsageError || (error as Error).name === 'ConfigError') throw error;
    throw new UsageError((error as Error).message);
  }
}

export interface ExportOptions extends StoreOptions {
  seq?: string;
  output?: string;
}

/** `poctd export SHA256 | --seq N [-o FILE]`: the capture's bytes as stored, for `poctd replay`. */
export function exportCapture(ref: string | undefined, options: ExportOptions): number {
  if ((ref === undefined) === (options.seq === undefined)) throw new UsageError('name the capture: its sha256 (a prefix of 8+ hex digits will do) or --seq N of a record decoded from it');
  const reader = openReader(options);
  try {
    let capture: StoredCapture;
    try {
      capture = ref !== undefined ? reader.capture(ref) : reader.captureOfSeq(count(options.seq, '--seq')!);
    } catch (error) {
      if (error instanceof UsageError) throw error;
      process.stderr.write(`poctd export: ${(error as Error).message}\n`);
      return 1;
    }
    const note = `poctd export: capture ${capture.sha256} (${capture.kind}, ${capture.size} bytes) from ${capture.device_id} (driver ${capture.driver}), received ${capture.received_at}`;
    try {
      const bytes = readBlob(capture);
      if (options.output === undefined || options.output === '-') {
        writeFileSync(1, bytes);
      } else {
        writeFileSync(options.output, bytes);
        process.stderr.write(`${note}\npoctd export: written to ${options.output}; decode it again with: poctd replay --driver ${capture.driver} --device-id ${capture.device_id} ${options.output}\n`);
      }
    } catch (error) {
      process.stderr.write(`poctd export: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? `the blob ${capture.path} is missing` : (error as Error).message}\n`);
      return 1;
    }
    return 0;
  } finally {
    reader.close();
  }
}

/** The blob's bytes, checked against the name they are kept under (a damaged file is said, not exported). */
function readBlob(capture: StoredCapture): Buffer {
  // Not BlobStore.read: opening a BlobStore makes its directories, and this command only reads.
  const bytes = readFileSync(capture.path);
  const actual = sha256Hex(bytes);
  if (actual !== capture.sha256) throw new Error(`the blob ${capture.path} is damaged: its bytes hash to ${actual}`);
  return bytes;
}
