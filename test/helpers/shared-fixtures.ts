/**
 * Captures from other public projects, read from `../shared/fixtures/` beside the repository root.
 *
 * Their bytes are other projects' data, so the repository holds no copy of them: every test that
 * needs one reads it through this module. Each file is pinned by its sha256, so a changed file
 * fails the test that reads it instead of moving the expected records quietly.
 *
 * Where `../shared` (or one of its files) is absent, a test declared with `itShared` /
 * `describeShared` is skipped and its name says what it needs; `shared-fixtures-summary.ts` lists
 * them at the end of the run. With `POCTD_REQUIRE_SHARED=1` (CI) such a test runs and fails,
 * naming the missing file.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeEach, describe, it } from 'vitest';
import { sha256Hex } from '../../src/records/ids.ts';

export const REPO_ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const SHARED_DIR = resolve(REPO_ROOT, '..', 'shared');
const SHARED_FIXTURES = join(SHARED_DIR, 'fixtures');

/** True when there is no `../shared` beside the repository at all. */
export const sharedDirMissing = (): boolean => !existsSync(SHARED_DIR);

/** `POCTD_REQUIRE_SHARED=1`: a test that cannot read its shared file fails instead of being skipped. */
export const REQUIRE_SHARED = process.env.POCTD_REQUIRE_SHARED === '1';

/** Every test name that needs a missing shared file carries this; the summary finds them by it. */
export const NEEDS_SHARED = 'needs ../shared';

/**
 * The shared files the tests read (paths under `../shared/fixtures/`), with the sha256 of the bytes
 * the expected records were checked against. Sources: `../shared/fixtures/README.md`.
 */
const SHA256: Readonly<Record<string, string>> = {
  'astm/abbott-afinion2.bin': 'c66a014d85daf294c0ee167a933cee0371bd347dc7e4bf188c19b4f15869b55d',
  'astm/horiba-pentra-xlr.bin': 'dececf00ff26ea2f34d9d3aa4f9da156e1906a1f2b8ad4f59dbf63f90f6dc694',
  'astm/roche-cobas-c111.bin': 'a6393cac0a54184871372171bfed94e5b506069b3b89a0d775868e513c4bc62b',
  'astm/siemens-dca-vantage.bin': 'b07cb4eed5db07e13231b2904c44374b17b8fde38fde16bf7274d4752a48e11e',
  'dicom/synthetic-cine.dump': 'fa9af98ad0e189ba7d356acc66ec40902fe17b89671526a9ab8fb5a8d144dce0',
  'dicom/synthetic-ob-sr.dcm': '026ea92cb060f23bce64bcac1ded31fb37e082c51aa09880b52469b1b6f7d606',
  'dicom/synthetic-us-jpeg.dcm': 'db7a09287ce87480e74e4fd19c88278633d50efd375cf07537249fe019dc5ca1',
  'glucose/contour-next-header-frame.bin': '73b8449376ec936a74746ed4d7a6ad4f82d198279593f0cff99939fab600f0ef',
  'glucose/contour-next-result-frame.bin': 'caf5a0a527072b7510c2731c06c1749039d691b2cae88962028063980d2c7fff',
  'glucose/freestyle-insulinx-session.txt': 'b07aeb15c5675e30eee236f8d05fbc0f21f3f835c31902288c5e4840d521d0d9',
  'glucose/onetouch-ultra2-dmp-reply.txt': 'fd8061f556aaf0d5832375f00753e0769554dfd6c3ffa54edd7e382e95b853b2',
  'glucose/onetouch-ultraeasy-session.txt': '06c08e7a565f700db1ed0a0918f70b8c903777de79b291f5243374604d26121f',
  'poct1a/siemens-dca-vantage-conversation.txt': '81c7b154e9cd5d06e51366891bf5ac850e48f99907c74bdbc893059a453f4e8e',
  'urinalysis/77elektronika-lup2-urised.txt': 'effd7900c5ceb0614cadc7c4f48bfc6fbf078886bd2e79a417272b512edb0054',
  'urinalysis/clinitek-status-samples.txt': 'e73ebc8183edd513c7f0c39c57a5c5fa4b0461177ba359b51f4b729e4bea19d6',
  'urinalysis/clinitek50-packets.txt': 'b6e3aa4b3fcfb70ca1be80d6ae0cae0941c25952bcc1bb919dd367436d03a0df',
  'zpl/specimen_203.png': 'cbd75089a2b5e490bf45907c527bb42af3403ab3e111eef0000ed7b346a97acf',
  'zpl/specimen_203.zpl': '285604fbcff6a2608b35e98fc41618511e712d742f7d2aad7f8e6816f179047f',
  'zpl/specimen_300.png': 'be677ee65543b5560bf14c2e489fb2523bb2d2ca2534e343c52138aea5e12b92',
};

