/**
 * The `astm` driver's device options (`devices[].options`), checked once for the session and for
 * `decode` alike. What each option means is in this folder's README.
 */
import { ASTM_LINK_DEFAULTS } from '../../../src/protocols/astm/link.ts';
import { TEXT_ENCODINGS, type TextEncoding } from '../../../src/protocols/astm/records.ts';
import { DIALECTS, findDialect, type TestMapping } from './dialects/index.ts';
import { isLoinc } from './test-id.ts';
import { isValidUcum } from '../../../src/records/units.ts';

/** How the device frames its messages: E1381 frames (the standard), or bare STX … ETX blocks (`bare-link.ts`). */
export type AstmFraming = 'e1381' | 'bare';
export const ASTM_FRAMINGS: readonly AstmFraming[] = ['e1381', 'bare'];

export interface AstmOptions {
  dialect?: string;
  framing: AstmFraming;
  /** Where this device puts the specimen id (`O-3.2`: O-3 component 2), for a sender no dialect names. */
  specimen_id_at?: { field: 3 | 4; component: number };
  /** With `encoding: auto`, the code page of text that is not UTF-8 (default: the dialect's, else latin1). */
  fallback_encoding?: Exclude<TextEncoding, 'auto' | 'utf-8'>;
  encoding?: TextEncoding;
  mappings?: Record<string, TestMapping>;
  receive_timeout_ms: number;
  reply_timeout_ms: number;
  max_frame_bytes: number;
  frame_text_size: number;
}

const DEFAULT_OPTIONS: AstmOptions = {
  framing: 'e1381',
  receive_timeout_ms: ASTM_LINK_DEFAULTS.receiveTimeoutMs,
  reply_timeout_ms: ASTM_LINK_DEFAULTS.replyTimeoutMs,
  max_frame_bytes: ASTM_LINK_DEFAULTS.maxFrameBytes,
  frame_text_size: ASTM_LINK_DEFAULTS.frameTextSize,
};
const KNOWN_OPTIONS = new Set(['dialect', 'framing', 'fallback_encoding', 'specimen_id_at', 'encoding', 'mappings', 'receive_timeout_ms', 'reply_timeout_ms', 'max_frame_bytes', 'frame_text_size']);
/** The shape of a LOINC code: up to seven digits, a dash, the check digit. */
export const LOINC_RE = /^\d{1,7}-\d$/;

/**
 * What `parseAstmOptions` reads, as the config loader checks it (line and column, did-you-mean);
 * `parseAstmOptions` still checks the same for `poctd replay --option`.
 */
export const ASTM_OPTIONS_SCHEMA: Record<string, unknown> = {
  type: 'object',
  additionalProperties: false,
  properties: {
    dialect: { enum: DIALECTS.map((d) => d.id), description: 'the device family, when its H record does not say it' },
    encoding: { enum: [...TEXT_ENCODINGS], description: 'text encoding of the messages' },
    fallback_encoding: { enum: TEXT_ENCODINGS.filter((e) => e !== 'auto' && e !== 'utf-8'), description: 'the code page `auto` falls back to when a message is not UTF-8' },
    framing: { enum: [...ASTM_FRAMINGS], description: 'e1381 (numbered, checksummed frames) or bare (STX … ETX only)' },
    specimen_id_at: { type: 'string', pattern: '^\\s*O-[34]\\.[1-9]\\s*$', description: 'where the specimen id is: O-3.<component> or O-4.<component>' },
    mappings: {
      type: 'object',
      description: 'site codes: code -> {name, loinc, ucum, source}',
      propertyNames: { minLength: 1, pattern: '\\S' },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: {
          name: { type: 'string', minLength: 1, pattern: '\\S' },
          loinc: { type: ['string', 'null'], pattern: LOINC_RE.source },
          ucum: { type: ['string', 'null'], minLength: 1, pattern: '\\S' },
          source: { type: 'string' },
        },
      },
    },
    receive_timeout_ms: { type: 'number', minimum: 10 },
    reply_timeout_ms: { type: 'number', minimum: 10 },
    max_frame_bytes: { type: 'number', minimum: 64 },
    frame_text_size: { type: 'number', minimum: 16 },
  },
};

