import { describe, expect, it } from 'vitest';
import { flagAmbiguousDeviceTimes } from '../../src/records/build.ts';
import { clockSkewSeconds, isMeterNaiveTime, isNaiveTime, localTimeAmbiguity, meterNaiveTime, naiveFromFields, naiveToZoned, nowInZone } from '../../src/util/time.ts';
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

  it('reads a meter\'s date fields (2-digit year) as naive local time, and refuses a time that does not exist', () => {
    expect(meterNaiveTime(15, 3, 21, 16, 45, 24)).toBe('2015-03-21T16:45:24');
    expect(meterNaiveTime(0, 1, 1, 0, 0)).toBe('2000-01-01T00:00:00');
    expect(meterNaiveTime(99, 12, 31, 23, 59, 59)).toBe('2099-12-31T23:59:59');
    expect(meterNaiveTime(24, 2, 29, 12, 0)).toBe('2024-02-29T12:00:00');
    const refused: [number, number, number, number, number, number][] = [
      [26, 2, 30, 12, 0, 0], // 30 February
      [25, 2, 29, 12, 0, 0], // 29 February of a common year
      [26, 4, 31, 12, 0, 0],
      [26, 3, 10, 24, 0, 0], // hour 24
      [26, 3, 10, 12, 60, 0],
      [26, 3, 10, 12, 0, 60],
      [26, 0, 10, 12, 0, 0],
      [26, 13, 10, 12, 0, 0],
      [26, 3, 0, 12, 0, 0],
      [100, 3, 10, 12, 0, 0], // not a 2-digit year
      [255, 255, 255, 255, 255, 0], // a clock that lost power
      [26, 3, 10, -1, 0, 0],
      [26, 3, 10.5, 12, 0, 0],
    ];
    for (const f of refused) expect(meterNaiveTime(...f), f.join(',')).toBeNull();
  });
  it('reads full-year date fields as naive local time, and refuses a time that does not exist', () => {
    expect(naiveFromFields(2024, 2, 29, 23, 59, 59)).toBe('2024-02-29T23:59:59');
    expect(naiveFromFields(1997, 3, 3, 7, 5, 0)).toBe('1997-03-03T07:05:00');
    expect(naiveFromFields(2000, 2, 29, 0, 0, 0)).toBe('2000-02-29T00:00:00');
    // Years below 1000 keep four digits and the Gregorian leap rule (year 0 is a leap year, 1900 is not).
    expect(naiveFromFields(42, 12, 31, 1, 2, 3)).toBe('0042-12-31T01:02:03');
    expect(naiveFromFields(0, 2, 29, 0, 0, 0)).toBe('0000-02-29T00:00:00');
    const refused: [number, number, number, number, number, number][] = [
      [2023, 2, 29, 12, 0, 0],
      [1900, 2, 29, 12, 0, 0],
      [2023, 13, 1, 12, 0, 0],
      [2023, 0, 1, 12, 0, 0],
      [2023, 4, 31, 12, 0, 0],
      [2023, 4, 0, 12, 0, 0],
      [2023, 4, 30, 24, 0, 0],
      [2023, 4, 30, 12, 60, 0],
      [2023, 4, 30, 12, 0, 60],
      [10000, 1, 1, 0, 0, 0],
      [-1, 1, 1, 0, 0, 0],
      [2023, 4, 30, 12, 0, 0.5],
      [2023, 4, 30, Number.NaN, 0, 0],
    ];
    for (const f of refused) expect(naiveFromFields(...f), f.join(',')).toBeNull();
  });

  it('tells a naive time text that names a real time from one that only has its shape', () => {
    expect(isNaiveTime('2024-02-29T10:00:00')).toBe(true);
    expect(isNaiveTime('2024-12-31T23:59:59')).toBe(true);
    for (const t of ['2024-02-30T10:00:00', '2023-02-29T10:00:00', '2024-04-31T10:00:00', '2024-03-01T24:00:00', '2024-13-01T10:00:00', '2024-03-01T10:00', '2024-03-01 10:00:00', '']) {
      expect(isNaiveTime(t), t).toBe(false);
    }
  });

  it('tells a naive time a meter with a 2-digit year can hold: real, and within 2000–2099', () => {
    for (const t of ['2000-01-01T00:00:00', '2024-02-29T10:00:00', '2099-12-31T23:59:59']) expect(isMeterNaiveTime(t), t).toBe(true);
    for (const t of ['1999-12-31T23:59:59', '2100-01-01T00:00:00', '0020-01-01T00:00:00', '2024-02-30T10:00:00', '2024-03-01T24:00:00', '2024-03-01 10:00:00', '20', '']) {
      expect(isMeterNaiveTime(t), t).toBe(false);
    }
  });
});
