import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { findDriver } from '../../drivers/index.ts';
import { captureFromBytes, captureToBytes } from '../../src/driver-sdk/capture.ts';
import type { ResultRecord } from '../../src/records/types.ts';
import { Store } from '../../src/store/store.ts';
import { tempDir } from '../helpers/daemon.ts';

/** `poctd results` / `poctd export` as a user runs them, on a store the real Store committed to. */
const repo = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const ULTRA2 = 'test/fixtures/onetouch-ultra2/simulator-session-mmol-control/capture.txt';
const URINE = 'test/fixtures/clinitek-status/simulator-send-all-en-crlf/capture.bin';
const KEY = 'a-site-wide-secret-key';

interface Finished {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

function poctd(args: string[]): Promise<Finished> {
  return new Promise((done) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('close', (code) => done({ code, stdout: Buffer.concat(out), stderr }));
  });
}

let db = '';
let committed: ResultRecord[] = [];

/** Two devices' downloads committed through the daemon's own store: a meter with a control run, a urine reader with patient ids. */
beforeAll(() => {
  db = join(tempDir(), 'poctd.db');
  const store = new Store(db);
  const commit = (file: string, driverId: string, deviceId: string, timezone: string): ResultRecord[] => {
    const capture = captureFromBytes(readFileSync(join(repo, file)));
    const ref = store.putCaptureSync(capture.kind, captureToBytes(capture));
    const decoded = findDriver(driverId)!.decode(capture, { deviceId, timezone });
    return store.commit({
      site: 'clinic-a', deviceId, driver: driverId, capture: ref, drafts: decoded.drafts, receivedAt: new Date('2026-12-04T10:00:00Z'),
      timezone, privacy: { patient_id: 'hash', hash_key: KEY },
    }).inserted as ResultRecord[];
  };
  committed = [...commit(ULTRA2, 'onetouch-ultra2', 'bench1-ultra2', 'Europe/Copenhagen'), ...commit(URINE, 'clinitek-status', 'urine-1', 'Europe/Madrid')];
  store.close();
  expect(committed.map((r) => r.category)).toContain('control');
  expect(committed.filter((r) => r.device.id === 'urine-1').length).toBeGreaterThan(2);
});

const jsonLines = (b: Buffer): ResultRecord[] => b.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as ResultRecord);

