// The gateway as a browser reaches it: what login check sends as the browser, and where passkeys are used by default.
import t from 'tap';
import { gatewaySite } from '../../../src/domain/gateway-site.js';
import { testConfig } from '../../helpers/config.js';

const defaults = testConfig('http://portal.internal:8080').server;
const site = (server: Partial<typeof defaults>, name?: string) => gatewaySite({ ...defaults, ...server }, name);
const tls = { certFile: 'cert.pem', keyFile: 'key.pem' };

t.test('plain HTTP served by the gateway itself: http on server.port', async (t) => {
  t.same(site({ hosts: ['localhost', '127.0.0.1'], port: 8080 }), { proto: 'http', host: 'localhost:8080', origin: 'http://localhost:8080' }, 'the demo');
  t.same(site({ hosts: ['MFA.example'], port: 80 }), { proto: 'http', host: 'mfa.example', origin: 'http://mfa.example' }, "the scheme's own port: none");
  t.equal(site({ hosts: ['localhost'], port: 0 }).origin, 'http://localhost', 'any free port: none named');
  t.equal(site({ hosts: ['[::1]'], port: 8080 }).origin, 'http://[::1]:8080');
  // No secure context there: browsers offer no passkeys and keep no cookies, but the origin is still where it is.
  t.equal(site({ hosts: ['portal.other.test'], port: 8080 }).origin, 'http://portal.other.test:8080', 'another name than localhost: the same');
});

t.test('TLS in the gateway: https on server.port, unless it is 443', async (t) => {
  t.same(site({ hosts: ['portal.other.test'], port: 18443, tls }), { proto: 'https', host: 'portal.other.test:18443', origin: 'https://portal.other.test:18443' });
  t.equal(site({ hosts: ['mfa.example'], port: 443, tls }).origin, 'https://mfa.example');
  t.equal(site({ hosts: ['mfa.example'], port: 80, tls }).origin, 'https://mfa.example:80', "http's own port is no https one");
});

t.test("a proxy in front (server.trustedProxies): https on the proxy's port, whatever server.port is", async (t) => {
  t.same(site({ hosts: ['mfa.example', 'portal.example'], port: 8080, trustedProxies: ['10.0.0.1'] }), { proto: 'https', host: 'mfa.example', origin: 'https://mfa.example' });
  t.equal(site({ hosts: ['mfa.example'], port: 18443, tls, trustedProxies: ['10.0.0.1'] }).origin, 'https://mfa.example', 'with server.tls too');
});

t.test('the name asked for, in lower case; the first of server.hosts by default', async (t) => {
  t.equal(site({ hosts: ['mfa.example', 'Portal.Example'], port: 18443, tls }, 'Portal.Example').origin, 'https://portal.example:18443');
  t.equal(site({ hosts: ['mfa.example', 'portal.example'], port: 18443, tls }).origin, 'https://mfa.example:18443');
});
