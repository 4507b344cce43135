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

  it('defaults: no offset, the host zone, the real time', () => {
    const clock = new SimulatedClock();
    expect(clock.offsetS).toBe(0);
    expect(clock.timezone).toBe(hostTimeZone());
    expect(Math.abs(Date.parse(naiveToZoned(clock.read(), clock.timezone)) - Date.now())).toBeLessThan(2000);
  });
});
