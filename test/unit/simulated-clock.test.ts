import { describe, expect, it } from 'vitest';
import { SimulatedClock } from '../../src/driver-sdk/simulated-clock.ts';
import { hostTimeZone, naiveToZoned } from '../../src/util/time.ts';

const NOW = new Date('2025-06-01T10:00:00Z');

describe('SimulatedClock', () => {
  it('reads the true time plus the offset as naive time in the meter zone', () => {
    const clock = new SimulatedClock({ clock_offset_s: 1260, timezone: 'Europe/Copenhagen', now: () => NOW });
    expect(clock.read()).toBe('2025-06-01T12:21:00');
    expect(new SimulatedClock({ timezone: 'America/New_York', now: () => NOW }).read()).toBe('2025-06-01T06:00:00');
  });

  it('a set moves the offset so the clock reads the time set, and keeps running from there', () => {
    let now = NOW;
    const clock = new SimulatedClock({ clock_offset_s: -7200, timezone: 'Europe/Copenhagen', now: () => now });
    clock.set('2025-06-01T12:00:30');
    expect(clock.offsetS).toBe(30);
    expect(clock.read()).toBe('2025-06-01T12:00:30');
    now = new Date(NOW.getTime() + 90_000);
    expect(clock.read()).toBe('2025-06-01T12:02:00');
  });

  it('a set date keeps the time of day to the second; a set time keeps the date and zeroes the seconds', () => {
    const clock = new SimulatedClock({ timezone: 'Europe/Copenhagen', now: () => NOW });
    expect(clock.setDate(24, 2, 29)).toBe(true);
    expect(clock.read()).toBe('2024-02-29T12:00:00');
    clock.set('2024-02-29T12:00:45');
    expect(clock.setDate(99, 12, 31)).toBe(true);
    expect(clock.read()).toBe('2099-12-31T12:00:45');
    expect(clock.setTime(23, 59)).toBe(true);
    expect(clock.read()).toBe('2099-12-31T23:59:00');
  });

  it('a date or time that does not exist is refused and leaves the clock as it was', () => {
    const clock = new SimulatedClock({ clock_offset_s: 30, timezone: 'UTC', now: () => NOW });
    for (const [yy, month, day] of [[25, 2, 29], [25, 4, 31], [25, 13, 1], [100, 1, 1], [-1, 1, 1]] as const) {
      expect(clock.setDate(yy, month, day), `${yy}-${month}-${day}`).toBe(false);
    }
    for (const [hour, minute] of [[24, 0], [12, 60], [-1, 0]] as const) {
      expect(clock.setTime(hour, minute), `${hour}:${minute}`).toBe(false);
    }
    expect(clock.offsetS).toBe(30);
    expect(clock.read()).toBe('2025-06-01T10:00:30');
  });

  it('a set time keeps the century of a clock outside 2000–2099', () => {
    const clock = new SimulatedClock({ timezone: 'UTC', now: () => NOW });
    clock.set('1999-12-31T08:30:15');
    expect(clock.setTime(9, 5)).toBe(true);
    expect(clock.read()).toBe('1999-12-31T09:05:00');
    clock.set('2100-03-01T08:30:15');
    expect(clock.setTime(10, 0)).toBe(true);
    expect(clock.read()).toBe('2100-03-01T10:00:00');
  });

  it('defaults: no offset, the host zone, the real time', () => {
    const clock = new SimulatedClock();
    expect(clock.offsetS).toBe(0);
    expect(clock.timezone).toBe(hostTimeZone());
    expect(Math.abs(Date.parse(naiveToZoned(clock.read(), clock.timezone)) - Date.now())).toBeLessThan(2000);
  });
});
