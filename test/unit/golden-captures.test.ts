/**
 * Golden captures. Every `test/fixtures/<driver>/<case>/` that holds a `capture.txt` or
 * `capture.bin` is decoded by its driver and compared with `expected.jsonl`, one ResultDraft per
 * line. The same bytes are also fed to every other registered driver, which must find no records.
 * The test also fails when a registered driver has no golden case, or a driver folder has no
 * README.md that says where the bytes came from. The files in `foreign-captures/` (devices no
 * driver speaks yet) go through every driver too, and must give nothing.
 *
 * `UPDATE_GOLDEN=1 npx vitest run test/unit/golden-captures.test.ts` rewrites the expected files.
 * Read the diff before committing it.
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { drivers, findDriver } from '../../drivers/index.ts';
import { captureFromBytes } from '../../src/driver-sdk/capture.ts';
import type { DecodeContext } from '../../src/driver-sdk/index.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const UPDATE = process.env.UPDATE_GOLDEN === '1';
const DEFAULT_TIMEZONE = 'Europe/Copenhagen';

interface GoldenCase {
  /** `<driver folder>/<case>` */
  name: string;
  folder: string;
  dir: string;
  driverId: string;
  capturePath: string;
  ctx: DecodeContext;
}

const isDir = (p: string): boolean => statSync(p).isDirectory();

function discover(): GoldenCase[] {
  if (!existsSync(FIXTURES)) return [];
  const cases: GoldenCase[] = [];
  for (const folder of readdirSync(FIXTURES).sort()) {
    const folderPath = join(FIXTURES, folder);
    if (!isDir(folderPath)) continue;
    for (const name of readdirSync(folderPath).sort()) {
      const dir = join(folderPath, name);
      if (!isDir(dir)) continue;
      const capture = ['capture.txt', 'capture.bin'].map((f) => join(dir, f)).find((p) => existsSync(p));
      if (!capture) continue; // not a golden case (other fixtures may live beside them)
      const meta = existsSync(join(dir, 'case.json'))
        ? (JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8')) as {
            driver?: string;
            timezone?: string;
            device_id?: string;
            options?: Record<string, unknown>;
          })
        : {};
      const driverId = meta.driver ?? folder;
      cases.push({
        name: `${folder}/${name}`,
        folder,
        dir,
        driverId,
        capturePath: capture,
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

const cases = discover();

/** A draft as it would travel: plain JSON, with no undefined, Buffer or Date left in it. */
const asJson = (v: unknown): unknown => JSON.parse(JSON.stringify(v));

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

  // Captures of devices that no driver speaks: every driver must find nothing in them.
  const foreignDir = join(FIXTURES, 'foreign-captures');
  const foreign = existsSync(foreignDir) ? readdirSync(foreignDir).filter((f) => f !== 'README.md').sort() : [];
  it('the foreign-captures folder is there', () => {
    expect(foreign.length).toBeGreaterThan(0);
  });
  describe.each(foreign)('foreign-captures/%s', (file) => {
    const bytes = readFileSync(join(foreignDir, file));
    for (const driver of drivers) {
      it(`gives no records when replayed through ${driver.id}`, () => {
        expect(driver.decode(captureFromBytes(bytes), { deviceId: 'foreign', timezone: DEFAULT_TIMEZONE }).drafts).toEqual([]);
      });
    }
  });

  describe.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const bytes = readFileSync(c.capturePath);

    it('decodes to expected.jsonl', () => {
      const driver = findDriver(c.driverId)!;
      const result = driver.decode(captureFromBytes(bytes), c.ctx);
      const drafts = result.drafts.map(asJson);
      const expectedPath = join(c.dir, 'expected.jsonl');
      if (UPDATE) {
        writeFileSync(expectedPath, drafts.map((d) => JSON.stringify(d)).join('\n') + (drafts.length ? '\n' : ''));
        return;
      }
      expect(existsSync(expectedPath), `${c.name}: expected.jsonl is missing (run with UPDATE_GOLDEN=1)`).toBe(true);
      const expected = readFileSync(expectedPath, 'utf8')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as unknown);
      // The JSON round trip must change nothing.
      expect(drafts).toEqual(result.drafts);
      for (let i = 0; i < Math.max(expected.length, drafts.length); i++) {
        expect(drafts[i], `${c.name}: record ${i + 1}`).toEqual(expected[i]);
      }
    });

    for (const other of drivers.filter((d) => d.id !== c.driverId)) {
      it(`gives no records when replayed through ${other.id}`, () => {
        // The case's device options are its own driver's, not the other's.
        const result = other.decode(captureFromBytes(bytes), { deviceId: c.ctx.deviceId, timezone: c.ctx.timezone });
        expect(result.drafts).toEqual([]);
      });
    }
  });
});
