// Which request paths are the portal's login: each spelling of a login path, everything below it, and for servlet
// form login any path with a `j_security_check` segment.
import t from 'tap';
import { loginPathMatcher, loose } from '../../../src/http/proxy-routes.js';

t.test('a login path, its spellings and everything below it', async (t) => {
  const of = loginPathMatcher(['/Login']);
  for (const path of ['/Login', '/login/', '/LOGIN', '/login/x', '/login/a/b/']) t.equal(of(loose(path)), '/Login', path);
  for (const path of ['/loginx', '/x/login', '/', '/log']) t.equal(of(loose(path)), undefined, path);
  t.equal(loginPathMatcher(['/'])(loose('/records')), undefined, 'below `/`: nothing');
  t.equal(loginPathMatcher(['/'])(loose('/')), '/');
});

t.test('servlet form login: a j_security_check segment anywhere is the login (Jetty signs a session in there)', async (t) => {
  const of = loginPathMatcher(['/app/j_security_check']);
  for (const path of ['/app/j_security_check', '/home/j_security_check', '/static/J_Security_Check', '/j_security_check/x']) t.equal(of(loose(path)), '/app/j_security_check', path);
  for (const path of ['/home/j_security_checks', '/home/xj_security_check', '/home']) t.equal(of(loose(path)), undefined, path);
  t.equal(loginPathMatcher(['/login'])(loose('/home/j_security_check')), undefined, 'a portal without form login: an ordinary path');
});
