/**
 * Golden captures. Every `test/fixtures/<driver>/<case>/` that holds a capture is decoded by its
 * driver and compared with `expected.jsonl`, one draft per line, of the record kind `case.json` names
 * (`"kind"`, default `result`); the decode must give no draft of any other kind. The capture is the case's own
 * `capture.txt` or `capture.bin` (bytes this project made), or it comes from `../shared/fixtures/`
 * (other projects' bytes, never copied here): `case.json` names the shared file
 * (`"shared_capture"`), or the shared files a `capture_recipe` module in the case folder builds it
 * from (`"shared_inputs"`, with the sha256 of the result in `"capture_sha256"`). Shared files are
 * read through `test/helpers/shared-fixtures.ts`, which checks their sha256; where `../shared` is
 * absent those cases are skipped by name (or fail, under POCTD_REQUIRE_SHARED=1).
 *
 * The same bytes are also fed to every other registered driver, which must find no records. The
 * test also fails when a registered driver has no golden case, or a driver folder has no README.md
 * that says where the bytes came from. The shared captures that no case names (devices no driver
 * speaks yet: a POCT1-A conversation, DICOM files, ZPL labels) go through every driver too, and
 * must give nothing.
 *
 * A case whose capture is a status conversation (a label printer's replies) also holds
 * `expected-state.json`: the device-state patch the decode must give.
 *
 * `UPDATE_GOLDEN=1 npx vitest run test/unit/golden-captures.test.ts` rewrites the expected files.
 * Read the diff before committing it.
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { drivers, findDriver } from '../../drivers/index.ts';
import { captureFromBytes } from '../../src/driver-sdk/capture.ts';
import type { DecodeContext, RecordDrafts } from '../../src/driver-sdk/index.ts';
import { eachDraft, kindByName, type RecordKindName } from '../../src/records/kinds.ts';
import { sha256Hex } from '../../src/records/ids.ts';
import { describeShared, SHARED_FIXTURE_NAMES, sharedFixture, type SharedFixture } from '../helpers/shared-fixtures.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const UPDATE = process.env.UPDATE_GOLDEN === '1';
const DEFAULT_TIMEZONE = 'Europe/Copenhagen';

interface CaseMeta {
  driver?: string;
  /** The record kind `expected.jsonl` holds drafts of (default `result`). */
  kind?: string;
  timezone?: string;
  device_id?: string;
  options?: Record<string, unknown>;
  /** The capture is this file under `../shared/fixtures/`, byte for byte. */
  shared_capture?: string;
  /** The capture is built by this module in the case folder (`buildCapture`) from `shared_inputs`. */
  capture_recipe?: string;
  shared_inputs?: string[];
  /** sha256 of the capture the recipe builds. */
  capture_sha256?: string;
}

/** A recipe module: builds a capture from the bytes of its shared inputs, in the order case.json lists them. */
interface CaptureRecipe {
  buildCapture(inputs: Buffer[]): Buffer;
}

interface GoldenCase {
  /** `<driver folder>/<case>` */
  name: string;
  folder: string;
  dir: string;
  driverId: string;
  /** The record kind its expected drafts are of. */
  kind: RecordKindName;
  /** The shared files the capture comes from (none for a capture stored here). */
  shared: SharedFixture[];
  /** The capture's bytes (read or built when first asked for, inside a test). */
  bytes: () => Buffer;
  /** For a recipe: the sha256 its capture must have. */
  builtSha256: string | null;
  ctx: DecodeContext;
}

const isDir = (p: string): boolean => statSync(p).isDirectory();

function once(read: () => Buffer): () => Buffer {
  let bytes: Buffer | undefined;
  return () => (bytes ??= read());
}

