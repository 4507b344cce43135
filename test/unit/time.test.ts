import { describe, expect, it } from 'vitest';
import { flagAmbiguousDeviceTimes } from '../../src/records/build.ts';
import { clockSkewSeconds, localTimeAmbiguity, naiveToZoned, nowInZone } from '../../src/util/time.ts';
import { glucoseDraft } from '../helpers/records.ts';

describe('device local time', () => {
  it('makes naive meter time absolute with the zone offset in force', () => {
    expect(naiveToZoned('2015-03-21T16:45:24', 'Europe/Copenhagen')).toBe('2015-03-21T16:45:24+01:00');
    expect(naiveToZoned('2015-07-21T16:45:24', 'Europe/Copenhagen')).toBe('2015-07-21T16:45:24+02:00');
    expect(naiveToZoned('2015-07-21T16:45:24', 'America/New_York')).toBe('2015-07-21T16:45:24-04:00');
    expect(naiveToZoned('2015-07-21T16:45:24', 'Asia/Kolkata')).toBe('2015-07-21T16:45:24+05:30');
  });

  it('knows the repeated and the skipped hour of a DST change', () => {
    // Copenhagen 2025: 30 March 02:00 → 03:00 (skipped), 26 October 03:00 → 02:00 (repeated).
    expect(localTimeAmbiguity('2025-10-26T02:30:00', 'Europe/Copenhagen')).toBe('repeated');
    expect(localTimeAmbiguity('2025-03-30T02:30:00', 'Europe/Copenhagen')).toBe('skipped');
    for (const t of ['2025-10-26T01:59:59', '2025-10-26T03:00:00', '2025-03-30T01:59:59', '2025-03-30T03:00:00', '2025-06-01T12:00:00']) {
      expect(localTimeAmbiguity(t, 'Europe/Copenhagen'), t).toBeNull();
    }
    expect(localTimeAmbiguity('2025-10-26T02:30:00', 'UTC')).toBeNull();
    expect(localTimeAmbiguity('2025-11-02T01:30:00', 'America/New_York')).toBe('repeated');
    // The repeated hour takes the earlier (summer) offset; the wall clock text is kept.
    expect(naiveToZoned('2025-10-26T02:30:00', 'Europe/Copenhagen')).toBe('2025-10-26T02:30:00+02:00');
  });

  it('flags a record whose device time is ambiguous, and only that one', () => {
    const at = (time: string) => glucoseDraft(1, { device_time: time, flags: ['meal:before'] });
    const [repeated, skipped, plain] = flagAmbiguousDeviceTimes(
      [at('2025-10-26T02:30:00'), at('2025-03-30T02:15:00'), at('2025-10-26T04:00:00')],
      'Europe/Copenhagen',
    );
    expect(repeated!.flags).toEqual(['meal:before', 'device-time:repeated-hour']);
    expect(skipped!.flags).toEqual(['meal:before', 'device-time:skipped-hour']);
    expect(plain!.flags).toEqual(['meal:before']);
    expect(flagAmbiguousDeviceTimes([glucoseDraft(1, { device_time: null })], 'Europe/Copenhagen')[0]!.flags).toEqual([]);
  });

  it('clock skew is device minus host, in seconds', () => {
    const now = new Date('2025-06-01T10:00:00Z');
    expect(nowInZone('Europe/Copenhagen', now)).toBe('2025-06-01T12:00:00');
    expect(clockSkewSeconds('2025-06-01T12:21:00', 'Europe/Copenhagen', now)).toBe(1260);
  });
});
