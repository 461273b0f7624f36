// The login page read as a browser fills it in: the form with the username field, and what it sends.
import t from 'tap';
import { loginFormOf } from '../../../src/domain/login-form.js';

t.test('the form that holds the username field, with what a browser sends of it', async (t) => {
  const page = `<!-- <form action="/old"><input name="username"></form> -->
<script>document.write('<form action="/js"><input name="username">')</script>
<form action="/search" method="get"><input name="q" value="x"></form>
<form METHOD=post action='/sign-in?a=1&amp;b=2' data-x="a>b">
  <input type="hidden" name="csrf" value="t&#x3c;k&quot;n &#39;1&lt;">
  <input name="username" type="text" autocomplete="username">
  <input name="password" type="password" value="prefilled">
  <input type="checkbox" name="remember"> <input type="checkbox" name="terms" value="yes" checked>
  <input type="text" name="off" value="1" disabled>
  <input type="submit" name="go" value="Sign in">
</form>`;
  t.same(loginFormOf(page, ['username']), {
    action: '/sign-in?a=1&b=2',
    method: 'POST',
    enctype: 'application/x-www-form-urlencoded',
    usernameField: 'username',
    fields: [['csrf', `t<k"n '1<`], ['username', ''], ['password', 'prefilled'], ['terms', 'yes'], ['go', 'Sign in']],
  });
});

t.test('one of several configured names; none: null; no method is GET, no action the page itself', async (t) => {
  t.same(loginFormOf('<form><input name="j_username"></form>', ['username', 'j_username']), { action: undefined, method: 'GET', enctype: 'application/x-www-form-urlencoded', usernameField: 'j_username', fields: [['j_username', '']] });
  t.equal(loginFormOf('<form action="/login"><input name="email"></form>', ['username']), null);
  t.equal(loginFormOf('<!-- <form><input name="username"></form> -->', ['username']), null);
});

t.test("the page's base URL, which a browser reads the action from: the first base element with an href", async (t) => {
  const base = (page: string) => loginFormOf(`${page}<form action="login.do"><input name="username"></form>`, ['username'])?.base;
  t.equal(base('<head><base target="_top"><BASE HREF="/app/"><base href="/other/"></head>'), '/app/', 'the first with an href');
  t.equal(base('<base href="http://portal.internal:8080/app/">'), 'http://portal.internal:8080/app/');
  t.equal(base('<!-- <base href="/old/"> --><basefont href="/font/">'), undefined, 'in a comment, or another tag: none');
});

t.test('a crafted page of tags never closed is read in time linear in its length', async (t) => {
  // Each such tag, read from its start to the page's end and then given up, would make the time quadratic: minutes
  // for a page of the portal client's 1 MiB.
  const timed = (what: string, page: string) => {
    const started = performance.now();
    const form = loginFormOf(page, ['username']);
    t.ok(performance.now() - started < 5000, `${what}: ${Math.round(performance.now() - started)} ms`);
    return form;
  };
  for (const [what, page] of [
    ['forms', '<form'.repeat(40_000)],
    ['inputs', `<form>${'<input'.repeat(40_000)}`],
    ['quotes', '<form "'.repeat(40_000)],
    ['selects', `<form>${'<select'.repeat(40_000)}`],
    ['selects never closed', `<form>${'<select>'.repeat(40_000)}`],
    ['textareas', `<form>${'<textarea>'.repeat(40_000)}`],
    ['bases', '<base "'.repeat(40_000)],
  ] as const) {
    t.equal(timed(what, page), null);
  }
  // The options and the text of the login form's fields, which are read.
  const login = '<form><input name="username">';
  t.same(timed('options', `${login}<select name="s">${'<option'.repeat(40_000)}`)?.fields, [['username', ''], ['s', '']]);
  t.same(timed('options never closed', `${login}<select name="s">${'<option><b'.repeat(40_000)}`)?.fields, [['username', ''], ['s', '']]);
  t.same(timed('tags in an option', `${login}<select name="s"><option>${'<b'.repeat(40_000)}`)?.fields, [['username', ''], ['s', '']]);
  t.equal(timed('textarea ends', `${login}<textarea name="t">${'</textarea '.repeat(40_000)}`)?.fields[1]?.[1].length, 11 * 40_000);
  // A tag never closed takes the page up to the next `>`, as a browser reads it: the form after it is in the first one's tag.
  const tail = '<form action="/login" method="post"><input name="username"></form>';
  t.same(loginFormOf(`<form${'<form'.repeat(3)} ${tail}`, ['username']), { action: '/login', method: 'POST', enctype: 'application/x-www-form-urlencoded', usernameField: 'username', fields: [['username', '']] });
});

t.test("the form's first submit button goes with it, as a browser sends it (clicked, or by Enter)", async (t) => {
  // PHP portals often sign in only `if (isset($_POST['login']))`.
  const form = (buttons: string) => loginFormOf(`<form method="post"><input name="username">${buttons}</form>`, ['username'])?.fields;
  t.same(form('<input type="submit" name="login" value="Sign in"><input type="submit" name="other" value="x">'), [['username', ''], ['login', 'Sign in']]);
  t.same(loginFormOf('<form><button name="b" value="1"></button><input name="username"></form>', ['username'])?.fields, [['b', '1'], ['username', '']], 'in the order of the page');
  t.same(form('<BUTTON name="login" value="1">Sign in</BUTTON><button type="submit" name="other">'), [['username', ''], ['login', '1']]);
  t.same(form('<button type="button" name="show">Show</button><input type=submit name=go>'), [['username', ''], ['go', '']], 'a button of type button submits nothing');
  t.same(form('<input type="image" name="go" src="go.png">'), [['username', ''], ['go.x', '0'], ['go.y', '0']]);
  t.same(form('<input type="image" src="go.png">'), [['username', ''], ['x', '0'], ['y', '0']]);
  t.same(form('<input type="submit" name="go" disabled><input type="submit" name="other">'), [['username', '']], 'the first one disabled: Enter submits nothing');
  t.same(form('<button>Sign in</button><input type="submit" name="go">'), [['username', '']], 'the first one has no name: none');
});

