import t from 'tap';
import { canonicalTarget, loggedTarget, targetOrRefusal } from '../../../src/domain/canonical-path.js';
import { applySetCookies, cookieHeader, cookieValues, portalSessionDigest, sameJar, setCookieNames, withExplicitPath } from '../../../src/domain/cookie-jar.js';
import { browserResponseHeaders, clearsCookies, upstreamRequestHeaders } from '../../../src/domain/headers.js';
import { answerMatches } from '../../../src/domain/login-success.js';
import { browserLocation, followedLocation, returnTarget } from '../../../src/domain/redirect.js';
import { sessionState, sessionTtlMs, touchDue } from '../../../src/domain/session-times.js';
import { canonicalUsername } from '../../../src/domain/username.js';
import { testConfig } from '../../helpers/config.js';

t.test('canonical usernames', async (t) => {
  t.equal(canonicalUsername('  Alice ', 'lower'), 'alice');
  t.equal(canonicalUsername('ALICE', 'lower'), canonicalUsername('alice', 'lower'), 'case variants share one identity');
  t.equal(canonicalUsername('Alice', 'preserve'), 'Alice');
  t.equal(canonicalUsername('Ame\u0301lie', 'lower'), canonicalUsername('Am\u00e9lie', 'lower'), 'NFC: composed and decomposed match');
  t.equal(canonicalUsername('   ', 'lower'), null, 'blank');
  t.equal(canonicalUsername('alice\nadmin', 'lower'), null, 'control characters');
  t.equal(canonicalUsername('\uff41lice', 'lower'), 'alice', 'NFKC: a full-width letter is the letter');
  t.equal(canonicalUsername('jos\ud800', 'lower'), null, 'a lone surrogate (it would become U+FFFD, another name)');
  t.equal(canonicalUsername('\udc00jos', 'lower'), null, 'a lone low surrogate');
  t.equal(canonicalUsername('jos\ud83d\ude00', 'lower'), 'jos\ud83d\ude00', 'a surrogate pair is a character like any other');
  t.equal(canonicalUsername('\u0639\u0644\u06cc\u200c\u0631\u0636\u0627', 'lower'), '\u0639\u0644\u06cc\u200c\u0631\u0636\u0627', 'a zero-width non-joiner inside a Persian name is kept');
  for (const [hidden, why] of [['ali\u200bce', 'zero-width space'], ['ali\u00adce', 'soft hyphen'], ['alice\u200d', 'zero-width joiner'], ['ali\u200dce', 'zero-width joiner between Latin letters'], ['ali\u200cce', 'zero-width non-joiner between Latin letters'], ['ali\ufeffce', 'byte order mark'], ['ali\u2028ce', 'line separator'], ['ali\u3164ce', 'Hangul filler']]) {
    t.equal(canonicalUsername(hidden!, 'lower'), null, why);
  }
  t.equal(canonicalUsername('a'.repeat(257), 'lower'), null, 'too long');
});

t.test('login success rules: every configured rule must hold', async (t) => {
  const answer = { status: 302, location: '/records', setCookieNames: ['PORTALSESSID'], body: '' };
  t.ok(answerMatches({ status: [302] }, answer));
  t.notOk(answerMatches({ status: [200] }, answer), 'status');
  t.ok(answerMatches({ status: [302], location: '^/records' }, answer));
  t.notOk(answerMatches({ status: [302], location: '^/records' }, { ...answer, location: '/login?error=1' }), 'location pattern');
  t.notOk(answerMatches({ status: [302], location: '^/records' }, { ...answer, location: undefined }), 'no location');
  t.ok(answerMatches({ status: [302], setCookie: 'PORTALSESSID' }, answer));
  t.notOk(answerMatches({ status: [302], setCookie: 'AUTH' }, answer), 'cookie missing');
  t.ok(answerMatches({ status: [200], body: 'Welcome' }, { ...answer, status: 200, body: '<h1>Welcome</h1>' }));
  t.notOk(answerMatches({ status: [200], body: 'Welcome' }, { ...answer, status: 200, body: 'Invalid password' }), 'body pattern');
});

t.test("a login answer's Location is judged where it sends a browser: resolved against the login's URL", async (t) => {
  const config = testConfig('http://portal.internal:8080');
  const followed = (location: string) => followedLocation(location, config, '/portal/login.do?lang=en');
  const success = (location: string, pattern = '^/portal/home') => answerMatches({ status: [302], location: pattern }, { status: 302, location: followed(location), setCookieNames: [], body: '' });
  // On the portal: its path and query, whether the Location is relative, absolute-path or absolute.
  for (const [sent, path] of [
    ['home.jsp', '/portal/home.jsp'],
    ['home.jsp?a=1#top', '/portal/home.jsp?a=1'],
    ['../x', '/x'],
    ['?a=1', '/portal/login.do?a=1'],
    ['/portal/home.jsp', '/portal/home.jsp'],
    ['http://portal.internal:8080/portal/home.jsp', '/portal/home.jsp'],
    ['//PORTAL.internal:8080/portal/home.jsp', '/portal/home.jsp'],
    // Its host under https: a portal that builds its redirects from Host and X-Forwarded-Proto.
    ['https://portal.internal:8080/portal/home.jsp', '/portal/home.jsp'],
    // A portal that builds its redirects from X-Forwarded-Host names a host of the gateway (server.hosts).
    ['https://localhost/portal/home.jsp', '/portal/home.jsp'],
  ]) {
    t.equal(followed(sent!), path, `${sent}: ${path}`);
  }
  t.ok(success('home.jsp'), 'a relative Location meets the rule for the path it leads to');
  t.ok(success('http://portal.internal:8080/portal/home.jsp'), 'so does the absolute URL on the portal');
  t.ok(success('home.jsp', '^(/portal/)?home\\.jsp'), 'a pattern written for the relative form that allows the path holds');
  t.notOk(success('home.jsp', '^home\\.jsp'), 'one anchored to the relative form does not');
  // Elsewhere: the absolute URL, so that a rule for a path on the portal never holds for another site's same path.
  for (const [sent, url] of [
    ['https://evil.example/portal/home.jsp', 'https://evil.example/portal/home.jsp'],
    ['//other.host/x', 'http://other.host/x'],
    ['//evil.example/portal/home.jsp', 'http://evil.example/portal/home.jsp'],
    ['http://portal.internal:9090/portal/home.jsp', 'http://portal.internal:9090/portal/home.jsp'],
    ['https://user:pw@localhost/portal/home.jsp', 'https://user:pw@localhost/portal/home.jsp'],
  ]) {
    t.equal(followed(sent!), url, `${sent}: ${url}`);
    t.notOk(success(sent!), `${sent}: not a success for ^/portal/home`);
  }
  t.ok(success('https://evil.example/portal/home.jsp', 'portal/home'), 'an unanchored rule holds for any site: the reason to anchor it');
  t.notOk(success('//evil.example/portal/home.jsp', '^/'), 'a scheme-relative Location to another host is no path on the portal, not even for ^/');
  // What cannot be resolved, or what browsers read differently, meets no location rule.
  for (const garbage of ['http://[bad', 'http://portal.internal:99999/x', '/\\evil.example/portal/home', '/portal/home\tx', '/portal/home x', '']) {
    t.equal(followed(garbage), undefined, JSON.stringify(garbage));
    t.notOk(success(garbage, '.*'), `${JSON.stringify(garbage)}: no rule holds`);
  }
});

