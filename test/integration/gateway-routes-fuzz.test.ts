// The gateway's own routes (everything under its prefix) and the login intercept, sent malformed input in each state of
// a sign-in: wrong methods and content types, odd bodies and fields, odd query strings and paths, broken CSRF tokens,
// WebAuthn answers with wrong types, broken framing. Every answer is a 4xx (or an ordinary answer where the input is
// acceptable): never a 5xx, a stack trace, the input echoed unescaped, or a request of the gateway's own at the portal;
// and the gateway still answers its health check after. Nothing is lost either: a refused request costs no try and
// ends no sign-in or session, a code checked costs one try and says so, and after each batch of cases the person
// finishes with the right input (the sign-in, the enrolment, the recovery codes, a step-up, a portal page); a test at
// the limits as shipped says, route by route, which malformed input costs a try (none refused as an error). Cases are
// drawn from a fixed seed (FUZZ_SEED picks another).
import t from 'tap';
import fc from 'fast-check';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { COOKIE } from '../../src/http/cookies.js';
import { ATTEMPT_KINDS, SETUP_TRIES, type AttemptKind } from '../../src/services/ceremony.js';
import { keys } from '../../src/stores/keys.js';
import { inputValue, rawRequest, type Browser } from '../helpers/browser.js';
import { SoftAuthenticator } from '../helpers/soft-authenticator.js';
import { ALICE, BOB, enrol, jsonCall, passkeyCsrf, signUpAndEnrol, startStack, submitPassword, totpAt, totpEnrolmentForm, type Stack } from '../helpers/stack.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20_260_517);
const P = '/_mfa';
const ORIGIN = 'http://localhost';
const CASES_PER_ROUTE = 4;

type Kind = 'page' | 'form' | 'json' | 'login' | 'forward-auth';
interface Route {
  method: 'GET' | 'POST';
  path: string;
  kind: Kind;
  /** The fields it reads. */
  fields: readonly string[];
}

const get = (path: string, fields: string[] = []): Route => ({ method: 'GET', path: `${P}/${path}`, kind: 'page', fields });
const form = (path: string, fields: string[]): Route => ({ method: 'POST', path: `${P}/${path}`, kind: 'form', fields: ['csrf', ...fields] });
const json = (path: string, fields: string[] = []): Route => ({ method: 'POST', path: `${P}/${path}`, kind: 'json', fields });
// From src/http/gateway-routes.ts, sign-in-routes.ts, security-routes.ts and forward-auth.ts; the test checks below
// that the app has no other route under the prefix.
const ROUTES: Route[] = [
  get('assets/gateway.css'),
  get('assets/gateway.js'),
  get('assets/webauthn-browser.js'),
  get('health/live'),
  get('health/ready'),
  get('jwks.json'),
  get('admin/report', ['days']),
  get('continue'),
  form('more-time', ['back', 'code']),
  get('proof'),
  form('enrol/proof/send', []),
  form('enrol/proof', ['code']),
  get('enrol'),
  get('enrol/totp'),
  form('enrol/totp', ['code']),
  json('enrol/passkey/options'),
  json('enrol/passkey', ['credential', 'name']),
  get('recovery-codes'),
  form('recovery-codes', ['saved']),
  get('verify'),
  form('verify', ['code']),
  json('verify/passkey/options'),
  json('verify/passkey', ['credential']),
  get('recovery'),
  form('recovery', ['code']),
  get('step-up', ['to', 'factors']),
  form('step-up', ['code', 'to', 'factors']),
  json('step-up/passkey/options', ['only']),
  json('step-up/passkey', ['credential', 'to']),
  get('logout'),
  form('logout', []),
  get('security', ['notice']),
  get('security/remove', ['factor']),
  form('security/rename', ['factor', 'name']),
  form('security/remove', ['factor']),
  form('security/sign-out-others', []),
  get('security/recovery-codes', ['replaces']),
  form('security/recovery-codes', ['replaces']),
  form('security/recovery-codes/saved', ['saved']),
  get('security/totp'),
  form('security/totp', ['code', 'name']),
  get('security/passkey'),
  json('security/passkey/options'),
  json('security/passkey', ['credential', 'name']),
  { method: 'GET', path: `${P}/forward-auth`, kind: 'forward-auth', fields: ['redirect'] },
  { method: 'POST', path: '/login', kind: 'login', fields: ['csrf', 'username', 'password'] },
];

/** A browser in one state of a sign-in, with what its pages gave it. */
interface State {
  b: Browser;
  csrf: string;
  /** A WebAuthn answer the state's passkey route would take, as a base for mutations. */
  credential?: Record<string, unknown>;
  /** Who is signing in or signed in, and what they have to finish with: the invitation code, the app's secret. */
  person?: { pid: string; invite?: string; totp?: string };
  /** Why the sign-in or session may have ended in the batch (too many wrong codes, a sign-out): no loss then. */
  ended?: string;
}
type StateName = 'signed-out' | 'junk-cookies' | 'proof' | 'enrol' | 'acknowledge' | 'verify' | 'signed-in' | 'signed-in-long-ago';
const STATES: StateName[] = ['signed-out', 'junk-cookies', 'proof', 'enrol', 'acknowledge', 'verify', 'signed-in', 'signed-in-long-ago'];
// A state is made afresh after this many requests: one that a case used up (a login ended by wrong codes, a session
// signed out) would leave the rest answering only "expired". The recovery codes' step is only left by its own form,
// and takes a whole first enrolment to reach, the slowest to make.
const BATCH: Record<StateName, number> = { 'signed-out': 10, 'junk-cookies': 10, proof: 10, enrol: 10, acknowledge: 30, verify: 10, 'signed-in': 10, 'signed-in-long-ago': 10 };

/** mulberry32: small, seeded, good enough to pick cases. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

class Gen {
  readonly next: () => number;
  private readonly texts: string[];
  private readonly values: unknown[];

  constructor(seed: number) {
    this.next = random(seed);
    // Any code point, lone surrogates and control characters among them; and any JSON value.
    this.texts = fc.sample(fc.string({ unit: 'binary', maxLength: 30 }), { seed, numRuns: 300 });
    this.values = fc.sample(fc.jsonValue({ maxDepth: 3 }), { seed: seed + 1, numRuns: 300 });
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }

  /** A text value of a form field or JSON member: odd, huge, or carrying the case's marker. */
  text(marker: string): string {
    return this.pick<() => string>([
      () => '',
      () => marker,
      () => `123456${marker}`,
      () => this.pick(this.texts),
      () => this.pick(this.texts) + marker,
      () => '\u0000\u0001\u001f\u007f',
      () => '\ud800\udfff\udc00',
      () => '%00%zz%C0%AE',
      () => '../../..',
      () => '__proto__',
      () => 'x'.repeat(this.pick([100, 5_000, 20_000])),
      () => '\u202e\ufeff\u200b',
      () => '/records\r\nX-Injected: 1',
      () => '//evil.example/x',
      () => 'https://evil.example/',
      () => 'yes',
      () => 'totp,webauthn,device-bound-passkey',
    ])();
  }

  /** A JSON member's value: mostly of the wrong type. */
  value(marker: string): unknown {
    return this.pick<() => unknown>([
      () => this.text(marker),
      () => this.pick(this.values),
      () => [this.text(marker), this.text(marker)],
      () => ({ x: 1, [marker]: marker }),
      () => 7,
      () => null,
      () => true,
      () => nested(this.pick([10, 1_000])),
    ])();
  }
}

