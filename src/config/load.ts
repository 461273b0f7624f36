// Config loading: YAML file → ${ENV} interpolation → *_FILE secrets → schema validation with defaults → extra checks.
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import { dirname, isAbsolute, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { Ajv } from 'ajv';
import ret, { types as tokenTypes } from 'ret';
import safeRegex from 'safe-regex2';
import { parse as parseYaml } from 'yaml';
import { auditDirWarning } from '../audit/open-audit.js';
import { parseSigningKey } from '../audit/signing-key.js';
import { AddressSet, parseCidr } from '../domain/client-address.js';
import { gatewaySite, loopbackName } from '../domain/gateway-site.js';
import { compilePolicy, decideAccess, uncanonical, type PolicyConfig } from '../domain/policy.js';
import { loginPagePath, loose, passedMethods, portalPaths } from '../domain/portal-paths.js';
import { crlsOf, parseCertificates, twinsKnown, unusableCas } from '../mechanisms/certificates.js';
import { relyingParty } from '../mechanisms/webauthn.js';
import { HEADER_GROUP, parseGroupMap } from '../services/groups.js';
import { quoted } from '../quoted.js';
import { Messages } from '../ui/i18n.js';
import { ConfigSchema, type Config } from './schema.js';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, verbose: true });
const validate = ajv.compile(ConfigSchema);

const SECRET_PATH = /secret|pseudonym|signingKey|password|token/i;
// Request headers the gateway writes for the portal, or that frame the request or belong to one connection (undici
// refuses a request with Keep-Alive, Upgrade or Expect, so every signed-in request would fail): no identity header may
// be one.
const GATEWAY_SET_HEADERS = new Set([
  'host', 'cookie', 'content-length', 'content-type', 'transfer-encoding', 'connection', 'accept-encoding', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host',
  'keep-alive', 'upgrade', 'expect', 'te', 'trailer', 'proxy-connection',
]);
/**
 * Options holding secrets, or URLs that may carry them: a value found anywhere under them may be a secret moved
 * by a mis-indentation (`keys.signing` written as the key itself), whatever the option's own name.
 */
const SECRET_TREES = ['keys', 'identity.assertion', 'store.redis', 'audit', 'enrolment.webhook', 'notify'];

/**
 * What a problem message shows of the value found: a plain value only, never one under a secret's path, never an
 * object or list (a mis-indented `keys.signing` holds the key itself), never a URL with credentials or a query.
 */
function found(path: string, data: unknown): string {
  if (data === null || typeof data === 'object' || isSecretPath(path)) return '';
  if (typeof data === 'string' && /[@?]/.test(data)) return '';
  // A text in quotes, with what a terminal would not show as itself escaped (a bidi override, a C1 control).
  return `, found ${(typeof data === 'string' ? quoted(data) : JSON.stringify(data))?.slice(0, 80)}`;
}

/**
 * An unknown option's name, when it looks like one: in a YAML flow mapping, `{ secret:KEY }` (no space after the
 * colon) is one key named `secret:KEY`, and a key written without its option's name is a name of its own. Under an
 * option that holds secrets, only the name of an option there is somewhere else is shown.
 */
function optionName(path: string, name: string): string {
  const shown = isSecretPath(path) ? OPTION_NAMES.has(name) : /^[A-Za-z][A-Za-z0-9_-]{0,63}$/.test(name);
  return shown ? `'${name}'` : '(its name, not an option name, not shown)';
}

/** Every option name the schema has, at any level. */
const OPTION_NAMES = new Set<string>();
(function collect(schema: unknown): void {
  if (!schema || typeof schema !== 'object') return;
  const properties = (schema as { properties?: Record<string, unknown> }).properties;
  for (const [name, sub] of Object.entries(properties ?? {})) {
    OPTION_NAMES.add(name);
    collect(sub);
  }
  // Lists' items, choices of shapes.
  for (const value of Object.values(schema)) if (value !== properties) collect(value);
})(ConfigSchema);

/**
 * Why a key (a secret given as base64 or base64url) is refused, or null. Random bytes so encoded have upper- and
 * lower-case letters (a key of 32 bytes or more lacks either once in billions): without both, it is a word, a
 * passphrase, hex or zeros, and far weaker than its length says.
 */
function keyProblem(secret: string): string | null {
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(secret) || secret.replace(/=+$/, '').length % 4 === 1) return 'must be base64 or base64url (letters, digits, + / or - _)';
  if (!/[A-Z]/.test(secret) || !/[a-z]/.test(secret)) return 'does not look like random bytes (no upper- or no lower-case letter: a word, hex or zeros?); generate it as the README shows';
  return null;
}

function isSecretPath(path: string): boolean {
  return SECRET_PATH.test(path) || SECRET_TREES.some((tree) => path === tree || path.startsWith(`${tree}.`));
}

/** Reads, resolves and validates a config file; throws ConfigError listing every problem. */
export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  let raw: unknown;
  try {
    // No warnings: the yaml library's quote the line (an unquoted `password: !s3cret` is an unknown tag).
    raw = parseYaml(text, { logLevel: 'error' });
  } catch (err) {
    throw new ConfigError([`${file}: not valid YAML (${yamlProblem(err)})`]);
  }
  return resolveConfig(raw ?? {}, { env, baseDir: dirname(resolve(file)) });
}

/**
 * What is wrong with a YAML text, without any of it: the parser's messages can quote the text (an unquoted secret
 * starting with `*` is read as an alias, and its name is in the message).
 */
function yamlProblem(err: unknown): string {
  const { code, linePos } = err as { code?: string; linePos?: { line: number; col: number }[] };
  if (err instanceof ReferenceError) return 'an alias (a value starting with *) that names no anchor: quote such a value';
  const at = linePos?.[0];
  return `${code ?? 'unreadable'}${at ? ` at line ${at.line}, column ${at.col}` : ''}`;
}

