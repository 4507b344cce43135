import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Checks after every test that each device state a FakeHost saw is valid (poct.device-state/2).
    setupFiles: ['test/helpers/setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration tests start Mosquitto and socat on fixed loopback ports; run files one by one.
    fileParallelism: false,
    // Lists the tests that could not read ../shared at the end of the run.
    globalSetup: ['test/helpers/shared-fixtures-summary.ts'],
  },
});
