import t from 'tap';
import { factorName } from '../../../src/services/enrolment.js';

t.test("a factor's name: as typed, without what would change how the page around it is shown", async (t) => {
  t.equal(factorName('  Blue key  ', 'Passkey'), 'Blue key', 'trimmed');
  t.equal(factorName('a\u0007b\nc', 'Passkey'), 'abc', 'no control characters');
  // Embeddings, overrides and isolates would reorder the page's text or end the isolation the page puts the name in.
  t.equal(factorName('\u202Eyek eulB', 'Passkey'), 'yek eulB', 'no right-to-left override');
  t.equal(factorName('phone\u2069 \u2066x\u202A\u202B\u202C\u202D\u2067\u2068', 'Passkey'), 'phone x', 'no embedding or isolate, opened or closed');
  // Joiners are part of how some names are written: an emoji sequence, Persian.
  t.equal(factorName('\u{1F469}\u200D\u{1F4BB} laptop', 'Passkey'), '\u{1F469}\u200D\u{1F4BB} laptop', 'a zero-width joiner stays');
  t.equal(factorName('\u0645\u06CC\u200C\u062E\u0648\u0627\u0645', 'Passkey'), '\u0645\u06CC\u200C\u062E\u0648\u0627\u0645', 'a zero-width non-joiner stays');
  t.equal(factorName('\u202E\u2069 ', 'Passkey'), 'Passkey', 'nothing left: the default');
  t.equal(factorName(' \u200E\u200B\uFEFF ', 'Passkey'), 'Passkey', 'nothing visible left (a direction mark, a zero-width space): the default');
  t.equal(factorName('\u200Ephone', 'Passkey'), '\u200Ephone', 'a mark beside a visible name stays');
  // A surrogate without its pair is no character: the page would show U+FFFD for it.
  t.equal(factorName('Blue\ud800 key\udfff', 'Passkey'), 'Blue key', 'no lone surrogate');
  t.equal(factorName('\ud83d', 'Passkey'), 'Passkey', 'only a lone surrogate: the default');
  t.equal(factorName(`${'a'.repeat(59)}\u{1F511}`, 'Passkey'), 'a'.repeat(59), 'at most 60 units, a character not cut in two');
  t.equal(factorName(`${'a'.repeat(58)}\u{1F511}b`, 'Passkey'), `${'a'.repeat(58)}\u{1F511}`, 'one that fits is kept whole');
  t.equal(factorName(`${'a'.repeat(58)} \u{1F511}`, 'Passkey'), 'a'.repeat(58), 'no space left at the end by the cut');
  t.equal(factorName(`${'a'.repeat(59)} b`, 'Passkey'), 'a'.repeat(59), 'nor by a cut after a space');
});
