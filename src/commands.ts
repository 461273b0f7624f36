// The mfa-gateway command line: the only place that reads argv and the environment. Loaded by the entry (main.ts) once
// it listens for a stop.
import { tuneRuntime } from './runtime.js';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from './app.js';
import { AuditDirInUse } from './audit/dir-lock.js';
import { publicKeyPem } from './audit/signing-key.js';
import { KEYS_ACTIONS, SESSIONS_ACTIONS, USER_ACTIONS, keysCommand, operatorFrom, recordAdmin, sessionsArgs, sessionsCommand, userArgs, userCommand } from './cli/admin.js';
import { auditPublicKey, auditVerify, auditWho } from './cli/audit.js';
import { DEVICES_ACTIONS, deviceArgs, devicesCommand, fingerprintArg } from './cli/devices.js';
import { csvUsernames, enrolCodeArgs, issueEnrolmentCodes } from './cli/enrol-codes.js';
import { BLOCKS_ACTIONS, LOCKOUTS_ACTIONS, blocksArgs, blocksCommand, lockoutsArgs, lockoutsCommand } from './cli/limits.js';
import { loginCheck, readPassword } from './cli/login-check.js';
import { explainPolicy } from './cli/policy-explain.js';
import { reportCommand } from './cli/report.js';
import { PartialOutput, refusal, UsageError, type Names } from './cli/usage.js';
import { ConfigError, configWarnings, loadConfigFile } from './config/load.js';
import type { Config } from './config/schema.js';
import { normaliseAddress } from './domain/client-address.js';
import { isRuleFactor, RULE_FACTORS } from './domain/policy.js';
import { createGateway, pidsOf, type Gateway } from './gateway.js';
import { startAdminServer, type AdminServer } from './http/admin-server.js';
import { createLogger } from './log.js';
import { VERSION } from './metrics/build-info.js';
import { defaultOnSignal, interruption, Interrupted, StopRequested, stopOnSignal } from './stop.js';

const USAGE = `Usage:
  mfa-gateway serve --config FILE    run the gateway with a config file
  mfa-gateway demo                   run a demo portal with the gateway in front of it (memory store)
  mfa-gateway config check (FILE | --config FILE)
                                     validate a config file and report every problem
  mfa-gateway policy explain --config FILE --path P [--ip A] [--user U] [--groups g1,g2] [--method M]
                             [--host H] [--managed] [--factor totp|webauthn|device-bound-passkey|recovery] [--factor-age SECONDS]
                                     which rule decides a request, and why
  mfa-gateway login check --config FILE --user U [--host H]
                                     sign in at the portal with U's real password (one line on stdin) and a wrong
                                     one; show whether portal.login.success and failure tell them apart (the
                                     browser on H, one of server.hosts; default: the first)
  mfa-gateway report --config FILE [--days N | --from DATE --to DATE] [--format text|json|html] [--audit-dir DIR]…
                                     the assurance report for a period (default: the last 30 days)
  mfa-gateway audit verify (--config FILE | --public-key FILE) FILE|DIR…
                                     check audit trails (a DIR's and the admin trail in DIR/admin, each on its
                                     own): edited, deleted, inserted, reordered, truncated records
  mfa-gateway audit who --config FILE USERNAME
                                     the pseudonym a user has in the audit trail, the logs and the store
  mfa-gateway audit public-key --config FILE
                                     the public key auditors verify checkpoints with

  Admin commands act on the configured store and are audited: each needs --operator NAME --reason TEXT.
  mfa-gateway user show|export|reset-factors|erase --config FILE --user U [--yes]
                                     a user's factors and sessions (no secrets); everything held as JSON;
                                     remove every factor (re-enrolment with the enrolment proof); erase (with --yes)
  mfa-gateway sessions revoke --config FILE (--user U | --all)
                                     end the sessions of one user or of everybody
  mfa-gateway keys rotate|status --config FILE
                                     re-seal every record with the first encryption key; keys in use and their ages
  mfa-gateway devices register --config FILE (--cert FILE | --fingerprint SHA256) [--name N] [--user U | --shared]
  mfa-gateway devices revoke --config FILE (--cert FILE | --fingerprint SHA256) [--name N]
  mfa-gateway devices list --config FILE
                                     the registry of managed-device certificates
  mfa-gateway enrol-codes issue --config FILE (--user U | --csv FILE)
                                     enrolment codes to hand out (enrolment.proof: invite); prints CSV
  mfa-gateway blocks list --config FILE
  mfa-gateway blocks clear --config FILE --ip A
                                     client addresses blocked for credential stuffing
  mfa-gateway lockouts list --config FILE
  mfa-gateway lockouts clear --config FILE --user U [--factor totp|webauthn|recovery|enrolment-code]
                                     factors disabled after too many failures

  mfa-gateway help                   show this text (also --help, -h)
  mfa-gateway version                the version of mfa-gateway (also --version)

Short options: -c FILE for --config FILE, -h for --help.`;

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  path: { type: 'string' },
  ip: { type: 'string' },
  user: { type: 'string' },
  groups: { type: 'string' },
  method: { type: 'string' },
  host: { type: 'string' },
  managed: { type: 'boolean' },
  'factor-age': { type: 'string' },
  fingerprint: { type: 'string' },
  cert: { type: 'string' },
  name: { type: 'string' },
  csv: { type: 'string' },
  factor: { type: 'string' },
  operator: { type: 'string' },
  reason: { type: 'string' },
  yes: { type: 'boolean' },
  all: { type: 'boolean' },
  shared: { type: 'boolean' },
  from: { type: 'string' },
  to: { type: 'string' },
  days: { type: 'string' },
  format: { type: 'string' },
  'audit-dir': { type: 'string', multiple: true },
  'public-key': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

