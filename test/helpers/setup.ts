import { afterEach } from 'vitest';
import { takeStateProblems } from './fake-host.ts';

// Every device state a session reports in a unit test must be one its schema accepts: a status
// outside the closed set, or a field of another kind's block, fails the test that reported it.
afterEach(() => {
  const problems = takeStateProblems();
  if (problems.length > 0) throw new Error(`device states refused by poct.device-state/2:\n${problems.join('\n')}`);
});
