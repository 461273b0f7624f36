// A code as a person typed it, read as they meant it: on a phone set to Arabic, Persian or Hindi the keypad types that
// script's digits, a right-to-left field adds direction marks, and autocorrect turns a hyphen into a dash.

/** Decimal digits of any script as ASCII digits; format characters (direction marks, zero-width spaces), spaces and dashes dropped. */
export function typedCode(input: string): string {
  return input.replace(/[\p{Cf}\s\p{Pd}]/gu, '').replace(/\p{Nd}/gu, (d) => String(digitValue(d)));
}

/** Unicode keeps each script's digits 0–9 in ten consecutive code points; some scripts' runs follow one another. */
function digitValue(d: string): number {
  const cp = d.codePointAt(0)!;
  let start = cp;
  while (/\p{Nd}/u.test(String.fromCodePoint(start - 1))) start--;
  return (cp - start) % 10;
}