t.test('the cookies a login answer sets: not those it deletes', async (t) => {
  const now = Date.UTC(2026, 0, 1);
  t.same(setCookieNames(['AUTH=tok; Path=/; HttpOnly', 'THEME=dark; Max-Age=60'], now), ['AUTH', 'THEME']);
  for (const deletion of ['AUTH=; Path=/', 'AUTH=x; Max-Age=0', 'AUTH=x; Max-Age=-1', 'AUTH=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT', 'AUTH=x; Expires=Thursday, 01-Jan-70 00:00:00 GMT'])
    t.same(setCookieNames([deletion], now), [], deletion);
  t.same(setCookieNames(['AUTH=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=60'], now), ['AUTH'], 'Max-Age comes first');
  // An Expires no browser reads as a date is ignored (RFC 6265 §5.2.1): a session cookie, not a deletion.
  for (const kept of ['AUTH=x; Expires=nonsense', 'AUTH=x; Expires=0', 'AUTH=x; Expires=-1', 'AUTH=x; Expires=Feb 30 2000 10:00:00', 'AUTH=x; Expires=Thu, 01 Jan 1970 25:00:00 GMT'])
    t.same(setCookieNames([kept], now), ['AUTH'], kept);
});

t.test('cookie jar: at most 50 cookies, a flood of one name going first, then the narrowest path, each of at most 4096 bytes (RFC 6265 §6.1)', async (t) => {
  const now = 1_000_000;
  let jar = applySetCookies([], ['SESSION=1; Path=/; HttpOnly'], '/', now);
  // A portal that sets a cookie without a Path: one per folder a client asks for.
  for (let i = 0; i < 60; i++) jar = applySetCookies(jar, ['seen=1'], `/static/d${i}/x`, now);
  t.equal(jar.length, 50, 'no more than 50');
  t.same(jar.at(-1), { name: 'seen', value: '1', path: '/static/d59', scriptable: true }, 'the newest kept');
  t.same(jar[0], { name: 'SESSION', value: '1', path: '/' }, 'the session cookie (Path=/) stays, though the oldest');
  t.notOk(jar.some((c) => c.path === '/static/d10'), 'the oldest of the others gone');
  t.equal(jar[1]!.path, '/static/d11');
  let root = applySetCookies([], Array.from({ length: 52 }, (_, i) => `c${i}=1; Path=/`), '/', now);
  t.same([root.length, root[0]!.name], [50, 'c2'], 'all of Path=/: the oldest go');
  root = applySetCookies(root, ['c2=2; Path=/'], '/', now);
  t.equal(root[0]!.value, '2', 'a cookie set again keeps its place');
  // A servlet's session cookie on its context path, older than every cookie of the flood.
  // Tomcat with a ROOT application: the name is set on two paths, and the flood's name on more.
  let servlet = applySetCookies([], ['JSESSIONID=root; Path=/; HttpOnly', 'JSESSIONID=abc; Path=/portal; HttpOnly'], '/portal/login', now);
  for (let i = 0; i < 55; i++) servlet = applySetCookies(servlet, ['lastView=1'], `/portal/records/r${i}/view`, now);
  t.same([servlet.length, servlet.slice(0, 2)], [50, [{ name: 'JSESSIONID', value: 'root', path: '/' }, { name: 'JSESSIONID', value: 'abc', path: '/portal' }]], 'a session cookie on a context path stays too');
  const unique = applySetCookies([], [...Array.from({ length: 50 }, (_, i) => `c${i}=1; Path=/app`), 'deep=1; Path=/app/x/y', 'late=1; Path=/app/z'], '/', now);
  t.same([unique.length, unique.some((c) => c.name === 'deep'), unique[0]!.name], [50, false, 'c0'], 'no name repeated: the narrowest path goes first');
  const big = applySetCookies([], [`BIG=${'x'.repeat(4094)}`, `FITS=${'x'.repeat(4092)}`], '/', now);
  t.same(big.map((c) => c.name), ['FITS'], 'a cookie over 4096 bytes (name and value) is not kept');
});

