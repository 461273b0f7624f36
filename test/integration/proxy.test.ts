// The reverse proxy: header hygiene, streamed bodies, the reserved prefix, bad input, portal failures.
import t from 'tap';
import { request } from 'undici';
import { inputValue, rawRequest } from '../helpers/browser.js';
import { ALICE, signUpAndEnrol, startStack, submitPassword } from '../helpers/stack.js';

// What application servers and SSO agents under legacy portals take from the proxy in front: WebLogic's plugin
// (WL-Proxy-*), IBM WebSEAL (iv-*), CA SiteMinder (SM_* and the older SMUSER spellings), Oracle Access Manager (OAM_*),
// mod_auth_mellon (MELLON_*), iisnode (x-iisnode-*), the AWS load balancer's mutual TLS (X-Amzn-Mtls-*), and the client
// address and "came over HTTPS" headers of WebLogic, WebSEAL and IIS ARR.
const LEGACY_TRUSTED = {
  'wl-proxy-client-cert': 'forged',
  'wl-proxy-client-keysize': '256',
  'wl-proxy-client-secretkeysize': '256',
  'wl-proxy-client-ip': '10.0.0.5',
  'wl-proxy-ssl': 'true',
  'proxy-client-ip': '10.0.0.5',
  'x-proxyuser-ip': '10.0.0.5',
  'x-arr-ssl': '2048|256|CN=forged',
  'iv-user': 'admin',
  'iv-user-l': 'cn=admin,o=clinic',
  'iv-groups': 'admins',
  'iv-creds': 'forged',
  'iv-remote-address': '10.0.0.5',
  'sm-user': 'admin',
  smuser: 'admin',
  smuserdn: 'cn=admin,o=clinic',
  smuniversalid: 'admin',
  'oam-remote-user': 'admin',
  'mellon-name-id': 'admin',
  'x-iisnode-auth-user': 'admin',
  'x-amzn-mtls-clientcert': 'forged',
  'x-amzn-mtls-clientcert-subject': 'CN=admin',
};

