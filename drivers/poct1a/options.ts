/** The `poct1a` device options (`devices[].options`), checked with messages that name the option. */
import { DEFAULT_MAX_MESSAGE_BYTES } from '../../src/protocols/poct1a/splitter.ts';
import { findProfile, PROFILES } from './profiles/index.ts';

export interface Poct1aOptions {
  /** Force a vendor profile instead of recognising it from the HEL. */
  profile: string | undefined;
  /** After the observations: `continuous` (DTV START_CONTINUOUS when the device supports it) or `basic` (END). */
  mode: 'continuous' | 'basic';
  /** Largest message accepted from the device, bytes. */
  max_message_bytes: number;
  /** How long a message of ours waits for its answer; default the device's `DCP.application_timeout`. */
  reply_timeout_ms: number | undefined;
  /** Device clock off by more than this (s) is flagged on the device state. */
  clock_skew_limit_s: number;
  /** Send DTV.R02 SET_TIME when the device clock is off by more than `clock_skew_limit_s`. */
  set_time: boolean;
}

const KEYS = ['profile', 'mode', 'max_message_bytes', 'reply_timeout_ms', 'clock_skew_limit_s', 'set_time'];

export function parsePoct1aOptions(raw: Readonly<Record<string, unknown>>, where: string): Poct1aOptions {
  const unknown = Object.keys(raw).filter((k) => !KEYS.includes(k));
  if (unknown.length > 0) throw new Error(`${where}: unknown option ${unknown.map((k) => `"${k}"`).join(', ')} (known: ${KEYS.join(', ')})`);
  const int = (k: string, min: number, fallback: number | undefined): number | undefined => {
    const v = raw[k];
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new Error(`${where}.${k}: must be an integer >= ${min}`);
    return v;
  };
  const profile = raw.profile;
  if (profile !== undefined && (typeof profile !== 'string' || !findProfile(profile))) {
    throw new Error(`${where}.profile: unknown profile ${JSON.stringify(profile)} (known: ${PROFILES.map((p) => p.id).join(', ')})`);
  }
  const mode = raw.mode ?? 'continuous';
  if (mode !== 'continuous' && mode !== 'basic') throw new Error(`${where}.mode: must be "continuous" or "basic"`);
  if (raw.set_time !== undefined && typeof raw.set_time !== 'boolean') throw new Error(`${where}.set_time: must be true or false`);
  return {
    profile: profile as string | undefined,
    mode,
    max_message_bytes: int('max_message_bytes', 1024, DEFAULT_MAX_MESSAGE_BYTES)!,
    reply_timeout_ms: int('reply_timeout_ms', 100, undefined),
    clock_skew_limit_s: int('clock_skew_limit_s', 0, 300)!,
    set_time: raw.set_time === true,
  };
}
