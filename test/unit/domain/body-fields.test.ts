// The login's fields in another request's body (SECURITY C-30), read every way a portal may read them, in any chunking.
import t from 'tap';
import { fieldsType, LoginFieldsScanner, unreadableBody, type BodyRefusal } from '../../../src/domain/body-fields.js';

/** The verdict on a body sent in chunks of `size` bytes. */
function verdict(type: string | undefined, body: string | Buffer, size = Infinity, fields: readonly string[] = ['username']): BodyRefusal | null {
  const scanner = new LoginFieldsScanner(type, fields, 'password');
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const step = Math.min(size, bytes.length || 1);
  for (let at = 0; at < bytes.length; at += step) {
    const v = scanner.write(bytes.subarray(at, at + step));
    if (v) return v;
  }
  return scanner.end();
}

const holds = (type: string | undefined, body: string | Buffer, size?: number, fields?: readonly string[]) => verdict(type, body, size, fields)?.refuse === 'login-fields';

/** The same answer for every chunk size from one byte up, so no split hides a field. */
function holdsInAnyChunks(t: Tap.Test, type: string | undefined, body: string, expected: boolean, fields?: readonly string[]): void {
  for (const size of [1, 2, 3, 5, 7, 16, Infinity]) t.equal(holds(type, body, size, fields), expected, `${type}: ${JSON.stringify(body.slice(0, 70))} in chunks of ${size}`);
}

const FORM = 'application/x-www-form-urlencoded';
const JSON_TYPE = 'application/json';

t.test('what the headers alone refuse: a charset in which names are other bytes, multipart without a boundary', async (t) => {
  t.equal(unreadableBody(FORM), null);
  t.equal(unreadableBody(`${FORM}; charset=UTF-8`), null);
  t.equal(unreadableBody('text/plain; charset=windows-1252'), null);
  t.equal(unreadableBody('multipart/form-data; boundary=x'), null);
  t.equal(unreadableBody(undefined), null);
  t.match(unreadableBody(`${FORM}; charset=UTF-16LE`), /charset UTF-16LE/);
  t.match(unreadableBody(`${FORM}; charset="utf-7"`), /charset utf-7/);
  t.match(unreadableBody(`${JSON_TYPE}; charset=utf-8; charset=utf-32`), /charset utf-32/, 'every charset named');
  t.match(unreadableBody('multipart/form-data'), /without a boundary/);
  t.equal(unreadableBody('multipart/form-data; boundary=a; BOUNDARY="b c"'), null, 'a few readings');
  t.match(unreadableBody(`multipart/form-data; ${Array.from({ length: 9 }, (_, i) => `boundary=b${i}`).join('; ')}`), /too many boundaries/, 'each a reading of the whole body');
  t.match(unreadableBody(`text/plain; x=multipart; ${Array.from({ length: 9 }, (_, i) => `boundary=b${i}`).join('; ')}`), /too many boundaries/, 'read as multipart too');
  t.ok(fieldsType(FORM) && fieldsType(JSON_TYPE) && fieldsType('application/vnd.api+json') && fieldsType('multipart/form-data; boundary=b'));
  t.notOk(fieldsType('application/octet-stream'));
});

t.test('forms: both fields in any spelling a portal reads as them, with values', async (t) => {
  holdsInAnyChunks(t, FORM, 'username=bob&password=secret', true);
  holdsInAnyChunks(t, FORM, 'a=1&password=secret&b=2&username=bob', true);
  holdsInAnyChunks(t, FORM, 'a=1;password=secret;username=bob', true);
  holdsInAnyChunks(t, FORM, 'UserName=bob&PASSWORD=x', true);
  holdsInAnyChunks(t, FORM, 'user%6Eame=bob&pass%77ord=x', true);
  holdsInAnyChunks(t, FORM, '%u0075sername=bob&password=x', true);
  holdsInAnyChunks(t, FORM, 'username[]=bob&password[x]=y', true);
  holdsInAnyChunks(t, FORM, 'user+name=bob&password=x', true);
  holdsInAnyChunks(t, FORM, 'pa%C5%BFsword=x&username=bob', true);
  holdsInAnyChunks(t, FORM, 'paſsword=x&username=bob', true);
  holdsInAnyChunks(t, FORM, 'j_username=bob&password=x', true, ['username', 'j_username']);
  // Rack 2 drops leading brackets.
  holdsInAnyChunks(t, FORM, ']username=bob&]password=x', true);
  holdsInAnyChunks(t, JSON_TYPE, '{"]username":"bob","[password":"x"}', true);
  holdsInAnyChunks(t, FORM, 'User-Name=bob&PASS.WORD=x', true);
  holdsInAnyChunks(t, FORM, 'usernames=bob&passwords=x', false);
  // PHP drops leading spaces: a name padded past any length limit is still the field.
  t.ok(holds(FORM, `${'+'.repeat(1100)}username=bob&${'%20'.repeat(1100)}password=x`, 4096));
  t.ok(holds(FORM, `${' '.repeat(1100)}username=bob&password=x`, 7));
});

