/**
 * ZPL field data made safe. A label's text comes from an order screen (a patient's name, an MRN)
 * and must never become a command: in ZPL a `^` ends the field and starts a format command, and a
 * `~` is a control command the printer runs the moment it reads it, even inside a field. Every
 * field is therefore written with `^FH_` and every byte that could mean anything (`^`, `~`, `_`,
 * `\`, and every non-ASCII byte of the UTF-8 text, which `^CI28` decodes back) is written as a
 * `_XX` hex escape; what is left is plain printable ASCII.
 */

/** The field-hex indicator the daemon uses: `^FH_` makes `_XX` a hex escape in the next `^FD`. */
export const FIELD_HEX_INDICATOR = '_';

/** Bytes written as themselves: printable ASCII except the command prefixes, the escape and `\`. */
function isPlain(byte: number): boolean {
  return byte >= 0x20 && byte <= 0x7e && byte !== 0x5e /* ^ */ && byte !== 0x7e /* ~ */ && byte !== 0x5f /* _ */ && byte !== 0x5c /* \ */;
}

/** The text as `^FH_` field data: UTF-8, every byte that is not plain written `_XX`. */
export function escapeFieldData(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += isPlain(byte) ? String.fromCharCode(byte) : `_${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** `^FH_` field data back to the text it encodes (for tests and for reading a label's stored ZPL). */
export function unescapeFieldData(data: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < data.length; i++) {
    const m = data[i] === FIELD_HEX_INDICATOR ? /^[0-9A-Fa-f]{2}/.exec(data.slice(i + 1, i + 3)) : null;
    if (m) {
      bytes.push(parseInt(m[0], 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(data[i]!, 'utf8'));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/**
 * The text as a label shows it: control characters and runs of white space become one space (a
 * line feed in a name is never meant to be printed), and it is cut to `maxChars` user-perceived
 * characters (a letter with its accents is one; a cut never splits it), so it stays within the
 * width its template gives it instead of running off the label.
 */
export function fitField(text: string, maxChars: number): { text: string; cut: boolean } {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\s]+/gu, ' ').trim();
  const parts = Array.from(graphemes.segment(clean), (s) => s.segment);
  if (parts.length <= maxChars) return { text: clean, cut: false };
  return { text: parts.slice(0, maxChars).join('').trimEnd(), cut: true };
}

/**
 * The commands of a ZPL text in order (`^XA`, `^FO`, `~HS`…): a prefix and the two characters
 * after it. Field data escaped by `escapeFieldData` holds no prefix, so a label holds exactly the
 * commands of its template whatever the text in its fields.
 */
export function zplCommands(zpl: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < zpl.length; i++) {
    const c = zpl[i];
    if (c === '^' || c === '~') {
      out.push(zpl.slice(i, i + 3).toUpperCase());
      i += 2;
    }
  }
  return out;
}
