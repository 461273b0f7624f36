// Conditional access: ordered rules, first match wins, then the default. A pure function of the request's facts.
import { composed, foldCase, targetOrRefusal } from './canonical-path.js';
import { AddressSet } from './client-address.js';
import { METHOD_OVERRIDE_HEADERS } from './headers.js';
import { queryFieldNames, type LegacyCredentials } from './legacy-auth.js';

export type Decision = 'public' | 'deny' | 'mfa' | 'managed-device' | 'step-up';
export type FactorKind = 'totp' | 'webauthn' | 'recovery';
/**
 * What a rule can ask for: a kind of factor, or a passkey that cannot leave its device (WebAuthn backup eligibility
 * BE=0: a security key, or a passkey its authenticator does not sync). A synced passkey (BE=1) is `webauthn` only,
 * never this (NIST SP 800-63B-4: syncable authenticators are not for AAL3; SECURITY R4).
 */
export type RuleFactor = FactorKind | 'device-bound-passkey';
export const RULE_FACTORS: readonly RuleFactor[] = ['totp', 'webauthn', 'device-bound-passkey', 'recovery'];
/** Whether a word from a request (a step-up page's `factors`) names one. */
export const isRuleFactor = (word: string): word is RuleFactor => (RULE_FACTORS as readonly string[]).includes(word);

export interface RuleConfig {
  name: string;
  hosts?: readonly string[];
  paths?: readonly string[];
  methods?: readonly string[];
  /** Named networks (from `networks`) or literal addresses/CIDRs. */
  networks?: readonly string[];
  groups?: readonly string[];
  device?: 'managed' | 'unmanaged';
  decision: Decision;
  /** step-up: the last second factor must be at most this old. */
  maxAgeSeconds?: number;
  /** step-up (and mfa): the second factor must be one of these. */
  factors?: readonly RuleFactor[];
  /** Lets requests carrying HTTP Basic/Digest/NTLM/Negotiate credentials through (service paths only). */
  allowLegacyAuth?: boolean;
}

export interface PolicyConfig {
  rules: readonly RuleConfig[];
  default: 'deny' | 'mfa';
  caseSensitivePaths: boolean;
  networks: Readonly<Record<string, readonly string[]>>;
  /** Old password-taking endpoints (API logins, RPC): always refused. */
  legacyEndpoints: readonly string[];
}

/** Everything the decision depends on, gathered by the HTTP layer. */
export interface RequestFacts {
  /** Lower-case host name without port. */
  host: string;
  method: string;
  /** The canonical path: exactly the path the portal will receive. */
  path: string;
  /** null when a trusted proxy passed an address that cannot be read. */
  clientIp: string | null;
  /** Authorization: Basic/Digest/NTLM/Negotiate, or login credentials in the query string (carriesLegacyCredentials). */
  legacyAuth: LegacyCredentials;
  /** A method override in the query string (carriesMethodOverride). */
  methodOverride: boolean;
  /** null when the request has no valid session. */
  session: null | {
    groups: readonly string[];
    factorAgeSeconds: number;
    factor: FactorKind;
    /** The factor was a passkey that cannot be copied off its device (BE=0). */
    deviceBound: boolean;
  };
  /**
   * `bound`: registered to a user, and nobody is signed in: whether it is managed is known once someone is, so a rule
   * that tests the device asks for a sign-in first.
   */
  device: { managed: boolean; bound?: boolean };
}

export type AccessOutcome =
  | { verdict: 'allow'; rule: string; decision: Decision }
  | { verdict: 'deny'; rule: string; reason: 'rule' | 'legacy-auth' | 'legacy-endpoint' | 'unknown-address' | 'method-override' }
  | { verdict: 'sign-in'; rule: string }
  | { verdict: 'managed-device'; rule: string }
  | { verdict: 'step-up'; rule: string; maxAgeSeconds: number; factors: readonly RuleFactor[] };

export interface TraceLine {
  rule: string;
  result: 'match' | 'no match' | 'needs sign-in';
  why: string;
}

interface CompiledRule extends RuleConfig {
  hostSet?: ReadonlySet<string>;
  pathRes?: RegExp[];
  methodSet?: ReadonlySet<string>;
  addresses?: AddressSet;
}

export interface CompiledPolicy {
  rules: readonly CompiledRule[];
  fallback: CompiledRule;
  legacyEndpoints: RegExp[];
  /** Whether any rule looks at the device: device state is only worked out when it can matter. */
  usesDevices: boolean;
  /**
   * Paths match in composed form, and regardless of case unless caseSensitivePaths (patterns are so already): a
   * request's path is brought to the same form (composed, foldCase).
   */
  foldCase: boolean;
}

