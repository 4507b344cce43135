/**
 * Device commands declared once: each `CommandSpec` carries the JSON Schema (draft 2020-12) of
 * its parameters. The device manager validates a request against it before the session sees the
 * request, and answers a refusal naming the parameter (`copies: must be >= 1`). A property marked
 * `"x-patient": true` is patient data (a patient id, a name on a label, an ASTM order): the audit
 * keeps it as `PATIENT_DATA_OMITTED`, never its value.
 */
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';

/** A JSON Schema object (draft 2020-12) for a command's parameters. */
export type ParamsSchema = Readonly<Record<string, unknown>>;

/** The parameters of a command that takes none: any other key is refused. */
export const NO_PARAMS: ParamsSchema = Object.freeze({ type: 'object', additionalProperties: false, properties: {} });

/** What the audit keeps of a parameter its schema marks `x-patient`. */
export const PATIENT_DATA_OMITTED = '[patient data omitted]';

/** Request keys the daemon reads itself; they are never a command's parameters. */
export const REQUEST_ENVELOPE_KEYS: ReadonlySet<string> = new Set(['transaction', 'requested_by']);

let ajv: Ajv2020 | undefined;
const compiled = new WeakMap<object, ValidateFunction>();

function compiler(): Ajv2020 {
  if (ajv) return ajv;
  ajv = new Ajv2020({ allErrors: true, strict: true, validateFormats: false });
  ajv.addKeyword({ keyword: 'x-patient', schemaType: 'boolean' });
  return ajv;
}

/** Compiles a params schema (once per schema object); throws an Error for a schema that is not valid. */
export function paramsValidator(schema: ParamsSchema): ValidateFunction {
  let v = compiled.get(schema);
  if (!v) {
    v = compiler().compile(schema as Record<string, unknown>);
    compiled.set(schema, v);
  }
  return v;
}

/** `/label/copies` → `label.copies`; `/items/0` → `items[0]`. */
function fieldName(pointer: string, extra?: string): string {
  const parts = pointer.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extra !== undefined) parts.push(extra);
  return parts.reduce((out, p) => (/^\d+$/.test(p) ? `${out}[${p}]` : out ? `${out}.${p}` : p), '');
}

function describe(e: ErrorObject): string {
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return `${fieldName(e.instancePath, String(params.missingProperty))}: required`;
    case 'additionalProperties':
      return `${fieldName(e.instancePath, String(params.additionalProperty))}: unknown parameter`;
    case 'enum':
      return `${fieldName(e.instancePath) || 'params'}: must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    default:
      return `${fieldName(e.instancePath) || 'params'}: ${e.message ?? `fails ${e.keyword}`}`;
  }
}

/** Problems of `params` against the schema, one `field: message` each; empty when valid. */
export function paramsProblems(schema: ParamsSchema, params: unknown): string[] {
  const validate = paramsValidator(schema);
  if (validate(params)) return [];
  return [...new Set((validate.errors ?? []).map(describe))];
}

/**
 * `params` with every value its schema marks `x-patient` replaced by `PATIENT_DATA_OMITTED`, in
 * nested objects and arrays too. Keys the schema does not describe are kept only when the schema
 * has no patient field at all; otherwise they are omitted too, since an unknown key could carry
 * anything.
 */
export function redactPatientParams(schema: ParamsSchema, params: Record<string, unknown>): Record<string, unknown> {
  return redact(schema, params) as Record<string, unknown>;
}

function hasPatientField(schema: unknown): boolean {
  if (typeof schema !== 'object' || schema === null) return false;
  const s = schema as Record<string, unknown>;
  if (s['x-patient'] === true) return true;
  return Object.values(s).some((v) => (typeof v === 'object' && v !== null ? hasPatientField(v) : false));
}

function redact(schema: unknown, value: unknown): unknown {
  if (typeof schema !== 'object' || schema === null) return value;
  const s = schema as Record<string, unknown>;
  if (s['x-patient'] === true) return PATIENT_DATA_OMITTED;
  if (Array.isArray(value)) return value.map((item) => redact(s.items, item));
  if (typeof value !== 'object' || value === null) return value;
  const properties = (s.properties ?? {}) as Record<string, unknown>;
  const strict = hasPatientField(s);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (Object.hasOwn(properties, k)) out[k] = redact(properties[k], v);
    else out[k] = strict ? PATIENT_DATA_OMITTED : v;
  }
  return out;
}
