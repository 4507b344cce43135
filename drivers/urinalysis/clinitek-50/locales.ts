/**
 * CLINITEK 50 locale tables (data): the reader's labels and words per language, and the language
 * name its identity packet carries.
 */
import type { ReaderWording } from '../../analytes/urine-strip.ts';

export interface Clinitek50Locale extends ReaderWording {
  /** Identity packet language name (`DEUTSCH`). */
  name: string;
}

export const CLINITEK_50_LOCALES: Readonly<Record<string, Clinitek50Locale>> = {
  // German: the GNUmed documentation's data packet.
  de: {
    name: 'DEUTSCH',
    labels: { GLU: 'GLU', BIL: 'BIL', KET: 'KET', SG: 'SG', PH: 'pH', PRO: 'PRO', UBG: 'UBG', NIT: 'NIT', BLD: 'OBL', LEU: 'LEU' },
    words: { negative: 'NEGATIV', trace: 'SPUR', positive: 'POSITIV', normal: 'NORMAL' },
  },
  // English: the CLINITEK Status English labels (no English CLINITEK 50 packet is public).
  en: {
    name: 'ENGLISH',
    labels: { GLU: 'GLU', BIL: 'BIL', KET: 'KET', SG: 'SG', PH: 'pH', PRO: 'PRO', UBG: 'UBG', NIT: 'NIT', BLD: 'BLD', LEU: 'LEU' },
    words: { negative: 'NEGATIVE', trace: 'TRACE', small: 'SMALL', moderate: 'MODERATE', large: 'LARGE', positive: 'POSITIVE', normal: 'NORMAL' },
  },
};