/** How many words a command (or command and action) takes, itself included (its action, a FILE); 2 when not named here. */
const WORDS = new Map<string, number>([['serve', 1], ['demo', 1], ['report', 1], ['help', Infinity], ['version', Infinity], ['config', 3], ['audit who', 3], ['audit verify', Infinity]]);

/** The actions of each command that has them: any other word in an action's place is refused as such, first. */
const ACTIONS = new Map<string, readonly string[]>(Object.entries({
  config: ['check'],
  policy: ['explain'],
  login: ['check'],
  audit: ['verify', 'who', 'public-key'],
  user: USER_ACTIONS,
  sessions: SESSIONS_ACTIONS,
  keys: KEYS_ACTIONS,
  devices: DEVICES_ACTIONS,
  'enrol-codes': ['issue'],
  blocks: BLOCKS_ACTIONS,
  lockouts: LOCKOUTS_ACTIONS,
}));

const ADMIN = ['config', 'operator', 'reason'];
/** The options each command (or command and action) takes; an unknown action is refused as such, not by its options. */
const OPTIONS_OF = new Map<string, readonly string[]>(Object.entries({
  serve: ['config'],
  demo: [],
  config: ['config'],
  login: ['config', 'user', 'host'],
  policy: ['config', 'path', 'ip', 'user', 'groups', 'method', 'host', 'managed', 'factor', 'factor-age'],
  report: ['config', 'days', 'from', 'to', 'format', 'audit-dir'],
  audit: ['config', 'public-key'],
  'audit verify': ['config', 'public-key'],
  'audit who': ['config'],
  'audit public-key': ['config'],
  user: [...ADMIN, 'user', 'yes'],
  sessions: [...ADMIN, 'user', 'all'],
  keys: ADMIN,
  devices: [...ADMIN, 'cert', 'fingerprint', 'name', 'user', 'shared'],
  'devices revoke': [...ADMIN, 'cert', 'fingerprint', 'name'],
  'devices list': ADMIN,
  'enrol-codes': [...ADMIN, 'user', 'csv'],
  blocks: [...ADMIN, 'ip'],
  'blocks list': ADMIN,
  lockouts: [...ADMIN, 'user', 'factor'],
  'lockouts list': ADMIN,
}));

type Values = ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; options: typeof OPTIONS }>>['values'];