/** Every shared file the tests know, by its path under `../shared/fixtures/`. */
export const SHARED_FIXTURE_NAMES: readonly string[] = Object.keys(SHA256);

export interface SharedFixture {
  /** The path under `../shared/fixtures/`, e.g. `astm/roche-cobas-c111.bin`. */
  readonly name: string;
  readonly sha256: string;
  /** The path from the repository root (`../shared/fixtures/…`), as a command run there names it. */
  readonly fromRepo: string;
  readonly present: boolean;
  /** Why it cannot be read (null when present). */
  readonly missingReason: string | null;
  /** The bytes, checked against `sha256`; throws when the file is absent or its bytes differ. */
  bytes(): Buffer;
  /**
   * For constants built when a test file loads: the bytes, or an empty buffer when the file is
   * absent or changed. Only tests declared with `itShared`/`describeShared` may use them: those
   * call `bytes()` before their body runs, so they skip or fail with the reason.
   */
  bytesOrEmpty(): Buffer;
}

const known = new Map<string, SharedFixture>();

export function sharedFixture(name: string): SharedFixture {
  const existing = known.get(name);
  if (existing) return existing;
  const sha256 = SHA256[name];
  if (!sha256) throw new Error(`${name}: not a known shared fixture (add it with its sha256 to test/helpers/shared-fixtures.ts)`);
  const path = join(SHARED_FIXTURES, name);
  const fromRepo = relative(REPO_ROOT, path);
  const present = existsSync(path);
  const missingReason = present
    ? null
    : existsSync(SHARED_DIR)
      ? `${fromRepo} is missing`
      : `../shared is absent beside the repository (${fromRepo})`;
  let cached: Buffer | undefined;
  const fixture: SharedFixture = {
    name,
    sha256,
    fromRepo,
    present,
    missingReason,
    bytes() {
      if (cached) return cached;
      if (!present) throw new Error(`${NEEDS_SHARED}: ${missingReason}${REQUIRE_SHARED ? ' (POCTD_REQUIRE_SHARED=1: it must run)' : ''}`);
      const bytes = readFileSync(path);
      const actual = sha256Hex(bytes);
      if (actual !== sha256) {
        throw new Error(`${fromRepo} changed: sha256 ${actual}, the tests were checked against ${sha256}; never edit a shared capture`);
      }
      cached = bytes;
      return bytes;
    },
    bytesOrEmpty() {
      try {
        return fixture.bytes();
      } catch {
        return Buffer.alloc(0); // the test that uses it calls bytes() first and fails with the reason
      }
    },
  };
  known.set(name, fixture);
  return fixture;
}

/** The name suffix of a test whose shared files are missing ('' when they are all there). */
export function sharedNeedsSuffix(fixtures: readonly SharedFixture[]): string {
  const missing = fixtures.filter((f) => !f.present);
  return missing.length === 0 ? '' : ` (${NEEDS_SHARED}: ${missing.map((f) => f.name).join(', ')})`;
}

/** Run only when the shared files are there; skipped (or, under REQUIRE_SHARED, failing) otherwise. */
const runnable = (fixtures: readonly SharedFixture[]): boolean => REQUIRE_SHARED || fixtures.every((f) => f.present);

/** Checks every file (presence and sha256) before the body runs, so a body never sees an empty placeholder. */
function checked<A extends unknown[], R>(fixtures: readonly SharedFixture[], fn: (...args: A) => R): (...args: A) => R {
  return (...args: A) => {
    for (const f of fixtures) f.bytes();
    return fn(...args);
  };
}

/** `it` for a test that reads shared files. */
export function itShared(fixtures: readonly SharedFixture[], name: string, fn: () => unknown, timeout?: number): void {
  const title = name + sharedNeedsSuffix(fixtures);
  if (runnable(fixtures)) it(title, checked(fixtures, fn), timeout);
  else it.skip(title, fn);
}

/**
 * `describe` for a block whose every test reads shared files; each test checks them first. The
 * body runs at collection even when skipped: build constants there with `bytesOrEmpty()`.
 */
export function describeShared(fixtures: readonly SharedFixture[], name: string, body: () => void): void {
  const title = name + sharedNeedsSuffix(fixtures);
  if (!runnable(fixtures)) {
    describe.skip(title, body);
    return;
  }
  describe(title, () => {
    beforeEach(() => {
      for (const f of fixtures) f.bytes();
    });
    body();
  });
}