t.test('cookie jar merge', async (t) => {
  const now = 1_000_000;
  let jar = applySetCookies([], ['A=1; Path=/; HttpOnly', 'B=2; Path=/app', 'C=3; Max-Age=60'], '/login', now);
  t.equal(cookieHeader(jar, '/app/x', now), 'B=2; A=1; C=3', 'longest path first; default path of /login is /');
  t.equal(cookieHeader(jar, '/other', now), 'A=1; C=3', 'path-scoped cookie not sent elsewhere');
  t.equal(cookieHeader(jar, '/application', now), 'A=1; C=3', '/app does not match /application');
  jar = applySetCookies(jar, ['A=changed; Path=/'], '/', now);
  t.equal(cookieHeader(jar, '/', now), 'A=changed; C=3', 'same name and path replaces');
  jar = applySetCookies(jar, ['A=; Path=/; Max-Age=0'], '/', now);
  t.equal(cookieHeader(jar, '/', now), 'C=3', 'Max-Age=0 deletes');
  jar = applySetCookies(jar, ['C=3; Expires=Thu, 01 Jan 1970 00:00:00 GMT'], '/', now);
  t.equal(cookieHeader(jar, '/', now), undefined, 'past Expires deletes');
  jar = applySetCookies([], ['SID=abc; Path=/; HttpOnly'], '/', now);
  jar = applySetCookies(jar, ['SID=new; Path=/; Expires=0; HttpOnly'], '/', now);
  t.same(jar, [{ name: 'SID', value: 'new', path: '/' }], 'Expires=0 (legacy code meaning "session cookie") is no date: kept, without expiry');
  // Whether the portal's scripts may read a cookie: kept, for the browser that holds the portal's cookies (forward-auth).
  const readable = applySetCookies(jar, ['SID=new; Path=/; Expires=0'], '/', now);
  t.same(readable, [{ name: 'SID', value: 'new', path: '/', scriptable: true }], 'set without HttpOnly: readable by scripts');
  t.notOk(sameJar(readable, jar), 'a jar in which that changed is another jar');
  // Dates as browsers read them: other spellings, trailing text, two-digit years; the last Expires counts.
  const future = now + 1000;
  for (const date of ['Wed, 01 Jan 2070 00:00:00 GMT garbage', '1 jan 2070 0:0:0', 'Thu, 01 Jan 1970 00:00:00 GMT; Expires=Wed, 01 Jan 2070 00:00:00 GMT'])
    t.equal(applySetCookies([], [`T=1; Path=/; Expires=${date}`], '/', future)[0]?.expiresAt, Date.UTC(2070, 0, 1), date);
  t.equal(applySetCookies([], ['T=1; Path=/; Expires=Sun, 01-Jan-69 00:00:00 GMT'], '/', future)[0]?.expiresAt, Date.UTC(2069, 0, 1), 'a two-digit year below 70 is 20xx');
  const owned = applySetCookies([], ['XSRF-TOKEN=t1; Path=/', 'S=1'], '/', now, ['XSRF-TOKEN']);
  t.equal(cookieHeader(owned, '/', now), 'S=1', 'allow-listed cookies stay with the browser, not the jar');
  t.equal(cookieHeader(owned, '/', now, 'S=planted; XSRF-TOKEN=from-browser; other=x', ['XSRF-TOKEN']), 'S=1; XSRF-TOKEN=from-browser', "only the browser's allow-listed cookies are added");
  t.equal(cookieHeader([], '/', now, 'S=planted', ['XSRF-TOKEN']), undefined, 'nothing else from the browser');
  t.equal(cookieHeader([], '/', now, 'XSRF-TOKEN=a, JSESSIONID=evil', ['XSRF-TOKEN']), undefined, 'a value smuggling a second cookie is dropped');
  t.equal(cookieHeader([], '/', now, 'XSRF-TOKEN="a b"', ['XSRF-TOKEN']), undefined, 'whitespace: dropped');
  t.equal(cookieHeader([], '/', now, 'XSRF-TOKEN="a1b2"', ['XSRF-TOKEN']), 'XSRF-TOKEN="a1b2"', 'a quoted value (RFC 6265 §4.1.1) passes as sent');
  for (const v of ['"a1b2', 'a1b2"', 'a"b', '"a"b"']) t.equal(cookieHeader([], '/', now, `XSRF-TOKEN=${v}`, ['XSRF-TOKEN']), undefined, `quotes not around it: ${v}`);
  t.equal(cookieHeader([], '/', now, ' XSRF-TOKEN=a1 ;\t__Host-mfa-session=x.y.z; other=q', ['XSRF-TOKEN']), 'XSRF-TOKEN=a1', 'spaces and tabs around a pair go');
  t.equal(cookieHeader([], '/', now, 'XSRF-TOKENx; JSESSIONID=evil', ['XSRF-TOKEN']), undefined, 'a pair without `=` names no allow-listed cookie (its name would be read as the text less its last character)');
  t.equal(cookieHeader([], '/', now, 'a=1; XSRF-TOKEN=b2; XSRF-TOKEN=c3', ['XSRF-TOKEN']), 'XSRF-TOKEN=b2; XSRF-TOKEN=c3', 'each copy, in order');
  const expiring = applySetCookies([], ['D=4; Max-Age=10'], '/', now);
  t.equal(cookieHeader(expiring, '/', now + 11_000), undefined, 'expires with time');
});