async function main(argv: string[]): Promise<number> {
  const { positionals, values: v, tokens } = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS, tokens: true });
  // An option given twice would be taken with its last value only (`--user alice --user bob` acts on bob, and the
  // reason is checked against bob): refused, as the operator meant one of them.
  const given = new Set<string>();
  for (const token of tokens) {
    const option = token.kind === 'option' ? OPTIONS[token.name as keyof typeof OPTIONS] : undefined;
    if (token.kind !== 'option' || option?.type !== 'string') continue;
    // An empty value (`--public-key=`, `--user=`, a variable unset in a script) would be taken as the option left out:
    // the config's key verifies instead of the one meant, a request is explained as nobody's.
    if (!token.value?.trim()) throw new UsageError(`--${token.name} is empty`);
    if ('multiple' in option) continue;
    if (given.has(token.name)) throw new UsageError(`--${token.name} is given more than once: give it once`);
    given.add(token.name);
  }
  const [, sub, arg] = positionals;
  // --help is the answer to whatever else is on the line (`serve --help` runs nothing), as `help` is; so is --version.
  const command = v.help ? 'help' : v.version ? 'version' : positionals[0];
  // Only serve and demo stop on a signal of their own (stop.ts); any other command ends by it, as it began to.
  if (command !== 'serve' && command !== 'demo') await defaultOnSignal();
  const config = () => {
    if (!v.config) throw new UsageError(`${command} needs --config FILE`);
    return loadConfigFile(v.config);
  };
  const print = (lines: string[]): void => void process.stdout.write(`${lines.join('\n')}\n`);
  // A misspelt action (`config chek FILE`) would otherwise be refused for what the action needs (a FILE, given) or as a
  // word too many: the word is named as what it is. (Maps: a command named `constructor` is no key of theirs.)
  const actions = ACTIONS.get(command ?? 'help');
  if (actions && !actions.includes(sub ?? '')) {
    throw new UsageError(sub === undefined ? `${command} needs an action: ${actions.join(', ')}` : `unknown ${command} action ${JSON.stringify(sub)}`);
  }
  // A word more than the command takes would be left out silently (`config check a.yaml b.yaml` checked a.yaml only
  // and said valid): wrong usage. Only `audit verify` takes any number of files.
  const words = WORDS.get(`${command} ${sub}`) ?? WORDS.get(command ?? 'help') ?? 2;
  // An option the command does not take would be left out just as silently (`lockouts list --user alice` listed
  // everybody's, `devices revoke --user bob` revoked the device for all and named bob in the trail): wrong usage.
  const action = OPTIONS_OF.has(`${command} ${sub}`) ? `${command} ${sub}` : command;
  const takes = action === undefined ? undefined : OPTIONS_OF.get(action);
  const stray = takes && tokens.find((token) => token.kind === 'option' && token.name !== 'help' && token.name !== 'version' && !takes.includes(token.name));
  if (stray && stray.kind === 'option') throw new UsageError(`${action} does not take --${stray.name}`);
  if (positionals.length > words) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[words])}${command === 'config' ? ' (config check takes one FILE: run it once per file)' : ''}`);
  switch (command) {
    case 'serve': {
      const checked = config();
      const log = createLogger(checked.log.level);
      return serve(checked, log, stopOnSignal(log));
    }
    case 'demo':
      return demo();
    case 'config': {
      // The file as a word of its own or as every other command takes it (--config, -c); not both.
      if (arg !== undefined && v.config !== undefined) throw new UsageError('config check takes one FILE: give it or --config FILE, not both');
      const file = arg ?? v.config;
      if (!file) throw new UsageError('config check needs a FILE (or --config FILE)');
      for (const w of configWarnings(loadConfigFile(file))) process.stdout.write(`warning: ${w}\n`);
      process.stdout.write(`${file}: valid\n`);
      return 0;
    }
    case 'policy': {
      if (!v.path) throw new UsageError('policy explain needs --config FILE and --path P');
      const factor = v.factor;
      if (factor !== undefined && !isRuleFactor(factor)) throw new UsageError(`--factor is one of ${RULE_FACTORS.join(', ')}`);
      const factorAge = v['factor-age'];
      if (factorAge !== undefined && !/^\d{1,9}$/.test(factorAge)) throw new UsageError('--factor-age is a whole number of seconds');
      if (v.ip !== undefined && normaliseAddress(v.ip) === null) throw new UsageError('--ip is an IPv4 or IPv6 address');
      print(
        explainPolicy(config(), {
          path: v.path,
          ip: v.ip,
          user: v.user,
          groups: v.groups?.split(',').map((g) => g.trim()).filter(Boolean),
          method: v.method,
          host: v.host,
          managed: v.managed,
          factor,
          factorAgeSeconds: factorAge === undefined ? undefined : Number(factorAge),
        }),
      );
      return 0;
    }
    case 'login': {
      if (!v.user) throw new UsageError('login check needs --config FILE and --user U (the password on stdin)');
      const checked = config();
      const r = await loginCheck(checked, v.user, readPassword(), v.host);
      print(r.lines);
      return r.ok ? 0 : 1;
    }
    case 'report':
      // The report only reads the trails: it writes none (and needs no write access to them).
      return withGateway(config(), 'none', async (gw) => {
        await gw.kv.ready();
        process.stdout.write(await reportCommand(gw, { from: v.from, to: v.to, days: v.days, format: v.format, auditDirs: v['audit-dir'] }));
      });
    case 'audit':
      switch (sub) {
        case 'verify': {
          const r = auditVerify(positionals.slice(2), { publicKeyFile: v['public-key'], config: v.config ? config() : undefined });
          print(r.lines);
          return r.ok ? 0 : 1;
        }
        case 'who':
          print([auditWho(config(), arg)]);
          return 0;
        default:
          // public-key (see ACTIONS).
          print([auditPublicKey(config())]);
          return 0;
      }
    case 'user': {
      const a = { user: v.user, yes: v.yes };
      return admin(config(), v, command, sub as (typeof USER_ACTIONS)[number], (names, action) => userArgs(names, action, a), (gw, action) => userCommand(gw, action, a));
    }
    case 'sessions': {
      const a = { user: v.user, all: v.all };
      return admin(config(), v, command, sub as (typeof SESSIONS_ACTIONS)[number], (names) => sessionsArgs(names, a), (gw) => sessionsCommand(gw, a));
    }
    case 'keys':
      return admin(config(), v, command, sub as (typeof KEYS_ACTIONS)[number], () => {}, keysCommand);
    case 'devices': {
      const c = config();
      // A certificate file is read once (a pipe, `--cert <(…)`, can be read only once, and a file may change between two
      // readings): from then on the device is its fingerprint, checked, registered and recorded alike.
      const named = v.cert !== undefined && v.fingerprint === undefined ? { cert: undefined, fingerprint: fingerprintArg({ cert: v.cert }) } : {};
      const w = { ...v, ...named };
      const a = { fingerprint: w.fingerprint, cert: w.cert, name: v.name, user: v.user, shared: v.shared };
      return admin(c, w, command, sub as (typeof DEVICES_ACTIONS)[number], (names, action) => deviceArgs(names, action, a), (gw, action) => devicesCommand(gw, action, a));
    }
    case 'blocks':
      return admin(config(), v, command, sub as (typeof BLOCKS_ACTIONS)[number], (_, action) => blocksArgs(action, { ip: v.ip }), (gw, action) => blocksCommand(gw, action, { ip: v.ip }));
    case 'lockouts': {
      const a = { user: v.user, factor: v.factor };
      return admin(config(), v, command, sub as (typeof LOCKOUTS_ACTIONS)[number], (names, action) => lockoutsArgs(names, action, a), (gw, action) => lockoutsCommand(gw, action, a));
    }
    case 'enrol-codes': {
      const a = { user: v.user, users: v.csv === undefined ? undefined : csvUsernames(v.csv) };
      return admin(config(), v, command, 'issue', (names) => enrolCodeArgs(names, a), (gw, _action, stop) => issueEnrolmentCodes(gw, a, stop), a.users);
    }
    case 'version':
      print([`mfa-gateway ${VERSION}`]);
      return 0;
    case 'help':
    case undefined:
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command ${command}`);
  }
}

