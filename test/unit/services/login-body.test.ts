import t from 'tap';
import { parseLoginBody } from '../../../src/services/login.js';

const refused = (body: string, type: 'form' | 'json', fields = ['username']) => {
  try {
    parseLoginBody(Buffer.from(body), type, fields);
    return false;
  } catch (err) {
    return (err as { code?: string }).code === 'GW_ERR_BAD_REQUEST';
  }
};

t.test('form bodies: one canonical parse, the canonical username is what the portal gets', async (t) => {
  const parsed = parseLoginBody(Buffer.from('username=+ALICE+&password=p%26w&csrf=x'), 'form', ['username']);
  t.equal(parsed.username, ' ALICE ');
  t.equal(parsed.withUsername('alice').toString(), 'username=alice&password=p%26w&csrf=x', 'other fields untouched');
  const bad: [string, string][] = [
    ['username=alice&username=admin&password=x', 'duplicate username'],
    ['username=alice&password=a&password=b', 'any duplicate field'],
    ['password=x', 'no username'],
    ['username=fresh&UserName=alice&password=x', 'another spelling of the field'],
    ['username=fresh&user_name=alice&password=x', 'underscore spelling'],
    // PHP ends a name at a NUL and keeps the last value: the portal would sign in alice, the gateway mallory.
    ['username=mallory&username%00=alice&password=x', 'NUL in the field name'],
    ['username=mallory&user.name=alice&password=x', 'dot spelling (PHP reads user_name)'],
    ['username=mallory&user+name=alice&password=x', 'space spelling'],
    ['username=mallory&u%C5%BFername=alice&password=x', 'a long s (Java equalsIgnoreCase reads it as s)'],
    ['username=mallory&u%EF%BD%93ername=alice&password=x', 'a full-width letter'],
    ['username=mallory&username[]=alice&password=x', 'array spelling'],
    ['username=mallory&username%5B0%5D=alice&password=x', 'encoded array spelling'],
    ['username=alice&pass%01word=x', 'control character in any field name'],
    ['username=%E0%A4%A&password=x', 'malformed encoding'],
    // A portal splitting on ";" too reads username=victim, the gateway alice.
    ['x=1;username=victim&username=alice&password=x', 'a ";" separator'],
    ['username=alice&password=a;b', 'a raw ";" anywhere (browsers send %3B)'],
  ];
  for (const [body, why] of bad) t.ok(refused(body, 'form'), why);
  // Portals whose fields have brackets of their own (Magento's login[username], Devise's user[email]).
  const nested = parseLoginBody(Buffer.from('login%5Busername%5D=alice&login%5Bpassword%5D=pw'), 'form', ['login[username]']);
  t.equal(nested.username, 'alice', 'a bracketed field name is its own field');
  t.throws(() => parseLoginBody(Buffer.from('login[username]=mallory&login[username]%00=alice&login[password]=pw'), 'form', ['login[username]']), { code: 'GW_ERR_BAD_REQUEST' }, 'NUL spelling of a bracketed field');
  // PHP ignores what follows the last ], and reads login[username][] as the field too (the later one wins).
  for (const other of ['login[username]x', 'login[username][]', 'login[User_Name]'])
    t.throws(() => parseLoginBody(Buffer.from(`login[username]=mallory&${encodeURIComponent(other)}=alice`), 'form', ['login[username]']), { code: 'GW_ERR_BAD_REQUEST' }, other);
  t.equal(parseLoginBody(Buffer.from('login[username]=alice&login[usernames]=x&login=y'), 'form', ['login[username]']).username, 'alice', 'other keys of the same array');
  // PHP turns a [ without a ] after it into _: it reads user[name as user_name, the gateway would have read alice.
  for (const other of ['user[name', 'user[name[', ' user.name'])
    t.throws(() => parseLoginBody(Buffer.from(`user_name=alice&${encodeURIComponent(other)}=bob&password=bobpw`), 'form', ['user_name']), { code: 'GW_ERR_BAD_REQUEST' }, `${other}: PHP reads user_name`);
  t.equal(parseLoginBody(Buffer.from('user_name=alice&user[name]=x&password=pw'), 'form', ['user_name']).username, 'alice', 'user[name] is the array user: another field');
  const latin1 = parseLoginBody(Buffer.from('username=Alice&password=caf%E9+cr%E8me'), 'form', ['username']);
  t.equal(latin1.withUsername('alice').toString('latin1'), 'username=alice&password=caf%E9+cr%E8me', 'other fields byte for byte, whatever their charset');
  t.equal(parseLoginBody(Buffer.from('username=b%C3%B8b+x&password=p'), 'form', ['username']).username, 'bøb x');
  t.equal(parseLoginBody(Buffer.from('username=x&password=p'), 'form', ['username']).withUsername('a&b=c').toString(), 'username=a%26b%3Dc&password=p');
});