t.test('a Set-Cookie line sent in answer to another request keeps the path of its own (RFC 6265 §5.1.4, §5.2.4)', async (t) => {
  t.equal(withExplicitPath('XSRF-TOKEN=a; SameSite=Lax', '/login'), 'XSRF-TOKEN=a; SameSite=Lax; Path=/');
  t.equal(withExplicitPath('XSRF-TOKEN=a', '/app/j_security_check'), 'XSRF-TOKEN=a; Path=/app');
  t.equal(withExplicitPath('XSRF-TOKEN=a; Path=/portal; Secure', '/app/login'), 'XSRF-TOKEN=a; Path=/portal; Secure', 'a path of its own');
  t.equal(withExplicitPath('XSRF-TOKEN=a; path = /x', '/app/login'), 'XSRF-TOKEN=a; path = /x');
  t.equal(withExplicitPath('XSRF-TOKEN=a; Path=relative', '/app/login'), 'XSRF-TOKEN=a; Path=relative; Path=/app', 'a path that is none');
  t.equal(withExplicitPath('XSRF-TOKEN=a; Path=/x; Path=', '/app/login'), 'XSRF-TOKEN=a; Path=/x; Path=; Path=/app', 'the last one counts');
  t.equal(withExplicitPath('XSRF-TOKEN=/path=/x', '/login'), 'XSRF-TOKEN=/path=/x; Path=/', 'a value is no attribute');
  t.equal(withExplicitPath('XSRF-TOKEN=a; Path=/x; Path', '/app/login'), 'XSRF-TOKEN=a; Path=/x; Path; Path=/app', 'a last Path without a value');
  t.equal(withExplicitPath('XSRF-TOKEN=a; Pathology=/x', '/app/login'), 'XSRF-TOKEN=a; Pathology=/x; Path=/app', 'another attribute');
});

t.test("forward-auth: the portal session a gateway session is bound to", async (t) => {
  const header = 'theme=dark; JSESSIONID=abc; XJSESSIONID=zzz; JSESSIONID = abc';
  t.same(cookieValues(header, 'JSESSIONID'), ['abc', 'abc'], 'by exact name, every copy');
  t.same(cookieValues('theme=dark', 'JSESSIONID'), []);
  t.same(cookieValues(undefined, 'JSESSIONID'), []);
  t.same(cookieValues('JSESSIONIDSSO=1; a.JSESSIONID=2; JSESSIONID=abc', 'JSESSIONID'), ['abc'], 'other names holding it');
  // The name in another form, which some portal's parser reads as the cookie: nothing can be said for certain.
  for (const other of ['jsessionid=x', '%4aSESSIONID=x', '"JSESSIONID"=x', '$JSESSIONID=x', 'x=1 JSESSIONID=x', 'x=1, JSESSIONID=x', '\u0085JSESSIONID=x', '\u00a0JSESSIONID=x', 'x="a JSESSIONID=x"']) {
    t.equal(cookieValues(`JSESSIONID=abc; ${other}`, 'JSESSIONID'), null, other);
  }
  // PHP's names: `.` and spaces are `_`, a `[` never closed too, an array's name ends at its `[`.
  for (const other of ['app.session=x', 'app session=x', 'app[session=x', 'app%2esession=x', 'app_session[]=x', 'app_session[0]=x', 'APP.SESSION=x', '\tapp.session=x', 'app+session=x']) {
    t.equal(cookieValues(`${other}; app_session=abc`, 'app_session'), null, other);
  }
  for (const other of ['my[app.session=x', 'my[app[session=x', 'my[app_session=x']) {
    t.equal(cookieValues(`${other}; my_app_session=abc`, 'my_app_session'), null, `${other}: after a [ never closed, as PHP 7 or 8 reads it`);
  }
  t.same(cookieValues('app.sessions=x; app_sess=y; app[session]=z; app_session=abc', 'app_session'), ['abc'], "names PHP reads as others: app_sessions, app_sess, an array app")
  const digest = (h: string | undefined) => portalSessionDigest(['JSESSIONID', 'SSO'], (name) => cookieValues(h, name));
  const mine = digest('JSESSIONID=abc; SSO=1');
  t.type(mine, 'string');
  t.equal(digest('SSO=1; theme=dark; JSESSIONID=abc'), mine, 'other cookies and the order do not count');
  t.equal(digest('JSESSIONID=abc; SSO=1; JSESSIONID=abc'), mine, 'the same value twice is one value');
  t.not(digest('JSESSIONID=abd; SSO=1'), mine, "another person's session");
  t.not(digest('JSESSIONID=abc'), mine, 'one of the cookies missing');
  t.not(digest('JSESSIONID=abc; SSO=1x'), mine);
  t.equal(digest('JSESSIONID=abc; SSO=1; JSESSIONID=xyz'), null, 'two values of one name: which the portal reads cannot be told');
  t.equal(digest('theme=dark'), null, 'none at all');
  t.not(portalSessionDigest(['A', 'B'], (n) => (n === 'A' ? ['x'] : [])), portalSessionDigest(['A', 'B'], (n) => (n === 'B' ? ['x'] : [])), 'the value under its own name');
});

t.test('session timeouts with an injected clock', async (t) => {
  const limits = { idleMs: 15 * 60_000, absoluteMs: 12 * 3600_000 };
  const auth = 1_000_000_000;
  t.same(sessionState({ authTime: auth, lastSeen: auth }, auth + 1000, limits), { state: 'active' });
  t.equal(touchDue({ authTime: auth, lastSeen: auth }, auth + 1000, limits), false);
  t.equal(touchDue({ authTime: auth, lastSeen: auth }, auth + 31_000, limits), true, 'touch after 30 s');
  t.same(sessionState({ authTime: auth, lastSeen: auth }, auth + 15 * 60_000, limits), { state: 'idle-expired' });
  t.same(sessionState({ authTime: auth, lastSeen: auth + 12 * 3600_000 - 1000 }, auth + 12 * 3600_000, limits), { state: 'expired' }, 'absolute despite activity');
  t.equal(sessionTtlMs({ authTime: auth, lastSeen: auth }, limits, auth), 15 * 60_000);
  t.equal(sessionTtlMs({ authTime: auth, lastSeen: auth + 12 * 3600_000 - 60_000 }, limits, auth + 12 * 3600_000 - 60_000), 60_000, 'never beyond the absolute limit');
  t.equal(sessionTtlMs({ authTime: auth, lastSeen: auth }, limits, auth + 29_000), 15 * 60_000 - 29_000, 'written later without moving the idle clock: no longer than it has left');
});

