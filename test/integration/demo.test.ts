// `mfa-gateway demo` from the real command line: it prints the gateway's address and the demo logins, serves the
// portal's login page through the gateway, and leaves an audit trail that checks with the key it prints.
import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { request } from 'undici';
import { Browser, inputValue } from '../helpers/browser.js';
import { PLANT_LINK, SIGNAL_SELF, TS_LOADER, runCli, runCliAsync } from '../helpers/cli.js';
import { SoftAuthenticator } from '../helpers/soft-authenticator.js';
import { jsonCall, passkeyCsrf } from '../helpers/stack.js';
import { freePorts } from '../helpers/redis.js';

t.test('the demo starts, serves the portal through the gateway, and its audit trail verifies', async (t) => {
  const [port, portalPort, adminPort] = await freePorts(3);
  const proc = spawn(process.execPath, [TS_LOADER, 'src/main.ts', 'demo'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PORT: String(port), PORTAL_PORT: String(portalPort), ADMIN_PORT: String(adminPort) },
  });
  t.teardown(() => proc.kill('SIGKILL'));
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.resume();
  for (let i = 0; i < 300 && !out.includes('Check the trail:'); i++) {
    if (proc.exitCode !== null) break;
    await sleep(100);
  }
  t.match(out, `Open the gateway:            http://localhost:${port}/`);
  t.match(out, /alice +correct horse battery +enrolment code [A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}/);
  // The memory store's warning (the command line issues no enrolment codes into it) is followed by where the codes are.
  const lines = out.split('\n');
  const warning = lines.findIndex((l) => l.includes('store.type is memory'));
  t.ok(warning >= 0, "the memory store's warning stays");
  t.match(JSON.parse(lines[warning + 1]!), { msg: /^the demo issues its users' enrolment codes itself: they are printed below/ }, 'and is followed by where the codes are');

  const login = await request(`http://localhost:${port}/login`);
  t.equal(login.statusCode, 200);
  t.match(await login.body.text(), 'name="password"', "the portal's own login page, through the gateway");
  // The demo's login rules tell the portal's answers apart: its refusal shown, a right password on to the second step.
  const b = new Browser(`http://localhost:${port}`);
  const wrong = await b.post('/login', { username: 'alice', password: 'wrong', csrf: inputValue((await b.get('/login')).body, 'csrf') });
  t.equal(wrong.status, 200);
  t.match(wrong.body, 'Invalid username or password', "a wrong password: the portal's refusal");
  const expired = await b.post('/login', { username: 'alice', password: 'wrong', csrf: 'stale' });
  t.same([expired.status, /Your form expired/.test(expired.body)], [403, true], 'an expired form: its page');
  const right = await b.post('/login', { username: 'alice', password: 'correct horse battery', csrf: inputValue((await b.get('/login')).body, 'csrf') });
  t.same([right.status, right.location], [303, '/_mfa/proof'], 'a right password: on to the second step (its enrolment code first)');
  // A passkey made where the banner sends the browser: http://localhost and the demo's port.
  const code = /alice +correct horse battery +enrolment code (\S+)/.exec(out)![1]!;
  const proof = await b.post('/_mfa/enrol/proof', { csrf: inputValue((await b.get('/_mfa/proof')).body, 'csrf'), code });
  t.equal(proof.location, '/_mfa/enrol', 'the enrolment code from the banner');
  const csrf = passkeyCsrf((await b.get('/_mfa/enrol')).body);
  const passkey = async (origin: string) => {
    const options = await jsonCall(b, '/_mfa/enrol/passkey/options', csrf);
    return jsonCall(b, '/_mfa/enrol/passkey', csrf, { credential: new SoftAuthenticator({ origin }).register(options.json), name: 'Test key' });
  };
  t.equal((await passkey(`http://127.0.0.1:${port}`)).status, 400, 'not at 127.0.0.1');
  t.equal((await passkey(`http://localhost:${port}`)).status, 200, `at http://localhost:${port}`);
  // A page opened signed out: the login page takes it along, so that the sign-in ends there.
  const asked = await new Browser(`http://localhost:${port}`).get('/admin/');
  t.same([asked.status, asked.location], [302, '/login?next=%2Fadmin%2F'], 'signed out: to the login page, with the page asked for');
  t.equal(inputValue((await b.get(asked.location!)).body, 'next'), '/admin/', "the portal's form carries it to the password");

  const check = /Check the trail: node dist\/src\/main\.js audit verify --public-key (\S+) (\S+)/.exec(out);
  t.ok(check, 'the command that checks the trail');
  // While the demo runs, as a newcomer tries it: the trail is signed within seconds.
  let running = runCli(['audit', 'verify', '--public-key', check![1]!, check![2]!]);
  for (let i = 0; i < 20 && running.code !== 0; i++) {
    await sleep(500);
    running = runCli(['audit', 'verify', '--public-key', check![1]!, check![2]!]);
  }
  t.equal(running.code, 0, `while the demo runs: ${running.stdout}${running.stderr}`);
  // The command line on the demo, as the banner says to run it: its variables (this run's), then the commands.
  const envFile = /^ {4}\. (\S+)$/m.exec(out)?.[1];
  t.ok(envFile, 'the file of the variables config/demo.yaml reads');
  t.equal(statSync(envFile!).mode & 0o777, 0o600, "the user's alone");
  const vars = Object.fromEntries([...readFileSync(envFile!, 'utf8').matchAll(/^export (MFA_DEMO_\w+)='([^']*)'$/gm)].map((m) => [m[1]!, m[2]!]));
  t.equal(Object.keys(vars).length, 6, 'all six of them');
  for (const key of ['SIGNING', 'ENCRYPTION', 'PSEUDONYM', 'AUDIT']) t.notMatch(out, vars[`MFA_DEMO_${key}_KEY`]!, `no ${key.toLowerCase()} key on the screen`);
  const shown = (command: string) => new RegExp(`^ {4}node dist/src/main\\.js (${command} .+?)(?: {2,}\\(|$)`, 'm').exec(out)![1]!.split(' ');
  const [explained, checked, who] = await Promise.all([
    runCliAsync(shown('policy explain'), vars),
    runCliAsync(shown('login check'), vars, 'correct horse battery\n'),
    runCliAsync(['audit', 'who', '--config', 'config/demo.yaml', 'alice'], vars),
  ]);
  t.match(explained, { code: 0, stdout: /decision: allowed by "clinic administration for staff in the clinic"/ }, 'policy explain as shown');
  t.match(checked, { code: 0, stdout: /verdict: the rules tell a right password from a wrong one/ }, "login check as shown, on the demo's portal");
  t.match(out, `"pid":"${who.stdout.trim()}"`, "audit who gives the pseudonym the demo's log names alice by: its keys");
  proc.kill('SIGTERM');
  await once(proc, 'exit');
  const verified = runCli(['audit', 'verify', '--public-key', check![1]!, check![2]!]);
  t.equal(verified.code, 0, verified.stdout + verified.stderr);
  t.match(verified.stdout, /^OK: /m);
});

t.test('a port that is not one (or 0, any free port: the banner would name none) is a usage error, before anything starts', async (t) => {
  for (const name of ['PORT', 'PORTAL_PORT', 'ADMIN_PORT']) {
    for (const value of ['abc', '65536', '0']) {
      const r = runCli(['demo'], { [name]: value });
      t.equal(r.code, 2, `${name}=${value}`);
      t.match(r.stderr, `${name} is a port number`);
    }
  }
});

/** What the demo left in the temporary directory `dir`: its audit trails and their public keys. */
const demoLeftovers = (dir: string): string[] => readdirSync(dir).filter((f) => f.startsWith('mfa-gateway-demo-audit-'));

t.test('a demo that fails to start (a port taken) exits 1 and leaves neither its audit trail nor its key behind', async (t) => {
  const dir = t.testdir();
  for (const taken of ['PORT', 'PORTAL_PORT', 'ADMIN_PORT'] as const) {
    const [port, portalPort, adminPort] = await freePorts(3);
    const env = { PORT: String(port), PORTAL_PORT: String(portalPort), ADMIN_PORT: String(adminPort) };
    const other = createServer().listen(Number(env[taken]), '127.0.0.1');
    await once(other, 'listening');
    // The demo's temporary directory, and nothing else's (tsx keeps its cache there too).
    const tmp = mkdtempSync(join(dir, `${taken}-`));
    const r = await runCliAsync(['demo'], { ...env, TMPDIR: tmp });
    other.close();
    t.equal(r.code, 1, `${taken} taken`);
    t.match(r.stderr, 'EADDRINUSE', `${taken} taken`);
    // Each port named as the demo's user set it: the variable, not the config option it sets.
    t.match(r.stderr, `mfa-gateway: ${taken} ${env[taken]}: address already in use (EADDRINUSE, 127.0.0.1:${env[taken]}): another process listens there; stop it, or set another ${taken}\n`);
    t.notMatch(r.stderr, /server\.port|admin\.port/);
    t.same(demoLeftovers(tmp), [], `${taken} taken: nothing left behind`);
  }
});

t.test('the keys and their public key are written beside the trail only as new files: never through a link put there first', async (t) => {
  const dir = t.testdir();
  const runs = ['.env', '.public-key.pem'].map(async (suffix) => {
    const [port, portalPort, adminPort] = await freePorts(3);
    const tmp = mkdtempSync(join(dir, `tmp${suffix}-`));
    // Another user's file, which they can read, and a link to it where the demo writes.
    const target = join(dir, `target${suffix}`);
    writeFileSync(target, '');
    const proc = spawn(process.execPath, [TS_LOADER, PLANT_LINK, 'src/main.ts', 'demo'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PORT: String(port), PORTAL_PORT: String(portalPort), ADMIN_PORT: String(adminPort), PLANT_TARGET: target, PLANT_SUFFIX: suffix, TMPDIR: tmp },
      timeout: 60_000,
    });
    let err = '';
    proc.stdout.resume();
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const [code] = (await once(proc, 'close')) as [number | null];
    t.equal(code, 1, `a link at DIR${suffix}: the demo does not start`);
    t.match(err, new RegExp(`EEXIST.*mfa-gateway-demo-audit-\\w+\\${suffix}`), `a link at DIR${suffix}: the path is named`);
    t.equal(readFileSync(target, 'utf8'), '', `a link at DIR${suffix}: nothing written through it`);
    t.same(demoLeftovers(tmp).map((f) => f.endsWith(suffix)), [true], `a link at DIR${suffix}: the link, not the demo's, left as it was; the rest removed`);
  });
  await Promise.all(runs);
});

t.test('a SIGTERM or SIGINT at any point of the start stops the demo cleanly: exit 0, nothing left listening', async (t) => {
  // The process signals itself as its demo portal begins to listen (listen:1), as the gateway takes its audit lock,
  // and as the gateway's port begins to listen (listen:2), once started.
  const dir = t.testdir();
  for (const [at, signal, starting] of [['listen:1', 'SIGINT', true], ['listen:1', 'SIGTERM', true], ['lock', 'SIGTERM', true], ['listen:2', 'SIGTERM', false]] as const) {
    const [port, portalPort, adminPort] = await freePorts(3);
    const tmp = mkdtempSync(join(dir, `${at}-${signal}-`));
    // Without the NODE_OPTIONS the test runner gives every child process: the module they preload handles SIGTERM and
    // SIGINT itself, and only a moment later kills a process that has no handler of its own by then, where a demo run
    // by hand is killed at once.
    const proc = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, TS_LOADER, SIGNAL_SELF, 'src/main.ts', 'demo'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PORT: String(port), PORTAL_PORT: String(portalPort), ADMIN_PORT: String(adminPort), SIGNAL_SELF: signal, SIGNAL_SELF_AT: at, TMPDIR: tmp },
    });
    t.teardown(() => proc.kill('SIGKILL'));
    let out = '';
    let err = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const [code, killedBy] = (await once(proc, 'close')) as [number | null, string | null];
    t.same({ code, signal: killedBy }, { code: 0, signal: null }, `${signal} at ${at}: exits 0`);
    if (starting) t.match(out, `"signal":"${signal}","msg":"stopped while starting"`, `${signal} at ${at}: the start given up`);
    t.notMatch(err, /\n\s+at /, `${signal} at ${at}: no stack trace`);
    // A trail the banner named is kept, to be checked after the demo as it says; one nobody was told of is removed.
    t.equal(demoLeftovers(tmp).length, starting ? 0 : 3, `${signal} at ${at}: ${starting ? 'no audit trail left behind' : 'the audit trail, its key and the command line\'s variables kept'}`);
    for (const p of [port, portalPort, adminPort]) {
      const refused = await new Promise<boolean>((resolve) => connect(p!, '127.0.0.1').once('connect', function (this: import('node:net').Socket) { this.destroy(); resolve(false); }).once('error', () => resolve(true)));
      t.ok(refused, `${signal} at ${at}: nothing listens on ${p}`);
    }
  }
});