/**
 * An admin command: run against the configured store and written to the admin audit chain with the operator, the
 * reason, the user's pseudonym (never the name) and the outcome. `known`: one of the command's own actions (main has
 * refused any other word, see ACTIONS): a word as given would go into the trail and the report, line breaks and markup
 * too. `check`: the command's check of its arguments, which `run` makes again. `csvUsers`: the users of a --csv file,
 * whom the reason must not name either.
 */
async function admin<A extends string>(
  config: Config,
  v: Values,
  command: string,
  known: A,
  check: (names: Names, action: A) => unknown,
  run: (gw: Gateway, action: A, stop: AbortSignal) => Promise<string[]>,
  csvUsers?: readonly string[],
): Promise<number> {
  const action = `${command} ${known}`;
  const by = operatorFrom({ ...v, users: csvUsers });
  // Wrong usage is refused before the store and the audit trail are opened: it leaves no record, and needs neither.
  const names = { config, pidOf: pidsOf(config) };
  check(names, known);
  // A device named by its certificate file is recorded by the certificate's fingerprint.
  const fingerprint = v.cert !== undefined || v.fingerprint !== undefined ? fingerprintArg({ cert: v.cert, fingerprint: v.fingerprint }) : undefined;
  const target = { pid: v.user === undefined ? undefined : (names.pidOf(v.user) ?? undefined), ip: v.ip, fingerprint, all: v.all, shared: v.shared };
  // A signal from here on: the action stops after its step under way (the codes of enrol-codes issue; any other runs
  // to its end), the run is recorded (interrupted, or ok when it was done) and the trail sealed, then the process ends
  // by the signal (main).
  const stop = interruption();
  // Its output still goes out after a signal: a terminal closed meanwhile (SIGHUP) or a pipe whose reader is gone (`|
  // tee`, stopped by the same Ctrl+C) fails that write, which would otherwise end the process before its trail is sealed.
  process.stdout.on('error', () => {});
  try {
    const code = await withGateway(config, 'admin', async (gw) => {
      try {
        // Inside: a store that cannot be reached is a failed run, and recorded as one.
        await Promise.race([gw.kv.ready(), aborted(stop.signal)]);
        const lines = await run(gw, known, stop.signal);
        recordAdmin(gw, by, action, { ...target, outcome: 'ok' });
        process.stdout.write(`${lines.join('\n')}\n`);
      } catch (err) {
        const reason = err instanceof PartialOutput ? err.cause : err;
        recordAdmin(gw, by, action, { ...target, outcome: reason instanceof Interrupted ? 'interrupted' : 'failed' });
        if (!(err instanceof PartialOutput)) throw err;
        process.stdout.write(`${err.lines.join('\n')}\n`);
        throw err.cause;
      }
    }, stop.signal);
    stop.signal.throwIfAborted();
    return code;
  } finally {
    stop.done();
  }
}

