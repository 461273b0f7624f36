// A full sign-in writes no password, code, cookie value, token or secret to any log line.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { auditFiles } from '../../src/audit/file-sink.js';
import { inputValue, rawRequest } from '../helpers/browser.js';
import { ALICE, signInWithTotp, signUpAndEnrol, startStack, submitPassword, totpAt } from '../helpers/stack.js';

t.test('no secrets in the logs', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const b = s.browser();
  const wrong = await submitPassword(b, ALICE.username, 'Wrong-Password-123');
  t.equal(wrong.status, 200);
  await submitPassword(b, ALICE.username, ALICE.password);
  const enrolPage = await b.get('/_mfa/enrol/totp');
  const secret = /id="secret">([^<]+)</.exec(enrolPage.body)![1]!.replaceAll(' ', '');
  const csrf = inputValue(enrolPage.body, 'csrf');
  const badCode = '123456';
  await b.post('/_mfa/enrol/totp', { csrf, code: badCode });
  const code1 = await totpAt(secret, s.clock.now());
  await b.post('/_mfa/enrol/totp', { csrf, code: code1 });
  const codes = [...(await b.get('/_mfa/recovery-codes')).body.matchAll(/<li>([A-Z2-9-]{19})<\/li>/g)].map((m) => m[1]!);
  await b.post('/_mfa/recovery-codes', { csrf, saved: 'yes' });
  const echo = JSON.parse((await b.get('/echo', { accept: 'application/json' })).body);
  const portalSession = /PORTALSESSID=([0-9a-f]+)/.exec(echo.headers.cookie)![1]!;
  const sessionCookie = b.cookies.get('__Host-mfa-session')!;
  const second = await signInWithTotp(s, secret);
  const code2 = await totpAt(secret, s.clock.now());
  const r = s.browser();
  await submitPassword(r, ALICE.username, ALICE.password);
  const pendingId = r.cookies.get('__Host-mfa-pending')!;
  const browserId = b.cookies.get('__Host-mfa-browser') ?? r.cookies.get('__Host-mfa-browser');
  await r.post('/_mfa/recovery', { csrf: inputValue((await r.get('/_mfa/recovery')).body, 'csrf'), code: codes[0]! });
  await r.get('/records?password=QuerySecret99');

  const secrets: Record<string, string | undefined> = {
    password: ALICE.password,
    'wrong password': 'Wrong-Password-123',
    'password in a query': 'QuerySecret99',
    'TOTP secret': secret,
    'enrolment code': code1,
    'wrong code': badCode,
    'sign-in code': code2,
    'recovery code': codes[0]!.replaceAll('-', ''),
    'recovery code (as typed)': codes[0],
    'portal session': portalSession,
    'session token': sessionCookie,
    'session token signature': sessionCookie.split('.')[2],
    'second session token': second.b.cookies.get('__Host-mfa-session'),
    'pending id': pendingId,
    'browser id': browserId,
    'known-browser token': b.cookies.get('__Host-mfa-known'),
  };
  t.ok(s.logs.length > 20, `${s.logs.length} log lines`);
  const all = s.logs.join('\n');
  for (const [what, value] of Object.entries(secrets)) {
    if (value) t.notOk(all.includes(value), `${what} not logged`);
  }
  for (const line of s.logs) JSON.parse(line);
  const events = s.logs.map((l) => JSON.parse(l).security).filter(Boolean);
  for (const e of ['password_failed', 'password_ok', 'mfa_failed', 'enrolled', 'session_started', 'mfa_ok', 'recovery_code_used']) t.ok(events.includes(e), `event ${e}`);
});

t.test("a servlet portal's ;jsessionid= in a path reaches neither the log nor the audit trail", async (t) => {
  const s = await startStack({
    patch: (raw) => {
      raw.server.pathParameters = 'allow';
      raw.audit.requests = true;
    },
  });
  const { b } = await signUpAndEnrol(s);
  t.equal((await b.get('/records;jsessionid=S3CRETJSID')).status, 404, 'forwarded (the demo portal has no such page)');
  t.equal((await s.browser().get('/records;jsessionid=S3CRETJSID2')).status, 302, 'signed out');
  t.equal((await b.get('/records;jsessionid=S3CRETJSID3/..;x=1/')).status, 400, 'refused');
  await s.close(); // the last request's record is written after its answer
  const trail = auditFiles(s.config.audit.dir).map((f) => readFileSync(f, 'utf8')).join('');
  const log = s.logs.join('\n');
  t.match(log, '"path":"/records;jsessionid=…"', 'the path is logged, its parameter value left out');
  t.match(trail, '/records;jsessionid=…', 'the path is in the trail, its parameter value left out');
  t.notOk(log.includes('S3CRETJSID'), 'not in the log');
  t.notOk(trail.includes('S3CRETJSID'), 'not in the trail');
});

t.test('a refused request target is logged by its path only: no credentials of an absolute-form target, no encoded ;jsessionid=', async (t) => {
  const s = await startStack({ patch: (raw) => (raw.audit.requests = true) });
  const ask = (target: string) => rawRequest(s.url, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
  t.match(await ask('http://alice:S3cretPassw0rd@127.0.0.1/records'), /^HTTP\/1.1 400/, 'absolute form: refused');
  t.match(await ask('/records/%3Bjsessionid=S3CRETJSID4'), /^HTTP\/1.1 400/, 'an encoded ;: refused');
  t.match(await ask('/records;jsessionid%3DS3CRETJSID5'), /^HTTP\/1.1 400/, 'an encoded =: refused');
  t.match(await ask('//alice:S3cretPassw0rd6@127.0.0.1/records'), /^HTTP\/1.1 400/, 'a target starting with an authority: refused');
  await s.close();
  const log = s.logs.join('\n');
  const trail = auditFiles(s.config.audit.dir).map((f) => readFileSync(f, 'utf8')).join('');
  t.match(log, '"path":"(not a path)"', 'the access line says what was refused');
  t.match(log, '"path":"/records/;jsessionid=…"');
  for (const secret of ['S3cretPassw0rd', 'S3CRETJSID4', 'S3CRETJSID5', 'S3cretPassw0rd6']) t.notOk(log.includes(secret) || trail.includes(secret), `${secret} in neither the log nor the trail`);
});

t.test('a long path is cut in the log and the audit trail: a refused request cannot write kilobytes to them', async (t) => {
  const s = await startStack({ patch: (raw) => raw.policy.rules.unshift({ name: 'closed', paths: ['/admin/'], decision: 'deny' }) });
  const long = `/admin/${'a'.repeat(4000)}`;
  t.equal((await s.browser().get(long, { authorization: 'Basic eDp5' })).status, 403, 'legacy credentials');
  t.equal((await s.browser().get(long)).status, 403, 'a deny rule');
  await s.close();
  const trail = auditFiles(s.config.audit.dir).map((f) => readFileSync(f, 'utf8')).join('');
  const cut = `"${long.slice(0, 256)}…"`;
  t.equal(trail.split(cut).length - 1, 2, 'both refusals in the trail, each path cut at 256 characters');
  t.equal(s.logs.filter((l) => l.includes(cut)).length, 4, 'and in the log: each security event and access line');
  t.notOk(trail.includes('a'.repeat(300)) || s.logs.some((l) => l.includes('a'.repeat(300))), 'never the whole path');
});
