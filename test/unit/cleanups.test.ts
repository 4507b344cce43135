import { describe, expect, it } from 'vitest';
import { pushStrict, runCleanups, type Cleanups } from '../helpers/cleanups.ts';

describe('runCleanups', () => {
  it('runs every step newest first and empties the list', async () => {
    const ran: string[] = [];
    const cleanups: Cleanups = [async () => ran.push('broker'), async () => ran.push('pty')];
    pushStrict(cleanups, async () => ran.push('session'));
    await runCleanups(cleanups);
    expect(ran).toEqual(['session', 'pty', 'broker']);
    expect(cleanups).toEqual([]);
  });

  it('a lenient step that fails, by rejecting or by throwing at once, fails nothing and the others still run', async () => {
    const ran: string[] = [];
    const cleanups: Cleanups = [
      async () => ran.push('first'),
      () => Promise.reject(new Error('broker already gone')),
      () => {
        throw new Error('pty already gone');
      },
      async () => ran.push('last'),
    ];
    await expect(runCleanups(cleanups)).resolves.toBeUndefined();
    expect(ran).toEqual(['last', 'first']);
  });

  it('a strict step that fails fails the run, with the first strict error, after every step has run', async () => {
    const ran: string[] = [];
    const cleanups: Cleanups = [async () => ran.push('broker')];
    pushStrict(cleanups, () => Promise.reject(new Error('older session stop failed')));
    cleanups.push(() => Promise.reject(new Error('pty already gone')));
    pushStrict(cleanups, () => Promise.reject(new Error('newer session stop failed')));
    cleanups.push(async () => ran.push('daemon'));
    await expect(runCleanups(cleanups)).rejects.toThrow('newer session stop failed');
    expect(ran).toEqual(['daemon', 'broker']);
    expect(cleanups).toEqual([]);
  });

  it('a strict step registers a wrapper, so the same function pushed plainly elsewhere stays lenient', async () => {
    const stop = (): Promise<void> => Promise.reject(new Error('stop failed'));
    const lenient: Cleanups = [stop];
    const strict: Cleanups = [];
    pushStrict(strict, stop);
    await expect(runCleanups(lenient)).resolves.toBeUndefined();
    await expect(runCleanups(strict)).rejects.toThrow('stop failed');
  });
});
