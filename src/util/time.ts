/**
 * Meters keep naive local wall-clock time. These helpers attach the UTC offset of a configured IANA
 * zone to such a time, so `observed_at` is absolute while `device_time` stays what the meter said.
 */

const formatterCache = new Map<string, Intl.DateTimeFormat>();

function zoneFormatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatterCache.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formatterCache.set(timeZone, f);
  }
  return f;
}

/** The host's IANA zone, or UTC when the runtime cannot tell. */
export function hostTimeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch {
    return 'UTC';
  }
}

/** Throws RangeError for an unknown zone name. */
export function assertTimeZone(timeZone: string): void {
  zoneFormatter(timeZone);
}

/**
 * Zone offsets change only on quarter-hour boundaries, so one lookup per zone and quarter hour
 * serves every reading in it (Intl formatting is the costly part of decoding a meter's memory).
 */
const QUARTER_HOUR_MS = 15 * 60_000;
const offsetCache = new Map<string, number>();
const OFFSET_CACHE_LIMIT = 50_000;

/** Offset of `timeZone` from UTC at instant `utcMs`, in minutes (east positive). */
export function zoneOffsetMinutes(timeZone: string, utcMs: number): number {
  const key = `${timeZone}|${Math.floor(utcMs / QUARTER_HOUR_MS)}`;
  const cached = offsetCache.get(key);
  if (cached !== undefined) return cached;
  const offset = computeZoneOffsetMinutes(timeZone, utcMs);
  if (offsetCache.size >= OFFSET_CACHE_LIMIT) offsetCache.clear();
  offsetCache.set(key, offset);
  return offset;
}

function computeZoneOffsetMinutes(timeZone: string, utcMs: number): number {
  const parts = zoneFormatter(timeZone).formatToParts(new Date(utcMs));
  const get = (t: string): number => Number(parts.find((p) => p.type === t)?.value);
  const asUtc = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
  return Math.round((asUtc - Math.floor(utcMs / 1000) * 1000) / 60000);
}

const NAIVE_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})$/;

function pad(n: number, w = 2): string {
  return String(Math.abs(n)).padStart(w, '0');
}

function formatOffset(minutes: number): string {
  if (minutes === 0) return '+00:00';
  const sign = minutes < 0 ? '-' : '+';
  return `${sign}${pad(Math.floor(Math.abs(minutes) / 60))}:${pad(Math.abs(minutes) % 60)}`;
}

/**
 * The zone offsets (minutes) to try for the wall-clock time `naive`: those in force at the
 * `probes` instants (given as ms from the wall clock read as UTC), without repeats, in probe
 * order; `fitting` are those under which the wall clock names an instant that has that very
 * offset (one for an ordinary time, two in a repeated hour, none in a skipped one). Null when
 * `naive` is not `YYYY-MM-DDTHH:MM:SS`.
 */
function offsetSearch(
  naive: string,
  timeZone: string,
  probes: (wallAsUtc: number) => number[],
): { tried: number[]; fitting: number[] } | null {
  const m = NAIVE_RE.exec(naive);
  if (!m) return null;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  const wallAsUtc = Date.UTC(y, mo - 1, d, h, mi, s);
  const tried = [...new Set(probes(wallAsUtc).map((at) => zoneOffsetMinutes(timeZone, at)))];
  const fitting = tried.filter((off) => zoneOffsetMinutes(timeZone, wallAsUtc - off * 60000) === off);
  return { tried, fitting };
}

/**
 * `2015-03-21T16:45:24` in `Europe/Copenhagen` → `2015-03-21T16:45:24+01:00`.
 * In the repeated hour of a DST change the earlier (summer) offset is chosen; a time inside the
 * skipped hour gets the offset in force just before it. Either way the wall-clock text is kept.
 */