/** Validates an already-parsed config object (the same rules as a file). */
export function resolveConfig(raw: unknown, opts: { env?: NodeJS.ProcessEnv; baseDir?: string } = {}): Config {
  const problems: string[] = [];
  const failed = new Set<string>();
  // Values from the environment or a file are never shown: a secret's variable given to another option (`url:
  // ${SIGNING_KEY}`) would be printed in a problem about that option.
  const hidden = new Set<string>();
  const show = (path: string, data: unknown) => (hidden.has(path) ? '' : found(path, data));
  // Values given by an empty variable or file, by path: refused, they are said to be empty rather than too short.
  const empty = new Map<string, string>();
  const value = substitute(structuredClone(raw), '', opts.env ?? process.env, opts.baseDir ?? process.cwd(), problems, failed, hidden, empty);
  const saidEmpty = new Set<string>();
  if (!validate(value)) {
    const errors = validate.errors ?? [];
    for (const e of errors) {
      const path = e.instancePath.replace(/^\//, '').replaceAll('/', '.') || '(top level)';
      // A value whose variable is not set or whose file cannot be read is already named: its empty or missing value
      // is no second problem (a missing property is at the option's own path, not its parent's).
      const at = e.keyword === 'required' ? `${path}.${String(e.params.missingProperty)}` : path;
      if ([...failed].some((f) => at === f || at.startsWith(`${f}.`))) continue;
      // An empty variable or secret file (a Secret key left blank): said so, once, whatever the schema wants of it.
      const emptied = empty.get(path);
      if (emptied !== undefined) {
        if (!saidEmpty.has(path)) problems.push(`${path}: ${emptied}`);
        saidEmpty.add(path);
        continue;
      }
      // A choice of fixed values (TypeBox unions of literals): one line naming them, not one per value.
      const choices = errors.filter((c) => c.keyword === 'const' && c.instancePath === e.instancePath && c.schemaPath.startsWith(`${e.schemaPath}/`));
      if (e.keyword === 'anyOf' && choices.length) {
        problems.push(`${path}: must be one of ${choices.map((c) => String(c.params.allowedValue)).join(', ')}${show(path, e.data)}`);
        continue;
      }
      if (e.keyword === 'const' && errors.some((a) => a.keyword === 'anyOf' && a.instancePath === e.instancePath && e.schemaPath.startsWith(`${a.schemaPath}/`))) continue;
      const extra = e.keyword === 'additionalProperties' ? ` ${optionName(path, String(e.params.additionalProperty))}` : '';
      // `port: ${PORT}` is text whatever the variable holds: said, as its value is not shown.
      const text = e.keyword === 'type' && hidden.has(path) && typeof e.data === 'string' ? ', found text from an environment variable or a file (only a text option takes one)' : '';
      problems.push(`${path}: ${e.message}${extra}${text}${e.keyword === 'additionalProperties' || e.keyword === 'required' ? '' : show(path, e.data)}`);
    }
  }
  if (problems.length) throw new ConfigError(problems);
  const config = value as Config;
  // The audit directory (its default too) and the locales folder are where the config file is, like every other
  // path in it.
  config.audit.dir = resolve(opts.baseDir ?? process.cwd(), config.audit.dir);
  if (config.ui.localesDir) config.ui.localesDir = resolve(opts.baseDir ?? process.cwd(), config.ui.localesDir);
  problems.push(...checkSemantics(config, show, hidden));
  if (problems.length) throw new ConfigError(problems);
  return deepFreeze(config);
}

/**
 * Replaces ${NAME} in strings with environment values and `key_FILE: path` with the file's content under `key`;
 * paths in `*File` and `file` options become absolute, relative to the config file.
 */
function substitute(node: unknown, path: string, env: NodeJS.ProcessEnv, baseDir: string, problems: string[], failed: Set<string>, hidden: Set<string>, empty: Map<string, string>): unknown {
  if (typeof node === 'string') {
    return node.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
      hidden.add(path);
      const v = env[name];
      if (v === undefined) {
        problems.push(`${path}: environment variable ${name} is not set`);
        failed.add(path);
      } else if (v.trim() === '' && !empty.has(path)) empty.set(path, `environment variable ${name} is empty`);
      // Trimmed as a *_FILE's content is: a secret made from a file ending in a line break is the same secret either way.
      return v?.trim() ?? '';
    });
  }
  if (Array.isArray(node)) return node.map((v, i) => substitute(v, `${path}.${i}`, env, baseDir, problems, failed, hidden, empty));
  if (node && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) {
      const at = path ? `${path}.${k}` : k;
      if (k.endsWith('_FILE') && typeof v === 'string') {
        const target = k.slice(0, -'_FILE'.length);
        // Both: which one wins would depend on their order in the file (for keys.pseudonym, every enrolment).
        if (Object.hasOwn(node, target)) problems.push(`${path ? `${path}.` : ''}${target}: give either ${target} or ${k}, not both`);
        const named = substitute(v, at, env, baseDir, problems, failed, hidden, empty) as string;
        // A path with a variable that is not set names no file: said once, as that variable.
        if (failed.has(at)) {
          failed.add(path ? `${path}.${target}` : target);
          continue;
        }
        const file = resolve(baseDir, named);
        try {
          out[target] = readFileSync(file, 'utf8').trim();
          hidden.add(path ? `${path}.${target}` : target);
          if (out[target] === '') empty.set(path ? `${path}.${target}` : target, `the file named by ${at} is empty`);
        } catch (err) {
          // The path is not shown: a secret given where its file belongs (in the file, or the two variables swapped)
          // would be printed. Where a relative one is read from is.
          const why = (err as NodeJS.ErrnoException).code ?? 'error';
          problems.push(`${at}: cannot read the secret file it names (${why}${isAbsolute(named) ? '' : `; a relative path is read from ${baseDir}`})`);
          failed.add(path ? `${path}.${target}` : target);
        }
      } else if ((k.endsWith('File') || k === 'file') && typeof v === 'string') {
        // Files the gateway keeps reading (certificates, CRL, group map) are named relative to the config file.
        out[k] = resolve(baseDir, substitute(v, at, env, baseDir, problems, failed, hidden, empty) as string);
      } else {
        out[k] = substitute(v, at, env, baseDir, problems, failed, hidden, empty);
      }
    }
    return out;
  }
  return node;
}

// ret (the parser safe-regex2 uses) is CommonJS: its module.exports is the parser itself, typed as its `default`.
const parseRegex = ret as unknown as typeof ret.default;