/** Checks and compiles the rules once; throws TypeError naming the rule for anything that cannot be compiled. */
export function compilePolicy(c: PolicyConfig): CompiledPolicy {
  const flags = c.caseSensitivePaths ? '' : 'i';
  const fold = (p: string) => (c.caseSensitivePaths ? composed(p) : foldCase(p));
  const rules = c.rules.map((r): CompiledRule => {
    if (r.allowLegacyAuth && !r.networks?.length) throw new TypeError(`rule ${r.name}: allowLegacyAuth needs a networks restriction`);
    if (r.allowLegacyAuth && !r.paths?.length) throw new TypeError(`rule ${r.name}: allowLegacyAuth needs paths naming the service endpoints`);
    const networks = r.networks?.flatMap((n) => {
      if (Object.hasOwn(c.networks, n)) return c.networks[n]!;
      if (/^[A-Za-z][\w-]*$/.test(n)) throw new TypeError(`rule ${r.name}: unknown network ${n}`);
      return [n];
    });
    const problem = r.paths?.map(patternProblem).find((m) => m !== null);
    if (problem) throw new TypeError(`rule ${r.name}: ${problem}`);
    return {
      ...r,
      hostSet: r.hosts && new Set(r.hosts.map((h) => h.toLowerCase())),
      pathRes: r.paths?.map((p) => pathPattern(fold(p), flags)),
      methodSet: r.methods && methodSet(r.methods),
      addresses: networks && new AddressSet(networks),
    };
  });
  const endpointProblem = c.legacyEndpoints.map(patternProblem).find((m) => m !== null);
  if (endpointProblem) throw new TypeError(`legacy endpoint ${endpointProblem}`);
  return {
    rules,
    fallback: { name: 'default', decision: c.default },
    // An endpoint is refused with everything below it: portals that read path info (`/xmlrpc.php/x`) run it there too.
    legacyEndpoints: c.legacyEndpoints.map((p) => pathPattern(fold(p.endsWith('/') || p.endsWith('/**') ? p : `${p}/`), flags)),
    foldCase: !c.caseSensitivePaths,
    usesDevices: rules.some((r) => r.device !== undefined || r.decision === 'managed-device'),
  };
}

/** Why a path pattern cannot be used, or null: it could never match, or it has too many wildcards. */
function patternProblem(pattern: string): string | null {
  return uncanonical(pattern) ?? wildcardProblem(pattern);
}

/**
 * More wildcards than a path can be matched against in little time. Each `**`, and each `*` within the same name, is
 * tried at every position the others leave, so the time grows with the path's length to the power of their number
 * (a `*` alone in its name is held to that name by the `/` around it). Two are quick even for the longest path the
 * gateway takes; three would let a client's path stall it.
 */
function wildcardProblem(pattern: string): string | null {
  if (/\*{3,}/.test(pattern)) return `path ${pattern} has three or more '*' in a row (write '*' or '**')`;
  const names = pattern.split('/');
  const across = names.reduce((n, name) => n + (name.match(/\*\*/g)?.length ?? 0), 0);
  const within = Math.max(...names.map((name) => name.replaceAll('**', '').match(/\*/g)?.length ?? 0));
  return across + within > 2 ? `path ${pattern} has more wildcards than a long path can be matched against quickly: at most two '**' and '*' in one name together` : null;
}

/**
 * Why a path pattern could never match, or null. Patterns are matched against the canonical path, in which all but
 * a few ASCII characters are percent-encoded: `/mātauranga/` as written would match nothing, silently.
 */
