/**
 * The universal test id of an ASTM result: the published code, and whether a component is
 * a LOINC code. Apart from records.ts so that dialects can use them without an import cycle.
 */

/**
 * The code of a result: the whole universal test id (R-3, first repeat), its components trimmed,
 * leading and trailing empty ones dropped, joined with `^`. Vendors put their local code in
 * component 1, 4 or 5 and add what tells one quantity from another after it (a result aspect:
 * final, interpretation, raw RLU; a dilution, a replicate, a Ct or end point), so no single
 * component is the code: two different quantities never share one (`^^^0021^B-hCG^…^F` and
 * `…^I` stay apart). A dialect may name the components that identify its results instead.
 */
export function testCode(testId: readonly string[]): string {
  const parts = testId.map((c) => c.trim());
  let start = 0;
  let end = parts.length;
  while (start < end && parts[start] === '') start++;
  while (end > start && parts[end - 1] === '') end--;
  return parts.slice(start, end).join('^');
}

/**
 * A LOINC code whose check digit is right (LOINC's mod-10 rule, the Luhn algorithm over the digits
 * before the dash). A device that sends a code failing it sends no LOINC code (the Pentra's
 * `789-9` and `2100-5` do), so a wrong code is never published as if it were one.
 */
export function isLoinc(code: string): boolean {
  const m = /^(\d{1,7})-(\d)$/.exec(code);
  if (!m) return false;
  const digits = m[1]!;
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let n = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 0) {
      n *= 2;
      if (n > 9) n -= 9;
    }
    sum += n;
  }
  return (10 - (sum % 10)) % 10 === Number(m[2]);
}
