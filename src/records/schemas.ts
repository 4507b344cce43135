import { readFileSync } from 'node:fs';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { packageFile } from '../util/package-files.ts';
import { DEVICE_STATE_SCHEMA, EVENT_SCHEMA, RESULT_SCHEMA } from './types.ts';

/** The record schemas shipped in the package under `schemas/`, by id. */
const FILES: Record<string, string> = {
  [RESULT_SCHEMA]: 'result-1.schema.json',
  [DEVICE_STATE_SCHEMA]: 'device-state-1.schema.json',
  [EVENT_SCHEMA]: 'event-1.schema.json',
};

export const SCHEMA_IDS = Object.keys(FILES);

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
  return (validate.errors ?? []).map((e) => `${e.instancePath || '/'}: ${e.message ?? 'invalid'}`);
}