/** `show`: what a problem shows of the value found at a path (see found); `hidden`: paths whose value came from the environment or a file. */
function checkSemantics(c: Config, show: (path: string, data: unknown) => string, hidden: ReadonlySet<string>): string[] {
  const problems: string[] = [];
  const regex = (path: string, src: string | undefined) => {
    if (src === undefined) return;
    try {
      new RegExp(src);
    } catch {
      problems.push(`${path}: not a valid regular expression${show(path, src)}`);
    }
  };
  regex('portal.login.success.location', c.portal.login.success.location);
  regex('portal.login.success.body', c.portal.login.success.body);
  regex('portal.login.failure.location', c.portal.login.failure?.location);
  regex('portal.login.failure.body', c.portal.login.failure?.body);
  regex('portal.login.usernamePattern', c.portal.login.usernamePattern);
  const keyBytes = (path: string, secret: string, exact?: number) => {
    const n = decodeKey(secret).length;
    const problem = keyProblem(secret);
    if (problem) problems.push(`${path}: ${problem}`);
    else if (exact !== undefined ? n !== exact : n < 32) problems.push(`${path}: must decode to ${exact ?? 'at least 32'} bytes, found ${n}`);
  };
  c.keys.signing.forEach((k, i) => keyBytes(`keys.signing.${i}.secret`, k.secret));
  c.keys.encryption.forEach((k, i) => keyBytes(`keys.encryption.${i}.secret`, k.secret, 32));
  keyBytes('keys.pseudonym', c.keys.pseudonym);
  const ids = (path: string, list: { id: string }[]) => {
    if (new Set(list.map((k) => k.id)).size !== list.length) problems.push(`${path}: key ids must be unique`);
  };
  ids('keys.signing', c.keys.signing);
  ids('keys.encryption', c.keys.encryption);
  // One secret under two ids (a key copied for the "new" one) makes a rotation that changes nothing: `keys status`
  // shows the old id sealing nothing, and removing it leaves the old secret in use.
  for (const list of ['signing', 'encryption'] as const) {
    for (const [path, earlier] of repeatedKeys(keyEntries(c, list))) {
      problems.push(`${path}: the same key as ${earlier}: every key needs a secret of its own (an old secret under a new id is no new key)`);
    }
  }
  if (c.mfa.pendingMaxSeconds < c.mfa.pendingTimeoutSeconds) {
    problems.push(`mfa.pendingMaxSeconds: must be at least mfa.pendingTimeoutSeconds (${c.mfa.pendingTimeoutSeconds}; the same: no more time is offered), found ${c.mfa.pendingMaxSeconds}`);
  }
  // The login page and every page a browser opens are GETs; the login itself must reach the portal.
  if (!c.portal.methods.includes('GET')) problems.push('portal.methods: must hold GET (the login page and every page a browser opens)');
  for (const m of c.portal.login.methods) if (!c.portal.methods.includes(m)) problems.push(`portal.login.methods: ${m} is not one of portal.methods, so the login could never reach the portal`);
  const prefix = c.server.prefix;
  const portalPathOptions = [...c.portal.login.paths.map((p, i) => [`portal.login.paths.${i}`, p] as const), ...c.portal.logoutPaths.map((p, i) => [`portal.logoutPaths.${i}`, p] as const), ...c.portal.passwordForms.map((p, i) => [`portal.passwordForms.${i}`, p] as const)];
  for (const [at, p] of portalPathOptions) {
    if (p === prefix || p.startsWith(`${prefix}/`)) problems.push(`${at}: ${p} lies under the gateway prefix ${prefix}`);
    // Requests are matched in their canonical form: a path in another never matches (and `%` alone is no path). The
    // gateway's sign-out calls the first logout path as written, query and all.
    const problem = uncanonical(p.split('?', 1)[0]!);
    if (problem) problems.push(`${at}: ${problem}`);
  }
  c.portal.passwordForms.forEach((p, i) => {
    if (p.includes('?')) problems.push(`portal.passwordForms.${i}: a path without a query (a form is the path's whatever its query)${show(`portal.passwordForms.${i}`, p)}`);
  });
  const addresses = (path: string, list: readonly string[]) =>
    list.forEach((a, i) => {
      if (!parseCidr(a)) problems.push(`${path}.${i}: not an address or CIDR${show(`${path}.${i}`, a)}`);
    });
  addresses('server.trustedProxies', c.server.trustedProxies);
  // Proxies sit on a network of the operator's; a range wider than any such network (0.0.0.0/0) would let every
  // client write its own address, scheme and device header.
  c.server.trustedProxies.forEach((a, i) => {
    if (tooWide(a)) problems.push(`server.trustedProxies.${i}: wider than any proxy network (/8 for IPv4, /7 for IPv6)${show(`server.trustedProxies.${i}`, a)}`);
  });
  for (const [name, list] of Object.entries(c.networks)) addresses(`networks.${name}`, list);
  const serverHosts = new Set(c.server.hosts.map((h) => h.toLowerCase()));
  c.policy.rules.forEach((r, i) => {
    if (r.decision !== 'step-up' && r.maxAgeSeconds !== undefined) problems.push(`policy.rules.${i}.maxAgeSeconds: only for decision step-up`);
    // Rules see the Host's name without its port, and only a name of server.hosts gets that far (421 otherwise): a rule
    // naming another (`portal.example:8443`, `portal.example.`) would never match, silently (a deny rule let through).
    r.hosts?.forEach((h, j) => {
      const at = `policy.rules.${i}.hosts.${j}`;
      if (!serverHosts.has(h.toLowerCase())) problems.push(`${at}: not one of server.hosts (a host name without a port), so the rule could never match${show(at, h)}`);
    });
    if (!r.networks) return;
    r.networks.forEach((n, j) => {
      const at = `policy.rules.${i}.networks.${j}`;
      if (!Object.hasOwn(c.networks, n) && !parseCidr(n)) problems.push(`${at}: neither a network name nor an address${show(at, n)}`);
    });
  });
  c.admin.report.networks.forEach((n, j) => {
    const at = `admin.report.networks.${j}`;
    if (!Object.hasOwn(c.networks, n) && !parseCidr(n)) problems.push(`${at}: neither a network name nor an address${show(at, n)}`);
  });
  c.policy.rules.forEach((r, i) => {
    const first = c.policy.rules.findIndex((o) => o.name === r.name);
    const at = `policy.rules.${i}.name`;
    if (first !== i) problems.push(`${at}: the name of policy.rules.${first} too; rule names must be unique${show(at, r.name)}`);
  });
  try {
    compilePolicy(policyConfig(c));
  } catch (err) {
    problems.push(`policy: ${(err as Error).message}`);
  }
  // A browser runs a passkey ceremony only on a page whose host is the relying party id or a name under it: an origin
  // elsewhere would have every passkey refused there. (The default origin is the id's own.)
  const rp = relyingParty(c);
  rp.origins.forEach((origin, i) => {
    const host = urlOf(origin)?.hostname;
    if (c.webauthn.origins && host !== rp.id && !host?.endsWith(`.${rp.id}`)) {
      problems.push(`webauthn.origins.${i}: its host is neither the relying party id (${rp.id}) nor a name under it; browsers refuse passkeys there${show(`webauthn.origins.${i}`, origin)}`);
    }
  });
  if (c.enrolment.proof === 'webhook' && !c.enrolment.webhook) problems.push('enrolment.webhook: needed for enrolment.proof: webhook');
  if ((c.notify.url === undefined) !== (c.notify.secret === undefined)) problems.push('notify: url and secret go together');
  if (contrastWithWhite(c.ui.accentColour) < 4.5) {
    problems.push(`ui.accentColour: needs a contrast of 4.5:1 with white text, ${c.ui.accentColour} has ${contrastWithWhite(c.ui.accentColour).toFixed(2)}:1`);
  }
  if (c.audit.enabled && !c.audit.signingKey) problems.push('audit.signingKey: needed when audit.enabled');
  // Files read at start are looked for here, and keys read, so a missing or bad one is a problem by path rather
  // than a failure at start.
  const files: [string, string | undefined][] = [
    ['server.tls.certFile', c.server.tls?.certFile],
    ['server.tls.keyFile', c.server.tls?.keyFile],
    ['devices.caFile', c.devices.caFile],
    ['devices.crlFile', c.devices.crlFile],
    ['groups.file', c.groups.file],
    ['ui.logoFile', c.ui.logoFile],
  ];
  for (const [path, file] of files) {
    const stats = file === undefined ? undefined : statSync(file, { throwIfNoEntry: false });
    // A path from the environment is not shown either: a secret's variable named there would be printed in it.
    const named = hidden.has(path) ? '' : `: ${file}`;
    if (file !== undefined && !stats) problems.push(`${path}: no such file${named}`);
    else if (stats && !stats.isFile()) problems.push(`${path}: not a file${named}`);
  }
  const isFile = (file: string) => statSync(file, { throwIfNoEntry: false })?.isFile() === true;
  const failure = (build: () => unknown) => {
    try {
      build();
      return null;
    } catch (err) {
      return (err as Error).message;
    }
  };
  // What serve builds from files at start is built here too, so check finds what would stop serve.
  const ui = failure(() => new Messages(c.ui.localesDir, c.ui.defaultLanguage));
  if (ui) problems.push(`${ui.startsWith('no messages for the default language') ? 'ui.defaultLanguage' : 'ui.localesDir'}: ${ui}`);
  const groups = c.groups.file;
  const groupProblem = groups && isFile(groups) && failure(() => parseGroupMap(readFileSync(groups, 'utf8'), c.portal.login.usernameCase));
  if (groupProblem) problems.push(`groups.file: ${groupProblem}`);
  const ca = c.devices.caFile;
  if (ca && isFile(ca) && !readable(() => new X509Certificate(readFileSync(ca)))) problems.push('devices.caFile: not a PEM certificate');
  else if (ca && isFile(ca)) {
    // A certificate's ECDSA twin (another fingerprint, the same device) is found only for curves of known order.
    const cas = parseCertificates(readFileSync(ca, 'utf8'));
    const odd = cas.find((c) => !twinsKnown(c));
    if (odd) problems.push(`devices.caFile: an EC key on curve ${odd.publicKey.asymmetricKeyDetails?.namedCurve ?? 'unknown'} (use P-256, P-384, P-521, secp256k1 or a brainpool curve, or RSA)`);
    // A device certificate counts only through a chain up to a root of the bundle, as TLS verifies one (chainsTo): a
    // bundle of intermediates alone would have every device unmanaged, without a word.
    if (!cas.some((c) => c.checkIssued(c))) problems.push('devices.caFile: no root CA (a self-issued certificate) in it: a device certificate counts only through a chain up to one, as TLS verifies it; add the root above the intermediates');
  }
  const crl = c.devices.crlFile;
  const crlProblem = crl && isFile(crl) && failure(() => crlsOf(readFileSync(crl, 'utf8')));
  if (crlProblem) problems.push(`devices.crlFile: ${crlProblem}`);
  const tls = c.server.tls;
  const certOk = tls && isFile(tls.certFile) && readable(() => new X509Certificate(readFileSync(tls.certFile)));
  const keyOk = tls && isFile(tls.keyFile) && readable(() => createPrivateKey(readFileSync(tls.keyFile)));
  if (tls && isFile(tls.certFile) && !certOk) problems.push('server.tls.certFile: not a PEM certificate');
  if (tls && isFile(tls.keyFile) && !keyOk) problems.push('server.tls.keyFile: not a PEM private key');
  if (tls && certOk && keyOk && !readable(() => createSecureContext({ cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) }))) {
    problems.push("server.tls.keyFile: not the private key of server.tls.certFile's certificate");
  }
  if (c.audit.signingKey && !readable(() => parseSigningKey(c.audit.signingKey!))) problems.push('audit.signingKey: not an Ed25519 private key (PKCS#8 PEM or a base64 32-byte seed)');
  else if (c.audit.signingKey && !c.audit.signingKey.trim().startsWith('-----BEGIN')) {
    const problem = keyProblem(c.audit.signingKey.trim());
    if (problem) problems.push(`audit.signingKey: ${problem}`);
  }
  const assertionKey = c.identity.assertion?.signingKey;
  if (assertionKey && !readable(() => createPrivateKey(assertionKey).asymmetricKeyDetails?.namedCurve === 'prime256v1')) {
    problems.push('identity.assertion.signingKey: not an EC P-256 private key (PKCS#8 PEM)');
  }
  c.identity.assertion?.publishedKeys.forEach((k, i) => {
    if (!readable(() => createPublicKey(k.publicKey).asymmetricKeyDetails?.namedCurve === 'prime256v1')) problems.push(`identity.assertion.publishedKeys.${i}.publicKey: not an EC P-256 key (PEM)`);
  });
  // Each identity header once, and none the gateway sets itself: the later would silently replace the earlier (with
  // userHeader and groupsHeader one header, a member of group `admin` reaches the portal as the user `admin`).
  const identityHeaders = [c.identity.userHeader, c.identity.groupsHeader, c.identity.assertion?.header].flatMap((h) => (h ? [h.toLowerCase()] : []));
  if (new Set(identityHeaders).size !== identityHeaders.length) problems.push('identity: userHeader, groupsHeader and assertion.header must name different headers');
  const taken = identityHeaders.find((h) => GATEWAY_SET_HEADERS.has(h));
  if (taken) problems.push(`identity: ${taken} is a header the gateway sets itself for the portal, or one of the connection's own`);
  const assertionIds = c.identity.assertion ? [c.identity.assertion.keyId, ...c.identity.assertion.publishedKeys.map((k) => k.keyId)] : [];
  if (new Set(assertionIds).size !== assertionIds.length) problems.push('identity.assertion.publishedKeys: key ids must differ from each other and from identity.assertion.keyId');
  const wildcard = (host: string) => host === '0.0.0.0' || host === '::';
  // `localhost` is the loopback address of either family.
  const listening = (host: string) => (host === 'localhost' ? ['127.0.0.1', '::1'] : [host]);
  const sameHost = wildcard(c.admin.host) || wildcard(c.server.host) || listening(c.admin.host).some((a) => listening(c.server.host).includes(a));
  if (c.admin.enabled && c.admin.port !== 0 && c.admin.port === c.server.port && sameHost) problems.push('admin.port: the same address as server.port');
  if (c.audit.redisStream.enabled && c.store.type !== 'redis') problems.push('audit.redisStream: needs store.type redis');
  // Checked here, not at the first connection: there a bad URL is "Invalid URL" naming no option, and a db that is no
  // number is taken as database 0. Never shown: it may hold a password.
  const redisUrl = urlOf(c.store.redis.url);
  if (!redisUrl || !redisUrl.hostname || redisUrl.port === '0' || !/^(\/\d{1,5})?\/?$/.test(redisUrl.pathname)) {
    problems.push('store.redis.url: not a Redis URL (redis[s]://[user:password@]host[:port 1-65535][/db number])');
  }
  if (c.store.redis.mode === 'sentinel' && (!c.store.redis.sentinels.length || !c.store.redis.masterName)) problems.push('store.redis: sentinel mode needs sentinels and masterName');
  if (c.store.redis.mode === 'cluster' && !c.store.redis.nodes.length) problems.push('store.redis.nodes: cluster mode needs seed nodes');
  if (c.store.redis.mode === 'cluster' && c.store.redis.replicaAcks) problems.push('store.redis.replicaAcks: not available in cluster mode');
  if (c.devices.header && c.server.trustedProxies.length === 0) problems.push('devices.header: needs server.trustedProxies (the header is believed only from them)');
  if (c.forwardAuth.enabled && c.server.trustedProxies.length === 0) problems.push('forwardAuth.enabled: needs server.trustedProxies (the proxies that may ask)');
  if (c.forwardAuth.enabled && c.forwardAuth.sessionCookies.length === 0) problems.push("forwardAuth.enabled: needs forwardAuth.sessionCookies (the names of the portal's session cookies)");
  if (c.devices.crlFile && !c.devices.caFile) problems.push('devices.crlFile: needs devices.caFile');
  // A fingerprint names no serial number: the CRL could not be checked for devices known by one.
  if (c.devices.crlFile && c.devices.header?.format === 'fingerprint') {
    problems.push('devices.crlFile: cannot be checked with devices.header.format fingerprint; use format pem, or revoke devices with `mfa-gateway devices revoke`');
  }
  if (c.session.idleTimeoutSeconds > c.session.absoluteTimeoutSeconds) {
    problems.push('session.idleTimeoutSeconds: must not exceed session.absoluteTimeoutSeconds');
  }
  return problems;
}

