/**
 * CLINITEK Status locale tables (data): the labels, result words, "not entered" text and clock
 * style the reader prints in each language. Adding a language is adding one entry here.
 */
import type { ReaderWording } from '../../analytes/urine-strip.ts';

export interface ClinitekStatusLocale extends ReaderWording {
  /** What the reader prints for a colour/clarity/id the user did not enter. */
  notEntered: string;
  /** Colour and clarity words the simulator prints, by a neutral key. */
  colours: Record<string, string>;
  clarities: Record<string, string>;
  /** `24h`: `15:25`; `12h`: ` 5:33PM` (space-padded hour). */
  clock: '12h' | '24h';
}

export const CLINITEK_STATUS_LOCALES: Readonly<Record<string, ClinitekStatusLocale>> = {
  // English: the sample line of a JS project in the code index (research note §3.2).
  en: {
    labels: { GLU: 'GLU', BIL: 'BIL', KET: 'KET', SG: 'SG ', BLD: 'BLD', PH: 'pH ', PRO: 'PRO', UBG: 'UBG', NIT: 'NIT', LEU: 'LEU', ALB: 'ALB', CRE: 'CRE' },
    notEntered: 'Not Entered',
    words: { negative: 'Negative', trace: 'Trace', 'trace-intact': 'Trace-intact', 'trace-lysed': 'Trace-lysed', small: 'Small', moderate: 'Moderate', large: 'Large', positive: 'Positive' },
    colours: { yellow: 'Yellow', straw: 'Straw', amber: 'Amber', brown: 'Brown', red: 'Red' },
    clarities: { clear: 'Clear', 'slightly-cloudy': 'Slightly Cloudy', cloudy: 'Cloudy', turbid: 'Turbid' },
    clock: '12h',
  },
  // Spanish: ~35 lines in a Node.js project and a C# reader in the code index (research note §3.2).
  es: {
    labels: { GLU: 'GLU', BIL: 'BIL', KET: 'CET', SG: 'DEN', BLD: 'SAN', PH: 'pH ', PRO: 'PRO', UBG: 'URO', NIT: 'NIT', LEU: 'LEU' },
    notEntered: 'No introducido',
    words: { negative: 'Negativo', trace: 'Indicios', 'trace-intact': 'Ind.Intactos', 'trace-lysed': 'Ind.Hemolizados', small: 'Bajo', moderate: 'Moderado', large: 'Alto', positive: 'Positivo' },
    colours: { yellow: 'Amarillo', straw: 'Pajizo', amber: 'Ámbar', brown: 'Marrón', red: 'Rojo' },
    clarities: { clear: 'Claro', 'slightly-cloudy': 'Algo turbio', cloudy: 'Turbio', turbid: 'Muy turbio' },
    clock: '24h',
  },
};