t.test('forms: one field alone, empty values (a page\'s login box sent with every postback), or the names as values pass', async (t) => {
  holdsInAnyChunks(t, FORM, 'username=bob&message=hello', false);
  holdsInAnyChunks(t, FORM, 'password=old&new_password=x&confirm=x', false);
  holdsInAnyChunks(t, FORM, '__VIEWSTATE=abc&UserName=&Password=&Search=flu', false);
  holdsInAnyChunks(t, FORM, 'username=bob&password', false);
  holdsInAnyChunks(t, FORM, 'username=bob&password=', false);
  holdsInAnyChunks(t, FORM, 'note=username%3Dbob%26password%3Dx', false);
  holdsInAnyChunks(t, FORM, 'note=username&other=password', false);
  holdsInAnyChunks(t, FORM, 'user[username]=bob&user[password]=x', false);
  holdsInAnyChunks(t, FORM, '', false);
});

t.test('JSON: keys at any depth, as lenient parsers read them, whatever the Content-Type says', async (t) => {
  holdsInAnyChunks(t, JSON_TYPE, '{"username":"bob","password":"x"}', true);
  holdsInAnyChunks(t, JSON_TYPE, '{ "session" : { "username" : "bob" , "password" : "x" } }', true);
  holdsInAnyChunks(t, JSON_TYPE, '[{"username":"bob"},{"password":"x"}]', true);
  holdsInAnyChunks(t, JSON_TYPE, '{"\\u0075sername":"bob","pass\\u0077ord":"x"}', true);
  holdsInAnyChunks(t, JSON_TYPE, '{"USERNAME":"bob","Password":"x"}', true);
  holdsInAnyChunks(t, JSON_TYPE, "{'username':'bob','password':'x'}", true);
  holdsInAnyChunks(t, JSON_TYPE, "{username: 'bob', password : \"x\"}", true);
  holdsInAnyChunks(t, JSON_TYPE, '{"a":[true,1,null],"username":"bob","password":"x"}', true);
  holdsInAnyChunks(t, JSON_TYPE, '{"username"/**/:"bob","password"//c\n:"x"}', true);
  holdsInAnyChunks(t, JSON_TYPE, '{"username"\f:"bob","password"\u00a0:"x"}', true);
  holdsInAnyChunks(t, JSON_TYPE, '\ufeff{"username":"bob","password":"x"}', true);
  // A front controller may read php://input as JSON whatever the type: every body is read so.
  holdsInAnyChunks(t, 'text/plain', '{"username":"bob","password":"x"}', true);
  holdsInAnyChunks(t, undefined, '{"username":"bob","password":"x"}', true);
  holdsInAnyChunks(t, `${JSON_TYPE}; x=x-www-form-urlencoded`, '{"username":"bob","password":"x"}', true);
  holdsInAnyChunks(t, JSON_TYPE, '{"user\\"name":"bob","password":"x"}', false);
  holdsInAnyChunks(t, JSON_TYPE, '{"note":"username","other":"password"}', false);
  holdsInAnyChunks(t, JSON_TYPE, '{"note":"\\"username\\":","password":"x"}', false);
  holdsInAnyChunks(t, JSON_TYPE, '{"password":"old","newPassword":"x"}', false);
  holdsInAnyChunks(t, JSON_TYPE, '{"username":"bob","note":"a \\"password\\": b"}', false);
  holdsInAnyChunks(t, JSON_TYPE, '{"username":"bob", /* "password": */ "x": 1}', false);
  holdsInAnyChunks(t, JSON_TYPE, '[username, password]', false);
});

t.test('JSON in UTF-16 or UTF-32, which Jackson and Python read, cannot be read for the fields', async (t) => {
  const utf16 = Buffer.from('{"username":"bob","password":"x"}', 'utf16le');
  t.same(verdict(JSON_TYPE, utf16), { refuse: 'unreadable', why: 'JSON not in UTF-8' });
  t.same(verdict(JSON_TYPE, Buffer.concat([Buffer.from([0xff, 0xfe]), utf16])), { refuse: 'unreadable', why: 'JSON not in UTF-8' });
  t.equal(verdict('application/octet-stream', Buffer.from([0, 1, 2, 3])), null, 'other bytes of another type pass');
});