t.test('canonical path', async (t) => {
  const ok: [string, string][] = [
    ['/records', '/records'],
    ['/a/./b/../c', '/a/c'],
    ['/a//b/', '/a/b/'],
    ['/%61dmin', '/admin'],
    ['/public/%2e%2e/admin/', '/admin/'],
    ['/..', '/'],
    ['/caf%C3%A9', '/caf%C3%A9'],
    ['/a%20b', '/a%20b'],
    ['/files/report(1).pdf', '/files/report(1).pdf'],
    ['/files/(draft)/x', '/files/(draft)/x'],
    ['/wiki/Special:Search', '/wiki/Special:Search'],
    ['/prices/%E2%82%AC', '/prices/%E2%82%AC'],
  ];
  for (const [raw, path] of ok) t.equal(canonicalTarget(raw)?.path, path, raw);
  t.same(canonicalTarget('/x?a=/admin&b=%2f'), { path: '/x', matchPath: '/x', query: 'a=/admin&b=%2f' }, 'query kept apart and untouched');
  t.equal(canonicalTarget('/docs/M%C3%BCller.pdf')?.path, '/docs/M%C3%BCller.pdf', 'encoded UTF-8 letters are fine');
  t.equal(canonicalTarget('/docs/Mu%CC%88ller.pdf')?.path, '/docs/Mu%CC%88ller.pdf', 'and decomposed ones (macOS file names)');
  t.equal(canonicalTarget('/a.b/c.d.html')?.path, '/a.b/c.d.html', 'dots inside names are fine');
  const bad = ['/admin.', '/admin./x', '/login.php..', '/admin%20', '/admin%2e', '/files/..hidden', '/a/..b/c', '/%EF%BD%81dmin/', '/%EF%AC%81le', '/x%C2%B9', '/%E2%84%AAey', '/a%CD%BEb', '/a%2fb', '/a%5cb', '/a\\b', '/a%00b', '/a%0d%0a', '/a%252e', '/admin;jsessionid=1', '/a%3bb', '/admin%23/public', '/admin%3F', '/a%3fb', '/a%23', '/a%c0%af', '/a%ff', '/a%zz', '/a#b', 'http://evil/x', '*', '/a\u0000b', '/ａdmin', '/a b'];
  // ASP.NET's cookieless segments, in any encoding and place: the portal routes as if they were not there.
  t.equal(canonicalTarget(`/${'a'.repeat(4095)}`)?.path.length, 4096, 'a path of 4096 characters');
  bad.push(`/${'a'.repeat(4096)}`);
  bad.push('/?/admin/users', '/index.php?/login', '/records?/x');
  bad.push('/(S(x))/admin/', '/(A(x)F(y))/login', '/app/(X(1)S(x))/admin', '/%28S%28x%29%29/admin', '/(s(x))/admin', '/(S(x))');
  // Windows' best-fit separators (Japanese `¥`, Korean `₩`, `∕`, `⁄`, `∖`) and NTFS stream names, raw and encoded.
  bad.push('/static/x%C2%A5..%C2%A5admin', '/a%E2%82%A9b', '/static%E2%88%95..%E2%88%95admin', '/a%E2%81%84b', '/a%E2%88%96b');
  bad.push('/admin::$INDEX_ALLOCATION/', '/admin%3A%3A$DATA', '/login.aspx::$DATA', '/admin:$I30:$INDEX_ALLOCATION/x', '/admin:$i30:$index_allocation/', '/admin%3A%24I30%3A%24INDEX_ALLOCATION/x');
  // An authority to URL parsers (and a place for `user:password@`, which would reach the log and the portal).
  bad.push('//records', '//alice:secret@host/records', '///admin');
  for (const raw of bad) t.equal(canonicalTarget(raw), null, JSON.stringify(raw));
});

t.test("canonical path: a Windows short name (IIS's `/ADMINI~1/` is `/administration/`) is refused, other tildes are fine", async (t) => {
  for (const raw of ['/ADMINI~1/', '/admini~1/x', '/REPORT~1.PDF', '/docs/REPORT~12.PDF', '/ADMINI%7E1/', '/ADMINI~1/?x=1', '/A~123456', '/PROGRA~1;x=1', '/~ADMIN~1/', '/~$DOCU~1.DOC']) t.equal(canonicalTarget(raw, { pathParameters: true }), null, raw);
  // Other names with `~` and a digit: not short names.
  for (const raw of ['/~alice/', '/a~b/', '/x~/', '/~/x', '/v~beta1', '/%7Ealice/', '/repo/compare/HEAD~1...main', '/api/pointer/~1users', '/static/js/vendors~main~4f6d7a3c.chunk.js', '/js/main~4f6d.js', '/ADMINISTRATOR~1/', '/REPORT~1.HTML']) t.equal(canonicalTarget(raw)?.path, raw.replace('%7E', '~'), raw);
  t.same(canonicalTarget('/records?v=~1'), { path: '/records', matchPath: '/records', query: 'v=~1' }, 'the query is not a path');
});

t.test('canonical path: an invisible character, which portals strip (`/ad%E2%80%8Bmin` is their `/admin`), is refused', async (t) => {
  // Zero-width space, BOM, soft hyphen, zero-width joiner, right-to-left override, word joiner, Mongolian vowel
  // separator, a variation selector, a tag character.
  for (const raw of ['/ad%E2%80%8Bmin/', '/%EF%BB%BFadmin', '/ad%C2%ADmin', '/ad%E2%80%8Dmin', '/admin%E2%80%AE', '/a%E2%81%A0b', '/a%E1%A0%8Eb', '/a%EF%B8%8Fb', '/a%F3%A0%80%81b']) {
    t.equal(canonicalTarget(raw), null, raw);
  }
  for (const raw of ['/caf%C3%A9', '/%E4%B8%AD%E6%96%87', '/a-b']) t.equal(canonicalTarget(raw)?.path, raw, raw);
  t.same(canonicalTarget('/records?q=%E2%80%8B'), { path: '/records', matchPath: '/records', query: 'q=%E2%80%8B' }, 'the query is not a path');
});