async function discover(): Promise<GoldenCase[]> {
  if (!existsSync(FIXTURES)) return [];
  const cases: GoldenCase[] = [];
  for (const folder of readdirSync(FIXTURES).sort()) {
    const folderPath = join(FIXTURES, folder);
    if (!isDir(folderPath)) continue;
    for (const name of readdirSync(folderPath).sort()) {
      const dir = join(folderPath, name);
      if (!isDir(dir)) continue;
      const meta: CaseMeta = existsSync(join(dir, 'case.json')) ? (JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8')) as CaseMeta) : {};
      const local = ['capture.txt', 'capture.bin'].map((f) => join(dir, f)).find((p) => existsSync(p));
      let shared: SharedFixture[] = [];
      let bytes: () => Buffer;
      if (meta.capture_recipe) {
        shared = (meta.shared_inputs ?? []).map(sharedFixture);
        const recipe = (await import(pathToFileURL(join(dir, meta.capture_recipe)).href)) as CaptureRecipe;
        const inputs = shared;
        bytes = once(() => recipe.buildCapture(inputs.map((f) => f.bytes())));
      } else if (meta.shared_capture) {
        const file = sharedFixture(meta.shared_capture);
        shared = [file];
        bytes = () => file.bytes();
      } else if (local) {
        bytes = once(() => readFileSync(local));
      } else {
        continue; // not a golden case (other fixtures may live beside them)
      }
      const driverId = meta.driver ?? folder;
      const kind = meta.kind ?? 'result';
      if (!kindByName(kind)) throw new Error(`${folder}/${name}/case.json: unknown record kind "${kind}"`);
      cases.push({
        name: `${folder}/${name}`,
        folder,
        dir,
        driverId,
        kind: kind as RecordKindName,
        shared,
        bytes,
        builtSha256: meta.capture_recipe ? (meta.capture_sha256 ?? null) : null,
        ctx: {
          deviceId: meta.device_id ?? `${driverId}-golden`,
          timezone: meta.timezone ?? DEFAULT_TIMEZONE,
          ...(meta.options ? { options: meta.options } : {}),
        },
      });
    }
  }
  return cases;
}

const cases = await discover();

/** A draft as it would travel: plain JSON, with no undefined, Buffer or Date left in it. */
const asJson = (v: unknown): unknown => JSON.parse(JSON.stringify(v));

/** Every draft of a decode, whatever its kind (eachDraft also refuses a key no kind has). */
const draftCount = (drafts: RecordDrafts): number => eachDraft(drafts).length;

/** The kinds a decode gave drafts of. */
const kindsGiven = (drafts: RecordDrafts): string[] => Object.entries(drafts).filter(([, list]) => (list ?? []).length > 0).map(([name]) => name);

describe('golden captures', () => {
  it('every registered driver has at least one golden case', () => {
    const covered = new Set(cases.map((c) => c.driverId));
    expect(drivers.map((d) => d.id).filter((id) => !covered.has(id))).toEqual([]);
  });

  it('every case names a registered driver, and every driver folder has a README.md', () => {
    for (const c of cases) {
      expect(findDriver(c.driverId), `${c.name}: no registered driver "${c.driverId}"`).toBeDefined();
      expect(existsSync(join(FIXTURES, c.folder, 'README.md')), `${c.folder}/README.md is missing`).toBe(true);
    }
  });

  it('no case holds a copy of a shared capture, and every recipe case names its inputs and result hash', () => {
    for (const c of cases) {
      if (c.shared.length === 0) continue;
      const copies = ['capture.txt', 'capture.bin'].filter((f) => existsSync(join(c.dir, f)));
      expect(copies, `${c.name}: its capture comes from ../shared, the repository keeps no copy`).toEqual([]);
    }
    for (const c of cases.filter((x) => x.builtSha256 !== null || existsSync(join(x.dir, 'capture-recipe.ts')))) {
      expect(c.shared.length, `${c.name}: a recipe needs its shared_inputs`).toBeGreaterThan(0);
      expect(c.builtSha256, `${c.name}: a recipe case gives capture_sha256`).toMatch(/^[0-9a-f]{64}$/);
    }
  });

  // Captures of devices that no driver speaks: the shared files no golden case reads. When a
  // driver for one is added, its case names the file and it leaves this list by itself.
  const named = new Set(cases.flatMap((c) => c.shared.map((f) => f.name)));
  const foreign = SHARED_FIXTURE_NAMES.filter((name) => !named.has(name)).map(sharedFixture);
  it('some shared captures are of devices no driver speaks, and each goes through every driver', () => {
    expect(foreign.length).toBeGreaterThan(0);
  });
  for (const file of foreign) {
    describeShared([file], `foreign capture ${file.name}`, () => {
      for (const driver of drivers) {
        it(`gives no records when replayed through ${driver.id}`, () => {
          expect(draftCount(driver.decode(captureFromBytes(file.bytes()), { deviceId: 'foreign', timezone: DEFAULT_TIMEZONE }).drafts)).toBe(0);
        });
      }
    });
  }

  for (const c of cases) {
    const body = (): void => {
      if (c.builtSha256 !== null) {
        const expectedSha = c.builtSha256;
        it('its recipe builds the documented capture from the shared bytes', () => {
          expect(sha256Hex(c.bytes())).toBe(expectedSha);
        });
      }

      it('decodes to expected.jsonl', () => {
        const driver = findDriver(c.driverId)!;
        const result = driver.decode(captureFromBytes(c.bytes()), c.ctx);
        // Keyed by kind, as a session commits them, so replay finalizes every kind a driver makes.
        expect(Array.isArray(result.drafts), `${c.name}: decode gives drafts keyed by record kind`).toBe(false);
        expect(kindsGiven(result.drafts).filter((k) => k !== c.kind), `${c.name}: drafts of a kind case.json does not name`).toEqual([]);
        const ofKind: readonly unknown[] = result.drafts[c.kind] ?? [];
        const drafts = ofKind.map(asJson);
        const expectedPath = join(c.dir, 'expected.jsonl');
        if (UPDATE) {
          writeFileSync(expectedPath, drafts.map((d) => JSON.stringify(d)).join('\n') + (drafts.length ? '\n' : ''));
          if (result.state !== undefined) writeFileSync(join(c.dir, 'expected-state.json'), JSON.stringify(result.state, null, 2) + '\n');
          return;
        }
        expect(existsSync(expectedPath), `${c.name}: expected.jsonl is missing (run with UPDATE_GOLDEN=1)`).toBe(true);
        const expected = readFileSync(expectedPath, 'utf8')
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map((l) => JSON.parse(l) as unknown);
        // The JSON round trip must change nothing.
        expect(drafts).toEqual(ofKind);
        // A status conversation (a printer's replies) is checked by the device state it gives.
        const statePath = join(c.dir, 'expected-state.json');
        if (existsSync(statePath)) {
          expect(asJson(result.state ?? null), `${c.name}: expected-state.json`).toEqual(JSON.parse(readFileSync(statePath, 'utf8')));
        }
        for (let i = 0; i < Math.max(expected.length, drafts.length); i++) {
          expect(drafts[i], `${c.name}: record ${i + 1}`).toEqual(expected[i]);
        }
      });

      for (const other of drivers.filter((d) => d.id !== c.driverId)) {
        it(`gives no records when replayed through ${other.id}`, () => {
          // The case's device options are its own driver's, not the other's.
          const result = other.decode(captureFromBytes(c.bytes()), { deviceId: c.ctx.deviceId, timezone: c.ctx.timezone });
          expect(draftCount(result.drafts)).toBe(0);
        });
      }
    };
    if (c.shared.length > 0) describeShared(c.shared, c.name, body);
    else describe(c.name, body);
  }
});
