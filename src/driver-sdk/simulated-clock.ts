/**
 * A simulated meter's clock. Meters keep naive local time, so the clock is the true time (a test
 * may fix it with `now`) plus an offset, read in the meter's zone; a set-clock command from the
 * host moves the offset, as setting a real meter's clock would.
 */
import { hostTimeZone, meterNaiveTime, naiveFromFields, naiveToZoned, nowInZone } from '../util/time.ts';

/** The simulator options the clock reads (the same names in every simulator). */
export interface SimulatedClockOptions {
  /** The meter clock minus the true time, in seconds (default 0). */
  clock_offset_s?: number;
  /** The zone of the meter's naive clock (default: the host's). */
  timezone?: string;
  /** The true time (tests). */
  now?: () => Date;
}

export class SimulatedClock {
  /** The meter clock minus the true time, in seconds. */
  offsetS: number;
  readonly timezone: string;
  readonly now: () => Date;

  constructor(options: SimulatedClockOptions = {}) {
    this.offsetS = options.clock_offset_s ?? 0;
    this.timezone = options.timezone ?? hostTimeZone();
    this.now = options.now ?? (() => new Date());
  }

  /** The meter's naive clock now, `YYYY-MM-DDTHH:MM:SS`. */
  read(): string {
    return nowInZone(this.timezone, new Date(this.now().getTime() + this.offsetS * 1000));
  }

  /** Sets the meter's clock to the naive local time `naive`. */
  set(naive: string): void {
    this.offsetS = (Date.parse(naiveToZoned(naive, this.timezone)) - this.now().getTime()) / 1000;
  }

  /**
   * A set-date command: the meter's 2-digit year (2000–2099), month and day, keeping the time of
   * day to the second. False, and the clock untouched, when the date does not exist.
   */
  setDate(yy: number, month: number, day: number): boolean {
    const [, , , hour, minute, second] = this.fields();
    return this.setIfReal(meterNaiveTime(yy, month, day, hour, minute, second));
  }

  /**
   * A set-time command: hour and minute, seconds to 0, keeping the date with its full year (a
   * clock outside 2000–2099 stays in its century). False, and the clock untouched, when the time
   * does not exist.
   */
  setTime(hour: number, minute: number): boolean {
    const [year, month, day] = this.fields();
    return this.setIfReal(naiveFromFields(year, month, day, hour, minute, 0));
  }

  private fields(): [number, number, number, number, number, number] {
    return this.read().split(/[-T:]/).map(Number) as [number, number, number, number, number, number];
  }

  private setIfReal(naive: string | null): boolean {
    if (naive === null) return false;
    this.set(naive);
    return true;
  }
}