t.test('multipart: parts by their name, every boundary a parser may read, headers read leniently', async (t) => {
  const part = (disposition: string, value: string, eol = '\r\n', b = 'XyZ') => `--${b}${eol}Content-Disposition: ${disposition}${eol}${eol}${value}${eol}`;
  const MP = 'multipart/form-data; boundary=XyZ';
  holdsInAnyChunks(t, MP, `${part('form-data; name="username"', 'bob')}${part('form-data; name="password"', 'x')}--XyZ--\r\n`, true);
  holdsInAnyChunks(t, MP, `${part('form-data; name=username', 'bob', '\n')}${part('form-data; NAME="Password"', 'x', '\n')}--XyZ--\n`, true);
  holdsInAnyChunks(t, MP, `${part('form-data; name="a"; name*=utf-8\'\'user%6Eame', 'bob')}${part('form-data; name="password"', 'x')}--XyZ--`, true);
  holdsInAnyChunks(t, MP, `--XyZ\r\nContent-Type: text/plain\r\ncontent-disposition:form-data;name="username"\r\n\r\nbob\r\n${part('form-data; name="password"; filename="p.txt"', 'x')}`, true);
  holdsInAnyChunks(t, MP, `${part("form-data; name='username'", 'bob')}${part('name="password"', 'x')}--XyZ--`, true);
  holdsInAnyChunks(t, MP, `${part('form-data;\r\n name="username"', 'bob')}${part('form-data\r\n; name="password"', 'x')}--XyZ--`, true);
  holdsInAnyChunks(t, MP, `${part('form-data; name="x"; name="username"', 'bob')}${part('form-data; name="password"', 'x')}--XyZ--`, true);
  holdsInAnyChunks(t, MP, `--XyZ\r\nContent-Disposition: form-data; name="username"\n\r\nbob\r\n--XyZ\r\nContent-Disposition: form-data; name="password"\n\r\nx`, true);
  holdsInAnyChunks(t, 'multipart/form-data; BOUNDARY=A; boundary=XyZ', `${part('form-data; name="username"', 'bob')}${part('form-data; name="password"', 'x')}--XyZ--`, true);
  holdsInAnyChunks(t, 'multipart/form-data; boundary; b=XyZ', `${part('form-data; name="username"', 'bob')}${part('form-data; name="password"', 'x')}--XyZ--`, true);
  holdsInAnyChunks(t, 'multipart/form-data; boundary=A; boundary=XyZ', `${part('form-data; name="username"', 'bob')}${part('form-data; name="password"', 'x')}--XyZ--`, true);
  holdsInAnyChunks(t, 'multipart/form-data; boundary=XyZ; x=x-www-form-urlencoded', `${part('form-data; name="username"', 'bob')}${part('form-data; name="password"', 'x')}--XyZ--`, true);
  // PHP and older Rack keep a space after boundary=, so the delimiter is `-- B`.
  holdsInAnyChunks(t, 'multipart/form-data; boundary= B', `${part('form-data; name="username"', 'bob', '\r\n', ' B')}${part('form-data; name="password"', 'x', '\r\n', ' B')}-- B--`, true);
  // PHP cuts a header line longer than 5 KiB and reads the rest as a line of its own.
  holdsInAnyChunks(t, MP, `--XyZ\r\n${'a'.repeat(5120)}Content-Disposition: form-data; name="username"\r\n\r\nbob\r\n${part('form-data; name="password"', 'x')}`, true);
  // Another multipart type, or form-data with a tab before its ;: PHP reads php://input, as a form or JSON.
  holdsInAnyChunks(t, 'multipart/mixed; boundary=XyZ', '{"username":"bob","password":"x"}', true);
  holdsInAnyChunks(t, 'multipart/form-data\t; boundary=XyZ', 'username=bob&password=x', true);
  holdsInAnyChunks(t, MP, `${part('form-data; name="username"', 'bob')}${part('form-data; name="file"; filename="password"', 'Content-Disposition: form-data; name="password"')}--XyZ--`, false);
  holdsInAnyChunks(t, MP, `${part('form-data; name="username"', 'bob')}--XyZ--\r\n`, false);
  // A megabyte of file before the second field: the delimiter is found whatever the chunking.
  const file = 'x'.repeat(1 << 20);
  t.ok(holds(MP, `${part('form-data; name="username"', 'bob')}${part('form-data; name="f"; filename="a"', file)}${part('form-data; name="password"', 'x')}`, 65536));
  t.ok(holds(MP, `${part('form-data; name="username"', 'bob')}${part('form-data; name="f"; filename="a"', file)}${part('form-data; name="password"', 'x')}`, 4093));
  // Part headers past any parser's patience, padded or never ended: the body cannot be read, not skipped.
  const pad = `X-Pad: ${'a'.repeat(3500)}\r\n`.repeat(10);
  t.same(verdict(MP, `--XyZ\r\n${pad}Content-Disposition: form-data; name="username"\r\n\r\nbob\r\n${part('form-data; name="password"', 'x')}`, 4096), { refuse: 'unreadable', why: 'multipart part headers too long' });
});

t.test('memory stays bounded: a name or key of any length is cut short', async (t) => {
  const scanner = new LoginFieldsScanner(FORM, ['username'], 'password');
  for (let i = 0; i < 64; i++) scanner.write(Buffer.alloc(64 * 1024, 0x61));
  t.equal(scanner.end(), null);
  const keys = new LoginFieldsScanner(JSON_TYPE, ['username'], 'password');
  keys.write(Buffer.from('{"'));
  for (let i = 0; i < 64; i++) keys.write(Buffer.alloc(64 * 1024, 0x61));
  t.equal(keys.write(Buffer.from('":1,"username":"bob"}')), null, 'a key after a long one is still read');
  t.same(keys.write(Buffer.from(',"password":"x"')), { refuse: 'login-fields' });
});
