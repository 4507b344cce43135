/**
 * The built-in label templates (sites add their own under the device's `options.templates`). The
 * specimen layout follows CLSI AUTO12 as far as the public summaries describe it: patient name in
 * the top-left corner, then the patient identifier and date of birth, the Code 128 barcode of the
 * specimen id with the id human-readable under it, and the collection time and tests. The exact
 * AUTO12 coordinates are in the paid standard only; these are laid out from the research note's
 * verified 2x1 in label (X dimension 0.25 mm: 2 dots at 203 dpi, 3 at 300 dpi; quiet zone >= 10X).
 *
 * Font 0 (`^A0`) is the printer's built-in scalable font: Latin, Greek and Cyrillic on current
 * firmware, no CJK. A site printing CJK names loads a Unicode TrueType font on the printer and adds
 * a template that selects it (`^A@N,26,26,E:NOTOSANSCJK.TTF`); see README.md.
 */
import type { LabelTemplate } from '../../../src/protocols/zpl/template.ts';

/**
 * The 2x1 in (50.8x25.4 mm) specimen label, laid out in 203-dpi dots (8 dots/mm: 406x203). At
 * 300 dpi (12 dots/mm: 610x305) every position, font size and bar width scales by 12/8 (X = 3
 * dots = 0.254 mm), so one layout serves both and they cannot drift apart.
 */
function specimenLabel(dpmm: 8 | 12): string {
  const d = (dots: number): number => (dots * dpmm) / 8;
  const font = (dots: number): string => `^A0N,${d(dots)},${d(dots)}`;
  return `
^XA
^CI28
^PW${Math.round(50.8 * dpmm)}
^LL${Math.round(25.4 * dpmm)}
^LH0,0
^PON
^FO${d(16)},${d(10)}${font(26)}^FH_^FD{{patient.name|26}}^FS
^FO${d(16)},${d(40)}${font(20)}^FH_^FDMRN {{patient.mrn|12}}  DOB {{patient.dob|10}}^FS
^FO${d(32)},${d(66)}^BY${d(2)},3,${d(62)}^BCN,${d(62)},Y,N,N,A^FH_^FD{{specimen_id|12}}^FS
^FO${d(320)},${d(70)}${font(26)}^FH_^FD{{priority|5}}^FS
^FO${d(320)},${d(140)}${font(18)}^FH_^FD{{reprint|7}}^FS
^FO${d(16)},${d(172)}${font(20)}^FH_^FD{{collected|16}}  {{tests|16}}^FS
^XZ`;
}

/** 2x0.5 in (50.8x12.7 mm) tube wrap at 203 dpi: 406x102 dots; barcode left, the rest in a column. */
const TUBE_203 = `
^XA
^CI28
^PW406
^LL102
^LH0,0
^PON
^FO12,4^A0N,18,18^FH_^FD{{patient.name|24}}^FS
^FO280,4^A0N,18,18^FH_^FD{{patient.mrn|12}}^FS
^FO16,26^BY2,3,48^BCN,48,Y,N,N,A^FH_^FD{{specimen_id|12}}^FS
^FO280,28^A0N,16,16^FH_^FD{{patient.dob|10}}^FS
^FO280,46^A0N,16,16^FH_^FD{{collected.date|10}}^FS
^FO280,64^A0N,16,16^FH_^FD{{collected.time|5}} {{reprint|7}}^FS
^FO280,82^A0N,16,16^FH_^FD{{tests|13}}^FS
^XZ`;

export const BUILTIN_TEMPLATES: Readonly<Record<string, LabelTemplate>> = {
  specimen: { description: 'specimen label 2x1 in, 203 dpi (AUTO12 style)', dpmm: 8, width_mm: 50.8, height_mm: 25.4, zpl: specimenLabel(8) },
  'specimen-300': { description: 'specimen label 2x1 in, 300 dpi (AUTO12 style)', dpmm: 12, width_mm: 50.8, height_mm: 25.4, zpl: specimenLabel(12) },
  'tube-wrap': { description: 'tube wrap 2x0.5 in, 203 dpi', dpmm: 8, width_mm: 50.8, height_mm: 12.7, zpl: TUBE_203 },
};
