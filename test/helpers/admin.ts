// What the admin commands' tests share.
import type { Browser } from './browser.js';

/** Whether the browser's session still opens a portal page. */
export const signedIn = async (b: Browser) => (await b.get('/records')).status === 200;

/**
 * What erasure leaves of a user: a random epoch that retires her known-browser tokens, the time her sessions ended,
 * the time her factors were removed.
 */
export function isErasureMark(key: string): boolean {
  return key.endsWith(':known-browser-epoch') || key.endsWith(':sessions-ended') || key.endsWith(':factors-removed');
}
