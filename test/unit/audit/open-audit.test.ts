// The trail as the gateway opens it: a lock taken over by another writer stops this process's writing.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditError } from '../../../src/audit/audit-error.js';
import { HEARTBEAT_MS } from '../../../src/audit/dir-lock.js';
import { openAudit } from '../../../src/audit/open-audit.js';
import { testConfig } from '../../helpers/config.js';
import { FakeClock } from '../../helpers/clock.js';
import { recordsOf, tempDir } from './helpers.js';

t.test('a gateway whose lock another writer took over writes nothing more to that chain, not even a checkpoint', async (t) => {
  const dir = tempDir(t);
  const config = testConfig('http://127.0.0.1:1', (raw) => (raw.audit.dir = dir));
  const errors: AuditError[] = [];
  const audit = (await openAudit(config, { clock: new FakeClock(), writer: 'gateway', redis: null, onError: (e) => errors.push(e) }))!;
  t.teardown(audit.close);
  audit.log.append({ name: 'password_ok', pid: 'p1' });

  // Another container judged the lock stale (this one was frozen) and took it.
  writeFileSync(join(dir, 'audit.lock'), JSON.stringify({ host: 'other-container', pid: 1, token: 'theirs' }));
  await new Promise((r) => setTimeout(r, HEARTBEAT_MS + 500));
  audit.log.append({ name: 'password_ok', pid: 'p2' });
  await audit.close();

  t.same(recordsOf(dir).map((r) => r.seq), [1, 2, 3], 'its start, signed, and its own record only: no event, no final checkpoint after the loss');
  t.same(errors.map((e) => e.code), ['AUDIT_LOCK_LOST', 'AUDIT_CLOSED'], 'the loss, then each dropped event, for the log and metrics');
  t.equal(audit.log.stoppedBy?.code, 'AUDIT_LOCK_LOST', 'for a readiness check');
});
