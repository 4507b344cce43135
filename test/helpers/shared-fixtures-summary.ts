/**
 * Vitest global setup: at the end of the run, lists by name every test that needed a shared file
 * it could not read (`shared-fixtures.ts`): skipped ones as "not run", and under
 * POCTD_REQUIRE_SHARED=1 the failed ones. A global setup rather than a reporter, so that it also
 * prints when the command line chooses its own reporters (as `.ci/run` does).
 */
import { relative } from 'node:path';
import type { TestProject } from 'vitest/node';
import { NEEDS_SHARED, REQUIRE_SHARED, sharedDirMissing } from './shared-fixtures.ts';

export default function setup(project: TestProject): () => void {
  return () => {
    const notRun: string[] = [];
    const failed: string[] = [];
    for (const module of project.vitest.state.getTestModules()) {
      const file = relative(project.config.root, module.moduleId);
      for (const test of module.children.allTests()) {
        if (!test.fullName.includes(NEEDS_SHARED)) continue;
        const state = test.result().state;
        if (state === 'skipped') notRun.push(`${file} > ${test.fullName}`);
        else if (state === 'failed') failed.push(`${file} > ${test.fullName}`);
      }
    }
    const lines: string[] = [];
    const why = sharedDirMissing() ? '../shared is absent beside the repository' : 'files of ../shared are missing';
    if (notRun.length > 0) {
      lines.push(`${notRun.length} tests not run because ${why} (each reads a file from it; POCTD_REQUIRE_SHARED=1 makes this a failure):`);
      lines.push(...notRun.map((n) => `  not run: ${n}`));
    }
    if (failed.length > 0) {
      lines.push(`${failed.length} tests failed because ${why} (each reads a file from it${REQUIRE_SHARED ? '; POCTD_REQUIRE_SHARED=1 requires them to run' : ''}):`);
      lines.push(...failed.map((n) => `  failed: ${n}`));
    }
    if (lines.length > 0) process.stdout.write(`\n${lines.join('\n')}\n`);
  };
}