/** A promise that fails with the signal's reason once it is aborted. */
function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

/** Runs a command against the configured store, which `run` waits for (logs go to stderr, output to stdout). */
async function withGateway(config: Config, writer: 'admin' | 'none', run: (gw: Gateway) => Promise<void>, stop?: AbortSignal): Promise<number> {
  if (config.store.type === 'memory') throw new UsageError('this command acts on the configured store; with store.type memory there is nothing shared to act on');
  // `stop`: a wait for the trail's lock (another admin command holds it) is given up at once.
  const gw = await createGateway(config, { auditWriter: writer, logger: createLogger(config.log.level === 'silent' ? 'silent' : 'warn', process.stderr), signal: stop });
  try {
    await run(gw);
  } finally {
    await gw.close();
  }
  // The action is done, but the trail does not show it, or not sealed (the failure itself was logged above; stoppedBy:
  // the directory's lock was lost, another writer took it over, and what came after was dropped): the operator must know.
  const counts = writer === 'admin' ? gw.audit?.counts : undefined;
  if (counts && (counts.appended === 0 || counts.refused > 0 || counts.fileFailures > 0 || gw.audit?.stoppedBy !== undefined)) {
    process.stderr.write('mfa-gateway: the command was carried out, but its audit record could not be written\n');
    return 1;
  }
  return 0;
}

/** Wrong usage: the problem, then the usage of the command named on the line (see refusal). Exit 2. */
function usage(err: Error, argv: string[]): number {
  process.stderr.write(`${refusal(USAGE, OPTIONS, argv, err).join('\n')}\n`);
  return 2;
}

interface Started {
  app: FastifyInstance;
  admin: AdminServer | null;
  connections: Connections;
  show: (() => void) | undefined;
}

/** The demo's banner: made once the app is built (its enrolment codes need the gateway), shown once it listens. */
type Banner = (app: FastifyInstance) => Promise<() => void>;

/**
 * What the listeners' ports are called where they were set, for a port that cannot be listened on: the config's
 * options, or the demo's environment variables.
 */
type PortNames = Record<'server' | 'admin', string>;
const PORT_OPTIONS: PortNames = { server: 'server.port', admin: 'admin.port' };

interface Connections {
  /**
   * From now on, a connection with no request being answered is closed: those now, the others as their last answer
   * ends. A request still on its way on one is not read: its client sees the connection closed before any answer, on
   * which clients send a request again (RFC 9112 §9.3.1), never an answer cut short.
   */
  closeIdle(): void;
  /** Every connection closed, answered or not; returns how many requests were still being answered (cut off). */
  closeAll(): number;
}

/**
 * The connections of the gateway's port (kept per connection, nothing per request). Node's close (which fastify's
 * calls) closes only the connections between two requests at that moment: one that has sent no request yet (a
 * browser's preconnection, which Chrome opens ahead of need) and one whose answer began before the stop and ends after
 * it would each hold the stop for the whole grace period. With server.tls the HTTP server knows a connection only once
 * its handshake is done: one still in it (a client that connected and sent nothing) is known by its TCP socket.
 */