/** Reads `options` (from the device config). Throws an Error that names the bad field. */
export function parseAstmOptions(o: Record<string, unknown>, where = 'options'): AstmOptions {
  const out: AstmOptions = { ...DEFAULT_OPTIONS };
  for (const k of Object.keys(o)) if (!KNOWN_OPTIONS.has(k)) throw new Error(`${where}.${k}: unknown option (known: ${[...KNOWN_OPTIONS].join(', ')})`);
  if (o.dialect !== undefined) {
    if (typeof o.dialect !== 'string' || !findDialect(o.dialect)) {
      throw new Error(`${where}.dialect: must be one of ${DIALECTS.map((d) => d.id).join(', ')}`);
    }
    out.dialect = o.dialect;
  }
  if (o.encoding !== undefined) {
    if (typeof o.encoding !== 'string' || !TEXT_ENCODINGS.includes(o.encoding as TextEncoding)) {
      throw new Error(`${where}.encoding: must be one of ${TEXT_ENCODINGS.join(', ')}`);
    }
    out.encoding = o.encoding as TextEncoding;
  }
  if (o.framing !== undefined) {
    if (typeof o.framing !== 'string' || !ASTM_FRAMINGS.includes(o.framing as AstmFraming)) {
      throw new Error(`${where}.framing: must be one of ${ASTM_FRAMINGS.join(', ')}`);
    }
    out.framing = o.framing as AstmFraming;
  }
  if (o.specimen_id_at !== undefined) {
    const m = typeof o.specimen_id_at === 'string' ? /^O-([34])\.([1-9])$/.exec(o.specimen_id_at.trim()) : null;
    if (!m) throw new Error(`${where}.specimen_id_at: must be O-3.<component> or O-4.<component>, e.g. O-3.2`);
    out.specimen_id_at = { field: Number(m[1]) as 3 | 4, component: Number(m[2]) };
  }
  if (o.fallback_encoding !== undefined) {
    const codePages: readonly string[] = TEXT_ENCODINGS.filter((e) => e !== 'auto' && e !== 'utf-8');
    if (typeof o.fallback_encoding !== 'string' || !codePages.includes(o.fallback_encoding)) {
      throw new Error(`${where}.fallback_encoding: must be one of ${codePages.join(', ')}`);
    }
    out.fallback_encoding = o.fallback_encoding as Exclude<TextEncoding, 'auto' | 'utf-8'>;
  }
  if (o.mappings !== undefined) {
    if (typeof o.mappings !== 'object' || o.mappings === null || Array.isArray(o.mappings)) {
      throw new Error(`${where}.mappings: must be a map of code → {name, loinc, ucum}`);
    }
    const maps: Record<string, TestMapping> = {};
    for (const [code, v] of Object.entries(o.mappings as Record<string, unknown>)) {
      const at = `${where}.mappings["${code}"]`;
      if (code.trim() === '') throw new Error(`${where}.mappings: a code must not be empty`);
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${at}: must be an object {name, loinc, ucum}`);
      const m = v as Record<string, unknown>;
      for (const k of Object.keys(m)) if (!['name', 'loinc', 'ucum', 'source'].includes(k)) throw new Error(`${at}.${k}: unknown field (known: name, loinc, ucum, source)`);
      if (typeof m.name !== 'string' || m.name.trim() === '') throw new Error(`${at}.name: required, a non-empty string`);
      if (m.loinc !== undefined && m.loinc !== null && (typeof m.loinc !== 'string' || !isLoinc(m.loinc))) {
        throw new Error(`${at}.loinc: must be a LOINC code like 2345-7 (its check digit right), or null`);
      }
      if (m.ucum !== undefined && m.ucum !== null && (typeof m.ucum !== 'string' || !isValidUcum(m.ucum))) {
        throw new Error(`${at}.ucum: must be a valid UCUM unit as written (case-sensitive), like mg/dL or 10*3/uL, or null`);
      }
      if (m.source !== undefined && typeof m.source !== 'string') throw new Error(`${at}.source: must be a string`);
      maps[code] = {
        name: m.name,
        loinc: (m.loinc as string | null | undefined) ?? null,
        ...(m.ucum !== undefined ? { ucum: m.ucum as string | null } : {}),
        source: (m.source as string | undefined) ?? 'site configuration (options.mappings)',
      };
    }
    out.mappings = maps;
  }
  for (const [name, min] of [['receive_timeout_ms', 10], ['reply_timeout_ms', 10], ['max_frame_bytes', 64], ['frame_text_size', 16]] as const) {
    const v = o[name];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) throw new Error(`${where}.${name}: must be a number >= ${min}`);
    out[name] = v;
  }
  return out;
}
