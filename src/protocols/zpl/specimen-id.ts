/**
 * Specimen ids the daemon issues when a print request brings none: a site prefix, a sequence kept
 * in the store (so a restart never reuses one) and an ISO 7064 MOD 37-2 check character over the
 * whole id, so a mistyped or misread id is caught where it is keyed in. Daemons that issue ids for
 * the same lab each get their own prefix (the draw station's code): the sequence is unique per
 * prefix, the prefix per daemon.
 */

/** ISO 7064 MOD 37-2: the characters an id may hold, by value; `*` is the check value 36. */
const MOD37_ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*';

/** The MOD 37-2 check character of `body` (digits and upper-case letters). */
export function mod37CheckChar(body: string): string {
  let p = 0;
  for (const c of body) {
    const v = MOD37_ALPHABET.indexOf(c);
    if (v < 0 || v > 35) throw new RangeError(`"${c}" cannot be in a specimen id (digits and A-Z only)`);
    p = ((p + v) * 2) % 37;
  }
  return MOD37_ALPHABET[(38 - p) % 37]!;
}

/** Whether the id's last character is the MOD 37-2 check character of the rest. */
export function hasValidCheckChar(id: string): boolean {
  if (id.length < 2) return false;
  try {
    return mod37CheckChar(id.slice(0, -1)) === id.slice(-1);
  } catch {
    return false;
  }
}

export interface SpecimenIdScheme {
  /** Upper-case letters and digits, 1 to 6; unique to this daemon among those labelling for one lab. */
  prefix: string;
  /** Digits of the sequence (zero-padded), 4 to 10. */
  digits: number;
}

export const DEFAULT_SPECIMEN_ID_SCHEME: SpecimenIdScheme = { prefix: 'S', digits: 8 };

/** The problems of a scheme (from the config), `field: reason` each. */
export function schemeProblems(scheme: SpecimenIdScheme): string[] {
  const out: string[] = [];
  if (!/^[A-Z0-9]{1,6}$/.test(scheme.prefix)) out.push('specimen_ids.prefix: 1 to 6 upper-case letters or digits');
  if (!Number.isInteger(scheme.digits) || scheme.digits < 4 || scheme.digits > 10) out.push('specimen_ids.digits: an integer from 4 to 10');
  return out;
}

/** The id of sequence number `n` under `scheme`; throws once the sequence has no digits left. */
export function formatSpecimenId(scheme: SpecimenIdScheme, n: number): string {
  if (!Number.isInteger(n) || n < 1 || String(n).length > scheme.digits) {
    throw new RangeError(`specimen id sequence ${n} does not fit ${scheme.digits} digits for prefix ${scheme.prefix}`);
  }
  const body = `${scheme.prefix}${String(n).padStart(scheme.digits, '0')}`;
  return body + mod37CheckChar(body);
}
