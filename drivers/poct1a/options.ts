/** The `poct1a` device options (`devices[].options`), checked with messages that name the option. */
import type { OperatorEntry } from '../../src/protocols/poct1a/builders.ts';
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
  /**
   * The operators allowed on the device, pushed as a complete list (OPL.R01) on each connection
   * until the device acknowledges it; an observation by an operator not on it is flagged
   * `operator-unknown`. Absent: no list is pushed and no operator is flagged.
   */
  operators: OperatorEntry[] | undefined;
  /** Publish an EVS event's description text on `bridge/event` (free text that may name a patient). */
  event_text: boolean;
}

/** One operator list entry from config or a request: `{id, name?, password?, permission?}`. */
export function parseOperators(raw: unknown, where: string): OperatorEntry[] {
  if (!Array.isArray(raw)) throw new Error(`${where}: must be a list of operators ({id, name, password, permission})`);
  const seen = new Set<string>();
  return raw.map((o, i) => {
    const at = `${where}[${i}]`;
    if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new Error(`${at}: must be an object with an id`);
    const r = o as Record<string, unknown>;
    const extra = Object.keys(r).filter((k) => !['id', 'name', 'password', 'permission'].includes(k));
    if (extra.length > 0) throw new Error(`${at}: unknown field ${extra.map((k) => `"${k}"`).join(', ')} (known: id, name, password, permission)`);
    const id = typeof r.id === 'number' ? String(r.id) : r.id;
    if (typeof id !== 'string' || id.trim() === '' || id.length > 64) throw new Error(`${at}.id: must be a non-empty string of at most 64 characters`);
    if (seen.has(id.trim())) throw new Error(`${at}.id: ${JSON.stringify(id)} is listed twice`);
    seen.add(id.trim());
    for (const k of ['name', 'password'] as const) {
      if (r[k] !== undefined && (typeof r[k] !== 'string' || (r[k] as string).length > 128)) throw new Error(`${at}.${k}: must be a string of at most 128 characters`);
    }
    const permission = typeof r.permission === 'number' ? String(r.permission) : r.permission;
    if (permission !== undefined && (typeof permission !== 'string' || !/^\w{1,16}$/.test(permission))) throw new Error(`${at}.permission: must be a short code such as 1`);
    return { id: id.trim(), name: (r.name as string | undefined) ?? null, password: (r.password as string | undefined) ?? null, permission: (permission as string | undefined) ?? null };
  });
}

/** The options as a JSON Schema, for the config loader (`check-config` and `run` alike); the parser below names the same limits. */
export const POCT1A_OPTIONS_SCHEMA: Record<string, unknown> = {
  type: 'object',
  additionalProperties: false,
  properties: {
    profile: { enum: PROFILES.map((p) => p.id), description: 'a vendor profile, instead of recognising it from the HEL' },
    mode: { enum: ['continuous', 'basic'] },
    max_message_bytes: { type: 'integer', minimum: 1024 },
    reply_timeout_ms: { type: 'integer', minimum: 100 },
    clock_skew_limit_s: { type: 'integer', minimum: 0 },
    set_time: { type: 'boolean' },
    event_text: { type: 'boolean' },
    operators: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id'],
        properties: {
          id: { type: ['string', 'number'] },
          name: { type: 'string', maxLength: 128 },
          password: { type: 'string', maxLength: 128 },
          permission: { type: ['string', 'number'] },
        },
      },
    },
  },
};

const KEYS = ['profile', 'mode', 'max_message_bytes', 'reply_timeout_ms', 'clock_skew_limit_s', 'set_time', 'operators', 'event_text'];

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
  for (const k of ['set_time', 'event_text']) {
    if (raw[k] !== undefined && typeof raw[k] !== 'boolean') throw new Error(`${where}.${k}: must be true or false`);
  }
  return {
    profile: profile as string | undefined,
    mode,
    max_message_bytes: int('max_message_bytes', 1024, DEFAULT_MAX_MESSAGE_BYTES)!,
    reply_timeout_ms: int('reply_timeout_ms', 100, undefined),
    clock_skew_limit_s: int('clock_skew_limit_s', 0, 300)!,
    set_time: raw.set_time === true,
    event_text: raw.event_text === true,
    operators: raw.operators === undefined ? undefined : parseOperators(raw.operators, `${where}.operators`),
  };
}