export function uncanonical(pattern: string): string | null {
  // As a browser would send the pattern's text; `*` is a character the canonical form keeps, so wildcards stay.
  let raw = '';
  for (const ch of pattern) {
    if (/[A-Za-z0-9\-._~!$&'()*+,=:@/%]/.test(ch)) raw += ch;
    else for (const b of Buffer.from(ch, 'utf8')) raw += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  // Rules see a path without its ';' parameters.
  const target = pattern.includes(';') ? "';', as rules match the path without its parameters" : targetOrRefusal(raw);
  if (typeof target === 'string') return `path ${pattern} can never match a canonical path: ${target}`;
  const canonical = target.path;
  return canonical === pattern ? null : `path ${pattern} is matched against the canonical (percent-encoded) path: write it as ${canonical}`;
}

/** The methods a rule names; GET covers HEAD, which servers answer by running the GET handler. */
function methodSet(methods: readonly string[]): ReadonlySet<string> {
  const set = new Set(methods.map((m) => m.toUpperCase()));
  if (set.has('GET')) set.add('HEAD');
  return set;
}

/**
 * A path pattern: `/login` is that path (with or without a trailing slash, which legacy portals treat alike); a
 * trailing `/` or `/**`, or a run of them, covers the path itself and everything below it (`/admin/` matches
 * `/admin`, `/admin/` and `/admin/x/y`); `*` matches within one segment, `**` across any number of them, none included (`/a/` `**` `/b` matches `/a/b`).
 */
export function pathPattern(pattern: string, flags = ''): RegExp {
  // A trailing run of them (`/admin/**/`, `/admin/**/**`) is the same: the path itself and everything below it.
  let p = pattern;
  while (p !== '/' && (p.endsWith('/') || p.endsWith('/**'))) p = p.slice(0, p.endsWith('/') ? -1 : -3);
  const below = p !== pattern;
  if (pattern === '/') p = '';
  const body = p
    .split(/(\*\*|\*)/)
    .map((part) => (part === '**' ? '.*' : part === '*' ? '[^/]*' : part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')))
    .join('')
    // Literal dots are escaped above, so `/.*/` can only come from `/**/`: it may stand for no segment at all.
    .replaceAll('/.*/', '(?:/.*)?/');
  return new RegExp(`^${body}${below || pattern === '/' ? '(?:/.*)?' : '/?'}$`, flags);
}

// `_method` in the query: Symfony, Laravel and PHP portals built on them act on that method instead (PHP drops
// leading spaces, reads '.', ' ' and '[' as '_', and `_method[x]` as `_method`). ASP.NET MVC reads
// `X-HTTP-Method-Override` from the query of a POST as it reads the header; the other override headers' names too
// (each '-' in any of the spellings PHP reads as '_').
const METHOD_OVERRIDE = new RegExp(`^(?:[ .[_]method|${METHOD_OVERRIDE_HEADERS.map((name) => name.replaceAll('-', '[-_ .[]')).join('|')})(\\[|$)`, 'i');

/** Whether the query asks the portal for another method than the request's (such a request is denied). */
export function carriesMethodOverride(query: string): boolean {
  return queryFieldNames(query).some((key) => METHOD_OVERRIDE.test(key.split('\0', 1)[0]!.trimStart()));
}

/** The decision for one request. */
export function decideAccess(policy: CompiledPolicy, facts: RequestFacts): AccessOutcome {
  return evaluate(policy, facts, undefined);
}

/** The decision and, rule by rule, why each matched or not (for `policy explain`). */
export function explainAccess(policy: CompiledPolicy, facts: RequestFacts): { outcome: AccessOutcome; trace: TraceLine[] } {
  const trace: TraceLine[] = [];
  return { outcome: evaluate(policy, facts, trace), trace };
}

function evaluate(policy: CompiledPolicy, requested: RequestFacts, trace: TraceLine[] | undefined): AccessOutcome {
  // A name in decomposed form (a letter and a combining accent) is the composed one to a portal that normalises.
  const facts = requested.path.includes('%') ? { ...requested, path: policy.foldCase ? foldCase(requested.path) : composed(requested.path) } : requested;
  // The rules would judge one method and the portal act on another (a POST past a rule for DELETE).
  if (facts.methodOverride) {
    trace?.push({ rule: 'method override', result: 'match', why: 'the query asks the portal for another method (_method, X-HTTP-Method-Override)' });
    return { verdict: 'deny', rule: 'method override', reason: 'method-override' };
  }
  if (policy.legacyEndpoints.some((re) => re.test(facts.path))) {
    trace?.push({ rule: 'legacy endpoints', result: 'match', why: `${facts.path} is a listed legacy endpoint` });
    return { verdict: 'deny', rule: 'legacy endpoints', reason: 'legacy-endpoint' };
  }
  for (const rule of policy.rules) {
    const m = matchRule(rule, facts);
    switch (m.kind) {
      case 'miss':
        trace?.push({ rule: rule.name, result: 'no match', why: whyMissed(m.failed, rule, facts) });
        continue;
      case 'unknown-address':
        trace?.push({ rule: rule.name, result: 'match', why: 'the rule tests the network and the client address is unknown: fail closed' });
        return { verdict: 'deny', rule: rule.name, reason: 'unknown-address' };
      case 'needs-user':
        // Only the user's groups (or whose the device is) are unknown: signing in tells whether the rule applies.
        trace?.push({ rule: rule.name, result: 'needs sign-in', why: rule.device && facts.device.bound ? 'the device is registered to a user and there is no session' : 'the rule tests groups and there is no session' });
        return legacyRefusal(rule, facts) ?? { verdict: 'sign-in', rule: rule.name };
      case 'match':
        trace?.push({ rule: rule.name, result: 'match', why: 'every condition holds' });
        return apply(rule, facts);
    }
  }
  trace?.push({ rule: 'default', result: 'match', why: 'no rule matched' });
  return apply(policy.fallback, facts);
}

// A miss names the condition that failed; why, in words, is worked out only when asked (policy explain).
const CONDITIONS = ['host', 'method', 'path', 'network', 'device', 'groups'] as const;
type Condition = (typeof CONDITIONS)[number];
type RuleMatch = { kind: 'match' } | { kind: 'miss'; failed: Condition } | { kind: 'needs-user' } | { kind: 'unknown-address' };

// The answers are constants: a request that passes several rules allocates nothing to find out.
const MATCH: RuleMatch = { kind: 'match' };
const NEEDS_USER: RuleMatch = { kind: 'needs-user' };
const UNKNOWN_ADDRESS: RuleMatch = { kind: 'unknown-address' };
const MISS = Object.fromEntries(CONDITIONS.map((c) => [c, { kind: 'miss', failed: c }])) as Record<Condition, RuleMatch>;

function matchRule(r: CompiledRule, f: RequestFacts): RuleMatch {
  if (r.hostSet && !r.hostSet.has(f.host)) return MISS.host;
  if (r.methodSet && !r.methodSet.has(f.method)) return MISS.method;
  if (r.pathRes && !r.pathRes.some((re) => re.test(f.path))) return MISS.path;
  if (r.addresses) {
    if (f.clientIp === null) return UNKNOWN_ADDRESS;
    if (!r.addresses.has(f.clientIp)) return MISS.network;
  }
  if (r.device) {
    if (f.device.bound) return NEEDS_USER;
    if ((r.device === 'managed') !== f.device.managed) return MISS.device;
  }
  if (r.groups) {
    if (!f.session) return NEEDS_USER;
    if (!r.groups.some((g) => f.session!.groups.includes(g))) return MISS.groups;
  }
  return MATCH;
}

/** Why a rule did not match a request, for policy explain. */
function whyMissed(failed: Condition, r: CompiledRule, f: RequestFacts): string {
  switch (failed) {
    case 'host':
      return `host ${f.host} is not one of ${r.hosts!.join(', ')}`;
    case 'method':
      return `method ${f.method} is not one of ${r.methods!.join(', ')}`;
    case 'path':
      return `path ${f.path} matches none of ${r.paths!.join(', ')}`;
    case 'network':
      return `address ${f.clientIp} is in none of ${r.networks!.join(', ')}`;
    case 'device':
      return `the device is ${f.device.managed ? '' : 'not '}managed`;
    case 'groups':
      return `the user is in none of the groups ${r.groups!.join(', ')}`;
  }
}

/**
 * Legacy credentials are refused unless the matching rule names this as a service path (SECURITY R57); NTLM and
 * Negotiate always, as they sign in a portal connection that other browsers' requests share.
 */
function legacyRefusal(rule: CompiledRule, f: RequestFacts): AccessOutcome | null {
  const refused = f.legacyAuth === 'connection' || (f.legacyAuth === 'request' && !rule.allowLegacyAuth);
  return refused ? { verdict: 'deny', rule: rule.name, reason: 'legacy-auth' } : null;
}

/** Whether the session's last second factor is one the rule names. */
function satisfies(session: NonNullable<RequestFacts['session']>, wanted: RuleFactor): boolean {
  return wanted === 'device-bound-passkey' ? session.factor === 'webauthn' && session.deviceBound : session.factor === wanted;
}

function apply(rule: CompiledRule, f: RequestFacts): AccessOutcome {
  const name = rule.name;
  const legacy = legacyRefusal(rule, f);
  if (legacy) return legacy;
  switch (rule.decision) {
    case 'public':
      return { verdict: 'allow', rule: name, decision: 'public' };
    case 'deny':
      return { verdict: 'deny', rule: name, reason: 'rule' };
    case 'mfa':
    case 'managed-device':
    case 'step-up': {
      if (rule.decision === 'managed-device' && !f.device.managed && !f.device.bound) return { verdict: 'managed-device', rule: name };
      if (!f.session) return { verdict: 'sign-in', rule: name };
      const factors = rule.factors ?? [];
      const maxAge = rule.decision === 'step-up' ? rule.maxAgeSeconds ?? 300 : Infinity;
      const factorOk = factors.length === 0 || factors.some((k) => satisfies(f.session!, k));
      if (!factorOk || f.session.factorAgeSeconds > maxAge) {
        return { verdict: 'step-up', rule: name, maxAgeSeconds: Number.isFinite(maxAge) ? maxAge : 300, factors };
      }
      return { verdict: 'allow', rule: name, decision: rule.decision };
    }
  }
}
