import { defineConfig } from 'vitest/config';
import base from './vitest.config.ts';

/**
 * Vitest as Stryker runs it (`npm run test:mutation`): the unit tests only. The integration tests
 * start Mosquitto, socat and whole daemons for each test, which makes one mutant cost tens of
 * seconds; every safety module named in `stryker.config.mjs` has unit tests of its own.
 * (`mergeConfig` would append to `include`, not replace it.)
 */
export default defineConfig({
  ...base,
  test: { ...base.test, include: ['test/unit/**/*.test.ts'] },
});