/** `[[[ … ]]]` n deep, as JSON text (too deep for JSON.stringify). */
const deepJson = (n: number) => `${'['.repeat(n)}"deep"${']'.repeat(n)}`;

/** `[[[ … ]]]` n deep. */
function nested(n: number): unknown {
  let v: unknown = 'deep';
  for (let i = 0; i < n; i++) v = [v];
  return v;
}

/** Every byte of the text's UTF-8 percent-encoded (encodeURIComponent refuses a lone surrogate). */
const percentEncoded = (s: string) => [...Buffer.from(s)].map((x) => `%${x.toString(16).padStart(2, '0')}`).join('');
const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64url');

/** A WebAuthn answer with one or two members replaced or left out. */
function mutateCredential(g: Gen, base: Record<string, unknown> | undefined, marker: string): unknown {
  if (!base || g.chance(0.1)) return g.value(marker);
  const c = structuredClone(base) as Record<string, any>;
  const paths = [
    ['id'],
    ['rawId'],
    ['type'],
    ['response'],
    ['response', 'clientDataJSON'],
    ['response', 'attestationObject'],
    ['response', 'authenticatorData'],
    ['response', 'signature'],
    ['response', 'userHandle'],
    ['response', 'transports'],
    ['response', 'publicKey'],
    ['clientExtensionResults'],
    ['authenticatorAttachment'],
  ];
  for (let n = 1 + g.int(2); n > 0; n--) {
    const path = g.pick(paths);
    const parent = path.length === 1 ? c : c[path[0]!];
    if (typeof parent !== 'object' || parent === null) continue;
    const key = path[path.length - 1]!;
    const clientData = () => {
      // Another mutation may have made it something else already.
      const data = (() => {
        try {
          return Object(JSON.parse(Buffer.from(String(c.response?.clientDataJSON), 'base64url').toString()));
        } catch {
          return {};
        }
      })();
      data[g.pick(['type', 'challenge', 'origin', 'crossOrigin', 'topOrigin', 'tokenBinding'])] = g.value(marker);
      return b64(JSON.stringify(data));
    };
    const replacement = g.pick<() => unknown>([
      () => undefined,
      () => g.value(marker),
      () => 'not base64url!*',
      () => b64('not json {'),
      () => b64(`\ufeff${Buffer.from(String(parent[key] ?? ''), 'base64url').toString()}`),
      () => b64(deepJson(5_000)),
      () => 'A'.repeat(g.pick([1_500, 5_000, 20_000])),
      () => b64(Buffer.alloc(g.pick([0, 1, 37, 300]), g.int(256))),
      clientData,
    ])();
    if (replacement === undefined) delete parent[key];
    else parent[key] = replacement;
  }
  return c;
}

