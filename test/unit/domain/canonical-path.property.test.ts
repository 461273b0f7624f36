// Properties of the canonical path (fast-check): one reading per request, and no spelling of a denied path gets in.
import fc from 'fast-check';
import t from 'tap';
import { canonicalTarget } from '../../../src/domain/canonical-path.js';
import { compilePolicy, decideAccess } from '../../../src/domain/policy.js';

const policy = compilePolicy({
  rules: [
    { name: 'sign-in page', paths: ['/login', '/public/'], decision: 'public' },
    { name: 'admin closed', paths: ['/admin/'], decision: 'deny' },
    { name: 'portal', paths: ['/'], decision: 'mfa' },
  ],
  default: 'deny',
  caseSensitivePaths: false,
  networks: {},
  legacyEndpoints: [],
});
const decide = (path: string) =>
  decideAccess(policy, { host: 'gw', method: 'GET', path, clientIp: '192.0.2.1', legacyAuth: false, methodOverride: false, session: { groups: [], factorAgeSeconds: 1, factor: 'totp' }, device: { managed: false } });

// Characters that matter to path parsers, plus ordinary ones and some non-ASCII.
const pathChar = fc.constantFrom('/', '/', '.', '.', '%', '2', 'e', 'E', 'f', 'F', '5', 'c', '0', 'a', 'd', 'm', 'i', 'n', ';', '\\', '?', '#', ' ', '\t', '\u0000', 'é', 'ａ', '\u200b', '~', '+', '@', ':');
const rawPath = fc.array(pathChar, { maxLength: 40 }).map((cs) => `/${cs.join('')}`);

t.test('any input is refused or read one way: the path forwarded is canonical and the one the rules see', async () => {
  fc.assert(
    fc.property(rawPath, (raw) => {
      const target = canonicalTarget(raw);
      if (target === null) return true;
      // What the rules see is byte for byte what the portal gets.
      if (target.matchPath !== target.path) return false;
      // A fixed point: reading the forwarded path again changes nothing (no second decoding can differ).
      const again = canonicalTarget(target.path);
      if (again?.path !== target.path) return false;
      // No dot segments, no empty segments (but a trailing slash), nothing outside printable ASCII.
      const segments = target.path.split('/').slice(1, -1);
      return segments.every((s) => s !== '' && s !== '.' && s !== '..') && /^[\x21-\x7e]+$/.test(target.path);
    }),
    { numRuns: 5000 },
  );
});

/** Spellings of `path`: percent-encoding (either case), letter case, `./` and `x/../` segments, doubled slashes. */
function spellingOf(path: string) {
  const segments = path.split('/').slice(1);
  const segment = (seg: string) =>
    fc
      .tuple(...[...seg].map((ch) => fc.constantFrom(ch, ch.toUpperCase(), `%${ch.charCodeAt(0).toString(16)}`, `%${ch.charCodeAt(0).toString(16).toUpperCase()}`)))
      .map((chars) => chars.join(''));
  const noise = fc.constantFrom('', '', './', '%2e/', 'junk/../', 'x/%2e%2e/', 'x/.%2E/', '/', '//');
  return fc.tuple(...segments.map((s) => fc.tuple(noise, segment(s)))).map((parts) => `/${parts.map(([n, s]) => `${n}${s}`).join('/')}`);
}

t.test('no spelling of a denied path is let through', async () => {
  const denied = fc.oneof(spellingOf('/admin/'), spellingOf('/admin/users'), spellingOf('/admin'), spellingOf('/public/../admin/'));
  fc.assert(
    fc.property(denied, fc.constantFrom('', '?x=/public', '?a/login'), (path, query) => {
      const target = canonicalTarget(`${path}${query}`);
      return target === null || decide(target.matchPath).verdict === 'deny';
    }),
    { numRuns: 5000 },
  );
});

t.test('the query never takes part in path matching', async () => {
  fc.assert(
    fc.property(fc.constantFrom('/admin/', '/records', '/login'), fc.string({ maxLength: 30 }), (path, q) => {
      const query = encodeURIComponent(q);
      const target = canonicalTarget(`${path}?${query}`);
      return target !== null && target.path === path && target.query === query && decide(target.matchPath).rule === decide(path).rule;
    }),
  );
});

t.test('with path parameters allowed, rules see the path without them and dot segments with them are refused', async (t) => {
  const opts = { pathParameters: true };
  t.same(canonicalTarget('/admin;jsessionid=x/users', opts), { path: '/admin;jsessionid=x/users', matchPath: '/admin/users', query: '' });
  t.equal(decide(canonicalTarget('/admin;x/', opts)!.matchPath).verdict, 'deny');
  for (const raw of ['/public/..;/admin/', '/public/.;x/admin', '/a%3bb', '/;x/admin/', '/;x/login', '/a/;x/../admin', '/records/;x/', '/admin.;x/', '/admin%20;x/secret', '/login.;x']) {
    t.equal(canonicalTarget(raw, opts), null, raw);
  }
  t.same(canonicalTarget('/app/;jsessionid=x', opts), { path: '/app/;jsessionid=x', matchPath: '/app/', query: '' }, 'parameters alone in the last segment');
});
