// Mutation testing of the modules that carry the design's safety rules (../shared/DESIGN.md,
// "Rules that keep data safe"). `npm run test:mutation` mutates all of them; one module at a time:
//   npm run test:mutation -- --mutate src/records/privacy.ts
//   STRYKER_MUTATE=src/protocols/astm/link.ts,src/protocols/astm/frame.ts npm run test:mutation
// A line range narrows a big file to its decision functions: `file.ts:100-150`.
// The README section "Mutation testing" has the scores and the equivalent mutants.
import { existsSync, mkdirSync, symlinkSync, lstatSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const tempDirName = '.stryker-tmp';

/** The safety modules, with the ranges that hold the rule where a file also holds other things. */
const SAFETY_MODULES = [
  // Rule 1 and 2: commit before "received", outbox marked only on PUBACK.
  'src/store/store.ts',
  'src/store/writer.ts',
  'src/extensions/record-publisher.ts',
  // The session host's commit path (sessionHost().commit) and the pushed-and-acknowledged base.
  'src/extensions/device-manager.ts:297-330',
  'src/driver-sdk/pushed-session.ts',
  // One finalize step (id, seq, DST flag, privacy) and the record-kind table.
  'src/records/finalize.ts',
  'src/records/kinds.ts',
  // ASTM link (ACK only after the commit) and frame checks; the Contour and LifeScan links.
  'src/protocols/astm/link.ts',
  'src/protocols/astm/frame.ts',
  'drivers/glucose/contour-next/session.ts',
  'drivers/glucose/lifescan-binary/session.ts',
  // Category / control / QC, HI/LO and unit decisions.
  'drivers/analyzers/astm/records.ts:38-235',
  'drivers/glucose/contour-next/records.ts:133-181',
  'drivers/glucose/lifescan-binary/records.ts:33-53',
  'drivers/glucose/onetouch-ultra2/records.ts:34-66',
  'drivers/urinalysis/clinitek-status/records.ts:19-40',
  'drivers/analytes/glucose.ts:130-229',
  'drivers/analytes/urine-strip.ts:420-612',
  // Privacy and log redaction, the embedded broker's auth.
  'src/records/privacy.ts',
  'src/logger.ts',
  'src/mqtt/embedded-broker.ts',
];

function fromEnv() {
  const list = process.env.STRYKER_MUTATE?.split(',').map((s) => s.trim()).filter(Boolean);
  return list && list.length > 0 ? list : undefined;
}

// Tests read the protocol captures at `../shared` relative to the working directory; Stryker runs
// them inside `.stryker-tmp/sandbox-*`, whose `..` is `.stryker-tmp`, so the captures are linked there.
const shared = resolve(root, '../shared');
const sharedLink = join(root, tempDirName, 'shared');
if (existsSync(shared)) {
  mkdirSync(join(root, tempDirName), { recursive: true });
  let linked = false;
  try {
    linked = lstatSync(sharedLink).isSymbolicLink();
  } catch {
    linked = false;
  }
  if (!linked) symlinkSync(shared, sharedLink);
}

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutation.config.ts', related: true },
  plugins: ['@stryker-mutator/vitest-runner'],
  coverageAnalysis: 'perTest',
  mutate: fromEnv() ?? SAFETY_MODULES,
  // The machine is shared: one test process, and a slow mutant is a timeout, not a stall.
  concurrency: 1,
  timeoutMS: 5_000,
  tempDirName,
  // Keep the folder (and the `shared` link in it); only the sandboxes inside are removed.
  cleanTempDir: true,
  reporters: ['clear-text', 'progress-append-only', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  clearTextReporter: { allowColor: false, logTests: false, reportScoreTable: true, reportMutants: true },
  thresholds: { high: 90, low: 70, break: null },
};