/** Whether `read` returns true without throwing. */
function readable(read: () => unknown): boolean {
  try {
    return read() !== false;
  } catch {
    return false;
  }
}

/** WCAG 2.2 contrast ratio of a #rrggbb colour against white. */
export function contrastWithWhite(hex: string): number {
  const [r, g, b] = [1, 3, 5].map((i) => {
    const c = parseInt(hex.slice(i, i + 2), 16) / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  }) as [number, number, number];
  return 1.05 / (0.2126 * r + 0.7152 * g + 0.0722 * b + 0.05);
}

/** Methods a portal may take from a POST body's method override. */
const OVERRIDABLE = ['PUT', 'PATCH', 'DELETE'];
/** Methods that change something at the portal. */
const WRITES = ['POST', 'PUT', 'PATCH', 'DELETE'];

/** Warnings that do not stop the gateway but that an operator must see (at start and in `config check`). */
export function configWarnings(c: Config): string[] {
  const w: string[] = [];
  // One secret for two purposes only warns: an installation using its pseudonym key for signing too could not start
  // otherwise, and changing that key orphans every enrolment (a signing key can be replaced, ending the sessions).
  for (const [path, earlier] of repeatedKeys([...keyEntries(c, 'signing'), ...keyEntries(c, 'encryption'), ['keys.pseudonym', c.keys.pseudonym]])) {
    w.push(`${path}: the same key as ${earlier}: give each purpose a secret of its own (see Key rotation)`);
  }
  if (c.enrolment.proof === 'first-login') {
    w.push('enrolment.proof is first-login: anyone who knows a password can bind their own second factor to an account that has none yet');
  }
  // Any request to a login path but a GET or HEAD is the login: a logout there (a script's DELETE) never reaches the
  // portal as one.
  const logins = portalPaths(c.portal.login, []);
  c.portal.logoutPaths.forEach((p, i) => {
    if (logins.loginPathOf(loose(p.split('?', 1)[0]!), 'DELETE')) {
      w.push(`portal.logoutPaths.${i}: ${p} is also a login path: a request to it other than a GET or HEAD is a login (a DELETE gets 405), so a script's logout there never reaches the portal and signs nobody out; name the logout page a browser opens (/signout) instead`);
    }
  });
  // A proxy on another machine (an ingress, a load balancer, Docker's port publishing) cannot connect to a loopback
  // address: its connections are refused or reset, and nothing in the gateway's log says why.
  if (loopbackHost(c.server.host)) {
    const remote = c.server.trustedProxies.filter((a) => !loopbackRange(a));
    if (remote.length) {
      w.push(`server.host is ${c.server.host} (loopback only), but server.trustedProxies names ${remote.join(', ')}, on another machine or network: such a proxy cannot connect to a loopback address (its connections are refused, and a container's published port resets them); set server.host to 0.0.0.0 (always in a container) or to an address the proxies reach`);
    }
  }
  // Checked as the user running this, which may not be the gateway's: a warning.
  const auditDirProblem = auditDirWarning(c);
  if (auditDirProblem) w.push(auditDirProblem);
  w.push(...loginRuleWarnings(c.portal.login));
  w.push(...locationRuleWarnings(c));
  w.push(...closedLoginWarnings(c));
  w.push(...slowPatternWarnings(c.portal.login));
  // Built as serve builds it (checkSemantics has refused what it cannot read).
  for (const { file, missing } of c.ui.localesDir ? new Messages(c.ui.localesDir, c.ui.defaultLanguage).incomplete : []) {
    w.push(`ui.localesDir: ${file} leaves out ${missing.length} message(s) (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', …' : ''}): they are shown in English, marked so for screen readers, but not in a name field's value or the recovery codes file (see Screens and languages)`);
  }
  // A group the login header cannot carry comes only from the group file: from the header, a rule naming it never
  // matches (a deny rule for it lets its members through).
  if (c.groups.loginHeader) {
    const named = [...c.policy.rules.flatMap((r, i) => (r.groups ?? []).map((g) => [`policy.rules.${i}.groups`, g] as const)), ...c.admin.report.groups.map((g) => ['admin.report.groups', g] as const)];
    for (const [at, g] of named) if (!HEADER_GROUP.test(g)) w.push(`${at}: ${quoted(g)} is a group name groups.loginHeader cannot carry (letters, digits, _ . : @ - and spaces between them, at most 64): only the group file can put anyone in it`);
  }
  const rp = relyingParty(c);
  // Browsers run a ceremony only on a page under the id, and the gateway answers only server.hosts (421 otherwise).
  if (c.webauthn.rpId && !c.server.hosts.some((h) => h.toLowerCase() === rp.id || h.toLowerCase().endsWith(`.${rp.id}`))) {
    w.push(`webauthn.rpId (${rp.id}) is neither one of server.hosts nor a domain above one: browsers would refuse passkeys on every page of the gateway`);
  }
  if (isIP(rp.id)) w.push(`webauthn.rpId${c.webauthn.rpId ? '' : ' (the first of server.hosts)'} is an IP address: browsers offer passkeys only on a host name`);
  if (c.store.type === 'memory') {
    // The command line is another process: the codes it issues go to a memory store of its own.
    const invite = c.enrolment.proof === 'invite' ? '; enrolment.proof is invite, and the command line issues enrolment codes (`enrol-codes issue`) only into store.type: redis' : '';
    w.push(`store.type is memory: sessions and counters are lost on restart and not shared between instances${invite}`);
  }
  // An assertion names no session: the portal believes it until its exp, also once the session it came from has ended.
  const assertion = c.identity.assertion;
  if (assertion && assertion.lifetimeSeconds > c.session.idleTimeoutSeconds) {
    w.push(`identity.assertion.lifetimeSeconds (${assertion.lifetimeSeconds}) is longer than session.idleTimeoutSeconds (${c.session.idleTimeoutSeconds}): an assertion stays valid after the session it came from has timed out`);
  }
  // ioredis takes the user and password of a URL holding either, and then ignores both options (an empty one included).
  const redisUrl = urlOf(c.store.redis.url);
  if (c.store.type === 'redis' && c.store.redis.mode === 'single' && (redisUrl?.username || redisUrl?.password) && (c.store.redis.username || c.store.redis.password)) {
    w.push('store.redis.url holds a user or password: it is used, and store.redis.username and store.redis.password are ignored; give them in one place');
  }
  // Browsers keep Secure cookies over plain http only from a loopback name; a TLS balancer in front but not trusted
  // makes the same config (and every client the balancer's address).
  const plainNames = gatewaySite(c.server).proto === 'https' ? [] : c.server.hosts.filter((h) => !loopbackName(h.toLowerCase()));
  if (plainNames.length) {
    w.push(`server.hosts: ${plainNames.join(', ')} ${plainNames.length > 1 ? 'are' : 'is'} served over plain http (no server.tls, no server.trustedProxies): a browser there keeps none of the gateway's Secure cookies and is offered no passkeys, so nobody can sign in. Serve the gateway over HTTPS (server.tls) or behind a TLS proxy listed in server.trustedProxies (a TLS load balancer not listed there gives every client its address: one credential-stuffing block on it refuses everyone, and network rules judge it)`);
  }
  // Plain http to another machine is a warning, not an error: a service mesh may carry it over mutual TLS.
  if (!safeOutbound(c.portal.url)) w.push('portal.url is plain http to another machine: passwords and portal sessions cross the network unencrypted');
  if (c.enrolment.webhook && !safeOutbound(c.enrolment.webhook.url)) w.push('enrolment.webhook.url is plain http to another machine: enrolment codes cross the network unencrypted');
  if (c.notify.url && !safeOutbound(c.notify.url)) w.push('notify.url is plain http to another machine: notifications cross the network unencrypted');
  // undici leaves the user and password of a URL out of the request: a receiver asking for them refuses every call.
  for (const [path, url] of [['enrolment.webhook.url', c.enrolment.webhook?.url], ['notify.url', c.notify.url]] as const) {
    const u = url === undefined ? null : urlOf(url);
    if (u?.username || u?.password) w.push(`${path} holds a user or password: it is never sent, and a receiver that asks for it refuses every call (status 401); put a token in the path or query instead`);
  }
  // As TLS and the gateway verify a device's chain (checkSemantics has refused a bundle they cannot read).
  for (const why of c.devices.caFile ? unusableCas(parseCertificates(readFileSync(c.devices.caFile, 'utf8'))) : []) {
    w.push(`devices.caFile: ${why}: no certificate it issues counts, so every device under it is unmanaged`);
  }
  if (c.devices.header?.format === 'fingerprint' && !c.devices.requireRegistration) {
    w.push("devices.header.format is fingerprint without devices.requireRegistration: a revoked or bound certificate re-signed by its holder (another fingerprint, the same key) is not recognised");
  }
  const hosts = new Set(c.server.hosts.map((h) => h.toLowerCase()));
  const passed = passedMethods(c.portal.methods);
  c.policy.rules.forEach((r, i) => {
    // Every name in server.hosts reaches the same portal, and the client chooses which it sends.
    if (r.decision === 'public' && r.hosts && [...hosts].some((h) => !r.hosts!.some((x) => x.toLowerCase() === h))) {
      w.push(`policy.rules.${i}.hosts: a public rule for some host names is public for anyone who sends one of them (the client chooses the Host, and every name in server.hosts reaches the same portal)`);
    }
    // Bodies stream to the portal unread: a `_method` form field is not seen by the rules.
    const methods = r.methods?.map((m) => m.toUpperCase());
    const overridable = r.decision !== 'public' && methods !== undefined && methods.some((m) => OVERRIDABLE.includes(m)) && !methods.includes('POST');
    if (overridable) {
      w.push(`policy.rules.${i}.methods: a rule for ${methods.filter((m) => OVERRIDABLE.includes(m)).join(', ')} without POST does not cover a POST whose body asks the portal for that method (a _method form field, as Rails, Laravel and Symfony read it): add POST, or switch body overrides off in the portal`);
    }
    // Many portal scripts (PHP, classic ASP, CGI) answer an address alike whatever the method: a page's rule that
    // names only GET leaves it open to the portal's other methods.
    const others = c.portal.methods.filter((m) => m !== 'GET' && m !== 'HEAD' && !methods?.includes(m));
    if (r.decision !== 'public' && methods?.includes('GET') && others.length > 0) {
      w.push(`policy.rules.${i}.methods: a rule for GET without ${others.join(', ')} does not cover its paths asked for with ${others.length > 1 ? 'those methods' : 'that method'} (portal.methods passes ${others.length > 1 ? 'them' : 'it'}), which many portal scripts answer as they answer GET: leave methods out to cover every method`);
    }
    // A rule for the writes covers every write method the portal takes: one added to portal.methods later is not
    // left out of it.
    const writes: string[] = c.portal.methods.filter((m) => WRITES.includes(m));
    const unwritten = writes.filter((m) => !methods?.includes(m));
    if (r.decision !== 'public' && !overridable && methods && !methods.includes('GET') && methods.some((m) => writes.includes(m)) && unwritten.length > 0) {
      w.push(`policy.rules.${i}.methods: a rule for ${methods.filter((m) => writes.includes(m)).join(', ')} without ${unwritten.join(', ')} does not cover the writes portal.methods passes with ${unwritten.length > 1 ? 'those methods' : 'that method'}: add ${unwritten.length > 1 ? 'them' : 'it'}`);
    }
    // A method the gateway refuses before any rule never reaches this one: the portal may need it (a config from before
    // portal.methods, when every method passed).
    const refused = methods?.filter((m) => !passed.includes(m)) ?? [];
    if (refused.length > 0) {
      w.push(`policy.rules.${i}.methods: ${refused.join(', ')} ${refused.length > 1 ? 'get' : 'gets'} 405 before any rule, as portal.methods leaves ${refused.length > 1 ? 'them' : 'it'} out: add ${refused.length > 1 ? 'them' : 'it'} to portal.methods if the portal takes ${refused.length > 1 ? 'them' : 'it'}, or take ${refused.length > 1 ? 'them' : 'it'} out of the rule`);
    }
    if (r.factors?.includes('webauthn') && r.factors.includes('device-bound-passkey')) {
      w.push(`policy.rules.${i}.factors: webauthn takes every passkey, synced ones too, so device-bound-passkey adds nothing (list it without webauthn to refuse synced passkeys)`);
    }
  });
  return w;
}