t.test('JSON bodies', async (t) => {
  const parsed = parseLoginBody(Buffer.from('{"username":"Alice","password":"pw","remember":true}'), 'json', ['username']);
  t.equal(parsed.username, 'Alice');
  t.same(JSON.parse(parsed.withUsername('alice').toString()), { username: 'alice', password: 'pw', remember: true });
  const bad: [string, string][] = [
    ['{"username":["alice","admin"]}', 'array username'],
    ['{"username":{"$ne":null}}', 'object username'],
    ['[1,2]', 'not an object'],
    ['{"username":', 'not JSON'],
    ['{"password":"x"}', 'no username'],
    ['{"username":"fresh","UserName":"alice","password":"x"}', 'another spelling of the field'],
    ['{"username":"mallory","username\\u0000":"alice","password":"x"}', 'NUL in a key'],
    [`{"username":"alice","x":${'['.repeat(8000)}${']'.repeat(8000)}}`, 'thousands of levels (writing it back would throw)'],
    [`{"username":"alice","x":${'{"a":'.repeat(33)}1${'}'.repeat(33)}}`, 'more than 32 levels'],
    // Rails reads a wrapper the client sent instead of wrapping the body itself.
    ['{"username":"alice","password":"x","session":{"username":"bob","password":"y"}}', 'the username inside a wrapper'],
    ['{"username":"alice","a":[{"User_Name":"bob"}]}', 'deeper, in another spelling'],
    // Java's equalsIgnoreCase and Python's casefold read these as the field.
    ['{"username":"mallory","uſername":"alice","password":"x"}', 'a long s'],
    ['{"username":"mallory","ＵSERNAME":"alice","password":"x"}', 'a full-width letter'],
    ['{"username":"mallory","𝐔sername":"alice","password":"x"}', 'a mathematical capital'],
    ['{"username":"alice","password":"a","password":"b"}', 'a repeated key (JSON.parse keeps the last, other parsers the first)'],
    ['{"username":"alice","device":{"id":1,"id":2}}', 'a repeated key further in'],
  ];
  for (const [body, why] of bad) t.ok(refused(body, 'json'), why);
  t.throws(() => parseLoginBody(Buffer.from([...Buffer.from('{"username":"alice","password":"'), 0xff, ...Buffer.from('"}')]), 'json', ['username']), { code: 'GW_ERR_BAD_REQUEST' }, 'bytes that are not UTF-8');
  const nested = `{"username":"alice","x":${'{"a":'.repeat(31)}1${'}'.repeat(31)}}`;
  t.equal(parseLoginBody(Buffer.from(nested), 'json', ['username']).withUsername('alice').toString(), nested, '32 levels are fine');
  t.equal(parseLoginBody(Buffer.from('{"username":"alice","device":{"name":"phone"}}'), 'json', ['username']).username, 'alice', 'other nested fields are fine');
  t.equal(parseLoginBody(Buffer.from('username=alice&password=a%3Bb'), 'form', ['username']).username, 'alice', 'an encoded ";" is fine');
  // The username's value is the only change: numbers beyond 2^53, 1e400, key order and spacing reach the portal as sent.
  const sent = '{ "2":"a", "tenant": 9007199254740993, "username" :\t"Alice" , "big":1e400,"password":"p\\u00e9\\"w","x":{"username2":[]}}';
  t.equal(
    parseLoginBody(Buffer.from(sent), 'json', ['username']).withUsername('alice').toString(),
    sent.replace('"Alice"', '"alice"'),
  );
  t.equal(parseLoginBody(Buffer.from('{"username":"Zoë","a":"é"}'), 'json', ['username']).withUsername('zoë\u2028').toString(), '{"username":"zoë\u2028","a":"é"}', 'UTF-8 kept');
  t.equal(parseLoginBody(Buffer.from('{"a":{"b":["{"]},"username":"A"}'), 'json', ['username']).withUsername('a').toString(), '{"a":{"b":["{"]},"username":"a"}', 'after nested values');
});