interface Case {
  label: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Buffer;
  /** Marks the input: found back unescaped in an answer, the input was echoed. */
  marker: string;
  /** The answer was asked for as JSON: a refusal then says its code and generic message only. */
  asJson: boolean;
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'];
const ODD_QUERIES = ['?%00', '?%zz', '?%C0%AE%C0%AE', '?to=%ff%fe', '?to=%zz', '?to=//evil.example', '?to=/records%0d%0aX:1', '?factors=%C0%AE', '?factors[]=totp', '?days=1e2', '?days=1&days=2', '?only[]=x', '?notice=done&notice=done', '?time=more&time=same', '?factor=', '?redirect=true&redirect=true', '?__proto__[x]=1', '?a=' + 'b'.repeat(3000)];
const ODD_PATHS = (path: string) => [`${path}/`, path.replace(P, `${P}/`), `${path}%00`, `${path}%zz`, `${path};x=1`, path.toUpperCase(), path.replace(P, `${P}/.`), `${path}/..`, path.replace(P, `${P}%2f`), `${path}%C0%AE`];

function makeCase(g: Gen, route: Route, state: State, n: number): Case {
  const marker = `<zq${n}q"'>`;
  const headers: Record<string, string> = {};
  const label: string[] = [];
  let method = route.method as string;
  let path = route.path;
  if (g.chance(0.15)) {
    method = g.pick(METHODS);
    label.push(`method ${method}`);
  }
  if (g.chance(0.1)) {
    path = g.pick(ODD_PATHS(path));
    label.push(`path ${path}`);
  }
  if (g.chance(0.3)) {
    const q = g.pick(ODD_QUERIES);
    path += q;
    label.push(`query ${q.slice(0, 40)}`);
  }
  // The route's own query fields, with odd values.
  if (route.method === 'GET' && route.fields.length && g.chance(0.5)) {
    const name = g.pick(route.fields);
    path += `${path.includes('?') ? '&' : '?'}${name}=${percentEncoded(g.text(marker))}`;
    label.push(`query field ${name}`);
  }
  const asJson = g.chance(0.5);
  headers.accept = asJson ? 'application/json' : g.pick(['text/html', '*/*', 'TEXT/HTML,application/xhtml+xml', 'image/avif']);
  if (g.chance(0.85)) headers['sec-fetch-site'] = 'same-origin';
  else if (g.chance(0.3)) headers['sec-fetch-site'] = g.pick(['cross-site', 'same-site', 'none', marker]);
  if (g.chance(0.1)) headers.origin = g.pick(['null', 'http://evil.example', marker, '%zz']);
  if (g.chance(0.2)) headers['accept-language'] = g.pick(['__proto__', 'constructor', 'toString', '*', 'ar;q=abc', 'he-IL-u-nu-latn, en;q=0', ';;;,,,', 'x'.repeat(5_000), marker, 'en;q=0, *;q=0']);
  if (g.chance(0.05)) headers.host = g.pick(['evil.example', '', '[::1]:1', '127.0.0.1:99999', marker.replace(/\W/g, '')]);
  // The gateway's cookies again after the browser's: twice, or junk.
  if (g.chance(0.15)) headers.cookie = g.pick(Object.values(COOKIE)) + g.pick(['=', '=%zz', `=${'x'.repeat(5_000)}`, '="quoted"', `=${state.b.cookies.get(COOKIE.session) ?? 'x'}`]);

  // The CSRF token: missing, wrong, right, twice, in the header.
  const csrfChoice = g.pick(['none', 'wrong', 'right', 'right', 'right', 'twice', 'header', 'header-twice', 'odd']);
  const csrfValue: unknown = { none: undefined, wrong: 'x'.repeat(state.csrf.length || 10), right: state.csrf, twice: [state.csrf, state.csrf], header: undefined, 'header-twice': undefined, odd: g.value(marker) }[csrfChoice];
  if (csrfChoice === 'header') headers['x-csrf-token'] = state.csrf || 'none';
  if (csrfChoice === 'header-twice') headers['x-csrf-token'] = `${state.csrf}, ${state.csrf}`;
  label.push(`csrf ${csrfChoice}`);

  if (route.kind === 'forward-auth') {
    headers['x-forwarded-uri'] = g.pick(['/records', '/_mfa/verify', '/login', '/%zz', '/%00', '/a/../b', g.text(marker).replace(/[^\x21-\x7e]/g, '')]);
    headers['x-forwarded-host'] = g.pick(['127.0.0.1', 'localhost', 'evil.example', g.text(marker).replace(/[^\x21-\x7e]/g, '')]);
    headers['x-forwarded-method'] = g.pick(['GET', 'POST', 'POST, GET', '', 'x'.repeat(30), g.text(marker).replace(/[^\x21-\x7e]/g, '')]);
    if (g.chance(0.2)) headers['x-original-url'] = '/admin';
    label.push(`forwarded ${headers['x-forwarded-uri']} ${headers['x-forwarded-host']} ${headers['x-forwarded-method']}`);
  }

  // The fields: the route's, each with a value of the wrong sort, sometimes repeated; and the CSRF token as chosen.
  const fields: [string, unknown][] = [];
  if (csrfValue !== undefined) fields.push(['csrf', csrfValue]);
  for (const name of route.fields.filter((f) => f !== 'csrf')) {
    if (g.chance(0.15)) continue;
    if (name === 'credential') fields.push([name, mutateCredential(g, state.credential, marker)]);
    else if (route.kind === 'login' && name === 'username' && g.chance(0.5)) fields.push([name, g.pick([ALICE.username, BOB.username])]);
    else fields.push([name, g.chance(0.7) ? g.text(marker) : g.value(marker)]);
  }
  if (g.chance(0.2)) fields.push([g.pick(['code[]', 'csrf[]', '__proto__', 'constructor', marker]), g.text(marker)]);

  const withBody = method !== 'GET' && method !== 'HEAD';
  if (withBody) {
    const natural = route.kind === 'json' ? 'json' : 'form';
    const encoding = g.chance(0.6) ? natural : g.pick(['json', 'form', 'json-odd', 'multipart', 'text', 'none', 'octet', 'odd-type', 'huge', 'broken-json', 'empty']);
    label.push(`body ${encoding}`);
    switch (encoding) {
      case 'json':
        headers['content-type'] = g.pick(['application/json', 'application/json; charset=utf-8', 'APPLICATION/JSON']);
        return finish(JSON.stringify(Object.fromEntries(fields)));
      case 'json-odd':
        headers['content-type'] = 'application/json';
        return finish(g.pick([JSON.stringify(fields), '"text"', '7', 'null', 'true', '[]', deepJson(5_000), '{"__proto__":{"csrf":"x"}}', '{"constructor":{"prototype":{"x":1}}}', `{"csrf":"a","csrf":"b"}`]));
      case 'form':
        headers['content-type'] = g.pick(['application/x-www-form-urlencoded', 'application/x-www-form-urlencoded; charset=iso-8859-1']);
        return finish(formBody(fields, g));
      case 'multipart':
        headers['content-type'] = 'multipart/form-data; boundary=zz';
        return finish(fields.map(([k, v]) => `--zz\r\ncontent-disposition: form-data; name="${k}"\r\n\r\n${String(v)}\r\n`).join('') + '--zz--\r\n');
      case 'text':
        headers['content-type'] = 'text/plain';
        return finish(formBody(fields, g));
      case 'none':
        return finish(formBody(fields, g));
      case 'octet':
        headers['content-type'] = 'application/octet-stream';
        return finish(Buffer.from(formBody(fields, g)));
      case 'odd-type':
        headers['content-type'] = g.pick(['application/json; charset=utf-16', 'x', ';', 'application/x-www-form-urlencoded, application/json', marker.replace(/"/g, '')]);
        return finish(JSON.stringify(Object.fromEntries(fields)));
      case 'huge':
        headers['content-type'] = natural === 'json' ? 'application/json' : 'application/x-www-form-urlencoded';
        return finish(natural === 'json' ? JSON.stringify({ name: 'x'.repeat(200_000) }) : `code=${'1'.repeat(200_000)}`);
      case 'broken-json':
        headers['content-type'] = 'application/json';
        return finish(g.pick(['{', '{"csrf":', '\ud800', '{"a":1}{"b":2}', '\u0000']));
      default:
        headers['content-type'] = natural === 'json' ? 'application/json' : 'application/x-www-form-urlencoded';
        return finish('');
    }
  }
  return finish(undefined);

  function finish(body: string | Buffer | undefined): Case {
    return { label: `${method} ${route.path}: ${label.join(', ')}`, method, path, headers, ...(body === undefined ? {} : { body }), marker, asJson };
  }
}

/** Fields urlencoded; an array is the field repeated, sometimes as `name[]`. */
function formBody(fields: [string, unknown][], g: Gen): string {
  const out = new URLSearchParams();
  for (const [k, v] of fields) {
    if (Array.isArray(v)) for (const x of v) out.append(g.chance(0.5) ? `${k}[]` : k, String(x));
    else out.append(k, typeof v === 'object' ? JSON.stringify(v) : String(v));
  }
  return out.toString();
}

/** The paths of fastify's route tree (printRoutes: a line per node, its parent's path before it, 4 columns a level). */
function routePaths(tree: string): string[] {
  const parents: string[] = [];
  const paths: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^(.*?)(?:├── |└── )(\S+) \(/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    parents[depth] = (depth ? parents[depth - 1]! : '') + m[2];
    paths.push(parents[depth]!);
  }
  return paths;
}

type Cookies = { pending?: string | undefined; session?: string | undefined };
/**
 * What a person has to lose: the sign-in or session a browser holds, the tries and set-up tries its ceremony used, the
 * user's failures.
 */
interface Standing {
  alive: boolean;
  /** The store keys of the ceremony's counts: the same before and after a request that ends it. */
  keys?: { tries: string; setUp: string };
  tries: number;
  setUpTries: number;
  failures: Record<AttemptKind, number>;
}

/** The standing of the sign-in or session behind a browser's gateway cookies (read without touching it). */
async function standing(s: Stack, pid: string, cookies: Cookies, was?: Standing): Promise<Standing> {
  const gw = s.app.gateway;
  const pending = (await gw.pending.stage(cookies.pending)) !== null;
  const active = await gw.sessions.authenticate(cookies.session, { seen: false });
  const counts =
    was?.keys ??
    (pending ? { tries: keys.pendingAttempts(cookies.pending!), setUp: keys.pendingSetupTries(cookies.pending!) } : active ? { tries: keys.stepUpAttempts(active.sid), setUp: keys.sessionSetupTries(active.sid) } : undefined);
  const failures = {} as Record<AttemptKind, number>;
  for (const kind of ATTEMPT_KINDS) failures[kind] = Number(await s.kv.get(keys.factorFailures(pid, kind)));
  const count = async (key: string | undefined) => (key ? Number(await s.kv.get(key)) : 0);
  return { alive: pending || active !== null, ...(counts ? { keys: counts } : {}), tries: await count(counts?.tries), setUpTries: await count(counts?.setUp), failures };
}

/** What is wrong with an answer, if anything. */
function faults(c: Case, status: number, headers: Record<string, string | string[] | undefined>, body: string, portal: { method: string; url: string }[]): string[] {
  const problems: string[] = [];
  if (status >= 500) problems.push(`status ${status}`);
  if (/\n\s+at .+:\d+:\d+|node:internal|\.ts:\d+|\/src\//.test(body)) problems.push('a stack trace in the body');
  const core = c.marker.slice(1, -3);
  // HTML escapes what it shows; the marker as sent (its < and quotes) never comes back.
  if (body.includes(c.marker) || body.includes(`<${core}`)) problems.push('the input echoed unescaped');
  for (const [name, value] of Object.entries(headers)) if (String(value).includes(c.marker) || String(value).includes(`<${core}`)) problems.push(`the input echoed unescaped in ${name}`);
  const type = String(headers['content-type'] ?? '');
  if (c.asJson && status >= 400 && type.startsWith('application/json') && c.method !== 'HEAD') {
    if (body.includes(core)) problems.push('the input echoed in a JSON refusal');
    const answer = JSON.parse(body) as Record<string, unknown>;
    if (Object.keys(answer).some((k) => !['error', 'message', 'requestId', 'attemptsLeft'].includes(k))) problems.push(`a JSON refusal with other members: ${Object.keys(answer)}`);
  }
  // The gateway's own routes send nothing to the portal but the portal's logout as the gateway's ends a session. A
  // request outside the prefix (the login, in any spelling) goes on to the portal unless the gateway refused it.
  const gatewayRefusal = status >= 400 && /"error":"GW_ERR_/.test(body);
  for (const r of portal) {
    const proxied = !c.path.toLowerCase().startsWith(P) && !gatewayRefusal;
    const logout = c.method === 'POST' && c.path.startsWith(`${P}/logout`) && r.method === 'GET' && r.url === '/logout';
    if (!proxied && !logout) problems.push(`the portal received ${r.method} ${r.url.slice(0, 60)}`);
  }
  return problems;
}

t.test("malformed input to the gateway's routes and the login: a 4xx, never a 5xx, a trace, the input or the portal", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-fuzz-'));
  writeFileSync(join(dir, 'groups.yaml'), 'alice: [staff]\n');
  const s = await startStack({
    newSessionAtLogin: true,
    patch: (raw) => {
      raw.enrolment = { proof: 'invite', inviteDays: 30 };
      raw.server.trustedProxies = ['127.0.0.1'];
      raw.forwardAuth = { enabled: true, sessionCookies: ['PORTALSESSID'] };
      raw.groups = { file: join(dir, 'groups.yaml') };
      raw.admin.report = { groups: ['staff'] };
      // Wrong codes by the hundred from one address and account: waits would answer most cases before their route is read.
      raw.limits = {
        password: { perAccount: { freeAttempts: 100_000 }, perAddress: { freeAttempts: 100_000 }, addressRate: { perMinute: 100_000, burst: 100_000 }, globalRate: { perMinute: 100_000, burst: 100_000 }, refusalDelayMs: 0 },
        secondFactor: { freeAttempts: 100_000 },
        enrolmentCode: { freeAttempts: 100_000 },
        recoveryCode: { freeAttempts: 100_000 },
        newBrowsers: { perMinute: 100_000, burst: 100_000 },
      };
    },
  });
  t.teardown(s.close);
  const gw = s.app.gateway;

  // Every route of the gateway's own is fuzzed: one added later must be added to ROUTES too.
  const listed = new Set(ROUTES.filter((r) => r.path.startsWith(P)).map((r) => r.path));
  const routes = routePaths(s.app.printRoutes({ commonPrefix: false })).filter((r) => r.startsWith(`${P}/`));
  t.ok(routes.length > 30, 'the route table is read');
  t.same(routes.filter((r) => !listed.has(r)), [], "every gateway route is in the test's list");

  // Alice: enrolled with an authenticator app and a passkey; bob: starts over at each state (his factors reset).
  const auth = new SoftAuthenticator({ origin: ORIGIN });
  const proofFor = async (username: string, password: string) => {
    const pid = gw.pidOf(username)!;
    await gw.admin.resetFactors(pid, username, false);
    const { code } = await gw.enrolment.issueInvite(pid);
    const b = s.browser();
    await submitPassword(b, username, password);
    return { b, code, csrf: inputValue((await b.get(`${P}/proof`)).body, 'csrf') };
  };
  const toEnrol = async (username: string, password: string) => {
    const { b, code, csrf } = await proofFor(username, password);
    const proved = await b.post(`${P}/enrol/proof`, { csrf, code });
    if (proved.location !== `${P}/enrol`) throw new Error(`proof answered ${proved.status}`);
    return { b, csrf };
  };
  let secret = '';
  {
    const { b } = await toEnrol(ALICE.username, ALICE.password);
    secret = (await enrol(s, b)).secret;
    const csrf = passkeyCsrf((await b.get(`${P}/security/passkey`)).body);
    const options = await jsonCall(b, `${P}/security/passkey/options`, csrf);
    const added = await jsonCall(b, `${P}/security/passkey`, csrf, { credential: auth.register(options.json), name: 'Key' });
    t.equal(added.status, 200, 'alice has a passkey too');
  }
  const alice = { pid: gw.pidOf(ALICE.username)!, totp: secret };
  const bob = gw.pidOf(BOB.username)!;
  const signedIn = async (): Promise<State> => {
    s.clock.advance(30_000);
    const b = s.browser();
    await submitPassword(b, ALICE.username, ALICE.password);
    const csrf = inputValue((await b.get(`${P}/verify`)).body, 'csrf');
    const done = await b.post(`${P}/verify`, { csrf, code: await totpAt(secret, s.clock.now()) });
    if (done.status !== 303) throw new Error(`sign-in answered ${done.status}`);
    const session = passkeyCsrf((await b.get(`${P}/security/passkey`)).body);
    const options = await jsonCall(b, `${P}/security/passkey/options`, session);
    return { b, csrf: session, credential: new SoftAuthenticator({ origin: ORIGIN }).register(options.json) as unknown as Record<string, unknown>, person: alice };
  };
  const make: Record<StateName, () => Promise<State>> = {
    'signed-out': async () => ({ b: s.browser(), csrf: 'a'.repeat(43) }),
    'junk-cookies': async () => {
      const b = s.browser();
      for (const name of Object.values(COOKIE)) b.cookies.set(name, `%zz${'x'.repeat(50)}.%00`);
      return { b, csrf: 'a'.repeat(43) };
    },
    proof: async () => {
      const { b, code, csrf } = await proofFor(BOB.username, BOB.password);
      return { b, csrf, person: { pid: bob, invite: code } };
    },
    enrol: async () => {
      const { b, csrf } = await toEnrol(BOB.username, BOB.password);
      const options = await jsonCall(b, `${P}/enrol/passkey/options`, csrf);
      return { b, csrf, credential: new SoftAuthenticator({ origin: ORIGIN }).register(options.json) as unknown as Record<string, unknown>, person: { pid: bob } };
    },
    acknowledge: async () => {
      const { b } = await toEnrol(BOB.username, BOB.password);
      const { secret: bobs, csrf } = await totpEnrolmentForm(s, b);
      const confirmed = await b.post(`${P}/enrol/totp`, { csrf, code: await totpAt(bobs, s.clock.now()) });
      if (confirmed.location !== `${P}/recovery-codes`) throw new Error(`enrolment answered ${confirmed.status}`);
      return { b, csrf, person: { pid: bob, totp: bobs } };
    },
    verify: async () => {
      // A sign-in first: its second factor clears the failures the cases before counted.
      await signedIn();
      const b = s.browser();
      await submitPassword(b, ALICE.username, ALICE.password);
      const csrf = passkeyCsrf((await b.get(`${P}/verify`)).body);
      const options = await jsonCall(b, `${P}/verify/passkey/options`, csrf);
      return { b, csrf, credential: auth.clone().authenticate(options.json) as unknown as Record<string, unknown>, person: alice };
    },
    'signed-in': signedIn,
    'signed-in-long-ago': async () => {
      const state = await signedIn();
      s.clock.advance(6 * 60_000);
      return state;
    },
  };

  const max = s.config.mfa.maxAttemptsPerLogin;
  /** What a case cost the person that it should not have: a try not said, more than one, a sign-in or session lost. */
  const losses = async (state: State, c: Case, cookies: Cookies, was: Standing, status: number, body: string, refused: string | undefined): Promise<string[]> => {
    const now = await standing(s, state.person!.pid, cookies, was);
    const problems: string[] = [];
    const tried = now.tries - was.tries;
    const setUp = now.setUpTries - was.setUpTries;
    if (setUp > 1) problems.push(`${setUp} set-up tries counted`);
    // An app's code being set up is answered with the set-up tries left (a passkey's registration says no count).
    if (setUp && !refused && c.path.split('?', 1)[0]!.endsWith('/totp') && !body.includes(`Attempts left: ${SETUP_TRIES - now.setUpTries}.`)) problems.push(`a set-up try counted without saying so`);
    const failed = ATTEMPT_KINDS.filter((kind) => now.failures[kind] > was.failures[kind]);
    if (tried > 1) problems.push(`${tried} tries counted`);
    for (const kind of failed) if (now.failures[kind] - was.failures[kind] > 1) problems.push(`${now.failures[kind] - was.failures[kind]} ${kind} failures counted`);
    // A signature cannot be guessed: only a clone's answer counts against the user, and none here is one.
    if (failed.includes('webauthn')) problems.push('a passkey answer counted against the user');
    if (refused === 'GW_ERR_TOO_MANY_ATTEMPTS') state.ended = 'too many wrong codes';
    else if (refused && (tried > 0 || setUp > 0 || failed.length)) problems.push(`refused (${refused}), yet counted as a try`);
    else if (tried > 0 || failed.length) {
      // A code or passkey answer was checked: the answer says it did not work, and how many tries are left.
      const left = max - now.tries;
      if (status !== 400 || !(body.includes(`Attempts left: ${left}.`) || body.includes(`"attemptsLeft":${left}`))) problems.push(`a try counted without saying so (${left} left)`);
      if (tried !== 1) problems.push(`a ${failed.join(', ')} failure counted without a try`);
    }
    if (c.method === 'POST' && c.path.split('?', 1)[0] === `${P}/logout` && status === 200) state.ended ??= 'signed out';
    if (was.alive && !now.alive && !state.ended) {
      // Only by going on: the sign-in finished, or the session moved to a new id (a step-up).
      const onward = state.b.cookies.get(COOKIE.session);
      if (onward === cookies.session || !(await gw.sessions.authenticate(onward, { seen: false }))) problems.push('the sign-in or session was lost');
    }
    return problems;
  };
  /** The person goes on from where the browser is, with the right input, to a step-up and a portal page; what failed. */
  const finish = async (state: State): Promise<string | null> => {
    const { b, person } = state;
    for (let step = 0; b.cookies.has(COOKIE.pending) && step < 4; step++) {
      const next = await b.get(`${P}/continue`);
      const page = next.location?.slice(P.length + 1);
      let answer;
      if (page === 'proof') answer = await b.post(`${P}/enrol/proof`, { csrf: state.csrf, code: person!.invite! });
      else if (page === 'enrol') {
        const form = await totpEnrolmentForm(s, b);
        person!.totp = form.secret;
        answer = await b.post(`${P}/enrol/totp`, { csrf: form.csrf, code: await totpAt(form.secret, s.clock.now()) });
      } else if (page === 'recovery-codes') {
        await b.get(`${P}/recovery-codes`);
        answer = await b.post(`${P}/recovery-codes`, { csrf: state.csrf, saved: 'yes' });
      } else if (page === 'verify') {
        s.clock.advance(30_000);
        answer = await b.post(`${P}/verify`, { csrf: state.csrf, code: await totpAt(person!.totp!, s.clock.now()) });
      } else return `the sign-in was lost (continue answered ${next.status} ${next.location ?? ''})`;
      if (answer.status !== 303) return `${page} with the right input answered ${answer.status}`;
    }
    if (!(await gw.sessions.authenticate(b.cookies.get(COOKIE.session), { seen: false }))) return 'the session was lost';
    if (person!.totp) {
      s.clock.advance(30_000);
      const page = await b.get(`${P}/step-up`);
      const up = await b.post(`${P}/step-up`, { csrf: inputValue(page.body, 'csrf'), code: await totpAt(person!.totp, s.clock.now()) });
      if (up.status !== 200) return `a step-up with the right code answered ${up.status}`;
    }
    const portal = await b.get('/records');
    return portal.status === 200 ? null : `a portal page answered ${portal.status}`;
  };

  const g = new Gen(SEED);
  const failures: string[] = [];
  let n = 0;
  let finished = 0;
  const started = Date.now();
  const send = async (state: State, c: Case) => {
    const before = s.portalRequests.length;
    const logged = s.logs.length;
    const cookies: Cookies = { pending: state.b.cookies.get(COOKIE.pending), session: state.b.cookies.get(COOKIE.session) };
    const was = state.person && (await standing(s, state.person.pid, cookies));
    const cookie = [...state.b.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    try {
      const res = await request(new URL(c.path, s.url), {
        method: c.method as 'GET',
        headers: { ...c.headers, ...(cookie || c.headers.cookie ? { cookie: [cookie, c.headers.cookie].filter(Boolean).join('; ') } : {}) },
        ...(c.body === undefined ? {} : { body: c.body }),
        // The report reads the audit trail in a worker thread, which loads the TypeScript sources afresh here (a second
        // or more on a busy machine): its answer is given longer.
        headersTimeout: c.path.startsWith(`${P}/admin/report`) ? 30_000 : 5_000,
        bodyTimeout: 5_000,
      });
      const body = await res.body.text();
      // The route may have moved the state on (a session stepped up, a sign-in finished): the browser keeps what it was
      // given, and forgets what was cleared.
      for (const line of [res.headers['set-cookie'] ?? []].flat()) {
        const [name, value] = line.split(';', 1)[0]!.split('=') as [string, string];
        if (value) state.b.cookies.set(name, value);
        else state.b.cookies.delete(name);
      }
      const problems = faults(c, res.statusCode, res.headers, body, s.portalRequests.slice(before));
      const refused = s.logs.slice(logged).map((l) => JSON.parse(l)).find((l) => l.msg === 'request refused')?.code;
      if (was) problems.push(...(await losses(state, c, cookies, was, res.statusCode, body, refused)));
      if (problems.length) failures.push(`${c.label}: ${problems.join('; ')} (answer ${res.statusCode} ${body.slice(0, 200)})`);
    } catch (err) {
      failures.push(`${c.label}: no answer (${(err as Error).message})`);
    }
  };
  for (const name of STATES) {
    const cases = ROUTES.flatMap((route) => Array.from({ length: CASES_PER_ROUTE }, () => route));
    for (let i = cases.length - 1; i > 0; i--) {
      const j = g.int(i + 1);
      [cases[i], cases[j]] = [cases[j]!, cases[i]!];
    }
    for (let i = 0; i < cases.length; i += BATCH[name]) {
      const state = await make[name]();
      const first = n;
      for (const route of cases.slice(i, i + BATCH[name])) await send(state, makeCase(g, route, state, n++));
      if (!state.person || state.ended) continue;
      const lost = await finish(state);
      if (lost) failures.push(`${name}, after cases ${first} to ${n - 1}: ${lost}`);
      finished++;
    }
  }
  t.same(failures, [], `${n} cases (seed ${SEED}) in ${Math.round((Date.now() - started) / 1000)} s; ${finished} batches finished with the right input after`);
  t.same(
    s.portalRequests.filter((r) => r.url.toLowerCase().includes('_mfa')),
    [],
    'the portal never received a request for the prefix',
  );
  t.same(
    s.logs.map((l) => JSON.parse(l)).filter((l) => l.level >= 50),
    [],
    'no error was logged',
  );
  t.equal((await request(`${s.url}${P}/health/live`)).statusCode, 200, 'the gateway still answers');
});

t.test('what malformed input costs: refused, no try; a code or passkey answer checked, one, said; the person then goes on', async (t) => {
  // The limits as shipped: refusals that counted would soon make the person wait, or end the sign-in or session.
  const s = await startStack({ patch: (raw) => void (raw.enrolment = { proof: 'invite', inviteDays: 30 }) });
  t.teardown(s.close);
  const gw = s.app.gateway;
  const max = s.config.mfa.maxAttemptsPerLogin;
  const FORM = 'application/x-www-form-urlencoded';
  const JSON_TYPE = 'application/json';
  type Probe = [label: string, path: string, type: string | undefined, body: string, headers?: Record<string, string>];
  const q = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
  /** A form sent wrong in each way that is not its field's value: a refusal that checks nothing. */
  const malformedForm = (path: string, csrf: string, name: string, value: string): Probe[] => [
    ['no CSRF token', path, FORM, q({ [name]: value })],
    ['a wrong CSRF token', path, FORM, q({ csrf: 'x'.repeat(csrf.length), [name]: value })],
    ['sent from another site', path, FORM, q({ csrf, [name]: value }), { 'sec-fetch-site': 'cross-site' }],
    ['as text/plain', path, 'text/plain', q({ csrf, [name]: value })],
    ['as multipart', path, 'multipart/form-data; boundary=zz', ['csrf', name].map((k) => `--zz\r\ncontent-disposition: form-data; name="${k}"\r\n\r\n${k === 'csrf' ? csrf : value}\r\n`).join('') + '--zz--\r\n'],
    ['without a type', path, undefined, q({ csrf, [name]: value })],
    ['as JSON', path, JSON_TYPE, JSON.stringify({ csrf, [name]: value })],
    ['as broken JSON', path, JSON_TYPE, `{"csrf":"${csrf}","${name}":`],
    [`${name} as a JSON array`, path, JSON_TYPE, JSON.stringify({ csrf, [name]: [value] })],
    [`${name} twice`, path, FORM, `${q({ csrf, [name]: value })}&${name}=${value}`],
    [`nothing typed in ${name}`, path, FORM, q({ csrf, [name]: ' ' })],
    ['a body too large', path, FORM, q({ csrf, [name]: '0'.repeat(20_000) })],
  ];
  /** A passkey script's call sent wrong: a refusal that checks nothing. */
  const malformedCall = (path: string, csrf: string, body: object): Probe[] => [
    ['no CSRF token', path, JSON_TYPE, JSON.stringify(body)],
    ['a wrong CSRF token', path, JSON_TYPE, JSON.stringify(body), { 'x-csrf-token': 'x'.repeat(csrf.length) }],
    ['a body that is not an object', path, JSON_TYPE, JSON.stringify([body]), { 'x-csrf-token': csrf }],
    ['broken JSON', path, JSON_TYPE, '{"credential":', { 'x-csrf-token': csrf }],
    ['as text/plain', path, 'text/plain', JSON.stringify(body), { 'x-csrf-token': csrf }],
    ['as a form', path, FORM, q({ csrf, ...Object.fromEntries(Object.entries(body).map(([k, v]) => [k, JSON.stringify(v)])) }), { 'x-csrf-token': csrf }],
  ];
  /**
   * Sends each probe from the browser: each costs `tries` of its sign-in or session (or one of its set-up tries) and a
   * failure of `kind` for the user (none: none), says so when it costs one (but a passkey's registration, which says no
   * count), and leaves the sign-in or session where it was.
   */
  const probe = async (b: Browser, pid: string, probes: Probe[], tries: 0 | 1 | 'set-up' = 0, kind?: AttemptKind) => {
    for (const [label, path, type, body, headers] of probes) {
      const cookies = { pending: b.cookies.get(COOKIE.pending), session: b.cookies.get(COOKIE.session) };
      const was = await standing(s, pid, cookies);
      const res = await b.send('POST', path, body, { accept: type === JSON_TYPE ? JSON_TYPE : 'text/html', ...(type ? { 'content-type': type } : {}), ...headers });
      const now = await standing(s, pid, cookies, was);
      const failed = ATTEMPT_KINDS.filter((k) => now.failures[k] !== was.failures[k]).map((k) => `${k} ${now.failures[k] - was.failures[k]}`);
      const left = tries === 'set-up' ? SETUP_TRIES - now.setUpTries : max - now.tries;
      const said = res.status === 400 && (res.body.includes(`Attempts left: ${left}.`) || res.body.includes(`"attemptsLeft":${left}`));
      const answer = said ? 'a try, said' : res.status >= 400 && res.status < 500 ? 'refused' : res.status;
      const cost = { tries: now.tries - was.tries, setUpTries: now.setUpTries - was.setUpTries, failed, alive: now.alive, answer };
      const sayable = tries === 1 || (tries === 'set-up' && type !== JSON_TYPE);
      t.same(
        cost,
        { tries: tries === 1 ? 1 : 0, setUpTries: tries === 'set-up' ? 1 : 0, failed: kind ? [`${kind} 1`] : [], alive: true, answer: sayable ? 'a try, said' : 'refused' },
        `${path}, ${label}: ${res.status}`,
      );
    }
  };
  const invited = async (user: typeof ALICE) => {
    const pid = gw.pidOf(user.username)!;
    const { code } = await gw.enrolment.issueInvite(pid);
    const b = s.browser();
    await submitPassword(b, user.username, user.password);
    return { b, pid, code, csrf: inputValue((await b.get(`${P}/proof`)).body, 'csrf') };
  };

  // Bob's first sign-in: the enrolment proof, the first factor, the recovery codes.
  const bob = await invited(BOB);
  await probe(bob.b, bob.pid, malformedForm(`${P}/enrol/proof`, bob.csrf, 'code', 'WRONG-CODE-1'));
  await probe(bob.b, bob.pid, [['a wrong code', `${P}/enrol/proof`, FORM, q({ csrf: bob.csrf, code: 'WRONG-CODE-1' })]], 1, 'enrolment-code');
  t.equal((await bob.b.post(`${P}/enrol/proof`, { csrf: bob.csrf, code: bob.code })).location, `${P}/enrol`, 'the right invitation code goes on');
  const { secret: bobs } = await totpEnrolmentForm(s, bob.b);
  await probe(bob.b, bob.pid, malformedForm(`${P}/enrol/totp`, bob.csrf, 'code', '000000'));
  await jsonCall(bob.b, `${P}/enrol/passkey/options`, bob.csrf);
  await probe(bob.b, bob.pid, malformedCall(`${P}/enrol/passkey`, bob.csrf, { credential: { id: 'x' }, name: 'Key' }));
  await probe(bob.b, bob.pid, [['a wrong code', `${P}/enrol/totp`, FORM, q({ csrf: bob.csrf, code: '000000' })]], 1);
  // A registration guesses nothing: its refusal uses no try, only a set-up try (see the README's security page).
  await probe(bob.b, bob.pid, [['a junk passkey answer', `${P}/enrol/passkey`, JSON_TYPE, JSON.stringify({ credential: { id: 'x' } }), { 'x-csrf-token': bob.csrf }]], 'set-up');
  t.equal((await bob.b.post(`${P}/enrol/totp`, { csrf: bob.csrf, code: await totpAt(bobs, s.clock.now()) })).location, `${P}/recovery-codes`, 'the right code enrols the app');
  t.match((await bob.b.get(`${P}/recovery-codes`)).body, /<li>[A-Z2-9-]{19}<\/li>/, 'the recovery codes are shown');
  await probe(bob.b, bob.pid, malformedForm(`${P}/recovery-codes`, bob.csrf, 'saved', 'yes'));
  t.equal((await bob.b.post(`${P}/recovery-codes`, { csrf: bob.csrf, saved: 'yes' })).status, 303, 'confirmed, they go on');
  t.equal((await bob.b.get('/records')).status, 200, 'bob is signed in');

  // Alice, enrolled with an app, a passkey and recovery codes, at a later sign-in's second factor.
  const alice = await invited(ALICE);
  await alice.b.post(`${P}/enrol/proof`, { csrf: alice.csrf, code: alice.code });
  const { secret } = await enrol(s, alice.b);
  const auth = new SoftAuthenticator({ origin: ORIGIN });
  const options = await jsonCall(alice.b, `${P}/security/passkey/options`, passkeyCsrf((await alice.b.get(`${P}/security/passkey`)).body));
  t.equal((await jsonCall(alice.b, `${P}/security/passkey`, passkeyCsrf((await alice.b.get(`${P}/security/passkey`)).body), { credential: auth.register(options.json), name: 'Key' })).status, 200, 'alice adds a passkey');
  const b = s.browser();
  await submitPassword(b, ALICE.username, ALICE.password);
  const csrf = inputValue((await b.get(`${P}/verify`)).body, 'csrf');
  await probe(b, alice.pid, malformedForm(`${P}/verify`, csrf, 'code', '000000'));
  await probe(b, alice.pid, malformedForm(`${P}/recovery`, csrf, 'code', 'AAAA-BBBB-CCCC-DDDD'));
  await jsonCall(b, `${P}/verify/passkey/options`, csrf);
  await probe(b, alice.pid, malformedCall(`${P}/verify/passkey`, csrf, { credential: { id: 'x' } }));
  await probe(b, alice.pid, [['a wrong code', `${P}/verify`, FORM, q({ csrf, code: '000000' })], ['letters for a code', `${P}/verify`, FORM, q({ csrf, code: 'abcdef' })]], 1, 'totp');
  await probe(b, alice.pid, [['a wrong code', `${P}/recovery`, FORM, q({ csrf, code: 'AAAA-BBBB-CCCC-DDDD' })]], 1, 'recovery');
  // A passkey answer that is junk counts in the sign-in only: a signature cannot be guessed.
  await probe(b, alice.pid, [['a junk passkey answer', `${P}/verify/passkey`, JSON_TYPE, JSON.stringify({ credential: { id: 'x' } }), { 'x-csrf-token': csrf }]], 1);
  s.clock.advance(30_000);
  t.equal((await b.post(`${P}/verify`, { csrf, code: await totpAt(secret, s.clock.now()) })).status, 303, 'the right code at the last try signs in');
  t.equal((await b.get('/records')).status, 200, 'alice is signed in');

  // Signed in: the step-up counts the tries of the session, the security page's set-ups its set-up tries.
  const session = inputValue((await b.get(`${P}/step-up`)).body, 'csrf');
  const twice = (field: string) => `${q({ csrf: session, code: '000000' })}&${field}=totp&${field}=webauthn`;
  await probe(b, alice.pid, [...malformedForm(`${P}/step-up`, session, 'code', '000000'), ['the kinds of factor twice', `${P}/step-up`, FORM, twice('factors')], ['the way back twice', `${P}/step-up`, FORM, twice('to')]]);
  await jsonCall(b, `${P}/step-up/passkey/options`, session);
  await probe(b, alice.pid, malformedCall(`${P}/step-up/passkey`, session, { credential: { id: 'x' } }));
  await b.get(`${P}/security/totp`);
  await probe(b, alice.pid, [...malformedForm(`${P}/security/totp`, session, 'code', '000000'), ['the name twice', `${P}/security/totp`, FORM, twice('name')]]);
  await probe(b, alice.pid, [['a wrong code', `${P}/step-up`, FORM, q({ csrf: session, code: '000000' })]], 1, 'totp');
  // A set-up guesses nothing: a set-up try, none of the session's.
  await probe(b, alice.pid, [['a wrong code for a new app', `${P}/security/totp`, FORM, q({ csrf: session, code: '000000' })]], 'set-up');
  await jsonCall(b, `${P}/security/passkey/options`, session);
  await probe(b, alice.pid, [['a junk answer for a new passkey', `${P}/security/passkey`, JSON_TYPE, JSON.stringify({ credential: { id: 'x' } }), { 'x-csrf-token': session }]], 'set-up');
  await probe(b, alice.pid, [['a junk passkey answer', `${P}/step-up/passkey`, JSON_TYPE, JSON.stringify({ credential: { id: 'x' } }), { 'x-csrf-token': session }]], 1);
  s.clock.advance(30_000);
  t.equal((await b.post(`${P}/step-up`, { csrf: session, code: await totpAt(secret, s.clock.now()) })).status, 200, 'the right code steps up');
  t.equal((await b.get('/records')).status, 200, 'the session goes on');
  t.same([...(await gw.limits.attempts.disabledKinds(alice.pid)), ...(await gw.limits.attempts.disabledKinds(bob.pid))], [], 'no kind of factor is disabled for anyone');
});

t.test('broken framing on the gateway routes and the login: a 400, never a hang', async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const host = new URL(s.url).host;
  const framings: [string, string][] = [
    ['content-length: 5', '{"csrf":"x","code":"1"}'],
    ['content-length: 5\r\ncontent-length: 6', 'code=1'],
    ['content-length: -1', 'code=1'],
    ['content-length: 1e3', 'code=1'],
    ['transfer-encoding: chunked', 'zz\r\ncode=1\r\n0\r\n\r\n'],
    ['transfer-encoding: chunked', '6\r\ncode=123456\r\n0\r\n\r\n'],
    ['transfer-encoding: chunked\r\ncontent-length: 6', '6\r\ncode=1\r\n0\r\n\r\n'],
    ['transfer-encoding: gzip, chunked', '6\r\ncode=1\r\n0\r\n\r\n'],
    ['transfer-encoding: chunked', 'ffffffffffffffffff\r\ncode=1\r\n0\r\n\r\n'],
  ];
  for (const path of [`${P}/verify`, `${P}/verify/passkey`, `${P}/step-up`, `${P}/logout`, `${P}/security/totp`, '/login']) {
    for (const [head, body] of framings) {
      const type = path.endsWith('passkey') ? 'application/json' : 'application/x-www-form-urlencoded';
      let timer: NodeJS.Timeout | undefined;
      const answer = await Promise.race([
        rawRequest(s.url, `POST ${path} HTTP/1.1\r\nhost: ${host}\r\ncontent-type: ${type}\r\n${head}\r\nconnection: close\r\n\r\n${body}`),
        new Promise<string>((resolve) => (timer = setTimeout(() => resolve('no answer in 5 s'), 5_000))),
      ]);
      clearTimeout(timer);
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1]);
      t.ok(status >= 400 && status < 500, `${path} with ${head.replace(/\r\n/g, ', ')}: ${answer.split('\r\n', 1)[0]}`);
      t.notMatch(answer, /\n\s+at .+:\d+:\d+|node:internal/, 'no stack trace');
    }
  }
  t.same(
    s.portalRequests.filter((r) => r.url !== '/login'),
    [],
    'nothing of them at the portal',
  );
  t.equal((await request(`${s.url}${P}/health/live`)).statusCode, 200, 'the gateway still answers');
});

t.test("a factor's name with a lone surrogate, or cut in the middle of a character: no U+FFFD on the page", async (t) => {
  const s = await startStack();
  t.teardown(s.close);
  const { b } = await signUpAndEnrol(s);
  const csrf = passkeyCsrf((await b.get(`${P}/security/passkey`)).body);
  const options = await jsonCall(b, `${P}/security/passkey/options`, csrf);
  // JSON.stringify writes the lone surrogate as the escape \ud800, which JSON.parse reads back as one.
  const added = await jsonCall(b, `${P}/security/passkey`, csrf, { credential: new SoftAuthenticator({ origin: ORIGIN }).register(options.json), name: 'Blue\ud800 key' });
  t.equal(added.status, 200);
  const page = await b.get(`${P}/security`);
  t.match(page.body, '>Blue key<', 'the passkey is named without it');
  const id = /name="factor" value="([^"]+)"/.exec(page.body)![1]!;
  const renamed = await b.post(`${P}/security/rename`, { csrf, factor: id, name: `${'a'.repeat(59)}\u{1F511}` });
  t.equal(renamed.status, 303);
  const after = (await b.get(`${P}/security`)).body;
  t.match(after, `>${'a'.repeat(59)}<`, 'the name ends before the character the limit would cut');
  t.notMatch(after, '\ufffd', 'no replacement character anywhere');
});