/** A listening address that only this machine (this container) can connect to. */
function loopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return h === 'localhost' || loopbackRange(h);
}

/** An address or range (server.trustedProxies) wholly within 127.0.0.0/8 or ::1 (IPv4-mapped too). */
function loopbackRange(entry: string): boolean {
  const r = parseCidr(entry);
  if (!r) return false;
  const v4 = r.family === 'ipv4' ? r.address : /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(r.address)?.[1];
  if (v4) return v4.startsWith('127.') && r.prefix >= (r.family === 'ipv4' ? 8 : 104);
  return r.prefix === 128 && LOOPBACK_V6.check(r.address, 'ipv6');
}
const LOOPBACK_V6 = new BlockList();
LOOPBACK_V6.addAddress('::1', 'ipv6');

/**
 * Login paths the policy keeps from a signed-out browser: the rules judge the login as any request, so one under an
 * `mfa` rule (a login posted to another path than its page, `/api/session`, which the rule for the page's own path
 * does not cover) asks for a sign-in before the sign-in, and nobody it asks gets in. So for the login page: under a
 * sign-in rule, a signed-out browser is sent to it again and again. Judged without a client address,
 * evaluation stops at the first rule for some networks (fail closed), so the clients judged are an address in each
 * entry of each network the rules name and, for everyone else, an IPv4 and an IPv6 address in none of them, on each
 * of server.hosts. A sign-in asked of any of them is warned of; the default deny only when it refuses them all
 * (nobody can sign in). A rule that denies the login or wants a managed device is taken as meant, and so is a public
 * rule for some networks before one denying the rest (logins from those networks only).
 */