function trackConnections(server: Server, tls: boolean): Connections {
  // The sockets requests come on (with server.tls, the TLS ones), and with server.tls those still in their handshake.
  const sockets = new Set<Socket>();
  const handshaking = new Set<Socket>();
  let closing = false;
  // Closed once no answer is under way on it: Node's own test, the response the socket is given to (the next one of
  // pipelined requests takes it before the last one's close is emitted).
  const closeWhenIdle = (socket: Socket) => {
    const answering = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (answering) answering.once('close', () => closeWhenIdle(socket));
    else socket.destroy();
  };
  const track = (set: Set<Socket>, socket: Socket) => {
    set.add(socket);
    socket.once('close', () => set.delete(socket));
  };
  server.on(tls ? 'secureConnection' : 'connection', (socket: Socket) => {
    // The TCP socket a TLS socket runs on (Node's own name for it).
    if (tls) handshaking.delete((socket as Socket & { _parent: Socket })._parent);
    track(sockets, socket);
    // Taken as the stop began, before the port stopped taking connections.
    if (closing) closeWhenIdle(socket);
  });
  if (tls) {
    server.on('connection', (socket: Socket) => {
      if (closing) return void socket.destroy();
      track(handshaking, socket);
    });
  }
  return {
    closeIdle() {
      closing = true;
      for (const socket of handshaking) socket.destroy();
      for (const socket of sockets) closeWhenIdle(socket);
    },
    closeAll() {
      let answering = 0;
      for (const socket of sockets) if ((socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage) answering++;
      for (const socket of [...handshaking, ...sockets]) socket.destroy();
      return answering;
    },
  };
}

/** The app built and listening, with the admin listener; throws StopRequested when a stop came before it listens. */
async function start(config: Config, log: Logger, stop: AbortSignal, banner: Banner | undefined, ports: PortNames): Promise<Started> {
  // A signal that came while the command line was loading (see main.ts): nothing is started.
  stop.throwIfAborted();
  const app = await buildApp(config, { processMetrics: config.admin.enabled, logger: log, signal: stop });
  for (const w of configWarnings(config)) app.log.warn(w);
  const connections = trackConnections(app.server, config.server.tls !== undefined);
  try {
    const show = await banner?.(app);
    // A signal that came once the audit lock was taken gives the start up here, before anybody is served: not served
    // for a moment, then stopped. Its handler runs in the event loop's poll phase, which the start (promises, run
    // between phases) may not have passed through since: two setImmediate turns make sure one has.
    for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setImmediate(resolve));
    stop.throwIfAborted();
    await app.listen({ host: config.server.host, port: config.server.port }).catch((err: unknown) => {
      throw listenError(ports.server, config.server, err, 'server.host');
    });
    // Once a stop is asked for, readiness says so (503, "shutting down") on both listeners (see createGateway's ready).
    const admin = config.admin.enabled
      ? await startAdminServer({ host: config.admin.host, port: config.admin.port, metrics: app.gateway.metrics, ready: () => app.gateway.ready() }).catch((err: unknown) => {
          throw listenError(ports.admin, config.admin, err, 'admin.host');
        })
      : null;
    return { app, admin, connections, show };
  } catch (err) {
    // A stop, a port taken (or the demo's codes not issued): the audit directory is given back, or the next start (a
    // restart loop) would wait for its lock.
    await app.close();
    throw err;
  }
}

/**
 * A listener that could not listen, named by what its port is called (`option`: server.port or admin.port, or the
 * demo's PORT, ADMIN_PORT or PORTAL_PORT) with what to do: Node's own words (`listen EADDRINUSE: address already in
 * use 127.0.0.1:8080`) say neither which one it is nor where to change it. `hostOption`: where its host is set, if
 * it can be.
 */
function listenError(option: string, at: { host: string; port: number }, err: unknown, hostOption?: string): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const where = `${at.host.includes(':') ? `[${at.host}]` : at.host}:${at.port}`;
  const problem: Record<string, string> = {
    EADDRINUSE: `address already in use (EADDRINUSE, ${where}): another process listens there; stop it, or set another ${option}`,
    EACCES: `permission denied (EACCES, ${where}): a port below 1024 needs privileges; set ${option} to 1024 or more (and map or forward the port), or grant them`,
    ...(hostOption ? { EADDRNOTAVAIL: `address not available (EADDRNOTAVAIL, ${where}): ${hostOption} is no address of this machine; set it to one of its addresses, or 0.0.0.0` } : {}),
  };
  const text = (code !== undefined && problem[code]) || (err instanceof Error ? err.message : String(err));
  return new Error(`${option} ${at.port}: ${text}`, { cause: err });
}

/**
 * Runs the gateway until `stop` (SIGTERM, SIGINT or SIGHUP, see stop.ts), with the demo's banner if given.
 */
