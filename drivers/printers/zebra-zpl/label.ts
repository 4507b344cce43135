/**
 * A print (or preview) request made into a label: the parameters' JSON Schema (checked by the
 * device manager before the session sees the request), the checks a schema cannot say (a date
 * that is a date, a template that exists), and the values each template field is filled with.
 * Errors name the field: `patient.dob: not a date`.
 */
import type { ParamsSchema } from '../../../src/driver-sdk/commands.ts';
import { paramsProblems } from '../../../src/driver-sdk/commands.ts';
import { MAX_COPIES, renderTemplate, templateProblems, type LabelTemplate, type RenderedLabel } from '../../../src/protocols/zpl/template.ts';

/** The fields a template may reference, filled from the request. */
export const LABEL_FIELDS = [
  'specimen_id',
  'patient.name',
  'patient.mrn',
  'patient.dob',
  'patient.sex',
  'collected',
  'collected.date',
  'collected.time',
  'tests',
  'priority',
  'collector',
  'reprint',
] as const;

/** A specimen id the barcode can carry and a reader keys back: letters, digits and `-`, as Code 128 prints them. */
export const SPECIMEN_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9*-]{0,11}$';

const text = (maxLength: number, patient = false): Record<string, unknown> => ({ type: 'string', maxLength, ...(patient ? { 'x-patient': true } : {}) });

/** The parameters of `print` and `preview` (the request without `transaction` and `requested_by`). */
export const LABEL_PARAMS: ParamsSchema = Object.freeze({
  type: 'object',
  additionalProperties: false,
  required: ['template', 'patient'],
  properties: {
    template: { type: 'string', minLength: 1, maxLength: 64 },
    specimen_id: { type: 'string', pattern: SPECIMEN_ID_PATTERN, description: 'issued by the daemon when absent' },
    patient: {
      type: 'object',
      additionalProperties: false,
      required: ['name', 'mrn'],
      properties: {
        name: { ...text(200, true), minLength: 1 },
        mrn: { ...text(40, true), minLength: 1 },
        dob: text(10, true),
        sex: text(8, true),
      },
    },
    collected_at: text(40),
    tests: { type: 'array', maxItems: 20, items: { type: 'string', minLength: 1, maxLength: 16 } },
    priority: text(8),
    collector: text(20),
    copies: { type: 'integer', minimum: 1, maximum: MAX_COPIES },
  },
});

export interface LabelRequest {
  template: string;
  specimen_id?: string;
  patient: { name: string; mrn: string; dob?: string; sex?: string };
  collected_at?: string;
  tests?: string[];
  priority?: string;
  collector?: string;
  copies?: number;
}

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
/** An ISO 8601 date-time with an offset, as the example: `2026-12-03T09:14:00+01:00`. */
const DATE_TIME = /^(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

function isCalendarDate(s: string): boolean {
  const m = DATE.exec(s);
  if (!m) return false;
  const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  return d.getUTCFullYear() === Number(m[1]) && d.getUTCMonth() === Number(m[2]) - 1 && d.getUTCDate() === Number(m[3]);
}

/**
 * Every problem of a request, `field: reason` each (empty when it can be printed): the schema's,
 * then the template, the dates (a date of birth in the future is refused too: a label for a
 * patient born tomorrow is a typo).
 */
export function labelRequestProblems(params: unknown, templates: Readonly<Record<string, LabelTemplate>>, now: Date): string[] {
  const problems = paramsProblems(LABEL_PARAMS, params);
  if (problems.length > 0) return problems;
  const r = params as LabelRequest;
  if (!Object.hasOwn(templates, r.template)) problems.push(`template: unknown template "${r.template}" (known: ${Object.keys(templates).join(', ')})`);
  if (r.patient.dob !== undefined) {
    if (!isCalendarDate(r.patient.dob)) problems.push('patient.dob: not a date (YYYY-MM-DD)');
    else if (r.patient.dob > now.toISOString().slice(0, 10)) problems.push('patient.dob: in the future');
  }
  if (r.collected_at !== undefined) {
    const m = DATE_TIME.exec(r.collected_at);
    const hoursOk = m && Number(m[2]) < 24 && Number(m[3]) < 60 && Number(m[4] ?? 0) < 60;
    if (!m || !isCalendarDate(m[1]!) || !hoursOk || Number.isNaN(Date.parse(r.collected_at))) {
      problems.push('collected_at: not a date-time with an offset (2026-12-03T09:14:00+01:00)');
    }
  }
  if (r.patient.name.trim() === '') problems.push('patient.name: empty');
  return problems;
}

/**
 * The template fields' values. The collection time is printed as the requester wrote it (its own
 * local time and offset), not converted to the daemon's zone: that is the time on the clock in the
 * room where the sample was drawn.
 */
export function labelValues(r: LabelRequest, specimenId: string, reprint: boolean): Record<(typeof LABEL_FIELDS)[number], string> {
  const m = r.collected_at ? DATE_TIME.exec(r.collected_at) : null;
  const date = m ? m[1]! : '';
  const time = m ? `${m[2]}:${m[3]}` : '';
  return {
    specimen_id: specimenId,
    'patient.name': r.patient.name,
    'patient.mrn': r.patient.mrn,
    'patient.dob': r.patient.dob ?? '',
    'patient.sex': r.patient.sex ?? '',
    collected: m ? `${date} ${time}` : '',
    'collected.date': date,
    'collected.time': time,
    tests: (r.tests ?? []).join(' '),
    priority: r.priority ?? '',
    collector: r.collector ?? '',
    reprint: reprint ? 'REPRINT' : '',
  };
}

/** The label's ZPL for a request already checked by `labelRequestProblems`. */
export function renderLabel(r: LabelRequest, template: LabelTemplate, specimenId: string, options: { reprint?: boolean } = {}): RenderedLabel {
  return renderTemplate(template, labelValues(r, specimenId, options.reprint === true), r.copies ?? 1, LABEL_FIELDS);
}

/** A site's templates from the config, checked: `templates.<name>: reason` for each problem. */
export function siteTemplateProblems(templates: Readonly<Record<string, LabelTemplate>>): string[] {
  return Object.entries(templates).flatMap(([name, t]) => {
    const shape = templateShapeProblems(t);
    return (shape.length > 0 ? shape : templateProblems(t, LABEL_FIELDS)).map((p) => `templates.${name}: ${p}`);
  });
}

/** A template from YAML that is not even the right shape (before its ZPL can be read). */
function templateShapeProblems(t: unknown): string[] {
  if (typeof t !== 'object' || t === null || Array.isArray(t)) return ['must be a map with zpl, dpmm, width_mm, height_mm'];
  const o = t as Record<string, unknown>;
  const out: string[] = [];
  if (typeof o.zpl !== 'string') out.push('zpl: required, the ZPL format as text');
  for (const k of ['dpmm', 'width_mm', 'height_mm']) if (typeof o[k] !== 'number') out.push(`${k}: required, a number`);
  if (o.description !== undefined && typeof o.description !== 'string') out.push('description: must be text');
  const extra = Object.keys(o).filter((k) => !['zpl', 'dpmm', 'width_mm', 'height_mm', 'description'].includes(k));
  if (extra.length > 0) out.push(`${extra[0]}: unknown key (known: zpl, dpmm, width_mm, height_mm, description)`);
  return out;
}