function closedLoginWarnings(c: Config): string[] {
  const policy = compilePolicy(policyConfig(c));
  const named = [...new Set(c.policy.rules.flatMap((r) => r.networks ?? []))];
  const entries = (network: string) => (Object.hasOwn(c.networks, network) ? c.networks[network]! : [network]);
  const inNamed = new AddressSet(named.flatMap(entries));
  const outside = named.length === 0 ? '' : ' outside the networks the rules name';
  const clients = [
    // The address part of an entry is an address in it.
    ...named.flatMap((network) => entries(network).map((entry) => ({ ip: entry.split('/')[0]!, where: ` in ${network}` }))),
    ...[ELSEWHERE_V4, ELSEWHERE_V6].flatMap((ips) => ips.filter((ip) => !inNamed.has(ip)).slice(0, 1).map((ip) => ({ ip, where: outside }))),
  ];
  // The login itself, and the login page a signed-out browser is sent to (under a sign-in rule, refused to it).
  const judged = [
    ...c.portal.login.paths.flatMap((path) => c.portal.login.methods.map((method) => ({ option: 'portal.login.paths', method, path, ...CLOSED_LOGIN }))),
    { option: 'portal.login.page', method: 'GET', path: loginPagePath(c.portal.login.page), ...CLOSED_PAGE },
  ];
  const w: string[] = [];
  for (const { option, method, path, everyone: fixEveryone, some: fixSome, fallback } of judged) {
    // What closes it → the hosts it closes it on.
    const closing = new Map<string, Set<string>>();
    const close = (found: string, host: string) => closing.set(found, (closing.get(found) ?? new Set()).add(host));
    for (const host of c.server.hosts) {
      const outcomes = clients.map(({ ip, where }) => ({ where, outcome: decideAccess(policy, { host: host.toLowerCase(), method, path, clientIp: ip, legacyAuth: false, methodOverride: false, session: null, device: { managed: false } }) }));
      // One warning a rule, naming where it meets signed-out browsers (nowhere when it meets them all).
      const wheres = new Map<string, Set<string>>();
      for (const { where, outcome } of outcomes) if (outcome.verdict === 'sign-in') wheres.set(outcome.rule, (wheres.get(outcome.rule) ?? new Set()).add(where));
      for (const [rule, at] of wheres) {
        const everyone = outcomes.every(({ outcome }) => outcome.rule === rule && outcome.verdict === 'sign-in');
        close(`policy rule ${quoted(rule)} asks a signed-out browser${everyone ? '' : [...at].join(' or')} to sign in first, ${everyone ? fixEveryone : fixSome}`, host);
      }
      if (outcomes.every(({ outcome }) => outcome.verdict === 'deny' && outcome.rule === policy.fallback.name && outcome.reason === 'rule')) {
        close(`no rule matches it and policy.default is deny, ${fallback}`, host);
      }
    }
    for (const [found, hosts] of closing) w.push(`${option}: ${method} ${path}${hosts.size < c.server.hosts.length ? ` on ${[...hosts].join(', ')}` : ''}: ${found}`);
  }
  return w;
}