async function serve(config: Config, log: Logger, stop: AbortSignal, banner?: Banner, ports = PORT_OPTIONS): Promise<number> {
  log.info({ version: VERSION }, 'starting mfa-gateway');
  tuneRuntime();
  let started: Started;
  try {
    started = await start(config, log, stop, banner, ports);
  } catch (err) {
    if (!(err instanceof StopRequested)) throw err;
    // The audit lock was not taken, or is given back with the trail sealed, and the store's connection is closed: the
    // next start need not wait. Exit 0, as a stop asked for.
    log.info({ signal: err.signal }, 'stopped while starting');
    return 0;
  }
  const { app, admin, connections, show } = started;
  if (admin) app.log.info({ url: admin.url }, 'admin listener (metrics, health)');
  show?.();
  // A signal that came as it began to listen stops it at once, as one that comes now.
  if (!stop.aborted) await once(stop, 'abort');
  const { signal } = stop.reason as StopRequested;
  // Readiness says 503 from the stop on, but a load balancer sees it only at its next probes: until it has taken the
  // gateway out of service it goes on sending requests, which a port that takes no connection would refuse.
  const delaySeconds = config.server.shutdownDelaySeconds;
  if (delaySeconds > 0) {
    log.info({ signal, delaySeconds }, 'stopping: not ready (503) for server.shutdownDelaySeconds, still serving');
    await new Promise((resolve) => setTimeout(resolve, delaySeconds * 1000));
  }
  log.info({ signal, graceSeconds: config.server.shutdownGraceSeconds }, 'stopping: no new connections; requests in flight may finish');
  // Requests in flight may finish; a connection with none is closed at once, or as its last answer ends (see
  // trackConnections). After the grace period every connection still open is closed.
  const graceSeconds = config.server.shutdownGraceSeconds;
  const force = setTimeout(() => {
    // Their clients see the connection closed: a page cut short, a sign-in that must be sent again.
    const requests = connections.closeAll();
    if (requests > 0) log.warn({ signal, requests, graceSeconds }, `server.shutdownGraceSeconds ran out: ${requests} request${requests === 1 ? '' : 's'} still in flight ${requests === 1 ? 'was' : 'were'} cut off`);
  }, graceSeconds * 1000);
  force.unref();
  try {
    connections.closeIdle();
    await app.close();
  } finally {
    clearTimeout(force);
  }
  // Closed last: while the gateway's port drains, a load balancer or Kubernetes probing /health/ready is told to send
  // no new work (503), /health/live still says the process is alive (not to be restarted), and /metrics is scraped.
  await admin?.close();
  log.info({ signal }, 'stopped');
  return 0;
}

