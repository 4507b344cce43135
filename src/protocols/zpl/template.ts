/**
 * Label templates as data: a ZPL format with named placeholders, `{{patient.name|24}}`, each
 * with the most characters its place on the label holds. A placeholder may stand only inside a
 * `^FH_^FD … ^FS` field, so whatever it is filled with is escaped (fields.ts). The daemon adds
 * the quantity (`^PQ`) itself; a template that sets one, that does not select UTF-8 (`^CI28`,
 * which printers do not default to) or that names a field the daemon does not fill is refused
 * with the reason, when the config is checked as when a label is made.
 */
import { escapeFieldData, fitField, FIELD_HEX_INDICATOR } from './fields.ts';

export interface LabelTemplate {
  /** What the template is for, for `poctd label --help` and the README. */
  description: string;
  /** Dots per millimetre of the printer it is laid out for: 8 (203 dpi), 12 (300 dpi), 24 (600 dpi). */
  dpmm: number;
  /** The label's size in millimetres (for the preview). */
  width_mm: number;
  height_mm: number;
  /** The ZPL format, `^XA` … `^XZ`, with `{{field|max}}` placeholders. */
  zpl: string;
}

const PLACEHOLDER = /\{\{\s*([a-z_][a-z0-9_.]*)\s*\|\s*(\d+)\s*\}\}/g;
const ANY_BRACES = /\{\{|\}\}/g;

export interface Placeholder {
  field: string;
  maxChars: number;
}

/** The placeholders of a template, in order. */
export function placeholders(zpl: string): Placeholder[] {
  return Array.from(zpl.matchAll(PLACEHOLDER), (m) => ({ field: m[1]!, maxChars: Number(m[2]) }));
}

/**
 * The problems of a template, one sentence each (empty when it is usable). `knownFields` are the
 * fields the daemon fills.
 */
export function templateProblems(template: LabelTemplate, knownFields: readonly string[]): string[] {
  const problems: string[] = [];
  const zpl = template.zpl.trim();
  if (!zpl.startsWith('^XA')) problems.push('must start with ^XA');
  if (!zpl.endsWith('^XZ')) problems.push('must end with ^XZ');
  if ((zpl.match(/\^XA/g) ?? []).length !== 1) problems.push('must hold exactly one label format (^XA … ^XZ)');
  if (!/\^CI28/.test(zpl)) problems.push('must select UTF-8 with ^CI28 (printers do not default to it)');
  if (/\^PQ/i.test(zpl)) problems.push('must not set the quantity (^PQ): the daemon writes it from "copies"');
  if (/~/.test(zpl.replace(PLACEHOLDER, ''))) problems.push('must not hold control commands (~)');
  if (![8, 12, 24].includes(template.dpmm)) problems.push(`dpmm: must be 8, 12 or 24 (got ${template.dpmm})`);
  for (const key of ['width_mm', 'height_mm'] as const) {
    if (!(template[key] > 0 && template[key] <= 300)) problems.push(`${key}: must be a size in millimetres`);
  }
  const stray = zpl.replace(PLACEHOLDER, '').match(ANY_BRACES);
  if (stray) problems.push('holds "{{" or "}}" that is not a placeholder {{field|max}}');
  const known = new Set(knownFields);
  for (const p of placeholders(zpl)) {
    if (!known.has(p.field)) problems.push(`references unknown field "${p.field}" (known: ${knownFields.join(', ')})`);
    if (p.maxChars < 1) problems.push(`{{${p.field}|${p.maxChars}}}: the width must be at least 1 character`);
  }
  // Every placeholder inside a field the printer reads with ^FH_: split into fields at ^FD … ^FS.
  for (const m of zpl.matchAll(PLACEHOLDER)) {
    const before = zpl.slice(0, m.index);
    const fd = before.lastIndexOf('^FD');
    const fs = before.lastIndexOf('^FS');
    const inField = fd > fs && zpl.indexOf('^FS', m.index) !== -1;
    const escaped = fd >= 0 && before.slice(0, fd).endsWith(`^FH${FIELD_HEX_INDICATOR}`);
    if (!inField || !escaped) problems.push(`{{${m[1]}}} must be inside a ^FH${FIELD_HEX_INDICATOR}^FD … ^FS field`);
  }
  return problems;
}

/** The highest quantity one request may ask for. */
export const MAX_COPIES = 10;

export interface RenderedLabel {
  zpl: string;
  /** Fields whose text was cut to fit. */
  cut: string[];
}

/**
 * The label: every placeholder filled with its value fitted and escaped, and `^PQ<copies>` before
 * the end of the format. Throws for a template with problems (they were reported at config check).
 */
export function renderTemplate(template: LabelTemplate, values: Readonly<Record<string, string>>, copies: number, knownFields: readonly string[]): RenderedLabel {
  const problems = templateProblems(template, knownFields);
  if (problems.length > 0) throw new Error(`template: ${problems.join('; ')}`);
  if (!Number.isInteger(copies) || copies < 1 || copies > MAX_COPIES) throw new RangeError(`copies: must be 1 to ${MAX_COPIES}`);
  const cut: string[] = [];
  const body = template.zpl.trim().replace(PLACEHOLDER, (_all, field: string, max: string) => {
    const fitted = fitField(values[field] ?? '', Number(max));
    if (fitted.cut) cut.push(field);
    return escapeFieldData(fitted.text);
  });
  const zpl = `${body.slice(0, -'^XZ'.length).trimEnd()}\n^PQ${copies},0,1,Y\n^XZ\n`;
  return { zpl, cut: [...new Set(cut)] };
}