/** What a closed login, and a closed login page, does to signed-out browsers: all of them, some, or all by the default deny. */
const LOGIN_CLOSED = 'so no password reaches the portal and nobody can sign in; add the login path to a public rule, with the login page';
const CLOSED_LOGIN = {
  everyone: LOGIN_CLOSED,
  some: 'so no password from there reaches the portal and nobody there can sign in; add the login path to a public rule before it',
  fallback: LOGIN_CLOSED,
};
const CLOSED_PAGE = {
  everyone: 'so the gateway refuses this page (403) to every signed-out browser, rather than send it round to itself, and nobody can sign in; add the page\'s path to a public rule (with its scripts and styles)',
  some: 'so the gateway refuses this page (403) to a signed-out browser from there, rather than send it round to itself, and nobody there can sign in; add the page\'s path to a public rule before it',
  fallback: 'so no signed-out browser gets the login page and nobody can sign in; add the page\'s path to a public rule (with its scripts and styles)',
};

// Documentation addresses (RFC 5737, RFC 3849): the first in none of the networks the rules name stands for everyone else.
const ELSEWHERE_V4 = ['192.0.2.1', '198.51.100.1', '203.0.113.1'];
const ELSEWHERE_V6 = ['2001:db8::1', '2001:db8:1::1'];

/**
 * Patterns with a repetition inside a repetition: unless each inner one is set apart by a character it must have
 * (`[a-z]+([._-][a-z]+)*`, safe), such a pattern (`([a-z]+[._-]?)+`) takes time doubling with each character of a
 * crafted username, or of a portal page echoing it, and one login stops the gateway. A warning, not an error: the
 * check (star height) cannot tell the two apart; one character class (`^[a-z0-9._-]+$`) passes it.
 */
function slowPatternWarnings(login: Config['portal']['login']): string[] {
  const patterns = {
    usernamePattern: login.usernamePattern,
    'success.location': login.success.location,
    'success.body': login.success.body,
    'failure.location': login.failure?.location,
    'failure.body': login.failure?.body,
  };
  return Object.entries(patterns)
    // A pattern the checker cannot read (a lookbehind, say) is not judged: it would be taken for a slow one.
    .filter(([, src]) => src !== undefined && readable(() => parseRegex(src)) && !safeRegex(src, { limit: Infinity }))
    .map(
      ([name]) =>
        `portal.login.${name} has a repetition inside a repetition: unless each inner one is set apart by a character it must have (as in [a-z]+([._-][a-z]+)*), a crafted username can make it take exponential time and stop the gateway (([a-z]+[._-]?)+ does); write it without one, such as one character class (^[a-z0-9._-]+$)`,
    );
}

/**
 * Login rules that cannot tell a right password from a wrong one. The portal decides on the password; the gateway
 * only reads its answer, so a rule that a refusal also meets skips the password step (a refusal taken for a right
 * password), and a refusal rule that a signed-in page also meets shows that page before the second factor.
 */
