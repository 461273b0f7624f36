// policy explain: --user names a signed-in person, and only a name the login accepts can be one.
import t from 'tap';
import { explainPolicy } from '../../../src/cli/policy-explain.js';
import { UsageError } from '../../../src/cli/usage.js';
import { testConfig } from '../../helpers/config.js';

t.test('--user with a name outside portal.login.usernamePattern is wrong usage, as no sign-in can use it', async (t) => {
  const config = testConfig('http://127.0.0.1:1', (raw) => {
    raw.portal.login.usernamePattern = '[a-z]+';
  });
  t.throws(() => explainPolicy(config, { path: '/records', user: 'alice@clinic.example' }), { constructor: UsageError, message: /--user: not a usable username/ });
  t.match(explainPolicy(config, { path: '/records', user: 'Alice' }).join('\n'), 'decision:');
});
