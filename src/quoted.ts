// Text from outside the gateway's own words (read from an audit trail, a file) as a message shows it: in quotes, and
// with nothing in it that a terminal would take as a command or a reader would not see.

/**
 * Characters not shown as themselves: controls (C0, DEL, C1 such as U+009B, which opens a terminal's escape sequence
 * as ESC [ does), format characters (bidi overrides and isolates, zero-width ones), surrogates, private use and
 * unassigned code points, and every separator but the space.
 */
const NOT_PRINTABLE = /(?! )[\p{C}\p{Z}]/gu;

/** `text` quoted as a JSON string, with every character not shown as itself escaped as `\uXXXX` (JSON.parse gives it back). */
export function quoted(text: string): string {
  return JSON.stringify(text).replace(NOT_PRINTABLE, (c) => c.split('').map((unit) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, '0')}`).join(''));
}