t.test('canonical path: a refused target says why, in words; an accepted one is the canonical target', async (t) => {
  const refused: [string, RegExp][] = [
    ['http://evil/x', /no path starting with '\/' \(an absolute URL/],
    ['//alice:secret@host/records', /starting with '\/\/'/],
    [`/${'a'.repeat(4096)}`, /longer than 4096/],
    ['/?/admin/users', /query starting with '\/'/],
    ['/a b', /printable ASCII/],
    ['/a#b', /'#'/],
    ['/a\\b', /a '\\'/],
    ['/admin;jsessionid=1', /server\.pathParameters/],
    ['/a%zz', /'%' not followed by two hexadecimal digits/],
    ['/a%2fb', /encoded '\/' or '\\'/],
    ['/a%5Cb', /encoded '\/' or '\\'/],
    ['/a%252e', /double encoding/],
    ['/a%3bb', /encoded ';'/],
    ['/admin%23/public', /encoded '\?' or '#'/],
    ['/a%00b', /encoded control character/],
    ['/a%c0%af', /not UTF-8/],
    ['/ad%E2%80%8Bmin/', /invisible character/],
    ['/%EF%BD%81dmin/', /normalisation/],
    ['/a%E2%88%96b', /Windows reads as/],
    ['/admin::$INDEX_ALLOCATION/', /NTFS stream name/],
    ['/ADMINI~1/', /Windows 8\.3 short name/],
    ['/ADMINI%7E1/', /Windows 8\.3 short name/],
    ['/admin.', /ending in '\.' or ' '/],
    ['/admin%20', /ending in '\.' or ' '/],
    ['/files/..hidden', /starting with '\.\.'/],
    ['/(S(x))/admin/', /ASP\.NET cookieless segment/],
  ];
  for (const [raw, why] of refused) t.match(targetOrRefusal(raw), why, JSON.stringify(raw));
  const opts = { pathParameters: true };
  t.match(targetOrRefusal('/..;x/admin', opts), /dot segment/, 'parameters on a dot segment');
  t.match(targetOrRefusal('/;x/admin', opts), /parameters alone before another/, 'a segment of parameters alone');
  // What is refused for none of these reasons: the same target as canonicalTarget gives.
  for (const raw of ['/records', '/a/./b/../c', '/%61dmin', '/caf%C3%A9', '/ADMINISTRATOR~1/', '/x?a=/admin&b=%2f']) t.same(targetOrRefusal(raw), canonicalTarget(raw), raw);
  t.same(targetOrRefusal('/admin;jsessionid=x/users', opts), { path: '/admin;jsessionid=x/users', matchPath: '/admin/users', query: '' });
});

t.test('safe redirects', async (t) => {
  const config = testConfig('http://portal.internal:8080', (raw) => (raw.portal.logoutPaths = ['/logout', '/signout.php']));
  const back = (target: string | undefined) => returnTarget(target, config);
  t.equal(back('/records?x=1'), '/records?x=1');
  t.equal(back('http://portal.internal:8080/messages'), '/messages');
  // A portal that builds its redirects from X-Forwarded-Host names a host of the gateway (server.hosts), on any port.
  for (const own of ['https://localhost/messages?a=1', 'http://LOCALHOST:8443/messages?a=1', 'https://127.0.0.1:9/messages?a=1'])
    t.equal(back(own), '/messages?a=1', own);
  for (const other of ['https://localhost.evil.example/x', 'https://user:pw@localhost/x', 'ftp://localhost/x', 'https://127.0.0.2/x'])
    t.equal(back(other), '/', other);
  for (const evil of ['https://evil.example', '//evil.example', '///evil.example', '/\\evil.example', '\\/evil.example', '/\t/evil.example', 'https:evil.example', 'http://portal.internal:8080@evil.example', 'javascript:alert(1)', 'data:text/html,x', '//evil%E3%80%82example'])
    t.equal(back(evil), '/', evil);
  // The rest of the usual open-redirect spellings: one slash after the scheme, a look-alike host, encoded and
  // double-encoded slashes and backslashes, dot segments that leave a '//' path, line breaks between the slashes.
  for (const evil of ['https:/evil.example', '//localhost.evil.example', '//evil.example%2f%2e%2e', '%2f%2fevil.example', '%252f%252fevil.example', '/%5cevil.example', '/%2e%2e/%2e%2e//evil.example', '/.//evil.example', '/x/..//evil.example', '/\n/evil.example', '/\r/evil.example', '/\v/evil.example', 'http://localhost@evil.example', 'http:\\\\evil.example'])
    t.equal(back(evil), '/', JSON.stringify(evil));
  t.equal(back(undefined), '/');
  // Followed after a sign-in or a step-up, the portal's logout would end the session just proved.
  for (const acting of ['/logout', '/LOGOUT/', '/logout?x=1', '/signout.php/x', '/%6cogout'])
    t.equal(back(acting), '/', acting);
  t.equal(back('/logout-help'), '/logout-help', 'another page');
  t.equal(back('/_mfa/security'), '/_mfa/security', "the gateway's own pages: the security page's step-up comes back");
});

t.test("the portal's Location, for the browser", async (t) => {
  const o = 'http://portal.internal:8080';
  t.equal(browserLocation('http://portal.internal:8080/messages?a=1#top', o), '/messages?a=1#top', 'its own origin: a path on the gateway');
  t.equal(browserLocation('HTTP://PORTAL.INTERNAL:8080/x', o), '/x');
  // As undici hands a header over: each byte a Latin-1 character (`ü` in UTF-8 is the two bytes C3 BC).
  const utf8 = Buffer.from('http://portal.internal:8080/befund/Müller?n=Zoë', 'utf8').toString('latin1');
  t.equal(browserLocation(utf8, o), '/befund/M%C3%BCller?n=Zo%C3%AB', 'raw UTF-8 bytes percent-encoded as they are, once');
  t.equal(browserLocation('https://portal.internal:8080/x?a=1', o), '/x?a=1', 'its host under https (built from X-Forwarded-Proto): a path too');
  t.equal(browserLocation('https://portal.internal/x', 'http://portal.internal'), '/x', 'so on the default ports');
  for (const path of ['//evil.example/', '///evil.example/', '/\\evil.example/', '/\\/evil.example/'])
    t.equal(browserLocation(`http://portal.internal:8080${path}`, o), '/evil.example/', `${path}: never a host to the browser`);
  for (const other of ['https://elsewhere.example/x', 'http://portal.internal:9090/x', 'https://portal.internal/x', 'ftp://portal.internal:8080/x', '/relative', 'relative', 'http://[bad'])
    t.equal(browserLocation(other, o), other, `${other}: as sent`);
  // Scheme-relative: the portal's host with the scheme of the request it answered, never shown to the browser.
  for (const own of ['//portal.internal:8080/home?a=1', '//PORTAL.internal:8080/home?a=1', '\\\\portal.internal:8080/home?a=1', '/\\portal.internal:8080/home?a=1'])
    t.equal(browserLocation(own, o), '/home?a=1', `${own}: a path on the gateway`);
  t.equal(browserLocation('//portal.internal:8080//evil.example/', o), '/evil.example/', 'and still never a host');
  for (const other of ['//elsewhere.example/x', '//portal.internal:9090/x', '//portal.internal/x', '//[bad'])
    t.equal(browserLocation(other, o), other, `${other}: another host, as sent`);
});

t.test('request headers to the portal', async (t) => {
  const h = upstreamRequestHeaders(
    {
      host: 'gw.example',
      accept: 'text/html',
      'x-forwarded-user': 'admin',
      'x-forwarded-for': '6.6.6.6',
      forwarded: 'for=6.6.6.6',
      'x-auth-user': 'admin',
      'remote-user': 'admin',
      'x-remote-user': 'admin',
      x_auth_user: 'admin',
      'x-original-url': '/admin',
      'x-middleware-subrequest': 'middleware',
      'x-real-ip': '127.0.0.1',
      'remote-groups': 'admins',
      'remote-email': 'admin@x',
      'remote-name': 'Admin',
      'x-groups': 'admins',
      'x-roles': 'admin',
      'x-proxy-user': 'admin',
      'x-original-host': 'admin.internal',
      'x-host': 'admin.internal',
      proxy: 'http://evil.example:3128',
      'x-hostname-hint': 'kept',
      'proxy-status': 'kept',
      cookie: 'PORTALSESSID=planted',
      connection: 'close, x-keep-me, X-Forwarded-For',
      'x-keep-me': 'gone',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      'x-custom': 'kept',
      expect: '100-continue',
    },
    { clientIp: '10.1.2.3', proto: 'https', host: 'gw.example', cookie: 'PORTALSESSID=server' },
  );
  t.same(h, {
    accept: 'text/html',
    'x-hostname-hint': 'kept',
    'proxy-status': 'kept',
    'x-custom': 'kept',
    'x-forwarded-for': '10.1.2.3',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'gw.example',
    cookie: 'PORTALSESSID=server',
  });
  const none = upstreamRequestHeaders({ cookie: 'a=b' }, { clientIp: '1.1.1.1', proto: 'http', host: undefined, cookie: undefined });
  t.notOk('cookie' in none, 'browser cookies never forwarded, even when the jar is empty');
});

t.test('response headers to the browser', async (t) => {
  const h = browserResponseHeaders(
    { 'set-cookie': ['PORTALSESSID=x; HttpOnly', 'XSRF-TOKEN=t; Path=/'], location: 'http://portal/records', connection: 'x-secret', 'x-secret': '1', 'content-type': 'text/html' },
    { browserCookies: ['XSRF-TOKEN'], rewriteLocation: (l) => l.replace('http://portal', ''), signedIn: false },
  );
  t.same(h, { 'set-cookie': ['XSRF-TOKEN=t; Path=/'], location: '/records', 'content-type': 'text/html', 'cache-control': 'no-store' });
  const scoped = browserResponseHeaders({ 'set-cookie': ['XSRF-TOKEN=t; Domain=portal.internal; Path=/', 'XSRF-TOKEN=u;domain=.example.org; Secure'] }, { browserCookies: ['XSRF-TOKEN'], rewriteLocation: (l) => l, signedIn: false });
  t.same(scoped['set-cookie'], ['XSRF-TOKEN=t; Path=/', 'XSRF-TOKEN=u; Secure'], "host-only: the portal's Domain would be refused, or widen the cookie to sibling sites");
  const none = browserResponseHeaders({ 'set-cookie': 'PORTALSESSID=x' }, { browserCookies: [], rewriteLocation: (l) => l, signedIn: false });
  t.notOk('set-cookie' in none, 'portal cookies stay in the jar');
  const rewrite = (l: string) => l.replace('http://portal', '');
  t.same(browserResponseHeaders({ location: ['http://portal/a', 'http://portal/b'] }, { browserCookies: [], rewriteLocation: rewrite, signedIn: false }), { location: '/a' }, 'a repeated Location: the first, rewritten');
  t.same(browserResponseHeaders({ 'strict-transport-security': 'max-age=0', 'content-type': 'image/png' }, { browserCookies: [], rewriteLocation: rewrite, signedIn: false }), { 'content-type': 'image/png' }, "the portal cannot replace the gateway's HSTS");
  t.same(browserResponseHeaders({ 'alt-svc': 'h3=":443"; ma=86400', 'content-type': 'image/png' }, { browserCookies: [], rewriteLocation: rewrite, signedIn: false }), { 'content-type': 'image/png' }, "where the portal is also served is not where the gateway is: the browser would take the gateway's origin there");
  // Where the gateway says no-store, no cache in front keeps the answer by the field it reads before Cache-Control.
  const targeted = { 'cdn-cache-control': 'max-age=600', 'cloudflare-cdn-cache-control': 'max-age=600', 'surrogate-control': 'max-age=600', 'edge-control': 'cache-maxage=600s', 'x-accel-expires': '600' };
  t.same(browserResponseHeaders({ 'content-type': 'text/html', 'cache-control': 'public, max-age=600', ...targeted }, { browserCookies: [], rewriteLocation: rewrite, signedIn: false }), { 'content-type': 'text/html', 'cache-control': 'no-store' }, 'a page: no CDN keeps it either');
  t.same(browserResponseHeaders({ 'content-type': 'application/json', ...targeted }, { browserCookies: [], rewriteLocation: rewrite, signedIn: true }), { 'content-type': 'application/json', 'cache-control': 'no-store' }, 'an answer to a signed-in person that the browser may not keep: nor may a CDN');
  t.same(browserResponseHeaders({ 'content-type': 'text/css', 'cache-control': 'public, max-age=600', ...targeted }, { browserCookies: [], rewriteLocation: rewrite, signedIn: true }), { 'content-type': 'text/css', 'cache-control': 'public, max-age=600', ...targeted }, "a style sheet: the portal's word stands, for every cache");
  // No page is kept by the browser; other answers to a signed-in person only as the portal says.
  const caching = (headers: Record<string, string>, signedIn: boolean) => browserResponseHeaders(headers, { browserCookies: [], rewriteLocation: rewrite, signedIn })['cache-control'];
  for (const type of ['text/html', 'text/html; charset=utf-8', 'TEXT/HTML;charset=UTF-8', 'application/xhtml+xml', 'text/plain, text/html', 'text/html,text/plain']) {
    t.equal(caching({ 'content-type': type, 'cache-control': 'public, max-age=600' }, false), 'no-store', `${type}: whatever the portal said`);
  }
  t.equal(caching({ 'content-type': 'text/htmlx' }, false), undefined, 'another type');
  t.equal(caching({ 'content-type': 'text/plain; x="text/html"' }, false), undefined, 'a page type only in a parameter');
  t.equal(caching({ 'content-type': 'text/plain, image/png' }, false), undefined, 'a list without a page type');
  t.equal(caching({ 'content-type': 'application/json' }, true), 'no-store', 'signed in, nothing said');
  t.equal(caching({ 'content-type': 'application/json', 'cache-control': 'private, max-age=60' }, true), 'private, max-age=60', 'signed in, as said');
  t.equal(caching({ 'content-type': 'text/css' }, false), undefined, 'signed out, as said (nothing)');
  // Content-Location and the URL of a Refresh name the portal's origin as a Location does.
  const o = 'http://portal.internal:8080';
  const portal = (headers: Record<string, string>) => browserResponseHeaders(headers, { browserCookies: [], rewriteLocation: (l) => browserLocation(l, o), signedIn: false });
  t.same(portal({ 'content-location': 'http://portal.internal:8080/records/1' }), { 'content-location': '/records/1' });
  t.same(portal({ 'content-location': '//portal.internal:8080/records/1' }), { 'content-location': '/records/1' });
  const refreshes: [string, string][] = [
    ['0; url=http://portal.internal:8080/home', '0; url=/home'],
    ['5;URL=//portal.internal:8080/home', '5;URL=/home'],
    ["0; url='http://portal.internal:8080/home'", "0; url='/home'"],
    ['0.5, "http://portal.internal:8080/home" x', '0.5, "/home" x'],
    ['0 http://portal.internal:8080/home', '0 /home'],
  ];
  for (const [sent, seen] of refreshes) t.same(portal({ refresh: sent }), { refresh: seen }, sent);
  t.same(portal({ link: '<http://portal.internal:8080/app.css>; rel=preload; as=style, </x.js>; rel=preload, <https://cdn.example/f.woff2>; rel=preload' }), { link: ['</app.css>; rel=preload; as=style, </x.js>; rel=preload, <https://cdn.example/f.woff2>; rel=preload'] }, 'Link targets on the portal\'s origin, others as sent');
  for (const sent of ['0; url=https://elsewhere.example/x', '0; url=/home', '30', 'soon; url=http://portal.internal:8080/x'])
    t.same(portal({ refresh: sent }), { refresh: sent }, `${sent}: as sent`);
});


t.test("a portal answer's Clear-Site-Data that has the browser delete its cookies", async (t) => {
  for (const value of ['"cookies"', '"*"', '"cache", "cookies"', '"cache","cookies","storage"', ' "storage" ,\t"cookies" ', ['"cache"', '"cookies"']]) {
    t.ok(clearsCookies(value), JSON.stringify(value));
  }
  // Browsers match each directive exactly, quotes and case, and ignore the others.
  for (const value of [undefined, '', '"cache"', '"storage"', '"cache", "storage", "executionContexts"', 'cookies', '"Cookies"', '*', "'cookies'", '"cookies', '"cache" "cookies"']) {
    t.notOk(clearsCookies(value), JSON.stringify(value));
  }
});

t.test('loggedTarget: the path of a refused target, never an authority or parameter values', async (t) => {
  t.equal(loggedTarget('/records/%zz?q=secret'), '/records/%zz', 'the query is left out');
  t.equal(loggedTarget('/a;jsessionid=S3CRET/b'), '/a;jsessionid=…/b');
  t.equal(loggedTarget('/a%3Bjsessionid=S3CRET'), '/a;jsessionid=…', 'encoded ; too');
  t.equal(loggedTarget('http://alice:pw@host/records'), '(not a path)', 'absolute form (user:password@)');
  t.equal(loggedTarget('//alice:pw@host/records'), '(not a path)', 'an authority');
  t.equal(loggedTarget('*'), '(not a path)');
  t.equal(loggedTarget(`/${'a'.repeat(300)}`), `/${'a'.repeat(255)}…`, 'cut');
});
