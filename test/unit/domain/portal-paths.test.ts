// Which requests are the portal's login and logout.
import t from 'tap';
import { loose, portalPaths as paths } from '../../../src/domain/portal-paths.js';

/** As the routes use them: on the request's path as `loose` gives it. */
const portalPaths = (login: { paths: string[] }, logout: string[]) => {
  const p = paths(login, logout);
  return { loginPathOf: (path: string, method: string) => p.loginPathOf(loose(path), method), isLogout: (path: string) => p.isLogout(loose(path)) };
};

t.test('a login path in any spelling, and below it for a script; in any method but GET and HEAD', async (t) => {
  const p = portalPaths({ paths: ['/Login', '/auth/login.php']}, ['/logout']);
  for (const path of ['/Login', '/login/', '/LOGIN']) t.equal(p.loginPathOf(path, 'POST'), '/Login', path);
  t.equal(p.loginPathOf('/login', 'PUT'), '/Login', 'the path itself in any method but GET and HEAD (the route answers 405)');
  for (const method of ['GET', 'HEAD']) t.equal(p.loginPathOf('/login', method), undefined, `${method}: the login page`);
  // Path info: PHP and ASP.NET run the script below its name.
  for (const path of ['/auth/login.php/x', '/AUTH/LOGIN.PHP/a/b/']) t.equal(p.loginPathOf(path, 'POST'), '/auth/login.php', path);
  for (const method of ['PUT', 'DELETE', 'PATCH']) t.equal(p.loginPathOf('/auth/login.php/x', method), '/auth/login.php', `${method} below it: the login too (the route answers 405)`);
  t.equal(p.loginPathOf('/auth/login.php/x', 'GET'), undefined, 'GET below it: an ordinary request');
  // A route name is not a script: below it are other routes (Spring's /login/oauth2/code/x, SAML endpoints).
  for (const path of ['/login/x', '/login/saml2/sso/idp', '/loginx', '/x/login', '/']) t.equal(p.loginPathOf(path, 'POST'), undefined, path);
  t.equal(portalPaths({ paths: ['/']}, []).loginPathOf('/records', 'POST'), undefined, 'below `/`: nothing');
  t.ok(p.isLogout('/LogOut/'));
  t.notOk(p.isLogout('/logout/x'));
  // Configured with a query (what the gateway's sign-out calls): the path is the logout, whatever the query.
  const q = portalPaths({ paths: ['/login'] }, ['/logout?everywhere=1', '/auth/signout.php']);
  t.ok(q.isLogout('/logout'), 'a logout path configured with a query');
  t.notOk(q.isLogout('/logout?everywhere=1'), 'requests are matched on their path, which never holds the query');
  // Below a script, the script runs (path info): the portal logs out there too.
  t.ok(q.isLogout('/auth/signout.php/x'), 'below a logout script');
  t.notOk(q.isLogout('/auth/signout.phpx'));
});

t.test('servlet form login: a j_security_check segment anywhere is the login (Jetty signs a session in there)', async (t) => {
  const p = portalPaths({ paths: ['/app/j_security_check']}, []);
  for (const path of ['/app/j_security_check', '/home/j_security_check', '/static/J_Security_Check', '/j_security_check/x']) t.equal(p.loginPathOf(path, 'POST'), '/app/j_security_check', path);
  t.equal(p.loginPathOf('/home/j_security_check', 'PUT'), '/app/j_security_check', 'in another method too (Jetty does not look at it)');
  for (const path of ['/home/j_security_checks', '/home/xj_security_check', '/home']) t.equal(p.loginPathOf(path, 'POST'), undefined, path);
  t.equal(portalPaths({ paths: ['/login']}, []).loginPathOf('/home/j_security_check', 'POST'), undefined, 'a portal without form login: an ordinary path');
});
