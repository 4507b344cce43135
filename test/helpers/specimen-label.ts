import type { LabelRequest } from '../../drivers/printers/zebra-zpl/label.ts';
import { unescapeFieldData } from '../../src/protocols/zpl/fields.ts';

/**
 * The print request the label tests share: a name with letters the printer's Latin-1 font needs
 * `_XX` escapes for, an MRN and a date of birth that must never leave the label, two tests.
 */
export const SPECIMEN_REQUEST = {
  template: 'specimen',
  specimen_id: 'S24000123',
  patient: { name: 'Ærøe, Zoë', mrn: '123456', dob: '1960-08-29' },
  collected_at: '2026-12-03T09:14:00+01:00',
  tests: ['GLU', 'UA'],
} satisfies LabelRequest;

/** The text of every `^FD` field of a label, unescaped: what the printer puts on it. */
export function fieldTexts(zpl: string): string[] {
  return Array.from(zpl.matchAll(/\^FD(.*?)\^FS/g), (m) => unescapeFieldData(m[1]!));
}
