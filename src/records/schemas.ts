import { readFileSync } from 'node:fs';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { packageFile } from '../util/package-files.ts';
import { RECORD_KIND_NAMES, RECORD_KINDS } from './kinds.ts';
import { DEVICE_STATE_SCHEMA, EVENT_SCHEMA } from './types.ts';

/** Schemas of the daemon's own topics (bridge and availability): payloads without a `schema` field. */
export const AVAILABILITY_SCHEMA = 'poct.availability/1';
export const BRIDGE_INFO_SCHEMA = 'poct.bridge-info/1';
export const BRIDGE_DEVICES_SCHEMA = 'poct.bridge-devices/1';
export const BRIDGE_HEALTH_SCHEMA = 'poct.bridge-health/1';
export const RESPONSE_SCHEMA = 'poct.response/1';

/** Every payload the daemon publishes has its schema here, shipped in the package under `schemas/`. */
const PUBLISHED: Record<string, string> = {
  ...Object.fromEntries(RECORD_KIND_NAMES.map((name) => [RECORD_KINDS[name].schema, RECORD_KINDS[name].schemaFile])),
  [DEVICE_STATE_SCHEMA]: 'device-state-2.schema.json',
  [EVENT_SCHEMA]: 'event-1.schema.json',
  [AVAILABILITY_SCHEMA]: 'availability-1.schema.json',
  [BRIDGE_INFO_SCHEMA]: 'bridge-info-1.schema.json',
  [BRIDGE_DEVICES_SCHEMA]: 'bridge-devices-1.schema.json',
  [BRIDGE_HEALTH_SCHEMA]: 'bridge-health-1.schema.json',
  [RESPONSE_SCHEMA]: 'response-1.schema.json',
};

/** Earlier versions, still shipped so that what older daemons published can be checked. */
const SUPERSEDED: Record<string, string> = {
  'poct.result/1': 'result-1.schema.json',
};

const FILES: Record<string, string> = { ...SUPERSEDED, ...PUBLISHED };

/** The ids of the schemas of what this daemon publishes (listed in `bridge/info`). */
export const SCHEMA_IDS = Object.keys(PUBLISHED);

let ajv: Ajv2020 | undefined;
const validators = new Map<string, ValidateFunction>();

function validatorFor(schemaId: string): ValidateFunction {
  const v = validators.get(schemaId);
  if (v) return v;
  const file = FILES[schemaId];
  if (!file) throw new Error(`unknown record schema ${schemaId}`);
  ajv ??= new Ajv2020({ allErrors: true, strict: true, validateFormats: false });
  const schema = JSON.parse(readFileSync(packageFile('schemas', file), 'utf8')) as object;
  const compiled = ajv.compile(schema);
  validators.set(schemaId, compiled);
  return compiled;
}

/** Problems with `payload` against its schema, as `path: message` lines; empty when valid. */
export function schemaProblems(schemaId: string, payload: unknown): string[] {
  const validate = validatorFor(schemaId);
  if (validate(payload)) return [];
  return (validate.errors ?? []).map((e) => {
    const extra = e.keyword === 'additionalProperties' ? ` (${String((e.params as { additionalProperty?: unknown }).additionalProperty)})` : '';
    return `${e.instancePath || '/'}: ${e.message ?? 'invalid'}${extra}`;
  });
}
