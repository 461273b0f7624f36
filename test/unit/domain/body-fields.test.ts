// The login's fields in another request's body (SECURITY C-30), read as a portal reads them, in any chunking.
import t from 'tap';
import { fieldBody, LoginFieldsScanner, type FieldBody } from '../../../src/domain/body-fields.js';

/** Whether the body (sent in chunks of `size` bytes) holds both fields, for username/password fields. */
function holds(kind: FieldBody, body: string, size = Infinity, fields: readonly string[] = ['username']): boolean {
  const scanner = new LoginFieldsScanner(kind, fields, 'password');
  const bytes = Buffer.from(body);
  let found = false;
  for (let at = 0; at < bytes.length && !found; at += Math.min(size, bytes.length)) found = scanner.write(bytes.subarray(at, at + Math.min(size, bytes.length)));
  return found || scanner.end();
}

/** Holds for every chunk size from one byte up, so no split hides a field. */
function holdsInAnyChunks(t: Tap.Test, kind: FieldBody, body: string, expected: boolean, fields?: readonly string[]): void {
  for (const size of [1, 2, 3, 5, 7, 16, Infinity]) t.equal(holds(kind, body, size, fields), expected, `${JSON.stringify(body.slice(0, 60))} in chunks of ${size}`);
}

const form: FieldBody = { kind: 'form' };
const json: FieldBody = { kind: 'json' };

t.test('the content types a portal reads fields from, read loosely', async (t) => {
  t.same(fieldBody('application/x-www-form-urlencoded'), form);
  t.same(fieldBody('Application/X-WWW-Form-Urlencoded; charset=UTF-8'), form);
  t.same(fieldBody('application/json'), json);
  t.same(fieldBody('application/vnd.api+json'), json);
  t.same(fieldBody('multipart/form-data; boundary=----abc'), { kind: 'multipart', boundary: '----abc' });
  t.same(fieldBody('multipart/form-data; boundary="a b;c"'), { kind: 'multipart', boundary: 'a b;c' });
  t.equal(fieldBody('multipart/form-data'), null, 'no boundary: no part can be read, by the portal either');
  t.equal(fieldBody('application/octet-stream'), null);
  t.equal(fieldBody('text/plain'), null);
  t.equal(fieldBody(undefined), null);
});

t.test('form bodies: both fields in any spelling a portal reads as them', async (t) => {
  holdsInAnyChunks(t, form, 'username=bob&password=secret', true);
  holdsInAnyChunks(t, form, 'a=1&password=secret&b=2&username=bob', true);
  holdsInAnyChunks(t, form, 'a=1;password=secret;username=bob', true);
  holdsInAnyChunks(t, form, 'UserName=bob&PASSWORD=x', true);
  holdsInAnyChunks(t, form, 'user%6Eame=bob&pass%77ord=x', true);
  holdsInAnyChunks(t, form, '%u0075sername=bob&password=x', true);
  holdsInAnyChunks(t, form, 'username[]=bob&password[x]=y', true);
  holdsInAnyChunks(t, form, 'user+name=bob&password=x', true);
  holdsInAnyChunks(t, form, 'username=bob&password', true);
  holdsInAnyChunks(t, form, 'pa%C5%BFsword=x&username=bob', true);
  holdsInAnyChunks(t, form, 'paſsword=x&username=bob', true);
  holdsInAnyChunks(t, form, 'j_username=bob&password=x', true, ['username', 'j_username']);
});

t.test('form bodies: one field alone, or the names only as values, pass', async (t) => {
  holdsInAnyChunks(t, form, 'username=bob&message=hello', false);
  holdsInAnyChunks(t, form, 'password=old&new_password=x&confirm=x', false);
  holdsInAnyChunks(t, form, 'note=username%3Dbob%26password%3Dx', false);
  holdsInAnyChunks(t, form, 'note=username&other=password', false);
  holdsInAnyChunks(t, form, 'user[username]=bob&user[password]=x', false);
  holdsInAnyChunks(t, form, '', false);
});