t.test('identity, forwarding and hop-by-hop headers from the client never reach the portal', async (t) => {
  const s = await startStack({ patch: (raw) => (raw.portal.stripHeaders = ['X-Portal-Operator']) });
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const res = await b.get('/echo', {
    accept: 'application/json',
    'x-forwarded-user': 'admin',
    'x-forwarded-for': '10.0.0.5',
    'x-forwarded-host': 'evil.example',
    forwarded: 'for=10.0.0.5',
    'x-real-ip': '10.0.0.5',
    'x-auth-user': 'admin',
    'x-auth-request-email': 'admin@x',
    'remote-user': 'admin',
    'x-remote-user': 'admin',
    x_auth_user: 'admin',
    // Read by lighttpd, Apache 2.2 and PHP as HTTP_X_ORIGINAL_URL, HTTP_X_REAL_IP, HTTP_CLIENT_IP.
    'x-original.url': '/admin',
    'x-real.ip': '10.0.0.5',
    'client.ip': '10.0.0.5',
    'x~forwarded~for': '10.0.0.5',
    'x-original-url': '/admin',
    'x-middleware-subrequest': 'middleware',
    'x-webauth-user': 'admin',
    'x-email': 'admin@x',
    'x-preferred-username': 'admin',
    'x-ssl-client-s-dn': 'CN=admin',
    'ssl-client-cert': 'forged',
    'x-client-cert': 'forged',
    // RFC 9440.
    'client-cert': ':Zm9yZ2Vk:',
    'client-cert-chain': ':Zm9yZ2Vk:',
    'x-amzn-oidc-identity': 'admin',
    'x-goog-authenticated-user-email': 'admin@x',
    'x-ms-client-principal-name': 'admin',
    'cf-access-authenticated-user-email': 'admin@x',
    'x-ms-token-aad-id-token': 'forged',
    'x-arr-clientcert': 'forged',
    'gap-auth': 'admin',
    'x-consumer-username': 'admin',
    'x-credential-identifier': 'admin',
    'x-credential-username': 'admin',
    'x-anonymous-consumer': 'false',
    'x-principal': 'admin',
    'client-ip': '10.0.0.5',
    'x-cluster-client-ip': '10.0.0.5',
    'x-http-method-override': 'DELETE',
    'x-method-override': 'DELETE',
    'x-custom': 'kept',
    'x-username-hint': 'still an x-user* header',
    'x-emailer-campaign': 'kept too',
    'x-originating-ip': '10.0.0.5',
    'x-true-client-ip': '10.0.0.5',
    'cf-connecting-ipv6': '2001:db8::5',
    'fastly-client-ip': '10.0.0.5',
    'x-original-forwarded-for': '10.0.0.5',
    // Read by the common PHP "client IP" code after X-Forwarded-For, and by portals behind Azure Front Door or CloudFront.
    'x-forwarded': 'for=10.0.0.5',
    'forwarded-for': '10.0.0.5',
    'x-azure-clientip': '10.0.0.5',
    'x-azure-socketip': '10.0.0.5',
    'cloudfront-viewer-address': '10.0.0.5:443',
    'x-envoy-original-path': '/admin',
    'x-pomerium-claim-email': 'admin@x',
    'shib-identity-provider': 'forged',
    'auth-user': 'admin',
    'front-end-https': 'on',
    'oidc-claim-email': 'admin@x',
    'x-portal-operator': 'admin',
    ...LEGACY_TRUSTED,
    // Only the names of the agents' headers: nothing else that starts with the same letters.
    'smartphone-model': 'kept',
    'smusers-online': 'kept',
  });
  const seen = JSON.parse(res.body).headers as Record<string, string>;
  t.equal(seen['x-custom'], 'kept', 'ordinary headers pass');
  t.equal(seen['x-emailer-campaign'], 'kept too', 'a header that only starts like one is not an identity header');
  t.equal(seen['smartphone-model'], 'kept', 'nor one that starts as a SiteMinder name does');
  t.equal(seen['smusers-online'], 'kept');
  for (const name of [
    ...['x-forwarded-user', 'forwarded', 'x-real-ip', 'x-auth-user', 'x-auth-request-email', 'remote-user', 'x-remote-user', 'x_auth_user', 'x-original-url', 'x-middleware-subrequest'],
    ...['x-original.url', 'x-real.ip', 'client.ip', 'x~forwarded~for'],
    ...['x-webauth-user', 'x-email', 'x-preferred-username', 'x-ssl-client-s-dn', 'ssl-client-cert', 'x-client-cert', 'x-amzn-oidc-identity', 'x-goog-authenticated-user-email'],
    ...['x-ms-client-principal-name', 'cf-access-authenticated-user-email', 'x-principal', 'client-ip', 'x-cluster-client-ip', 'x-http-method-override', 'x-method-override', 'x-username-hint'],
    ...['x-ms-token-aad-id-token', 'x-arr-clientcert', 'gap-auth', 'x-consumer-username', 'x-credential-identifier', 'x-credential-username', 'x-anonymous-consumer'],
    ...['x-originating-ip', 'x-true-client-ip', 'cf-connecting-ipv6', 'fastly-client-ip', 'x-original-forwarded-for', 'x-envoy-original-path', 'x-pomerium-claim-email'],
    ...['shib-identity-provider', 'auth-user', 'front-end-https', 'oidc-claim-email', 'x-portal-operator', 'client-cert', 'client-cert-chain'],
    ...['x-forwarded', 'forwarded-for', 'x-azure-clientip', 'x-azure-socketip', 'cloudfront-viewer-address'],
    ...Object.keys(LEGACY_TRUSTED),
  ]) {
    t.notOk(name in seen, `${name} removed`);
  }
  t.equal(seen['x-forwarded-for'], '127.0.0.1', "the gateway's own value");
  t.equal(seen['x-forwarded-proto'], 'http', 'a Connection token cannot remove a header the gateway sets');
  t.match(seen['x-forwarded-host'], /^127\.0\.0\.1:/);
  t.notOk(String(seen.cookie).includes('__Host-mfa'), "the gateway's own cookies are not forwarded");

  // Connection-named headers (sent raw: HTTP clients normally refuse to send such a Connection header).
  const cookie = [...b.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  const raw = await rawRequest(s.url, `GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nCookie: ${cookie}\r\nConnection: keep-alive, X-Forwarded-For, X-Forwarded-Proto, X-Custom\r\nX-Custom: gone\r\n\r\n`);
  const echoed = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)).headers;
  t.notOk('x-custom' in echoed, 'a header named in Connection is removed');
  t.equal(echoed['x-forwarded-for'], '127.0.0.1', 'a Connection token cannot remove X-Forwarded-For set by the gateway');
  t.equal(echoed['x-forwarded-proto'], 'http');

  // A query the gateway cannot decode is the portal's business: it passes as sent (it was once a 500).
  const odd = await rawRequest(s.url, `GET /echo?q=50%&r=%zz HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nCookie: ${cookie}\r\n\r\n`);
  t.match(odd, /^HTTP\/1\.1 200/, 'an undecodable query');
  t.equal(JSON.parse(odd.slice(odd.indexOf('\r\n\r\n') + 4)).url, '/echo?q=50%&r=%zz', 'passed on as sent');
  // Expect: 100-continue (curl sends it for large bodies) is this hop's: Node answers it, the portal never sees it.
  const body = 'x'.repeat(1000);
  const expecting = await rawRequest(s.url, `POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nCookie: ${cookie}\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n${body}`);
  const final = expecting.slice(expecting.lastIndexOf('HTTP/1.1 '));
  t.match(final, /^HTTP\/1\.1 200/, 'a request with Expect: 100-continue is forwarded');
  const posted = JSON.parse(final.slice(final.indexOf('\r\n\r\n') + 4));
  t.equal(posted.bodyBytes, 1000);
  t.notOk('expect' in posted.headers, 'without its Expect header');
});