function loginRuleWarnings(login: Config['portal']['login']): string[] {
  const w: string[] = [];
  const { success, failure } = login;
  const statusAlone = (rule: { location?: string; setCookie?: string; body?: string }) => rule.location === undefined && rule.setCookie === undefined && rule.body === undefined;
  if (statusAlone(success)) {
    w.push(
      'portal.login.success has a status only: a portal that also answers a wrong password with a redirect (back to its login page, as Spring Security does) would have every password taken for a right one; add location (anchored to where a sign-in lands), setCookie or body',
    );
  } else if (success.location !== undefined && success.setCookie === undefined && success.body === undefined) {
    const location = new RegExp(success.location);
    // Where portals send a refused password back to: the login page, often with an error flag (Spring's ?error).
    const page = loginPagePath(login.page);
    const loginPage = [page, `${page}?error`].find((p) => location.test(p));
    if (loginPage !== undefined) {
      w.push(
        `portal.login.success.location matches ${loginPage}: a wrong password answered with a redirect back to the login page would be taken for a right one; anchor it to where a sign-in lands (^/home), or add setCookie or body`,
      );
    }
  }
  if (!failure) {
    w.push(
      "portal.login.failure is not set: a login answer that is not a success counts as a refused password, shown with its cookies kept for the browser's public pages; a right password your success rules miss (an interstitial page) would leave the portal signed in there",
    );
  } else if (statusAlone(failure) && (failure.status ?? [200]).some((s) => s >= 200 && s < 300)) {
    w.push(
      "portal.login.failure takes a 2xx answer by its status alone: a page the portal shows after a right password (a password-expiry notice, terms to accept) would be shown as a refusal, before the second factor, its cookies kept for the browser's public pages; add body (the portal's error message)",
    );
  }
  return w;
}

/**
 * Location rules written for the Location as the portal sent it. A rule is matched against where it sends a browser:
 * on the portal (its origin, or a host in server.hosts), the path and query, so a pattern anchored to another first
 * character than `/` (`^home\\.jsp`, for `home.jsp` answered to /portal/login.do) holds only for another site's absolute
 * URL, and one for an absolute URL naming a host of the portal never holds.
 */
function locationRuleWarnings(c: Config): string[] {
  const hosts = [new URL(c.portal.url).hostname, ...c.server.hosts].map((h) => h.toLowerCase());
  const rules = { 'success.location': c.portal.login.success.location, 'failure.location': c.portal.login.failure?.location };
  const w: string[] = [];
  for (const [name, src] of Object.entries(rules)) {
    if (src === undefined || !readable(() => parseRegex(src))) continue;
    const tokens = parseRegex(src);
    // The first character every match starts with, when the pattern is anchored to one (no `|` beside the `^`).
    const [anchor, first] = ('stack' in tokens && tokens.stack) || [];
    const lead = anchor?.type === tokenTypes.POSITION && anchor.value === '^' && first?.type === tokenTypes.CHAR ? String.fromCharCode(first.value) : undefined;
    // The host name an absolute URL in it names (portal.internal in `^https?://portal\\.internal(:8080)?/home`), with
    // escaped dots and slashes read as plain ones and its optional groups (`(www\\.)?`, a port) left out.
    const shortest = src.replace(/\\([./])/g, '$1').replace(/\([^()]*\)\?/g, '').toLowerCase();
    const host = /:\/\/([^/:(?$]*)/.exec(shortest)?.[1];
    if (host === undefined && lead !== undefined && lead !== '/') {
      w.push(
        `portal.login.${name} starts with ^${lead}, not ^/: a Location is matched as the path it leads to on the portal (home.jsp answered to /portal/login.do as /portal/home.jsp), so it holds for none there; anchor it to that path (^/portal/home\\.jsp)`,
      );
    } else if (host !== undefined && hosts.includes(host)) {
      w.push(
        `portal.login.${name} is written for an absolute URL on the portal: a Location there is matched as its path and query (https://portal.example/portal/home.jsp as /portal/home.jsp), so it holds for none; write the path (^/portal/home\\.jsp)`,
      );
    }
  }
  return w;
}

/**
 * A range wider than /8 of IPv4 or /7 of IPv6. An IPv6 range over IPv4-mapped addresses (::ffff:0:0/96) holds IPv4
 * clients too (Node matches them against it): one that covers more than an IPv4 /8 of them is too wide as well.
 */
function tooWide(entry: string): boolean {
  const cidr = parseCidr(entry);
  if (!cidr) return false;
  if (cidr.family === 'ipv4') return cidr.prefix < 8;
  if (cidr.prefix < 7) return true;
  const range = new BlockList();
  range.addSubnet(cidr.address, cidr.prefix, 'ipv6');
  const mapped = new BlockList();
  mapped.addSubnet('::ffff:0:0', 96, 'ipv6');
  const holdsMapped = cidr.prefix >= 96 ? mapped.check(cidr.address, 'ipv6') : range.check('::ffff:0:0', 'ipv6');
  return holdsMapped && cidr.prefix < 96 + 8;
}

function urlOf(text: string): URL | null {
  try {
    return new URL(text);
  } catch {
    return null;
  }
}

/** https, or plain http to a loopback address. */
function safeOutbound(url: string): boolean {
  try {
    const u = new URL(url);
    return u.protocol === 'https:' || loopbackName(u.hostname);
  } catch {
    return false;
  }
}

/** The policy part of the config, as the pure policy code takes it. */
export function policyConfig(c: Config): PolicyConfig {
  return { ...c.policy, networks: c.networks, legacyEndpoints: c.legacyAuth.endpoints };
}

/**
 * The rule in front of the report page, as a policy of its own: signed in with a second factor, in one of the
 * groups (and networks); everybody else is refused.
 */
export function reportPolicyConfig(c: Config): PolicyConfig {
  const { groups, networks } = c.admin.report;
  const rule = { name: 'admin report', paths: [`${c.server.prefix}/admin/report`], groups, ...(networks.length ? { networks } : {}), decision: 'mfa' as const };
  return { rules: [rule], default: 'deny', caseSensitivePaths: true, networks: c.networks, legacyEndpoints: [] };
}

/** The secrets of a key list, each with its path in the config. */
function keyEntries(c: Config, list: 'signing' | 'encryption'): [string, string][] {
  return c.keys[list].map((k, i) => [`keys.${list}.${i}.secret`, k.secret]);
}

/** Each entry ([path, secret]) whose secret is, decoded, that of an earlier one, with the earlier one's path. */
function repeatedKeys(entries: readonly (readonly [string, string])[]): [string, string][] {
  const seen: { path: string; key: Buffer }[] = [];
  const repeated: [string, string][] = [];
  for (const [path, secret] of entries) {
    if (keyProblem(secret)) continue;
    const key = decodeKey(secret);
    const same = seen.find((s) => s.key.equals(key));
    if (same) repeated.push([path, same.path]);
    else seen.push({ path, key });
  }
  return repeated;
}

/** Decodes a base64 or base64url key. */
export function decodeKey(secret: string): Buffer {
  return Buffer.from(secret.replaceAll('-', '+').replaceAll('_', '/'), 'base64');
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
