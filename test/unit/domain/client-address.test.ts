// Who the client is: forwarding headers believed only from trusted proxies, right-most untrusted hop, fail closed.
import t from 'tap';
import { AddressSet, clientView, normaliseAddress, parseCidr } from '../../../src/domain/client-address.js';
import { carriesLegacyCredentials, queryWrapsLoginField } from '../../../src/domain/legacy-auth.js';

const trusted = new AddressSet(['10.0.0.10', '10.1.0.0/16', 'fd00::/8']);

t.test('address sets and CIDRs', async (t) => {
  t.ok(trusted.has('10.0.0.10'));
  t.notOk(trusted.has('10.0.0.11'));
  t.ok(trusted.has('10.1.255.1'));
  t.ok(trusted.has('fd00::1'));
  t.notOk(trusted.has('not-an-ip'));
  t.notOk(new AddressSet([]).has('10.0.0.10'), 'an empty set trusts nobody');
  for (const bad of ['10.0.0.0/33', '10.0.0/8', 'x', '10.0.0.1/8/1', '::/129', '10.0.0.1/-1']) t.equal(parseCidr(bad), null, bad);
  t.same(parseCidr('2001:db8::/32'), { address: '2001:db8::', prefix: 32, family: 'ipv6' });
  t.equal(normaliseAddress('::ffff:192.0.2.1'), '192.0.2.1', 'IPv4-mapped IPv6');
  t.equal(normaliseAddress('[2001:DB8::1]:443'), '2001:db8::1');
  t.equal(normaliseAddress('192.0.2.1:8080'), '192.0.2.1');
  t.equal(normaliseAddress('"192.0.2.1"'), '192.0.2.1');
  for (const bad of ['a', 'unknown', '_hidden', '192.0.2', '', '1.2.3.4.5']) t.equal(normaliseAddress(bad), null, bad);
});

t.test('headers from an untrusted peer are ignored', async (t) => {
  const v = clientView('203.0.113.5', false, { 'x-forwarded-for': '10.20.0.1', forwarded: 'for=10.20.0.1', 'x-forwarded-proto': 'https' }, trusted);
  t.same(v, { ip: '203.0.113.5', proto: 'http' });
  t.same(clientView('::ffff:203.0.113.5', true, {}, trusted), { ip: '203.0.113.5', proto: 'https' });
});

t.test('behind trusted proxies: the right-most address that is not a trusted proxy', async (t) => {
  t.same(clientView('10.0.0.10', false, { 'x-forwarded-for': '6.6.6.6, 198.51.100.7', 'x-forwarded-proto': 'https' }, trusted), { ip: '198.51.100.7', proto: 'https' });
  t.equal(clientView('10.0.0.10', false, { 'x-forwarded-for': '6.6.6.6, 198.51.100.7, 10.1.2.3' }, trusted).ip, '198.51.100.7', 'trusted hops skipped');
  t.equal(clientView('10.0.0.10', false, { 'x-forwarded-for': ['1.1.1.1', '198.51.100.7'] }, trusted).ip, '198.51.100.7', 'repeated headers joined');
  t.equal(clientView('10.0.0.10', false, { 'x-forwarded-for': '10.1.0.1, 10.1.0.2' }, trusted).ip, '10.1.0.1', 'all trusted: the left-most');
  t.equal(clientView('10.0.0.10', false, {}, trusted).ip, '10.0.0.10', 'no header: the proxy itself');
  t.equal(clientView('10.0.0.10', false, { forwarded: 'for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"' }, trusted, 'forwarded').ip, '2001:db8::1', 'RFC 7239');
  t.equal(clientView('10.0.0.10', false, { 'x-forwarded-for': 'garbage, 198.51.100.7' }, trusted).ip, '198.51.100.7', 'junk left of the client does not matter');
});

t.test('an unreadable address from a trusted proxy fails closed (null)', async (t) => {
  t.equal(clientView('10.0.0.10', false, { 'x-forwarded-for': 'a' }, trusted).ip, null);
  t.equal(clientView('10.0.0.10', false, { 'x-forwarded-for': '198.51.100.7, a' }, trusted).ip, null);
  t.equal(clientView('10.0.0.10', false, { forwarded: 'for=unknown' }, trusted, 'forwarded').ip, null);
  t.equal(clientView('10.0.0.10', false, { forwarded: 'proto=https' }, trusted, 'forwarded').ip, null);
  // Left of the client is the client's own writing: an element there without for= hides nothing.
  t.equal(clientView('10.0.0.10', false, { forwarded: 'by=x, for=198.51.100.7' }, trusted, 'forwarded').ip, '198.51.100.7', 'junk left of the client does not matter (Forwarded)');
  t.equal(clientView('10.0.0.10', false, { forwarded: 'for=unknown, for=198.51.100.7, for=10.1.0.1' }, trusted, 'forwarded').ip, '198.51.100.7');
  t.equal(clientView('10.0.0.10', false, { forwarded: 'for=198.51.100.7, by=x' }, trusted, 'forwarded').ip, null, 'an unreadable hop right of the client: unknown');
  t.equal(clientView(undefined, false, {}, trusted).ip, null, 'no peer address');
  t.equal(clientView('10.0.0.10', false, { 'x-forwarded-proto': 'gopher' }, trusted).proto, 'http', 'unknown scheme: the socket decides');
});