t.test('JSON bodies: keys at any depth, escaped as JSON allows', async (t) => {
  holdsInAnyChunks(t, json, '{"username":"bob","password":"x"}', true);
  holdsInAnyChunks(t, json, '{ "session" : { "username" : "bob" , "password" : "x" } }', true);
  holdsInAnyChunks(t, json, '[{"username":"bob"},{"password":"x"}]', true);
  holdsInAnyChunks(t, json, '{"\\u0075sername":"bob","pass\\u0077ord":"x"}', true);
  holdsInAnyChunks(t, json, '{"USERNAME":"bob","Password":"x"}', true);
  holdsInAnyChunks(t, json, "{'username':'bob','password':'x'}", true);
  holdsInAnyChunks(t, json, "{username: 'bob', password : \"x\"}", true);
  holdsInAnyChunks(t, json, '{"a":[true,1,null],"username":"bob","password":"x"}', true);
  holdsInAnyChunks(t, json, "{note: 'it''s', username: 1, other: \"password\"}", false);
  holdsInAnyChunks(t, json, '[username, password]', false);
  holdsInAnyChunks(t, json, '{"user\\"name":"bob","password":"x"}', false);
  holdsInAnyChunks(t, json, '{"note":"username","other":"password"}', false);
  holdsInAnyChunks(t, json, '{"note":"\\"username\\":","password":"x"}', false);
  holdsInAnyChunks(t, json, '{"password":"old","newPassword":"x"}', false);
  holdsInAnyChunks(t, json, '{"username":"bob","note":"a \\"password\\": b"}', false);
});

t.test('multipart bodies: parts by their name, CRLF or LF, plain or RFC 5987 names', async (t) => {
  const mp: FieldBody = { kind: 'multipart', boundary: 'XyZ' };
  const part = (disposition: string, value: string, eol = '\r\n') => `--XyZ${eol}Content-Disposition: ${disposition}${eol}${eol}${value}${eol}`;
  holdsInAnyChunks(t, mp, `${part('form-data; name="username"', 'bob')}${part('form-data; name="password"', 'x')}--XyZ--\r\n`, true);
  holdsInAnyChunks(t, mp, `${part('form-data; name=username', 'bob', '\n')}${part('form-data; NAME="Password"', 'x', '\n')}--XyZ--\n`, true);
  holdsInAnyChunks(t, mp, `${part('form-data; name="a"; name*=utf-8\'\'user%6Eame', 'bob')}${part('form-data; name="password"', 'x')}--XyZ--`, true);
  holdsInAnyChunks(t, mp, `--XyZ\r\nContent-Type: text/plain\r\ncontent-disposition:form-data;name="username"\r\n\r\nbob\r\n${part('form-data; name="password"; filename="p.txt"', 'x')}`, true);
  holdsInAnyChunks(t, mp, `${part('form-data; name="username"', 'bob')}${part('form-data; name="file"; filename="password"', 'Content-Disposition: form-data; name="password"')}--XyZ--`, false);
  holdsInAnyChunks(t, mp, `${part('form-data; name="username"', 'bob')}--XyZ--\r\n`, false);
  // A megabyte of file before the second field: the delimiter is found whatever the chunking.
  const file = 'x'.repeat(1 << 20);
  t.ok(holds(mp, `${part('form-data; name="username"', 'bob')}${part('form-data; name="f"; filename="a"', file)}${part('form-data; name="password"', 'x')}`, 65536));
  t.ok(holds(mp, `${part('form-data; name="username"', 'bob')}${part('form-data; name="f"; filename="a"', file)}${part('form-data; name="password"', 'x')}`, 4093));
});

t.test('memory stays bounded: a name or key of any length is cut short', async (t) => {
  const scanner = new LoginFieldsScanner(form, ['username'], 'password');
  for (let i = 0; i < 64; i++) scanner.write(Buffer.alloc(64 * 1024, 0x61));
  t.notOk(scanner.end());
  const keys = new LoginFieldsScanner(json, ['username'], 'password');
  keys.write(Buffer.from('{"'));
  for (let i = 0; i < 64; i++) keys.write(Buffer.alloc(64 * 1024, 0x61));
  t.notOk(keys.write(Buffer.from('":1,"username":"bob"}')), 'a key after a long one is still read');
  t.ok(keys.write(Buffer.from(',"password":"x"')));
});