t.test('login paths that name the username field differently: each name configured, exactly one in a body', async (t) => {
  const fields = ['username', 'j_username'];
  const java = parseLoginBody(Buffer.from('j_username=Alice&j_password=pw'), 'form', fields);
  t.equal(java.username, 'Alice');
  t.equal(java.withUsername('alice').toString(), 'j_username=alice&j_password=pw', 'the field it came in is the one rewritten');
  t.equal(parseLoginBody(Buffer.from('{"j_username":"alice","password":"pw"}'), 'json', fields).username, 'alice');
  // The portal at /j_security_check would sign in alice; the gateway must not hold the sign-in for mallory.
  t.ok(refused('j_username=alice&j_password=pw&username=mallory', 'form', fields), 'two configured fields at once');
  t.ok(refused('{"username":"mallory","j_username":"alice"}', 'json', fields), 'the same in JSON');
  // With only `username` configured, a field commonly holding the username elsewhere is refused all the same.
  for (const [body, why] of [
    ['j_username=alice&j_password=pw&username=mallory', 'a servlet form field'],
    ['username=mallory&password=pw&Email=alice%40example.org', 'an email field'],
    ['username=mallory&password=pw&ctl00%24Main%24UserName=alice', 'an ASP.NET field'],
    ['username=mallory&password=pw&user_id=alice', 'user_id'],
  ] as const) {
    t.ok(refused(body, 'form', ['username']), why);
  }
  t.ok(refused('{"username":"mallory","email":"alice@example.org"}', 'json', ['username']), 'an email key in JSON');
  // What login forms carry besides their username stays accepted.
  for (const [body, names] of [
    ['username=alice&password=pw&login=Sign+in&remember=1&csrf=x', ['username']],
    ['user%5Bemail%5D=alice%40example.org&user%5Bpassword%5D=pw', ['user[email]']],
    ['ctl00%24Main%24UserName=alice&ctl00%24Main%24Password=pw&__VIEWSTATE=x&ctl00%24Main%24Login=Log+in', ['ctl00$Main$UserName']],
  ] as const) {
    t.notOk(refused(body, 'form', [...names]), body);
  }
});

t.test('fields named like a username: every reading of the name, only when they name another account', async (t) => {
  // PHP reads a [ without a ] after it as _: user[name is user_name, j[username is j_username.
  for (const other of ['user[name', 'j[username', 'login[id', 'email[address'])
    t.ok(refused(`login%5Busername%5D=mallory&password=pw&${encodeURIComponent(other)}=alice`, 'form', ['login[username]']), other);
  // Empty, or naming the same account, they change nothing: an ASP.NET page posting its password-recovery box, a
  // JSON login sending the address as both email and username.
  t.notOk(refused('ctl00%24Main%24Login1%24UserName=alice&ctl00%24Main%24Login1%24Password=pw&ctl00%24Main%24Recovery%24UserName=', 'form', ['ctl00$Main$Login1$UserName']), 'an empty one');
  t.notOk(refused('{"email":"a@example.org","username":"a@example.org","password":"pw"}', 'json', ['username']), 'the same name twice');
  t.notOk(refused('{"username":"alice","user":true,"userId":null,"email":"","password":"pw"}', 'json', ['username']), 'values that hold no name');
  t.notOk(refused('{"username":"alice","user":{"remember":true},"email":[],"password":"pw"}', 'json', ['username']), 'nor a list or an object without one');
  t.notOk(refused('{"username":"12345","user_id":12345,"password":"pw"}', 'json', ['username']), 'a number naming the same account');
  // Past 2^53 JSON.parse rounds: 9007199254740993 reads as ...992, which the portal, given the text, does not.
  t.ok(refused('{"username":"9007199254740992","user_id":9007199254740993,"password":"pw"}', 'json', ['username']), 'a number too large to compare');
  // Where case tells accounts apart, Alice and alice are two.
  t.throws(() => parseLoginBody(Buffer.from('username=Alice&password=pw&email=alice'), 'form', ['username'], 'preserve'), { code: 'GW_ERR_BAD_REQUEST' }, 'usernameCase preserve: another account');
  t.notOk(refused('username=Alice&password=pw&email=+alice+', 'form', ['username']), 'the same name in another case or spacing');
  t.ok(refused('username=mallory&password=pw&email=%E9', 'form', ['username']), 'a value in another charset counts as another name');
  // A portal reads a number, a list of one or an object as a name too (Jackson makes 12345 a string; an ORM makes a
  // list an IN).
  for (const value of ['12345', '["alice@example.org"]', '{"0":"alice"}'])
    t.ok(refused(`{"username":"mallory","password":"pw","j_username":${value}}`, 'json', ['username']), value);
  // A list of one in a form: PHP, Rails and qs read email[] and email[0] as email.
  for (const other of ['email[]', 'email[0]', 'j_username[]'])
    t.ok(refused(`username=mallory&password=pw&${encodeURIComponent(other)}=alice`, 'form', ['username']), other);
  t.notOk(refused('user%5Bemail%5D=alice&user%5Bpassword%5D=pw&user%5Bremember_me%5D=1', 'form', ['user[email]']), "an array's other keys are other fields");
});