t.test('only the header the trusted proxies write is read: they pass a client\'s own copy of the other on', async (t) => {
  const both = { 'x-forwarded-for': '198.51.100.7', forwarded: 'for=10.20.0.5' };
  t.equal(clientView('10.0.0.10', false, both, trusted).ip, '198.51.100.7', 'X-Forwarded-For (the default): a client\'s Forwarded is not read');
  t.equal(clientView('10.0.0.10', false, { ...both, forwarded: 'for=unknown' }, trusted).ip, '198.51.100.7', 'nor can it make the address unknown');
  t.equal(clientView('10.0.0.10', false, both, trusted, 'forwarded').ip, '10.20.0.5', 'Forwarded: a client\'s X-Forwarded-For is not read');
  t.equal(clientView('10.0.0.10', false, { forwarded: 'for=unknown', 'x-forwarded-for': '198.51.100.7' }, trusted, 'forwarded').ip, null, 'an unreadable Forwarded fails closed');
  t.equal(clientView('10.0.0.10', false, { forwarded: 'for=198.51.100.7' }, trusted).ip, null, 'the other header alone (a client\'s copy, the proxy wrote none): unknown');
  t.equal(clientView('10.0.0.10', false, { 'x-forwarded-for': '10.20.0.5' }, trusted, 'forwarded').ip, null, 'the same the other way round');
  t.equal(clientView('10.0.0.10', false, { 'x-forwarded-proto': 'https' }, trusted).proto, 'https', 'X-Forwarded-For proxies: the scheme from X-Forwarded-Proto');
  t.equal(clientView('10.0.0.10', false, { forwarded: 'for=198.51.100.7;proto="HTTPS"' }, trusted, 'forwarded').proto, 'https', 'Forwarded proxies: from proto=');
  t.same(clientView('10.0.0.10', false, { forwarded: 'for=6.6.6.6;proto=http, for=198.51.100.7;proto=https, for=10.1.0.1;proto=http' }, trusted, 'forwarded'), { ip: '198.51.100.7', proto: 'https' }, 'of the element the client\'s address came from, not a later hop\'s');
  t.equal(clientView('10.0.0.10', true, { forwarded: 'for=198.51.100.7;proto=http', 'x-forwarded-proto': 'https' }, trusted, 'forwarded').proto, 'http', 'a client\'s X-Forwarded-Proto is not read');
  t.equal(clientView('10.0.0.10', false, { forwarded: 'for=198.51.100.7', 'x-forwarded-proto': 'https' }, trusted, 'forwarded').proto, 'http', 'without proto=: the socket\'s scheme');
  t.equal(clientView('10.0.0.10', false, { 'x-forwarded-proto': 'https' }, trusted, 'forwarded').proto, 'http', 'nor without Forwarded');
});

t.test('legacy credentials', async (t) => {
  const fields = ['username', 'password'];
  for (const h of ['Basic YWxpY2U6cHc=', 'basic x', 'Digest username="a"', '  Basic x']) t.equal(carriesLegacyCredentials(h, '', fields), 'request', h);
  // Whatever follows the scheme's name: Spring Security reads the credentials from the seventh character on, Apache
  // Shiro after the first space.
  for (const h of ['BasicXYWxpY2U6cHc=', 'Basic:YWxpY2U6cHc=', 'Basic_YWxpY2U6cHc=', 'Basicx YWxpY2U6cHc=', 'Basic,YWxpY2U6cHc=', 'Basically', 'DigestX username="a"']) t.equal(carriesLegacyCredentials(h, '', fields), 'request', h);
  for (const h of ['NTLM TlRMTVNTUAAB', 'Negotiate YII', 'negotiate x', 'NTLMxTlRMTVNTUAAB', 'Negotiate:YII']) t.equal(carriesLegacyCredentials(h, '', fields), 'connection', h);
  for (const h of [undefined, 'Bearer abc', 'Token x', 'Bearer Basic x']) t.notOk(carriesLegacyCredentials(h, '', fields), String(h));
  for (const q of ['password=x', 'a=1&username=alice', 'PassWord=x', 'user_name=alice', 'pass-word=1', 'a=1;password=x']) t.ok(carriesLegacyCredentials(undefined, q, fields), q);
  for (const q of ['', 'page=2', 'passwords=1', 'q=password']) t.notOk(carriesLegacyCredentials(undefined, q, fields), q);
  // ASP.NET reads %uXXXX as that character: %u0075sername is its username.
  for (const q of ['%u0075sername=bob', 'a=1&%u0070assword=x', '%u0070%u0061ssword=x']) t.ok(carriesLegacyCredentials(undefined, q, fields), q);
  // Login fields inside another are the login request's concern (queryWrapsLoginField), not every request's.
  for (const q of ['q=%u0070assword', '%u0078sername=1', '%ud800=1', '%u00=1', 'filter[username]=alice']) t.notOk(carriesLegacyCredentials(undefined, q, fields), q);
  // PHP reads pass[word (a [ without a ] after it) as pass_word, and password[x] or password[] as the field password.
  for (const q of ['pass[word=x', 'pass%5Bword=x', 'password[]=x', 'password[0]=x', '+pass.word=x', 'user[name[=x'])
    t.ok(carriesLegacyCredentials(undefined, q, ['user_name', 'pass_word']), q);
  for (const q of ['pass[word]=x', 'user[id]=1&sort[name]=asc', 'passwordx[=1'])
    t.notOk(carriesLegacyCredentials(undefined, q, ['user_name', 'pass_word']), `${q}: another field`);
});

t.test("a login field inside another in the query (Rails reads such a wrapper on the login request)", async (t) => {
  const fields = ['username', 'password'];
  for (const q of ['session[username]=bob', 'session%5Bpassword%5D=x', 'a[b][pass_word]=x', 'x=1&session[User_Name]=bob']) t.ok(queryWrapsLoginField(q, fields), q);
  for (const q of ['', 'username=bob', 'session[id]=1', 'sort[name]=asc', 'q=session[username]']) t.notOk(queryWrapsLoginField(q, fields), q);
});
