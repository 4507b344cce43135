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

/** 2x1 in (50.8x25.4 mm) at 203 dpi: 406x203 dots. */
const SPECIMEN_203 = `
^XA
^CI28
^PW406
^LL203
^LH0,0
^PON
^FO16,10^A0N,26,26^FH_^FD{{patient.name|26}}^FS
^FO16,40^A0N,20,20^FH_^FDMRN {{patient.mrn|12}}  DOB {{patient.dob|10}}^FS
^FO32,66^BY2,3,62^BCN,62,Y,N,N,A^FH_^FD{{specimen_id|12}}^FS
^FO320,70^A0N,26,26^FH_^FD{{priority|5}}^FS
^FO320,140^A0N,18,18^FH_^FD{{reprint|7}}^FS
^FO16,172^A0N,20,20^FH_^FD{{collected|16}}  {{tests|16}}^FS
^XZ`;

/** 2x1 in at 300 dpi: 610x305 dots, the 203-dpi layout scaled by 12/8 (X = 3 dots = 0.254 mm). */
const SPECIMEN_300 = `
^XA
^CI28
^PW610
^LL305
^LH0,0
^PON
^FO24,15^A0N,39,39^FH_^FD{{patient.name|26}}^FS
^FO24,60^A0N,30,30^FH_^FDMRN {{patient.mrn|12}}  DOB {{patient.dob|10}}^FS
^FO48,99^BY3,3,93^BCN,93,Y,N,N,A^FH_^FD{{specimen_id|12}}^FS
^FO480,105^A0N,39,39^FH_^FD{{priority|5}}^FS
^FO480,210^A0N,27,27^FH_^FD{{reprint|7}}^FS
^FO24,258^A0N,30,30^FH_^FD{{collected|16}}  {{tests|16}}^FS
^XZ`;

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
  specimen: { description: 'specimen label 2x1 in, 203 dpi (AUTO12 style)', dpmm: 8, width_mm: 50.8, height_mm: 25.4, zpl: SPECIMEN_203 },
  'specimen-300': { description: 'specimen label 2x1 in, 300 dpi (AUTO12 style)', dpmm: 12, width_mm: 50.8, height_mm: 25.4, zpl: SPECIMEN_300 },
  'tube-wrap': { description: 'tube wrap 2x0.5 in, 203 dpi', dpmm: 8, width_mm: 50.8, height_mm: 12.7, zpl: TUBE_203 },
};
