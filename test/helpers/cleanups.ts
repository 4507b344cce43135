import { afterEach } from 'vitest';

/**
 * A teardown step. A lenient one (brokers, ptys, processes) may fail without failing the test, since
 * those are often already gone; a strict one's failure is the test's failure, as when the code under
 * test cannot stop cleanly.
 */
export type CleanupStep = (() => Promise<unknown>) & { readonly strict?: true };

/** Teardown steps a test registers (brokers, ptys, daemons, sessions); run in reverse after it. */
export type Cleanups = CleanupStep[];

/** Registers a step whose failure fails the test (after the other steps have still run). */
export function pushStrict(cleanups: Cleanups, step: () => Promise<unknown>): void {
  cleanups.push(Object.assign(() => step(), { strict: true as const }));
}

/** Empties the list and runs every step, newest first; then rethrows the first strict step's error. */
export async function runCleanups(cleanups: Cleanups): Promise<void> {
  let strictFailure: { error: unknown } | undefined;
  for (const step of cleanups.splice(0).reverse()) {
    try {
      await step();
    } catch (error) {
      if (step.strict === true) strictFailure ??= { error };
    }
  }
  if (strictFailure) throw strictFailure.error;
}

/** A list whose steps run after each test of the calling file, pass or fail. */
export function useCleanups(): Cleanups {
  const cleanups: Cleanups = [];
  afterEach(() => runCleanups(cleanups));
  return cleanups;
}
