import t from 'tap';
import type { RedisOptions } from 'ioredis';
import { createRedisClient } from '../../../src/stores/redis-connection.js';

t.test("a demoted master's READONLY answer reconnects (to the new master), also inside a script's error", async (t) => {
  // Nothing listens on port 1: only the client's settings are looked at.
  const client = createRedisClient({ mode: 'single', url: 'redis://127.0.0.1:1', keyPrefix: 'x:', commandTimeoutMs: 100 });
  t.teardown(() => client.disconnect());
  const reconnect = (client.options as RedisOptions).reconnectOnError!;
  t.ok(reconnect(new Error("READONLY You can't write against a read only replica.")), 'a command refused');
  // Redis 6 answers a script's write on a replica inside its own error.
  t.ok(reconnect(new Error("ERR Error running script (call to f_0a1b): @user_script:1: @user_script: 1: -READONLY You can't write against a read only replica.")), "a script's write refused (Redis 6)");
  t.notOk(reconnect(new Error('ERR unknown command')), 'another error: no reconnect');
  t.notOk(reconnect(new Error("WRONGTYPE Operation against a key holding the wrong kind of value")), 'nor a wrong type');
});