describe('poctd results', () => {
  it('--format jsonl prints every stored record exactly as committed, in seq order', async () => {
    const r = await poctd(['results', '--store', db, '--format', 'jsonl']);
    expect(r.code).toBe(0);
    expect(jsonLines(r.stdout)).toEqual(committed);
  });

  it('filters by device, category, seq range, LOINC and time, each alone and together', async () => {
    const seqs = async (...args: string[]): Promise<number[]> => jsonLines((await poctd(['results', '--store', db, '-f', 'jsonl', ...args])).stdout).map((r) => r.seq);
    const of = (keep: (r: ResultRecord) => boolean): number[] => committed.filter(keep).map((r) => r.seq);
    expect(await seqs('--device', 'urine-1')).toEqual(of((r) => r.device.id === 'urine-1'));
    expect(await seqs('--category', 'control')).toEqual(of((r) => r.category === 'control'));
    expect(await seqs('--category', 'control', '--category', 'patient', '--device', 'bench1-ultra2')).toEqual(of((r) => r.device.id === 'bench1-ultra2'));
    expect(await seqs('--seq', '2-4')).toEqual([2, 3, 4]);
    expect(await seqs('--seq', '3')).toEqual([3]);
    expect(await seqs('--seq', `${committed.length - 1}-`)).toEqual([committed.length - 1, committed.length]);
    const loinc = committed.find((r) => r.device.id === 'urine-1')!.observations.find((o) => o.loinc)!.loinc!;
    expect(await seqs('--loinc', loinc)).toEqual(of((r) => r.observations.some((o) => o.loinc === loinc)));
    // A time range compares instants: observed_at carries each device's own offset.
    const times = committed.map((r) => Date.parse(r.observed_at)).sort((a, b) => a - b);
    const middle = new Date(times[Math.floor(times.length / 2)]!);
    expect(await seqs('--since', middle.toISOString())).toEqual(of((r) => Date.parse(r.observed_at) >= middle.getTime()));
    expect(await seqs('--until', middle.toISOString())).toEqual(of((r) => Date.parse(r.observed_at) < middle.getTime()));
    expect(await seqs('--last', '2')).toEqual(committed.slice(-2).map((r) => r.seq));
    expect(await seqs('--limit', '2')).toEqual([1, 2]);
    const none = await poctd(['results', '--store', db, '--device', 'nobody']);
    expect(none.code).toBe(0);
    expect(none.stdout.length).toBe(0);
    expect(none.stderr).toMatch(/no results match/);
  });

  it('a table with one row per observation; CSV with a header and the stored (hashed) patient id', async () => {
    const table = (await poctd(['results', '--store', db, '--device', 'bench1-ultra2'])).stdout.toString().trimEnd().split('\n');
    expect(table[0]).toMatch(/^seq\s+observed at\s+device\s+category\s+analyte\s+loinc\s+value\s+unit\s+flags$/);
    const meter = committed.filter((r) => r.device.id === 'bench1-ultra2');
    expect(table).toHaveLength(1 + meter.reduce((n, r) => n + r.observations.length, 0));
    expect(table.some((l) => /\bcontrol\b/.test(l))).toBe(true);

    const csv = (await poctd(['results', '--store', db, '--format', 'csv', '--device', 'urine-1'])).stdout.toString();
    const rows = csv.trimEnd().split('\r\n');
    expect(rows[0]!.split(',').slice(0, 4)).toEqual(['seq', 'record_id', 'observed_at', 'received_at']);
    const urine = committed.filter((r) => r.device.id === 'urine-1');
    expect(rows).toHaveLength(1 + urine.reduce((n, r) => n + r.observations.length, 0));
    expect(csv).not.toMatch(/P-000\d/);
    const hashed = urine.find((r) => r.patient?.id)!.patient!.id!;
    expect(csv).toContain(hashed);
  });

  it('--format fhir: a FHIR R4 collection Bundle of Observations, LOINC and UCUM coded, control runs left out', async () => {
    const r = await poctd(['results', '--store', db, '--format', 'fhir']);
    expect(r.code).toBe(0);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a FHIR resource is read field by field here
    type Resource = Record<string, any>;
    const bundle = JSON.parse(r.stdout.toString()) as { resourceType: string; type: string; entry: Array<{ fullUrl: string; resource: Resource }> };
    expect(bundle.resourceType).toBe('Bundle');
    expect(bundle.type).toBe('collection');
    const patientObservations = committed.filter((x) => x.category === 'patient').reduce((n, x) => n + x.observations.length, 0);
    expect(bundle.entry).toHaveLength(patientObservations);
    expect(r.stderr).toMatch(/\d+ control\/QC\/calibration records? left out of the FHIR bundle/);
    for (const { fullUrl, resource } of bundle.entry) {
      expect(fullUrl).toMatch(/^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(resource.resourceType).toBe('Observation');
      expect(resource.status).toBe('final');
      expect(resource.id).toMatch(/^[A-Za-z0-9\-.]{1,64}$/);
      expect(resource.effectiveDateTime).toMatch(/(Z|[+-]\d{2}:\d{2})$/);
      expect(Boolean(resource.valueQuantity) || Boolean(resource.valueString) || Boolean(resource.dataAbsentReason)).toBe(true);
    }
    const glucose = bundle.entry.map((e) => e.resource).find((o) => o.code.coding.some((c: { system: string }) => c.system === 'http://loinc.org') && o.valueQuantity);
    const record = committed.find((x) => glucose!.identifier[0].value.startsWith(x.id))!;
    const obs = record.observations[Number(glucose!.identifier[0].value.split('/')[1]) - 1]!;
    expect(glucose!.code.coding[0]).toEqual({ system: 'http://loinc.org', code: obs.loinc, display: obs.name });
    expect(glucose!.valueQuantity).toMatchObject({ value: obs.value, unit: obs.unit, system: 'http://unitsofmeasure.org', code: obs.ucum });
    // Same store, same fullUrls: an export made twice can be reconciled.
    const again = JSON.parse((await poctd(['results', '--store', db, '--format', 'fhir'])).stdout.toString()) as typeof bundle;
    expect(again.entry.map((e) => e.fullUrl)).toEqual(bundle.entry.map((e) => e.fullUrl));
  });

  it('refuses what it cannot read with one line: a missing database, a bad filter, a bad format', async () => {
    const missing = await poctd(['results', '--store', join(tempDir(), 'none.db')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^poctd results: no database at .*none\.db/);
    for (const [args, message] of [
      [['--category', 'patients'], /--category must be one of patient, control/],
      [['--since', 'yesterday'], /--since expects a date/],
      [['--seq', '4-2-1'], /--seq expects N, N-M/],
      [['--loinc', 'glucose'], /--loinc expects a LOINC code/],
      [['--format', 'xml'], /--format must be one of table, jsonl, csv, fhir/],
    ] as const) {
      const r = await poctd(['results', '--store', db, ...args]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(r.stdout.length).toBe(0);
    }
  });
});

describe('poctd export', () => {
  it('writes the capture a record came from back to a file that poctd replay decodes to the same records', async () => {
    const record = committed.find((r) => r.device.id === 'urine-1')!;
    const file = join(tempDir(), 'export.bin');
    const r = await poctd(['export', '--store', db, record.raw.sha256.slice(0, 12), '-o', file]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`poctd replay --driver clinitek-status --device-id urine-1 ${file}`);
    expect(readFileSync(file)).toEqual(readFileSync(join(repo, URINE)));
    const config = join(tempDir(), 'poctd.yaml');
    writeFileSync(config, `site: clinic-a\nprivacy: { patient_id: hash, hash_key: ${KEY} }\n`);
    const replayed = await poctd(['replay', '--driver', 'clinitek-status', '--device-id', 'urine-1', '--timezone', 'Europe/Madrid', '--config', config, file]);
    // replay numbers its records from 1 and dates them now; everything else is what was stored.
    const comparable = (x: ResultRecord): unknown => ({ ...x, seq: null, received_at: null });
    expect(jsonLines(replayed.stdout).map(comparable)).toEqual(committed.filter((x) => x.device.id === 'urine-1').map(comparable));
  });

  it('--seq N exports the transcript a meter record came from, to standard output', async () => {
    const record = committed.find((r) => r.device.id === 'bench1-ultra2')!;
    const r = await poctd(['export', '--store', db, '--seq', String(record.seq)]);
    expect(r.code).toBe(0);
    expect(record.raw.kind).toBe('transcript');
    expect(r.stdout).toEqual(captureToBytes(captureFromBytes(readFileSync(join(repo, ULTRA2)))));
  });

  it('says what is wrong: no such capture, no such seq, neither or both named', async () => {
    const unknown = await poctd(['export', '--store', db, 'deadbeefdeadbeef']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no capture deadbeefdeadbeef/);
    const seq = await poctd(['export', '--store', db, '--seq', '9999']);
    expect(seq.code).toBe(1);
    expect(seq.stderr).toMatch(/no record with seq 9999/);
    const neither = await poctd(['export', '--store', db]);
    expect(neither.code).toBe(1);
    expect(neither.stderr).toMatch(/name the capture/);
  });
});