t.test('request bodies stream to the portal', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const body = Buffer.alloc(5 * 1024 * 1024, 0x61);
  const res = await b.send('POST', '/echo', body, { 'content-type': 'application/octet-stream', accept: 'application/json' });
  t.equal(res.status, 200);
  t.equal(JSON.parse(res.body).bodyBytes, body.length);
  const json = await b.send('POST', '/echo', JSON.stringify({ a: 1 }), { 'content-type': 'application/json', accept: 'application/json' });
  t.equal(JSON.parse(json.body).bodyBytes, 7, 'JSON passes through unparsed');
});

t.test("the login's username and password fields in another request's body are refused, signed in or not (SECURITY C-30)", async (t) => {
  const s = await startStack({
    patch: (raw) => {
      raw.portal.passwordForms = ['/echo/register'];
      raw.networks = { here: ['127.0.0.0/8'] };
      raw.policy.rules.unshift({ name: 'integration', paths: ['/echo/integration'], networks: ['here'], allowLegacyAuth: true, decision: 'mfa' });
    },
  });
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const echoed = () => s.portalRequests.filter((r) => r.url.startsWith('/echo')).length;
  const json = { accept: 'application/json' };
  const refused = async (body: string, type: string, why: string) => {
    const before = echoed();
    const res = await b.send('POST', '/echo', body, { 'content-type': type, ...json });
    t.equal(res.status, 403, why);
    t.match(JSON.parse(res.body), { error: 'GW_ERR_LEGACY_AUTH' }, why);
    t.equal(echoed(), before, `${why}: nothing reached the portal`);
  };
  await refused(`username=${ALICE.username}&password=${ALICE.password}`, 'application/x-www-form-urlencoded', 'a form');
  await refused(JSON.stringify({ session: { UserName: ALICE.username, password: ALICE.password } }), 'application/json', 'JSON, nested');
  await refused(`username=${ALICE.username}&password=${ALICE.password}`, 'text/plain', 'a form sent as text (a front controller may read the raw body)');
  await refused(`--b\r\nContent-Disposition: form-data; name="username"\r\n\r\nalice\r\n--b\r\nContent-Disposition: form-data; name="password"\r\n\r\nx\r\n--b--\r\n`, 'multipart/form-data; boundary=b', 'multipart');
  // Signed out, on a public path: a portal signing in there would sign in the browser's pre-login cookies.
  const anon = await request(`${s.url}/static/x`, { method: 'POST', body: 'username=alice&password=x', headers: { 'content-type': 'application/x-www-form-urlencoded', ...json } });
  t.equal(anon.statusCode, 403, 'signed out, on a public path');
  t.match(await anon.body.json(), { error: 'GW_ERR_LEGACY_AUTH' });

  // The pair completed in a later chunk: refused there, whatever came before.
  const cookie = [...b.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  async function* slow() {
    yield Buffer.from('password=x&note=');
    await new Promise((r) => setTimeout(r, 50));
    yield Buffer.from('hello&username=alice');
  }
  const chunked = await request(`${s.url}/echo`, { method: 'POST', body: slow(), headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', ...json } });
  t.equal(chunked.statusCode, 403, 'the fields in two chunks');
  t.match(await chunked.body.json(), { error: 'GW_ERR_LEGACY_AUTH' });
  // Found only once the body has ended (a part's headers that never end): its last chunk was held back.
  async function* tail() {
    yield Buffer.from('--b\r\nContent-Disposition: form-data; name="username"\r\n\r\nalice\r\n');
    await new Promise((r) => setTimeout(r, 50));
    yield Buffer.from('--b\r\nContent-Disposition: form-data; name="password"');
  }
  const late = await request(`${s.url}/echo`, { method: 'POST', body: tail(), headers: { cookie, 'content-type': 'multipart/form-data; boundary=b', ...json } });
  t.equal(late.statusCode, 403, 'found at the end of the body');
  t.match(await late.body.json(), { error: 'GW_ERR_LEGACY_AUTH' });
  // Bodies that cannot be read for the fields.
  const utf16 = await b.send('POST', '/echo', Buffer.from('username=alice&password=x', 'utf16le'), { 'content-type': `${'application/x-www-form-urlencoded'}; charset=utf-16le`, ...json });
  t.equal(utf16.status, 415, 'a charset in which the names are other bytes');
  const noBoundary = await b.send('POST', '/echo', 'x', { 'content-type': 'multipart/form-data', ...json });
  t.equal(noBoundary.status, 400, 'multipart without a boundary');

  // Positive: one field alone, the names as values, a path named in portal.passwordForms, other types.
  for (const [body, type] of [
    ['username=alice&message=hi', 'application/x-www-form-urlencoded'],
    ['password=old&newPassword=x', 'application/x-www-form-urlencoded'],
    ['note=username%3Dalice%26password%3Dx', 'application/x-www-form-urlencoded'],
    ['{"note":"username","password":"x"}', 'application/json'],
    ['username=alice&password=', 'application/x-www-form-urlencoded'],
  ]) {
    const res = await b.send('POST', '/echo', body!, { 'content-type': type!, ...json });
    t.equal(res.status, 200, `${type}: ${body}`);
    t.equal(JSON.parse(res.body).bodyBytes, Buffer.byteLength(body!), 'the body reaches the portal whole');
  }
  const registered = await b.send('POST', '/echo/register', 'username=alice&password=x', { 'content-type': 'application/x-www-form-urlencoded', ...json });
  t.not(registered.status, 403, 'portal.passwordForms: a registration form passes');
  t.equal(s.portalRequests.at(-1)?.url, '/echo/register');
  const integration = await b.send('POST', '/echo/integration', 'username=alice&password=x', { 'content-type': 'application/x-www-form-urlencoded', ...json });
  t.not(integration.status, 403, 'a rule with allowLegacyAuth lets them through, as it does in the query');
  t.equal(s.portalRequests.at(-1)?.url, '/echo/integration');

  // A compressed form the gateway cannot read is refused; a compressed upload of another type passes as before.
  const gz = await b.send('POST', '/echo', Buffer.from('1f8b', 'hex'), { 'content-type': 'application/x-www-form-urlencoded', 'content-encoding': 'gzip', ...json });
  t.equal(gz.status, 415);
  const upload = await b.send('POST', '/echo', Buffer.from('1f8b', 'hex'), { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip', ...json });
  t.equal(upload.status, 200);

  const security = s.logs.map((l) => JSON.parse(l)).filter((l) => l.security === 'legacy_auth_blocked');
  t.equal(security.length, 7, 'each refusal is a security event');
  t.match(security[0], { reason: 'legacy-auth', in: 'body', rule: 'portal', path: '/echo' });
  t.notOk(s.logs.some((l) => l.includes(ALICE.password)), 'no password in any log line');
});

t.test('portal cookies set later stay in the jar and are sent back', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const set = await b.get('/set-cookie-test');
  t.equal(set.status, 200);
  t.notOk(b.cookies.has('portal_pref'), 'not given to the browser');
  const echo = JSON.parse((await b.get('/echo', { accept: 'application/json' })).body);
  t.match(echo.headers.cookie, 'portal_pref=dark', 'sent to the portal from the jar');
});

t.test("the gateway prefix is never forwarded, in any spelling", async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const before = s.portalRequests.length;
  for (const path of ['/_mfa/nothing', '/_MFA/enrol', '/_mfa//enrol', '/x/../_mfa/secret', '/_mfa']) {
    t.equal((await b.get(path)).status, 404, path);
  }
  t.equal(s.portalRequests.length, before);
});

t.test('ambiguous paths get 400 and never reach the portal', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const before = s.portalRequests.length;
  // Malformed escapes too (the router refuses those before any hook): the gateway's page, with its headers.
  for (const path of ['/records%2f..%2fadmin', '/records%5c..', '/records%00.css', '/%252e%252e/records', '/records;jsessionid=1', '/records%c0%af', '/%zz', '/records/%e0%a4%a', '/(S(x))/records', '/?/records']) {
    const r = await b.get(path);
    t.equal(r.status, 400, path);
    t.match(r.body, 'The address is not valid.', `${path}: the gateway's page`);
    t.equal(r.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains');
    t.notMatch(r.body, /at .*\.ts:\d+/, 'no stack trace');
    t.notOk(r.body.includes(path), 'the path is not echoed');
  }
  t.equal(s.portalRequests.length, before);
  const why = s.logs.map((l) => JSON.parse(l)).filter((l) => l.code === 'GW_ERR_BAD_PATH').map((l) => l.detail);
  t.ok(why.includes("an encoded '/' or '\\' (%2F, %5C), which a portal that decodes first reads as a separator"), 'the log says why, as policy explain does');
  t.ok(why.includes("an ASP.NET cookieless segment ('(S(…))'), which ASP.NET takes out of the path before it routes"));
  // The router's refusal is logged and counted as any request: one access line, with the address.
  const count = async () => Number(/^mfa_gateway_request_duration_seconds_count\{rule="none",status_class="4xx"\} (\d+)$/m.exec(await s.app.gateway.metrics.text())?.[1] ?? 0);
  const counted = await count();
  s.logs.length = 0;
  t.equal((await b.get('/records/%zz?q=1')).status, 400);
  const lines = s.logs.filter((l) => l.includes('"msg":"request"')).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.equal(lines.length, 1, 'one access line for the malformed escape');
  t.match(lines[0], { method: 'GET', path: '/records/%zz', ip: '127.0.0.1', status: 400 }, 'with what was asked, by whom, and the answer');
  t.equal(await count(), counted + 1, 'counted once');
  const dots = await b.get('/static/../records');
  t.equal(dots.status, 200, 'dot segments resolved before the decision');
  t.equal(s.portalRequests.at(-1)!.url, '/records', 'the portal receives exactly the decided path');
});

t.test('only the methods portal.methods names reach the portal, before any rule', async (t) => {
  for (const methods of [undefined, ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']]) {
    const s = await startStack({ patch: (raw) => methods && (raw.portal.methods = methods) });
    t.teardown(s.close);
    const { b } = await signUpAndEnrol(s);
    const passed = methods ?? ['GET', 'HEAD', 'POST'];
    for (const method of ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
      const before = s.portalRequests.length;
      const res = await b.send(method, '/echo', undefined, { accept: 'application/json' });
      // HEAD goes with GET, listed or not.
      const reached = passed.includes(method) || method === 'HEAD';
      t.same([res.status === 405, s.portalRequests.slice(before).map((q) => q.method)], reached ? [false, [method]] : [true, []], `${methods ? 'all listed' : 'by default'}: ${method} ${reached ? 'passed' : 'refused'}`);
      if (!reached) t.equal(JSON.parse(res.body).error, 'GW_ERR_METHOD_NOT_ALLOWED');
    }
  }
});

t.test('the login intercept: methods, content types, sizes, duplicate fields', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const b = s.browser();
  const csrf = inputValue((await b.get('/login')).body, 'csrf');
  const before = s.portalRequests.length;
  t.equal((await b.send('POST', '/login', JSON.stringify({ username: 'alice' }), { 'content-type': 'application/json' })).status, 415, 'wrong body type');
  t.equal((await b.send('PUT', '/login', 'username=alice', { 'content-type': 'application/x-www-form-urlencoded' })).status, 405, 'method not configured');
  t.equal((await b.post('/login', { username: 'x'.repeat(20_000), password: 'p' })).status, 413, 'oversized');
  t.equal((await b.send('POST', '/login', 'username=alice&username=admin&password=x', { 'content-type': 'application/x-www-form-urlencoded' })).status, 400, 'duplicate username');
  t.equal((await b.post('/login', { password: 'x' })).status, 400, 'no username');
  t.equal((await b.post('/login', { username: '  ', password: 'x' })).status, 400, 'blank username');
  t.equal((await b.post('/login?username=alice', { username: 'fresh-name', password: ALICE.password, csrf })).status, 403, 'username in the query: refused as legacy credentials');
  t.equal((await b.post('/login?UserName=alice', { username: 'fresh-name', password: ALICE.password, csrf })).status, 403, 'another spelling in the query');
  t.equal((await b.post('/login?%u0075sername=alice', { username: 'fresh-name', password: ALICE.password, csrf })).status, 403, '%u-encoded, as ASP.NET reads it');
  t.equal((await b.post('/login?session[username]=alice', { username: 'fresh-name', password: ALICE.password, csrf })).status, 400, 'inside another field (a Rails login wrapper)');
  t.equal((await b.post('/login', { username: 'fresh-name', USERNAME: 'alice', password: ALICE.password, csrf })).status, 400, 'another spelling in the body');
  // A servlet login (j_security_check) reads j_username: listed as a login path without it, the portal would sign in
  // alice while the gateway held the sign-in for fresh-name.
  t.equal((await b.post('/login', { username: 'fresh-name', j_username: 'alice', j_password: ALICE.password, csrf })).status, 400, "another form's username field");
  const form = new URLSearchParams({ username: ALICE.username, password: ALICE.password, csrf }).toString();
  t.equal((await b.send('POST', '/login', `x=1;username=bob&${form}`, { 'content-type': 'application/x-www-form-urlencoded' })).status, 400, 'a ";" separator in the body');
  t.equal((await b.post('/login?x=1;username=bob', { username: 'fresh-name', password: ALICE.password, csrf })).status, 403, 'a username after ";" in the query');
  t.equal((await b.send('POST', '/login', form, { 'content-type': 'application/x-www-form-urlencoded', 'content-encoding': 'gzip' })).status, 415, 'a compressed body');
  t.equal((await b.send('POST', '/login', form, { 'content-type': 'application/x-www-form-urlencoded; charset=utf-16' })).status, 415, 'another charset');
  t.equal(s.portalRequests.length, before, 'none of these reached the portal');
  const utf8 = await b.send('POST', '/login', new URLSearchParams({ username: ALICE.username, password: 'wrong', csrf }).toString(), { 'content-type': 'application/x-www-form-urlencoded; charset=UTF-8', 'content-encoding': 'identity' });
  t.equal(utf8.status, 200, 'charset=UTF-8 and Content-Encoding: identity are what they say: the portal judges the password');
  t.match(utf8.body, 'Invalid username or password.');
  const variant = await b.send('POST', '/LOGIN/', new URLSearchParams({ username: ALICE.username, password: 'wrong', csrf }).toString(), { 'content-type': 'application/x-www-form-urlencoded' });
  t.equal(variant.status, 200, 'another spelling of the login path is intercepted too');
  t.match(variant.body, 'Invalid username or password.', 'and sent to the configured login path');
  t.equal(s.portalRequests.at(-1)!.url, '/login');
  t.ok(s.logs.some((l) => l.includes('"security":"password_failed"')));
});

t.test('unauthenticated requests: pages redirect to the login, other methods get 401', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const b = s.browser();
  const r = await b.get('/records');
  t.equal(r.status, 302);
  t.equal(r.location, '/login');
  const api = await b.send('POST', '/messages', 'body=hi', { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' });
  t.equal(api.status, 401);
  t.same(Object.keys(JSON.parse(api.body)).sort(), ['error', 'message', 'requestId']);
  // A script's GET (fetch, XMLHttpRequest) would follow a redirect to a page it cannot use: 401, as JSON for it.
  // Also a call of a browser that sends no Fetch Metadata (Safari before 16.4, web views) asking for JSON only.
  for (const headers of [{ 'sec-fetch-mode': 'cors', accept: '*/*' }, { 'x-requested-with': 'XMLHttpRequest', accept: 'application/json' }, { accept: 'application/json' }]) {
    const call = await b.get('/api/records', headers);
    t.equal(call.status, 401, JSON.stringify(headers));
    t.match(JSON.parse(call.body), { error: 'GW_ERR_SIGN_IN_REQUIRED' });
  }
  for (const headers of [{ 'sec-fetch-mode': 'navigate' }, { 'x-requested-with': 'com.example.portal-app' }, { accept: 'text/html,application/xhtml+xml;q=0.9,*/*;q=0.8' }, { accept: '*/*' }, { accept: 'TEXT/HTML' }]) {
    t.equal((await b.get('/records', headers)).location, '/login', `a page opened: ${JSON.stringify(headers)}`);
  }
  const upper = await b.send('POST', '/messages', 'body=hi', { 'content-type': 'application/x-www-form-urlencoded', accept: 'Text/Html' });
  t.same([upper.status, upper.headers['content-type']], [401, 'text/html; charset=utf-8'], 'a refusal of a request asking for HTML in capitals is a page');
  t.equal((await b.send('TRACE', '/records')).status, 405);
  t.equal((await b.send('TRACE', '/_mfa/verify')).status, 405, 'also on a page of the gateway');
  t.equal((await b.send('PROPFIND', '/_mfa/nothing-here')).status, 405, 'and under its prefix');
  const scripted = await b.send('PROPFIND', '/records', undefined, { accept: 'application/json' });
  t.same([scripted.status, JSON.parse(scripted.body).error], [405, 'GW_ERR_METHOD_NOT_ALLOWED'], 'JSON for a script, as any refusal');
  t.equal((await b.send('POST', '/_mfa/nothing-here')).status, 404, 'a method it serves, under its prefix: no such page');
  const connect = await rawRequest(s.url, `CONNECT 127.0.0.1:${new URL(s.portal.url).port} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  t.match(connect, /^HTTP\/1\.1 405 /, 'CONNECT: 405, no tunnel');
  const expect = await rawRequest(s.url, `POST /messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\nExpect: x-unknown\r\n\r\nabcd`);
  t.match(expect, /^HTTP\/1\.1 417 /, 'an Expect other than 100-continue: 417');
  t.match(expect, /strict-transport-security: max-age=/i, 'with HSTS, as every answer');
  t.equal((await b.get('/static/portal.css')).status, 200, 'and the gateway goes on');
  t.equal((await b.get('/static/portal.css')).status, 200, 'public assets pass');
});

t.test('portal down: 502 page; portal slow: 504 page; no stack traces', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const slow = await b.get('/slow?ms=3000');
  t.equal(slow.status, 504);
  t.match(slow.body, 'took too long');
  await s.portal.close();
  const down = await b.get('/records');
  t.equal(down.status, 502);
  t.match(down.body, 'not reachable');
  t.notMatch(down.body, /ECONNREFUSED|Error:/);
  const login = await submitPassword(s.browser(), ALICE.username, ALICE.password).catch(() => null);
  t.equal(login, null, 'the login page itself is unavailable (502 from the helper)');
});

t.test("the portal's own 503 is passed on as it is, once: the gateway never repeats a request", async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const started = Date.now();
  const r = await b.get('/maintenance');
  t.equal(r.status, 503);
  t.equal(r.body, 'down for maintenance', "the portal's page");
  t.equal(r.headers['retry-after'], '30');
  t.equal(s.portalRequests.filter((p) => p.url === '/maintenance').length, 1, 'one request to the portal');
  t.ok(Date.now() - started < 10_000, 'at once, not after the 30 s the portal asks to wait');
});

t.test('health endpoints', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const live = await request(`${s.url}/_mfa/health/live`);
  t.equal(live.statusCode, 200);
  t.same(await live.body.json(), { status: 'ok' });
  const ready = await request(`${s.url}/_mfa/health/ready`);
  t.same(await ready.body.json(), { status: 'ready' });
});

t.test('no page is kept by the browser (Back on a shared computer); a signed-in answer that says nothing of caching is not either; scripts and styles as the portal said', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  t.equal((await b.get('/records')).headers['cache-control'], 'no-store', "a patient's page");
  t.equal((await b.get('/api/records', { accept: 'application/json' })).headers['cache-control'], 'no-store', 'their records as JSON');
  const login = await s.browser().get('/login');
  t.equal(login.headers['cache-control'], 'no-store', 'signed out, the login form (Back would show it with the password typed in)');
  t.equal((await b.get('/static/portal.css')).headers['cache-control'], 'public, max-age=3600', "the portal's own word stands for its style sheet");
  const anonymous = s.browser();
  const first = await anonymous.get('/static/portal.css');
  t.ok(anonymous.cookies.has('__Host-mfa-browser'), 'a new browser gets its id with its first answer');
  t.equal(first.headers['cache-control'], 'no-store', 'which no shared cache may keep for others: they would share its pre-login jar');
  t.equal((await anonymous.get('/static/portal.css')).headers['cache-control'], 'public, max-age=3600', 'signed out too, once it has its id');
  // The portal's refusal of a password: its login form again.
  const refused = await s.browser().post('/login', { username: ALICE.username, password: 'wrong', csrf: inputValue(login.body, 'csrf') });
  t.equal(refused.headers['cache-control'], 'no-store', 'its error page too');
});

t.test('usernameField as a list (login paths that name the field differently): a body with one of them signs in', async (t) => {
  const s = await startStack({ patch: (raw) => (raw.portal.login.usernameField = ['j_username', 'username']) });
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  t.equal((await b.get('/records')).status, 200);
  const other = s.browser();
  const csrf = inputValue((await other.get('/login')).body, 'csrf');
  const before = s.portalRequests.length;
  t.equal((await other.post('/login', { username: 'fresh-name', j_username: 'alice', password: ALICE.password, csrf })).status, 400, 'both at once');
  t.equal((await other.post('/login?j_username=alice', { username: 'fresh-name', password: ALICE.password, csrf })).status, 403, 'one in the query: credentials in the query');
  // A field named like a username that is not configured, in the query, where a servlet container reads it too.
  t.equal((await other.post('/login?user_id=alice', { username: 'fresh-name', password: ALICE.password, csrf })).status, 400, 'user_id');
  t.equal((await other.post('/login?email=alice%40example.org', { username: 'fresh-name', password: ALICE.password, csrf })).status, 400, 'email');
  t.equal(s.portalRequests.length, before, 'refused before the portal');
});
