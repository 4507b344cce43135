import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration tests start Mosquitto and socat on fixed loopback ports; run files one by one.
    fileParallelism: false,
    // Lists the tests that could not read ../shared at the end of the run.
    globalSetup: ['test/helpers/shared-fixtures-summary.ts'],
  },
});
