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
    usernameField: 'username',
    fields: [['csrf', `t<k"n '1<`], ['username', ''], ['password', 'prefilled'], ['terms', 'yes'], ['go', 'Sign in']],
  });
});

t.test('one of several configured names; none: null; no method is GET, no action the page itself', async (t) => {
  t.same(loginFormOf('<form><input name="j_username"></form>', ['username', 'j_username']), { action: undefined, method: 'GET', usernameField: 'j_username', fields: [['j_username', '']] });
  t.equal(loginFormOf('<form action="/login"><input name="email"></form>', ['username']), null);
  t.equal(loginFormOf('<!-- <form><input name="username"></form> -->', ['username']), null);
});

t.test('a crafted page of tags never closed is read in time linear in its length', async (t) => {
  // Each such tag, read from its start to the page's end and then given up, would make the time quadratic: minutes
  // for a page of the portal client's 1 MiB.
  for (const [what, page] of [
    ['forms', '<form'.repeat(40_000)],
    ['inputs', `<form>${'<input'.repeat(40_000)}`],
    ['quotes', '<form "'.repeat(40_000)],
  ] as const) {
    const started = performance.now();
    t.equal(loginFormOf(page, ['username']), null);
    t.ok(performance.now() - started < 1000, `${what}: ${Math.round(performance.now() - started)} ms`);
  }
  // A tag never closed takes the page up to the next `>`, as a browser reads it: the form after it is in the first one's tag.
  const tail = '<form action="/login" method="post"><input name="username"></form>';
  t.same(loginFormOf(`<form${'<form'.repeat(3)} ${tail}`, ['username']), { action: '/login', method: 'POST', usernameField: 'username', fields: [['username', '']] });
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
