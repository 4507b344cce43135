import { afterEach } from 'vitest';

/** Teardown steps a test registers (brokers, ptys, daemons, processes); run in reverse after it. */
export type Cleanups = Array<() => Promise<unknown>>;

/** A list whose steps run after each test of the calling file, pass or fail. */
export function useCleanups(): Cleanups {
  const cleanups: Cleanups = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  });
  return cleanups;
}