/** The demo: the legacy portal on one loopback port, the gateway on another, fresh keys each run. */
async function demo(): Promise<number> {
  // Not 0 (any free port): the banner, and the origin passkeys are made for, name the port given.
  for (const name of ['PORT', 'PORTAL_PORT', 'ADMIN_PORT']) {
    const v = process.env[name];
    if (v !== undefined && !(/^\d{1,5}$/.test(v) && Number(v) >= 1 && Number(v) <= 65535)) throw new UsageError(`${name} is a port number (1 to 65535), found ${JSON.stringify(v.slice(0, 20))}`);
  }
  const key = () => randomBytes(32).toString('base64url');
  const port = Number(process.env.PORT ?? 8080);
  // The portal's address is known before it starts (its port, on loopback): the config is read first, so that the
  // signal handlers are there before anything starts.
  const portalPort = Number(process.env.PORTAL_PORT ?? 8081);
  const auditDir = mkdtempSync(join(tmpdir(), 'mfa-gateway-demo-audit-'));
  const publicKeyFile = `${auditDir}.public-key.pem`;
  const envFile = `${auditDir}.env`;
  // Once the banner has named them, the trail and its key are kept, to be checked after the demo as it says; a demo
  // that failed to start (a port taken) or was stopped before it served removes them: nobody was told where they are.
  // Only what it made: a file found at one of these paths (see below) is not the demo's.
  let shown = false;
  const made = [auditDir];
  try {
    // What config/demo.yaml reads: written to a file of the user's alone (keys are among them) for the command line
    // (policy explain, login check, audit who), which the banner names.
    const vars = {
      MFA_DEMO_PORTAL_URL: `http://127.0.0.1:${portalPort}`,
      MFA_DEMO_SIGNING_KEY: key(),
      MFA_DEMO_ENCRYPTION_KEY: key(),
      MFA_DEMO_PSEUDONYM_KEY: key(),
      MFA_DEMO_AUDIT_KEY: key(),
      MFA_DEMO_AUDIT_DIR: auditDir,
    };
    const file = loadConfigFile(join(packageRoot(), 'config', 'demo.yaml'), { ...process.env, ...vars });
    // PORT moves the gateway, and with it the origin passkeys are made for (http://localhost:PORT, the default).
    const config: Config = {
      ...file,
      server: { ...file.server, port },
      admin: { ...file.admin, port: Number(process.env.ADMIN_PORT ?? file.admin.port) },
    };
    // The auditors' key beside the trail (not in it), so the trail can be checked as an auditor would. Beside it means
    // in the shared temporary directory, where another user who saw the trail's directory appear may have put a file
    // or a link at these paths first, to read the keys through it: written only as new files ('wx'), or not at all.
    writeFileSync(publicKeyFile, publicKeyPem(config.audit.signingKey!), { flag: 'wx' });
    made.push(publicKeyFile);
    writeFileSync(envFile, Object.entries(vars).map(([name, value]) => `export ${name}='${value.replaceAll("'", `'\\''`)}'\n`).join(''), { flag: 'wx', mode: 0o600 });
    made.push(envFile);
    // A signal at any point of the start stops the demo cleanly (the portal closed, exit 0) rather than killing it.
    const log = createLogger(config.log.level);
    const stop = stopOnSignal(log);
    const { startDemoPortal, DEMO_USERS } = await import('../test/fixtures/demo-portal.js');
    const portal = await startDemoPortal({ host: '127.0.0.1', port: portalPort }).catch((err: unknown) => {
      throw listenError('PORTAL_PORT', { host: '127.0.0.1', port: portalPort }, err);
    });
    // Built by serve, once the app is.
    const banner: Banner = async ({ log: appLog, gateway: gw }) => {
      // Right after the warning that the command line issues no enrolment codes into a memory store, which read alone
      // says nobody can enrol.
      appLog.info("the demo issues its users' enrolment codes itself: they are printed below, with the logins (enrol-codes issue on the command line cannot reach the demo's memory store)");
      const codes = await Promise.all(DEMO_USERS.map(async (u) => ({ u, code: (await gw.enrolment.issueInvite(gw.pidOf(u.username)!)).code })));
      const text = `
  mfa-gateway demo
  Portal (behind the gateway): ${portal.url}
  Open the gateway:            http://localhost:${port}/

  Demo logins (password, then the enrolment code the clinic would have given them):
${codes.map(({ u, code }) => `    ${u.username.padEnd(8)} ${u.password.padEnd(24)} enrolment code ${code}`).join('\n')}
  bob is in the staff group: only he may open /admin/ and the assurance report at /_mfa/admin/report. Repeat
  prescriptions (/prescriptions/) ask for a recent second step. Enrol with a passkey (this computer or phone) or
  an authenticator app. Stop with Ctrl+C.

  Audit trail: ${auditDir}   Metrics: http://127.0.0.1:${config.admin.port}/metrics
  Check the trail: node dist/src/main.js audit verify --public-key ${publicKeyFile} ${auditDir}

  The command line on this demo, in another terminal in this folder (config/demo.yaml reads this run's values and
  keys, which the first line takes from a file only you can read):
    . ${envFile}
    node dist/src/main.js policy explain --config config/demo.yaml --path /admin/ --user bob --ip 127.0.0.1
    node dist/src/main.js login check --config config/demo.yaml --user alice     (then type alice's password)

`;
      return () => {
        shown = true;
        process.stdout.write(text);
      };
    };
    try {
      // A port taken is named as its user set it.
      return await serve(config, log, stop, banner, { server: 'PORT', admin: 'ADMIN_PORT' });
    } finally {
      await portal.close();
    }
  } finally {
    if (!shown) for (const path of made) rmSync(path, { recursive: true, force: true });
  }
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
}

const argv = process.argv.slice(2);
main(argv).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof Interrupted) {
      // Its audit trail sealed and given back: ended by the signal, as without this handling.
      process.stderr.write(`mfa-gateway: ${err.message}\n`);
      process.kill(process.pid, err.signal);
      // It may reach the process a moment later (another thread can take it); meanwhile nothing else is done.
      setTimeout(() => process.exit(1), 5000);
      return;
    }
    if (err instanceof ConfigError || err instanceof AuditDirInUse) process.stderr.write(`mfa-gateway: ${err.message}\n`);
    else if (err instanceof UsageError || String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS_')) {
      process.exit(usage(err as Error, argv));
    } else process.stderr.write(`mfa-gateway: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
