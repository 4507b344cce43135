/**
 * Device commands declared once: each `CommandSpec` carries the JSON Schema (draft 2020-12) of
 * its parameters. The device manager validates a request against it before the session sees the
 * request, and answers a refusal naming the parameter (`copies: must be >= 1`). A property marked
 * `"x-patient": true` is patient data (a patient id, a name on a label, an ASTM order): the audit
 * keeps it as `PATIENT_DATA_OMITTED`, never its value. A spec's optional `response` schema marks
 * the patient fields of what the command answers the same way, for the audit and the kept outcome.
 */
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';

/** A JSON Schema object (draft 2020-12) for a command's parameters. */
export type ParamsSchema = Readonly<Record<string, unknown>>;

/** The parameters of a command that takes none: any other key is refused. */
export const NO_PARAMS: ParamsSchema = Object.freeze({ type: 'object', additionalProperties: false, properties: {} });

/**
 * The response schema of a command whose answer holds no patient data (counts, a clock, the device
 * state): the audit and the kept outcome store its `data` as it is.
 */
export const NO_PATIENT_DATA: ParamsSchema = Object.freeze({});

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
 * `params` with every value its schema marks `x-patient` replaced by `PATIENT_DATA_OMITTED`. It
 * fails closed: a value is walked into only where its schema says exactly which part is patient
 * data (an object's `properties`, an array's `items`); a value whose schema holds a patient marking
 * anywhere else (behind a `$ref`, in `anyOf`/`oneOf`/`allOf`, `prefixItems`, ...) or whose shape is
 * not the one its schema describes (a string where it has an object: the request is refused, but
 * still audited) is omitted whole. Keys the schema does not describe are kept only when the schema
 * has no patient field at all; otherwise they are omitted too, since an unknown key could carry
 * anything.
 */
export function redactPatientParams(schema: ParamsSchema, params: Record<string, unknown>): Record<string, unknown> {
  const out = redact(schema, params, schema);
  // The request body itself of the wrong shape (cannot happen for a parsed request): keep nothing.
  return isPlainObject(out) ? out : {};
}

/** Any value (a response's `data`) redacted by its schema as `redactPatientParams` does params. */
export function redactPatientData(schema: ParamsSchema, value: unknown): unknown {
  return redact(schema, value, schema);
}

/** Whether the schema, or any schema under it (following local `$ref`s), marks a field `x-patient`. */
export function holdsPatientData(schema: unknown, root: unknown = schema, seen: Set<unknown> = new Set()): boolean {
  if (typeof schema !== 'object' || schema === null || seen.has(schema)) return false;
  seen.add(schema);
  const s = schema as Record<string, unknown>;
  if (s['x-patient'] === true) return true;
  for (const refKey of ['$ref', '$dynamicRef'] as const) {
    const ref = s[refKey];
    if (ref === undefined) continue;
    const target = typeof ref === 'string' ? resolveLocalRef(root, ref) : undefined;
    // A reference this walk cannot follow could lead to a patient field: assume it does.
    if (target === undefined) return true;
    if (holdsPatientData(target, root, seen)) return true;
  }
  return Object.values(s).some((v) => holdsPatientData(v, root, seen));
}

function resolveLocalRef(root: unknown, ref: string): unknown {
  if (ref === '#') return root;
  if (!ref.startsWith('#/')) return undefined;
  let node: unknown = root;
  for (const raw of ref.slice(2).split('/')) {
    const step = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    if (typeof node !== 'object' || node === null || !Object.hasOwn(node, step)) return undefined;
    node = (node as Record<string, unknown>)[step];
  }
  return node;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** Keywords that hold definitions, not schemas applied to the value itself. */
const DEFINITION_KEYWORDS: ReadonlySet<string> = new Set(['$defs', 'definitions']);

/** Whether the patient fields under `s` are all reached through `walked` (the one keyword redact follows for this value). */
function onlyThrough(s: Record<string, unknown>, walked: 'properties' | 'items', root: unknown): boolean {
  return Object.entries(s).every(([k, v]) => k === walked || DEFINITION_KEYWORDS.has(k) || !holdsPatientData({ [k]: v }, root));
}

function redact(schema: unknown, value: unknown, root: unknown): unknown {
  if (typeof schema !== 'object' || schema === null) return value;
  const s = schema as Record<string, unknown>;
  if (s['x-patient'] === true) return PATIENT_DATA_OMITTED;
  const own = Object.fromEntries(Object.entries(s).filter(([k]) => !DEFINITION_KEYWORDS.has(k)));
  if (!holdsPatientData(own, root)) return value;
  if (Array.isArray(value) && onlyThrough(s, 'items', root)) return value.map((item) => redact(s.items, item, root));
  if (isPlainObject(value) && onlyThrough(s, 'properties', root)) {
    const properties = (s.properties ?? {}) as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = Object.hasOwn(properties, k) ? redact(properties[k], v, root) : PATIENT_DATA_OMITTED;
    return out;
  }
  return PATIENT_DATA_OMITTED;
}