t.test("the encoding a browser sends the form in: its enctype, or its first submit button's formenctype", async (t) => {
  const enctype = (form: string) => loginFormOf(form.replace('<input>', '<input name="username">'), ['username'])?.enctype;
  t.equal(enctype('<form method="post"><input></form>'), 'application/x-www-form-urlencoded', 'none');
  t.equal(enctype('<form method="post" enctype="Multipart/Form-Data"><input></form>'), 'multipart/form-data', 'in any case');
  t.equal(enctype('<form method="post" enctype="text/plain"><input></form>'), 'text/plain');
  t.equal(enctype('<form method="post" enctype="application/json"><input></form>'), 'application/x-www-form-urlencoded', 'one browsers do not know: the default');
  t.equal(enctype('<form method="post"><input><button formenctype="multipart/form-data">Sign in</button><button formenctype="text/plain"></form>'), 'multipart/form-data', "the first submit button's");
  t.equal(enctype('<form method="post" enctype="multipart/form-data"><input><input type="submit" formenctype="application/x-www-form-urlencoded"></form>'), 'application/x-www-form-urlencoded', "the first submit button's, over the form's");
  t.equal(enctype('<form method="post" enctype="multipart/form-data"><input><button type="button" formenctype="text/plain">Show</button></form>'), 'multipart/form-data', 'not a submit button: the form\'s');
});

t.test("where and how a browser sends the form: its first submit button's formaction and formmethod, else the form's", async (t) => {
  const sends = (html: string) => {
    const form = loginFormOf(html.replace('<input>', '<input name="username">'), ['username']);
    return form && [form.method, form.action];
  };
  t.same(sends('<form action="/search"><input><button formmethod="POST" formaction="/login">Sign in</button></form>'), ['POST', '/login']);
  t.same(sends('<form method="post" action="/login"><input><input type="submit" formaction="" formmethod="get"></form>'), ['GET', undefined], "an empty formaction: the page's address");
  t.same(sends('<form method="post" action="/login"><input><button type="button" formaction="/x" formmethod="get">Show</button></form>'), ['POST', '/login'], "not a submit button: the form's");
  t.same(sends('<form method="post" action="/login"><input><button>Sign in</button><button formaction="/x">Other</button></form>'), ['POST', '/login'], "another than the first: the form's");
});

t.test('a select sends its chosen option and a textarea its text, as a browser sends them', async (t) => {
  const form = (fields: string) => loginFormOf(`<form method="post"><input name="username">${fields}</form>`, ['username'])?.fields.slice(1);
  t.same(form('<select name="domain"><option value="a">A<option value="b" selected>B</option></select>'), [['domain', 'b']], 'the one selected');
  t.same(form('<SELECT name="domain"><option selected>x<option value="c" selected>C</SELECT>'), [['domain', 'c']], 'the last one marked selected');
  t.same(form('<select name="domain">\n<option disabled>-</option>\n<option>\n  Head  &amp;\n <b>Office</b> </option><option>b</option></select>'), [['domain', 'Head & Office']], 'none selected: the first not disabled, by its text');
  t.same(form('<select name="d"><option>&nbsp;x&#32;\t</select>'), [['d', '\u00a0x']], 'only ASCII spaces trimmed');
  t.same(form('<select name="d"><optgroup label="g"><option value="1"></optgroup><option value="2"></select>'), [['d', '1']], 'within a group');
  t.same(form('<select name="d"><option value="1" selected disabled></select><select name="e" disabled><option value="1"></select>'), [], 'disabled: nothing sent');
  t.same(form('<select name="d" multiple><option value="1" selected><option value="2"><option value="3" selected></select>'), [['d', '1'], ['d', '3']], 'multiple: each selected');
  t.same(form('<select name="d" multiple><option value="1"></select><select name="e" size="3"><option value="1"></select>'), [], 'a list of rows chooses none by itself');
  t.same(form('<select name="d"></select><select><option value="1"></select>'), [], 'no option, no name: nothing sent');
  t.same(form('<select name="d"><option value="1"><input name="after" value="x">'), [['d', '1'], ['after', 'x']], 'a select left open ends at the next input');

  t.same(form('<textarea name="note">\r\nline 1\nline &lt;2&gt;\r\n<input name="not-a-field"></textarea>'), [['note', 'line 1\r\nline <2>\r\n<input name="not-a-field">']], 'text as written, no field inside it');
  t.same(form('<textarea name="a"></textarea><textarea name="b" disabled>x</textarea><textarea>y</textarea><input name="c">'), [['a', ''], ['c', '']]);
  t.same(form('<input name="a"><textarea name="t">x</textarea><select name="s"><option>y</select><input name="z">'), [['a', ''], ['t', 'x'], ['s', 'y'], ['z', '']], 'in the order of the page');
});