export function naiveToZoned(naive: string, timeZone: string): string {
  // The offset three hours back is the one in force before a DST change the wall clock may sit
  // in; two passes from the wall clock settle it everywhere else.
  const search = offsetSearch(naive, timeZone, (wall) => [wall - 3 * 3600000, wall - zoneOffsetMinutes(timeZone, wall) * 60000]);
  if (!search) throw new RangeError(`not a naive local time: ${naive}`);
  const offset = search.fitting.length > 0 ? Math.max(...search.fitting) : search.tried[0]!;
  return `${naive}${formatOffset(offset)}`;
}

/**
 * Whether a naive local time names no single instant in `timeZone`: `repeated` in the hour a DST
 * change runs twice (the meter cannot say which), `skipped` in the hour it jumps over (the clock
 * was wrong). Null for an ordinary time.
 */
export function localTimeAmbiguity(naive: string, timeZone: string): 'repeated' | 'skipped' | null {
  const search = offsetSearch(naive, timeZone, (wall) => [wall - 12 * 3600000, wall, wall + 12 * 3600000]);
  if (!search) return null;
  if (search.fitting.length > 1) return 'repeated';
  if (search.fitting.length === 0) return 'skipped';
  return null;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(year: number, month: number): number {
  // The Gregorian leap rule for every year: Date.UTC would read years 0–99 as 1900–1999.
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]!;
}

/**
 * Calendar date and time fields, with the full year (0–9999), → naive local time
 * `YYYY-MM-DDTHH:MM:SS`; null when they name no real time: 30 February, hour 24, minute 60, a
 * negative or fractional field. Each device's reader applies its own year rules first.
 */
export function naiveFromFields(year: number, month: number, day: number, hour: number, minute: number, second: number): string | null {
  if (![year, month, day, hour, minute, second].every((n) => Number.isInteger(n) && n >= 0)) return null;
  if (year > 9999 || month < 1 || month > 12) return null;
  if (day < 1 || day > daysInMonth(year, month) || hour > 23 || minute > 59 || second > 59) return null;
  return `${pad(year, 4)}-${pad(month)}-${pad(day)}T${pad(hour)}:${pad(minute)}:${pad(second)}`;
}

/** Whether `text` is `YYYY-MM-DDTHH:MM:SS` naming a real time (not 30 February, not hour 24). */
export function isNaiveTime(text: string): boolean {
  const m = NAIVE_RE.exec(text);
  if (!m) return false;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  return naiveFromFields(y, mo, d, h, mi, s) !== null;
}

/**
 * Whether `text` is a naive time a meter with a 2-digit year can hold: `YYYY-MM-DDTHH:MM:SS`
 * naming a real time within 2000–2099, the range `meterNaiveTime` reads.
 */
export function isMeterNaiveTime(text: string): boolean {
  return text.startsWith('20') && isNaiveTime(text);
}

/**
 * Date and time fields as a meter keeps them, with a 2-digit year (0–99 = 2000–2099), → naive
 * local time `YYYY-MM-DDTHH:MM:SS`; null when they name no real time (see `naiveFromFields`), or
 * the year is past 99 (a meter whose clock lost power reads 255).
 */
export function meterNaiveTime(yy: number, month: number, day: number, hour: number, minute: number, second = 0): string | null {
  if (!Number.isInteger(yy) || yy < 0 || yy > 99) return null;
  return naiveFromFields(2000 + yy, month, day, hour, minute, second);
}

/** The host's current wall-clock time in `timeZone` as a naive ISO string. */
export function nowInZone(timeZone: string, now: Date = new Date()): string {
  const off = zoneOffsetMinutes(timeZone, now.getTime());
  return new Date(now.getTime() + off * 60000).toISOString().slice(0, 19);
}

/** Seconds between a device's naive clock reading and the host clock, positive = device ahead. */
export function clockSkewSeconds(deviceNaive: string, timeZone: string, now: Date = new Date()): number {
  const deviceUtcMs = Date.parse(naiveToZoned(deviceNaive, timeZone));
  return Math.round((deviceUtcMs - now.getTime()) / 1000);
}
